"""Exercise 10 checks: kv_append and kv_trim, and decoding with them against full attention."""

from __future__ import annotations

import numpy as np

from tinygpt.exercises.grader import (
    CheckFailed,
    as_array,
    check,
    expect_close,
    expect_shape,
    function,
    rng,
)
from tinygpt.kernels.reference import attention_forward


def _append(m, past, new):
    return as_array(function(m, "kv_append")(None if past is None else past.copy(), new.copy()),
                    "kv_append")


def _trim(m, cache, keep):
    return as_array(function(m, "kv_trim")(cache.copy(), keep), "kv_trim")


@check("kv_append(None, new) starts the cache with new",
       hint="the first step has no past: the cache is just this step's keys (or values)")
def starts_empty(m):
    new = rng(0).normal(size=(2, 3, 4, 5))
    expect_close(_append(m, None, new), new, "kv_append(None, new)")


@check("kv_append adds the new positions after the old ones, on the sequence axis",
       hint="keys are (B, H, S, D): positions run along axis 2; old positions first, new last")
def appends(m):
    g = rng(1)
    past, new = g.normal(size=(2, 3, 5, 4)), g.normal(size=(2, 3, 2, 4))
    got = _append(m, past, new)
    expect_shape(got, (2, 3, 7, 4), "kv_append(past (2,3,5,4), new (2,3,2,4))")
    expect_close(got, np.concatenate([past, new], axis=2), "kv_append(past, new)")


@check("kv_trim keeps the most recent `keep` positions",
       hint="a local layer only needs the last `keep` keys: slice the end of axis 2; when the "
            "cache is shorter than `keep`, keep all of it")
def trims(m):
    cache = rng(2).normal(size=(1, 2, 6, 3))
    for keep in (1, 4, 6, 10):
        expect_close(_trim(m, cache, keep), cache[:, :, -keep:], f"kv_trim(cache, {keep})")


def _decode(m, q, k, v, window):
    """One token at a time with the student's cache; returns outputs and the largest cache."""
    cache_k = cache_v = None
    outs, largest = [], 0
    for t in range(q.shape[2]):
        keys = _append(m, cache_k, k[:, :, t:t + 1])
        values = _append(m, cache_v, v[:, :, t:t + 1])
        expect_shape(keys, (1, 2, keys.shape[2], 4), "the keys kv_append returned")
        out, _, _ = attention_forward(q[:, :, t:t + 1], keys, values, causal=True,
                                      window=window)
        outs.append(out)
        cache_k, cache_v = keys, values
        if window is not None:
            cache_k, cache_v = _trim(m, keys, window), _trim(m, values, window)
        largest = max(largest, cache_k.shape[2])
    return np.concatenate(outs, axis=2), largest


def _qkv(seed: int, T: int = 9):
    g = rng(seed)
    return (g.normal(size=(1, 2, T, 4)) for _ in range(3))


@check("decoding token by token with your cache equals full causal attention",
       hint="at step t the cache must hold the keys and values of positions 0..t in order, "
            "so the newest query can see all of them")
def decodes_global(m):
    q, k, v = _qkv(3)
    got, _ = _decode(m, q, k, v, None)
    expected, _, _ = attention_forward(q, k, v, causal=True)
    expect_close(got, expected, "the outputs of incremental decoding")


@check("a local layer's trimmed cache gives the same outputs, in bounded memory",
       hint="after each step keep only the last `window` positions (kv_trim(cache, window)): "
            "the next query sees them plus its own key, and the window mask picks the "
            "`window` it may use; the cache never grows past the window")
def decodes_local(m):
    q, k, v = _qkv(4, T=10)
    got, largest = _decode(m, q, k, v, 3)
    expected, _, _ = attention_forward(q, k, v, causal=True, window=3)
    expect_close(got, expected, "the outputs of local-window decoding")
    if largest > 3:
        raise CheckFailed(f"the cache grew to {largest} positions with a window of 3")


CHECKS = [starts_empty, appends, trims, decodes_global, decodes_local]
