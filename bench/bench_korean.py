#!/usr/bin/env python3
"""Korean: syllables (--unit char) against jamo (--unit jamo) in the same wall-clock budget, and
what a vocabulary of thousands of syllables costs per step.

    python bench/bench_korean.py --results bench/RESULTS.md   # full run, ~25 min on a quiet machine
    python bench/bench_korean.py --quick                      # smoke run, ~3 min
    python bench/bench_korean.py --budget 5m --train-args "--rnn_size 256 --batch_size 32"

1. For each unit, `python train.py --data_dir data/korean --unit U --time_budget B` runs as a real
   subprocess (one after the other, never side by side; save and log dirs in a temp dir). Read
   back from what it wrote: validation bits per original character (TensorBoard tag val/bpc, the
   last and the best evaluation), the unigram baseline (its log line), the median of
   train/chars_per_sec (original characters per second of training steps), steps and characters
   trained. Then `python sample.py --save_dir <run> --prime 문 -n 300 --seed 1` (-n counts
   characters in either unit).
   Both units are also compared at equal characters trained: each one's validation bits/char
   at the last evaluation before the slower unit's total (evaluated every EVAL_EVERY steps).
2. The output layer's cost at scale: both units on generated Korean corpora of 200 and 2,000 MB
   (bench_data.py's generator: lines of data/korean resampled, rare Hangul, Hanja and emoji
   sprinkled in, so the vocabulary grows to thousands of characters as a wiki dump's does) for a
   fixed number of steps with the same model: vocabulary, steps/s and original characters/s
   (medians of the steps, preparation and XLA compilation excluded). The generated text repeats
   the bundled lines, so it measures speed only, never quality.

Prints a markdown block with the figures, the samples, the exact command, the date and the load
average; --results also writes it into a Markdown file (between markers, other sections kept).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_data import corpus_file, machine, write_section  # noqa: E402  (shared with the data bench)

BEGIN, END = "<!-- bench_korean.py: begin -->", "<!-- bench_korean.py: end -->"
SAMPLE_CHARS = 300
PRIME = "문"
EVAL_EVERY = 100  # steps between evaluations of the unit runs: a finer curve for the equal-characters column


def run(cmd: list[str], log_path: Path, timeout: float) -> str:
    """Run a command from the repository root; its stderr goes to log_path. Fails loudly."""
    print("$ " + shlex.join(cmd), flush=True)
    with open(log_path, "w", encoding="utf-8") as err:
        out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, encoding="utf-8",
                             timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"exit status {out.returncode}: {shlex.join(cmd)}\n"
                           + log_path.read_text(encoding="utf-8")[-3000:])
    return out.stdout


def read_events(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalar tags of a run's TensorBoard event files, as (step, value) in step order."""
    import tensorflow as tf
    found: dict[str, list] = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.HasField("tensor") and value.tag.startswith(("train/", "val/")):
                    found.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return {tag: sorted(points) for tag, points in found.items()}


def train_run(work: Path, name: str, train_args: list[str], timeout: float) -> dict:
    """One train.py run; what it logged and wrote, read back."""
    log_path = work / f"{name}.log"
    cmd = [sys.executable, "train.py", *train_args, "--save_dir", str(work / "save"),
           "--log_dir", str(work / "logs"), "--run_name", name]
    t0 = time.monotonic()
    run(cmd, log_path, timeout)
    wall = time.monotonic() - t0
    text = log_path.read_text(encoding="utf-8")
    baseline = re.search(r"baseline: .* scores ([0-9.]+) bits/char", text)
    config = json.loads((work / "save" / name / "config.json").read_text(encoding="utf-8"))
    events = read_events(work / "logs" / name)
    args = config["args"]
    per_step = args["batch_size"] * args["seq_length"]
    speeds = [v for _, v in events["train/chars_per_sec"]]  # from step 2: train.py leaves out the compiling step
    chars_per_symbol = config["chars_per_symbol"]["train"]
    steps = events["train/loss"][-1][0]
    val = events.get("val/bpc", [])
    chars_per_step = per_step * chars_per_symbol
    return {"name": name, "run_dir": work / "save" / name, "unit": args["unit"],
            "vocab": config["model"]["vocab_size"], "chars_per_symbol": chars_per_symbol,
            "baseline": float(baseline.group(1)) if baseline else float("nan"),
            "val_bpc": val[-1][1] if val else float("nan"), "best_bpc": min((v for _, v in val), default=float("nan")),
            "chars_per_s": statistics.median(speeds),
            "steps_per_s": statistics.median(speeds) / chars_per_step,
            "steps": steps, "chars": steps * chars_per_step, "wall_s": wall,
            "curve": [(step * chars_per_step, bpc) for step, bpc in val],
            "model": f"{args['model']} {args['num_layers']}x{args['rnn_size']}, emb {args['embedding_size']}, "
                     f"B{args['batch_size']} T{args['seq_length']}, lr {args['learning_rate']:g}"}


