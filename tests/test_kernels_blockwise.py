"""Blockwise attention (kernels/blockwise.py, the CuPy backend's) against the reference.

It is array-module code, so it runs here on NumPy; tiles are made small (a few rows, a few
keys) so that every test crosses many block and chunk boundaries. The cases shared with the numba
kernels' tests and the tolerances are in tests/attention_cases.py.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from attention_cases import (
    SHAPES,
    attention_inputs,
    check_attention,
    check_huge_values_stay_finite,
    check_padding_mask_with_fully_masked_rows,
    close,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.kernels import blockwise, reference

# NumPy's overflow and invalid-value warnings are errors here: the guarded steps (an empty
# chunk's sum, a query with no key) must not even compute inf * 0 on the way
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
DTYPES = [np.float64, np.float32]
# (query rows, keys) a tile: the defaults; blocks that do not divide T and chunks of a few
# keys (the online softmax rescales at each, a local row may see none of a chunk); 1 x 1
TILES = [(blockwise.BLOCK, blockwise.KEY_BLOCK), (16, 7), (5, 3), (1, 1)]


@pytest.fixture(params=TILES, ids=lambda t: f"{t[0]}x{t[1]}")
def tiles(request, monkeypatch):
    monkeypatch.setattr(blockwise, "BLOCK", request.param[0])
    monkeypatch.setattr(blockwise, "KEY_BLOCK", request.param[1])
    return request.param


def check(*args, **kwargs):
    return check_attention(blockwise, *args, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, H, T, S, D, causal, window", SHAPES)
def test_blockwise_attention_matches_reference(tiles, dtype, B, H, T, S, D, causal, window):
    rng = np.random.default_rng(7)
    check(*attention_inputs(rng, B, H, T, S, D, dtype), dtype, causal, window)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal, window", [(True, None), (True, 6), (False, None)])
def test_blockwise_padding_mask_with_fully_masked_rows(tiles, dtype, causal, window):
    check_padding_mask_with_fully_masked_rows(blockwise, dtype, causal, window)


@pytest.mark.parametrize("dtype", DTYPES)
def test_blockwise_nan_key_and_nan_query_match_the_reference(tiles, dtype):
    """NaN reaches exactly where the reference puts it: queries that see a NaN key, and
    every output of a NaN query (not zeros: a NaN row is not an empty row)."""
    rng = np.random.default_rng(1)
    q, k, v, dout = attention_inputs(rng, 1, 2, 8, 8, 4, dtype)
    k[0, 0, 3, 1] = np.nan
    q[0, 1, 5, 2] = np.nan
    out, lse, _ = blockwise.attention_forward(q, k, v)
    ref, ref_lse, _ = reference.attention_forward(q, k, v)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isnan(lse), np.isnan(ref_lse))
    assert np.isnan(out[0, 0, 3:]).all() and np.isfinite(out[0, 0, :3]).all()
    assert np.isnan(out[0, 1, 5]).all() and np.isfinite(np.delete(out[0, 1], 5, axis=0)).all()
    dq, dk, dv = got = blockwise.attention_backward(q, k, v, out, lse, dout)
    # NaN where it truly reaches: the NaN query's dq row and the dv rows of the keys it
    # sees; the rows of the queries that see the NaN key. The other head's other rows
    # stay finite (in the NaN key's head, a tile's product carries 0 * NaN into earlier
    # queries' dq, as the reference's dense one does)
    assert np.isnan(dq[0, 1, 5]).all() and np.isfinite(np.delete(dq[0, 1], 5, axis=0)).all()
    assert np.isnan(dv[0, 1, :6]).all() and np.isfinite(dv[0, 1, 6:]).all()
    assert np.isnan(dq[0, 0, 3:]).any(axis=-1).all()
    # the reference is NaN wherever these are (its dense matmuls carry 0 * NaN further)
    for g, w in zip(got, reference.attention_backward(q, k, v, ref, ref_lse, dout)):
        assert np.isnan(w[np.isnan(g)]).all()


def test_blockwise_output_of_huge_values_stays_finite(tiles):
    check_huge_values_stay_finite(blockwise)


@pytest.mark.parametrize("dtype", DTYPES)
def test_blockwise_very_negative_scores_after_a_chunk_with_no_visible_key(dtype, monkeypatch):
    """A row whose first chunk is all padding, then scores of -1000: the empty chunk's sum
    (0) must not be rescaled by exp(0 - (-1000)) = inf (0 * inf = NaN); the reference
    shifts by the row's max and gets a plain softmax."""
    monkeypatch.setattr(blockwise, "KEY_BLOCK", 3)
    T, D = 8, 10
    q = np.full((1, 1, T, D), 10.0, dtype)
    k = np.full((1, 1, T, D), -10.0, dtype)  # every score: -1000 at scale 1
    v = np.random.default_rng(5).standard_normal((1, 1, T, D)).astype(dtype)
    mask = np.arange(T) >= 4  # keys 0..3 are padding: the first chunk (0..2) is empty
    out, lse, _ = blockwise.attention_forward(q, k, v, scale=1.0, mask=mask)
    ref, ref_lse, _ = reference.attention_forward(q, k, v, scale=1.0, mask=mask)
    assert np.isfinite(out[0, 0, 4:]).all()
    close(out, ref, dtype)
    close(lse, ref_lse, dtype)


