"""Crash safety and bad input: every mistake gets one clear message (no traceback, exit 2) and
nothing saved is ever lost. train.py and sample.py on tiny text: their main in the test process
(run), or a real process where a fault is injected, a signal sent or a run killed.
The slow cases share one tiny trained run (module fixture) and copy it before damaging it."""
from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import runs
import utils
import workers
from test_data import finished_pid
from test_train import (forget_in_checkpoints, forget_saved, hparams_of, only_run, pointer_step, read_scalars, run_here,
                        saved_arg, stop_signals_at_their_defaults, tiny_text)

ROOT = Path(__file__).resolve().parents[1]
# --xla off and --sample_length 0: neither the step nor a sample is compiled, 4.5 s of a tiny run's 10.
TINY = ["--num_layers", "1", "--rnn_size", "32", "--embedding_size", "16", "--batch_size", "4",
        "--seq_length", "16", "--sample_length", "0", "--warmup_steps", "2", "--xla", "off"]
TIMEOUT = 300  # generous: the machine is shared


def run(script: str, *args: str, cwd: Path, timeout: int = TIMEOUT, wrapper: Path | None = None,
        **popen) -> subprocess.CompletedProcess:
    """Run train.py or sample.py: in this process (run_here) unless through a test wrapper that
    injects a fault, with options for the process (its environment, stdin, a timeout) or with
    arguments as bytes (a file name that is not UTF-8)."""
    if wrapper is None and not popen and timeout == TIMEOUT and all(isinstance(arg, str) for arg in args):
        return run_here(script, *args, cwd=cwd)
    command = [sys.executable, str(wrapper)] if wrapper else [sys.executable, str(ROOT / script)]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=timeout, **popen)


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    """One error message that says what and where, exit 2, no traceback."""
    err = result.stderr
    assert "Traceback" not in err, err
    assert result.returncode == 2, (result.returncode, err)
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


def fault_wrapper(path: Path, fault: str, script: str = "train.py", **values) -> Path:
    """A test wrapper at path that runs script (train.py) as __main__ after fault (Python that patches
    the runs module, formatted with values) injected its fault."""
    main = str(ROOT / script)
    path.write_text(f"import runpy, sys\nsys.path.insert(0, {str(ROOT)!r})\nimport runs\n{fault.format(**values)}\n"
                    f"sys.argv = [{main!r}] + sys.argv[1:]\nrunpy.run_path({main!r}, run_name='__main__')\n")
    return path


