"""Exercise 5 checks: causal_mask and masked_softmax against tinygpt's attention."""

from __future__ import annotations

import numpy as np

from tinygpt.exercises.grader import (
    CheckFailed,
    as_array,
    check,
    expect_close,
    expect_equal,
    expect_shape,
    function,
    rng,
)
from tinygpt.kernels.reference import allowed_keys, attention_forward, softmax_forward


def _mask(m, *args) -> np.ndarray:
    got = as_array(function(m, "causal_mask")(*args), "causal_mask")
    if got.dtype != bool:
        raise CheckFailed(f"causal_mask returned dtype {got.dtype}; return booleans "
                          f"(True = may attend)")
    return got


@check("causal_mask(T) is a (T, T) boolean array",
       hint="return a NumPy array of dtype bool, True where query i may look at key j")
def mask_type(m):
    expect_shape(_mask(m, 4), (4, 4), "causal_mask(4)")


@check("query i sees keys 0..i, never the future",
       hint="a query at position i may use keys j <= i (itself included); np.tril or a "
            "comparison of two aranges builds that")
def mask_values(m):
    for T in range(1, 9):
        expect_equal(_mask(m, T), allowed_keys(T, T, True, None, np), f"causal_mask({T})")


@check("with a KV cache (S keys > T queries) the queries are the last T positions",
       hint="the T new queries sit at positions S - T .. S - 1, so query i sees keys "
            "j <= S - T + i")
def mask_with_cache(m):
    for T, S in ((1, 5), (2, 6), (3, 3), (4, 9)):
        expect_equal(_mask(m, T, S), allowed_keys(T, S, True, None, np),
                     f"causal_mask({T}, {S})")


def _scores(seed: int, scale: float = 1.0):
    g = rng(seed)
    scores = g.normal(size=(2, 3, 5, 7)) * scale
    mask = g.random((5, 7)) < 0.6
    mask[np.arange(5), g.integers(0, 7, 5)] = True  # every query keeps at least one key
    return scores, mask


def _softmax(m, scores, mask):
    return as_array(function(m, "masked_softmax")(scores.copy(), mask.copy()), "masked_softmax")


@check("masked_softmax gives masked keys exactly 0 and each row sums to 1",
       hint="set the scores of masked keys to -inf before the softmax: exp(-inf) is exactly 0 "
            "(multiplying by the mask afterwards leaves rows that do not sum to 1)")
def softmax_zeros(m):
    scores, mask = _scores(0)
    p = _softmax(m, scores, mask)
    expect_shape(p, scores.shape, "masked_softmax(scores, mask)")
    if np.any(p[..., ~mask] != 0):
        raise CheckFailed("some masked keys have a nonzero weight")
    expect_close(p.sum(axis=-1), np.ones(scores.shape[:-1]), "the row sums")


@check("masked_softmax matches tinygpt's attention weights",
       hint="the mask (T, S) broadcasts against scores (B, H, T, S); the softmax runs over "
            "the last axis (the keys)")
def softmax_matches(m):
    scores, mask = _scores(1)
    expected = softmax_forward(np.where(mask, scores, -np.inf))
    expect_close(_softmax(m, scores, mask), expected, "masked_softmax(scores, mask)")


@check("masked_softmax stays finite for scores around 1000",
       hint="subtract each row's largest allowed score before exp(); np.max over a row "
            "that contains -inf still works")
def softmax_stable(m):
    scores, mask = _scores(2, scale=1000.0)
    expected = softmax_forward(np.where(mask, scores, -np.inf))
    expect_close(_softmax(m, scores, mask), expected, "masked_softmax with large scores")


@check("softmax(q k^T / sqrt(D)) v with your mask is causal attention",
       hint="both functions together must reproduce attention; check the mask's orientation "
            "(rows are queries, columns are keys)")
def full_attention(m):
    g = rng(3)
    q, k, v = (g.normal(size=(1, 2, 6, 4)) for _ in range(3))
    p = _softmax(m, q @ k.transpose(0, 1, 3, 2) / 2.0, _mask(m, 6))
    expected, _, _ = attention_forward(q, k, v, causal=True)
    expect_close(p @ v, expected, "attention output")


CHECKS = [mask_type, mask_values, mask_with_cache, softmax_zeros, softmax_matches,
          softmax_stable, full_attention]
