"""Exercise 4, reference solution: a BPE merge step."""

from collections import Counter


def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair (ids[i], ids[i + 1]) occurs."""
    return dict(Counter(zip(ids, ids[1:])))


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """A new list where each occurrence of ``pair`` (scanning left to right) is ``new_id``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2  # both halves are used up: "aaa" -> ["aa", "a"]
        else:
            out.append(ids[i])
            i += 1
    return out


def merge_step(ids: list[int], new_id: int) -> tuple[list[int], tuple[int, int]]:
    """Merge the most frequent pair into ``new_id``; return the new ids and that pair."""
    counts = count_pairs(ids)
    pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))  # ties: smallest pair
    return merge(ids, pair, new_id), pair
