"""Train a character-level LSTM/GRU/RNN language model.

    python train.py --data_dir data/tinyshakespeare --time_budget 15m
    python train.py --init_from save            # resume the newest run
    tensorboard --logdir logs

The command line is parsed, and the run planned (plan.py: its flags, corpus, directory and lock),
before TensorFlow is imported, so that --help and bad flags or files answer at once. The training
loop is written out below (no Keras fit): one compiled step, the hidden state carried from batch
to batch, evaluation, TensorBoard, checkpoints and exact resume.
"""
from __future__ import annotations

import signal

if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    # A Ctrl-C while the modules below load (the standard library's too) ends the process as the
    # signal does, not in a KeyboardInterrupt traceback; main() then sets the handlers that stop
    # with a message.
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple

import dataset
import plan
import runs
import utils
import workers
from utils import CharRNNError, np  # numpy, run on first use: --help does not wait for it

if TYPE_CHECKING:  # for annotations only: --help must not wait for TensorFlow
    import tensorflow as tf

    import model

log = logging.getLogger("charrnn")


class Stop(NamedTuple):
    """Why training ends: its length limit, --stop_at_step, or a signal (to this worker or another)."""
    label: str  # as the session's end names it: "--max_steps 5000", "--stop_at_step 40", "SIGTERM"
    at_limit: bool = False
    signum: int = 0  # a signal's number; 0 for the other two


# ---------------------------------------------------------------------------------------------
# Learning-rate schedule


def learning_rate(args: argparse.Namespace, step: int, epoch: int, progress: float) -> float:
    """Linear warmup, then cosine decay to min_lr_frac over the rest of the run (or
    char-rnn-tensorflow's per-epoch decay_rate when given). progress: the run's, in [0, 1]."""
    peak = args.learning_rate
    if step < args.warmup_steps:
        return peak * (step + 1) / args.warmup_steps
    if args.decay_rate is not None:
        return peak * args.decay_rate ** epoch
    floor = peak * args.min_lr_frac
    cosine = 0.5 * (1.0 + math.cos(math.pi * decay_progress(step, progress, args.warmup_steps)))
    return floor + (peak - floor) * cosine


def decay_progress(step: int, progress: float, warmup_steps: int) -> float:
    """How far the cosine has come, from 0 where the warmup ended to 1 at the run's end. A cosine
    over the whole run would start below the peak, and the rate would drop where the warmup ends
    (by 45% when the warmup is half the run). The warmup's share of the run is taken at the
    average pace so far (progress / step per step): exactly (step - warmup) / (steps - warmup) in
    a run measured in steps or epochs, and under a time budget, with nothing more to save for a
    resume, a rate that starts at the peak and falls as steps and seconds go by. (So does it, with
    no jump, where a resume at another --batch_size changes the pace in epochs.)"""
    progress = min(progress, 1.0)
    if progress >= 1.0 or step == 0:
        return progress
    warmup_share = progress * warmup_steps / step
    return (progress - warmup_share) / (1.0 - warmup_share)


def length_used(args: argparse.Namespace, step: int, epochs: float, seconds: float) -> dict[str, float]:
    """How much of each length limit the run has used, by the flag that sets it ("max_steps").
    epochs: the epochs trained, counted in the text rather than in steps, which stand for other
    amounts of it once a resume changes --batch_size."""
    used = {}
    if args.num_epochs:
        used["num_epochs"] = epochs / args.num_epochs
    if args.max_steps:
        used["max_steps"] = step / args.max_steps
    if args.time_budget_s:
        used["time_budget"] = seconds / args.time_budget_s
    return used


def training_progress(args: argparse.Namespace, step: int, epochs: float, seconds: float) -> float:
    """Fraction of the run done, by whichever limit is nearest to ending it."""
    return max(length_used(args, step, epochs, seconds).values())


def limit_reached(args: argparse.Namespace, step: int, epochs: float, seconds: float) -> str:
    """The length flag whose limit ends the run (the one most used up): "max_steps"."""
    used = length_used(args, step, epochs, seconds)
    return max(used, key=used.get)


# ---------------------------------------------------------------------------------------------
# Console progress


class Progress:
    """One live line on a terminal; plain lines every print_every steps in a log file."""

    def __init__(self, print_every: int):
        self.live = utils.is_live_terminal(sys.stderr)
        self.print_every = print_every
        self.last_draw = 0.0

    def update(self, step: int, fields: list[str]) -> None:
        """fields: most important first, as the live line drops the last ones that a narrow
        terminal has no room for (whole: half a number would read as another)."""
        if self.live:
            now = time.monotonic()
            if now - self.last_draw > 0.2:
                # A line as wide as the terminal wraps, and each redraw would then scroll a new one.
                try:
                    width = os.get_terminal_size(sys.stderr.fileno()).columns - 1
                except OSError:
                    width = 0
                width = width if width > 0 else 79  # some pseudo-terminals say 0 columns
                shown = fields[:1]
                for field in fields[1:]:
                    if len(" ".join(shown + [field])) > width:
                        break
                    shown.append(field)
                try:
                    sys.stderr.write("\r" + " ".join(shown)[:width] + "\x1b[K")
                    sys.stderr.flush()
                except OSError:  # the terminal is gone (a closed SSH session): train on, undrawn
                    self.live = False
                self.last_draw = now
        elif step % self.print_every == 0:
            log.info(" ".join(fields))


def time_left(pace_from: tuple[float, float, int], now: float, done: float, step: int, stop_at_step: int) -> float:
    """Seconds until the run ends, at the pace since pace_from (its time, progress and step), or until
    --stop_at_step where the session stops first."""
    since, done_then, step_then = pace_from
    remaining = (now - since) * (1 - done) / max(done - done_then, 1e-9)
    if stop_at_step:
        per_step = (now - since) / (step - step_then)
        remaining = min(remaining, max(stop_at_step - step, 0) * per_step)
    return remaining


