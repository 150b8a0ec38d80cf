"""Hangul under --unit jamo: precomposed syllables split into their conjoining jamo, and composed
back (Unicode ch. 3.12), on numpy code points for preparing a corpus and on text for sampling.
export.py writes the same in TensorFlow ops for the SavedModel.

Like dataset.py, importing it does not run numpy's import (see utils._lazy_import).
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

from utils import np


def code_points(text: str) -> np.ndarray:
    """The text's code points (uint32, lone surrogates kept), the form dataset.py prepares text in."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def text_of(points: np.ndarray) -> str:
    """The text of code points: code_points undone."""
    return np.asarray(points, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


# Hangul: a precomposed syllable S = 0xAC00 + (l * 21 + v) * 28 + t is the conjoining jamo
# L = 0x1100 + l, V = 0x1161 + v and, when t > 0, T = 0x11A7 + t (Unicode ch. 3.12).
S_FIRST, S_LAST = 0xAC00, 0xD7A3
L_FIRST, L_LAST = 0x1100, 0x1112
V_FIRST, V_LAST = 0x1161, 0x1175
T_BASE, T_LAST = 0x11A7, 0x11C2


def syllable(initial: Any, vowel: Any, t: Any) -> Any:
    """S from the code points of L and V, and t (0: no final): on ints, numpy and TensorFlow arrays
    alike (hence Any)."""
    return S_FIRST + ((initial - L_FIRST) * 21 + vowel - V_FIRST) * 28 + t


# Escape for conjoining jamo that were already in the text. Without it, from_jamo could not tell
# an original L,V pair (possible with --normalize none, e.g. NFD text) from a decomposed syllable.
# Every original vowel or final jamo, and the escape itself, gets the escape in front; so the
# round trip is exact on any text, and a vowel or final is never the start of an original
# character (what char_starts relies on). U+FDD0 is a noncharacter, reserved for internal use;
# should a text contain it anyway, it still round-trips but counts as two characters.
ESCAPE = 0xFDD0
# What follows an initial of the text under to_jamo, where a jamo does: old Hangul's vowels, finals
# and initials (here and in Hangul Jamo Extended-A and -B), or an escaped jamo or escape (NFD text,
# --normalize none). A modern initial before a modern one cannot be told from a model's lone one.
KEEPS_INITIAL = ("[\u1160\u1176-\u11a7\u11c3-\u11ff\ua960-\ua97f\ud7b0-\ud7ff]"
                  "|\ufdd0[\ufdd0\u1161-\u1175\u11a8-\u11c2]")
_JAMO_RE = re.compile("\ufdd0([\ufdd0\u1161-\u1175\u11a8-\u11c2]?)|([\u1100-\u1112])([\u1161-\u1175])([\u11a8-\u11c2]?)"
                      f"|([\u1161-\u1175\u11a8-\u11c2]|[\u1100-\u1112](?!{KEEPS_INITIAL}))")


def _letter(jamo: int) -> str:
    """The standalone letter (U+3131-U+318E) of a conjoining jamo: ㄱ for the initial or final ᄀ/ᆨ."""
    return unicodedata.lookup(re.sub("CHOSEONG|JUNGSEONG|JONGSEONG", "LETTER", unicodedata.name(chr(jamo))))


# A vowel or final jamo that no syllable takes can only come from a model (to_jamo escapes those
# of the text): it prints as the standalone letter (U+3131-U+318E, NFC-stable), as Korean writes it.
# So does an initial that none of KEEPS_INITIAL follows: to_jamo keeps the text's own initials as
# they are, but text hardly has one alone (NFC composes it with its vowel), and drawn beside a
# syllable it makes one broken block with it (ᄋ로), as a model writes it.
_INITIALS = range(L_FIRST, L_LAST + 1)
STANDALONE_LETTERS = {chr(c): _letter(c) for c in [*_INITIALS, *range(V_FIRST, V_LAST + 1),
                                                      *range(T_BASE + 1, T_LAST + 1)]}
# The other way, for a prime under jamo: a letter the vocabulary lacks reads as a jamo that prints
# as it, so that a model's own text can be fed back. A consonant letter is a final or an initial:
# the final first (ㅏㄴ, a vowel and a final, is the commoner), the initial where the vocabulary
# has no such final (ㄸ, ㅃ and ㅉ have none) or a final would join the syllable before it (가ㄴ).
# Each: letter -> jamo (code points).
LETTER_AS_VOWEL_OR_FINAL = {ord(letter): ord(jamo) for jamo, letter in STANDALONE_LETTERS.items()
                            if ord(jamo) not in _INITIALS}
LETTER_AS_INITIAL = {ord(letter): ord(jamo) for jamo, letter in STANDALONE_LETTERS.items() if ord(jamo) in _INITIALS}


def is_initial(cp: np.ndarray) -> np.ndarray:
    return (cp >= L_FIRST) & (cp <= L_LAST)


def is_vowel(cp: np.ndarray) -> np.ndarray:
    return (cp >= V_FIRST) & (cp <= V_LAST)


def is_final(cp: np.ndarray) -> np.ndarray:
    return (cp > T_BASE) & (cp <= T_LAST)


def is_vowel_or_final(cp: np.ndarray) -> np.ndarray:
    return is_vowel(cp) | is_final(cp)


def is_jamo_symbol(cp: np.ndarray) -> np.ndarray:
    """The symbols that only --unit jamo makes: conjoining jamo, and the escape for original ones."""
    return is_vowel_or_final(cp) | is_initial(cp) | (cp == ESCAPE)


_NO_SYMBOL = 0xFFFFFFFF  # an unused slot in the jamo table below


@functools.cache
def _jamo_table() -> np.ndarray:
    """[code point] -> the up to 3 symbols it becomes under to_jamo (13 MiB, built once, ~10 ms)."""
    table = np.full((0x110000, 3), _NO_SYMBOL, dtype=np.uint32)
    table[:, 0] = np.arange(0x110000)
    s = np.arange(S_LAST - S_FIRST + 1)
    syllables = table[S_FIRST:S_LAST + 1]
    syllables[:, 0] = L_FIRST + s // 588
    syllables[:, 1] = V_FIRST + s % 588 // 28
    syllables[:, 2] = np.where(s % 28 > 0, T_BASE + s % 28, _NO_SYMBOL)
    escaped = np.flatnonzero(is_vowel_or_final(table[:, 0]) | (table[:, 0] == ESCAPE))
    table[escaped, 0], table[escaped, 1] = ESCAPE, escaped
    return table


def decompose(cp: np.ndarray) -> np.ndarray:
    """to_jamo on a code point array: a table lookup and a compress, the fastest numpy way found
    (a scatter by cumulative widths was 4x slower)."""
    symbols = np.take(_jamo_table(), cp.astype(np.intp), axis=0).ravel()
    return np.compress(symbols != _NO_SYMBOL, symbols)


def to_jamo(text: str) -> str:
    """Split precomposed Hangul syllables into conjoining jamo; from_jamo undoes it (see there)."""
    return text_of(decompose(code_points(text)))


def _compose(m: re.Match) -> str:
    if m.group(5) is not None:
        return STANDALONE_LETTERS[m.group(5)]
    if m.group(2) is None:
        return m.group(1)  # an escaped jamo stays as it is; a stray escape (model output) vanishes
    t = m.group(4)
    return chr(syllable(ord(m.group(2)), ord(m.group(3)), ord(t) - T_BASE if t else 0))


def from_jamo(text: str) -> str:
    """Recompose what to_jamo split, exactly but for a modern initial that none of KEEPS_INITIAL
    follows (which prints as its letter); jamo sequences a model invents decode sensibly too."""
    return _JAMO_RE.sub(_compose, text)
