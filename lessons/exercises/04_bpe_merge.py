"""Exercise 4: a BPE merge step (lesson 3, lessons/03_tokenizer.py).

Byte-pair encoding starts from the bytes of the text (ids 0..255) and repeatedly merges
the most frequent adjacent pair into a new token. Write the three pieces of one step:
count the pairs, merge one pair everywhere, and a step that does both. On a tie between
equally frequent pairs, pick the smallest (left, right) pair, as tinygpt's trainer does.

Check your work with:  tinygpt exercises check 4
"""


def count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair (ids[i], ids[i + 1]) occurs."""
    raise NotImplementedError("count_pairs (exercise 4; see lesson 3)")


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """A new list where each occurrence of ``pair`` (scanning left to right) is ``new_id``."""
    raise NotImplementedError("merge (exercise 4; see lesson 3)")


def merge_step(ids: list[int], new_id: int) -> tuple[list[int], tuple[int, int]]:
    """Merge the most frequent pair into ``new_id``; return the new ids and that pair."""
    raise NotImplementedError("merge_step (exercise 4; see lesson 3)")
