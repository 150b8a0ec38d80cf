"""Generate text from a model trained by train.py.

    python sample.py                          # the newest run under save/
    python sample.py --prime "문" -n 2000 --temperature 0.7
    python sample.py --save_dir save/<run> --checkpoint best --num_samples 4

Needs only the run directory (config.json, vocab.json, checkpoints), never the corpus. Text is
generated in chunks, each one XLA-compiled loop over its symbols; a single sample streams to
stdout chunk by chunk. Text is written as UTF-8 whatever the terminal's locale.
"""
from __future__ import annotations

import signal

if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    # A Ctrl-C while the modules below load (the standard library's too) ends the process as the
    # signal does, not in a KeyboardInterrupt traceback; main() then sets the handlers that stop
    # with a message.
    signal.signal(signal.SIGINT, signal.SIG_DFL)

import argparse
import functools
import logging
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import dataset
import plan
import runs
import utils
from utils import CharRNNError

if TYPE_CHECKING:  # for annotations only: --help must not wait for TensorFlow
    import model

log = logging.getLogger("charrnn")

STREAM_CHUNK = 256  # symbols per compiled call; a single sample is written out after each
FLOAT32_MAX = 3.4028234663852886e38  # the sampler divides float32 logits by the temperature


def build_parser() -> argparse.ArgumentParser:
    p = utils.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=utils.HelpFormatter,
                             sibling=("train.py", plan.build_parser),
                             old_flags=utils.CHAR_RNN_TENSORFLOW_FLAGS["sample.py"])
    p.add_argument("--save_dir", default="save",
                   help="a run directory, or a save directory (its run that saved last)")
    p.add_argument("--checkpoint", default="latest",
                   help="latest (the newest that loads, best/'s included), best, or the path of a checkpoint (ckpt-N)")
    # --n too: argparse would otherwise read it as an abbreviation of --num_samples.
    p.add_argument("-n", "--n", type=int, default=500, help="number of characters to generate (0: the prime alone)")
    p.add_argument("--prime", default="", help="text to start from (default: empty, the start of a line)")
    p.add_argument("--sample", type=int, default=1, choices=[0, 1, 2],
                   help="0: the most likely symbol each step; 1: sample; 2: sample the character after each space "
                        "(under --unit jamo its initial, vowel and final), else the most likely")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="below 1: safer text, above 1: wilder; 0: the most likely character (--sample 0)")
    p.add_argument("--top_k", type=int, default=0, help="sample among the k most likely symbols, and those tied with the k-th (0: all)")
    p.add_argument("--top_p", type=float, default=1.0, help="sample within this probability mass (1: all)")
    p.add_argument("--seed", type=int, default=None, help="same seed, same text (default: random)")
    p.add_argument("--num_samples", type=int, default=1,
                   help="independent samples, generated as one batch and printed at the end, --- between them")
    p.add_argument("--unknown", default="error", choices=["error", "skip"],
                   help="prime characters missing from the vocabulary: stop, or drop them with a warning")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="instead of sampling, write a SavedModel (TF Serving, any TensorFlow program) to DIR, "
                        "a new or empty directory (default: none, sample text)")
    p.add_argument("--export_tflite", default=None, metavar="FILE",
                   help="instead of sampling, write a TFLite model to FILE and its vocabulary beside it "
                        "(default: none, sample text)")
    p.add_argument("--verbose", action="store_true", help="debug logging, and TensorFlow's own start-up and C++ log lines")
    return p


