"""Fused kernels: numba (cpu) against the NumPy reference, and the reference against torch.

Tolerances. float64: the two implementations do the same math in a different order
(numba loops vs NumPy's pairwise sums and BLAS tiles), so they agree to ~1e-15 relative;
we allow 1e-10 / 1e-12 (abs) to stay far from flaky yet catch any real bug (a wrong term is
O(1e-2) or worse). float32: eps is 1.2e-7; sums over up to ~200 terms in a different order
(numba accumulates row sums in float64, NumPy in float32) differ by tens of ulps, so we
allow rtol 2e-5 / atol 2e-6 on O(1) values. (``TOL`` and ``close`` live in
attention_cases.py, with the attention cases the blockwise tests share.)
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest
from attention_cases import (
    SHAPES,
    attention_inputs,
    check_huge_values_stay_finite,
    check_padding_mask_with_fully_masked_rows,
    close,
)
from attention_cases import check_attention as _check_attention
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.kernels import blockwise, cpu, get_kernels, reference

DTYPES = [np.float64, np.float32]
MODULES = [reference, cpu]
ATTENTION_MODULES = [reference, cpu, blockwise]


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture(autouse=True, params=["serial", "parallel"])
def threads(request, monkeypatch):
    """Every test twice: small arrays normally take a kernel's serial twin, so force each
    path in turn (cpu.PARALLEL_MIN = 0 sends every call to the threaded kernel)."""
    monkeypatch.setattr(cpu, "PARALLEL_MIN", 1 << 62 if request.param == "serial" else 0)
    return request.param


# ------------------------------------------------------------------------- dispatch


def test_get_kernels_follows_env_at_call_time(monkeypatch):
    monkeypatch.delenv("TINYGPT_KERNELS", raising=False)
    assert get_kernels() is cpu
    monkeypatch.setenv("TINYGPT_KERNELS", "numpy")
    assert get_kernels() is reference
    monkeypatch.setenv("TINYGPT_KERNELS", "numba")
    assert get_kernels() is cpu


def test_get_kernels_rejects_unknown_choice(monkeypatch):
    monkeypatch.setenv("TINYGPT_KERNELS", "fortran")
    with pytest.raises(ValueError, match="fortran"):
        get_kernels()


def test_import_selects_numba_workqueue_threads():
    """`import tinygpt` picks numba's workqueue layer before numba starts any thread, even
    when the user imported numba first or sets the thread count before the first kernel."""
    code = ("import numba, tinygpt; numba.set_num_threads(1); "
            "from tinygpt.kernels import cpu; import numpy as np; "
            "cpu.gelu_forward(np.ones(4, np.float32)); print(numba.threading_layer())")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out.strip() == "workqueue"


def test_import_lets_openblas_threads_nap_and_attention_use_threads_only_then():
    """`import tinygpt` before NumPy sets OPENBLAS_THREAD_TIMEOUT (a user's value wins), and
    attention shares its heads among threads only when that setting could take effect."""
    plan = ("import os, tinygpt, numba; from tinygpt.kernels import cpu; "
            "numba.set_num_threads(2); print(os.environ['OPENBLAS_THREAD_TIMEOUT'], "
            "cpu._attention_plan(12, 4, 64, 64, 32, None)[2])")  # config a: threads (2) or 1
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    base["NUMBA_NUM_THREADS"] = "2"  # so set_num_threads(2) works on a one-core machine

    def run(numpy_first, **extra):
        code = ("import numpy; " if numpy_first else "") + plan
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**base, **extra}, check=True).stdout.split()

    from tinygpt import _openblas

    two = "2" if _openblas.numpy_uses_openblas() else "1"  # MKL, Accelerate: one thread
    assert run(False) == ["20", two]
    assert run(True) == ["20", "1"]  # set, but after OpenBLAS read it: its threads spin
    assert run(False, OPENBLAS_THREAD_TIMEOUT="4") == ["4", two]
    assert run(True, OPENBLAS_THREAD_TIMEOUT="4") == ["4", two]  # the user's, in time
    assert run(False, OPENBLAS_THREAD_TIMEOUT="28") == ["28", "1"]  # OpenBLAS's default
    # OpenBLAS reads the variable with atoi, and 0 or less means its default
    assert run(False, OPENBLAS_THREAD_TIMEOUT="soon") == ["soon", "1"]
    assert run(False, OPENBLAS_THREAD_TIMEOUT="0") == ["0", "1"]
    assert run(False, OPENBLAS_THREAD_TIMEOUT="-3") == ["-3", "1"]
    assert run(False, OPENBLAS_THREAD_TIMEOUT=" 12abc") == ["12abc", two]  # (split() strips)


def test_attention_threads_only_with_openblas(monkeypatch):
    from tinygpt import _openblas

    blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
    assert _openblas.numpy_uses_openblas() == ("openblas" in blas["name"].lower())
    monkeypatch.setitem(blas, "openblas configuration", "OpenBLAS 0.3.28 USE_OPENMP Haswell")
    assert not _openblas.numpy_uses_openblas()  # OpenMP's threads ignore the setting
    monkeypatch.setitem(blas, "name", "mkl-sdl")  # a conda build: not measured, one thread
    assert not _openblas.numpy_uses_openblas()
    monkeypatch.delitem(np.__config__.CONFIG["Build Dependencies"], "blas")
    assert not _openblas.numpy_uses_openblas()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux")
def test_import_tunes_glibc_malloc_unless_told_not_to():
    """`import tinygpt` keeps freed memory for reuse (mallopt), and leaves malloc alone when
    the user set MALLOC_* or TINYGPT_KEEP_FREED_MEMORY=0."""
    code = "from tinygpt import kernels; print(kernels.MALLOC_TUNED)"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MALLOC_") and k != "TINYGPT_KEEP_FREED_MEMORY"}

    def tuned(**extra):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**base, **extra}, check=True).stdout
        return out.strip()

    import platform

    if platform.libc_ver()[0] == "glibc":
        assert tuned() == "True"
    assert tuned(MALLOC_TRIM_THRESHOLD_="0") == "False"
    assert tuned(TINYGPT_KEEP_FREED_MEMORY="0") == "False"


def test_cuda_kernels_match_reference():
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.runtime.getDeviceCount() == 0:
        pytest.skip("CuPy sees no GPU")
    from tinygpt.kernels import cuda

    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        x, dy = randn(rng, (4, 33), dtype), randn(rng, (4, 33), dtype)
        for approximate in ("tanh", "none"):
            close(cuda.gelu_forward(cupy.asarray(x), approximate).get(),
                  reference.gelu_forward(x, approximate), dtype)
            close(cuda.gelu_backward(cupy.asarray(x), cupy.asarray(dy), approximate).get(),
                  reference.gelu_backward(x, dy, approximate), dtype)
        host = [randn(rng, (50,), dtype) for _ in range(4)]
        host[3] = np.abs(host[3])
        dev = [cupy.asarray(a) for a in host]
        reference.adamw_step(*host, 3, 1e-2, 0.9, 0.999, 1e-8, 0.1)
        cuda.adamw_step(*dev, 3, 1e-2, 0.9, 0.999, 1e-8, 0.1)
        for h, d in zip(host, dev):
            close(d.get(), h, dtype)
        # attention (blockwise.py's on CuPy), with tiles small enough to cross boundaries
        q, k, v, dout = attention_inputs(rng, 2, 3, 37, 40, 8, dtype)
        mask = rng.random((2, 1, 37, 40)) > 0.2
        for window, m in [(None, None), (5, None), (None, mask)]:
            out, lse, _ = reference.attention_forward(q, k, v, True, window, None, m)
            dev = [cupy.asarray(a) for a in (q, k, v)]
            dm = None if m is None else cupy.asarray(m)
            g_out, g_lse, _ = cuda.attention_forward(*dev, True, window, None, dm)
            close(g_out.get(), out, dtype)
            close(g_lse.get(), lse, dtype)
            want = reference.attention_backward(q, k, v, out, lse, dout, True, window, None, m)
            got = cuda.attention_backward(*dev, g_out, g_lse, cupy.asarray(dout), True, window,
                                          None, dm)
            for g, w in zip(got, want):
                close(g.get(), w, dtype, scale=4)


# ------------------------------------------------------------- elementwise and rows


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax_match_reference(dtype):
    rng = np.random.default_rng(1)
    x, dy = randn(rng, (3, 5, 67), dtype) * 4, randn(rng, (3, 5, 67), dtype)
    for fwd, bwd in [("softmax_forward", "softmax_backward"),
                     ("log_softmax_forward", "log_softmax_backward")]:
        y = getattr(reference, fwd)(x)
        close(getattr(cpu, fwd)(x), y, dtype)
        close(getattr(cpu, bwd)(y, dy), getattr(reference, bwd)(y, dy), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_reference(dtype):
    rng = np.random.default_rng(2)
    logits = randn(rng, (9, 31), dtype) * 3
    targets = rng.integers(0, 31, 9)
    targets[[2, 5]] = -1  # ignored rows, with a non-default ignore_index
    loss, lse = reference.cross_entropy_forward(logits, targets, -1)
    cpu_loss, cpu_lse = cpu.cross_entropy_forward(logits, targets, -1)
    close(cpu_loss, loss, dtype)
    close(cpu_lse, lse, dtype)
    dlogits = cpu.cross_entropy_backward(logits, targets, cpu_lse, 0.7, -1)
    close(dlogits, reference.cross_entropy_backward(logits, targets, lse, 0.7, -1), dtype)
    assert not dlogits[[2, 5]].any()


@pytest.mark.parametrize("rows, vocab, spread", [(37, 1000, 3.0), (5, 257, 60.0)])
def test_cross_entropy_float32_against_float64_truth(rows, vocab, spread):
    # the float32 kernel's vectorised exp (and its exp(< -87) = 0, reached at spread 60)
    # must be as close to float64 truth as the float32 reference is, within 2x
    rng = np.random.default_rng(13)
    logits = randn(rng, (rows, vocab), np.float32) * spread
    targets = rng.integers(0, vocab, rows)
    targets[::4] = -100
    truth_loss, truth_lse = reference.cross_entropy_forward(logits.astype(np.float64), targets)
    truth_d = reference.cross_entropy_backward(logits.astype(np.float64), targets, truth_lse, 1.3)
    ref_loss, ref_lse = reference.cross_entropy_forward(logits, targets)
    ref_d = reference.cross_entropy_backward(logits, targets, ref_lse, 1.3)
    loss, lse = cpu.cross_entropy_forward(logits, targets)
    d = cpu.cross_entropy_backward(logits, targets, lse, 1.3)
    assert loss.dtype == lse.dtype == d.dtype == np.float32
    for got, ref, truth in ((loss, ref_loss, truth_loss), (lse, ref_lse, truth_lse),
                            (d, ref_d, truth_d)):
        err, ref_err = np.abs(got - truth).max(), np.abs(ref - truth).max()
        assert err <= 2 * ref_err + 1e-7, (err, ref_err)
    assert not d[::4].any()


@pytest.mark.parametrize("kernels", MODULES)
def test_cross_entropy_all_rows_ignored_is_nan_with_zero_grad(kernels):
    logits = np.zeros((3, 4))
    targets = np.full(3, -100)
    loss, lse = kernels.cross_entropy_forward(logits, targets, -100)
    assert loss.shape == () and np.isnan(loss)
    assert not kernels.cross_entropy_backward(logits, targets, lse, 1.0, -100).any()


@pytest.mark.parametrize("kernels", MODULES)
@pytest.mark.parametrize("bad", [7, -2])
def test_cross_entropy_out_of_range_target_names_id_and_vocab(kernels, bad):
    with pytest.raises(IndexError, match=rf"{bad}.*7 classes"):
        kernels.cross_entropy_forward(np.zeros((2, 7)), np.array([0, bad]), -100)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_reference(dtype, affine):
    rng = np.random.default_rng(3)
    x, dy = randn(rng, (2, 7, 48), dtype) * 3 + 1, randn(rng, (2, 7, 48), dtype)
    weight = randn(rng, (48,), dtype) if affine else None
    bias = randn(rng, (48,), dtype) if affine else None
    y, mean, rstd = reference.layer_norm_forward(x, weight, bias, 1e-5)
    cy, cmean, crstd = cpu.layer_norm_forward(x, weight, bias, 1e-5)
    close(cy, y, dtype)
    close(cmean, mean, dtype)
    close(crstd, rstd, dtype)
    grads = cpu.layer_norm_backward(dy, x, weight, cmean, crstd)
    # dweight/dbias sum 14 rows of O(1) terms: a few times the per-element atol
    for got, want in zip(grads, reference.layer_norm_backward(dy, x, weight, mean, rstd)):
        close(got, want, dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["tanh", "none"])
@pytest.mark.parametrize("shape", [(5, 41), (3, 4096 + 77)])  # one chunk; ragged chunks
def test_gelu_matches_reference(dtype, approximate, shape):
    rng = np.random.default_rng(4)
    x, dy = randn(rng, shape, dtype) * 3, randn(rng, shape, dtype)
    # the tails too: exp(-u) overflows to inf for x << 0 in the sigmoid form of tanh-GELU
    x[0, :8] = np.array([-1e4, -200, -90, -30, 30, 90, 200, 1e4], dtype)
    # The truth is the reference in float64: the float32 reference's backward loses up to
    # 2.5e-6 to cancellation in 1 - tanh^2 near x = -5, where the sigmoid form does not.
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    close(cpu.gelu_forward(x, approximate), reference.gelu_forward(x64, approximate), dtype)
    close(cpu.gelu_backward(x, dy, approximate),
          reference.gelu_backward(x64, dy64, approximate), dtype)


@pytest.mark.parametrize("kernels", MODULES)
def test_gelu_rejects_unknown_approximation(kernels):
    with pytest.raises(ValueError, match="'erf'"):
        kernels.gelu_forward(np.zeros(3), "erf")


def test_reference_erf_matches_math_erf():
    # Cody's rational approximation is accurate to double precision across the range
    x = np.concatenate([np.linspace(-30, 30, 6001), [0.0, 1e-300, 0.46875, 4.0, np.inf]])
    want = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(reference.erf(x), want, rtol=2e-15, atol=1e-300)
    assert reference.erf(x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("style", ["neox", "gptj"])
@pytest.mark.parametrize("rotary_dim", [16, 6])  # full head and partial (rotary_pct)
def test_rope_matches_reference_and_inverts(dtype, style, rotary_dim):
    rng = np.random.default_rng(5)
    x = randn(rng, (2, 3, 9, 16), dtype)
    # tables from float64 angles (rope_cos_sin rounds them through float32, like HF), so
    # cos^2 + sin^2 = 1 to the test dtype's precision and rotating back inverts exactly
    angles = np.arange(4, 13)[:, None] * 0.3 ** np.arange(rotary_dim // 2)
    cos, sin = np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)
    y = reference.rope_forward(x, cos, sin, style)
    close(cpu.rope_forward(x, cos, sin, style), y, dtype)
    close(cpu.rope_backward(y, cos, sin, style), x, dtype)  # rotation back is the inverse
    np.testing.assert_array_equal(y[..., rotary_dim:], x[..., rotary_dim:])


@pytest.mark.parametrize("kernels", MODULES)
def test_rope_rejects_bad_style_and_tables(kernels):
    cos, sin = reference.rope_cos_sin(np.arange(4), 8)
    with pytest.raises(ValueError, match="'llama'"):
        kernels.rope_forward(np.zeros((4, 8)), cos, sin, "llama")
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        kernels.rope_forward(np.zeros((4, 6)), cos, sin, "neox")  # R = 8 > D = 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_backward_matches_reference_and_adds_repeats(dtype):
    rng = np.random.default_rng(6)
    ids = rng.integers(0, 7, size=(3, 11))  # 33 ids into 7 rows: many repeats
    dy = randn(rng, (3, 11, 5), dtype)
    got = cpu.embedding_backward(ids, dy, 9)  # rows 7 and 8 are never picked
    close(got, reference.embedding_backward(ids, dy, 9), dtype)
    by_hand = np.zeros((9, 5))
    for i, row in zip(ids.reshape(-1), dy.reshape(-1, 5)):
        by_hand[i] += row
    close(got, by_hand.astype(dtype), dtype)
    assert not got[7:].any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_adamw_matches_reference(dtype):
    rng = np.random.default_rng(6)
    ref = [randn(rng, (7, 13), dtype) for _ in range(4)]
    ref[3] = np.abs(ref[3])
    fast = [a.copy() for a in ref]
    for step in (1, 2, 3):
        reference.adamw_step(*ref, step, 1e-2, 0.9, 0.95, 1e-8, 0.1)
        cpu.adamw_step(*fast, step, 1e-2, 0.9, 0.95, 1e-8, 0.1)
    for got, want in zip(fast, ref):
        close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_max_equals_numpy_at_every_length(dtype):
    """The 8-way row max (softmax tiles, cross entropy): every tail length, -inf entries,
    the maximum in each of the 8 lanes, and an empty row (-inf)."""
    rng = np.random.default_rng(0)
    assert cpu._row_max(np.empty(0, dtype)) == -np.inf
    for n in range(1, 40):
        for where in range(n):
            r = rng.standard_normal(n).astype(dtype)
            r[rng.random(n) < 0.3] = -np.inf
            r[where] = 10.0  # the maximum, at every position in turn
            assert cpu._row_max(r) == 10.0
        r = np.full(n, -np.inf, dtype)
        assert cpu._row_max(r) == -np.inf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 13), (1,), (3, 4, 5), (0,)])
def test_sum_of_squares_matches_reference(dtype, shape):
    x = randn(np.random.default_rng(12), shape, dtype) * 1e3
    want = reference.sum_of_squares(x)
    got = cpu.sum_of_squares(x)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=1e-12, abs=0)  # both sum exact float64 squares
    assert cpu.sum_of_squares(x.T) == pytest.approx(want, rel=1e-12)  # not contiguous


def test_unsupported_dtype_falls_back_to_reference():
    x = np.linspace(-2, 2, 12, dtype=np.float16).reshape(3, 4)
    np.testing.assert_array_equal(cpu.softmax_forward(x), reference.softmax_forward(x))
    assert cpu.gelu_forward(x).dtype == np.float16


# ------------------------------------------------------------------------ attention


def check_attention(*args, **kwargs):
    """The numba kernels against the reference (see attention_cases.check_attention)."""
    return _check_attention(cpu, *args, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, H, T, S, D, causal, window", SHAPES)
@pytest.mark.parametrize("group_bytes", [1 << 21, 1, 16 * 40 * 4 * 2])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("key_block", [4096, 7])
def test_attention_matches_reference(monkeypatch, dtype, B, H, T, S, D, causal, window,
                                     group_bytes, threads, key_block):
    monkeypatch.setattr(cpu, "ATTENTION_BLOCK", 16)  # several blocks at small sizes
    # a block's keys in one chunk, or in chunks of 7 (the online softmax rescales; the
    # last chunk is partial, and in local layers whole chunks may be invisible to a row)
    monkeypatch.setattr(cpu, "ATTENTION_KEY_BLOCK", key_block)
    # all heads in one group, one head per group, or a couple of heads per group
    monkeypatch.setattr(cpu, "ATTENTION_GROUP_BYTES", group_bytes)
    use_threads(monkeypatch, threads)
    rng = np.random.default_rng(7)
    check_attention(*attention_inputs(rng, B, H, T, S, D, dtype), dtype, causal, window)


@pytest.mark.parametrize("causal, window", [(True, None), (True, 5), (False, None)])
@pytest.mark.parametrize("key_block", [4096, 6])
def test_attention_float32_peaked_scores(monkeypatch, causal, window, key_block):
    # scale 40: scores span hundreds of nats, so most probabilities fall below exp(-87),
    # where the vectorised float32 exp returns exactly 0 (the reference: a subnormal or 0).
    # The gradients are then ill-conditioned in float32 (dS carries the factor 40), so both
    # float32 implementations are judged against float64 truth: numba's error may be at
    # most twice the float32 reference's own.
    monkeypatch.setattr(cpu, "ATTENTION_BLOCK", 16)
    monkeypatch.setattr(cpu, "ATTENTION_KEY_BLOCK", key_block)  # later chunks rescale earlier
    rng = np.random.default_rng(11)
    q, k, v, dout = attention_inputs(rng, 2, 2, 37, 37, 8, np.float32)
    args = (causal, window, 40.0)

    def run(kernels, q, k, v, dout):
        out, lse, _ = kernels.attention_forward(q, k, v, *args)  # chunked keys (no weights)
        p = kernels.attention_forward(q, k, v, *args, None, True)[2]
        return (out, lse, p, *kernels.attention_backward(q, k, v, out, lse, dout, *args))

    with np.errstate(over="ignore"):  # the reference's exp of masked-out scores, dropped
        truth = run(reference, *(a.astype(np.float64) for a in (q, k, v, dout)))
        ref32 = run(reference, q, k, v, dout)
    got = run(cpu, q, k, v, dout)
    for name, g, r, t in zip(["out", "lse", "p", "dq", "dk", "dv"], got, ref32, truth):
        assert g.dtype == np.float32
        err, ref_err = np.abs(g - t).max(), np.abs(r - t).max()
        assert err <= 2 * ref_err + 1e-6, (name, err, ref_err)
    p = got[2]
    assert (p == 0).mean() > 0.6 and np.isfinite(got[1]).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1, rtol=1e-6)


@pytest.mark.parametrize("B, H, per_head, budget, parts", [
    (3, 5, 100, 1 << 20, 1),  # everything in one group
    (3, 5, 100, 1000, 1),  # 10 heads a group: two whole batch elements
    (3, 5, 100, 300, 1),  # 3 heads a group: batch elements split
    (2, 4, 5000, 100, 1),  # a head over the budget still gets a group of its own
    (12, 4, 100, 1 << 20, 2),  # two threads: two groups of 6 batch elements
    (1, 4, 100, 1 << 20, 2),  # one batch element: its heads split
    (1, 3, 100, 1 << 20, 8),  # more threads than heads: a head each
])
def test_attention_head_groups_cover_every_head_once(monkeypatch, B, H, per_head, budget,
                                                     parts):
    monkeypatch.setattr(cpu, "ATTENTION_GROUP_BYTES", budget)
    seen = np.zeros((B, H), dtype=int)
    groups = list(cpu._head_groups(B, H, per_head, 1, 1, parts))
    for g in groups:
        seen[g] += 1
        assert seen[g].size * per_head <= budget or seen[g].size == 1
    assert (seen == 1).all()
    assert len(groups) >= min(parts, B * H)  # work for every thread


def use_threads(monkeypatch, threads):
    """Run attention's head groups on ``threads`` threads even at test sizes."""
    monkeypatch.setattr(cpu, "ATTENTION_THREADS", threads)
    monkeypatch.setattr(cpu, "ATTENTION_SPLIT_MIN", 0)
    monkeypatch.setattr(cpu, "ATTENTION_SPLIT_HEADS", 0)


def test_attention_threads_run_every_group_once_and_pass_errors_on():
    done = []

    def work(g):
        done.append(g)
        time.sleep(0.01)  # the groups overlap
        if g == 4:
            raise KeyError("group 4")

    cpu._run_groups(work, list(range(4)), 3)
    assert sorted(done) == [0, 1, 2, 3]
    done.clear()
    with pytest.raises(KeyError, match="group 4"):  # from whichever thread took group 4
        cpu._run_groups(work, list(range(6)), 3)
    assert sorted(done) == list(range(6))  # every thread finished before the error came back


def test_attention_threads_called_from_a_pool_thread_run_inline():
    # waiting on the pool from one of its own threads could hang: there it runs inline
    done = []

    def outer(g):
        cpu._run_groups(done.append, [(g, 0), (g, 1)], 2)

    runner = threading.Thread(target=cpu._run_groups, args=(outer, [0, 1, 2, 3], 2),
                              daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "nested _run_groups hung"
    assert sorted(done) == [(g, i) for g in range(4) for i in range(2)]


def test_attention_threads_at_interpreter_shutdown():
    # an atexit handler (or a thread outliving the main one) may run attention after the
    # thread pools shut down: no new threads then, so the caller does all the work
    code = ("import atexit, numpy as np, tinygpt; from tinygpt.kernels import cpu, reference; "
            "cpu.ATTENTION_THREADS = 2; cpu.ATTENTION_SPLIT_MIN = 0; "
            "cpu.ATTENTION_SPLIT_HEADS = 0; "
            "q = np.random.default_rng(0).standard_normal((4, 2, 8, 4)); "
            "cpu.attention_forward(q, q, q); "  # a pool exists from here on
            "atexit.register(lambda: print(np.allclose(cpu.attention_forward(q, q, q)[0], "
            "reference.attention_forward(q, q, q)[0])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True"], out.stderr


def test_attention_threads_keep_the_callers_errstate():
    seen = []
    with np.errstate(over="raise"):
        cpu._run_groups(lambda g: seen.append(np.geterr()["over"]), list(range(4)), 2)
    assert seen == ["raise"] * 4


@pytest.mark.parametrize("shape, window, forward, backward", [
    # config a: one tile a head, heads on 2 threads
    ((12, 4, 64, 64, 32), None, (64, 4096, 2), (64, 128, 2)),
    ((16, 4, 128, 128, 32), None, (64, 4096, 2), (64, 128, 2)),  # 128 rows: BLAS would thread
    # config b: the forward in one 16 x 256 tile a block, the backward in 64 x 64 tiles
    ((16, 6, 256, 256, 64), None, (16, 4096, 2), (64, 64, 2)),
    ((4, 4, 2048, 2048, 64), 128, (16, 4096, 2), (64, 64, 2)),  # local: 16 rows see 143 keys
    ((8, 6, 512, 512, 64), None, (64, 64, 2), (64, 64, 2)),  # 16 x 512 x 64 too big: chunks
    ((4, 4, 256, 256, 1024), None, (16, 16, 2), (16, 16, 2)),  # huge heads: the smallest tiles
    ((4, 4, 256, 256, 2048), None, (128, 4096, 1), (128, 4096, 1)),  # 16 x 16 x D: threaded BLAS
    ((4, 12, 1024, 1024, 64), None, (128, 4096, 1), (128, 4096, 1)),  # a block sees > 512 keys
    ((1, 4, 2048, 2048, 64), 128, (128, 4096, 1), (128, 4096, 1)),  # 2 heads a thread: too few
    ((1, 4, 1, 200, 64), None, (128, 4096, 1), (128, 4096, 1)),  # a decoding step: too little
])
def test_attention_plan(monkeypatch, shape, window, forward, backward):
    monkeypatch.setattr(cpu, "ATTENTION_THREADS", 2)
    B, H, T, S, D = shape
    for is_backward, plan in ((False, forward), (True, backward)):
        assert cpu._attention_plan(*shape, window, is_backward) == plan
        block, key_block, threads = plan
        if threads > 1:  # every tile product small enough for BLAS to run it on one thread
            keys = min(key_block, cpu._tile_keys(T, S, window, block))
            assert min(T, block) * keys * D <= cpu.BLAS_SERIAL_MNK
    monkeypatch.setattr(cpu, "ATTENTION_THREADS", 1)
    for is_backward in (False, True):
        assert cpu._attention_plan(*shape, window, is_backward) == (
            cpu.ATTENTION_BLOCK, cpu.ATTENTION_KEY_BLOCK, 1)


def test_window_larger_than_sequence_equals_global():
    rng = np.random.default_rng(8)
    q, k, v, _ = attention_inputs(rng, 1, 2, 20, 20, 4, np.float64)
    np.testing.assert_array_equal(cpu.attention_forward(q, k, v, True, 64)[0],
                                  cpu.attention_forward(q, k, v, True, None)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal, window", [(True, None), (True, 6), (False, None)])
@pytest.mark.parametrize("group_bytes", [1 << 21, 1])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("key_block", [4096, 5])
def test_attention_padding_mask_with_fully_masked_rows(monkeypatch, dtype, causal, window,
                                                       group_bytes, threads, key_block):
    monkeypatch.setattr(cpu, "ATTENTION_BLOCK", 16)
    monkeypatch.setattr(cpu, "ATTENTION_KEY_BLOCK", key_block)  # padding fills whole chunks
    monkeypatch.setattr(cpu, "ATTENTION_GROUP_BYTES", group_bytes)  # one head per group, too
    use_threads(monkeypatch, threads)
    check_padding_mask_with_fully_masked_rows(cpu, dtype, causal, window)


@pytest.mark.parametrize("kernels", ATTENTION_MODULES)
def test_attention_rejects_bad_arguments(kernels):
    q = np.zeros((1, 1, 4, 2))
    with pytest.raises(ValueError, match="window=3"):
        kernels.attention_forward(q, q, q, causal=False, window=3)
    with pytest.raises(ValueError, match="S=2 < T=4"):
        kernels.attention_forward(q, q[:, :, :2], q[:, :, :2])
    with pytest.raises(ValueError, match="int64"):
        kernels.attention_forward(q, q, q, mask=np.ones((4, 4), dtype=np.int64))


@settings(max_examples=20, deadline=None)
@given(
    T=st.integers(1, 40),
    extra=st.integers(0, 10),
    D=st.integers(1, 9),
    window=st.one_of(st.none(), st.integers(1, 50)),
    block=st.sampled_from([1, 8, 32]),
    key_block=st.sampled_from([1, 3, 16, 4096]),
    seed=st.integers(0, 2**16),
)
def test_attention_property(T, extra, D, window, block, key_block, seed):
    rng = np.random.default_rng(seed)
    old = cpu.ATTENTION_BLOCK, cpu.ATTENTION_KEY_BLOCK
    # hypothesis runs many examples in one test: restore after
    cpu.ATTENTION_BLOCK, cpu.ATTENTION_KEY_BLOCK = block, key_block
    try:
        check_attention(*attention_inputs(rng, 1, 2, T, T + extra, D, np.float64), np.float64,
                        True, window, 0.5)
    finally:
        cpu.ATTENTION_BLOCK, cpu.ATTENTION_KEY_BLOCK = old


# -------------------------------------------------------------------- against torch


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    return torch


def tt(a, grad=False):
    import torch

    return torch.tensor(a, requires_grad=grad)


@pytest.mark.parametrize("kernels", ATTENTION_MODULES)
def test_attention_matches_torch_sdpa(torch, kernels):
    rng = np.random.default_rng(10)
    B, H, T, S, D = 2, 3, 11, 14, 5
    q, k, v, dout = attention_inputs(rng, B, H, T, S, D, np.float64)
    mask = rng.random((B, 1, T, S)) > 0.3
    mask[..., np.arange(T), S - T + np.arange(T)] = True  # every query sees itself: torch
    # returns NaN for a query with no allowed key (tinygpt: zeros, tested above)
    for causal, window in [(True, None), (True, 4), (False, None)]:
        allowed = reference.allowed_keys(T, S, causal, window, np) & mask
        out, lse, _ = kernels.attention_forward(q, k, v, causal, window, None, mask)
        qt, kt, vt = tt(q, True), tt(k, True), tt(v, True)
        o = torch.nn.functional.scaled_dot_product_attention(
            qt, kt, vt, attn_mask=tt(np.broadcast_to(allowed, (B, H, T, S)))
        )
        np.testing.assert_allclose(out, o.detach().numpy(), rtol=1e-10, atol=1e-12)
        o.backward(tt(dout))
        grads = kernels.attention_backward(q, k, v, out, lse, dout, causal, window, None, mask)
        for got, t in zip(grads, (qt, kt, vt)):
            np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernels", MODULES)
def test_cross_entropy_matches_torch(torch, kernels):
    rng = np.random.default_rng(11)
    logits = rng.standard_normal((10, 23)) * 3
    targets = rng.integers(0, 23, 10)
    targets[[0, 4]] = -100
    lt = tt(logits, True)
    want = torch.nn.functional.cross_entropy(lt, tt(targets), ignore_index=-100)
    want.backward(torch.tensor(2.5))
    loss, lse = kernels.cross_entropy_forward(logits, targets, -100)
    np.testing.assert_allclose(loss, want.item(), rtol=1e-12)
    np.testing.assert_allclose(kernels.cross_entropy_backward(logits, targets, lse, 2.5, -100),
                               lt.grad.numpy(), rtol=1e-10, atol=1e-14)
    all_ignored = torch.nn.functional.cross_entropy(lt, tt(np.full(10, -100)))
    assert np.isnan(all_ignored.item())  # the torch behaviour tinygpt copies


@pytest.mark.parametrize("kernels", MODULES)
def test_softmax_layer_norm_gelu_match_torch_autograd(torch, kernels):
    F = torch.nn.functional
    rng = np.random.default_rng(12)
    x, dy = rng.standard_normal((4, 6, 32)) * 2, rng.standard_normal((4, 6, 32))
    w, b = rng.standard_normal(32), rng.standard_normal(32)
    tol = dict(rtol=1e-10, atol=1e-12)

    xt = tt(x, True)
    F.softmax(xt, -1).backward(tt(dy))
    y = kernels.softmax_forward(x)
    np.testing.assert_allclose(y, F.softmax(tt(x), -1).numpy(), **tol)
    np.testing.assert_allclose(kernels.softmax_backward(y, dy), xt.grad.numpy(), **tol)

    xt = tt(x, True)
    F.log_softmax(xt, -1).backward(tt(dy))
    y = kernels.log_softmax_forward(x)
    np.testing.assert_allclose(y, F.log_softmax(tt(x), -1).numpy(), **tol)
    np.testing.assert_allclose(kernels.log_softmax_backward(y, dy), xt.grad.numpy(), **tol)

    xt, wt, bt = tt(x, True), tt(w, True), tt(b, True)
    yt = F.layer_norm(xt, (32,), wt, bt, 1e-5)
    yt.backward(tt(dy))
    y, mean, rstd = kernels.layer_norm_forward(x, w, b, 1e-5)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    for got, t in zip(kernels.layer_norm_backward(dy, x, w, mean, rstd), (xt, wt, bt)):
        np.testing.assert_allclose(got, t.grad.numpy(), **tol)

    for approximate in ("tanh", "none"):
        xt = tt(x, True)
        yt = F.gelu(xt, approximate=approximate)
        yt.backward(tt(dy))
        np.testing.assert_allclose(kernels.gelu_forward(x, approximate), yt.detach().numpy(), **tol)
        np.testing.assert_allclose(kernels.gelu_backward(x, dy, approximate), xt.grad.numpy(),
                                   **tol)


def test_exact_gelu_matches_torch_over_its_range(torch):
    x = np.linspace(-12, 12, 48001)
    want = torch.nn.functional.gelu(tt(x), approximate="none").numpy()
    for kernels in MODULES:
        got = kernels.gelu_forward(x, "none")
        core = np.abs(x) <= 5
        np.testing.assert_allclose(got[core], want[core], rtol=1e-9)
        # beyond |x| ~ 6, 0.5 * x * (1 + erf) cancels in both libraries: the results are
        # rounding noise of size ~x * 1e-16, so compare absolutely there
        np.testing.assert_allclose(got, want, rtol=0, atol=5e-15)


def test_rope_tables_and_rotation_match_hugging_face_formula(torch):
    # HF GPT-NeoX: inv_freq in float32, emb = cat(freqs, freqs), q * cos + rotate_half(q) * sin
    R, T, base = 8, 7, 10000
    inv_freq = 1.0 / (base ** (torch.arange(0, R, 2, dtype=torch.int64).float() / R))
    freqs = torch.outer(torch.arange(T).float(), inv_freq)
    cos, sin = reference.rope_cos_sin(np.arange(T), R, base)
    np.testing.assert_allclose(cos, freqs.cos().numpy(), rtol=0, atol=2e-7)  # float32 ulps
    np.testing.assert_allclose(sin, freqs.sin().numpy(), rtol=0, atol=2e-7)
    x = np.random.default_rng(13).standard_normal((2, T, 12)).astype(np.float32)
    xr = tt(x[..., :R])
    rotated = torch.cat([-xr[..., R // 2:], xr[..., : R // 2]], dim=-1)
    emb = torch.cat([freqs, freqs], dim=-1)
    want = xr * emb.cos() + rotated * emb.sin()
    for kernels in MODULES:
        got = kernels.rope_forward(x, cos, sin, "neox")
        np.testing.assert_allclose(got[..., :R], want.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernels", MODULES)
def test_adamw_matches_torch(torch, kernels):
    rng = np.random.default_rng(14)
    param = rng.standard_normal((5, 9)).astype(np.float32)
    grads = [rng.standard_normal((5, 9)).astype(np.float32) for _ in range(4)]
    pt = tt(param.copy(), True)
    opt = torch.optim.AdamW([pt], lr=3e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    exp_avg, exp_avg_sq = np.zeros_like(param), np.zeros_like(param)
    for step, g in enumerate(grads, start=1):
        pt.grad = tt(g)
        opt.step()
        kernels.adamw_step(param, g, exp_avg, exp_avg_sq, step, 3e-2, 0.9, 0.95, 1e-8, 0.1)
    state = opt.state[pt]
    # same operations in the same order, each rounded to float32: at most an ulp or two
    for got, want in [(param, pt), (exp_avg, state["exp_avg"]),
                      (exp_avg_sq, state["exp_avg_sq"])]:
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=3e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_nan_logit_makes_the_cross_entropy_nan(dtype):
    """A NaN in any column reaches the loss (the vectorised float32 exp alone would turn it
    into a probability of 0), as in the reference."""
    rng = np.random.default_rng(0)
    for col in (0, 5, 15):
        x = rng.standard_normal((2, 16)).astype(dtype)
        x[0, col] = np.nan
        loss, lse = cpu.cross_entropy_forward(x, np.array([5, 5]))
        assert np.isnan(loss) and np.isnan(lse[0]) and np.isfinite(lse[1])


@pytest.mark.parametrize("window", [None, 7])
def test_attention_in_float16_takes_the_blockwise_path(window):
    """numba is compiled for float32/float64 only; float16 goes to blockwise.py's array
    code (tiles, never T x S), judged against float64 truth: its error at most twice the
    float16 reference's own, plus a few float16 ulps."""
    rng = np.random.default_rng(8)
    q, k, v, dout = attention_inputs(rng, 2, 2, 37, 40, 8, np.float16)
    got_out, got_lse, _ = cpu.attention_forward(q, k, v, True, window)
    got = (got_out, got_lse, *cpu.attention_backward(q, k, v, got_out, got_lse, dout, True,
                                                     window))
    ref_out, ref_lse, _ = reference.attention_forward(q, k, v, True, window)
    ref = (ref_out, ref_lse, *reference.attention_backward(q, k, v, ref_out, ref_lse, dout,
                                                           True, window))
    wide = [a.astype(np.float64) for a in (q, k, v, dout)]
    t_out, t_lse, _ = reference.attention_forward(*wide[:3], True, window)
    truth = (t_out, t_lse, *reference.attention_backward(*wide[:3], t_out, t_lse, wide[3],
                                                         True, window))
    for name, g, r, t in zip(["out", "lse", "dq", "dk", "dv"], got, ref, truth):
        assert g.dtype == np.float16, name
        err, ref_err = np.abs(g - t).max(), np.abs(r - t).max()
        assert err <= 2 * ref_err + 4e-3, (name, err, ref_err)


def test_attention_in_float16_never_holds_the_score_matrix():
    rng = np.random.default_rng(3)
    q, k, v, dout = attention_inputs(rng, 1, 1, 2048, 2048, 8, np.float16)
    tracemalloc.start()
    try:
        out, lse, _ = cpu.attention_forward(q, k, v, window=16)
        cpu.attention_backward(q, k, v, out, lse, dout, window=16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2048 * 2048 * 2 / 4, peak  # a quarter of one head's float16 scores


def test_attention_forward_copies_only_the_keys_a_window_reaches(monkeypatch):
    """With short query blocks the forward lays k^T out contiguously (cpu._transposed): a
    local window over a long KV cache copies the keys its queries may see, not all S."""
    monkeypatch.setattr(cpu, "ATTENTION_BLOCK", 16)
    copied = []

    def transposed(x, copy):
        copied.append((x.shape[2], copy))
        return transposed_keys(x, copy)

    transposed_keys = cpu._transposed
    monkeypatch.setattr(cpu, "_transposed", transposed)
    rng = np.random.default_rng(6)
    T, S, window = 40, 3000, 8
    q, k, v, dout = attention_inputs(rng, 1, 2, T, S, 4, np.float64)
    out, lse, _ = cpu.attention_forward(q, k, v, True, window)
    assert copied and all(c for _, c in copied) and max(n for n, _ in copied) == T + window - 1
    ref, ref_lse, _ = reference.attention_forward(q, k, v, True, window)
    close(out, ref, np.float64)
    close(lse, ref_lse, np.float64)


@pytest.mark.parametrize("key_block", [4096, 4])
def test_attention_output_of_huge_values_stays_finite(monkeypatch, key_block):
    monkeypatch.setattr(cpu, "ATTENTION_KEY_BLOCK", key_block)
    check_huge_values_stay_finite(cpu)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key_block", [4096, 3])  # one chunk, or the NaN key in later chunks
def test_a_nan_key_poisons_exactly_the_queries_that_see_it(monkeypatch, dtype, key_block):
    """Queries at or after a NaN key (causal) get NaN outputs, as in the reference; the
    queries before it stay finite."""
    monkeypatch.setattr(cpu, "ATTENTION_KEY_BLOCK", key_block)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 8, 4)).astype(dtype) for _ in range(3))
    k[0, 0, 3, 1] = np.nan
    out, _, _ = cpu.attention_forward(q, k, v)
    ref, _, _ = reference.attention_forward(q, k, v)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    assert np.isnan(out[0, 0, 3:]).all() and np.isfinite(out[0, 0, :3]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("key_block", [4096, 3])  # every chunk of the NaN query's is all NaN
def test_a_nan_query_gives_nan_not_zeros(monkeypatch, dtype, key_block):
    """A NaN query scores NaN against every key; the row max passes over NaN, which must not
    make the row look empty (zeros): NaN output, lse and gradients, as the reference gives."""
    monkeypatch.setattr(cpu, "ATTENTION_KEY_BLOCK", key_block)
    rng = np.random.default_rng(1)
    q, k, v, dout = (rng.standard_normal((1, 2, 8, 4)).astype(dtype) for _ in range(4))
    q[0, 1, 5, 2] = np.nan
    out, lse, _ = cpu.attention_forward(q, k, v)
    ref, ref_lse, _ = reference.attention_forward(q, k, v)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isnan(lse), np.isnan(ref_lse))
    assert np.isnan(out[0, 1, 5]).all() and np.isfinite(np.delete(out[0, 1], 5, axis=0)).all()
    dq, dk, dv = cpu.attention_backward(q, k, v, out, lse, dout)
    # NaN where the NaN query reaches: its own dq row, and dv, dk of the keys it sees (dk
    # = dS^T q also carries 0 * NaN into the NaN feature of later keys, as the reference's
    # dense matmuls do everywhere); the other head stays finite
    for g, rows in ((dq, [5]), (dv, range(6))):
        want = np.zeros(g.shape, dtype=bool)
        want[0, 1, list(rows)] = True
        np.testing.assert_array_equal(np.isnan(g), want)
    assert np.isnan(dk[0, 1, :6]).all() and np.isfinite(dk[0, 0]).all()
    # the reference agrees wherever the gradient is truly NaN (its dense matmuls add more)
    for g, w in zip((dq, dk, dv), reference.attention_backward(q, k, v, ref, ref_lse, dout)):
        assert np.isnan(w[np.isnan(g)]).all()


@pytest.mark.parametrize("kernels", ATTENTION_MODULES)
@pytest.mark.parametrize("shape", [(1, 0, 4, 8), (0, 2, 4, 8), (1, 2, 0, 8)])
def test_attention_with_no_heads_no_batch_or_no_keys_is_empty(kernels, shape):
    q = np.zeros(shape, np.float32)
    out, lse, _ = kernels.attention_forward(q, q, q)
    assert out.shape == shape and lse.shape == shape[:3]
    assert all(g.shape == shape for g in kernels.attention_backward(q, q, q, out, lse, q))
    weights = kernels.attention_forward(q, q, q, need_weights=True)[2]
    assert weights.shape == shape[:3] + shape[2:3]
