"""Why a corpus file does not decode, and what to do: the messages for a file in another encoding
than --encoding (which one it looks like), one damaged or cut short in its own, UTF-16 without its
byte-order mark or in the other byte order, and a binary file. dataset.py reads the text; this
module judges each chunk's bytes for NULs (or, in UTF-16/32, for a mark of the other byte order),
the first chunk's for what the file is, and bytes that failed to decode.

It imports neither TensorFlow nor numpy.
"""
from __future__ import annotations

import codecs
import os
import re
import unicodedata
from pathlib import Path
from typing import Callable

from utils import CharRNNError, logger, shell_path

_COUNT_BYTES = 2 << 20  # the line of a bad byte is counted a block at a time, whatever the file size


def _wide(encoding: str) -> bool:
    """UTF-16 or UTF-32: every character two or four bytes, ASCII's with NULs."""
    return codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))


def _unit_bytes(encoding: str) -> int:
    return 4 if codecs.lookup(encoding).name.startswith("utf-32") else 2 if _wide(encoding) else 1


def check_looks_like_text(path: Path, head: bytes, encoding: str, other_files: int) -> None:
    """The first chunk of a file, before decoding: refused when it starts with a UTF-16/32 byte-order
    mark under another --encoding, is UTF-16 or UTF-32 without one, or is binary (NUL bytes)."""
    if _wide(encoding):
        return  # UTF-16/32 text is full of NUL bytes; let the decoder judge it
    for width, marks in ((32, (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")), (16, (b"\xff\xfe", b"\xfe\xff"))):
        if head.startswith(marks):  # UTF-32's first: FF FE 00 00 begins with UTF-16's FF FE
            raise CharRNNError(f"{path}: starts with a UTF-{width} byte-order mark: "
                               f"{_pass_or_convert(f'utf-{width}', encoding, other_files)}")
    if b"\x00" in head:
        # The byte order that puts more NULs in high bytes first: big-endian ASCII also reads as
        # little-endian CJK text, and Korean's NULs are on both sides.
        first, other = ("be", "le") if head[0::2].count(0) > head[1::2].count(0) else ("le", "be")
        for width, order in (("32", "le"), ("32", "be"), ("16", first), ("16", other)):
            wide = f"utf-{width}-{order}"
            # Text with a stray NUL reads as UTF-16 too (two ASCII letters are one CJK character): not
            # where it reads as text in --encoding or UTF-8 without its NULs, unless those are one
            # side's, as UTF-16's ASCII has them (the high byte of every letter, space and line break).
            if _reads_as_unmarked_text(head, wide) and (width == "32" or _nuls_on_one_side(head) or not any(
                    _reads_as_text(head.replace(b"\0", b""), text) for text in (encoding, "utf-8"))):
                raise CharRNNError(f"{path}: looks like UTF-{width} text without a byte-order mark; "
                                   f"{_pass_or_convert(wide, encoding, other_files)}")
    check_no_nul(path, head, 0, encoding)


def check_no_nul(path: Path, data: bytes, offset: int, encoding: str, before: bytes = b"") -> None:
    """A chunk of a file (at offset) under a one-byte-unit encoding: refused where it has a NUL byte,
    which no text has, as binary or as text with stray NULs (a whole corpus is not refused in words
    that give no way out), judged on the 64 KiB around it (before: the previous chunk's end, for a
    short last chunk)."""
    if _wide(encoding) or b"\x00" not in data:
        return
    first = data.index(0)
    nul, at = len(before) + first, offset + first  # in before + data, in the file
    if at > 0 and not data[first:].strip(b"\0") and _zeros_to_the_end(path, offset + len(data)):
        raise CharRNNError(f"{path}: text up to byte {at:,}, and only NUL bytes from there to the end (a tail "
                           f"filled with zeros: a copy or download cut short, or a crash while it was written). "
                           f"Cut them off, e.g. {cut_command(at)}, or pass a complete copy")
    around = (before + data)[max(0, nul - 32768):nul + 32768]
    if _mostly_controls(around):
        raise CharRNNError(f"{path}: looks like a binary file, not text (NUL byte at offset {at:,}); pass a text file")
    raise CharRNNError(f"{path}: text with a NUL byte at offset {at:,}, which no text has (a stray one, or a "
                       f"binary part): remove the NUL bytes, e.g. tr -d '\\000' < FILE > FIXED, and pass FIXED")


def check_byte_order(path: Path, data: bytes, offset: int, encoding: str) -> None:
    """A chunk of a UTF-16 or UTF-32 file (at byte offset, a multiple of 4), before it is decoded:
    refused where a character past the file's start is a byte-order mark in the other byte order,
    which only a file joined from parts saved in both orders has (cat of a little- and a big-endian
    file): what follows would be read as other characters (spaces as U+2002, letters as CJK) in
    silence, or as damaged bytes. (At the file's start it is a whole file in the other byte order,
    which check_decoded_text tells.)"""
    if not _wide(encoding) or (b"\xfe\xff" not in data and b"\xff\xfe" not in data):  # no mark: no file read
        return
    ordered, unit = _ordered(path, codecs.lookup(encoding).name), _unit_bytes(encoding)
    swapped = "\ufeff".encode(_swapped(ordered))
    at = data.find(swapped)
    while at >= 0 and ((offset + at) % unit or offset + at == 0):  # a character's own bytes, or the file's mark
        at = data.find(swapped, at + 1)
    if at >= 0:
        raise CharRNNError(f"{path}: a byte-order mark of the other byte order at byte {offset + at:,}: the file "
                           f"joins {encoding} parts saved in both byte orders, and what follows it would be read as "
                           f"other characters. Convert each part to UTF-8 ({convert_command(encoding, files=False)}), "
                           f"and join those")


def _zeros_to_the_end(path: Path, start: int) -> bool:
    """Whether the file holds only NUL bytes from byte start on (read a block at a time)."""
    with open(path, "rb") as f:
        f.seek(start)
        while block := f.read(_COUNT_BYTES):
            if block.strip(b"\0"):
                return False
    return True


def _reads_as_unmarked_text(head: bytes, encoding: str) -> bool:
    """UTF-16 or UTF-32 in a byte order (utf-16-le) without a byte-order mark. Not told by where its NULs
    are: Korean text has them in low bytes too (가 is U+AC00), binary files on both sides. Anything
    else decodes to control characters or odd code points, but for arrays of 16- or 32-bit numbers,
    such as token ids. Those land on unassigned code points now and then (1-3% of a vocabulary's ids),
    which text hardly ever uses (emoji newer than this Python's Unicode aside); and text has spaces or
    line breaks (5% of UTF-16's characters: small numbers land on them too), or is in a script written
    without them."""
    text = _whole_units(head, encoding)
    if not _clean(text):
        return False
    unassigned = sum(unicodedata.category(c) == "Cn" and not "\U0001f000" <= c <= "\U0001faff" for c in text)
    spaced = (text.count(" ") + text.count("\n")) * (20 if "16" in encoding else 100) >= len(text)
    unspaced_script = sum(bool(_UNSPACED_SCRIPTS.match(c)) for c in text)
    return unassigned * 300 <= len(text) and (spaced or unspaced_script * 2 >= len(text))


# Scripts written without spaces: Thai, Lao, Myanmar, Khmer, Chinese, Japanese (and Korean's
# syllables, full-width forms), and the CJK extensions.
_UNSPACED_SCRIPTS = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3000-\u9fff\uac00-\ud7a3\uff00-\uffef"
                               "\U00020000-\U0003ffff]")


def _mostly_controls(data: bytes) -> bool:
    """Whether over 5% of the bytes are control characters other than tab and line breaks: binary."""
    return sum(data.count(bytes([b])) for b in range(32) if b not in (9, 10, 13)) > len(data) // 20


def _nuls_on_one_side(head: bytes) -> bool:
    """Whether 5% or more of the even or of the odd bytes are NULs, and an eighth as many on the other side."""
    nuls = sorted(head[side::2].count(0) / max(1, len(head[side::2])) for side in (0, 1))
    return nuls[1] >= 0.05 and nuls[0] <= nuls[1] / 8


def _nul_order(data: bytes) -> str:
    """The byte order that puts the NULs of UTF-16/32 text in the high bytes ("le": at odd offsets)."""
    return "le" if data[1::2].count(0) > data[0::2].count(0) else "be"


def _pass_or_convert(found: str, encoding: str, other_files: int) -> str:
    """The advice for a file in the encoding found: --encoding reads every file of the corpus."""
    if not other_files:
        return f"pass --encoding {found} (or convert the file to UTF-8)"
    return (f"--encoding {encoding} applies to all {other_files + 1} files: convert this one to UTF-8 "
            f"({convert_command(found)}), or pass --encoding {found} if every file is {found}")


def check_decoded_text(path: Path, text: str, encoding: str, other_files: int = 0) -> None:
    """The first decoded chunk, judged for a wrong --encoding that decoded without an error: UTF-32
    read as UTF-16 is every other character NUL, UTF-16 in the other byte order has U+2000 for its
    spaces and U+0A00 for its line breaks; UTF-8 read under a code page is mojibake; cp1252
    (Windows) read as latin-1 turns its curly quotes and dashes into C1 control characters, which no
    text uses. other_files: how many more the corpus has, which --encoding reads too."""
    if text.count("\x00") > len(text) // 20:
        raise CharRNNError(f"{path}: under --encoding {encoding} the text is {text.count(chr(0)) / len(text):.0%} "
                           f"NUL characters: the file has another encoding (UTF-32?); pass it with --encoding, "
                           f"or convert the file to UTF-8")
    swapped = _swapped(encoding)
    if swapped and text.count("\u2000") + text.count("\u0a00") > 2 * (text.count(" ") + text.count("\n")) + 2:
        raise CharRNNError(f"{path}: under --encoding {encoding} its spaces and line breaks read as U+2000 and "
                           f"U+0A00: the file is in the other byte order; pass --encoding {swapped}")
    if not codecs.lookup(encoding).name.startswith("utf"):  # a single-byte or East Asian code page
        # Python's escape codecs read the bytes past ASCII as latin-1 (and escapes as what they name).
        escapes = encoding.endswith("unicode-escape")
        raw = text.encode("latin-1" if escapes else encoding, errors="ignore")
        # EBCDIC (cp500) puts even ASCII's letters above 0x7f, where they may read as UTF-8 or as
        # Hangul by chance. But a file with more of ASCII's spaces and line breaks than of its own
        # is no EBCDIC.
        ascii_kept = escapes or "\n Aa".encode(encoding, errors="ignore") == b"\n Aa"
        not_ebcdic = not ascii_kept and (raw.count(b" ") + raw.count(b"\n") >
                                         raw.count(" ".encode(encoding)) + raw.count("\n".encode(encoding)))
        # UTF-8 is what no other encoding's text is by chance.
        if (ascii_kept and re.search(rb"[\x80-\xff]", raw) or not_ebcdic) and _decodes_as_utf8(raw):
            garbled = _garbled_word(text)[:20]
            fix = ("drop --encoding, whose default is utf-8" if not other_files else
                   f"--encoding {encoding} applies to all {other_files + 1} files: convert any {encoding} ones to "
                   f"UTF-8 ({convert_command(encoding)}) and drop --encoding")
            raise CharRNNError(f"{path}: this is UTF-8 text, which --encoding {encoding} garbles (into {garbled!r} "
                               f"and the like): {fix}")
        if not_ebcdic:
            raise CharRNNError(f"{path}: --encoding {encoding} is EBCDIC, and the file's spaces and line breaks are "
                               f"ASCII's, not EBCDIC's: pass the file's own encoding (from Windows often cp1252, "
                               f"Korean cp949) or convert it to UTF-8")
        # A one-byte code page reads any bytes: Korean in cp949 decodes under latin-1 too, as mojibake.
        try:  # (the chunk may end inside a character)
            korean = codecs.getincrementaldecoder("cp949")().decode(raw, final=False) if len(raw) == len(text) else ""
        except UnicodeDecodeError:
            korean = ""
        if ascii_kept and _mostly_common_hangul(korean) and sum("\uac00" <= c <= "\ud7a3" for c in korean) >= 8:
            garbled = _garbled_word(text)[:12]
            meant = re.search(r"\S*[\uac00-\ud7a3]\S*", korean)[0][:12]
            raise CharRNNError(f"{path}: under --encoding {encoding} the text is mojibake ({garbled!r} and the like), "
                               f"which reads as Korean in cp949 ({meant!r}): "
                               f"{_pass_or_convert('cp949', encoding, other_files)}")
    c1 = len(re.findall("[\x80-\x9f]", text))
    if c1 and codecs.lookup(encoding).name.startswith(("iso8859", "latin")):
        logger.warning("%s: under --encoding %s the text has %d C1 control characters (U+0080-U+009F), which "
                       "Windows' code pages read as curly quotes, dashes and the euro sign: if the file comes "
                       "from Windows, pass its code page (--encoding cp1252 for Western European text)",
                       path, encoding, c1)


def _garbled_word(text: str) -> str:
    """The first word of mojibake to show: one with a character past ASCII (the text's start if none)."""
    return (re.search(r"\S*[^\x00-\x7f]\S*", text) or [text])[0]


def _decodes_as_utf8(data: bytes) -> bool:
    """Whether bytes are UTF-8, but for a character that the end of data cuts short."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _reads_as_text(head: bytes, encoding: str, allowed: int = 0) -> bool:
    """Whether bytes decode to text with hardly any control characters (an array of small 16-bit
    numbers has as many NULs as UTF-16 text, but decodes to controls); allowed: how many odd ones
    a short text may have all the same."""
    return _clean(_whole_units(head, encoding), allowed)


def _whole_units(head: bytes, encoding: str) -> str:
    """head decoded, but for a last character it cuts short."""
    return head[:len(head) // _unit_bytes(encoding) * _unit_bytes(encoding)].decode(encoding, errors="replace")


def _clean(text: str, allowed: int = 0) -> bool:
    """Whether decoded text has hardly any control characters or undecodable bytes (see _reads_as_text)."""
    odd = sum(1 for c in text if c == "\ufffd" or (unicodedata.category(c) == "Cc" and c not in "\n\r\t"))
    return bool(text) and odd <= max(allowed, len(text) / 100)


def unmarked_error(path: Path, encoding: str, error: UnicodeError, data: bytes, bad: int, other_files: int,
                   extra_bytes: int) -> CharRNNError:
    """A decoding error without a position: UTF-16 or UTF-32 without the byte-order mark its codec
    needs to tell the byte order (NULs in the text), or another encoding's bytes."""
    if b"\x00" in data:
        return CharRNNError(f"{path}: not valid {encoding} ({error}): pass --encoding "
                            f"{encoding}-{_nul_order(data)}, which needs no byte-order mark")
    return decode_error(path, encoding, bad, other_files, extra_bytes)


def decode_error(path: Path, encoding: str, bad: int, other_files: int = 0, extra_bytes: int = 0,
                  truncated: bool = False) -> CharRNNError:
    """One message for an undecodable file: where the first bad byte is, and what to do (--encoding
    is for every file: among others, converting this one may be the way). extra_bytes: how many bytes
    the characters before it took beyond one each (under UTF-8: how much non-ASCII text decoded);
    truncated: whether the file ends inside the character that begins there."""
    wide = _wide(encoding)
    ordered = _ordered(path, encoding) if wide else encoding
    # UTF-16/32 line breaks are counted as characters: their bytes 0A are also parts of others.
    decoder = codecs.getincrementaldecoder(ordered)("replace") if wide else None
    with open(path, "rb") as f:
        line, left, after_cr = 1, bad, False
        while left:  # count line breaks before the bad byte without holding the file in memory
            block = f.read(min(left, _COUNT_BYTES))
            if not block:  # the file shrank meanwhile
                break
            piece = decoder.decode(block) if decoder else block
            # \n, \r\n and a lone \r (an old Mac's) each end a line, as the text is read. A \r at a block's
            # end counts once the next shows it alone: its \n may follow, or be the bad byte itself.
            cr, lf = ("\r", "\n") if decoder else (b"\r", b"\n")
            line += (piece.count(lf) + piece.count(cr) - piece.count(cr + lf) - piece.endswith(cr)
                     + (after_cr and not piece.startswith(lf)))
            after_cr = piece.endswith(cr)
            left -= len(block)
        f.seek(max(0, bad - 65536))
        window = f.read(131072)
    at = bad - max(0, bad - 65536)
    where = (f"{path}: not valid {encoding} at line {line:,}, byte offset {bad:,} "
             f"(bytes {window[at:at + 4].hex(' ')})")
    if wide and b"\x00" in window:  # UTF-16/32 text (its spaces and line breaks hold NULs); else another's bytes
        return _wide_error(path, where, encoding, ordered, bad, window, at, truncated)
    if b"\x00" in window or _mostly_controls(window):
        return CharRNNError(f"{where}; it looks like a binary file, not text")
    # Judge other encodings on whole lines around the bad byte: cheap whatever the file size.
    start = window.find(b"\n") + 1 if bad > 65536 else 0
    end = window.rfind(b"\n") + 1 if len(window) == 131072 else len(window)
    sample = window[start:end] or window
    # Many multi-byte characters decoded before it (8 Hangul or more: not by chance), or under UTF-8
    # around it: the encoding is right, and another would turn them into mojibake. Under another
    # encoding that many say less: a wider one of the same script (cp949 for euc-kr, cp932 for
    # shift_jis) reads them too, so the file is called damaged only when no other encoding reads it.
    context = "before it" if extra_bytes >= 16 else "around it"
    if _is_utf8(encoding) and (extra_bytes >= 16 or _utf8_around(sample)) or truncated and extra_bytes >= 16:
        return _damage_error(path, where, encoding, bad, window[at:], truncated, context)
    runs = re.findall(rb"[\x80-\xff]+", sample)
    if (_is_utf8(encoding) and not extra_bytes and len(runs) == 1 and len(runs[0]) <= 4
            and re.search(rb"[A-Za-z]", sample)):
        # ASCII but for one character's worth of bytes: another encoding's one odd character (cp949
        # and cp1252 read nearly any pair) or damage, which nothing here tells apart; at the file's
        # end, the first bytes of a UTF-8 character are a cut-off last character.
        if truncated:
            return _damage_error(path, where, encoding, bad, window[at:], truncated, "around it")
        return CharRNNError(f"{where}; the text around it is ASCII, which says nothing of its encoding: if the "
                            f"file is not UTF-8, pass --encoding with its encoding (from Windows often cp1252, "
                            f"Korean cp949); if it is, these are damaged bytes to fix or remove "
                            f"({convert_command('utf-8', new='FIXED', drop_invalid=True)} drops every invalid byte)")
    if _mixes_utf8_and_cp949(sample):  # no --encoding reads it: latin-1 would train on mojibake
        return CharRNNError(f"{where}; its lines are partly cp949 and partly UTF-8 (texts pasted together), which "
                            f"no --encoding reads: convert the cp949 part to UTF-8 (split the file where the "
                            f"encoding changes, convert that part ({convert_command('cp949', files=False)}), and join them "
                            f"again)")
    tried = [encoding]
    for candidate in ("utf-8", "cp949"):
        if codecs.lookup(candidate).name == encoding:
            continue
        tried.append(candidate)
        try:
            text = sample.decode(candidate)
        except UnicodeDecodeError:
            continue
        if candidate == "utf-8" or _mostly_common_hangul(text):
            if not other_files:
                return CharRNNError(f"{where}; this looks like {candidate}: pass --encoding {candidate}")
            every = f"--encoding {encoding} applies to all {other_files + 1} files, and this one looks like {candidate}"
            if candidate == "utf-8":
                return CharRNNError(f"{where}; {every}: convert any {encoding} ones to UTF-8 "
                                    f"({convert_command(encoding)}) and drop --encoding")
            return CharRNNError(f"{where}; {every}: convert it ({convert_command(candidate, encoding)}), or pass "
                                f"--encoding {candidate} if every file is {candidate}")
    not_these = f"{where}; it is not {' or '.join(tried)} either"
    found = _legacy_encoding(sample, encoding)
    if found:
        codec, looks_like, also = found
        return CharRNNError(f"{not_these}, and looks like {looks_like}: {_pass_or_convert(codec, encoding, other_files)}"
                            f"{also}")
    if extra_bytes >= 16:
        return _damage_error(path, where, encoding, bad, window[at:], truncated, context)
    return CharRNNError(f"{not_these}: pass --encoding with the file's encoding or convert it to UTF-8 (from "
                        f"Windows: cp1252 Western European, cp1250 Central European, cp1251 Cyrillic, cp1253 "
                        f"Greek, cp1254 Turkish, cp1255 Hebrew, cp1256 Arabic, cp874 Thai, cp932 Japanese, gb18030 "
                        f"or big5 Chinese; from elsewhere often latin-1, euc-jp or koi8-r)")


def _common_letters(common: str, least_share: float, enough: int = 20) -> Callable[[str], bool]:
    """Whether the text has enough non-ASCII letters to tell, and least_share of them are in common."""
    def test(text: str) -> bool:
        letters = [c for c in text.lower() if c >= "\x80" and c.isalpha()]
        return len(letters) >= enough and sum(c in common for c in letters) >= least_share * len(letters)
    return test


def _own_words(text: str) -> tuple[int, int]:
    """(words of two or more letters with non-ASCII ones, those of them with no ASCII letter): in
    Greek, Hebrew or Russian text nearly all (English among them aside), in European text few
    (café, Größe). One letter alone says nothing: à is Hebrew's alef in cp1255."""
    words = [w for w in re.findall(r"[^\W\d_]{2,}", text) if not w.isascii()]
    return len(words), sum(not any(c.isascii() for c in w) for w in words)


def _alphabet(common: str, lowercase: bool = False, finals: str = "") -> Callable[[str], bool]:
    """Text in an alphabet of its own: five or more words of its letters only, and the language's
    common letters; with lowercase, most of its letters lowercase; its final forms (Greek's ς,
    Hebrew's ם) where words end. Russian read as Hebrew has common letters (о, а, р, е as מ, א, נ,
    ו), and ם for н inside words."""
    has_common = _common_letters(common, 0.4)

    def test(text: str) -> bool:
        words, own = _own_words(text)
        letters = [c for c in text if c >= "\x80" and c.isalpha()]
        inside_words = len(re.findall(f"[{finals}](?=[^\\W\\d_])", text)) if finals else 0
        return (own >= 5 and own >= 0.8 * words and has_common(text)
                and (not lowercase or sum(map(str.islower, letters)) > len(letters) / 2)
                and inside_words <= 0.1 * sum(c in finals for c in letters))
    return test


def _european(text: str) -> bool:
    """Most words with non-ASCII letters have ASCII ones too (café, Größe, piękna)."""
    words, own = _own_words(text)
    return own < 0.5 * words or not words


_PUNCTUATION = "‘’‚“”„–—…€•«»¿¡°·§©®™№\xa0"
_CJK = lambda c: "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff01" <= c <= "\uff5e"
_in_block = lambda first, last: lambda c: first <= c <= last or c in _PUNCTUATION
_LETTER_OR_PUNCTUATION = lambda c: c.isalpha() or c in _PUNCTUATION
_CYRILLIC = (_in_block("\u0400", "\u04ff"), _alphabet("оеаинтсрвлі", lowercase=True))
# (codec, what its text looks like, the test most of its non-ASCII characters pass, the test of
# the whole text, what else to say), in the order tried. A byte string decodes in many codecs:
# Hebrew in cp1251 is lowercase Cyrillic, Thai in gb18030 Chinese characters, Greek in cp1252
# accented letters. What the wrong readings lack is the language's most common letters, or its
# words: all of one alphabet, or in European text mostly ASCII letters.
_LEGACY_ENCODINGS: list[tuple[str, str, Callable[[str], bool], Callable[[str], bool], str]] = [
    # Chinese or Korean in cp932 (Shift-JIS) is half-width katakana, which Japanese text hardly uses.
    ("cp932", "Japanese in cp932 (Shift-JIS)", lambda c: _CJK(c) or "\u3040" <= c <= "\u30ff",
     _common_letters("のにはをたがでてとしれさいかな", 0.1, enough=12), ""),
    ("gb18030", "Chinese in gb18030 (GBK)", _CJK,
     _common_letters("的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里", 0.1, enough=12), ""),
    ("big5", "Chinese in big5", _CJK,
     _common_letters("的一是不了在人有我他這個們中來上大為和國地到以說時要就出會可也你對生能而子那得於著下自之年過發後作裡", 0.1, enough=12), ""),
    # Greek in cp1256 is French letters among the Arabic ones, and in cp1255 undecodable (ό).
    ("cp1256", "Arabic in cp1256", _in_block("\u0600", "\u06ff"), _alphabet("اليمونهرتبةعف"), ""),
    ("cp1255", "Hebrew in cp1255", _in_block("\u0590", "\u05ff"), _alphabet("יוהמלאתרבנשכ", finals="ךםןףץ"), ""),
    ("cp1253", "Greek in cp1253", _in_block("\u0370", "\u03ff"), _alphabet("αοειτσνηυρςκάέίόήύώ", finals="ς"), ""),
    # Polish in cp1252 has ³ and ¹ for ł and ą, which are not letters: cp1250 gets it. Czech,
    # Hungarian or Turkish read as other accented letters there (ř as ø, ő as õ, ş as þ).
    ("cp1252", "European text in cp1252", _LETTER_OR_PUNCTUATION, _european,
     "; cp1252 is for Western European languages: Czech, Hungarian or other Central European text is cp1250, "
     "Turkish cp1254"),
    ("cp1250", "Central European text in cp1250", _LETTER_OR_PUNCTUATION, _european, ""),
    # KOI8-R has the lowercase letters where cp1251 has the capitals: most letters are lowercase.
    ("cp1251", "Cyrillic in cp1251", *_CYRILLIC, ""),
    ("koi8-r", "Cyrillic in koi8-r", *_CYRILLIC, ""),
]


def _legacy_encoding(sample: bytes, tried: str) -> tuple[str, str, str] | None:
    """(codec, what the text looks like, what else to say) of a legacy encoding other than tried
    that reads sample (whole lines) as plausible text."""
    for codec, looks_like, in_script, plausible, also in _LEGACY_ENCODINGS:
        if codecs.lookup(codec).name == codecs.lookup(tried).name:
            continue
        try:
            text = sample.decode(codec)
        except UnicodeDecodeError:
            continue
        others = [c for c in text if c >= "\x80"]
        if others and sum(map(in_script, others)) >= 0.9 * len(others) and plausible(text):
            return codec, looks_like, also
    return None


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


_ICONV_NAMES = {"utf-8-sig": "utf-8", "mac-roman": "macintosh", "euc-jis-2004": "euc-jisx0213",
                "shift-jis-2004": "shift_jisx0213"}


def _iconv(encoding: str) -> str:
    """A Python codec's name as iconv spells it: euc_kr is euc-kr, utf-16-le utf-16le."""
    name = re.sub(r"^(utf-(?:16|32))-", r"\1", encoding.replace("_", "-"))
    name = re.sub(r"^iso2022-", "iso-2022-", name)
    return _ICONV_NAMES.get(name, name)


def convert_command(source: str, target: str = "utf-8", new: str = "NEW", drop_invalid: bool = False,
                    files: bool = True, windows: bool = os.name == "nt") -> str:
    """The command a message gives to convert FILE from encoding source to target (Python's names),
    into new (dropping the bytes source cannot read, with drop_invalid): iconv, which Linux, macOS
    and Git Bash have; on Windows, which has none, Python's own, said whole, its files passed as
    arguments (a path in it, C:\\Users\\O'Brien, would end its string). files False: iconv's options
    alone, for a part of a file."""
    if windows:
        target = "utf-8" if codecs.lookup(target).name == "utf-8-sig" else target  # no mark mid-file: as iconv
        errors = ", errors='ignore'" if drop_invalid else ""
        return (f"python -c \"import sys; open(sys.argv[2], 'w', encoding='{target}', newline='').write(open("
                f"sys.argv[1], encoding='{source}', newline=''{errors}).read())\" FILE {new}")
    return f"iconv {'-c ' if drop_invalid else ''}-f {_iconv(source)} -t {_iconv(target)}" + (
        f" FILE > {new}" if files else "")


def cut_command(size: int, path: str | None = None, windows: bool = os.name == "nt") -> str:
    """The command a message gives to cut the file at path (FILE where None) to its first size
    bytes: truncate, or on Windows Python's own."""
    file = "FILE" if path is None else shell_path(path)
    return (f"python -c \"import os, sys; os.truncate(sys.argv[1], {size})\" {file}" if windows
            else f"truncate -s {size} {file}")


def _ordered(path: Path, encoding: str) -> str:
    """A UTF-16/32 codec with its byte order: utf-16 as the file's byte-order mark names it (little
    endian without one), to read the file from anywhere, with errors="replace" too."""
    if encoding not in ("utf-16", "utf-32"):
        return encoding
    with open(path, "rb") as f:
        marked_be = f.read(4).startswith(b"\xfe\xff" if encoding == "utf-16" else b"\x00\x00\xfe\xff")
    return f"{encoding}-{'be' if marked_be else 'le'}"


def _swapped(encoding: str) -> str | None:
    """utf-16-be for utf-16-le and so on; None where a byte-order mark decides."""
    if encoding.endswith(("-le", "-be")) and _wide(encoding):
        return encoding[:-2] + ("be" if encoding.endswith("le") else "le")
    return None


def _wide_error(path: Path, where: str, encoding: str, ordered: str, bad: int, window: bytes, at: int,
                truncated: bool) -> CharRNNError:
    """The advice for a UTF-16/32 file (window: the bytes around the bad one, at its offset there;
    ordered: the codec with the file's byte order, see _ordered): read in the other byte order, not
    text at all, cut short, or damaged. Its NULs say nothing."""
    swapped = _swapped(encoding)
    width = _unit_bytes(encoding)
    window = window[at % width:]  # whole units from the bad one's alignment

    def spaces_and_breaks(codec: str) -> int:
        text = window[:len(window) // width * width].decode(codec, "replace")
        return text.count(" ") + text.count("\n")

    if truncated:  # whatever the byte order
        return _damage_error(path, where, encoding, bad, window[at - at % width:], True, "before it")
    if swapped and spaces_and_breaks(swapped) > 2 * spaces_and_breaks(ordered) + 2:
        return CharRNNError(f"{where}; this looks like {swapped} (the other byte order): pass --encoding {swapped}")
    if not _reads_as_text(window, ordered, allowed=2):  # the bad unit, and a surrogate it leaves alone
        return CharRNNError(f"{where}; it looks like a binary file, not text")
    return _damage_error(path, where, encoding, bad, window[at - at % width:], False, "before it")


def _utf8_around(sample: bytes) -> bool:
    """Whether text that was ASCII up to a bad byte is UTF-8 all the same: plenty of UTF-8
    characters around it, and few bad runs among them (another encoding read as UTF-8 fails at
    nearly every non-ASCII character)."""
    good, bad_runs = _good_and_bad(sample.decode("utf-8", "replace"))
    return good >= 8 and good >= 4 * bad_runs


def _good_and_bad(text: str) -> tuple[int, int]:
    """Text decoded with errors="replace": its non-ASCII characters, and its runs of bad bytes."""
    bad_runs = len(re.findall("\ufffd+", text))
    return sum(c > "\x7f" for c in text) - text.count("\ufffd"), bad_runs


def _damage_error(path: Path, where: str, encoding: str, bad: int, after: bytes, truncated: bool,
                  context: str) -> CharRNNError:
    """The advice for a file that is in its encoding (its text before or around the bad byte, the
    context, says so): cut short, a part pasted in another encoding, or damaged here."""
    named = "UTF-8" if _is_utf8(encoding) else encoding
    if truncated:
        return CharRNNError(f"{where}; the file is {named} but ends in the middle of a character (cut short?): "
                            f"drop its last {len(after)} byte(s), e.g. {cut_command(bad, str(path))}")
    fix = (f"{convert_command(encoding, new='FIXED', drop_invalid=True)} converts it to UTF-8 and drops every "
           f"invalid byte")
    damaged = (f"{where}; the text {context} is {named}, so these are damaged bytes, not another encoding: fix "
               f"or remove them ({fix.replace(' converts it to UTF-8 and', '') if _is_utf8(encoding) else fix})")
    if _wide(encoding):
        return CharRNNError(damaged)
    line = after[:after.find(b"\n")] if b"\n" in after else after
    own_good, own_bad_runs = _good_and_bad(line.decode(encoding, "replace"))
    for other in ("utf-8", "cp949"):  # a line mostly in the file's encoding is no other's (cp949 reads UTF-8's é)
        if other != named.lower() and own_good < 4 * own_bad_runs and (
                _mostly_common_hangul(line.decode(other, "replace")) if other == "cp949" else _decodes(line, other)):
            return CharRNNError(f"{where}; the text {context} is {named} and from here it looks like {other}: a "
                                f"part pasted in another encoding. Convert that part to {named} "
                                f"({convert_command(other, encoding, files=False)})")
    # Damage is a bad run or two, or a few among good non-ASCII text; another encoding fails at
    # nearly every non-ASCII character.
    good, bad_runs = _good_and_bad(after[:4096].decode(encoding, "replace"))
    if bad_runs <= 2 or good >= 4 * bad_runs:
        return CharRNNError(damaged)
    found = _legacy_encoding(after[:after.rfind(b"\n") + 1] or after, encoding)
    if found:
        codec, looks_like, also = found
        return CharRNNError(f"{where}; the text {context} is {named} and from here it looks like {looks_like}: a "
                            f"part pasted in another encoding. Convert that part to {named} "
                            f"({convert_command(codec, encoding, files=False)}){also}")
    return CharRNNError(f"{where}; the text {context} is {named} and from here it is not: a part in another "
                        f"encoding to convert to {named}, or damage to fix")


def _mostly_common_hangul(text: str) -> bool:
    """cp949 decodes many stray bytes of other encodings too (Windows' 0x92 apostrophe and the letter
    after it make a syllable of its extension): cp949 only for text that is mostly Hangul of KS X
    1001, the 2,350 common syllables, both of whose bytes are 0xA1 or above."""
    others = [c for c in text if ord(c) >= 0x80]
    common = sum("\uac00" <= c <= "\ud7a3" and min(c.encode("cp949")) >= 0xA1 for c in others)
    return bool(others) and common > len(others) // 2


def _mixes_utf8_and_cp949(sample: bytes) -> bool:
    """Whether each line that is not ASCII is UTF-8 or Korean in cp949, and both kinds are there."""
    kinds = set()
    for line in sample.splitlines():
        if line.isascii():
            continue
        if _decodes(line, "utf-8"):
            kinds.add("utf-8")
        elif _decodes(line, "cp949") and _mostly_common_hangul(line.decode("cp949")):
            kinds.add("cp949")
        else:
            return False
    return kinds == {"utf-8", "cp949"}


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True