def nearest_batch(batch: int, saved_batches: int, batches: int) -> int:
    """The batch of an epoch of `batches` nearest to the same share of it as `batch` of one of
    `saved_batches` (a resume at another --batch_size), within the epoch: an epoch of few batches (a
    large batch on a small text) moves the run, and its schedule, by at most one, and never into
    the next epoch, which could end a run (or change --decay_rate's rate) by rounding."""
    return 0 if batch == 0 else min(batches - 1, (2 * batch * batches + saved_batches) // (2 * saved_batches))


def epoch_position(epoch: int, batch: int, num_batches: int) -> str:
    """The epochs done with the hundredths of the next: 1.06, or 2.00 at the end of the second (not 1)."""
    return f"{epoch}.{batch * 100 // num_batches:02d}"


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    return time.strftime("%H:%M:%S", time.gmtime(seconds)) if seconds < 86400 else f"{seconds / 86400:.1f}d"


# ---------------------------------------------------------------------------------------------
# Training


def bits_per_char(nats_per_symbol: float, chars_per_symbol: float) -> float:
    """A loss in nats per symbol as bits per original character (the same figure in both units:
    chars_per_symbol counts characters with dataset.count_chars, < 1 under jamo)."""
    return nats_per_symbol / chars_per_symbol / math.log(2)


class EventsUnwritable(Exception):
    """TensorBoard's events file could not be written; the reason is the OS's."""


class Trainer:
    """The TensorFlow side of a run: model, optimizer, checkpoints, TensorBoard and the loop.
    The loop's position (step, epoch, batch, hidden state) lives here and in every checkpoint (the
    hidden state as zeros across replicas: see save)."""

    def __init__(self, run: plan.Run, tf: ModuleType, hang_watch: "workers.HangWatch"):
        import model as model_lib
        self.run, self.tf, self.model_lib = run, tf, model_lib
        args, corpus = run.args, run.corpus
        self.args, self.vocab = args, corpus.vocab
        self.hang_watch = hang_watch
        if run.cluster.num_workers > 1:  # else a worker whose peers never start waits in silence
            log.info("worker %d of %d: waiting for all the workers of TF_CONFIG's cluster to start; until they do, "
                     "Ctrl-C and kill wait too (TensorFlow holds the process), kill -9 stops this one",
                     run.cluster.worker_index, run.cluster.num_workers)
        self.strategy = workers.make_strategy(tf, args.strategy)
        # MultiWorkerMirroredStrategy's coordination agent takes SIGTERM over below Python (its preemption
        # notifier), and a job scheduler's stop trained on: put train_run's handlers back.
        for sig in utils.stop_signals():
            signal.signal(sig, signal.getsignal(sig))
        self.distributed = self.strategy.num_replicas_in_sync > 1 or run.cluster.num_workers > 1
        self.meet = workers.make_gather(self.strategy) if self.distributed else None  # unwatched: see run_eval
        self.gather = self.hang_watch.watched(self.meet) if self.distributed else None
        self.check_same_flags()  # first: a worker that stops alone leaves the others waiting for it
        if self.distributed and args.batch_groups > 1:  # refused before anything is written
            raise CharRNNError(f"--batch_groups {args.batch_groups}: batch groups are for training on one device; "
                               "with several replicas pass --batch_groups 0 (a resumed run keeps its saved value "
                               "unless one is typed, or --batch_size changes)")
        workers.check_batch_shares(args.batch_size, self.strategy.num_replicas_in_sync, "replicas (devices) in sync",
                                   resumed=run.resume_dir is not None, how_to_use_fewer=workers.GPU_CHOICE)
        # The training part is the text before the validation part, so its characters are the rest:
        # counting them would read every id of a multi-GB jamo corpus at each start.
        held_out = corpus.ids[len(run.train_ids):]
        train_chars = corpus.num_chars - dataset.count_chars(corpus.vocab, held_out)
        self.chars_per_symbol = {"train": train_chars / len(run.train_ids),
                                 "val": dataset.count_chars(corpus.vocab, run.val_ids) / len(run.val_ids)}
        chars = f" for {corpus.num_chars:,} characters" if corpus.num_chars != len(corpus.ids) else ""
        log.info("corpus: %s symbols%s (%s unit, vocabulary %d), %d train step%s per epoch, validation %s symbols",
                 f"{len(corpus.ids):,}", chars, corpus.vocab.unit, corpus.vocab.size, run.loader.num_batches,
                 "s" * (run.loader.num_batches != 1), f"{len(run.val_ids):,}")
        log.info("baseline: a model that learned only character frequencies scores %.3f bits/char "
                 "(unigram entropy); anything near it has learned nothing",
                 dataset.unigram_entropy_bits(corpus.vocab, run.train_ids))
        vocab = self.vocab
        if vocab.unk_id is not None and vocab.counts[vocab.unk_id]:  # --max_vocab or --min_char_count cut some
            log.info("the unknown symbol %s stands for the rare characters (%.2f%% of the symbols): the losses and "
                     "bits/char count it as one character, so they compare only with runs that cut the same "
                     "vocabulary (--max_vocab, --min_char_count)", vocab.symbols[vocab.unk_id],
                     100 * vocab.counts[vocab.unk_id] / sum(vocab.counts))
        if self.distributed:
            log.info("%s: %d replicas in sync, worker %d of %d", self.strategy.__class__.__name__,
                     self.strategy.num_replicas_in_sync, run.cluster.worker_index, run.cluster.num_workers)

        config = model_lib.ModelConfig(model=args.model, vocab_size=corpus.vocab.size, num_layers=args.num_layers,
                                       rnn_size=args.rnn_size, embedding_size=args.embedding_size,
                                       dropout=args.dropout, input_dropout=args.input_dropout)
        with self.strategy.scope(), tf.variable_creator_scope(workers.identical_replica_updates):
            self.net = model_lib.CharRNN(config, seed=args.seed)
            self.average = WeightAverage(model_lib.CharRNN(config, seed=args.seed), args.ema_decay)  # the same start
            self.optimizer = Adam(self.net.trainable_variables)
            self.loss_scale = LossScale()
        if args.mixed_precision and not tf.config.list_physical_devices("GPU"):
            log.warning("--mixed_precision on a CPU: float16 runs slower than float32 here; it is meant for GPUs")
        self.config = config
        self.restore_or_start()
        self.check_same_checkpoint()
        self.writer = None

    def start(self) -> None:
        """Make the step functions (each compiled at its first call) and open TensorBoard: the run
        is under way."""
        tf, run, args = self.tf, self.run, self.args
        xla = args.xla == "on"
        groups = 1 if self.distributed else batch_groups(tf, args.batch_groups, args.batch_size, xla)
        if groups > 1:
            log.info("train step: the batch's %d streams in %d groups, run side by side (--batch_groups)",
                     args.batch_size, groups)
        train_step = make_train_step(self.net, self.optimizer, args.batch_size // run.cluster.num_workers,
                                     args.seq_length, args.grad_clip, args.seed, xla=xla,
                                     strategy=self.strategy if self.distributed else None,
                                     loss_scale=self.loss_scale if args.mixed_precision else None, groups=groups,
                                     average=self.average)
        self.train_step = self.hang_watch.watched(train_step, from_call=2)  # the first compiles
        self.eval_step = self.model_lib.graph_function(self._eval_step, jit_compile=xla)
        run.log_files_before = set(os.listdir(run.log_dir)) if run.log_dir.is_dir() else set()
        self.open_events()
        if run.cluster.is_chief:
            # Absolute: a second terminal, where the command is pasted, opens in another folder.
            log_dir = os.path.abspath(args.log_dir)
            # A moved or copied run writes on in the TensorBoard run it began: named where the names differ.
            board_run = f" (TensorBoard run {args.log_name})" if args.log_name != run.run_dir.name else ""
            log.info("run %s: checkpoints in %s%s; watch it with:  tensorboard --logdir %s", args.run_name, run.run_dir,
                     board_run, utils.shell_path(log_dir if runs.is_utf8_path(log_dir) else args.log_dir))
            for level, note in self.resume_notes:
                log.log(level, note)
            self.say_schedule_change()
            if run.epochs_typed and self.step > 0 and args.num_epochs:
                log.info(self.epochs_counted_from_the_start())
        self.progress_line = Progress(args.print_every if run.cluster.is_chief else 10 ** 9)
        self.session_start = utils.awake_seconds()
        # (time, progress, step) that the ETA's pace is measured from: the end of the session's first
        # step, which compiled it, and again after its first evaluation, which compiled that.
        self.pace_from: tuple[float, float, int] | None = None
        self.rate = 0.0
        self.last_val: float | None = None  # this session's newest validation loss, for the progress line
        self.last_val_step = -1  # the step it was computed at

    def say_schedule_change(self) -> None:
        """A length or learning-rate flag typed on resume reshapes the schedule (a new length spreads
        the warmup and cosine over the whole run), so the rate can jump where the run goes on: say
        so, with both rates."""
        before, args = self.run.saved_schedule, self.args
        if before is None or self.step == 0:
            return
        rates = [learning_rate(a, self.step, self.epoch, training_progress(a, self.step, self.epochs(),
                                                                           self.seconds_before))
                 for a in (before, args)]
        if not math.isclose(*rates, rel_tol=0.01):
            differ = [flag for flag in plan.SCHEDULE_FLAGS if getattr(args, flag) != getattr(before, flag)]
            unset = [f"--{f} {getattr(before, f)}" for f in differ if f in plan.LENGTH_FLAGS and not getattr(args, f)]
            changed = [f"--{f} {getattr(args, f)}" for f in differ if f not in plan.LENGTH_FLAGS or getattr(args, f)]
            parts = [" ".join(changed)] if changed else []
            if unset:
                parts.append(f"without the saved {' '.join(unset)}")
            log.info("the new schedule (%s) reshapes the learning rate over the whole run: step %d trains at "
                     "%.2e, where the saved schedule had %.2e", ", ".join(parts), self.step + 1, *reversed(rates))

    # -- checkpoints ---------------------------------------------------------------------------

    def restore_or_start(self) -> None:
        """Build the checkpoint (model, optimizer, loop position) and restore it when resuming."""
        tf, run = self.tf, self.run
        self.counters = {name: tf.Variable(0, dtype=tf.int64, name=name) for name in ("step", "epoch", "batch")}
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64)
        self.best_val = tf.Variable(float("inf"), dtype=tf.float64)
        self.carried = tf.Variable(self.net.initial_state(self.args.batch_size))
        # The text a checkpoint was trained and validated on. config.json says it too, but a session
        # killed between its rewrite and the first checkpoint on another text leaves it on the new text.
        self.text_saved = {"val_sha256": tf.Variable(""), "train_symbols": tf.Variable(0, dtype=tf.int64)}

        read_as_old = set()  # the paths whose checkpoint was made in the layout of before the average
        other_batch = {}  # the paths whose checkpoint was trained at another --batch_size: that size
        text_unsaved = set()  # the paths whose checkpoint was saved before it recorded its text
        self.resume_notes: list[tuple[int, str]] = []  # (level, message): said once the session trains
        self.best_started_again = False  # the saved best val loss compares with none of this session's

        def make_checkpoint(path: str | None = None) -> "tf.train.Checkpoint":
            # `model` is what sample.py loads: the average. A checkpoint saved before there was one
            # holds the trained weights there, and nothing else.
            variables = saved_variables(tf, path) if path is not None else {}
            weights = {"model": self.average.averaged, "trained_model": self.net}
            if saved_before_the_average(variables):
                read_as_old.add(path)
                weights = {"model": self.net}
            carried, batch_size = self.carried, saved_batch_size(variables)
            if batch_size not in (None, self.args.batch_size):  # other streams' state: read, then dropped
                other_batch[path] = batch_size
                carried = tf.Variable(self.net.initial_state(batch_size))
            text = self.text_saved
            if path is not None and "train_symbols/.ATTRIBUTES/VARIABLE_VALUE" not in variables:
                text_unsaved.add(path)
                text = {}
            return tf.train.Checkpoint(**weights, optimizer=self.optimizer.slots, loss_scale=self.loss_scale.slots,
                                       train_seconds=self.train_seconds, best_val=self.best_val,
                                       carried_state=carried, **self.counters, **text)

        checkpoint = make_checkpoint()
        # Read (and set aside when damaged) the `checkpoint` lists first: CheckpointManager fails on a damaged one.
        # The other workers write to scratch directories: they read the run's own list, and leave it as it is,
        # so that every worker picks its checkpoint by the same rule from the same list.
        chief = run.cluster.is_chief
        listed = runs.read_checkpoint_list(tf, run.write_dir if chief or run.resume_dir is None else run.resume_dir,
                                           set_aside=chief)
        runs.read_checkpoint_list(tf, run.write_dir / "best", set_aside=True)
        self.manager = tf.train.CheckpointManager(checkpoint, run.write_dir, max_to_keep=self.args.keep,
                                                  checkpoint_name="ckpt")
        self.best_manager = tf.train.CheckpointManager(checkpoint, run.write_dir / "best", max_to_keep=1,
                                                       checkpoint_name="ckpt")
        restored = None
        if run.resume_dir is not None:
            candidates = runs.resume_candidates(run.resume_dir, listed)
            try:
                restored = runs.restore_checkpoint(make_checkpoint, candidates) if candidates else None
            except CharRNNError:
                # Nothing listed and one checkpoint that does not load: a first save that never
                # completed. More are a run's saves, damaged: never trained over from step 0.
                if listed is not None or len(candidates) > 1:
                    raise
            if restored is None:
                log.warning("%s has no complete checkpoint (training stopped before its first save): training "
                            "it from step 0", run.resume_dir)
            else:
                if restored not in text_unsaved:
                    self.compare_with_the_saved_text()
                if restored in read_as_old:  # the average starts here
                    for average, var in zip(self.average.averaged.trainable_variables, self.net.trainable_variables):
                        average.assign(var)
                best = float(self.best_val)  # the progress line shows "val -" until this session validates
                log.info("resumed %s at step %d (epoch %d, batch %d)%s", restored, int(self.counters["step"]),
                         int(self.counters["epoch"]), int(self.counters["batch"]),
                         f", best val loss so far {best:.4f}" if math.isfinite(best) else "")
                incomparable = self.best_val_incomparable(other_batch.get(restored))
                if incomparable and math.isfinite(best):
                    self.resume_notes.append((logging.WARNING, f"the best val loss so far, {best:.4f}, does not "
                                              f"compare with this session's: {incomparable}. best/ goes to this "
                                              f"session's first evaluation, and follows from there"))
                    self.best_val.assign(float("inf"))
                    self.best_started_again = True
        self.text_saved["val_sha256"].assign(self.args.val_sha256)  # what this session's checkpoints hold
        self.text_saved["train_symbols"].assign(len(run.train_ids))
        self.step, self.epoch, self.batch = (int(self.counters[k]) for k in ("step", "epoch", "batch"))
        self.start_step = self.step
        # Where the run's own checkpoints hold this session's weights, not what the list names: a resume
        # from an older checkpoint than a damaged listed one must save again when it reaches that step.
        self.saved_step = self.step if restored is not None else -1
        self.seconds_before = float(self.train_seconds)
        self.place_in_the_text(restored, other_batch.get(restored))

    def compare_with_the_saved_text(self) -> None:
        """Judge the resumed checkpoint's best validation loss and place in the text by the text it
        recorded, not config.json's (plan's judgement, which stands for checkpoints saved before
        they recorded it)."""
        run = self.run
        run.val_changed = self.text_saved["val_sha256"].numpy().decode() != self.args.val_sha256
        saved_symbols = int(self.text_saved["train_symbols"])
        run.saved_train_symbols = saved_symbols if saved_symbols != len(run.train_ids) else None

    def best_val_incomparable(self, saved_batch_size: int | None) -> str:
        """Why the resumed run's best validation loss compares with nothing this session measures, if
        it does not ("" where it does): another validation text, or other streams of it."""
        run = self.run
        if run.val_changed:
            return "it was measured on another validation text (--eval_symbols or the corpus changed)"
        saved_streams = (run.eval_batch if saved_batch_size is None
                         else plan.eval_streams(saved_batch_size, self.args.seq_length, run.val_ids))
        if saved_streams != run.eval_batch:
            return (f"it was measured in {saved_streams} streams of the validation text, and --batch_size "
                    f"{self.args.batch_size} reads it in {run.eval_batch}")
        return ""

    def place_in_the_text(self, restored: str | None, saved_batch_size: int | None) -> None:
        """Where the loop goes on. On one device at the saved --batch_size: the saved position and
        hidden state, exactly (across replicas the state restarts at zero). At another --batch_size
        (char-rnn-tensorflow allowed one; saved_batch_size is the checkpoint's) the text is cut into
        other streams: the run goes on from the nearest batch to its share of the epoch, from a zero
        state; the step count and the schedule, which counts epochs by that share, go on. So does a
        text grown or edited since (its saved length differs), which is cut into other streams too.
        A run saved before its length was: a text shorter than when the position was saved goes on
        from the next epoch. What it says waits in resume_notes: a run that has nothing left to
        train says none of it."""
        tf, run, args = self.tf, self.run, self.args
        recut = saved_batch_size is not None or run.saved_train_symbols is not None
        exact = restored is not None and not self.distributed and not recut
        self.state = tf.constant(self.carried) if exact else self.initial_state()
        batches = run.loader.num_batches
        saved_batches = (batches if not recut else
                         dataset.batches_per_epoch(run.saved_train_symbols or len(run.train_ids),
                                                   saved_batch_size or args.batch_size, args.seq_length))
        if self.batch and self.batch >= saved_batches:  # the same characters, but less text than when it was saved
            at = "" if saved_batch_size is None else f" at the saved --batch_size {saved_batch_size}"
            self.resume_notes.append((logging.WARNING, (
                f"the saved position (epoch {self.epoch}, batch {self.batch}) is past this corpus's "
                f"{max(0, saved_batches)} batches per epoch{at}: the text is shorter than when the run started; "
                f"going on from the next epoch")))
            self.epoch, self.batch, self.state = self.epoch + 1, 0, self.initial_state()
        elif recut:
            batch = nearest_batch(self.batch, saved_batches, batches)
            why, had, at = [], "has", ""
            if saved_batch_size is not None:
                why.append(f"--batch_size {args.batch_size}, where the run trained at {saved_batch_size}")
                at = f" at --batch_size {saved_batch_size}"
            if run.saved_train_symbols is not None:
                why.append(f"the training text has {len(run.train_ids):,} symbols, where it had "
                           f"{run.saved_train_symbols:,} (grown or edited)")
                had = "had"
            self.resume_notes.append((logging.INFO, (
                f"{' and '.join(why)}: the text is cut into other streams, so the hidden state starts from zeros, "
                f"and the run goes on from the nearest point in the epoch to where it was (epoch {self.epoch}, batch "
                f"{self.batch} of the {saved_batches} that the text {had} per epoch{at}): batch {batch} of "
                f"{batches}. The step count and the learning-rate schedule go on")))
            self.batch = batch

    def check_same_flags(self) -> None:
        """Refuse workers started with other flags or other text than the chief, before the model is
        made: the strategy gives every worker the chief's initial weights (other sizes failed with a
        TensorFlow traceback), and averages their updates in silence (another learning rate or batch)."""
        if self.run.cluster.num_workers == 1:
            return
        args, corpus = self.args, self.run.corpus
        # Every flag train.py has (the same list on every worker of one version), as this session resolved it.
        flags = sorted(action.dest for action in plan.build_parser()._actions if action.dest != "help")
        shared = {f"--{flag}": getattr(args, flag) for flag in flags if flag not in workers.PER_WORKER_FLAGS}
        shared["--time_budget"] = args.time_budget_s  # 15m and 900s are one budget
        shared["the embedded input's dropout"] = args.input_dropout  # the old keep probabilities', or saved
        stride = max(1, len(corpus.ids) // 4096)  # a sample of the ids: reading them all is minutes at GB scale
        shared["the text"] = (len(corpus.ids), corpus.vocab.symbols, args.val_sha256, args.val_split,
                              hashlib.sha256(np.ascontiguousarray(corpus.ids[::stride])).hexdigest())
        # 48 bits of each value's hash: exact in the float64s that the gather all-reduces.
        replicas = self.gather([int.from_bytes(hashlib.sha256(repr(value).encode()).digest()[:6], "big")
                                for value in shared.values()])
        differ = [name for name, column in zip(shared, replicas.T) if (column != column[0]).any()]
        if differ:
            here = ", ".join(f"{name} ({shared[name]} here)" if name.startswith("--") else name for name in differ)
            raise CharRNNError(f"the workers were started with other flags or text than worker 0 (the chief): {here}. "
                               f"Start every worker with the same flags (paths may differ) and the same text")

    def check_same_checkpoint(self) -> None:
        """Every worker must go on from the same checkpoint: one that read an older copy of the run
        would train other weights in silence and disagree on when the run ends. (One machine's
        replicas all take the weights its one process restored.)"""
        if self.gather is None or self.run.cluster.num_workers == 1:
            return
        replicas = self.gather([self.step, self.seconds_before])
        if (replicas != replicas[0]).any():
            per_worker = self.strategy.num_replicas_in_sync // self.run.cluster.num_workers
            found = ", ".join(f"worker {i // per_worker} at step {int(step)} ({seconds:.1f} s trained)"
                              for i, (step, seconds) in enumerate(replicas) if i % per_worker == 0)
            raise CharRNNError(f"the workers restored different checkpoints of {self.run.run_dir.name}: {found}. "
                               f"Give every worker the run directory of worker 0 (the chief) at the same path: a "
                               f"shared file system, or a fresh copy. Then start them all again")

    def save(self, manager: "tf.train.CheckpointManager") -> None:
        """Checkpoint into a CheckpointManager (the run's, or best/), with the loop's position."""
        tf = self.tf
        for name in ("step", "epoch", "batch"):
            self.counters[name].assign(getattr(self, name))
        self.train_seconds.assign(self.seconds_so_far())
        # Across replicas the state restarts at zero on a resume: one saved from an earlier session
        # on one device would be carried into text at another position.
        self.carried.assign(tf.zeros_like(self.carried) if self.distributed else self.state)
        # Never write NaN/Inf weights over a good checkpoint (or best/): a finite loss does not
        # prove that the update it led to was finite.
        weights = self.net.trainable_variables + self.average.averaged.trainable_variables
        if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in weights):
            raise self.diverged(f"the weights became NaN or infinite by step {self.step}")
        chief, run = self.run.cluster.is_chief, self.run
        lost = self.run_files_lost(manager) if chief and run.kept else []
        if chief and (not run.kept or lost):  # config.json before the first checkpoint: never one without the other
            self.save_run_files()
        runs.save_checkpoint(manager, self.step, lambda: how_to_go_on(run))
        if manager is self.manager:
            self.saved_step = self.step
        run.kept = True  # before `latest`, which can fail and then says the checkpoint is there
        if chief:  # `latest` names the run that saved last: the one sample.py --save_dir save picks
            runs.point_latest(self.run.run_dir)

    def run_files_lost(self, manager: "tf.train.CheckpointManager") -> list[str]:
        """The run files deleted during training, which the save about to be made writes again; where
        the whole run folder went with them, the run is taken up there anew."""
        run = self.run
        lost = [name for name in ("config.json", "vocab.json") if not (run.run_dir / name).is_file()]
        if lost and run.lock.in_place():  # the run files alone: the checkpoints are there, and go on with them
            log.warning("%s deleted from %s during training: written again with this checkpoint", " and ".join(lost),
                        run.run_dir)
        elif lost:  # rm -rf save, or a moved folder: the checkpoint holds the whole state, so write the run anew
            log.warning("%s was deleted or moved during training: the run is written there anew from this step "
                        "(its earlier checkpoints went with it)", run.run_dir)
            run.lock.release()
            run.lock = runs.RunLock(run.run_dir, "--init_from" if run.run_dir == run.resume_dir else "--save_dir")
            if manager is not self.best_manager:  # best/ went too: the next evaluation writes it again
                self.best_val.assign(math.inf)  # (this save is best/'s own: of the loss just measured, the best)
        return lost

    def save_run_files(self) -> None:
        """config.json and vocab.json, keeping the config.json they replace for undo_session."""
        run = self.run
        config = run.run_dir / "config.json"
        try:
            if run.config_before is None and config.is_file():  # once: a retry would find the failed save's
                run.config_before = config.read_text(encoding="utf-8")
            write_run_files(self.args, run.run_dir, run.corpus, self.config, self.chars_per_symbol)
            # A copy to go on in is a run from here: killed before its checkpoint is written, it
            # is refused as one (its files are the source's), not made again over a new checkpoint.
            (run.run_dir / runs.UNSAVED_COPY).unlink(missing_ok=True)
        except OSError as error:
            raise runs.SaveFailed(f"could not write the run files in {run.run_dir}", error.strerror or str(error),
                                  f"Free disk space or fix the directory; {how_to_go_on(run)}") from None

    @contextlib.contextmanager
    def events(self, step: int | None = None) -> Iterator[None]:
        """The writer as the summaries' default (at step), flushed at the end. A failed write of the
        events (a full disk, a file-size limit, a failing or read-only disk) raises EventsUnwritable,
        on which train_run keeps the steps trained, not TensorFlow's traceback."""
        try:
            if not self.run.log_dir.is_dir():
                self.open_events_again()
            with self.writer.as_default(step=step):  # which flushes on leaving
                yield
        except self.tf.errors.OpError as error:
            raise EventsUnwritable(runs.tf_error_reason(error)) from None

    def open_events(self) -> None:
        """The session's TensorBoard writer in the run's folder (made where it is not), its start
        marked, and the run's summaries written."""
        tf = self.tf
        try:
            self.writer = tf.summary.create_file_writer(str(self.run.log_dir))
            mark_session_start(tf, self.writer, self.step)
            with self.writer.as_default():  # which flushes on leaving
                write_run_summaries(self.args, self.vocab.size)
        except tf.errors.OpError as error:  # e.g. a full disk: told as any failed write of the events
            raise EventsUnwritable(runs.tf_error_reason(error)) from None

    def open_events_again(self) -> None:
        """The run's TensorBoard folder, deleted or moved during training (rm -rf logs), is made again
        with the run's summaries, for the events from this step on: they went on into a file that no
        folder held, lost in silence."""
        log.warning("%s was deleted or moved during training: TensorBoard's events are written there anew from "
                    "step %d (the earlier ones went with it)", self.run.log_dir, self.step)
        try:
            self.writer.close()
        except self.tf.errors.OpError:  # the old folder's disk: nothing more goes there
            pass
        self.open_events()

    def save_after_failure(self) -> tuple[bool, str]:
        """After TensorBoard's events or best/ could not be written: a checkpoint of the steps trained
        since the last one, where the run's own folder takes it. Returns whether one was saved, and
        what became of them to go on the failure's message ("" where none was tried). (Not under
        multiworker, whose workers save together, at steps they agreed on.)"""
        if self.writer is None or self.step in (self.start_step, self.saved_step) or self.run.cluster.num_workers > 1:
            return False, ""
        try:
            self.save(self.manager)  # (weights gone NaN, or `latest` unwritable after the save: its own error)
        except (runs.SaveFailed, self.tf.errors.OpError, OSError) as error:
            why = error.reason if isinstance(error, runs.SaveFailed) else runs.tf_error_reason(error)
            return False, f"; step {self.step} could not be saved in {self.run.run_dir} either ({why})"
        return True, f"; step {self.step} was saved in {self.run.run_dir}"

    def diverged(self, what: str) -> CharRNNError:
        """Training diverged. A seeded run diverges again where it did: the advice is to change it."""
        # Under --mixed_precision a float16 overflow comes before the clip, which cannot help then.
        fix = ("--grad_clip, or train without --mixed_precision" if self.args.mixed_precision else "--grad_clip")
        return CharRNNError(f"{what}; nothing was saved from it. Lower --learning_rate (now {self.args.learning_rate}) "
                            f"or {fix}; {how_to_go_on(self.run, 'it')}")

    # -- evaluation ----------------------------------------------------------------------------

    def _eval_step(self, x, y, state):
        logits, state = self.average.averaged(x, state)
        return self.tf.reduce_sum(self.tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)), state

    def evaluate(self) -> tuple[float, float]:
        """Validation loss in nats per symbol and bits per original character (every worker
        computes it, so all agree on whether it improved)."""
        tf, run = self.tf, self.run
        state, nats, symbols, chars = self.net.initial_state(run.eval_batch), 0.0, 0, 0
        for x, y in dataset.eval_batches(run.val_ids, run.eval_batch, self.args.seq_length):
            batch_nats, state = self.eval_step(tf.constant(x, tf.int32), tf.constant(y, tf.int32), state)
            nats += float(batch_nats)
            symbols += y.size
            chars += int(self.vocab.char_starts[y].sum())
        return nats / symbols, bits_per_char(nats / symbols, chars / symbols)

    def run_eval(self) -> bool:
        """Validate, show it (console, TensorBoard, a text sample) and keep the best checkpoint;
        returns whether this was the best validation loss so far."""
        tf = self.tf
        val_loss, val_bpc = self.evaluate()
        val_perplexity = 2.0 ** val_bpc  # per original character, as bits per character are
        self.last_val, self.last_val_step = val_loss, self.step
        improved = val_loss < float(self.best_val)
        chief = self.run.cluster.is_chief
        chars = self.args.sample_length
        if chief and chars:
            # --sample_length counts characters: a jamo model writes ~2 symbols each, so it writes
            # more symbols than needed and the text is cut, whole syllables up to its end.
            per_symbol = self.chars_per_symbol["train"]
            symbols = chars if per_symbol == 1.0 else math.ceil(chars / per_symbol * 1.5) + 3
            sample = self.model_lib.generate(self.average.averaged, tf.constant([[self.vocab.start_id]], tf.int32),
                                             symbols, temperature=0.8, seed=self.step)
        if self.run.cluster.num_workers > 1:
            # The others wait here, unwatched, while the chief writes its sample (a big model's 100,000
            # characters take minutes); the chief, which comes last, waits watched: only for a worker hung.
            (self.gather if chief else self.meet)([0.0])
        if chief:
            with self.events(step=self.step):
                tf.summary.scalar("val/loss", val_loss)
                tf.summary.scalar("val/bpc", val_bpc)
                tf.summary.scalar("val/perplexity", val_perplexity)
                # The HParams table shows each metric's last value: the best is what compares runs.
                tf.summary.scalar("val/best_loss", min(float(self.best_val), val_loss))
                if chars:
                    tf.summary.text("sample", markdown_verbatim(self.vocab.decode(sample.numpy()[0])[:chars]))
        log.info(f"step {self.step} epoch {self.epoch_position()}: val loss {val_loss:.4f} nats/symbol, {val_bpc:.4f} "
                 f"bits/char, perplexity {val_perplexity:.3f} per char{'  (best)' if improved else ''}")
        if improved:
            previous_best = float(self.best_val)
            self.best_val.assign(val_loss)
            try:
                self.save(self.best_manager)
            except runs.SaveFailed as error:  # best/ alone unwritable (its permissions, say): keep the steps trained
                self.best_val.assign(previous_best)
                saved, kept = self.save_after_failure()
                fix = "best/" if saved else "the directory"
                raise CharRNNError(f"{error.failure}{kept}. Free disk space or fix {fix}; {how_to_go_on(self.run)}") from None
        return improved

    # -- the loop ------------------------------------------------------------------------------

    def initial_state(self) -> "tf.Tensor | tf.distribute.DistributedValues":
        """Zeros for the hidden state, one block per replica."""
        if not self.distributed:
            return self.net.initial_state(self.args.batch_size)
        per_replica = self.args.batch_size // self.strategy.num_replicas_in_sync
        return self.strategy.experimental_distribute_values_from_function(
            lambda _: self.net.initial_state(per_replica))

    def seconds_so_far(self) -> float:
        return self.seconds_before + utils.awake_seconds() - self.session_start

    def epochs(self) -> float:
        """The epochs trained: whole ones, and the share of this one."""
        return self.epoch + self.batch / self.run.loader.num_batches

    def progress(self) -> float:
        return training_progress(self.args, self.step, self.epochs(), self.seconds_so_far())

    def agreed_progress(self, signum: int = 0) -> tuple[float, int]:
        """The run's progress, and the stop signal a worker received (its number, the first worker's
        where several did; 0: none), the same on every worker: their clocks differ, and each must
        train at the same learning rate, and evaluate, save and stop at the same steps. The chief's
        clock counts."""
        if self.gather is None:
            return self.progress(), signum
        replicas = self.gather([self.progress(), float(signum)])
        return float(replicas[0, 0]), next((int(s) for s in replicas[:, 1] if s), 0)

    def stop_reason(self, progress: float, signum: int, first_signal: int | None) -> Stop | None:
        """Why training ends before this step, if it does (from agreed values: the same on every
        worker; first_signal: the one this worker received, if any)."""
        if progress >= 1.0:
            flag = self.limit_flag(self.seconds_so_far())
            return Stop(f"--{flag} {getattr(self.args, flag)}", at_limit=True)
        if self.args.stop_at_step and self.step >= self.args.stop_at_step:
            return Stop(f"--stop_at_step {self.args.stop_at_step}")
        if signum:
            if first_signal is None:
                return Stop(f"{signal.Signals(signum).name} to another worker", signum=signum)
            return Stop(signal.Signals(first_signal).name, signum=first_signal)
        return None

    def fit(self, stops: StopSignals) -> Stop:
        """Train until a length limit, --stop_at_step or a signal; returns what ended it."""
        args, loader = self.args, self.run.loader
        stops.first_check_begun = True
        while True:
            started = time.monotonic()  # a step's time: all of it but the evaluations and saves
            progress, signum = self.agreed_progress(stops.first() or 0)
            stop = self.stop_reason(progress, signum, stops.first())
            if stop is not None:
                return stop
            stops.first_step_begun = True
            x, y = loader.batch(self.epoch, self.batch)
            lr = learning_rate(args, self.step, self.epoch, progress)
            loss, grad_norm, self.state = self.train_step(x, y, self.state, lr, self.step)
            # A signal before the first step ended (it compiles: seconds to minutes) ends the session
            # as one during start-up: nothing is kept. (The workers of multiworker stop together, later.)
            if self.step == self.start_step:
                signalled_in_start_up = stops.end_start_up()
                if signalled_in_start_up and not stops.together:
                    raise KeyboardInterrupt(signal.Signals(stops.first()).name)
            loss, grad_norm = float(loss), float(grad_norm)
            # Under mixed precision a non-finite gradient is a float16 overflow: the step was skipped
            # and the loss scale halved. Only a scale driven below 1 means the gradients are broken.
            overflow_tolerated = args.mixed_precision and float(self.loss_scale.scale.numpy()) >= 1.0
            if not math.isfinite(loss):
                raise self.diverged(f"the training loss became {loss} at step {self.step + 1}")
            if not (math.isfinite(grad_norm) or overflow_tolerated):
                raise self.diverged(f"the gradient norm became {grad_norm} (loss {loss:.4f}) at step {self.step + 1}")
            self.step, self.batch = self.step + 1, self.batch + 1
            if self.batch == loader.num_batches:
                self.epoch, self.batch = self.epoch + 1, 0
                self.state = self.initial_state()  # the streams restart at a new offset
            self.log_step(loss, grad_norm, lr, started)
            # At the length limit, finish() evaluates and saves once.
            due_eval, due_save = self.step % args.eval_every == 0, self.step % args.save_every == 0
            if (due_eval or due_save) and self.agreed_progress()[0] < 1.0:
                if due_eval:
                    first_eval = self.last_val is None
                    self.run_eval()
                    if first_eval:
                        self.pace_from = (utils.awake_seconds(), self.progress(), self.step)
                if due_save:
                    self.save(self.manager)
                    if self.run.cluster.is_chief:  # as char-rnn-tensorflow said "model saved to ..."
                        log.info(f"step {self.step}: checkpoint saved in {self.run.run_dir}")

    def log_step(self, loss: float, grad_norm: float, lr: float, started: float) -> None:
        """The step's scalars and the progress line. The rate counts the whole step from its start (the
        batch, the compiled step, the logging): on a tiny model the compiled step alone ran up to 1.8x
        faster than that, a rate no training reaches."""
        tf, args = self.tf, self.args
        with self.events(step=self.step):
            tf.summary.scalar("train/loss", loss)
            tf.summary.scalar("train/bpc", bits_per_char(loss, self.chars_per_symbol["train"]))
            tf.summary.scalar("train/learning_rate", lr)
            if math.isfinite(grad_norm):  # not on a step skipped for float16 overflow
                tf.summary.scalar("train/grad_norm", grad_norm)
            if args.mixed_precision:
                tf.summary.scalar("train/loss_scale", self.loss_scale.scale.numpy())
            chars = args.batch_size * args.seq_length * self.chars_per_symbol["train"]
            chars_per_s = chars / (time.monotonic() - started)
            # The session's first step also compiled the step: not a training rate to show or smooth.
            timed = self.step > self.start_step + 1
            if timed:
                self.rate = chars_per_s if self.rate == 0.0 else 0.9 * self.rate + 0.1 * chars_per_s
                tf.summary.scalar("train/chars_per_sec", chars_per_s)
        done, now = self.progress(), utils.awake_seconds()
        remaining = math.nan  # "?" until there is a pace that no compiling is in
        if self.pace_from is None:
            self.pace_from = (now, done, self.step)
        elif self.step > self.pace_from[2]:
            remaining = time_left(self.pace_from, now, done, self.step, args.stop_at_step)
        val = "-" if self.last_val is None else f"{self.last_val:.4f}"
        self.progress_line.update(self.step, [f"step {self.step}", f"epoch {self.epoch_position()}",
                                              f"loss {loss:.4f}", f"val {val}", f"ETA {format_eta(remaining)}",
                                              f"{f'{self.rate:,.0f}' if timed else '-'} chars/s", f"lr {lr:.2e}"])

    def epoch_position(self) -> str:
        return epoch_position(self.epoch, self.batch, self.run.loader.num_batches)

    def epochs_counted_from_the_start(self) -> str:
        """How a --num_epochs typed on resume counts, for the user of char-rnn-tensorflow, whose
        resume trained that many more epochs (and whose schedule began again)."""
        num_epochs = self.args.num_epochs
        return (f"--num_epochs {num_epochs} counts the run's epochs from its start, {self.epoch_position()} of them "
                f"trained already (char-rnn-tensorflow counted from the resume: for {num_epochs} more, pass "
                f"--num_epochs {math.ceil(self.epochs()) + num_epochs})")

    def limit_flag(self, seconds: float) -> str:
        return limit_reached(self.args, self.step, self.epochs(), seconds)

    def nothing_to_train(self) -> bool:
        """Whether the resumed run had already reached its length limit when saved; says so. Decided
        from the checkpoint alone, so every worker agrees, before anything is written."""
        args, run = self.args, self.run
        if self.step == 0 or training_progress(args, self.step, self.epochs(), self.seconds_before) < 1.0:
            return False
        if run.cluster.is_chief:
            flag = self.limit_flag(self.seconds_before)
            copy = f", and no copy is kept in {run.run_dir}" if run.forked_from else ""
            counted = f". {self.epochs_counted_from_the_start()}" if flag == "num_epochs" and run.epochs_typed else ""
            log.info(f"{run.forked_from or run.run_dir} had already reached --{flag} {getattr(args, flag)} at step "
                     f"{self.step}; nothing trained{copy}. To train longer, resume with a larger --{flag} (a length "
                     f"flag typed on resume replaces all the saved limits){counted}")
        return True

    def finish(self, stop: Stop) -> None:
        """The final evaluation and checkpoint, and how to go on."""
        run, at_limit = self.run, stop.at_limit
        if self.step == self.start_step and not at_limit:  # a signal or --stop_at_step before the first step
            if stop.signum:  # as one during start-up (the workers of multiworker agreed on it)
                raise KeyboardInterrupt(signal.Signals(stop.signum).name)
            if run.cluster.is_chief:  # (a resumed run: a new one's --stop_at_step is 1 or more)
                made = f"; no copy is kept in {run.run_dir}" if run.forked_from else ""
                log.info(f"stopped by {stop.label} at step {self.step}, before training: nothing saved{made}")
            return
        # A time budget can run out during an evaluation the loop just made: not again, same weights.
        improved = at_limit and self.last_val_step != self.step and self.run_eval()
        # Unless the evaluation changed best_val, a save the loop made at this step holds all there is;
        # writing the same checkpoint again would put it at risk for nothing. But a time budget that
        # ran out while that save was written left it short of the limit: a resume would train on.
        saved_short = at_limit and training_progress(self.args, self.step, self.epochs(),
                                                     float(self.train_seconds)) < 1.0
        if improved or saved_short or self.saved_step != self.step:
            self.save(self.manager)
        run_dir = run.run_dir
        if run.cluster.is_chief:
            if at_limit:
                try:  # the run is saved and at its limit: a resume would train nothing
                    with self.events():
                        write_run_end(self.step)
                except EventsUnwritable as error:
                    log.warning("--log_dir %s: TensorBoard's record of the run's end could not be written (%s); "
                                "its HParams status stays unknown", run.log_dir, error)
            best_val = float(self.best_val)
            best = (f"best val loss {best_val:.4f}" if math.isfinite(best_val)
                    else "no validation since best/ started again" if self.best_started_again else "no validation yet")
            log.info(f"stopped at step {self.step} by {stop.label}; {best}. Sample with:  "
                     f"{runs.script_command('sample.py')} --save_dir {utils.shell_path(run_dir)}")
            if not at_limit:
                log.info(f"resume with:  {runs.script_command('train.py')} --init_from {utils.shell_path(run_dir)}")


