"""Regex pre-split patterns: text is cut into chunks first, and BPE merges stay inside a chunk.

Without the split, BPE would learn tokens like "dog." or "the dog" that glue words to
punctuation and to each other. The patterns below cut text into words (with their leading
space), numbers, punctuation runs and whitespace runs. They use possessive quantifiers
(``++``), which Python's ``re`` lacks, so we compile them with the ``regex`` module.

Both strings are copied verbatim from tiktoken 0.14.0, ``tiktoken_ext/openai_public.py``
(``r50k_pat_str``, used by the "gpt2"/"r50k_base" encodings, and the ``pat_str`` of
"cl100k_base").
"""

from __future__ import annotations

from collections.abc import Callable

import regex

# GPT-2 (r50k_base). The original GPT-2 release wrote it as
# 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# tiktoken's form below splits text identically and runs faster.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

# GPT-4 (cl100k_base): case-insensitive contractions, numbers in groups of at most 3 digits,
# a letter run may take one leading non-letter (e.g. "_foo", "$x"), newlines kept apart.
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
    r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

PATTERNS = {"gpt2": GPT2_PATTERN, "gpt4": GPT4_PATTERN}


def resolve_pattern(pattern: str) -> str:
    """The regex string for ``pattern``: a name ("gpt2", "gpt4") or a regex of your own."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(
            f"pattern must be 'gpt2', 'gpt4' or a non-empty regex string, got {pattern!r}"
        )
    resolved = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(resolved)
    except regex.error as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {e}") from e
    return resolved


def findall(pattern: str) -> Callable[[str], list[str]]:
    """text -> the whole matches of ``pattern``, left to right (tiktoken's chunks). Unlike
    ``regex.findall``, a pattern with capturing groups still gives whole matches, not the
    groups' text (which would drop characters or return tuples)."""
    compiled = regex.compile(pattern)
    if not compiled.groups:
        return compiled.findall
    return lambda text: [m.group() for m in compiled.finditer(text)]
