"""What every script shares, free of TensorFlow and of numpy's import (`np` here is numpy, run on
first use): the model kinds and size limits, the user's errors, signals, durations, the flags typed,
--help's format, path checks, atomic writes and logging. The data layer is dataset.py."""
from __future__ import annotations

import argparse
import atexit
import codecs
import difflib
import importlib.util
import itertools
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO, Callable, NoReturn


def _lazy_import(name: str):
    """Module `name`, registered in sys.modules but executed on its first attribute access
    (importlib's LazyLoader); one imported already is returned as it is. numpy's import costs
    0.1-0.2 s on a quiet machine and much more on a cold or slow disk, or where its BLAS starts
    threads for many cores: too much for --help."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


np = _lazy_import("numpy")  # `import numpy` elsewhere gets this same module

logger = logging.getLogger("charrnn")

# ----------------------------------------------------------------------------------------------
# Errors and small utilities

# The model's kinds (with the weight blocks per layer of each cell) and size limits: here, free of
# TensorFlow, so that plan.py checks train.py's flags and sample.py a saved config.json before
# either imports model.py.
GATES_PER_CELL = {"lstm": 4, "gru": 3, "rnn": 1}
MODEL_TYPES = tuple(GATES_PER_CELL)
MODEL_SIZE_LIMITS = {"num_layers": 64, "rnn_size": 16384, "embedding_size": 16384}


class CharRNNError(Exception):
    """A problem the user can fix (a bad flag, an unreadable corpus, too little text). The message
    names the file or flag, what is wrong and how to fix it; entry points log it and exit with 2."""


def run_in_utf8_mode() -> None:
    """Start this script again in Python's UTF-8 mode where the locale's encoding is another
    (LC_ALL=C with PYTHONUTF8=0, a ko_KR.EUC-KR system): file names are then UTF-8, as TensorFlow
    takes them, and a Hangul path gives no ascii error nor surrogate escapes in the messages. Only
    POSIX: Windows' file names are Unicode whatever the locale."""
    if (os.name == "posix" and not sys.flags.utf8_mode
            and codecs.lookup(sys.getfilesystemencoding()).name != "utf-8"):
        os.execv(sys.executable, [sys.executable, "-X", "utf8", *_argv_as_typed()[1:]])


def _argv_as_typed() -> list[bytes]:
    """The command line's bytes. Not sys.orig_argv encoded back: the locale's codec does not give
    every byte back (euc_kr reads the UTF-8 of 한 as '\udced\x95\x9c', and cannot write '\x95')."""
    try:
        with open("/proc/self/cmdline", "rb") as cmdline:  # Linux
            typed = cmdline.read().split(b"\0")[:-1]
        if len(typed) == len(sys.orig_argv):
            return typed
    except OSError:
        pass
    try:
        return [os.fsencode(arg) for arg in sys.orig_argv]
    except UnicodeEncodeError:
        sys.exit(f"error: the command line does not read back in the locale's encoding, "
                 f"{sys.getfilesystemencoding()}; set a UTF-8 locale (e.g. LC_ALL=C.UTF-8) and run it again")


def exit_without_teardown(status: int) -> NoReturn:
    """sys.exit(status) less the interpreter's teardown of TensorFlow: its modules' and C++
    libraries' destructors took 0.6-0.9 s at the end of every train.py and sample.py run
    (2026-12-07, a 2-core Xeon), time the user waits for nothing. What an exit must still do
    is done: atexit's handlers (logging's flush, TensorFlow's own, temporary folders' finalizers)
    and the flush of stdout and stderr. With TensorFlow not loaded, or a thread of ours still to
    wait for, the exit is Python's own. The stop signals are ignored from here on, as the script's
    work is done: a late Ctrl-C in atexit's handlers would turn a run that ended well into a
    traceback ("Exception ignored in ...") or a death by signal."""
    import threading  # here: only the end of a run needs it

    for late in stop_signals():
        signal.signal(late, signal.SIG_IGN)

    waiting = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if "tensorflow" not in sys.modules or waiting:
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe: Python's own exit says 120 when it cannot flush
            status = 120
    os._exit(status)


