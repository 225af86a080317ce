"""Exercise 7 checks: rope_cos_sin and apply_rope against tinygpt's rotary kernels."""

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
from tinygpt.kernels import reference


def _tables(m, positions, rotary_dim, theta=10000.0):
    result = function(m, "rope_cos_sin")(np.asarray(positions), rotary_dim, theta)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CheckFailed("rope_cos_sin must return a tuple (cos, sin)")
    return as_array(result[0], "rope_cos_sin's cos"), as_array(result[1], "rope_cos_sin's sin")


def _rope(m, x, cos, sin):
    # copies: a rotation that wrote into the tables (sin negated in place, say) would
    # change the reference's rotation too, and pass the checks that compare with it
    tables = (cos.copy(), sin.copy())
    out = as_array(function(m, "apply_rope")(x.copy(), *tables), "apply_rope")
    for name, given, kept in (("cos", tables[0], cos), ("sin", tables[1], sin)):
        if not np.array_equal(given, kept):
            raise CheckFailed(f"apply_rope changed the {name} table in place; leave the "
                              f"tables as they are (every position and layer shares them)")
    return out


@check("rope_cos_sin returns two (positions, rotary_dim / 2) tables",
       hint="one angle per position and per feature *pair*: rotary_dim features make "
            "rotary_dim / 2 pairs")
def table_shapes(m):
    cos, sin = _tables(m, np.arange(10), 8)
    expect_shape(cos, (10, 4), "cos")
    expect_shape(sin, (10, 4), "sin")


@check("the tables match tinygpt's rope_cos_sin",
       hint="pair i turns at frequency theta ** (-2i / rotary_dim): pair 0 fastest, the last "
            "pair slowest; the angle is position * frequency, for the positions you are given")
def table_values(m):
    # positions as a KV cache gives them (starting past 0, not a range 0..N-1)
    for rotary_dim, theta, positions in ((8, 10000.0, np.arange(40)),
                                         (16, 500.0, np.arange(37, 77)),
                                         (8, 10000.0, np.array([5, 6, 200, 3]))):
        cos, sin = _tables(m, positions, rotary_dim, theta)
        ref_cos, ref_sin = reference.rope_cos_sin(positions, rotary_dim, theta, np.float64)
        # the reference computes its angles in float32, as Hugging Face does: 1e-5 covers it
        expect_close(cos, ref_cos, f"cos (rotary_dim={rotary_dim})", atol=1e-5)
        expect_close(sin, ref_sin, f"sin (rotary_dim={rotary_dim})", atol=1e-5)


def _reference_tables(T, rotary_dim):
    return reference.rope_cos_sin(np.arange(T), rotary_dim, 10000.0, np.float64)


@check("apply_rope rotates like GPT-NeoX (rotate-half) on every feature",
       hint="feature i pairs with feature i + R/2 (the two halves); the pair (a, b) becomes "
            "(a cos - b sin, b cos + a sin) with the angle of its position")
def full_rotation(m):
    x = rng(0).normal(size=(2, 3, 5, 8))
    cos, sin = _reference_tables(5, 8)
    expect_close(_rope(m, x, cos, sin), reference.rope_forward(x, cos, sin, "neox"),
                 "apply_rope(x, cos, sin)")


@check("with rotary_dim < head size, the other features pass through unchanged",
       hint="R = 2 * cos.shape[-1] may be smaller than x.shape[-1]: rotate x[..., :R] (its two "
            "halves are :R/2 and R/2:R) and copy the rest")
def partial_rotation(m):
    x = rng(1).normal(size=(1, 2, 6, 10))
    cos, sin = _reference_tables(6, 4)
    expect_close(_rope(m, x, cos, sin), reference.rope_forward(x, cos, sin, "neox"),
                 "apply_rope with rotary_dim 4 of 10 features")


@check("rotations keep lengths: |apply_rope(x)| == |x| per position",
       hint="a rotation never stretches: if lengths change, the cos/sin terms or their "
            "signs are mixed up")
def keeps_norms(m):
    x = rng(2).normal(size=(3, 7, 8))
    cos, sin = _reference_tables(7, 8)
    y = _rope(m, x, cos, sin)
    expect_shape(y, x.shape, "apply_rope(x, cos, sin)")
    expect_close(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), "the lengths")


@check("q . k depends only on the distance between their positions",
       hint="this is why RoPE exists: with your tables and rotation, (q at m) . (k at n) "
            "must equal (q at m + s) . (k at n + s) for any shift s")
def relative_positions(m):
    g = rng(3)
    q, k = g.normal(size=16), g.normal(size=16)
    cos, sin = _tables(m, np.arange(64), 16)

    def score(i, j):
        qi = _rope(m, q[None, :], cos[i:i + 1], sin[i:i + 1])[0]
        kj = _rope(m, k[None, :], cos[j:j + 1], sin[j:j + 1])[0]
        return float(qi @ kj)

    for i, j, shift in ((5, 2, 20), (9, 9, 40), (3, 11, 30)):
        expect_close(score(i + shift, j + shift), score(i, j),
                     f"q.k at positions ({i + shift}, {j + shift}) vs ({i}, {j})", atol=1e-4)


CHECKS = [table_shapes, table_values, full_rotation, partial_rotation, keeps_norms,
          relative_positions]