def train(args: argparse.Namespace, typed: set[str]) -> None:
    run = plan.plan_run(args, typed)
    try:
        # Import TensorFlow only now: everything above can fail fast and cheaply.
        train_run(run, runs.import_tensorflow(quiet=not args.verbose))
    finally:
        if not run.cluster.is_chief:
            shutil.rmtree(run.write_dir, ignore_errors=True)
        if run.lock is not None:
            # A session that saved nothing (it failed or was stopped first, or the run was at its
            # limit) leaves nothing new behind: the same command can be run again. Its TensorBoard
            # run goes first, where the session made it: a new folder above both then goes too.
            if not run.kept:
                undo_session(run)
            run.lock.release(discard=not run.kept)


def undo_session(run: plan.Run) -> None:
    """What a session that saved nothing wrote outside the run's directory goes (the lock's release
    sees to that directory): its TensorBoard events, with the folder where the session made it,
    and a resumed run's config.json goes back to what it was before a first save that failed."""
    try:
        if run.log_dir_created is not None:
            runs.remove_created(run.log_dir, run.log_dir_created, whole=True)
        elif run.log_files_before is not None:  # the run's own folder: its earlier events stay
            for name in set(os.listdir(run.log_dir)) - run.log_files_before:
                (run.log_dir / name).unlink(missing_ok=True)
        if run.config_before is not None:
            utils.atomic_write_text(run.run_dir / "config.json", run.config_before)
    except OSError as error:
        log.warning("could not remove all that this session wrote (%s): %s", error.filename, error.strerror or error)


