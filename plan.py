"""What a training run is, settled before TensorFlow is imported: train.py's flags (their
defaults, their checks, char-rnn-tensorflow's old names, and a resumed run's saved values), the
corpus with its validation split and batches, and the run's directories and lock.

Nothing here imports TensorFlow: train.py pays for that import (seconds) only once plan_run has
returned a Run, so that --help, a bad flag, a missing corpus or a run already in use answer at once.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dataset
import runs
import utils
import workers
from utils import CharRNNError, np  # numpy, run on first use: --help does not wait for it

log = logging.getLogger("charrnn")


# ---------------------------------------------------------------------------------------------
# Flags

# Flags that change the shape or meaning of the weights: they cannot change on resume.
# (Not --encoding: it says how the files are stored, and the text is prepared on the run's vocabulary.)
ARCHITECTURE_FLAGS = ("model", "num_layers", "rnn_size", "embedding_size", "unit", "normalize",
                      "max_vocab", "min_char_count")
# Flags that lay out the text (the seed picks each epoch's offset): the saved data position, carried
# hidden state and best validation loss mean nothing under others, so they cannot change on resume
# either (char-rnn-tensorflow refused a changed seq_length too). --batch_size may change, as it could
# there: train.py then goes on from the same point in the epoch, in other streams.
DATA_LAYOUT_FLAGS = ("seq_length", "val_frac", "seed")
# How long to train. Typing any of them on resume sets the run's length afresh, without the saved
# others: `--max_steps 50000` must train on after a run that a `--time_budget` ended.
LENGTH_FLAGS = ("num_epochs", "max_steps", "time_budget")
# What sets the learning rate at a step: typed on resume, any of them can move it where the run goes on.
SCHEDULE_FLAGS = (*LENGTH_FLAGS, "learning_rate", "warmup_steps", "min_lr_frac", "decay_rate")
# How long a run is when no length flag is typed (char-rnn-tensorflow's default). With another
# length flag typed, that flag alone says how long: `--max_steps 50000` trains 50,000 steps.
DEFAULT_EPOCHS = 50
# Where the text comes from: typing one on resume drops the saved other (--input wins over --data_dir).
CORPUS_FLAGS = ("data_dir", "input")
# Flags that steer one invocation only: a resumed run does not inherit them.
# mixed_precision too: it suits the hardware of one session (a GPU run may go on on a CPU).
# The old keep probabilities are read as the dropout rates, which are saved and inherited.
SESSION_FLAGS = ("init_from", "stop_at_step", "verbose", "time_budget_s", "mixed_precision",
                 "output_keep_prob", "input_keep_prob", "peer_timeout", "peer_timeout_s")
# Values derived from the flags here (apply_old_flag_names, plan_run), saved beside them in
# config.json, with their types.
SAVED_DERIVED = {"input_dropout": float, "val_split": str, "eval_cut": str, "batch_offsets": str, "val_sha256": str,
                 "train_symbols": int, "log_name": str, "run_dir": str}
# Where a run lives comes from its directory as it is now (renamed or moved since, say), never
# from its config.json; typed on resume, they name a copy to go on in.
RUN_PLACE_FLAGS = ("save_dir", "run_name")


def model_type(name: str) -> str:
    """--model's value; char-rnn-tensorflow's nas says why it is gone rather than just 'invalid choice'."""
    if name == "nas":
        raise argparse.ArgumentTypeError("nas (NASCell) came from TensorFlow 1's tf.contrib, which TensorFlow 2 "
                                         f"dropped; choose one of {', '.join(utils.MODEL_TYPES)}")
    return name


def sample_parser() -> argparse.ArgumentParser:
    """sample.py's flags, to name one typed to train.py as sample.py's."""
    import sample
    return sample.build_parser()


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """train.py's flags (description: what --help says first, train.py's docstring)."""
    p = utils.ArgumentParser(description=description, formatter_class=utils.HelpFormatter,
                             sibling=("sample.py", sample_parser),
                             old_flags=utils.CHAR_RNN_TENSORFLOW_FLAGS["train.py"])
    data = p.add_argument_group("data")
    data.add_argument("--data_dir", default="data/tinyshakespeare", metavar="DIR",
                      help="DIR/input.txt if there is one (as char-rnn-tensorflow read it), else every .txt file "
                           "in and below DIR")
    data.add_argument("--input", default=None,
                      help="a text file, or a directory whose .txt files in and below it are all read; "
                           "overrides --data_dir (default: --data_dir)")
    data.add_argument("--encoding", default="utf-8", help="encoding of the corpus files (cp949, euc-kr, ...)")
    data.add_argument("--normalize", default="nfc", choices=["nfc", "none"], help="Unicode normalization")
    data.add_argument("--unit", default="char", choices=["char", "jamo"],
                      help="symbols the model sees: char, or jamo (Hangul syllables split into their 2-3 jamo). "
                           "char trained more characters per second on every Korean corpus measured, and with the "
                           "default model both reached the same bits/char on the bundled one (bench/RESULTS.md, Korean)")
    data.add_argument("--max_vocab", type=int, default=0, metavar="N",
                      help="a vocabulary of at most N symbols (0: no limit, else 2 or more): the N-1 most frequent "
                           "and one unknown symbol for the rest (under --unit jamo every jamo is kept)")
    data.add_argument("--min_char_count", type=int, default=1, metavar="N",
                      help="characters seen fewer than N times become the unknown symbol")
    data.add_argument("--val_frac", type=float, default=0.05,
                      help="last fraction of the text kept for validation (above 0, below 0.5)")
    data.add_argument("--eval_symbols", type=int, default=200_000, metavar="N",
                      help="validate on at most the first N characters of that text (0: all of it), so that an "
                           "evaluation takes seconds, not hours, on a multi-GB corpus; N symbols under --unit "
                           "char, the symbols of N characters under --unit jamo: both score the same text")

    # Size, batch, learning rate and dropout defaults: the best tiny shakespeare model measured in
    # 15 minutes on 2 CPU cores (bench/bench_quality.py). 2x384 sees 8-11 epochs in that time and
    # overfits: dropout 0.25 reached 1.451 nats/char where 0.1 reached 1.493 (same machine, day).
    # In minutes the model is short of updates, not of characters: B24 trains at ~95% of B32's
    # chars/s with 1.25x the steps and reached 1.425 against B32's 1.448 (B16: 1.75x the steps,
    # 1.425 at best but 1.434 at the end).
    model = p.add_argument_group("model")
    model.add_argument("--model", default="lstm", type=model_type, choices=utils.MODEL_TYPES, help="recurrent cell")
    model.add_argument("--num_layers", type=int, default=2, help="number of recurrent layers")
    model.add_argument("--rnn_size", type=int, default=384,
                       help="size of each layer's hidden state (a step's time grows with its square: 2x the size, "
                            "about 4x slower)")
    model.add_argument("--embedding_size", type=int, default=64, help="size of each symbol's embedding")
    model.add_argument("--dropout", type=float, default=0.25, help="dropout between layers and before the output")
    model.add_argument("--output_keep_prob", type=float, default=None,
                       help="char-rnn-tensorflow's flag: keep probability between layers, before the output "
                            "(sets --dropout to 1-p) and, as the old tool had it, of the embedded input "
                            "(default: --dropout)")
    model.add_argument("--input_keep_prob", type=float, default=None,
                       help="char-rnn-tensorflow's flag: keep probability of the embedded input, times "
                            "--output_keep_prob's when that is typed (the old tool also dropped each later layer's "
                            "input) (default: 1)")

    opt = p.add_argument_group("optimization")
    opt.add_argument("--batch_size", type=int, default=24, help="parallel text streams per step")
    opt.add_argument("--seq_length", type=int, default=100,
                     help="symbols (characters, or jamo under --unit jamo) per stream per step: the BPTT length")
    opt.add_argument("--learning_rate", type=float, default=3e-3, help="peak Adam learning rate")
    opt.add_argument("--warmup_steps", type=int, default=100,
                     help="steps of linear learning-rate warmup, not shortened for a short run (with --decay_rate "
                          "typed, none unless this is typed too; a resumed run keeps its own)")
    opt.add_argument("--min_lr_frac", type=float, default=0.1, help="cosine schedule ends at this fraction of the peak")
    opt.add_argument("--decay_rate", type=float, default=None,
                     help="char-rnn-tensorflow's flag: multiply the learning rate by this every epoch instead of the "
                          "cosine schedule, from the first step at --learning_rate as the old tool did "
                          "(default: the cosine schedule)")
    opt.add_argument("--grad_clip", type=float, default=5.0, help="clip gradients to this global norm")
    opt.add_argument("--ema_decay", type=float, default=0.99,
                     help="validate, sample and save an exponential moving average of the weights, each step's "
                          "weights averaged in with weight 1 minus this, at least 9/(10 + step) early on (0: the "
                          "weights as trained)")

    length = p.add_argument_group("how long (each limit is the whole run's, earlier sessions included; the first "
                                  "reached ends training; on resume, typing --num_epochs, --max_steps or "
                                  "--time_budget replaces all three saved limits)")
    length.add_argument("--num_epochs", type=int, default=None,
                        help=f"passes over the training text, 0: no epoch limit (only beside --max_steps or "
                             f"--time_budget) (default: {DEFAULT_EPOCHS}, or 0 when --max_steps or --time_budget "
                             "says how long)")
    length.add_argument("--max_steps", type=int, default=0,
                        help="training steps of the whole run, counted from step 0 (0: no step limit)")
    length.add_argument("--time_budget", default=None,
                        help="training time of the whole run, all sessions, each from its first compilation on "
                             "(validation and saves included), e.g. 90s, 15m, 2h (default: no time limit)")
    length.add_argument("--stop_at_step", type=int, default=0,
                        help="save and stop at this step without changing the schedule (0: off)")

    out = p.add_argument_group("output")
    out.add_argument("--save_dir", default="save", help="runs are saved in SAVE_DIR/<run name>/")
    out.add_argument("--log_dir", default="logs",
                     help="TensorBoard events go to LOG_DIR/<run name>/ (<run name>@<save dir's name>/ when "
                          "that folder is taken)")
    out.add_argument("--run_name", default=None,
                     help="name of the run (default: corpus-model-size-time, and -2, -3 ... where a run launched "
                          "in the same second has it)")
    out.add_argument("--init_from", default=None,
                     help="resume this run directory (or a save directory: its run that saved last); with another "
                          "--save_dir or --run_name typed, go on in a copy there. The model and vocabulary flags, "
                          "--seq_length, --val_frac and --seed must stay as saved; --batch_size may change "
                          "(default: a new run)")
    out.add_argument("--save_every", type=int, default=1000, metavar="N", help="checkpoint every N steps")
    out.add_argument("--eval_every", type=int, default=250, metavar="N", help="validate every N steps")
    out.add_argument("--keep", type=int, default=5, help="checkpoints to keep (the best is kept apart)")
    out.add_argument("--print_every", type=int, default=50, metavar="N",
                     help="progress line every N steps when not on a terminal")
    out.add_argument("--sample_length", type=int, default=300,
                     help="characters of the TensorBoard text sample at each validation (0: no sample)")

    misc = p.add_argument_group("misc")
    misc.add_argument("--seed", type=int, default=1234, help="seed for weights, data order and dropout")
    misc.add_argument("--xla", default="on", choices=["on", "off"], help="compile the step with XLA")
    misc.add_argument("--batch_groups", type=int, default=0, metavar="N",
                      help="split each batch into N groups whose forward and backward passes run side by side, "
                           "one XLA computation each (0: auto, 2 on a CPU with 2+ cores under XLA, else 1). "
                           "The same training up to float rounding; dropout draws other masks per group")
    misc.add_argument("--mixed_precision", action="store_true",
                      help="float16 compute with float32 weights and dynamic loss scaling; for GPUs "
                           "(on a CPU float16 is slower than float32)")
    misc.add_argument("--strategy", default="auto", choices=["auto", "one", "mirrored", "multiworker"],
                      help="tf.distribute strategy: auto = all GPUs of this machine if more than one, "
                           "else one device; multiworker reads the cluster from TF_CONFIG")
    misc.add_argument("--peer_timeout", default="10m",
                      help="--strategy multiworker: stop when a step's exchange with the other workers has "
                           "waited this long, at least 10s, e.g. 30m (one hangs; one that dies or is stopped is "
                           "found in seconds); 0: wait for ever")
    misc.add_argument("--verbose", action="store_true", help="debug logging, and TensorFlow's own start-up and C++ log lines")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Refuse values that cannot work, naming the flag and a sensible range."""
    def need(ok: bool, flag: str, why: str) -> None:
        if not ok:
            value = getattr(args, flag)
            shown = repr(value) if isinstance(value, str) and not value.isprintable() else value  # a line break, say
            raise CharRNNError(f"--{flag} {shown!s}: {why}")

    if args.run_name is not None:
        need(runs.is_utf8_path(args.run_name), "run_name", "not valid UTF-8 (typed in another encoding?), which "
             "TensorFlow's paths must be: choose another")
        # "latest" is the save directory's pointer to its newest run, a file beside the runs.
        need(args.run_name not in ("", ".", "..", "latest") and args.run_name.isprintable()
             and not re.search(r"[/\\]", args.run_name), "run_name",
             "must be a plain directory name (no / or \\, no control characters, not 'latest'), e.g. shakespeare-small")
        need(len(os.fsencode(args.run_name)) <= 200, "run_name", "is too long for a directory name: at most 200 bytes")
    for flag in ("save_dir", "log_dir", "run_name"):  # TensorBoard's writer takes any name TensorFlow can
        if getattr(args, flag) is not None:
            runs.check_tf_path(getattr(args, flag), f"--{flag}", globbed=flag != "log_dir")
    for flag in ("init_from", "input", "data_dir"):  # init_from's other checks come when it is read
        if getattr(args, flag) is not None:
            utils.check_path(getattr(args, flag), f"--{flag}")
    for flag, top in (*utils.MODEL_SIZE_LIMITS.items(), ("batch_size", 65536), ("seq_length", 100000)):
        value = getattr(args, flag)
        need(0 < value <= top, flag, f"must be a whole number from 1 to {top}")
    if args.num_epochs is None:
        args.num_epochs = 0 if args.max_steps or args.time_budget is not None else DEFAULT_EPOCHS
    need(args.num_epochs >= 0, "num_epochs", "must be 0 (no epoch limit) or positive")
    need(args.num_epochs or args.max_steps or args.time_budget is not None, "num_epochs",
         "0 leaves the run without a length limit: give --max_steps or --time_budget too")
    for flag in ("save_every", "eval_every", "keep", "print_every"):
        need(getattr(args, flag) > 0, flag, "must be positive")
    need(0 <= args.sample_length <= 100000, "sample_length",
         "must be from 0 (no sample) to 100000 (characters of each TensorBoard sample)")
    utils.check_seed(args.seed)
    for flag in ("max_steps", "stop_at_step", "warmup_steps", "max_vocab", "eval_symbols"):
        need(getattr(args, flag) >= 0, flag, "must be 0 or positive")
    need(args.min_char_count >= 1, "min_char_count", "must be at least 1")
    need(0 <= args.batch_groups <= args.batch_size, "batch_groups", "must be from 0 (auto) to --batch_size")
    need(0.0 < args.val_frac < 0.5, "val_frac", "must be above 0 and below 0.5, e.g. 0.05")
    # Before --dropout: on resume the keep probabilities were already turned into it (apply_old_flag_names).
    for flag in ("output_keep_prob", "input_keep_prob"):
        if getattr(args, flag) is not None:
            need(1e-6 <= getattr(args, flag) <= 1.0, flag,  # 1 - 1e-17 is a dropout of 1.0, which drops all
                 "must be from 0.000001 to 1 (the probability to keep a unit; dropout is 1 minus it), e.g. 0.8")
    need(0.0 <= args.dropout < 1.0, "dropout", "must be from 0 (none) to below 1, e.g. 0.25")
    need(0.0 < args.learning_rate < 1.0 and math.isfinite(args.learning_rate), "learning_rate",
         "must be between 0 and 1, e.g. 0.002")
    need(0.0 <= args.min_lr_frac <= 1.0, "min_lr_frac", "must be from 0 to 1, e.g. 0.1")
    need(args.grad_clip > 0 and math.isfinite(args.grad_clip), "grad_clip", "must be a positive finite number")
    need(0.0 <= args.ema_decay < 1.0, "ema_decay", "must be from 0 (no average) to below 1, e.g. 0.99")
    if args.decay_rate is not None:
        need(0.0 < args.decay_rate <= 1.0, "decay_rate", "must be above 0 and at most 1, e.g. 0.97")
    if args.time_budget is not None:
        args.time_budget_s = utils.parse_duration(args.time_budget, "--time_budget")
        need(0 < args.time_budget_s < math.inf, "time_budget", "must be a positive time, e.g. 90s, 15m, 2h")
    else:
        args.time_budget_s = 0.0
    args.peer_timeout_s = utils.parse_duration(args.peer_timeout, "--peer_timeout")
    need(args.peer_timeout_s == 0 or 10 <= args.peer_timeout_s < math.inf, "peer_timeout",
         "must be at least 10s (a shorter one stops healthy runs in a slow exchange), e.g. 10m, or 0 to wait for ever")