def stop_signals() -> tuple[int, ...]:
    """What stops a run (train.py saves first): Ctrl-C, SIGTERM (kill, a job scheduler), and SIGHUP
    (the terminal or SSH session closed); each unless the process started with it ignored, as
    nohup does with SIGHUP (the run outlives its terminal) and a shell with a background job's
    SIGINT. Windows has no SIGHUP."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return tuple(getattr(signal, n) for n in names
                 if hasattr(signal, n) and signal.getsignal(getattr(signal, n)) != signal.SIG_IGN)


def interrupt_on_signals() -> list[int]:
    """The stop_signals() raise KeyboardInterrupt, so that an entry point stops with a message and
    its cleanup runs. Returns the list of signals received: one that lands during an import reaches
    the entry point as that import's ImportError (numpy and TensorFlow wrap what their C extensions
    raise), which the list then tells from a broken install."""
    received: list[int] = []

    def interrupt(signum: int, _frame) -> None:
        received.append(signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in stop_signals():
        signal.signal(signum, interrupt)
    return received


def interrupted_status(error: BaseException, received: list[int]) -> int:
    """The shell's exit status for death by the signal that stopped start-up, 128 + its number (130:
    Ctrl-C): named by the KeyboardInterrupt (interrupt_on_signals', or train.py's loop's before
    its first step), else the first one received (one wrapped into an ImportError)."""
    name = str(error)
    if name in signal.Signals.__members__:
        return 128 + signal.Signals[name]
    return 128 + received[0] if received else 130


_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def is_plain_seconds(text: str) -> bool:
    """A duration typed as a bare number ('600'), which counts seconds."""
    return re.fullmatch(r"\d+(\.\d*)?", text.strip()) is not None


def check_seed(seed: int | None) -> None:
    """--seed (None: not given) as TensorFlow takes seeds: a signed 64-bit number."""
    if seed is not None and not -2**63 <= seed < 2**63:
        raise CharRNNError(f"--seed {seed}: must be from {-2**63} to {2**63 - 1} (a signed 64-bit number), "
                           f"e.g. --seed 42")


def parse_duration(text: str, flag: str) -> float:
    """'90s', '15m', '1h30m', '2h', '1.5h' or plain seconds ('600') -> seconds; flag names it in errors."""
    s = text.strip().lower()
    if is_plain_seconds(s):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d*)?)([dhms])", s)
    units = [unit for _, unit in parts]
    if (not parts or "".join(n + u for n, u in parts) != s
            or units != sorted(set(units), key="dhms".index)):  # each unit once, largest first
        raise CharRNNError(f"{flag} {text!r}: invalid duration: use seconds (600) or units, e.g. 90s, 15m, 1h30m, 2h")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def explicit_flags(parser: "ArgumentParser", argv: list[str]) -> set[str]:
    """Names of the flags the user typed, even with their default value (a resumed run keeps its
    saved values of the rest; an export names the sampling flags it does not use)."""
    shadow = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            if action.nargs == 0:
                shadow.add_argument(*action.option_strings, dest=action.dest, action="store_true")
            else:
                shadow.add_argument(*action.option_strings, dest=action.dest)
    return set(vars(shadow.parse_known_args(parser.old_abbreviations_whole(argv))[0]))


def read_json_object(path: Path) -> dict:
    """A JSON file the tool wrote as an object (config.json, vocab.json); ValueError when it is none."""
    # utf-8-sig: a file saved again by an editor that writes a byte-order mark (Windows Notepad) still reads.
    record = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def looked_in(path: Path) -> str:
    """Where a relative path that is not there was looked for (a default such as data/tinyshakespeare
    or save is there only in the project folder); nothing for an absolute one."""
    return "" if Path(path).is_absolute() else f" in {Path.cwd()}"


def check_working_directory(paths: list[str | None]) -> None:
    """Relative paths (the default save/ and logs/ among them) need the working directory: one
    deleted since the shell entered it made os.getcwd() fail in the middle of another message.
    paths: those the command uses (None: a flag not given)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        relative = [path for path in paths if path is not None and not os.path.isabs(path)]
        if relative:
            raise CharRNNError(f"the working directory no longer exists (deleted or moved since this shell entered "
                               f"it), and {relative[0]} is relative to it: cd to an existing folder and run the "
                               f"command again") from None