def file_hashes(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


def checkpoint_hashes(run_dir: Path) -> dict[str, str]:
    """Hashes of the checkpoints, best/ and the `checkpoint` lists (config.json is rewritten on resume)."""
    return {k: v for k, v in file_hashes(run_dir).items() if k.startswith(("ckpt-", "checkpoint", "best/"))}


def finite_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint, read back (checksums verified); asserts the weights are finite."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(prefix))
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    weights = {k: v for k, v in tensors.items() if k.startswith(("model/", "trained_model/"))}
    assert weights, sorted(tensors)
    for name, value in weights.items():
        assert np.isfinite(value).all(), name
    return tensors


class Trainer:
    """train.py in the background, with the stop signals at their defaults; its stderr lines are
    collected by a thread. Run with faulthandler, so that one which outlives finish()'s timeout shows
    where each of its threads was."""

    def __init__(self, *args: str, cwd: Path, wrapper: Path | None = None):
        command = [sys.executable, "-X", "faulthandler", str(wrapper or ROOT / "train.py")]
        self.proc = subprocess.Popen([*command, *args], cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, encoding="utf-8", errors="replace",
                                     preexec_fn=stop_signals_at_their_defaults)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in self.lines):
            assert self.proc.poll() is None or any(re.search(pattern, l) for l in self.lines), self.text()
            assert time.monotonic() < deadline, f"no {pattern!r} in time:\n{self.text()}"
            time.sleep(0.02)

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.reader.join(timeout=10)

    def finish(self, timeout: float = TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # SIGABRT: faulthandler writes every thread's stack, then it dies
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(timeout=60)
            self.reader.join(timeout=10)
            raise AssertionError(f"still running {timeout:.0f} s on; its output, then its stacks:\n"
                                 f"{self.text()[-20000:]}") from None
        self.reader.join(timeout=10)
        return code

    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One tiny run with ckpt-2, ckpt-4, ckpt-6 and best/, shared by the slow cases (copy it first)."""
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "tiny.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", str(corpus), *TINY, "--max_steps", "6", "--save_every", "2",
                 "--eval_every", "3", "--run_name", "run", cwd=root)
    assert result.returncode == 0, result.stderr
    run_dir = root / "save" / "run"
    assert pointer_step(run_dir) == 6 and (run_dir / "best" / "checkpoint").exists()
    return {"root": root, "corpus": corpus, "run": run_dir}


@pytest.fixture()
def run_copy(trained, tmp_path: Path) -> Path:
    """A private copy of the trained run (its corpus path stays valid: it is absolute)."""
    copy = tmp_path / "save" / "run"
    shutil.copytree(trained["run"], copy)
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    config["args"]["log_dir"] = str(tmp_path / "logs")  # saved absolute: private TensorBoard logs too
    (copy / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return copy


# ---------------------------------------------------------------------------------------------
# Must 1: bad input, refused with one message before any work


def corpus_case(tmp_path: Path, kind: str) -> tuple[list[str], list[str]]:
    """(flags, words the message must contain) for one kind of bad corpus."""
    if kind == "missing file":
        return ["--input", str(tmp_path / "nope.txt")], ["nope.txt", "no such file"]
    if kind == "missing directory":
        return ["--data_dir", str(tmp_path / "nodir")], ["nodir", "no such file or directory"]
    if kind == "empty file":
        (tmp_path / "empty.txt").write_bytes(b"")
        return ["--input", str(tmp_path / "empty.txt")], ["empty.txt", "empty"]
    if kind == "only a byte-order mark":
        (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
        return ["--input", str(tmp_path / "bom.txt")], ["bom.txt", "only a byte-order mark", "put the text"]
    if kind == "binary file":
        (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 64)
        return ["--input", str(tmp_path / "model.bin")], ["model.bin", "binary"]
    if kind == "utf-16 without a byte-order mark":
        (tmp_path / "ko16.txt").write_bytes("한국어 문장입니다\n".encode("utf-16-le") * 200)
        return ["--input", str(tmp_path / "ko16.txt")], ["ko16.txt", "UTF-16", "--encoding utf-16-le"]
    if kind == "utf-32 without a byte-order mark":  # was called a binary file
        (tmp_path / "ko32.txt").write_bytes("한국어 문장입니다 text\n".encode("utf-32-be") * 200)
        return ["--input", str(tmp_path / "ko32.txt")], ["ko32.txt", "UTF-32", "--encoding utf-32-be"]
    if kind == "not utf-8":
        (tmp_path / "latin.txt").write_bytes("café au lait, s'il vous plaît\n".encode("latin-1") * 200)
        return ["--input", str(tmp_path / "latin.txt")], ["latin.txt", "not valid utf-8", "--encoding"]
    if kind == "no .txt in directory":
        (tmp_path / "notes").mkdir()
        (tmp_path / "notes" / "readme.md").write_text("hello\n")
        return ["--data_dir", str(tmp_path / "notes")], ["notes", "no .txt files"]
    if kind == "input.txt a link to nothing":
        (tmp_path / "moved").mkdir()
        (tmp_path / "moved" / "input.txt").symlink_to(tmp_path / "gone.txt")
        return ["--data_dir", str(tmp_path / "moved")], ["moved: its input.txt is a link to nothing", "--input"]
    if kind == "shorter than one batch":
        (tmp_path / "short.txt").write_text("hello world\n" * 5)
        return ["--input", str(tmp_path / "short.txt")], ["not enough text", "--batch_size", "--seq_length"]
    if kind == "utf-8 read as utf-16":
        (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + tiny_text().encode())
        return ["--input", str(tmp_path / "bom.txt"), "--encoding", "utf-16"], ["bom.txt", "not valid utf-16"]
    if kind.startswith("validation"):  # a window of --seq_length 16 is 17 symbols
        (tmp_path / "ok.txt").write_text(tiny_text())
        corpus = ["--input", str(tmp_path / "ok.txt")]
        if kind == "validation shorter than a window":
            return ([*corpus, "--val_frac", "0.001"], ["too short for one window of --seq_length 16 (17 symbols)",
                                                       "--val_frac 0.001 keeps 11 symbols", "Raise --val_frac"])
        if kind == "validation cut shorter by --eval_symbols":
            return ([*corpus, "--eval_symbols", "10"],
                    ["too short for one window", "--eval_symbols 10 scores 10 of its", "Raise --eval_symbols"])
        # Too short either way: only --val_frac can help.
        return ([*corpus, "--val_frac", "0.001", "--eval_symbols", "5"],
                ["too short for one window", "--val_frac 0.001 keeps 11 symbols", "Raise --val_frac"])
    if kind == "not a text encoding":
        (tmp_path / "ok.txt").write_text(tiny_text())
        return ["--input", str(tmp_path / "ok.txt"), "--encoding", "rot13"], ["--encoding rot13", "not a text encoding"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing file", "missing directory", "empty file", "only a byte-order mark",
                                  "binary file", "utf-16 without a byte-order mark",
                                  "utf-32 without a byte-order mark", "not utf-8",
                                  "no .txt in directory", "input.txt a link to nothing", "shorter than one batch",
                                  "utf-8 read as utf-16",
                                  "not a text encoding", "validation shorter than a window",
                                  "validation cut shorter by --eval_symbols", "validation too short either way"])
def test_bad_corpus_is_refused(tmp_path: Path, kind: str) -> None:
    flags, needles = corpus_case(tmp_path, kind)
    result = run("train.py", *flags, *TINY, cwd=tmp_path)
    assert_refused(result, *needles)
    assert not (tmp_path / "save").exists()  # nothing was created for a run that cannot start


@pytest.mark.parametrize("flags, needle", [
    (["--rnn_size", "0"], "--rnn_size 0"),
    (["--seq_length", "-1"], "--seq_length -1"),
    (["--val_frac", "1.5"], "--val_frac 1.5"),
    (["--batch_size", "10000000"], "--batch_size 10000000"),
    (["--learning_rate", "nan"], "--learning_rate nan"),
    (["--dropout", "inf"], "--dropout inf"),
    (["--time_budget", "0"], "--time_budget 0"),
    (["--time_budget", "soon"], "--time_budget 'soon': invalid duration"),
    (["--peer_timeout", "later"], "--peer_timeout 'later': invalid duration"),
    (["--peer_timeout", "5s"], "--peer_timeout 5s: must be at least 10s"),
    (["--seed", str(2**70)], "--seed"),
    (["--sample_length", str(10**9)], "--sample_length"),
    (["--sample_length", "-1"], "--sample_length -1: must be from 0 (no sample)"),
    (["--batch_groups", "5"], "--batch_groups 5"),  # more groups than TINY's 4 streams
    (["--model", "nas"], "--model: nas (NASCell) came from TensorFlow 1's tf.contrib"),  # char-rnn-tensorflow's
    (["--run_name", "../elsewhere"], "--run_name ../elsewhere: must be a plain directory name"),
    (["--run_name", "latest"], "--run_name latest: must be a plain directory name"),  # the save dir's pointer
    (["--run_name", "two\nlines"], "--run_name 'two\\nlines': must be"),
    (["--run_name", "r?"], "--run_name r?: TensorFlow reads"),  # a pattern: it would match run "ry" too
    (["--run_name", "r*"], "--run_name r*: TensorFlow reads"),
    (["--save_dir", "runs[1]"], "--save_dir runs[1]: TensorFlow reads"),
    (["--save_dir", ""], "--save_dir '': an empty path"),
    (["--run_name", "x" * 300], "at most 200 bytes"),
    (["--init_from", ""], "--init_from '': an empty path"),  # not silently a new run
    (["--output_keep_prob", "1e-17"], "--output_keep_prob 1e-17: must be from 0.000001"),  # 1 - p rounds to 1
    (["--dropout", "0.3", "--output_keep_prob", "0.8"], "--dropout 0.3 and --output_keep_prob 0.8 both set"),
    (["--input", ""], "--input '': an empty path"),  # not silently --data_dir's default
    (["--log_dir", "logs/" + "x" * 300], "a name in it is 300 bytes long"),  # not an OSError traceback
    (["--init_from", "save/" + "한" * 100], "a name in it is 300 bytes long"),
    (["--save_dir", "s/" * 2100], "it is 4200 bytes long"),
    (["--save_dir", "/".join(["x" * 200] * 20)], "and the files written in it add up to 80"),  # fails at no save
    (["--save_dir", b"saves-\xc7\xd1"], "not valid UTF-8"),  # cp949 bytes under a UTF-8 locale
    (["--run_name", b"r-\xc7\xd1"], "--run_name 'r-\\udcc7\\udcd1': not valid UTF-8"),  # not "control characters"
    # A local folder gs:/bucket/x was written, while the printed tensorboard command named the bucket.
    (["--log_dir", "gs://bucket/x"], "--log_dir gs://bucket/x: a URL; this tool reads and writes files on this machine"),
    (["--init_from", "s3://bucket/save/run"], "--init_from s3://bucket/save/run: a URL"),
    # each size is allowed alone, together they need far more memory than any machine has
    (["--rnn_size", "16384", "--num_layers", "64"], "GiB of memory"),
])
def test_bad_sizes_are_refused(tmp_path: Path, flags: list[str], needle: str) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", str(corpus), *TINY, *flags, cwd=tmp_path)
    assert_refused(result, needle)


# Each flag's range at both ends, in-process (check_args, before TensorFlow): the last value
# taken and the first refused, with the message that names the flag. Values a user types on
# purpose are among the taken: --decay_rate 1 (a constant rate), --peer_timeout 0 (wait for ever).
RANGE_TAKEN = [["--num_epochs", "0", "--max_steps", "5"], ["--num_epochs", "0", "--time_budget", "1h"],
               ["--num_layers", "64", "--rnn_size", "16384", "--embedding_size", "16384"],
               ["--batch_size", "65536", "--seq_length", "100000"], ["--seed", str(-2**63)], ["--seed", str(2**63 - 1)],
               ["--save_every", "1", "--eval_every", "1", "--keep", "1", "--print_every", "1"],
               ["--sample_length", "0"], ["--sample_length", "100000"], ["--min_char_count", "1"],
               ["--batch_groups", "0"], ["--batch_groups", "24"], ["--val_frac", "0.001"], ["--val_frac", "0.499"],
               ["--dropout", "0"], ["--dropout", "0.999"], ["--learning_rate", "0.999"], ["--min_lr_frac", "0"],
               ["--min_lr_frac", "1"], ["--grad_clip", "0.001"], ["--decay_rate", "1"], ["--decay_rate", "0.001"],
               ["--ema_decay", "0"], ["--ema_decay", "0.999"],
               ["--peer_timeout", "0"], ["--peer_timeout", "10s"], ["--input_keep_prob", "1"],
               ["--input_keep_prob", "0.000001"], ["--output_keep_prob", "1"], ["--run_name", "a.b"],
               ["--run_name", "한" * 66],  # 198 bytes
               ["--log_dir", "logs[1]"]]  # TensorBoard's writer does not glob its folder, as checkpoints do
RANGE_REFUSED = [
    (["--num_epochs", "-1"], "--num_epochs -1: must be 0 (no epoch limit) or positive"),
    *[([f"--{flag}", "65" if flag == "num_layers" else "16385"], f"--{flag} {65 if flag == 'num_layers' else 16385}: "
       f"must be a whole number from 1 to") for flag in ("num_layers", "rnn_size", "embedding_size")],
    (["--embedding_size", "0"], "--embedding_size 0: must be a whole number from 1"),
    (["--batch_size", "65537"], "--batch_size 65537: must be a whole number from 1 to 65536"),
    (["--seq_length", "100001"], "--seq_length 100001: must be a whole number from 1 to 100000"),
    *[([f"--{flag}", "0"], f"--{flag} 0: must be positive") for flag in ("save_every", "eval_every", "keep",
                                                                        "print_every")],
    *[([f"--{flag}", "-1"], f"--{flag} -1: must be 0 or positive") for flag in ("max_steps", "stop_at_step",
                                                                                "warmup_steps", "max_vocab",
                                                                                "eval_symbols")],
    (["--seed", str(-2**63 - 1)], f"--seed {-2**63 - 1}: must be from"), (["--seed", str(2**63)], "--seed"),
    (["--sample_length", "100001"], "--sample_length 100001: must be from 0"),
    (["--min_char_count", "0"], "--min_char_count 0: must be at least 1"),
    (["--batch_groups", "-1"], "--batch_groups -1: must be from 0 (auto)"),
    (["--batch_groups", "25"], "--batch_groups 25: must be from 0 (auto) to --batch_size"),
    (["--val_frac", "0"], "--val_frac 0.0: must be above 0"),
    (["--val_frac", "0.5"], "--val_frac 0.5: must be above 0"),
    (["--dropout", "-0.1"], "--dropout -0.1: must be from 0"), (["--dropout", "1"], "--dropout 1.0: must be from 0"),
    (["--learning_rate", "0"], "--learning_rate 0.0: must be between 0 and 1"),
    (["--learning_rate", "1"], "--learning_rate 1.0: must be between 0 and 1"),
    (["--min_lr_frac", "-0.1"], "--min_lr_frac -0.1: must be from 0 to 1"),
    (["--min_lr_frac", "1.5"], "--min_lr_frac 1.5: must be from 0 to 1"),
    (["--grad_clip", "0"], "--grad_clip 0.0: must be a positive finite number"),
    (["--grad_clip", "inf"], "--grad_clip inf: must be a positive finite number"),
    (["--ema_decay", "1"], "--ema_decay 1.0: must be from 0 (no average) to below 1"),
    (["--ema_decay", "-0.5"], "--ema_decay -0.5: must be from 0 (no average) to below 1"),
    (["--ema_decay", "nan"], "--ema_decay nan: must be from 0 (no average) to below 1"),
    (["--decay_rate", "0"], "--decay_rate 0.0: must be above 0 and at most 1"),
    (["--decay_rate", "1.01"], "--decay_rate 1.01: must be above 0 and at most 1"),
    (["--peer_timeout", "9.9s"], "--peer_timeout 9.9s: must be at least 10s"),
    (["--input_keep_prob", "0"], "--input_keep_prob 0.0: must be from 0.000001 to 1"),
    (["--input_keep_prob", "1.5"], "--input_keep_prob 1.5: must be from 0.000001 to 1"),
    *[(["--run_name", name], f"--run_name {name}: must be a plain directory name") for name in ("", ".", "..", "a\\b")],
    (["--run_name", "한" * 67], "--run_name " + "한" * 67 + ": is too long for a directory name: at most 200 bytes"),
]


def test_each_flag_s_range_ends_where_its_message_says() -> None:
    import plan
    for flags in RANGE_TAKEN:
        plan.check_args(plan.build_parser().parse_args(flags))
    for flags, message in RANGE_REFUSED:
        with pytest.raises(utils.CharRNNError) as refused:
            plan.check_args(plan.build_parser().parse_args(flags))
        assert str(refused.value).startswith(message), (flags, str(refused.value))


TWO_WORKERS = '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": '


@pytest.mark.parametrize("tf_config, needle", [
    (None, "needs TF_CONFIG set on each worker"),
    ('{"cluster": [], "task": {"type": "worker", "index": 0}}', "TF_CONFIG is not valid (its cluster is [], not an "
                                                                "object of jobs)"),
    ("[1, 2]", "TF_CONFIG is not valid (not a JSON object)"),  # not "list indices must be integers"
    # Each was a TensorFlow traceback, or a wait for ever:
    (TWO_WORKERS + '{"type": "chief", "index": 0}}', "is not in the cluster"),
    ('{"cluster": {"worker": ["127.0.0.1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "'127.0.0.1' is not host:port"),
    (TWO_WORKERS + '{"type": "worker", "index": "1"}}', "the task's index '1' is not a number"),
    (TWO_WORKERS + '{"type": "worker", "index": true}}', "the task's index True is not a number"),
    ('{"cluster": {"worker": ["127.0.0.1:70000", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "'127.0.0.1:70000' is not host:port"),
    # A parameter server's job, or an address listed twice: the workers waited for ever, deaf to Ctrl-C.
    ('{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "its cluster has the job 'ps': --strategy multiworker trains with \"chief\" and \"worker\" jobs only"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}',
     "'127.0.0.1:1' is listed twice: each task needs an address of its own"),
    ('{"cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}',
     "'127.0.0.1:1' is listed twice"),
    # Two chiefs, or a job TensorFlow does not know: its traceback.
    ('{"cluster": {"chief": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "chief", "index": 0}}',
     "cluster.chief lists 2 addresses: a cluster has one chief at most"),
    ('{"cluster": {"worker": ["127.0.0.1:1"], "foo": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "its cluster has the job 'foo'"),
    # A list typed as one string was read a character at a time ("'h' is not host:port").
    ('{"cluster": {"worker": "127.0.0.1:1,127.0.0.1:2"}, "task": {"type": "worker", "index": 0}}',
     "cluster.worker is '127.0.0.1:1,127.0.0.1:2', not a list of \"host:port\" strings"),
    ('{"cluster": {"worker": null}, "task": {"type": "worker", "index": 0}}', "cluster.worker is None, not a list"),
])
def test_multiworker_without_a_valid_tf_config(tmp_path: Path, tf_config: str | None, needle: str) -> None:
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"} | ({"TF_CONFIG": tf_config} if tf_config else {})
    result = run("train.py", "--input", "tiny.txt", *TINY, "--strategy", "multiworker", cwd=tmp_path, env=env)
    assert_refused(result, "--strategy multiworker", needle)


def test_a_worker_whose_port_is_taken_is_told_so(tmp_path: Path) -> None:
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cluster = json.dumps({"cluster": {"worker": [f"127.0.0.1:{taken.getsockname()[1]}", "127.0.0.1:2"]},
                              "task": {"type": "worker", "index": 0}})
        result = run("train.py", "--input", "tiny.txt", *TINY, "--strategy", "multiworker", "--batch_size", "8",
                     cwd=tmp_path, env=os.environ | {"TF_CONFIG": cluster})
    assert_refused(result, "--strategy multiworker: this worker's server did not start", "is taken by another process")
    assert not (tmp_path / "save").exists()


def test_a_process_id_no_process_can_have_is_not_judged_gone() -> None:
    """A temporary name with pid 99999999999999999999 (another tool's) made os.kill raise OverflowError:
    a traceback in every clean-up of what killed processes left."""
    assert utils.pid_alive(10 ** 20) and utils.pid_alive(0) and utils.pid_alive(2 ** 31)  # pid_t: signed
    assert not utils.left_by_gone_owner(re.fullmatch(utils.OWNER_TAG, f"{10 ** 20}"))


def test_a_batch_that_does_not_share_out_evenly_is_refused(tmp_path: Path) -> None:
    """Streams left over would never train, and a worker or GPU with none would make the loss NaN."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    cluster = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}})
    result = run("train.py", "--input", "tiny.txt", *TINY, "--strategy", "multiworker", "--batch_size", "5",
                 cwd=tmp_path, env=os.environ | {"TF_CONFIG": cluster})
    assert_refused(result, "--batch_size 5 must be a multiple of the number of workers (2)", "Try --batch_size 4")
    # The replicas of one machine's GPUs, which this test cannot have, go through the same check.
    with pytest.raises(utils.CharRNNError, match=r"--batch_size 2 must be a multiple of the number of replicas "
                                                 r"\(devices\) in sync \(4\): .* Try --batch_size 4"):
        workers.check_batch_shares(2, 4, "replicas (devices) in sync", resumed=False, how_to_use_fewer="fewer GPUs")
    # A resumed run is told both ways: fewer replicas, or another --batch_size.
    with pytest.raises(utils.CharRNNError, match=r"Go on with a number of replicas \(devices\) in sync that divides it "
                                                 r"\(fewer GPUs.*\), or with --batch_size 4 \(at another batch than the "
                                                 r"run's, it goes on from the same point in its epoch"):
        workers.check_batch_shares(2, 4, "replicas (devices) in sync", resumed=True, how_to_use_fewer=workers.GPU_CHOICE)


def test_corpus_under_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    """A folder unzipped from a Windows archive keeps its cp949 name: it trains and resumes."""
    folder = os.fsencode(tmp_path) + b"/" + "한글".encode("cp949")
    os.mkdir(folder)
    (Path(os.fsdecode(folder)) / "input.txt").write_text(tiny_text(), encoding="utf-8")
    first = run("train.py", "--data_dir", folder, *TINY, "--max_steps", "2", cwd=tmp_path)
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr
    run_dir = only_run(tmp_path / "save")
    assert run_dir.name.startswith("_ѱ_-lstm1x32-")  # c7 d1 b1 db: the run's own name is UTF-8, for TensorFlow
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert saved["args"]["data_dir"] == os.fsdecode(folder)
    resumed = run("train.py", "--init_from", "save", "--max_steps", "3", cwd=tmp_path)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert pointer_step(run_dir) == 3
    # Trained from inside that folder: the relative save and log dirs are UTF-8 as typed, and the run
    # resumes there (its log_dir is saved relative: absolute, TensorFlow could not take it).
    inside = run("train.py", "--input", "input.txt", *TINY, "--max_steps", "2", "--run_name", "here", cwd=folder)
    assert inside.returncode == 0 and "Traceback" not in inside.stderr, inside.stderr
    again = run("train.py", "--init_from", "save/here", "--max_steps", "3", cwd=folder)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert pointer_step(Path(os.fsdecode(folder)) / "save" / "here") == 3
    shutil.copytree(Path(os.fsdecode(folder)) / "logs" / "here", tmp_path / "logs-here")  # a path TF can read
    assert sorted(step for step, _ in read_scalars(tmp_path / "logs-here")["train/loss"]) == [1, 2, 3]


@pytest.mark.skipif(os.name != "posix", reason="a POSIX locale")
def test_hangul_paths_under_a_locale_that_is_not_utf8(tmp_path: Path) -> None:
    """LC_ALL=C with UTF-8 mode turned off, as on a system whose locale is not UTF-8: the scripts
    start again in UTF-8 mode, so a Hangul folder trains and samples (its name was an ascii error)."""
    (tmp_path / "한글").mkdir()
    (tmp_path / "한글" / "input.txt").write_text(tiny_text(), encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"}
    trained = run("train.py", "--data_dir", "한글", *TINY, "--max_steps", "2", cwd=tmp_path, env=env)
    assert trained.returncode == 0 and "Traceback" not in trained.stderr, trained.stderr
    assert only_run(tmp_path / "save").name.startswith("한글-lstm1x32-") and "checkpoints in save/한글-" in trained.stderr
    sampled = run("sample.py", "-n", "20", cwd=tmp_path, env=env)
    assert sampled.returncode == 0 and len(sampled.stdout) == 20 + 1, sampled.stderr


@pytest.mark.parametrize("script, flags", [("train.py", ["--num_layers", "둘"]), ("sample.py", ["--프라임", "문"])])
def test_a_refused_flag_is_told_in_utf8_whatever_the_stdio_encoding(tmp_path: Path, script: str,
                                                                      flags: list[str]) -> None:
    """argparse's refusals come before logging is set up: they were in PYTHONIOENCODING's encoding
    (a Windows console's cp949), so a stderr redirected to a file mixed two encodings."""
    result = subprocess.run([sys.executable, str(ROOT / script), *flags], cwd=tmp_path, capture_output=True,
                            env={**os.environ, "PYTHONIOENCODING": "cp949"}, timeout=TIMEOUT)
    assert result.returncode == 2 and flags[-1] in result.stderr.decode("utf-8"), result.stderr


# karpathy/char-rnn's Lua flags and what they mean here (its train.lua and sample.lua).
LUA_MEANINGS = {"learning_rate_decay": ("train.py", "--decay_rate"), "max_epochs": ("train.py", "--num_epochs"),
                "eval_val_every": ("train.py", "--eval_every"), "checkpoint_dir": ("train.py", "--save_dir"),
                "savefile": ("train.py", "--run_name"), "primetext": ("sample.py", "--prime"), "length": ("sample.py", "-n")}


@pytest.mark.parametrize("script", ["train.py", "sample.py"])
def test_every_karpathy_char_rnn_flag_is_answered_with_its_name_here(script: str, tmp_path: Path, capsys) -> None:
    import plan
    import sample
    parser = plan.build_parser() if script == "train.py" else sample.build_parser()
    parser.prog = script  # as when run: not the test runner's name
    for lua_name, (home, flag) in LUA_MEANINGS.items():
        with pytest.raises(SystemExit):
            parser.parse_args([f"-{lua_name}", "1"])
        named = flag if home == script else f"{home} {flag}"
        assert f"(-{lua_name} is karpathy/char-rnn's; here: {named})" in capsys.readouterr().err, lua_name
        home_parser = plan.build_parser() if home == "train.py" else sample.build_parser()
        assert flag in {f for action in home_parser._actions for f in action.option_strings}  # a real flag there
    # A path typed alone, as sample.lua took its checkpoint: the flag that takes it here.
    for path, flag in ((ROOT / "data", "--save_dir" if script == "sample.py" else "--data_dir"),
                       (ROOT / "README.md", "--save_dir" if script == "sample.py" else "--input")):
        with pytest.raises(SystemExit):
            parser.parse_args([str(path)])
        assert f"(a path is passed with {flag} {path} here)" in capsys.readouterr().err
    # Its flags with no match here, or whose name here means something else (-decay_rate: RMSprop's).
    for lua_flags, said in ((["-decay_rate", "0.95"], "nothing to pass, the optimizer is Adam, not RMSprop"),
                            (["-learning_rate_decay_after", "10"], "no such flag: --decay_rate decays"),
                            (["-train_frac", "0.9"], "nothing to pass: all the text but --val_frac's"), (["-accurate_gpu_timing", "0"], "nothing to pass"),
                            (["-verbose", "0"], "nothing to pass: the text alone goes to stdout")):
        with pytest.raises(SystemExit):
            parser.parse_args(lua_flags)
        error = capsys.readouterr().err
        assert f"({lua_flags[0]} is karpathy/char-rnn's; here: {said}" in error and "did you mean" not in error, error
    # Its checkpoint, typed alone as sample.lua took it, or passed as a run.
    torch_checkpoint = tmp_path / "lm_lstm_epoch30.00_1.3950.t7"
    torch_checkpoint.write_bytes(b"T7")
    with pytest.raises(SystemExit):
        parser.parse_args([str(torch_checkpoint)])
    assert "(a checkpoint of karpathy/char-rnn, in Torch, which cannot be loaded here: train again" in \
        capsys.readouterr().err
    with pytest.raises(utils.CharRNNError, match=r"--init_from \S+\.t7: a checkpoint of karpathy/char-rnn, in Torch"):
        runs.resolve_run_dir(str(torch_checkpoint), "--init_from")


@pytest.mark.parametrize("flags, hint", [(["--model", "xyz"], "invalid choice: 'xyz'"), (["--rnn_size", "big"], "'big'"),
                                         (["--no_such_flag", "1"], "unrecognized arguments: --no_such_flag 1\n"),
                                         (["--rnn-size", "64"], "(--rnn-size: did you mean --rnn_size?)"),
                                         (["--prime=a"], "(--prime is a flag of sample.py, not of train.py)"),
                                         # sample.py's, not taken as the --sample_length they abbreviate (a run)
                                         (["--sample", "1"], "error: --sample is a flag of sample.py, not of "
                                                             "train.py (or did you mean --sample_length?)\n"),
                                         (["--data_dir", "x", "--sample=0"], "error: --sample is a flag of sample.py"),
                                         (["--n", "5"], "error: --n is a flag of sample.py, not of train.py\n"),
                                         # karpathy/char-rnn's names: --learning_rate_decay is not --learning_rate
                                         (["-learning_rate_decay", "0.97"],
                                          "(-learning_rate_decay is karpathy/char-rnn's; here: --decay_rate)"),
                                         (["-primetext", "a"], "(-primetext is karpathy/char-rnn's; here: sample.py --prime)"),
                                         (["-gpuid", "-1"], "(-gpuid is karpathy/char-rnn's; here: nothing to pass: a "
                                                            "GPU is used where TensorFlow finds one"),
                                         (["no/such/path"], "unrecognized arguments: no/such/path\n"),
                                         (["--time_budget", "-5m"], "(a value that starts with '-' goes after '=': "
                                                                    "--time_budget=-...)"),
                                         (["--time_budget"], "--time_budget: expected one argument\n"),
                                         (["--time_bud", "-5m"], "goes after '=': --time_budget=-...)"),
                                         (["--time_budget", "--max_steps", "5"], "expected one argument\n")])
def test_argparse_errors_are_two_lines_not_a_traceback(tmp_path: Path, flags: list[str], hint: str) -> None:
    """The error, a typo's right flag name, and where the flags are listed: not the whole usage."""
    result = run("train.py", *flags, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 2 and hint in result.stderr, result.stderr
    assert "usage: python train.py [flags]; python train.py --help lists every flag" in result.stderr


def test_a_flag_of_ours_typed_in_part_still_works() -> None:
    """Only sample.py's --sample typed whole is refused: --samp still abbreviates --sample_length."""
    import plan
    assert plan.build_parser().parse_args(["--samp", "10"]).sample_length == 10
    assert plan.build_parser().parse_args(["--sample_l=7"]).sample_length == 7


def test_the_old_tool_s_abbreviations_keep_their_meaning(tmp_path: Path, capsys) -> None:
    """char-rnn-tensorflow took --b for --batch_size and --m for --model, which --batch_groups and
    --max_steps make ambiguous here: the old flag is meant, and counts as typed (a resume takes it)."""
    import plan
    import sample
    from utils import explicit_flags
    parser = plan.build_parser()
    argv = ["--b", "8", "--m=gru", "--r", "32", "--se", "20", "--output", "0.9", "--batch_g", "2"]
    args = parser.parse_args(argv)
    assert (args.batch_size, args.model, args.rnn_size, args.seq_length, args.output_keep_prob,
            args.batch_groups) == (8, "gru", 32, 20, 0.9, 2)
    assert explicit_flags(parser, argv) >= {"batch_size", "model", "rnn_size", "seq_length", "output_keep_prob"}
    # --inp begins --input, the corpus here, as much as --input_keep_prob: it stays ambiguous.
    with pytest.raises(SystemExit):
        parser.parse_args(["--inp", "data.txt"])
    assert "ambiguous option: --inp could match --input" in capsys.readouterr().err
    assert parser.old_abbreviations_whole(["--b=1", "--", "--b"]) == ["--batch_size=1", "--", "--b"]  # flags end at --
    with pytest.raises(SystemExit):  # ambiguous in the old tool too (--save_dir, --sample)
        sample.build_parser().parse_args(["--sa", "1"])
    assert "ambiguous option: --sa could match" in capsys.readouterr().err
    # --input itself is a flag here: a keep probability given to it is told what it was.
    result = run("train.py", "--input", "0.9", cwd=tmp_path)
    assert_refused(result, "--input 0.9: no such file", "(char-rnn-tensorflow read --input as --input_keep_prob: "
                                                        "type that whole)")


@pytest.mark.parametrize("flag", ["--save_dir", "--log_dir"])
def test_unwritable_output_directory(tmp_path: Path, flag: str) -> None:
    """A directory that cannot be created (a file is in the way: works even as root, where
    permission bits do not stop writes)."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    (tmp_path / "afile").write_text("")
    result = run("train.py", "--input", str(corpus), *TINY, flag, str(tmp_path / "afile" / "out"), cwd=tmp_path)
    assert_refused(result, flag, "afile is a file, not a folder")
    if flag == "--log_dir":  # the run directory made (and locked) before it failed is gone: no run that never was
        assert not (tmp_path / "save").exists()  # nor the save directory made for it


def _drop_permission_overrides() -> None:
    """In a child before exec: drop the capabilities by which root ignores permission bits
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from its bounding set, so the program it runs obeys them."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def obeying_permission_bits(read_only: Path) -> dict:
    """subprocess options under which a process cannot write into read_only (a 0o555 folder): none
    for a user; for root (as in CI containers), its permission overrides dropped, where it may."""
    if os.geteuid() != 0:
        return {}
    probe = [sys.executable, "-c", f"open({str(read_only / 'probe')!r}, 'w')"]
    try:
        refused = subprocess.run(probe, preexec_fn=_drop_permission_overrides, capture_output=True).returncode != 0
    except subprocess.SubprocessError:
        refused = False
    if not refused:
        pytest.skip("running as root, which may not drop the capabilities that ignore permission bits")
    return {"preexec_fn": _drop_permission_overrides}


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="permission bits as on Linux and macOS")
def test_read_only_save_directory(tmp_path: Path) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    (tmp_path / "ro").mkdir(mode=0o555)
    result = run("train.py", "--input", str(corpus), *TINY, "--save_dir", str(tmp_path / "ro"), cwd=tmp_path,
                 **obeying_permission_bits(tmp_path / "ro"))
    assert_refused(result, "--save_dir", "ro", "cannot write there")
    assert not any((tmp_path / "ro").iterdir())


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="permission bits as on Linux and macOS")
@pytest.mark.parametrize("script, flag", [("train.py", "--input"), ("train.py", "--save_dir"),
                                          ("train.py", "--log_dir"), ("train.py", "--init_from"),
                                          ("sample.py", "--save_dir")])
def test_a_path_inside_a_folder_that_cannot_be_entered(tmp_path: Path, script: str, flag: str) -> None:
    """Python 3.11's Path.exists() raises PermissionError under such a folder: a message, not a traceback."""
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    (tmp_path / "locked").mkdir(mode=0o000)
    inside = str(tmp_path / "locked" / "inside")
    flags = [flag, inside] if script == "sample.py" or flag in ("--input", "--init_from") else [
        "--input", str(corpus), flag, inside]
    result = run(script, *(TINY if script == "train.py" else []), *flags, cwd=tmp_path,
                 **obeying_permission_bits(tmp_path / "locked"))
    assert_refused(result, inside, "permission denied", "Fix the permissions, or choose another path")


def test_run_directories_as_found_on_disk(trained, run_copy: Path) -> None:
    """What a user's copying and renaming leaves: each is refused up front, touching nothing, or
    works; no session deletes files of a run that it did not make."""
    save = run_copy.parent
    shutil.copytree(run_copy, save / "q[1]")  # a pattern that matches run "q1" beside it
    shutil.copytree(run_copy, save / "q1")
    before = file_hashes(save)
    assert_refused(run("train.py", "--init_from", ".", "--max_steps", "8", cwd=save / "q[1]"),
                   "--init_from ../q[1]: TensorFlow reads", "rename the folder")
    (save / "latest").write_text("q[1]\n")
    assert_refused(run("sample.py", "--save_dir", str(save), cwd=save), "q[1]: TensorFlow reads")
    # Checkpoints without config.json: no new run goes there (it would mix with them, or discard them).
    (save / "q1" / "config.json").unlink()
    before = file_hashes(save)
    assert_refused(run("train.py", "--input", str(trained["corpus"]), *TINY, "--run_name", "q1",
                       cwd=save.parent), "holds files of a run", "no config.json")
    # A lock file that cannot be opened (another user's, say).
    (save / "run" / ".lock").unlink(missing_ok=True)
    (save / "run" / ".lock").mkdir()
    assert_refused(run("train.py", "--init_from", str(run_copy), cwd=save.parent), ".lock: cannot open the run's lock")
    assert file_hashes(save) == before
    (save / "run" / ".lock").rmdir()
    # A `latest` that is a folder: told before training, not at the first save, and no run is begun.
    (save / "latest").unlink()
    (save / "latest").mkdir()
    assert_refused(run("train.py", "--input", str(trained["corpus"]), *TINY, "--run_name", "q2", cwd=save.parent),
                   "latest is not a file: the save directory keeps", "choose another --save_dir")
    assert not (save / "q2").exists()
    (save / "latest").rmdir()
    # A name of 201-255 bytes (renamed by hand, or saved by an earlier resume) resumes, again and again.
    long_name = save / ("n" * 240)
    run_copy.rename(long_name)
    config = json.loads((long_name / "config.json").read_text(encoding="utf-8"))
    config["args"]["run_name"] = long_name.name
    (long_name / "config.json").write_text(json.dumps(config), encoding="utf-8")
    resumed = run("train.py", "--init_from", str(long_name), "--max_steps", "7", cwd=save.parent)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert pointer_step(long_name) == 7


def test_init_from_missing_or_not_a_run(tmp_path: Path) -> None:
    assert_refused(run("train.py", "--init_from", str(tmp_path / "gone"), cwd=tmp_path), "gone", "no such directory")
    # sample.py before any training, as a new user types it: what to do first, and where it looked.
    assert_refused(run("sample.py", cwd=tmp_path), f"--save_dir save: no such directory in {tmp_path}.",
                   "Train one first")
    # train.py typed alone outside the project folder: its default corpus is not there, and it says where it looked.
    assert_refused(run("train.py", cwd=tmp_path), f"--data_dir data/tinyshakespeare: no such file or directory in "
                   f"{tmp_path}")
    (tmp_path / "config.json").write_text("{}")
    assert_refused(run("train.py", "--init_from", str(tmp_path / "config.json"), cwd=tmp_path),
                   "config.json", "is a file, not a run directory")
    (tmp_path / "empty_dir").mkdir()
    assert_refused(run("train.py", "--init_from", str(tmp_path / "empty_dir"), cwd=tmp_path),
                   "empty_dir", "not a training run")
    (tmp_path / "saves").mkdir()
    (tmp_path / "saves" / "latest").write_bytes(b"\xff\xfe\x00garbage")
    assert_refused(run("train.py", "--init_from", str(tmp_path / "saves"), cwd=tmp_path), "latest", "unreadable")
    # `latest` names a run deleted since: the runs that are left are named instead.
    (tmp_path / "saves" / "latest").write_text("deleted-run\n")
    (tmp_path / "saves" / "kept-run").mkdir()
    (tmp_path / "saves" / "kept-run" / "config.json").write_text("{}")
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "saves"), cwd=tmp_path),
                   "'deleted-run', which is no run", str(tmp_path / "saves" / "kept-run"))
    (tmp_path / "saves" / "half").mkdir()  # a directory, but no run: no config.json
    (tmp_path / "saves" / "latest").write_text("half\n")
    assert_refused(run("train.py", "--init_from", str(tmp_path / "saves"), cwd=tmp_path),
                   "'half', which is no run", str(tmp_path / "saves" / "kept-run"))
    # A run whose config.json alone went (a .lock stays from its training): not "no run", nor "killed
    # before its first save", whether named or reached through `latest`.
    (tmp_path / "saves" / "half" / "best").mkdir()
    for name in (".lock", "best/ckpt-3.index"):
        (tmp_path / "saves" / "half" / name).write_text("")
    without = (f"{tmp_path / 'saves' / 'half'} holds a run's checkpoints but not its config.json (deleted?), without "
               f"which they cannot be loaded: put it back from a copy or backup of the run, or train a new one\n")
    assert_refused(run("train.py", "--init_from", str(tmp_path / "saves"), cwd=tmp_path), "'latest' file names "
                   "'half': " + without)
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "saves" / "half"), cwd=tmp_path), without)
    shutil.rmtree(tmp_path / "saves" / "half" / "best")
    (tmp_path / "saves" / "half" / ".lock").unlink()
    (tmp_path / "saves" / "latest").write_text("\n")
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "saves"), cwd=tmp_path),
                   "'latest' file is empty", str(tmp_path / "saves" / "kept-run"))
    (tmp_path / "saves" / "latest").unlink()
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "saves"), cwd=tmp_path),
                   "a save directory without its 'latest' file", str(tmp_path / "saves" / "kept-run"))
    # A TensorBoard folder given for the run: where the run is, named only where it is there.
    (tmp_path / "logs" / "kept-run").mkdir(parents=True)
    (tmp_path / "logs" / "kept-run" / "events.out.tfevents.1.host").write_bytes(b"")
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "logs" / "kept-run"), cwd=tmp_path),
                   "TensorBoard's events of a run, not its checkpoints", "pass the run's folder in the --save_dir it "
                   f"was trained with (no run at save/kept-run in {tmp_path})\n")
    (tmp_path / "logs" / "kept-run").rename(tmp_path / "logs" / "kept-run@saves-2")  # a copy's, named after its save dir
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "logs" / "kept-run@saves-2"), cwd=tmp_path),
                   "save directory: pass saves/kept-run\n")
    (tmp_path / "saves").rename(tmp_path / "saves-2")  # or a save directory whose own name ends in -2
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "logs" / "kept-run@saves-2"), cwd=tmp_path),
                   "save directory: pass saves-2/kept-run\n")
    (tmp_path / "saves-2").rename(tmp_path / "saves")
    shutil.rmtree(tmp_path / "saves" / "kept-run")
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "logs" / "kept-run@saves-2"), cwd=tmp_path),
                   f"(no run at saves-2/kept-run or saves/kept-run in {tmp_path})\n")
    (tmp_path / "saves" / "kept-run").mkdir()
    (tmp_path / "saves" / "kept-run" / "config.json").write_text("{}")
    # config.json that is JSON but not the object train.py writes: a message, not a traceback.
    (tmp_path / "saves" / "kept-run" / "config.json").write_text("[1, 2]")
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "saves" / "kept-run"), cwd=tmp_path),
                   "config.json is unreadable or damaged (not a JSON object)")
    # char-rnn-tensorflow's own save directory: say what it is and what to do.
    (tmp_path / "tf1").mkdir()
    for name in ("config.pkl", "chars_vocab.pkl", "checkpoint", "model.ckpt-1000.index"):
        (tmp_path / "tf1" / name).write_bytes(b"")
    assert_refused(run("train.py", "--init_from", str(tmp_path / "tf1"), cwd=tmp_path),
                   "char-rnn-tensorflow (TF1)", "Train again")
    for name in ("config.pkl", "chars_vocab.pkl"):  # its checkpoints alone say as much
        (tmp_path / "tf1" / name).unlink()
    assert_refused(run("sample.py", "--save_dir", str(tmp_path / "tf1"), cwd=tmp_path), "char-rnn-tensorflow (TF1)")


