"""Run directories and checkpoints, shared by train.py, plan.py, sample.py and export.py: where a
run lives on disk (save/<run>/ and the save directory's `latest`), the lock that keeps two trainers
off one run, saving checkpoints and restoring the newest one that loads, and TensorFlow's quiet
start-up.

TensorFlow objects are passed in, so importing this module stays free of TensorFlow: plan.py
checks everything it can before train.py pays for that import.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from utils import (OWNER_TAG, TORCH_CHECKPOINT, CharRNNError, atomic_write_text, check_path, left_by_gone_owner,
                   looked_in, read_json_object, run_of_checkpoint, shell_path)

if TYPE_CHECKING:  # for annotations only
    import tensorflow as tf

logger = logging.getLogger("charrnn")


def is_utf8_path(path: str) -> bool:
    """TensorFlow reads and writes checkpoints and logs only under UTF-8 paths; Python hands a
    name in another encoding (cp949 bytes, say) over as lone surrogates, which it cannot take."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# TensorFlow reads a checkpoint path with one of these as a glob pattern: a run named "r?" would
# restore, and CheckpointManager delete, the checkpoints of run "ry" beside it.
GLOB_CHARS = "*?[]" + ("" if os.name == "nt" else "\\")


def check_tf_path(path: str, flag: str, globbed: bool = True, name_room: int = 0) -> None:
    """Refuse a path that TensorFlow cannot take as it is: empty or too long (utils.check_path, with
    its name_room), not UTF-8, or with glob characters where TensorFlow globs it (checkpoints;
    summary writers do not)."""
    check_path(path, flag, name_room=name_room)
    if not is_utf8_path(path):
        raise CharRNNError(f"{flag} {path}: the path is not valid UTF-8 (a name in another encoding?); "
                           f"TensorFlow needs UTF-8 paths: rename it or choose another") from None
    if globbed and any(c in GLOB_CHARS for c in str(path)):
        raise CharRNNError(f"{flag} {path}: TensorFlow reads {' '.join(GLOB_CHARS)} in a checkpoint path as a "
                           f"pattern that can match other runs' files; choose a path without them (rename the folder)")


