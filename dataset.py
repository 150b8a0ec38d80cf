"""Data layer: any text corpus -> cached ids (.npy) + vocabulary (vocab.json) -> training batches.

    files --2 MiB binary chunks--> incremental decode, cut at a safe boundary
          --> drop BOM, CRLF/CR -> LF, NFC --> [jamo] --> uint32 code points
    pass 1: count code points, write provisional ids (order of first appearance) to a temp file
    vocab:  sort by frequency; --max_vocab / --min_char_count map rare characters to one unknown symbol
    pass 2: remap provisional ids to final ids -> ids.npy (uint16; uint32 past 65,535 symbols)

Memory stays at a few chunks whatever the corpus size, and the text is decoded only once (twice for a
text of over 65,535 distinct symbols, whose provisional ids outgrow uint16). The result
is cached next to the corpus (<dir>/.prepared/<key>/), keyed by the files' identity and every option
that changes the ids. Training opens ids.npy with np.memmap.

This module must not import TensorFlow: plan.py checks the data before train.py pays for that import.
Nor does importing it run numpy's import (see utils._lazy_import): train.py and sample.py import it at
their top, and their --help should cost the standard library only.
"""
from __future__ import annotations

import codecs
import collections
import dataclasses
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import hangul
from decoding import (check_byte_order, check_decoded_text, check_looks_like_text, check_no_nul, decode_error,
                      unmarked_error)
from utils import (OWNER_TAG, CharRNNError, atomic_write_text, damage, left_by_gone_owner, logger, looked_in, np,
                   owner_tag, read_json_object)


# ----------------------------------------------------------------------------------------------
# Reading and normalizing text


@dataclass(frozen=True)
class DataOptions:
    """Every option that changes the ids, and so part of the cache key."""
    encoding: str = "utf-8"      # of the corpus files; the text is always handled as Unicode
    normalize: str = "nfc"       # nfc | none (line ends and the BOM are normalized either way)
    unit: str = "char"           # char | jamo (Hangul syllables split into conjoining jamo)
    max_vocab: int = 0           # 0 = unlimited; else at most this many symbols, unknown symbol included
    min_char_count: int = 1      # characters seen fewer times map to the unknown symbol

    def __post_init__(self) -> None:
        try:
            codec = codecs.lookup(self.encoding)
        except LookupError:
            raise CharRNNError(f"--encoding {self.encoding}: unknown encoding "
                               "(examples: utf-8, cp949, euc-kr, utf-16, latin-1)") from None
        try:  # rot13, hex, zlib, 'undefined' ... are codecs but not text encodings of bytes
            if (not codec._is_text_encoding or "\n".encode(codec.name).decode(codec.name) != "\n"
                    or not "\n".encode(codec.name, errors="ignore")):  # idna takes no error handler: raises
                raise LookupError
        except (LookupError, UnicodeError):
            raise CharRNNError(f"--encoding {self.encoding}: not a text encoding "
                               "(examples: utf-8, cp949, euc-kr, utf-16, latin-1)") from None
        object.__setattr__(self, "encoding", codec.name)  # 'UTF8', 'utf_8' -> 'utf-8': one cache key
        if self.normalize not in ("nfc", "none"):
            raise CharRNNError(f"--normalize {self.normalize}: use nfc or none")
        if self.unit not in ("char", "jamo"):
            raise CharRNNError(f"--unit {self.unit}: use char or jamo")
        if self.max_vocab != 0 and self.max_vocab < 2:
            raise CharRNNError(f"--max_vocab {self.max_vocab}: use 0 (no limit) or at least 2")
        if self.min_char_count < 1:
            raise CharRNNError(f"--min_char_count {self.min_char_count}: use 1 (keep all) or more")


def _text_files(root: Path) -> tuple[list[Path], list[str]]:
    """Every .txt file below root (.TXT too, as Windows names them), in sorted order: linked folders
    are followed (each real folder read once, so a link loop ends), hidden folders such as the
    .prepared cache skipped. And what would leave text out unseen: a folder that cannot be read, a
    .txt name that is a link to nothing or not a regular file."""
    files, seen, broken = [], set(), []

    def unreadable(error: OSError, folder: str | None = None) -> None:
        broken.append(f"cannot read the folder {folder or error.filename} ({error.strerror or error}), so its text "
                      f"would be left out; make it readable, or move it out of {root}")

    for folder, subfolders, names in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        # Sorted, so that which of two links to one folder is walked is the same on every machine, and
        # the files' order (and the validation split) on every machine of a platform (below).
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in names:
            path = Path(folder) / name
            if not name.lower().endswith(".txt") or name.startswith("."):
                continue
            try:
                regular = path.is_file()
            except PermissionError as error:  # a folder that may be listed but not entered (mode 744)
                unreadable(error, folder)
                break
            if regular:
                files.append(path)
            else:
                broken.append(f"{path} is {_not_a_file(path)}; put the text in a regular file, or remove it")
    # By the platform's rules, as before: Windows' ignore case, so a folder of Chapter1.txt and appendix.txt is
    # read in another order there (a run resumed on another platform is told its validation text changed).
    return sorted(files, key=lambda path: path.relative_to(root)), broken


def _not_a_file(path: Path) -> str:
    """What a path that is there but is no regular file is."""
    if path.is_symlink() and not path.exists():
        return "a link to nothing (its target is gone)"
    return "a directory" if path.is_dir() else "not a regular file (a pipe or a device?)"


def resolve_corpus(data_dir: str | None, input_path: str | None) -> list[Path]:
    """The corpus files: --input FILE or DIR, or --data_dir DIR (DIR/input.txt if it exists, as in
    char-rnn-tensorflow, else every .txt below DIR, see _text_files)."""
    if data_dir and input_path:
        raise CharRNNError("pass either --data_dir or --input, not both")
    if not data_dir and not input_path:
        raise CharRNNError("no corpus: pass --data_dir DIR (with input.txt or .txt files) or --input FILE")
    flag, where = ("--input", input_path) if input_path else ("--data_dir", data_dir)
    root = Path(where).expanduser()
    named = root / "input.txt"
    if root.is_file():
        files = [root]
    elif not root.is_dir():
        if root.exists() or where == "-":  # a pipe (--input /dev/stdin, <(...), - for standard input), a device
            what = "standard input is no corpus" if where == "-" else "not a regular file or a directory"
            raise CharRNNError(f"{flag} {where}: {what}. The text is prepared once into "
                               f"a cache beside it and read again each epoch, which a pipe cannot be: save it to a "
                               f"file first (... > corpus.txt) and pass that")
        # char-rnn-tensorflow took --input for its only flag that starts so: --input_keep_prob.
        old = " (char-rnn-tensorflow read --input as --input_keep_prob: type that whole)" if (
            flag == "--input" and re.fullmatch(r"[0-9.]+", where)) else ""
        raise CharRNNError(f"{flag} {where}: no such file or directory{looked_in(root)}{old}")
    elif flag == "--data_dir" and os.path.lexists(named):
        if not named.is_file():  # never the other .txt files instead, unseen
            raise CharRNNError(f"{flag} {where}: its input.txt is {_not_a_file(named)}; put the text in a regular "
                               f"file {named}, or pass --input FILE")
        files = [named]
        others = len(_text_files(root)[0]) - 1
        if others:  # a user who added text files beside it may expect them read too
            logger.warning("--data_dir %s: reading input.txt only, as char-rnn-tensorflow did; the %d other .txt "
                           "file(s) in and below it are left out (pass --input %s to read every .txt file)",
                           where, others, where)
    else:
        files, broken = _text_files(root)
        if broken:
            raise CharRNNError(f"{flag} {where}: {broken[0]}")
        if not files:
            raise CharRNNError(f"{flag} {where}: no .txt files in this directory "
                               f"(put the text in {named} or pass --input FILE)")
    if all(p.stat().st_size == 0 for p in files):
        what = (f"all {len(files)} .txt files are empty" if len(files) > 1 else
                "empty" if root.is_file() else f"its {files[0].relative_to(root)} is empty")
        raise CharRNNError(f"{flag} {where}: {what}; a corpus needs some text")
    return files


