"""train.py end to end on tiny text: real training, checkpoints and event files. Most runs call
train.py's main in the test process (run_here), which spares each the 4-5 s of TensorFlow's start-up
in a new process; those about the process itself (signals, --help, a resume in a new process) start one."""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import pytest
from test_data import run_python

if TYPE_CHECKING:
    import argparse

    import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
# Most of a tiny run's 10 s is start-up: --xla off saves the 3 s of compiling the step, and
# --sample_length 0 the 1.5 s of the TensorBoard sample's. The tests that look at a sample give a
# length, and those whose figures come from the compiled step users train with put COMPILED after
# TINY (the last of a flag given wins).
TINY = ["--num_layers", "1", "--rnn_size", "32", "--embedding_size", "16", "--batch_size", "4",
        "--seq_length", "16", "--print_every", "5", "--sample_length", "0", "--warmup_steps", "5", "--xla", "off"]
COMPILED = ["--xla", "on"]


def tiny_text(seed: int = 0, words: str = "the cat sat on a mat and the dog ran to the red barn while birds sang") -> str:
    """300 lines of 9 random words: about 11,000 characters that a tiny model learns in a few steps."""
    rng = np.random.default_rng(seed)
    return "\n".join(" ".join(rng.choice(words.split(), 9)) for _ in range(300)) + "\n"


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(tiny_text(), encoding="utf-8")
    return path


def forget_saved(run_dir: Path, key: str) -> object:
    """Take key out of the run's config.json, as a version from before it saved the run: its value."""
    path = run_dir / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    value = config["args"].pop(key)
    path.write_text(json.dumps(config), encoding="utf-8")
    return value


def forget_in_checkpoints(run_dir: Path, names: set[str]) -> None:
    """Write every checkpoint of the run (best/'s too) again without the values named (the
    checkpoint's top-level names), as a version from before it saved them left them."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2
    for index in run_dir.rglob("ckpt-*.index"):
        prefix = str(index.with_suffix(""))
        reader = tf.train.load_checkpoint(prefix)
        graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
            reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        dropped = {child.node_id for child in graph.nodes[0].children if child.local_name in names}
        assert len(dropped) == len(names), f"{prefix} lacks one of {names}"
        new_id = {old: new for new, old in enumerate(i for i in range(len(graph.nodes)) if i not in dropped)}
        nodes = [node for i, node in enumerate(graph.nodes) if i not in dropped]
        for node in nodes:  # values (leaves, held by the root alone): the other nodes renumbered
            kept = [child for child in node.children if child.node_id not in dropped]
            for child in kept:
                child.node_id = new_id[child.node_id]
            del node.children[:]
            node.children.extend(kept)
        del graph.nodes[:]
        graph.nodes.extend(nodes)
        tensors = {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
                   if key.split("/")[0] not in names}
        tensors["_CHECKPOINTABLE_OBJECT_GRAPH"] = graph.SerializeToString()
        for path in index.parent.glob(f"{index.stem}.*"):
            path.unlink()
        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(tensors), shape_and_slices=[""] * len(tensors),
                          tensors=[tf.constant(value) for value in tensors.values()])


def saved_arg(run_dir: Path, key: str) -> object:
    return json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["args"][key]


def train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """train.py's main, run in this process (run_here)."""
    return run_here("train.py", *args, cwd=cwd)


def train_process(cwd: Path, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """train.py run as users run it, a process of its own."""
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout)


def run_here(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """train.py's or sample.py's main run in this test process, in cwd, its status, stdout and stderr
    given as subprocess.run gives a process's. A process of its own spends 4-5 s starting TensorFlow,
    most of what a tiny run costs; the tests of what only a process shows (its signals, environment
    and streams, a fault injected before main, a second process) run the script itself."""
    import io

    import sample
    import train
    import utils
    assert threading.current_thread() is threading.main_thread(), "the working directory and signals are the process's"
    main = {"train.py": train.main, "sample.py": sample.main}[script]
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8") for _ in range(2))
    handlers = {signum: signal.getsignal(signum) for signum in utils.stop_signals()}
    logger = (utils.logger.level, utils.logger.propagate, utils.logger.handlers[:])
    argv = sys.argv
    sys.argv = [str(ROOT / script), *args]  # argparse names the script by it
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args))
            except SystemExit as refused:  # argparse's
                status = refused.code
    finally:  # the test process's own argv, signal handlers and logging, as they were
        sys.argv = argv
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        utils.logger.setLevel(logger[0])
        utils.logger.propagate = logger[1]
        utils.logger.handlers[:] = logger[2]
    out.flush()
    err.flush()
    return subprocess.CompletedProcess([script, *args], status, out.buffer.getvalue().decode("utf-8"),
                                       err.buffer.getvalue().decode("utf-8"))


def only_run(save_dir: Path) -> Path:
    runs = [p for p in save_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def summary_events(log_dir: Path) -> Iterator[tuple[int, "tf.compat.v1.Event"]]:
    """(step, event) of every summary event in a run's TensorBoard event files, read back from disk."""
    import tensorflow as tf
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            if event.summary.value:
                yield event.step, event


def summary_values(log_dir: Path) -> Iterator[tuple[int, "tf.compat.v1.Summary.Value"]]:
    """(step, value) of every summary in a run's TensorBoard event files."""
    for step, event in summary_events(log_dir):
        for value in event.summary.value:
            yield step, value


def read_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar and text tag of a run: tag -> [(step, value as an array)]."""
    import tensorflow as tf
    found: dict[str, list] = {}
    for step, value in summary_values(log_dir):
        tensor = tf.make_ndarray(value.tensor) if value.HasField("tensor") else None
        found.setdefault(value.tag, []).append((step, tensor))
    return found


def hparams_records(log_dir: Path, kind: str) -> list:
    """The hparams plugin's records of one kind (session_start_info, session_end_info) in a run's
    TensorBoard event files, in the order written."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    return [getattr(plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content), kind)
            for _, value in summary_values(log_dir) if value.tag == f"_hparams_/{kind}"]


def hparams_of(log_dir: Path) -> dict:
    """The hyperparameters of a run's TensorBoard session, as the hparams dashboard reads them, and
    under "group" the row they go in."""
    starts = hparams_records(log_dir, "session_start_info")
    assert starts, f"no hparams in {log_dir}"
    info = starts[0]
    return {"group": info.group_name, **{k: getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}}


def session_ends(log_dir: Path) -> list[str]:
    """The statuses a run's TensorBoard sessions ended with, in the order written (the HParams table
    shows the first)."""
    from tensorboard.plugins.hparams import api_pb2
    return [api_pb2.Status.Name(end.status) for end in hparams_records(log_dir, "session_end_info")]


def listed_checkpoints(run_dir: Path) -> list[str]:
    """The checkpoints a run's `checkpoint` file lists, oldest first (CheckpointManager's --keep)."""
    return re.findall(r'all_model_checkpoint_paths: "([^"]+)"', (run_dir / "checkpoint").read_text(encoding="utf-8"))


def pointer_step(run_dir: Path) -> int | None:
    """The step of the checkpoint the `checkpoint` file names (None: no complete checkpoint yet)."""
    pointer = run_dir / "checkpoint"
    if not pointer.exists():
        return None
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', pointer.read_text(), re.M)
    return int(found.group(1)) if found else None


def checkpoint_weights(path: str, prefix: str = "model/") -> dict[str, np.ndarray]:
    import tensorflow as tf
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(prefix)}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_each_cell_trains_and_loss_falls(tmp_path: Path, corpus: Path, cell: str) -> None:
    result = train(tmp_path, "--input", str(corpus), "--model", cell, "--max_steps", "60",
                   "--eval_every", "30", "--learning_rate", "0.01", *TINY, *COMPILED)
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path / "save")
    scalars = read_scalars(tmp_path / "logs" / run.name)
    losses = [float(v) for _, v in scalars["train/loss"]]
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.5, losses
    assert (run / "config.json").is_file() and (run / "vocab.json").is_file()
    assert json.loads((run / "config.json").read_text(encoding="utf-8"))["model"]["model"] == cell
    # ... and samples (the old tool assumed LSTM's (c, h) state and crashed here on gru and rnn).
    sampled = subprocess.run([sys.executable, str(ROOT / "sample.py"), "--save_dir", str(run), "-n", "80",
                              "--prime", "the "], capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert sampled.returncode == 0 and sampled.stdout.startswith("the ") and len(sampled.stdout) > 80, sampled.stderr


def test_a_cut_vocabulary_says_its_losses_compare_only_with_the_same_cut(tmp_path: Path, corpus: Path) -> None:
    """The rarest characters as one unknown symbol make the loss lower (bits/char 4.42 against 6.48
    on Korean), which read as the same measure as a full vocabulary's."""
    result = train(tmp_path, "--input", str(corpus), "--max_steps", "1", "--max_vocab", "10", *TINY)
    assert result.returncode == 0, result.stderr
    share = re.search(r"the unknown symbol \ufffd stands for the rare characters \((\d+\.\d\d)% of the symbols\): the "
                      r"losses and bits/char count it as one character, so they compare only with runs", result.stderr)
    text = tiny_text()
    rare = sum(n for _, n in collections.Counter(text).most_common()[9:])  # all but the 9 most frequent
    assert share and float(share[1]) == pytest.approx(100 * rare / len(text), abs=0.01), result.stderr


def served_json(url: str, ready: Callable[[object], bool], seconds: float) -> object:
    """A local server's JSON answer at url, asked once a second until ready(answer) or `seconds` have
    passed: then its last answer (None if it never answered). TensorBoard loads event files in a
    thread, so a run's newest records come some time after the server starts."""
    deadline, answer = time.monotonic() + seconds, None
    while True:
        try:
            answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
            if ready(answer):
                return answer
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            return answer
        time.sleep(1)


def test_progress_lines_tensorboard_events_and_server(tmp_path: Path, corpus: Path) -> None:
    # The compiled step, as users train: its first step's compile time is what the ETA must leave out.
    result = train(tmp_path, "--input", str(corpus), "--max_steps", "20", "--eval_every", "10", *TINY,
                   "--sample_length", "40", *COMPILED)
    assert result.returncode == 0, result.stderr
    assert f"tensorboard --logdir {tmp_path / 'logs'}\n" in result.stderr  # to paste in a terminal opened elsewhere
    assert "unknown symbol" not in result.stderr  # the whole vocabulary: nothing to compare apart
    # Not a terminal here, so the progress line comes as plain lines every --print_every steps:
    # train loss, the newest validation loss once there is one, chars/s and the time left.
    progress = {int(m[1]): m[0] for m in re.finditer(r"step (\d+) epoch \d+\.\d\d loss \d\.\d{4} val (\S+) "
                                                      r"ETA \d\d:\d\d:\d\d [\d,]+ chars/s lr \S+", result.stderr)}
    assert sorted(progress) == [5, 10, 15, 20], result.stderr
    evaluation = re.search(r"step 10 epoch \d+\.\d\d: val loss (\d\.\d{4}) nats/symbol, (\d\.\d{4}) bits/char, "
                           r"perplexity (\d+\.\d{3}) per char", result.stderr)
    first_val, bpc, perplexity = evaluation[1], float(evaluation[2]), float(evaluation[3])
    assert abs(perplexity - 2 ** bpc) < 2e-3 and abs(bpc - float(first_val) / np.log(2)) < 1e-3
    assert " val - " in progress[5] and " val - " in progress[10]  # logged before step 10's evaluation
    # The time left is at the pace since the first step, which compiled the step: 15 tiny steps are
    # well under a second (the compiling, counted as training, made it 5 s).
    h, m, s = map(int, re.search(r"ETA (\d\d):(\d\d):(\d\d)", progress[5]).groups())
    assert 3600 * h + 60 * m + s < 3, progress[5]
    assert f" val {first_val} " in progress[15], (progress[15], first_val)
    run = only_run(tmp_path / "save").name
    scalars = read_scalars(tmp_path / "logs" / run)
    for tag in ("train/loss", "train/bpc", "train/learning_rate", "train/grad_norm", "train/chars_per_sec",
                "val/loss", "val/bpc", "val/perplexity", "val/best_loss", "sample", "_hparams_/session_start_info",
                "custom_scalars__config__"):
        assert tag in scalars, (tag, sorted(scalars))
    hparams = hparams_of(tmp_path / "logs" / run)
    assert (hparams["group"], hparams["corpus"], hparams["vocab_size"], hparams["model"], hparams["rnn_size"]) == (
        str(tmp_path / "logs" / run), str(corpus), len(set(tiny_text())), "lstm", 32)
    assert hparams["max_steps"] == 20 and hparams["grad_clip"] == 5 and "decay_rate" not in hparams
    saved = json.loads((tmp_path / "save" / run / "config.json").read_text(encoding="utf-8"))["args"]
    for flag in ("model", "num_layers", "rnn_size", "embedding_size", "dropout", "input_dropout", "batch_size",
                 "seq_length", "learning_rate", "warmup_steps", "min_lr_frac", "grad_clip", "unit", "max_vocab",
                 "min_char_count", "normalize", "val_frac", "eval_symbols", "num_epochs", "max_steps", "seed"):
        # What tells runs apart in the HParams table, the text val/best_loss is measured on included.
        assert hparams[flag] == (pytest.approx(saved[flag]) if isinstance(saved[flag], float) else saved[flag]), flag
    assert [step for step, _ in scalars["val/loss"]] == [10, 20]
    # Training speed from step 2 on: the first step's seconds are mostly compiling it.
    assert [step for step, _ in scalars["train/chars_per_sec"]] == list(range(2, 21))
    # It is the rate the run trains at: a step's characters over the time from the step before (its
    # train/loss written) to this one, the median over the steps. The train step alone was timed, and
    # this tiny model trained at 0.54x the rate shown.
    written = {step: event.wall_time for step, event in summary_events(tmp_path / "logs" / run)
               if event.summary.value[0].tag == "train/loss"}
    shown = [4 * 16 / (written[step] - written[step - 1]) / float(rate) for step, rate in scalars["train/chars_per_sec"]
             if step - 1 != 10]  # not across the evaluation
    assert 0.75 < np.median(shown) < 1.1, shown
    # The learning rate each step trained at (TINY: peak 3e-3, 5 warmup steps, then a cosine from the
    # peak to 10% over the other 15 steps).
    lrs = [float(v) for _, v in scalars["train/learning_rate"]]
    want = [3e-3 * (s / 5 if s <= 5 else 0.1 + 0.45 * (1 + np.cos(np.pi * (s - 6) / 15))) for s in range(1, 21)]
    np.testing.assert_allclose(lrs, want, rtol=1e-5)
    # The best validation loss is reported, and best/ holds the checkpoint of the step that made it.
    val = {step: float(v) for step, v in scalars["val/loss"]}
    best_step = min(val, key=val.get)
    assert f"best val loss {val[best_step]:.4f}" in result.stderr, result.stderr
    assert [p.name for p in (tmp_path / "save" / run / "best").glob("ckpt-*.index")] == [f"ckpt-{best_step}.index"]
    sample = scalars["sample"][0][1]
    assert sample.item().decode("utf-8").strip("`\n")  # real generated text

    # The real TensorBoard server serves the run's validation loss over HTTP.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(tmp_path / "logs"),
                               "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        query = urllib.parse.urlencode({"run": run, "tag": "val/loss"})
        points = served_json(f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}", bool, 60)
        assert points, "tensorboard did not serve val/loss"
        assert [p[1] for p in points] == [10, 20]
        # The custom-scalars layout draws train and validation on one chart each.
        layout = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/custom_scalars/layout",
                                                   timeout=5).read())
        charts = [chart["multiline"]["tag"] for chart in layout["category"][0]["chart"]]
        assert charts == [["^train/loss$", "^val/loss$"], ["^train/bpc$", "^val/bpc$"]], layout
        # The HParams table has the run's row, finished at its length limit: Success. The status is
        # the events file's last record, which the server's reload (a thread, record by record) may
        # not have reached when val/loss was first served: asked again until a status is there.
        request = json.dumps({"allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                                  "STATUS_RUNNING"], "startIndex": 0, "sliceSize": 10})
        groups = served_json(f"http://127.0.0.1:{port}/data/plugin/hparams/session_groups?"
                             + urllib.parse.urlencode({"request": request}),
                             lambda answer: any(s["status"] != "STATUS_UNKNOWN" for group in answer["sessionGroups"]
                                                for s in group["sessions"]), 30)
        sessions = [(s["name"], s["status"]) for group in groups["sessionGroups"] for s in group["sessions"]]
        assert sessions == [(run, "STATUS_SUCCESS")], groups
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_live_line_fits_a_narrow_terminal(tmp_path: Path, corpus: Path) -> None:
    """On a terminal the progress line is redrawn in place: wider than the terminal, it would wrap
    and every redraw would scroll a new line. The end goes first (the learning rate)."""
    fcntl, pty, termios = (pytest.importorskip(name) for name in ("fcntl", "pty", "termios"))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))  # 24 rows, 60 columns
    with subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--input", str(corpus), "--max_steps", "300",
                           "--eval_every", "1000", *TINY], cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=follower) as process:
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=180) == 0, shown.decode("utf-8", "replace")
    os.close(leader)
    drawn = [part.removesuffix("\x1b[K") for part in re.split(r"[\r\n]", shown.decode("utf-8"))
             if part.startswith("step ") and part.endswith("\x1b[K")]
    assert drawn and all(len(line) <= 59 for line in drawn), drawn
    assert all(re.match(r"step \d+ epoch \d+\.\d\d loss \d\.\d{4} val - ETA", line) for line in drawn), drawn