def resolve_run_dir(path: str, flag: str) -> Path:
    """A run directory, or a save directory whose `latest` file names its newest run."""
    check_tf_path(path, flag)
    run = Path(path)
    if run.name in ("", ".."):  # "." or "..": the run's name, and where `latest` goes, need the real one.
        run = run / ".." / Path(os.path.realpath(run)).name  # still relative: an absolute path may hold [ ] * ?
    if run.name == "latest" and run.is_file():  # the pointer file itself: the save directory it names a run of
        run = run.parent
    if run.suffix == ".t7" and run.is_file():
        raise CharRNNError(f"{flag} {path}: {TORCH_CHECKPOINT}.")
    if not run.exists() and Path(f"{run}.index").is_file():  # save/r/ckpt-3, a checkpoint of save/r
        owner = run_of_checkpoint(run)
        what = (f"pass its run, {flag} {owner}" if flag == "--init_from" else
                f"pass {flag} {owner} --checkpoint {run.relative_to(owner)}")
        raise CharRNNError(f"{flag} {path}: a checkpoint, not a run directory: {what}")
    if run.exists() and not run.is_dir():
        raise CharRNNError(f"{flag} {path}: is a file, not a run directory. Pass the directory that holds a "
                           f"run's config.json and checkpoints (save/<run name>), or the save directory itself.")
    if not run.is_dir():
        raise CharRNNError(f"{flag} {path}: no such directory{looked_in(run)}. Pass a run directory such as "
                           f"save/<run name>, or the save directory itself for the run that saved last; no run yet? "
                           f"Train one first: {script_command('train.py')} --data_dir data/tinyshakespeare")
    if (run / "config.json").is_file():
        check_tf_path(str(run), flag)  # "." may stand for a run named r[1]
        return run
    latest = run / "latest"
    if latest.is_file():
        try:
            name = read_latest(run)
        except (OSError, UnicodeDecodeError) as error:
            raise CharRNNError(f"{flag} {path}: its 'latest' file is unreadable ({error}); pass the run "
                               f"directory itself, e.g. {run}/<run name>") from None
        if named := run_named_by_latest(run, name):
            check_tf_path(str(run / named), flag)
            return run / named
        for named in names_in_latest(name):
            if without := without_config(run / named):
                raise CharRNNError(f"{flag} {path}: its 'latest' file names {name!r}: {without}")
        runs = _runs_newest_first(run)
        what = f"names {name!r}, which is no run (deleted?)" if name else "is empty"
        raise CharRNNError(f"{flag} {path}: its 'latest' file {what}. "
                           + (_pass_one_of(runs) if runs else "It holds no other run: train one first."))
    # Its pickles, or only its checkpoints (model.ckpt-N) where the pickles were not copied along.
    if (run / "config.pkl").is_file() or (run / "chars_vocab.pkl").is_file() or any(run.glob("model.ckpt-*")):
        raise CharRNNError(f"{flag} {path}: a save directory of char-rnn-tensorflow (TF1): its pickled config and "
                           f"TF1 checkpoints cannot be loaded here. Train again with train.py: the same flags work.")
    if run.name == "best" and (run.parent / "config.json").is_file():
        raise CharRNNError(f"{flag} {path}: the best-by-validation checkpoints of a run: pass the run directory, "
                           f"{flag} {run.parent}" + (" --checkpoint best" if flag == "--save_dir" else ""))
    if without := without_config(run):
        raise CharRNNError(f"{flag} {path}: {without}")
    if (run / ".lock").is_file():  # RunLock made it: training still before its first save, or killed then
        raise CharRNNError(f"{flag} {path}: no config.json: a run still before its first save, or one killed "
                           f"then (start it again with the command that created it), or not a training run.")
    runs = _runs_newest_first(run)
    if runs:  # a save directory whose `latest` was removed
        raise CharRNNError(f"{flag} {path}: a save directory without its 'latest' file. {_pass_one_of(runs)}")
    if any(run.glob("events.out.tfevents.*")):  # logs/<run>, or logs/<run>@<save dir's name>[-N] for a copy
        name, _, save = run.name.partition("@")
        # A copy's log name ends in -N where another log had its name, and so may the save directory's.
        guesses = [Path(folder) / name for folder in dict.fromkeys([save, re.sub(r"-[0-9]+$", "", save)]) if folder]
        guesses = guesses or [Path("save") / name]
        found = [guess for guess in guesses if (guess / "config.json").is_file()]
        where = (f"pass {found[0]}" if found else f"pass the run's folder in the --save_dir it was trained with "
                 f"(no run at {' or '.join(map(str, guesses))}{looked_in(guesses[0])})")
        raise CharRNNError(f"{flag} {path}: TensorBoard's events of a run, not its checkpoints, which are in its "
                           f"save directory: {where}")
    raise CharRNNError(f"{flag} {path}: not a training run (no config.json, and no 'latest' file naming "
                       f"a run). Pass a directory written by train.py, e.g. save/<run name>, or train one first.")


def without_config(run_dir: Path) -> str:
    """What to say of a folder that holds a run's checkpoints but not its config.json; "" of any other."""
    if not any(run_dir.glob("ckpt-*.index")) and not any((run_dir / "best").glob("ckpt-*.index")):
        return ""
    return (f"{run_dir} holds a run's checkpoints but not its config.json (deleted?), without which they cannot "
            f"be loaded: put it back from a copy or backup of the run, or train a new one")


def _runs_newest_first(save_dir: Path) -> list[Path]:
    try:
        return sorted((d for d in save_dir.iterdir() if (d / "config.json").is_file()),
                      key=lambda d: -d.stat().st_mtime)
    except OSError:  # a folder that can be entered but not listed: no runs to name
        return []


def _pass_one_of(runs: list[Path]) -> str:
    return f"Pass one of its runs, newest first: {', '.join(str(d) for d in runs[:5])}"