_READ_BYTES = 2 << 20  # big enough that per-chunk overhead vanishes, small enough to bound memory
# Counted by sorting below this many code points: a folder of many small files, where bincount's array
# outgrows each file's text (5,000 files with an emoji: their preparation 1.77 s by bincount, 0.40 s so).
_SMALL_CHUNK = 1 << 16
_PROGRESS_SECONDS = 5.0


def _normalize(text: str, normalize: str) -> str:
    """CRLF and lone CR -> LF, no byte-order marks, then NFC unless normalize == 'none'."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _without_byte_order_marks(text)
    return unicodedata.normalize("NFC", text) if normalize == "nfc" else text


def _without_byte_order_marks(text: str) -> str:
    """A file's first marks its encoding; others come from files that each began with one, joined
    (cat a.txt b.txt): invisible characters a model would learn and write."""
    return text.replace("\ufeff", "") if "\ufeff" in text else text


def _safe_cut(text: str) -> int:
    """Where to cut decoded text so that normalizing both parts separately equals normalizing the
    whole: after the last line break, else before the last starter (combining class 0) that
    normalization never ties to what precedes it (see _no_cut_before), such as an ASCII letter, a
    Hangul syllable or a CJK ideograph: nothing reorders or composes across it (and a CR can't end the first part
    while its LF starts the second, because there is no LF). 0 means there is no safe place yet:
    read more."""
    cut = text.rfind("\n") + 1
    if cut:
        return cut
    for i in range(len(text) - 1, 0, -1):
        c = text[i]
        if c < "\x80" or "\uac00" <= c <= "\ud7a3" or (
                not unicodedata.combining(c) and c not in _no_cut_before()):
            return i
    return 0


@functools.lru_cache(maxsize=None)
def _no_cut_before() -> frozenset[str]:
    """Starters that normalization can still tie to the text before them: the second half of every
    two-part canonical decomposition and the Hangul vowel and final jamo (composition joins them
    backwards), and those whose decomposition begins with a mark (U+0F73: the mark is reordered
    with the marks before it). Built on first use (a pass over all code points, ~0.3 s): only
    text without line breaks needs it."""
    chars = {chr(c) for c in [*range(0x1161, 0x1176), *range(0x11A8, 0x11C3)]}
    decomposable = [chr(cp) for cp in range(0x110000) if unicodedata.decomposition(chr(cp))[:1] not in ("", "<")]
    for c in decomposable:
        decomposition = unicodedata.decomposition(c).split()
        if len(decomposition) == 2:
            chars.add(chr(int(decomposition[1], 16)))
    for c in decomposable:  # a decomposition that begins with a mark, or with a second half itself
        first = unicodedata.normalize("NFD", c)[0]
        if unicodedata.combining(first) or first in chars:
            chars.add(c)
    return frozenset(chars)


def _read_text(path: Path, options: DataOptions, progress: Callable[[int], None],
               other_files: int = 0) -> Iterator[str]:
    """Yield one file as normalized text pieces, reading a bounded chunk at a time (other_files: how
    many more the corpus has, for the advice on a file in another encoding)."""
    decoder = codecs.getincrementaldecoder(options.encoding)("strict")
    carry, offset, at_start, at_end, tail = "", 0, True, False, b""
    extra_bytes = 0  # bytes the characters so far took beyond one each: under UTF-8, its non-ASCII text
    with open(path, "rb") as f:
        while not at_end:
            try:
                data = f.read(_READ_BYTES)
            except OSError as error:  # a read error (a failing disk, a stale NFS handle) names no file: this one
                raise OSError(error.errno, error.strerror, str(path)) from None
            if offset == 0:
                check_looks_like_text(path, data, options.encoding, other_files)
            else:
                check_no_nul(path, data, offset, options.encoding, before=tail)
            check_byte_order(path, data, offset, options.encoding)
            held = decoder.getstate()[0]  # bytes of a character cut by the previous read
            pending = len(held)
            at_end = not data
            try:
                text = decoder.decode(data, final=at_end)
            except UnicodeDecodeError as e:
                # e.start counts from the held bytes, which the previous read counted as extra: again here.
                good = (held + data)[:e.start]
                extra_bytes += len(good) - len(good.decode(options.encoding, "ignore")) - pending
                raise decode_error(path, options.encoding, offset - pending + e.start, other_files,
                                    extra_bytes, truncated=at_end) from None
            except UnicodeError as e:  # no position: "UTF-16 stream does not start with BOM", at the start
                raise unmarked_error(path, options.encoding, e, data, offset - pending, other_files,
                                     extra_bytes) from None
            extra_bytes += len(data) - len(text)
            text = _without_byte_order_marks(text)  # before the cut: one there would keep a mark from its letter
            if at_start and text:
                at_start = False
                check_decoded_text(path, text, options.encoding, other_files)
            offset += len(data)
            progress(len(data))
            tail = data[-32768:]
            del data  # only one chunk's worth of text is alive at a time
            text = carry + text
            cut = len(text) if at_end else _safe_cut(text)
            text, carry = text[:cut], text[cut:]
            if text:
                yield _normalize(text, options.normalize)


# ----------------------------------------------------------------------------------------------
# Vocabulary

_UNKNOWN = "\ufffd"  # how the unknown symbol prints; a real U+FFFD in the text merges into it
_VOCAB_FORMAT = 1


def describe_chars(chars: list[str], limit: int) -> str:
    """The first `limit` characters as 'x' (U+0078), for messages about characters."""
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars[:limit]) + (", ..." if len(chars) > limit else "")


def _distinct_chars(code_points: np.ndarray) -> list[str]:
    return list(dict.fromkeys(chr(c) for c in code_points))


class Vocab:
    """Symbols (characters, or jamo for unit='jamo') sorted by frequency; id = index in symbols."""

    def __init__(self, symbols: list[str], counts: list[int], unk_id: int | None = None,
                 unit: str = "char", normalize: str = "nfc") -> None:
        self.symbols, self.counts, self.unk_id = list(symbols), [int(c) for c in counts], unk_id
        self.unit, self.normalize = unit, normalize
        self.code_points = np.array([ord(s) for s in self.symbols], dtype=np.uint32)  # of each id
        self._sorted = np.argsort(self.code_points)
        # True where a symbol starts an original character: bits per character must not depend
        # on the unit, so a syllable's vowel and final jamo are not counted as characters.
        self.char_starts = (~hangul.is_vowel_or_final(self.code_points) if unit == "jamo"
                            else np.ones(len(self.symbols), dtype=bool))

    @property
    def size(self) -> int:
        return len(self.symbols)

    @property
    def start_id(self) -> int:
        """Where text starts without a prime: a line break, as at the start of a document (else id 0)."""
        return self.symbols.index("\n") if "\n" in self.symbols else 0

    def __repr__(self) -> str:
        return f"Vocab(size={self.size}, unit={self.unit!r}, normalize={self.normalize!r}, unk_id={self.unk_id})"

    def _lookup(self, text: str, normalized: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, found, code points) of text, transformed the way the corpus was (normalized: that
        has been done to text already); under --unit jamo a letter the vocabulary lacks is the jamo
        that prints as it (hangul.LETTER_AS_VOWEL_OR_FINAL, hangul.LETTER_AS_INITIAL)."""
        cp = hangul.code_points(text if normalized else _normalize(text, self.normalize))
        if self.unit == "jamo":
            cp = hangul.decompose(cp)
        ids, found = self._find(cp)
        typed = cp
        # Right after an initial and its vowel a final would join their syllable (가ㄴ read as 간): there
        # a consonant letter is the initial first, as a model's own lone initial printed so.
        after_open = np.zeros(len(cp), bool)
        after_open[2:] = hangul.is_initial(cp[:-2]) & hangul.is_vowel(cp[1:-1])
        for second_try in (False, True) if self.unit == "jamo" else ():  # letters the vocabulary lacks
            if found.all():
                break
            readings = [hangul.LETTER_AS_INITIAL if after != second_try else hangul.LETTER_AS_VOWEL_OR_FINAL
                        for after in after_open]
            cp = np.where(found, cp, [reading.get(int(c), int(c)) for reading, c in zip(readings, typed)])
            ids, found = self._find(cp)
        return ids, found, cp

    def _find(self, cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, found) of code points: the symbol's id where found."""
        ids = self._sorted[np.searchsorted(self.code_points, cp, sorter=self._sorted).clip(0, self.size - 1)]
        return ids, self.code_points[ids] == cp

    def id_table(self) -> np.ndarray:
        """Code point -> id, for every code point: one the vocabulary lacks gets the unknown symbol's
        (or 0, where there is none: the caller refuses such characters first)."""
        table = np.full(0x110000, self.unk_id or 0, dtype=_ids_dtype(self.size))
        table[self.code_points] = np.arange(self.size)
        return table

    def missing(self, text: str) -> list[str]:
        """The distinct characters of text that the vocabulary cannot represent, in text order.
        The unknown symbol does not represent them: a user should hear about characters the
        model never saw. Whole characters under jamo too (a syllable with a final jamo the
        corpus never had, not the jamo)."""
        _, found, cp = self._lookup(text)
        if self.unit == "jamo" and not found.all():
            return [c for c in _distinct_chars(hangul.code_points(_normalize(text, self.normalize)))
                    if not self._lookup(c, normalized=True)[1].all()]
        return _distinct_chars(cp[~found])

    @property
    def missing_what(self) -> str:
        """What missing() finds, in words: with an unknown symbol, characters may have been in the
        corpus and still be outside the vocabulary, too rare for --max_vocab or --min_char_count."""
        if self.unk_id is None:
            return "characters the model never saw"
        return "characters outside the model's vocabulary (its run kept only the most frequent ones)"

    def encode(self, text: str) -> np.ndarray:
        """Text -> int32 ids. Characters outside the vocabulary are dropped whole, with a warning
        (sample.py refuses a prime with any first, unless --unknown skip)."""
        ids, found, _ = self._lookup(text)
        if found.all():
            return ids.astype(np.int32)
        unseen = self.missing(text)
        logger.warning("skipping %s: %s", self.missing_what, describe_chars(unseen, 10))
        dropped = set(unseen)
        # Not normalized again: the neighbours of a dropped character could compose into one the
        # vocabulary lacks (e, U+00A7, U+0301 would become U+00E9), which would then not be found.
        kept = "".join(c for c in _normalize(text, self.normalize) if c not in dropped)
        ids, found, _ = self._lookup(kept, normalized=True)
        assert found.all(), "every character the vocabulary lacks was dropped"
        return ids.astype(np.int32)

    def decode(self, ids: "np.ndarray | list[int]") -> str:
        text = hangul.text_of(self.code_points[np.asarray(ids, dtype=np.int64)])
        return hangul.from_jamo(text) if self.unit == "jamo" else text

    @functools.cached_property
    def _jamo_kinds(self) -> dict[int, str]:
        """id -> "initial", "vowel", "final" or "escape" for the symbols hangul.from_jamo composes."""
        kinds = {"initial": (hangul.L_FIRST, hangul.L_LAST), "vowel": (hangul.V_FIRST, hangul.V_LAST),
                 "final": (hangul.T_BASE + 1, hangul.T_LAST), "escape": (hangul.ESCAPE, hangul.ESCAPE)}
        return {i: kind for i, cp in enumerate(self.code_points.tolist()) for kind, (first, last) in kinds.items()
                if first <= cp <= last}

    def ids_of(self, kind: str) -> list[int]:
        """The ids of one kind of jamo ("initial", "vowel", "final", "escape"); none under --unit char."""
        return [i for i, found in self._jamo_kinds.items() if found == kind] if self.unit == "jamo" else []

    def undecided(self, ids: list[int]) -> int:
        """How many trailing ids may still decode otherwise once more follow (0 under --unit char,
        where decoding is the identity): an initial alone or with its vowel (a vowel, then a final,
        may join them; a lone initial prints as a letter unless hangul.KEEPS_INITIAL follows), or an escape still
        waiting for the jamo it marks, with an initial before it. At most two, whatever a
        model writes, so streamed text keeps flowing (holding back every trailing jamo never ended
        a model that wrote only jamo)."""
        if self.unit != "jamo":
            return 0
        kinds = self._jamo_kinds
        escapes = 0
        while escapes < len(ids) and kinds.get(ids[-1 - escapes]) == "escape":
            escapes += 1
        if escapes:  # escapes pair up from the run's start (escape + escape is one original U+FDD0)
            # An initial just before a lone waiting escape waits too: what follows it decides its print.
            return escapes % 2 + (escapes == 1 and len(ids) > 1 and kinds.get(ids[-2]) == "initial")
        last = kinds.get(ids[-1]) if ids else None
        if last == "initial":
            return 1
        return 2 if last == "vowel" and len(ids) > 1 and kinds.get(ids[-2]) == "initial" else 0

    def save(self, path: Path) -> None:
        """vocab.json: UTF-8, one [symbol, count] per line in id order, so it reads as a table."""
        head = json.dumps({"format": _VOCAB_FORMAT, "unit": self.unit, "normalize": self.normalize,
                           "unk_id": self.unk_id, "size": self.size})
        rows = ",\n".join("  " + json.dumps([s, c], ensure_ascii=False) for s, c in zip(self.symbols, self.counts))
        atomic_write_text(Path(path), f'{head[:-1]},\n "symbols": [\n{rows}\n ]\n}}\n')

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        try:
            d = read_json_object(path)
            if d["format"] != _VOCAB_FORMAT:
                raise ValueError(f"format {d['format']}, expected {_VOCAB_FORMAT}")
            rows = d["symbols"]
            if not (isinstance(rows, list) and rows and all(isinstance(row, list) and len(row) == 2 for row in rows)):
                raise ValueError("its symbols are not a list of [symbol, count] pairs")
            symbols, counts = zip(*rows)
            if not all(isinstance(s, str) and len(s) == 1 for s in symbols):
                raise ValueError("a symbol is not one character")
            twice = [s for s, n in collections.Counter(symbols).items() if n > 1]
            if twice:  # which id would a prime's character get?
                raise ValueError(f"the symbol {twice[0]!r} (U+{ord(twice[0]):04X}) is listed twice")
            if d["unit"] not in ("char", "jamo") or d["normalize"] not in ("nfc", "none"):
                raise ValueError(f"its unit is {d['unit']!r} and its normalize {d['normalize']!r}: expected "
                                 f"'char' or 'jamo', and 'nfc' or 'none'")
            if d["unk_id"] is not None and not (type(d["unk_id"]) is int and 0 <= d["unk_id"] < len(symbols)):
                raise ValueError(f"unk_id {d['unk_id']!r} is no symbol's id")
            return cls(list(symbols), list(counts), d["unk_id"], d["unit"], d["normalize"])
        except FileNotFoundError:
            raise CharRNNError(f"{path}: vocabulary file not found") from None
        except OSError as e:  # a directory, no permission
            raise CharRNNError(f"{path}: cannot read the vocabulary ({e.strerror or e})") from None
        except (ValueError, KeyError, TypeError) as e:
            raise DamagedVocab(f"{path}: not a valid vocab.json ({damage(e)})",
                               "train.py wrote it: restore it from a backup, or train again") from None