def permission_denied(error: PermissionError) -> str:
    """The message for a path the user may not read, or under a folder they may not enter: Python
    3.11's Path.exists() and is_file() raise this where later versions answer False."""
    return (f"{error.filename or 'a file or folder'}: permission denied; you may not read it, or enter a folder "
            f"above it. Fix the permissions, or choose another path")


def damage(error: Exception) -> str:
    """What is wrong with a JSON file the tool wrote, in words rather than Python's."""
    if isinstance(error, UnicodeDecodeError):
        for encoding in ("utf-16", "cp949"):  # saved again by an editor: Notepad's "Unicode" or "ANSI" (Korean)
            try:
                json.loads(error.object.decode(encoding))
            except (UnicodeDecodeError, ValueError):
                continue
            if encoding == "utf-16" and not error.object.startswith((b"\xff\xfe", b"\xfe\xff")):
                encoding = "utf-16le"  # as Python read it (iconv takes unmarked utf-16 as big-endian, and
                # glibc's refuses the name utf-16-le)
            lost = "" if encoding.startswith("utf") else (", unless the editor dropped characters cp949 lacks (jamo, "
                                                          "emoji), which then need a backup")
            from decoding import convert_command  # (decoding imports this module)
            return (f"not UTF-8 text but {encoding}, as an editor saves it again: convert it back, "
                    f"{convert_command(encoding)}, and put NEW in its place{lost}")
        return "not UTF-8 text"
    if isinstance(error, json.JSONDecodeError):
        # Python's own text may end in "at" (Invalid control character at): said once.
        return f"not JSON: {error.msg.removesuffix(' at')} at line {error.lineno}"
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} entry"
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


# karpathy/char-rnn's (Lua) flags whose meaning lives on under another name: the script and flag here.
CHAR_RNN_LUA_NAMES = {"learning_rate_decay": ("train.py", "--decay_rate"), "max_epochs": ("train.py", "--num_epochs"),
                      "eval_val_every": ("train.py", "--eval_every"), "checkpoint_dir": ("train.py", "--save_dir"),
                      "savefile": ("train.py", "--run_name"), "primetext": ("sample.py", "--prime"),
                      "length": ("sample.py", "-n")}
# Its flags that need nothing here, or have no match, and why.
CHAR_RNN_LUA_NEEDLESS = {
    **dict.fromkeys(("gpuid", "opencl"), "nothing to pass: a GPU is used where TensorFlow finds one "
                                         "(CUDA_VISIBLE_DEVICES= hides it)"),
    "decay_rate": "nothing to pass, the optimizer is Adam, not RMSprop (--decay_rate here is "
                  "-learning_rate_decay, the learning rate's decay per epoch)",
    "learning_rate_decay_after": "no such flag: --decay_rate decays the learning rate from the first epoch",
    "train_frac": "nothing to pass: all the text but --val_frac's is trained on (no test split)",
    "accurate_gpu_timing": "nothing to pass",
    "verbose": "nothing to pass: the text alone goes to stdout, messages to stderr (--verbose adds debug messages)",
}
# A karpathy/char-rnn checkpoint (cv/lm_lstm_epoch30.00_1.3950.t7), which sample.lua took as its argument.
TORCH_CHECKPOINT = ("a checkpoint of karpathy/char-rnn, in Torch, which cannot be loaded here: train again with "
                    "train.py, which answers karpathy/char-rnn's flags with the ones to use")
# Where a path typed alone (as karpathy/char-rnn's sample.lua took its checkpoint) goes here: (a file, a folder).
POSITIONAL_PATH_FLAGS = {"sample.py": ("--save_dir", "--save_dir"), "train.py": ("--input", "--data_dir")}

# sherjilozair/char-rnn-tensorflow's flags, which it also took typed in part (--batch for --batch_size).
CHAR_RNN_TENSORFLOW_FLAGS = {
    "train.py": ("--data_dir", "--save_dir", "--log_dir", "--save_every", "--init_from", "--model", "--rnn_size",
                 "--num_layers", "--seq_length", "--batch_size", "--num_epochs", "--grad_clip", "--learning_rate",
                 "--decay_rate", "--output_keep_prob", "--input_keep_prob"),
    "sample.py": ("--save_dir", "-n", "--prime", "--sample"),
}


