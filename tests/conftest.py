"""Make the project's modules (utils, model, train, ...) importable however pytest is started:
`python -m pytest` puts the working directory on sys.path, plain `pytest` does not.

The suite starts a few hundred train.py and sample.py processes, most on the same tiny model, and
each compiled the same XLA programs again: about a third of a tiny run's time. One XLA
persistent cache per test session, shared by the pytest-xdist workers and every process they
start (they inherit the environment), compiles each program once. XLA keys an entry by the whole
program and compares it in full before loading, and writes each entry atomically, so the runs
compute what they would without it. The cache lives and dies with the session: it never outlives
the TensorFlow build or the machine that compiled it."""
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_XLA_CACHE_FLAG = "--tf_xla_persistent_cache_directory"


def pytest_configure(config) -> None:
    if hasattr(config, "workerinput") or _XLA_CACHE_FLAG in os.environ.get("TF_XLA_FLAGS", ""):
        return  # an xdist worker inherits the controller's cache; a user's own flag stands
    config.xla_cache_dir = tempfile.mkdtemp(prefix="char-rnn-tests-xla-")
    os.environ["TF_XLA_FLAGS"] = f"{os.environ.get('TF_XLA_FLAGS', '')} {_XLA_CACHE_FLAG}={config.xla_cache_dir}".strip()


def pytest_unconfigure(config) -> None:
    if getattr(config, "xla_cache_dir", None):
        shutil.rmtree(config.xla_cache_dir, ignore_errors=True)
