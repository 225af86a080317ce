"""GPT-2's pre-split pattern, compiled by hand: the same chunks as the regex, faster.

``patterns.GPT2_PATTERN`` is the truth, and the readable path runs it through the ``regex``
module. On a long text that regex is most of the encoder's time, so the fast path (used
when a tokenizer's pattern is exactly GPT-2's) scans the text once in numba. At each
position the first rule that applies wins, as the regex's alternatives do:

1. ``'s 'd 'm 't 'll 've 're``  an apostrophe and one of these lower-case endings;
2. ``' '? letters+``            a run of letters (\\p{L}), with one leading space if any;
3. ``' '? numbers+``            a run of numbers (\\p{N}), likewise;
4. ``' '? other+``              a run of anything that is not a letter, number or space;
5. ``spaces+``                  a whitespace run (\\s): to the end of the text whole; else
                                all but its last character, which starts the next chunk
                                (a plain space then joins the word after it); a single
                                whitespace character before a non-space is a chunk alone.

Which characters are letters, numbers or whitespace is asked of the ``regex`` module itself,
so its Unicode tables decide, not Python's ``unicodedata`` (their versions may differ).
The tests compare this split with the regex on tinyshakespeare and on random Unicode text.
"""

from __future__ import annotations

import numpy as np
import regex
from numba import njit

from .patterns import GPT2_PATTERN

OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
_CLASS_PATTERNS = ((LETTER, regex.compile(r"\p{L}")), (NUMBER, regex.compile(r"\p{N}")),
                   (SPACE, regex.compile(r"\s")))
_BMP = 1 << 16
_REGEX = regex.compile(GPT2_PATTERN)
SHORT = 128  # below this many characters the regex is quicker (no arrays to set up: ~7 us)
_bmp_classes: np.ndarray | None = None  # the class of every code point below 65536


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
        bmp = "".join(map(chr, range(0xD800))) + "\0" * 0x800 + "".join(
            map(chr, range(0xE000, _BMP)))
        _bmp_classes = _classes_of(bmp)
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
    if len(text) < SHORT:
        return _REGEX.findall(text)
    # surrogatepass: a lone surrogate (tokenizers replace them first) stays one code point
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    starts = np.empty(cps.size + 1, np.int64)
    k = _chunk_starts(cps, classify(cps), starts)
    bounds = starts[: k + 1].tolist()
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]