def _ids_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")


def _make_vocab(counts: np.ndarray, options: DataOptions) -> tuple[Vocab, np.ndarray]:
    """The vocabulary from code point counts, and the code point -> id table."""
    present = np.flatnonzero(counts)
    freq = counts[present]
    order = np.lexsort((present, -freq))  # most frequent first; ties by code point: deterministic
    present, freq = present[order], freq[order]
    # Under jamo the conjoining jamo, and the escape that marks a jamo of the original text, always
    # stay, so the unknown symbol replaces whole characters.
    protected = hangul.is_jamo_symbol(present) if options.unit == "jamo" else np.zeros(len(present), dtype=bool)
    keep = protected | (freq >= options.min_char_count)
    max_vocab = options.max_vocab
    needs_unknown = not keep.all() or (max_vocab and keep.sum() > max_vocab)
    if needs_unknown:
        keep[present == ord(_UNKNOWN)] = False  # a U+FFFD of the text is the unknown symbol: no place of its own
        if max_vocab:
            room = max_vocab - 1 - int(protected.sum())
            if room < 0:
                raise CharRNNError(f"--max_vocab {max_vocab} is too small for --unit jamo: the text has "
                                   f"{int(protected.sum())} jamo, which are always kept; use at least "
                                   f"{int(protected.sum()) + 1}")
            keep[np.flatnonzero(keep & ~protected)[room:]] = False
    if not keep.any():
        top = int(freq[present != ord(_UNKNOWN)].max(initial=0))  # U+FFFD is the unknown symbol itself
        raise CharRNNError(f"--min_char_count {options.min_char_count}: every character of the text is rarer than "
                           f"that (the most frequent appears {top:,} times), so the vocabulary would be the "
                           f"unknown symbol alone; use at most {top:,}")
    cps, freq_kept = list(present[keep]), list(freq[keep])
    if needs_unknown:
        dropped = freq[~keep]
        cps.append(ord(_UNKNOWN))
        freq_kept.append(int(dropped.sum()))
        logger.info("--max_vocab/--min_char_count: %s rare characters (%.4f%% of the text) map to the "
                    "unknown symbol %s", f"{len(dropped):,}", 100 * dropped.sum() / freq.sum(), _UNKNOWN)
    order = np.lexsort((cps, -np.array(freq_kept)))
    symbols = [chr(cps[i]) for i in order]
    unk_id = symbols.index(_UNKNOWN) if needs_unknown else None
    vocab = Vocab(symbols, [freq_kept[i] for i in order], unk_id, options.unit, options.normalize)
    return vocab, vocab.id_table()


