#!/usr/bin/env python3
"""CLI fuzz: throw malformed command lines and damaged files at train.py and sample.py and count
tracebacks (there must be none: every bad input gets one clear message and exit code 2).

Cases are drawn deterministically from --seed, from five families:

  train-flags   a valid tiny training command with 1-3 flags given odd values (negative, zero,
                huge, nan, inf, non-numeric, empty, unicode, odd paths) or unknown flags
  train-corpus  --input/--data_dir at missing, empty, binary, non-UTF-8, UTF-16, garbage files,
                directories without .txt, files in the way; plus odd --encoding names
  sample-flags  sample.py on a small trained run with odd -n, --temperature, --top_k, --prime ...
  damaged-run   a copy of that run with config.json, vocab.json, the `checkpoint` list, a
                checkpoint's index or data, best/ or `latest` truncated, bit-flipped, replaced
                with garbage, emptied, deleted or given wrong JSON types; then sample.py or
                train.py --init_from on it
  resume-flags  train.py --init_from the run with odd (including architecture) flags

Every case runs in its own directory with a timeout. A case is "clean" when it exits 0 (the input
was fine) or 2 with an error message (one line with "error:") and no
traceback. Most cases fail before TensorFlow is imported; those that train use a tiny model and
--max_steps 2, so 240 cases take about 10 minutes on 2 busy cores. The scripts run from a copy of
the modules taken at the start (edits to the tree during the run don't count).

    python bench/fuzz_cli.py                   # 240 cases, seed 0
    python bench/fuzz_cli.py --cases 400 --seed 3 --jobs 2
    python bench/fuzz_cli.py --quick           # 30 cases, smoke test
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from crash_soak import snapshot  # noqa: E402  (the same code snapshot as the soak)
import sample  # noqa: E402  (the parsers only: neither module imports TensorFlow at import time)
import plan  # noqa: E402

TINY = ["--num_layers", "1", "--rnn_size", "16", "--embedding_size", "8", "--batch_size", "4",
        "--seq_length", "16", "--sample_length", "10", "--warmup_steps", "2", "--xla", "off"]
CODE = ROOT  # replaced by a snapshot of the modules in main(): edits to the tree mid-run don't count
FAMILIES = {"train-flags": 0.32, "train-corpus": 0.12, "sample-flags": 0.2, "damaged-run": 0.26,
            "resume-flags": 0.10}

NUMBERS = ["0", "-1", "-7", "1", "2", "3", "0.5", "1.5", "-0.0", "1e-320", "1e309", "-1e309", "nan", "inf",
           "-inf", "99999999999999999999999", "2147483648", "-9223372036854775809", "0x10", "1_000", "٣",
           "１６", " 7 ", "", " ", "abc", "None", "true", "3e3", "2**31", "--", "-", "1,5", "½"]
WORDS = ["", " ", "x", "..", ".", "/", "/proc", "/dev/null", "데이터", "a\nb", "-x", "--help", "é" * 300,
         "n" * 300, "😀", "\t", "%s%n", "$(id)"]
ENCODINGS = ["utf-8", "UTF8", "utf-8-sig", "cp949", "euc-kr", "utf-16", "utf-32", "latin-1", "ascii",
             "rot13", "hex", "zlib", "base64", "undefined", "idna", "punycode", "unicode_escape", "mbcs",
             "xyz", "", "utf-7", "cp037"]
DURATIONS = ["0", "-5m", "1h1h", "90x", "1e3", "", "nan", "2s", "9" * 400, "1.5.5m", "１０s", "m", "10 m"]
PRIMES = ["", "the cat", "Zq€", "😀", "e\u0301", "\u200b", "\n", "\t\t", "the " * 3000, "한국어", "\x7f",
          b"\xff\xfe", b"the \xed\xa0\x80 cat", "\U0010ffff"]
CHECKPOINTS = ["best", "latest", "nope", "ckpt-4", "ckpt-999", "", ".", "config.json", "vocab.json", "best/ckpt-4"]


def tiny_text(seed: int) -> str:
    rng = np.random.default_rng(seed)
    words = "the cat sat on a mat and the dog ran to the red barn while birds sang".split()
    return "\n".join(" ".join(rng.choice(words, 9)) for _ in range(300)) + "\n"


# ---- fixtures -----------------------------------------------------------------------------------

def make_fixtures(work: Path, seed: int) -> dict[str, Path]:
    """Corpus files good and bad, and one small trained run (with ckpt-2, ckpt-4 and best/)."""
    data = work / "data"
    data.mkdir(parents=True)
    rng = random.Random(seed)
    good = data / "good.txt"
    good.write_text(tiny_text(seed), encoding="utf-8")
    files = {
        "good": good,
        "empty": data / "empty.txt",
        "binary": data / "model.bin",
        "latin1": data / "latin1.txt",
        "utf16": data / "utf16.txt",
        "garbage": data / "garbage.txt",
        "nul-in-middle": data / "nul.txt",
        "short": data / "short.txt",
        "one-char": data / "one.txt",
        "only-newlines": data / "newlines.txt",
        "bom-only": data / "bom.txt",
        "cr-only": data / "cr.txt",
    }
    files["empty"].write_bytes(b"")
    files["binary"].write_bytes(bytes(rng.randrange(256) for _ in range(5000)))
    files["latin1"].write_bytes(("café crème brûlée, " * 300).encode("latin-1"))
    files["utf16"].write_bytes(tiny_text(seed).encode("utf-16"))
    files["garbage"].write_bytes(bytes(rng.randrange(128, 256) for _ in range(20000)))
    files["nul-in-middle"].write_bytes(tiny_text(seed).encode()[:6000] + b"\0" + tiny_text(seed).encode()[6000:])
    files["short"].write_text("hello world\n", encoding="utf-8")
    files["one-char"].write_text("a", encoding="utf-8")
    files["only-newlines"].write_text("\n" * 20000, encoding="utf-8")
    files["bom-only"].write_bytes(b"\xef\xbb\xbf")
    files["cr-only"].write_bytes(b"ab\r" * 4000)
    (data / "no_txt").mkdir()
    (data / "no_txt" / "notes.md").write_text("not a corpus\n")
    files["no-txt-dir"] = data / "no_txt"
    (data / "empty_txts").mkdir()
    (data / "empty_txts" / "a.txt").write_bytes(b"")
    files["empty-txt-dir"] = data / "empty_txts"
    (data / "dir.txt").mkdir()
    files["dir-named-txt"] = data / "dir.txt"
    files["missing"] = data / "missing.txt"
    files["file-in-the-way"] = good / "sub"

    base = work / "base"
    base.mkdir()
    result = subprocess.run([sys.executable, str(CODE / "train.py"), "--input", str(good), *TINY, "--max_steps", "4",
                             "--save_every", "2", "--eval_every", "2", "--run_name", "run"],
                            cwd=base, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if result.returncode != 0:
        sys.exit("could not train the base run:\n" + result.stderr)
    files["run"] = base / "save" / "run"
    return files


# ---- case generation ---------------------------------------------------------------------------

def flag_table(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.option_strings[-1]: a for a in parser._actions if a.option_strings and a.dest != "help"}


def odd_value(rng: random.Random, action: argparse.Action, files: dict[str, Path]) -> str | bytes | None:
    """A malformed (usually) value for one flag; None for a flag that takes no value."""
    if action.nargs == 0:
        return None
    name = action.dest
    if rng.random() < 0.12:  # anything at all, whatever the flag's type
        return rng.choice(NUMBERS + WORDS)
    if action.choices:
        return rng.choice([*map(str, action.choices), "xyz", "", "LSTM", "3", "-1"])
    if action.type in (int, float):
        return rng.choice(NUMBERS)
    if name == "encoding":
        return rng.choice(ENCODINGS)
    if name == "time_budget":
        return rng.choice(DURATIONS)
    if name == "prime":
        return rng.choice(PRIMES)
    if name == "checkpoint":
        value = rng.choice(CHECKPOINTS)
        return str(files["run"] / value) if value not in ("best", "latest", "") and rng.random() < 0.6 else value
    if name in ("input", "data_dir", "init_from", "save_dir", "log_dir", "export", "export_tflite", "run_name"):
        choice = rng.choice([*files.keys(), *WORDS])
        return str(files[choice]) if choice in files else choice
    return rng.choice(WORDS + NUMBERS)


def mutate(rng: random.Random, base: list, parser: argparse.ArgumentParser, files: dict[str, Path],
           count: int, only: tuple[str, ...] = ()) -> list:
    """base with `count` flags set to odd values (replacing the base's value if present)."""
    table = flag_table(parser)
    args = list(base)
    for _ in range(count):
        roll = rng.random()
        if roll < 0.05:
            args += [rng.choice(["--no_such_flag", "-x", "--", "---rnn_size", "--rnn-size"]), "1"]
            continue
        flag = rng.choice(only or tuple(table))
        value = odd_value(rng, table[flag], files)
        if flag in args and value is not None and args.index(flag) + 1 < len(args):
            args[args.index(flag) + 1] = value
        elif value is None:
            args.append(flag)
        elif roll < 0.08:
            args.append(flag)  # the flag without its value
        else:
            args += [flag, value]
    return args


CORRUPTIONS = ("truncate", "flip", "garbage", "empty", "delete", "json-types")
TARGETS = ("config.json", "vocab.json", "checkpoint", "ckpt-4.index", "ckpt-4.data-00000-of-00001",
           "ckpt-2.index", "best/checkpoint", "best/ckpt-4.index", "../latest")


def damage(rng: random.Random, run_dir: Path) -> str:
    """Damage one file of a copied run; return what was done."""
    target, how = rng.choice(TARGETS), rng.choice(CORRUPTIONS)
    path = run_dir / target
    if not path.exists():
        return f"{target}: absent"
    data = path.read_bytes()
    if how == "json-types" and target.endswith(".json"):
        try:
            record = json.loads(data)
            keys = [(record, k) for k in record] if isinstance(record, dict) else []
            for k in ("args", "model"):
                if isinstance(record.get(k), dict):
                    keys += [(record[k], kk) for kk in record[k]]
            holder, key = rng.choice(keys)
            holder[key] = rng.choice([None, -1, 0, "x", [], {}, 1e308, 2**70, True, "", [["a", 1], ["a", 1]]])
            path.write_text(json.dumps(record), encoding="utf-8")
            return f"{target}: {key} = {holder[key]!r}"
        except (ValueError, IndexError):
            pass
        how = "flip"
    if how == "truncate":
        cut = rng.randrange(max(1, len(data)))
        path.write_bytes(data[:cut])
        return f"{target}: truncated to {cut} of {len(data)} bytes"
    if how in ("flip", "json-types"):
        mutable = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            if mutable:
                mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(mutable))
        return f"{target}: bits flipped"
    if how == "garbage":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000))))
        return f"{target}: garbage"
    if how == "empty":
        path.write_bytes(b"")
        return f"{target}: emptied"
    path.unlink()
    return f"{target}: deleted"