def train_run(run: plan.Run, tf: ModuleType) -> None:
    """Train the planned run; SIGINT, SIGTERM and SIGHUP end it with a checkpoint. From here on they only
    ask the loop to stop: a second Ctrl-C while the final checkpoint is written, or the session's
    files are cleaned up, must not break that off."""
    stops = StopSignals(together=run.cluster.num_workers > 1)
    trainer: Trainer | None = None
    for sig in utils.stop_signals():  # those of interrupt_on_signals: a nohup's ignored SIGHUP stays so
        signal.signal(sig, stops)
    hang_watch = workers.HangWatch(run.args.peer_timeout_s if run.cluster.num_workers > 1 else 0.0)
    try:
        trainer = Trainer(run, tf, hang_watch)
        if trainer.nothing_to_train():
            return
        trainer.start()
        trainer.finish(trainer.fit(stops))
    except EventsUnwritable as error:
        # The steps since the last checkpoint are kept where the checkpoints' own disk has room, as
        # a signal keeps them.
        kept = trainer.save_after_failure()[1] if trainer is not None else ""
        raise CharRNNError(f"--log_dir {run.log_dir}: cannot write TensorBoard events ({error}){kept}. Fix what "
                           f"stops the write (disk space, a file-size limit, permissions) or pass another --log_dir; "
                           f"{how_to_go_on(run, 'it')}") from None
    except tf.errors.ResourceExhaustedError as error:
        raise CharRNNError(f"out of memory ({runs.tf_error_reason(error)}). A smaller --batch_size, --rnn_size or "
                           f"--num_layers needs less (a resumed run may change its --batch_size, not the others): free "
                           f"memory first, or use smaller ones; {how_to_go_on(run, 'it with smaller ones')}") from None
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        if hang_watch.fired:
            raise CharRNNError(f"waited --peer_timeout {run.args.peer_timeout} for the other workers in one "
                               f"exchange (a step's, at start, or after an evaluation): one of them hangs (its "
                               f"process lives on, so TensorFlow did not find it: a deadlock, or a stalled disk?), "
                               f"or is slower than that. Stop the workers that still run; then, on every worker, "
                               f"{how_to_go_on(run)}") from None
        lost = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", str(error)))) or ["a peer"]
        raise CharRNNError(f"lost contact with {', '.join(lost)} (it stopped, or stopped answering); on every "
                           f"worker, {how_to_go_on(run)}") from None
    finally:
        hang_watch.stop()
        if trainer is not None and trainer.writer is not None:
            try:
                trainer.writer.close()
            except tf.errors.OpError as error:  # the write that failed above, tried again
                log.warning("--log_dir %s: the last TensorBoard events are lost (%s)", run.log_dir,
                            runs.tf_error_reason(error))