class ArgumentParser(argparse.ArgumentParser):
    """A refused command line gets the one line that says what is wrong, a flag's right name for
    a typo (--rnn-size: --rnn_size), and where every flag is listed, not argparse's whole usage
    (22 lines for train.py) with the error after it."""

    def __init__(self, *args, sibling: tuple[str, Callable[[], argparse.ArgumentParser]] | None = None,
                 old_flags: tuple[str, ...] = (), **kwargs):
        """sibling: the other script and its parser, whose flags typed here are named as its own
        (--init_from given to sample.py is train.py's). old_flags: the old tool's, whose abbreviations
        keep their meaning where a new flag made them ambiguous."""
        super().__init__(*args, **kwargs)
        self.sibling, self.old_flags = sibling, old_flags

    def parse_known_args(self, args: list[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self.words = self.old_abbreviations_whole(list(sys.argv[1:] if args is None else args))
        self._refuse_sibling_abbreviations()
        parsed, extras = super().parse_known_args(self.words, namespace)
        # Python 3.11's argparse drops the value of --prime=-- as the end of the flags, which leaves
        # an empty list (a traceback further on): the value is "--", as typed.
        for action in self._actions:
            if action.option_strings and action.nargs is None and getattr(parsed, action.dest, None) == []:
                try:
                    value = self._get_value(action, "--")  # its type's check, and its choices'
                    self._check_value(action, value)
                except argparse.ArgumentError as error:
                    self.error(str(error))
                setattr(parsed, action.dest, value)
        return parsed, extras

    def old_abbreviations_whole(self, words: list[str]) -> list[str]:
        """words with each flag typed in part that the old tool read as one of its flags (--batch:
        --batch_size) but that is ambiguous here (--batch_groups) written whole, so that an old
        command line keeps its meaning."""
        ours, whole = _flags(self), []
        for index, word in enumerate(words):
            if word == "--":
                return whole + words[index:]
            flag, equals, value = word.partition("=")
            old = [name for name in self.old_flags if name.startswith(flag)]
            # Not where a flag of ours that begins so is itself the old one's start (--inp: --input,
            # the corpus here, as likely meant as --input_keep_prob): that stays ambiguous.
            new = [name for name in ours if name.startswith(flag) and name not in self.old_flags]
            if flag.startswith("--") and flag not in ours and len(old) == 1 and new and \
                    not any(old[0].startswith(name) for name in new):
                word = old[0] + equals + value
            whole.append(word)
        return whole

    def _refuse_sibling_abbreviations(self) -> None:
        """argparse takes a flag typed in part for the whole one, so sample.py's --sample given to
        train.py ran a whole training as --sample_length: a flag of the sibling typed whole is
        refused as the sibling's, though it abbreviates one of ours (ours typed in part still work)."""
        if self.sibling is None:
            return
        ours = _flags(self)
        for word in itertools.takewhile(lambda word: word != "--", self.words):
            flag = word.split("=")[0]
            meant = [our for our in ours if our.startswith(flag)]
            if flag.startswith("--") and flag not in ours and meant and flag in _flags(self.sibling[1]()):
                alike = f" (or did you mean {meant[0]}?)" if len(meant) == 1 else ""
                self.error(f"{flag} is a flag of {self.sibling[0]}, not of {self.prog}{alike}")

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments:"):
            flags = _flags(self)
            typed = [word for word in message.split(":", 1)[1].split() if re.match(r"--?[A-Za-z]", word)]
            # Compared by their letters alone: --rnn-size is --rnn_size, --nsamples --num_samples (not --sample).
            letters = lambda flag: flag.split("=")[0].replace("-", "").replace("_", "")
            by_letters = {letters(flag): flag for flag in flags}
            flag_of = lambda word: word.split("=")[0]  # -primetext=x: -primetext
            lua_here = {name: flag if script == self.prog else f"{script} {flag}"
                        for name, (script, flag) in CHAR_RNN_LUA_NAMES.items()} | CHAR_RNN_LUA_NEEDLESS
            sibling_flags = _flags(self.sibling[1]()) if self.sibling is not None else []
            # Not a flag of the other script typed whole: --decay_rate to sample.py is train.py's, not
            # karpathy/char-rnn's -decay_rate (RMSprop's).
            lua = {word: lua_here[name] for word in typed if (name := flag_of(word).lstrip("-")) in lua_here
                   and flag_of(word) not in sibling_flags}
            hint = "".join(f" ({flag_of(word)} is karpathy/char-rnn's; here: {here})" for word, here in lua.items())
            paths = [word for word in message.split(":", 1)[1].split()
                     if not word.startswith("-") and self.prog in POSITIONAL_PATH_FLAGS and os.path.exists(word)]
            hint += "".join(f" ({positional_path_hint(self.prog, path)})" for path in paths[:1])
            close = {word: difflib.get_close_matches(letters(word), by_letters, n=1, cutoff=0.75) for word in typed
                     if word not in lua}
            hint += "".join(f" ({word}: did you mean {by_letters[found[0]]}?)" for word, found in close.items() if found)
            if self.sibling is not None:
                hint += "".join(f" ({flag_of(word)} is a flag of {self.sibling[0]}, not of {self.prog})"
                                for word, found in close.items() if not found and flag_of(word) in sibling_flags)
        elif message.endswith(": expected one argument"):  # also for a value that looks like a flag: --time_budget -5m
            names = message.split(":")[0].split()[-1].split("/")  # "-n/--n"
            words, flags = getattr(self, "words", []), set(_flags(self))

            def names_it(word: str) -> bool:  # as typed: maybe abbreviated (--time_bud)
                return word in names or (word.startswith("--") and any(n.startswith(word) for n in names))

            if any(names_it(word) and value.startswith("-") and value.split("=")[0] not in flags
                   for word, value in zip(words, words[1:])):
                hint = f" (a value that starts with '-' goes after '=': {names[-1]}=-...)"
        self.exit(2, f"{self.prog}: error: {message}{hint}\nusage: python {self.prog} [flags]; "
                     f"python {self.prog} --help lists every flag with its default\n")


def run_of_checkpoint(path: Path) -> Path:
    """The run folder a checkpoint's file or prefix would belong to: save/r for save/r/ckpt-3 and for
    save/r/best/ckpt-3.index."""
    return path.parent.parent if path.parent.name == "best" else path.parent


def positional_path_hint(script: str, path: str) -> str:
    """The flags that take a path typed alone, as karpathy/char-rnn's sample.lua took its checkpoint
    file: a run's folder, or a file in it (save/<run>/ckpt-3.index), is the run to go on from for
    train.py, and the run and checkpoint to sample for sample.py."""
    if path.endswith(".t7"):
        return TORCH_CHECKPOINT
    file = Path(path)
    run_dir = run_of_checkpoint(file)
    if file.is_dir() and (file / "config.json").is_file():
        run_dir = file
    elif not (file.is_file() and (run_dir / "config.json").is_file()):
        return f"a path is passed with {POSITIONAL_PATH_FLAGS[script][file.is_dir()]} {path} here"
    if script == "train.py":
        return f"a run to go on from is passed as --init_from {run_dir}"
    checkpoint = re.fullmatch(r"(ckpt-\d+)\.(index|data-\d+-of-\d+)", file.name)
    which = None if run_dir == file else "best" if file.parent.name == "best" else checkpoint and checkpoint[1]
    return f"a run is passed as --save_dir {run_dir}" + (f", a checkpoint of it with --checkpoint {which}"
                                                          if which else "")


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string of parser (--rnn_size, -n, --n, ...), in the order they were added."""
    return [flag for action in parser._actions for flag in action.option_strings]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every default; where the help text gives it in words, "(default: None)" is not added."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if "(default:" in (action.help or "") else super()._get_help_string(action)


# What file systems allow: ext4, NTFS and APFS all stop a name at 255 bytes (or UTF-16 units).
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4095


def check_path(path: str, flag: str, room: int = 0, name_room: int = 0) -> None:
    """Refuse a path that no file system takes: empty, a name in it too long (its last with
    name_room bytes more, for the names written beside it: ckpt-3 -> ckpt-3.index), or too long
    in all with room bytes more for what is written below it. Checked up front, since the
    operating system's own refusal comes as a traceback, or mid-run."""
    if not str(path):
        raise CharRNNError(f"{flag} '': an empty path; name a file or directory, or leave the flag out")
    if re.match(r"[A-Za-z][\w+.-]+://", str(path)):  # pathlib folds gs://b/x into a local folder gs:/b/x
        raise CharRNNError(f"{flag} {path}: a URL; this tool reads and writes files on this machine: use a local "
                           f"path (or a bucket mounted as a folder, e.g. with gcsfuse), and copy it there with the "
                           f"bucket's own tool (gsutil rsync, aws s3 sync)")
    try:
        size = len(os.fsencode(path))
        longest = max(len(os.fsencode(part)) for part in Path(path).parts) if Path(path).parts else 0
        last = len(os.fsencode(Path(path).name))
    except UnicodeEncodeError:  # not representable here at all: the call that opens it says so
        return
    name_too_long = longest > NAME_MAX_BYTES or last + name_room > NAME_MAX_BYTES
    if name_too_long or size + room > PATH_MAX_BYTES:
        if longest > NAME_MAX_BYTES:
            what = f"a name in it is {longest} bytes long"
        elif name_too_long:
            what = f"its last name is {last} bytes long, and the names made from it add {name_room}"
        else:
            what = f"it is {size} bytes long" + (f", and the files written in it add up to {room}" if room else "")
        limit = f"{NAME_MAX_BYTES} bytes per name" if name_too_long else f"{PATH_MAX_BYTES} bytes in all"
        raise CharRNNError(f"{flag} {clip_name(str(path), 60)}...: {what}; file systems allow at most {limit}. "
                           f"Choose a shorter path")


def clip_name(name: str, max_bytes: int) -> str:
    """name cut to at most max_bytes of UTF-8 (or of the file system's encoding), never mid-character."""
    name = name[:max_bytes]  # no character is shorter than a byte
    while len(os.fsencode(name)) > max_bytes:
        name = name[:-1]
    return name


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text so that a reader sees the old file or the new one, never a torn one.
    A file name that is not UTF-8 (a cp949 name from a Windows archive) reaches the JSON files
    as lone surrogates, which backslashreplace writes as JSON's own \\udcXX escape: read back,
    the same path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{owner_tag()}.tmp")  # see runs.remove_unfinished_saves
    try:
        with open(tmp, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def owner_tag() -> str:
    """This process as the temporary files and folders it makes name it: pid@host. A killed process
    leaves them behind, and the next one that finds them asks left_by_gone_owner."""
    return f"{os.getpid()}@{socket.gethostname()}"


# owner_tag() within a temporary name, for its regular expression. No host: an older version's name.
OWNER_TAG = r"(?P<pid>\d+)(?:@(?P<host>.*))?"


def left_by_gone_owner(owner: re.Match | None) -> bool:
    """Whether a temporary name (matched with OWNER_TAG in it) was left by a process of this host
    that is gone: a build or write killed midway. No host: this host's, as older versions named
    them. (Another host's, on a shared file system, is never taken for gone.)"""
    return owner is not None and owner["host"] in (None, socket.gethostname()) and not pid_alive(int(owner["pid"]))


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has that id (another user's counts). An id no process can
    have (0, or past pid_t's 31 bits on POSIX, where os.kill raises OverflowError; past 32 on
    Windows) is taken for alive: not ours to judge."""
    if not 0 < pid < 2 ** (32 if os.name == "nt" else 31):
        return True
    if os.name == "nt":  # where os.kill(pid, 0) would terminate the process
        import ctypes
        from ctypes import wintypes
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # the error as of the call, not a later one
        kernel32.OpenProcess.restype = wintypes.HANDLE
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: there, but another user's
        try:
            exit_code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(exit_code))
            return exit_code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def fill_closed_std_streams() -> None:
    """Started with stdout or stderr closed (>&-, 2>&-), a process would hand that descriptor to
    the next file it opens, and TensorFlow's C++ log lines, written to descriptor 2, would land in
    a checkpoint. Put the null device there instead; with stderr closed the messages go nowhere
    (sys.stdout stays None: sample.py refuses to write a sample nowhere)."""
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)


def say_from_signal_handler(message: str) -> None:
    """A line on stderr from a signal handler, which may run in the middle of a logging call on the
    same stream: written to the file descriptor itself (re-entering the stream lost text), formatted
    by setup_logging's formatter (formatting takes no lock)."""
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, None, None)
    line = logger.handlers[0].format(record) if logger.handlers else message
    try:
        os.write(2, f"{line}\n".encode("utf-8", "backslashreplace"))
    except OSError:  # stderr closed, or a full pipe: the stop goes on unsaid
        pass


def shell_path(path: str | Path) -> str:
    """A path as it must be typed in a shell command that a message suggests (spaces, quotes)."""
    if str(path).startswith("-"):  # else the command line reads it as a flag
        path = os.path.join(".", path)
    if os.name == "nt":
        import subprocess
        return subprocess.list2cmdline([str(path)])
    import shlex
    return shlex.quote(str(path))


def awake_seconds() -> float:
    """A clock in seconds that stands still while the machine sleeps, for --time_budget and the time
    left: a laptop asleep through the night did not train. time.monotonic() is one on Linux and
    macOS; on Windows it counts the sleep too (GetTickCount64), and the unbiased interrupt time does
    not (100 ns units)."""
    if os.name != "nt":
        return time.monotonic()
    import ctypes
    ticks = ctypes.c_ulonglong()
    ctypes.windll.kernel32.QueryUnbiasedInterruptTime(ctypes.byref(ticks))
    return ticks.value / 1e7


def is_live_terminal(stream: IO) -> bool:
    """Whether a line can be redrawn in place on stream: a terminal that understands escape codes
    (not TERM=dumb, as Emacs' shell and some CI consoles say, which show them raw). A Windows console
    shows them once asked to; where it cannot be, the lines are plain."""
    if not stream.isatty() or os.environ.get("TERM") == "dumb":
        return False
    return os.name != "nt" or _windows_escape_codes_on(stream)


def _windows_escape_codes_on(stream: IO) -> bool:
    """Turn on escape codes in the Windows console that stream writes to (Windows Terminal has them
    on; the console window of Windows 10 showed ←[K on every line), and say whether they are on."""
    import ctypes
    import msvcrt
    from ctypes import wintypes
    enable_virtual_terminal_processing = 0x0004
    try:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.GetConsoleMode.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
        kernel32.SetConsoleMode.argtypes = [wintypes.HANDLE, wintypes.DWORD]
        handle, mode = msvcrt.get_osfhandle(stream.fileno()), wintypes.DWORD()
        if not kernel32.GetConsoleMode(handle, ctypes.byref(mode)):  # not a console: a pipe, say
            return False
        return bool(mode.value & enable_virtual_terminal_processing or
                    kernel32.SetConsoleMode(handle, mode.value | enable_virtual_terminal_processing))
    except (OSError, ValueError):  # no such console function (an old Windows), a closed stream
        return False


def stderr_in_utf8() -> None:
    """stderr speaks UTF-8 whatever the locale or PYTHONIOENCODING, so Korean in a message stays
    readable and a redirected stderr is in one encoding: first thing, since argparse's refusals
    come before logging is set up (a stream that is no file, as in a notebook or under
    redirect_stderr, takes text as it is)."""
    fill_closed_std_streams()
    if hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")


def setup_logging(verbose: bool) -> None:
    """Our messages on stderr (in UTF-8) with a time stamp; other libraries' INFO chatter stays hidden."""
    stderr_in_utf8()
    for old in logger.handlers[:]:  # a second main() in one process (tests, notebooks) logs each line once
        logger.removeHandler(old)
    handler = logging.StreamHandler()
    clear_line = "\r\x1b[K" if is_live_terminal(sys.stderr) else ""  # train.py's live progress line
    handler.setFormatter(logging.Formatter(clear_line + "%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