def test_damaged_json_is_said_in_words() -> None:
    """Python's own text may end in "at" (Invalid control character at): said once."""
    for text, said in (('{"args": {"rnn_\n', "not JSON: Invalid control character at line 1"),
                       ('{"args":', "not JSON: Expecting value at line 1")):
        with pytest.raises(json.JSONDecodeError) as caught:
            json.loads(text)
        assert utils.damage(caught.value) == said
    # Saved again by an editor in another encoding: intact JSON, named with the way back.
    record = '{"args": {"data_dir": "data/한국어"}}'
    for encoding, named, lost in (("cp949", "cp949", ", unless the editor dropped characters cp949 lacks"),
                                  ("utf-16", "utf-16", ""),
                                  ("utf-16-le", "utf-16le", "")):  # unmarked: its order, as glibc's iconv spells it
        with pytest.raises(UnicodeDecodeError) as caught:
            record.encode(encoding).decode("utf-8-sig")
        said = utils.damage(caught.value)
        assert said.startswith(f"not UTF-8 text but {named}, as an editor saves it again: convert it back, iconv -f "
                               f"{named} -t utf-8 FILE > NEW, and put NEW in its place{lost}"), said
    with pytest.raises(UnicodeDecodeError) as caught:
        b"\xff\xfe\x00{".decode("utf-8")
    assert utils.damage(caught.value) == "not UTF-8 text"


@pytest.mark.parametrize("damage, what", [("truncated", "(not JSON: "), ("not an object", "(not a JSON object)"),
                                          ("wrong type", "(rnn_size is '32')"), ("null", "(print_every is None)"),
                                          ("derived value", "(log_name is 5)"),
                                          ("derived value out of range", "(input_dropout is 1.5)"),
                                          ("derived length", "(train_symbols is 'x')"),
                                          ("derived length out of range", "(train_symbols is -5)"),
                                          ("derived way", "(batch_offsets is 'foo')"),
                                          ("wrong type, typed anew", "(log_dir is 5)")])