def apply_old_flag_names(args: argparse.Namespace, typed: set[str]) -> set[str]:
    """char-rnn-tensorflow's keep probabilities become dropout rates, and its --decay_rate its whole
    schedule. Returns the typed flags with the rates they set, which a resumed run then takes over
    its saved ones."""
    typed = set(typed)
    # Rounded: 1 - 0.8 is 0.19999999999999996, which config.json and the hparams would show.
    if args.output_keep_prob is not None:
        if "dropout" in typed:
            raise CharRNNError(f"--dropout {args.dropout} and --output_keep_prob {args.output_keep_prob} both set the "
                               f"dropout (it is 1 minus the keep probability): give one of them")
        args.dropout = round(1.0 - args.output_keep_prob, 12)
        typed.add("dropout")
    # The old tool dropped the embedded input by both: output_keep_prob's own dropout of the embeddings,
    # then the first layer's input_keep_prob.
    args.input_dropout = 0.0
    if args.output_keep_prob is not None or args.input_keep_prob is not None:
        keep = (1.0 if args.output_keep_prob is None else args.output_keep_prob) * (
            1.0 if args.input_keep_prob is None else args.input_keep_prob)
        args.input_dropout = round(1.0 - keep, 12)
        typed.add("input_dropout")
    elif "dropout" in typed:  # the new flag alone drops no embedded input; on resume it clears one the old flags set
        typed.add("input_dropout")
    # The old schedule started at --learning_rate. Not typed, so a resumed run keeps its saved warmup.
    if args.decay_rate is not None and "warmup_steps" not in typed:
        args.warmup_steps = 0
    return typed


