"""numba kernels for the CPU: the same functions as ``reference.py``, fused and parallel.

Each op is one pass per row (softmax, cross entropy, layer norm, rope) or per element (gelu,
adamw) in a ``@njit(parallel=True)`` loop over ``prange``, with the forward and backward
kernels side by side. Row sums accumulate in float64 even for float32 data, so results agree
with the reference to float32 rounding. Attention is blocked: NumPy's matmul (BLAS) forms the
tile products, in parallel (numba's own ``np.dot`` would need SciPy, not a tinygpt
dependency); one serial numba pass per tile masks, exponentiates (the vectorised float32 exp
of the GELU section) and normalises. Groups of heads share the cores on Python threads.

The thin Python wrappers hand float32/float64 NumPy arrays to numba; anything else (another
dtype, mixed dtypes) falls back to the reference implementation (attention to
``blockwise.py``, which never holds T x S scores either). ``cache=True`` keeps the compiled
machine code on disk, so only the very first import on a machine pays the JIT cost.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from types import FunctionType

import numba
import numpy as np
from numba import njit, prange

from tinygpt import _openblas
from tinygpt.kernels import blockwise, reference

# numba's threading layer (workqueue) is chosen on `import tinygpt`: see kernels/__init__.py.

rope_cos_sin = reference.rope_cos_sin  # table setup, not a hot loop: shared as it is

# Query rows per attention tile. 128 rather than 64: fewer, larger BLAS calls (forward +
# backward of one layer right after a matmul, A/B in one process: config b's T=256 72.0 ->
# 64.4 ms, T=1024 global 183 -> 166 ms, T=2048 local 26.2 -> 25.3 ms; config a's T=64 is
# one tile either way); 256 was no better at T=1024.
ATTENTION_BLOCK = 128

# Keys per tile at most: a block of queries takes its keys in chunks of this many, with
# the online softmax (FlashAttention's), so a tile never exceeds 128 x 4096 scores (2 MB a
# head in float32) however long the context. Below that, one chunk is fastest on one
# thread, where BLAS threads each product (T=2048 global, B=1, H=12, forward + backward:
# chunks of 512 keys 288 ms, 1024 267 ms, all 2048 at once 239 ms). Threads use smaller
# tiles: see _attention_plan.
ATTENTION_KEY_BLOCK = 4096

# Heads per BLAS call and numba pass: as many as keep their score tiles under this size,
# about the two cores' L2 caches, so the numba pass reads a tile the BLAS call just wrote
# from cache, not memory (all heads at once, config b's tiles were 12.6 MB). One layer
# forward + backward right after a matmul, the two alternating in one process: config b
# (B=16, H=6, T=256) 54.5-64.9 -> 49.6-58.7 ms (faster in 14/15, 15/15 and 38/40 pairs;
# 1 MB, 4 MB, 512 KB were 1-3 ms behind 2 MB); B=4, H=12, T=1024 global 389 -> 354 ms. In
# the host's slow spells (the same layer at 88-108 ms) it was even. Nothing changes where
# all heads fit already (config a; B=1, H=4 up to T=2048 local).
ATTENTION_GROUP_BYTES = 1 << 21

# LLVM may only vectorise a floating-point sum if it may reorder it ("reassoc"), and fuse
# a*b+c ("contract"). Kernels whose loops are sums get these two flags (2-4x faster layer
# norm); none of the flags that assume no NaN or inf, so masked -inf scores stay exact.
SUMS = {"reassoc", "contract"}

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Below this many elements a kernel runs on the calling thread. In a training step every
# kernel runs right after a BLAS call, while OpenBLAS's threads still spin on the other
# cores, so numba's threads get little CPU there: waking them costs ~100 us (AdamW on 128
# floats: 102 -> 9 us serial), and even large kernels gained nothing from them. Measured
# in-model, the two paths alternating step by step in one process (2 cores): config a (up
# to 393K elements) step 48.1 -> 44.3 ms serial (layer norm forward 1.62 -> 0.73 ms, AdamW
# 1.74 -> 0.95 ms a step); config b (GELU on 6.3M elements) 1987 vs 1995 ms, every kernel
# within 0.5 ms or faster serial. Alone, without BLAS before them, the threads do pay.
PARALLEL_MIN = 1 << 24


def _kernel(parallel: bool = False, **options):
    """``@njit`` as every kernel here uses it, and for a parallel kernel a serial twin.

    - ``cache=True``: the machine code is kept on disk, JIT cost is paid once per install.
    - ``error_model="numpy"``: x / 0 gives inf or nan as in NumPy. numba's default (Python's)
      checks every division for ZeroDivisionError, and that branch stops LLVM from making
      SIMD code of the loop (AdamW on 64K floats: 288 -> 42 us).
    - ``kernel.serial``: the same function compiled without threads, picked by ``_pick``.
      It is a copy under its own name, so numba's on-disk cache keeps the two apart.
    """

    def wrap(fn):
        kernel = njit(cache=True, error_model="numpy", parallel=parallel, **options)(fn)
        if parallel:
            twin = FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                fn.__defaults__, fn.__closure__)
            twin.__qualname__ = fn.__qualname__ + "_serial"
            kernel.serial = njit(cache=True, error_model="numpy", **options)(twin)
        return kernel

    return wrap


def _pick(kernel, n_elements: int):
    """The parallel kernel when there is enough work to share, else its serial twin."""
    return kernel if n_elements >= PARALLEL_MIN else kernel.serial



def _numba_ok(*arrays) -> bool:
    """True when all arrays are NumPy arrays of one float dtype numba was compiled for."""
    first = arrays[0]
    return (
        isinstance(first, np.ndarray)
        and first.dtype in _FAST_DTYPES
        and all(isinstance(a, np.ndarray) and a.dtype == first.dtype for a in arrays)
    )


@njit(inline="always")
def _chunk_rows(chunk, n_chunks, n_rows):
    """Rows [lo, hi) of task ``chunk`` when n_rows rows are shared out among n_chunks tasks."""
    return chunk * n_rows // n_chunks, (chunk + 1) * n_rows // n_chunks


def _rows(x) -> np.ndarray:
    """View x (..., C) as a C-contiguous (rows, C) matrix (copies only if it must)."""
    return np.ascontiguousarray(x).reshape(math.prod(x.shape[:-1]), x.shape[-1])


# ----------------------------------------------------------------------------- softmax


@_kernel(parallel=True)
def _softmax_forward(x, y):
    for r in prange(x.shape[0]):
        m = -np.inf
        for c in range(x.shape[1]):
            m = max(m, x[r, c])
        total = 0.0
        for c in range(x.shape[1]):
            e = math.exp(x[r, c] - m)
            y[r, c] = e
            total += e
        inv = 1.0 / total
        for c in range(x.shape[1]):
            y[r, c] *= inv


@_kernel(parallel=True, fastmath=SUMS)
def _softmax_backward(y, dy, dx):
    for r in prange(y.shape[0]):
        dot = 0.0
        for c in range(y.shape[1]):
            dot += dy[r, c] * y[r, c]
        for c in range(y.shape[1]):
            dx[r, c] = y[r, c] * (dy[r, c] - dot)


@_kernel(parallel=True)
def _log_softmax_forward(x, y):
    for r in prange(x.shape[0]):
        m = -np.inf
        for c in range(x.shape[1]):
            m = max(m, x[r, c])
        total = 0.0
        for c in range(x.shape[1]):
            total += math.exp(x[r, c] - m)
        shift = m + math.log(total)
        for c in range(x.shape[1]):
            y[r, c] = x[r, c] - shift


@_kernel(parallel=True, fastmath=SUMS)
def _log_softmax_backward(y, dy, dx):
    for r in prange(y.shape[0]):
        total = 0.0
        for c in range(y.shape[1]):
            total += dy[r, c]
        for c in range(y.shape[1]):
            dx[r, c] = dy[r, c] - math.exp(y[r, c]) * total


def _rowwise(kernel, fallback, *arrays):
    """Run a row kernel over (..., C) arrays, writing a new array shaped like the first."""
    if not _numba_ok(*arrays):
        return fallback(*arrays)
    rows = [_rows(a) for a in arrays]
    out = np.empty_like(rows[0])
    _pick(kernel, out.size)(*rows, out)
    return out.reshape(arrays[0].shape)


def softmax_forward(x):
    """Softmax over the last axis (see reference.softmax_forward)."""
    return _rowwise(_softmax_forward, reference.softmax_forward, x)


def softmax_backward(y, dy):
    """Gradient of softmax given its output y (see reference.softmax_backward)."""
    return _rowwise(_softmax_backward, reference.softmax_backward, y, dy)


def log_softmax_forward(x):
    """log(softmax(x)) over the last axis (see reference.log_softmax_forward)."""
    return _rowwise(_log_softmax_forward, reference.log_softmax_forward, x)


def log_softmax_backward(y, dy):
    """Gradient of log_softmax given its output y (see reference.log_softmax_backward)."""
    return _rowwise(_log_softmax_backward, reference.log_softmax_backward, y, dy)


# ----------------------------------------------------------------------- cross entropy


# Rows are taken in chunks, so each task allocates its scratch once; the exp is the
# vectorised one of the attention section (float32), numba's scalar math.exp was most of the
# time at a large vocabulary.
_CE_CHUNKS = 16


@_kernel(parallel=True)
def _cross_entropy_forward(logits, targets, ignore_index, fast32, lse, row_loss):
    n_rows, n_cols = logits.shape
    n_chunks = min(n_rows, _CE_CHUNKS)
    for chunk in prange(n_chunks):
        e = np.empty(n_cols, logits.dtype)  # exp(logits - max) of one row
        bits = np.empty(n_cols, np.int32)
        for r in range(*_chunk_rows(chunk, n_chunks, n_rows)):
            row = logits[r]
            m = _row_max(row)
            e[:] = row
            _exp_shifted(e, m, bits, fast32)
            row_lse = m + math.log(_row_sum(e))
            lse[r] = row_lse
            t = targets[r]
            row_loss[r] = 0.0 if t == ignore_index else row_lse - row[t]


@_kernel(parallel=True)
def _cross_entropy_backward(logits, targets, lse, scale, ignore_index, fast32, dlogits):
    n_rows, n_cols = logits.shape
    n_chunks = min(n_rows, _CE_CHUNKS)
    for chunk in prange(n_chunks):
        bits = np.empty(n_cols, np.int32)
        for r in range(*_chunk_rows(chunk, n_chunks, n_rows)):
            d = dlogits[r]
            t = targets[r]
            if t == ignore_index:
                d[:] = 0
                continue
            d[:] = logits[r]
            _exp_shifted(d, lse[r], bits, fast32)  # the softmax probabilities
            for c in range(n_cols):
                d[c] *= scale
            d[t] -= scale


def cross_entropy_forward(logits, targets, ignore_index: int = -100):
    """Mean cross entropy and per-row lse (see reference.cross_entropy_forward)."""
    if not _numba_ok(logits):
        return reference.cross_entropy_forward(logits, targets, ignore_index)
    valid = reference.check_cross_entropy_args(logits, targets, ignore_index)
    logits = np.ascontiguousarray(logits)
    lse = np.empty(logits.shape[0], dtype=logits.dtype)
    row_loss = np.empty(logits.shape[0], dtype=logits.dtype)
    _pick(_cross_entropy_forward, logits.size)(logits, targets.astype(np.int64), ignore_index,
                                               logits.dtype == np.float32, lse, row_loss)
    n_valid = int(valid.sum())
    loss = row_loss.sum() / n_valid if n_valid else float("nan")
    return np.asarray(loss, dtype=logits.dtype), lse


def cross_entropy_backward(logits, targets, lse, grad, ignore_index: int = -100):
    """Gradient of the mean cross entropy (see reference.cross_entropy_backward)."""
    if not _numba_ok(logits, lse):
        return reference.cross_entropy_backward(logits, targets, lse, grad, ignore_index)
    targets = targets.astype(np.int64)
    n_valid = int((targets != ignore_index).sum())
    scale = logits.dtype.type(float(grad) / n_valid if n_valid else 0.0)
    logits = np.ascontiguousarray(logits)
    dlogits = np.empty_like(logits)
    _pick(_cross_entropy_backward, logits.size)(logits, targets, lse, scale, ignore_index,
                                                logits.dtype == np.float32, dlogits)
    return dlogits


# -------------------------------------------------------------------------- layer norm


@_kernel(parallel=True, fastmath=SUMS)
def _layer_norm_forward(x, weight, bias, eps, y, mean, rstd):
    n_cols = x.shape[1]
    for r in prange(x.shape[0]):
        total = 0.0  # sums in float64; elementwise math in the row's own dtype (float32:
        for c in range(n_cols):  # twice the SIMD width; forward on 768 x 128: 68 -> 48 us)
            total += x[r, c]
        mu = x.dtype.type(total / n_cols)
        sq = 0.0
        for c in range(n_cols):
            d = x[r, c] - mu
            sq += d * d
        rs = x.dtype.type(1.0 / math.sqrt(sq / n_cols + eps))
        mean[r] = mu
        rstd[r] = rs
        for c in range(n_cols):
            y[r, c] = (x[r, c] - mu) * rs * weight[c] + bias[c]


@_kernel(parallel=True, fastmath=SUMS)
def _layer_norm_backward(dy, x, weight, mean, rstd, dx, dweight_part, dbias_part):
    # Rows are split into chunks, one partial dweight/dbias row per chunk, so threads
    # never write the same memory; the caller sums the partials.
    n_rows, n_cols = x.shape
    n_chunks = dweight_part.shape[0]
    for chunk in prange(n_chunks):
        for r in range(*_chunk_rows(chunk, n_chunks, n_rows)):
            mu, rs = mean[r], rstd[r]
            sum_g = 0.0
            sum_gx = 0.0
            for c in range(n_cols):
                xhat = (x[r, c] - mu) * rs
                g = dy[r, c] * weight[c]
                sum_g += g
                sum_gx += g * xhat
                dweight_part[chunk, c] += dy[r, c] * xhat
                dbias_part[chunk, c] += dy[r, c]
            mean_g = x.dtype.type(sum_g / n_cols)
            mean_gx = x.dtype.type(sum_gx / n_cols)
            for c in range(n_cols):
                xhat = (x[r, c] - mu) * rs
                dx[r, c] = rs * (dy[r, c] * weight[c] - mean_g - xhat * mean_gx)


def layer_norm_forward(x, weight, bias, eps: float):
    """Layer norm over the last axis: ``(y, mean, rstd)`` (see reference.layer_norm_forward)."""
    n_cols = x.shape[-1]
    weight_ = np.ones(n_cols, x.dtype) if weight is None else weight
    bias_ = np.zeros(n_cols, x.dtype) if bias is None else bias
    if not _numba_ok(x, weight_, bias_):
        return reference.layer_norm_forward(x, weight, bias, eps)
    x2 = _rows(x)
    y = np.empty_like(x2)
    mean = np.empty(x2.shape[0], x.dtype)
    rstd = np.empty(x2.shape[0], x.dtype)
    _pick(_layer_norm_forward, x2.size)(x2, np.ascontiguousarray(weight_),
                                        np.ascontiguousarray(bias_), float(eps), y, mean, rstd)
    return y.reshape(x.shape), mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])


def layer_norm_backward(dy, x, weight, mean, rstd):
    """``(dx, dweight, dbias)`` of layer norm (see reference.layer_norm_backward)."""
    n_cols = x.shape[-1]
    weight_ = np.ones(n_cols, x.dtype) if weight is None else weight
    if not _numba_ok(dy, x, weight_, mean, rstd):
        return reference.layer_norm_backward(dy, x, weight, mean, rstd)
    dy2, x2 = _rows(dy), _rows(x)
    n_chunks = max(1, min(x2.shape[0], 4 * numba.get_num_threads()))
    dweight_part = np.zeros((n_chunks, n_cols))
    dbias_part = np.zeros((n_chunks, n_cols))
    dx = np.empty_like(x2)
    _pick(_layer_norm_backward, x2.size)(dy2, x2, np.ascontiguousarray(weight_),
                                         mean.reshape(-1), rstd.reshape(-1), dx, dweight_part,
                                         dbias_part)
    dweight = dweight_part.sum(axis=0).astype(x.dtype)
    dbias = dbias_part.sum(axis=0).astype(x.dtype)
    return dx.reshape(x.shape), dweight, dbias


# -------------------------------------------------------------------------------- gelu

_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_GELU_KAPPA = 0.044715
_GELU_K = 2 * math.sqrt(2 / math.pi)

# tanh-GELU as a sigmoid: 0.5 * (1 + tanh(z)) == 1 / (1 + exp(-2z)), so
#   gelu(x) = x / (1 + exp(-u)),  u = 2 sqrt(2/pi) (x + 0.044715 x^3).
# One exp instead of a tanh. numba's math.exp is still a scalar libm call per element
# (LLVM cannot make SIMD code of it without Intel's SVML), so the float32 kernels take the
# exp apart by hand, Cody-Waite style, into multiplies and adds that LLVM does vectorise:
#   exp(u) = 2**n * exp(r),  n = round(u / ln 2),  r = u - n ln 2 in [-ln2/2, ln2/2],
# exp(r) from Cephes' degree-6 expf polynomial (1.4 ulp measured over [-87, 88]), and 2**n
# written straight into a float32's exponent bits: (n + 127) << 23. numba cannot
# reinterpret one scalar's bits, so those go through an int32 array viewed as float32.
# GELU on 393K floats right after a matmul: forward 1.39 -> 0.79 ms, backward 2.02 -> 0.81 ms.
# float64 GELU (gradient checks) uses the NumPy reference, whose exp/tanh are already SIMD.

_GELU_CHUNK = 4096  # elements per parallel task: the chunk and its scratch stay in L1/L2
_EXP_FLAGS = {"contract", "nsz", "arcp", "afn"}  # never reassoc: it would undo the rounding
_f32 = np.float32


@njit(inline="always", fastmath=_EXP_FLAGS)
def _exp32_split(u):
    """exp(u) as (m, n) with exp(u) = m * 2**n, for float32 u; u is clamped to [-87, 88],
    where exp stays a normal float32 (exp(-87) = 1.6e-38 stands in for anything smaller)."""
    u = min(max(u, _f32(-87.0)), _f32(88.0))
    n = np.floor(u * _f32(1.4426950408889634) + _f32(0.5))
    r = u - n * _f32(0.693359375) + n * _f32(2.12194440e-4)  # ln 2 in two parts: exact n*hi
    p = _f32(1.9875691500e-4)
    p = p * r + _f32(1.3981999507e-3)
    p = p * r + _f32(8.3334519073e-3)
    p = p * r + _f32(4.1665795894e-2)
    p = p * r + _f32(1.6666665459e-1)
    p = p * r + _f32(5.0000001201e-1)
    return p * r * r + r + _f32(1.0), n


@njit(inline="always")
def _pow2_bits(n):
    """The int32 bit pattern of the float32 2.0**n, for integral n in [-126, 127]."""
    return (np.int32(n) + np.int32(127)) << 23


@njit(inline="always", fastmath=_EXP_FLAGS)
def _gelu_exp_neg_u(xc, k, k_kappa, out):
    """exp(-u) for a chunk of x, as out * two_n: fills out, returns two_n (float32)."""
    bits = np.empty(xc.size, np.int32)
    for i in range(xc.size):
        v = xc[i]
        m, n = _exp32_split(-(k * v + k_kappa * v * v * v))
        out[i] = m
        bits[i] = _pow2_bits(n)
    return bits.view(np.float32)


@_kernel(parallel=True, fastmath=_EXP_FLAGS)
def _gelu_tanh_forward(x, k, k_kappa, y):
    for c in prange((x.size + _GELU_CHUNK - 1) // _GELU_CHUNK):
        lo, hi = c * _GELU_CHUNK, min(x.size, (c + 1) * _GELU_CHUNK)
        xc, yc = x[lo:hi], y[lo:hi]
        two_n = _gelu_exp_neg_u(xc, k, k_kappa, yc)
        for i in range(xc.size):
            yc[i] = xc[i] / (_f32(1) + yc[i] * two_n[i])


@_kernel(parallel=True, fastmath=_EXP_FLAGS)
def _gelu_tanh_backward(x, dy, k, k_kappa, dx):
    for c in prange((x.size + _GELU_CHUNK - 1) // _GELU_CHUNK):
        lo, hi = c * _GELU_CHUNK, min(x.size, (c + 1) * _GELU_CHUNK)
        xc, dyc, dxc = x[lo:hi], dy[lo:hi], dx[lo:hi]
        two_n = _gelu_exp_neg_u(xc, k, k_kappa, dxc)
        for i in range(xc.size):
            v = xc[i]
            s = _f32(1) / (_f32(1) + dxc[i] * two_n[i])  # sigmoid(u)
            du = k + _f32(3) * k_kappa * v * v  # _f32: an int 3 would make this float64
            dxc[i] = dyc[i] * (s + v * s * (_f32(1) - s) * du)


@_kernel(parallel=True)
def _gelu_erf_forward(x, inv_sqrt_2, half, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = half * v * (1 + math.erf(v * inv_sqrt_2))


@_kernel(parallel=True)
def _gelu_erf_backward(x, dy, inv_sqrt_2, inv_sqrt_2pi, half, dx):
    for i in prange(x.size):
        v = x[i]
        cdf = half * (1 + math.erf(v * inv_sqrt_2))
        dx[i] = dy[i] * (cdf + v * math.exp(-half * v * v) * inv_sqrt_2pi)


def gelu_forward(x, approximate: str = "tanh"):
    """GELU, "tanh" (GPT-2's gelu_new) or "none" (exact erf) (see reference.gelu_forward)."""
    reference.check_gelu_approximation(approximate)
    if not _numba_ok(x) or (approximate == "tanh" and x.dtype != np.float32):
        return reference.gelu_forward(x, approximate)
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    f = flat.dtype.type
    if approximate == "tanh":
        _pick(_gelu_tanh_forward, flat.size)(flat, f(_GELU_K), f(_GELU_K * _GELU_KAPPA), y)
    else:
        _pick(_gelu_erf_forward, flat.size)(flat, f(_INV_SQRT_2), f(0.5), y)
    return y.reshape(x.shape)


def gelu_backward(x, dy, approximate: str = "tanh"):
    """Gradient of GELU, recomputed from x (see reference.gelu_backward)."""
    reference.check_gelu_approximation(approximate)
    if (not _numba_ok(x, dy) or x.shape != dy.shape
            or (approximate == "tanh" and x.dtype != np.float32)):
        return reference.gelu_backward(x, dy, approximate)
    flat = np.ascontiguousarray(x).reshape(-1)
    dflat = np.ascontiguousarray(dy).reshape(-1)
    dx = np.empty_like(flat)
    f = flat.dtype.type
    if approximate == "tanh":
        kernel = _pick(_gelu_tanh_backward, flat.size)
        kernel(flat, dflat, f(_GELU_K), f(_GELU_K * _GELU_KAPPA), dx)
    else:
        kernel = _pick(_gelu_erf_backward, flat.size)
        kernel(flat, dflat, f(_INV_SQRT_2), f(_INV_SQRT_2PI), f(0.5), dx)
    return dx.reshape(x.shape)


# --------------------------------------------------------------------------- attention
#
# Query rows are taken ATTENTION_BLOCK at a time (fewer on threads: see _attention_plan).
# A block whose queries sit at absolute positions p_first..p_last only needs keys
# [p_first - window + 1, p_last] (local) or [0, p_last] (causal): O(T * window) work and
# memory for a local layer. Those keys are taken a chunk at a time (ATTENTION_KEY_BLOCK, or
# the plan's), with FlashAttention's online softmax: each row keeps its running max m and
# sum l of exp(score - m); a chunk's exps are divided by the new l, and the output so far
# is rescaled by l_before * exp(m_before - m_new) / l_new before the chunk's part is
# added, so it is always a weighted mean of v's rows. So a tile is at most (block x
# key_block), never T x S, and only lse (B, H, T) is kept for the backward, which
# recomputes each tile's probabilities from it; there, with lse known, every (query block,
# key chunk) tile is independent.
#
# The tile kernels are serial numba (no prange) on purpose: they sit between BLAS calls,
# and a numba parallel region there competes with OpenBLAS's threads, which keep spinning
# after each call: on a 2-core machine up to 30x slower with numba's OpenMP layer, and still
# slower with workqueue (config b's T=256 layer: forward 43 -> 49 ms, backward 95 -> 111
# ms). Groups of heads share the cores instead, on Python threads (see _run_groups).


def _mask_view(mask, shape):
    """A read-only (B, H, T, S) boolean view of the padding mask (a dummy without one, so
    the kernels compile once)."""
    return np.broadcast_to(np.ones((1, 1, 1, 1), dtype=bool) if mask is None else mask, shape)


@_kernel()
def _visible_keys(pos, k0, n_keys, causal, window):
    """Columns [lo, hi) of a tile starting at key k0 that the query at ``pos`` may see."""
    hi = min(n_keys, pos + 1 - k0) if causal else n_keys
    lo = max(0, pos - window + 1 - k0) if window > 0 else 0
    return lo, max(lo, hi)


# Each tile pass works on one row's visible slice ``row[lo:hi]`` and loops over the whole
# slice: numba makes SIMD code of ``for j in range(r.size)`` over a slice, but not of
# ``for j in range(lo, hi)`` over the row (measured 5x slower per score).


@_kernel(fastmath=_EXP_FLAGS)
def _exp_shifted(r, shift, bits, fast32):
    """In place: r = exp(r - shift). float32 uses the vectorised split exp of the GELU
    section; there anything below exp(-87) (masked -inf scores included) becomes exactly 0,
    which no probability can tell apart: each row's largest term is exp(0) = 1."""
    if fast32:
        low, zero = r.dtype.type(-87.0), r.dtype.type(0)
        for j in range(r.size):
            u = r[j] - shift
            m, n = _exp32_split(u)
            r[j] = zero if u < low else m  # NaN u (a NaN score) is not < low: stays NaN
            bits[j] = _pow2_bits(n)
        two_n = bits[: r.size].view(np.float32)
        for j in range(r.size):
            r[j] *= two_n[j]
    else:
        for j in range(r.size):
            r[j] = math.exp(r[j] - shift)


@_kernel()
def _scale_and_mask(r, scale, use_mask, allowed):
    """In place: r *= scale, and -inf where ``allowed`` is False."""
    if use_mask:
        neg_inf = r.dtype.type(-np.inf)
        for j in range(r.size):
            r[j] = r[j] * scale if allowed[j] else neg_inf
    else:
        for j in range(r.size):
            r[j] *= scale


@_kernel()
def _row_max(r):
    """max(r) (-inf if r is empty), as 8 running maxima. LLVM makes no SIMD code of a max
    reduction, and a single running max waits on each compare before the next: 8
    independent ones overlap (the attention softmax tile at T=256: ~10% faster). A NaN may
    be passed over here; ``_exp_shifted`` keeps it, so it still reaches the loss."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = r.dtype.type(-np.inf)
    n8 = r.size - r.size % 8
    for j in range(0, n8, 8):
        m0, m1, m2, m3 = max(m0, r[j]), max(m1, r[j + 1]), max(m2, r[j + 2]), max(m3, r[j + 3])
        m4, m5, m6, m7 = max(m4, r[j + 4]), max(m5, r[j + 5]), max(m6, r[j + 6]), max(m7, r[j + 7])
    for j in range(n8, r.size):
        m0 = max(m0, r[j])
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@_kernel()
def _any_nan(r):
    for j in range(r.size):
        if r[j] != r[j]:
            return True
    return False


@_kernel(fastmath=SUMS)
def _row_sum(r):
    """sum(r), accumulated in float64."""
    total = 0.0
    for j in range(r.size):
        total += r[j]
    return total


@_kernel(fastmath=SUMS)
def _dot(x, y):
    """sum(x * y), accumulated in float64."""
    total = 0.0
    for j in range(x.size):
        total += x[j] * y[j]
    return total


@_kernel(fastmath=SUMS)
def _dscores(p, dp, d, scale):
    """In place: dp (a row of dO V^T) -> dS * scale = P * (dP - rowsum(dO * O)) * scale."""
    for j in range(p.size):
        dp[j] = p[j] * (dp[j] - d) * scale


@_kernel(nogil=True)  # nogil: head groups run on several threads (see _run_groups)
def _attention_tile_online(s, scale, p0, k0, causal, window, use_mask, mask, m_run, l_run,
                           alpha, first, lse, t0, fast32):
    """One chunk of keys of the online softmax (FlashAttention's), in place. Each query row
    keeps m, its largest score so far (m_run), and l, the sum of exp(score - m) so far
    (l_run, float64; ``first``: no chunk before). The tile s (B, H, rows, keys) becomes
    exp(score - m) / l with this chunk's keys counted in m and l, and alpha the factor that
    rescales the output of the earlier chunks to the new m and l: then out * alpha + s @ v
    is the attention output over all keys so far (a weighted mean of v's rows: it cannot
    overflow), and after a lone chunk s holds the probabilities. lse[..., t0 + row] = m +
    log(l): -inf for a query that saw no key (zero row), NaN for NaN scores. Row i is the
    query at absolute position p0 + i, column j the key at k0 + j; a query's invisible keys
    get exactly 0. ``scale`` has the tile's dtype, so float32 tiles stay float32 like the
    reference."""
    n_b, n_h, n_rows, n_keys = s.shape
    bits = np.empty(n_keys, np.int32)  # scratch for the float32 exp (fast32: s is float32)
    for idx in range(n_b * n_h * n_rows):
        b, h, i = idx // (n_h * n_rows), idx // n_rows % n_h, idx % n_rows
        lo, hi = _visible_keys(p0 + i, k0, n_keys, causal, window)
        row = s[b, h, i]
        row[:lo] = 0
        row[hi:] = 0
        r = row[lo:hi]
        _scale_and_mask(r, scale, use_mask, mask[b, h, i, lo:hi])
        if first:
            m_run[b, h, i], l_run[b, h, i] = -np.inf, 0.0
        m_before, l_before = m_run[b, h, i], l_run[b, h, i]
        m = max(m_before, _row_max(r))
        if m == -np.inf:  # no key to attend to yet: the output so far (zeros) stays
            alpha[b, h, i] = 1
            if _any_nan(r):  # no: only NaN scores (_row_max passes over NaN). NaN, as the
                r[:] = np.nan  # reference gives: a NaN query must not become a zero output
                l_run[b, h, i] = np.nan
            else:
                r[:] = 0
            lse[b, h, t0 + i] = -np.inf if l_run[b, h, i] == 0 else np.nan
            continue
        _exp_shifted(r, m, bits, fast32)  # shifted by the running max: no overflow
        shrink = math.exp(m_before - m)  # the earlier exps under the new max (0 at first)
        total = l_before * shrink + _row_sum(r)  # >= 1: the max's own exp(0) is in it
        inv = r.dtype.type(1.0 / total)
        for j in range(r.size):
            r[j] *= inv
        alpha[b, h, i] = l_before * shrink / total
        m_run[b, h, i], l_run[b, h, i] = m, total
        lse[b, h, t0 + i] = m + math.log(total)


@_kernel(nogil=True)
def _attention_tile_dscores(s, dp, scale, p0, k0, causal, window, use_mask, mask, lse, dout,
                            out, t0, fast32):
    """In place: scores tile s -> probabilities, recomputed from the saved lse, and dp
    (dO V^T) -> dS * scale, both zero wherever the query may not look. dout and out are the
    tile's rows of dO and O: rowsum(dO * O) = rowsum(P * dP) is the softmax's delta."""
    n_b, n_h, n_rows, n_keys = s.shape
    bits = np.empty(n_keys, np.int32)
    for idx in range(n_b * n_h * n_rows):
        b, h, i = idx // (n_h * n_rows), idx // n_rows % n_h, idx % n_rows
        lo, hi = _visible_keys(p0 + i, k0, n_keys, causal, window)
        row, drow = s[b, h, i], dp[b, h, i]
        shift = lse[b, h, t0 + i]
        if shift == -np.inf:  # the query saw nothing: no gradient flows through it
            lo = hi = 0
        row[:lo] = 0
        row[hi:] = 0
        drow[:lo] = 0
        drow[hi:] = 0
        r = row[lo:hi]
        _scale_and_mask(r, scale, use_mask, mask[b, h, i, lo:hi])
        _exp_shifted(r, shift, bits, fast32)
        d = s.dtype.type(_dot(dout[b, h, i], out[b, h, i]))  # float64 sum, back to the dtype
        _dscores(r, drow[lo:hi], d, scale)


def _head_groups(B: int, H: int, rows: int, keys: int, itemsize: int, parts: int = 1):
    """Slices (batch, heads) of groups of heads whose (rows x keys) score tiles take at most
    ATTENTION_GROUP_BYTES together, so a tile is still in the core's cache when the numba
    pass reads it right after the BLAS call that wrote it (and the BLAS call after it), and
    at least ``parts`` groups where there are that many heads, one for each thread."""
    if B == 0 or H == 0:  # nothing to compute (the outputs are empty too)
        return
    per_head = max(1, rows * keys * itemsize)
    n = max(1, ATTENTION_GROUP_BYTES // per_head)  # heads per group
    n = min(n, -(-B * H // max(1, parts)))
    if n >= H:  # whole batch elements
        nb = n // H
        for b0 in range(0, B, nb):
            yield slice(b0, min(B, b0 + nb)), slice(0, H)
    else:
        for b in range(B):
            for h0 in range(0, H, n):
                yield slice(b, b + 1), slice(h0, min(H, h0 + n))


# Head groups run on Python threads, as many as numba's thread count (so
# numba.set_num_threads(1) keeps attention on the calling thread). NumPy's matmul and the
# tile passes (nogil) release the GIL, so threads share the groups out, each calling BLAS on
# its own. That only works while BLAS runs each call on one thread: OpenBLAS does so up to
# m * n * k = 2**18 (65536 * GEMM_MULTITHREAD_THRESHOLD); above it two callers of threaded
# BLAS fight (one layer at B=16, H=4, T=128, D=32: 15 -> 37 ms). So with threads every tile
# product (rows x keys x D, the same size for all five matmuls of a tile) stays under that
# size: the backward takes ATTENTION_SPLIT_ROWS-row tiles and as many keys as fit (config
# b's T=256, D=64: 64 x 64 tiles, 1 to 4 chunks a block); the forward, where every extra
# chunk rescales the output, shrinks the rows first so a block's keys fit one tile (config
# b: 16 x 256; config a: 64 x 64) and only chunks where even ATTENTION_MIN_SPLIT_ROWS rows
# would not fit. One layer of config b, forward + backward, new tiles vs the 16-row tiles of
# both before them, alternating in one process: backward 43.5 -> 32.8 ms, forward even
# (faster 30/30); whole config b steps, median 2050 -> 2008 ms (18/24 faster, mean -98
# ms); config a even (its tiles are as before).
# Threads, not numba's prange: the passes sit between BLAS calls (see above). It pays only
# while OpenBLAS's own threads sleep between calls instead of spinning, which tinygpt asks
# for on import (OPENBLAS_THREAD_TIMEOUT, see tinygpt/_openblas.py). Whole training steps
# on 2 cores, before (OpenBLAS's default, one caller) and after in alternating processes:
# config a 44.8-57.4 -> 39.3-45.6 ms (4 pairs). One caller, with the usual blocks and BLAS
# threading each product, does the work where threads measured slower: under
# ATTENTION_SPLIT_MIN score entries (a decoding step with a KV cache: waking a thread costs
# more than it saves); with fewer than ATTENTION_SPLIT_HEADS heads a thread (B=1, H=4,
# T=2048 local: 25.3 ms on threads vs 21.7 ms on one; B=2 was faster on threads, 18.2 vs
# 20.2 ms at T=1024); where a 64-row block sees more than ATTENTION_SPLIT_MAX_KEYS keys
# (T=1024 global, B=4, H=12: 301 ms in 64 x 64 tiles vs 270 ms in 128 x 1024 ones; T=512
# was faster on threads, 73.5 vs 80 ms); and where even 16 x 16 x D is over BLAS's size.
ATTENTION_SPLIT_MIN = 1 << 16
ATTENTION_SPLIT_ROWS = 64
ATTENTION_MIN_SPLIT_ROWS = 16
ATTENTION_SPLIT_HEADS = 4  # per thread, at least
ATTENTION_SPLIT_MAX_KEYS = 512
ATTENTION_TRANSPOSE_ROWS = 32
BLAS_SERIAL_MNK = 1 << 18
ATTENTION_THREADS: int | None = None  # None: numba.get_num_threads(), 1 if BLAS threads spin
# threads only where measured: NumPy's BLAS is OpenBLAS and its idle threads nap
_THREADS_PAY = _openblas.THREADS_NAP and _openblas.numpy_uses_openblas()

_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool)


def _attention_plan(B: int, H: int, T: int, S: int, D: int, window: int | None,
                    backward: bool = False):
    """``(block, key_block, threads)``: query rows and keys per tile, and how many threads
    share the heads."""
    # BLAS threads that spin (NumPy was loaded before tinygpt) would leave no core free
    threads = ATTENTION_THREADS or (numba.get_num_threads() if _THREADS_PAY else 1)
    block, key_block = ATTENTION_BLOCK, ATTENTION_KEY_BLOCK
    rows = min(block, ATTENTION_SPLIT_ROWS)
    if (threads > 1 and B * H * T * _tile_keys(T, S, window, block) >= ATTENTION_SPLIT_MIN
            and B * H >= ATTENTION_SPLIT_HEADS * threads
            and _tile_keys(T, S, window, rows) <= ATTENTION_SPLIT_MAX_KEYS):
        smallest = min(ATTENTION_MIN_SPLIT_ROWS, block)
        if not backward:  # the forward: fewest chunks (each rescales the output so far)
            r = rows
            while r >= smallest and min(T, r) * _tile_keys(T, S, window, r) * D > BLAS_SERIAL_MNK:
                r //= 2
            if r >= max(smallest, 1):  # a block's keys in one tile under BLAS's size
                return r, key_block, threads
        while rows >= smallest:
            # as many keys (a multiple of 16) as keep rows * keys * D under BLAS's size
            keys = BLAS_SERIAL_MNK // max(min(T, rows) * D, 1) // 16 * 16
            if keys >= 16:
                return rows, min(key_block, keys), threads
            rows //= 2
    return block, key_block, 1


def _each_head_group(work, B: int, H: int, T: int, S: int, D: int, window: int | None,
                     itemsize: int, backward: bool) -> None:
    """work(group, block, key_block) for every group of heads, with the plan's tile sizes
    and threads (the forward and the backward share this)."""
    block, key_block, threads = _attention_plan(B, H, T, S, D, window, backward)
    keys = min(key_block, _tile_keys(T, S, window, block))
    groups = _head_groups(B, H, min(T, block), keys, itemsize, threads)
    _run_groups(lambda g: work(g, block, key_block), list(groups), threads)


def _run_groups(work, groups: list, threads: int) -> None:
    """work(group) for each group, on this thread and threads - 1 pool threads, each taking
    the next group as it is free (handing work over costs a thread wake-up, so the caller
    works too). Each group writes its own slices of the outputs: no locks around them."""
    global _POOL
    pending, lock = iter(groups), threading.Lock()
    errstate = np.geterr()  # the caller's np.errstate (thread-local in NumPy 1.x)

    def run_share():
        with np.errstate(**errstate):
            while True:
                with lock:
                    g = next(pending, None)
                if g is None:
                    return
                work(g)

    if threads <= 1 or len(groups) <= 1 or getattr(_IN_POOL, "active", False):
        run_share()  # one thread, or called from a pool thread: waiting on the pool would hang
        return
    futures = []
    try:
        if _POOL is None or _POOL[:2] != (os.getpid(), threads):  # a forked child: no threads
            _POOL = (os.getpid(), threads, ThreadPoolExecutor(
                threads - 1, "tinygpt-attention", initializer=_mark_pool_thread))
        for _ in range(min(threads, len(groups)) - 1):
            futures.append(_POOL[2].submit(run_share))
    except RuntimeError:  # the interpreter is shutting down: no new threads; do it here
        pass
    try:
        run_share()
    finally:
        wait(futures)  # never leave a thread writing into outputs after an error here
    for f in futures:
        f.result()  # re-raises a worker's error


_IN_POOL = threading.local()


def _mark_pool_thread() -> None:
    _IN_POOL.active = True


def _tile_keys(T: int, S: int, window: int | None, block: int) -> int:
    """The most keys one tile of ``block`` queries may see."""
    rows = min(T, block)
    return S if window is None else min(S, rows + window - 1)


def _transposed(x, copy: bool):
    """x (B, H, S, D) as (B, H, D, S) for the score product q @ k^T: a contiguous copy when
    ``copy``, else a view. OpenBLAS multiplies by a transposed right-hand matrix markedly
    slower when the left one has few rows (one thread, a head: 16 x 64 x 256 16.3 vs 5.2 us
    with k^T laid out plainly; 64 x 64 x 64 8.2 vs 5.5 us), and the copy costs about one
    such product (256 x 64: 11 us). So the forward copies k^T once for a head group when its
    blocks have at most ATTENTION_TRANSPOSE_ROWS rows (the threaded plan's 16- and 32-row
    tiles) and there are several of them to reuse it: config b's layer forward 17.9 -> 14.5
    ms (28/30), (16, 6, 128, 64) 3.9 -> 3.6 ms (39/40), (4, 4, 2048, 64) with window 128
    20.3 -> 17.3 ms (10/10). With 64- or 128-row blocks, and in the backward, copies of k
    and v measured slower or even ((8, 6, 512, 64) backward 51.9 -> 57.2 ms, one thread at
    T=2048 forward 6.5 -> 7.8 ms)."""
    xt = x.swapaxes(-1, -2)
    return np.ascontiguousarray(xt) if copy else xt


def attention_forward(q, k, v, causal=True, window=None, scale=None, mask=None,
                      need_weights=False):
    """Blocked attention: ``(out, lse, weights)`` (see reference.attention_forward)."""
    reference.check_attention_args(q, k, v, causal, window, mask)
    if not _numba_ok(q, k, v):
        # dtypes numba was not compiled for (float16): the array-code blocks, still no T x S
        return blockwise.attention_forward(q, k, v, causal, window, scale, mask, need_weights)
    B, H, T, D = q.shape
    S = k.shape[2]
    scale = q.dtype.type(1 / math.sqrt(D) if scale is None else scale)
    masks = _mask_view(mask, (B, H, T, S))
    out = np.empty_like(q)
    lse = np.empty((B, H, T), dtype=q.dtype)
    weights = np.zeros((B, H, T, S), dtype=q.dtype) if need_weights else None

    def work(g, block, key_block):
        # with weights, a block's keys in one chunk: its tile then holds its probabilities
        _attention_forward_group(q[g], k[g], v[g], causal, window, scale, mask is not None,
                                 masks[g], out[g], lse[g], weights[g] if need_weights else None,
                                 block, max(S, 1) if need_weights else key_block)

    _each_head_group(work, B, H, T, S, D, window, q.itemsize, backward=False)
    return out, lse, weights


def _attention_forward_group(q, k, v, causal, window, scale, use_mask, masks, out, lse,
                             weights, block, key_block):
    """attention_forward for one group of heads, written into out, lse (and weights): for
    each block of queries, its visible keys a chunk at a time, with the online softmax."""
    B, H, T, S = *q.shape[:3], k.shape[2]
    fast32 = q.dtype == np.float32
    copy = T > block and block <= ATTENTION_TRANSPOSE_ROWS
    # copied, only the keys some query may see: a window over a long KV cache needs a few
    lo = reference.key_range(S - T, S - 1, S, causal, window)[0] if copy else 0
    kt = _transposed(k[:, :, lo:], copy)
    m_run = np.empty((B, H, min(T, block)), dtype=q.dtype)  # each row's running max
    l_run = np.empty((B, H, min(T, block)))  # running sum of exp(score - m_run)
    alpha = np.empty((B, H, min(T, block)), dtype=q.dtype)
    for t0 in range(0, T, block):
        t1 = min(T, t0 + block)
        k0, k1 = reference.key_range(S - T + t0, S - T + t1 - 1, S, causal, window)
        qb, o, rows = q[:, :, t0:t1], out[:, :, t0:t1], t1 - t0
        for c0 in range(k0, k1, key_block):  # k1 > k0: S >= T, so every query sees a key
            c1 = min(k1, c0 + key_block)
            s = qb @ kt[..., c0 - lo:c1 - lo]  # (B, H, rows, keys)
            _attention_tile_online(s, scale, S - T + t0, c0, causal, window or 0, use_mask,
                                   masks[:, :, t0:t1, c0:c1], m_run[..., :rows],
                                   l_run[..., :rows], alpha[..., :rows], c0 == k0, lse, t0,
                                   fast32)
            if c0 == k0:
                np.matmul(s, v[:, :, c0:c1], out=o)  # (B,H,rows,keys) @ (B,H,keys,D)
            else:  # the earlier chunks' part, to the new max and sum; then this chunk's
                o *= alpha[..., :rows, None]
                o += s @ v[:, :, c0:c1]
        if weights is not None:  # one chunk (see attention_forward): s holds probabilities
            weights[:, :, t0:t1, k0:k1] = s


def attention_backward(q, k, v, out, lse, dout, causal=True, window=None, scale=None,
                       mask=None):
    """Blocked attention gradients ``(dq, dk, dv)``, FlashAttention style: probabilities
    are recomputed per tile from q, k and lse (see reference.attention_backward)."""
    reference.check_attention_args(q, k, v, causal, window, mask)
    if not _numba_ok(q, k, v, out, lse, dout):
        return blockwise.attention_backward(q, k, v, out, lse, dout, causal, window, scale, mask)
    B, H, T, D = q.shape
    S = k.shape[2]
    scale = q.dtype.type(1 / math.sqrt(D) if scale is None else scale)
    masks = _mask_view(mask, (B, H, T, S))
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)

    def work(g, block, key_block):
        _attention_backward_group(q[g], k[g], v[g], out[g], lse[g], dout[g], causal, window,
                                  scale, mask is not None, masks[g], dq[g], dk[g], dv[g], block,
                                  key_block)

    _each_head_group(work, B, H, T, S, D, window, q.itemsize, backward=True)
    return dq, dk, dv


def _attention_backward_group(q, k, v, out, lse, dout, causal, window, scale, use_mask,
                              masks, dq, dk, dv, block, key_block):
    """attention_backward for one group of heads, written into dq, dk, dv. With lse known,
    every (query block, key chunk) tile is independent: dq sums over a block's chunks, dk
    and dv over the query blocks that see a key."""
    T, S = q.shape[2], k.shape[2]
    fast32 = q.dtype == np.float32
    written = 0  # dk, dv hold sums for keys [0, written); each block's [k0, k1) lies at or
    # right of the one before, so keys below k0 are final once a block starts
    for t0 in range(0, T, block):
        t1 = min(T, t0 + block)
        k0, k1 = reference.key_range(S - T + t0, S - T + t1 - 1, S, causal, window)
        qb, dob = q[:, :, t0:t1], dout[:, :, t0:t1]
        for c0 in range(k0, k1, key_block):  # k1 > k0, as in the forward
            c1 = min(k1, c0 + key_block)
            s = qb @ k[:, :, c0:c1].swapaxes(-1, -2)
            dp = dob @ v[:, :, c0:c1].swapaxes(-1, -2)
            _attention_tile_dscores(s, dp, scale, S - T + t0, c0, causal, window or 0,
                                    use_mask, masks[:, :, t0:t1, c0:c1], lse, dob,
                                    out[:, :, t0:t1], t0, fast32)
            if c0 == k0:
                np.matmul(dp, k[:, :, c0:c1], out=dq[:, :, t0:t1])
            else:
                dq[:, :, t0:t1] += dp @ k[:, :, c0:c1]
            dk[:, :, written:c0] = dv[:, :, written:c0] = 0  # keys no query sees (local)
            # keys [c0, mid) already hold earlier blocks' sums: add a temporary into them;
            # keys [mid, c1) are new: written in place (config b's T=256 backward: 1/2 the
            # temporary)
            mid = min(max(written, c0), c1)
            if mid > c0:
                dv[:, :, c0:mid] += s[..., : mid - c0].swapaxes(-1, -2) @ dob
                dk[:, :, c0:mid] += dp[..., : mid - c0].swapaxes(-1, -2) @ qb
            if c1 > mid:
                np.matmul(s[..., mid - c0:].swapaxes(-1, -2), dob, out=dv[:, :, mid:c1])
                np.matmul(dp[..., mid - c0:].swapaxes(-1, -2), qb, out=dk[:, :, mid:c1])
            written = max(written, c1)
    dk[:, :, written:] = dv[:, :, written:] = 0  # keys after the last tile's (T == 0: all)


# --------------------------------------------------------------------------- embedding


@_kernel()
def _embedding_backward(ids, dy, grad):
    # Serial on purpose: two rows of dy may add into the same table row.
    for i in range(ids.shape[0]):
        row = grad[ids[i]]
        for c in range(dy.shape[1]):
            row[c] += dy[i, c]


def embedding_backward(ids, dy, num_embeddings: int):
    """Gradient of an embedding table (see reference.embedding_backward); one pass instead
    of ``np.add.at``, which was ~2.5 ms for a 768 x 128 batch."""
    if not _numba_ok(dy):
        return reference.embedding_backward(ids, dy, num_embeddings)
    flat_ids = np.ascontiguousarray(ids).reshape(-1).astype(np.int64, copy=False)
    grad = np.zeros((num_embeddings, dy.shape[-1]), dtype=dy.dtype)
    _embedding_backward(flat_ids, _rows(dy), grad)
    return grad


# -------------------------------------------------------------------------------- rope


@_kernel(parallel=True)
def _rope(x, cos, sin, neox, y):
    n, n_pos, n_feat = x.shape
    half = cos.shape[1]
    for idx in prange(n * n_pos):
        a = idx // n_pos  # row of the flattened leading axes
        t = idx % n_pos  # position
        for i in range(half):
            i1, i2 = (i, i + half) if neox else (2 * i, 2 * i + 1)
            x1, x2 = x[a, t, i1], x[a, t, i2]
            y[a, t, i1] = x1 * cos[t, i] - x2 * sin[t, i]
            y[a, t, i2] = x2 * cos[t, i] + x1 * sin[t, i]
        for d in range(2 * half, n_feat):
            y[a, t, d] = x[a, t, d]


def rope_forward(x, cos, sin, style: str = "neox"):
    """Rotary position embedding of x (..., T, D) (see reference.rope_forward)."""
    reference.check_rope_args(x, cos, sin, style)
    if not _numba_ok(x):
        return reference.rope_forward(x, cos, sin, style)
    T, D = x.shape[-2:]
    x3 = np.ascontiguousarray(x).reshape(-1, T, D)
    y = np.empty_like(x3)
    cos, sin = (np.ascontiguousarray(t, dtype=x.dtype) for t in (cos, sin))
    _pick(_rope, x3.size)(x3, cos, sin, style == "neox", y)
    return y.reshape(x.shape)


def rope_backward(dy, cos, sin, style: str = "neox"):
    """The inverse rotation (see reference.rope_backward)."""
    return rope_forward(dy, cos, -sin, style)


# ------------------------------------------------------------------- gradient clipping


@_kernel(parallel=True, fastmath=SUMS)
def _sum_of_squares(x):
    total = 0.0  # float64, and a reduction numba shares out over threads in the parallel twin
    for i in prange(x.size):
        total += np.float64(x[i]) * x[i]
    return total


def sum_of_squares(x) -> float:
    """sum(x ** 2) in float64, one pass without the float64 copy the reference makes
    (see reference.sum_of_squares)."""
    if not _numba_ok(x):
        return reference.sum_of_squares(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    return float(_pick(_sum_of_squares, flat.size)(flat))


# ------------------------------------------------------------------------------- adamw


@_kernel(parallel=True)
def _adamw_step(param, grad, exp_avg, exp_avg_sq, decay, lerp_weight, beta2, one_minus_beta2,
                step_size, bias_correction2_sqrt, eps):
    # Scalars arrive in the parameters' dtype, so float32 math stays float32 like torch's.
    for i in prange(param.size):
        g = grad[i]
        m = exp_avg[i] + lerp_weight * (g - exp_avg[i])
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        denom = np.sqrt(v) / bias_correction2_sqrt + eps
        param[i] = param[i] * decay - step_size * m / denom


def adamw_step(param, grad, exp_avg, exp_avg_sq, step: int, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float) -> None:
    """One fused AdamW update, in place (see reference.adamw_step)."""
    arrays = (param, grad, exp_avg, exp_avg_sq)
    if not _numba_ok(*arrays) or not all(
        a.flags.c_contiguous and a.shape == param.shape for a in arrays
    ):
        return reference.adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2,
                                    eps, weight_decay)
    f = param.dtype.type
    _pick(_adamw_step, param.size)(
        param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1),
        f(1 - lr * weight_decay), f(1 - beta1), f(beta2), f(1 - beta2),
        f(lr / (1 - beta1**step)), f(math.sqrt(1 - beta2**step)), f(eps))
