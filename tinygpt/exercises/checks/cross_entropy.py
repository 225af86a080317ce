"""Exercise 2 checks: cross_entropy and its gradient against the reference kernels."""

from __future__ import annotations

import numpy as np

from tinygpt.exercises.grader import (
    CheckFailed,
    as_array,
    check,
    expect_close,
    function,
    rng,
)
from tinygpt.kernels.reference import cross_entropy_backward, cross_entropy_forward


def _inputs(seed: int, n: int = 6, v: int = 10, scale: float = 2.0):
    g = rng(seed)
    return g.normal(size=(n, v)) * scale, g.integers(0, v, size=n)


def _loss(m, logits, targets) -> float:
    value = as_array(function(m, "cross_entropy")(logits.copy(), targets.copy()),
                     "cross_entropy")
    if value.size != 1:
        raise CheckFailed(f"cross_entropy returned shape {value.shape}; the mean loss is one "
                          f"number")
    return float(value.reshape(()))


@check("the loss matches tinygpt's cross_entropy",
       hint="for each row: the log-probability of its target is logits[target] minus the "
            "log of the sum of exp(logits); the loss is minus that, averaged over the rows")
def loss_matches(m):
    logits, targets = _inputs(0)
    expect_close(_loss(m, logits, targets), cross_entropy_forward(logits, targets)[0],
                 "cross_entropy(logits, targets)")


@check("the loss stays finite for logits around 1000",
       hint="exp(1000) overflows to inf. Subtracting the row's largest logit before exp() "
            "changes nothing mathematically: add it back after the log")
def loss_is_stable(m):
    logits, targets = _inputs(1, scale=1.0)
    logits = logits + 1000.0
    loss = _loss(m, logits, targets)
    if not np.isfinite(loss):
        raise CheckFailed(f"cross_entropy gave {loss} for logits near 1000")
    expect_close(loss, cross_entropy_forward(logits, targets)[0],
                 "cross_entropy with logits near 1000", rtol=1e-9, atol=1e-9)


def _grad(m, logits, targets):
    return as_array(function(m, "cross_entropy_backward")(logits.copy(), targets.copy()),
                    "cross_entropy_backward")


def _reference_grad(logits, targets):
    _, lse = cross_entropy_forward(logits, targets)
    return cross_entropy_backward(logits, targets, lse, 1.0)


@check("the gradient matches tinygpt's cross_entropy backward",
       hint="the gradient of one row's loss is its softmax minus a one-hot vector at the "
            "target; remember that the loss is a mean over the rows")
def grad_matches(m):
    logits, targets = _inputs(2)
    expect_close(_grad(m, logits, targets), _reference_grad(logits, targets),
                 "cross_entropy_backward(logits, targets)")


@check("the gradient agrees with finite differences of the loss",
       hint="nudge one logit by +-eps and see how the *mean* loss moves; compare with your "
            "gradient entry")
def grad_finite_differences(m):
    logits, targets = _inputs(3, n=3, v=5)
    got = _grad(m, logits, targets)
    numeric = np.zeros_like(logits)
    eps = 1e-6
    for idx in np.ndindex(logits.shape):
        hi, lo = logits.copy(), logits.copy()
        hi[idx] += eps
        lo[idx] -= eps
        numeric[idx] = (float(cross_entropy_forward(hi, targets)[0])
                        - float(cross_entropy_forward(lo, targets)[0])) / (2 * eps)
    expect_close(got, numeric, "cross_entropy_backward vs finite differences", rtol=1e-5,
                 atol=1e-8)


@check("the gradient is finite for logits around 1000",
       hint="compute the softmax in the gradient the stable way too (subtract the row max)")
def grad_is_stable(m):
    logits, targets = _inputs(4, scale=1.0)
    logits = logits + 1000.0
    expect_close(_grad(m, logits, targets), _reference_grad(logits, targets),
                 "cross_entropy_backward with logits near 1000")


CHECKS = [loss_matches, loss_is_stable, grad_matches, grad_finite_differences, grad_is_stable]