def ensure_writable(directory: Path, flag: str, named: Path | None = None) -> Path | None:
    """Create the directory or explain why it cannot be written, before hours of training.
    Returns the outermost directory it had to create (None: the directory existed). named: the
    path the flag gave, when directory is the folder it goes in."""
    directory = Path(directory)
    created = next((p for p in reversed([directory, *directory.parents]) if not p.exists()), None)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        remove_created(directory, created)  # what it made before the failure
        in_the_way = next((p for p in [directory, *directory.parents] if p.exists() and not p.is_dir()), None)
        dangling = next((p for p in [directory, *directory.parents] if p.is_symlink() and not p.exists()), None)
        typed = f"{flag} {named or directory}"
        if dangling is not None:  # mkdir says "File exists"
            raise CharRNNError(f"{typed}: {dangling} is a symbolic link to {os.readlink(dangling)}, which does not "
                               f"exist. Create that folder, or point the link at one that exists.") from None
        if in_the_way is not None:
            raise CharRNNError(f"{typed}: {'cannot create it, ' if named is None else ''}{in_the_way} is a file, not "
                               f"a folder. Choose another path.") from None
        raise CharRNNError(f"{typed}: cannot write {'there' if named is None else f'in {directory}'} "
                           f"({error.strerror}). Choose a directory you can write, or fix its permissions.") from None
    return created


def remove_created(directory: Path, outermost: Path | None, whole: bool = False) -> None:
    """Remove the directories from directory up to outermost, which ensure_writable created: each
    only while empty (someone may have written there meanwhile), except directory itself with
    whole, which goes with all it holds."""
    if outermost is None:
        return
    if whole:
        shutil.rmtree(directory, ignore_errors=True)
    for folder in [Path(directory), *Path(directory).parents]:
        try:
            folder.rmdir()
        except FileNotFoundError:  # never made, or gone already
            pass
        except OSError:  # not empty
            return
        if folder == outermost:
            return


def claim_new_dir(parent: Path, names: Iterable[str], flag: str) -> tuple[Path, Path]:
    """Create the first of names that parent does not hold yet. A plain mkdir, which one process
    alone wins, so that runs started together (a sweep) never share a directory. Returns it and
    the outermost directory made, for remove_created."""
    outermost = ensure_writable(parent, flag)
    for name in names:
        try:
            (parent / name).mkdir()
        except FileExistsError:  # taken, maybe a moment ago by a trainer started beside this one
            continue
        except OSError as error:
            remove_created(parent, outermost)
            raise CharRNNError(f"{flag} {parent}: cannot create {name} there ({error.strerror or error}). Choose a "
                               f"directory you can write, or fix its permissions.") from None
        return parent / name, outermost or parent / name
    raise ValueError("names ran out")  # callers pass an endless name-2, name-3, ...


def script_command(script: str) -> str:
    """How a message tells the user to run train.py or sample.py: by its name in the project folder,
    by its path from anywhere else (python /opt/char-rnn/train.py ... started from the corpus's folder)."""
    path = Path(__file__).resolve().parent / script
    try:
        here = Path(script).resolve() == path
    except OSError:
        here = False
    return f"python {script if here else shell_path(path)}"


# What train.py writes in a run directory (TensorFlow's saves in progress are ckpt-N_temp/).
# Where a copy to go on in (--init_from with --run_name or --save_dir) has not saved yet: its files
# are the source's, which a session killed then leaves behind; the same command makes it again.
UNSAVED_COPY = ".unsaved-copy"
RUN_FILES = ("config.json", "vocab.json", "checkpoint", "checkpoint.damaged", "ckpt-*", "best", UNSAVED_COPY)


def is_run_file(name: Path) -> bool:
    """Whether an entry of a directory, by its name, is one that train.py writes in a run."""
    return any(Path(name).match(pattern) for pattern in RUN_FILES)


_WINDOWS_LOCK_BYTE = 1 << 20


class RunBusy(CharRNNError):
    """The run is locked by another trainer."""


class SaveFailed(CharRNNError):
    """A checkpoint or the run files could not be written; failure says what and why, reason why
    alone, neither what to do next."""

    def __init__(self, what: str, reason: str, advice: str):
        self.failure, self.reason = f"{what} ({reason})", reason
        super().__init__(f"{self.failure}. {advice}")


