"""Blockwise attention in array-module code: FlashAttention's algorithm without numba.

The reference (``reference.attention_forward``) writes the whole (B, H, T, S) score array;
at T = 4096 with 12 heads that is 800 MB a batch row, and a local layer would pay it for
a window of a few hundred keys. Here queries go in blocks of ``BLOCK`` rows, each block
takes only the keys it may see (its window, for a local layer) in chunks of at most
``KEY_BLOCK``, and an online softmax joins the chunks: so memory is O(B H BLOCK KEY_BLOCK)
however long the sequence, and a local layer's cost grows linearly with T. The backward
recomputes each tile's probabilities from the saved log-sum-exp, as the numba kernel does.

Only array operations every array module has (matmul, exp, max, where, slicing), all over
(B, H) at once, so the same code runs on NumPy and on CuPy: the CuPy kernels
(``cuda.py``) use it, and the tests run it on NumPy against the reference. The numba
kernels (``cpu.py``) do the same per tile in compiled loops. ``need_weights`` returns the
full probabilities, which is the reference's job.
"""

from __future__ import annotations

import math

from tinygpt import backend
from tinygpt.kernels import reference

BLOCK = 256  # query rows a block
KEY_BLOCK = 1024  # keys a chunk: a float32 tile of 256 x 1024 is 1 MiB a head


def _chunks(t0: int, t1: int, T: int, S: int, causal: bool, window: int | None):
    """(c0, c1) for each chunk of the keys that queries [t0, t1) may see."""
    k0, k1 = reference.key_range(S - T + t0, S - T + t1 - 1, S, causal, window)
    for c0 in range(k0, k1, KEY_BLOCK):
        yield c0, min(k1, c0 + KEY_BLOCK)


def _tile_allowed(masks, T, S, t0, t1, c0, c1, causal, window, xp):
    """May query t0 + i attend to key c0 + j? (rows, keys), or (B, H, rows, keys) with a
    padding mask: built for the tile alone, never for all T x S."""
    ok = reference.allowed_keys(T, S, causal, window, xp, (t0, t1), (c0, c1))
    return ok if masks is None else ok & masks[:, :, t0:t1, c0:c1]


def _scores(q, k, ok, t0, t1, c0, c1, scale, xp):
    """Scaled scores of queries [t0, t1) against keys [c0, c1); -inf where not allowed."""
    s = (q[:, :, t0:t1] @ xp.swapaxes(k[:, :, c0:c1], -1, -2)) * scale
    return xp.where(ok, s, -xp.inf)


def _setup(q, k, v, causal, window, scale, mask):
    """Check the arguments; the array module, the scale (default 1/sqrt(D), in q's dtype)
    and the padding mask as a (B, H, T, S) broadcast view (a view: no copy), or None."""
    reference.check_attention_args(q, k, v, causal, window, mask)
    xp = backend.array_module(q)
    # in q's dtype, as cpu.py does: a NumPy float64 scale must not turn float32 tiles into
    # float64 ones (NumPy 2 would; CuPy would not: the same results on both)
    scale = q.dtype.type(1 / math.sqrt(q.shape[3]) if scale is None else scale)
    shape = q.shape[:3] + k.shape[2:3]
    return xp, scale, None if mask is None else xp.broadcast_to(mask, shape)