def merge_resume_config(args: argparse.Namespace, typed: set[str], run_dir: Path) -> dict:
    """Flags not typed on this command line come from the saved run; typed architecture and data
    layout flags that differ from it are refused, since the saved weights, data position and
    hidden state depend on them. Returns the saved flags."""
    actions = {a.dest: a for a in build_parser()._actions if a.option_strings}
    not_inherited = set(typed) | set(SESSION_FLAGS) | set(RUN_PLACE_FLAGS)
    for group in (LENGTH_FLAGS, CORPUS_FLAGS):
        if not_inherited & set(group):
            not_inherited |= set(group)
    try:
        saved = utils.read_json_object(run_dir / "config.json")["args"]
        if not isinstance(saved, dict):
            raise ValueError(f"its 'args' entry is {saved!r}, not a table of flags")
        inherited = {key: value for key, value in saved.items() if key not in not_inherited}
        if "batch_size" in typed and saved.get("batch_size") != args.batch_size:
            inherited.pop("batch_groups", None)  # it split the saved batch; chosen afresh for this one, unless typed
        for key, value in inherited.items():  # a hand-edited or damaged value must not reach the checks
            action, want = actions.get(key), None
            if action is None:  # a value train.py derived and saved (one of a later version: as it is)
                want = SAVED_DERIVED.get(key)
                ok = want is None or type(value) is want or (want is float and type(value) is int)
                ok = ok and (key != "input_dropout" or 0.0 <= value < 1.0)  # as check_args checks --dropout
                ok = ok and (key != "train_symbols" or value > 0)  # a run trained on some text
            elif value is None:
                ok = action.default is None
            elif action.choices:
                ok = value in action.choices
            elif action.nargs == 0:
                ok = type(value) is bool
            else:
                want = action.type or str
                ok = type(value) is want or (want is float and type(value) is int)
            if not ok:
                raise ValueError(f"{key} is {value!r}")
            if want is float:  # JSON's 0 for 0.0, as an editor may write it: the flag's type
                if type(value) is int and abs(value) > sys.float_info.max:  # (floats: check_args)
                    raise ValueError(f"{key} is a whole number too large for a float")
                inherited[key] = float(value)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise damaged_config(run_dir, utils.damage(error)) from None
    differ = [f"--{k}: saved {saved[k]!r}, given {getattr(args, k)!r}" for k in ARCHITECTURE_FLAGS + DATA_LAYOUT_FLAGS
              if k in typed and k in saved and saved[k] != getattr(args, k)]
    if differ:
        raise CharRNNError(f"cannot resume {run_dir} with other model or data layout flags ("
                           + "; ".join(differ) + "): its weights, data position and hidden state are "
                           "for the saved ones. Drop these flags to continue the run, "
                           "or start a new run without --init_from.")
    for key, value in inherited.items():
        setattr(args, key, value)
    saved_input_dropout = saved.get("input_dropout")
    if ("dropout" in typed and args.output_keep_prob is None and args.input_keep_prob is None  # --dropout alone
            and type(saved_input_dropout) in (int, float) and 0.0 < saved_input_dropout < 1.0):
        log.info("--dropout %s: the embedded input is no longer dropped, where the run dropped %s of it (as "
                 "--output_keep_prob and --input_keep_prob set); pass --input_keep_prob %s too to keep that",
                 args.dropout, f"{saved_input_dropout:g}", f"{1.0 - saved_input_dropout:.12g}")
    return saved


