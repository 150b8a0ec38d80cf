#!/usr/bin/env python3
"""Data preparation: speed and peak memory of dataset.prepare_corpus vs the old tool's naive loader.

Generates its own Korean corpora (real lines of data/korean/*.txt resampled in random order, with
rare Hangul, CJK and emoji sprinkled in so the vocabulary grows like a wiki dump's; deterministic
per --seed), puts each in the page cache, then runs every loader --runs times, each in a fresh
subprocess, and reports the median MB/s (min-max) and peak RSS above the interpreter's baseline
(after imports, before loading). "cached" is prepare_corpus finding its prepared data.

    python bench/bench_data.py --results bench/RESULTS.md   # full run: 200 MB and 2 GB, 3 runs each
    python bench/bench_data.py --quick                      # smoke test: 20 MB, 1 run

The naive loader needs about 11x the file size (about 23 GiB at 2 GB); it is skipped (and says so) when the machine's
available memory can't hold it, or above --skip-naive-above MB.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KOREAN = ROOT / "data" / "korean"
GENERATOR_VERSION = 1  # part of the corpus file name: a changed generator never reuses old files
BEGIN, END = "<!-- bench_data.py: begin -->", "<!-- bench_data.py: end -->"


# ---- corpus generator -------------------------------------------------------------------------

def make_corpus(path: Path, mb: float, seed: int, rare_rate: float = 0.002) -> None:
    """Write about mb * 10^6 bytes of Korean text to path (atomically)."""
    import numpy as np
    lines = []
    for source in sorted(KOREAN.glob("*.txt")):
        text = unicodedata.normalize("NFC", source.read_text(encoding="utf-8").replace("\r\n", "\n"))
        lines += [line + "\n" for line in text.split("\n") if line.strip()]
    encoded = [line.encode("utf-8") for line in lines]
    rng = np.random.default_rng(seed)
    # Rare characters: random Hangul syllables, CJK ideographs (incl. extension B) and emoji.
    ranges = [(0xAC00, 0xD7A3), (0x4E00, 0x9FFF), (0x20000, 0x2A6DF), (0x1F300, 0x1F5FF)]
    picks = rng.integers(len(ranges), size=20000)
    rare = [chr(int(rng.integers(ranges[r][0], ranges[r][1] + 1))) for r in picks]
    target, written = int(mb * 1e6), 0
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        while written < target:
            pick = rng.integers(len(lines), size=8192)
            block = [encoded[i] for i in pick]
            for j in np.flatnonzero(rng.random(len(pick)) < rare_rate):
                line = lines[pick[j]]
                cut = int(rng.integers(len(line)))
                block[j] = (line[:cut] + rare[int(rng.integers(len(rare)))] + line[cut:]).encode("utf-8")
            data = b"".join(block)
            f.write(data)
            written += len(data)
    os.replace(tmp, path)


def corpus_file(workdir: Path, mb: float, seed: int) -> Path:
    path = workdir / f"ko_{mb:g}mb_seed{seed}_v{GENERATOR_VERSION}.txt"
    if not path.exists():
        t0 = time.monotonic()
        make_corpus(path, mb, seed)
        print(f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - t0:.1f} s", flush=True)
    return path


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


# ---- one measurement, in a child process ------------------------------------------------------

def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(loader: str, path: Path, cache_root: Path) -> None:
    import collections
    import numpy as np
    sys.path.insert(0, str(ROOT))
    import dataset
    baseline = rss_kib("VmRSS")
    t0 = time.perf_counter()
    if loader == "naive":
        # char-rnn-tensorflow's TextLoader.preprocess, as the old tool did it.
        with open(path, encoding="utf-8") as f:
            data = f.read()
        counter = collections.Counter(data)
        count_pairs = sorted(counter.items(), key=lambda x: -x[1])
        chars, _ = zip(*count_pairs)
        vocab = dict(zip(chars, range(len(chars))))
        tensor = np.array(list(map(vocab.get, data)))
        np.save(cache_root / "data.npy", tensor)
        symbols, vocab_size = len(tensor), len(chars)
    else:
        corpus = dataset.prepare_corpus([path], dataset.DataOptions(), cache_root=cache_root)
        symbols, vocab_size = len(corpus.ids), corpus.vocab.size
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "baseline_kib": baseline, "peak_kib": rss_kib("VmHWM"),
                      "symbols": symbols, "vocab": vocab_size}))


def measure(loader: str, path: Path, cache_root: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", loader, "--file", str(path),
                          "--cache-root", str(cache_root)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"exit status {out.returncode} ({loader} on {path})\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the benchmark ----------------------------------------------------------------------------

def mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def summarize(size_bytes: int, runs: list[dict]) -> dict:
    speeds = [size_bytes / 1e6 / r["seconds"] for r in runs]
    above = [(r["peak_kib"] - r["baseline_kib"]) / 1024 for r in runs]
    return {"mbps": statistics.median(speeds), "mbps_min": min(speeds), "mbps_max": max(speeds),
            "seconds": statistics.median(r["seconds"] for r in runs),
            "above_mib": max(above), "peak_mib": max(r["peak_kib"] for r in runs) / 1024,
            "symbols": runs[0]["symbols"], "vocab": runs[0]["vocab"], "runs": len(runs)}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import numpy
    return (f"{cpu}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; "
            f"Python {platform.python_version()}, numpy {numpy.__version__}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="200,2000", help="corpus sizes in MB (10^6 bytes), comma-separated")
    p.add_argument("--runs", type=int, default=3, help="runs per loader and size (median reported)")
    p.add_argument("--quick", action="store_true", help="smoke test: --sizes 20 --runs 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "charrnn-bench-data"),
                   help="where generated corpora (kept for reuse) and scratch caches go")
    p.add_argument("--skip-naive-above", type=float, default=None, metavar="MB",
                   help="skip the naive loader for corpora above this size")
    p.add_argument("--results", help="write the results section into this Markdown file (other sections kept)")
    p.add_argument("--child", choices=["ours", "naive", "cached"], help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--cache-root", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a.child, Path(a.file), Path(a.cache_root))
    if a.quick:
        a.sizes, a.runs = "20", 1
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    command = "python bench/bench_data.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    rows = []
    naive_ratio = 16.0  # peak bytes per corpus byte, until measured on a smaller corpus
    for mb in [float(s) for s in a.sizes.split(",")]:
        path = corpus_file(workdir, mb, a.seed)
        size = path.stat().st_size
        warm_page_cache(path)
        results = {}
        for loader in ("ours", "cached", "naive"):
            if loader == "naive":
                need = naive_ratio * size * 1.1
                if a.skip_naive_above is not None and mb > a.skip_naive_above:
                    results[loader] = f"skipped (--skip-naive-above {a.skip_naive_above:g})"
                    continue
                # A fifth kept free for the rest of the machine: 22 GiB judged to fit in 23 had started
                # on a 24 GiB VM without swap (2026-12-07), and was stopped by hand.
                if need > 0.8 * mem_available_bytes():
                    results[loader] = (f"skipped: needs about {need / 2**30:.0f} GiB, more than 80% of the "
                                       f"{mem_available_bytes() / 2**30:.0f} GiB available")
                    continue
            scratch = Path(tempfile.mkdtemp(dir=workdir, prefix="cache-"))
            try:
                if loader == "cached":
                    measure("ours", path, scratch)  # prepared once; each run then finds it
                runs = []
                for _ in range(a.runs):
                    runs.append(measure(loader, path, scratch))
                    if loader != "cached":  # every run prepares from scratch
                        shutil.rmtree(scratch)
                        scratch.mkdir()
            except RuntimeError as error:
                if loader != "naive":
                    raise
                results[loader] = f"failed: {str(error).splitlines()[0]}"  # e.g. killed for memory (-9)
                continue
            finally:
                shutil.rmtree(scratch)
            results[loader] = summarize(size, runs)
            if loader == "naive":
                naive_ratio = results[loader]["peak_mib"] * 2**20 / size
            print(f"{mb:g} MB {loader}: {json.dumps(results[loader])}", flush=True)
        rows.append((mb, size, results))
    report = render(rows, command, started, load_before, os.getloadavg(), a.runs)
    print("\n" + report)
    if a.results:
        write_section(Path(a.results), report)
        print(f"wrote the section to {a.results}")


def render(rows, command: str, started: str, load_before, load_after, runs: int) -> str:
    lines = [BEGIN, "## Data preparation (`bench/bench_data.py`)", "",
             f"Command: `{command.strip()}`  ", f"Date: {started}; machine: {machine()}  ",
             f"Load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f}; "
             f"{runs} run(s) per cell, file in the page cache, each run in a fresh process.", "",
             "| corpus | loader | MB/s, median (min-max) | seconds | peak RSS above baseline | peak RSS | symbols | vocabulary |",
             "|---|---|---|---|---|---|---|---|"]
    names = {"ours": "dataset.prepare_corpus", "cached": "prepare_corpus, cached", "naive": "naive read()+Counter+list(map)"}
    for mb, size, results in rows:
        for loader, r in results.items():
            if isinstance(r, str):
                lines.append(f"| {mb:g} MB Korean | {names[loader]} | {r} | | | | | |")
                continue
            speed = "-" if loader == "cached" else f"{r['mbps']:.0f} ({r['mbps_min']:.0f}-{r['mbps_max']:.0f})"
            lines.append(f"| {mb:g} MB Korean | {names[loader]} | {speed} | {r['seconds']:.3f} "
                         f"| {r['above_mib']:.0f} MiB | {r['peak_mib']:.0f} MiB | {r['symbols']:,} | {r['vocab']:,} |")
    lines += ["", "MB = 10^6 bytes of UTF-8 corpus; seconds = median time of the load itself (interpreter start "
              "and imports excluded). \"cached\" = a second prepare_corpus call finding the prepared data.", END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Put section (which starts with begin and ends with end) into a Markdown file: in place of
    the previous one between the same markers, or appended; other sections stay as they are."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end) + 1:]
    else:
        text += ("\n" if text and not text.endswith("\n") else "") + section
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
