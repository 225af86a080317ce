"""Reference kernels: the readable array-level math of every fused op, forward beside backward.

These functions take and return plain arrays (no autograd). They are the truth the fast
kernels in ``cpu.py`` (numba) and ``cuda.py`` (CuPy) are tested against, so they favour
clarity over speed. Each one uses the array module of its input (``backend.array_module``),
so the same code runs on NumPy and CuPy. Results keep the input dtype (float32 or float64).
"""

from __future__ import annotations

import math

import numpy as np  # shape and type checks only; the arithmetic uses the backend's module

from tinygpt import backend

ROPE_STYLES = ("neox", "gptj")
GELU_APPROXIMATIONS = ("tanh", "none")


# ----------------------------------------------------------------------------- softmax


def softmax_forward(x):
    """Softmax over the last axis; subtracting the row max keeps exp() from overflowing."""
    xp = backend.array_module(x)
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y)): the Jacobian of softmax applied to dy, without forming it."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def log_softmax_forward(x):
    """log(softmax(x)) over the last axis, computed as x - logsumexp(x) for stability."""
    xp = backend.array_module(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def log_softmax_backward(y, dy):
    """dx = dy - softmax(x) * sum(dy); softmax(x) is exp(y)."""
    xp = backend.array_module(y)
    return dy - xp.exp(y) * dy.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------- cross entropy


def check_cross_entropy_args(logits, targets, ignore_index: int):
    """Validate shapes and ids; return the boolean mask of rows that count."""
    xp = backend.array_module(logits)
    if logits.ndim != 2 or targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"cross_entropy expects logits (N, V) and targets (N,), got {logits.shape} "
            f"and {targets.shape}"
        )
    vocab_size = logits.shape[1]
    valid = targets != ignore_index
    bad = valid & ((targets < 0) | (targets >= vocab_size))
    if bool(bad.any()):
        bad_id = int(targets[xp.argmax(bad)])
        raise IndexError(
            f"target id {bad_id} is out of range for {vocab_size} classes "
            f"(valid ids are 0..{vocab_size - 1}, or ignore_index={ignore_index})"
        )
    return valid


def _logsumexp_rows(logits):
    xp = backend.array_module(logits)
    m = logits.max(axis=-1)
    return m + xp.log(xp.exp(logits - m[:, None]).sum(axis=-1))


def cross_entropy_forward(logits, targets, ignore_index: int = -100):
    """Mean of lse - logit[target] over rows whose target is not ``ignore_index``.

    Returns ``(loss, lse)``: loss is a 0-d array (nan when every row is ignored, like
    torch), lse the per-row log-sum-exp the backward pass reuses instead of probabilities.
    """
    xp = backend.array_module(logits)
    valid = check_cross_entropy_args(logits, targets, ignore_index)
    lse = _logsumexp_rows(logits)
    rows = xp.arange(logits.shape[0])
    picked = logits[rows, xp.where(valid, targets, 0)]
    n_valid = int(valid.sum())
    total = xp.where(valid, lse - picked, 0).sum()
    loss = total / n_valid if n_valid else float("nan")
    return xp.asarray(loss, dtype=logits.dtype), lse


def cross_entropy_backward(logits, targets, lse, grad, ignore_index: int = -100):
    """dlogits = (softmax - onehot(target)) * grad / n_valid; ignored rows get zero."""
    xp = backend.array_module(logits)
    valid = targets != ignore_index
    n_valid = int(valid.sum())
    probs = xp.exp(logits - lse[:, None])  # recomputed from lse: nothing (N, V) was kept
    rows = xp.arange(logits.shape[0])
    probs[rows, xp.where(valid, targets, 0)] -= valid.astype(logits.dtype)
    scale = float(grad) / n_valid if n_valid else 0.0
    return probs * (valid * scale).astype(logits.dtype)[:, None]


# -------------------------------------------------------------------------- layer norm


def layer_norm_forward(x, weight, bias, eps: float):
    """Normalise the last axis to zero mean, unit variance, then scale and shift.

    Returns ``(y, mean, rstd)``; mean and rstd (1/std) have shape ``x.shape[:-1]`` and
    are what the backward pass needs.
    """
    xp = backend.array_module(x)
    mean = x.mean(axis=-1)
    xc = x - mean[..., None]
    rstd = 1 / xp.sqrt((xc * xc).mean(axis=-1) + eps)
    y = xc * rstd[..., None]
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


def layer_norm_backward(dy, x, weight, mean, rstd):
    """Gradients of layer_norm: ``(dx, dweight, dbias)``, the last two summed over rows.

    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight: the mean
    terms are what normalising by the row's own mean and std gives back.
    """
    xhat = (x - mean[..., None]) * rstd[..., None]
    lead = tuple(range(dy.ndim - 1))
    dbias = dy.sum(axis=lead)
    dweight = (dy * xhat).sum(axis=lead)
    g = dy * weight if weight is not None else dy
    dx = rstd[..., None] * (
        g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)
    )
    return dx, dweight, dbias