class StopSignals:
    """The stop signals as they arrive, and their handler, which says at once what each one does (an
    evaluation in progress may take a while). Python runs a handler between two bytecodes, inside
    another handler too: a terminal closed and Ctrl-C at once can run SIGINT's in the middle of
    SIGHUP's. So each arrival takes its number in one step and is judged by it alone; arrival 0
    stops the run and names the stop. together: the workers of multiworker, which stop together
    at a step they agree on: at fit's first check (nothing saved), or after the first step."""

    def __init__(self, together: bool = False) -> None:
        self.together = together
        self.arrived: dict[int, int] = {}  # arrival number -> signal number
        self._numbers = itertools.count()
        self.before_training = False  # arrival 0 came in start-up, which ends with the session's first step
        # Multiworker's workers agree at each of fit's stop checks: a signal before the first stops
        # them all with nothing saved, one after it in the first step's save; during it, either.
        self.first_check_begun = self.first_step_begun = False
        self._start_up = {"open": True}  # a dict: its pop is one step, which no handler can run inside

    def end_start_up(self) -> bool:
        """Ends start-up (after the session's first step); returns whether a stop signal came in it.
        Then a session on one machine keeps nothing, and start-up stays open, so that a later signal
        is told the same (the workers of multiworker go on to save after that step)."""
        if self.together or not self.before_training:  # a signal here finds start-up open and sets it
            self._start_up.pop("open", None)
        return self.before_training

    def first(self) -> int | None:
        return self.arrived.get(0)

    def __call__(self, signum: int, _frame) -> None:
        number = next(self._numbers)
        self.arrived[number] = signum
        name = signal.Signals(signum).name
        starting = "open" in self._start_up
        if starting and number == 0:
            self.before_training = True
        if starting and not (self.together and self.first_check_begun):
            compiling = "" if self.together else " (a first step being compiled finishes first)"
            utils.say_from_signal_handler(f"{name}: stopping before training has begun; nothing is saved{compiling}")
        elif starting and not self.first_step_begun:
            utils.say_from_signal_handler(f"{name}: stopping where the workers agree: before the first step, with "
                                          f"nothing saved, or after it, with a checkpoint")
        elif starting:
            utils.say_from_signal_handler(f"{name}: stopping after the first step, being compiled, with a checkpoint "
                                          f"(the workers stop together)")
        elif number == 0:
            utils.say_from_signal_handler(f"{name}: stopping after the step or evaluation in progress, with a "
                                          f"checkpoint")
        else:
            again = " again" if signum in [self.arrived.get(earlier) for earlier in range(number)] else ""
            utils.say_from_signal_handler(f"{name}{again}: still stopping (kill -9 would lose the steps since the "
                                          f"last checkpoint)")