def test_a_closed_terminal_does_not_end_the_run(tmp_path: Path, corpus: Path) -> None:
    """When the terminal goes away (an SSH session closed), writing the live line fails with EIO:
    that write's traceback ended the run and deleted a new run unsaved."""
    pty = pytest.importorskip("pty")
    leader, follower = pty.openpty()
    with subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--input", str(corpus), "--max_steps", "300",
                           "--eval_every", "1000", "--run_name", "away", *TINY], cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=follower) as process:
        os.close(follower)
        shown = b""
        while b"\rstep " not in shown:
            shown += os.read(leader, 65536)
        os.close(leader)  # later writes to the terminal fail with EIO
        assert process.wait(timeout=180) == 0
    assert (tmp_path / "save" / "away" / "checkpoint").exists()


def test_eta_counts_to_stop_at_step(tmp_path: Path, corpus: Path) -> None:
    """A pause at --stop_at_step 20 of a 100,000-step run: the time left is to step 20."""
    result = train(tmp_path, "--input", str(corpus), "--max_steps", "100000", "--stop_at_step", "20",
                   "--eval_every", "20", *TINY)
    assert result.returncode == 0, result.stderr
    h, m, s = map(int, re.search(r"step 15 epoch \S+ loss \S+ val \S+ ETA (\d+):(\d\d):(\d\d)", result.stderr).groups())
    assert h * 3600 + m * 60 + s < 60, result.stderr
    # Its evaluation at step 20 saved best/: the run's own checkpoint of step 20 is saved too, to resume from.
    run_dir = only_run(tmp_path / "save")
    assert (run_dir / "best" / "ckpt-20.index").is_file() and pointer_step(run_dir) == 20


def test_resume_reaches_the_same_weights(tmp_path: Path, corpus: Path) -> None:
    # Flags off their defaults, so that any of them lost on resume changes the weights (the clip binds).
    common = ["--input", str(corpus), "--max_steps", "24", "--eval_every", "8", "--save_every", "8",
              "--dropout", "0.2", "--grad_clip", "0.35", "--min_lr_frac", "0.2", *TINY, *COMPILED]
    # The uninterrupted run goes side by side with the first half of the split one (a core each).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(train_process, tmp_path, *common, "--run_name", "whole")
        first = train_process(tmp_path, *common, "--run_name", "split", "--stop_at_step", "12")
        whole = running.result()
    assert whole.returncode == 0, whole.stderr
    assert first.returncode == 0, first.stderr
    assert "resume with" in first.stderr
    second = train_process(tmp_path, "--init_from", str(tmp_path / "save" / "split"))
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stderr and "at step 12" in second.stderr
    best_before = re.findall(r"val loss (\d\.\d{4}) nats/symbol.*\(best\)", first.stderr)[-1]
    assert f"best val loss so far {best_before}" in second.stderr  # until the resumed run validates anew
    assert "reshapes the learning rate" not in second.stderr  # the same length, the same schedule

    for weights in ("trained_model/", "model/"):  # as trained, and their average
        a = checkpoint_weights(str(tmp_path / "save" / "whole" / "ckpt-24"), weights)
        b = checkpoint_weights(str(tmp_path / "save" / "split" / "ckpt-24"), weights)
        assert a.keys() == b.keys() and a
        for name in a:
            np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    # The hidden state carried from batch to batch (mid-epoch here, so not zeros) resumes as well.
    carried = [checkpoint_weights(str(tmp_path / "save" / run / "ckpt-24"), "carried_state/")
               for run in ("whole", "split")]
    (state_a,), (state_b,) = (c.values() for c in carried)
    assert np.abs(state_a).max() > 0.01
    np.testing.assert_allclose(state_a, state_b, rtol=1e-5, atol=1e-6)

    # The TensorBoard curve of the split run continues where it stopped: steps 1..24, once each.
    scalars = read_scalars(tmp_path / "logs" / "split")
    steps = [s for s, _ in scalars["train/loss"]]
    assert sorted(steps) == list(range(1, 25))
    assert max(float(v) for _, v in scalars["train/grad_norm"][12:]) > 0.35  # the clip bound after resume


def test_a_resume_at_another_batch_size_goes_on_from_the_same_point_in_the_epoch(tmp_path: Path, corpus: Path) -> None:
    """char-rnn-tensorflow let --init_from change --batch_size. The text is then cut into other
    streams: the run goes on from the same share of its epoch with a zero hidden state, and the
    schedule, which counts --num_epochs in epochs rather than steps, goes on without a jump."""
    common = ["--num_epochs", "2", "--eval_every", "20", "--save_every", "20", *TINY]
    first = train(tmp_path, "--input", str(corpus), *common, "--stop_at_step", "40", "--run_name", "r")
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "save" / "r"
    train_symbols = int(re.search(r"corpus: ([\d,]+) symbols", first.stderr).group(1).replace(",", "")) - int(
        re.search(r"validation ([\d,]+) symbols", first.stderr).group(1).replace(",", ""))
    batches = {size: train_symbols // size // 16 - 1 for size in (4, 8)}  # --seq_length 16
    assert f"{batches[4]} train steps per epoch" in first.stderr
    moved = train(tmp_path, "--init_from", str(run_dir), "--batch_size", "8", "--stop_at_step", "45")
    assert moved.returncode == 0, moved.stderr
    at = (2 * 40 * batches[8] + batches[4]) // (2 * batches[4])  # the same share of epoch 0, to the nearest batch
    assert (f"--batch_size 8, where the run trained at 4: the text is cut into other streams, so the hidden state "
            f"starts from zeros, and the run goes on from the nearest point in the epoch to where it was (epoch 0, "
            f"batch 40 of the {batches[4]} that the text has per epoch at --batch_size 4): batch {at} of "
            f"{batches[8]}") in moved.stderr, moved.stderr
    # The best val loss was measured in 4 streams of the validation text; 8 start from zeros more often.
    assert "does not compare with this session's: it was measured in 4 streams of the validation text, and " \
           "--batch_size 8 reads it in 8" in moved.stderr
    saved = checkpoint_weights(str(run_dir / "ckpt-45"), "")
    assert [int(saved[f"{name}/.ATTRIBUTES/VARIABLE_VALUE"]) for name in ("step", "epoch", "batch")] == [45, 0, at + 5]
    assert saved["carried_state/.ATTRIBUTES/VARIABLE_VALUE"].shape == (1, 2, 8, 32)
    assert saved["best_val/.ATTRIBUTES/VARIABLE_VALUE"] == math.inf  # until this session validates
    assert "stopped at step 45 by --stop_at_step 45; no validation since best/ started again" in moved.stderr
    assert json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["args"]["batch_size"] == 8
    # --num_epochs 2 counted in steps of the new batch would have put the cosine twice as far on.
    rates = dict((step, float(value)) for step, value in read_scalars(tmp_path / "logs" / "r")["train/learning_rate"])
    assert sorted(rates) == list(range(1, 46))
    assert rates[41] == pytest.approx(rates[40], rel=0.005) and rates[45] < rates[41]
    # ckpt-45 damaged: the resume falls back to ckpt-40, saved at batch 4, though config.json now says 8.
    # What the checkpoint was trained at counts, for the streams and for the best val loss alike.
    data = next(run_dir.glob("ckpt-45.data-*"))
    data.write_bytes(data.read_bytes()[:100])
    fallback = train(tmp_path, "--init_from", str(run_dir), "--stop_at_step", "47")
    assert fallback.returncode == 0, fallback.stderr
    assert "trying an older one" in fallback.stderr and f"batch 40 of the {batches[4]}" in fallback.stderr
    assert "it was measured in 4 streams of the validation text" in fallback.stderr
    # The run is now one of batch 8: it goes on exactly, as any resume.
    again = train(tmp_path, "--init_from", str(run_dir), "--stop_at_step", "49")
    assert again.returncode == 0, again.stderr
    assert "where the run trained at" not in again.stderr and "does not compare" not in again.stderr
    assert pointer_step(run_dir) == 49


def test_resume_refuses_a_different_architecture(tmp_path: Path, corpus: Path) -> None:
    result = train(tmp_path, "--input", str(corpus), "--max_steps", "4", "--eval_every", "4", *TINY)
    assert result.returncode == 0, result.stderr
    refused = train(tmp_path, "--init_from", "save", "--rnn_size", "64", "--model", "gru")
    assert refused.returncode == 2
    assert "--rnn_size: saved 32, given 64" in refused.stderr and "--model" in refused.stderr
    assert "Traceback" not in refused.stderr
    # Every flag the weights, the data position or the carried state depend on, typed with another
    # value, is refused by name (before anything is written), but --batch_size, which may change.
    import plan
    from utils import CharRNNError
    run_dir = only_run(tmp_path / "save")
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["args"]
    other = {"model": "gru", "num_layers": "3", "rnn_size": "64", "embedding_size": "8", "unit": "jamo",
             "normalize": "none", "max_vocab": "40", "min_char_count": "3", "seq_length": "9",
             "val_frac": "0.2", "seed": "99"}
    for flag, value in other.items():
        args = plan.build_parser().parse_args(["--init_from", str(run_dir), f"--{flag}", value])
        assert getattr(args, flag) != saved[flag], flag
        with pytest.raises(CharRNNError, match=re.escape(f"--{flag}: saved {saved[flag]!r}, given {getattr(args, flag)!r}")):
            plan.merge_resume_config(args, {flag}, run_dir)


HELP_PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print("loaded:", [name for name in ("tensorflow", "numpy.linalg") if name in sys.modules])
"""


@pytest.mark.parametrize("script", ["train.py", "sample.py"])
def test_help_runs_neither_tensorflow_nor_numpy(script: str) -> None:
    # --help is instant: neither TensorFlow nor numpy (whose import starts a BLAS) is run for it.
    result = subprocess.run([sys.executable, "-c", HELP_PROBE, str(ROOT / script)], capture_output=True,
                            text=True, encoding="utf-8", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "(default:" in result.stdout  # and once per flag: not "(default: random) (default: None)"
    assert not re.search(r"\(default: [^)]*\) \(default:", " ".join(result.stdout.split())), result.stdout
    assert "(default: )" not in " ".join(result.stdout.split()), result.stdout  # an empty string, said in words
    assert result.stdout.splitlines()[-1] == "loaded: []", result.stdout[-500:]


def stop_signals_at_their_defaults(ignore_sighup: bool = False) -> None:
    """A child's preexec_fn: SIGINT, SIGTERM and SIGHUP at their defaults (SIGHUP ignored if
    ignore_sighup, as under nohup), whatever this test runner inherited. Under nohup, or as a shell's
    background job (SIGINT ignored), train.py rightly leaves an ignored signal ignored, and a test
    that sent it waited for a stop that never came, then failed."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN if ignore_sighup and sig == signal.SIGHUP else signal.SIG_DFL)


