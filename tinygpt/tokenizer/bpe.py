"""Byte-level BPE, the readable version: train merges, then encode a chunk with ranks.

Training (the teaching version, as in minbpe): split the text into chunks with the regex
pattern, start every chunk as its UTF-8 bytes (token ids 0..255), then repeat:
count adjacent pairs over all chunks, merge the most frequent pair into a new token.
Chunks are counted once, so "the" seen 10,000 times is one word with weight 10,000.

Tie-break (documented, and shared with the fast trainer in ``fast.py``): the most frequent
pair wins; among equally frequent pairs, the smallest (left_id, right_id).

Encoding works like tiktoken: the vocabulary is ``mergeable_ranks`` (token bytes -> rank,
and a token's id is its rank). A chunk starts as single bytes; we repeatedly merge the
adjacent pair whose merged bytes have the lowest rank (leftmost on ties) until no adjacent
pair forms a token. For a vocabulary trained here this replays the merges in training order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from .patterns import findall

Pair = tuple[int, int]


def count_chunks(texts: str | Iterable[str], pattern: str,
                 split: Callable[[str], list[str]] | None = None) -> dict[bytes, int]:
    """How often each regex chunk occurs in the text(s), as UTF-8 bytes. ``split`` (text ->
    chunks) may stand in for the regex when it gives the same chunks (split.gpt2_split)."""
    split = split or findall(pattern)
    counts: Counter[str] = Counter()
    for text in [texts] if isinstance(texts, str) else texts:
        counts.update(split(text))
    return {chunk.encode("utf-8"): n for chunk, n in counts.items()}


def count_pairs(words: list[list[int]], weights: list[int]) -> Counter[Pair]:
    """Weighted count of adjacent token pairs over all words."""
    counts: Counter[Pair] = Counter()
    for word, weight in zip(words, weights):
        for pair in zip(word, word[1:]):
            counts[pair] += weight
    return counts


def merge(word: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``word`` (left to right) by ``new_id``."""
    out = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def train_merges(
    chunk_counts: dict[bytes, int],
    num_merges: int,
    progress: Callable[[int], None] | None = None,
) -> list[Pair]:
    """Learn up to ``num_merges`` merges; merge i creates token id 256 + i.

    Returns fewer merges when no adjacent pair is left (every chunk is a single token).
    ``progress(done)`` is called after each merge with the number of merges done so far.
    """
    words = [list(chunk) for chunk in chunk_counts]
    weights = list(chunk_counts.values())
    merges: list[Pair] = []
    for i in range(num_merges):
        counts = count_pairs(words, weights)
        if not counts:
            break
        # most frequent first; on a tie the smallest (left, right) wins
        pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        words = [merge(word, pair, 256 + i) if len(word) > 1 else word for word in words]
        merges.append(pair)
        if progress is not None:
            progress(i + 1)
    return merges


def encode_chunk(chunk: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Encode one chunk: merge the lowest-ranked adjacent pair until none forms a token."""
    parts = [chunk[i : i + 1] for i in range(len(chunk))]
    while len(parts) > 1:
        best_rank, best_i = None, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best_i = rank, i
        if best_rank is None:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return [ranks[part] for part in parts]