class DamagedVocab(CharRNNError):
    """A vocab.json that does not read as one: what is wrong (failure), then what to do."""

    def __init__(self, failure: str, advice: str):
        super().__init__(f"{failure}; {advice}")
        self.failure = failure


class LackingCharacters(CharRNNError):
    """A text prepared on a given vocabulary has characters it has no symbol for (chars: them)."""

    def __init__(self, chars: list[str]) -> None:
        super().__init__(f"the text has characters the vocabulary lacks: {describe_chars(chars, 10)}")
        self.chars = chars


def _on_vocab(vocab: Vocab, counts: np.ndarray) -> tuple[Vocab, np.ndarray]:
    """A given vocabulary with this text's counts, and the code point -> id table: a character it
    lacks becomes its unknown symbol, or is refused when it has none. Under jamo a jamo (or the
    escape) it lacks is refused too: the unknown symbol stands for whole characters, and one jamo
    of a syllable turned into it would split the syllable."""
    table = vocab.id_table()
    present = np.flatnonzero(counts)
    lacking = present[~np.isin(present, vocab.code_points)]
    if vocab.unk_id is None:
        unknowable = lacking
    else:
        unknowable = lacking[hangul.is_jamo_symbol(lacking)] if vocab.unit == "jamo" else lacking[:0]
    if len(unknowable):
        raise LackingCharacters([chr(c) for c in unknowable])
    if len(lacking):
        logger.info("%s characters the vocabulary lacks (%.4f%% of the text) map to its unknown symbol %s",
                    f"{len(lacking):,}", 100 * counts[lacking].sum() / counts.sum(), _UNKNOWN)
    new_counts = np.bincount(table[present], weights=counts[present], minlength=vocab.size)
    return Vocab(vocab.symbols, new_counts.astype(np.int64).tolist(), vocab.unk_id, vocab.unit, vocab.normalize), table


# ----------------------------------------------------------------------------------------------
# Preparation and cache

_PREPARE_FORMAT = 2  # bump when the preparation's output changes, so that old caches miss


