"""Exercise 3 checks: adamw_step, in place, against the reference kernel (torch's AdamW)."""

from __future__ import annotations

import numpy as np

from tinygpt.exercises.grader import CheckFailed, check, expect_close, function, rng
from tinygpt.kernels.reference import adamw_step

HYPER = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)


def _state(seed: int, shape=(4, 3)):
    g = rng(seed)
    return [g.normal(size=shape), np.zeros(shape), np.zeros(shape)], g


def _run(m, arrays, grads, hyper=HYPER):
    """Apply the student's steps 1..len(grads) to ``arrays`` in place; the reference to copies."""
    mine, ref = arrays, [a.copy() for a in arrays]
    student = function(m, "adamw_step")
    for t, grad in enumerate(grads, start=1):
        student(mine[0], grad.copy(), mine[1], mine[2], t, **hyper)
        adamw_step(ref[0], grad, ref[1], ref[2], t, **hyper)
    return mine, ref


def _compare(mine, ref, when: str) -> None:
    for name, got, want in zip(("param", "exp_avg", "exp_avg_sq"), mine, ref):
        expect_close(got, want, f"{name} {when}", rtol=1e-7, atol=1e-12)


@check("updates param, exp_avg and exp_avg_sq in place",
       hint="the optimizer keeps these three arrays between steps, so write into them "
            "(param -= ..., exp_avg *= ..., exp_avg[...] = ...); `param = param - ...` only "
            "rebinds a local name and the caller never sees it")
def updates_in_place(m):
    arrays, g = _state(0)
    before = [a.copy() for a in arrays]
    # without weight decay: an in-place decay followed by a rebound `param = param - ...`
    # would still change param and hide the mistake
    mine, _ = _run(m, arrays, [g.normal(size=before[0].shape)], dict(HYPER, weight_decay=0.0))
    for name, old, new in zip(("param", "exp_avg", "exp_avg_sq"), before, mine):
        if np.array_equal(old, new):
            raise CheckFailed(f"{name} is unchanged after adamw_step")


@check("the first step matches torch.optim.AdamW",
       hint="Adam keeps running means of g (exp_avg) and g*g (exp_avg_sq) and steps by "
            "their ratio; see lesson 2 for the order of the updates")
def first_step(m):
    arrays, g = _state(1)
    _compare(*_run(m, arrays, [g.normal(size=arrays[0].shape)]), "after step 1")


@check("ten steps match: bias correction uses the step number",
       hint="both running means start at zero, so early on they are too small; Adam divides "
            "each by 1 - beta**step, with the step number that counts from 1")
def ten_steps(m):
    arrays, g = _state(2)
    grads = [g.normal(size=arrays[0].shape) for _ in range(10)]
    _compare(*_run(m, arrays, grads), "after 10 steps")


@check("weight decay is decoupled from the gradient",
       hint="with a zero gradient Adam's update is zero, yet AdamW still shrinks the weights: "
            "its decay acts on param directly and never enters exp_avg or exp_avg_sq")
def decoupled_decay(m):
    arrays, _ = _state(3)
    zero = np.zeros_like(arrays[0])
    _compare(*_run(m, arrays, [zero, zero]), "after two steps with a zero gradient")


@check("eps is added after the square root",
       hint="the denominator is sqrt(bias-corrected exp_avg_sq) + eps; with tiny gradients "
            "it matters where eps goes")
def eps_placement(m):
    arrays, g = _state(4)
    tiny = [g.normal(size=arrays[0].shape) * 1e-8 for _ in range(3)]
    _compare(*_run(m, arrays, tiny, dict(HYPER, weight_decay=0.0)), "with gradients near 1e-8")


CHECKS = [updates_in_place, first_step, ten_steps, decoupled_decay, eps_placement]