class RunLock:
    """An exclusive lock on a run directory so that two trainers never write the same run.
    The operating system drops the lock when its process dies, so a stale lock file left by a
    killed trainer is simply taken over."""

    def __init__(self, run_dir: Path, flag: str):
        self.path = run_dir / ".lock"
        while True:
            self.created = ensure_writable(run_dir, flag)  # the outermost directory made for the run
            try:
                self.file = open(self.path, "a+", encoding="utf-8")
            except OSError as error:  # someone else's, read-only, or not a file
                remove_created(run_dir, self.created)
                raise CharRNNError(f"{self.path}: cannot open the run's lock file ({error.strerror}). If no "
                                   f"trainer is running on {run_dir}, remove it (it holds only a process id) or "
                                   f"fix its permissions") from None
            try:
                _lock_file(self.file)
            except OSError:
                self.file.seek(0)
                owner = self.file.read().strip() or "another process"
                self.file.close()
                raise RunBusy(f"{run_dir} is being trained by {owner}; wait for it to finish, stop it, "
                                   f"or train into another run (--run_name).") from None
            # A trainer that discarded its session removes the lock file (and maybe the directory)
            # under its lock: one opened just before locks nothing once it is gone. Start again.
            if _still_named(self.file, self.path):
                break
            self.file.close()
        try:  # who holds it, for the message above; the lock itself does not depend on this text
            self.file.seek(0)
            self.file.truncate()
            self.file.write(f"pid {os.getpid()}\n")
            self.file.flush()
        except OSError:  # a full disk: the save that follows will say so
            pass
        # Read under the lock (no trainer is writing): a run, or what is left of one (checkpoints
        # without config.json), which no session may discard.
        with os.scandir(run_dir) as entries:  # closed also where any() stops early
            self.held_run = any(is_run_file(Path(entry.name)) for entry in entries)

    def take_over_unsaved_copy(self) -> bool:
        """Remove what a copy to go on in left when its session was stopped before its first save
        (UNSAVED_COPY marks it: its files are its source's, no session trained them), so that a
        new copy goes there. Returns whether there was one."""
        run_dir = self.path.parent
        if not (self.held_run and (run_dir / UNSAVED_COPY).exists()):
            return False
        _remove_run_files(run_dir, keep=self.path)
        self.held_run = False
        return True

    def in_place(self) -> bool:
        """Whether the lock file is still the one in the run directory: not when the directory was
        deleted or moved (a save may have made it again since, without the lock file)."""
        return _still_named(self.file, self.path)

    def release(self, discard: bool = False) -> None:
        """Unlock. With discard (the session saved nothing), a directory that held no run before,
        a new run or a copy to go on in, loses what the session put there (all of it, and the
        directory, where the lock created it), so that no run that never was lingers and the same
        command can simply be run again. A run that was there stays as it was."""
        run_dir = self.path.parent
        if discard and not self.held_run:
            try:  # the lock last: no other trainer can take the run while it goes
                _remove_run_files(run_dir, keep=self.path, everything=bool(self.created))
                if os.name == "nt":  # Windows cannot delete an open file
                    self.file.close()
                self.path.unlink()
                remove_created(run_dir, self.created)
            except OSError as error:
                logger.warning("could not remove %s (%s), which holds no training", run_dir, error.strerror or error)
        self.file.close()