def training_until_its_first_step(tmp_path: Path, corpus: Path, run_name: str,
                                  ignore_sighup: bool = False) -> tuple[subprocess.Popen, list[str]]:
    """A train.py run too long to end by itself (100,000 steps), started with the stop signals at their
    defaults and waited for until training really runs; and its stderr lines so far."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--input", str(corpus), "--max_steps",
                             "100000", "--eval_every", "100000", "--run_name", run_name, *TINY],
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            preexec_fn=lambda: stop_signals_at_their_defaults(ignore_sighup))
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.split()[1:2] == ["step"]:
            break
    return proc, lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_sigint_saves_and_exits_cleanly(tmp_path: Path, corpus: Path, sig: signal.Signals) -> None:
    proc, lines = training_until_its_first_step(tmp_path, corpus, "interrupted")
    proc.send_signal(sig)
    if sig == signal.SIGHUP:  # a terminal closed, and Ctrl-C at once in another: the run stops as first asked
        proc.send_signal(signal.SIGINT)
    lost_signal = threading.Timer(120, proc.kill)  # a stop that never comes fails here, not at step 100,000
    lost_signal.start()
    try:
        for line in proc.stderr:  # an impatient second signal as the process shuts down changes nothing
            lines.append(line)
            if "resume with" in line:
                time.sleep(0.3)  # into the interpreter's shutdown
                proc.send_signal(sig)
                break
        rest = "".join(lines) + proc.communicate(timeout=120)[1]
    finally:
        lost_signal.cancel()
    assert proc.returncode == 0, rest
    step = int(re.search(rf"stopped at step (\d+) by {sig.name}", rest).group(1))
    # Said when it comes: an evaluation in progress may take a while. (The output whole in the failure
    # message: the SIGHUP case failed here once, in a CI run beside a training run, and pytest cut it short.)
    assert f"{sig.name}: stopping after the step or evaluation in progress, with a checkpoint" in rest, rest
    if sig == signal.SIGHUP:
        assert "SIGINT: still stopping (kill -9 would lose the steps since the last checkpoint)" in rest, rest
    # From another folder than the project's, the command names the script by its path.
    assert f"resume with:  python {shlex.quote(str(ROOT / 'train.py'))} --init_from save/interrupted" in rest
    # The checkpoint is of the step it stopped at, and the run goes on from there.
    assert pointer_step(tmp_path / "save" / "interrupted") == step
    # Stopped, it has no status in the HParams table: TensorBoard would keep it after a resume.
    assert session_ends(tmp_path / "logs" / "interrupted") == []
    resumed = train(tmp_path, "--init_from", "save", "--max_steps", str(step + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert f"ckpt-{step} at step {step} " in resumed.stderr and f"stopped at step {step + 2} " in resumed.stderr
    assert session_ends(tmp_path / "logs" / "interrupted") == ["STATUS_SUCCESS"]


def test_sighup_ignored_as_under_nohup_stays_ignored(tmp_path: Path, corpus: Path) -> None:
    """nohup ignores SIGHUP so that a run outlives its terminal: train.py must not take it back."""
    proc, lines = training_until_its_first_step(tmp_path, corpus, "nohup", ignore_sighup=True)
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.5)  # steps go on
    proc.send_signal(signal.SIGINT)
    rest = "".join(lines) + proc.communicate(timeout=120)[1]
    assert proc.returncode == 0 and "by SIGINT" in rest and "SIGHUP" not in rest, rest


def test_hang_watch_watches_each_function_from_its_given_call() -> None:
    """--peer_timeout: the train step's first call compiles, which may take as long as the slowest
    worker's compilation, so it is not watched; each wrapped function counts its own calls."""
    from workers import HangWatch

    watch, watched = HangWatch(30.0), []

    @contextlib.contextmanager
    def waiting():
        watched.append(True)
        yield
    watch.waiting = waiting
    step, gather = watch.watched(lambda x: x, from_call=2), watch.watched(lambda x: x)
    assert [step(1), gather(2), step(3)] == [1, 2, 3] and len(watched) == 2  # gather's 1st, step's 2nd
    assert HangWatch(0.0).watched(len) is len  # one machine: nothing wrapped


HANG_WATCH_PROGRAM = """
import time
import tensorflow  # loaded before the watch starts: its thread checks from the first quarter second
from workers import HangWatch
watch = HangWatch(1.0)  # checked every 0.25 s
with watch.waiting():
    pass  # a quick exchange
time.sleep(2.5)  # then long work alone
print("after work alone:", watch.fired)
with watch.waiting():  # an exchange that waits too long
    deadline = time.monotonic() + 20
    while not watch.fired and time.monotonic() < deadline:
        time.sleep(0.05)
print("after a long exchange:", watch.fired)
"""


def test_hang_watch_times_each_exchange_from_its_own_start() -> None:
    """--peer_timeout times an exchange while it waits: work a worker does alone between exchanges
    (its evaluation, its save) never counts, however long; an exchange that waits too long fires the
    watch, which aborts the process's collectives (in a process of its own, so none of the tests')."""
    result = run_python(HANG_WATCH_PROGRAM, text=True, encoding="utf-8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["after work alone: False", "after a long exchange: True"], result.stdout


def test_workers_that_restored_other_checkpoints_are_named_by_worker() -> None:
    """check_same_checkpoint compares each replica's step and trained seconds (two copies of a run
    may stand at the same step), and names workers, not replicas, when each has several devices."""
    import types

    import workers
    from train import Trainer
    from utils import CharRNNError
    rows = {}  # each replica's row, as the gather returns them: two workers of two devices each

    def gather(values):
        rows["here"] = values
        return np.array([values, values, rows["other"], rows["other"]], dtype=np.float64)

    trainer = types.SimpleNamespace(gather=gather, step=40, seconds_before=12.5,
                                    strategy=types.SimpleNamespace(num_replicas_in_sync=4),
                                    run=types.SimpleNamespace(cluster=workers.Cluster(0, 2),
                                                              run_dir=Path("save") / "mw"))
    rows["other"] = [40, 12.5]
    Trainer.check_same_checkpoint(trainer)  # the same checkpoint: nothing to say
    rows["other"] = [40, 30.0]  # the same step of another copy or run
    with pytest.raises(CharRNNError, match=r"different checkpoints of mw: worker 0 at step 40 \(12\.5 s trained\), "
                                           r"worker 1 at step 40 \(30\.0 s trained\)\. Give"):
        Trainer.check_same_checkpoint(trainer)


def test_workers_training_on_other_text_of_the_same_length_are_refused() -> None:
    """check_same_flags compares a sample of the training text's ids, not only its length, vocabulary
    and validation part: a worker whose text differs only within its training part trained in silence."""
    import types

    import workers
    from train import Trainer
    from utils import CharRNNError

    class Args:  # every flag the same on both workers
        def __getattr__(self, name):
            return 0

    def trainer(ids, others=None):
        sent = []

        def gather(values):
            sent.append(values)
            return np.array([values] + ([others] if others else []), dtype=np.float64)
        corpus = types.SimpleNamespace(ids=np.array(ids, dtype=np.int32), vocab=types.SimpleNamespace(symbols="abc"))
        return types.SimpleNamespace(gather=gather, args=Args(), sent=sent,
                                     run=types.SimpleNamespace(cluster=workers.Cluster(0, 2), corpus=corpus))
    ids = [0, 1, 2] * 50
    chief = trainer(ids)
    Trainer.check_same_flags(chief)  # what the chief sends
    Trainer.check_same_flags(trainer(ids, others=chief.sent[0]))  # the same text: nothing to say
    with pytest.raises(CharRNNError, match=r"other flags or text than worker 0 \(the chief\): the text\. Start"):
        Trainer.check_same_flags(trainer(ids[:70] + [2] + ids[71:], others=chief.sent[0]))


def test_val_best_loss_is_the_best_so_far(tmp_path: Path, corpus: Path) -> None:
    """The HParams table compares runs by each metric's last value: val/best_loss holds the best, also
    after a worse evaluation (a learning rate high enough that, at this seed, steps 2 and 3 validate
    worse than 1)."""
    result = train(tmp_path, "--input", str(corpus), *TINY, "--max_steps", "6", "--stop_at_step", "3",
                   "--eval_every", "1", "--learning_rate", "0.3", "--warmup_steps", "1", "--sample_length", "0",
                   "--seed", "2", "--run_name", "b")
    assert result.returncode == 0, result.stderr
    scalars = read_scalars(tmp_path / "logs" / "b")
    losses = [value for _, value in scalars["val/loss"]]
    best = [min(losses[:i + 1]) for i in range(len(losses))]
    assert best != losses, losses  # else this run shows nothing: no evaluation was worse than an earlier one
    assert [value for _, value in scalars["val/best_loss"]] == pytest.approx(best)
    assert "sample" not in scalars  # --sample_length 0: validation without the text sample
    # best/ holds the checkpoint of the best evaluation, not of a later, worse one.
    steps = [step for step, _ in scalars["val/loss"]]
    best_step = steps[losses.index(min(losses))]
    assert best_step != steps[-1] and pointer_step(tmp_path / "save" / "b" / "best") == best_step, (steps, losses)


def test_keep_prunes_old_checkpoints_and_the_run_that_saved_last_is_used(tmp_path: Path, corpus: Path) -> None:
    """--keep N leaves the newest N checkpoints, best/ apart; `--init_from save` and `sample.py
    --save_dir save` take the run that saved last (save/latest), not the last by name."""
    kept = train(tmp_path, "--input", str(corpus), "--max_steps", "8", "--save_every", "2", "--eval_every", "2",
                 "--keep", "2", "--run_name", "b", *TINY)
    assert kept.returncode == 0, kept.stderr
    run_b = tmp_path / "save" / "b"
    assert sorted(p.name for p in run_b.glob("ckpt-*.index")) == ["ckpt-6.index", "ckpt-8.index"]
    assert listed_checkpoints(run_b) == ["ckpt-6", "ckpt-8"]
    # Each --save_every checkpoint is told, as char-rnn-tensorflow did; the final one by "stopped at step 8".
    assert re.findall(r"step (\d+): checkpoint saved in \S*save/b\n", kept.stderr) == ["2", "4", "6"], kept.stderr
    assert len(list((run_b / "best").glob("ckpt-*.index"))) == 1
    newer = train(tmp_path, "--input", str(corpus), "--max_steps", "4", "--eval_every", "4", "--run_name", "a", *TINY)
    assert newer.returncode == 0, newer.stderr
    assert (tmp_path / "save" / "latest").read_text(encoding="utf-8") == "a\n"
    sampled = subprocess.run([sys.executable, str(ROOT / "sample.py"), "--save_dir", "save", "-n", "5", "--verbose"],
                             cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=180)
    assert sampled.returncode == 0, sampled.stderr
    assert re.search(r"loaded \S*save/a/ckpt-4\b", sampled.stderr), sampled.stderr[-2000:]
    resumed = train(tmp_path, "--init_from", "save", "--max_steps", "5")
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"resumed \S*save/a/ckpt-4 at step 4 ", resumed.stderr), resumed.stderr


