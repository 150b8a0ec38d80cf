"""dataset.py (the data layer) and utils.py: real files in tmp_path, real subprocesses; runs in seconds."""
from __future__ import annotations

import collections
import json
import logging
import os
import random
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import dataset
import decoding
import hangul
import utils
from dataset import DataOptions
from utils import CharRNNError

ROOT = Path(__file__).resolve().parents[1]
KOREAN = (ROOT / "data" / "korean" / "ml_blog.txt").read_text(encoding="utf-8")[:20000]


def expected_text(raw: str, normalize: str = "nfc") -> str:
    """What the data layer promises to produce, computed the obvious (non-streaming) way."""
    text = raw.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text) if normalize == "nfc" else text


def prepare(path: Path, tmp_path: Path, **options) -> dataset.Corpus:
    return dataset.prepare_corpus([path], DataOptions(**options), cache_root=tmp_path / "cache")


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def finished_pid() -> int:
    """The pid of a process that has ended: what a killed process's leftovers are named by."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def run_python(code: str, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
                          timeout=60, **kwargs)


# ---- small utilities -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("600", 600), ("90s", 90), ("15m", 900), ("1h30m", 5400),
                                           ("2h", 7200), ("1.5h", 5400), (" 1d ", 86400), ("0", 0),
                                           ("2H", 7200), ("15M", 900), ("90.5", 90.5), ("2.", 2.0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert utils.parse_duration(text, "--time_budget") == seconds


@pytest.mark.parametrize("text", ["", "abc", "15x", "30m1h", "1h1h", "-5m", "1h 30m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(CharRNNError, match="^--time_budget .*: invalid duration"):
        utils.parse_duration(text, "--time_budget")


def test_a_name_of_255_bytes_is_taken_and_one_of_256_refused() -> None:
    """ext4, NTFS and APFS allow names of up to 255 bytes: that one is no error."""
    utils.check_path("save/" + "x" * 255, "--save_dir")
    with pytest.raises(CharRNNError, match="a name in it is 256 bytes long"):
        utils.check_path("save/" + "x" * 256, "--save_dir")


def test_clip_name_keeps_what_fits_and_whole_characters() -> None:
    assert utils.clip_name("a" * 100, 100) == "a" * 100 and utils.clip_name("a" * 101, 100) == "a" * 100
    assert utils.clip_name("한" * 33, 99) == "한" * 33 and utils.clip_name("한" * 34, 100) == "한" * 33  # 3 bytes each


def test_a_process_of_another_user_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.kill(pid, 0) on another user's process is refused: it is there, and its files are not ours to remove."""
    def refused(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(utils.os, "kill", refused)
    assert utils.pid_alive(12345)


def test_atomic_write_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.json"
    utils.atomic_write_text(path, "한국어\n")
    utils.atomic_write_text(path, "second\r\n")
    assert path.read_bytes() == b"second\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    # A write that fails midway leaves the old file whole, and no temporary file beside it.
    monkeypatch.setattr(utils.os, "fsync", disk_full)
    with pytest.raises(OSError):
        utils.atomic_write_text(path, "third, never complete\n")
    assert path.read_bytes() == b"second\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_importing_the_data_layer_runs_neither_tensorflow_nor_numpy() -> None:
    out = run_python("import sys, dataset; print('tensorflow' in sys.modules, 'numpy.linalg' in sys.modules)", text=True)
    assert out.stdout.strip() == "False False", out.stderr


# ---- reading, normalizing, round trips ---------------------------------------------------------

NFD_KOREAN = unicodedata.normalize("NFD", "한국어 텍스트: 가각갂 힣\n")
ROUND_TRIPS = {
    "english": "First Citizen:\nBefore we proceed any further, hear me speak.\n",
    "korean": KOREAN,
    "mixed": "LSTM은 long short-term memory의 약자이다. café, naïve — 日本語 ok\n",
    "emoji": "😀 emoji 👍🏽 and flags 🇰🇷 and ZWJ 👩‍👩‍👧 𠀀𪛖\n",
    "crlf": "line one\r\nline two\r\n줄 셋\r\n",
    "cr": "old mac\rline endings\r한글\r",
    "crlf cut by a read": "abcdef\r\nghi\r\n" + "x" * 5 + "\r\n",  # with 7-byte reads, CR | LF
    "bom": "\ufeff첫 줄\nsecond\n",
    "files that each began with a bom, concatenated": "\ufeff첫 파일\n\ufeffsecond file\r\n\ufeff",
    "a bom between a letter and its mark": "abce\ufeff\u0301xyz 하\ufeff\u11ab",  # é and 한 either way
    "nfd": NFD_KOREAN + "e\u0301 a\u0308\n",
    "no final newline": "ends without one: 끝",
    "long lines without newlines": ("가나다라" * 300 + "abc " * 50 + NFD_KOREAN.strip()) * 3,
    # no line break, ASCII letter or Hangul syllable to cut before; marks and jamo that compose
    "one line of ideographs and marks": ("日本語の文字か\u3099\u1100\u1161\u11a8\u0b47\u0b3e\u0f40\u0f72\u0f73"
                                         + "中文" * 200) * 3,  # U+0F73 = U+0F71 U+0F72: its mark moves back
}


@pytest.mark.parametrize("name", ROUND_TRIPS)
@pytest.mark.parametrize("read_bytes", [1 << 20, 7, 2])  # 7, 2: reads cut characters, BOMs, CRLFs, NFD
def test_round_trip(tmp_path: Path, monkeypatch, name: str, read_bytes: int) -> None:
    monkeypatch.setattr(dataset, "_READ_BYTES", read_bytes)
    raw = ROUND_TRIPS[name]
    corpus = prepare(write(tmp_path / "in.txt", raw), tmp_path)
    want = expected_text(raw)
    assert corpus.vocab.decode(corpus.ids) == want
    assert corpus.num_chars == len(want) == len(corpus.ids) == dataset.count_chars(corpus.vocab, corpus.ids)
    counts = collections.Counter(want)
    assert dict(zip(corpus.vocab.symbols, corpus.vocab.counts)) == counts
    assert corpus.vocab.counts == sorted(corpus.vocab.counts, reverse=True)
    assert corpus.ids.dtype == np.uint16 and isinstance(corpus.ids, np.memmap)


def _lost_a_byte(data: bytes, at: int) -> bytes:
    return data[:at] + data[at + 1:]


def test_utf16_without_a_bom_is_told_from_binary_numbers(tmp_path: Path) -> None:
    for name, data, needle in [("ko16.txt", "한국어 문장입니다\n".encode("utf-16-le") * 50, "--encoding utf-16-le"),
                               ("en16.txt", "plain text\n".encode("utf-16-be") * 50, "--encoding utf-16-be"),
                               # Windows' line ends and tabs are text, not control characters of a binary file
                               ("crlf16.txt", "a line\tof text\r\n".encode("utf-16-le") * 50, "--encoding utf-16-le"),
                               ("small.bin", (np.arange(1000, dtype=np.int16) % 200).tobytes(), "binary file"),
                               # NULs on both sides (UTF-16 that lost a byte halfway): no byte order reads it all
                               ("shifted.txt", _lost_a_byte(("plain text here\n" * 40).encode("utf-16-le"), 320),
                                "binary file"),
                               # Syllables such as 대 (U+B300) put NULs in low bytes too; Chinese has few spaces
                               ("law16.txt", ("대한민국 헌법 제1조 대한민국은 민주공화국이다.\n" * 50).encode("utf-16-be"),
                                "--encoding utf-16-be"),
                               ("zh16.txt", "中华人民共和国是一个位于东亚的国家首都是北京".encode("utf-16-le") * 50,
                                "--encoding utf-16-le"),
                               # a stray NUL in UTF-8 Korean: its byte pairs read as syllables too
                               ("nul8.txt", "대한민국 헌법\n".encode() * 100 + b"\0" + "대한민국 헌법\n".encode() * 100,
                                "text with a NUL byte at offset 2,000"),
                               # Big-endian English reads as little-endian CJK too: the NULs' side goes first
                               ("be16.txt", "It was the best of times, it was the worst of times".encode("utf-16-be"),
                                "--encoding utf-16-be")]:
        with pytest.raises(utils.CharRNNError, match=needle):
            decoding.check_looks_like_text(tmp_path / name, data, "utf-8", 0)
    # The stray NUL under a wrong --encoding (cp949 for UTF-8): still a stray NUL, not UTF-16
    with pytest.raises(utils.CharRNNError, match="text with a NUL byte at offset 2,000"):
        decoding.check_looks_like_text(tmp_path / "nul8.txt", "대한민국 헌법\n".encode() * 100 + b"\0" +
                                       "대한민국 헌법\n".encode() * 100, "cp949", 0)
    # Under --encoding utf-16 (or utf-32), which needs the mark, the byte order to pass instead.
    for encoding, order in (("utf-16", "le"), ("utf-16", "be"), ("utf-32", "le")):
        path = write(tmp_path / f"{encoding}-{order}.txt", "plain text\n".encode(f"{encoding}-{order}") * 50)
        with pytest.raises(utils.CharRNNError, match=f"pass --encoding {encoding}-{order}, which needs no"):
            prepare(path, tmp_path, encoding=encoding)


def test_text_without_line_breaks_is_cut_near_each_read_end() -> None:
    """So that a one-line corpus of ideographs keeps one read's worth of text in memory (the
    round trips above show that the cuts never change the normalized text)."""
    assert dataset._safe_cut("中" * 1_000_000) == 999_999
    assert dataset._safe_cut("中文e\u0301") == 2  # before the e, whose accent joins it
    # Never before a mark, even one no composition ends with (U+0334): NFC moves it before the
    # U+0301 after it and composes a with that, across the mark.
    assert dataset._safe_cut("中文a\u0334\u0301") == 2
    assert dataset._safe_cut("\u0301\u0301\u0301") == 0  # marks only: read more


def test_nfd_hangul_gives_the_same_vocabulary_as_nfc(tmp_path: Path) -> None:
    nfc = prepare(write(tmp_path / "nfc.txt", unicodedata.normalize("NFC", KOREAN)), tmp_path)
    nfd = prepare(write(tmp_path / "nfd.txt", unicodedata.normalize("NFD", KOREAN)), tmp_path)
    assert nfc.vocab.symbols == nfd.vocab.symbols
    assert np.array_equal(nfc.ids, nfd.ids)
    kept = prepare(tmp_path / "nfd.txt", tmp_path, normalize="none")
    assert kept.vocab.decode(kept.ids) == unicodedata.normalize("NFD", KOREAN)
    assert kept.vocab.size < nfc.vocab.size  # conjoining jamo instead of syllables


def test_files_of_a_directory_are_joined_by_line_breaks(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    write(root / "b.txt", "둘\n")
    write(root / "a.txt", "one")
    write(root / "sub" / "c.txt", "\ufeffthree")
    write(root / ".hidden" / "x.txt", "never")
    write(root / "._a.txt", b"\x00\x05\x16\x07 macOS resource fork")  # hidden files too: AppleDouble, .notes.txt
    files = dataset.resolve_corpus(str(tmp_path / "corpus"), None)
    assert [f.name for f in files] == ["a.txt", "b.txt", "c.txt"]
    corpus = dataset.prepare_corpus(files, DataOptions())
    assert corpus.vocab.decode(corpus.ids) == "one\n둘\nthree"
    assert corpus.cache_dir.parent == tmp_path / "corpus" / ".prepared"
    assert dataset.resolve_corpus(str(tmp_path / "corpus"), None) == files  # the cache is not corpus


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")
def test_linked_files_are_read_once_and_cached_in_the_named_folder(tmp_path: Path) -> None:
    for folder in ("x", "y", "corpus"):
        (tmp_path / folder).mkdir()
    write(tmp_path / "x" / "a.txt", "one\n")
    write(tmp_path / "y" / "b.txt", "two\n")
    corpus_dir = tmp_path / "corpus"
    (corpus_dir / "a.txt").symlink_to(tmp_path / "x" / "a.txt")
    (corpus_dir / "b.txt").symlink_to(tmp_path / "y" / "b.txt")
    (corpus_dir / "c.txt").symlink_to(tmp_path / "x" / "a.txt")  # the same file again
    corpus = dataset.prepare_corpus(dataset.resolve_corpus(str(corpus_dir), None), DataOptions())
    assert corpus.vocab.decode(corpus.ids) == "one\ntwo\n"
    assert corpus.cache_dir.parent == corpus_dir / ".prepared"  # not tmp_path, where the links lead
    # A linked folder is read too (it was skipped without a word), and a link back up ends.
    (tmp_path / "z").mkdir()
    write(tmp_path / "z" / "d.txt", "four\n")
    (tmp_path / "z" / "back").symlink_to(corpus_dir)
    (corpus_dir / "more").symlink_to(tmp_path / "z")
    files = dataset.resolve_corpus(str(corpus_dir), None)
    assert [f.relative_to(corpus_dir).as_posix() for f in files] == ["a.txt", "b.txt", "c.txt", "more/d.txt"]
    # Two links to one folder: the first by name is read, whatever order the folder lists them in.
    (corpus_dir / "another").symlink_to(tmp_path / "z")
    files = dataset.resolve_corpus(str(corpus_dir), None)
    assert [f.relative_to(corpus_dir).as_posix() for f in files] == ["a.txt", "another/d.txt", "b.txt", "c.txt"]


def test_txt_files_in_any_case_and_the_ones_input_txt_leaves_out(tmp_path: Path, caplog) -> None:
    """Windows names files BOOK.TXT: read like book.txt. With input.txt there, the warning counts
    every .txt file left out, below it too."""
    write(tmp_path / "BOOK.TXT", "upper\n")
    write(tmp_path / "notes.md", "never")
    assert dataset.resolve_corpus(str(tmp_path), None) == [tmp_path / "BOOK.TXT"]
    write(tmp_path / "input.txt", "x")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "more.txt", "y")
    assert dataset.resolve_corpus(str(tmp_path), None) == [tmp_path / "input.txt"]
    assert "the 2 other .txt file(s) in and below it are left out" in caplog.text


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")
def test_a_txt_name_that_holds_no_text_is_refused(tmp_path: Path) -> None:
    """A .txt name that is a link to nothing or a pipe was left out without a word, and --data_dir's
    input.txt gone had the other .txt files beside it read instead: each is refused, named."""
    write(tmp_path / "a.txt", "kept\n")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "moved.txt")
    with pytest.raises(CharRNNError, match=r"--input .*: .*gone\.txt is a link to nothing \(its target is gone\)"):
        dataset.resolve_corpus(None, str(tmp_path))
    (tmp_path / "gone.txt").unlink()
    os.mkfifo(tmp_path / "pipe.txt")
    with pytest.raises(CharRNNError, match=r"pipe\.txt is not a regular file \(a pipe or a device\?\)"):
        dataset.resolve_corpus(None, str(tmp_path))
    (tmp_path / "pipe.txt").unlink()
    (tmp_path / "input.txt").symlink_to(tmp_path / "moved.txt")
    with pytest.raises(CharRNNError, match="--data_dir .*: its input.txt is a link to nothing"):
        dataset.resolve_corpus(str(tmp_path), None)
    assert dataset.resolve_corpus(None, str(tmp_path / "a.txt")) == [tmp_path / "a.txt"]


