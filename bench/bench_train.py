"""Training speed: our model.py + train.py's step against PyTorch, side by side in one run.

    python bench/bench_train.py            # all cases, a few minutes on a quiet 2-core machine
    python bench/bench_train.py --quick    # smoke run, seconds
    python bench/bench_train.py --cases 2x512-V65 --rounds 5

Ours: CharRNN with train.py's own train step (make_train_step: Adam, global-norm clip 5, state
carried across batches, XLA, --batch_groups as train.py sets it by default, the weight average of
its default --ema_decay). PyTorch: Embedding ->
nn.LSTM -> Linear, the same optimizer and clip, state carried (detached). Both on 2 threads, no
dropout, random-integer batches.
Rounds alternate the implementations (rotating the order) so machine noise hits all alike;
the table gives medians with min-max. Prints a markdown table to stdout.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import plan  # noqa: E402
import runs  # noqa: E402

runs.pool_cpu_memory()  # as train.py runs: before any TensorFlow tensor, the matmul probes' too

THREADS = 2
EMBEDDING = 64
# name: (vocab, layers, hidden, batch, seq_length)
CASES = {
    "2x128-V65": (65, 2, 128, 50, 50),
    "2x512-V65": (65, 2, 512, 50, 100),
    "2x128-V2500": (2500, 2, 128, 50, 50),
    "2x512-V2500": (2500, 2, 512, 50, 100),
}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
log = logging.getLogger("charrnn")


def train_flops(cell: str, vocab: int, layers: int, hidden: int, batch: int, steps: int) -> float:
    """Matmul FLOPs of one training step: forward 2*B*T*(I+H)*G*H per layer plus the output
    layer, times 3 for forward + backward. Model FLOPs, the same count for every
    implementation: ours skips some of them (it folds the embedding into layer 0's
    projection), so its GFLOP/s is an equivalent rate."""
    forward = 0.0
    for layer in range(layers):
        fan_in = EMBEDDING if layer == 0 else hidden
        forward += 2.0 * batch * steps * (fan_in + hidden) * GATES[cell] * hidden
    forward += 2.0 * batch * steps * hidden * vocab
    return 3.0 * forward


def matmul_peak_gflops() -> dict[str, float]:
    """float32 2048^3 matmul with numpy, XLA and PyTorch, best of a few calls each; the best of
    the three is the machine's practical matmul peak. numpy alone is not: on the Zen 5 chip of
    2026-12-02 its BLAS reached 229 GFLOP/s where XLA's dot reached 402."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    return {"numpy": _best_gflops(lambda: a @ a, 2 * 2048**3, repeats=5), **framework_matmul_gflops(2048, 2048, 2048)}


def projection_shape(case: str) -> tuple[int, int, int]:
    """(M, K, N) of an LSTM case's layer-projection matmul [B*T, H] x [H, 4H], the step's largest."""
    _, _, hidden, batch, steps = CASES[case]
    return batch * steps, hidden, GATES["lstm"] * hidden


def framework_matmul_gflops(m: int, k: int, n: int) -> dict[str, float]:
    """Each framework's own float32 matmul [m, k] x [k, n], best of a few: XLA's under
    jit_compile (the kernel our step's matmuls run on) and PyTorch's. At the largest matmul of
    a step, the best rate either side's training can hope for."""
    import tensorflow as tf
    import torch

    a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
    xla_matmul = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=True)
    tf_a, tf_b = tf.constant(a), tf.constant(b)
    torch_a, torch_b = torch.from_numpy(a), torch.from_numpy(b)
    matmuls = {"XLA": lambda: xla_matmul(tf_a, tf_b).numpy(), "PyTorch": lambda: torch.matmul(torch_a, torch_b)}
    return {name: _best_gflops(fn, 2 * m * k * n, repeats=10) for name, fn in matmuls.items()}


