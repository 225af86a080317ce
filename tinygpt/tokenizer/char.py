"""CharTokenizer: one token per character, the tokenizer of the first lessons.

The vocabulary is the sorted set of characters of the training text (nanoGPT's
"shakespeare_char"), so ids are stable for a given text. It has the same encode/decode/
save/load/vocab_size API as BPETokenizer, which makes the two interchangeable in the data
module and in lessons.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

FORMAT = "tinygpt-char"


class CharTokenizer:
    """Character-level tokenizer: id i is the i-th character of ``chars``."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError(
                f"chars must be a non-empty list of single characters, got {chars[:10]!r}"
            )
        if len(set(chars)) != len(chars):
            raise ValueError("chars must not repeat a character")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The vocabulary of ``text``: its distinct characters, sorted."""
        if not text:
            raise ValueError("cannot build a character vocabulary from an empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Text -> ids; a character outside the vocabulary is a ValueError."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            position = next(i for i, c in enumerate(text) if c not in self.stoi)
            raise ValueError(
                f"character {e.args[0]!r} at position {position} is not in the vocabulary "
                f"({self.vocab_size} characters)"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; an id outside 0..vocab_size-1 is a ValueError."""
        out = []
        for position, i in enumerate(ids):
            if not 0 <= i < self.vocab_size or int(i) != i:
                raise ValueError(
                    f"unknown token id {i!r} at position {position}; "
                    f"ids are 0..{self.vocab_size - 1}"
                )
            out.append(self.chars[int(i)])
        return "".join(out)

    def save(self, path: str | os.PathLike) -> None:
        """A small JSON file: the format name and the characters in id order."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "version": 1, "chars": self.chars}, f, ensure_ascii=False)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        with open(path, encoding="utf-8-sig") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{os.fspath(path)}, line {e.lineno}: {e.msg}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{os.fspath(path)}: not a {FORMAT} file")
        try:
            return cls(data["chars"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{os.fspath(path)}: bad 'chars': {e}") from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
