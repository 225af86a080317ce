"""Attention test cases shared by the numba kernels' tests (test_kernels.py) and the
blockwise ones (test_kernels_blockwise.py): each takes the kernels module under test."""

from __future__ import annotations

import numpy as np

from tinygpt.kernels import reference

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-5, atol=2e-6)}

# (B, H, T, S, D, causal, window): the odd shapes every implementation must get right
SHAPES = [
    (2, 3, 45, 45, 8, True, None),  # T not a multiple of the block
    (1, 2, 45, 45, 8, True, 7),  # local window, batch 1
    (2, 1, 20, 20, 4, True, 64),  # window larger than T: same as global causal
    (1, 2, 30, 30, 1, False, None),  # head size 1, non-causal
    (2, 2, 5, 37, 8, True, 9),  # S > T: the KV-cache case, queries are the last T
    (1, 1, 1, 40, 8, True, None),  # one new token against a cache
    (2, 2, 0, 3, 4, True, None),  # no queries at all (T = 0)
]


def close(actual, desired, dtype, scale=1.0):
    """assert_allclose with the dtype's tolerance; ``scale`` widens atol for sums of
    many terms (stated at each call)."""
    tol = TOL[dtype]
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    np.testing.assert_allclose(actual, desired, rtol=tol["rtol"], atol=tol["atol"] * scale)


def attention_inputs(rng, B, H, T, S, D, dtype):
    return tuple(rng.standard_normal(shape).astype(dtype) for shape in
                 [(B, H, T, D), (B, H, S, D), (B, H, S, D), (B, H, T, D)])


def check_attention(kernels, q, k, v, dout, dtype, causal=True, window=None, scale=None,
                    mask=None):
    """``kernels``' forward (without and with weights) and backward equal the reference's."""
    out, lse, weights = reference.attention_forward(q, k, v, causal, window, scale, mask, True)
    # without weights, as in training: keys in chunks (the online softmax)
    c_out, c_lse, none = kernels.attention_forward(q, k, v, causal, window, scale, mask)
    assert none is None
    close(c_out, out, dtype)
    close(c_lse, lse, dtype)  # also checks -inf lands on the same rows
    # with weights: the probabilities themselves
    w_out, w_lse, c_weights = kernels.attention_forward(q, k, v, causal, window, scale, mask,
                                                        True)
    close(w_out, out, dtype)
    close(w_lse, lse, dtype)
    close(c_weights, weights, dtype)
    want = reference.attention_backward(q, k, v, out, lse, dout, causal, window, scale, mask)
    got = kernels.attention_backward(q, k, v, c_out, c_lse, dout, causal, window, scale, mask)
    for g, w in zip(got, want):
        close(g, w, dtype, scale=4)  # dk, dv sum over all T query rows
    return out, lse, got


def check_padding_mask_with_fully_masked_rows(kernels, dtype, causal, window):
    rng = np.random.default_rng(9)
    B, H, T, D = 3, 2, 21, 8
    q, k, v, dout = attention_inputs(rng, B, H, T, T, D, dtype)
    # left padding: batch row b ignores its first pad[b] keys; batch 2 is all padding,
    # and in batch 1 the early (causal) queries only see padding: both are empty rows.
    pad = np.array([0, 9, T])
    mask = (np.arange(T)[None, :] >= pad[:, None])[:, None, None, :]  # (B, 1, 1, S)
    out, lse, (dq, dk, dv) = check_attention(kernels, q, k, v, dout, dtype, causal, window,
                                             None, mask)
    empty = np.isneginf(lse)
    assert empty[2].all() and (empty[1, :, :9].all() if causal else not empty[1].any())
    assert not out[empty].any() and not dq[empty].any()
    assert not dk[2].any() and not dv[2].any()


def check_huge_values_stay_finite(kernels):
    """The output is a weighted mean of v's rows, also while chunks of keys come in: values
    near float32's largest must not overflow on the way (the reference: 3e37 exactly)."""
    q = k = np.zeros((1, 1, 16, 2), np.float32)
    v = np.full((1, 1, 16, 2), 3e37, np.float32)
    out = kernels.attention_forward(q, k, v)[0]
    np.testing.assert_allclose(out, reference.attention_forward(q, k, v)[0], rtol=1e-6)