def check_args(args: argparse.Namespace) -> None:
    try:
        args.prime.encode("utf-8")
    except UnicodeEncodeError:  # bytes in another encoding, kept by Python as lone surrogates
        typed = os.fsencode(args.prime)
        try:  # a guess only where cp949 reads them: bytes that are nothing in it say nothing of the terminal
            korean = f", which read {typed.decode('cp949')!r} as cp949: a terminal set to EUC-KR or cp949?"
        except UnicodeDecodeError:
            korean = ""
        raise CharRNNError(f"--prime: not valid UTF-8 (bytes {typed[:12].hex(' ')}{' ...' * (len(typed) > 12)}{korean}); "
                           f"set the terminal to UTF-8, or pass the prime as UTF-8 bytes") from None
    if args.n < 0:  # -n 0 writes the prime alone, as char-rnn-tensorflow did
        raise CharRNNError(f"-n {args.n}: the number of characters to generate must be 0 or more")
    if not 0 <= args.temperature <= FLOAT32_MAX:  # a larger one is infinite in float32: uniform draws, unfiltered
        raise CharRNNError(f"--temperature {args.temperature}: must be a positive finite number (e.g. 0.7; at most "
                           f"{FLOAT32_MAX:.2g}), or 0 for the most likely character every step (as --sample 0)")
    # What makes the text the most likely one, as typed, and what would sample: the warnings below name them.
    greedy_flags = [(flag, way) for in_effect, flag, way in ((args.sample == 0, "--sample 0", "--sample 1"),
                                                             (args.temperature == 0, "--temperature 0",
                                                              "a temperature above 0")) if in_effect]
    greedy = [flag for flag, _ in greedy_flags]
    to_sample = " with ".join(way for _, way in greedy_flags)
    if args.temperature == 0:  # the limit of colder and colder draws, as the SavedModel's generate takes it
        args.sample, args.temperature = 0, 1.0
    if args.top_k < 0:
        raise CharRNNError(f"--top_k {args.top_k}: must be 0 (off) or positive")
    if not 0.0 < args.top_p <= 1.0:
        raise CharRNNError(f"--top_p {args.top_p}: must be above 0 and at most 1 (1: all), e.g. 0.9")
    if not 1 <= args.num_samples <= 4096:
        raise CharRNNError(f"--num_samples {args.num_samples}: must be from 1 to 4096")
    # The compiled loop counts in int32 and draws with an int64 seed.
    if args.n > 2**31 - 1:
        raise CharRNNError(f"-n {args.n}: at most {2**31 - 1:,} characters per run")
    if args.num_samples > 1 and args.num_samples * args.n > 100_000_000:
        raise CharRNNError(f"--num_samples {args.num_samples} x -n {args.n}: several samples are generated as one "
                           f"batch held in memory, at most 100,000,000 characters in all; lower -n or --num_samples")
    if args.top_k > 2**31 - 1:
        raise CharRNNError(f"--top_k {args.top_k}: must be at most {2**31 - 1:,} (past the vocabulary size, or 0, "
                           f"it keeps every symbol)")
    # The names made from each: an export's temporary copy (.NAME.tmp-pid@host), a TFLite model's
    # vocabulary written under a temporary name (.STEM.vocab.json.pid@host.tmp, where .tflite was),
    # or the files of a checkpoint (ckpt-3.data-00000-of-00001).
    owner, suffix = utils.owner_tag(), Path(args.export_tflite or "").suffix
    name_room = {"export": len(f"..tmp-{owner}"),
                 "export_tflite": max(len(f"..tmp-{owner}"), len(f"..vocab.json.{owner}.tmp") - len(suffix)),
                 "checkpoint": len(".data-00000-of-00001")}
    for flag, room in name_room.items():
        if getattr(args, flag) not in (None, "latest", "best"):
            runs.check_tf_path(getattr(args, flag), f"--{flag}", name_room=room)
    if args.export_tflite and args.export_tflite.endswith(("/", os.sep)):  # Path() would drop the slash: a file
        raise CharRNNError(f"--export_tflite {args.export_tflite}: names a folder; give a file name, such as "
                           f"{args.export_tflite}charrnn.tflite")
    utils.check_seed(args.seed)
    unused = [f"--{flag}" for flag, off in (("temperature", 1.0), ("top_k", 0), ("top_p", 1.0), ("seed", None))
              if getattr(args, flag) != off]
    if greedy and not (args.export or args.export_tflite):
        if args.num_samples > 1:
            log.warning("--num_samples %d under %s: the most likely text is one text, so the samples are "
                        "identical; %s draws different ones", args.num_samples, " and ".join(greedy), to_sample)
        if unused:
            log.warning("%s: no effect under %s, which writes the most likely character every step; %s samples",
                        ", ".join(unused), " and ".join(greedy), to_sample)


