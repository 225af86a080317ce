"""GPT-2's and GPT-4's pre-split patterns, compiled by hand: the same chunks as the regex,
faster.

``patterns.GPT2_PATTERN`` and ``patterns.GPT4_PATTERN`` are the truth, and the readable path
runs them through the ``regex`` module. On a long text that regex is most of the encoder's
time, so the fast path (used when a tokenizer's pattern is exactly one of the two) scans the
text once in numba. At each position the first rule that applies wins, as the regex's
alternatives do. GPT-2's rules:

1. ``'s 'd 'm 't 'll 've 're``  an apostrophe and one of these lower-case endings;
2. ``' '? letters+``            a run of letters (\\p{L}), with one leading space if any;
3. ``' '? numbers+``            a run of numbers (\\p{N}), likewise;
4. ``' '? other+``              a run of anything that is not a letter, number or space;
5. ``spaces+``                  a whitespace run (\\s): to the end of the text whole; else
                                all but its last character, which starts the next chunk
                                (a plain space then joins the word after it); a single
                                whitespace character before a non-space is a chunk alone.

GPT-4's (cl100k) differ:

1. the endings in any case (``'S``, ``'Ll``; ``(?i)`` also lets the long s, U+017F, be s);
2. ``x? letters+``  a letter run may take one leading character of any kind but a letter,
                    a number, ``\\r`` or ``\\n`` (``"(word"``, ``"\\tword"``, ``" word"``);
3. ``numbers{1,3}`` numbers in runs of at most three, never with a leading space;
4. ``' '? other+ [\\r\\n]*``  an "other" run also takes the line breaks right after it;
5. whitespace: a run to the end of the text whole; else, if it holds a \\r or \\n, up to
   and with the last one; else all but its last character (a single one alone).

Which characters are letters, numbers or whitespace, and which match an ending
case-insensitively, is asked of the ``regex`` module itself, so its Unicode tables decide,
not Python's ``unicodedata`` (their versions may differ). The tests compare these splits
with the regexes on tinyshakespeare and on random Unicode text.
"""

from __future__ import annotations

import numpy as np
import regex
from numba import njit

from .patterns import GPT2_PATTERN, GPT4_PATTERN

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
_CLASS_PATTERNS = ((LETTER, regex.compile(r"\p{L}")), (NUMBER, regex.compile(r"\p{N}")),
                   (SPACE, regex.compile(r"\s")))
_BMP = 1 << 16
_REGEX = regex.compile(GPT2_PATTERN)
_REGEX4 = regex.compile(GPT4_PATTERN)
CR, LF, SPACE_CHAR, APOSTROPHE = 13, 10, 32, 39
SHORT = 128  # below this many characters the regex is quicker (no arrays to set up: ~7 us)
_bmp_classes: np.ndarray | None = None  # the class of every code point below 65536
_bmp_folds: np.ndarray | None = None  # GPT-4's endings: which ASCII letter a code point is


def _bmp_string() -> str:
    """Every code point below 65536 in order, lone surrogates as NUL (no text holds them)."""
    return "".join(map(chr, range(0xD800))) + "\0" * 0x800 + "".join(
        map(chr, range(0xE000, _BMP)))


def _classes_of(chars: str) -> np.ndarray:
    """The class of each character of ``chars``, as the regex module sees it."""
    out = np.full(len(chars), OTHER, np.uint8)
    for cls, pattern in _CLASS_PATTERNS:
        for m in pattern.finditer(chars):
            out[m.start()] = cls
    return out


def classify(cps: np.ndarray) -> np.ndarray:
    """Class of each code point: a table for the Basic Multilingual Plane (built once, ~20
    ms), and the regex module asked directly for the few code points above it."""
    global _bmp_classes
    if _bmp_classes is None:  # lone surrogates (no text holds them here) stay OTHER
        _bmp_classes = _classes_of(_bmp_string())
        _bmp_classes[0xD800:0xE000] = OTHER
    astral = cps >= _BMP
    cls = _bmp_classes[np.where(astral, 0, cps)]
    if astral.any():
        unique, inverse = np.unique(cps[astral], return_inverse=True)
        cls[astral] = _classes_of("".join(map(chr, unique.tolist())))[inverse]
    return cls


@njit(cache=True)
def _chunk_starts(cps, cls, starts):
    """Fill ``starts`` with the index of each chunk's first code point, then len(cps);
    returns the number of chunks."""
    n, k, i = cps.size, 0, 0
    while i < n:
        starts[k] = i
        k += 1
        if cps[i] == 39 and i + 1 < n:  # rule 1: ' then s d m t, or ll ve re
            a = cps[i + 1]
            if a == 115 or a == 100 or a == 109 or a == 116:
                i += 2
                continue
            if i + 2 < n:
                b = cps[i + 2]
                if (a == 108 and b == 108) or (a == 118 and b == 101) or (a == 114 and b == 101):
                    i += 3
                    continue
        j, c = i, cls[i]
        if cps[i] == 32 and i + 1 < n and cls[i + 1] != SPACE:  # a space joins what follows
            j, c = i + 1, cls[i + 1]
        if c != SPACE:  # rules 2-4: a run of one class
            j += 1
            while j < n and cls[j] == c:
                j += 1
            i = j
            continue
        j = i + 1  # rule 5: whitespace
        while j < n and cls[j] == SPACE:
            j += 1
        i = j if j == n or j - i == 1 else j - 1
    starts[k] = n
    return k