def test_mixed_precision_trains_resumes_and_samples_in_float32(tmp_path: Path, corpus: Path) -> None:
    common = ["--input", str(corpus), "--eval_every", "30", "--learning_rate", "0.01", "--run_name", "mp",
              *TINY, *COMPILED]
    result = train(tmp_path, *common, "--max_steps", "60", "--mixed_precision")
    assert result.returncode == 0, result.stderr
    assert "--mixed_precision on a CPU" in result.stderr  # this machine has no GPU: said, not hidden
    scalars = read_scalars(tmp_path / "logs" / "mp")
    losses = [float(v) for _, v in scalars["train/loss"]]
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.5, losses
    # One scale per step: 2^15 at first, halved by each overflow, never grown (that takes 2,000 finite steps).
    scales = [(step, float(v)) for step, v in scalars["train/loss_scale"]]
    assert [step for step, _ in scales] == list(range(1, 61))
    assert all(1.0 <= s <= 2.0 ** 15 and np.log2(s).is_integer() for _, s in scales), scales
    assert all(later <= earlier for (_, earlier), (_, later) in zip(scales, scales[1:])), scales
    run = tmp_path / "save" / "mp"
    weights = checkpoint_weights(str(run / "ckpt-60"))
    assert weights and all(w.dtype == np.float32 for w in weights.values())  # float32 master weights
    # The scale found so far is saved, to go on with (from 2^15 again, a resume's first steps would overflow).
    saved = checkpoint_weights(str(run / "ckpt-60"), prefix="loss_scale/")
    assert saved["loss_scale/scale/.ATTRIBUTES/VARIABLE_VALUE"] == scales[-1][1]
    assert saved["loss_scale/good_steps/.ATTRIBUTES/VARIABLE_VALUE"] > 0
    # The float32 checkpoint samples with no mixed precision anywhere, and the run goes on without it.
    sampled = subprocess.run([sys.executable, str(ROOT / "sample.py"), "--save_dir", str(run), "-n", "50",
                              "--prime", "the "], capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert sampled.returncode == 0 and sampled.stdout.startswith("the "), sampled.stderr
    resumed = train(tmp_path, "--init_from", str(run), "--max_steps", "70")
    assert resumed.returncode == 0 and "at step 60" in resumed.stderr, resumed.stderr
    assert "--mixed_precision on a CPU" not in resumed.stderr  # a session flag, not inherited


def test_loss_scale_skips_overflowing_steps_and_grows_back() -> None:
    import tensorflow as tf

    import model as M
    from train import Adam, LossScale, WeightAverage, make_train_step
    config = M.ModelConfig("lstm", 11, 1, 8, 4)
    net = M.CharRNN(config, seed=0)
    optimizer, scale = Adam(net.trainable_variables), LossScale(initial=2.0 ** 40, growth_steps=3)
    average = WeightAverage(M.CharRNN(config, seed=1), 0.9)  # another start than the weights': it shows a write
    step = make_train_step(net, optimizer, 2, 5, 5.0, seed=0, xla=False, loss_scale=scale, average=average)
    rng = np.random.default_rng(0)
    x, y = (tf.constant(rng.integers(0, 11, (2, 5)), tf.int32) for _ in range(2))
    written = [*net.trainable_variables, *optimizer.slots.m, *optimizer.slots.v, *average.averaged.variables]
    state, written_before = net.initial_state(2), [v.numpy() for v in written]
    # 2^40 times the loss overflows float16's range (65,504): the step is skipped and the scale halved.
    loss, grad_norm, state = step(x, y, state, tf.constant(0.01), tf.constant(0, tf.int64))
    assert np.isfinite(float(loss)) and not np.isfinite(float(grad_norm))
    assert float(scale.scale) == 2.0 ** 39 and int(optimizer.slots.iterations) == 0
    for v, b in zip(written, written_before):  # weights, moments and average: none moved
        np.testing.assert_array_equal(v.numpy(), b, err_msg=v.name)
    for i in range(1, 40):  # it halves until the gradients fit, then trains
        loss, grad_norm, state = step(x, y, state, tf.constant(0.01), tf.constant(i, tf.int64))
        if np.isfinite(float(grad_norm)):
            break
    fitted = float(scale.scale)
    assert fitted < 2.0 ** 39 and int(optimizer.slots.iterations) == 1
    assert all(not np.array_equal(v.numpy(), b) for v, b in zip(written, written_before))
    for j in range(2):  # growth_steps finite steps in a row double it
        step(x, y, state, tf.constant(0.01), tf.constant(100 + j, tf.int64))
    assert float(scale.scale) == 2 * fitted


def test_a_typed_length_flag_alone_says_how_long(tmp_path: Path) -> None:
    """50 epochs when no length flag is typed (char-rnn-tensorflow's default); otherwise the typed
    limits alone, so --max_steps is not cut short by the default's 50 epochs."""
    import plan
    import train as T
    from utils import CharRNNError

    def resolved(*argv: str):
        args = plan.build_parser().parse_args(list(argv))
        plan.check_args(args)
        return args

    assert resolved().num_epochs == plan.DEFAULT_EPOCHS == 50
    for flag, value in (("max_steps", "50000"), ("time_budget", "15m")):
        args = resolved(f"--{flag}", value)
        assert args.num_epochs == 0 and list(T.length_used(args, 30000, epochs=300.0, seconds=60.0)) == [flag]
    assert T.training_progress(resolved("--max_steps", "50000"), 25000, epochs=250.0, seconds=0.0) == 0.5
    assert resolved("--num_epochs", "3", "--max_steps", "10").num_epochs == 3
    with pytest.raises(CharRNNError, match="--num_epochs 0: 0 leaves the run without a length limit"):
        resolved("--num_epochs", "0")
    # End to end, on a text of one training step per epoch: step 60 is the 60th epoch.
    (tmp_path / "short.txt").write_text("the cat sat on the mat and the dog ran to the red barn, fast\n", encoding="utf-8")
    result = train(tmp_path, "--input", "short.txt", "--batch_size", "2", "--seq_length", "8", "--val_frac", "0.3",
                   "--rnn_size", "16", "--num_layers", "1", "--max_steps", "60")
    assert "stopped at step 60 by --max_steps 60" in result.stderr, result.stderr
    assert "1 train step per epoch" in result.stderr
    # Each epoch reads the text from a new offset, so its streams start from a zero state.
    (carried,) = checkpoint_weights(str(only_run(tmp_path / "save") / "ckpt-60"), "carried_state/").values()
    assert carried.shape == (1, 2, 2, 16) and not carried.any()


def test_a_time_budget_counts_the_whole_run(tmp_path: Path, corpus: Path) -> None:
    """--time_budget on resume is the run's time in all, not more time: a budget below the time
    already trained trains nothing, and says so."""
    first = train(tmp_path, "--input", str(corpus), "--time_budget", "600", "--stop_at_step", "3", "--run_name", "t",
                  *TINY)
    assert first.returncode == 0, first.stderr
    assert "--time_budget 600: 600 seconds (600m would be minutes)" in first.stderr, first.stderr
    (spent,) = checkpoint_weights(str(tmp_path / "save" / "t" / "ckpt-3"), "train_seconds/").values()
    assert 0 < spent < 600
    again = train(tmp_path, "--init_from", "save/t", "--time_budget", f"{spent * 0.9:.3f}s")
    assert again.returncode == 0, again.stderr
    assert f"had already reached --time_budget {spent * 0.9:.3f}s at step 3; nothing trained" in again.stderr
    assert "would be minutes" not in again.stderr  # said of bare numbers only, not of a time with its unit
    assert listed_checkpoints(tmp_path / "save" / "t") == ["ckpt-3"]
    # A session that trains adds its time to the saved time: the budget counts every session.
    more = train(tmp_path, "--init_from", "save/t", "--stop_at_step", "5")
    assert more.returncode == 0, more.stderr
    (spent_by_5,) = checkpoint_weights(str(tmp_path / "save" / "t" / "ckpt-5"), "train_seconds/").values()
    assert spent_by_5 > spent, (spent, spent_by_5)


def test_the_time_trained_counts_the_sessions_before() -> None:
    """The clock that --time_budget and the schedule read, and that checkpoints save, starts each
    session at the time saved: 100 s trained before and a session just begun are 100 s."""
    import utils
    from train import Trainer
    trainer = Trainer.__new__(Trainer)  # the clock alone: no run, no model
    trainer.seconds_before, trainer.session_start = 100.0, utils.awake_seconds()
    assert 100.0 <= trainer.seconds_so_far() < 110.0


def test_adam_is_pytorchs_update() -> None:
    """torch.optim.Adam's documented update, in numpy, step by step with a changing learning rate.
    Gradients near epsilon make its place count: added after the bias correction of sqrt(v), as
    PyTorch does, not before it (Keras), which differs 30x at the first step."""
    import tensorflow as tf

    from train import Adam
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4)).astype(np.float32)
    var = tf.Variable(start)
    adam = Adam([var])
    want, m, v = start.astype(np.float64), 0.0, 0.0
    for t in range(1, 6):
        g = (rng.normal(size=(3, 4)) * 1e-8).astype(np.float32)
        lr = 0.01 / t
        adam.apply([tf.constant(g)], [var], tf.constant(lr))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        want -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        np.testing.assert_allclose(var.numpy() - start, want - start, rtol=1e-4, atol=1e-9)


def test_old_flags_keep_their_meaning(tmp_path: Path) -> None:
    """A char-rnn-tensorflow command line: --decay_rate is its whole schedule, from the first step
    at --learning_rate (no warmup), and a keep probability is saved as the dropout it means."""
    short = tmp_path / "short.txt"
    short.write_text("\n".join(tiny_text().splitlines()[:30]) + "\n", encoding="utf-8")
    at = TINY.index("--warmup_steps")
    no_warmup = TINY[:at] + TINY[at + 2:]
    result = train(tmp_path, "--input", str(short), "--num_epochs", "2", "--learning_rate", "0.01",
                   "--decay_rate", "0.5", "--output_keep_prob", "0.8", *no_warmup)
    assert result.returncode == 0, result.stderr
    run = only_run(tmp_path / "save")
    lrs = [float(v) for _, v in read_scalars(tmp_path / "logs" / run.name)["train/learning_rate"]]
    per_epoch = len(lrs) // 2
    assert per_epoch > 3 and lrs == pytest.approx([0.01] * per_epoch + [0.005] * per_epoch), lrs
    saved = json.loads((run / "config.json").read_text(encoding="utf-8"))["args"]
    assert (saved["dropout"], saved["warmup_steps"]) == (0.2, 0)  # not 0.19999999999999996
    assert saved["input_dropout"] == 0.2  # the old tool dropped the embedded input by output_keep_prob too
    # An epoch's end resets the carried state (the next epoch's windows start elsewhere): the final
    # checkpoint, at the end of epoch 2, carries zeros.
    carried = checkpoint_weights(str(run / "ckpt-" f"{2 * per_epoch}"), prefix="carried_state/")
    assert carried and not any(np.any(value) for value in carried.values()), carried
    # The old tool's resume trained --num_epochs more epochs; here it is the run's in all, and said so.
    done = train(tmp_path, "--init_from", str(run), "--num_epochs", "2")
    assert done.returncode == 0 and "had already reached --num_epochs 2" in done.stderr, done.stderr
    assert ("--num_epochs 2 counts the run's epochs from its start, 2.00 of them trained already (char-rnn-tensorflow "
            "counted from the resume: for 2 more, pass --num_epochs 4)") in done.stderr, done.stderr
    more = train(tmp_path, "--init_from", str(run), "--num_epochs", "3", "--stop_at_step", f"{2 * per_epoch + 1}")
    assert more.returncode == 0 and "for 3 more, pass --num_epochs 5)" in more.stderr, more.stderr
    untyped = train(tmp_path, "--init_from", str(run), "--stop_at_step", f"{2 * per_epoch + 2}")
    assert untyped.returncode == 0 and "counts the run's epochs" not in untyped.stderr, untyped.stderr


def parsed_flags(*argv: str) -> tuple["argparse.Namespace", set[str]]:
    """train.py's flags and the names typed (old names as the new), as its main reads them."""
    import plan
    from utils import explicit_flags
    parser = plan.build_parser()
    args = parser.parse_args(list(argv))
    return args, plan.apply_old_flag_names(args, explicit_flags(parser, list(argv)))


def write_saved_flags(run_dir: Path, *argv: str) -> None:
    """A config.json in run_dir whose flags are those a run trained with argv saved (a resume reads them)."""
    import plan
    saved, _ = parsed_flags(*argv)
    (run_dir / "config.json").write_text(json.dumps({"args": plan.saved_flags(saved)}), encoding="utf-8")


def test_a_saved_batch_groups_is_for_the_saved_batch(tmp_path: Path) -> None:
    """--batch_groups splits the batch it was saved with: at another --batch_size it is chosen afresh
    (it would be refused as larger than the batch, a value this session never typed), unless typed."""
    import plan
    write_saved_flags(tmp_path, *TINY, "--batch_groups", "4")
    for argv, groups in ((["--batch_size", "2"], 0), (["--batch_size", "4"], 4), ([], 4),
                         (["--batch_size", "2", "--batch_groups", "2"], 2)):
        args, typed = parsed_flags("--init_from", str(tmp_path), *argv)
        plan.merge_resume_config(args, typed, tmp_path)
        plan.check_args(args)
        assert args.batch_groups == groups, argv


def test_a_resume_places_the_loop_in_the_text() -> None:
    """The saved position and hidden state, exactly, at the saved batch on one device; at another
    batch the same share of the epoch from a zero state (said once training begins); past the end
    of a text that shrank, the next epoch."""
    import argparse
    import logging
    import types

    import tensorflow as tf

    import train

    def trainer(batch: int, distributed: bool = False, saved_train_symbols: int | None = None):
        return types.SimpleNamespace(
            tf=tf, args=argparse.Namespace(batch_size=4, seq_length=16), distributed=distributed, resume_notes=[],
            run=types.SimpleNamespace(loader=types.SimpleNamespace(num_batches=50), train_ids=np.zeros(3264),
                                      saved_train_symbols=saved_train_symbols),
            carried=tf.ones([1, 2, 4, 8]), initial_state=lambda: tf.zeros([1, 2, 4, 8]), epoch=3, batch=batch)

    t = trainer(20)  # 3,264 symbols: 50 batches of 4 x 16 per epoch, 24 of 8 x 16
    train.Trainer.place_in_the_text(t, "ckpt-9", None)
    assert (t.epoch, t.batch, float(tf.reduce_min(t.state)), t.resume_notes) == (3, 20, 1.0, [])
    t = trainer(20, distributed=True)  # across replicas the state restarts
    train.Trainer.place_in_the_text(t, "ckpt-9", None)
    assert (t.batch, float(tf.reduce_max(t.state))) == (20, 0.0)
    t = trainer(12)
    train.Trainer.place_in_the_text(t, "ckpt-9", 8)
    assert (t.epoch, t.batch, float(tf.reduce_max(t.state))) == (3, 25, 0.0)
    assert "(epoch 3, batch 12 of the 24 that the text has per epoch at --batch_size 8): batch 25 of 50" \
        in t.resume_notes[0][1]
    t = trainer(30)
    train.Trainer.place_in_the_text(t, "ckpt-9", 8)
    assert (t.epoch, t.batch, float(tf.reduce_max(t.state))) == (4, 0, 0.0)
    assert t.resume_notes == [(logging.WARNING, "the saved position (epoch 3, batch 30) is past this corpus's 24 "
                               "batches per epoch at the saved --batch_size 8: the text is shorter than when the run "
                               "started; going on from the next epoch")]
    # The start of an epoch is one at any batch, even one that the text no longer has a batch of.
    t = trainer(0)
    train.Trainer.place_in_the_text(t, "ckpt-9", 200)
    assert (t.epoch, t.batch) == (3, 0) and "batch 0 of 50" in t.resume_notes[0][1]
    # A text grown since (1,664 training symbols then: 25 batches per epoch) is cut into other streams
    # as well: the same share of the epoch, from a zero state; with another --batch_size too.
    t = trainer(12, saved_train_symbols=1664)
    train.Trainer.place_in_the_text(t, "ckpt-9", None)
    assert (t.epoch, t.batch, float(tf.reduce_max(t.state))) == (3, 24, 0.0)
    assert t.resume_notes == [(logging.INFO, "the training text has 3,264 symbols, where it had 1,664 (grown or "
                               "edited): the text is cut into other streams, so the hidden state starts from zeros, "
                               "and the run goes on from the nearest point in the epoch to where it was (epoch 3, "
                               "batch 12 of the 25 that the text had per epoch): batch 24 of 50. The step count and "
                               "the learning-rate schedule go on")]
    t = trainer(6, saved_train_symbols=1664)
    train.Trainer.place_in_the_text(t, "ckpt-9", 8)
    assert t.batch == 25 and t.resume_notes[0][1].startswith(
        "--batch_size 4, where the run trained at 8 and the training text has 3,264 symbols, where it had 1,664")
    assert "(epoch 3, batch 6 of the 12 that the text had per epoch at --batch_size 8): batch 25 of 50" \
        in t.resume_notes[0][1]


def test_a_resume_on_a_grown_text_restarts_the_state(tmp_path: Path, corpus: Path) -> None:
    """The training text's length is saved: a resume on the text grown since (a day's news added) is
    told it is cut into other streams, and goes on from a zero state at the same share of its epoch."""
    first = train(tmp_path, "--input", str(corpus), "--max_steps", "3", "--run_name", "r", *TINY)
    assert first.returncode == 0, first.stderr
    symbols = saved_arg(tmp_path / "save" / "r", "train_symbols")
    same = train(tmp_path, "--init_from", "save/r", "--max_steps", "4")
    assert same.returncode == 0 and "cut into other streams" not in same.stderr, same.stderr
    grown = tmp_path / "grown.txt"
    grown.write_text(corpus.read_text(encoding="utf-8") * 2, encoding="utf-8")
    resumed = train(tmp_path, "--init_from", "save/r", "--input", str(grown), "--max_steps", "5")
    assert resumed.returncode == 0, resumed.stderr
    assert f"where it had {symbols:,} (grown or edited): the text is cut into other streams" in resumed.stderr, \
        resumed.stderr
    assert saved_arg(tmp_path / "save" / "r", "train_symbols") > symbols