def load_run(save_dir: str) -> tuple[Path, dict, "dataset.Vocab"]:
    """The run directory, its config and its vocabulary; clear errors when any is missing."""
    run_dir = runs.resolve_run_dir(save_dir, "--save_dir")
    try:
        config = utils.read_json_object(run_dir / "config.json")
        config["model"]
    except (OSError, ValueError, KeyError) as error:
        raise CharRNNError(f"{run_dir / 'config.json'} is unreadable or damaged ({utils.damage(error)}); "
                           f"it is written by train.py: retrain, or pick another run with --save_dir") from None
    model = config["model"]
    limits = {"vocab_size": 2**21, **utils.MODEL_SIZE_LIMITS}
    if not (isinstance(model, dict) and model.get("model") in utils.MODEL_TYPES
            and all(type(model.get(k)) is int and 1 <= model[k] <= top for k, top in limits.items())
            and all(type(model.get(k, 0.0)) in (int, float) and 0 <= model.get(k, 0.0) < 1
                    for k in ("dropout", "input_dropout"))):
        raise CharRNNError(f"{run_dir / 'config.json'}: its \"model\" entry is damaged ({str(model)[:200]}); "
                           f"it is written by train.py: retrain, or pick another run with --save_dir")
    vocab_path = run_dir / str(config.get("vocab_file", "vocab.json"))
    if not vocab_path.is_file():
        what = "not a file" if vocab_path.exists() else "missing"
        raise CharRNNError(f"{vocab_path} is {what}: sample.py needs the vocabulary that train.py saved "
                           f"beside the checkpoints. Copy it back or retrain.")
    vocab = dataset.Vocab.load(vocab_path)
    if vocab.size != model["vocab_size"]:
        raise CharRNNError(f"{vocab_path} has {vocab.size} symbols but the model in {run_dir} was trained on "
                           f"{model['vocab_size']}: this vocab.json belongs to another run. Copy back the "
                           f"run's own vocab.json or retrain.")
    return run_dir, config, vocab


def checkpoint_prefix(run_dir: Path, which: str) -> str:
    """--checkpoint PATH as TensorFlow's checkpoint prefix: ckpt-N, its file names (ckpt-N.index,
    ckpt-N.data-...), as a path or a name in the run directory."""
    if which.endswith(".t7"):
        raise CharRNNError(f"--checkpoint {which}: {utils.TORCH_CHECKPOINT}")
    prefix = re.sub(r"\.(index|data-\d+-of-\d+)$", "", which)
    inside = not Path(prefix).is_absolute()  # ckpt-N or best/ckpt-N: the run's own checkpoint first
    for candidate in ((run_dir / prefix, Path(prefix)) if inside else (Path(prefix),)):
        if Path(f"{candidate}.index").is_file():
            # Another run's checkpoint would load with this run's config.json and vocabulary: told as
            # damaged where the sizes differ, and sampled with the wrong characters where they agree.
            owner = utils.run_of_checkpoint(candidate)
            if (owner / "config.json").is_file() and owner.resolve() != run_dir.resolve():
                raise CharRNNError(f"--checkpoint {which}: a checkpoint of the run {owner}, not of {run_dir}, "
                                   f"whose config.json and vocabulary sample.py reads: pass --save_dir {owner} "
                                   f"--checkpoint {candidate.relative_to(owner)}")
            return str(candidate)
    names = ", ".join(Path(p).name for p in runs.checkpoints_on_disk(run_dir)[-5:]) or "none"
    raise CharRNNError(f"--checkpoint {which}: no such checkpoint (no {prefix}.index, nor in {run_dir}). Use "
                       f"latest, best, or a checkpoint of the run ({names})")


def checkpoint_candidates(run_dir: Path, which: str) -> list[str]:
    """Checkpoint paths to try, oldest first (restore falls back from the newest). latest is the
    checkpoint a resume would go on from: the newest that loads of the run's own and best/'s."""
    import tensorflow as tf
    if which not in ("latest", "best"):
        return [checkpoint_prefix(run_dir, which)]
    if which == "best" and (best := runs.checkpoints_on_disk(run_dir / "best")):
        return best
    latest = runs.resume_candidates(run_dir, runs.read_checkpoint_list(tf, run_dir))
    if which == "latest" and latest:
        return latest
    if latest:  # best/ alone is empty
        raise CharRNNError(f"no checkpoint in {run_dir / 'best'}: no validation has finished yet, or best/ was "
                           f"removed; use --checkpoint latest")
    raise CharRNNError(f"no checkpoint in {run_dir}: has training saved one yet?")


def _known_form(vocab: "dataset.Vocab", char: str) -> str:
    """A run that kept its text as it was (--normalize none) may have learned it decomposed (NFD, as
    macOS file names and some exports are): a character typed composed, as keyboards type it, that
    the vocabulary lacks is read decomposed where the vocabulary knows that form."""
    decomposed = unicodedata.normalize("NFD", char)
    return decomposed if vocab.missing(char) and not vocab.missing(decomposed) else char