def damaged_config(run_dir: Path, what: str) -> CharRNNError:
    return CharRNNError(f"{run_dir / 'config.json'} is unreadable or damaged ({what}); train.py wrote it when the "
                        f"run started: restore it from a backup, or start a new run")


def saved_flags(args: argparse.Namespace) -> dict:
    """The flags as config.json keeps them, what merge_resume_config reads back: all but the
    session's own. Paths are absolute, so that a resume from another working directory finds the
    text and continues the logs; but a log_dir that is UTF-8 only as typed (under a cp949-named
    working directory) stays relative."""
    saved = {key: value for key, value in vars(args).items() if key not in SESSION_FLAGS}
    # The default data_dir under a typed --input is never read: kept as it is, it needs no working directory.
    for key in ("input", "log_dir") if args.input else ("data_dir", "log_dir"):
        if saved[key] is not None and (key != "log_dir" or runs.is_utf8_path(os.path.abspath(saved[key]))):
            saved[key] = os.path.abspath(saved[key])
    return saved


# ---------------------------------------------------------------------------------------------
# The run: its corpus, directories and lock


def default_run_name(args: argparse.Namespace) -> str:
    corpus = Path(args.input or args.data_dir).resolve()
    # data/tinyshakespeare/input.txt is "tinyshakespeare", as char-rnn-tensorflow users know it
    name = (corpus.parent.name if corpus.stem == "input" else corpus.stem) if corpus.is_file() else corpus.name
    # A name that is not UTF-8 (cp949 bytes from a Windows archive) becomes _s: TensorFlow needs UTF-8 paths.
    name = os.fsencode(name).decode("utf-8", "replace").replace("\ufffd", "_")
    name = utils.clip_name("".join("_" if c in runs.GLOB_CHARS else c for c in name), 100)  # see runs.check_tf_path
    unit = "-jamo" if args.unit == "jamo" else ""
    return f"{name}-{args.model}{args.num_layers}x{args.rnn_size}{unit}-{time.strftime('%Y%m%d-%H%M%S')}"


