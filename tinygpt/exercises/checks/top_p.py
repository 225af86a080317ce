"""Exercise 8 checks: top_k_filter and top_p_filter against tinygpt's sampling code."""

from __future__ import annotations

import numpy as np

from tinygpt.exercises.grader import (
    CheckFailed,
    as_array,
    check,
    expect_close,
    expect_equal,
    function,
    rng,
)
from tinygpt.model import top_k_filter, top_p_filter


def _filter(m, name, logits, arg):
    original = logits.copy()
    got = as_array(function(m, name)(logits, arg), name)
    if not np.array_equal(logits, original):
        raise CheckFailed(f"{name} changed its input logits; return a new array")
    return got


def _kept(got: np.ndarray) -> np.ndarray:
    return np.isfinite(got)


@check("top_k_filter keeps the k largest logits of each row, -inf elsewhere",
       hint="find each row's k-th largest value (np.sort along the last axis) and replace "
            "everything below it by -inf; the kept logits keep their values and places")
def top_k(m):
    logits = rng(0).normal(size=(4, 20))
    for k in (1, 5, 19):
        expect_close(_filter(m, "top_k_filter", logits, k), top_k_filter(logits, k),
                     f"top_k_filter(logits, {k})")


@check("top_k_filter with k >= the vocabulary size keeps every logit",
       hint="k may be larger than the number of logits in a row: then nothing is cut (clamp "
            "k before you index with it)")
def top_k_large(m):
    logits = rng(3).normal(size=(2, 6))
    for k in (6, 50):
        expect_close(_filter(m, "top_k_filter", logits, k), logits, f"top_k_filter(logits, {k})")


@check("top_k_filter keeps ties with the k-th logit",
       hint="compare against the k-th largest value, not against positions: logits equal to "
            "it all stay, as in Hugging Face")
def top_k_ties(m):
    logits = np.array([[3.0, 1.0, 2.0, 2.0, 0.5], [1.0, 1.0, 1.0, 0.0, 1.0]])
    expect_close(_filter(m, "top_k_filter", logits, 2), top_k_filter(logits, 2),
                 "top_k_filter with tied logits")


def _probs_logits(probs) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64))[None, :]


@check("top_p_filter keeps the token that makes the total reach p",
       hint="sort by probability, then keep tokens while the mass *before* a token is below "
            "p: the token that crosses p is part of the nucleus")
def keeps_crossing_token(m):
    logits = _probs_logits([0.05, 0.5, 0.15, 0.3])
    # p=0.5 exactly: the top token's mass reaches p, so it alone is the nucleus (the mass
    # before the next token is 0.5, not below p: `before > p` would keep two)
    for p, n_kept in ((0.75, 2), (0.85, 3), (0.4, 1), (0.51, 2), (0.5, 1)):
        kept = _kept(_filter(m, "top_p_filter", logits, p))
        if kept.shape != logits.shape or int(kept.sum()) != n_kept:
            raise CheckFailed(f"with probabilities [0.05, 0.5, 0.15, 0.3] and p={p}, it kept "
                              f"{int(kept.sum())} token(s)")
        expect_equal(kept, np.isfinite(top_p_filter(logits, p)),
                     f"the set of tokens kept for p={p}")


@check("top_p_filter always keeps the most likely token",
       hint="even when p is tiny, the nucleus holds at least one token, or there is nothing "
            "to sample from")
def keeps_top_token(m):
    logits = rng(1).normal(size=(3, 30))
    kept = _kept(_filter(m, "top_p_filter", logits, 1e-4))
    for row, best in enumerate(logits.argmax(axis=-1)):
        if kept.shape != logits.shape or not kept[row, best]:
            raise CheckFailed(f"with p=1e-4 the most likely token of row {row} was dropped")
    expect_equal(kept, np.isfinite(top_p_filter(logits, 1e-4)), "the tokens kept for p=1e-4")


@check("top_p_filter matches tinygpt on random rows",
       hint="work on each row separately (axis=-1); put -inf back at the original positions "
            "of the dropped tokens, not at the sorted ones")
def top_p_random(m):
    logits = rng(2).normal(size=(5, 40)) * 2
    for p in (0.1, 0.5, 0.9):
        expect_close(_filter(m, "top_p_filter", logits, p), top_p_filter(logits, p),
                     f"top_p_filter(logits, {p})")


@check("top_p_filter works for large logits (softmax without overflow)",
       hint="exp(1000) overflows: subtract each row's largest logit before exp, as a stable "
            "softmax does (it changes no probability)")
def top_p_large_logits(m):
    logits = np.array([[1000.0, 999.0, 998.0, 990.0], [-1000.0, -1001.0, -1003.0, -1010.0]])
    with np.errstate(all="ignore"):  # the student's overflow shows up as a wrong answer
        got = _filter(m, "top_p_filter", logits, 0.5)
    expect_close(got, top_p_filter(logits, 0.5), "top_p_filter(logits near +-1000, 0.5)")


CHECKS = [top_k, top_k_large, top_k_ties, keeps_crossing_token, keeps_top_token, top_p_random,
          top_p_large_logits]