def sample(work: Path, result: dict, timeout: float) -> str:
    """SAMPLE_CHARS characters after the prime."""
    return run([sys.executable, "sample.py", "--save_dir", str(result["run_dir"]), "--prime", PRIME,
                "-n", str(SAMPLE_CHARS), "--seed", "1"], work / f"{result['name']}-sample.log", timeout).rstrip("\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="10m", help="training time of each unit (train.py --time_budget)")
    p.add_argument("--units", default="char,jamo", help="units to compare, comma-separated")
    p.add_argument("--train-args", default="", help="extra train.py flags for every run, e.g. \"--rnn_size 256\"")
    p.add_argument("--big-mb", default="200,2000", help="sizes of the generated corpora in MB (10^6 bytes), comma-separated")
    p.add_argument("--big-steps", type=int, default=40, help="training steps timed on the generated corpus")
    p.add_argument("--quick", action="store_true", help="smoke run: --budget 30s --big-mb 20 --big-steps 8")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated corpus")
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "charrnn-bench-data"),
                   help="where the generated corpus is kept for reuse (bench_data.py's default too)")
    p.add_argument("--keep", action="store_true", help="keep the runs' temp dir and print its path")
    p.add_argument("--results", help="write the results section into this Markdown file (other sections kept)")
    a = p.parse_args()
    if a.quick:
        a.budget, a.big_mb, a.big_steps = "30s", "20", 8
    command = "python bench/bench_korean.py " + shlex.join(sys.argv[1:])
    extra = shlex.split(a.train_args)
    started, load_before = time.strftime("%Y-%m-%d %H:%M %Z"), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-korean-"))
    timeout = 3600.0
    try:
        units = []
        for unit in a.units.split(","):
            r = train_run(work, f"korean-{unit}", ["--data_dir", "data/korean", "--unit", unit, "--time_budget",
                                                    a.budget, "--eval_every", str(EVAL_EVERY), *extra], timeout)
            r["sample"] = sample(work, r, timeout)
            units.append(r)
            print(json.dumps({k: v for k, v in r.items() if k not in ("run_dir", "sample", "curve")}), flush=True)
        load_mid = os.getloadavg()

        big_dir = Path(a.workdir)
        big_dir.mkdir(parents=True, exist_ok=True)
        big = []
        for mb in (float(x) for x in a.big_mb.split(",")):
            big_path = corpus_file(big_dir, mb, a.seed)
            for unit in a.units.split(","):
                # Timed steps only: --stop_at_step ends the run without the final evaluation and the
                # schedule is that of a long run; the medians skip the first (compiling) step.
                r = train_run(work, f"generated-{mb:g}-{unit}", [
                    "--input", str(big_path), "--unit", unit, "--max_steps", "1000000", "--stop_at_step",
                    str(a.big_steps), "--eval_every", "1000000", "--save_every", "1000000", "--val_frac", "0.001",
                    *extra], timeout)
                r["mb"] = big_path.stat().st_size / 1e6
                big.append(r)
                print(json.dumps({k: v for k, v in r.items() if k not in ("run_dir", "curve")}), flush=True)
        report = render(units, big, a, command, started, load_before, load_mid, os.getloadavg())
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + report)
    if a.results:
        write_section(Path(a.results), report, BEGIN, END)
        print(f"wrote the section to {a.results}")