@dataclass
class Corpus:
    ids: np.ndarray          # read-only np.memmap, uint16 or uint32
    vocab: Vocab
    num_chars: int           # original characters (== len(ids) unless unit == 'jamo')
    files: list[Path]
    cache_dir: Path

    def split(self, val_frac: float, by: str = "chars") -> tuple[np.ndarray, np.ndarray]:
        """(train, validation): the last val_frac of the text, contiguous, is validation. Counted
        in original characters (by="chars"), so that --unit char and --unit jamo hold out the same
        text and their validation bits per character compare. by="symbols" is the cut of runs
        saved before (a jamo run then held out val_frac of its symbols: more characters)."""
        if not 0 <= val_frac < 1:
            raise CharRNNError(f"--val_frac {val_frac}: use a fraction from 0 to below 1, e.g. 0.05")
        n = len(self.ids)
        if by == "chars":
            cut = _last_chars_start(self.vocab, self.ids, int(round(self.num_chars * val_frac)))
        else:
            cut = n - int(round(n * val_frac))
            while 0 < cut < n and not self.vocab.char_starts[self.ids[cut]]:
                cut += 1  # under jamo, start validation on a whole syllable
        return self.ids[:cut], self.ids[cut:]


def _identity(files: list[Path], options: DataOptions, vocab: "Vocab | None" = None) -> dict:
    rows = []
    for p in files:
        try:
            st = p.stat()
        except FileNotFoundError:
            raise CharRNNError(f"{p}: no such file") from None
        # ctime too: cp -p, rsync -a, tar and touch -r put back an mtime (and a size) over new text,
        # and no tool can set a ctime.
        rows.append([str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    identity = {"format": _PREPARE_FORMAT, "files": rows, "options": dataclasses.asdict(options)}
    if vocab is not None:  # prepared on a given vocabulary: which one (its symbols, in their order)
        identity["vocab"] = hashlib.sha256(json.dumps([vocab.symbols, vocab.unk_id]).encode()).hexdigest()[:16]
    return identity


def _load_prepared(directory: Path, identity: dict, files: list[Path], warn: bool = True) -> Corpus | None:
    """The cached corpus if directory holds a complete preparation of exactly this identity (warn:
    say so where it holds a damaged one)."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta["identity"] != identity:
            return None
        ids = np.load(directory / "ids.npy", mmap_mode="r")
        if ids.shape != (meta["num_symbols"],):
            raise ValueError(f"ids.npy has shape {ids.shape}, meta.json says {meta['num_symbols']}")
        vocab = Vocab.load(directory / "vocab.json")
        if ids.dtype != _ids_dtype(vocab.size):
            raise ValueError(f"ids.npy holds {ids.dtype}, not {_ids_dtype(vocab.size)}")
        # Every id exactly up to 16M symbols; beyond, the blocks that the start-up baseline reads anyway.
        for start in _sample_blocks(len(ids)):
            if int(ids[start:start + _BLOCK].max()) >= vocab.size:
                raise ValueError(f"ids.npy holds ids beyond the vocabulary's {vocab.size} from position {start}")
        num_chars = int(meta["num_chars"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, CharRNNError) as e:
        if warn:  # (a cache is made again: the advice for a run's own vocab.json is not for it)
            logger.warning("ignoring damaged prepared data in %s (%s)", directory,
                           e.failure if isinstance(e, DamagedVocab) else e)
        return None
    return Corpus(ids, vocab, num_chars, files, directory)


def _user_cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "char-rnn-tf2"


def _make_build_dir(root: Path, key: str) -> Path:
    """The temp dir of a build in progress, named by its process and host, so that another process,
    on this host or (the cache on a shared file system) another, knows whether the build died. Made
    with the umask's permissions, not mkdtemp's owner-only ones: renamed into place, it is the
    prepared data, and the other users of a shared corpus folder must read it."""
    tmp = root / f".tmp-{key}-{owner_tag()}-{os.urandom(4).hex()}"
    tmp.mkdir()
    return tmp


def _unreadable(directory: Path) -> bool:
    """A preparation this user may not read: another user's, private (an older version made them
    so). It is neither loaded nor replaced (the attempt would fail midway): the build goes elsewhere."""
    if not directory.exists():
        return False
    files = [directory / name for name in ("meta.json", "ids.npy", "vocab.json")]
    return not (os.access(directory, os.R_OK | os.X_OK)
                and all(os.access(path, os.R_OK) for path in files if path.exists()))


_BUILD_DIR = re.compile(rf"\.tmp-[0-9a-f]+-{OWNER_TAG}-\w+")


def _remove_leftovers(root: Path, identity: dict, key: str, source: Path | None) -> None:
    """Remove builds that died midway, and older preparations of these same files: of the files as
    they no longer are (under any options: none can use them again), or by another format under
    these options; and of the corpus named source as it no longer is (a file added to its folder).
    A multi-GB corpus should not leave a trail of stale copies."""
    for d in root.iterdir():
        if d.name.startswith(".tmp-"):
            if left_by_gone_owner(_BUILD_DIR.fullmatch(d.name)):
                shutil.rmtree(d, ignore_errors=True)
            continue
        if d.name == key or not (d / "meta.json").is_file():
            continue
        try:
            meta = json.loads((d / "meta.json").read_text(encoding="utf-8"))
            old = meta["identity"]
            same_files = [f[0] for f in old.get("files", [])] == [f[0] for f in identity["files"]]
            same_use = old.get("options") == identity["options"] and old.get("vocab") == identity.get("vocab")
            outdated = same_files and (old["files"] != identity["files"] or same_use)
            # Of a file since deleted from its folder, or of the corpus named the same with other files
            # (one added to the folder): never used again. Only beside the corpus, on its disk: in the
            # user's cache, shared by every corpus and by hosts that share a home, a file may be on a
            # disk not mounted here or now, and a path another host's.
            outdated = outdated or root != _user_cache_root() and (
                any(not Path(f[0]).exists() and Path(f[0]).parent.is_dir() for f in old["files"])
                or same_use and source is not None and meta.get("source") == str(source))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):  # not a meta.json of ours: left alone
            continue
        if outdated:
            _remove_preparation(d)


def _remove_preparation(d: Path) -> None:
    """Remove a preparation, its ids first: Windows deletes no file that a run still training on it
    maps, and the rest removed around it left a copy of the corpus that no cleanup found again (the
    ones below look for meta.json). In use, it stays for a later preparation to remove. A link to a
    folder elsewhere (a symbolic link, or on Windows a junction) is not emptied through."""
    try:
        if d.is_symlink() or getattr(os.lstat(d), "st_reparse_tag", 0) == 0xA0000003:  # IO_REPARSE_TAG_MOUNT_POINT
            return
    except OSError:  # gone meanwhile: another preparation of the same text removed it
        return
    try:
        (d / "ids.npy").unlink(missing_ok=True)
    except OSError as error:
        logger.info("outdated prepared data %s stays for now (%s: a run still trains on it?); a later "
                    "preparation removes it", d, error.strerror or error)
        return
    logger.info("removing outdated prepared data %s", d)
    shutil.rmtree(d, ignore_errors=True)


def _say_other_preparations(root: Path, identity: dict) -> None:
    """Name the room that this text's preparations under other data flags take beside the new one:
    each keeps a whole copy of the ids (about the size of a Korean text file, 1.6 times that under
    jamo), so a few trials of --max_vocab or --unit on a multi-GB dump fill a disk from a hidden folder."""
    files = [f[0] for f in identity["files"]]
    sizes = []  # of this text's preparations, the new one among them
    for d in root.iterdir():
        try:
            if not d.name.startswith(".tmp-") and [f[0] for f in json.loads(
                    (d / "meta.json").read_text(encoding="utf-8"))["identity"]["files"]] == files:
                sizes.append(sum(f.stat().st_size for f in d.iterdir()))
        except (OSError, ValueError, KeyError, TypeError):  # not a preparation of ours, or one being removed
            continue
    if len(sizes) > 1:
        logger.info("%s holds %d preparations of this text, %s MB: one per set of data flags (--unit, --max_vocab, "
                    "--min_char_count, --normalize, --encoding) or a resumed run's vocabulary. Delete the folders of "
                    "those no longer used (they are made again when needed)", root, len(sizes),
                    f"{sum(sizes) / 1e6:,.1f}")


def _read_code_points(files: list[Path], options: DataOptions,
                      progress: Callable[[int], None]) -> Iterator[np.ndarray]:
    """The whole corpus as uint32 code point arrays, chunk by chunk, normalized and (for jamo)
    decomposed. Files are joined by a line break where one does not end with one."""
    ends_with_newline = True
    for path in files:
        first = True
        for text in _read_text(path, options, progress, other_files=len(files) - 1):
            if not text:
                continue
            if first and not ends_with_newline:
                text = "\n" + text
            first, ends_with_newline = False, text.endswith("\n")
            cp = hangul.code_points(text)
            yield hangul.decompose(cp) if options.unit == "jamo" else cp


def _progress_logger(what: str, total_bytes: int) -> Callable[[int], None]:
    t0 = last = time.monotonic()
    done = 0

    def progress(nbytes: int) -> None:
        nonlocal done, last
        done += nbytes
        now = time.monotonic()
        if now - last >= _PROGRESS_SECONDS:
            last = now
            logger.info("%s: %.0f of %.0f MB (%.0f MB/s)", what, done / 1e6, total_bytes / 1e6,
                        done / 1e6 / (now - t0))
    return progress


def _first_pass(files: list[Path], options: DataOptions, out_path: Path, dtype: np.dtype,
                progress: Callable[[int], None]) -> tuple[np.ndarray, np.ndarray] | None:
    """Count code points and write each symbol's provisional id (order of first appearance) to
    out_path. Returns (counts by code point, code point of each provisional id), or None when
    the provisional ids outgrow dtype."""
    counts = np.zeros(0x110000, dtype=np.int64)
    provisional_id = np.zeros(0x110000, dtype=dtype)  # valid where counts > 0
    seen: list[np.ndarray] = []
    num_seen = 0
    with open(out_path, "wb") as out:
        for cp in _read_code_points(files, options, progress):
            cp = cp.astype(np.intp)  # numpy counts and indexes with intp: cast once, not in each call
            if len(cp) < _SMALL_CHUNK:  # bincount's array is as long as the largest code point (an emoji's: 128k)
                present, chunk_counts = np.unique(cp, return_counts=True)
            else:
                chunk_counts = np.bincount(cp)
                present = np.flatnonzero(chunk_counts)
                chunk_counts = chunk_counts[present]
            new = present[counts[present] == 0]
            counts[present] += chunk_counts
            if len(new):
                if num_seen + len(new) > np.iinfo(dtype).max + 1:
                    return None
                provisional_id[new] = np.arange(num_seen, num_seen + len(new))
                num_seen += len(new)
                seen.append(new)
            out.write(np.take(provisional_id, cp))  # not tofile: its short write has no errno, no reason
    return counts, np.concatenate(seen) if seen else np.zeros(0, dtype=np.intp)


def _refuse_surrogates(files: list[Path], options: DataOptions) -> None:
    """A text decoded to a lone UTF-16 surrogate (utf-7 or unicode_escape can: "\\ud800"), which is
    no character: TensorFlow and the console refuse it when the model writes it. Names the first."""
    for path in files:
        line = 1
        for text in _read_text(path, options, progress=lambda nbytes: None):
            found = re.search("[\ud800-\udfff]", text)
            if found:
                line += text.count("\n", 0, found.start())
                raise CharRNNError(f"{path}: under --encoding {options.encoding} line {line:,} holds "
                                   f"U+{ord(found.group()):04X}, half of a UTF-16 surrogate pair, which is no "
                                   f"character; pass the file's real encoding (most text is utf-8), or fix that line")
            line += text.count("\n")


def _build(files: list[Path], options: DataOptions, identity: dict, directory: Path, vocab: "Vocab | None",
           source: Path | None) -> None:
    """Prepare the corpus into directory (a fresh temp dir), on vocab when given, else on its own;
    meta.json, which records the source, is written last."""
    t0 = time.monotonic()
    total_bytes = sum(size for _, size, *_ in identity["files"])
    provisional = directory / "provisional.bin"
    # Provisional ids fit uint16 unless the text has over 65,535 distinct symbols; only such a
    # corpus pays for a second reading, with uint32.
    for dtype in (np.dtype("<u2"), np.dtype("<u4")):
        result = _first_pass(files, options, provisional, dtype, _progress_logger("reading", total_bytes))
        if result is not None:
            break
    counts, first_seen = result
    if counts[0xD800:0xE000].any():
        _refuse_surrogates(files, options)
    if _identity(files, options, vocab) != identity:
        raise CharRNNError(f"{', '.join(map(str, files))}: changed while being prepared; run again once it is complete")
    num_symbols = int(counts.sum())
    if num_symbols == 0:
        # Empty files are refused before reading: these hold nothing but a byte-order mark.
        raise CharRNNError(f"{files[0] if len(files) == 1 else files[0].parent}: contains no text, only a byte-order "
                           f"mark; put the text to train on there, or pass --data_dir or --input where it is")
    vocab, table = _make_vocab(counts, options) if vocab is None else _on_vocab(vocab, counts)
    remap = table[first_seen]
    with open(provisional, "rb") as src, open(directory / "ids.npy", "wb") as dst:
        np.lib.format.write_array_header_1_0(dst, {"descr": np.lib.format.dtype_to_descr(remap.dtype),
                                                   "fortran_order": False, "shape": (num_symbols,)})
        while (chunk := np.fromfile(src, dtype=dtype, count=max(1, _READ_BYTES // dtype.itemsize))).size:
            dst.write(np.take(remap, chunk.astype(np.intp)))
        dst.flush()
        os.fsync(dst.fileno())
    provisional.unlink()
    vocab.save(directory / "vocab.json")
    num_chars = num_symbols  # every symbol is a character, except a syllable's vowel and final jamo
    if options.unit == "jamo":
        num_chars -= int(counts[hangul.is_vowel_or_final(np.arange(counts.size))].sum())
    seconds = time.monotonic() - t0
    meta = {"identity": identity, "num_symbols": num_symbols, "num_chars": num_chars,
            "vocab_size": vocab.size, "dtype": remap.dtype.name,
            "unknown_symbols": vocab.counts[vocab.unk_id] if vocab.unk_id is not None else 0,
            "seconds": round(seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": None if source is None else str(source)}
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    logger.info("prepared %s symbols (vocabulary %s, %s) in %.1f s (%.0f MB/s)", f"{num_symbols:,}",
                f"{vocab.size:,}", remap.dtype.name, seconds, total_bytes / 1e6 / max(seconds, 1e-9))


def prepare_corpus(files: list[Path], options: DataOptions, cache_root: Path | None = None,
                   vocab: Vocab | None = None, only_cached: bool = False, source: Path | None = None) -> Corpus | None:
    """Ids and vocabulary of the corpus, prepared once and cached in cache_root/<key>/ (default:
    <corpus dir>/.prepared, or $XDG_CACHE_HOME/char-rnn-tf2 (~/.cache/char-rnn-tf2) when that is not
    writable). The key covers
    the files' paths, sizes, mtimes and ctimes and every option; a build goes to a temp dir that is
    renamed into place when complete, so an interrupted one never looks valid. vocab: prepare on
    this vocabulary (a resumed run's), not on one made from the text's own frequencies.
    only_cached: None rather than a preparation, where none is cached. source: the file or folder
    the user named (absolute), whose earlier preparations with other files this one replaces."""
    # The folder the user named, not where symbolic links in it lead (which may be far apart).
    corpus_dir = Path(os.path.commonpath([Path(os.path.abspath(p)).parent for p in files]))
    files = list(dict.fromkeys(Path(p).resolve() for p in files))  # a file linked twice is read once
    identity = _identity(files, options, vocab)
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    roots = [Path(cache_root)] if cache_root else [corpus_dir / ".prepared", _user_cache_root()]
    unreadable = [root for root in roots if _unreadable(root / key)]
    roots = [root for root in roots if root not in unreadable]
    for root in roots:
        corpus = _load_prepared(root / key, identity, files)
        if corpus is not None:
            logger.info("using prepared data %s (%s symbols, vocabulary %s)", corpus.cache_dir,
                        f"{len(corpus.ids):,}", f"{corpus.vocab.size:,}")
            return corpus
    if only_cached:
        for root in roots:  # a damaged one (warned of above) would be warned of at every resume
            if (root / key).exists():
                shutil.rmtree(root / key, ignore_errors=True)
        return None
    for root in unreadable:
        logger.warning("cannot read the prepared data in %s (another user's?): preparing the corpus elsewhere",
                       root / key)
    errors = [f"{root / key}: not readable by this user" for root in unreadable]
    for root in roots:
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = _make_build_dir(root, key)
            break
        except OSError as e:
            errors.append(f"{root}: {e.strerror or e}")
    else:
        raise CharRNNError(f"cannot write prepared data ({'; '.join(errors)}); make one of these readable "
                           f"and writable")
    _remove_leftovers(root, identity, key, source=None)  # of the source: once this preparation is in place
    logger.info("preparing %s (%.1f MB) into %s", files[0] if len(files) == 1 else f"{len(files)} files",
                sum(f[1] for f in identity["files"]) / 1e6, root / key)
    try:
        try:
            _build(files, options, identity, tmp, vocab, source)
        except OSError as e:  # disk full, a file that vanished or cannot be read
            raise CharRNNError(_failed_preparation(e, root, files)) from None
        final = root / key
        if final.exists() and _load_prepared(final, identity, files, warn=False) is None:  # (said above)
            try:
                shutil.rmtree(final)  # damaged
            except OSError as e:  # another user's
                raise CharRNNError(f"the prepared data in {final} is damaged and cannot be replaced ({e.strerror or e}"
                                   f"): remove that folder (its owner can), then run again") from None
        try:
            os.replace(tmp, final)
        except OSError as e:  # another process finished the same preparation first: use theirs
            if _load_prepared(final, identity, files) is None:
                raise CharRNNError(f"cannot move the prepared data into {final} ({e.strerror or e}); fix the "
                                   f"directory's permissions or free disk space, then run again") from None
        if source is not None:
            _remove_leftovers(root, identity, key, source)
        _say_other_preparations(root, identity)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        try:  # an interrupted first preparation leaves no empty .prepared/ behind
            root.rmdir()
        except OSError:  # not empty: other prepared data, or this one
            pass
    corpus = _load_prepared(final, identity, files)
    if corpus is None:  # only if another process removed or changed it meanwhile
        raise CharRNNError(f"the prepared data in {final} changed while it was being loaded (another process "
                           f"preparing the same corpus?); run again")
    return corpus


def _failed_preparation(error: OSError, root: Path, files: list[Path]) -> str:
    """What stopped a preparation: a corpus file it could not read, or no room to write."""
    reason = error.strerror or str(error)
    if error.filename is not None and Path(error.filename) in files:
        return f"cannot read {error.filename} ({reason}): make it readable, or take it out of the corpus"
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        limit = " or a file-size limit (ulimit -f)" if error.errno == errno.EFBIG else ""
        return (f"no room to write the prepared data in {root} ({reason}): free disk space there{limit}, "
                f"then run again")
    return f"preparing the corpus failed: {error.filename or root}: {reason}. Fix that, then run again"


def count_chars(vocab: Vocab, ids: np.ndarray) -> int:
    """Original characters among these symbols (bits per character = nats / this / ln 2)."""
    if vocab.char_starts.all():
        return len(ids)
    step = 1 << 22
    return sum(int(np.count_nonzero(vocab.char_starts[ids[a:a + step]])) for a in range(0, len(ids), step))


def first_chars_end(vocab: Vocab, ids: np.ndarray, k: int) -> int:
    """Where in ids the first k original characters end (all of ids when it holds fewer), read a
    block at a time: a multi-GB validation text is never read whole for a prefix of it."""
    if vocab.char_starts.all():
        return min(k, len(ids))
    start, step = 0, max(1 << 16, 4 * k)
    while start < len(ids):
        starts = np.flatnonzero(vocab.char_starts[ids[start:start + step]])
        if len(starts) > k:  # the (k+1)-th character's first symbol ends the first k
            return start + int(starts[k])
        k, start = k - len(starts), start + step
    return len(ids)


def _last_chars_start(vocab: Vocab, ids: np.ndarray, k: int) -> int:
    """Where in ids the last k original characters start, read backwards a block at a time."""
    if vocab.char_starts.all():
        return len(ids) - k
    end, step = len(ids), 1 << 22
    while k > 0 and end > 0:
        start = max(0, end - step)
        starts = np.flatnonzero(vocab.char_starts[ids[start:end]])
        if len(starts) >= k:
            return start + int(starts[len(starts) - k])
        k, end = k - len(starts), start
    return end


def _original_chars(vocab: Vocab, ids: np.ndarray, n: int) -> np.ndarray:
    """Code points of the original characters starting among ids[:n] (ids may run 2 further so
    a syllable at the end is whole): hangul.decompose undone on ids, vectorized, for counting."""
    cp = np.append(vocab.code_points[ids].astype(np.int64), [0, 0])
    start = np.flatnonzero(vocab.char_starts[ids[:n]])
    first, second, third = cp[start], cp[start + 1], cp[start + 2]
    syllable = hangul.is_initial(first) & hangul.is_vowel(second)
    final = np.where(hangul.is_final(third), third - hangul.T_BASE, 0)
    composed = hangul.syllable(first, second, final)
    escaped = (first == hangul.ESCAPE) & hangul.is_vowel_or_final(second)
    return np.where(syllable, composed, np.where(escaped, second, first))


_ENTROPY_EXACT = 1 << 24  # symbols; beyond this the baseline is estimated from a sample
_BLOCK = 1 << 18


def _sample_blocks(n: int) -> Iterable[int]:
    """Where the blocks of _BLOCK ids start that stand for n ids: all of them up to
    _ENTROPY_EXACT, else 64 evenly spaced, so that a check at every start stays cheap."""
    return range(0, n, _BLOCK) if n <= _ENTROPY_EXACT else np.linspace(0, n - _BLOCK, 64).astype(np.int64)


def unigram_entropy_bits(vocab: Vocab, ids: np.ndarray) -> float:
    """Entropy of the original-character frequencies of these ids, in bits per character: what a
    model that learned only those frequencies scores. Under jamo, counted over whole syllables.
    Exact up to 16M symbols; beyond that estimated from 64 evenly spaced blocks of 256K, so the
    cost at every training start does not grow with the corpus."""
    n = len(ids)
    counts = np.zeros(vocab.size if vocab.unit == "char" else 0x110000, dtype=np.int64)
    for a in _sample_blocks(n):
        if vocab.unit == "char":
            counts += np.bincount(ids[a:a + _BLOCK], minlength=vocab.size)
        else:
            chars = np.bincount(_original_chars(vocab, ids[a:a + _BLOCK + 2], min(_BLOCK, n - a)))
            counts[:len(chars)] += chars
    p = counts[counts > 0] / max(1, counts.sum())
    return max(0.0, float(-(p * np.log2(p)).sum()))  # not -0.0 for a text of one character


# ----------------------------------------------------------------------------------------------
# Batching


def batches_per_epoch(symbols: int, batch_size: int, seq_length: int) -> int:
    """How many batches an epoch of BatchLoader has: the windows of one stream, less one that
    leaves room for any epoch offset and y's shift."""
    return symbols // batch_size // seq_length - 1


def _what_fits(symbols: int, batch_size: int, seq_length: int, longest_window: int | None, resumed: bool) -> str:
    """The advice for a training part too short for one batch: the --seq_length that fits it at this
    --batch_size, and the --batch_size at this --seq_length, where either does (and the validation
    part has a window of that --seq_length: longest_window). A resumed run keeps its --seq_length."""
    def at_most(flag: str, value: int) -> str:
        return f"--{flag} {value}" + " or less" * (value > 1)

    longest = seq_length if longest_window is None else longest_window
    fits = []
    seq_fit = min(symbols // (2 * batch_size), longest)
    if seq_fit >= 1 and not resumed:
        fits.append(at_most("seq_length", seq_fit))
    if symbols >= 2 * seq_length and seq_length <= longest:
        fits.append(at_most("batch_size", symbols // (2 * seq_length)))
    if not fits and not resumed:
        return "Use a longer text: a model learns from thousands of characters at the least."
    kept = " (a resumed run keeps its --seq_length)" if resumed else ""
    return f"Use {', or '.join([*fits, 'a longer text'])}{kept}."


class BatchLoader:
    """Training batches for truncated BPTT with carried state: the text is cut into batch_size
    contiguous streams and each batch is the next window of seq_length in every stream, so the
    state at the end of batch i is the right start for batch i + 1. Each epoch shifts the
    windows by a seeded offset anywhere the streams leave room for (offsets_over="stream"), so
    they vary between epochs and, over epochs, every symbol is trained; the number of batches is
    the same every epoch. Runs saved before drew offsets in [0, seq_length) ("window"), which never
    reached the last stream length % seq_length symbols of each stream (4% of a 50 KB text at the
    default sizes). batch(epoch, index) is a pure function, so training can
    restart from any saved (epoch, index). With num_shards > 1, a worker takes a contiguous
    share of the streams and only ever reads its part of the text."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_length: int, seed: int = 0,
                 shard_index: int = 0, num_shards: int = 1, longest_window: int | None = None,
                 resumed: bool = False, offsets_over: str = "stream") -> None:
        """longest_window: the longest --seq_length the validation part holds, for the advice when
        the text is too short (None: not known); resumed: --seq_length cannot change."""
        # A caller's error: train.py checks the flags (and the cluster's size) before.
        if batch_size < 1 or seq_length < 1 or not (1 <= num_shards <= batch_size and 0 <= shard_index < num_shards):
            raise ValueError(f"batch_size {batch_size}, seq_length {seq_length}, shard {shard_index} of {num_shards}")
        if offsets_over not in ("stream", "window"):
            raise ValueError(f"offsets_over {offsets_over!r}")
        self.seq_length, self.seed = seq_length, seed
        length = len(ids) // batch_size
        self.num_batches = batches_per_epoch(len(ids), batch_size, seq_length)
        # An epoch's windows and the one more symbol of y fit from any offset below this.
        self.offsets = length - self.num_batches * seq_length if offsets_over == "stream" else seq_length
        if self.num_batches < 1:
            raise CharRNNError(f"not enough text: the training part has {len(ids):,} symbols, but --batch_size "
                               f"{batch_size} --seq_length {seq_length} needs at least {2 * batch_size * seq_length:,} "
                               f"(2 x batch_size x seq_length). "
                               f"{_what_fits(len(ids), batch_size, seq_length, longest_window, resumed)}")
        lo, hi = shard_index * batch_size // num_shards, (shard_index + 1) * batch_size // num_shards
        self.streams = ids[:batch_size * length].reshape(batch_size, length)[lo:hi]  # a view, no copy
        self._offset = (-1, 0)  # (epoch, offset) of the last epoch asked for

    def offset(self, epoch: int) -> int:
        if self._offset[0] != epoch:
            rng = np.random.default_rng([self.seed % 2**32, epoch])
            self._offset = (epoch, int(rng.integers(self.offsets)))
        return self._offset[1]

    def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y), int32 [streams, seq_length], y = x shifted by one symbol."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} of {self.num_batches}")
        start = self.offset(epoch) + index * self.seq_length
        window = self.streams[:, start:start + self.seq_length + 1].astype(np.int32)  # copies this batch only
        return np.ascontiguousarray(window[:, :-1]), np.ascontiguousarray(window[:, 1:])


def eval_batches(ids: np.ndarray, batch_size: int, seq_length: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(x, y) batches covering the whole split as batch_size contiguous streams, in order (carry
    the state across them). The last window is shorter when the stream length is not a multiple
    of seq_length; at most batch_size symbols at the very end go unscored."""
    length = (len(ids) - 1) // batch_size
    if length < 1 or seq_length < 1:  # a caller's error: plan.py sizes the evaluation batch to the text
        raise ValueError(f"{len(ids):,} ids for {batch_size} streams of windows of {seq_length}")
    x = ids[:batch_size * length].reshape(batch_size, length)
    y = ids[1:batch_size * length + 1].reshape(batch_size, length)
    for a in range(0, length, seq_length):
        yield x[:, a:a + seq_length].astype(np.int32), y[:, a:a + seq_length].astype(np.int32)