def test_a_folder_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    """Its .txt files were left out without a word: half the corpus trained as if it were all."""
    root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(dir="/tmp")) if root else tmp_path  # tmp_path's parents are root's alone
    try:
        work.chmod(0o777)
        (work / "private").mkdir()
        write(work / "public.txt", "one\n")
        write(work / "private" / "more.txt", "two\n")
        assert len(dataset.resolve_corpus(None, str(work))) == 2
        for mode in (0o700, 0o744):  # nothing for the others; listed but not entered
            (work / "private").chmod(mode if root else {0o700: 0, 0o744: 0o600}[mode])
            told = told_another_user(lambda: dataset.resolve_corpus(None, str(work)), root)
            assert "CharRNNError" in told and f"cannot read the folder {work / 'private'} (Permission denied)" in told, told
    finally:
        (work / "private").chmod(0o700)
        if root:
            shutil.rmtree(work)


# ---- jamo ------------------------------------------------------------------------------------------

JAMO_TRICKY = [
    "한국어 가 각 힣 ㄱㅏ",                          # syllables and compatibility jamo
    "\u1100\u1161",                                 # an L,V pair as such (only with --normalize none)
    "\u1100\u1161\u11a8 \uac00\u11a8",              # L,V,T; an LV syllable followed by a T
    "\u1161\u11a8\u1100 \u115f\u1161 \u1113\u1161",  # lone vowel/final, fillers, archaic initial
    "\ufdd0\ufdd0\u1161\ufdd0",                     # the escape itself, before a jamo
    "\u1112\u119e\u11ab 글",                         # old Hangul (arae-a) next to modern
    "😀\r\n",
]


def as_printed(text: str) -> str:
    """text as from_jamo(to_jamo(text)) prints it: a modern initial that no vowel or final jamo
    (U+1160-U+11FF), old Hangul jamo (U+A960-U+A97F, U+D7B0-U+D7FF) or U+FDD0 follows, as its letter."""
    keeps = lambda c: "\u1160" <= c <= "\u11ff" or "\ua960" <= c <= "\ua97f" or "\ud7b0" <= c <= "\ud7ff" or c == "\ufdd0"
    return "".join(hangul.STANDALONE_LETTERS[c] if "\u1100" <= c <= "\u1112" and not keeps(after) else c
                   for c, after in zip(text, text[1:] + " "))


def readme_hangul() -> Callable[[str], str]:
    """The README's recipe for an app that reads a jamo model's TFLite ids, as the README gives it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    recipe: dict = {}
    exec(re.search(r"```python\n(import re, unicodedata\ndef hangul.*?)```", readme, re.S)[1], recipe)
    return recipe["hangul"]


def test_the_readme_recipe_prints_jamo_as_sample_py_does() -> None:
    """Its lone-jamo rule is a copy of from_jamo's, for apps without this repository: on what a
    model without the corpus's own jamo writes (no U+FDD0), modern and old Hangul, the same text."""
    printed, rng = readme_hangul(), random.Random(0)
    alphabet = [chr(c) for c in [*range(0x1100, 0x1200), *range(0xA960, 0xA980), *range(0xD7B0, 0xD800)]] + list("a \n")
    for _ in range(3000):
        soup = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        assert printed(soup) == hangul.from_jamo(soup), repr(soup)


def test_to_jamo_round_trips_any_text() -> None:
    rng = random.Random(0)
    alphabet = [(0xAC00, 0xD7A3), (0x1100, 0x11FF), (0xFDD0, 0xFDD0), (0x20, 0x7E), (0x1F300, 0x1F5FF), (0x3131, 0x318E),
                (0xD7B0, 0xD7FF), (0xA960, 0xA97F)]
    for sample in JAMO_TRICKY + ["".join(chr(rng.randint(*rng.choice(alphabet))) for _ in range(5000))]:
        jamo = hangul.to_jamo(sample)
        assert not any(0xAC00 <= ord(c) <= 0xD7A3 for c in jamo)
        assert hangul.from_jamo(jamo) == as_printed(sample)
    assert hangul.to_jamo("한") == "\u1112\u1161\u11ab"
    # U+11A7 (an old vowel, just before the first final) is no final: not escaped, so an initial before it stays.
    assert hangul.to_jamo("\u1100\u11a7") == "\u1100\u11a7" and hangul.from_jamo("\u1100\u11a7") == "\u1100\u11a7"
    # Exact but for those: an NFD pair (an escaped vowel follows), old Hangul, a lone initial.
    assert [hangul.from_jamo(hangul.to_jamo(t)) for t in ("\u1100\u1161", "\u1112\u119e\u11ab", "\u1100\ud7b0",
                                                            "\u110b로")] == ["\u1100\u1161", "\u1112\u119e\u11ab",
                                                                            "\u1100\ud7b0", "ㅇ로"]
    # What a model writes: an initial before a final, or before an escape that keeps nothing, is lone.
    assert [hangul.from_jamo(t) for t in ("\u110c\u11ad", "\u1105\ufdd0\u1108", "\u1100\ufdd0\u1161")] == [
        "ㅈㄶ", "ㄹㅃ", "\u1100\u1161"]


def test_the_letters_a_jamo_model_writes_read_back_as_its_jamo() -> None:
    """A vowel or final that no syllable takes prints as its letter (ㅏ): fed back as a prime, it was
    refused ("characters the model never saw: 'ㅏ'"), and typed on a Korean keyboard too."""
    jamo = hangul.to_jamo("한글 가방 닭 땀 까치\n")
    symbols = sorted(set(jamo))
    vocab = dataset.Vocab(symbols, [1] * len(symbols), unit="jamo")
    written = [symbols.index(c) for c in "\u1161\u11ab" + hangul.to_jamo("한 ") + "\u1101"]
    assert vocab.decode(written) == "ㅏㄴ한 ㄲ"  # a lone initial too
    assert vocab.missing("ㅏㄴ한 ㄲ") == [] and vocab.encode("ㅏㄴ한 ㄲ").tolist() == written
    assert vocab.encode("ㄸ").tolist() == [symbols.index("\u1104")]  # no final has it: the initial
    # After an open syllable a final would join it: 가ㄴ was read as 간 (-n 0 printed 간, and the
    # model went on from it). There the letter is the initial, as a model's lone initial printed.
    both = sorted(set(hangul.to_jamo("가나 한\n")))  # ㄴ as an initial and as a final
    vocab_both = dataset.Vocab(both, [1] * len(both), unit="jamo")
    assert vocab_both.decode(vocab_both.encode("가ㄴ 한ㄴ ㅏㄴ")) == "가ㄴ 한ㄴ ㅏㄴ"
    assert vocab_both.encode("가ㄴ").tolist() == [both.index(c) for c in "\u1100\u1161\u1102"]
    assert vocab.missing("ㅛ") == ["ㅛ"]  # the vocabulary has no ᅭ either
    chars = dataset.Vocab(symbols, [1] * len(symbols), unit="char")  # letters stay letters under char
    assert chars.missing("ㅏ") == ["ㅏ"]


@pytest.mark.parametrize("normalize", ["nfc", "none"])
def test_jamo_unit_round_trips_and_counts_original_characters(tmp_path: Path, monkeypatch, normalize: str) -> None:
    monkeypatch.setattr(dataset, "_READ_BYTES", 5)
    raw = "\n".join(JAMO_TRICKY) + NFD_KOREAN + KOREAN[:3000]
    corpus = prepare(write(tmp_path / "in.txt", raw), tmp_path, unit="jamo", normalize=normalize)
    want = expected_text(raw, normalize)
    assert corpus.vocab.decode(corpus.ids) == as_printed(want)
    # Exact, except that the noncharacter U+FDD0 (the escape; absent from real text) counts twice.
    assert corpus.num_chars == len(want) + want.count("\ufdd0") == dataset.count_chars(corpus.vocab, corpus.ids)
    assert len(corpus.ids) > len(want)
    assert not any(0xAC00 <= ord(s) <= 0xD7A3 for s in corpus.vocab.symbols)
    # The baseline is over original characters (syllables), not jamo.
    counts = collections.Counter(want)
    counts["\ufdd0"] *= 2
    p = np.array(list(counts.values())) / sum(counts.values())
    assert dataset.unigram_entropy_bits(corpus.vocab, corpus.ids) == pytest.approx(-(p * np.log2(p)).sum())
    assert corpus.vocab.encode("한국어").tolist() == [corpus.vocab.symbols.index(c) for c in hangul.to_jamo("한국어")]


def test_jamo_validation_split_starts_on_a_whole_syllable(tmp_path: Path) -> None:
    corpus = prepare(write(tmp_path / "in.txt", "한국어" * 500), tmp_path, unit="jamo")
    for frac in (0.05, 0.1, 0.33):
        for by in ("chars", "symbols"):
            train, val = corpus.split(frac, by=by)
            assert corpus.vocab.decode(train) + corpus.vocab.decode(val) == "한국어" * 500
            assert corpus.vocab.char_starts[val[0]]


def test_both_units_hold_out_the_same_characters(tmp_path: Path) -> None:
    """Validation is the last val_frac of the characters in either unit, so validation bits per
    character of a syllable and a jamo run score the same text (by symbols they differed)."""
    path = write(tmp_path / "in.txt", KOREAN)
    char, jamo = (prepare(path, tmp_path / unit, unit=unit) for unit in ("char", "jamo"))
    for frac in (0.05, 0.2):
        (_, char_val), (_, jamo_val) = char.split(frac), jamo.split(frac)
        assert len(char_val) == round(len(KOREAN) * frac)
        assert jamo.vocab.decode(jamo_val) == char.vocab.decode(char_val) == KOREAN[-len(char_val):]
        assert len(jamo.vocab.decode(jamo.split(frac, by="symbols")[1])) != len(char_val)


# ---- locale and encodings --------------------------------------------------------------------------

