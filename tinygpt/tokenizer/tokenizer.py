"""BPETokenizer: a byte-level BPE vocabulary plus special tokens, with tiktoken's semantics.

A tokenizer is three things, the same three a ``tiktoken.Encoding`` holds:
- ``mergeable_ranks``: token bytes -> rank. The 256 single bytes are tokens, and a token's
  id is its rank, so a lower rank is merged earlier;
- ``pattern``: the regex that cuts text into chunks before BPE (``patterns.py``);
- ``special_tokens``: strings such as "<|endoftext|>" that map to one id and are never split.

Encoding cuts the text into chunks, encodes each distinct chunk once (``bpe.encode_chunk``,
or its numba twin in ``fast.py``) and caches it: natural text repeats its words, so most
chunks are cache hits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import chain
from typing import Literal

import numpy as np
import regex

from . import bpe, files
from .patterns import GPT2_PATTERN, GPT4_PATTERN, PATTERNS, findall, resolve_pattern

SpecialSet = Literal["all", "none"] | Collection[str]

CACHE_SIZE = 1 << 19  # chunks kept in the encode cache; it is emptied when full


def _splitter(pattern: str, fast: bool) -> Callable[[str], list[str]]:
    """text -> chunks for ``pattern``: the regex, or on the fast path for GPT-2's or GPT-4's
    pattern the numba scan of split.py, which gives the same chunks."""
    if fast and pattern in (GPT2_PATTERN, GPT4_PATTERN):
        from .split import gpt2_split, gpt4_split

        return gpt2_split if pattern == GPT2_PATTERN else gpt4_split
    return findall(pattern)


def _use_fast() -> bool:
    # TINYGPT_KERNELS=numpy selects the readable reference code everywhere in tinygpt
    return os.environ.get("TINYGPT_KERNELS", "").lower() != "numpy"


class BPETokenizer:
    """Byte-level BPE tokenizer: ``train`` one, or load GPT-2's, then ``encode``/``decode``."""

    def __init__(
        self,
        mergeable_ranks: dict[bytes, int],
        pattern: str = "gpt2",
        special_tokens: dict[str, int] | None = None,
        fast: bool | None = None,
    ):
        """Build from ranks (tiktoken's shape). ``fast=False`` encodes with the readable code."""
        special_tokens = dict(special_tokens or {})
        _check_ranks(mergeable_ranks)
        _check_special_tokens(special_tokens, len(mergeable_ranks))
        self.mergeable_ranks = dict(mergeable_ranks)
        self.pattern = resolve_pattern(pattern)
        self.special_tokens = special_tokens
        self.fast = _use_fast() if fast is None else fast
        self._split = regex.compile(self.pattern)
        self._split_text = _splitter(self.pattern, self.fast)
        self._decoder = {rank: token for token, rank in self.mergeable_ranks.items()}
        self._decoder.update({i: s.encode("utf-8") for s, i in special_tokens.items()})
        self._vocab_size = max(self._decoder) + 1
        self._cache: dict[str, tuple[int, ...]] = {}
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # for fast.py

    # --- training -------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str = "gpt2",
        special_tokens: Sequence[str] = (),
        verbose: bool = False,
        fast: bool | None = None,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Each merge takes the most frequent adjacent pair (counted inside regex chunks, never
        across them); ties go to the smallest (left_id, right_id), so training is
        deterministic. Special tokens get the ids after the merges, and their strings are
        cut out of the training text first (BPE never learns pieces of them).
        ``verbose`` shows a progress bar. ``fast=False`` uses the readable trainer (same
        merges, much slower). Raises ValueError if the text runs out of pairs before
        ``vocab_size`` is reached, saying how many merges it got.
        """
        if isinstance(special_tokens, str):  # list("<eos>") would be five special tokens
            raise TypeError(f"special_tokens must be a list of strings, e.g. "
                            f"[{special_tokens!r}], not one string")
        special_tokens = list(special_tokens)
        if len(set(special_tokens)) != len(special_tokens) or not all(
            isinstance(s, str) and s for s in special_tokens
        ):
            raise ValueError(f"special_tokens must be distinct non-empty strings: {special_tokens}")
        if isinstance(vocab_size, np.integer):
            vocab_size = int(vocab_size)
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size must be an integer, got {vocab_size!r}")
        if vocab_size < 256 + len(special_tokens):
            raise ValueError(
                f"vocab_size={vocab_size!r} is too small: it needs at least 256 byte tokens "
                f"+ {len(special_tokens)} special tokens = {256 + len(special_tokens)}"
            )
        pattern = resolve_pattern(pattern)
        num_merges = vocab_size - 256 - len(special_tokens)

        # split() keeps the special tokens at odd positions: train on the text between them
        text = _valid_unicode(text)
        if special_tokens:
            pieces = _special_regex(frozenset(special_tokens)).split(text)[::2]
        else:
            pieces = [text]
        fast = _use_fast() if fast is None else fast
        chunk_counts = bpe.count_chunks(pieces, pattern, _splitter(pattern, fast))
        if fast:
            from . import fast as fast_bpe  # numba compiles (or loads its cache) on first use

            train_merges = fast_bpe.train_merges
        else:
            train_merges = bpe.train_merges
        with _progress_bar(num_merges, verbose) as progress:
            merges = train_merges(chunk_counts, num_merges, progress=progress)

        if len(merges) < num_merges:
            raise ValueError(
                f"the text runs out of pairs to merge after {len(merges)} merges (vocab size "
                f"{256 + len(merges) + len(special_tokens)}), short of vocab_size={vocab_size}: "
                "train on more text or ask for a smaller vocab_size"
            )
        ranks = ranks_from_merges(merges)
        specials = {s: len(ranks) + i for i, s in enumerate(special_tokens)}
        return cls(ranks, pattern, specials, fast=fast)

    # --- encoding -------------------------------------------------------------------------

    def encode(
        self,
        text: str,
        allowed_special: SpecialSet = "none",
        disallowed_special: SpecialSet = "all",
    ) -> list[int]:
        """Text -> token ids, with tiktoken's rules for special tokens.

        A special token's string becomes its id only if ``allowed_special`` lets it
        ("all" or a set). Otherwise, if ``disallowed_special`` covers it ("all", the default,
        means every special token not allowed), ValueError; pass ``disallowed_special=()``
        to encode such strings as ordinary text.
        """
        if not isinstance(text, str):  # before the special-token search trips over it
            raise TypeError(f"encode: expected a str, got {type(text).__name__}")
        allowed = self._special_set(allowed_special, "allowed_special")
        if disallowed_special == "all":
            disallowed = set(self.special_tokens) - allowed
        else:
            disallowed = self._special_set(disallowed_special, "disallowed_special")
        if disallowed and (match := _special_regex(frozenset(disallowed)).search(text)):
            raise ValueError(
                f"the text contains the special token {match.group()!r} at character "
                f"{match.start()}; pass allowed_special={{{match.group()!r}}} (or 'all') to "
                "encode it as its id, or disallowed_special=() to encode it as plain text"
            )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        # split keeps the matched special tokens (odd positions) between the text pieces
        for i, piece in enumerate(_special_regex(frozenset(allowed)).split(text)):
            if i % 2:
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self.encode_ordinary(piece))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Text -> ids, treating special-token strings as plain text."""
        chunks = self._split_text(_valid_unicode(text))
        cache = self._cache
        try:  # the common case once the cache is warm: every chunk is known
            return list(chain.from_iterable(map(cache.__getitem__, chunks)))
        except KeyError:
            pass
        missing = set(chunks).difference(cache)
        if len(cache) + len(missing) > CACHE_SIZE:
            cache.clear()
            missing = set(chunks)
        self._encode_chunks(missing)
        return list(chain.from_iterable(map(cache.__getitem__, chunks)))

    def encode_batch(
        self,
        texts: Iterable[str],
        allowed_special: SpecialSet = "none",
        disallowed_special: SpecialSet = "all",
    ) -> list[list[int]]:
        """``encode`` for each text."""
        return [self.encode(t, allowed_special, disallowed_special) for t in texts]

    def _encode_chunks(self, chunks: Iterable[str]) -> None:
        """BPE-encode chunks that are not in the cache yet, and cache them."""
        if not self.fast:
            for chunk in chunks:
                ids = bpe.encode_chunk(chunk.encode("utf-8"), self.mergeable_ranks)
                self._cache[chunk] = tuple(ids)
            return
        from . import fast as fast_bpe

        if self._tables is None:
            byte_ids = np.array([self.mergeable_ranks[bytes([b])] for b in range(256)], np.int32)
            self._tables = (byte_ids, *fast_bpe.build_merge_table(self.mergeable_ranks))
        chunks = list(chunks)
        encoded = [chunk.encode("utf-8") for chunk in chunks]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        ids, ends = fast_bpe.encode_chunks(data, offsets, *self._tables)
        ids, ends = ids.tolist(), ends.tolist()
        start = 0
        for chunk, end in zip(chunks, ends):
            self._cache[chunk] = tuple(ids[start:end])
            start = end

    # --- decoding -------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Token ids -> the bytes they stand for."""
        ids = list(ids)
        try:
            out = b"".join(map(self._decoder.__getitem__, ids))
            # 3.0 would find id 3 (an equal hash): ids are ints, as tiktoken's
            if all(_int_type(t) for t in set(map(type, ids))):
                return out
        except (KeyError, TypeError):
            pass
        position, bad = next((p, i) for p, i in enumerate(ids)
                             if not (_int_type(type(i)) and self._is_id(i)))
        if not _int_type(type(bad)):
            raise ValueError(f"token id {bad!r} at position {position} is not an int "
                             f"({type(bad).__name__})")
        raise ValueError(f"unknown token id {bad!r} at position {position}; this tokenizer has "
                         f"{self._id_ranges()}")

    def _id_ranges(self) -> str:
        """'ids 0..N', or the ranks' range and the special ids where they leave a gap."""
        n = len(self.mergeable_ranks)
        specials = sorted(self.special_tokens.values())
        if specials and specials != list(range(n, n + len(specials))):
            shown = ", ".join(map(str, specials[:8])) + (", ..." if len(specials) > 8 else "")
            return f"ids 0..{n - 1} and the special ids {shown}"
        return f"ids 0..{self.vocab_size - 1}"

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Token ids -> text. Bytes that are not valid UTF-8 become U+FFFD (as tiktoken)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def decode_tokens_bytes(self, ids: Iterable[int]) -> list[bytes]:
        """Each token's bytes, e.g. to show where the token boundaries fall."""
        return [self.id_to_token(i) for i in ids]

    # --- vocabulary -----------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (ranks and special tokens), like tiktoken's n_vocab."""
        return self._vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    def id_to_token(self, token_id: int) -> bytes:
        """The bytes of one token (a special token's UTF-8 string)."""
        try:
            return self._decoder[token_id]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown token id {token_id!r}; this tokenizer has ids 0..{self.vocab_size - 1}"
            ) from None

    def token_to_id(self, token: bytes | str) -> int:
        """The id of a token given as bytes, or as a str (UTF-8; special tokens by name)."""
        if isinstance(token, str):
            if token in self.special_tokens:
                return self.special_tokens[token]
            token = token.encode("utf-8")
        try:
            return self.mergeable_ranks[token]
        except (KeyError, TypeError):
            raise ValueError(f"{token!r} is not a token of this tokenizer") from None

    def _is_id(self, token_id) -> bool:
        try:
            return token_id in self._decoder
        except TypeError:  # unhashable, e.g. a list
            return False

    def _special_set(self, value: SpecialSet, name: str) -> set[str]:
        if value == "all":
            return set(self.special_tokens)
        if value == "none":
            return set()
        if isinstance(value, str) or not isinstance(value, (set, frozenset, list, tuple)):
            raise ValueError(f"{name} must be 'all', 'none' or a set of strings, got {value!r}")
        unknown = set(value) - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"{name} names {sorted(unknown)}, which are not special tokens of this tokenizer "
                f"(it has {sorted(self.special_tokens)})"
            )
        return set(value)

    def __repr__(self) -> str:
        name = next((k for k, v in PATTERNS.items() if v == self.pattern), "custom")
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, pattern={name!r}, "
            f"special_tokens={self.special_tokens})"
        )

    # --- files ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write our text format (see ``files.py``): pattern, special tokens, ranks."""
        files.save_bpe(path, self.mergeable_ranks, self.pattern, self.special_tokens)

    @classmethod
    def load(cls, path: str | os.PathLike, fast: bool | None = None) -> BPETokenizer:
        """Read a file written by ``save``; a ``.tiktoken`` rank file also works (as GPT-2)."""
        kind = files.detect_format(path)
        if kind == "tiktoken":
            return cls.from_tiktoken(path, fast=fast)
        if kind == "char":
            raise ValueError(
                f"{os.fspath(path)} holds a CharTokenizer; load it with CharTokenizer.load or "
                "tinygpt.tokenizer.load"
            )
        ranks, pattern, specials = files.load_bpe(path)
        return cls._from_file(path, ranks, pattern, specials, fast)

    @classmethod
    def from_tiktoken(
        cls,
        path: str | os.PathLike,
        pattern: str = "gpt2",
        special_tokens: dict[str, int] | None = None,
        fast: bool | None = None,
    ) -> BPETokenizer:
        """Load a ``.tiktoken`` rank file. ``special_tokens`` defaults to
        {"<|endoftext|>": number of ranks}, which is GPT-2's 50256 for GPT-2's ranks."""
        ranks = files.load_tiktoken(path)
        if special_tokens is None:
            special_tokens = {"<|endoftext|>": len(ranks)}
        return cls._from_file(path, ranks, pattern, special_tokens, fast)

    @classmethod
    def from_gpt2_files(
        cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike, fast: bool | None = None
    ) -> BPETokenizer:
        """Load GPT-2's Hugging Face/OpenAI files (``encoder.json``/``vocab.json`` and
        ``vocab.bpe``/``merges.txt``), with GPT-2's pattern."""
        ranks, specials = files.load_gpt2_files(encoder_json, vocab_bpe)
        return cls._from_file(encoder_json, ranks, "gpt2", specials, fast)

    @classmethod
    def _from_file(cls, path, ranks, pattern, specials, fast) -> BPETokenizer:
        try:
            return cls(ranks, pattern, specials, fast=fast)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e