def make_case(i: int, seed: int, files: dict[str, Path], work: Path) -> dict:
    """Case i, drawn from its own seeded generator (so any case can be rebuilt alone)."""
    rng = random.Random(f"{seed}-{i}")
    family = rng.choices(list(FAMILIES), weights=list(FAMILIES.values()))[0]
    cwd = work / f"case-{i:04d}"
    base_train = ["--input", str(files["good"]), *TINY, "--max_steps", "2", "--num_epochs", "1",
                  "--time_budget", "60s", "--eval_every", "1000", "--save_every", "1000"]
    prep = ""
    if family == "train-flags":
        script, args = "train.py", mutate(rng, base_train, plan.build_parser(), files, rng.randint(1, 3))
    elif family == "train-corpus":
        key = rng.choice([k for k in files if k not in ("good", "run")])
        args = [rng.choice(["--input", "--data_dir"]), str(files[key]), *base_train[2:]]
        if rng.random() < 0.4:
            args += ["--encoding", rng.choice(ENCODINGS)]
        script, prep = "train.py", f"corpus: {key}"
    elif family == "sample-flags":
        base = ["--save_dir", str(files["run"]), "-n", "20"]
        script, args = "sample.py", mutate(rng, base, sample.build_parser(), files, rng.randint(1, 3),
                                           only=tuple(f for f in flag_table(sample.build_parser())
                                                      if f not in ("--save_dir",)) if rng.random() < 0.8 else ())
    else:
        run_copy = cwd / "save" / "run"
        prep = "copy of the run"
        if family == "damaged-run":
            prep = "; ".join(["copy:", *(f"__damage{k}__" for k in range(rng.randint(1, 2)))])
        if family == "damaged-run" and rng.random() < 0.6:
            script, args = "sample.py", ["--save_dir", str(run_copy if rng.random() < 0.8 else run_copy.parent),
                                         "-n", "20"]
            if rng.random() < 0.3:
                args += ["--checkpoint", "best"]
        else:
            script, args = "train.py", ["--init_from", str(run_copy if rng.random() < 0.8 else run_copy.parent),
                                        "--max_steps", "6", "--time_budget", "60s"]
            if family == "resume-flags":
                arch = ("--model", "--num_layers", "--rnn_size", "--embedding_size", "--unit", "--encoding",
                        "--max_vocab", "--min_char_count", "--batch_size", "--seq_length", "--init_from")
                args = mutate(rng, args, plan.build_parser(), files, rng.randint(1, 2),
                              only=arch if rng.random() < 0.6 else ())
    return {"id": i, "family": family, "script": script, "args": args, "cwd": cwd, "prep": prep,
            "rng_state": f"{seed}-{i}-prep"}


