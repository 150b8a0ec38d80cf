"""Two real worker processes on 127.0.0.1 training one model with MultiWorkerMirroredStrategy."""
from __future__ import annotations

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
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import workers
from test_train import ROOT, checkpoint_weights, read_scalars, tiny_text

TINY = ["--num_layers", "1", "--rnn_size", "32", "--embedding_size", "16", "--batch_size", "8",
        "--seq_length", "16", "--print_every", "10", "--warmup_steps", "5", "--learning_rate", "0.01",
        "--strategy", "multiworker", "--run_name", "mw", "--xla", "off"]  # no 3 s compile per worker
# The first test trains with the compiled step users train with (the last --xla given wins).
COMPILED = ["--xla", "on"]


def free_ports(count: int) -> list[str]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(cwd: Path, *args: str, worker_cwd: Path | None = None, worker_flags: tuple[str, ...] = (),
                  worker_script: Path = ROOT / "train.py") -> list[subprocess.Popen]:
    """Worker 1, then the chief, in cwd (worker 1 in worker_cwd if given: another machine's disk;
    with worker_flags after the others; running worker_script, a wrapper of train.py)."""
    addresses = free_ports(2)
    procs = []
    for index in (1, 0):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": addresses},
                                                     "task": {"type": "worker", "index": index}}))
        script = worker_script if index else ROOT / "train.py"
        procs.append(subprocess.Popen([sys.executable, str(script), *args, *(worker_flags if index else ())],
                                      cwd=worker_cwd if index and worker_cwd else cwd, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      encoding="utf-8"))
    return procs[::-1]  # [chief, worker 1]


def finish(procs: list[subprocess.Popen], timeout: int = 240) -> list[str]:
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
    return outputs


def test_two_workers_train_resume_and_sample(tmp_path: Path) -> None:
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    chief, worker = finish(start_workers(tmp_path, "--input", "tiny.txt", "--max_steps", "40",
                                         "--eval_every", "20", *TINY, *COMPILED))
    assert "2 replicas in sync, worker 0 of 2" in chief and "worker 1 of 2" in worker
    assert "worker 0 of 2: waiting for all the workers of TF_CONFIG's cluster to start" in chief  # not in silence
    # Both replicas computed the same validation loss: they hold the same weights.
    val = lambda out: [line.split("val loss")[1] for line in out.splitlines() if "nats/symbol" in line]
    assert val(chief) == val(worker) and len(val(chief)) == 2

    losses = [float(v) for _, v in read_scalars(tmp_path / "logs" / "mw")["train/loss"]]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3, losses
    # Only the chief wrote: one run directory, one log directory.
    assert [p.name for p in (tmp_path / "save").iterdir() if p.is_dir()] == ["mw"]
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["mw"]

    sample = subprocess.run([sys.executable, str(ROOT / "sample.py"), "--save_dir", "save", "-n", "50",
                             "--seed", "1"], cwd=tmp_path, capture_output=True, text=True, encoding="utf-8")
    assert sample.returncode == 0 and len(sample.stdout.strip()) > 10, sample.stderr

    # On by time: the workers' clocks differ, yet they train at the chief's learning rates (the
    # same weights, so the same validation losses) and stop at the same step. The budget counts
    # the whole run, so it is 8 s more than the first session trained, however loaded the machine.
    (spent,) = checkpoint_weights(str(tmp_path / "save" / "mw" / "ckpt-40"), "train_seconds/").values()
    other_disk = tmp_path / "host2"  # a copy of the run as it is now, which the next session makes stale
    shutil.copytree(tmp_path / "save", other_disk / "save")
    # A checkpoint written but never listed (a kill between the two): every worker picks from the list.
    for part in (tmp_path / "save" / "mw").glob("ckpt-40.*"):
        shutil.copy(part, part.with_name(part.name.replace("ckpt-40", "ckpt-45")))
    budget = f"{math.ceil(spent) + 8}s"
    chief, worker = finish(start_workers(tmp_path, "--init_from", "save/mw", "--time_budget", budget,
                                         "--eval_every", "20"))
    assert "ckpt-40 at step 40" in chief and "ckpt-40 at step 40" in worker, (chief, worker)
    last = int(re.search(rf"stopped at step (\d+) by --time_budget {budget}", chief)[1])
    assert last > 40 and val(chief) == val(worker) and val(chief), (chief, worker)
    assert f"step {last} epoch" in worker and f"step {last + 1} " not in worker
    steps = [s for s, _ in read_scalars(tmp_path / "logs" / "mw")["train/loss"]]
    assert sorted(steps) == list(range(1, last + 1))

    # Worker 1 resuming from its stale copy would train other weights in silence: both refuse.
    saved = sorted(p.name for p in (tmp_path / "save" / "mw").iterdir())
    procs = start_workers(tmp_path, "--init_from", "save/mw", "--max_steps", str(last + 20), worker_cwd=other_disk)
    for proc in procs:
        out = proc.communicate(timeout=240)[0]
        assert proc.returncode == 2 and "Traceback" not in out, out
        assert f"restored different checkpoints of mw: worker 0 at step {last} " in out, out
        assert "worker 1 at step 40 " in out and "the run directory of worker 0 (the chief)" in out, out
    assert sorted(p.name for p in (tmp_path / "save" / "mw").iterdir()) == saved