def how_to_go_on(run: plan.Run, again: str = "the same command") -> str:
    """After a failure: resume the run where it stays, else run the command again (what the
    session made is removed when it saved nothing)."""
    if run.kept or (run.resume_dir is not None and run.forked_from is None):
        if run.cluster.is_chief and not (run.run_dir / "config.json").is_file():  # the others: not on their disk
            return runs.without_config(run.run_dir) or (
                f"{run.run_dir} is gone, and its checkpoints with it (deleted or moved during training?): run {again} "
                f"again to start anew")
        return f"the checkpoints in {run.run_dir} are intact: resume with --init_from {utils.shell_path(run.run_dir)}"
    return f"nothing was saved: run {again} again"


# ---------------------------------------------------------------------------------------------
# The train step and the optimizer


def batch_groups(tf: ModuleType, requested: int, batch_size: int, xla: bool) -> int:
    """How many groups the train step splits a batch into: as requested, or by default 2 on a
    CPU of 2+ cores under XLA (measured faster there, bench/RESULTS.md), else 1."""
    if requested:
        return requested
    on_cpu = not tf.config.list_physical_devices("GPU")
    return 2 if on_cpu and xla and batch_size >= 2 and (os.cpu_count() or 1) >= 2 else 1


def make_train_step(net: "model.CharRNN", optimizer: "Adam", batch_size: int, seq_length: int, grad_clip: float,
                    seed: int, xla: bool = True, strategy: "tf.distribute.Strategy | None" = None,
                    loss_scale: "LossScale | None" = None, groups: int = 1,
                    average: "WeightAverage | None" = None) -> Callable:
    """The training step: (x, y, state, lr, step) -> (loss, grad_norm, new state).

    batch_size is this worker's share. With a tf.distribute strategy of several replicas, the
    batch is split among this worker's replicas, gradients are averaged across all of them,
    and the hidden state stays per replica. On one device, groups > 1 splits the batch into
    that many groups whose passes run side by side (see below). Dropout masks come from (seed,
    step[, replica or group]), so a resumed run draws the same masks. With a loss_scale the
    model computes in float16 (mixed precision); a step whose gradients overflow is skipped
    and returns a non-finite norm (inf or NaN). With an average, each update is averaged into it.
    """
    import tensorflow as tf
    from model import graph_function, rng_seed
    compute_dtype = tf.float16 if loss_scale is not None else tf.float32

    def loss_and_grads(x, y, state, step, part=None):
        dropout_seed = rng_seed(seed, step)
        if part is not None:  # a replica's or a group's own masks
            dropout_seed = tf.random.experimental.stateless_fold_in(dropout_seed, part)
        with tf.GradientTape() as tape:
            logits, state = net(x, state, training=True, dropout_seed=dropout_seed, compute_dtype=compute_dtype)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            # Scaled up so that small float16 gradients do not flush to zero; unscaled below.
            scaled = loss * loss_scale.scale if loss_scale is not None else loss
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(scaled, net.trainable_variables)]
        if loss_scale is not None:
            grads = [g / loss_scale.scale for g in grads]
        return loss, grads, state

    # What an update writes: the weights, the optimizer's moments and step count, the average.
    written = [*net.trainable_variables, *optimizer.slots.variables, *(average.averaged.variables if average else [])]

    def update_weights(grads, lr):
        optimizer.apply(grads, net.trainable_variables, lr)
        if average is not None:
            average.update(net.trainable_variables, optimizer.slots.iterations)

    def apply(grads, lr):
        grads, grad_norm = tf.clip_by_global_norm(grads, grad_clip)
        if loss_scale is None:
            update_weights(grads, lr)
            return grad_norm
        # An overflowed step changes nothing: each variable the update wrote takes back its value from
        # before it. (Not a tf.cond around the update: with several replicas a variable's update inside
        # one fails, as updates across replicas cannot be made in a branch.)
        finite = tf.math.is_finite(grad_norm)
        before = [tf.identity(v) for v in written]
        update_weights(grads, lr)
        for v, old in zip(written, before):
            v.assign(tf.where(finite, v, old))
        loss_scale.update(finite)
        return grad_norm

    if strategy is None:
        # One group is one XLA computation for the whole step. With several, each group's forward
        # and backward pass is an XLA computation of its own, and TensorFlow's inter-op threads
        # run them side by side: XLA:CPU runs one computation's ops one after another, so within
        # one computation a core idles while the recurrent loop is in its small single-threaded
        # elementwise ops; a second computation's matmuls fill that core (measured in
        # bench/RESULTS.md; with one inter-op thread the gain is gone).
        sizes = [batch_size // groups + (g < batch_size % groups) for g in range(groups)]
        weights = [n / batch_size for n in sizes]
        grouped = groups > 1

        def combine_and_apply(group_losses, group_grads, lr):
            # The batch's mean loss and its gradients: the groups' means weighted by their sizes.
            loss = tf.add_n([w * group_loss for w, group_loss in zip(weights, group_losses)])
            grads = [tf.add_n([w * g for w, g in zip(weights, parts)]) for parts in zip(*group_grads)]
            return loss, apply(grads, lr)

        group_loss_and_grads = graph_function(loss_and_grads, jit_compile=xla) if grouped else loss_and_grads
        group_combine_and_apply = graph_function(combine_and_apply, jit_compile=xla) if grouped else combine_and_apply
        batch_spec = tf.TensorSpec([batch_size, seq_length], tf.int32)

        @graph_function(jit_compile=xla and not grouped,
                        input_signature=[batch_spec, batch_spec, tf.TensorSpec(net.initial_state(batch_size).shape),
                                         tf.TensorSpec([]), tf.TensorSpec([], tf.int64)])
        def train_step(x, y, state, lr, step):
            results = [group_loss_and_grads(*part, step, tf.constant(g, tf.int64) if grouped else None)
                       for g, part in enumerate(zip(tf.split(x, sizes), tf.split(y, sizes),
                                                    tf.split(state, sizes, axis=2)))]
            loss, grad_norm = group_combine_and_apply([r[0] for r in results], [r[1] for r in results], lr)
            return loss, grad_norm, tf.concat([r[2] for r in results], axis=2)

        return train_step

    # Collectives stay outside XLA; the forward and backward pass inside it.
    compiled_loss_and_grads = graph_function(loss_and_grads, jit_compile=xla)
    local_replicas = len(strategy.extended.worker_devices)
    per_replica = batch_size // local_replicas

    def replica_step(x, y, state, lr, step):
        ctx = tf.distribute.get_replica_context()
        loss, grads, state = compiled_loss_and_grads(x, y, state, step, ctx.replica_id_in_sync_group)
        loss, grads = ctx.all_reduce("MEAN", loss), ctx.all_reduce("MEAN", grads)
        return loss, apply(grads, lr), state

    run = graph_function(lambda *args: strategy.run(replica_step, args=args))

    def split(batch):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: batch[(ctx.replica_id_in_sync_group % local_replicas) * per_replica:][:per_replica])

    def train_step(x, y, state, lr, step):
        loss, grad_norm, state = run(split(x), split(y), state, tf.constant(lr, tf.float32),
                                     tf.constant(step, tf.int64))
        first = strategy.experimental_local_results
        return first(loss)[0], first(grad_norm)[0], state

    return train_step