def _best_gflops(fn, flops: float, repeats: int) -> float:
    """GFLOP/s of fn's fastest of `repeats` calls, after one warm-up call (compiles, caches)."""
    fn()
    return flops / min(_timed(fn) for _ in range(repeats)) / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_batches(vocab: int, batch: int, steps: int, count: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    data = rng.integers(0, vocab, (count, batch, steps + 1), dtype=np.int32)
    return [(d[:, :-1], d[:, 1:]) for d in data]


class Ours:
    """model.CharRNN with the train step train.py runs (train.make_train_step)."""

    def __init__(self, cell: str, vocab: int, layers: int, hidden: int, batches, groups: int = 1):
        import tensorflow as tf

        import model as model_lib
        from train import Adam, WeightAverage, make_train_step

        config = model_lib.ModelConfig(cell, vocab, layers, hidden, EMBEDDING)
        net = model_lib.CharRNN(config, seed=0)
        average = WeightAverage(model_lib.CharRNN(config, seed=0), plan.build_parser().get_default("ema_decay"))
        B, T = batches[0][0].shape
        self.train_step = make_train_step(net, Adam(net.trainable_variables), B, T, grad_clip=5.0, seed=0,
                                          groups=groups, average=average)
        self.tf = tf
        self.batches = [(tf.constant(x), tf.constant(y)) for x, y in batches]
        self.state, self.lr, self.count = net.initial_state(B), tf.constant(2e-3), 0

    def run(self, steps: int) -> float:
        """Seconds for `steps` training steps."""
        start = time.perf_counter()
        for _ in range(steps):
            x, y = self.batches[self.count % len(self.batches)]
            loss, _, self.state = self.train_step(x, y, self.state, self.lr, self.tf.constant(self.count, self.tf.int64))
            self.count += 1
        float(loss)  # waits for the last step
        return time.perf_counter() - start


class Torch:
    """The PyTorch reference: Embedding -> nn.LSTM -> Linear, Adam, clip 5, carried state; with
    dropout (bench_quality), between the layers and before the output layer, as train.py's."""

    def __init__(self, vocab: int, layers: int, hidden: int, batches, dropout: float = 0.0, seed: int = 0):
        import torch

        class LM(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = torch.nn.Embedding(vocab, EMBEDDING)
                self.lstm = torch.nn.LSTM(EMBEDDING, hidden, layers, batch_first=True, dropout=dropout)
                self.drop = torch.nn.Dropout(dropout) if dropout else torch.nn.Identity()
                self.out = torch.nn.Linear(hidden, vocab)

            def forward(self, x, state):
                h, state = self.lstm(self.embedding(x), state)
                return self.out(self.drop(h)), state

        torch.manual_seed(seed)
        self.torch, self.net = torch, LM()
        # fused: one kernel for all the weights, PyTorch's fastest Adam on a CPU (the default steps one
        # weight at a time: about 1% of a 2x512 step, as an audit measured; ours' runs inside XLA).
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=2e-3, fused=True)
        self.batches = [(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in batches]
        B = batches[0][0].shape[0]
        self.state = (torch.zeros(layers, B, hidden), torch.zeros(layers, B, hidden))
        self.count = 0

    def run(self, steps: int) -> float:
        torch, start = self.torch, time.perf_counter()
        for _ in range(steps):
            x, y = self.batches[self.count % len(self.batches)]
            logits, state = self.net(x, self.state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
            self.optimizer.step()
            self.state = tuple(s.detach() for s in state)
            self.count += 1
        return time.perf_counter() - start


def bench_case(name: str, cells: list[str], groups: list[int], rounds: int, round_s: float,
               peak: float) -> tuple[list[dict], list[int] | None]:
    """One case's rows, and the CPU time counters spent in its timed rounds (None: unknown)."""
    vocab, layers, hidden, batch, steps = CASES[name]
    batches = make_batches(vocab, batch, steps)
    contenders = {"torch lstm": Torch(vocab, layers, hidden, batches)}
    for cell in cells:
        for g in groups:
            label = f"ours {cell}" + (f" g{g}" if len(groups) > 1 else "")
            contenders[label] = Ours(cell, vocab, layers, hidden, batches, g)
    rows = {label: {"label": label, "rates": []} for label in contenders}
    for label, impl in contenders.items():
        rows[label]["first_s"] = impl.run(1)  # trace + XLA compile for ours
        per_step = min(impl.run(1) for _ in range(2))
        rows[label]["steps"] = max(1, round(round_s / per_step))
    labels = list(contenders)
    before = cpu_times()
    for r in range(rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            seconds = contenders[label].run(rows[label]["steps"])
            rows[label]["rates"].append(rows[label]["steps"] * batch * steps / seconds)
        log.info("%s round %d/%d: %s", name, r + 1, rounds,
                 ", ".join(f"{k} {v['rates'][-1]:,.0f}" for k, v in rows.items()))
    spent = cpu_spent(before, cpu_times())
    torch_rates = rows["torch lstm"]["rates"]
    torch_median = statistics.median(torch_rates)
    for label, row in rows.items():
        cell = label.split()[1]
        row["median"] = statistics.median(row["rates"])
        row["ratio"] = row["median"] / torch_median
        # Each round's ratio against torch's run in the same round, seconds apart: a slow spell of
        # the machine that spans a round then cancels out, where in the ratio of medians it does not.
        row["paired"] = [rate / torch_rate for rate, torch_rate in zip(row["rates"], torch_rates)]
        row["gflops"] = train_flops(cell, vocab, layers, hidden, batch, steps) * row["median"] / (batch * steps) / 1e9
        row["peak_frac"] = row["gflops"] / peak
    return list(rows.values()), spent


def pin_threads() -> bool:
    """Both frameworks on THREADS threads; returns whether the machine is busy, with a warning."""
    import tensorflow as tf
    import torch

    # And the process on THREADS cores: on a bigger host TensorFlow's inter-op pool, two batch groups
    # side by side and numpy's BLAS for the peak would otherwise use more cores than PyTorch gets.
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > THREADS:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:THREADS])
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    torch.set_num_threads(THREADS)
    # What other processes use of the CPUs over a second, where /proc/stat tells; else the load
    # average, which on some VMs sits near 1 with the CPUs idle (a kernel thread in D state).
    before = cpu_times()
    time.sleep(1.0)
    spent = cpu_spent(before, cpu_times())
    if spent:
        used = 1.0 - idle_and_steal(spent)[0]
        what = f"{100 * used:.0f}% of the CPU time busy"
    else:
        load = os.getloadavg()[0]
        used, what = load / (os.cpu_count() or 1), f"load average {load:.2f}"
    busy = used > 0.25
    if busy:
        # Measured: with another process on one of the 2 cores, torch's OpenMP threads wait
        # a scheduler slice at every barrier and a 2x128 training step took 4.5 s instead of 17 ms.
        log.warning("%s before the bench: the machine is busy, torch's figures will be far too low", what)
    return busy


def cpu_times() -> list[int] | None:
    """The machine's CPU time counters from /proc/stat (user, nice, system, idle, iowait, irq,
    softirq, steal), or None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def cpu_spent(before: list[int] | None, after: list[int] | None) -> list[int] | None:
    """The CPU time counters spent between two cpu_times() readings, or None if either is unknown."""
    return [b - a for a, b in zip(before, after)] if before and after else None


def idle_and_steal(spent: list[int]) -> tuple[float, float]:
    """Shares of all CPU time in spent: idle (the cores not kept busy) and steal (time the
    hypervisor gave to other machines)."""
    total = sum(spent) or 1
    return spent[3] / total, spent[7] / total


def cpu_summary(spent_per_case: list[list[int] | None]) -> str:
    if not spent_per_case or None in spent_per_case:
        return "CPU idle/steal: not available."
    idle, steal = idle_and_steal([sum(counts) for counts in zip(*spent_per_case)])
    return f"CPU time in the timed rounds: {100 * idle:.1f}% idle, {100 * steal:.1f}% steal."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one small case, short rounds")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--cells", nargs="+", choices=list(GATES), default=list(GATES))
    parser.add_argument("--rounds", type=int, default=4, help="measurement rounds per implementation")
    parser.add_argument("--round_s", type=float, default=2.0, help="seconds per measurement round")
    parser.add_argument("--batch_groups", type=int, nargs="+", default=[0],
                        help="train.py's --batch_groups for ours (0: its default); several: each side by side")
    args = parser.parse_args()
    if args.quick:
        args.cases, args.cells, args.rounds, args.round_s = ["2x128-V65"], ["lstm"], 2, 0.3
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)

    import tensorflow as tf
    import torch
    from train import batch_groups

    load_before = os.getloadavg()
    busy = pin_threads()
    peaks = matmul_peak_gflops()
    peak = max(peaks.values())
    m, k, n = projection_shape("2x512-V65")
    own_matmul = ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in framework_matmul_gflops(m, k, n).items())
    groups = [g or batch_groups(tf, 0, min(case[3] for case in CASES.values()), xla=True) for g in args.batch_groups]
    measured = {name: bench_case(name, args.cells, groups, args.rounds, args.round_s, peak) for name in args.cases}
    results = {name: rows for name, (rows, _) in measured.items()}
    load_after = os.getloadavg()

    print(f"## Training speed, chars/s (tensorflow {tf.__version__}, torch {torch.__version__}, {THREADS} threads each)\n")
    print(f"float32 2048^3 matmul: {', '.join(f'{name} {rate:.0f}' for name, rate in peaks.items())} GFLOP/s; "
          f"the best, {peak:.0f}, is the peak. "
          f"Each framework's own matmul at [{m}, {k}] x [{k}, {n}]: {own_matmul}. "
          f"Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
          f"after: {'/'.join(f'{x:.2f}' for x in load_after)}. "
          f"{cpu_summary([spent for _, spent in measured.values()])} "
          f"Ours in {'/'.join(map(str, groups))} batch group(s). "
          f"{args.rounds} alternating rounds of ~{args.round_s:g} s each; median (min-max). "
          "'paired': the median (min-max) of each round's ratio against torch's run in the same round."
          + (" Machine busy: not a valid comparison." if busy else "") + "\n")
    print("| case (B, T) | implementation | chars/s | min-max | vs torch lstm | paired | GFLOP/s | % of peak "
          "| first step s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in results.items():
        _, _, _, batch, steps = CASES[name]
        for row in rows:
            print(f"| {name} (B{batch} T{steps}) | {row['label']} | {row['median']:,.0f} | "
                  f"{min(row['rates']):,.0f}-{max(row['rates']):,.0f} | {row['ratio']:.2f}x | "
                  f"{statistics.median(row['paired']):.2f}x ({min(row['paired']):.2f}-{max(row['paired']):.2f}) | "
                  f"{row['gflops']:.0f} | {100 * row['peak_frac']:.0f}% | {row['first_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