def attention_forward(q, k, v, causal=True, window=None, scale=None, mask=None,
                      need_weights=False):
    """``(out, lse, weights)`` as ``reference.attention_forward`` returns them, a tile at a
    time. Each query row keeps m, its largest score so far, and l, the sum of exp(score -
    m); a new chunk raises m, rescales l and the output so far by exp(m_old - m_new), and
    the output stays a weighted mean of v's rows (no overflow however large v is)."""
    if need_weights:  # the full probabilities are asked for: nothing to save by blocks
        return reference.attention_forward(q, k, v, causal, window, scale, mask, True)
    xp, scale, masks = _setup(q, k, v, causal, window, scale, mask)
    B, H, T, S = *q.shape[:3], k.shape[2]
    out = xp.zeros_like(q)  # a query that may see no key keeps a zero output
    lse = xp.empty((B, H, T), dtype=q.dtype)
    for t0 in range(0, T, BLOCK):
        t1 = min(T, t0 + BLOCK)
        o = out[:, :, t0:t1]  # a view: updated in place chunk by chunk
        m = xp.full((B, H, t1 - t0), -xp.inf, dtype=q.dtype)  # largest score so far
        shift = xp.zeros_like(m)  # m, or 0 while m is not finite (exp() stays defined)
        total = xp.zeros_like(m)  # sum of exp(score - shift) so far
        for c0, c1 in _chunks(t0, t1, T, S, causal, window):
            ok = _tile_allowed(masks, T, S, t0, t1, c0, c1, causal, window, xp)
            s = _scores(q, k, ok, t0, t1, c0, c1, scale, xp)
            m = xp.maximum(m, s.max(axis=-1))  # NaN scores make m NaN, as in the reference
            new_shift = xp.where(xp.isfinite(m), m, 0)
            p = xp.exp(s - new_shift[..., None])  # 0 at the -inf (not allowed) scores
            # the earlier chunks' sum under the new shift (none before: 0, never 0 * inf)
            kept = total * xp.exp(xp.where(total == 0, 0, shift - new_shift))
            shift, total = new_shift, kept + p.sum(axis=-1)
            inv = 1 / xp.where(total == 0, 1, total)
            o *= (kept * inv)[..., None]  # the earlier chunks' share of the mean
            o += (p * inv[..., None]) @ v[:, :, c0:c1]  # and this chunk's
        seen = total != 0  # NaN (NaN scores) counts as seen: it stays NaN
        lse[:, :, t0:t1] = xp.where(seen, shift + xp.log(xp.where(seen, total, 1)), -xp.inf)
    return out, lse, None


def attention_backward(q, k, v, out, lse, dout, causal=True, window=None, scale=None,
                       mask=None):
    """``(dq, dk, dv)`` as ``reference.attention_backward`` gives them, a tile at a time:
    each tile's probabilities are recomputed from q, k and the forward's lse."""
    xp, scale, masks = _setup(q, k, v, causal, window, scale, mask)
    T, S = q.shape[2], k.shape[2]
    dq, dk, dv = xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
    # lse -inf: the query saw nothing (no allowed key, or only -inf scores), so every p of
    # its row is 0: by the where below, or as exp(-inf - 0). Shift 0 keeps exp() defined
    # there (-inf - -inf is NaN). A NaN lse stays NaN
    shift = xp.where(lse == -xp.inf, 0, lse)[..., None]
    delta = (dout * out).sum(axis=-1)[..., None]  # rowsum(dO * O) = rowsum(P * dP)
    for t0 in range(0, T, BLOCK):
        t1 = min(T, t0 + BLOCK)
        qb, dob = q[:, :, t0:t1], dout[:, :, t0:t1]
        for c0, c1 in _chunks(t0, t1, T, S, causal, window):
            ok = _tile_allowed(masks, T, S, t0, t1, c0, c1, causal, window, xp)
            s = _scores(q, k, ok, t0, t1, c0, c1, scale, xp)
            p = xp.where(ok, xp.exp(s - shift[:, :, t0:t1]), 0)
            kc, vc = k[:, :, c0:c1], v[:, :, c0:c1]
            dv[:, :, c0:c1] += xp.swapaxes(p, -1, -2) @ dob
            ds = p * (dob @ xp.swapaxes(vc, -1, -2) - delta[:, :, t0:t1])
            dq[:, :, t0:t1] += (ds @ kc) * scale
            dk[:, :, c0:c1] += (xp.swapaxes(ds, -1, -2) @ qb) * scale
    return dq, dk, dv