class LossScale:
    """Dynamic loss scaling for float16 training (what Keras' LossScaleOptimizer does): the loss
    is multiplied by `scale` before the backward pass; a step whose gradients overflow is skipped
    and halves it; growth_steps finite steps in a row double it. Its variables live in `slots`,
    so a checkpoint keeps the scale it had found."""

    def __init__(self, initial: float = 2.0 ** 15, growth_steps: int = 2000):
        import tensorflow as tf
        self.growth_steps = growth_steps
        self.slots = tf.Module(name="loss_scale")
        self.slots.scale = tf.Variable(initial, dtype=tf.float32, name="scale")
        self.slots.good_steps = tf.Variable(0, dtype=tf.int64, name="good_steps")

    @property
    def scale(self) -> "tf.Variable":
        return self.slots.scale

    def update(self, finite: "tf.Tensor") -> None:
        import tensorflow as tf
        good = tf.where(finite, self.slots.good_steps + 1, tf.zeros_like(self.slots.good_steps))
        grow = good >= self.growth_steps
        self.slots.scale.assign(self.slots.scale * tf.where(finite, tf.where(grow, 2.0, 1.0), 0.5))
        self.slots.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))


class Adam:
    """Adam on plain tf.Variables, XLA-friendly: PyTorch's update, epsilon added to the
    bias-corrected sqrt(v) (Keras adds it before the correction, which weighs it 1/sqrt(1 - beta2^t)
    times more early on). Its variables live in `slots`, a tf.Module, so a checkpoint holds the
    moments and the step count."""

    def __init__(self, variables: list["tf.Variable"], beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
        import tensorflow as tf
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.slots = tf.Module(name="adam")
        self.slots.iterations = tf.Variable(0, dtype=tf.int64, name="iterations")
        self.slots.m = [tf.Variable(tf.zeros_like(v), name="m") for v in variables]
        self.slots.v = [tf.Variable(tf.zeros_like(v), name="v") for v in variables]

    def apply(self, grads: list["tf.Tensor"], variables: list["tf.Variable"], lr: "tf.Tensor") -> None:
        import tensorflow as tf
        slots = self.slots
        slots.iterations.assign_add(1)
        t = tf.cast(slots.iterations, tf.float32)
        step_size = lr / (1.0 - self.beta1 ** t)
        v_correction = tf.math.rsqrt(1.0 - self.beta2 ** t)
        for g, var, m, v in zip(grads, variables, slots.m, slots.v):
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            var.assign_sub(step_size * m / (tf.sqrt(v) * v_correction + self.epsilon))


def saved_variables(tf: ModuleType, path: str) -> dict[str, list[int]]:
    """The shapes of the values in the checkpoint at path, by name; none for a damaged one (its
    restore then fails as it would)."""
    try:
        return dict(tf.train.list_variables(path))
    except (tf.errors.OpError, ValueError):
        return {}


def saved_before_the_average(variables: dict[str, list[int]]) -> bool:
    """Whether a checkpoint of these variables was saved by a train.py that kept no average of the
    weights (before --ema_decay): its `model` is the trained weights."""
    return bool(variables) and not any(name.startswith("trained_model/") for name in variables)


def saved_batch_size(variables: dict[str, list[int]]) -> int | None:
    """The --batch_size a checkpoint of these variables was trained at: its carried hidden state's
    streams ([layers, states, streams, units]). None where it has no such state."""
    shape = variables.get("carried_state/.ATTRIBUTES/VARIABLE_VALUE")
    return shape[2] if shape is not None and len(shape) == 4 else None


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging), kept in a second model of
    the same shape: validation, the TensorBoard samples and sample.py use it. Training's noise moves
    the trained weights around a better point, which the average comes closer to: at equal steps
    it validated 0.015-0.025 nats/char lower mid-run, 0.003 at the end (bench/RESULTS.md). As in
    tf.train.ExponentialMovingAverage, the decay is at most (1 + step) / (10 + step), so that early
    and short runs average only their recent steps. A decay of 0 keeps the model a copy."""

    def __init__(self, averaged: "model.CharRNN", decay: float):
        self.averaged, self.decay = averaged, decay

    def update(self, variables: list["tf.Variable"], step: "tf.Tensor") -> None:
        """Average in variables' values after the update numbered step (1 for the first)."""
        import tensorflow as tf
        t = tf.cast(step, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        for average, var in zip(self.averaged.trainable_variables, variables):
            average.assign(decay * average + (1.0 - decay) * var)


# ---------------------------------------------------------------------------------------------
# Run files and TensorBoard summaries


def write_run_files(args: argparse.Namespace, run_dir: Path, corpus: "dataset.Corpus", config: "model.ModelConfig",
                    chars_per_symbol: dict) -> None:
    """config.json and vocab.json, each written whole or not at all (an OSError leaves the old one)."""
    import tensorflow as tf
    record = {"args": plan.saved_flags(args), "model": config.to_dict(), "vocab_file": "vocab.json",
              "chars_per_symbol": chars_per_symbol,
              "corpus_files": [str(f) for f in corpus.files],
              "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                           "numpy": np.__version__}}
    corpus.vocab.save(run_dir / "vocab.json")
    utils.atomic_write_text(run_dir / "config.json", json.dumps(record, indent=2, ensure_ascii=False))


def markdown_verbatim(text: str) -> str:
    """text as a fenced code block, which TensorBoard's Markdown shows as written. A line of just the
    fence would end the block (a README corpus writes ``` lines, and the rest became headings and
    lists), so the fence is longer than any run of backticks in the text."""
    longest = max(map(len, re.findall("`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def write_run_summaries(args: argparse.Namespace, vocab_size: int) -> None:
    """What TensorBoard shows of a run beside its curves: its hyperparameters (the hparams
    dashboard; the corpus too, so runs on different texts tell apart), and a custom-scalars
    layout that draws train and validation on one chart (the scalars dashboard keeps the
    train/ and val/ groups apart, each on its own axes)."""
    import tensorflow as tf
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.custom_scalar import summary as custom_scalar
    from tensorboard.plugins.hparams import api as hp
    keys = ("model", "num_layers", "rnn_size", "embedding_size", "dropout", "input_dropout", "batch_size",
            "seq_length", "learning_rate", "warmup_steps", "min_lr_frac", "decay_rate", "grad_clip", "ema_decay", "unit",
            "max_vocab", "min_char_count", "normalize", "val_frac", "eval_symbols", "num_epochs", "max_steps",
            "time_budget", "seed")
    hparams = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}  # decay_rate: None when unused
    # Absolute, as config.json has it: one corpus is one value whatever the folder it was typed from.
    corpus = os.fsencode(os.path.abspath(args.input or args.data_dir)).decode("utf-8", "replace")  # cp949 names too
    # Grouped by the TensorBoard run, named by its folder's whole path: a copy of a run (its own log folder) is
    # not merged into the original's row, nor a run of the same name in another --log_dir that TensorBoard
    # shows beside it (tensorboard --logdir on their parent: the losses of both were averaged in one row).
    log_folder = os.fsencode(os.path.abspath(os.path.join(args.log_dir, args.log_name))).decode("utf-8", "replace")
    hp.hparams({"corpus": corpus, "vocab_size": vocab_size, **hparams}, trial_id=log_folder)
    charts = [layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(
                  tag=[f"^train/{tag}$", f"^val/{tag}$"]))
              for title, tag in (("loss, nats per symbol (a jamo under --unit jamo)", "loss"),
                                 ("bits per character (the same measure in either unit)", "bpc"))]
    layout = layout_pb2.Layout(category=[layout_pb2.Category(title="train and validation", chart=charts)])
    tf.summary.experimental.write_raw_pb(custom_scalar.pb(layout).SerializeToString(), step=0)


def mark_session_start(tf: ModuleType, writer: "tf.summary.SummaryWriter", step: int) -> None:
    """Tell TensorBoard that this session's curves take over after step, where it resumed. A session
    killed after its last checkpoint wrote points past it that this one writes again: TensorBoard's
    loader without --load_fast (and on machines the fast one does not run on) kept both and drew the
    curves back and forth over those steps. It drops a run's points from a step on when a session
    start (SessionLog.START, as TF1's Supervisor wrote) at that step follows them, but takes the
    first start it reads in a run for the run's beginning: two, whatever the sessions before wrote
    (none before this). The fast loader drops them by their steps alone."""
    start = tf.compat.v1.Event(step=step + 1, wall_time=time.time(),
                               session_log=tf.compat.v1.SessionLog(status=tf.compat.v1.SessionLog.START))
    for _ in range(2):  # the raw op: tf.summary writes summaries only, and this event holds none
        tf.raw_ops.ImportEvent(writer=writer._resource, event=start.SerializeToString())


def write_run_end(step: int) -> None:
    """The run's status in the HParams table: Success, once it reached its length limit. TensorBoard
    keeps the first status a run writes for good, so a stop that a resume goes on from, or a failure
    that a resume may mend, writes none: those runs show Unknown until they finish."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import summary as hparams_summary
    tf.summary.experimental.write_raw_pb(hparams_summary.session_end_pb(api_pb2.STATUS_SUCCESS).SerializeToString(),
                                         step=step)


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = plan.build_parser(description=__doc__.split("\n\n")[0])
    utils.stderr_in_utf8()
    args = parser.parse_args(argv)
    utils.setup_logging(args.verbose)
    # Until the training loop takes them over (a checkpoint, then exit), the stop signals end
    # start-up: with a message, and nothing of the session left behind.
    signals = utils.interrupt_on_signals()
    try:
        utils.check_working_directory([args.input or args.data_dir, args.save_dir, args.log_dir, args.init_from])
        typed = utils.explicit_flags(parser, argv)
        if not args.init_from:  # a resumed run's flags are checked once merged with its saved ones
            plan.check_args(args)
        train(args, plan.apply_old_flag_names(args, typed))
        return 0
    except CharRNNError as error:
        log.error("error: %s", error)
        return 2
    except PermissionError as error:  # a path the checks could not even look at
        log.error("error: %s", utils.permission_denied(error))
        return 2
    except (KeyboardInterrupt, ImportError) as error:  # before training started (data, TensorFlow start-up)
        if isinstance(error, ImportError) and not signals:  # not a signal's: a broken install, with its traceback
            raise
        log.error("interrupted before training started; nothing was saved")
        return utils.interrupted_status(error, signals)


if __name__ == "__main__":
    utils.run_in_utf8_mode()
    utils.exit_without_teardown(main())