def test_korean_under_the_c_locale_without_utf8_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "ko.txt", "\ufeff" + KOREAN.replace("\n", "\r\n"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LANGUAGE")}
    env.update(LC_ALL="C", LANG="C", PYTHONUTF8="0")
    code = ("import locale, sys, dataset; from pathlib import Path\n"
            "c = dataset.prepare_corpus([Path(sys.argv[1])], dataset.DataOptions(), cache_root=Path(sys.argv[2]))\n"
            "Path(sys.argv[3]).write_bytes(c.vocab.decode(c.ids).encode('utf-8'))\n"
            "print(locale.getpreferredencoding(False), sys.flags.utf8_mode)")
    out = run_python(code, str(path), str(tmp_path / "cache"), str(tmp_path / "out.txt"), env=env, text=True)
    assert out.returncode == 0, out.stderr
    encoding, utf8_mode = out.stdout.split()
    assert encoding.lower().replace("-", "") != "utf8" and utf8_mode == "0"  # a non-UTF-8 locale indeed
    assert (tmp_path / "out.txt").read_bytes().decode("utf-8") == expected_text(KOREAN)


def test_cp949_file_gets_one_clear_message_and_reads_with_encoding(tmp_path: Path) -> None:
    text = "first line\nsecond line\n셋째 줄은 한국어\n"
    path = write(tmp_path / "legacy.txt", text.encode("cp949"))
    with pytest.raises(CharRNNError) as error:
        prepare(path, tmp_path)
    message = str(error.value)
    bad = len("first line\nsecond line\n")
    assert str(path) in message and "line 3" in message and f"byte offset {bad}" in message
    assert "looks like cp949: pass --encoding cp949" in message
    corpus = prepare(path, tmp_path, encoding="cp949")
    assert corpus.vocab.decode(corpus.ids) == text
    assert prepare(path, tmp_path, encoding="EUC-KR").vocab.decode(corpus.ids) == text


def test_a_file_of_cp949_lines_then_utf8_lines_is_told_so_under_either_encoding(tmp_path: Path) -> None:
    """Old cp949 notes with new UTF-8 ones appended: no --encoding reads that, and the latin-1 that
    the last resort advice names would train on mojibake."""
    old, new = "옛날 메모는 한국어로 적었다\n" * 3, "새 메모도 한국어로 적는다\n" * 3
    path = write(tmp_path / "notes.txt", old.encode("cp949") + new.encode("utf-8"))
    for encoding in ("utf-8", "cp949"):
        with pytest.raises(CharRNNError, match="partly cp949 and partly UTF-8") as error:
            prepare(path, tmp_path, encoding=encoding)
        assert "latin-1" not in str(error.value)
    # A line that is neither (cp1252 here) makes it no mix of the two: the mix message would hide it.
    assert not decoding._mixes_utf8_and_cp949(old.encode("cp949") + new.encode("utf-8") + b"caf\xe9 cr\xe8me\n")


def test_a_file_in_another_encoding_than_the_others_is_told_to_be_converted(tmp_path: Path) -> None:
    """--encoding is for every file: with UTF-8 and cp949 files side by side, passing the other encoding
    only moves the error to the other file, so the message says to convert."""
    text = "셋째 줄은 한국어\n" * 20
    files = [write(tmp_path / "a.txt", text), write(tmp_path / "b.txt", text.encode("cp949"))]
    cases = [("utf-8", "b.txt", "this one looks like cp949: convert it (iconv -f cp949 -t utf-8 FILE > NEW)"),
             ("cp949", "a.txt", "this one looks like utf-8: convert any cp949 ones to UTF-8")]
    for encoding, bad, advice in cases:
        with pytest.raises(CharRNNError) as error:
            dataset.prepare_corpus(files, DataOptions(encoding=encoding), cache_root=tmp_path / "cache")
        message = str(error.value)
        assert str(tmp_path / bad) in message and "applies to all 2 files" in message and advice in message, message
    # The same with a UTF-16 file: its byte-order mark under utf-8, the UTF-8 file under utf-16.
    files[1] = write(tmp_path / "b.txt", text.encode("utf-16"))
    cases = [("utf-8", "b.txt", "UTF-16 byte-order mark: --encoding utf-8 applies to all 2 files: convert this one "
                                "to UTF-8 (iconv -f utf-16 -t utf-8 FILE > NEW)"),
             ("utf-16", "a.txt", "this one looks like utf-8: convert any utf-16 ones to UTF-8")]
    for encoding, bad, advice in cases:
        with pytest.raises(CharRNNError) as error:
            dataset.prepare_corpus(files, DataOptions(encoding=encoding), cache_root=tmp_path / "cache")
        message = str(error.value)
        assert str(tmp_path / bad) in message and advice in message, message
    # Without a mark, in iconv's name for it (iconv -f utf-16-le fails: "failed to start conversion").
    files[1] = write(tmp_path / "b.txt", text.encode("utf-16-le"))
    with pytest.raises(CharRNNError, match=re.escape("convert this one to UTF-8 (iconv -f utf-16le -t utf-8 FILE")):
        dataset.prepare_corpus(files, DataOptions(), cache_root=tmp_path / "cache")
    assert decoding._iconv("iso2022_kr") == "iso-2022-kr" and decoding._iconv("utf_32_be") == "utf-32be"


def test_parts_in_both_byte_orders_are_refused(tmp_path: Path) -> None:
    """cat of a little- and a big-endian UTF-16 file: the second part's mark reads as U+FFFE, and the
    rest as other characters (spaces as U+2002), which were trained on in silence."""
    first = "First part, 😀.\n".encode("utf-16-le")  # an emoji: two units
    path = write(tmp_path / "joined.txt", b"\xff\xfe" + first + "\ufeffSecond part, big endian.\n".encode("utf-16-be"))
    with pytest.raises(CharRNNError, match=rf"joined.txt: a byte-order mark of the other byte order at byte "
                                           rf"{2 + len(first)}: the file joins utf-16 parts saved in both byte "
                                           rf"orders.*iconv -f utf-16 -t utf-8"):
        prepare(path, tmp_path, encoding="utf-16")
    path = write(tmp_path / "joined.txt", first + "\ufeffSecond part, big endian.\n".encode("utf-16-be"))
    with pytest.raises(CharRNNError, match=rf"at byte {len(first)}: the file joins utf-16-le parts"):
        prepare(path, tmp_path, encoding="utf-16-le")
    # Korean's swapped second part does not even decode (it was told as damaged bytes, and iconv -c
    # advised, which keeps it as garbage); nor does UTF-32's.
    korean = ("대한민국 헌법 제1조\n" * 20).encode("utf-16")
    write(path, korean + "\ufeff대한민국 헌법 제1조\n".encode("utf-16-be"))
    with pytest.raises(CharRNNError, match=f"at byte {len(korean)}: the file joins utf-16 parts"):
        prepare(path, tmp_path, encoding="utf-16")
    english = ("Part one.\n" * 5).encode("utf-32")
    write(path, english + "\ufeffPart two.\n".encode("utf-32-be"))
    with pytest.raises(CharRNNError, match=f"at byte {len(english)}: the file joins utf-32 parts"):
        prepare(path, tmp_path, encoding="utf-32")
    # A whole file in the other byte order, its mark first: told so, not as joined parts.
    write(path, ("\ufeff" + "plain text here\n" * 20).encode("utf-16-le"))
    with pytest.raises(CharRNNError, match="the file is in the other byte order; pass --encoding utf-16-le"):
        prepare(path, tmp_path, encoding="utf-16-be")


@pytest.mark.parametrize("windows", [False, True], ids=["iconv", "python"])
def test_the_commands_that_messages_give_do_what_they_say(tmp_path: Path, windows: bool) -> None:
    """Messages give commands to convert or cut a file: iconv and truncate, which Windows lacks, or
    there Python's own (run here through a shell as cmd.exe and PowerShell pass them: double quotes
    outside, single inside). Each is run on a real file whose path has a space and an apostrophe
    (C:\\Users\\O'Brien), with the placeholders filled in."""
    def run_it(command: str, file: Path, new: Path | None = None) -> None:
        if not windows and not shutil.which(command.split()[0]):
            pytest.skip(f"no {command.split()[0]} here")
        command = command.replace("python", shlex.quote(sys.executable), 1) if windows else command
        for placeholder, path in (("FILE", file), ("FIXED", new), ("NEW", new)):
            command = command.replace(f" {placeholder}", f" {shlex.quote(str(path))}")
        subprocess.run(["bash", "-c", command], check=True, capture_output=True)

    folder = tmp_path / "O'Brien docs"
    folder.mkdir()
    text = "대한민국 헌법\r\n제1조\n"
    write(folder / "a.txt", text.encode("cp949"))
    run_it(decoding.convert_command("cp949", windows=windows), folder / "a.txt", folder / "a8.txt")
    assert (folder / "a8.txt").read_bytes() == text.encode("utf-8")  # the line ends as they were
    run_it(decoding.convert_command("utf-8", "utf-16-le", windows=windows), folder / "a8.txt", folder / "a16.txt")
    assert (folder / "a16.txt").read_bytes() == text.encode("utf-16-le")
    run_it(decoding.convert_command("cp949", "utf-8-sig", files=not windows, windows=windows), folder / "a.txt",
           folder / "part.txt")  # a part of a utf-8-sig file: no mark in the middle of it
    if windows:
        assert (folder / "part.txt").read_bytes() == text.encode("utf-8")
    write(folder / "bad.txt", "한국 \xff어\n".encode("utf-8").replace(b"\xc3\xbf", b"\xff"))
    run_it(decoding.convert_command("utf-8", new="FIXED", drop_invalid=True, windows=windows), folder / "bad.txt",
           folder / "fixed.txt")
    assert (folder / "fixed.txt").read_bytes() == "한국 어\n".encode("utf-8")
    write(folder / "cut.txt", b"text\0\0\0")
    write(tmp_path / "cut.txt", b"another file")  # what an unquoted path's last word would name
    command = decoding.cut_command(4, str(folder / "cut.txt"), windows=windows)
    subprocess.run(["bash", "-c", command.replace("python", shlex.quote(sys.executable), 1) if windows else command],
                   check=True, capture_output=True, cwd=tmp_path)
    assert (folder / "cut.txt").read_bytes() == b"text" and (tmp_path / "cut.txt").read_bytes() == b"another file"
    assert decoding.convert_command("euc_kr", files=False, windows=False) == "iconv -f euc-kr -t utf-8"


def test_a_tail_of_zeros_is_told_as_one(tmp_path: Path) -> None:
    """A copy cut short, or a file preallocated and half written: text, then NUL bytes to the end. It was
    called a binary file (the 64 KiB around its first NUL are mostly controls) with no way out."""
    text = b"plain text\n" * 300_000  # the zeros start in the second read
    path = write(tmp_path / "cut.txt", text + b"\0" * 100_000)
    with pytest.raises(CharRNNError, match=f"cut.txt: text up to byte {len(text):,}, and only NUL bytes from there to "
                                           f"the end .* truncate -s {len(text)} FILE"):
        prepare(path, tmp_path)
    # Zeros that text follows are a binary part, as before: in the read they start in, and where they
    # run to its end (the second read ends at 4 MiB), in a later one, which truncating would cut off.
    for zeros in (100_000, 1_000_000):
        write(path, text + b"\0" * zeros + b"more text\n")
        with pytest.raises(CharRNNError, match="looks like a binary file") as refused:
            prepare(path, tmp_path)
        assert "truncate" not in str(refused.value)


@pytest.mark.parametrize("small_chunk", [0, 1 << 40], ids=["bincount", "sort"])
def test_both_ways_of_counting_a_chunk_give_one_preparation(tmp_path: Path, monkeypatch, small_chunk: int) -> None:
    """Chunks are counted by bincount, or (small ones: a folder of many small files) by sorting."""
    text = "대한민국 헌법 😀 naïve\n" * 50 + "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 e\u0301\n" * 30
    reference = prepare(write(tmp_path / "a.txt", text), tmp_path)
    monkeypatch.setattr(dataset, "_SMALL_CHUNK", small_chunk)
    corpus = dataset.prepare_corpus([tmp_path / "a.txt"], DataOptions(), cache_root=tmp_path / f"c{small_chunk}")
    assert corpus.vocab.symbols == reference.vocab.symbols and corpus.vocab.counts == reference.vocab.counts
    np.testing.assert_array_equal(corpus.ids, reference.ids)


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"], ids=["unix", "windows", "old mac"])
def test_a_bad_byte_s_line_counts_every_kind_of_line_end(tmp_path: Path, monkeypatch, line_end: str) -> None:
    """An old Mac's file (line ends \r alone) was said to fail at line 1 wherever the bad byte was. Counted
    a few bytes at a time here, so that \r\n is cut between two reads too."""
    monkeypatch.setattr(decoding, "_COUNT_BYTES", 7)
    path = write(tmp_path / "x.txt", f"line ab{line_end}".encode() * 399 + b"caf\xe9" + line_end.encode() * 9)
    with pytest.raises(CharRNNError, match="not valid utf-8 at line 400, byte offset"):
        prepare(path, tmp_path)


def test_a_read_error_names_the_file(tmp_path: Path, monkeypatch) -> None:
    """A failing disk's EIO carries no file name: the message named the cache folder instead."""
    import errno
    path = write(tmp_path / "x.txt", "some text\n" * 10)

    class FailingDisk:
        def __init__(self, *_):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def read(self, size=-1):
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(dataset, "open", FailingDisk, raising=False)
    with pytest.raises(OSError) as error:
        list(dataset._read_text(path, DataOptions(), lambda _: None))
    assert error.value.filename == str(path) and error.value.errno == errno.EIO


def test_only_cached_preparations_and_those_of_deleted_files(tmp_path: Path) -> None:
    """only_cached gives a preparation only where one is cached; and one of a file since deleted
    from its folder (a corpus folder's file list changed) goes with the next preparation there, as
    one of the files as they no longer are does: a multi-GB corpus left a copy at each change."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    files = [write(folder / "a.txt", "abc\n" * 50), write(folder / "b.txt", "abd\n" * 50)]
    assert dataset.prepare_corpus(files, DataOptions(), only_cached=True) is None
    both = dataset.prepare_corpus(files, DataOptions())
    assert dataset.prepare_corpus(files, DataOptions(), only_cached=True).cache_dir == both.cache_dir
    alone = dataset.prepare_corpus(files[:1], DataOptions())  # another set of files: both stay
    assert both.cache_dir.is_dir() and alone.cache_dir.is_dir()
    files[1].unlink()
    dataset.prepare_corpus([write(folder / "c.txt", "xyz\n" * 50)], DataOptions())
    assert not both.cache_dir.exists() and alone.cache_dir.is_dir()


def test_a_file_added_to_a_corpus_folder_replaces_its_preparation(tmp_path: Path) -> None:
    """A growing folder (a day's news added) left a whole copy of the corpus at each file added: the
    old preparation's files are all still there, so neither rule above removed it. The folder named is
    recorded; a preparation of it with other files replaces the one before, not one of another name."""
    folder = tmp_path / "news"
    folder.mkdir()
    write(folder / "a.txt", "abc\n" * 50)

    def prepare_named(named: Path, **options) -> dataset.Corpus:
        files = dataset.resolve_corpus(None, str(named))
        return dataset.prepare_corpus(files, DataOptions(**options), source=named)

    first = prepare_named(folder)
    jamo = prepare_named(folder, unit="jamo")  # other options: another use of the folder, kept
    write(folder / "b.txt", "abd\n" * 50)
    second = prepare_named(folder)
    assert not first.cache_dir.exists() and second.cache_dir.is_dir() and jamo.cache_dir.is_dir()
    alone = prepare_named(folder / "a.txt")  # the first file alone, named so: its own preparation
    write(folder / "c.txt", "xyz\n" * 50)
    third = prepare_named(folder)
    assert not second.cache_dir.exists() and third.cache_dir.is_dir() and alone.cache_dir.is_dir()
    assert json.loads((third.cache_dir / "meta.json").read_text(encoding="utf-8"))["source"] == str(folder)
    # A file added that fails to prepare: the folder's preparation stays, since it was not replaced.
    write(folder / "d.txt", b"caf\xe9\n")
    with pytest.raises(CharRNNError, match="not valid utf-8"):
        prepare_named(folder)
    assert third.cache_dir.is_dir()


def test_only_a_folder_read_whole_replaces_its_preparations(tmp_path: Path, monkeypatch) -> None:
    """As train.py names the source: --data_dir DIR reads DIR/input.txt and --input DIR every .txt, two
    corpora, each kept; so are a linked file's and its target's."""
    import plan
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "d"
    folder.mkdir()
    write(folder / "input.txt", "abc\n" * 50)
    write(folder / "more.txt", "xyz\n" * 50)
    write(folder / "v1.txt", "v1\n" * 50)
    write(folder / "v2.txt", "v2\n" * 50)
    (folder / "latest.txt").symlink_to("v1.txt")

    def read(*flags: str) -> dataset.Corpus:
        return plan.read_corpus(plan.build_parser().parse_args(list(flags)), set(), None)

    by_input_txt, by_all = read("--data_dir", "d"), read("--input", "d")
    assert read("--data_dir", "d").cache_dir == by_input_txt.cache_dir and by_all.cache_dir.is_dir()
    linked = read("--input", "d/latest.txt")
    (folder / "latest.txt").unlink()
    (folder / "latest.txt").symlink_to("v2.txt")
    read("--input", "d/latest.txt")
    assert linked.cache_dir.is_dir() and read("--input", "d/v1.txt").cache_dir == linked.cache_dir
    assert json.loads((by_all.cache_dir / "meta.json").read_text(encoding="utf-8"))["source"] == str(folder)


def test_the_user_cache_keeps_preparations_of_files_not_found_here(tmp_path: Path, monkeypatch) -> None:
    """The user's cache serves every corpus, and hosts that share a home: a file missing here may be
    on a disk not mounted here, so its preparation stays (beside the corpus it goes)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = dataset._user_cache_root()
    files = [write(tmp_path / "a.txt", "abc\n" * 50), write(tmp_path / "b.txt", "abd\n" * 50)]
    both = dataset.prepare_corpus(files, DataOptions(), cache_root=cache)
    files[1].unlink()
    dataset.prepare_corpus([write(tmp_path / "c.txt", "xyz\n" * 50)], DataOptions(), cache_root=cache)
    assert both.cache_dir.is_dir()


def test_preparations_under_other_flags_are_counted_with_their_room(tmp_path: Path, caplog) -> None:
    """Each set of data flags keeps a whole copy of the ids beside the others: the user is told how
    many there are and the room they take, once a new one is made (not when one is reused)."""
    caplog.set_level(logging.INFO, logger="charrnn")
    text = write(tmp_path / "ko.txt", KOREAN * 30)  # megabytes of ids, so that the room said is not 0.0 MB
    first = prepare(text, tmp_path)
    assert "preparations of this text" not in caplog.text
    second = prepare(text, tmp_path, unit="jamo")
    room = sum(f.stat().st_size for d in (first.cache_dir, second.cache_dir) for f in d.iterdir())
    said = f"{tmp_path / 'cache'} holds 2 preparations of this text, {room / 1e6:,.1f} MB: one per set of data flags"
    assert said in caplog.text and room > 2e6, caplog.text
    caplog.clear()
    prepare(text, tmp_path, unit="jamo")
    prepare(write(tmp_path / "other.txt", "another text\n"), tmp_path)  # of other files: not counted
    assert "preparations of this text" not in caplog.text


def test_a_damaged_preparation_found_only_cached_goes(tmp_path: Path, caplog) -> None:
    """A resumed run looks for the text's own preparation without making one: a damaged one is
    warned of once and removed, not warned of at every resume."""
    path = write(tmp_path / "a.txt", "abc\n" * 50)
    own = dataset.prepare_corpus([path], DataOptions())
    (own.cache_dir / "ids.npy").write_bytes(b"cut")
    assert dataset.prepare_corpus([path], DataOptions(), only_cached=True) is None
    assert "ignoring damaged prepared data" in caplog.text and not own.cache_dir.exists()


def test_prepared_on_a_given_vocabulary(tmp_path: Path) -> None:
    """A resumed run's text is prepared on the run's vocabulary: the run's ids for its characters,
    its own counts, cached beside the text's own preparation."""
    cache = tmp_path / "cache"
    first = prepare(write(tmp_path / "a.txt", "aaaabbbc\n" * 50), tmp_path)
    other = write(tmp_path / "b.txt", "cccbba\n" * 50)  # the same characters, in another order of frequency
    own = prepare(other, tmp_path)
    assert own.vocab.symbols != first.vocab.symbols
    on = dataset.prepare_corpus([other], DataOptions(), cache_root=cache, vocab=first.vocab)
    assert on.vocab.symbols == first.vocab.symbols and on.vocab.decode(on.ids) == "cccbba\n" * 50
    assert dict(zip(on.vocab.symbols, on.vocab.counts)) == {"a": 50, "b": 100, "c": 150, "\n": 50}
    assert (own.cache_dir / "meta.json").is_file() and on.cache_dir != own.cache_dir  # neither outdates the other
    assert dataset.prepare_corpus([other], DataOptions(), cache_root=cache, vocab=first.vocab).cache_dir == on.cache_dir
    # A symbol this text lacks keeps its place, with a count of 0 (vocab.json keeps every row).
    without_c = dataset.prepare_corpus([write(tmp_path / "no_c.txt", "ab\n" * 50)], DataOptions(), cache_root=cache,
                                       vocab=first.vocab)
    assert first.vocab.symbols[-1] == "c" and without_c.vocab.counts == [50, 50, 50, 0]
    assert dataset.Vocab.load(without_c.cache_dir / "vocab.json").symbols == first.vocab.symbols
    # A character the vocabulary lacks: refused, or its unknown symbol where it has one.
    new = write(tmp_path / "c.txt", "abcz\n" * 50)
    with pytest.raises(CharRNNError, match="the vocabulary lacks: 'z'"):
        dataset.prepare_corpus([new], DataOptions(), cache_root=cache, vocab=first.vocab)
    with_unknown = dataset.Vocab([*first.vocab.symbols, "\ufffd"], [1] * 5, unk_id=4)
    mapped = dataset.prepare_corpus([new], DataOptions(), cache_root=cache, vocab=with_unknown)
    assert mapped.vocab.decode(mapped.ids) == "abc\ufffd\n" * 50
    # Under jamo the unknown symbol stands for whole characters: a jamo the vocabulary lacks is refused,
    # not turned into it alone (각 would become 가 and U+FFFD, two characters).
    jamo = prepare(write(tmp_path / "ko.txt", "가나다\n" * 50 + "😀"), tmp_path, unit="jamo", max_vocab=5)
    assert jamo.vocab.unk_id is not None and "\u11a8" not in jamo.vocab.symbols
    with pytest.raises(dataset.LackingCharacters, match="U\\+11A8"):
        dataset.prepare_corpus([write(tmp_path / "ko2.txt", "각나다\n" * 50)], DataOptions(unit="jamo", max_vocab=5),
                               cache_root=cache, vocab=jamo.vocab)
    # An initial too (라: ᄅ and a known ᅡ, which alone would print as ㅏ), and the escape of an original jamo.
    for name, text, lacking in (("ko3.txt", "라나다\n", "U\\+1105"), ("ko4.txt", "가\u1161나다\n", "U\\+FDD0")):
        with pytest.raises(dataset.LackingCharacters, match=lacking):
            dataset.prepare_corpus([write(tmp_path / name, text * 50)], DataOptions(unit="jamo", max_vocab=5),
                                   cache_root=cache, vocab=jamo.vocab)


def test_error_offset_counts_from_the_file_start_across_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(dataset, "_READ_BYTES", 4)
    head = "가나다\n" * 10 + "ab"
    path = write(tmp_path / "bad.txt", head.encode() + b"\xff tail\n")
    # ... and the Hangul read in 4-byte chunks before it still says the file is UTF-8.
    with pytest.raises(CharRNNError, match=f"line 11, byte offset {len(head.encode())} .*these are damaged bytes"):
        prepare(path, tmp_path)


@pytest.mark.parametrize("data, expected", [
    (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", r"looks like a binary file, not text \(NUL byte at offset 7\)"),
    # Control bytes but no NUL: binary too (it was named a legacy encoding to pass)
    (bytes(range(1, 256)) * 8, "looks like a binary file"),
    ("text".encode("utf-16"), "pass --encoding utf-16"),
    # latin-1 and cp1252 read these bytes alike; Windows' cp1252 reads its quotes too.
    (b"caf\xe9 cr\xe8me br\xfbl\xe9e\n", r"not utf-8 or cp949 either, and looks like European text in cp1252: "
     r"pass --encoding cp1252 \(or convert the file to UTF-8\); cp1252 is for Western European languages: Czech, "
     "Hungarian or other Central European text is cp1250, Turkish cp1254"),
    # A lone à is Hebrew's alef in cp1255: one letter is no evidence of an alphabet.
    (b"We ordered \xe0 la carte.\nThen a chat vis-\xe0-vis.\n", "looks like European text in cp1252"),
    # Other legacy encodings are named where the text reads as that language; Shift-JIS was told
    # "e.g. --encoding cp1252", which trains on mojibake.
    ("ROMEO: Is the day so young?\n吾輩は猫である。名前はまだ無い。\n".encode("cp932") * 3,
     r"looks like Japanese in cp932 \(Shift-JIS\): pass --encoding cp932"),
    ("中华人民共和国是工人阶级领导的人民民主专政的社会主义国家。\n".encode("gbk") * 3, "looks like Chinese in gb18030"),
    ("中華民國基於三民主義，為民有民治民享之民主共和國。\n".encode("big5") * 3, "looks like Chinese in big5"),
    ("Мой дядя самых честных правил, когда не в шутку занемог.\n".encode("cp1251") * 3, "looks like Cyrillic in cp1251"),
    # Capitals, dashes and quotes are Cyrillic text too; Ukrainian in cp1255 has Hebrew's common
    # letters, but ם (for н) inside words.
    ("— Нет, я вам вперед говорю, — сказал он. «Вот» как…\n— Да, № 5, ДА!\n".encode("cp1251") * 3,
     "looks like Cyrillic in cp1251"),
    ("Реве та стогне Дніпр широкий.\n".encode("cp1251"), "looks like Cyrillic in cp1251"),
    ("Мой дядя самых честных правил, когда не в шутку занемог.\n".encode("koi8-r") * 3, "looks like Cyrillic in koi8-r"),
    ("Litwo! Ojczyzno moja! ty jesteś jak zdrowie. Ile cię trzeba cenić, ten tylko się dowie, kto cię stracił.\n"
     .encode("cp1250") * 3,
     "looks like Central European text in cp1250"),
    # Greek in cp1251 is lowercase Cyrillic and in cp1252 accented Latin: cp1253 is named.
    ("ROMEO: Is the day so young?\nΆνδρα μοι έννεπε, Μούσα, πολύτροπον.\n".encode("cp1253") * 3,
     "looks like Greek in cp1253: pass --encoding cp1253"),
    # Thai is not recognized (in gb18030 it reads as rare Chinese characters): the list instead.
    ("ROMEO: Is the day so young?\nภาษาไทยเป็นภาษาที่สวยงาม\n".encode("cp874") * 3,
     r"not utf-8 or cp949 either: pass --encoding with the file's encoding or convert it to UTF-8 \(from Windows: "
     "cp1252 Western European.*cp874 Thai"),
    # Windows' curly quotes (0x92-0x94) are control characters in latin-1: cp1252 is the advice.
    (b"It\x92s a \x93caf\xe9\x94, \x96 fine\n", "not utf-8 or cp949 either.*--encoding cp1252"),
    # 0x92 and the letter after it are a cp949 extension syllable: no reason to think the file Korean.
    (b"don\x92t stop, it\x92s fine\n" * 3, "not utf-8 or cp949 either.*--encoding cp1252"),
    ("text\n".encode("utf-32"), "UTF-32 byte-order mark: pass --encoding utf-32"),
    # UTF-8 with Hangul before the error: damage, a pasted cp949 part, or a cut-off end, never
    # "another encoding" for the whole file (latin-1 would read it all as mojibake).
    ("한국어 문장\n".encode() * 9 + b"\xed\xa0\x80 \xff\n" + "끝\n".encode(), "byte offset 153 .*the text before "
     "it is UTF-8, so these are damaged bytes.*iconv -c -f utf-8 -t utf-8"),
    ("한국어 문장\n".encode() * 9 + "셋째 줄은 한국어\n".encode("cp949"), "the text before it is UTF-8 and from "
     "here it looks like cp949.*iconv -f cp949 -t utf-8"),
    (("한국어 문장\n".encode() * 9)[:-2], "byte offset 149 .*ends in the middle of a character.*drop its last "
     "2 byte.*truncate -s 149 "),
    ("한국어 문장\n".encode() * 9 + "crème brûlée à la française\n".encode("latin-1") * 5, "the text before it "
     r"is UTF-8 and from here it looks like European text in cp1252.*iconv -f cp1252 -t utf-8\); cp1252 is for Western"),
    ("한국어 문장\n".encode() * 9 + "\xff\xfe\xfd\xfc\n".encode("latin-1") * 5, "the text before it "
     "is UTF-8 and from here it is not: a part in another encoding to convert to UTF-8, or damage"),
    # A few characters that happen to be valid UTF-8 (처 is C3 B3 in cp949, É' is C9 92 in cp1252)
    # are no evidence: the whole file's encoding is the advice.
    ("처음 시작하는 한국어 문장입니다.\n".encode("cp949") * 3, "looks like cp949: pass --encoding cp949"),
    ("CAFÉ’S MENU\ncafé au lait\n".encode("cp1252"), "not utf-8 or cp949 either.*--encoding cp1252"),
    (b"", "empty"),
])
def test_unreadable_files_get_a_message(tmp_path: Path, data: bytes, expected: str) -> None:
    path = write(tmp_path / "x.txt", data)
    with pytest.raises(CharRNNError, match=expected) as error:
        prepare(path, tmp_path) if data else dataset.resolve_corpus(None, str(path))
    assert str(path) in str(error.value)


@pytest.mark.parametrize("bad", [b"\xe2\x82", b"\xc0\xaf", b"\xff\xfe"], ids=["cut euro", "overlong slash", "stray mark"])
def test_one_bad_run_deep_in_ascii_text_is_told_both_ways(tmp_path: Path, bad: bytes) -> None:
    """A euro sign cut short, an overlong slash or a stray mark deep in ASCII text is damage as likely
    as one character of another encoding: it was told "looks like cp1252 / cp949", which trains on
    mojibake."""
    path = write(tmp_path / "x.txt", b"plain text\n" * 20000 + bad + b" more text\n" * 20)
    with pytest.raises(CharRNNError) as error:
        prepare(path, tmp_path)
    assert (f"{path}: not valid utf-8 at line 20,001, byte offset 220,000 (bytes {bad.hex(' ')} 20 6d); the text "
            f"around it is ASCII, which says nothing of its encoding: if the file is not UTF-8, pass --encoding with "
            f"its encoding (from Windows often cp1252, Korean cp949); if it is, these are damaged bytes to fix or "
            f"remove (iconv -c -f utf-8 -t utf-8 FILE > FIXED drops every invalid byte)") == str(error.value)


@pytest.mark.parametrize("data, expected", [
    # One run, but of a whole text in another encoding: no ASCII around it to say nothing.
    ("中文的文本没有换行符号，这是一个很长的句子。".encode("gb18030") * 40, "looks like Chinese in gb18030"),
    # One Korean word in cp949 is more than one character's worth: evidence enough.
    (b"a note from " + "안녕하세요".encode("cp949") + b"\n", "this looks like cp949: pass --encoding cp949"),
    # A UTF-8 character's first bytes at the end of ASCII text: a cut-off last character.
    (b"plain text\n" * 9 + b"\xe2\x82", "byte offset 99 .*the file is UTF-8 but ends in the middle of a character"),
    ((b"plain text\n" * 200_000)[:2 << 20] + b"\xe2\x82", "ends in the middle of a character"),  # past a chunk
], ids=["gb18030 line", "one cp949 word", "cut euro at the end", "cut euro past 2 MiB"])
def test_one_run_rule_keeps_to_one_character_in_ascii(tmp_path: Path, data: bytes, expected: str) -> None:
    path = write(tmp_path / "x.txt", data)
    with pytest.raises(CharRNNError, match=expected):
        prepare(path, tmp_path)


def test_a_nul_in_a_short_last_chunk_is_judged_with_the_text_before_it(tmp_path: Path) -> None:
    path = write(tmp_path / "x.txt", (b"plain text\n" * 200_000)[:2 << 20] + b"\x00ab")
    with pytest.raises(CharRNNError, match="text with a NUL byte at offset 2,097,152, which no text has"):
        prepare(path, tmp_path)


@pytest.mark.parametrize("at", [22_000, 2_750_000], ids=["in the first chunk", "past it"])
def test_a_nul_byte_in_text_is_told_with_the_way_out(tmp_path: Path, at: int) -> None:
    """The same message wherever the NUL is: one past the first 2 MiB read was trained on as a
    character, and one before it called the file binary with no way out."""
    path = write(tmp_path / "x.txt", b"plain text\n" * (at // 11) + b"\x00" + b" more text\n" * 20)
    with pytest.raises(CharRNNError) as error:
        prepare(path, tmp_path)
    assert str(error.value) == (f"{path}: text with a NUL byte at offset {at:,}, which no text has (a stray one, or a "
                                f"binary part): remove the NUL bytes, e.g. tr -d '\\000' < FILE > FIXED, and pass FIXED")


LAW = "대한민국 헌법 제1조 대한민국은 민주공화국이다.\n" * 300
ENGLISH = "It\u2019s true \u2014 \u201cna\u00efve caf\u00e9\u201d. Don\u2019t you agree?\n" * 40


@pytest.mark.parametrize("encoding, data, expected", [
    # One Windows apostrophe where only ASCII came before: the UTF-8 after it says what the file is
    # (it was named cp1250, which then trained on mojibake).
    ("utf-8", b"Preface: the author\x92s note\n" + ENGLISH.encode(), "line 1, byte offset 19 .*the text around it is "
     "UTF-8, so these are damaged bytes.*iconv -c -f utf-8 -t utf-8"),
    # utf-8-sig is UTF-8 (its mark dropped): damaged, it is told so as UTF-8 is, not "not utf-8-sig".
    ("utf-8-sig", b"\xef\xbb\xbf" + "한국어 문장\n".encode() * 9 + b"\xff\n", "the text before it is UTF-8, so these are "
     "damaged bytes.*iconv -c -f utf-8 -t utf-8"),
    # A legacy file that is damaged, or cut short, is told so as UTF-8 is (it was "not cp949 either").
    ("cp949", LAW.encode("cp949")[:3000] + b"\xff" + LAW.encode("cp949")[3000:], "line 64, byte offset 3,000 .*the text "
     "before it is cp949, so these are damaged bytes.*iconv -c -f cp949 -t utf-8 FILE > FIXED converts it to UTF-8"),
    ("euc_kr", LAW.encode("cp949")[:-2] + b"\xb4", "byte offset 14,098 .*the file is euc_kr but ends in the middle of "
     "a character.*truncate -s 14098 "),
    # UTF-16 is full of NULs: cut short or damaged, it was called a binary file, its lines counted
    # by the bytes 0A that its Hangul hold too.
    ("utf-16", ("한국어 텍스트\r\n" * 300).encode("utf-16")[:-1], "line 300, byte offset 5,400 .*the file is utf-16 "
     "but ends in the middle of a character"),
    ("utf-16-be", "갊\n".encode("utf-16-be") * 40 + b"\xdc\x00" + "abc\n".encode("utf-16-be"), "line 41, byte offset 160 "
     ".*the text before it is utf-16-be, so these are damaged bytes.*iconv -c -f utf-16be -t utf-8"),
    # UTF-32 marked big-endian, damaged past the first 64 KiB: the bytes around the bad one, which
    # hold no mark, are read in the mark's byte order (read little-endian, they were "a binary file").
    ("utf-32", b"\x00\x00\xfe\xff" + "갊\n".encode("utf-32-be") * 10000 + b"\x00\x11\x00\x00" + "abc\n".encode("utf-32-be"),
     "line 10,001, byte offset 80,004 .*the text before it is utf-32, so these are damaged bytes"),
])
def test_a_file_in_its_encoding_is_told_where_it_is_damaged(tmp_path: Path, encoding: str, data: bytes,
                                                             expected: str) -> None:
    path = write(tmp_path / "x.txt", data)
    with pytest.raises(CharRNNError, match=expected):
        prepare(path, tmp_path, encoding=encoding)


def test_a_wrong_encoding_that_decodes_is_caught(tmp_path: Path, caplog, monkeypatch) -> None:
    """UTF-32 read as UTF-16 decodes, every other character a NUL: refused. A Windows file read as
    latin-1 decodes too, its quotes as C1 controls: warned, with cp1252 named. UTF-8 read as latin-1
    decodes as well, into mojibake: refused."""
    path = write(tmp_path / "wide.txt", ("some text\n" * 50).encode("utf-32"))
    with pytest.raises(CharRNNError, match="under --encoding utf-16 the text is 50% NUL characters"):
        prepare(path, tmp_path, encoding="utf-16")
    # Emoji in UTF-32 read as UTF-16 are two characters, neither a NUL: fewer NULs, refused all the same.
    path = write(tmp_path / "emoji.txt", ("I \u2764\ufe0f \U0001f600\U0001f389\U0001f388 party \U0001f973\U0001f973!\n" * 50)
                 .encode("utf-32"))
    with pytest.raises(CharRNNError, match="under --encoding utf-16 the text is 37% NUL characters"):
        prepare(path, tmp_path, encoding="utf-16")
    path = write(tmp_path / "win.txt", b"It\x92s \x93here\x94\n" * 20)
    for encoding in ("latin-1", "iso8859-15"):
        caplog.clear()
        corpus = prepare(path, tmp_path, encoding=encoding)
        assert "\x92" in corpus.vocab.symbols  # read as asked,
        assert "60 C1 control characters" in caplog.text and "--encoding cp1252" in caplog.text  # and said
    # UTF-8 read under a single-byte code page decodes to mojibake: refused, with the fix named.
    # Also where the first chunk read ends inside a character (1000 bytes: in the middle of 장).
    with monkeypatch.context() as patch:
        patch.setattr(dataset, "_READ_BYTES", 1000)
        path = write(tmp_path / "cut8.txt", ("한국어 문장\n" * 200).encode("utf-8"))
        with pytest.raises(CharRNNError, match=r"this is UTF-8 text, which --encoding \S+ garbles"):
            prepare(path, tmp_path, encoding="latin-1")
    path = write(tmp_path / "ko8.txt", KOREAN[:3000].encode("utf-8"))
    for encoding in ("latin-1", "mac-roman", "koi8-r", "unicode_escape"):  # Python's escapes read bytes as latin-1
        with pytest.raises(CharRNNError, match=r"this is UTF-8 text, which --encoding \S+ garbles .* drop --encoding"):
            prepare(path, tmp_path, encoding=encoding)
    # Beside a latin-1 file, which that --encoding reads right: the latin-1 one is to be converted.
    files = [write(tmp_path / "a-latin1.txt", "café crème\n".encode("latin-1") * 50), path]
    with pytest.raises(CharRNNError, match=r"ko8.txt: this is UTF-8 text, .*--encoding (\S+) applies to all 2 files: "
                                           r"convert any \1 ones to UTF-8 \(iconv -f \S+ -t utf-8 FILE > NEW\)"):
        dataset.prepare_corpus(files, DataOptions(encoding="latin-1"), cache_root=tmp_path / "cache")
    # Korean in cp949 decodes under any one-byte code page, as mojibake: refused, with cp949 named.
    # Also where the chunk read ends inside a character (1002 bytes: in the middle of a syllable).
    with monkeypatch.context() as patch:
        patch.setattr(dataset, "_READ_BYTES", 1002)
        path = write(tmp_path / "ko949.txt", ("a" + KOREAN[:3000]).encode("cp949", errors="ignore"))
        for encoding in ("latin-1", "cp1252", "koi8-r"):
            with pytest.raises(CharRNNError, match=r"under --encoding \S+ the text is mojibake .*, which reads as "
                                                   r"Korean in cp949 \('\S*[가-힣]\S*'\): pass --encoding cp949"):
                prepare(path, tmp_path, encoding=encoding)
    # EBCDIC puts even ASCII above 0x7f, where "Ba" (C2 81) happens to be UTF-8: read as asked, not refused.
    corpus = prepare(write(tmp_path / "ebcdic.txt", "Ba Ba Ba\n".encode("cp500") * 20), tmp_path, encoding="cp500")
    assert set(corpus.vocab.symbols) >= {"B", "a", " ", "\n"}
    # Nor is it Korean mojibake where its bytes happen to read as cp949 Hangul.
    for name, line in (("ebcdic2.txt", "DEAD BEEF CAFE FACE\n"), ("ebcdic3.txt", "EFFACE FACE DECADE BEEF Ä\n")):
        corpus = prepare(write(tmp_path / name, line.encode("cp500") * 20), tmp_path, encoding="cp500")
        assert set(corpus.vocab.symbols) == set(line)
    # Under EBCDIC, a file with ASCII's spaces or line breaks is no EBCDIC: UTF-8 (Chinese too, which
    # has no spaces) is named, another is told so; EBCDIC's own German is read.
    for name, data in (("de8.txt", "Der Bär läuft über die Straße.\n".encode("utf-8") * 20),
                       ("zh8.txt", "中华人民共和国是工人阶级领导的国家。\n".encode("utf-8") * 20)):
        with pytest.raises(CharRNNError, match=r"this is UTF-8 text, which --encoding cp500 garbles"):
            prepare(write(tmp_path / name, data), tmp_path, encoding="cp500")
    with pytest.raises(CharRNNError, match=r"--encoding cp500 is EBCDIC, and the file's spaces and line breaks are "
                                           r"ASCII's, not EBCDIC's: pass the file's own encoding"):
        prepare(write(tmp_path / "de1252.txt", "Grüße aus Köln!\n".encode("cp1252") * 20), tmp_path, encoding="cp500")
    german = "Der Bär läuft über die Straße.\n" * 20
    assert prepare(write(tmp_path / "de500.txt", german.encode("cp273")), tmp_path, encoding="cp273").vocab.size == \
        len(set(german))
    # utf-8-sig (UTF-8 whose BOM is dropped) gets the checks UTF-8 gets: a UTF-16 file is named.
    with pytest.raises(CharRNNError, match="UTF-16 byte-order mark"):
        prepare(write(tmp_path / "u16.txt", "text\n".encode("utf-16")), tmp_path, encoding="utf-8-sig")


@pytest.mark.parametrize("encoding, data, expected", [
    # Under a narrower encoding of the same script, the file's text before the bad byte decodes too:
    # its encoding is named, not "damaged bytes", whose advice (iconv -c) would delete its characters.
    ("euc_kr", (LAW + "똠방각하 햏햏 뷁\n" + LAW).encode("cp949"), "this looks like cp949: pass --encoding cp949"),
    ("shift_jis", ("日本語のテキストです。\n" * 9 + "①② 髙﨑\n").encode("cp932"), "looks like Japanese in cp932"),
    ("gb2312", ("中华人民共和国是工人阶级领导的国家。\n" * 9 + "镕堃\n").encode("gbk"), "looks like Chinese in gb18030"),
    # UTF-16 in the other byte order decodes without an error: its spaces and line breaks tell.
    ("utf-16-be", LAW.encode("utf-16-le"), "spaces and line breaks read as U\\+2000 and U\\+0A00: the file is in the "
     "other byte order; pass --encoding utf-16-le"),
    ("utf-16-le", random.Random(4).randbytes(4000), "looks like a binary file"),
    ("utf-16", LAW.encode("utf-8"), "this looks like utf-8: pass --encoding utf-8"),
    # Token ids saved as 32-bit numbers decode as UTF-32 to printable characters: still binary.
    ("utf-8", np.random.default_rng(0).integers(0, 50257, 5000).astype("<i4").tobytes(), "looks like a binary file"),
    # A whole first chunk of them (2 MiB) repeats its characters as text does: its unassigned ones tell.
    ("utf-8", np.random.default_rng(0).integers(0, 50257, 600_000).astype("<i4").tobytes(), "looks like a binary file"),
    ("utf-8", np.arange(40, 20000, dtype=">i4").tobytes(), "looks like a binary file"),
    # Chinese has no spaces, and lines of a paragraph: UTF-32 all the same (its characters repeat).
    ("utf-8", ("中华人民共和国是工人阶级领导的、以工农联盟为基础的人民民主专政的社会主义国家。" * 3 + "\n")
     .encode("utf-32-le") * 20, "looks like UTF-32 text without a byte-order mark; pass --encoding utf-32-le"),
    ("utf-8", "中华人民共和国是工人阶级领导的、以工农联盟为基础的人民民主专政的社会主义国家。".encode("utf-32-be"),
     "looks like UTF-32 text without a byte-order mark; pass --encoding utf-32-be"),  # 41 characters, no line break
    # Word's private-use bullets, emoji newer than this Python's Unicode (🩷 🫨), Thai without spaces.
    ("utf-8", ("\uf0b7 First point.\n\uf0b7 Second point 🩷🫨\n" * 50).encode("utf-32-le"), "looks like UTF-32 text"),
    ("utf-8", ("ภาษาไทยเขียนติดกันโดยไม่เว้นวรรคระหว่างคำแต่เว้นวรรคระหว่างประโยค" * 3 + "\n").encode("utf-32-be") * 20,
     "looks like UTF-32 text"),
    # Two syllables alone: not "the text around it is ASCII", which it has none of.
    ("utf-8", "문장".encode("cp949"), "this looks like cp949: pass --encoding cp949"),
])
def test_a_file_in_another_encoding_is_not_called_damaged(tmp_path: Path, encoding: str, data: bytes,
                                                          expected: str) -> None:
    path = write(tmp_path / "x.txt", data)
    with pytest.raises(CharRNNError, match=expected) as error:
        prepare(path, tmp_path, encoding=encoding)
    assert "damaged" not in str(error.value)


def test_a_lone_surrogate_is_refused_with_its_line(tmp_path: Path, monkeypatch) -> None:
    """utf-7 and unicode_escape decode to halves of surrogate pairs, which TensorBoard's text sample
    (a traceback at the first evaluation, the run lost) and the console refuse: named at once."""
    path = write(tmp_path / "x.txt", b"hello world\n" * 2 + b"a +2AA- b\n" + b"more text\n" * 5)
    with pytest.raises(CharRNNError, match=r"x\.txt: under --encoding utf-7 line 3 holds U\+D800, half of a UTF-16 "
                                           r"surrogate pair"):
        prepare(path, tmp_path, encoding="utf-7")
    monkeypatch.setattr(dataset, "_READ_BYTES", 5)  # the lines before it counted across the pieces read
    with pytest.raises(CharRNNError, match=r"line 3 holds U\+D800"):
        prepare(path, tmp_path, encoding="utf-7")
    monkeypatch.undo()
    path = write(tmp_path / "y.txt", b"fine\n" + b"\\udfff\n")
    with pytest.raises(CharRNNError, match="line 2 holds U\\+DFFF"):
        prepare(path, tmp_path, encoding="unicode_escape")
    assert prepare(path, tmp_path).vocab.decode(prepare(path, tmp_path).ids) == "fine\n\\udfff\n"  # as UTF-8: text


def test_a_vocabulary_needs_a_real_character_and_a_baseline_is_never_negative(tmp_path: Path) -> None:
    path = write(tmp_path / "x.txt", "abcab\n" * 10)
    with pytest.raises(CharRNNError, match="--min_char_count 21: every character .* appears 20 times.*at most 20"):
        prepare(path, tmp_path, min_char_count=21)
    assert prepare(path, tmp_path, min_char_count=20).vocab.size == 3  # a, b and the unknown symbol
    # U+FFFD of the text is the unknown symbol itself: the advice is from the real characters' counts.
    fffd = write(tmp_path / "fffd.txt", "\ufffd" * 50 + "abcab\n" * 10)
    with pytest.raises(CharRNNError, match="the most frequent appears 20 times.*at most 20"):
        prepare(fffd, tmp_path, min_char_count=21)
    one = prepare(write(tmp_path / "one.txt", "a" * 100), tmp_path)
    assert f"{dataset.unigram_entropy_bits(one.vocab, one.ids):.3f}" == "0.000"  # not -0.000


def test_unknown_encoding_and_bad_options() -> None:
    with pytest.raises(CharRNNError, match="--encoding nope"):
        DataOptions(encoding="nope")
    for bad in (dict(normalize="nfkc"), dict(unit="word"), dict(max_vocab=1), dict(min_char_count=0)):
        with pytest.raises(CharRNNError, match="--" + next(iter(bad))):
            DataOptions(**bad)
    assert DataOptions(encoding="UTF8") == DataOptions()  # one cache key per codec
    # Codecs that are no text encoding of bytes: by their flag (rot13, hex), or because they cannot
    # even encode a line break ('undefined' raises on any text).
    for codec in ("rot13", "hex", "undefined", "idna"):  # idna: no error handler, which reading needs
        with pytest.raises(CharRNNError, match=f"--encoding {codec}: not a text encoding"):
            DataOptions(encoding=codec)


def test_an_empty_file_beside_others_is_read_and_only_all_empty_is_refused(tmp_path: Path) -> None:
    """One empty .txt file (a placeholder, a failed download) among others is no reason to refuse the
    corpus; only a folder whose .txt files are all empty is, and the message counts them."""
    write(tmp_path / "a.txt", "")
    write(tmp_path / "b.txt", "text\n")
    assert dataset.resolve_corpus(None, str(tmp_path)) == [tmp_path / "a.txt", tmp_path / "b.txt"]
    write(tmp_path / "b.txt", "")
    with pytest.raises(CharRNNError, match="all 2 .txt files are empty"):
        dataset.resolve_corpus(None, str(tmp_path))
    # The flag with the path typed, and the file in it that is empty.
    with pytest.raises(CharRNNError, match=r"^--input \S+b\.txt: empty; a corpus needs some text$"):
        dataset.resolve_corpus(None, str(tmp_path / "b.txt"))
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "input.txt", "")
    with pytest.raises(CharRNNError, match=r"^--data_dir \S+d: its input\.txt is empty; a corpus needs some text$"):
        dataset.resolve_corpus(str(tmp_path / "d"), None)


def test_resolve_corpus(tmp_path: Path, caplog) -> None:
    write(tmp_path / "input.txt", "x")
    write(tmp_path / "other.txt", "y")
    assert dataset.resolve_corpus(str(tmp_path), None) == [tmp_path / "input.txt"]
    assert "reading input.txt only" in caplog.text and "1 other .txt file(s)" in caplog.text  # never silently
    assert dataset.resolve_corpus(None, str(tmp_path)) == [tmp_path / "input.txt", tmp_path / "other.txt"]
    assert dataset.resolve_corpus(None, str(tmp_path / "other.txt")) == [tmp_path / "other.txt"]
    (tmp_path / "none").mkdir()
    cases = [((str(tmp_path / "missing"), None), "no such file"), ((str(tmp_path / "none"), None), "no .txt files"),
             ((str(tmp_path), str(tmp_path)), "not both"), ((None, None), "no corpus")]
    cases.append(((None, "-"), "--input -: standard input is no corpus.*save it to a file first"))
    for args, message in cases:
        with pytest.raises(CharRNNError, match=message):
            dataset.resolve_corpus(*args)


# ---- the cache --------------------------------------------------------------------------------------

def test_an_outdated_preparation_in_use_stays_whole_until_it_can_go(tmp_path: Path, monkeypatch, caplog) -> None:
    """Windows deletes no file a process maps (a run training on the old preparation): removing the
    rest around it left ids.npy alone in a folder that no cleanup looks at again. Emulated: the old
    ids.npy cannot be deleted the first time."""
    caplog.set_level(logging.INFO, logger="charrnn")
    path = write(tmp_path / "in.txt", KOREAN)
    old = prepare(path, tmp_path).cache_dir
    unlink = Path.unlink

    def in_use(self: Path, missing_ok: bool = False) -> None:
        if self == old / "ids.npy":
            raise PermissionError(13, "The process cannot access the file because it is being used by another "
                                      "process", str(self))
        unlink(self, missing_ok=missing_ok)

    write(path, KOREAN + "새 글자: 龍\n")
    with monkeypatch.context() as patched:
        patched.setattr(Path, "unlink", in_use)
        prepare(path, tmp_path)
    assert sorted(p.name for p in old.iterdir()) == ["ids.npy", "meta.json", "vocab.json"]
    assert f"outdated prepared data {old} stays for now" in caplog.text
    write(path, KOREAN + "새 글자: 鳳\n")  # the run is done with it: the next preparation removes it
    prepare(path, tmp_path)
    assert not old.exists()


def test_an_outdated_preparation_linked_from_elsewhere_is_not_emptied_through_the_link(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", KOREAN)
    old = prepare(path, tmp_path).cache_dir
    elsewhere = tmp_path / "elsewhere"
    old.rename(elsewhere)
    old.symlink_to(elsewhere, target_is_directory=True)
    write(path, KOREAN + "새 글자: 龍\n")
    prepare(path, tmp_path)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["ids.npy", "meta.json", "vocab.json"]
    dataset._remove_preparation(tmp_path / "gone")  # removed meanwhile by another preparation: nothing to do


def test_cache_is_reused_and_invalidated(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="charrnn")
    path = write(tmp_path / "in.txt", KOREAN)
    first = prepare(path, tmp_path)
    ids_file = first.cache_dir / "ids.npy"
    stamp = ids_file.stat().st_mtime_ns
    caplog.clear()
    t0 = time.perf_counter()
    again = prepare(path, tmp_path)
    assert time.perf_counter() - t0 < 0.5
    assert again.cache_dir == first.cache_dir and ids_file.stat().st_mtime_ns == stamp
    assert "using prepared data" in caplog.text and "preparing" not in caplog.text
    assert np.array_equal(again.ids, first.ids) and again.vocab.symbols == first.vocab.symbols

    jamo = prepare(path, tmp_path, unit="jamo")
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))  # touched: rebuilt, the stale copies removed,
    touched = prepare(path, tmp_path)  # the one under other options too (none can use it again)
    assert touched.cache_dir != first.cache_dir and not first.cache_dir.exists() and not jamo.cache_dir.exists()

    write(path, KOREAN + "새 글자: 龍\n")  # changed content
    changed = prepare(path, tmp_path)
    assert "龍" in changed.vocab.symbols and changed.cache_dir != touched.cache_dir
    # New text of the same size under the old mtime (cp -p, rsync -a, touch -r): prepared again.
    stamp = path.stat().st_mtime_ns
    write(path, KOREAN + "새 글자: 鳳\n")
    os.utime(path, ns=(stamp, stamp))
    changed = prepare(path, tmp_path)
    assert "鳳" in changed.vocab.symbols

    other = prepare(path, tmp_path, normalize="none")  # another option: its own cache, both kept
    assert other.cache_dir != changed.cache_dir and changed.cache_dir.exists()
    # Another file in the same cache: its own, and switching back and forth prepares neither again.
    second = prepare(write(tmp_path / "second.txt", "another text\n" * 100), tmp_path)
    assert second.cache_dir != changed.cache_dir and changed.cache_dir.exists()
    caplog.clear()
    assert prepare(path, tmp_path, normalize="none").cache_dir == other.cache_dir
    assert "using prepared data" in caplog.text and "preparing" not in caplog.text
    # A folder whose meta.json is not one of ours is left alone, and preparing goes on.
    stranger = tmp_path / "cache" / "stranger"
    stranger.mkdir()
    write(stranger / "meta.json", "[1]")
    write(path, KOREAN + "또 바뀐 글\n")
    assert prepare(path, tmp_path).vocab.symbols and (stranger / "meta.json").read_text() == "[1]"
    caplog.clear()
    prepare(path, tmp_path)
    assert "using prepared data" in caplog.text


def test_a_preparation_of_another_format_is_removed_by_the_next_build(tmp_path: Path) -> None:
    """An older version's preparation of these files under these options (another _PREPARE_FORMAT)
    can never be used again: the new build removes it, not just those of the files as they were."""
    path = write(tmp_path / "in.txt", "some text\n" * 50)
    first = prepare(path, tmp_path)
    old = first.cache_dir.with_name("0123456789abcdef")
    first.cache_dir.rename(old)
    meta = json.loads((old / "meta.json").read_text(encoding="utf-8"))
    meta["identity"]["format"] = dataset._PREPARE_FORMAT - 1
    (old / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    prepare(path, tmp_path, normalize="none")  # other options: that old copy is not theirs to remove
    assert old.exists()
    again = prepare(path, tmp_path)
    assert not old.exists() and again.cache_dir.name == first.cache_dir.name


def test_a_file_that_changes_while_it_is_prepared_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Text still being written (a download, a copy) is not cached as it was half-way: the files'
    identity is taken again after reading, and a change refuses the preparation."""
    path = write(tmp_path / "in.txt", "some text\n" * 50)
    first_pass = dataset._first_pass

    def appended_meanwhile(*args):
        result = first_pass(*args)
        with open(path, "a", encoding="utf-8") as f:
            f.write("more text\n")
        return result

    monkeypatch.setattr(dataset, "_first_pass", appended_meanwhile)
    with pytest.raises(CharRNNError, match=rf"{re.escape(str(path))}: changed while being prepared; run again"):
        prepare(path, tmp_path)
    assert not (tmp_path / "cache").exists()  # nothing half-way left
    monkeypatch.undo()
    assert prepare(path, tmp_path).vocab.decode(prepare(path, tmp_path).ids) == "some text\n" * 50 + "more text\n"


def test_logging_to_a_stream_that_is_no_file(monkeypatch) -> None:
    """A notebook's stderr (or redirect_stderr's) has no reconfigure: messages still come."""
    import io
    monkeypatch.setattr(utils.logger, "handlers", [])
    monkeypatch.setattr(utils.logger, "propagate", True)
    monkeypatch.setattr(utils.logger, "level", utils.logger.level)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    utils.setup_logging(verbose=False)
    utils.logger.info("한국어 message")
    assert sys.stderr.getvalue().endswith(" 한국어 message\n")


def test_unwritable_corpus_dir_falls_back_to_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = write(tmp_path / "in.txt", "hello\n")
    write(tmp_path / ".prepared", "a file where the cache directory would go")
    corpus = dataset.prepare_corpus([path], DataOptions())
    assert corpus.cache_dir.parent == tmp_path / "xdg" / "char-rnn-tf2"
    assert dataset.prepare_corpus([path], DataOptions()).cache_dir == corpus.cache_dir


def told_another_user(action: Callable[[], object], root: bool) -> str:
    """What action logs and returns (or raises) for another user: nobody, in a forked child, when run
    as root (root reads anything); this user otherwise."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        with os.fdopen(writer, "w") as report:
            try:
                if root:
                    os.setgid(65534)
                    os.setuid(65534)
                utils.logger.handlers = [logging.StreamHandler(report)]
                print(action(), file=report)
            except BaseException as error:
                print(f"failed: {error!r}", file=report)
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as report:
        told = report.read()
    os.waitpid(child, 0)
    return told


def prepared_by_another_user(path: Path, work: Path, root: bool) -> str:
    """What prepare_corpus tells another user, and where its data went."""
    def action() -> Path:
        os.environ["XDG_CACHE_HOME"] = str(work / "other-cache")
        return dataset.prepare_corpus([path], DataOptions()).cache_dir
    return told_another_user(action, root)


def test_a_shared_corpus_folder_serves_other_users_and_keeps_their_private_data(tmp_path: Path) -> None:
    """A team's corpus folder: the prepared data follows the umask, as any folder would, so that
    the other users read it; a private one (another user's under umask 077, or made by an older
    version), or a private file in it, is neither read nor deleted: this user's copy goes to its own
    cache. Another user's damaged one is told, not a traceback."""
    root = os.geteuid() == 0
    # Root reads anything: the other user is then nobody, in a forked child (tmp_path's parents are
    # root's alone). Otherwise the folder is made unreadable to its owner, as another's is to them.
    work = Path(tempfile.mkdtemp(dir="/tmp")) if root else tmp_path
    try:
        work.chmod(0o777)
        (work / "corpus").mkdir()
        path = write(work / "corpus" / "in.txt", "hello shared world\n")
        old_umask = os.umask(0o022)
        try:
            corpus = dataset.prepare_corpus([path], DataOptions())
        finally:
            os.umask(old_umask)
        mine = corpus.cache_dir
        assert stat.S_IMODE(mine.stat().st_mode) == 0o755, oct(mine.stat().st_mode)
        (work / "corpus" / ".prepared").chmod(0o777)  # the team may write there
        for private, readable in ((mine, 0o755), (mine / "ids.npy", 0o644)):
            private.chmod((0o700 if private == mine else 0o600) if root else 0)
            told = prepared_by_another_user(path, work, root)
            assert "cannot read the prepared data" in told and "failed" not in told, told
            assert Path(told.splitlines()[-1]).parent == work / "other-cache" / "char-rnn-tf2", told
            private.chmod(readable)
            assert (mine / "ids.npy").is_file()  # the owner's data is still there
            shutil.rmtree(work / "other-cache")
        meta = (mine / "meta.json").read_text(encoding="utf-8")
        (mine / "meta.json").write_text(meta[:20], encoding="utf-8")  # damaged, and not theirs to remove
        if not root:
            mine.chmod(0o555)
        told = prepared_by_another_user(path, work, root)
        assert "CharRNNError" in told and "is damaged and cannot be replaced" in told, told
        mine.chmod(0o755)
        assert (mine / "ids.npy").is_file()
    finally:
        if root:
            shutil.rmtree(work)


def test_a_corpus_file_that_cannot_be_read_or_a_full_disk_is_told_what_it_is(tmp_path: Path) -> None:
    """An unreadable file was told "Free disk space in <cache> or fix the file"; a file-size limit
    or a full disk gave numpy's "815745 requested and 450873 written", with no reason."""
    root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(dir="/tmp")) if root else tmp_path  # tmp_path's parents are root's alone
    try:
        work.chmod(0o777)
        path = write(work / "secret.txt", "private words\n")
        path.chmod(0o600 if root else 0)
        told = told_another_user(lambda: dataset.prepare_corpus([path], DataOptions(), cache_root=work / "c"), root)
        assert f"cannot read {path} (Permission denied): make it readable, or take it out of the corpus" in told, told
    finally:
        shutil.rmtree(work)
    path = write(tmp_path / "big.txt", "abcdefgh\n" * 20000)
    code = ("import resource, sys, dataset; from pathlib import Path\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (50000, 50000))\n"
            "try:\n    dataset.prepare_corpus([Path(sys.argv[1])], dataset.DataOptions(), cache_root=Path(sys.argv[2]))\n"
            "except dataset.CharRNNError as error:\n    print(error)")
    out = run_python(code, str(path), str(tmp_path / "cache"), text=True)
    assert (f"no room to write the prepared data in {tmp_path / 'cache'} (File too large): free disk space there "
            f"or a file-size limit (ulimit -f)") in out.stdout, out
    assert not (tmp_path / "cache").exists()  # nor the build's temp folder, nor the folder it made


KILLABLE = """
import os, sys, time, dataset
from pathlib import Path
dataset._READ_BYTES = 1 << 16
def pause():
    print("midway", flush=True)
    time.sleep(60)
if sys.argv[3] == "reading":
    read = dataset._read_code_points
    def slow(*args):
        for i, chunk in enumerate(read(*args)):
            if i == 10:
                pause()
            yield chunk
    dataset._read_code_points = slow
else:  # everything written, meta.json included, but not yet renamed into place
    replace = os.replace
    os.replace = lambda src, dst: pause() if Path(src).is_dir() else replace(src, dst)
dataset.prepare_corpus([Path(sys.argv[1])], dataset.DataOptions(), cache_root=Path(sys.argv[2]))
"""


@pytest.mark.parametrize("stage", ["reading", "renaming"])
def test_killed_preparation_leaves_no_valid_looking_cache(tmp_path: Path, stage: str) -> None:
    path = write(tmp_path / "big.txt", (ROOT / "data" / "tinyshakespeare" / "input.txt").read_bytes() * 2)
    cache = tmp_path / "cache"
    child = subprocess.Popen([sys.executable, "-c", KILLABLE, str(path), str(cache), stage], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "midway", child.stderr.read()
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
    leftovers = list(cache.iterdir())
    assert leftovers and all(d.name.startswith(".tmp-") for d in leftovers)
    if stage == "renaming":
        assert all((d / "meta.json").exists() for d in leftovers)  # complete, yet not in place
    corpus = prepare(path, tmp_path)
    assert corpus.vocab.decode(corpus.ids[:1000]) == path.read_text(encoding="utf-8")[:1000]
    assert [d.name for d in cache.iterdir()] == [corpus.cache_dir.name]  # the dead build was cleaned up


@pytest.mark.parametrize("damage", ["no num_chars", "num_chars not a number", "not JSON", "ids.npy cut short",
                                    "an id beyond the vocabulary", "an id equal to the vocabulary size",
                                    "ids.npy as floats", "ids.npy shorter than meta.json says", "unk_id beyond"])
def test_damaged_prepared_data_is_prepared_again(tmp_path: Path, caplog, damage: str) -> None:
    path = write(tmp_path / "in.txt", "some text\n" * 50)
    first = prepare(path, tmp_path)
    meta_path = first.cache_dir / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if damage == "no num_chars":
        del meta["num_chars"]
    elif damage == "num_chars not a number":
        meta["num_chars"] = [1]
    meta_path.write_text("{" if damage == "not JSON" else json.dumps(meta), encoding="utf-8")
    if damage == "ids.npy cut short":
        ids = first.cache_dir / "ids.npy"
        ids.write_bytes(ids.read_bytes()[:-10])
    elif damage in ("an id beyond the vocabulary", "an id equal to the vocabulary size"):
        ids = np.load(first.cache_dir / "ids.npy")
        ids[100] = 60000 if damage == "an id beyond the vocabulary" else first.vocab.size
        np.save(first.cache_dir / "ids.npy", ids)
    elif damage == "ids.npy as floats":  # every id in range: the dtype alone is wrong
        np.save(first.cache_dir / "ids.npy", np.load(first.cache_dir / "ids.npy").astype(np.float64))
    elif damage == "ids.npy shorter than meta.json says":  # a whole .npy file, of other text
        np.save(first.cache_dir / "ids.npy", np.load(first.cache_dir / "ids.npy")[:-10])
    elif damage == "unk_id beyond":
        vocab = json.loads((first.cache_dir / "vocab.json").read_text(encoding="utf-8"))
        vocab["unk_id"] = 999
        (first.cache_dir / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    del first
    again = prepare(path, tmp_path)
    assert caplog.text.count("ignoring damaged prepared data") == 1, caplog.text  # not again as it is replaced
    assert "restore it from a backup" not in caplog.text  # a run's vocab.json's advice, not a cache's
    assert again.num_chars == 500 and again.vocab.decode(again.ids) == "some text\n" * 50


def test_a_dead_build_is_cleaned_up_only_on_its_own_host(tmp_path: Path) -> None:
    """A cache on a shared file system holds other hosts' builds in progress: their process ids
    mean nothing here, so they are left alone."""
    path = write(tmp_path / "in.txt", "some text\n" * 50)
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = finished_pid()
    ours, older, theirs = (cache / f".tmp-0123abcd-{dead}{host}-x1y2z3" for host in
                           (f"@{socket.gethostname()}", "", "@another-host.example"))
    for build in (ours, older, theirs):
        build.mkdir()
    corpus = dataset.prepare_corpus([path], DataOptions(), cache_root=cache)
    assert sorted(d.name for d in cache.iterdir()) == sorted([corpus.cache_dir.name, theirs.name])


# ---- vocabulary ---------------------------------------------------------------------------------------

def test_max_vocab_and_min_char_count_map_rare_characters_to_unknown(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="charrnn")
    raw = "aaaa bbb cc d 龍 \ufffd\n" * 3 + "e\n"
    path = write(tmp_path / "in.txt", raw)
    limited = prepare(path, tmp_path, max_vocab=5)
    vocab = limited.vocab
    assert vocab.size == 5 and vocab.unk_id is not None and vocab.symbols[vocab.unk_id] == "\ufffd"
    assert vocab.symbols == [" ", "\ufffd", "a", "b", "c"]  # by frequency; unknown counts what it replaced
    kept = set(vocab.symbols) - {"\ufffd"}
    assert limited.vocab.decode(limited.ids) == "".join(c if c in kept else "\ufffd" for c in raw)
    assert "map to the unknown symbol" in caplog.text and "% of the text" in caplog.text
    # A frequent U+FFFD of the text is the unknown symbol itself: it takes none of the other places.
    frequent = prepare(write(tmp_path / "fffd.txt", "\ufffd" * 9 + raw), tmp_path, max_vocab=5)
    assert frequent.vocab.symbols == ["\ufffd", " ", "a", "b", "c"]
    rare = prepare(path, tmp_path, min_char_count=3)
    assert set(rare.vocab.symbols) == {"a", "b", "c", "d", " ", "\n", "龍", "\ufffd"}  # e (once) -> unknown
    assert rare.vocab.counts[rare.vocab.unk_id] == 3 + 1  # the real U+FFFDs and the e
    # Characters outside the vocabulary are still "missing" when encoding a prime.
    assert rare.vocab.missing("ae😀a") == ["e", "😀"]
    assert rare.vocab.decode(rare.vocab.encode("ae😀a")) == "aa"
    # A prime is read as the corpus was: a byte-order mark (a prime from a file) is no character.
    assert rare.vocab.missing("\ufeffab\r\n") == [] and rare.vocab.decode(rare.vocab.encode("\ufeffab")) == "ab"
    # What a skipped character kept apart stays apart: e and U+0301 (both known) must not become U+00E9.
    marks = dataset.Vocab(["e", "q", "\u0301", " "], [1] * 4)
    assert marks.decode(marks.encode("e\u00a7\u0301")) == "e\u0301"
    full = prepare(path, tmp_path)
    assert full.vocab.unk_id is None and full.vocab.decode(full.ids) == raw
    exactly = prepare(path, tmp_path, max_vocab=full.vocab.size)  # room for every character: no unknown
    assert exactly.vocab.unk_id is None and exactly.vocab.decode(exactly.ids) == raw


def test_jamo_keeps_its_jamo_under_max_vocab(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", KOREAN)
    corpus = prepare(path, tmp_path, unit="jamo", max_vocab=120)
    assert corpus.vocab.size == 120 and corpus.vocab.unk_id is not None
    assert corpus.num_chars == dataset.count_chars(corpus.vocab, corpus.ids) == len(expected_text(KOREAN))
    with pytest.raises(CharRNNError, match="--max_vocab 10 is too small for --unit jamo"):
        prepare(path, tmp_path, unit="jamo", max_vocab=10)


def test_jamo_unknowns_are_whole_characters(tmp_path: Path) -> None:
    """Under jamo the unknown symbol, the missing list and --unknown skip deal in the characters
    the user typed, never in a lone jamo or the escape that marks one."""
    # A jamo of the original text (U+1161) once: its escape must stay in the vocabulary, not become
    # the unknown symbol with x and y, or U+1161 would come back as two characters.
    corpus = prepare(write(tmp_path / "esc.txt", "가나다라 " * 50 + "x\u1161y\n"), tmp_path, unit="jamo",
                     min_char_count=2)
    assert "\ufdd0" in corpus.vocab.symbols and corpus.vocab.missing("\u1161") == []
    assert corpus.vocab.decode(corpus.ids)[-4:-1] == "\ufffd\u1161\ufffd"  # x and y (once each) unknown
    # 핳 ends in a final ㅎ that this corpus never had: the character is missing, and skipped whole.
    vocab = prepare(write(tmp_path / "ko.txt", "가나다하\n" * 5), tmp_path, unit="jamo").vocab
    assert vocab.missing("하핳") == ["핳"]
    assert vocab.decode(vocab.encode("가핳하")) == "가하" and vocab.encode("핳").tolist() == []


def test_vocab_save_load(tmp_path: Path) -> None:
    corpus = prepare(write(tmp_path / "in.txt", "한국어 text\n\ttab"), tmp_path)
    saved = (corpus.cache_dir / "vocab.json").read_text(encoding="utf-8")
    assert '["한", 1]' in saved and json.loads(saved)["size"] == corpus.vocab.size  # readable UTF-8
    loaded = dataset.Vocab.load(corpus.cache_dir / "vocab.json")
    assert (loaded.symbols, loaded.counts, loaded.unk_id) == (corpus.vocab.symbols, corpus.vocab.counts, None)
    write(tmp_path / "broken.json", "{")
    with pytest.raises(CharRNNError, match=r"not a valid vocab.json \(not JSON: .* at line 1\)"):
        dataset.Vocab.load(tmp_path / "broken.json")
    write(tmp_path / "broken.json", "[1]")
    with pytest.raises(CharRNNError, match=r"not a valid vocab.json \(not a JSON object\)"):
        dataset.Vocab.load(tmp_path / "broken.json")
    write(tmp_path / "twice.json", saved.replace('["한", 1]', '["국", 1]'))  # hand-edited: two ids for one symbol
    with pytest.raises(CharRNNError, match=r"not a valid vocab.json \(the symbol '국' \(U\+AD6D\) is listed twice\)"):
        dataset.Vocab.load(tmp_path / "twice.json")
    # Another format, unit or normalization, or an unknown symbol past the last id: refused, not misread.
    fields = json.loads(saved)
    for change, reason in [(dict(format=2), "format 2, expected 1"), (dict(unit="word"), "its unit is 'word'"),
                           (dict(normalize="nfkc"), "its unit is 'char' and its normalize 'nfkc'"),
                           (dict(unk_id=corpus.vocab.size), f"unk_id {corpus.vocab.size} is no symbol's id"),
                           *[(dict(symbols=rows), "its symbols are not a list of [symbol, count] pairs")
                             for rows in ("abc", [], [["a", 1], ["b"]], [["a", 1, 2]], {"a": 1})]]:
        write(tmp_path / "edited.json", json.dumps({**fields, **change}))
        with pytest.raises(CharRNNError, match=rf"not a valid vocab.json \({re.escape(reason)}"):
            dataset.Vocab.load(tmp_path / "edited.json")
    (tmp_path / "folder").mkdir()
    with pytest.raises(CharRNNError, match="folder: cannot read the vocabulary"):
        dataset.Vocab.load(tmp_path / "folder")


def test_more_than_65535_symbols_are_stored_as_uint32(tmp_path: Path) -> None:
    ranges = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x20000, 0x2A6DF)]
    chars = [chr(c) for a, b in ranges for c in range(a, b + 1)]
    raw = "\n".join("".join(chars[i:i + 100]) for i in range(0, len(chars), 100)) + "\n" + chars[0] * 5
    corpus = prepare(write(tmp_path / "in.txt", raw), tmp_path)
    assert corpus.vocab.size == len(chars) + 1 > 65535
    assert corpus.ids.dtype == np.uint32 and corpus.vocab.symbols[:2] == ["\n", chars[0]]
    assert corpus.vocab.decode(corpus.ids) == raw
    small = prepare(tmp_path / "in.txt", tmp_path, max_vocab=1000)
    assert small.ids.dtype == np.uint16 and small.vocab.size == 1000
    # At the boundary: 65,535 symbols (ids up to 65,534) fit uint16; at 65,537 the id 65,536 must not
    # wrap to 0 (the first symbol) in a uint16 file.
    fits = prepare(tmp_path / "in.txt", tmp_path, max_vocab=65535)
    assert fits.ids.dtype == np.uint16 and int(fits.ids.max()) == 65534
    past = prepare(tmp_path / "in.txt", tmp_path, max_vocab=65537)
    kept = set(past.vocab.symbols)
    assert past.ids.dtype == np.uint32 and int(past.ids.max()) == 65536
    assert past.vocab.decode(past.ids) == "".join(c if c in kept else "\ufffd" for c in raw)


def test_provisional_ids_that_outgrow_their_dtype_are_read_again_wider(tmp_path: Path) -> None:
    """The first pass writes provisional ids as uint16 and gives up past 65,536 distinct symbols (then
    the text is read again as uint32). Shown with uint8: 256 symbols fit, the 257th must not wrap to 0."""
    for distinct, fits in ((256, True), (257, False)):
        path = write(tmp_path / f"{distinct}.txt", "".join(chr(0x4E00 + i) for i in range(distinct)) * 2)
        result = dataset._first_pass([path], DataOptions(), tmp_path / "provisional.bin", np.dtype("u1"),
                                     lambda nbytes: None)
        assert (result is not None) == fits, distinct
        if fits:
            counts, first_seen = result
            assert first_seen.tolist() == [0x4E00 + i for i in range(distinct)] and counts[0x4E00] == 2
            assert np.fromfile(tmp_path / "provisional.bin", dtype="u1").tolist() == [*range(distinct)] * 2


def test_unigram_entropy_of_characters(tmp_path: Path) -> None:
    corpus = prepare(write(tmp_path / "in.txt", KOREAN), tmp_path)
    want = expected_text(KOREAN)
    p = np.array(list(collections.Counter(want).values())) / len(want)
    assert dataset.unigram_entropy_bits(corpus.vocab, corpus.ids) == pytest.approx(-(p * np.log2(p)).sum())


# ---- split and batches ------------------------------------------------------------------------------

def test_split_is_contiguous_and_last(tmp_path: Path) -> None:
    corpus = prepare(write(tmp_path / "in.txt", KOREAN), tmp_path)
    train, val = corpus.split(0.1)
    assert len(val) == round(len(corpus.ids) * 0.1) and np.array_equal(np.concatenate([train, val]), corpus.ids)
    assert len(corpus.split(0)[1]) == 0
    with pytest.raises(CharRNNError, match="--val_frac"):
        corpus.split(1.0)


def test_the_symbols_cut_of_older_runs_rounds_to_the_nearest_symbol(tmp_path: Path) -> None:
    """by="symbols" (a jamo run saved before the cut by characters) must cut where it cut then."""
    corpus = prepare(write(tmp_path / "in.txt", "abcdefghij" * 101 + "ab"), tmp_path)  # 1,012 symbols
    assert len(corpus.split(0.05, by="symbols")[1]) == 51  # 50.6 symbols, rounded


def test_the_character_cut_rounds_to_the_nearest_character(tmp_path: Path) -> None:
    """--val_frac holds out round(characters x val_frac) characters, not that number truncated."""
    corpus = prepare(write(tmp_path / "in.txt", "abcdefghij" * 101 + "ab"), tmp_path)  # 1,012 characters
    assert len(corpus.split(0.05)[1]) == 51  # 50.6 characters, rounded


def test_the_symbols_cut_of_older_jamo_runs_moves_forward_to_a_syllable_start(tmp_path: Path) -> None:
    """by="symbols" under jamo starts validation at the first whole syllable at or after the rounded
    cut, where runs saved before the character cut had it: not at the syllable before."""
    corpus = prepare(write(tmp_path / "in.txt", "한국어" * 500 + "가"), tmp_path, unit="jamo")
    assert len(corpus.ids) == 4002  # 8 jamo per 한국어 (3 + 3 + 2), 2 for 가
    train, val = corpus.split(0.05, by="symbols")
    # The rounded cut, 4002 - 200, falls on the final jamo of a 한 (syllables start at 8k, 8k+3, 8k+6).
    assert len(train) == 3803 and corpus.vocab.decode(val) == "국어" + "한국어" * 24 + "가"


def test_count_chars_across_its_blocks(tmp_path: Path) -> None:
    """Counted a block of 4M symbols at a time: every symbol counts once, at any length."""
    corpus = prepare(write(tmp_path / "in.txt", KOREAN[:2000]), tmp_path, unit="jamo")
    ids = np.resize(corpus.ids, (1 << 22) + 5)
    assert dataset.count_chars(corpus.vocab, ids) == int(np.count_nonzero(corpus.vocab.char_starts[ids]))


def test_the_last_characters_are_found_across_blocks(tmp_path: Path) -> None:
    """_last_chars_start reads back 4M symbols at a time: where exactly the last block's characters are
    asked for and that block begins inside a syllable, the cut is that block's first character start."""
    corpus = prepare(write(tmp_path / "in.txt", KOREAN[:2000]), tmp_path, unit="jamo")
    block = 1 << 22
    inside = int(np.flatnonzero(~corpus.vocab.char_starts[corpus.ids])[0])  # a vowel jamo: inside a syllable
    n = block + inside  # so that the last block begins there
    ids = np.resize(corpus.ids, n)
    assert not corpus.vocab.char_starts[ids[n - block]]
    starts = np.flatnonzero(corpus.vocab.char_starts[ids])
    in_last_block = int(np.count_nonzero(starts >= n - block))
    for k in (1, in_last_block - 1, in_last_block, in_last_block + 1, len(starts)):
        assert dataset._last_chars_start(corpus.vocab, ids, k) == starts[-k], k


def test_the_first_characters_are_found_across_blocks(tmp_path: Path) -> None:
    """first_chars_end reads max(64K, 4k) symbols at a time: a count of characters that ends at a
    block's edge, inside a syllable across it, or beyond the ids is cut where the next one starts."""
    corpus = prepare(write(tmp_path / "in.txt", KOREAN[:2000]), tmp_path, unit="jamo")
    ids = np.resize(corpus.ids, 3 * (1 << 16) + 7)
    starts = np.flatnonzero(corpus.vocab.char_starts[ids])
    in_first_block = int(np.count_nonzero(starts < 1 << 16))
    for k in (0, 1, in_first_block - 1, in_first_block, in_first_block + 1, len(starts) - 1):
        assert dataset.first_chars_end(corpus.vocab, ids, k) == starts[k], k
    assert dataset.first_chars_end(corpus.vocab, ids, len(starts)) == len(ids)
    assert dataset.first_chars_end(corpus.vocab, ids, 10 ** 6) == len(ids)


@pytest.mark.parametrize("offsets_over, offsets, first_offsets", [
    ("stream", 20, [16, 19, 16, 6, 0, 0, 8, 10]),  # 2,500 symbols a stream: 155 windows of 16, and 20 to spare
    ("window", 16, [12, 15, 13, 5, 0, 0, 6, 8]),  # runs saved before
])
def test_batches_are_deterministic_contiguous_and_restartable(offsets_over: str, offsets: int,
                                                               first_offsets: list[int]) -> None:
    ids = np.arange(10_000, dtype=np.uint16)
    loader = dataset.BatchLoader(ids, batch_size=4, seq_length=16, seed=3, offsets_over=offsets_over)
    length = len(ids) // 4
    assert loader.num_batches == length // 16 - 1
    for epoch in range(6):
        offset = loader.offset(epoch)
        assert 0 <= offset < offsets
        previous_y = None
        for index in range(loader.num_batches):
            x, y = loader.batch(epoch, index)
            assert x.dtype == np.int32 and x.shape == y.shape == (4, 16)
            assert np.array_equal(y, x + 1)  # y is x shifted by one symbol
            assert np.array_equal(x[:, 0], np.arange(4) * length + offset + index * 16)  # stream s, in order
            if previous_y is not None:
                assert np.array_equal(x[:, 0], previous_y[:, -1])  # carried state lines up
            previous_y = y
    assert len({loader.offset(epoch) for epoch in range(20)}) > 1  # epochs see different windows
    # Every offset comes up, and the seeded ones stay what saved runs were trained on: a checkpoint's
    # (epoch, batch) names these windows.
    assert {loader.offset(epoch) for epoch in range(300)} == set(range(offsets))
    assert [loader.offset(epoch) for epoch in range(8)] == first_offsets
    restarted = dataset.BatchLoader(ids, batch_size=4, seq_length=16, seed=3, offsets_over=offsets_over)
    assert all(np.array_equal(restarted.batch(5, i)[0], loader.batch(5, i)[0]) for i in (7, 3, 0))
    for seed in (4, 3 + 2**16):  # each bit of its low 32 counts (more would move saved runs' windows)
        other_seed = dataset.BatchLoader(ids, batch_size=4, seq_length=16, seed=seed, offsets_over=offsets_over)
        assert [other_seed.offset(e) for e in range(20)] != [loader.offset(e) for e in range(20)], seed
    for index in (loader.num_batches, -1):  # a damaged saved position: no window before the text
        with pytest.raises(IndexError):
            loader.batch(0, index)


def test_over_epochs_every_symbol_of_the_streams_is_trained() -> None:
    """Offsets over the room the streams leave reach each stream's last symbols, which offsets below
    seq_length never did (runs saved before: 2,083 % 100 = 83 symbols of every stream, 4% of the text)."""
    ids = np.arange(50_000, dtype=np.uint16)
    trained = {}
    for way in ("stream", "window"):
        loader = dataset.BatchLoader(ids, batch_size=24, seq_length=100, seed=0, offsets_over=way)
        targets = np.zeros(len(ids), bool)
        for epoch in range(300):
            for index in range(loader.num_batches):
                targets[loader.batch(epoch, index)[1]] = True
        trained[way] = targets
    length = len(ids) // 24  # the streams' first symbols are inputs only, and the 8 after the last stream unused
    trainable = np.ones(len(ids), bool)
    trainable[[s * length for s in range(24)]] = False
    trainable[24 * length:] = False
    assert trained["stream"][trainable].all()
    assert np.count_nonzero(~trained["window"][trainable]) == 24 * (length % 100)


def test_batches_from_a_memmap_copy_only_the_batch(tmp_path: Path) -> None:
    corpus = prepare(write(tmp_path / "in.txt", KOREAN), tmp_path)
    loader = dataset.BatchLoader(corpus.split(0.05)[0], batch_size=8, seq_length=32)
    x, y = loader.batch(0, 1)
    assert not isinstance(x, np.memmap) and x.flags.c_contiguous and x.base is None
    assert isinstance(loader.streams, np.memmap)  # a view of the file, not a copy


def test_shards_cover_the_streams_exactly() -> None:
    ids = np.arange(7_000, dtype=np.uint32) % 50_000
    full = dataset.BatchLoader(ids, batch_size=6, seq_length=10, seed=1)
    for shards in (2, 3, 4):
        parts = [dataset.BatchLoader(ids, 6, 10, seed=1, shard_index=i, num_shards=shards) for i in range(shards)]
        assert np.array_equal(np.concatenate([p.streams for p in parts]), full.streams)
        assert {p.num_batches for p in parts} == {full.num_batches}
        for epoch, index in ((0, 0), (2, 5)):
            assert np.array_equal(np.concatenate([p.batch(epoch, index)[0] for p in parts]), full.batch(epoch, index)[0])
    with pytest.raises(ValueError, match="shard"):  # a caller's error: train.py checks the cluster first
        dataset.BatchLoader(ids, 6, 10, shard_index=2, num_shards=2)
    with pytest.raises(ValueError, match="shard"):  # more shards than streams: some would have none
        dataset.BatchLoader(ids, 6, 10, shard_index=0, num_shards=7)


def test_too_small_corpus_says_what_is_needed() -> None:
    dataset.BatchLoader(np.zeros(5000, np.uint16), batch_size=50, seq_length=50)  # just enough
    with pytest.raises(CharRNNError) as error:
        dataset.BatchLoader(np.zeros(4999, np.uint16), batch_size=50, seq_length=50)
    message = str(error.value)
    assert "4,999 symbols" in message and "--batch_size 50 --seq_length 50 needs at least 5,000" in message
    assert "Use --seq_length 49 or less, or --batch_size 49 or less, or a longer text." in message
    dataset.BatchLoader(np.zeros(4999, np.uint16), batch_size=50, seq_length=49)  # as advised: it fits
    dataset.BatchLoader(np.zeros(4999, np.uint16), batch_size=49, seq_length=50)
    with pytest.raises(CharRNNError, match=r"--batch_size 2 --seq_length 1 needs at least 4 .*\. Use --batch_size 1, "
                                           "or a longer text"):
        dataset.BatchLoader(np.zeros(3, np.uint16), batch_size=2, seq_length=1)  # no --seq_length fits at batch 2
    # A validation part without a window of --seq_length 50 (its 20 symbols hold one of 19): the
    # advice is what fits both, not a --batch_size that the validation part then refuses.
    with pytest.raises(CharRNNError, match=r"Use --seq_length 19 or less, or a longer text\.$"):
        dataset.BatchLoader(np.zeros(4999, np.uint16), batch_size=50, seq_length=50, longest_window=19)
    # A resumed run keeps its --seq_length, and may change its --batch_size.
    with pytest.raises(CharRNNError, match=r"Use --batch_size 49 or less, or a longer text \(a resumed run keeps its "
                                           r"--seq_length\)\.$"):
        dataset.BatchLoader(np.zeros(4999, np.uint16), batch_size=50, seq_length=50, resumed=True)
    with pytest.raises(CharRNNError, match=r"Use a longer text \(a resumed run keeps its --seq_length\)\.$"):
        dataset.BatchLoader(np.zeros(4999, np.uint16), batch_size=50, seq_length=50, longest_window=49, resumed=True)
    # A new run whose validation part holds no window at all is no resumed run (it was told it was).
    with pytest.raises(CharRNNError, match=r"Use a longer text: a model learns from thousands of characters"):
        dataset.BatchLoader(np.zeros(4999, np.uint16), batch_size=50, seq_length=50, longest_window=0)
    with pytest.raises(CharRNNError, match="Use a longer text"):
        dataset.BatchLoader(np.zeros(1, np.uint16), batch_size=1, seq_length=1)
    with pytest.raises(ValueError, match="3 ids for 4 streams"):  # plan.py sizes the evaluation batch to fit
        next(dataset.eval_batches(np.zeros(3, np.uint16), batch_size=4, seq_length=8))


# 1000: no id left over for the last target; 261: streams of 65, a last window of one symbol
@pytest.mark.parametrize("n", [1003, 1000, 261])
def test_eval_batches_cover_the_split(n: int) -> None:
    ids = np.arange(n, dtype=np.uint16)
    batches = list(dataset.eval_batches(ids, batch_size=4, seq_length=64))
    x = np.concatenate([b[0] for b in batches], axis=1)
    y = np.concatenate([b[1] for b in batches], axis=1)
    length = (len(ids) - 1) // 4
    assert x.shape == (4, length) and batches[-1][0].shape == (4, length % 64)
    assert np.array_equal(x.ravel(), ids[:4 * length]) and np.array_equal(y, x + 1)


def test_interrupted_preparation_leaves_no_cache_folder(tmp_path: Path, monkeypatch) -> None:
    def interrupted(*args) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(dataset, "_build", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(write(tmp_path / "in.txt", "hello world\n" * 100), tmp_path)
    assert not (tmp_path / "cache").exists()
