"""Exercise 9 checks: layer_norm and its backward pass against the reference kernels."""

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
from tinygpt.kernels.reference import layer_norm_backward, layer_norm_forward

EPS = 1e-5


def _inputs(seed: int, shape=(2, 3, 8)):
    g = rng(seed)
    x = g.normal(size=shape) * 3 + 1
    weight, bias = g.normal(size=shape[-1]), g.normal(size=shape[-1])
    return x, weight, bias, g.normal(size=shape)


def _forward(m, x, weight, bias):
    return as_array(function(m, "layer_norm")(x.copy(), weight.copy(), bias.copy(), EPS),
                    "layer_norm")


def _backward(m, dy, x, weight):
    result = function(m, "layer_norm_backward")(dy.copy(), x.copy(), weight.copy(), EPS)
    if not (isinstance(result, tuple) and len(result) == 3):
        raise CheckFailed("layer_norm_backward must return a tuple (dx, dweight, dbias)")
    return [as_array(r, f"layer_norm_backward's {name}")
            for r, name in zip(result, ("dx", "dweight", "dbias"))]


def _reference_backward(dy, x, weight):
    _, mean, rstd = layer_norm_forward(x, weight, None, EPS)
    return layer_norm_backward(dy, x, weight, mean, rstd)


@check("layer_norm matches tinygpt's LayerNorm",
       hint="normalise each row (last axis) to mean 0 and variance 1, with the *biased* "
            "variance (divide by C, not C - 1) and eps inside the square root; then scale by "
            "weight and shift by bias")
def forward_matches(m):
    x, weight, bias, _ = _inputs(0)
    expect_close(_forward(m, x, weight, bias), layer_norm_forward(x, weight, bias, EPS)[0],
                 "layer_norm(x, weight, bias)")


@check("each normalised row has mean 0 and standard deviation about 1",
       hint="with weight = 1 and bias = 0 the output rows must be centred and scaled; reduce "
            "over axis=-1 with keepdims=True so the statistics broadcast back")
def forward_statistics(m):
    x, _, _, _ = _inputs(1, shape=(4, 16))
    y = _forward(m, x, np.ones(16), np.zeros(16))
    expect_shape(y, x.shape, "layer_norm(x, ones, zeros)")
    expect_close(y.mean(axis=-1), np.zeros(4), "the row means", atol=1e-9)
    expect_close(y.std(axis=-1), np.ones(4), "the row standard deviations", rtol=1e-4)


@check("dweight and dbias sum over every row",
       hint="weight and bias are shared by all rows, so their gradients add up the "
            "contributions of every row (sum over all axes but the last)")
def param_grads(m):
    x, weight, _, dy = _inputs(2)
    _, dweight, dbias = _backward(m, dy, x, weight)
    _, ref_dweight, ref_dbias = _reference_backward(dy, x, weight)
    expect_close(dbias, ref_dbias, "dbias")
    expect_close(dweight, ref_dweight, "dweight")


@check("dx matches tinygpt's LayerNorm backward",
       hint="x enters through three paths: directly, through the row mean and through the "
            "row variance; the gradient needs all three (lesson 7 and kernels/reference.py "
            "explain the shape of the result)")
def dx_matches(m):
    x, weight, _, dy = _inputs(3)
    dx, _, _ = _backward(m, dy, x, weight)
    expect_close(dx, _reference_backward(dy, x, weight)[0], "dx")


@check("dx agrees with finite differences of sum(layer_norm(x) * dy)",
       hint="nudge one x[i] by +-eps: the whole row's mean and variance move, so every output "
            "of the row changes, not only y[i]")
def dx_finite_differences(m):
    x, weight, bias, dy = _inputs(4, shape=(2, 5))
    dx, _, _ = _backward(m, dy, x, weight)
    numeric = np.zeros_like(x)
    eps = 1e-6
    for idx in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[idx] += eps
        lo[idx] -= eps
        numeric[idx] = ((layer_norm_forward(hi, weight, bias, EPS)[0]
                         - layer_norm_forward(lo, weight, bias, EPS)[0]) * dy).sum() / (2 * eps)
    expect_close(dx, numeric, "dx vs finite differences", rtol=1e-5, atol=1e-7)


CHECKS = [forward_matches, forward_statistics, param_grads, dx_matches, dx_finite_differences]
