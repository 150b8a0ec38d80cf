#!/usr/bin/env python3
"""Crash soak: kill -9 train.py at random moments, again and again, and check that every restart
resumes from the last complete checkpoint and that nothing saved is lost.

A tiny model checkpoints every --save_every steps, so many kills land inside a checkpoint write.
Each round starts train.py (the original command while the run has no config.json yet, else
--init_from), lets it run for a random (seeded) time, then SIGKILLs it. The moment is drawn from
three kinds, in turn: during start-up (data, TensorFlow import, restore, compilation, first
evaluation), at a random moment of training after that, and while TensorFlow's temporary
ckpt-N_temp directory of a save exists (mid-write: the run's checkpoints or best/). After
each kill the soak checks what a user would rely on:

  * config.json and vocab.json, when present, parse whole (they are written atomically);
  * the checkpoint that the `checkpoint` file names reads back whole (checksums) with finite weights;
  * the restart resumes exactly from the newest listed checkpoint, the run's or best/'s (both hold
    the whole state): "resumed ... at step N", never falling back to an older one, and no process
    prints a traceback.

At the end the run continues to --final_step, and its weights are compared with a run that was
never interrupted: a resume is exact, so killing must not change the result. Every process runs
a copy of the modules taken at the start, so edits to the tree meanwhile cannot skew that.

    python bench/crash_soak.py                 # 20 kills (about 5 minutes on 2 busy cores)
    python bench/crash_soak.py --kills 40 --seed 7
    python bench/crash_soak.py --quick         # 3 kills, smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runs, for a quiet TensorFlow import
TINY = ["--num_layers", "1", "--rnn_size", "32", "--embedding_size", "16", "--batch_size", "4",
        "--seq_length", "16", "--sample_length", "20", "--warmup_steps", "10"]
KINDS = ("startup", "training", "checkpoint write")
# A checkpoint's weights: their average (what sample.py loads) and the trained ones (what training goes on from).
WEIGHTS = ("model/", "trained_model/")


def tiny_text(seed: int) -> str:
    rng = np.random.default_rng(seed)
    words = "the cat sat on a mat and the dog ran to the red barn while birds sang".split()
    return "\n".join(" ".join(rng.choice(words, 9)) for _ in range(400)) + "\n"


def snapshot(work: Path) -> tuple[Path, str]:
    """A copy of the project's modules to run, so that edits made to the tree while the soak runs
    (for minutes) cannot mix two versions of the code in one comparison; and which version it is."""
    code = work / "code"
    code.mkdir()
    for module in ROOT.glob("*.py"):
        shutil.copy2(module, code / module.name)
    version = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip() or "unknown"
    return code, version


class Trainer:
    """train.py (of the snapshot) in the background; stderr lines collected by a thread."""
    code = ROOT

    def __init__(self, args: list[str], cwd: Path):
        self.command = [sys.executable, str(self.code / "train.py"), *args]
        self.launched, self.launched_wall = time.monotonic(), time.time()
        self.proc = subprocess.Popen(self.command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", errors="replace")
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True)
        self.reader.start()

    def seen(self, pattern: str) -> re.Match | None:
        for line in list(self.lines):
            found = re.search(pattern, line)
            if found:
                return found
        return None

    def wait_for(self, pattern: str, timeout: float) -> re.Match | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.seen(pattern)
            if found or self.proc.poll() is not None:
                return found or self.seen(pattern)
            time.sleep(0.01)
        return None

    def writing(self, run_dir: Path) -> bool:
        """Whether a save of this process is in progress: a ckpt-N_temp directory made since it started."""
        try:
            return any(e.name.endswith("_temp") and e.stat().st_mtime >= self.launched_wall
                       for d in (run_dir, run_dir / "best") if d.is_dir() for e in os.scandir(d))
        except FileNotFoundError:  # it vanished while we looked: the save just finished
            return False

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.reader.join(timeout=10)

    def text(self) -> str:
        return "".join(self.lines)


def pointer_step(run_dir: Path) -> int | None:
    pointer = run_dir / "checkpoint"
    if not pointer.exists():
        return None
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', pointer.read_text(), re.M)
    return int(found.group(1)) if found else None


def newest_listed_step(run_dir: Path) -> int | None:
    """Where a resume must go on: the newest checkpoint listed in the run or in its best/."""
    steps = [step for step in (pointer_step(run_dir), pointer_step(run_dir / "best")) if step is not None]
    return max(steps, default=None)


def read_checkpoint(prefix: Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint (TensorFlow verifies each one's checksum while reading)."""
    import runs
    tf = runs.import_tensorflow()  # without TensorFlow's start-up chatter
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def check_files(run_dir: Path) -> list[str]:
    """Problems with what a kill left behind (empty list: all whole)."""
    problems = []
    for name in ("config.json", "vocab.json"):
        path = run_dir / name
        if path.exists():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                problems.append(f"{name} is torn: {error}")
    step = pointer_step(run_dir)
    if step is not None:
        try:
            weights = {k: v for k, v in read_checkpoint(run_dir / f"ckpt-{step}").items() if k.startswith(WEIGHTS)}
            if not weights or not all(np.isfinite(v).all() for v in weights.values()):
                problems.append(f"ckpt-{step} has no or non-finite weights")
        except Exception as error:  # noqa: BLE001 - any failure to read it is the finding
            problems.append(f"ckpt-{step} (named by `checkpoint`) does not read back: {str(error).splitlines()[0]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="number of kill -9s")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--save_every", type=int, default=2, help="train.py --save_every")
    parser.add_argument("--extra_steps", type=int, default=20,
                        help="after the kills, train this many steps past the furthest step reached, then compare")
    parser.add_argument("--workdir", default=None, help="keep the runs here (default: a temp dir, removed)")
    parser.add_argument("--quick", action="store_true", help="3 kills: a smoke test")
    opts = parser.parse_args()
    kills = 3 if opts.quick else opts.kills
    rng = random.Random(opts.seed)
    work = Path(opts.workdir or tempfile.mkdtemp(prefix="crash-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    Trainer.code, version = snapshot(work)
    corpus = work / "soak.txt"
    corpus.write_text(tiny_text(opts.seed), encoding="utf-8")
    # A step limit far away: the run is always mid-training when killed; the schedule never moves.
    common = ["--input", str(corpus), *TINY, "--max_steps", "1000000", "--save_every", str(opts.save_every),
              "--eval_every", "25", "--print_every", "1", "--keep", "3"]
    first = [*common, "--run_name", "soak", "--save_dir", str(work / "save"), "--log_dir", str(work / "logs")]
    run_dir = work / "save" / "soak"
    resume = ["--init_from", str(run_dir)]

    print(f"crash soak: {kills} kills, seed {opts.seed}, save every {opts.save_every} steps, code {version} "
          f"(run from a copy in {Trainer.code})")
    print(f"  first command: python train.py {shlex.join(first)}")
    print(f"  restarts:      python train.py {shlex.join(resume)}\n")
    print(f"{'kill':>4}  {'moment':<24} {'at s':>5}  {'listed ckpt':>11}  {'next start':<20} result")
    started = time.monotonic()
    rows: list[dict] = []      # one per kill
    pending: list[dict] = []   # kills whose restart has not yet shown where it resumed

    def launch() -> tuple[Trainer, str]:
        """The restart a user would type, and what it must print: the step of the newest listed checkpoint."""
        if (run_dir / "config.json").exists():
            listed = newest_listed_step(run_dir)
            return Trainer(resume, work), f"step {listed if listed is not None else 0}"
        return Trainer(first, work), "new run"  # killed before the run wrote config.json: start it again

    def verify(trainer: Trainer, expected: str) -> bool:
        """Once a restart shows where it resumed, settle the kills waiting on it. False: not yet."""
        found = trainer.seen(r"resumed \S+ at step (\d+)|(no complete checkpoint)|run soak: checkpoints in")
        if not found:
            return False
        got = f"step {found.group(1)}" if found.group(1) else "step 0" if found.group(2) else "new run"
        problems = [] if got == expected else [f"restart began at {got}, the last complete checkpoint is {expected}"]
        if trainer.seen("cannot be loaded"):
            problems.append("a listed checkpoint did not load (fell back to an older one)")
        for row in pending:
            row["problems"] += problems
            row["next"] = f"{'resumed' if got != 'new run' else ''} {got}".strip()
            print_row(row)
        pending.clear()
        return True

    def print_row(row: dict) -> None:
        print(f"{row['i']:>4}  {row['moment']:<24} {row['at']:>5.1f}  {row['listed']:>11}  {row['next']:<20} "
              f"{'ok' if not row['problems'] else 'FAIL: ' + '; '.join(row['problems'])}", flush=True)

    furthest = 0
    trainer, expected = launch()
    for i in range(kills):
        kind = KINDS[i % len(KINDS)]
        if kind == "startup":  # from launch: data, TensorFlow import, restore, compilation, first steps
            time.sleep(max(0.0, trainer.launched + rng.uniform(0.2, 8.0) - time.monotonic()))
        else:  # after this process's first evaluation (which compiles the sampler): full-speed training
            trainer.wait_for(r"val loss \S+ nats/symbol", timeout=300)  # not the resume line's best
            if kind == "training":
                time.sleep(rng.uniform(0.0, 3.0))
            else:  # poll for TensorFlow's temporary directory of a save in progress
                time.sleep(rng.uniform(0.0, 1.0))
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and trainer.proc.poll() is None and not trainer.writing(run_dir):
                    pass
        writing = trainer.proc.poll() is None and trainer.writing(run_dir)
        at = time.monotonic() - trainer.launched
        trainer.kill9()
        verify(trainer, expected)
        moment = kind if kind != "checkpoint write" or writing else "checkpoint write (missed)"
        if writing and kind != "checkpoint write":
            moment += " (mid-write)"
        row = {"i": i + 1, "moment": moment, "at": at, "problems": [], "next": "?", "writing": writing}
        if trainer.proc.returncode != -signal.SIGKILL:
            row["problems"].append(f"train.py exited by itself ({trainer.proc.returncode}) before the kill")
        if trainer.seen("Traceback"):
            row["problems"].append("traceback before the kill")
        row["problems"] += check_files(run_dir)
        listed = newest_listed_step(run_dir)
        row["listed"] = f"ckpt-{listed}" if listed is not None else "-"
        furthest = max([furthest, listed or 0] + [int(s) for s in re.findall(r" step (\d+) epoch ", trainer.text())])
        rows.append(row)
        pending.append(row)
        trainer, expected = launch()
        if KINDS[(i + 1) % len(KINDS)] != "startup":  # a start-up kill is timed from launch instead
            trainer.wait_for(r"resumed \S+ at step|no complete checkpoint|run soak: checkpoints in", timeout=300)
            verify(trainer, expected)

    # The last restart stops gracefully (Ctrl-C saves), then the run trains on to a fixed step and
    # is compared with a run that was never interrupted.
    trainer.wait_for(r"resumed \S+ at step|no complete checkpoint|run soak: checkpoints in", timeout=300)
    verify(trainer, expected)
    trainer.wait_for(r" step \d+ epoch ", timeout=300)
    trainer.proc.send_signal(signal.SIGINT)
    stopped = trainer.proc.wait(timeout=300) == 0 and trainer.wait_for("stopped at step", 10) is not None
    trainer.reader.join(timeout=10)
    final_step = max(furthest, pointer_step(run_dir) or 0) + opts.extra_steps
    result = subprocess.run([sys.executable, str(Trainer.code / "train.py"), *resume, "--stop_at_step", str(final_step)],
                            cwd=work, capture_output=True, text=True, encoding="utf-8", errors="replace")
    finished = stopped and result.returncode == 0 and "Traceback" not in result.stderr + trainer.text()
    reference = subprocess.run([sys.executable, str(Trainer.code / "train.py"), *common, "--run_name", "reference",
                                "--save_dir", str(work / "save"), "--log_dir", str(work / "logs"),
                                "--stop_at_step", str(final_step)],
                               cwd=work, capture_output=True, text=True, encoding="utf-8", errors="replace")
    same = False
    if finished and reference.returncode == 0:
        a = read_checkpoint(run_dir / f"ckpt-{final_step}")
        b = read_checkpoint(work / "save" / "reference" / f"ckpt-{final_step}")
        names = [k for k in a if k.startswith(WEIGHTS)]
        same = bool(names) and a.keys() == b.keys() and all(
            np.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in names)
    for row in pending:  # never settled: no restart showed where it resumed
        row["problems"].append("no restart showed where it resumed")
        print_row(row)
    rows = [(row["moment"], not row["problems"]) for row in rows]

    clean = sum(ok for _, ok in rows)
    by_kind = {k: (sum(ok for m, ok in rows if m.startswith(k)), sum(m.startswith(k) for m, _ in rows))
               for k in KINDS}
    mid_writes = sum(m.endswith("(mid-write)") or m == "checkpoint write" for m, _ in rows)
    print(f"\nresumed cleanly: {clean}/{kills} kills "
          f"({', '.join(f'{k}: {ok}/{n}' for k, (ok, n) in by_kind.items())}); "
          f"{mid_writes} kills landed inside a checkpoint write")
    print(f"after the kills: Ctrl-C stopped the last restart cleanly: {'yes' if stopped else 'NO'}; "
          f"trained on to step {final_step}: {'ok' if finished else 'FAILED'}; weights "
          f"{'identical to' if same else 'DIFFERENT from'} an uninterrupted run to step {final_step} "
          f"(rtol 1e-5)" + ("" if finished else "\n" + result.stderr[-2000:]))
    print(f"total {time.monotonic() - started:.0f} s")
    if not opts.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if clean == kills and finished and same else 1


if __name__ == "__main__":
    sys.exit(main())