def _remove_run_files(run_dir: Path, keep: Path, everything: bool = False) -> None:
    """Delete the RUN_FILES in run_dir (every entry, with everything), but keep."""
    for path in run_dir.iterdir():
        if path == keep or not (everything or is_run_file(path)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def read_latest(save_dir: Path) -> str:
    """The name in save_dir's `latest` file, its line end gone (only that: see names_in_latest)."""
    return (save_dir / "latest").read_text(encoding="utf-8-sig").rstrip("\r\n")


def names_in_latest(name: str) -> list[str]:
    """What the name read from a `latest` file (its line end gone) may stand for: as written, else as
    a hand edit meant it (a name may begin or end with a space: " notes.txt" gives " notes-...")."""
    return [named for named in (name, name.strip()) if named]


def run_named_by_latest(save_dir: Path, name: str) -> str | None:
    """The run in save_dir that the name read from its `latest` file stands for; None where none is."""
    return next((named for named in names_in_latest(name) if (save_dir / named / "config.json").is_file()), None)


def point_latest(run_dir: Path) -> None:
    """Make the save directory's `latest` file name this run (written whole or not at all). Where it
    does already, as sample.py reads it, it is left as it is: a save directory made read-only around
    a run folder that stays writable stopped a resume at every first save."""
    latest = run_dir.parent / "latest"
    try:
        if run_named_by_latest(run_dir.parent, read_latest(run_dir.parent)) == run_dir.name:
            return
    except (OSError, UnicodeDecodeError):  # none yet, or unreadable: written below
        pass
    try:
        atomic_write_text(latest, run_dir.name + "\n")
    except OSError as error:
        fix = "free disk space" if error.errno in (errno.ENOSPC, errno.EDQUOT) else f"make {run_dir.parent} writable"
        raise CharRNNError(f"could not write {latest} ({error.strerror or error}); the checkpoints in {run_dir} "
                           f"are intact. Fix that ({fix}), then resume with --init_from {shell_path(run_dir)}") from None


def _still_named(handle, path: Path) -> bool:
    """Whether the open file is still the one at path (not removed, nor replaced, since it was opened)."""
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except OSError:
        return False


def _lock_file(handle) -> None:
    if os.name == "nt":
        import msvcrt
        # msvcrt locks from the file position, which "a+" leaves at the end: after a process id is
        # written, another process would lock another byte and succeed. One fixed byte for all,
        # beyond the text, so that reading who holds the lock is not blocked.
        os.lseek(handle.fileno(), _WINDOWS_LOCK_BYTE, os.SEEK_SET)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    else:
        import fcntl
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def save_checkpoint(manager: "tf.train.CheckpointManager", step: int, how_to_go_on: Callable[[], str]) -> None:
    """Save through a tf.train.CheckpointManager. TensorFlow writes the data under a temporary
    name and updates the `checkpoint` pointer last, so a failed or killed save leaves the
    previous checkpoint, if any, as the latest. A failed save's own files go (a model's worth of
    space, on a disk that may be full, and a warning at every resume); files of that step that
    were there before stay, since they may be a good checkpoint. how_to_go_on() ends the message (asked
    after the failure: the save may have failed because the run's folder went)."""
    def files_of_step() -> set[Path]:  # ckpt-N.index, ckpt-N.data-*, ckpt-N_temp/
        return set(Path(manager.directory).glob(f"ckpt-{step}[._]*"))

    before = files_of_step()
    try:
        manager.save(checkpoint_number=step)
    except Exception as error:  # OSError or tf.errors.OpError: disk full, permissions, ...
        for path in files_of_step() - before:
            try:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            except OSError:
                pass  # what cannot go stays: a resume skips a checkpoint that does not load
        # TensorFlow names its scratch file (ckpt-5_temp/part-00000-of-00001.data-00000-of-00001.
        # tempstate1006251219108375661; No space left on device): its folder says as much.
        reason = re.sub(r"^(\S*_temp)/\S*; ", r"\1: ", tf_error_reason(error))
        raise SaveFailed(f"could not save a checkpoint in {manager.directory}", f"{error.__class__.__name__}: {reason}",
                         f"Free disk space or fix the directory; {how_to_go_on()}") from None


def tf_error_reason(error: BaseException) -> str:
    """The first line of an error, without the op details TensorFlow wraps around the OS message
    ({{function_node ...}} ... [Op:SaveV2])."""
    text = str(error).splitlines()[0] if str(error) else error.__class__.__name__
    return re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]( name: ?)?", "", text)


def read_checkpoint_list(tf: ModuleType, directory: Path, set_aside: bool = False) -> list[str] | None:
    """The checkpoints that directory's `checkpoint` file lists, oldest first; None when there is
    no such file. A damaged one (empty, not UTF-8, unparsable) gives [] with a warning; with
    set_aside it is renamed checkpoint.damaged, since TensorFlow's CheckpointManager refuses to
    start on it (the checkpoint files themselves are then found by checkpoints_on_disk)."""
    pointer = Path(directory) / "checkpoint"
    if not pointer.exists():
        return None
    try:
        state = tf.train.get_checkpoint_state(str(directory))
        if state is not None:
            return list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    except (ValueError, UnicodeDecodeError, tf.errors.OpError):
        pass
    if set_aside:
        os.replace(pointer, pointer.with_name("checkpoint.damaged"))
    logger.warning("%s is damaged%s; looking for the checkpoint files themselves", pointer,
                   " (kept as checkpoint.damaged)" if set_aside else "")
    return []