def test_two_workers_train_in_mixed_precision(tmp_path: Path) -> None:
    """Across replicas the float16 step's skip of an overflowed update cannot be a tf.cond (a
    variable's update across replicas in a branch failed with a traceback), and the loss scale is a
    mirrored variable (float() of it failed)."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    chief, worker = finish(start_workers(tmp_path, "--input", "tiny.txt", "--max_steps", "6", "--eval_every", "6",
                                         "--mixed_precision", *TINY))
    assert "stopped at step 6 by --max_steps 6" in chief
    val = lambda out: [line.split("val loss")[1] for line in out.splitlines() if "nats/symbol" in line]
    assert val(chief) == val(worker) and len(val(chief)) == 1
    assert "train/loss_scale" in read_scalars(tmp_path / "logs" / "mw")


def test_a_session_across_workers_does_not_save_a_stale_hidden_state(tmp_path: Path) -> None:
    """Across replicas the carried hidden state restarts at zero. A checkpoint saved there kept the
    state of the one-device session before it, which a one-device resume then carried into text at
    another position."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    one_device = [flag for flag in TINY if flag not in ("--strategy", "multiworker")]
    alone = subprocess.run([sys.executable, str(ROOT / "train.py"), "--input", "tiny.txt", "--max_steps", "10",
                            "--eval_every", "10", *one_device], cwd=tmp_path, capture_output=True, text=True,
                           encoding="utf-8", timeout=240)
    assert alone.returncode == 0, alone.stderr
    carried = lambda step: checkpoint_weights(str(tmp_path / "save" / "mw" / f"ckpt-{step}"), "carried_state/")
    assert all(np.abs(state).max() > 0 for state in carried(10).values())  # what goes stale below
    finish(start_workers(tmp_path, "--init_from", "save/mw", "--max_steps", "14", "--eval_every", "100",
                         "--strategy", "multiworker"))
    assert carried(14) and all(not state.any() for state in carried(14).values())


def test_a_killed_worker_stops_the_other_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    chief, worker = start_workers(tmp_path, "--input", "tiny.txt", "--max_steps", "1000000",
                                  "--eval_every", "1000000", *TINY)
    threads = {}
    for line in chief.stdout:  # training has run a while on both
        step = re.search(r" step (\d+) epoch", line)
        if step and int(step[1]) in (100, 500):
            threads[int(step[1])] = len(os.listdir(f"/proc/{chief.pid}/task"))
        if len(threads) == 2:
            break
    # A collective with a timeout left a thread asleep for its whole timeout (tensorflow#62466): six a
    # step, and the tiny model died of 16,000 threads at step 2,660.
    assert threads[500] - threads[100] < 50, threads
    worker.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    out = chief.communicate(timeout=180)[0]
    assert chief.returncode == 2, out
    assert time.monotonic() - killed_at < 120
    assert "lost contact with /job:worker/replica:0/task:1" in out
    assert "Traceback" not in out
    # The killed worker could not remove its scratch folder (a model's checkpoints): the next worker
    # started on this machine does.
    worker.wait()
    (left,) = Path(tempfile.gettempdir()).glob(f"charrnn-worker1-{worker.pid}@*")
    # Not those of a live worker, of another machine (a shared /tmp), or without a host to judge by.
    kept = [Path(tempfile.mkdtemp(prefix=f"charrnn-worker1-{os.getpid()}@{socket.gethostname()}-")),
            Path(tempfile.mkdtemp(prefix=f"charrnn-worker1-{worker.pid}@elsewhere-")),
            Path(tempfile.mkdtemp(prefix=f"charrnn-worker1-{worker.pid}-"))]
    fresh = workers.new_worker_scratch_dir(1)
    for folder in (fresh, *kept):
        assert folder.is_dir()
        shutil.rmtree(folder)
    assert not left.exists()


# A wrapper of train.py whose patch makes one call sleep for an hour: a live process that hangs.
HANGING_WORKER = textwrap.dedent("""\
    import runpy, sys, time
    sys.path.insert(0, {root!r})
    import dataset, runs

    def hang_at(function, call):
        calls = []
        def hanging(*args, **kwargs):
            calls.append(1)
            if len(calls) == call:
                time.sleep(3600)
            return function(*args, **kwargs)
        return hanging

    {patch}
    sys.argv[0] = {train!r}
    runpy.run_path(sys.argv[0], run_name="__main__")
    """)


