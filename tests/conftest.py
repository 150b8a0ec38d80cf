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
    config.tf_xla_flags_before = os.environ.get("TF_XLA_FLAGS")
    # Quoted: TensorFlow splits TF_XLA_FLAGS at whitespace, and a temporary directory under a path with
    # a space (TMPDIR, a Windows user name) would put the cache in the truncated path, never removed.
    os.environ["TF_XLA_FLAGS"] = f'{config.tf_xla_flags_before or ""} {_XLA_CACHE_FLAG}="{config.xla_cache_dir}"'.strip()


def pytest_unconfigure(config) -> None:
    if getattr(config, "xla_cache_dir", None):
        shutil.rmtree(config.xla_cache_dir, ignore_errors=True)
        # A second session in this process (pytest.main again) makes its own cache, not this removed one.
        if config.tf_xla_flags_before is None:
            os.environ.pop("TF_XLA_FLAGS", None)
        else:
            os.environ["TF_XLA_FLAGS"] = config.tf_xla_flags_before