def lock_new_run(run_dir: Path) -> tuple[Path, runs.RunLock]:
    """A new run's directory under its default name, locked: or name-2, name-3 ... where another
    trainer or a saved run has it. Runs launched together (a sweep) are named in the same second,
    and each must train a run of its own."""
    names = itertools.chain([run_dir.name], (f"{run_dir.name}-{i}" for i in itertools.count(2)))
    for candidate in (run_dir.parent / name for name in names):
        try:
            lock = runs.RunLock(candidate, "--save_dir")
        except runs.RunBusy:
            continue
        if not lock.held_run:
            return candidate, lock
        lock.release()


def data_options(args: argparse.Namespace) -> "dataset.DataOptions":
    """The data options of the flags."""
    return dataset.DataOptions(encoding=args.encoding, normalize=args.normalize, unit=args.unit,
                             max_vocab=args.max_vocab, min_char_count=args.min_char_count)


def check_memory(args: argparse.Namespace, vocab_size: int) -> None:
    """Refuse sizes whose training cannot fit in this machine's memory, before TensorFlow tries
    and the system swaps or kills the process. A rough lower bound: weights, gradients and
    Adam's two moments, plus the activations that the backward pass keeps."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return  # no cheap way to know here (Windows)
    gates = utils.GATES_PER_CELL[args.model]
    H, E, L, V = args.rnn_size, args.embedding_size, args.num_layers, vocab_size
    params = V * E + gates * H * (E + H + 1) + (L - 1) * gates * H * (2 * H + 1) + (H + 1) * V
    need = 4 * (4 * params + args.batch_size * args.seq_length * (L * H * (2 * gates + 4) + 3 * V))
    if need > total:
        raise CharRNNError(f"--num_layers {L} --rnn_size {H} --embedding_size {E} --batch_size {args.batch_size} "
                           f"--seq_length {args.seq_length}: training needs at least {need / 2**30:,.1f} GiB of "
                           f"memory, this machine has {total / 2**30:,.1f} GiB. Lower some of these flags (a resumed run only "
                           f"--batch_size).")


def saved_vocabulary(run_dir: Path) -> "dataset.Vocab | None":
    """The resumed run's vocabulary: its saved weights give each id the character it had when the
    run started. None where vocab.json went from a run with no checkpoint yet (a warning): the
    text's own is then the run's."""
    try:
        return dataset.Vocab.load(run_dir / "vocab.json")
    except CharRNNError as error:
        if runs.checkpoints_on_disk(run_dir) or runs.checkpoints_on_disk(run_dir / "best"):
            raise CharRNNError(f"{error}. The run's checkpoints give each id the character that file named, and a "
                               f"vocabulary made again from the text could give it another: copy vocab.json back "
                               f"from a backup, or start a new run without --init_from") from None
        log.warning("%s; writing it again from the corpus (the run has no checkpoint yet)", error)
        return None


def on_the_run_s_vocabulary(run_dir: Path, saved: "dataset.Vocab", files: list[Path],
                            options: "dataset.DataOptions", source: Path) -> "dataset.Corpus":
    """The text prepared on the run's vocabulary, which must have all its characters, or an unknown
    symbol for those it lacks. The text's own preparation serves where it is cached and orders the
    same characters alike; none is made only to find that out: a grown multi-GB corpus was prepared
    twice, once on its own vocabulary, once on the run's."""
    own = dataset.prepare_corpus(files, options, only_cached=True)
    if own is not None and own.vocab.symbols == saved.symbols:
        return own
    if own is not None:
        log.info("the corpus's characters come in another order of frequency than %s's (the text changed, or is "
                 "another): preparing it on the run's vocabulary", run_dir.name)
    else:
        log.info("the corpus is not prepared as it is now (the text grew or changed, or is another): preparing it "
                 "on the run's vocabulary")
    try:
        return dataset.prepare_corpus(files, options, vocab=saved, source=source)
    except dataset.LackingCharacters as error:
        raise CharRNNError(f"the corpus has characters that {run_dir / 'vocab.json'} lacks ({len(error.chars):,}: "
                           f"{dataset.describe_chars(error.chars, 10)}): the run's model has no ids for them. "
                           f"Resume on a text without them, or start a new run on this one") from None


@dataclass
class Run:
    """Everything about a run that is settled before TensorFlow is imported; the last three fields
    record what the session has written since, for train.py's undo_session."""
    args: argparse.Namespace
    cluster: workers.Cluster
    corpus: "dataset.Corpus"
    train_ids: np.ndarray
    val_ids: np.ndarray
    loader: "dataset.BatchLoader"
    eval_batch: int
    run_dir: Path            # the run's directory (the chief's)
    write_dir: Path          # where this process writes checkpoints: run_dir, or scratch space
    log_dir: Path
    resume_dir: Path | None
    forked_from: Path | None  # the run that run_dir is a copy of, going on from it
    lock: "runs.RunLock | None"
    log_dir_created: Path | None  # the outermost directory of log_dir that this session made
    saved_schedule: argparse.Namespace | None = None  # the flags with the resumed run's saved schedule, when typed anew
    val_changed: bool = False  # the resumed run's validation text is not the one it saved its best loss for
    saved_train_symbols: int | None = None  # where the resumed run's training text had another length: that one
    epochs_typed: bool = False  # --num_epochs typed (on resume: the whole run's, where the old tool counted more)
    kept: bool = False       # the session saved a checkpoint: what it made stays
    log_files_before: set[str] | None = None  # log_dir's files before this session's TensorBoard writer
    config_before: str | None = None  # a resumed run's config.json before this session's first save rewrote it


def copied_by_hand_from(saved: dict, run_dir: Path) -> Path | None:
    """The run that run_dir is a copy of (cp -r): the directory its config.json was written in, when
    that is another run, still there. A run renamed or moved (with the project) has no such twin."""
    home = saved.get("run_dir")
    if not home or not (Path(home) / "config.json").is_file():
        return None
    try:
        return None if os.path.samefile(home, run_dir) else Path(home)
    except OSError:
        return None