def copy_run(source: Path, target: Path, own_args: dict) -> None:
    """Copy a run's files (vocabulary, checkpoints, best/) into target, a new run that goes on from
    them, and its config.json last with own_args (the copy's names) in place of the source's: a
    copy cut short is no run, and a whole one never names its source. Only RUN_FILES: what else the
    user keeps beside a run is not the run's, and a discarded copy is all RUN_FILES. Files that a
    trainer of source removes meanwhile are skipped (a `checkpoint` list that names one falls back
    to an older). UNSAVED_COPY marks it until its first save."""
    def to_copy(path: Path) -> bool:
        parts = path.relative_to(source).parts
        return (path.is_file() and parts != ("config.json",) and is_run_file(Path(parts[0]))
                and not any(part.endswith("_temp") for part in parts))  # saves in progress
    files = sorted(filter(to_copy, source.rglob("*")))
    copied = [target / UNSAVED_COPY]
    try:
        target.mkdir(parents=True, exist_ok=True)
        copied[0].touch()
        for path in files:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(path, destination)
            except FileNotFoundError:
                continue
            copied.append(destination)
        config = read_json_object(source / "config.json")
        config["args"].update(own_args)
        atomic_write_text(target / "config.json", json.dumps(config, indent=2, ensure_ascii=False))
    except OSError as error:  # the config itself was checked when the resume read it
        for path in copied:
            path.unlink(missing_ok=True)
        raise CharRNNError(f"could not copy {source} into {target} ({error.strerror or error}); {source} is "
                           f"unchanged. Free disk space or choose another --save_dir") from None


# atomic_write_text's temporary file, named by its process and host (no host: an older version's, on
# this host): one of this host whose process is gone was killed before its rename.
_STRANDED_WRITE = re.compile(rf"\.(?P<name>config|vocab|latest)(?:\.json)?\.{OWNER_TAG}\.tmp")


def remove_unfinished_saves(run_dir: Path) -> None:
    """Delete the ckpt-N_temp directories of saves killed mid-write: TensorFlow never lists them,
    and each can hold a partial copy of the weights; and the temporary copies of config.json and
    `latest` that such a kill left. Only call it while holding the RunLock."""
    for directory, names in ((Path(run_dir), ("config", "vocab")), (Path(run_dir).parent, ("latest",))):
        for tmp in directory.glob(".*.tmp"):
            written = _STRANDED_WRITE.fullmatch(tmp.name)
            if written and written["name"] in names and left_by_gone_owner(written):
                tmp.unlink(missing_ok=True)
    for directory in (Path(run_dir), Path(run_dir) / "best"):
        for temp in directory.glob("ckpt-*_temp"):
            if temp.is_dir():
                logger.info("removing %s, left by a save that was interrupted", temp)
                shutil.rmtree(temp, ignore_errors=True)


def checkpoints_on_disk(directory: Path) -> list[str]:
    """The ckpt-N prefixes in directory that have an index file, oldest first. This is what to
    try when the `checkpoint` file that lists them is missing or damaged: restore_checkpoint
    skips any that do not load (e.g. one whose save was killed before it was listed)."""
    return by_step([str(index)[:-len(".index")] for index in Path(directory).glob("ckpt-*.index")
                    if re.fullmatch(r"ckpt-\d+\.index", index.name)])


def checkpoint_step(prefix: str) -> int:
    """N of a checkpoint prefix ckpt-N; -1 for a name without a number (a hand-edited `checkpoint` list)."""
    number = re.search(r"-(\d+)$", prefix)
    return int(number.group(1)) if number else -1


def by_step(prefixes: list[str]) -> list[str]:
    """Checkpoint prefixes (ckpt-N), from one directory or several, lowest N first; a name
    without a number first of all."""
    return sorted(prefixes, key=checkpoint_step)


def resume_candidates(run_dir: Path, listed: list[str] | None) -> list[str]:
    """The checkpoints a run goes on from, oldest first for restore_checkpoint: those run_dir's
    `checkpoint` file lists (listed, from read_checkpoint_list), or without a readable list the
    files themselves (a damaged list, or training stopped before its first save completed:
    TensorFlow writes that file last); and best/'s files, which hold the whole state too, after the
    run's own at the same step. So a kill after an evaluation but before the next --save_every, or
    in the middle of a save, loses the least, and best/ serves when all the others are damaged."""
    return by_step(checkpoints_on_disk(Path(run_dir) / "best") + (listed or checkpoints_on_disk(run_dir)))


