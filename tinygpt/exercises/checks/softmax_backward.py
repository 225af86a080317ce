"""Exercise 1 checks: softmax_backward(y, dy) vs the reference kernel and finite differences."""

from __future__ import annotations

import numpy as np

from tinygpt.exercises.grader import as_array, check, expect_close, expect_shape, function, rng
from tinygpt.kernels.reference import softmax_backward, softmax_forward


def _inputs(seed: int, shape: tuple):
    g = rng(seed)
    x = g.normal(size=shape) * 2
    return softmax_forward(x), g.normal(size=shape), x


def _student(m, y, dy):
    """The student's gradient, given copies: a solution that works in place is fine."""
    return function(m, "softmax_backward")(y.copy(), dy.copy())


@check("returns an array shaped like dy",
       hint="the gradient with respect to x has one entry per entry of x, so it has the "
            "shape of y and dy; return it (not None)")
def returns_the_shape(m):
    y, dy, _ = _inputs(0, (3, 5))
    expect_shape(as_array(_student(m, y, dy), "softmax_backward"), (3, 5),
                 "softmax_backward(y, dy)")


@check("one row: matches tinygpt's softmax backward",
       hint="write down dy_i/dx_j for one row: it has a case i == j and a case i != j. "
            "Multiply that Jacobian by the incoming gradient dy (you never need to build it "
            "as a matrix)")
def one_row(m):
    y, dy, _ = _inputs(1, (7,))
    expect_close(_student(m, y, dy), softmax_backward(y, dy), "softmax_backward on one row")


@check("a batch of rows (B, H, T, V): each row on its own",
       hint="softmax acts on the last axis only, so every sum must run over axis=-1 and keep "
            "that axis (keepdims=True) to broadcast back against the row")
def batch_of_rows(m):
    y, dy, _ = _inputs(2, (2, 3, 4, 4))  # square last axes: a wrong broadcast still runs
    expect_close(_student(m, y, dy), softmax_backward(y, dy),
                 "softmax_backward on a (2, 3, 4, 4) batch")


@check("agrees with finite differences of sum(softmax(x) * dy)",
       hint="nudge one x[i] by +-eps and watch how sum(softmax(x) * dy) changes: every "
            "output y_j moves, not only y_i")
def finite_differences(m):
    y, dy, x = _inputs(3, (2, 6))
    got = as_array(_student(m, y, dy), "softmax_backward")
    eps = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[idx] += eps
        lo[idx] -= eps
        numeric[idx] = ((softmax_forward(hi) - softmax_forward(lo)) * dy).sum() / (2 * eps)
    expect_close(got, numeric, "softmax_backward vs finite differences", rtol=1e-5, atol=1e-7)


@check("each row of the gradient sums to zero",
       hint="adding the same constant to a whole row of x leaves softmax unchanged, so the "
            "gradient cannot point along (1, 1, ..., 1): it needs a term that involves all "
            "of dy at once")
def rows_sum_to_zero(m):
    y, dy, _ = _inputs(4, (5, 8))
    dx = as_array(_student(m, y, dy), "softmax_backward")
    expect_shape(dx, (5, 8), "softmax_backward(y, dy)")
    expect_close(dx.sum(axis=-1), np.zeros(5), "the row sums of the gradient", atol=1e-9)


CHECKS = [returns_the_shape, one_row, batch_of_rows, finite_differences, rows_sum_to_zero]