def saved_schedule_of(args: argparse.Namespace, saved: dict) -> argparse.Namespace | None:
    """The flags with the resumed run's saved schedule (a length flag replaces all three saved
    limits); None when those values fail the checks (a hand-edited config.json: no comparison)."""
    before = argparse.Namespace(**{**vars(args), **{k: saved.get(k) for k in LENGTH_FLAGS},
                                   **{k: saved[k] for k in SCHEDULE_FLAGS if k in saved and k not in LENGTH_FLAGS}})
    try:
        check_args(before)  # derives its time_budget_s
    except (CharRNNError, TypeError, ValueError, AttributeError):
        return None
    return before


@dataclass
class Resumed:
    """Where a resumed run comes from (--init_from) and where it goes on."""
    dir: Path
    fork_dir: Path | None  # where it goes on when that is not its own directory: a copy
    source_logs: Path  # its TensorBoard run
    copied_from: Path | None  # the run that it is a copy of, made by hand (cp -r)
    saved_schedule: argparse.Namespace | None  # the flags with its saved schedule, when one is typed anew


def resumed_run(args: argparse.Namespace, typed: set[str]) -> Resumed:
    """Read --init_from's run into args (its saved flags under the typed ones) and say where it goes on.
    char-rnn-tensorflow's meaning: --init_from is the run to start from, --save_dir where to save (the
    run itself, or the directory that holds it, is where it already is)."""
    resume_dir = runs.resolve_run_dir(args.init_from, "--init_from")
    elsewhere = ("save_dir" in typed
                 and Path(args.save_dir).resolve() not in (resume_dir.resolve(), resume_dir.parent.resolve()))
    renamed = "run_name" in typed and args.run_name != resume_dir.name
    fork_dir = (Path(args.save_dir if elsewhere else resume_dir.parent) / (args.run_name or resume_dir.name)
                if elsewhere or renamed else None)
    saved = merge_resume_config(args, typed, resume_dir)
    check_args(args)
    if "log_dir" not in typed and os.name != "nt" and re.match(r"[A-Za-z]:[\\/]|\\\\", args.log_dir):
        # C:\Users\...\logs, a folder name here: a run trained on Windows, resumed under WSL or Linux.
        default = build_parser().get_default("log_dir")
        log.warning("the run's --log_dir %s is a Windows path: its TensorBoard events go to %s here; pass --log_dir "
                    "to choose another", args.log_dir, default)
        args.log_dir = default
        typed.add("log_dir")  # chosen here: not a saved folder gone
    saved_log_dir = saved.get("log_dir") or "logs"  # checked by merge_resume_config only when not typed anew
    if not isinstance(saved_log_dir, str):
        raise damaged_config(resume_dir, f"log_dir is {saved_log_dir!r}")
    return Resumed(dir=resume_dir, fork_dir=fork_dir,
                   source_logs=Path(saved_log_dir) / (saved.get("log_name") or resume_dir.name),
                   copied_from=copied_by_hand_from(saved, resume_dir),
                   saved_schedule=saved_schedule_of(args, saved) if typed & set(SCHEDULE_FLAGS) else None)


def training_cluster(args: argparse.Namespace, typed: set[str], resume_dir: Path | None) -> workers.Cluster:
    """The workers of TF_CONFIG's cluster under --strategy multiworker (else this process alone),
    refused when --batch_size does not share out among them."""
    try:
        cluster = workers.cluster_from_env(args.strategy)
    except CharRNNError as error:
        if resume_dir is None or "strategy" in typed:
            raise
        raise CharRNNError(f"{error}. The resumed run was trained so (--strategy multiworker in its config.json): "
                           f"on one machine pass --strategy auto") from None
    workers.check_batch_shares(args.batch_size, cluster.num_workers, "workers", resumed=resume_dir is not None,
                               how_to_use_fewer="fewer in TF_CONFIG's cluster")
    return cluster


def read_corpus(args: argparse.Namespace, typed: set[str], resume_dir: Path | None) -> "dataset.Corpus":
    """The corpus prepared into ids: on the resumed run's vocabulary, if there is one."""
    try:
        files = dataset.resolve_corpus(None if args.input else args.data_dir, args.input)
    except CharRNNError as error:
        if resume_dir is None or typed & set(CORPUS_FLAGS):
            raise
        raise CharRNNError(f"{error} (the path saved in {resume_dir / 'config.json'}): pass --data_dir or --input "
                           f"to say where the text is now") from None
    options = data_options(args)
    # The folder named, recorded where it is read whole: a file, or a folder's input.txt, is its own corpus.
    named = Path(os.path.abspath(os.path.expanduser(args.input or args.data_dir)))
    source = named if named.is_dir() and [Path(os.path.abspath(f)) for f in files] != [named / "input.txt"] else None
    saved = saved_vocabulary(resume_dir) if resume_dir is not None else None
    corpus = (on_the_run_s_vocabulary(resume_dir, saved, files, options, source) if saved is not None
              else dataset.prepare_corpus(files, options, source=source))
    if args.unit == "jamo" and corpus.vocab.char_starts.all():  # no vowel jamo: nothing was split
        log.warning("--unit jamo: the text has no Hangul syllables to split into jamo, so the model reads "
                    "its characters as under --unit char")
    return corpus


def way_of_the_run(args: argparse.Namespace, key: str, ways: tuple[str, str], resume_dir: Path | None) -> str:
    """How the run does what earlier versions did otherwise (ways: this version's, then the earlier
    one), recorded in args for config.json. A run saved without the key resumes the earlier way,
    which its data position and best validation loss are for."""
    way = getattr(args, key, None) or ways[resume_dir is not None]
    if way not in ways:
        raise damaged_config(resume_dir, f"{key} is {way!r}")
    setattr(args, key, way)
    return way