def test_the_nearest_batch_at_another_batch_size() -> None:
    """Half-way rounds up, and never out of the epoch (which could end a run by rounding)."""
    from train import nearest_batch
    assert [nearest_batch(b, 24, 50) for b in (0, 1, 6, 12, 23)] == [0, 2, 13, 25, 48]  # 6 of 24 is 12.5 of 50
    assert [nearest_batch(b, 101, 50) for b in (1, 99, 100)] == [0, 49, 49]  # 100 of 101 is 49.5 of 50
    assert [nearest_batch(b, 73, 1) for b in (0, 36, 72)] == [0, 0, 0]  # an epoch of one batch


def test_apply_old_flag_names_drops_the_warmup_only_where_none_was_typed() -> None:
    for argv, warmup in ((["--decay_rate", "0.97"], 0), (["--decay_rate", "0.97", "--warmup_steps", "50"], 50),
                         (["--warmup_steps", "50"], 50), ([], 100)):
        args, _ = parsed_flags(*argv)
        assert args.warmup_steps == warmup, argv


def test_a_typed_keep_probability_replaces_the_saved_dropout_on_resume(tmp_path: Path) -> None:
    """--output_keep_prob on resume is a typed --dropout: it replaces the saved rate (one other than
    the default 0.25, which a saved default would hide), and the embedded input's as well."""
    import plan

    def resumed_with(*argv: str) -> tuple[float, float]:
        args, typed = parsed_flags(*argv)
        plan.merge_resume_config(args, typed, tmp_path)
        return args.dropout, args.input_dropout

    write_saved_flags(tmp_path, "--dropout", "0.5")
    assert resumed_with("--init_from", str(tmp_path)) == (0.5, 0.0)
    assert resumed_with("--init_from", str(tmp_path), "--output_keep_prob", "0.8") == (0.2, 0.2)
    assert resumed_with("--init_from", str(tmp_path), "--input_keep_prob", "0.9") == (0.5, 0.1)


def test_a_typed_dropout_on_resume_says_it_ends_the_old_flags_input_dropout(tmp_path: Path, caplog) -> None:
    """--dropout alone drops no embedded input: on resume it ends the one the old keep probabilities
    set, and says so, with the flag that keeps it."""
    import plan

    def resumed_with(*argv: str) -> tuple[float, float]:
        args, typed = parsed_flags(*argv)
        caplog.clear()
        plan.merge_resume_config(args, typed, tmp_path)
        return args.dropout, args.input_dropout

    caplog.set_level(logging.INFO, logger="charrnn")
    write_saved_flags(tmp_path, "--output_keep_prob", "0.8", "--input_keep_prob", "0.9")  # input dropout 0.28
    assert resumed_with("--init_from", str(tmp_path), "--dropout", "0.1") == (0.1, 0.0)
    assert ("--dropout 0.1: the embedded input is no longer dropped, where the run dropped 0.28 of it (as "
            "--output_keep_prob and --input_keep_prob set); pass --input_keep_prob 0.72 too to keep that") in caplog.text
    assert resumed_with("--init_from", str(tmp_path), "--dropout", "0.1", "--input_keep_prob", "0.72") == (0.1, 0.28)
    assert "no longer dropped" not in caplog.text
    assert resumed_with("--init_from", str(tmp_path)) == (0.2, 0.28) and "no longer dropped" not in caplog.text
    # An old flag that turns it off says what it says itself; a damaged saved value is no rate to speak of.
    assert resumed_with("--init_from", str(tmp_path), "--input_keep_prob", "1") == (0.2, 0.0)
    assert "no longer dropped" not in caplog.text
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    config["args"]["input_dropout"] = "0.28"
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert resumed_with("--init_from", str(tmp_path), "--dropout", "0.1") == (0.1, 0.0)


def test_typing_a_run_s_own_model_and_data_layout_flags_on_resume_is_no_change(tmp_path: Path) -> None:
    """The saved values typed again (as a script that trained the run does on resume) are the same
    flags, compared by value: --val_frac 0.05 parsed anew equals the saved 0.05."""
    import plan
    argv = [*TINY, "--model", "gru", "--unit", "jamo", "--normalize", "none", "--max_vocab", "40",
            "--min_char_count", "2", "--val_frac", "0.05", "--seed", "7"]
    write_saved_flags(tmp_path, *argv)
    args, typed = parsed_flags("--init_from", str(tmp_path), *argv)
    assert set(plan.ARCHITECTURE_FLAGS + plan.DATA_LAYOUT_FLAGS) <= typed
    plan.merge_resume_config(args, typed, tmp_path)
    assert (args.rnn_size, args.val_frac, args.seed) == (32, 0.05, 7)


def test_a_saved_rate_edited_to_a_whole_number_is_read_as_that_rate(tmp_path: Path) -> None:
    """config.json edited by hand ("dropout": 0, "min_lr_frac": 1) is read, not refused as damaged:
    JSON's 0 is the float flag's 0.0 (the derived input_dropout's too)."""
    import plan
    from utils import CharRNNError
    write_saved_flags(tmp_path, *TINY)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    config["args"].update(dropout=0, input_dropout=0, min_lr_frac=1)
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    args, typed = parsed_flags("--init_from", str(tmp_path))
    plan.merge_resume_config(args, typed, tmp_path)
    assert (args.dropout, args.input_dropout, args.min_lr_frac) == (0, 0, 1)
    assert all(type(value) is float for value in (args.dropout, args.input_dropout, args.min_lr_frac))
    plan.check_args(args)
    config["args"].update(learning_rate=10**400)  # no float holds it
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    args, typed = parsed_flags("--init_from", str(tmp_path))
    with pytest.raises(CharRNNError, match=r"config.json is unreadable or damaged \(learning_rate is a whole number too large for a float"):
        plan.merge_resume_config(args, typed, tmp_path)


def test_the_validation_text_holds_one_window_at_the_least() -> None:
    """A window of --seq_length 16 is 17 symbols (16 inputs, and one more for the last target):
    17 kept pass, 16 are refused, and the advice names what cut them short."""
    import argparse
    import plan
    from utils import CharRNNError
    args = argparse.Namespace(seq_length=16, val_frac=0.05, eval_symbols=0)
    plan.check_validation_window(args, 17, 17, resumed=False)
    with pytest.raises(CharRNNError, match=r"--seq_length 16 \(17 symbols\): --val_frac 0.05 keeps 16 symbols\. "
                                           r"Raise --val_frac, or lower --seq_length$"):
        plan.check_validation_window(args, 16, 16, resumed=False)
    with pytest.raises(CharRNNError, match=r"keeps 16 symbols\. Pass a longer text: a resumed run keeps"):
        plan.check_validation_window(args, 16, 16, resumed=True)
    args.eval_symbols = 15  # of 17 symbols, --eval_symbols keeps 16: it is what falls short
    with pytest.raises(CharRNNError, match=r"--eval_symbols 15 scores 15 of its 17\. Raise --eval_symbols$"):
        plan.check_validation_window(args, 16, 17, resumed=True)
    plan.check_validation_window(args, 17, 40, resumed=True)


def test_a_resume_goes_on_in_place_unless_another_place_is_typed(tmp_path: Path, monkeypatch) -> None:
    """char-rnn-tensorflow's --init_from save/run --save_dir save names the run's own place: it goes
    on in place, as with --run_name run; another --save_dir or --run_name makes a copy there."""
    import plan
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "save" / "run"
    run_dir.mkdir(parents=True)
    write_saved_flags(run_dir, *TINY)

    def fork_dir(*argv: str) -> "Path | None":
        args, typed = parsed_flags("--init_from", "save/run", *argv)
        return plan.resumed_run(args, typed).fork_dir

    for in_place in ([], ["--save_dir", "save"], ["--save_dir", "save/run"], ["--run_name", "run"],
                     ["--save_dir", str(tmp_path / "save"), "--run_name", "run"]):
        assert fork_dir(*in_place) is None, in_place
    assert fork_dir("--save_dir", "other") == Path("other") / "run"
    assert fork_dir("--run_name", "branch") == Path("save") / "branch"
    assert fork_dir("--save_dir", "other", "--run_name", "branch") == Path("other") / "branch"
    assert fork_dir("--save_dir", "save", "--run_name", "branch") == Path("save") / "branch"


def test_config_json_keeps_absolute_paths_and_no_flag_of_one_session(tmp_path: Path, monkeypatch) -> None:
    """A run resumed from another folder finds its text; --verbose, --stop_at_step and the like
    steer one invocation and are not inherited."""
    import plan
    monkeypatch.chdir(tmp_path)
    args = plan.build_parser().parse_args(["--data_dir", "data/x", "--log_dir", "lg", "--verbose",
                                           "--stop_at_step", "5", "--init_from", "save", "--mixed_precision",
                                           "--output_keep_prob", "0.8", "--input_keep_prob", "0.9"])
    saved = plan.saved_flags(args)
    assert (saved["data_dir"], saved["log_dir"]) == (str(tmp_path / "data" / "x"), str(tmp_path / "lg"))
    # With --input, which wins, the default data_dir is never read: kept as it is.
    with_input = plan.saved_flags(plan.build_parser().parse_args(["--input", "t.txt"]))
    assert (with_input["input"], with_input["data_dir"]) == (str(tmp_path / "t.txt"), "data/tinyshakespeare")
    for flag in ("verbose", "stop_at_step", "init_from", "mixed_precision", "output_keep_prob", "input_keep_prob",
                 "peer_timeout"):
        assert flag not in saved, flag


def test_the_defaults_are_those_the_readme_states() -> None:
    """The README quotes defaults in its prose; the parser is what they must stay true to."""
    import plan
    import sample
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    args = plan.build_parser().parse_args([])
    for phrase, flag, value in (("`--warmup_steps`, 100 by default", "warmup_steps", 100),
                                ("every `--eval_every` steps too, 250 by default", "eval_every", 250),
                                ("The default model (2x384, batch 24)", "rnn_size", 384),
                                ("The default model (2x384, batch 24)", "num_layers", 2),
                                ("The default model (2x384, batch 24)", "batch_size", 24),
                                ("`--temperature` (default 1.0)", None, None),
                                ("(default 10m, at least 10s; 0 waits for ever)", "peer_timeout", "10m"),
                                ("The last `--val_frac` (5%) of the text", "val_frac", 0.05),
                                ("a cosine down to 0.0003, an embedding of 64, and dropout 0.25.", "dropout", 0.25),
                                ("a cosine down to 0.0003, an embedding of 64,", "embedding_size", 64),
                                ("down to `--min_lr_frac` of it (0.1 by default)", "min_lr_frac", 0.1),
                                ("(`--ema_decay`, 0.99 by default", "ema_decay", 0.99)):
        assert phrase in readme, phrase
        if flag is not None:
            assert getattr(args, flag) == value, flag
    assert args.num_epochs is None and plan.DEFAULT_EPOCHS == 50 and "a run is 50 epochs" in readme
    assert "0.003 with a warmup" in readme and args.learning_rate * args.min_lr_frac == pytest.approx(0.0003)
    assert sample.build_parser().parse_args([]).temperature == 1.0


def test_the_live_line_drops_whole_fields_that_the_terminal_has_no_room_for(monkeypatch) -> None:
    """At 80 columns the line lost the end of its learning rate ('lr 1.14' for 1.14e-03, a thousand
    times more); a terminal that says it has 0 columns lost the last character of every line."""
    import fcntl
    import pty
    import struct
    import termios

    from train import Progress
    fields = ["step 1000", "epoch 4.23", "loss 1.2345", "val 1.3456", "ETA 00:00:12", "82,081 chars/s", "lr 1.14e-03"]
    master, terminal = pty.openpty()
    for columns, shown in ((80, fields[:6]), (41, fields[:3]), (0, fields[:6]), (120, fields)):
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        with os.fdopen(os.dup(terminal), "w") as stderr:
            monkeypatch.setattr(sys, "stderr", stderr)
            Progress(print_every=10).update(1000, fields)
        assert os.read(master, 4096).decode() == "\r" + " ".join(shown) + "\x1b[K", columns
    # TERM=dumb (Emacs' shell, some CI consoles) shows escape codes raw: plain lines there.
    monkeypatch.setenv("TERM", "dumb")
    with os.fdopen(os.dup(terminal), "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        assert not Progress(print_every=10).live
    os.close(master)
    os.close(terminal)


def test_commands_in_messages_run_from_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    import runs
    monkeypatch.chdir(ROOT)
    assert runs.script_command("sample.py") == "python sample.py"
    monkeypatch.chdir(tmp_path)
    assert runs.script_command("sample.py") == f"python {shlex.quote(str(ROOT / 'sample.py'))}"


@pytest.mark.parametrize("text", ["# Title *x*\n```\n  indented <b>bold</b>\n* item _u_\n````\nend",
                                  "```", "a `b` c\n\n\n   spaced", "한국어 ~~~\n~~~\n|a|b|\n|-|-|"])
def test_a_text_sample_shows_in_tensorboard_as_written(text: str) -> None:
    """A sample of a README corpus writes ``` lines, which ended the code block: what followed
    became headings, emphasis and lists, its leading spaces lost. Rendered by TensorBoard itself."""
    import html

    from tensorboard.plugins.text.text_plugin import text_array_to_html

    from train import markdown_verbatim
    shown = text_array_to_html(np.array(markdown_verbatim(text).encode()), True)
    assert shown == f"<pre><code>{html.escape(text, quote=False)}\n</code></pre>", shown


def test_learning_rate_warms_up_then_follows_a_cosine_or_the_old_decay_rate() -> None:
    import argparse

    from train import learning_rate
    args = argparse.Namespace(learning_rate=2.0, warmup_steps=10, min_lr_frac=0.1, decay_rate=None)
    # Step k of the warmup (counted from 0) trains at (k + 1) / warmup of the peak: never at 0.
    assert [learning_rate(args, k, 0, 0.0) for k in (0, 4, 9)] == pytest.approx([0.2, 1.0, 2.0])
    # Then a cosine over the rest of the run, from the peak (no drop where the warmup ends) down to
    # min_lr_frac of it, and no lower: in a run of 90 steps, step k at (k - 10) / 80 of the cosine.
    cosine = [learning_rate(args, k, 0, k / 90) for k in (10, 30, 50, 90, 135)]
    assert cosine == pytest.approx([2.0, 0.2 + 1.8 * (1 + 0.5 ** 0.5) / 2, 1.1, 0.2, 0.2])
    # Under a time budget the pace changes (the first steps compile): the rate starts at the peak
    # and falls with every step and second, whatever share of the budget the warmup took.
    assert learning_rate(args, 10, 0, 0.3) == pytest.approx(2.0)
    rates = [learning_rate(args, k, 0, p) for k, p in ((10, 0.3), (11, 0.3), (11, 0.31), (40, 0.5), (40, 0.99))]
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] > 0.2, rates
    # char-rnn-tensorflow's --decay_rate: the peak times decay_rate per epoch, whatever the progress.
    args.decay_rate = 0.5
    assert [learning_rate(args, 50, epoch, 0.9) for epoch in (0, 3)] == pytest.approx([2.0, 0.25])
    assert learning_rate(args, 3, 3, 0.9) == pytest.approx(0.8)  # the warmup comes first