def prepare(case: dict, files: dict[str, Path]) -> None:
    case["cwd"].mkdir(parents=True)
    if case["prep"].startswith(("copy", "copy of")):
        run_copy = case["cwd"] / "save" / "run"
        shutil.copytree(files["run"], run_copy)
        (run_copy.parent / "latest").write_text("run\n")
        rng = random.Random(case["rng_state"])
        done = [damage(rng, run_copy) for _ in range(case["prep"].count("__damage"))]
        case["prep"] = "; ".join(done) if done else "copy of the run"


# ---- running -----------------------------------------------------------------------------------

def show(arg: str | bytes) -> str:
    if isinstance(arg, bytes):
        return repr(arg)
    return shlex.quote(arg) if len(arg) <= 60 else shlex.quote(arg[:40]) + f"...({len(arg)} chars)"


def run_case(case: dict, timeout: float) -> dict:
    command = [sys.executable, str(CODE / case["script"]),
               *[a if isinstance(a, bytes) else a.encode("utf-8", "surrogateescape") for a in case["args"]]]
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=case["cwd"], capture_output=True, timeout=timeout)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        code, out, err = "timeout", expired.stdout or b"", expired.stderr or b""
    text = err.decode("utf-8", "replace") + out.decode("utf-8", "replace")
    tb = "Traceback (most recent call last)" in text
    errors = [line for line in err.decode("utf-8", "replace").splitlines() if "error:" in line]
    if tb:
        verdict = "TRACEBACK"
    elif code == "timeout":
        verdict = "timeout"
    elif code == 0:
        verdict = "ok"
    elif code == 2 and len(errors) == 1:
        verdict = "refused"
    else:
        verdict = f"ODD(rc={code}, {len(errors)} error lines)"
    return {**case, "code": code, "verdict": verdict, "seconds": time.monotonic() - start,
            "tail": "\n".join(text.strip().splitlines()[-6:])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=240, help="number of cases (at least 200 for the record)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed draws the same cases")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per case")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once")
    parser.add_argument("--workdir", default=None, help="keep the case directories here (default: temp, removed)")
    parser.add_argument("--quick", action="store_true", help="30 cases: a smoke test")
    parser.add_argument("--verbose", action="store_true", help="print every case as it finishes")
    opts = parser.parse_args()
    cases_n = 30 if opts.quick else opts.cases
    work = Path(opts.workdir or tempfile.mkdtemp(prefix="fuzz-cli-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    global CODE
    CODE, version = snapshot(work)
    files = make_fixtures(work, opts.seed)
    cases = [make_case(i, opts.seed, files, work) for i in range(cases_n)]
    for case in cases:
        prepare(case, files)
    print(f"fuzz_cli: {cases_n} cases, seed {opts.seed}, timeout {opts.timeout:.0f} s, jobs {opts.jobs}, code {version} "
          f"(run from a copy in {CODE}; fixtures in {time.monotonic() - started:.0f} s)", flush=True)

    results = []
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        for result in pool.map(lambda c: run_case(c, opts.timeout), cases):
            results.append(result)
            if opts.verbose or result["verdict"] not in ("ok", "refused"):
                print(f"  case {result['id']:4d} {result['family']:<13} {result['verdict']:<9} "
                      f"{result['seconds']:5.1f}s  {result['script']} {' '.join(map(show, result['args']))}"
                      + (f"   [{result['prep']}]" if result["prep"] else ""), flush=True)
                if result["verdict"] not in ("ok", "refused"):
                    print("      " + result["tail"].replace("\n", "\n      "), flush=True)

    table = collections.defaultdict(collections.Counter)
    for r in results:
        table[r["family"]][r["verdict"] if r["verdict"] in ("ok", "refused", "timeout", "TRACEBACK") else "odd"] += 1
        table[r["family"]]["cases"] += 1
    columns = ["cases", "refused", "ok", "timeout", "odd", "TRACEBACK"]
    print(f"\n{'family':<14}" + "".join(f"{c:>10}" for c in columns))
    for family in FAMILIES:
        print(f"{family:<14}" + "".join(f"{table[family][c]:>10}" for c in columns))
    total = collections.Counter()
    for counts in table.values():
        total.update(counts)
    print(f"{'total':<14}" + "".join(f"{total[c]:>10}" for c in columns))
    codes = collections.Counter(str(r["code"]) for r in results)
    print(f"\nexit codes: {dict(sorted(codes.items()))}")
    print(f"tracebacks: {total['TRACEBACK']}   timeouts: {total['timeout']}   other oddities: {total['odd']}   "
          f"({time.monotonic() - started:.0f} s)")
    print(f"command: python bench/fuzz_cli.py --cases {cases_n} --seed {opts.seed}"
          + (f" --jobs {opts.jobs}" if opts.jobs != 1 else ""))
    if not opts.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if total["TRACEBACK"] or total["odd"] else 0


if __name__ == "__main__":
    sys.exit(main())
