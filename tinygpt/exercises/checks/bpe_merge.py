"""Exercise 4 checks: count_pairs, merge and merge_step against tinygpt's BPE trainer."""

from __future__ import annotations

from collections import Counter

from tinygpt.exercises.grader import CheckFailed, check, expect_equal, function, rng
from tinygpt.tokenizer import bpe

TEXT = ("the cat sat on the mat; the rat sat on the hat. that is that, and then the cat "
        "ate the rat.")


def _random_ids(seed: int, n: int = 40, alphabet: int = 4) -> list[int]:
    return [int(i) for i in rng(seed).integers(0, alphabet, size=n)]


def _as_list(value, what: str) -> list[int]:
    if value is None:
        raise CheckFailed(f"{what} returned None: did you forget a return statement?")
    try:
        return [int(i) for i in value]
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} returned {type(value).__name__}, not a list of ids") from None


@check("count_pairs counts every adjacent pair",
       hint="walk over neighbours (ids[i], ids[i + 1]) for every i; a pair that appears "
            "three times counts 3 (zip(ids, ids[1:]) gives the neighbours)")
def counts_pairs(m):
    count_pairs = function(m, "count_pairs")
    for seed in range(3):
        ids = _random_ids(seed)
        got = count_pairs(list(ids))
        if not isinstance(got, dict):
            raise CheckFailed(f"count_pairs returned {type(got).__name__}, expected a dict")
        expect_equal(dict(got), dict(Counter(zip(ids, ids[1:]))), "count_pairs(ids)")
    for short in ([], [7]):
        expect_equal(dict(count_pairs(list(short))), {}, f"count_pairs({short})")


@check("merge replaces every occurrence, left to right",
       hint="scan with an index: where (ids[i], ids[i + 1]) is the pair, emit new_id and "
            "jump two places, else emit ids[i] and move one; [5, 5, 5] with the pair (5, 5) "
            "becomes [new_id, 5]")
def merges(m):
    merge = function(m, "merge")
    cases = [([5, 5, 5], (5, 5)), ([5, 5, 5, 5], (5, 5)), ([1, 2, 1, 2, 3], (1, 2)),
             ([1, 2], (2, 1)), ([], (1, 2))]
    cases += [(_random_ids(seed), (seed % 4, (seed + 1) % 4)) for seed in range(5)]
    for ids, pair in cases:
        got = _as_list(merge(list(ids), pair, 99), "merge")
        expect_equal(got, bpe.merge(ids, pair, 99), f"merge(ids, {pair}, 99)")


@check("merge leaves its input list unchanged",
       hint="build and return a new list instead of editing `ids` in place: the caller may "
            "still need the old one")
def merge_is_pure(m):
    ids = _random_ids(10)
    kept = list(ids)
    function(m, "merge")(ids, (ids[0], ids[1]), 99)
    expect_equal(ids, kept, "the list passed to merge")


@check("merge_step merges the most frequent pair (ties: the smallest pair)",
       hint="count the pairs, take the one with the highest count, and among equal counts "
            "the smallest (left, right) tuple, as tinygpt's trainer does; return the new ids "
            "and the pair")
def merge_step_picks(m):
    merge_step = function(m, "merge_step")
    for ids in ([1, 2, 3, 1, 2, 3, 3, 1], [4, 3, 4, 3, 1, 2, 1, 2], _random_ids(11)):
        result = merge_step(list(ids), 256)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise CheckFailed("merge_step must return a tuple (new_ids, pair)")
        expected_pair = bpe.train_merges({bytes(ids): 1}, 1)[0]
        expect_equal(tuple(result[1]), expected_pair, f"the pair merge_step chose for {ids}")
        expect_equal(_as_list(result[0], "merge_step"), bpe.merge(ids, expected_pair, 256),
                     f"the ids merge_step returned for {ids}")


@check("twenty merge steps on a sentence reproduce tinygpt's BPE trainer",
       hint="each step must work on the ids the previous step returned, and new ids count "
            "up from 256")
def reproduces_trainer(m):
    merge_step = function(m, "merge_step")
    ids = list(TEXT.encode("utf-8"))
    expected = bpe.train_merges({TEXT.encode("utf-8"): 1}, 20)
    for i, pair in enumerate(expected):
        ids, got = merge_step(ids, 256 + i)
        ids = _as_list(ids, "merge_step")
        if tuple(got) != pair:
            raise CheckFailed(f"merge {i + 1} of 20 chose a different pair than the trainer")


CHECKS = [counts_pairs, merges, merge_is_pure, merge_step_picks, reproduces_trainer]