def test_blockwise_keeps_float32_tiles_with_a_float64_scale(monkeypatch):
    """A NumPy float64 scale does not turn float32 tiles into float64 ones (NumPy 2's
    promotion; CuPy's differs): the scale is taken in q's dtype, as the numba kernels do."""
    tiles = []

    def scores(*args):
        tiles.append(score_tiles(*args))
        return tiles[-1]

    score_tiles = blockwise._scores
    monkeypatch.setattr(blockwise, "_scores", scores)
    rng = np.random.default_rng(4)
    q, k, v, dout = attention_inputs(rng, 1, 2, 9, 9, 4, np.float32)
    out, lse, _ = blockwise.attention_forward(q, k, v, scale=np.float64(0.5))
    grads = blockwise.attention_backward(q, k, v, out, lse, dout, scale=np.float64(0.5))
    assert tiles and all(t.dtype == np.float32 for t in tiles)
    assert all(a.dtype == np.float32 for a in (out, lse, *grads))
    close(out, reference.attention_forward(q, k, v, scale=0.5)[0], np.float32)


@pytest.mark.parametrize("window", [None, 16])
def test_blockwise_attention_never_holds_the_score_matrix(monkeypatch, window):
    """Peak memory of a forward and backward at T = 2048 stays at the inputs plus a few
    tiles: far below the T x T scores of one head that the reference writes (32 MiB)."""
    monkeypatch.setattr(blockwise, "BLOCK", 64)
    monkeypatch.setattr(blockwise, "KEY_BLOCK", 128)
    rng = np.random.default_rng(3)
    T = 2048
    q, k, v, dout = attention_inputs(rng, 1, 1, T, T, 8, np.float64)
    tracemalloc.start()
    try:
        out, lse, _ = blockwise.attention_forward(q, k, v, window=window)
        blockwise.attention_backward(q, k, v, out, lse, dout, window=window)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # outputs: out, lse, dq, dk, dv (5 x 128 KiB at most) and tiles of 64 x 128 x 8 bytes
    assert peak < 2 * 2**20, peak
    # and local attention takes only the tiles its window reaches: the last query block's
    # keys start at 2048 - 64 - 16 + 1, not at 0
    if window is not None:
        assert list(blockwise._chunks(T - 64, T, T, T, True, window)) == [(1969, 2048)]


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 40),
    extra=st.integers(0, 10),
    D=st.integers(1, 9),
    window=st.one_of(st.none(), st.integers(1, 50)),
    block=st.sampled_from([1, 8, 32, 256]),
    key_block=st.sampled_from([1, 3, 16, 1024]),
    seed=st.integers(0, 2**16),
)
def test_blockwise_attention_property(T, extra, D, window, block, key_block, seed):
    rng = np.random.default_rng(seed)
    old = blockwise.BLOCK, blockwise.KEY_BLOCK
    blockwise.BLOCK, blockwise.KEY_BLOCK = block, key_block  # restored after: one test
    try:
        q, k, v, dout = attention_inputs(rng, 2, 2, T, T + extra, D, np.float64)
        mask = rng.random((2, 1, T, T + extra)) > 0.2  # padding-like holes, empty rows too
        check(q, k, v, dout, np.float64, True, window, 0.5, mask)
    finally:
        blockwise.BLOCK, blockwise.KEY_BLOCK = old