def test_the_nearest_length_limit_ends_the_run_and_is_named() -> None:
    import argparse

    from train import limit_reached, training_progress
    args = argparse.Namespace(num_epochs=3, max_steps=10, time_budget_s=0.0)  # 3 epochs of 100 steps, or 10 steps
    assert training_progress(args, 5, 0.05, 0.0) == pytest.approx(0.5)
    assert training_progress(args, 10, 0.1, 0.0) == 1.0 and limit_reached(args, 10, 0.1, 0.0) == "max_steps"
    args.time_budget_s = 60.0
    assert training_progress(args, 5, 0.05, 45.0) == 0.75 and limit_reached(args, 5, 0.05, 60.0) == "time_budget"
    args.max_steps = 0
    assert limit_reached(args, 300, 3.0, 1.0) == "num_epochs"
    # --num_epochs 3: one and a half epochs are half the run, three its end, whatever the steps
    # (a resume at another --batch_size makes an epoch other steps).
    args.time_budget_s = 0.0
    assert [training_progress(args, step, epochs, 0.0) for step, epochs in ((150, 1.5), (299, 2.99), (300, 3.0))] \
        == [0.5, pytest.approx(2.99 / 3), 1.0]


def test_the_progress_line_s_epoch_and_time_left() -> None:
    from train import epoch_position, format_eta, time_left
    # Epochs done, with the hundredths of the one in progress.
    assert [epoch_position(0, 0, 8), epoch_position(0, 2, 8), epoch_position(1, 0, 8), epoch_position(3, 7, 8)] == [
        "0.00", "0.25", "1.00", "3.87"]
    # 10% of the run in the 10 s since step 10: the other 80% take 80 s, or the 5 steps to
    # --stop_at_step 25 at 1 s a step.
    assert time_left((100.0, 0.1, 10), 110.0, 0.2, 20, 0) == pytest.approx(80.0)
    assert time_left((100.0, 0.1, 10), 110.0, 0.2, 20, 25) == pytest.approx(5.0)
    assert time_left((100.0, 0.1, 10), 110.0, 0.2, 20, 15) == 0.0  # the session has passed it: it stops now
    assert [format_eta(s) for s in (0, 3661, 86399, 86400, 2 * 86400, math.nan, -1)] == [
        "00:00:00", "01:01:01", "23:59:59", "1.0d", "2.0d", "?", "?"]  # a day is not 00:00:00


class GradientDescent:
    """Plain gradient descent in make_train_step's optimizer interface: at learning rate 1 the
    weights move by exactly the gradients the optimizer received."""

    def __init__(self) -> None:
        import tensorflow as tf
        self.slots = tf.Module()  # it keeps no variables of its own

    def apply(self, grads, variables, lr) -> None:
        for g, v in zip(grads, variables):
            v.assign_sub(lr * g)


def test_gradients_are_clipped_to_grad_clip_global_norm() -> None:
    """With plain gradient descent at learning rate 1 the weights move by the gradients the
    optimizer received: their global norm is grad_clip when the gradient's norm (returned) is
    larger, and the gradient's own norm when it is not."""
    import tensorflow as tf

    import model as M
    from train import make_train_step

    rng = np.random.default_rng(0)
    x, y = (tf.constant(rng.integers(0, 11, (4, 6)), tf.int32) for _ in range(2))
    for grad_clip in (1e-3, 1e9):
        net = M.CharRNN(M.ModelConfig("lstm", 11, 2, 8, 4), seed=0)
        before = [v.numpy() for v in net.trainable_variables]
        step = make_train_step(net, GradientDescent(), 4, 6, grad_clip, seed=0)
        _, grad_norm, _ = step(x, y, net.initial_state(4), tf.constant(1.0), tf.constant(0, tf.int64))
        moved = np.sqrt(sum(np.sum((v.numpy() - w) ** 2) for v, w in zip(net.trainable_variables, before)))
        assert float(grad_norm) > 0.01  # the norm before clipping
        assert moved == pytest.approx(min(grad_clip, float(grad_norm)), rel=1e-4)


def test_the_step_trains_with_dropout() -> None:
    """The step's loss is the model's with its dropout masks, not the evaluation's."""
    import tensorflow as tf

    import model as M
    from train import make_train_step

    rng = np.random.default_rng(0)
    x, y = (tf.constant(rng.integers(0, 11, (4, 6)), tf.int32) for _ in range(2))
    for dropout in (0.0, 0.5):
        net = M.CharRNN(M.ModelConfig("lstm", 11, 2, 8, 4, dropout=dropout), seed=0)
        logits, _ = net(x, net.initial_state(4))
        evaluated = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)))
        step = make_train_step(net, GradientDescent(), 4, 6, 5.0, seed=0, xla=False)
        loss, _, _ = step(x, y, net.initial_state(4), tf.constant(0.0), tf.constant(0, tf.int64))
        assert (float(loss) == pytest.approx(evaluated, rel=1e-6)) == (dropout == 0.0), (dropout, float(loss))
    # A new mask at each step (the same at the same step, for an exact resume): at learning rate 0 the
    # weights stay, so only the masks can move the loss. One mask for all steps would prune the model.
    losses = [float(step(x, y, net.initial_state(4), tf.constant(0.0), tf.constant(at, tf.int64))[0])
              for at in (0, 1, 2, 0)]
    assert len(set(losses[:3])) == 3 and losses[3] == losses[0], losses


def test_the_flags_reach_the_step(tmp_path: Path, corpus: Path) -> None:
    """--learning_rate's schedule, --grad_clip and --ema_decay as the step applies them, read from
    the checkpoints of two one-step runs from the same --seed: Adam's first update moves each weight
    by the learning rate (its moments' ratio is the gradient's sign), its first moment is 0.1 times
    the clipped gradient, and a decay of 0 keeps the average a copy of the trained weights."""
    lr, weights = {}, {}
    for warmup in (1, 4):
        name = f"w{warmup}"
        result = train(tmp_path, "--input", str(corpus), *TINY, "--max_steps", "1", "--eval_every", "100",
                       "--seed", "1", "--learning_rate", "0.01", "--warmup_steps", str(warmup), "--grad_clip", "0.01",
                       "--ema_decay", "0", "--run_name", name)
        assert result.returncode == 0, result.stderr
        (_, rate), = read_scalars(tmp_path / "logs" / name)["train/learning_rate"]
        lr[warmup] = float(rate)
        path = str(tmp_path / "save" / name / "ckpt-1")
        weights[warmup] = checkpoint_weights(path, "trained_model/")
        averaged = checkpoint_weights(path, "model/")
        assert weights[warmup] and all(np.array_equal(averaged[k.replace("trained_", "", 1)], v)
                                       for k, v in weights[warmup].items())
        first_moment = checkpoint_weights(path, "optimizer/m/").values()
        moment_norm = np.sqrt(sum(np.sum(m.astype(np.float64) ** 2) for m in first_moment))
        assert moment_norm == pytest.approx(0.1 * 0.01, rel=1e-3)
    assert lr[1] > lr[4] > 0
    moved = max(np.abs(weights[1][k] - weights[4][k]).max() for k in weights[1])
    assert moved == pytest.approx(lr[1] - lr[4], rel=1e-3)


def test_batch_groups_train_like_one_group() -> None:
    """Split into groups (here 2 + 2 + 1 streams, XLA computations run side by side), a batch
    trains as it does whole: the same losses, norms (clipped), carried state and weights."""
    import tensorflow as tf

    import model as M
    from train import Adam, make_train_step
    rng = np.random.default_rng(0)
    batches = [[tf.constant(rng.integers(0, 11, (5, 6)), tf.int32) for _ in range(2)] for _ in range(3)]
    runs = []
    for groups in (1, 3):
        net = M.CharRNN(M.ModelConfig("lstm", 11, 2, 8, 4), seed=0)
        step = make_train_step(net, Adam(net.trainable_variables), 5, 6, 0.5, seed=0, groups=groups)
        state, seen = net.initial_state(5), []
        for i, (x, y) in enumerate(batches):
            loss, grad_norm, state = step(x, y, state, tf.constant(0.01), tf.constant(i, tf.int64))
            seen.append((float(loss), float(grad_norm)))
        runs.append((seen, state.numpy(), [v.numpy() for v in net.trainable_variables]))
    (seen1, state1, weights1), (seen3, state3, weights3) = runs
    np.testing.assert_allclose(seen3, seen1, rtol=1e-5)
    np.testing.assert_allclose(state3, state1, rtol=1e-5, atol=1e-6)
    for w3, w1 in zip(weights3, weights1):
        np.testing.assert_allclose(w3, w1, rtol=1e-5, atol=1e-6)
    initial = M.CharRNN(M.ModelConfig("lstm", 11, 2, 8, 4), seed=0).trainable_variables
    assert all(not np.allclose(w, v.numpy()) for w, v in zip(weights1, initial))  # all of it trained


def test_the_weight_average_follows_each_update() -> None:
    """After each update the average is decay * average + (1 - decay) * weights, with the decay at
    most (1 + step) / (10 + step); at decay 0 it is the weights themselves."""
    import tensorflow as tf

    import model as M
    from train import Adam, WeightAverage, make_train_step
    rng = np.random.default_rng(0)
    config = M.ModelConfig("lstm", 11, 2, 8, 4)
    for decay in (0.0, 0.5, 0.99):
        net = M.CharRNN(config, seed=0)
        average = WeightAverage(M.CharRNN(config, seed=0), decay)
        step = make_train_step(net, Adam(net.trainable_variables), 5, 6, 5.0, seed=0, groups=2, average=average)
        state, want = net.initial_state(5), [v.numpy() for v in net.trainable_variables]
        for i in range(4):
            x, y = (tf.constant(rng.integers(0, 11, (5, 6)), tf.int32) for _ in range(2))
            _, _, state = step(x, y, state, tf.constant(0.01), tf.constant(i, tf.int64))
            rate = min(decay, (2 + i) / (11 + i))  # update i + 1
            want = [rate * a + (1 - rate) * v.numpy() for a, v in zip(want, net.trainable_variables)]
            for got, expected in zip(average.averaged.trainable_variables, want):
                np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
        differ = [not np.allclose(a.numpy(), v.numpy()) for a, v in zip(average.averaged.trainable_variables,
                                                                        net.trainable_variables)]
        assert all(differ) if decay else not any(differ)


def test_a_run_saved_before_the_average_resumes_with_the_average_starting_there(tmp_path: Path, corpus: Path) -> None:
    """A checkpoint of a train.py that kept no average holds the trained weights as `model`: a resume
    trains on from them, and the average starts from them."""
    import tensorflow as tf

    import model as M
    from train import Adam, LossScale
    result = train(tmp_path, "--input", str(corpus), "--max_steps", "6", "--run_name", "old", *TINY)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "save" / "old"
    config = M.ModelConfig.from_dict(json.loads((run / "config.json").read_text(encoding="utf-8"))["model"])
    net, averaged = M.CharRNN(config), M.CharRNN(config)
    loop = {name: tf.Variable(0, dtype=tf.int64) for name in ("step", "epoch", "batch")}
    state = dict(optimizer=Adam(net.trainable_variables).slots, loss_scale=LossScale().slots,
                 train_seconds=tf.Variable(0.0, dtype=tf.float64), best_val=tf.Variable(0.0, dtype=tf.float64),
                 carried_state=tf.Variable(net.initial_state(4)), **loop)
    new_layout = tf.train.Checkpoint(model=averaged, trained_model=net, **state)
    new_layout.read(str(run / "ckpt-6")).assert_existing_objects_matched()
    for old in run.glob("ckpt-6.*"):
        old.unlink()
    shutil.rmtree(run / "best")  # a resume falls back to it: the legacy checkpoint must be what loads
    legacy = tf.train.Checkpoint(model=net, **state)  # the layout of before the average
    legacy.save_counter.assign(1)  # as CheckpointManager saved it
    legacy.write(str(run / "ckpt-6"))
    trained_at_6 = checkpoint_weights(str(run / "ckpt-6"))

    resumed = train(tmp_path, "--init_from", str(run), "--max_steps", "7")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stderr and "at step 6" in resumed.stderr
    trained_at_7 = checkpoint_weights(str(run / "ckpt-7"), "trained_model/")
    average_at_7 = checkpoint_weights(str(run / "ckpt-7"))
    rate = min(0.99, 8 / 17)  # the decay at update 7
    for name, average in average_at_7.items():
        trained = trained_at_7["trained_" + name]
        assert not np.allclose(trained, trained_at_6[name]), name  # trained on from the old weights
        np.testing.assert_allclose(average, rate * trained_at_6[name] + (1 - rate) * trained, rtol=1e-5, atol=1e-7,
                                   err_msg=name)


def test_validation_loss_is_the_first_eval_symbols_of_the_split(tmp_path: Path, corpus: Path) -> None:
    """val/loss is the mean cross-entropy over the first --eval_symbols symbols of the validation
    split, read as --batch_size contiguous streams: recomputed here from the saved checkpoint."""
    import tensorflow as tf

    import model as M
    import dataset
    result = train(tmp_path, "--input", str(corpus), "--max_steps", "6", "--eval_every", "6",
                   "--eval_symbols", "250", "--run_name", "ev", *TINY)
    assert result.returncode == 0, result.stderr
    assert "validation 251 symbols" in result.stderr  # 250 targets and the input before the first
    run = tmp_path / "save" / "ev"
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    net = M.CharRNN(M.ModelConfig.from_dict(config["model"]))
    tf.train.Checkpoint(model=net).read(str(run / "ckpt-6")).expect_partial()
    prepared = dataset.prepare_corpus([corpus], dataset.DataOptions(unit="char"))
    val = prepared.split(config["args"]["val_frac"])[1]
    assert len(val) > 251
    state, nats, count = net.initial_state(4), 0.0, 0
    for x, y in dataset.eval_batches(val[:251], 4, 16):
        logits, state = net(tf.constant(x), state)
        nats += float(tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)))
        count += y.size
    logged = float(read_scalars(tmp_path / "logs" / "ev")["val/loss"][-1][1])
    np.testing.assert_allclose(logged, nats / count, rtol=1e-4)
    # --eval_symbols 0 scores the whole split.
    whole = train(tmp_path, "--input", str(corpus), "--max_steps", "1", "--eval_symbols", "0", "--run_name", "all",
                  *TINY)
    assert whole.returncode == 0, whole.stderr
    assert f"validation {len(val):,} symbols" in whole.stderr, whole.stderr