# -------------------------------------------------------------------------------- gelu

# W. J. Cody's rational approximations (CALERF, 1969/1985), accurate to double precision:
# erf on |x| <= 0.46875, erfc on 0.46875 < |x| <= 4 and on |x| > 4.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)
_ERFC_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
           2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
           2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_ERFC_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
           1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)
_ERFC_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
           1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_ERFC_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
           6.05183413124413191e-2, 2.33520497626869185e-3)


def _ratio(z, num, den, n):
    """Cody's nested evaluation: (((num[-1] z + num[0]) z + ...) + num[n]) / (same for den)."""
    xnum, xden = num[-1] * z, z
    for i in range(n):
        xnum = (xnum + num[i]) * z
        xden = (xden + den[i]) * z
    return (xnum + num[n]) / (xden + den[n])


def erf(x):
    """Error function, vectorised over any array (NumPy has none); float64 inside."""
    xp = backend.array_module(x)
    x64 = x.astype(xp.float64)
    y = xp.abs(x64)
    small = y <= 0.46875
    # erf directly for small |x| (z = x^2 keeps it exact near 0)
    xs = xp.clip(x64, -0.46875, 0.46875)
    erf_small = xs * _ratio(xs * xs, _ERF_A, _ERF_B, 3)
    # erfc = exp(-y^2) * R(y); y^2 is split as ysq^2 + del so exp() loses no digits
    yc = xp.clip(y, 0.46875, 26.6)  # erfc(26.6) underflows to 0 in float64
    r = xp.where(
        yc <= 4.0,
        _ratio(yc, _ERFC_C, _ERFC_D, 7),
        (0.5641895835477563 - _ratio(1 / (yc * yc), _ERFC_P, _ERFC_Q, 4) / (yc * yc)) / yc,
    )
    ysq = xp.trunc(yc * 16) / 16
    erfc = xp.exp(-ysq * ysq) * xp.exp(-(yc - ysq) * (yc + ysq)) * r
    erf_large = xp.sign(x64) * ((0.5 - erfc) + 0.5)
    return xp.where(small, erf_small, erf_large).astype(x.dtype)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_KAPPA = 0.044715


def check_gelu_approximation(approximate: str) -> None:
    if approximate not in GELU_APPROXIMATIONS:
        raise ValueError(
            f"unknown gelu approximation {approximate!r}; expected one of {GELU_APPROXIMATIONS}"
        )


def gelu_forward(x, approximate: str = "tanh"):
    """GELU: x * Phi(x). "tanh" is GPT-2's gelu_new, "none" the exact erf form."""
    check_gelu_approximation(approximate)
    xp = backend.array_module(x)
    if approximate == "tanh":
        return 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_KAPPA * x * x * x)))
    return 0.5 * x * (1 + erf(x * (1 / math.sqrt(2))))


def gelu_backward(x, dy, approximate: str = "tanh"):
    """dx = dy * d/dx[x * Phi(x)]; the forward is recomputed from x."""
    check_gelu_approximation(approximate)
    xp = backend.array_module(x)
    if approximate == "tanh":
        t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_KAPPA * x * x * x))
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_KAPPA * x * x)
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
    cdf = 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
    pdf = xp.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
    return dy * (cdf + x * pdf)


# --------------------------------------------------------------------------- attention