def test_resume_with_damaged_config(run_copy: Path, damage: str, what: str) -> None:
    config = run_copy / "config.json"
    text = config.read_text(encoding="utf-8")
    config.write_text({"truncated": text[:len(text) // 2], "not an object": "[1, 2]",
                       "wrong type": text.replace('"rnn_size": 32', '"rnn_size": "32"'),
                       "null": re.sub(r'"print_every": \d+', '"print_every": null', text),
                       "derived value": text.replace('"log_name": "run"', '"log_name": 5'),
                       "derived value out of range": re.sub(r'"input_dropout": [\d.]+', '"input_dropout": 1.5', text),
                       "derived length": re.sub(r'"train_symbols": \d+', '"train_symbols": "x"', text),
                       "derived length out of range": re.sub(r'"train_symbols": \d+', '"train_symbols": -5', text),
                       "derived way": text.replace('"batch_offsets": "stream"', '"batch_offsets": "foo"'),
                       "wrong type, typed anew": re.sub(r'"log_dir": "[^"]*"', '"log_dir": 5', text),
                       }[damage], encoding="utf-8")
    assert config.read_text(encoding="utf-8") != text
    typed_anew = ["--log_dir", "logs2"] if damage.endswith("typed anew") else []  # its saved value is not inherited
    result = run("train.py", "--init_from", str(run_copy), *typed_anew, cwd=run_copy.parents[1])
    assert_refused(result, "config.json", "damaged " + what)


def test_flags_typed_on_resume_are_checked_against_the_run_s_own(tmp_path: Path) -> None:
    """--batch_groups up to the run's --batch_size (32), not the default's (24)."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    flags = ["--num_layers", "1", "--rnn_size", "8", "--embedding_size", "4", "--seq_length", "8", "--xla", "off"]
    first = run("train.py", "--input", "tiny.txt", *flags, "--batch_size", "32", "--max_steps", "1",
                "--run_name", "b32", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = run("train.py", "--init_from", "save/b32", "--batch_groups", "30", cwd=tmp_path)
    assert again.returncode == 0 and "had already reached --max_steps 1" in again.stderr, again.stderr
    assert_refused(run("train.py", "--init_from", "save/b32", "--batch_groups", "33", cwd=tmp_path),
                   "--batch_groups 33: must be from 0 (auto) to --batch_size")
    # The old keep probability is named, not the dropout it was turned into (--dropout -4.0).
    assert_refused(run("train.py", "--init_from", "save/b32", "--output_keep_prob", "5", cwd=tmp_path),
                   "--output_keep_prob 5.0: must be from 0.000001 to 1")


def test_a_run_copied_by_hand_keeps_its_own_tensorboard_run(tmp_path: Path) -> None:
    """cp -r save/a save/b, then resume b: b's curves go to a TensorBoard run of their own, not into
    a's; a itself (and a renamed run) goes on writing where it wrote."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    first = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "2", "--xla", "off", "--run_name", "a",
                cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    shutil.copytree(tmp_path / "save" / "a", tmp_path / "save" / "b")
    a_logs = file_hashes(tmp_path / "logs" / "a")
    copy = run("train.py", "--init_from", "save/b", "--max_steps", "3", cwd=tmp_path)
    assert copy.returncode == 0 and "save/b is a copy of" in copy.stderr, copy.stderr
    assert "run b: checkpoints in save/b; watch it" in copy.stderr, copy.stderr  # b's TensorBoard run is b
    assert file_hashes(tmp_path / "logs" / "a") == a_logs
    assert sorted(s for s, _ in read_scalars(tmp_path / "logs" / "b")["train/loss"]) == [3]
    (tmp_path / "save" / "a").rename(tmp_path / "save" / "renamed")
    renamed = run("train.py", "--init_from", "save/renamed", "--max_steps", "4", cwd=tmp_path)
    assert renamed.returncode == 0 and "a copy of" not in renamed.stderr, renamed.stderr
    # Told where its curves go on, since TensorBoard lists no run of the folder's new name.
    assert "run renamed: checkpoints in save/renamed (TensorBoard run a); watch it" in renamed.stderr, renamed.stderr
    assert sorted(s for s, _ in read_scalars(tmp_path / "logs" / "a")["train/loss"]) == [1, 2, 3, 4]


def test_resume_with_another_architecture_or_vocabulary(trained, run_copy: Path) -> None:
    cwd = run_copy.parents[1]
    before = file_hashes(run_copy)
    result = run("train.py", "--init_from", str(run_copy), "--rnn_size", "64", "--model", "gru", cwd=cwd)
    assert_refused(result, "other model or data layout flags", "--rnn_size: saved 32, given 64", "--model")
    # The saved data position and hidden state are for the saved layout of the text; another --batch_size
    # goes on from the same point in the epoch (char-rnn-tensorflow let it change), so it is not named.
    result = run("train.py", "--init_from", str(run_copy), "--seq_length", "32", "--batch_size", "8", "--seed", "7",
                 "--val_frac", "0.2", cwd=cwd)
    assert_refused(result, "--seq_length: saved 16, given 32", "--seed: saved 1234", "--val_frac: saved 0.05, given 0.2")
    assert "--batch_size" not in result.stderr
    # A text with characters the run's vocabulary lacks: the model has no ids for them.
    other = cwd / "other.txt"
    other.write_text(tiny_text(1, "zebra quick brown fox jumps over lazy dog"), encoding="utf-8")
    result = run("train.py", "--init_from", str(run_copy), "--input", str(other), cwd=cwd)
    assert_refused(result, "the corpus has characters that", "vocab.json lacks", "'z'", "start a new run on this one")
    assert file_hashes(run_copy) == before


def test_resume_at_the_length_limit_trains_nothing_and_rewrites_nothing(run_copy: Path) -> None:
    cwd = run_copy.parents[1]
    (run_copy.parent / "latest").write_text("another-run\n")
    before = file_hashes(cwd)
    result = run("train.py", "--init_from", str(run_copy), cwd=cwd)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "had already reached --max_steps 6 at step 6" in result.stderr, result.stderr
    # Not even config.json, `latest` or a TensorBoard events file.
    assert file_hashes(cwd) == before and not (cwd / "logs").exists()
    # Going on in a copy from there trains nothing either, and leaves no copy.
    fork = run("train.py", "--init_from", str(run_copy), "--run_name", "branch", cwd=cwd)
    assert fork.returncode == 0 and "Traceback" not in fork.stderr, fork.stderr
    assert f"nothing trained, and no copy is kept in {run_copy.parent / 'branch'}" in fork.stderr, fork.stderr
    assert file_hashes(cwd) == before and not (cwd / "logs").exists()
    # At another --batch_size too, and nothing is said of where it would go on in the text.
    moved = run("train.py", "--init_from", str(run_copy), "--batch_size", "8", cwd=cwd)
    assert moved.returncode == 0 and "had already reached --max_steps 6 at step 6" in moved.stderr, moved.stderr
    assert "other streams" not in moved.stderr and "does not compare" not in moved.stderr, moved.stderr
    assert file_hashes(cwd) == before and not (cwd / "logs").exists()


def test_a_session_that_trains_nothing_leaves_nothing_new(run_copy: Path) -> None:
    """A copy to go on in, whose checkpoints (best/'s too) then fail to load: refused, and the copy
    goes with it, so that the same command works once the run is repaired."""
    cwd = run_copy.parents[1]
    saved = {}
    for data in run_copy.rglob("ckpt-*.data-*"):
        saved[data] = data.read_bytes()
        data.write_bytes(saved[data][:1000])
    before = file_hashes(cwd)
    command = ["--init_from", str(run_copy), "--run_name", "branch", "--max_steps", "7"]
    assert_refused(run("train.py", *command, cwd=cwd), "cannot be loaded")
    assert file_hashes(cwd) == before and not (run_copy.parent / "branch").exists() and not (cwd / "logs").exists()
    for data, content in saved.items():
        data.write_bytes(content)
    # Stopped before its first step (--stop_at_step already passed): nothing saved, here or in place,
    # and no events file beside the run's own curves so far.
    (cwd / "logs" / "run").mkdir(parents=True)
    (cwd / "logs" / "run" / "events.out.tfevents.1.earlier").write_bytes(b"")
    before = file_hashes(cwd)
    for fork in (["--run_name", "branch"], [], ["--save_dir", "new/save", "--log_dir", "new/logs"]):
        stopped = run("train.py", "--init_from", str(run_copy), *fork, "--max_steps", "20", "--stop_at_step", "4",
                      cwd=cwd)
        assert stopped.returncode == 0 and "before training: nothing saved" in stopped.stderr, stopped.stderr
        assert file_hashes(cwd) == before and not (run_copy.parent / "branch").exists(), fork
        assert not (cwd / "new").exists(), fork  # made for both the copy and its logs: gone with them
    again = run("train.py", *command, cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert pointer_step(run_copy.parent / "branch") == 7
    assert (run_copy.parent / "latest").read_text().strip() == "branch"
    assert json.loads((run_copy.parent / "branch" / "config.json").read_text())["args"]["run_name"] == "branch"


def test_a_copy_killed_before_its_first_save_is_made_again_by_the_same_command(run_copy: Path) -> None:
    """kill -9 leaves a copy to go on in whole, the source's checkpoints under the copy's
    config.json: the same command refused it as a run, though no session had trained it."""
    cwd = run_copy.parents[1]
    command = ["--init_from", str(run_copy), "--run_name", "branch", "--max_steps", "9"]
    trainer = Trainer(*command, "--max_steps", "100000", "--save_every", "100000", cwd=cwd)
    trainer.wait_for(r"goes on in .*branch, a copy")
    trainer.kill9()
    branch = run_copy.parent / "branch"
    assert (branch / "config.json").exists() and (branch / runs.UNSAVED_COPY).exists()
    again = run("train.py", *command, cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert "a copy that a session stopped before its first save left behind: a new copy replaces it" in again.stderr
    assert pointer_step(branch) == 9 and not (branch / runs.UNSAVED_COPY).exists()
    # Saved once, it is a run: the same command is refused now.
    assert_refused(run("train.py", *command, cwd=cwd), f"{branch} already holds a run")


def test_sigterm_while_starting_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    trainer = Trainer("--input", "tiny.txt", *TINY, "--max_steps", "50", "--run_name", "gone", cwd=tmp_path)
    trainer.wait_for(r"corpus: ")  # data ready; TensorFlow starting, or the first step compiling
    trainer.proc.send_signal(signal.SIGTERM)
    assert trainer.finish() == 143, trainer.text()  # 128 + SIGTERM: start-up lasts until the first step ends
    assert "nothing saved" in trainer.text() or "nothing was saved" in trainer.text(), trainer.text()
    assert "Traceback" not in trainer.text() and not (tmp_path / "save").exists() and not (tmp_path / "logs").exists()


def test_a_new_run_whose_tensorboard_name_is_taken_says_where_its_events_go(tmp_path: Path) -> None:
    """logs/<run> left by a deleted run, or by a session killed (kill -9) before its first save: the
    new run's events go beside it, never into it, and the user is told where."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    stale = tmp_path / "logs" / "fresh"
    stale.mkdir(parents=True)
    (stale / "events.out.tfevents.1.host").write_bytes(b"")
    result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "2", "--run_name", "fresh", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"{Path('logs') / 'fresh'} is taken" in result.stderr
            and "this run's TensorBoard run is fresh@save\n" in result.stderr), result.stderr
    assert os.listdir(stale) == ["events.out.tfevents.1.host"] and read_scalars(tmp_path / "logs" / "fresh@save")
    # Its hparams row is its own too (not merged with the stale run's), and the corpus typed relative is absolute.
    hparams = hparams_of(tmp_path / "logs" / "fresh@save")
    assert (hparams["group"], hparams["corpus"]) == (str(tmp_path / "logs" / "fresh@save"), str(tmp_path / "tiny.txt"))
    # --log_dir the same folder as --save_dir: the name is taken by the run's own checkpoints, and
    # the message said a run in another save directory, a deleted one or a killed one had it.
    result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "2", "--run_name", "R", "--save_dir", "out",
                 "--log_dir", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"{Path('out') / 'R'} is taken (by this run's own checkpoint folder, since --log_dir is its --save_dir): this run's "
            f"TensorBoard run is R@out\n") in result.stderr, result.stderr
    assert read_scalars(tmp_path / "out" / "R@out")


SIGNAL_IN_IMPORT = '''
# TensorFlow's import fails: broken, or cut short by a signal that the import wraps into its own
# ImportError (as numpy's C extension does).
import os, signal, time

def import_tensorflow(quiet=True):
    if {signalled!r}:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        except KeyboardInterrupt as error:
            raise ImportError("PyCapsule_Import could not import module 'datetime'") from error
    raise ImportError("libtensorflow_framework.so.2: cannot open shared object file")

runs.import_tensorflow = import_tensorflow
'''


SIGNAL_AS_THE_MODEL_IS_BUILT = '''
import os, signal

read = runs.read_checkpoint_list

def read_after_a_signal(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGTERM)
    return read(*args, **kwargs)

runs.read_checkpoint_list = read_after_a_signal
'''


def test_a_signal_while_the_model_is_built_is_told_that_nothing_is_saved(tmp_path: Path) -> None:
    """Acknowledged at once, as in training, but with what happens then: start-up ends, and no step ran."""
    wrapper = fault_wrapper(tmp_path / "wrapper.py", SIGNAL_AS_THE_MODEL_IS_BUILT)
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "5", cwd=tmp_path, wrapper=wrapper)
    assert result.returncode == 128 + signal.SIGTERM and "Traceback" not in result.stderr, result.stderr
    assert "SIGTERM: stopping before training has begun; nothing is saved" in result.stderr
    assert "with a checkpoint" not in result.stderr and not (tmp_path / "save").exists()


SIGNAL_IN_THE_FIRST_STEP = '''
# SIGTERM while the session's first step is traced and compiled (seconds to minutes on a real model).
import os, signal
import model
import tensorflow as tf

call = model.CharRNN.__call__

def call_after_a_signal(self, *args, **kwargs):
    if tf.inside_function() and not getattr(model, "signalled", False):  # the train step's trace
        model.signalled = True
        os.kill(os.getpid(), signal.SIGTERM)
    return call(self, *args, **kwargs)

model.CharRNN.__call__ = call_after_a_signal
'''


@pytest.mark.parametrize("resumed", [False, True])
def test_a_signal_in_the_first_step_keeps_nothing(tmp_path: Path, resumed: bool) -> None:
    """The first step ends start-up: a Ctrl-C while it compiles means "not this run", so the session
    ends as in start-up, with nothing saved and nothing of it left, not with a checkpoint of one step
    (and, on a resume, config.json rewritten with the flags just typed)."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    flags = ["--input", "tiny.txt", *TINY, "--max_steps", "5", "--run_name", "r"]
    if resumed:
        assert run("train.py", *flags, "--stop_at_step", "2", cwd=tmp_path).returncode == 0
        flags = ["--init_from", "save/r", "--learning_rate", "0.5"]

    def written() -> list[str]:  # but the prepared corpus, a cache that any later run uses
        return sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if ".prepared" not in path.parts)

    before = written()
    config = (tmp_path / "save" / "r" / "config.json").read_bytes() if resumed else None
    wrapper = fault_wrapper(tmp_path / "wrapper.py", SIGNAL_IN_THE_FIRST_STEP)
    result = run("train.py", *flags, cwd=tmp_path, wrapper=wrapper)
    assert result.returncode == 128 + signal.SIGTERM and "Traceback" not in result.stderr, result.stderr
    assert "SIGTERM: stopping before training has begun; nothing is saved" in result.stderr, result.stderr
    assert "interrupted before training started; nothing was saved" in result.stderr
    (tmp_path / "wrapper.py").unlink()
    assert written() == before
    if resumed:
        assert (tmp_path / "save" / "r" / "config.json").read_bytes() == config
        assert pointer_step(tmp_path / "save" / "r") == 2


@pytest.mark.parametrize("signalled", [True, False])
def test_a_signal_inside_an_import_stops_start_up(tmp_path: Path, signalled: bool) -> None:
    """A signal inside an import is an interruption; a broken install keeps its traceback."""
    wrapper = fault_wrapper(tmp_path / "wrapper.py", SIGNAL_IN_IMPORT, signalled=signalled)
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "5", cwd=tmp_path, wrapper=wrapper)
    if signalled:
        assert result.returncode == 128 + signal.SIGTERM and "Traceback" not in result.stderr, result.stderr
        assert "interrupted before training started; nothing was saved" in result.stderr
    else:
        assert result.returncode == 1 and "cannot open shared object file" in result.stderr, result.stderr
    assert not (tmp_path / "save").exists() and not (tmp_path / "logs").exists()


SIGINT_AS_THE_SCRIPT_LOADS = '''
# Ctrl-C while the script imports its own modules (the first tenth of a second), before main().
import os, signal

sys.modules.pop("workers", None)  # imported again by the script: its import is the moment

class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "workers":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, SignalOnImport())
'''


@pytest.mark.parametrize("script", ["train.py", "sample.py"])
def test_a_ctrl_c_while_the_script_loads_is_a_quiet_death_by_signal(tmp_path: Path, script: str) -> None:
    """Not a KeyboardInterrupt traceback from inside an import: what a Ctrl-C does to any program
    that has not yet set its own handler (main() sets the handlers that stop with a message)."""
    wrapper = fault_wrapper(tmp_path / "wrapper.py", SIGINT_AS_THE_SCRIPT_LOADS, script=script)
    result = subprocess.run([sys.executable, str(wrapper), "--help"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == -signal.SIGINT and result.stderr == "" and result.stdout == "", result


# How train.py and sample.py end, with TensorFlow loaded (a stand-in module: only its name counts
# here): a buffered line on stdout, an atexit handler, an object whose destructor only the
# interpreter's teardown runs, and maybe a thread of ours still at work.
EXIT = '''
import atexit, sys, threading, time, types
from pathlib import Path
sys.path.insert(0, {root!r})
import utils
sys.modules["tensorflow"] = types.ModuleType("tensorflow")

class Torn:
    def __del__(self, write=Path("torn").write_text):  # bound now: the teardown clears the module's names
        write("down")

torn = Torn()
atexit.register(lambda: Path("atexit").write_text("ran"))
if {thread}:
    threading.Thread(target=lambda: (time.sleep(0.5), Path("thread").write_text("done"))).start()
sys.stdout.write("buffered")
if {wait_for_stdin}:
    print("written", file=sys.stderr, flush=True)
    sys.stdin.readline()
utils.exit_without_teardown(3) if {fast} else sys.exit(3)
'''


def buffered_stdout() -> dict[str, str]:
    """The environment, less PYTHONUNBUFFERED: stdout keeps its text until a flush."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


@pytest.mark.parametrize("thread", [False, True])
def test_an_exit_without_teardown_does_what_an_exit_must(tmp_path: Path, thread: bool) -> None:
    """The end of a run skips the interpreter's teardown (TensorFlow's destructors, most of a second)
    but not its atexit handlers, the flush of stdout, nor a thread of ours at work."""
    code = EXIT.format(root=str(ROOT), thread=thread, wait_for_stdin=False, fast=True)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env=buffered_stdout())
    assert result.returncode == 3 and result.stdout == "buffered", result
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").is_file() == thread
    assert (tmp_path / "torn").is_file() == thread  # the teardown, skipped unless a thread is to wait for


@pytest.mark.parametrize("fast", [True, False])
def test_an_exit_to_a_closed_pipe_says_so_as_python_does(tmp_path: Path, fast: bool) -> None:
    """stdout's reader gone before the last flush (sample.py | head): Python's own exit gives 120."""
    code = EXIT.format(root=str(ROOT), thread=False, wait_for_stdin=True, fast=fast)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=buffered_stdout())
    assert proc.stderr.readline() == b"written\n"
    proc.stdout.close()
    proc.communicate(b"\n", timeout=60)
    assert proc.returncode == 120  # not the 3 asked for


UNWRITABLE = '''
# {module}.atomic_write_text cannot write files named {name} (errno {code}: a full disk, permissions).
import errno, os
import {module}

write = {module}.atomic_write_text

def refuse(path, text):
    if os.path.basename(path) == "{name}":
        raise OSError(errno.{code}, os.strerror(errno.{code}))
    write(path, text)

{module}.atomic_write_text = refuse
'''


@pytest.mark.parametrize("code, reason, fix", [("EPERM", "Operation not permitted", "make save writable"),
                                               ("ENOSPC", "No space left on device", "free disk space")])
def test_a_latest_that_cannot_be_written_keeps_the_first_checkpoint(tmp_path: Path, code: str, reason: str,
                                                                    fix: str) -> None:
    """The message says the checkpoint is intact: the new run must not be discarded after all. Once
    `latest` names the run, a save directory that cannot be written stops no resume of it (the run's
    own folder can)."""
    wrapper = fault_wrapper(tmp_path / "wrapper.py", UNWRITABLE, module="runs", name="latest", code=code)
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "3", "--run_name", "new", cwd=tmp_path,
                 wrapper=wrapper)
    assert_refused(result, f"could not write save/latest ({reason})", "checkpoints in save/new are intact",
                   f"Fix that ({fix})")
    assert pointer_step(tmp_path / "save" / "new" / "best") == 3  # the first save (the run's own comes after it)
    resumed = run("train.py", "--init_from", "save/new", "--max_steps", "4", cwd=tmp_path)
    assert resumed.returncode == 0 and "best/ckpt-3 at step 3" in resumed.stderr, resumed.stderr
    assert pointer_step(tmp_path / "save" / "new") == 4
    assert (tmp_path / "save" / "latest").read_text().strip() == "new"
    (tmp_path / "save" / "latest").write_bytes(b"\xef\xbb\xbfnew ")  # as Notepad saves a hand edit: read so too
    again = run("train.py", "--init_from", "save/new", "--max_steps", "6", "--save_every", "1", cwd=tmp_path,
                wrapper=wrapper)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert pointer_step(tmp_path / "save" / "new") == 6


def test_run_files_that_cannot_be_written_say_what_is_left(tmp_path: Path) -> None:
    """A new run that cannot write config.json saved nothing and says so; a resumed one keeps its
    checkpoints and says how to go on."""
    wrapper = fault_wrapper(tmp_path / "wrapper.py", UNWRITABLE, module="utils", name="config.json", code="ENOSPC")
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    flags = ["--input", "tiny.txt", *TINY, "--max_steps", "3", "--run_name", "r"]
    result = run("train.py", *flags, cwd=tmp_path, wrapper=wrapper)
    assert_refused(result, "could not write the run files in save/r (No space left on device)",
                   "nothing was saved: run the same command again")
    assert not (tmp_path / "save" / "r").exists()
    assert run("train.py", *flags, cwd=tmp_path).returncode == 0
    before = checkpoint_hashes(tmp_path / "save" / "r")
    result = run("train.py", "--init_from", "save/r", "--max_steps", "6", cwd=tmp_path, wrapper=wrapper)
    assert_refused(result, "could not write the run files", "checkpoints in save/r are intact: resume with")
    assert checkpoint_hashes(tmp_path / "save" / "r") == before


def test_a_resumed_session_whose_save_fails_leaves_config_json_as_it_was(run_copy: Path) -> None:
    """The flags typed in a session that saved nothing are not the run's: config.json is put back."""
    before = (run_copy / "config.json").read_bytes()
    # The final evaluation improves, and best/'s save (the session's first) fails, and so does the run's
    # own that is tried after it.
    for folder in (run_copy / "best", run_copy):
        (folder / "ckpt-9_temp").write_text("in the way of TensorFlow's scratch folder", encoding="utf-8")
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "9", "--save_every", "9",
                 "--eval_every", "100", cwd=run_copy.parents[1])
    assert_refused(result, "could not save a checkpoint", "are intact")
    assert (run_copy / "config.json").read_bytes() == before and pointer_step(run_copy) == 6


RUN_DELETED_AT_THE_SECOND_SAVE = '''
# The user deletes the save directory while the run trains: before the second save, or as it writes.
import shutil

save = runs.save_checkpoint
calls = []

def save_after_the_first(manager, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2 and {as_it_writes!r}:
        write = manager.save

        def deleted_as_it_writes(*args, **kwargs):
            shutil.rmtree({save_dir!r})
            open({save_dir!r}, "w").close()  # in the way: TensorFlow cannot make the folder again
            return write(*args, **kwargs)

        manager.save = deleted_as_it_writes
    elif len(calls) == 2:
        shutil.rmtree({save_dir!r})
    return save(manager, *args, **kwargs)

runs.save_checkpoint = save_after_the_first
'''


@pytest.mark.parametrize("as_it_writes", [False, True])
def test_a_run_deleted_while_training(tmp_path: Path, as_it_writes: bool) -> None:
    """Checkpoints saved on into a recreated folder without config.json would be a run that
    nothing can load, under a message saying 'Sample with': the run is written there anew. A save
    that the deletion breaks off is not told its checkpoints are intact."""
    wrapper = fault_wrapper(tmp_path / "wrapper.py", RUN_DELETED_AT_THE_SECOND_SAVE, save_dir=str(tmp_path / "gone"),
                            as_it_writes=as_it_writes)
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "6", "--save_every", "2",
                 "--eval_every", "2", "--save_dir", "gone", "--run_name", "r", cwd=tmp_path, wrapper=wrapper)
    if as_it_writes:
        assert_refused(result, "could not save a checkpoint in gone/r", "gone/r is gone, and its checkpoints with it "
                       "(deleted or moved during training?): run the same command again to start anew")
        return
    assert result.returncode == 0, result.stderr
    assert "gone/r was deleted or moved during training: the run is written there anew from this step" in result.stderr
    assert pointer_step(tmp_path / "gone" / "r") == 6 and (tmp_path / "gone" / "latest").read_text() == "r\n"
    # The run written anew from step 4 on: the best loss it records is that of what its best/ holds
    # (step 4's, when that evaluation was its best and wrote best/ anew), else none yet.
    step_4 = re.search(r"step 4 epoch \S+: val loss (\d\.\d{4}) .*?(  \(best\))?$", result.stderr, re.M)
    recorded = finite_checkpoint(tmp_path / "gone" / "r" / "ckpt-4")["best_val/.ATTRIBUTES/VARIABLE_VALUE"]
    assert (recorded == pytest.approx(float(step_4[1]), abs=1e-4)) if step_4[2] else recorded == math.inf, recorded
    sampled = run("sample.py", "--save_dir", "gone", "-n", "10", "--checkpoint", "best", cwd=tmp_path)
    assert sampled.returncode == 0 and len(sampled.stdout) == 11, sampled.stderr  # best/ is written anew too
    resumed = run("train.py", "--init_from", "gone", "--max_steps", "7", cwd=tmp_path)
    assert resumed.returncode == 0 and pointer_step(tmp_path / "gone" / "r") == 7, resumed.stderr


LOGS_DELETED_AT_THE_FIRST_SAVE = '''
# The user deletes the run's TensorBoard folder while it trains.
import shutil

save = runs.save_checkpoint
calls = []

def save_and_delete_the_logs(manager, *args, **kwargs):
    calls.append(1)
    if len(calls) == 1:
        shutil.rmtree({log_dir!r})
    return save(manager, *args, **kwargs)

runs.save_checkpoint = save_and_delete_the_logs
'''


def test_a_tensorboard_folder_deleted_while_training_is_written_anew(tmp_path: Path) -> None:
    """rm -rf logs while a run trains: its events went on into a file that no folder held, lost in
    silence, where the run's own folder deleted is written anew. The TensorBoard run is made again,
    with its summaries (the HPARAMS row), from that step on."""
    logs = tmp_path / "logs" / "r"
    wrapper = fault_wrapper(tmp_path / "wrapper.py", LOGS_DELETED_AT_THE_FIRST_SAVE, log_dir=str(logs))
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "6", "--save_every", "2",
                 "--eval_every", "2", "--run_name", "r", cwd=tmp_path, wrapper=wrapper)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"{Path('logs') / 'r'} was deleted or moved during training: TensorBoard's events are written there " \
           "anew from step 3" in result.stderr, result.stderr
    scalars = read_scalars(logs)
    assert [step for step, _ in scalars["train/loss"]] == [3, 4, 5, 6]
    assert [step for step, _ in scalars["val/loss"]] == [4, 6]
    assert hparams_of(logs)["max_steps"] == 6


RUN_FILES_DELETED_AFTER_THE_FIRST_SAVE = '''
# The user deletes the run's config.json and vocab.json, not its checkpoints, while it trains.
import os

save = runs.save_checkpoint

def save_then_delete_the_run_files(manager, *args, **kwargs):
    saved = save(manager, *args, **kwargs)
    for name in ("config.json", "vocab.json"):
        if not os.path.exists(os.path.join({run_dir!r}, name + ".gone")):  # once
            os.remove(os.path.join({run_dir!r}, name))
            open(os.path.join({run_dir!r}, name + ".gone"), "w").close()
    return saved

runs.save_checkpoint = save_then_delete_the_run_files
'''


def test_run_files_deleted_while_training_are_written_again(tmp_path: Path) -> None:
    """config.json and vocab.json deleted, the folder and its checkpoints still there: the next save
    writes them again and says so, without calling the run gone."""
    run_dir = tmp_path / "save" / "r"
    wrapper = fault_wrapper(tmp_path / "wrapper.py", RUN_FILES_DELETED_AFTER_THE_FIRST_SAVE, run_dir=str(run_dir))
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "6", "--save_every", "2",
                 "--eval_every", "2", "--run_name", "r", cwd=tmp_path, wrapper=wrapper)
    assert result.returncode == 0, result.stderr
    assert "config.json and vocab.json deleted from save/r during training: written again with this checkpoint" \
        in result.stderr and "deleted or moved" not in result.stderr, result.stderr
    assert (run_dir / "ckpt-2.index").is_file() and pointer_step(run_dir) == 6
    assert json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["vocab_file"] == "vocab.json"
    assert (run_dir / "vocab.json").is_file()
    resumed = run("train.py", "--init_from", "save/r", "--max_steps", "7", cwd=tmp_path)
    assert resumed.returncode == 0 and pointer_step(run_dir) == 7, resumed.stderr