def test_a_run_saved_before_the_stream_offsets_keeps_its_windows(tmp_path: Path, corpus: Path, monkeypatch) -> None:
    """An epoch's offset now reaches over all the room the streams leave; a run whose config.json
    predates that (no batch_offsets) resumes with offsets below --seq_length, whose windows its saved
    (epoch, batch) names."""
    import train as train_module

    first = train(tmp_path, "--input", str(corpus), "--max_steps", "2", "--run_name", "old", *TINY)
    assert first.returncode == 0, first.stderr
    assert forget_saved(tmp_path / "save" / "old", "batch_offsets") == "stream"
    loaders, train_run = [], train_module.train_run
    monkeypatch.setattr(train_module, "train_run", lambda run, tf: (loaders.append(run.loader), train_run(run, tf))[1])
    resumed = train(tmp_path, "--init_from", "save/old", "--max_steps", "3")
    assert resumed.returncode == 0, resumed.stderr
    length = len(loaders[0].streams[0])
    assert loaders[0].offsets == 16 != length - loaders[0].num_batches * 16
    assert saved_arg(tmp_path / "save" / "old", "batch_offsets") == "window"


def test_mixed_precision_unscales_the_gradients_before_clipping_and_the_update() -> None:
    """Under a loss scale the gradients are scaled back down before they are clipped, reported and
    applied: a float16 step moves the weights as a float32 step does, and reports the same norm."""
    import tensorflow as tf

    import model as M
    from train import LossScale, make_train_step

    rng = np.random.default_rng(1)
    x, y = (tf.constant(rng.integers(0, 11, (2, 5)), tf.int32) for _ in range(2))
    net = M.CharRNN(M.ModelConfig("lstm", 11, 1, 8, 4), seed=0)
    with tf.GradientTape() as tape:  # the float32 gradients, without a loss scale
        logits, _ = net(x, net.initial_state(2))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    want = [tf.convert_to_tensor(g) for g in tape.gradient(loss, net.trainable_variables)]
    before = [v.numpy() for v in net.trainable_variables]
    step = make_train_step(net, GradientDescent(), 2, 5, 1e9, seed=0, xla=False, loss_scale=LossScale(2.0 ** 10))
    _, grad_norm, _ = step(x, y, net.initial_state(2), tf.constant(1.0), tf.constant(0, tf.int64))
    assert float(grad_norm) == pytest.approx(float(tf.linalg.global_norm(want)), rel=0.02)
    moves = [np.concatenate([(b - v.numpy()).ravel() for v, b in zip(net.trainable_variables, before)]),
             np.concatenate([g.numpy().ravel() for g in want])]
    np.testing.assert_allclose(moves[0], moves[1], rtol=0.05, atol=0.02 * np.abs(moves[1]).max())


def test_without_warmup_the_cosine_starts_at_the_peak_at_step_0() -> None:
    """--warmup_steps 0: step 0 trains at the peak (no division by the warmup's share at step 0)."""
    import argparse

    from train import learning_rate
    args = argparse.Namespace(learning_rate=2.0, warmup_steps=0, min_lr_frac=0.1, decay_rate=None)
    assert learning_rate(args, 0, 0, 0.0) == 2.0
    assert learning_rate(args, 45, 0, 0.5) == pytest.approx(1.1)  # half way down the cosine


def test_loss_scale_doubles_after_each_run_of_growth_steps_and_has_keras_defaults() -> None:
    """The count of finite steps starts again after each doubling and each overflow, so the scale
    doubles once per growth_steps finite steps in a row (not at every step once past them); and the
    defaults are those of Keras' LossScaleOptimizer."""
    import keras
    import tensorflow as tf

    from train import LossScale
    scale, seen = LossScale(initial=8.0, growth_steps=2), []
    for finite in (True, True, True, True, True, False, True, True):
        scale.update(tf.constant(finite))
        seen.append(float(scale.scale))
    assert seen == [8, 16, 16, 32, 32, 16, 16, 32]
    reference = keras.mixed_precision.LossScaleOptimizer(keras.optimizers.SGD())
    default = LossScale()
    assert (float(default.scale), default.growth_steps) == (reference.initial_scale, reference.dynamic_growth_steps)


def test_a_batch_of_one_stream_is_not_split_into_groups() -> None:
    """The default splits a batch into two groups on a CPU of 2+ cores under XLA; one stream cannot
    be split (a group of none made the loss and the weights NaN), so it trains as one group."""
    import tensorflow as tf

    from train import batch_groups
    assert batch_groups(tf, 0, 1, xla=True) == 1
    assert batch_groups(tf, 0, 2, xla=True) == (2 if (os.cpu_count() or 1) >= 2 else 1)
    assert batch_groups(tf, 0, 2, xla=False) == 1 and batch_groups(tf, 3, 4, xla=False) == 3  # as requested


def test_the_first_stop_signal_names_the_stop() -> None:
    """SIGTERM from a job scheduler, then Ctrl-C while it stops: the run was stopped by SIGTERM. A worker
    of multiworker that received none names the one another worker received, and exits as by it."""
    import argparse
    import types

    from train import Stop, Trainer
    trainer = types.SimpleNamespace(args=argparse.Namespace(stop_at_step=0), step=5)
    assert Trainer.stop_reason(trainer, 0.5, signal.SIGINT, signal.SIGTERM) == Stop("SIGTERM", signum=signal.SIGTERM)
    assert Trainer.stop_reason(trainer, 0.5, signal.SIGTERM, None) == Stop("SIGTERM to another worker",
                                                                             signum=signal.SIGTERM)
    assert Trainer.stop_reason(trainer, 0.5, 0, None) is None
    trainer.args.stop_at_step = 5
    assert Trainer.stop_reason(trainer, 0.5, signal.SIGTERM, signal.SIGTERM) == Stop("--stop_at_step 5")


def test_the_workers_agree_on_the_first_worker_s_signal() -> None:
    """Each worker's own signal number is gathered; all stop by the first worker's that received one."""
    import types

    from train import Trainer
    rows = [[0.25, 0.0], [0.75, float(signal.SIGHUP)], [0.5, float(signal.SIGTERM)]]
    trainer = types.SimpleNamespace(progress=lambda: 0.5, gather=lambda mine: np.array(rows))
    assert Trainer.agreed_progress(trainer, 0) == (0.25, signal.SIGHUP)  # the chief's clock, worker 1's signal
    rows[1][1] = 0.0
    assert Trainer.agreed_progress(trainer, 0) == (0.25, signal.SIGTERM)
    rows[2][1] = 0.0
    assert Trainer.agreed_progress(trainer, 0) == (0.25, 0)
    trainer.gather = None  # one machine: its own
    assert Trainer.agreed_progress(trainer, signal.SIGINT) == (0.5, signal.SIGINT)


def test_a_signal_handled_inside_another_s_handler_leaves_the_first_one_stopping_the_run(
        capfd: pytest.CaptureFixture[str]) -> None:
    """A terminal closed and Ctrl-C at once: Python may run SIGINT's handler between two bytecodes of
    SIGHUP's. SIGHUP came first, so it is the one said to stop the run and named by the stop (it was
    said "still stopping", as if second, when SIGHUP's handler counted the arrivals after SIGINT's)."""
    from train import StopSignals
    stops = StopSignals()

    class StartUp(dict):  # asking whether start-up is over is where SIGINT's handler runs, inside SIGHUP's
        def __contains__(self, key) -> bool:
            if stops.arrived == {0: signal.SIGHUP}:
                stops(signal.SIGINT, None)
            return super().__contains__(key)

    stops._start_up = StartUp(stops._start_up)
    assert not stops.end_start_up()  # training has begun
    stops(signal.SIGHUP, None)
    said, still = capfd.readouterr().err, ": still stopping (kill -9 would lose the steps since the last checkpoint)"
    assert "SIGHUP: stopping after the step or evaluation in progress, with a checkpoint" in said, said
    assert f"SIGINT{still}" in said and stops.first() == signal.SIGHUP, said
    stops(signal.SIGHUP, None)  # the same signal twice is said so
    stops(signal.SIGTERM, None)
    said = capfd.readouterr().err.splitlines()
    assert len(said) == 2 and said[0].endswith(f"SIGHUP again{still}") and said[1].endswith(f"SIGTERM{still}"), said


def test_start_up_ends_with_the_first_step_unless_a_signal_came_in_it(capfd: pytest.CaptureFixture[str]) -> None:
    """A signal in start-up (the first step included) keeps nothing, and start-up then stays open: a
    second Ctrl-C while the session is undone is told the same, not "still stopping" as if a
    checkpoint were being written. Without one, the first step ends start-up."""
    from train import StopSignals
    stops = StopSignals()
    stops(signal.SIGINT, None)
    assert stops.end_start_up() and stops.end_start_up()
    stops(signal.SIGINT, None)
    said = capfd.readouterr().err.splitlines()
    assert len(said) == 2 and all("SIGINT: stopping before training has begun; nothing is saved" in line
                                  for line in said), said
    quiet = StopSignals()
    assert not quiet.end_start_up()
    quiet(signal.SIGTERM, None)
    assert "SIGTERM: stopping after the step or evaluation in progress, with a checkpoint" in capfd.readouterr().err
    # Multiworker: before fit's first check the workers all stop there, with nothing saved; during it,
    # either (another worker may already have said "go on"); in the first step they train it, then
    # stop together and save it, so a later signal is told of that save.
    before = StopSignals(together=True)
    before(signal.SIGTERM, None)
    said = capfd.readouterr().err
    assert "SIGTERM: stopping before training has begun; nothing is saved\n" in said, said
    checking = StopSignals(together=True)
    checking.first_check_begun = True
    checking(signal.SIGTERM, None)
    assert ("SIGTERM: stopping where the workers agree: before the first step, with nothing saved, or after it, with "
            "a checkpoint") in capfd.readouterr().err
    together = StopSignals(together=True)
    together.first_check_begun = together.first_step_begun = True
    together(signal.SIGINT, None)
    assert "SIGINT: stopping after the first step, being compiled, with a checkpoint (the workers stop together)" in (
        capfd.readouterr().err)
    assert together.end_start_up()
    together(signal.SIGINT, None)
    assert "SIGINT again: still stopping (kill -9 would lose" in capfd.readouterr().err


def test_fit_marks_its_first_check_and_its_first_step_for_the_signals(monkeypatch) -> None:
    """What a multiworker start-up signal is told depends on where fit is: before its first stop
    check, in it, or past it in the first step."""
    import argparse
    import types

    import train
    from train import StopSignals, Trainer
    stops, seen = StopSignals(together=True), []

    class FirstStep(Exception):
        pass

    def agreed_progress(signum):
        seen.append(("check", stops.first_check_begun, stops.first_step_begun))
        return 0.0, 0

    def train_step(*_):
        seen.append(("step", stops.first_check_begun, stops.first_step_begun))
        raise FirstStep

    t = types.SimpleNamespace(args=argparse.Namespace(), run=types.SimpleNamespace(loader=types.SimpleNamespace(
        batch=lambda epoch, batch: (None, None))), epoch=0, batch=0, step=0, start_step=0, state=None,
        agreed_progress=agreed_progress, stop_reason=lambda *_: None, train_step=train_step)
    monkeypatch.setattr(train, "learning_rate", lambda *_: 0.001)
    with pytest.raises(FirstStep):
        Trainer.fit(t, stops)
    assert seen == [("check", True, False), ("step", True, True)]


@pytest.mark.parametrize("loss, grad_norm, mixed_precision, said", [
    (float("nan"), 3.0, False, "the training loss became nan at step 6; nothing was saved from it. Lower "
                               "--learning_rate (now 0.003) or --grad_clip; nothing was saved: run it again"),
    (2.3125, float("inf"), False, "the gradient norm became inf (loss 2.3125) at step 6; nothing was saved from it. "
                                  "Lower --learning_rate (now 0.003) or --grad_clip; nothing"),
    (2.3125, float("inf"), True, "the gradient norm became inf (loss 2.3125) at step 6; nothing was saved from it. "
                                 "Lower --learning_rate (now 0.003) or --grad_clip, or train without --mixed_precision;"),
])
def test_divergence_names_what_became_infinite(monkeypatch, loss, grad_norm, mixed_precision, said) -> None:
    """A finite loss with an infinite gradient norm (a float16 overflow once the loss scale is below 1) was
    told as 'the training loss became 2.3125', and the same seeded command was advised, which diverges again."""
    import argparse
    import functools
    import types

    import tensorflow as tf

    import train
    import workers
    t = types.SimpleNamespace(
        args=argparse.Namespace(mixed_precision=mixed_precision, learning_rate=0.003),
        run=types.SimpleNamespace(loader=types.SimpleNamespace(batch=lambda epoch, batch: (None, None)), kept=False,
                                  resume_dir=None, forked_from=None, cluster=workers.Cluster()),
        epoch=0, batch=5, step=5, start_step=0, state=None, loss_scale=train.LossScale(initial=0.5),
        agreed_progress=lambda signum: (0.5, 0), stop_reason=lambda *_: None,
        train_step=lambda *_: (tf.constant(loss), tf.constant(grad_norm), None))
    t.diverged = functools.partial(train.Trainer.diverged, t)
    monkeypatch.setattr(train, "learning_rate", lambda *_: 0.001)
    with pytest.raises(train.CharRNNError) as error:
        train.Trainer.fit(t, train.StopSignals())
    assert str(error.value).startswith(said), str(error.value)


def test_a_session_that_saved_nothing_removes_only_its_own_events(tmp_path: Path) -> None:
    """Resumed in its own TensorBoard folder, a session that saved nothing removes the event file
    it wrote, never the run's earlier ones."""
    import types

    from train import undo_session
    log_dir = tmp_path / "logs" / "r"
    log_dir.mkdir(parents=True)
    (log_dir / "events.out.tfevents.1.host").write_bytes(b"earlier")
    before = set(os.listdir(log_dir))
    (log_dir / "events.out.tfevents.2.host").write_bytes(b"this session's")
    run = types.SimpleNamespace(log_dir=log_dir, log_dir_created=None, log_files_before=before, config_before=None,
                                run_dir=tmp_path / "save" / "r")
    undo_session(run)
    assert os.listdir(log_dir) == ["events.out.tfevents.1.host"]


