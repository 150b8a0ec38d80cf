"""Sampling speed: model.generate() against a per-character loop and PyTorch, side by side.

    python bench/bench_sample.py           # full run, about a minute on a quiet 2-core machine
    python bench/bench_sample.py --quick   # smoke run, seconds

ours generate: the whole loop in one compiled graph (model.generate). ours per-char: a
tf.function called once per character from Python (how the old TF1 tool sampled). torch
per-char: nn.LSTM stepped once per character under no_grad, oneDNN off (faster here). All sample from the softmax at
temperature 1, 2 threads each, random weights (speed does not depend on them). Also
reports our load + compile time: build the model, restore a checkpoint, first generate().
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

THREADS = 2
VOCAB, EMBEDDING, LAYERS = 65, 64, 2
log = logging.getLogger("charrnn")


def ours_generate(net, streams: int, n: int):
    import tensorflow as tf

    import model as model_lib

    prime = tf.zeros([streams, 1], tf.int32)
    calls = iter(range(1_000_000))
    return lambda: model_lib.generate(net, prime, n, seed=next(calls)).numpy()


def ours_per_char(net, streams: int, n: int):
    import tensorflow as tf

    @tf.function
    def step(ids, state, seed):
        logits, state = net.step(ids, state)
        return tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)[:, 0], state

    def run():
        ids, state, out = tf.zeros([streams], tf.int32), net.initial_state(streams), []
        for i in range(n):
            ids, state = step(ids, state, tf.constant([0, i]))
            out.append(ids)
        return tf.stack(out, 1).numpy()

    return run


def torch_per_char(hidden: int, streams: int, n: int):
    import torch

    embedding = torch.nn.Embedding(VOCAB, EMBEDDING)
    lstm = torch.nn.LSTM(EMBEDDING, hidden, LAYERS, batch_first=True)
    out_layer = torch.nn.Linear(hidden, VOCAB)

    @torch.no_grad()
    def run():
        ids, state, out = torch.zeros(streams, 1, dtype=torch.long), None, []
        # oneDNN's per-call setup dominates one-step LSTM calls (measured, 2x128: 134 vs 6,600 chars/s).
        with torch.backends.mkldnn.flags(enabled=False):
            for _ in range(n):
                h, state = lstm(embedding(ids), state)
                ids = torch.multinomial(torch.softmax(out_layer(h[:, -1]), -1), 1)
                out.append(ids)
        return torch.cat(out, 1).numpy()

    return run


def load_and_compile_s(hidden: int, n: int) -> float:
    """Build the model, restore a checkpoint written by another instance, first generate()."""
    import tensorflow as tf

    import model as model_lib

    config = model_lib.ModelConfig("lstm", VOCAB, LAYERS, hidden, EMBEDDING)
    with tempfile.TemporaryDirectory() as tmp:
        path = tf.train.Checkpoint(model=model_lib.CharRNN(config, seed=1)).write(os.path.join(tmp, "ckpt"))
        start = time.perf_counter()
        net = model_lib.CharRNN(config)
        tf.train.Checkpoint(model=net).read(path).assert_consumed()
        model_lib.generate(net, tf.constant([[1, 2, 3]], tf.int32), n, seed=0).numpy()
        return time.perf_counter() - start


def bench(hidden: int, streams: int, n: int, rounds: int, per_char_n: int) -> dict[str, float]:
    """chars/s per implementation, median of alternating rounds (per-char loops on a shorter n)."""
    import model as model_lib

    net = model_lib.CharRNN(model_lib.ModelConfig("lstm", VOCAB, LAYERS, hidden, EMBEDDING), seed=0)
    runs = {
        "ours generate": (ours_generate(net, streams, n), n),
        "ours per-char tf.function": (ours_per_char(net, streams, per_char_n), per_char_n),
        "torch per-char": (torch_per_char(hidden, streams, per_char_n), per_char_n),
    }
    rates: dict[str, list[float]] = {label: [] for label in runs}
    for run, _ in runs.values():
        run()  # warm-up: traces and compiles
    labels = list(runs)
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            run, chars = runs[label]
            start = time.perf_counter()
            run()
            rates[label].append(streams * chars / (time.perf_counter() - start))
    return {label: (statistics.median(v), min(v), max(v)) for label, v in rates.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short outputs, one round")
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 512], help="rnn_size values (2 layers)")
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 32], help="batch sizes N")
    parser.add_argument("-n", type=int, default=2000, help="characters per stream")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds = 200, 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)

    import tensorflow as tf
    import torch

    from bench_train import pin_threads
    load_before = os.getloadavg()
    busy = pin_threads()
    compile_s = {hidden: load_and_compile_s(hidden, args.n) for hidden in args.sizes}
    # The per-character loops are 10-100x slower: a shorter run keeps the bench short.
    per_char_n = max(50, args.n // 10)
    results = {}
    for hidden in args.sizes:
        for streams in args.streams:
            results[hidden, streams] = bench(hidden, streams, args.n, args.rounds, per_char_n)
            log.info("2x%d N=%d: %s", hidden, streams,
                     ", ".join(f"{k} {v[0]:,.0f}" for k, v in results[hidden, streams].items()))
    load_after = os.getloadavg()

    print(f"## Sampling speed, chars/s (tensorflow {tf.__version__}, torch {torch.__version__}, {THREADS} threads each)\n")
    print(f"LSTM, V={VOCAB}, embedding {EMBEDDING}; n={args.n} chars per stream for generate(), "
          f"{per_char_n} for the per-character loops; median (min-max) of {args.rounds} alternating rounds. "
          f"Load average before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
          f"after: {'/'.join(f'{x:.2f}' for x in load_after)}."
          + (" Machine busy: not a valid comparison." if busy else "") + "\n")
    print("| model | streams N | implementation | chars/s (all streams) | min-max | vs torch |")
    print("|---|---:|---|---:|---:|---:|")
    for (hidden, streams), rows in results.items():
        torch_rate = rows["torch per-char"][0]
        for label, (median, low, high) in rows.items():
            print(f"| 2x{hidden} | {streams} | {label} | {median:,.0f} | {low:,.0f}-{high:,.0f} | {median / torch_rate:.1f}x |")
    print("\n| model | load + compile, s (restore checkpoint, first generate) |\n|---|---:|")
    for hidden, seconds in compile_s.items():
        print(f"| 2x{hidden} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
