"""Exercise 6 checks: local_window_mask against tinygpt's attention masks."""

from __future__ import annotations

import numpy as np

from tinygpt.exercises.grader import (
    CheckFailed,
    as_array,
    check,
    expect_equal,
    expect_shape,
    function,
)
from tinygpt.kernels.reference import allowed_keys


def _mask(m, *args) -> np.ndarray:
    got = as_array(function(m, "local_window_mask")(*args), "local_window_mask")
    if got.dtype != bool:
        raise CheckFailed(f"local_window_mask returned dtype {got.dtype}; return booleans "
                          f"(True = may attend)")
    return got


@check("local_window_mask(T, window) is a (T, T) boolean array",
       hint="return a NumPy array of dtype bool, True where query i may look at key j")
def mask_type(m):
    expect_shape(_mask(m, 5, 2), (5, 5), "local_window_mask(5, 2)")


@check("window=1: every query sees only itself",
       hint="a window of w keys is the query's own position and the w - 1 before it")
def window_of_one(m):
    expect_equal(_mask(m, 6, 1), np.eye(6, dtype=bool), "local_window_mask(6, 1)")


@check("matches tinygpt's local attention for every T <= 8 and window",
       hint="the mask is causal (j <= i) *and* local (j > i - window): count how many keys "
            "each row allows, it must be min(i + 1, window)")
def all_sizes(m):
    for T in range(1, 9):
        for window in range(1, T + 2):
            expect_equal(_mask(m, T, window), allowed_keys(T, T, True, window, np),
                         f"local_window_mask({T}, {window})")


@check("a window as long as the sequence is the causal mask",
       hint="when window >= T nothing is cut off: the mask must equal the causal one")
def wide_window(m):
    for window in (8, 9, 100):
        expect_equal(_mask(m, 8, window), allowed_keys(8, 8, True, None, np),
                     f"local_window_mask(8, {window})")


@check("with a KV cache (S keys > T queries) the queries are the last T positions",
       hint="query i sits at position S - T + i; the window counts back from there")
def with_cache(m):
    for T, S, window in ((1, 9, 3), (2, 7, 4), (3, 10, 2)):
        expect_equal(_mask(m, T, window, S), allowed_keys(T, S, True, window, np),
                     f"local_window_mask({T}, {window}, {S})")


@check("a window below 1 is a ValueError",
       hint="a window of 0 keys would leave a query nothing to attend to: raise ValueError "
            "and name the bad value in the message")
def rejects_bad_window(m):
    fn = function(m, "local_window_mask")
    for window in (0, -3):
        try:
            fn(4, window)
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as e:
            raise CheckFailed(f"local_window_mask(4, {window}) raised {type(e).__name__}, "
                              f"not ValueError") from e
        raise CheckFailed(f"local_window_mask(4, {window}) did not raise")


CHECKS = [mask_type, window_of_one, all_sizes, wide_window, with_cache, rejects_bad_window]