@pytest.mark.parametrize("patch, hung_after, kept", [
    ("dataset.BatchLoader.batch = hang_at(dataset.BatchLoader.batch, 20)", " step 10 ", "the checkpoints in save/mw "
     "are intact: resume with --init_from save/mw"),  # at its 20th batch, after a save at step 10
    ("runs.read_checkpoint_list = hang_at(runs.read_checkpoint_list, 1)", "replicas in sync", "nothing was saved"),
    # In its second evaluation (step 20): the chief then waits in the meeting after it.
    ("dataset.eval_batches = hang_at(dataset.eval_batches, 2)", " step 10 ", "the checkpoints in save/mw are intact"),
])
def test_a_hung_worker_stops_the_other_after_peer_timeout(tmp_path: Path, patch: str, hung_after: str,
                                                          kept: str) -> None:
    """A worker whose process lives on but hangs answers TensorFlow's heartbeats, and the chief waited
    in its all-reduce for ever: in a step, or at start, in the gather that compares checkpoints."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    hangs = tmp_path / "hangs.py"
    hangs.write_text(HANGING_WORKER.format(root=str(ROOT), patch=patch, train=str(ROOT / "train.py")), encoding="utf-8")
    chief, worker = start_workers(tmp_path, "--input", "tiny.txt", "--max_steps", "1000000", "--eval_every", "10",
                                  "--save_every", "10", "--peer_timeout", "15s", *TINY, worker_script=hangs)
    try:
        for line in chief.stdout:
            if hung_after in line:
                break
        else:
            raise AssertionError(f"no {hung_after!r}")
        hung_at = time.monotonic()
        out = chief.communicate(timeout=180)[0]
        assert chief.returncode == 2 and "Traceback" not in out, out
        assert 12 <= time.monotonic() - hung_at < 120
        assert ("waited --peer_timeout 15s for the other workers in one exchange (a step's, at start, or after an "
                "evaluation): one of them hangs (its process lives on, so TensorFlow did not find it" in out), out
        assert kept in out, out
        assert worker.poll() is None  # still asleep: the message tells the user to stop it
    finally:
        for proc in (chief, worker):
            proc.kill()
            proc.wait()
        shutil.rmtree(workers.new_worker_scratch_dir(1))  # which removes the killed worker's own too


@pytest.mark.parametrize("signalled", ["chief", "worker"])
def test_sigterm_to_any_worker_stops_both_with_a_checkpoint(tmp_path: Path, signalled: str) -> None:
    """A job scheduler stops a run with SIGTERM: the strategy's coordination agent had taken that
    signal over (below Python), and the run trained on. Sent to either worker, both stop."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    chief, worker = start_workers(tmp_path, "--input", "tiny.txt", "--max_steps", "1000000",
                                  "--eval_every", "1000000", *TINY)
    for line in chief.stdout:  # training has started on both
        if " step 10 " in line:
            break
    (chief if signalled == "chief" else worker).send_signal(signal.SIGTERM)
    try:
        outputs = finish([chief, worker], timeout=60)
    finally:
        for proc in (chief, worker):
            proc.kill()
    by = "SIGTERM" if signalled == "chief" else "SIGTERM to another worker"
    step = int(re.search(rf"stopped at step (\d+) by {by}", outputs[0])[1])
    told = outputs[0] if signalled == "chief" else outputs[1]
    assert "SIGTERM: stopping after the step or evaluation in progress, with a checkpoint" in told, told
    assert f"resume with:  python {shlex.quote(str(ROOT / 'train.py'))} --init_from save/mw" in outputs[0], outputs[0]
    assert (tmp_path / "save" / "mw" / f"ckpt-{step}.index").is_file()


def test_workers_started_with_other_flags_or_text_are_refused(tmp_path: Path) -> None:
    """Another --rnn_size was a TensorFlow traceback (the chief's initial weights have other shapes);
    another --learning_rate or text trained in silence, each worker's update averaged with the others'."""
    (tmp_path / "tiny.txt").write_text(tiny_text(), encoding="utf-8")
    (tmp_path / "other.txt").write_text(tiny_text()[::-1], encoding="utf-8")
    # 15m and 900s are one budget: not told as a difference.
    procs = start_workers(tmp_path, "--input", "tiny.txt", "--max_steps", "5", "--time_budget", "15m", *TINY,
                          worker_flags=("--rnn_size", "48", "--learning_rate", "0.03", "--input", "other.txt",
                                        "--time_budget", "900s"))
    for proc, here in zip(procs, ("--learning_rate (0.01 here), --rnn_size (32 here)",
                                  "--learning_rate (0.03 here), --rnn_size (48 here)")):
        out = proc.communicate(timeout=180)[0]
        assert proc.returncode == 2 and "Traceback" not in out, out
        assert f"the workers were started with other flags or text than worker 0 (the chief): {here}, the text." in out
    assert not (tmp_path / "save").exists()