def bpc_at(curve: list[tuple[float, float]], chars: float) -> float:
    """Validation bits/char at the last evaluation after at most `chars` characters trained."""
    seen = [bpc for trained, bpc in curve if trained <= chars * (1 + 1e-9)]
    return seen[-1] if seen else float("nan")


def render(units: list[dict], big: list[dict], a, command: str, started: str, load_before, load_mid,
           load_after) -> str:
    names = {"char": "syllables (`--unit char`)", "jamo": "jamo (`--unit jamo`)"}
    model = (units or big)[0]["model"]
    lines = [BEGIN, "## Korean: syllables vs jamo (`bench/bench_korean.py`)", "",
             f"Command: `{command.strip()}`  ", f"Date: {started}; machine: {machine()}  ",
             f"Load average (1 min) before / after the unit runs / at the end: {load_before[0]:.2f} / "
             f"{load_mid[0]:.2f} / {load_after[0]:.2f}. Runs one after the other, never side by side.  ",
             f"Model: {model}" + (f" (`--train-args {a.train_args}`)" if a.train_args else " (train.py's defaults)"), ""]
    if units:
        equal = min(r["chars"] for r in units)
        lines += [f"### data/korean, `--time_budget {a.budget}` each", "",
                  "| unit | vocabulary | symbols per char | val bits/char (last) | best | at equal chars "
                  f"({equal / 1e6:.2f} M) | unigram baseline bits/char | chars/s (median) | steps | chars trained |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in units:
            lines.append(f"| {names.get(r['unit'], r['unit'])} | {r['vocab']:,} | {1 / r['chars_per_symbol']:.2f} "
                         f"| {r['val_bpc']:.3f} | {r['best_bpc']:.3f} | {bpc_at(r['curve'], equal):.3f} "
                         f"| {r['baseline']:.3f} | {r['chars_per_s']:,.0f} | {r['steps']:,} | {r['chars'] / 1e6:.2f} M |")
        lines += ["", "Bits per character are per character of the original NFC text in both units, so the rows "
                  "compare directly; the baseline is the unigram entropy of the characters, what a model that "
                  f"learned only character frequencies scores. Evaluated every {EVAL_EVERY} steps; \"at equal chars\" "
                  "is each unit's last evaluation before the characters the slower unit trained in the budget.", ""]
        for r in units:
            lines += [f"Sample, {names.get(r['unit'], r['unit'])}: `python sample.py --save_dir <run> --prime {PRIME} "
                      f"--seed 1` ({SAMPLE_CHARS} characters after the prime):", "", "```", r["sample"], "```", ""]
    if big:
        lines += [f"### The output layer's cost at scale: {big[0]['steps']} steps on generated corpora", "",
                  "| corpus | unit | vocabulary | steps/s | chars/s |", "|---|---|---:|---:|---:|"]
        bundled = sum(os.path.getsize(f) for f in (ROOT / "data/korean").glob("*.txt")) / 1e6
        for r in units:
            lines.append(f"| data/korean ({bundled:.2f} MB) | {names.get(r['unit'], r['unit'])} | {r['vocab']:,} "
                         f"| {r['steps_per_s']:.2f} | {r['chars_per_s']:,.0f} |")
        for r in big:
            lines.append(f"| generated Korean, {r['mb']:,.0f} MB (seed {a.seed}) | {names.get(r['unit'], r['unit'])} "
                         f"| {r['vocab']:,} | {r['steps_per_s']:.2f} | {r['chars_per_s']:,.0f} |")
        lines += ["", "Same model and batch in every row. chars/s counts characters of the original text (a jamo "
                  "step covers fewer of them); the vocabulary under jamo still holds the Hanja, emoji and other "
                  "non-Hangul characters."]
    lines += ["", "chars/s and steps/s: medians over the training steps (train/chars_per_sec in TensorBoard), "
              "preparation, compilation and evaluation excluded.", END]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