def split_validation(args: argparse.Namespace, corpus: "dataset.Corpus",
                     resume_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(train ids, validation ids). Validation is the last val_frac of the characters (runs saved
    before cut it by symbols)."""
    return corpus.split(args.val_frac, by=way_of_the_run(args, "val_split", ("chars", "symbols"), resume_dir))


def scored_validation(args: argparse.Namespace, vocab: "dataset.Vocab", val_ids: np.ndarray,
                      resume_dir: Path | None) -> np.ndarray:
    """What each evaluation scores of the validation ids: the first --eval_symbols characters and one
    more, the last one's target (0: all). Counted in original characters, so that under --unit jamo,
    whose symbols are 1.6 to a Korean character, it is the text a --unit char run scores and their
    val/bpc compare (runs saved before cut symbols)."""
    cut = way_of_the_run(args, "eval_cut", ("chars", "symbols"), resume_dir)
    if not args.eval_symbols:
        return val_ids
    if cut == "symbols":
        return val_ids[:args.eval_symbols + 1]
    return val_ids[:dataset.first_chars_end(vocab, val_ids, args.eval_symbols + 1)]


def check_validation_window(args: argparse.Namespace, val_kept: int, val_symbols: int, resumed: bool) -> None:
    """Refuse a validation text shorter than one window: seq_length inputs and, one symbol on, their
    targets. Of its val_symbols, --eval_symbols keeps val_kept (the symbols scored and one more, the
    last one's target)."""
    if val_kept > args.seq_length:
        return
    capped = val_symbols > args.seq_length  # else --eval_symbols cannot help
    kept = (f"--eval_symbols {args.eval_symbols} scores {val_kept - 1:,} of its {val_symbols:,}" if capped
            else f"--val_frac {args.val_frac} keeps {val_symbols:,} symbol{'s' * (val_symbols != 1)}")
    if not resumed:
        fix = f"Raise {'--eval_symbols' if capped else '--val_frac'}, or lower --seq_length"
    else:  # the resumed run's --val_frac and --seq_length stay
        fix = "Raise --eval_symbols" if capped else "Pass a longer text: a resumed run keeps its --val_frac and --seq_length"
    raise CharRNNError(f"the validation text is too short for one window of --seq_length {args.seq_length} "
                       f"({args.seq_length + 1:,} symbols): {kept}. {fix}")


def eval_streams(batch_size: int, seq_length: int, val_ids: np.ndarray) -> int:
    """How many streams the validation text is read in: --batch_size, fewer where it is too short.
    Each starts from a zero state, so the loss depends on their number."""
    return max(1, min(batch_size, (len(val_ids) - 1) // seq_length))


def record_validation_text(args: argparse.Namespace, val_ids: np.ndarray) -> bool:
    """Record the validation text's fingerprint in args, for config.json, and return whether the
    text the best validation loss so far was measured on was another (--eval_symbols
    or the corpus changed): that loss then compares with nothing this session measures."""
    fingerprint = hashlib.sha256(memoryview(np.ascontiguousarray(val_ids))).hexdigest()
    changed = getattr(args, "val_sha256", None) not in (None, fingerprint)
    args.val_sha256 = fingerprint
    return changed


def take_run_dir(lock: runs.RunLock, run_dir: Path, resumed: Resumed | None) -> None:
    """Take run_dir for this session: remove a copy that a session stopped before its first save
    left there, and refuse a saved run or its remains (never train over them)."""
    if resumed is not None and run_dir == resumed.fork_dir:
        try:
            if lock.take_over_unsaved_copy():
                log.info("%s held a copy that a session stopped before its first save left behind: a new "
                         "copy replaces it", run_dir)
        except OSError as error:
            raise CharRNNError(f"could not remove the unsaved copy in {run_dir} ({error.strerror or error}): "
                               f"delete that folder, then run again") from None
    if (resumed is None or run_dir != resumed.dir) and lock.held_run:
        if not (run_dir / "config.json").exists():
            raise CharRNNError(f"{run_dir} holds files of a run (checkpoints, vocab.json) but no config.json, "
                               f"what is left of one: pick another --run_name, or move them away to start over")
        raise CharRNNError(f"{run_dir} already holds a run: continue it with --init_from {utils.shell_path(run_dir)}, "
                           f"pick another --run_name, or delete it to start over")


def name_tensorboard_run(args: argparse.Namespace, run_dir: Path, resumed: Resumed | None,
                         chief: bool) -> Path | None:
    """Set args.log_name, the run's TensorBoard run, saved so that a resume writes on where the run
    wrote. A new run or a copy never writes into another run's curves: its own name, else
    name@save_dir, name@save_dir-2... made now, so that two runs of one name in two save
    directories, started together, get one each. Returns the outermost directory it made, if any."""
    if resumed is not None and resumed.fork_dir is None and resumed.copied_from is None:
        args.log_name = getattr(args, "log_name", None) or resumed.dir.name
        return None
    if not chief:  # a worker's events go to its scratch space
        args.log_name = run_dir.name
        return None
    source_logs = resumed.source_logs.resolve() if resumed is not None else None
    base = utils.clip_name(f"{run_dir.name}@{run_dir.parent.resolve().name}", utils.NAME_MAX_BYTES - 8)  # -N
    names = (name for name in itertools.chain((run_dir.name, base), (f"{base}-{i}" for i in itertools.count(2)))
             if (Path(args.log_dir) / name).resolve() != source_logs)
    claimed, created = runs.claim_new_dir(Path(args.log_dir), names, "--log_dir")
    args.log_name = claimed.name
    return created


def say_where_events_go(args: argparse.Namespace, run_dir: Path, resumed: Resumed | None) -> None:
    """Tell the chief's user why its new TensorBoard run is named as it is: a copy made by hand
    writes apart from its source's run; a new run whose own name was taken says which it took."""
    if resumed is not None and resumed.copied_from is not None:
        log.info("%s is a copy of %s (its config.json was written there): its TensorBoard run is %s, apart "
                 "from that run's", resumed.dir, resumed.copied_from, args.log_name)
    elif resumed is None and args.log_name != run_dir.name:
        taken = Path(args.log_dir) / run_dir.name
        why = ("by this run's own checkpoint folder, since --log_dir is its --save_dir"
               if taken.resolve() == run_dir.resolve() else "by a run of that name in another save "
               "directory, a deleted run, or a session killed before its first save")
        log.info("%s is taken (%s): this run's TensorBoard run is %s", taken, why, args.log_name)


def set_up_run_dir(args: argparse.Namespace, typed: set[str], run_dir: Path, resumed: Resumed | None) -> None:
    """The chief's checks and writes in the save directory before TensorFlow starts: `latest` must
    be a file (found now, not at the first save); a fork gets its copy of the resumed run;
    unfinished saves go; a resumed run whose --log_dir is gone is warned of."""
    latest = run_dir.parent / "latest"
    if latest.exists() and not latest.is_file():
        raise CharRNNError(f"{latest} is not a file: the save directory keeps the name of the run that saved "
                           f"last there. Move it away, or choose another --save_dir")
    if resumed is not None and resumed.fork_dir is not None:
        runs.copy_run(resumed.dir, resumed.fork_dir, {"run_name": args.run_name, "save_dir": args.save_dir,
                                                      "log_name": args.log_name, "run_dir": args.run_dir})
        log.info("%s goes on in %s, a copy (TensorBoard run %s); %s itself stays as it is", resumed.dir,
                 resumed.fork_dir, args.log_name, resumed.dir)
    runs.remove_unfinished_saves(run_dir)
    if resumed is not None and "log_dir" not in typed and not Path(args.log_dir).is_dir():
        log.warning(f"the run's --log_dir {args.log_dir} is gone (deleted, or the project moved?); its TensorBoard "
                    f"events go there anew. Pass --log_dir to write them elsewhere")


def plan_run(args: argparse.Namespace, typed: set[str]) -> Run:
    """Resolve the run, read the corpus and check everything that can fail cheaply."""
    resumed = resumed_run(args, typed) if args.init_from else None
    resume_dir = resumed.dir if resumed else None
    fork_dir = resumed.fork_dir if resumed else None
    if "time_budget" in typed and utils.is_plain_seconds(args.time_budget):
        log.info("--time_budget %s: %s seconds (%sm would be minutes)", args.time_budget,
                 args.time_budget.strip(), args.time_budget.strip())
    cluster = training_cluster(args, typed, resume_dir)
    corpus = read_corpus(args, typed, resume_dir)
    train_ids, val_ids = split_validation(args, corpus, resume_dir)
    val_symbols = len(val_ids)
    val_ids = scored_validation(args, corpus.vocab, val_ids, resume_dir)
    val_changed = record_validation_text(args, val_ids)
    # The training text's length, saved: a resume on a grown or edited text cuts it into other streams.
    saved_train_symbols = getattr(args, "train_symbols", None)
    args.train_symbols = len(train_ids)
    # Each worker reads only its own streams of the memory-mapped ids.
    loader = dataset.BatchLoader(train_ids, args.batch_size, args.seq_length, seed=args.seed,
                                 offsets_over=way_of_the_run(args, "batch_offsets", ("stream", "window"), resume_dir),
                                 shard_index=cluster.worker_index, num_shards=cluster.num_workers,
                                 longest_window=len(val_ids) - 1, resumed=resume_dir is not None)
    check_validation_window(args, len(val_ids), val_symbols, resumed=resume_dir is not None)
    check_memory(args, corpus.vocab.size)
    run_dir = fork_dir or resume_dir or Path(args.save_dir) / (args.run_name or default_run_name(args))
    # TensorFlow's longest names below them, e.g. best/ckpt-N_temp/part-00000-of-00001.data-00000-of-00001
    place_flag = "--init_from" if run_dir == resume_dir else "--save_dir"
    utils.check_path(str(run_dir), place_flag, room=80)
    lock = None  # only the chief keeps what it writes; the others write to scratch space
    log_dir_created = None  # the outermost directory of the TensorBoard run that this session made
    if cluster.is_chief:  # a second trainer on the same run refuses here
        default_named = run_dir not in (fork_dir, resume_dir) and args.run_name is None
        run_dir, lock = lock_new_run(run_dir) if default_named else (run_dir, runs.RunLock(run_dir, place_flag))
    try:
        if lock is not None:
            take_run_dir(lock, run_dir, resumed)
        args.run_name, args.save_dir = run_dir.name, str(run_dir.parent)
        args.run_dir = str(run_dir.resolve()) if runs.is_utf8_path(str(run_dir.resolve())) else ""  # "": not known
        log_dir_created = name_tensorboard_run(args, run_dir, resumed, chief=lock is not None)
        utils.check_path(str(Path(args.log_dir) / args.log_name), "--log_dir", room=80)
        if lock is not None:
            say_where_events_go(args, run_dir, resumed)
            set_up_run_dir(args, typed, run_dir, resumed)
            write_dir, log_dir = run_dir, Path(args.log_dir) / args.log_name
            if log_dir_created is None:  # not claimed above: the resumed run's own
                log_dir_created = runs.ensure_writable(log_dir, "--log_dir")
        else:
            write_dir = workers.new_worker_scratch_dir(cluster.worker_index)
            log_dir, log_dir_created = write_dir / "logs", None
    except BaseException:  # a refusal, or a signal during the copy
        if lock is not None:
            lock.release(discard=True)
        if log_dir_created is not None:
            runs.remove_created(Path(args.log_dir) / args.log_name, log_dir_created)
        raise
    # The chief goes on from its copy of a forked run; the other workers from the run they were given.
    restore_from = (fork_dir or resume_dir) if lock is not None else resume_dir
    return Run(args=args, cluster=cluster, corpus=corpus, train_ids=train_ids, val_ids=val_ids, loader=loader,
               eval_batch=eval_streams(args.batch_size, args.seq_length, val_ids),
               run_dir=run_dir, write_dir=write_dir, log_dir=log_dir, resume_dir=restore_from,
               forked_from=resume_dir if fork_dir is not None else None, lock=lock, log_dir_created=log_dir_created,
               saved_schedule=resumed.saved_schedule if resumed else None, val_changed=val_changed,
               saved_train_symbols=saved_train_symbols if saved_train_symbols != len(train_ids) else None,
               epochs_typed="num_epochs" in typed)