def prime_ids(vocab: "dataset.Vocab", prime: str, unknown: str, run_dir: Path | None = None) -> list[int]:
    """The prime as ids (printed before the sample), without the characters --unknown skip drops.
    run_dir: the run whose vocabulary this is, named where the prime does not fit it (the run that
    saved last may be another corpus's than the user thinks)."""
    if vocab.normalize == "none":
        read = "".join(_known_form(vocab, c) for c in prime)
        if read != prime:
            log.info("--prime read decomposed (NFD) where the run's text was: it was trained with --normalize none")
            prime = read
    missing = vocab.missing(prime)
    if missing and unknown == "error":
        this_run = f" (this is {run_dir})" if run_dir else ""
        raise CharRNNError(f"--prime has {vocab.missing_what}: {dataset.describe_chars(missing, 20)}. "
                           f"Remove them, pass --unknown skip to drop them, or sample a run trained on such text "
                           f"with --save_dir{this_run}.")
    ids = list(vocab.encode(prime)) if prime else []
    if prime and not ids:
        log.warning("no character of --prime is in the vocabulary; starting from the start of a line")
    return ids


def stream_texts(vocab: "dataset.Vocab", id_chunks: Iterator, prefix: Sequence[int] = ()) -> Iterator[list[str]]:
    """Decode chunks of ids [rows, k] into each row's next piece of text, each row starting with
    the prefix ids (the prime). Under --unit jamo the few trailing symbols that the next ones can
    still change (Vocab.undecided) wait for the next chunk, so a Hangul syllable split across chunks
    is recomposed whole, also when the model adds a final consonant to the prime's last syllable."""
    pending: list[list[int]] | None = None
    for chunk in id_chunks:
        pending = pending or [list(prefix) for _ in chunk]
        texts = []
        for row, ids in enumerate(chunk):
            ids = pending[row] + [int(i) for i in ids]
            cut = len(ids) - vocab.undecided(ids)
            texts.append(vocab.decode(ids[:cut]))
            pending[row] = ids[cut:]
        yield texts
    if pending and any(pending):
        yield [vocab.decode(ids) for ids in pending]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    utils.stderr_in_utf8()
    args = parser.parse_args(argv)
    utils.setup_logging(args.verbose)
    if sys.stdout is None and not (args.export or args.export_tflite):  # closed (>&-), or pythonw
        log.error("error: standard output is closed: there is nowhere to write the sample")
        return 2
    # UTF-8 out whatever the locale (LC_ALL=C, a cp949 console): never a UnicodeEncodeError.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8", errors="replace")
    signals = utils.interrupt_on_signals()
    try:
        utils.check_working_directory([args.save_dir, args.export, args.export_tflite])
        check_args(args)
        run_dir, config, vocab = load_run(args.save_dir)
        if args.export or args.export_tflite:
            export_run(args, run_dir, config, vocab, utils.explicit_flags(parser, argv))
            return 0
        prime = prime_ids(vocab, args.prime, args.unknown, run_dir)
        if args.n == 0:  # the prime alone, as written (a jamo model's next symbols could change its last syllable)
            if args.checkpoint not in ("latest", "best"):  # mistyped, it is told as under -n 1
                checkpoint_prefix(run_dir, args.checkpoint)
            write_out(joined_samples([vocab.decode(prime)] * args.num_samples))
        else:
            sample(args, run_dir, config, vocab, prime)
    except CharRNNError as error:
        log.error("error: %s", error)
        return 2
    except PermissionError as error:  # a path the checks could not even look at
        log.error("error: %s", utils.permission_denied(error))
        return 2
    except BrokenPipeError:  # the reader stopped early (sample.py | head): not an error
        discard_stdout()
        return 0
    except (KeyboardInterrupt, ImportError) as error:
        if isinstance(error, ImportError) and not signals:  # see utils.interrupt_on_signals
            raise
        log.error("interrupted")
        return utils.interrupted_status(error, signals)
    return 0


def load_model(args: argparse.Namespace, run_dir: Path, config: dict,
               log_level: int = logging.DEBUG) -> "model.CharRNN":
    """The run's model with the chosen checkpoint's weights (an older one if that is damaged),
    logging which at log_level."""
    tf = runs.import_tensorflow(quiet=not args.verbose)
    import model as model_lib

    net = model_lib.CharRNN(model_lib.ModelConfig.from_dict(config["model"]))
    # A run still training removes older checkpoints as it saves: one listed may be gone when it loads.
    listed = functools.partial(checkpoint_candidates, run_dir, args.checkpoint)
    restored = runs.restore_checkpoint(lambda _path: tf.train.Checkpoint(model=net), listed(), partial=True,
                                       relist=listed)
    log.log(log_level, "loaded %s", restored)
    return net


# What shapes a sample. An export writes the model, not a sample: these flags do nothing there.
SAMPLING_FLAGS = ("n", "prime", "sample", "temperature", "top_k", "top_p", "seed", "num_samples", "unknown")