def test_advice_after_a_failure_on_a_worker_without_the_run_on_its_disk(tmp_path: Path) -> None:
    """A worker other than the chief keeps no run files of its own (no shared file system): told to
    go on from the chief's checkpoints, not that the run is gone."""
    import types

    import train
    run_dir = tmp_path / "save" / "r"
    worker = types.SimpleNamespace(kept=True, resume_dir=None, forked_from=None, run_dir=run_dir,
                                   cluster=workers.Cluster(worker_index=1, num_workers=2))
    assert train.how_to_go_on(worker).startswith(f"the checkpoints in {run_dir} are intact: resume with --init_from")
    # The chief's run without its config.json (deleted during training): not "gone", when its checkpoints are there.
    chief = types.SimpleNamespace(**{**vars(worker), "cluster": workers.Cluster()})
    assert train.how_to_go_on(chief).startswith(f"{run_dir} is gone, and its checkpoints with it")
    run_dir.mkdir(parents=True)
    (run_dir / "ckpt-4.index").write_bytes(b"")
    assert train.how_to_go_on(chief) == (f"{run_dir} holds a run's checkpoints but not its config.json (deleted?), "
                                         f"without which they cannot be loaded: put it back from a copy or backup of "
                                         f"the run, or train a new one")


SLOW_SECOND_SAVE = '''
# The second checkpoint takes {seconds} s to write (a slow disk): the time budget runs out meanwhile.
import time

save = runs.save_checkpoint
calls = []

def slow_save(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        time.sleep({seconds})
    return save(*args, **kwargs)

runs.save_checkpoint = slow_save
'''


def test_a_budget_that_runs_out_during_a_save_is_saved_as_reached(tmp_path: Path) -> None:
    """The checkpoint written when the time ran out must say so, or a resume trains on. At step 5
    best/ saves (the evaluation), then the run's own checkpoint, slowly: a second longer than the
    whole budget, so the time runs out in it however fast the steps before were. The budget must
    only outlast the first 5 steps (the first one builds the step): about 1 s on an idle machine,
    and best/ was saved at 5.3 s of a 6 s budget beside a CPU burner, too thin under CI's load."""
    budget = 10
    wrapper = fault_wrapper(tmp_path / "wrapper.py", SLOW_SECOND_SAVE, seconds=budget + 1)
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", "tiny.txt", *TINY, "--time_budget", f"{budget}s", "--save_every", "5",
                 "--eval_every", "5", "--xla", "off", "--run_name", "r", cwd=tmp_path, wrapper=wrapper)
    assert result.returncode == 0 and f"stopped at step 5 by --time_budget {budget}s" in result.stderr, result.stderr
    # The loop evaluated step 5 just before: the end does not evaluate the same weights again.
    assert len(re.findall(r"step 5 epoch \S+: val loss", result.stderr)) == 1, result.stderr
    resumed = run("train.py", "--init_from", "save/r", cwd=tmp_path)
    assert resumed.returncode == 0 and f"had already reached --time_budget {budget}s at step 5" in resumed.stderr, \
        resumed.stderr


def test_a_lock_file_removed_before_it_was_locked_is_not_held(tmp_path: Path, monkeypatch) -> None:
    """A trainer opens the lock file just as another, discarding its session, removes it with the
    directory: locking that open file would lock nothing. It locks the directory anew instead."""
    run_dir = tmp_path / "new"
    first = runs.RunLock(run_dir, "--save_dir")
    lock_file = runs._lock_file

    def first_discards_then_lock(handle) -> None:
        if not first.file.closed:  # between the second trainer's open and lock
            first.release(discard=True)
        lock_file(handle)

    monkeypatch.setattr(runs, "_lock_file", first_discards_then_lock)
    second = runs.RunLock(run_dir, "--save_dir")
    assert os.path.samestat(os.fstat(second.file.fileno()), os.stat(run_dir / ".lock"))
    with pytest.raises(utils.CharRNNError, match="is being trained by pid"):
        runs.RunLock(run_dir, "--save_dir")
    second.release(discard=True)
    assert not run_dir.exists()


def test_a_new_run_is_named_after_its_corpus_model_and_time(tmp_path: Path) -> None:
    """data/tinyshakespeare/input.txt names its run tinyshakespeare (as char-rnn-tensorflow users
    know it), another file its stem, a folder its name; --unit jamo says so; TensorFlow's pattern
    characters in the name become _ (a run q[1] would read q1's checkpoints)."""
    import plan
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("x", encoding="utf-8")
    (tmp_path / "q[1]*.txt").write_text("x", encoding="utf-8")

    def name(*argv: str) -> str:
        return plan.default_run_name(plan.build_parser().parse_args(list(argv)))

    when = r"-\d{8}-\d{6}"
    corpus = tmp_path / "tinyshakespeare"
    assert re.fullmatch("tinyshakespeare-lstm2x384" + when, name("--input", str(corpus / "input.txt")))
    assert re.fullmatch("tinyshakespeare-gru1x32" + when,
                        name("--data_dir", str(corpus), "--model", "gru", "--num_layers", "1", "--rnn_size", "32"))
    assert re.fullmatch(r"q_1__-lstm2x384-jamo" + when, name("--input", str(tmp_path / "q[1]*.txt"), "--unit", "jamo"))
    (tmp_path / ("b" * 150)).mkdir()
    assert re.fullmatch("b{100}-lstm2x384" + when, name("--data_dir", str(tmp_path / ("b" * 150))))