def gpt2_split(text: str) -> list[str]:
    """``regex.findall(GPT2_PATTERN, text)``, computed by the scan above (tinyshakespeare,
    1.1 MB: 0.035-0.038 s against the regex's 0.096-0.100 s, benchmarks/bench_tokenizer.py)."""
    return _scan_split(text, _REGEX, _chunk_starts)


def _scan_split(text: str, short_regex, chunk_starts, *tables) -> list[str]:
    """``text`` cut at the chunk starts a numba scan finds (``tables``: functions giving
    the scan's extra lookup arrays); short texts go to the regex."""
    if len(text) < SHORT:
        return short_regex.findall(text)
    # surrogatepass: a lone surrogate (tokenizers replace them first) stays one code point
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    starts = np.empty(cps.size + 1, np.int64)
    k = chunk_starts(cps, classify(cps), *(table() for table in tables), starts)
    bounds = starts[: k + 1].tolist()
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


def case_folds() -> np.ndarray:
    """For each code point below 65536: the ASCII letter of GPT-4's endings (s d m t l v e
    r) it matches case-insensitively, as the regex module's ``(?i)`` decides, else 0."""
    global _bmp_folds
    if _bmp_folds is None:
        bmp = _bmp_string()
        _bmp_folds = np.zeros(_BMP, np.uint8)
        for letter in "sdmtlver":
            for m in regex.finditer(f"(?i:{letter})", bmp):
                _bmp_folds[m.start()] = ord(letter)
        _bmp_folds[0xD800:0xE000] = 0
    return _bmp_folds


@njit(cache=True)
def _fold(folds, cp):
    return folds[cp] if cp < folds.size else 0


@njit(cache=True)
def _run_end(cls, j, c):
    """The end of the run of class ``c`` that starts at j."""
    while j < cls.size and cls[j] == c:
        j += 1
    return j


@njit(cache=True)
def _gpt4_chunk_end(cps, cls, folds, i):
    """Where the GPT-4 chunk that starts at i ends."""
    n, c0, k0 = cps.size, cps[i], cls[i]
    if c0 == APOSTROPHE and i + 1 < n:  # rule 1, case-insensitive
        a = _fold(folds, cps[i + 1])
        if a == 115 or a == 100 or a == 109 or a == 116:  # s d m t
            return i + 2
        if i + 2 < n:
            b = _fold(folds, cps[i + 2])
            if (a == 108 and b == 108) or (a == 118 and b == 101) or (a == 114 and b == 101):
                return i + 3  # ll ve re
    if k0 == LETTER:  # rule 2
        return _run_end(cls, i + 1, LETTER)
    if k0 != NUMBER and c0 != CR and c0 != LF and i + 1 < n and cls[i + 1] == LETTER:
        return _run_end(cls, i + 2, LETTER)  # one leading character, then the letters
    if k0 == NUMBER:  # rule 3: at most 3 digits (never scan the rest of a long run: a
        j = i + 1  # million digits would take ~2 minutes, each group scanning to the end)
        while j < n and j < i + 3 and cls[j] == NUMBER:
            j += 1
        return j
    j = i + 1 if c0 == SPACE_CHAR and i + 1 < n and cls[i + 1] == OTHER else i
    if cls[j] == OTHER:  # rule 4, and the line breaks after it
        j = _run_end(cls, j + 1, OTHER)
        while j < n and (cps[j] == CR or cps[j] == LF):
            j += 1
        return j
    e = _run_end(cls, i + 1, SPACE)  # rule 5: whitespace [i, e)
    if e == n:
        return n
    for p in range(e - 1, i - 1, -1):  # up to and with the last line break
        if cps[p] == CR or cps[p] == LF:
            return p + 1
    return e - 1 if e - i > 1 else i + 1


@njit(cache=True)
def _gpt4_chunk_starts(cps, cls, folds, starts):
    """As _chunk_starts, for GPT-4's rules."""
    n, k, i = cps.size, 0, 0
    while i < n:
        starts[k] = i
        k += 1
        i = _gpt4_chunk_end(cps, cls, folds, i)
    starts[k] = n
    return k


def gpt4_split(text: str) -> list[str]:
    """``regex.findall(GPT4_PATTERN, text)``, computed by the scan above."""
    return _scan_split(text, _REGEX4, _gpt4_chunk_starts, case_folds)