def ranks_from_merges(merges: Sequence[tuple[int, int]]) -> dict[bytes, int]:
    """The 256 bytes, then merge i's token (bytes of left + bytes of right) with rank 256 + i."""
    vocab = [bytes([b]) for b in range(256)]
    for left, right in merges:
        vocab.append(vocab[left] + vocab[right])
    ranks = {token: rank for rank, token in enumerate(vocab)}
    if len(ranks) != len(vocab):
        # cannot happen in greedy training as far as we know; a rank table could not hold it
        raise RuntimeError("two merges produced the same token bytes")
    return ranks


def _check_ranks(ranks: dict[bytes, int]) -> None:
    """Ranks must be 0..n-1 (ids are ranks) and include every single byte."""
    if sorted(ranks.values()) != list(range(len(ranks))):
        bad = sorted(set(ranks.values()) ^ set(range(len(ranks))))[:5]
        raise ValueError(
            f"ranks must be distinct and exactly 0..{len(ranks) - 1} (ids are ranks); "
            f"out of place: {bad}"
        )
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(
            f"byte-level BPE needs a token for each of the 256 bytes; missing {len(missing)}, "
            f"e.g. byte {missing[0]}"
        )


def _check_special_tokens(special_tokens: dict[str, int], num_ranks: int) -> None:
    ids = list(special_tokens.values())
    for token, i in special_tokens.items():
        if not isinstance(token, str) or not token:
            raise ValueError(f"special token {token!r} must be a non-empty string")
        try:
            token.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"special token {token!r} is not valid Unicode (a lone "
                             f"surrogate has no UTF-8 bytes)") from None
        if not isinstance(i, int) or i < num_ranks:
            raise ValueError(
                f"special token {token!r} has id {i!r}; special ids must be ints >= {num_ranks} "
                "(after the ranks)"
            )
    if len(set(ids)) != len(ids):
        raise ValueError(f"special tokens share ids: {special_tokens}")


def _int_type(t: type) -> bool:
    """Whether values of type ``t`` may be token ids: ints (NumPy's and bools too, as
    tiktoken takes them), not floats (3.0 == 3 would find id 3; tiktoken refuses it)."""
    return issubclass(t, (int, np.integer))


def _valid_unicode(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (as tiktoken does): they have no UTF-8."""
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


@lru_cache(maxsize=64)
def _special_regex(tokens: frozenset[str]) -> regex.Pattern:
    # longest first, so a special token that is a prefix of another does not win
    alternatives = sorted(tokens, key=lambda t: (-len(t), t))
    return regex.compile("(" + "|".join(regex.escape(t) for t in alternatives) + ")")


@contextmanager
def _progress_bar(total: int, verbose: bool) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar fed by ``progress(done)`` calls, or None when not ``verbose``."""
    if not verbose:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc="BPE merges", unit="merge") as bar:
        yield lambda done: bar.update(done - bar.n)