def restore_checkpoint(make_checkpoint: Callable[[str], "tf.train.Checkpoint"], candidates: list[str],
                       partial: bool = False, relist: Callable[[], list[str]] | None = None) -> str:
    """Restore the newest loadable checkpoint among candidates (oldest first), falling back to
    older ones when the newest is truncated or corrupt, and say so. Each try has a checkpoint of
    its own, made for the path it reads: one whose restore failed went on reading the failed files
    in the next try. relist: the candidates as they are now, for a reader of a run still training,
    which removes its older checkpoints as it saves: where one is gone, the newer ones saved since
    are tried before any older one (best/'s, say)."""
    failures = []
    pending, relists_left = list(candidates), 3 if relist is not None else 0
    while pending:
        path = pending.pop()
        status = None
        try:
            status = make_checkpoint(path).restore(path)
            status.assert_existing_objects_matched()  # every weight was in the file (not just no error)
            if partial:
                status.expect_partial()
        except Exception as error:  # tf.errors.OpError (truncated, checksum), ValueError (shapes)
            if status is not None:  # else TensorFlow warns of its unrestored values when it is freed
                status.expect_partial()
            gone = not Path(f"{path}.index").exists()  # a run still training removed it since it was listed
            newer = [c for c in relist() if checkpoint_step(c) > checkpoint_step(path)] if gone and relists_left else []
            if newer:
                relists_left -= 1
                logger.info("%s was removed by the run as it saved a newer one (it is training): loading that", path)
                pending = by_step(list(dict.fromkeys(pending + newer)))
                continue
            missing = re.findall(r"<tf\.Variable '([^':]+)", str(error)) if isinstance(error, AssertionError) else []
            reason = (f"it lacks weights the model has ({', '.join(sorted(set(missing)))})" if missing
                      else tf_error_reason(error))  # TensorFlow's own message spills each weight's values
            failures.append(f"{path}: {'its files are gone' if gone else reason}")
            if pending:  # an older one is left to try
                logger.warning("checkpoint %s cannot be loaded (%s); trying an older one", path, failures[-1])
            continue
        if failures:
            logger.warning("loaded %s, the newest checkpoint that loads", path)
        return path
    raise CharRNNError("no checkpoint loads: " + ("; ".join(failures).rstrip(".") if failures else "none found") +
                       ". The files are damaged, or another model's (other sizes or vocabulary than config.json "
                       "says): train again, or point at a run directory with good checkpoints.")


def pool_cpu_memory() -> None:
    """Have TensorFlow keep freed CPU buffers in its own pool (its BFC allocator) instead of
    handing each large one back to malloc. XLA asks for its scratch buffers afresh at every
    train step, and malloc serves big requests from new mmap'd pages that the kernel must fault
    in: 37 MiB (2x128) to 360 MiB (2x512, V=2,500) of page faults per step, and a train step
    5-16% slower (measured, EPYC Milan). TensorFlow reads the setting when it makes its first
    tensor, so this runs before any is made; a user's own TF_CPU_ALLOCATOR_USE_BFC wins."""
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a while: TensorFlow's C++ code writes to it directly,
    past Python's sys.stderr."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(quiet: bool = True) -> ModuleType:
    """Import TensorFlow, hiding the C++ start-up chatter (oneDNN, CUDA probing) that it writes
    to stderr before its own logging is set up, and its Python warnings: users should see our
    messages, not those.
    Python errors still surface normally once stderr is restored."""
    pool_cpu_memory()
    if not quiet:
        import tensorflow as tf
        return tf
    # 3 hides C++ ERROR lines too: after the import, oneDNN logs one for any integer transpose
    # outside XLA ("oneDNN supports DT_INT32 only on platforms with AVX-512", also on AVX-512
    # machines), which is no error. A failing op still raises a Python exception; --verbose
    # (quiet=False) shows every line.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stderr_silenced():
        import tensorflow as tf
        tf.config.list_physical_devices()  # the CUDA probe logs here, still silenced
    # TensorFlow's Python warnings too: a checkpoint of another model, refused with our one message,
    # would be followed at exit by a warning per unmatched value (25 lines for a tiny model).
    tf.get_logger().setLevel(logging.ERROR)
    return tf