def check_attention_args(q, k, v, causal: bool, window: int | None, mask) -> None:
    """Raise a clear error for shapes or options attention cannot use."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"attention expects q, k, v of shape (B, H, T, D), got {q.shape}, {k.shape}, "
            f"{v.shape}"
        )
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(
            f"attention shapes do not match: q {q.shape}, k {k.shape}, v {v.shape} "
            "(need q (B, H, T, D), k and v (B, H, S, D))"
        )
    if k.shape[2] < q.shape[2]:
        raise ValueError(
            f"attention needs at least as many keys as queries, got S={k.shape[2]} < "
            f"T={q.shape[2]}"
        )
    if not (q.dtype == k.dtype == v.dtype) or q.dtype.kind != "f":
        raise TypeError(f"attention needs q, k, v of one floating dtype, got {q.dtype}, "
                        f"{k.dtype}, {v.dtype} (no silent casts)")
    if window is not None:
        if not causal:
            raise ValueError(f"a local window (window={window}) needs causal=True")
        if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window must be a positive number of keys, got {window!r}")
    if mask is not None:
        if mask.dtype != bool:
            raise ValueError(f"attention mask must be boolean (True = may attend), got "
                             f"{mask.dtype}")
        want = q.shape[:3] + k.shape[2:3]
        try:
            fits = mask.ndim <= 4 and np.broadcast_shapes(mask.shape, want) == want
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"attention mask of shape {tuple(mask.shape)} does not broadcast "
                             f"to (B, H, T, S) = {want}")


def allowed_keys(T: int, S: int, causal: bool, window: int | None, xp, rows=None, keys=None):
    """(T, S) boolean: may query i attend to key j? Query i sits at position S - T + i.
    ``rows`` / ``keys`` = (start, stop) build just that tile (the blocked kernels' use)."""
    r0, r1 = rows or (0, T)
    c0, c1 = keys or (0, S)
    pos = S - T + xp.arange(r0, r1)[:, None]
    j = xp.arange(c0, c1)[None, :]
    allowed = xp.ones((r1 - r0, c1 - c0), dtype=bool)
    if causal:
        allowed &= j <= pos
    if window is not None:
        allowed &= j > pos - window
    return allowed


def key_range(p_first: int, p_last: int, S: int, causal: bool, window: int | None):
    """The keys [lo, hi) that some query at positions p_first..p_last may see: the slice
    of keys a block of queries needs (the blocked kernels take no others)."""
    hi = p_last + 1 if causal else S
    lo = max(0, p_first - window + 1) if window is not None else 0
    return lo, hi


def _allowed_and_scale(q, k, v, causal, window, scale, mask):
    """Check the arguments; return the (T, S) or broadcast mask of allowed keys and the scale."""
    check_attention_args(q, k, v, causal, window, mask)
    T, S, D = q.shape[2], k.shape[2], q.shape[3]
    allowed = allowed_keys(T, S, causal, window, backend.array_module(q))
    if mask is not None:
        allowed = allowed & mask
    return allowed, (1 / math.sqrt(D) if scale is None else scale)


def attention_forward(q, k, v, causal=True, window=None, scale=None, mask=None,
                      need_weights=False):
    """softmax(q k^T * scale + mask) v, written out in full: the readable version.

    Returns ``(out, lse, weights)``: lse (B, H, T) is the log-sum-exp of each query's
    allowed scores (-inf for a query that may attend to nothing; its output is zeros),
    weights the (B, H, T, S) probabilities when ``need_weights`` else None.
    """
    xp = backend.array_module(q)
    allowed, scale = _allowed_and_scale(q, k, v, causal, window, scale, mask)
    if k.shape[2] == 0:  # no keys, so no queries (T <= S): max() below would have no rows
        weights = xp.zeros(q.shape[:3] + (0,), dtype=q.dtype) if need_weights else None
        return xp.zeros_like(q), xp.zeros(q.shape[:3], dtype=q.dtype), weights
    allowed = xp.broadcast_to(allowed, q.shape[:3] + k.shape[2:3])  # (B, H, T, S)
    scores = xp.where(allowed, (q @ xp.swapaxes(k, -1, -2)) * scale, -xp.inf)  # (B,H,T,S)
    m = scores.max(axis=-1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0)  # a fully masked row: keep exp() finite, all zeros
    p = xp.where(allowed, xp.exp(scores - m), 0)
    total = p.sum(axis=-1, keepdims=True)
    with_keys = total != 0  # NaN scores (a NaN query or key) are not "no keys": NaN stays
    p = p / xp.where(with_keys, total, 1)
    lse = xp.where(with_keys, m + xp.log(xp.where(with_keys, total, 1)), -xp.inf)[..., 0]
    out = p @ v
    return out, lse, (p if need_weights else None)


def attention_backward(q, k, v, out, lse, dout, causal=True, window=None, scale=None,
                       mask=None):
    """Gradients ``(dq, dk, dv)``; probabilities are recomputed from q, k and lse.

    With P = softmax(S): dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)),
    dQ = dS K * scale, dK = dS^T Q * scale (rowsum(dO * O) equals rowsum(P * dP)).
    """
    xp = backend.array_module(q)
    allowed, scale = _allowed_and_scale(q, k, v, causal, window, scale, mask)
    scores = (q @ xp.swapaxes(k, -1, -2)) * scale
    # a query that saw nothing has lse -inf: zero probabilities. A NaN lse (NaN scores)
    # stays NaN, so its gradients are NaN as the forward's output was
    seen = lse != -xp.inf
    lse_safe = xp.where(seen, lse, 0)[..., None]
    p = xp.where(allowed & seen[..., None], xp.exp(scores - lse_safe), 0)
    dv = xp.swapaxes(p, -1, -2) @ dout
    dp = dout @ xp.swapaxes(v, -1, -2)
    delta = (dout * out).sum(axis=-1, keepdims=True)
    ds = p * (dp - delta)
    dq = (ds @ k) * scale
    dk = (xp.swapaxes(ds, -1, -2) @ q) * scale
    return dq, dk, dv


# --------------------------------------------------------------------------- embedding


def embedding_backward(ids, dy, num_embeddings: int):
    """Gradient of an embedding table (num_embeddings, C): row ``ids[i]`` receives ``dy[i]``,
    and repeated ids add up (``np.add.at``). ids (...), dy (..., C)."""
    xp = backend.array_module(dy)
    C = dy.shape[-1]
    grad = xp.zeros((num_embeddings, C), dtype=dy.dtype)
    backend.scatter_add(grad, ids.reshape(-1), dy.reshape(-1, C))
    return grad


# -------------------------------------------------------------------------------- rope


def rope_cos_sin(positions, rotary_dim: int, theta: float = 10000.0, dtype=None):
    """cos and sin tables, shape (len(positions), rotary_dim // 2), for rotary embeddings.

    inv_freq = 1 / theta^(arange(0, R, 2) / R). The tables are computed in float32, as
    Hugging Face's GPT-NeoX and GPT-J do, so the numbers match theirs; then cast to
    ``dtype`` (default float32).
    """
    if rotary_dim < 2 or rotary_dim % 2:
        raise ValueError(f"rotary_dim must be a positive even number, got {rotary_dim}")
    xp = backend.array_module(positions) if hasattr(positions, "shape") else backend.xp
    f32 = xp.float32
    inv_freq = 1.0 / (f32(theta) ** (xp.arange(0, rotary_dim, 2).astype(f32) / f32(rotary_dim)))
    angles = xp.asarray(positions).astype(f32)[:, None] * inv_freq[None, :]
    dtype = f32 if dtype is None else dtype
    return xp.cos(angles).astype(dtype), xp.sin(angles).astype(dtype)


def check_rope_args(x, cos, sin, style: str) -> None:
    """Raise a clear error when the tables do not fit x or the style is unknown."""
    if style not in ROPE_STYLES:
        raise ValueError(f"unknown rotary style {style!r}; expected one of {ROPE_STYLES}")
    if (
        x.ndim < 2
        or cos.ndim != 2
        or cos.shape != sin.shape
        or cos.shape[0] != x.shape[-2]
        or 2 * cos.shape[1] > x.shape[-1]
    ):
        raise ValueError(
            f"rope tables cos {cos.shape}, sin {sin.shape} do not fit x {x.shape}: need "
            "(T, R/2) with T = x.shape[-2] and R <= x.shape[-1]"
        )


def _rope_halves(x, rotary_dim: int, style: str):
    if style == "neox":  # rotate-half: first half pairs with second half
        return x[..., : rotary_dim // 2], x[..., rotary_dim // 2 : rotary_dim]
    return x[..., 0:rotary_dim:2], x[..., 1:rotary_dim:2]  # gptj: interleaved pairs


def rope_forward(x, cos, sin, style: str = "neox"):
    """Rotate the first R = 2 * cos.shape[-1] features of x (..., T, D) pairwise by position.

    Pair (x1, x2) becomes (x1 cos - x2 sin, x2 cos + x1 sin); features R: pass through.
    "neox" pairs feature i with i + R/2, "gptj" pairs 2i with 2i + 1.
    """
    check_rope_args(x, cos, sin, style)
    rotary_dim = 2 * cos.shape[-1]
    cos, sin = cos.astype(x.dtype, copy=False), sin.astype(x.dtype, copy=False)
    x1, x2 = _rope_halves(x, rotary_dim, style)
    y = x.copy()
    y1, y2 = _rope_halves(y, rotary_dim, style)
    y1[...] = x1 * cos - x2 * sin
    y2[...] = x2 * cos + x1 * sin
    return y


def rope_backward(dy, cos, sin, style: str = "neox"):
    """The rotation is orthogonal, so its gradient is the inverse rotation (angle -> -angle)."""
    return rope_forward(dy, cos, -sin, style)


# ------------------------------------------------------------------- gradient clipping


def sum_of_squares(x) -> float:
    """sum(x ** 2) as a Python float, accumulated in float64 (a gradient's squared norm)."""
    return float((x.astype("float64") ** 2).sum())


# ------------------------------------------------------------------------------- adamw


def adamw_step(param, grad, exp_avg, exp_avg_sq, step: int, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float) -> None:
    """One AdamW update, in place, in torch.optim.AdamW's order of operations.

    Decoupled weight decay first, then the moment updates, then the bias-corrected step.
    Each line is one of torch's in-place ops, so float32 results round the same way.
    """
    xp = backend.array_module(param)
    param *= 1 - lr * weight_decay
    exp_avg += (1 - beta1) * (grad - exp_avg)  # lerp(exp_avg, grad, 1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    denom = xp.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps
    param -= step_size * exp_avg / denom