def export_run(args: argparse.Namespace, run_dir: Path, config: dict, vocab: "dataset.Vocab",
               typed: set[str]) -> None:
    """--export / --export_tflite: load the checkpoint as for sampling, then write files instead of text."""
    ignored = [f"-{d}" if d == "n" else f"--{d}" for d in SAMPLING_FLAGS if d in typed]
    if ignored:
        log.warning("%s: not used by an export, which writes the model, not a sample. The SavedModel's generate "
                    "takes a prime, n, a temperature and a seed when called; the TFLite model generates the most "
                    "likely text, or one step at a time (README, SavedModel and TFLite)", " ".join(ignored))
    net = load_model(args, run_dir, config, log_level=logging.INFO)  # which weights a served model has
    import export
    export.export(net, vocab, args.export, args.export_tflite)


def generated_ids(net: "model.CharRNN", prime: list[int], num_samples: int, options: dict) -> Iterator:
    """Endless chunks of generated ids [num_samples, k], each compiled call continuing the last
    one's state and random stream (so a longer -n extends a shorter one with the same seed)."""
    import tensorflow as tf
    import model as model_lib

    primes = tf.constant([prime] * num_samples, tf.int32)
    state, last = model_lib.prime_state(net, primes)
    done = 0
    in_word_start = model_lib.prime_word_start(primes, mode=options["mode"], space_id=options["space_id"],
                                               initial_ids=options["initial_ids"], vowel_ids=options["vowel_ids"])
    while True:
        ids, state, in_word_start = model_lib.generate_chunk(net, state, last, STREAM_CHUNK, offset=done,
                                                             in_word_start=in_word_start, **options)
        last, done = ids[:, -1], done + STREAM_CHUNK
        yield ids.numpy()


def chosen_seed(seed: int | None) -> int:
    """--seed as given (0 too: the same text again), else a fresh one."""
    return seed if seed is not None else int.from_bytes(os.urandom(4), "little")


def sample(args: argparse.Namespace, run_dir: Path, config: dict, vocab: "dataset.Vocab", prime: list[int]) -> None:
    """-n characters of text (characters, not symbols: under --unit jamo a syllable is 2-3 symbols)."""
    net = load_model(args, run_dir, config)
    seed = chosen_seed(args.seed)
    if args.seed is None and args.sample != 0:  # a sample worth keeping can be made again
        log.info("seed %d (--seed %d writes this text again)", seed, seed)
    if args.sample == 2 and " " not in vocab.symbols:
        log.warning("--sample 2 samples only after a space, and this model's text has none: every character "
                    "will be the most likely one; --sample 1 samples")
    options = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, mode=args.sample,
                   seed=seed, space_id=vocab.symbols.index(" ") if " " in vocab.symbols else -1,
                   initial_ids=vocab.ids_of("initial"), vowel_ids=vocab.ids_of("vowel"))
    # The prime is decoded with the text that follows it: a jamo model may finish its last syllable.
    length = len(vocab.decode(prime)) + args.n
    streaming = args.num_samples == 1  # several samples are one batch, each printed whole at the end
    written = [0] * args.num_samples
    pieces: list[list[str]] = [[] for _ in written]
    # No prime (or none the model knows): start from a line break, as a new document would, unprinted.
    feed = prime or [vocab.start_id]
    for texts in stream_texts(vocab, generated_ids(net, feed, args.num_samples, options), prime):
        for row, text in enumerate(texts):
            text = text[:length - written[row]]
            written[row] += len(text)
            pieces[row].append(text)
        if streaming:
            write_out(pieces[0].pop())
        if min(written) >= length:
            break
    write_out("\n" if streaming else joined_samples(["".join(row) for row in pieces]))


def joined_samples(texts: list[str]) -> str:
    """Several samples as printed: one after another, with a --- line between them."""
    return "\n---\n".join(texts) + "\n"


def write_out(text: str) -> None:
    """Text to standard output, now. A write that fails (a full disk under `> file`) is refused
    like bad input; a reader that stopped early (`| head`) is main's BrokenPipeError."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        discard_stdout()
        raise CharRNNError(f"could not write the sample to standard output ({error.strerror}); "
                           f"free space where it goes, or send it elsewhere") from None


def discard_stdout() -> None:
    """Standard output can take no more: send what is still buffered to nowhere, so that the flush
    at exit fails with no second error."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    utils.run_in_utf8_mode()
    utils.exit_without_teardown(main())