def test_runs_launched_together_get_default_names_of_their_own(tmp_path: Path) -> None:
    """A sweep started in parallel names its runs by the same second of the clock: where another
    trainer holds the name, or a saved run has it, a new run takes the next free name-N instead of
    failing (or training into that run), and leaves the saved run as it was."""
    import plan
    other_trainer = runs.RunLock(tmp_path / "run", "--save_dir")
    (tmp_path / "run-2").mkdir()
    (tmp_path / "run-2" / "config.json").write_text("{}")
    run_dir, lock = plan.lock_new_run(tmp_path / "run")
    assert run_dir == tmp_path / "run-3" and (run_dir / ".lock").is_file()
    with pytest.raises(runs.RunBusy):
        runs.RunLock(run_dir, "--save_dir")
    assert (tmp_path / "run-2" / "config.json").read_text() == "{}"
    lock.release(discard=True)
    other_trainer.release(discard=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-2"]


def test_a_long_run_name_s_tensorboard_run_leaves_room_for_its_number(tmp_path: Path) -> None:
    """A run name of 200 bytes in a save directory with a long name: name@save_dir is cut short
    enough that name@save_dir-2 is still a name a file system takes (255 bytes)."""
    import argparse
    import plan
    (tmp_path / "logs" / ("r" * 200)).mkdir(parents=True)  # the run's own name is taken
    run_dir = tmp_path / ("s" * 100) / ("r" * 200)
    claimed = []
    for _ in range(2):
        args = argparse.Namespace(log_dir=str(tmp_path / "logs"))
        plan.name_tensorboard_run(args, run_dir, None, chief=True)
        claimed.append(args.log_name)
    assert claimed[1] == claimed[0] + "-2" and claimed[0].startswith("r" * 200 + "@sss"), claimed
    assert len(claimed[1].encode()) <= utils.NAME_MAX_BYTES and (tmp_path / "logs" / claimed[1]).is_dir()


def test_runs_started_together_get_tensorboard_runs_of_their_own(tmp_path: Path) -> None:
    """Two runs named exp in two save directories, launched together, both found logs/exp free: each
    must write its own curves (and an undone session must not delete the other's)."""
    logs = tmp_path / "logs"
    logs.mkdir()

    def names_as_another_trainer_takes_the_first():
        (logs / "exp").mkdir()  # between this trainer's look and its claim
        yield from ("exp", "exp@save_b", "exp@save_b-2")

    claimed, created = runs.claim_new_dir(logs, names_as_another_trainer_takes_the_first(), "--log_dir")
    assert claimed == logs / "exp@save_b" and created == claimed and claimed.is_dir()
    runs.remove_created(claimed, created, whole=True)
    assert sorted(p.name for p in logs.iterdir()) == ["exp"]
    claimed, created = runs.claim_new_dir(tmp_path / "new" / "logs", iter(["exp"]), "--log_dir")
    assert created == tmp_path / "new" and claimed.is_dir()  # made with its folders: all of them undone
    runs.remove_created(claimed, created, whole=True)
    assert not created.exists()


def test_temporary_files_of_a_killed_write_go_at_the_next_start(tmp_path: Path, monkeypatch) -> None:
    """kill -9 between atomic_write_text's write and its rename strands .latest.<pid>@<host>.tmp
    for good; the next trainer on the run removes such files, and only such (its own process's
    name for them is the one it looks for)."""
    run_dir, host = tmp_path / "save" / "r", socket.gethostname()
    run_dir.mkdir(parents=True)
    written, replace = [], os.replace
    monkeypatch.setattr(utils.os, "replace", lambda src, dst: written.append(Path(src).name) or replace(src, dst))
    utils.atomic_write_text(run_dir / "config.json", "{}")
    assert written == [f".config.json.{os.getpid()}@{host}.tmp"]
    dead = finished_pid()
    stranded = [run_dir / f".config.json.{dead}@{host}.tmp", run_dir / f".vocab.json.{dead}@{host}.tmp",
                run_dir.parent / f".latest.{dead}@{host}.tmp", run_dir.parent / f".latest.{dead}.tmp"]
    others = [run_dir / f".config.json.{os.getpid()}@{host}.tmp",  # a writer still at work
              run_dir.parent / f".latest.{dead}@another-host.tmp",  # a shared file system's other host
              run_dir / f".notes.{dead}.tmp", run_dir.parent / f".config.json.{dead}@{host}.tmp"]  # not ours
    for path in stranded + others:
        path.write_text("sk")
    runs.remove_unfinished_saves(run_dir)
    assert [path.exists() for path in stranded + others] == [False] * len(stranded) + [True] * len(others)


def test_latest_names_a_run_whose_name_begins_or_ends_with_a_space(tmp_path: Path) -> None:
    """A corpus ' notes.txt' gives a run ' notes-...': the pointer's spaces are the name's, and a
    run without them beside it is not the one resumed or sampled; spaces no run has are a hand edit's."""
    for name in ("a", "a ", " b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    for name in ("a ", " b"):
        (tmp_path / "latest").write_text(name + "\n", encoding="utf-8")
        assert runs.resolve_run_dir(str(tmp_path), "--init_from") == tmp_path / name
    (tmp_path / "latest").write_text("a  \r\n", encoding="utf-8")  # edited by hand: no run has that name
    assert runs.resolve_run_dir(str(tmp_path), "--init_from") == tmp_path / "a"


def test_a_run_as_dot_dot_has_its_name_and_a_locked_folder_is_a_run_not_saved_yet(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """--init_from .. from inside a run's best/ is that run by its real name (its name, and where
    `latest` goes, come from it); a folder with only RunLock's .lock is a run before its first save."""
    run_dir = tmp_path / "save" / "r"
    (run_dir / "best").mkdir(parents=True)
    (run_dir / "config.json").write_text("{}")
    monkeypatch.chdir(run_dir / "best")
    found = runs.resolve_run_dir("..", "--init_from")
    assert found.name == "r" and found.resolve() == run_dir and found.parent.resolve() == tmp_path / "save"
    starting = tmp_path / "save" / "starting"
    starting.mkdir()
    (starting / ".lock").write_text("pid 1\n")
    with pytest.raises(utils.CharRNNError, match="no config.json: a run still before its first save, or one killed"):
        runs.resolve_run_dir(str(starting), "--save_dir")


def test_discarding_removes_only_what_the_session_put_there(tmp_path: Path) -> None:
    new = tmp_path / "new"
    lock = runs.RunLock(new, "--save_dir")
    for name in ("config.json", "best/ckpt-1.index", "scratch.txt"):  # a folder the lock made: all of it goes
        (new / name).parent.mkdir(exist_ok=True)
        (new / name).write_text("{}")
    lock.release(discard=True)
    assert not new.exists()
    mine = tmp_path / "mine"  # made by the user, then named by --run_name
    (mine / "notes").mkdir(parents=True)
    lock = runs.RunLock(mine, "--save_dir")
    (mine / "config.json").write_text("{}")
    lock.release(discard=True)
    assert sorted(p.name for p in mine.iterdir()) == ["notes"]  # the run's files go, the user's stay
    kept = runs.RunLock(tmp_path / "kept", "--save_dir")
    kept.release()
    assert (tmp_path / "kept" / ".lock").is_file()
    (tmp_path / "kept" / "config.json").write_text("{}")  # a run: discarding a session on it changes nothing
    runs.RunLock(tmp_path / "kept", "--init_from").release(discard=True)
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [".lock", "config.json"]


def test_a_multiworker_run_resumed_on_one_machine_is_told_the_flag_came_from_its_config(run_copy: Path) -> None:
    config = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    config["args"]["strategy"] = "multiworker"
    (run_copy / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    before = {p.name: p.read_bytes() for p in run_copy.iterdir() if p.is_file()}
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "8", cwd=run_copy.parents[1], env=env)
    assert_refused(result, "--strategy multiworker needs TF_CONFIG", "--strategy multiworker in its config.json",
                   "pass --strategy auto")
    assert {p.name: p.read_bytes() for p in run_copy.iterdir() if p.is_file()} == before


def test_resume_flags_replace_the_saved_ones(trained, run_copy: Path) -> None:
    """A length flag replaces all three saved limits (the run ended by --max_steps 6 trains on
    under --num_epochs), a corpus flag the saved other one, an old keep probability the saved rate."""
    cwd = run_copy.parents[1]
    data_dir = cwd / "books"
    data_dir.mkdir()
    shutil.copy(trained["corpus"], data_dir / "input.txt")
    result = run("train.py", "--init_from", str(run_copy), "--num_epochs", "9", "--stop_at_step", "8",
                 "--learning_rate", "0.002", "--data_dir", str(data_dir), "--output_keep_prob", "0.75",
                 "--input_keep_prob", "0.5", cwd=cwd)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert pointer_step(run_copy) == 8
    # Ended at its floor by --max_steps 6, the run's learning rate goes back near the new peak: said.
    assert ("the new schedule (--num_epochs 9 --learning_rate 0.002, without the saved --max_steps 6) reshapes the "
            "learning rate over the whole run: step 7 trains at 2.00e-03, where the saved schedule had 3.00e-04"
            ) in result.stderr, result.stderr
    # and trains at it (the rate TensorBoard logged for the step), not only says so.
    logged = read_scalars(cwd / "logs" / "run@save")["train/learning_rate"]  # a copy's own TensorBoard run
    rates = {step: float(rate) for step, rate in logged}
    assert sorted(rates) == [7, 8] and rates[7] == pytest.approx(2.0e-3, rel=0.005), rates
    saved = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    assert (saved["args"]["num_epochs"], saved["args"]["max_steps"], saved["args"]["time_budget"]) == (9, 0, None)
    assert (saved["args"]["data_dir"], saved["args"]["input"]) == (str(data_dir), None)
    # The embedded input kept with probability 0.75 * 0.5, as the old tool's two dropouts of it did.
    assert (saved["args"]["dropout"], saved["args"]["input_dropout"]) == (0.25, 0.625)
    assert (saved["model"]["dropout"], saved["model"]["input_dropout"]) == (0.25, 0.625)
    # --dropout alone then means what it means in a new run: none of the embedded input (the old flags'
    # 0.625 stayed, and only --input_keep_prob 1 could clear it).
    result = run("train.py", "--init_from", str(run_copy), "--stop_at_step", "9", "--dropout", "0.1", cwd=cwd)
    assert result.returncode == 0, result.stderr
    saved = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    assert (saved["model"]["dropout"], saved["model"]["input_dropout"]) == (0.1, 0.0)


def test_a_resume_on_too_short_a_text_is_told_what_it_can_change(run_copy: Path) -> None:
    """A resumed run keeps --seq_length and --val_frac: the advice is a longer text (a smaller
    --batch_size, which it may change, leaves no window of --seq_length for validation here)."""
    cwd = run_copy.parents[1]
    (cwd / "short.txt").write_text(tiny_text()[:300], encoding="utf-8")  # training part fits, validation not
    assert_refused(run("train.py", "--init_from", str(run_copy), "--input", "short.txt", "--max_steps", "8", cwd=cwd),
                   "validation text is too short", "Pass a longer text: a resumed run keeps its --val_frac and "
                   "--seq_length")
    (cwd / "short.txt").write_text(tiny_text()[:100], encoding="utf-8")
    assert_refused(run("train.py", "--init_from", str(run_copy), "--input", "short.txt", "--max_steps", "8", cwd=cwd),
                   "not enough text", "Use a longer text (a resumed run keeps its --seq_length).")


def test_a_copy_from_files_saved_again_with_a_byte_order_mark(run_copy: Path) -> None:
    """config.json and `latest` saved again by an editor that writes a UTF-8 BOM (Windows Notepad),
    with a hand-edited saved length beside: the copy goes on, with no schedule notice to give."""
    config = run_copy / "config.json"
    record = json.loads(config.read_text(encoding="utf-8"))
    record["args"]["time_budget"] = 600  # a number, not the "10m" train.py saves
    config.write_text(json.dumps(record), encoding="utf-8-sig")
    (run_copy.parent / "latest").write_text("run\n", encoding="utf-8-sig")
    result = run("train.py", "--init_from", str(run_copy.parent), "--save_dir", "other", "--max_steps", "7",
                 cwd=run_copy.parents[1])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert pointer_step(run_copy.parents[1] / "other" / "run") == 7 and "reshapes" not in result.stderr


def test_a_resume_on_another_validation_text_starts_best_anew(run_copy: Path) -> None:
    """The best validation loss was measured on the saved validation text: under another one (here
    --eval_symbols, as well a grown corpus) it compares with nothing, and best/ follows the new text."""
    cwd = run_copy.parents[1]
    config = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    del config["args"]["val_sha256"]  # as saved before the fingerprint: nothing to compare, no warning
    (run_copy / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    first = run("train.py", "--init_from", str(run_copy), "--max_steps", "7", cwd=cwd)
    assert first.returncode == 0 and "validation text" not in first.stderr, first.stderr
    assert json.loads((run_copy / "config.json").read_text(encoding="utf-8"))["args"]["val_sha256"]
    changed = run("train.py", "--init_from", str(run_copy), "--max_steps", "8", "--eval_symbols", "40", cwd=cwd)
    assert changed.returncode == 0, changed.stderr
    assert "does not compare with this session's: it was measured on another validation text" in changed.stderr, \
        changed.stderr
    assert [p.name for p in (run_copy / "best").glob("ckpt-*.index")] == ["ckpt-8.index"]
    same = run("train.py", "--init_from", str(run_copy), "--max_steps", "9", cwd=cwd)  # --eval_symbols 40 saved
    assert same.returncode == 0 and "validation text" not in same.stderr, same.stderr


@pytest.mark.parametrize("own_prepared", [False, True], ids=["new-text", "text-prepared-before"])
def test_resume_on_a_text_whose_characters_come_in_another_order(run_copy: Path, own_prepared: bool) -> None:
    """A grown or edited corpus, or another text to fine-tune on: its own vocabulary would order the
    same characters otherwise (by frequency), so it is prepared on the run's, and the run goes on.
    Where a run of its own prepared it before, that preparation is not taken for the run's."""
    cwd = run_copy.parents[1]
    symbols = json.loads((run_copy / "vocab.json").read_text(encoding="utf-8"))["symbols"]
    (cwd / "subset.txt").write_text(tiny_text(1, "red barn birds sang"), encoding="utf-8")
    if own_prepared:
        own = run("train.py", "--input", "subset.txt", *TINY, "--max_steps", "1", "--save_dir", "other", cwd=cwd)
        assert own.returncode == 0, own.stderr
    result = run("train.py", "--init_from", str(run_copy), "--input", str(cwd / "subset.txt"), "--max_steps", "8",
                 cwd=cwd)
    assert result.returncode == 0 and "preparing it on the run's vocabulary" in result.stderr, result.stderr
    # Once: not first on its own vocabulary as well, only to compare (a multi-GB corpus took twice as long).
    assert len(re.findall(r"preparing .* \([\d.]+ MB\) into ", result.stderr)) == 1, result.stderr
    assert pointer_step(run_copy) == 8
    saved = json.loads((run_copy / "vocab.json").read_text(encoding="utf-8"))["symbols"]
    assert [s for s, _ in saved] == [s for s, _ in symbols]  # the same ids, this text's counts
    sampled = run("sample.py", "--save_dir", str(run_copy), "-n", "20", cwd=cwd)
    assert sampled.returncode == 0 and len(sampled.stdout) == 20 + 1, sampled.stderr


def test_resume_on_a_text_where_a_known_character_is_rare(tmp_path: Path) -> None:
    """Under --min_char_count the text's own vocabulary folds a character that is rare there into
    the unknown symbol, though the run has an id for it: it still goes on, on the run's ids."""
    (tmp_path / "a.txt").write_text(tiny_text(), encoding="utf-8")
    (tmp_path / "b.txt").write_text(tiny_text(1, "the cat sat on a mat") + "dog\n", encoding="utf-8")  # g: once
    first = run("train.py", "--input", "a.txt", *TINY, "--min_char_count", "2", "--max_steps", "2",
                "--run_name", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    result = run("train.py", "--init_from", "save/run", "--input", "b.txt", "--max_steps", "3", cwd=tmp_path)
    assert result.returncode == 0 and "preparing it on the run's vocabulary" in result.stderr, result.stderr
    assert pointer_step(tmp_path / "save" / "run") == 3


@pytest.mark.parametrize("short_chars, length_saved", [(None, False), (600, False), (600, True)])
def test_resume_on_a_shorter_text(tmp_path: Path, short_chars: int | None, length_saved: bool) -> None:
    """The same characters in the same frequency order, but fewer batches per epoch than the saved
    position. A run that saved its text's length goes on from the same share of its epoch on the new
    streams; one saved before it did (no train_symbols), from the next epoch. Neither fails on a
    missing batch. 600 characters: 480 train, 6 batches of 4 x 16, so the saved batch 6 is one past
    the last."""
    block = "".join(tiny_text().splitlines(keepends=True)[:10])
    (tmp_path / "long.txt").write_text(block * 40, encoding="utf-8")
    (tmp_path / "short.txt").write_text(block if short_chars is None else (block * 2)[:short_chars], encoding="utf-8")
    first = run("train.py", "--input", "long.txt", *TINY, "--val_frac", "0.2", "--max_steps", "6",
                "--save_every", "3", "--eval_every", "3", "--run_name", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    if not length_saved:
        forget_saved(tmp_path / "save" / "run", "train_symbols")
        forget_in_checkpoints(tmp_path / "save" / "run", {"train_symbols", "val_sha256"})
    result = run("train.py", "--init_from", "save/run", "--input", "short.txt", "--max_steps", "8", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert pointer_step(tmp_path / "save" / "run") == 8
    if length_saved:  # batch 6 of the long text's 187: the start of the epoch
        assert re.search(r"\(grown or edited\): the text is cut into other streams, .*\(epoch 0, batch 6 of the 187 "
                         r"that the text had per epoch\): batch 0 of \d+\.", result.stderr), result.stderr
        return
    assert "the saved position (epoch 0, batch 6) is past this corpus's" in result.stderr, result.stderr
    if short_chars is not None:
        assert "6 batches per epoch" in result.stderr, result.stderr
    assert finite_checkpoint(tmp_path / "save" / "run" / "ckpt-8")["epoch/.ATTRIBUTES/VARIABLE_VALUE"] == 1


def test_a_resume_killed_before_its_first_save_on_another_text_is_judged_by_the_checkpoint_s_text(
        tmp_path: Path) -> None:
    """A resume on another text rewrites config.json (the new corpus, its validation fingerprint and
    length) just before its first checkpoint; killed between the two, the run's config.json names the
    new text while its checkpoints were trained and validated on the old. The next resume (the new
    text, from config.json) must judge the checkpoint's best loss and position by the text the
    checkpoint recorded: a best loss of the old text, kept, made best/ stay on the old model for good,
    and the old hidden state went on in other streams."""
    block = "".join(tiny_text().splitlines(keepends=True)[:10])
    (tmp_path / "old.txt").write_text(block * 40, encoding="utf-8")
    (tmp_path / "new.txt").write_text(block[::-1] * 50, encoding="utf-8")  # the same characters
    run_dir = tmp_path / "save" / "run"
    first = run("train.py", "--input", "old.txt", *TINY, "--max_steps", "4", "--save_every", "2",
                "--eval_every", "2", "--run_name", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    shutil.copytree(run_dir, tmp_path / "before")
    other = run("train.py", "--init_from", "save/run", "--input", "new.txt", "--max_steps", "6", cwd=tmp_path)
    assert other.returncode == 0 and "does not compare" in other.stderr, other.stderr
    # The kill: the new config.json, the old checkpoints.
    config = (run_dir / "config.json").read_bytes()
    shutil.rmtree(run_dir)
    shutil.copytree(tmp_path / "before", run_dir)
    (run_dir / "config.json").write_bytes(config)

    result = run("train.py", "--init_from", "save/run", "--max_steps", "6", cwd=tmp_path)
    assert result.returncode == 0 and "at step 4" in result.stderr, result.stderr
    assert "does not compare with this session's: it was measured on another validation text" in result.stderr
    assert "(grown or edited): the text is cut into other streams" in result.stderr, result.stderr
    # Saved now: the next resume is judged by the new text's record, and says neither.
    again = run("train.py", "--init_from", "save/run", "--max_steps", "7", cwd=tmp_path)
    assert again.returncode == 0 and "at step 6" in again.stderr, again.stderr
    assert "does not compare" not in again.stderr and "cut into other streams" not in again.stderr, again.stderr


def test_a_checkpoint_saved_before_it_recorded_its_text_is_judged_by_config_json(run_copy: Path) -> None:
    """Checkpoints saved before they recorded their text are judged by config.json, as before: resumed
    on the same text, the run keeps its best loss and goes on exactly (an empty record compared would
    have started best/ again and cut the text anew on every old run's first resume)."""
    forget_in_checkpoints(run_copy, {"train_symbols", "val_sha256"})
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "8", cwd=run_copy.parents[1])
    assert result.returncode == 0 and "at step 6" in result.stderr, result.stderr
    assert "does not compare" not in result.stderr and "cut into other streams" not in result.stderr, result.stderr


@pytest.mark.skipif(os.name == "nt", reason="a Windows path is a path there")
def test_a_run_trained_on_windows_resumed_here_writes_its_events_in_logs(run_copy: Path) -> None:
    """config.json keeps the --log_dir a run was trained with, absolute: C:\\Users\\...\\logs from
    Windows became a folder of that name in the working directory under WSL or Linux."""
    cwd = run_copy.parents[1]
    config = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    config["args"]["log_dir"] = "C:\\Users\\홍길동\\char-rnn\\logs"
    config["args"]["run_dir"] = "C:\\Users\\홍길동\\char-rnn\\save\\run"  # as Windows saved it
    (run_copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    result = run("train.py", "--init_from", "save/run", "--max_steps", "7", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert ("the run's --log_dir C:\\Users\\홍길동\\char-rnn\\logs is a Windows path: its TensorBoard events go to "
            "logs here") in result.stderr, result.stderr
    assert "is gone" not in result.stderr, result.stderr  # logs/ is this session's choice, not a saved folder
    assert sorted(p.name for p in cwd.iterdir()) == ["logs", "save"]
    assert [step for step, _ in read_scalars(cwd / "logs" / "run")["train/loss"]] == [7]
    assert saved_arg(run_copy, "log_dir") == str(cwd / "logs")


def test_resume_into_another_save_dir_leaves_the_run_as_it_is(run_copy: Path) -> None:
    """char-rnn-tensorflow's --init_from X --save_dir Y: start from X's checkpoint, save in Y."""
    cwd = run_copy.parents[1]
    before = file_hashes(run_copy)
    result = run("train.py", "--init_from", str(run_copy), "--save_dir", "elsewhere", "--max_steps", "8", cwd=cwd)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "resumed" in result.stderr and "at step 6" in result.stderr, result.stderr
    assert file_hashes(run_copy) == before
    fork = cwd / "elsewhere" / "run"
    assert pointer_step(fork) == 8 and (fork / "best" / "checkpoint").exists()
    assert (cwd / "elsewhere" / "latest").read_text().strip() == "run"
    # Its TensorBoard run is its own, not the source's (same name, same --log_dir).
    assert [step for step, _ in read_scalars(cwd / "logs" / "run@elsewhere")["train/loss"]] == [7, 8]
    assert not (cwd / "logs" / "run").exists()
    # Again: the fork is a run now, and a second one is refused rather than trained over.
    again = run("train.py", "--init_from", str(run_copy), "--save_dir", "elsewhere", "--max_steps", "9", cwd=cwd)
    assert_refused(again, "already holds a run")
    # A new --run_name forks beside the source; --save_dir naming the run itself resumes it in place.
    branch = run("train.py", "--init_from", str(run_copy), "--run_name", "branch", "--max_steps", "7", cwd=cwd)
    assert branch.returncode == 0, branch.stderr
    assert pointer_step(run_copy.parent / "branch") == 7 and file_hashes(run_copy) == before
    in_place = run("train.py", "--init_from", str(run_copy), "--save_dir", str(run_copy), "--max_steps", "7", cwd=cwd)
    assert in_place.returncode == 0, in_place.stderr
    assert pointer_step(run_copy) == 7 and not (run_copy / "run").exists()
    # char-rnn-tensorflow's habit: --init_from save --save_dir save goes on with the newest run, in place.
    save_dir = str(run_copy.parent)
    habit = run("train.py", "--init_from", save_dir, "--save_dir", save_dir, "--max_steps", "8", cwd=cwd)
    assert habit.returncode == 0, habit.stderr
    assert pointer_step(run_copy) == 8 and "a copy" not in habit.stderr, habit.stderr


def test_copy_run_copies_the_run_files_and_names_the_copy(tmp_path: Path) -> None:
    source = tmp_path / "my_temp_runs" / "notes_temp-lstm"  # "_temp" in the path itself
    for name in ("vocab.json", "checkpoint", "ckpt-1.index", "best/ckpt-1.index",
                 "ckpt-2_temp/part-00000-of-00001.index", ".lock", "notes.txt", "drafts/ckpt-9.index"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(name)
    (source / "config.json").write_text(json.dumps({"args": {"run_name": "notes_temp-lstm", "log_name": "a",
                                                             "seed": 3}}))
    runs.copy_run(source, tmp_path / "copy", {"run_name": "copy", "log_name": "copy@x"})
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert copied == [".unsaved-copy", "best/ckpt-1.index", "checkpoint", "ckpt-1.index", "config.json", "vocab.json"]
    saved = json.loads((tmp_path / "copy" / "config.json").read_text(encoding="utf-8"))
    assert saved["args"] == {"run_name": "copy", "log_name": "copy@x", "seed": 3}


def test_copy_cut_short_leaves_no_copied_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "run"
    for name in ("vocab.json", "checkpoint", "ckpt-1.index", "ckpt-1.data-00000-of-00001", "best/ckpt-1.index"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(name)
    (source / "config.json").write_text(json.dumps({"args": {"run_name": "run"}}))
    copy2, calls = shutil.copy2, []

    def disk_full_at_the_third(src, dst):
        calls.append(src)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return copy2(src, dst)

    monkeypatch.setattr(runs.shutil, "copy2", disk_full_at_the_third)
    with pytest.raises(runs.CharRNNError, match=r"could not copy .* \(No space left on device\)"):
        runs.copy_run(source, tmp_path / "copy", {"run_name": "copy"})
    assert not [p for p in (tmp_path / "copy").rglob("*") if p.is_file()]
    assert len([p for p in source.rglob("*") if p.is_file()]) == 6  # the source as it was


def test_unfinished_saves_are_removed(tmp_path: Path) -> None:
    """ckpt-N_temp directories are what a save killed mid-write leaves (in the run and in best/)."""
    for name in ("ckpt-9_temp/part-00000-of-00001.index", "best/ckpt-9_temp/part-00000-of-00001.index",
                 "ckpt-8.index", "best/ckpt-8.index", "notes_temp.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    runs.remove_unfinished_saves(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["best/ckpt-8.index", "ckpt-8.index", "notes_temp.txt"]


def test_checkpoints_go_by_step_and_only_ckpt_n_is_one(tmp_path: Path) -> None:
    """ckpt-9 is older than ckpt-10 (not by name); a copy beside them (ckpt-2 copy.index) is none; a
    hand-edited list's name without a number is the oldest; best/'s goes before the run's own at one step."""
    for name in ("ckpt-10", "ckpt-9", "ckpt-2 copy", "ckpt-x", "best/ckpt-10"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / f"{name}.index").write_bytes(b"")
    assert runs.checkpoints_on_disk(tmp_path) == [str(tmp_path / "ckpt-9"), str(tmp_path / "ckpt-10")]
    assert runs.resume_candidates(tmp_path, ["by-hand", str(tmp_path / "ckpt-10")]) == [
        "by-hand", str(tmp_path / "best" / "ckpt-10"), str(tmp_path / "ckpt-10")]


def test_a_failed_save_keeps_the_files_of_its_step_that_were_there_before(tmp_path: Path) -> None:
    """Only the failed save's own files go: an earlier ckpt-3 (a good checkpoint, maybe) stays, and
    so does what was in TensorFlow's way."""
    import tensorflow as tf
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path), max_to_keep=None)
    before = {tmp_path / "ckpt-3.index": b"an earlier save's", tmp_path / "ckpt-3_temp": b"in TensorFlow's way"}
    for path, data in before.items():
        path.write_bytes(data)
    with pytest.raises(runs.SaveFailed, match="could not save a checkpoint"):
        runs.save_checkpoint(manager, 3, lambda: "resume")
    assert {path: path.read_bytes() for path in before} == before


def test_resume_from_another_working_directory(tmp_path: Path) -> None:
    """Relative --input and --log_dir are saved absolute; a corpus moved since is named as saved."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    first = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "2", "--run_name", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = run("train.py", "--init_from", str(tmp_path / "save" / "run"), "--max_steps", "3", cwd=elsewhere)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    steps = sorted(step for step, _ in read_scalars(tmp_path / "logs" / "run")["train/loss"])
    assert steps == [1, 2, 3] and not (elsewhere / "logs").exists()
    (tmp_path / "logs").rename(tmp_path / "logs-moved")  # its TensorBoard folder moved away: said, then made anew
    again = run("train.py", "--init_from", str(tmp_path / "save" / "run"), "--max_steps", "4", cwd=elsewhere)
    assert again.returncode == 0 and f"--log_dir {tmp_path / 'logs'} is gone" in again.stderr, again.stderr
    assert sorted(step for step, _ in read_scalars(tmp_path / "logs" / "run")["train/loss"]) == [4]
    (tmp_path / "tiny.txt").rename(tmp_path / "moved.txt")
    assert_refused(run("train.py", "--init_from", str(tmp_path / "save" / "run"), "--max_steps", "5", cwd=elsewhere),
                   "tiny.txt: no such file", "saved in", "pass --data_dir or --input")


def test_resume_from_inside_the_run_under_a_folder_with_pattern_characters(tmp_path: Path) -> None:
    """--init_from . names the run by its real name (and its save directory's `latest` beside
    it); the absolute log_dir saved under a folder named like a pattern is no checkpoint path."""
    folder = tmp_path / "runs[1]"
    folder.mkdir()
    (folder / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    first = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "2", "--run_name", "run", cwd=folder)
    assert first.returncode == 0, first.stderr
    run_dir = folder / "save" / "run"
    resumed = run("train.py", "--init_from", ".", "--max_steps", "3", cwd=run_dir)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stderr, resumed.stderr
    assert pointer_step(run_dir) == 3 and not (run_dir / "latest").exists()
    assert (folder / "save" / "latest").read_text().strip() == "run"
    assert json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["args"]["run_name"] == "run"
    assert sorted(step for step, _ in read_scalars(folder / "logs" / "run")["train/loss"]) == [1, 2, 3]


def test_new_run_never_overwrites_a_saved_run(trained, run_copy: Path) -> None:
    before = file_hashes(run_copy)
    logs = run_copy.parents[1] / "logs"
    (logs / "run").mkdir(parents=True, exist_ok=True)  # the run's own TensorBoard run
    result = run("train.py", "--input", str(trained["corpus"]), *TINY, "--save_dir", str(run_copy.parent),
                 "--run_name", "run", cwd=run_copy.parents[1])
    assert_refused(result, "already holds a run", "--init_from")
    assert file_hashes(run_copy) == before
    # Refused before a TensorBoard run was looked for: it said "logs/run is taken ...: this run's
    # TensorBoard run is run@save" first, of a run that was never made.
    assert "is taken" not in result.stderr and sorted(p.name for p in logs.iterdir()) == ["run"], result.stderr


def test_resume_falls_back_from_truncated_checkpoints(run_copy: Path) -> None:
    """The two newest checkpoints (and best/'s) are truncated: resume says so and continues from
    ckpt-2. The `checkpoint` lists are damaged too (not UTF-8, empty): the files on disk are found
    anyway."""
    for data in [*run_copy.glob("ckpt-[46].data-*"), *run_copy.glob("best/ckpt-*.data-*")]:
        data.write_bytes(data.read_bytes()[:1000])
    (run_copy / "checkpoint").write_bytes(b'model_checkpoint_path: "\xff\xfe"\n')
    (run_copy / "best" / "checkpoint").write_bytes(b"")
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "3", cwd=run_copy.parents[1])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "checkpoint is damaged (kept as checkpoint.damaged)" in result.stderr
    assert "ckpt-6 cannot be loaded" in result.stderr and "ckpt-4 cannot be loaded" in result.stderr
    assert "the newest checkpoint that loads" in result.stderr and "at step 2" in result.stderr, result.stderr
    assert (run_copy / "checkpoint.damaged").exists() and (run_copy / "best" / "checkpoint.damaged").exists()
    assert pointer_step(run_copy) == 3
    finite_checkpoint(run_copy / "ckpt-3")


def test_a_resume_from_before_a_damaged_newest_checkpoint_saves_it_again(run_copy: Path) -> None:
    """The listed ckpt-6 (and best/) cut short: the resume goes on from ckpt-4, and when it stops at step
    6 it must write ckpt-6 anew, though the list already names one (it used to stop without saving,
    and its TensorBoard events went with it)."""
    for data in [*run_copy.glob("ckpt-6.data-*"), *run_copy.glob("best/ckpt-*.data-*")]:
        data.write_bytes(data.read_bytes()[:1000])
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "8", "--stop_at_step", "6",
                 "--save_every", "100", "--eval_every", "100", cwd=run_copy.parents[1])
    assert result.returncode == 0 and "ckpt-4, the newest checkpoint that loads" in result.stderr, result.stderr
    finite_checkpoint(run_copy / "ckpt-6")
    assert list((run_copy.parents[1] / "logs").rglob("events.out.tfevents.*")), "the session's events were removed"


@pytest.mark.parametrize("marked_before", [True, False], ids=["this-version", "older-version"])
def test_tensorboard_drops_the_points_a_killed_session_wrote_past_its_last_checkpoint(
        tmp_path: Path, marked_before: bool) -> None:
    """Killed while it saved step 6 (its checkpoints cut short), after step 6's points were written:
    the resume from ckpt-4 writes steps 5 and 6 again. TensorBoard's loader (the one of
    --load_fast false, the same code as test_train's server) must serve each step once, the
    resumed session's, not both curves drawn back over each other. A run made before the session
    marks were written (marked_before False) is mended by its first resume too."""
    from tensorboard.backend.event_processing import plugin_event_accumulator
    import tensorflow as tf
    corpus, run_dir, logs = tmp_path / "tiny.txt", tmp_path / "save" / "run", tmp_path / "logs" / "run"
    corpus.write_text(tiny_text(), encoding="utf-8")
    result = run("train.py", "--input", str(corpus), *TINY, "--max_steps", "6", "--save_every", "2",
                 "--eval_every", "3", "--run_name", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for data in [*run_dir.glob("ckpt-6.data-*"), *run_dir.glob("best/ckpt-*.data-*")]:
        data.write_bytes(data.read_bytes()[:1000])
    (first,) = logs.glob("events.out.tfevents.*")
    if not marked_before:  # the events as a train.py that wrote no session start left them
        events = [record.numpy() for record in tf.data.TFRecordDataset(str(first))]
        with tf.io.TFRecordWriter(str(first)) as writer:
            for record in events:
                if not tf.compat.v1.Event.FromString(record).HasField("session_log"):
                    writer.write(record)
    result = run("train.py", "--init_from", str(run_dir), "--max_steps", "6", cwd=tmp_path)
    assert result.returncode == 0 and "ckpt-4, the newest checkpoint that loads" in result.stderr, result.stderr

    board = plugin_event_accumulator.EventAccumulator(str(logs), tensor_size_guidance={"train/loss": 0})
    board.Reload()
    served = {event.step: float(tf.make_ndarray(event.tensor_proto)) for event in board.Tensors("train/loss")}
    assert [event.step for event in board.Tensors("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [event.step for event in board.Tensors("val/loss")] == [3, 6]
    (resumed,) = set(logs.glob("events.out.tfevents.*")) - {first}
    written = {step: float(value) for step, value in read_scalars_of_file(resumed)["train/loss"]}
    assert sorted(written) == [5, 6] and all(served[step] == written[step] for step in written)


def read_scalars_of_file(events: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of the scalars in one TensorBoard events file."""
    import tensorflow as tf
    found: dict[str, list] = {}
    for event in tf.compat.v1.train.summary_iterator(str(events)):
        for value in event.summary.value:
            if value.HasField("tensor"):
                found.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return found


def test_resume_without_any_complete_checkpoint_starts_over(trained, run_copy: Path) -> None:
    """Killed before the first save completed: no `checkpoint` file, maybe a half-written index,
    and no best/ yet."""
    (run_copy / "checkpoint").unlink()
    shutil.rmtree(run_copy / "best")
    for path in run_copy.glob("ckpt-[46].*"):
        path.unlink()
    index = run_copy / "ckpt-2.index"
    index.write_bytes(index.read_bytes()[:700])
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "2", cwd=run_copy.parents[1])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "no complete checkpoint" in result.stderr and "from step 0" in result.stderr
    assert pointer_step(run_copy) == 2
    finite_checkpoint(run_copy / "ckpt-2")


def test_resume_falls_back_to_best_when_no_other_checkpoint_loads(run_copy: Path) -> None:
    """Killed while its first listed save was written (no `checkpoint` list, the files cut short)
    after an evaluation had saved best/: the run goes on from best/, which holds the whole state,
    instead of starting over (and later replacing best/ with a worse model's)."""
    (run_copy / "checkpoint").unlink()
    for data in run_copy.glob("ckpt-*.data-*"):
        data.write_bytes(data.read_bytes()[:500])
    (best,) = (run_copy / "best").glob("ckpt-*.index")
    best_step = int(best.name.removesuffix(".index").split("-")[1])
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "8", cwd=run_copy.parents[1])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"best/ckpt-{best_step}, the newest checkpoint that loads" in result.stderr, result.stderr
    assert f"at step {best_step}" in result.stderr and "from step 0" not in result.stderr
    assert pointer_step(run_copy) == 8


def test_resume_refuses_when_no_list_and_no_checkpoint_loads(run_copy: Path) -> None:
    """Several checkpoints on disk, none listed (the lists deleted) and none that loads are a run's
    saves, damaged, not a first save cut short: refused, never trained over from step 0."""
    for listed in (run_copy / "checkpoint", run_copy / "best" / "checkpoint"):
        listed.unlink()
    for data in run_copy.rglob("ckpt-*.data-*"):
        data.write_bytes(data.read_bytes()[:100])
    before = checkpoint_hashes(run_copy)
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "20", cwd=run_copy.parents[1])
    assert_refused(result, "no checkpoint loads")
    assert checkpoint_hashes(run_copy) == before


# --- sampling


@pytest.mark.parametrize("flags, needles", [
    (["-n", "-5"], ["-n -5", "0 or more"]),
    (["--temperature", "-1"], ["--temperature -1", "positive"]),
    (["--temperature", "nan"], ["--temperature nan"]),
    (["--seed", str(2**64)], ["--seed"]),
    (["-n", str(2**40)], ["-n"]),
    (["--prime", "Zq€"], ["--prime", "'Z'", "U+20AC", "--unknown skip"]),
    (["--prime", "문".encode("euc-kr")], ["--prime", "not valid UTF-8 (bytes b9 ae, which read '문' as cp949",
                                          "EUC-KR"]),  # from an EUC-KR terminal
    (["--checkpoint", "ckpt-" + "9" * 300], ["--checkpoint", "305 bytes long"]),
    (["--checkpoint", "ckpt-[0-9]"], ["--checkpoint", "TensorFlow reads"]),  # a pattern, not one checkpoint
    (["--save_dir", "x" * 300], ["--save_dir", "300 bytes long"]),
])
def test_bad_sampling_flags(trained, flags: list[str], needles: list[str]) -> None:
    result = run("sample.py", "--save_dir", str(trained["run"]), *flags, cwd=trained["root"])
    assert_refused(result, *needles)


@pytest.mark.parametrize("damage", ["no vocab.json", "vocab.json a folder", "no config.json", "damaged config.json",
                                    "damaged model entry",
                                    "damaged dropout", "damaged vocab.json", "vocab.json of another run"])
def test_sampling_a_damaged_run(run_copy: Path, damage: str) -> None:
    config, vocab = run_copy / "config.json", run_copy / "vocab.json"
    if damage == "no vocab.json":
        vocab.unlink()
        needles = ["vocab.json", "missing"]
    elif damage == "vocab.json a folder":
        vocab.unlink()
        vocab.mkdir()
        needles = ["vocab.json is not a file"]
    elif damage == "no config.json":
        config.unlink()
        needles = ["holds a run's checkpoints but not its config.json (deleted?)", "put it back from a copy"]
    elif damage == "damaged config.json":
        config.write_text(config.read_text(encoding="utf-8")[:100], encoding="utf-8")
        needles = ["config.json", "damaged (not JSON: "]
    elif damage == "damaged model entry":
        record = json.loads(config.read_text(encoding="utf-8"))
        record["model"]["rnn_size"] = "large"
        config.write_text(json.dumps(record), encoding="utf-8")
        needles = ["config.json", "damaged"]
    elif damage == "damaged dropout":
        record = json.loads(config.read_text(encoding="utf-8"))
        record["model"]["dropout"] = 1.0  # the first value refused: a rate is in [0, 1)
        config.write_text(json.dumps(record), encoding="utf-8")
        needles = ["config.json", "damaged"]
    elif damage == "damaged vocab.json":
        vocab.write_bytes(vocab.read_bytes()[:-20])
        needles = ["vocab.json", "not a valid vocab.json (not JSON: "]
    else:
        record = json.loads(vocab.read_text(encoding="utf-8"))
        record["symbols"] = record["symbols"][:5]
        vocab.write_text(json.dumps(record), encoding="utf-8")
        needles = ["vocab.json", "has 5 symbols", "another run"]
    assert_refused(run("sample.py", "--save_dir", str(run_copy), "-n", "20", cwd=run_copy.parents[1]), *needles)


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_resuming_a_run_without_its_vocabulary_is_refused(run_copy: Path, damage: str) -> None:
    """The checkpoints give each id the character vocab.json names: one made again from the text
    (grown, or another) could read the ids as other characters. A run that never saved starts over."""
    vocab = run_copy / "vocab.json"
    if damage == "missing":
        vocab.unlink()
    else:
        vocab.write_bytes(vocab.read_bytes()[:-20])
    before = file_hashes(run_copy)
    assert_refused(run("train.py", "--init_from", str(run_copy), "--max_steps", "9", cwd=run_copy.parents[1]),
                   "vocab.json", "The run's checkpoints give each id the character", "copy vocab.json back")
    assert file_hashes(run_copy) == before


def test_a_vocabulary_lost_before_the_first_save_is_made_again(tmp_path: Path, caplog) -> None:
    """Without vocab.json, a run with no checkpoint takes the text's own vocabulary (a warning);
    one whose only checkpoints are best/'s is refused, as one with checkpoints beside it is."""
    import plan
    with caplog.at_level("WARNING", logger="charrnn"):
        assert plan.saved_vocabulary(tmp_path) is None  # the text's own is taken
    assert "writing it again from the corpus (the run has no checkpoint yet)" in caplog.text
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "ckpt-4.index").write_bytes(b"")
    with pytest.raises(utils.CharRNNError, match="The run's checkpoints give each id the character"):
        plan.saved_vocabulary(tmp_path)


def test_sampling_falls_back_from_a_listed_checkpoint_that_is_corrupt(run_copy: Path) -> None:
    """The `checkpoint` list is intact, but the newest checkpoint it names is cut short (a copy that
    ran out of space, say): the next older one is used, and we are told."""
    cwd = run_copy.parents[1]
    data = next(run_copy.glob("ckpt-6.data-*"))
    data.write_bytes(data.read_bytes()[:500])
    (run_copy / "best").rename(run_copy / "best.aside")  # its step-6 checkpoint would come before ckpt-4
    result = run("sample.py", "--save_dir", str(run_copy), "-n", "20", "--seed", "1", cwd=cwd)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "ckpt-6 cannot be loaded" in result.stderr and "ckpt-4, the newest checkpoint that loads" in result.stderr
    (run_copy / "best.aside").rename(run_copy / "best")
    # Every checkpoint of the run cut short: best/ holds a whole model too, and samples, as a resume goes on from it.
    for data in run_copy.glob("ckpt-*.data-*"):
        data.write_bytes(data.read_bytes()[:500])
    (best_index,) = (run_copy / "best").glob("ckpt-*.index")
    result = run("sample.py", "--save_dir", str(run_copy), "-n", "20", cwd=cwd)
    assert result.returncode == 0 and len(result.stdout) == 20 + 1, result.stderr
    assert f"best/{best_index.stem}, the newest checkpoint that loads" in result.stderr, result.stderr
    best = run("sample.py", "--save_dir", str(run_copy), "--checkpoint", "best", "-n", "20", cwd=cwd)
    assert best.returncode == 0 and len(best.stdout) == 20 + 1, best.stderr  # the text may hold line breaks


def test_sampling_falls_back_from_corrupt_checkpoints(run_copy: Path) -> None:
    cwd = run_copy.parents[1]
    # A damaged `checkpoint` list, and the newest index overwritten with garbage: the checkpoint
    # files on disk are found anyway, the newest fails, the next older one is used, and we are told
    # (best/ removed: its step-6 checkpoint would come before ckpt-4).
    shutil.rmtree(run_copy / "best")
    (run_copy / "checkpoint").write_text("garbage\n")
    (run_copy / "ckpt-6.index").write_bytes(os.urandom(1609))
    result = run("sample.py", "--save_dir", str(run_copy), "-n", "20", "--seed", "1", cwd=cwd)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("checkpoint files") == 1, result.stderr  # one warning says it, not two
    assert "checkpoint is damaged; looking for the checkpoint files themselves" in result.stderr
    assert "ckpt-6 cannot be loaded" in result.stderr and "ckpt-4, the newest checkpoint that loads" in result.stderr
    assert len(result.stdout.strip("\n")) > 0
    # Every checkpoint damaged: one message that lists what was tried.
    for data in run_copy.glob("ckpt-*.data-*"):
        data.write_bytes(data.read_bytes()[:500])
    result = run("sample.py", "--save_dir", str(run_copy), "-n", "20", cwd=cwd)
    assert_refused(result, "no checkpoint loads", "ckpt-2")


def test_sampling_with_checkpoints_of_another_model(run_copy: Path) -> None:
    """config.json says 48 units, the checkpoints hold 32: one message, without TensorFlow's
    warning per unmatched value after it."""
    record = json.loads((run_copy / "config.json").read_text(encoding="utf-8"))
    record["model"]["rnn_size"] = 48
    (run_copy / "config.json").write_text(json.dumps(record), encoding="utf-8")
    result = run("sample.py", "--save_dir", str(run_copy), "-n", "20", cwd=run_copy.parents[1])
    assert_refused(result, "no checkpoint loads", "another model", "ckpt-6")
    assert "WARNING" not in result.stderr, result.stderr


def test_sampling_into_a_closed_pipe(trained) -> None:
    """python sample.py | head: the reader leaving early is not an error."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "sample.py"), "--save_dir", str(trained["run"]),
                             "-n", "200000"], cwd=trained["root"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode("utf-8", "replace")
    assert proc.wait(timeout=TIMEOUT) == 0 and "Traceback" not in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_sampling_onto_a_full_disk(trained) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, str(ROOT / "sample.py"), "--save_dir", str(trained["run"]), "-n", "50"],
                                cwd=trained["root"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    assert_refused(result, "could not write the sample to standard output (No space left on device)")


# ---------------------------------------------------------------------------------------------
# Must 2: kill -9 at any moment, including in the middle of a checkpoint write


def test_kill9_anywhere_then_resume(tmp_path: Path) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(tiny_text(), encoding="utf-8")
    run_dir = tmp_path / "save" / "k"
    first = ["--input", str(corpus), *TINY, "--run_name", "k", "--max_steps", "100", "--save_every", "1",
             "--eval_every", "7", "--print_every", "1"]
    resume = ["--init_from", str(run_dir)]

    def check_and_resume(killed_when: str) -> Trainer:
        """After a kill: the files that exist are whole; the restart resumes from the listed checkpoint."""
        if not (run_dir / "config.json").exists():  # killed before the run wrote anything but its lock
            refused = run("train.py", *resume, cwd=tmp_path)
            assert_refused(refused, "no config.json", "before its first save, or one killed then", "start it again")
            trainer = Trainer(*first, cwd=tmp_path)  # ... so the same command starts it again
            trainer.wait_for(r"run k: checkpoints in")
            return trainer
        json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        json.loads((run_dir / "vocab.json").read_text(encoding="utf-8"))
        step = pointer_step(run_dir)
        trainer = Trainer(*resume, cwd=tmp_path)
        trainer.wait_for(r"resumed .* at step|from step 0")
        expected = f"at step {step} " if step is not None else "from step 0"
        assert expected in trainer.text() and "cannot be loaded" not in trainer.text(), (killed_when, trainer.text())
        return trainer

    # 1. While TensorFlow starts (the run directory and its lock exist, maybe nothing else).
    trainer = Trainer(*first, cwd=tmp_path)
    trainer.wait_for(r"using prepared data|prepared \d")
    time.sleep(0.5)
    trainer.kill9()
    # 2. In the middle of a checkpoint write: TensorFlow's temporary ckpt-N_temp directory exists.
    trainer = check_and_resume("while starting")
    trainer.wait_for(r" step \d+ epoch")
    deadline, caught = time.monotonic() + 60, False
    while not caught and time.monotonic() < deadline and trainer.proc.poll() is None:
        caught = any(name.endswith("_temp") for name in os.listdir(run_dir))
    trainer.kill9()
    assert caught, "never saw a checkpoint being written:\n" + trainer.text()
    # 3. At an arbitrary moment of training.
    trainer = check_and_resume("during a checkpoint write")
    trainer.wait_for(r" step \d+ epoch")
    time.sleep(0.37)
    trainer.kill9()
    # Finally the run completes, and its last checkpoint reads back whole and finite.
    trainer = check_and_resume("while training")
    assert trainer.finish() == 0, trainer.text()
    assert "Traceback" not in trainer.text()
    assert pointer_step(run_dir) == 100
    finite_checkpoint(run_dir / "ckpt-100")


# ---------------------------------------------------------------------------------------------
# Must 3: NaN or Inf never reaches a checkpoint, least of all best/

POISON = '''
# The state is poisoned right after a resume restores it.

restore = runs.restore_checkpoint

def restore_then_poison(make_checkpoint, candidates, partial=False):
    path = restore(make_checkpoint, candidates, partial)
    checkpoint = make_checkpoint(path)  # the same variables
    import tensorflow as tf
    if {what!r} == "weights":   # the next step's loss is NaN
        w = checkpoint.trained_model.trainable_variables[0]
        w.assign(tf.fill(w.shape, float("nan")))
    else:                       # the loss is still finite, but the update makes the weights NaN
        slots = checkpoint.optimizer.v if {what!r} == "optimizer" else checkpoint.optimizer.v[-1:]  # one variable
        for v in slots:
            v.assign(-tf.ones_like(v))
    return path

runs.restore_checkpoint = restore_then_poison
'''


@pytest.mark.parametrize("what", ["weights", "optimizer", "one variable"])
def test_nan_stops_training_and_keeps_good_checkpoints(run_copy: Path, tmp_path: Path, what: str) -> None:
    wrapper = fault_wrapper(tmp_path / "poison.py", POISON, what=what)
    before = checkpoint_hashes(run_copy)
    # Evaluate and save after every step: the first chance to write NaN anywhere is taken.
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "20", "--save_every", "1",
                 "--eval_every", "1", cwd=run_copy.parents[1], wrapper=wrapper)
    assert_refused(result, "loss became nan" if what == "weights" else "NaN", "step 7",
                   "--learning_rate", "intact", str(run_copy))
    assert checkpoint_hashes(run_copy) == before  # no checkpoint, no best/, no pointer was touched
    assert pointer_step(run_copy) == 6
    finite_checkpoint(run_copy / "ckpt-6")
    finite_checkpoint(run_copy / "best" / "ckpt-6")


# ---------------------------------------------------------------------------------------------
# Must 4: one trainer per run; a dead trainer's lock is taken over


def test_second_trainer_on_the_same_run_refuses(trained, run_copy: Path) -> None:
    cwd = run_copy.parents[1]
    first = Trainer("--init_from", str(run_copy), "--max_steps", "100000", "--eval_every", "100000",
                    "--print_every", "1", cwd=cwd)
    try:
        first.wait_for(r"resumed .* at step 6")
        second = run("train.py", "--init_from", str(run_copy), cwd=cwd)
        assert_refused(second, str(run_copy), "is being trained by", f"pid {first.proc.pid}")
        # A new run given the same name is refused too.
        third = run("train.py", "--input", str(trained["corpus"]), *TINY, "--save_dir", str(run_copy.parent),
                    "--run_name", "run", cwd=cwd)
        assert_refused(third, "is being trained by", f"pid {first.proc.pid}")
        # A SIGINT before the first step ends the session unsaved, with 130: the two refusals above
        # used to outlast the first's start-up by under a second, and under load they did not.
        first.wait_for(r" step 7 epoch")
    finally:
        first.proc.send_signal(signal.SIGINT)
        assert first.finish() == 0, first.text()
    assert "stopped at step" in first.text()


def test_stale_lock_of_a_killed_trainer_is_taken_over(run_copy: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; import runs; "
                               f"lock = runs.RunLock(Path({str(run_copy)!r}), '--init_from'); print('locked', flush=True); "
                               "time.sleep(600)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    assert (run_copy / ".lock").read_text().strip() == f"pid {holder.pid}"  # the stale lock file stays
    result = run("train.py", "--init_from", str(run_copy), "--max_steps", "7", cwd=run_copy.parents[1])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "resumed" in result.stderr and pointer_step(run_copy) == 7


# ---------------------------------------------------------------------------------------------
# Must 5: disk full while saving


def small_filesystem(path: Path, size: str = "2m") -> bool:
    """A real tmpfs of a few MB when this process may mount one (root); False otherwise."""
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def fill(path: Path, leave: int) -> None:
    """Fill the filesystem of path so that about `leave` bytes stay free."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(path / f"filler-{leave}", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_disk_full_while_saving(trained, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    mounted = small_filesystem(disk)
    try:
        run_dir = disk / "save" / "run"
        shutil.copytree(trained["run"], run_dir)
        before = checkpoint_hashes(run_dir)
        logs = ["--log_dir", str(tmp_path / "logs")]  # TensorBoard's writer is not the subject here
        popen = {}
        if mounted:  # a real full disk: room for the run files, not for a 90 KB checkpoint
            fill(disk, leave=48 * 1024)
        else:  # no mount allowed: the same failure through the file size limit (EFBIG)
            import resource
            popen["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (48 * 1024, 48 * 1024))
        result = run("train.py", "--init_from", str(run_dir), "--max_steps", "10", "--save_every", "1",
                     "--eval_every", "100", *logs, cwd=tmp_path, **popen)
        reason = "No space left on device" if mounted else "File too large"
        assert_refused(result, "could not save a checkpoint", reason, f"checkpoints in {run_dir} are intact: resume with")
        assert "tempstate" not in result.stderr
        assert pointer_step(run_dir) == 6
        after = checkpoint_hashes(run_dir)
        assert {k: v for k, v in after.items() if k in before} == before
        assert not list(run_dir.glob("ckpt-7*")), "the failed save's files stay, taking a model's space"
        finite_checkpoint(run_dir / "ckpt-6")
        if mounted:  # full to the last byte: even the small run files cannot be written
            fill(disk, leave=0)
            result = run("train.py", "--init_from", str(run_dir), "--max_steps", "10", *logs, cwd=tmp_path)
            assert_refused(result, "No space left on device", "intact")
            assert pointer_step(run_dir) == 6
            finite_checkpoint(run_dir / "ckpt-6")
            json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
            # TensorBoard's events on a full disk: the same kind of message, not a traceback.
            result = run("train.py", "--input", str(trained["corpus"]), *TINY, "--max_steps", "2",
                         "--save_dir", str(tmp_path / "save"), "--log_dir", str(disk / "logs"), cwd=tmp_path)
            assert_refused(result, "--log_dir", "No space left on device")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize("limit", ["full disk", "file size"])
def test_a_full_log_disk_keeps_the_steps_trained(tmp_path: Path, limit: str) -> None:
    """TensorBoard's events cannot be written mid-run (their disk is full; the file-size limit, which
    reaches TensorFlow as another kind of error, was a traceback): the run stops with the reason,
    but first saves the steps since its last checkpoint on the checkpoints' own disk."""
    logs = tmp_path / "logs"
    popen = {}
    if limit == "full disk" and not small_filesystem(logs, size="64k"):
        pytest.skip("needs a small tmpfs for --log_dir, which only root may mount")
    if limit == "file size":  # room for a checkpoint (150 KB), not for the events of 3000 steps
        import resource
        popen["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (400 * 1024, 400 * 1024))
    try:
        (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
        result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "3000", "--eval_every", "100",
                     "--print_every", "1000", "--run_name", "r", "--log_dir", str(logs), cwd=tmp_path, **popen)
        reason = "No space left on device" if limit == "full disk" else "File too large"
        found = re.search(rf"--log_dir \S+: cannot write TensorBoard events \(.*{reason}\); step (\d+) was saved in "
                          rf"save/r\. Fix what stops the write \(disk space, a file-size limit, permissions\) or pass "
                          rf"another --log_dir; the checkpoints in save/r are intact",
                          result.stderr)
        assert result.returncode == 2 and found and "Traceback" not in result.stderr, result.stderr
        assert pointer_step(tmp_path / "save" / "r") == int(found[1]) > 100  # past the last evaluation's best/
    finally:
        if limit == "full disk":
            subprocess.run(["umount", "-l", str(logs)], check=False)


@pytest.mark.skipif(os.name == "nt", reason="POSIX shell quoting")
def test_printed_commands_paste_into_a_shell() -> None:
    for path in ("save/sp ace", "save/it's", "save/$HOME", "save/plain"):
        assert shlex.split(f"python train.py --init_from {utils.shell_path(path)}")[-1] == path
    assert shlex.split(f"python train.py --init_from {utils.shell_path('-s/run')}")[-1] == "./-s/run"  # not a flag


def test_a_deleted_working_directory_is_named(tmp_path: Path) -> None:
    """A shell still in a folder that was deleted: relative paths (the defaults too) cannot be read;
    absolute ones still can."""
    gone = tmp_path / "gone"

    def run_in_gone(script: str, *args: str) -> subprocess.CompletedProcess:
        gone.mkdir()
        return subprocess.run(["bash", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "$@"', "-", sys.executable,
                               str(ROOT / script), *args], capture_output=True, text=True, timeout=TIMEOUT)

    for script in ("train.py", "sample.py"):
        assert_refused(run_in_gone(script, "--save_dir", "s"), "the working directory no longer exists",
                       "is relative to it: cd to an existing folder")
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    absolute = ["--input", str(tmp_path / "tiny.txt"), "--save_dir", str(tmp_path / "save"), "--log_dir",
                str(tmp_path / "logs"), "--run_name", "r", *TINY, "--max_steps", "2"]
    assert run_in_gone("train.py", *absolute).returncode == 0
    sampled = run_in_gone("sample.py", "--save_dir", str(tmp_path / "save"), "-n", "5")
    assert sampled.returncode == 0 and len(sampled.stdout) == 6, sampled.stderr


def test_a_save_or_log_dir_that_links_to_nothing_says_so(tmp_path: Path) -> None:
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    (tmp_path / "dangling").symlink_to(tmp_path / "unmounted")
    for flag, value in (("--save_dir", "dangling"), ("--log_dir", "dangling/logs")):
        result = run("train.py", "--input", "tiny.txt", *TINY, "--max_steps", "2", flag, value, cwd=tmp_path)
        assert_refused(result, f"{flag} dangling", f"dangling is a symbolic link to {tmp_path / 'unmounted'}, which "
                       "does not exist")
    assert not (tmp_path / "unmounted").exists()


def test_a_pipe_as_the_corpus_is_told_to_be_saved_to_a_file(tmp_path: Path) -> None:
    for typed in ("/dev/stdin", "-"):
        result = run("train.py", "--input", typed, *TINY, cwd=tmp_path, input=tiny_text())
        assert_refused(result, f"--input {typed}: ", "save it to a file first")


@pytest.mark.parametrize("run_folder_too", [False, True])
def test_best_that_cannot_be_written_keeps_the_steps_trained(tmp_path: Path, run_folder_too: bool) -> None:
    """best/ alone unwritable: the run's own checkpoint of the step is saved before the error. Where
    that fails too, one message says both, in the order they happened."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    flags = ["--input", "tiny.txt", *TINY, "--eval_every", "3", "--save_every", "1000", "--run_name", "r"]
    assert run("train.py", *flags, "--max_steps", "3", cwd=tmp_path).returncode == 0
    best = tmp_path / "save" / "r" / "best"
    shutil.rmtree(best)
    best.write_text("in the way")  # a permission that root ignores, as CI runs: a file where the folder was
    if run_folder_too:  # TensorFlow's scratch folder for step 6's checkpoint
        (tmp_path / "save" / "r" / "ckpt-6_temp").write_text("in the way")
    result = run("train.py", "--init_from", "save/r", "--max_steps", "9", cwd=tmp_path)
    if run_folder_too:
        assert_refused(result)
        assert re.search(r"error: could not save a checkpoint in save/r/best \(\w+: [^)]+\); step 6 could not be "
                         r"saved in save/r either \(\w+: [^)]+\)\. Free disk space or fix the directory; the "
                         r"checkpoints in save/r are intact: resume with --init_from save/r\n", result.stderr), result.stderr
        assert "tempstate" not in result.stderr  # TensorFlow's scratch file: its folder names it
        assert pointer_step(tmp_path / "save" / "r") == 3
        return
    assert_refused(result, "could not save a checkpoint in save/r/best", "; step 6 was saved in save/r. "
                   "Free disk space or fix best/; the checkpoints in save/r are intact: resume with --init_from save/r")
    assert pointer_step(tmp_path / "save" / "r") == 6
    # Its best loss is still best/'s (step 3's): a later improvement on that is saved there.
    best_loss = "best_val/.ATTRIBUTES/VARIABLE_VALUE"
    assert (finite_checkpoint(tmp_path / "save" / "r" / "ckpt-6")[best_loss]
            == finite_checkpoint(tmp_path / "save" / "r" / "ckpt-3")[best_loss])


def test_tf_config_places_each_task_in_the_cluster(monkeypatch) -> None:
    """A chief listed apart comes first; the workers' indexes follow it."""
    cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    for task, index in (({"type": "chief", "index": 0}, 0), ({"type": "worker", "index": 0}, 1),
                        ({"type": "worker", "index": 1}, 2)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert workers.cluster_from_env("multiworker") == workers.Cluster(worker_index=index, num_workers=3), task
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker",
                                                                                             "index": 2}}))
    with pytest.raises(utils.CharRNNError, match="is not in the cluster"):
        workers.cluster_from_env("multiworker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster}))  # the task left out: which one is this?
    with pytest.raises(utils.CharRNNError, match="needs TF_CONFIG with 'task' set, e.g. TF_CONFIG="):
        workers.cluster_from_env("multiworker")


def test_a_save_dir_without_latest_names_its_newest_runs_first(tmp_path: Path) -> None:
    save = tmp_path / "save"
    for age in range(6):  # run0 the newest
        run_dir = save / f"run{age}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text("{}", encoding="utf-8")
        os.utime(run_dir, (1e9 - age * 100, 1e9 - age * 100))
    with pytest.raises(utils.CharRNNError) as refused:
        runs.resolve_run_dir(str(save), "--save_dir")
    newest = ", ".join(str(save / f"run{age}") for age in range(5))
    assert f"Pass one of its runs, newest first: {newest}" in str(refused.value) and "run5" not in str(refused.value)


def test_tf_config_ports_go_up_to_65535(monkeypatch) -> None:
    """65535 is the last port: 65536 is refused with the others that are no port, not left to TensorFlow."""
    for port in (1, 65535, 65536, 0):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": [f"a:{port}"]},
                                                    "task": {"type": "worker", "index": 0}}))
        if 0 < port < 65536:
            assert workers.cluster_from_env("multiworker") == workers.Cluster(worker_index=0, num_workers=1)
        else:
            with pytest.raises(utils.CharRNNError, match=f"'a:{port}' is not host:port"):
                workers.cluster_from_env("multiworker")


def test_advice_after_a_failure_names_what_is_left(tmp_path: Path) -> None:
    """how_to_go_on: a run resumed in place keeps its checkpoints even when this session saved none;
    a new run or a copy to go on in that saved nothing is gone, and the same command makes it again."""
    import types

    import train
    run_dir = tmp_path / "save" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text("{}", encoding="utf-8")

    def advice(**run) -> str:
        return train.how_to_go_on(types.SimpleNamespace(**{"kept": False, "resume_dir": None, "forked_from": None,
                                                           "run_dir": run_dir, "cluster": workers.Cluster(), **run}))

    intact = f"the checkpoints in {run_dir} are intact: resume with --init_from {run_dir}"
    assert advice() == "nothing was saved: run the same command again"
    assert advice(resume_dir=run_dir) == intact  # in place: this session saved nothing, the run's are there
    fork = {"resume_dir": tmp_path / "q", "forked_from": tmp_path / "q"}
    assert advice(**fork) == "nothing was saved: run the same command again"
    assert advice(kept=True, **fork) == intact
    (run_dir / "config.json").unlink()
    assert advice(kept=True).startswith(f"{run_dir} is gone, and its checkpoints with it")


def test_latest_saved_again_with_a_byte_order_mark_still_names_its_run(tmp_path: Path) -> None:
    """An editor that writes a UTF-8 byte-order mark: the mark is no part of the run's name."""
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{}")
    (tmp_path / "latest").write_text("r\n", encoding="utf-8-sig")
    assert runs.resolve_run_dir(str(tmp_path), "--init_from") == tmp_path / "r"


def test_removing_what_was_created_stops_at_the_outermost_folder_made(tmp_path: Path) -> None:
    """ensure_writable made save/a/b inside the user's own empty folder: the clean-up removes b and a,
    not that folder, nor anything above it."""
    mine = tmp_path / "mine"
    mine.mkdir()
    created = runs.ensure_writable(mine / "a" / "b", "--save_dir")
    assert created == mine / "a"
    runs.remove_created(mine / "a" / "b", created)
    assert mine.is_dir() and not list(mine.iterdir())


def test_a_stale_lock_file_s_text_is_replaced_by_the_new_holder_s(tmp_path: Path) -> None:
    """A killed trainer's pid stays in .lock: the next holder's replaces it, so a refusal names only
    the trainer that holds the run."""
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("pid 4242424 of a trainer killed long ago\n")
    lock = runs.RunLock(run_dir, "--init_from")
    try:
        assert (run_dir / ".lock").read_text() == f"pid {os.getpid()}\n"
        with pytest.raises(runs.RunBusy) as busy:
            runs.RunLock(run_dir, "--init_from")
        assert f"is being trained by pid {os.getpid()};" in str(busy.value) and "4242424" not in str(busy.value)
    finally:
        lock.release()


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="symbolic links")
def test_discarding_a_new_run_removes_a_link_in_it_not_what_it_links_to(tmp_path: Path) -> None:
    """A new run directory the session made goes whole, a symbolic link in it as a link: the folder
    it points to (the user's) keeps its files."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    new = tmp_path / "new"
    lock = runs.RunLock(new, "--save_dir")
    (new / "link").symlink_to(outside, target_is_directory=True)
    lock.release(discard=True)
    assert not new.exists() and (outside / "keep.txt").read_text() == "mine"


def test_a_checkpoint_list_naming_only_its_newest_checkpoint(tmp_path: Path) -> None:
    """A `checkpoint` file with model_checkpoint_path alone (written by hand, or by an older tool)
    lists that checkpoint: it is not taken for a damaged list."""
    import tensorflow as tf
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\n', encoding="utf-8")
    assert runs.read_checkpoint_list(tf, tmp_path, set_aside=True) == [str(tmp_path / "ckpt-3")]
    assert (tmp_path / "checkpoint").exists() and not (tmp_path / "checkpoint.damaged").exists()
    (tmp_path / "checkpoint").unlink()
    assert runs.read_checkpoint_list(tf, tmp_path) is None


def test_tensorflow_s_op_details_are_left_out_of_an_error_s_reason() -> None:
    wrapped = OSError("{{function_node __wrapped__SaveV2_dtypes_2_device_/job:localhost/replica:0}} "
                      "/x/ckpt-1_temp: No space left on device [Op:SaveV2] name: \nmore lines")
    assert runs.tf_error_reason(wrapped) == "/x/ckpt-1_temp: No space left on device"
    assert runs.tf_error_reason(OSError()) == "OSError"


def test_a_copy_interrupted_midway_has_no_config_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.json is written last: a copy killed before then (here at vocab.json, which sorts after
    it) is no run, and never one that names its source."""
    source = tmp_path / "run"
    source.mkdir()
    for name in ("checkpoint", "ckpt-1.index", "vocab.json"):
        (source / name).write_text(name)
    (source / "config.json").write_text(json.dumps({"args": {"run_name": "run"}}))
    copy2 = shutil.copy2

    def killed_at_vocab(src, dst):
        if Path(src).name == "vocab.json":
            raise KeyboardInterrupt
        return copy2(src, dst)

    monkeypatch.setattr(runs.shutil, "copy2", killed_at_vocab)
    with pytest.raises(KeyboardInterrupt):
        runs.copy_run(source, tmp_path / "copy", {"run_name": "copy"})
    assert (tmp_path / "copy" / runs.UNSAVED_COPY).exists() and not (tmp_path / "copy" / "config.json").exists()


def test_a_batch_share_suggests_the_nearest_multiple(tmp_path: Path) -> None:
    """--batch_size 7 on 4 workers: 8 is nearer than 4 (and 1 on 4 suggests 4, not 0)."""
    for batch, fits in ((7, 8), (5, 4), (1, 4), (13, 12), (15, 16)):
        with pytest.raises(utils.CharRNNError, match=f"Try --batch_size {fits}$"):
            workers.check_batch_shares(batch, 4, "workers", resumed=False, how_to_use_fewer="")


def test_tf_config_task_must_name_an_entry_of_its_own_list(monkeypatch) -> None:
    """A parameter server or evaluator task is no training worker of this cluster (not worker 0 of it).
    Worker -1 beside a chief was worker_index 0, and chief 1 was the chief too: a second chief that
    writes the run beside the real one. Each index must name an entry of its own list."""
    cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    for task in ({"type": "worker", "index": -1}, {"type": "chief", "index": 1}, {"type": "worker", "index": 2}):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        with pytest.raises(utils.CharRNNError, match="is not in the cluster"):
            workers.cluster_from_env("multiworker")
    # An evaluator listed in the cluster (which trains on) is still no task of train.py's.
    for task in ({"type": "ps", "index": 0}, {"type": "evaluator", "index": 0}):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**cluster, "evaluator": ["d:4"]}, "task": task}))
        with pytest.raises(utils.CharRNNError, match=f"train.py runs the \"chief\" and \"worker\" tasks of a "
                                                      f"cluster, not '{task['type']}'"):
            workers.cluster_from_env("multiworker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "chief"}}))  # index left out
    assert workers.cluster_from_env("multiworker") == workers.Cluster(worker_index=0, num_workers=3)


def test_a_claim_that_fails_removes_the_folders_it_made(tmp_path: Path) -> None:
    """claim_new_dir made logs/deep for a name it then cannot create (too long for the file system):
    the refusal leaves no empty logs/deep behind."""
    with pytest.raises(utils.CharRNNError, match=r"--log_dir .*deep: cannot create x+ there \(File name too long\)"):
        runs.claim_new_dir(tmp_path / "logs" / "deep", iter(["x" * 300]), "--log_dir")
    assert not (tmp_path / "logs").exists()
