"""Tokenizers: byte-level BPE (GPT-2/GPT-4 style) and a character-level one.

Reading order: ``patterns.py`` (how text is cut into chunks), ``bytes_unicode.py`` (GPT-2's
byte <-> character table), ``bpe.py`` (the readable trainer and encoder), ``fast.py`` (the
same algorithms in numba), ``tokenizer.py`` (BPETokenizer: special tokens, cache, API),
``files.py`` (save/load, tiktoken and GPT-2 files), ``char.py`` (CharTokenizer), ``cli.py``.
"""

from __future__ import annotations

import os

from .char import CharTokenizer
from .files import detect_format
from .tokenizer import BPETokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "load"]


def load(path: str | os.PathLike) -> BPETokenizer | CharTokenizer:
    """Load any tokenizer file: ours (BPE or char) or a ``.tiktoken`` rank file."""
    if detect_format(path) == "char":
        return CharTokenizer.load(path)
    return BPETokenizer.load(path)