def test_a_failure_before_the_first_step_saves_nothing_after_it() -> None:
    """save_after_failure keeps steps trained since the last checkpoint: at the session's first step
    there are none, and a fresh run must not be kept as a checkpoint of its untrained weights."""
    import types

    import workers
    from train import Trainer
    saved = []
    trainer = types.SimpleNamespace(writer=object(), step=0, start_step=0, saved_step=-1, save=saved.append,
                                    manager="manager",
                                    run=types.SimpleNamespace(cluster=workers.Cluster(), run_dir=Path("save/r")))
    assert Trainer.save_after_failure(trainer) == (False, "") and saved == []
    trainer.step = 3  # steps trained since: saved
    assert Trainer.save_after_failure(trainer) == (True, "; step 3 was saved in save/r") and saved == ["manager"]
    trainer.saved_step = 3  # the loop's checkpoint of this step holds them all: not written again
    assert Trainer.save_after_failure(trainer) == (False, "") and saved == ["manager"]
    trainer.step, trainer.run.cluster = 4, workers.Cluster(0, 2)  # multiworker: saved together, at agreed steps
    assert Trainer.save_after_failure(trainer) == (False, "") and saved == ["manager"]


def test_a_session_s_end_evaluates_saves_and_says_once(monkeypatch, caplog) -> None:
    """finish: at the length limit a final evaluation (not again where the loop just made one), a
    checkpoint unless the loop's holds it all, the HParams Success, and no resume command; a stop
    short of the limit says how to resume and leaves the status open; a stop before the first step
    saves nothing and says what is kept."""
    import argparse
    import contextlib
    import functools
    import logging
    import types

    import train
    import workers
    ends: list[int] = []
    monkeypatch.setattr(train, "write_run_end", ends.append)

    def trainer(step: int, saved_step: int, last_val_step: int = -1, train_seconds: float = 0.0,
                improves: bool = False, best_val: float = 1.5, time_budget_s: float = 0.0, **run):
        t = types.SimpleNamespace(
            step=step, epoch=0, batch=step, start_step=2, saved_step=saved_step, best_started_again=False, last_val_step=last_val_step, best_val=best_val,
            train_seconds=train_seconds, seconds_so_far=lambda: train_seconds, manager="manager", saves=[], evals=[],
            args=argparse.Namespace(num_epochs=0, max_steps=0 if time_budget_s else 8, time_budget_s=time_budget_s,
                                    time_budget=f"{time_budget_s:g}s"),
            events=lambda step=None: contextlib.nullcontext(),
            run=types.SimpleNamespace(cluster=workers.Cluster(), run_dir=Path("save/r"), log_dir=Path("logs/r"),
                                      loader=types.SimpleNamespace(num_batches=100),
                                      **{"forked_from": None, "resume_dir": None, **run}))
        t.save = t.saves.append
        t.run_eval = lambda: t.evals.append(t.step) or improves
        t.limit_flag = functools.partial(train.Trainer.limit_flag, t)
        t.epochs = functools.partial(train.Trainer.epochs, t)
        return t

    def finish(t, stop: train.Stop) -> str:
        ends.clear()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="charrnn"):
            train.Trainer.finish(t, stop)
        return caplog.text

    def at_limit(t) -> train.Stop:  # as stop_reason names it
        flag = t.limit_flag(t.seconds_so_far())
        return train.Stop(f"--{flag} {getattr(t.args, flag)}", at_limit=True)

    # At the limit: evaluated, saved once, Success, and no resume command.
    t = trainer(8, saved_step=5)
    said = finish(t, at_limit(t))
    assert (t.evals, t.saves, ends) == ([8], ["manager"], [8])
    assert "stopped at step 8 by --max_steps 8; best val loss 1.5000. Sample with:" in said and "resume with" not in said
    # TensorBoard's record of the end cannot be written: the run is saved at its limit all the same.
    t = trainer(8, saved_step=5)

    def unwritable(step=None):
        raise train.EventsUnwritable("File too large")

    t.events = unwritable
    said = finish(t, at_limit(t))
    assert t.saves == ["manager"] and "record of the run's end could not be written (File too large)" in said
    assert "stopped at step 8 by --max_steps 8" in said
    # The loop saved this step and the final evaluation did not improve: that checkpoint is all there is.
    t = trainer(8, saved_step=8)
    finish(t, at_limit(t))
    assert (t.evals, t.saves, ends) == ([8], [], [8])
    t = trainer(8, saved_step=8, improves=True)  # best_val changed: the run's own checkpoint holds it too
    finish(t, at_limit(t))
    assert t.saves == ["manager"]
    # A time budget that ran out in the loop's evaluation and save of this step: neither again...
    t = trainer(8, saved_step=8, last_val_step=8, train_seconds=10.5, time_budget_s=10.0)
    assert "by --time_budget 10s" in finish(t, at_limit(t))
    assert (t.evals, t.saves, ends) == ([], [], [8])
    # ... unless the checkpoint was taken short of the budget: a resume from it would train on.
    t = trainer(8, saved_step=8, last_val_step=8, train_seconds=9.5, time_budget_s=10.0)
    t.seconds_so_far = lambda: 10.5
    finish(t, at_limit(t))
    assert (t.evals, t.saves) == ([], ["manager"])
    # A signal: no evaluation, the steps since the last checkpoint saved, no status, how to resume.
    t = trainer(6, saved_step=5, best_val=math.inf)
    said = finish(t, train.Stop("SIGTERM", signum=signal.SIGTERM))
    assert (t.evals, t.saves, ends) == ([], ["manager"], [])
    assert "stopped at step 6 by SIGTERM; no validation yet." in said and "resume with:  " in said
    t = trainer(6, saved_step=6)  # --stop_at_step where the loop saved: not saved again
    assert "resume with:  " in finish(t, train.Stop("--stop_at_step 6")) and t.saves == []
    # Before the first step: nothing saved, and what is left of the run told.
    for run, left in (({"resume_dir": Path("save/r")}, ""),
                      ({"resume_dir": Path("save/q"), "forked_from": Path("save/q")}, "; no copy is kept in save/r")):
        t = trainer(2, saved_step=2, **run)
        said = finish(t, train.Stop("--stop_at_step 2"))
        assert f"stopped by --stop_at_step 2 at step 2, before training: nothing saved{left}\n" in said, (run, said)
        assert (t.evals, t.saves, ends) == ([], [], [])
    with pytest.raises(KeyboardInterrupt, match="^SIGTERM$"):  # a signal before the first step: as in start-up
        finish(trainer(2, saved_step=2), train.Stop("SIGTERM to another worker", signum=signal.SIGTERM))


def test_a_step_s_scalars_rate_and_time_left(tmp_path: Path, monkeypatch) -> None:
    """log_step: the scalars of each step (no gradient norm for a step skipped by a float16 overflow),
    characters per second in original characters (not jamo) from the session's second step, the rate
    shown smoothed, and the time left at the pace since pace_from."""
    import argparse
    import functools
    import types

    import tensorflow as tf

    import train
    shown: list[list[str]] = []
    writer = tf.summary.create_file_writer(str(tmp_path))
    t = types.SimpleNamespace(
        tf=tf, writer=writer, run=types.SimpleNamespace(log_dir=tmp_path), step=11, start_step=10, rate=0.0,
        pace_from=None, last_val=None, done=0.1, chars_per_symbol={"train": 0.5}, loss_scale=train.LossScale(initial=8.0),
        args=argparse.Namespace(batch_size=40, seq_length=16, mixed_precision=False, stop_at_step=0),
        progress_line=types.SimpleNamespace(update=lambda step, fields: shown.append(fields)),
        epoch_position=lambda: "0.11")
    t.progress = lambda: t.done
    t.events = functools.partial(train.Trainer.events, t)
    # log_step's clock stands still at `now`: a loaded machine's pause between a call and its reading
    # of the clock (0.3 s already moved the rate past 2%) changes no rate or time left.
    now = 1000.0
    monkeypatch.setattr(train, "time", types.SimpleNamespace(monotonic=lambda: now, strftime=time.strftime,
                                                             gmtime=time.gmtime))
    monkeypatch.setattr(train.utils, "awake_seconds", lambda: now)
    # The session's first step compiled it: no rate, no time left yet; the pace is measured from its end.
    train.Trainer.log_step(t, 2.0, math.inf, 1e-3, now - 2.0)
    assert shown[-1][3:6] == ["val -", "ETA ?", "- chars/s"] and t.pace_from[1:] == (0.1, 11) and t.rate == 0.0
    # 320 characters (640 jamo) in 20 s; 40% of the run in the 80 s since the pace began: 100 s to go.
    t.step, t.done, t.last_val, t.pace_from = 12, 0.5, 1.25, (now - 80.0, 0.1, 11)
    train.Trainer.log_step(t, 1.8, 1.5, 1e-3, now - 20.0)
    assert t.rate == pytest.approx(16.0, rel=0.02)
    assert shown[-1][3:6] == ["val 1.2500", "ETA 00:01:40", "16 chars/s"], shown[-1]
    t.step, t.args.mixed_precision = 13, True
    train.Trainer.log_step(t, 1.7, 1.5, 1e-3, now - 10.0)  # 32 chars/s, smoothed: 0.9 * 16 + 0.1 * 32
    assert t.rate == pytest.approx(17.6, rel=0.02) and shown[-1][5] == "18 chars/s"
    writer.flush()
    scalars = read_scalars(tmp_path)
    assert [step for step, _ in scalars["train/grad_norm"]] == [12, 13]  # step 11's norm was infinite
    assert [step for step, _ in scalars["train/chars_per_sec"]] == [12, 13]
    assert [float(v) for _, v in scalars["train/chars_per_sec"]] == pytest.approx([16.0, 32.0], rel=0.02)
    assert [step for step, _ in scalars["train/loss_scale"]] == [13]  # under --mixed_precision only
    np.testing.assert_allclose([float(v) for _, v in scalars["train/bpc"]],
                               np.array([2.0, 1.8, 1.7]) / 0.5 / math.log(2), rtol=1e-6)


def test_the_length_limit_comes_before_stop_at_step_at_the_same_step() -> None:
    """A run whose --stop_at_step is its last step reached its limit: it is finished (evaluated, Success
    in the HParams table), not paused to be resumed into nothing."""
    import argparse
    import types

    from train import Stop, Trainer
    trainer = types.SimpleNamespace(args=argparse.Namespace(stop_at_step=20, max_steps=20), step=20,
                                    limit_flag=lambda seconds: "max_steps", seconds_so_far=lambda: 1.0)
    assert Trainer.stop_reason(trainer, 1.0, signal.SIGINT, signal.SIGINT) == Stop("--max_steps 20", at_limit=True)
    assert Trainer.stop_reason(trainer, 0.5, signal.SIGINT, signal.SIGINT) == Stop("--stop_at_step 20")
    trainer.step = 19
    assert Trainer.stop_reason(trainer, 0.5, 0, None) is None
    trainer.args.stop_at_step = 0
    assert Trainer.stop_reason(trainer, 0.99, 0, None) is None


def test_out_of_memory_names_the_flags_that_need_less(tmp_path: Path, monkeypatch) -> None:
    """A ResourceExhaustedError in training is out of memory: the sizes to lower are named. (A full
    disk under --log_dir is the TensorBoard writer's, told by test_a_full_log_disk_keeps_the_steps_trained.)"""
    import argparse
    import types

    import tensorflow as tf

    import train
    import utils
    import workers
    from utils import CharRNNError
    monkeypatch.setattr(utils, "stop_signals", lambda: ())  # pytest's own handlers stay

    def failing(message: str):
        def start(run, tf, hang_watch):
            raise tf.errors.ResourceExhaustedError(None, None, message)
        return start

    run = types.SimpleNamespace(args=argparse.Namespace(peer_timeout_s=0.0), cluster=workers.Cluster(), kept=False,
                                resume_dir=None, forked_from=None, run_dir=tmp_path / "r")
    for message in ("OOM when allocating tensor with shape[64,4096] and type float [Op:MatMul]",
                    "failed to allocate memory [Op:AddV2]"):
        monkeypatch.setattr(train, "Trainer", failing(message))
        with pytest.raises(CharRNNError) as error:
            train.train_run(run, tf)
        assert str(error.value).startswith("out of memory (") and (
            "A smaller --batch_size, --rnn_size or --num_layers needs less (a resumed run may change its "
            "--batch_size, not the others)" in str(error.value)), error.value
        assert str(error.value).endswith("nothing was saved: run it with smaller ones again"), error.value


def test_the_hparams_table_has_the_run_s_length_and_schedule(tmp_path: Path) -> None:
    """Runs that differ by their time budget, epochs, old decay rate or weight average are told apart in the
    HParams table."""
    import tensorflow as tf

    import train
    args, _ = parsed_flags("--input", "c.txt", "--time_budget", "15m", "--decay_rate", "0.97", "--num_epochs", "7",
                           "--ema_decay", "0.5", "--log_dir", str(tmp_path))
    args.log_name = "r"
    with tf.summary.create_file_writer(str(tmp_path / "r")).as_default():
        train.write_run_summaries(args, 42)
    hparams = hparams_of(tmp_path / "r")
    assert (hparams["time_budget"], hparams["num_epochs"], hparams["decay_rate"], hparams["ema_decay"]) == (
        "15m", 7, pytest.approx(0.97), 0.5)
    assert (hparams["vocab_size"], hparams["group"]) == (42, str(tmp_path / "r"))
    assert "max_steps" in hparams and "init_from" not in hparams


def test_the_strategy_follows_the_flag_and_the_gpus_found() -> None:
    """auto: MirroredStrategy over two GPUs or more, one GPU or the CPU alone otherwise; mirrored
    whatever was found. (A fake tf: this machine may have no GPU.)"""
    import types

    import workers

    def strategy(name: str, gpus: int) -> tuple:
        distribute = types.SimpleNamespace(MirroredStrategy=lambda: ("mirrored",),
                                           OneDeviceStrategy=lambda device: ("one", device))
        tf = types.SimpleNamespace(config=types.SimpleNamespace(list_physical_devices=lambda kind: ["gpu"] * gpus),
                                   distribute=distribute)
        return workers.make_strategy(tf, name)

    assert strategy("auto", 0) == ("one", "/cpu:0")
    assert strategy("auto", 1) == ("one", "/gpu:0")
    assert strategy("auto", 2) == ("mirrored",)
    assert strategy("mirrored", 0) == ("mirrored",)
    assert strategy("one", 2) == ("one", "/gpu:0")
