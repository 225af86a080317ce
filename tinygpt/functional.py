"""Differentiable building blocks of a GPT, on top of Tensor.

Each function here is one autograd node: the forward calls a fused kernel and the
backward, written right below it, calls the kernel's backward. The kernels live in
``tinygpt.kernels`` (a readable NumPy reference, a numba CPU version, a CuPy version);
``get_kernels()`` picks one at call time, so the model code never changes when the
kernels do. ``TINYGPT_KERNELS=numpy`` forces the references.
"""

from __future__ import annotations

import math

import numpy as np

from tinygpt import backend
from tinygpt import random as _random
from tinygpt.kernels import get_kernels
from tinygpt.kernels.reference import check_attention_args
from tinygpt.tensor import Tensor, _make, is_grad_enabled


def _check_tensor(name: str, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
    return x


def _last_dim(fn, x: Tensor, dim: int, name: str) -> Tensor:
    """Apply a last-axis op along ``dim`` by moving that axis last and back."""
    if x.ndim == 0:  # as torch: a 0-d tensor is one row of one element (dim 0 or -1)
        if dim not in (0, -1):
            raise IndexError(f"{name}: dim {dim} is out of range for a 0-d tensor")
        return _last_dim(fn, x.reshape(1), -1, name).reshape(())
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(f"{name}: dim {dim} is out of range for a tensor of shape {x.shape}")
    dim = dim % x.ndim
    if dim == x.ndim - 1:
        return fn(x)
    return fn(x.transpose(dim, -1)).transpose(dim, -1)


# --------------------------------------------------------------------------- activations


def relu(x: Tensor) -> Tensor:
    return x.relu()


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: exact (erf, ``"none"``) or GPT-2's tanh approximation (``"tanh"``, gelu_new)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    K = get_kernels(x.data)
    a = x.data
    out = K.gelu_forward(a, approximate)
    return _make(out, (x,), lambda g: (K.gelu_backward(a, g, approximate),), "gelu")


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``, computed stably (max subtracted first)."""
    K = get_kernels(x.data)

    def last(t: Tensor) -> Tensor:
        y = K.softmax_forward(t.data)
        return _make(y, (t,), lambda g: (K.softmax_backward(y, g),), "softmax")

    return _last_dim(last, x, dim, "softmax")


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """x - logsumexp(x) along ``dim``; stable for very large logits."""
    K = get_kernels(x.data)

    def last(t: Tensor) -> Tensor:
        y = K.log_softmax_forward(t.data)
        return _make(y, (t,), lambda g: (K.log_softmax_backward(y, g),), "log_softmax")

    return _last_dim(last, x, dim, "log_softmax")


# --------------------------------------------------------------------------- losses


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under softmax(``logits``).

    logits (..., V) and integer targets (...) with the same leading shape; positions whose
    target is ``ignore_index`` do not count. Fused: no probability tensor is stored.
    """
    if _check_tensor("cross_entropy", logits).dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be floating point, got {logits.dtype}")
    xp = backend.array_module(logits.data)  # the targets go where the logits are
    t = xp.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"cross_entropy: targets must be integers, got {t.dtype}")
    if logits.ndim < 1 or tuple(logits.shape[:-1]) != tuple(t.shape):
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need targets of shape "
                         f"{tuple(logits.shape[:-1])}, got {tuple(t.shape)}")
    K = get_kernels(logits.data)
    V = logits.shape[-1]
    z = logits.data.reshape(-1, V)
    t = t.reshape(-1).astype(np.int64, copy=False)
    loss, lse = K.cross_entropy_forward(z, t, ignore_index)

    def backward(g):
        return (K.cross_entropy_backward(z, t, lse, g, ignore_index).reshape(logits.shape),)

    return _make(loss, (logits,), backward, "cross_entropy")


# --------------------------------------------------------------------------- layers


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` as one node (weight is (out, in), like torch.nn.Linear).

    Fusing keeps the leading dims flat for BLAS and skips the transpose and
    broadcast bookkeeping a composed version would record.
    """
    if weight.ndim != 2 or x.ndim == 0:
        raise ValueError(f"linear: needs an input of at least 1 dim and a (out_features, "
                         f"in_features) weight, got shapes {x.shape} and {weight.shape}")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape "
                         f"{weight.shape} (in_features {weight.shape[1]})")
    if x.dtype.kind in "biu":  # ints or bools take the weight's float dtype, as x @ w does
        x = x.to(weight.dtype)
    a, w = x.data, weight.data
    a2 = a.reshape(-1, a.shape[-1])  # [N, in]
    out = a2 @ w.T  # [N, in] @ [in, out] -> [N, out]
    if bias is not None:
        out += bias.data
    out = out.reshape(a.shape[:-1] + (w.shape[0],))
    parents = (x, weight) if bias is None else (x, weight, bias)

    def backward(g):
        g2 = g.reshape(-1, g.shape[-1])  # [N, out]
        dx = (g2 @ w).reshape(a.shape) if x.requires_grad else None
        dw = g2.T @ a2 if weight.requires_grad else None  # [out, N] @ [N, in]
        grads = (dx, dw)
        if bias is not None and bias.requires_grad:
            # column sums as ones @ g2: BLAS's matrix-vector product reads g2 once on every
            # core, where NumPy's sum(axis=0) runs on one (config b's four biases a layer:
            # 2.8 -> 0.9 ms; config a's: 130 -> 60 us)
            grads += (backend.array_module(g2).ones(len(g2), dtype=g2.dtype) @ g2,)
        elif bias is not None:
            grads += (None,)
        return grads

    return _make(out, parents, backward, "linear")


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise the last ``len(normalized_shape)`` dimensions (usually one: the features)
    to zero mean and unit variance, then scale and shift, as torch's layer_norm."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    n = len(normalized_shape)
    if n == 0 or n > x.ndim or normalized_shape != tuple(x.shape[x.ndim - n:]):
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} must equal the "
                         f"last dimension(s) of the input, shape {x.shape}")
    for name, p in (("weight", weight), ("bias", bias)):  # the kernels index them by feature
        if p is not None and tuple(p.shape) != normalized_shape:
            raise ValueError(f"layer_norm: {name} of shape {p.shape} does not match "
                             f"normalized_shape {normalized_shape}")
    # the kernels normalise the last axis: several trailing dims are flattened into one
    features = math.prod(normalized_shape)
    flat = x.shape[:x.ndim - n] + (features,)
    K = get_kernels(x.data)
    w = None if weight is None else weight.data.reshape(features)
    b = None if bias is None else bias.data.reshape(features)
    xf = x.data.reshape(flat)
    y, mean, rstd = K.layer_norm_forward(xf, w, b, eps)
    parents = tuple(p for p in (x, weight, bias) if p is not None)

    def backward(g):
        dx, dw, db = K.layer_norm_backward(g.reshape(flat), xf, w, mean, rstd)
        grads = (dx.reshape(x.shape),)
        if weight is not None:
            grads += (dw.reshape(normalized_shape),)
        if bias is not None:
            grads += (db.reshape(normalized_shape),)
        return grads

    return _make(y.reshape(x.shape), parents, backward, "layer_norm")


def embedding(idx, weight: Tensor) -> Tensor:
    """Rows of ``weight`` picked by integer ids; gradients of repeated ids add up."""
    # the ids go where the table is (a host array for a CuPy model, and the other way round)
    ids = backend.array_module(weight.data).asarray(idx.data if isinstance(idx, Tensor) else idx)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"embedding: ids must be integers, got {ids.dtype}")
    n = weight.shape[0]
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n):
        bad = int(ids.max()) if int(ids.max()) >= n else int(ids.min())
        raise IndexError(f"embedding: id {bad} is out of range for a table of {n} rows")

    def backward(g):
        return (get_kernels(g).embedding_backward(ids, g, n),)

    return _make(weight.data[ids], (weight,), backward, "embedding")


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (training only).

    The mask comes from the global seeded generator, so runs are reproducible.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    keep = _random.generator().random(x.shape) >= p
    scale = (backend.array_module(x.data).asarray(keep) / (1.0 - p)).astype(x.dtype)
    return x * Tensor(scale)


# --------------------------------------------------------------------------- attention


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True,
                                 window: int | None = None, scale: float | None = None,
                                 mask=None, return_weights: bool = False):
    """softmax(q k^T * scale + masks) v, for q (B, H, T, D) and k, v (B, H, S, D).

    ``causal``: query i sees keys j <= i (queries are the last T of the S positions, so a
    KV cache just works). ``window``: sliding-window local attention, i - window < j <= i.
    ``mask``: boolean, broadcastable to (B, H, T, S), True where attention is allowed
    (padding). ``scale`` defaults to 1/sqrt(D). With ``return_weights=True`` also returns
    the attention probabilities (B, H, T, S) as a Tensor outside the graph.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if _check_tensor("scaled_dot_product_attention", t).ndim != 4:
            raise ValueError(f"scaled_dot_product_attention: {name} must be (B, H, T, D), "
                             f"got shape {t.shape}")
    if not isinstance(causal, (bool, np.bool_)):  # torch's 4th argument is attn_mask
        raise TypeError(f"scaled_dot_product_attention: causal must be True or False, got "
                        f"{type(causal).__name__} (a padding mask goes in mask=)")
    xp = backend.array_module(q.data)
    # a host (NumPy) mask moves to q's device, so a CuPy model takes one as the CPU does
    m = None if mask is None else xp.asarray(mask.data if isinstance(mask, Tensor) else mask)
    try:  # shapes, dtypes, the window and the mask, with the kernels' own check
        check_attention_args(q.data, k.data, v.data, causal, window, m)
    except (TypeError, ValueError) as e:
        raise type(e)(f"scaled_dot_product_attention: {e}") from None
    K = get_kernels(q.data)
    out, lse, weights = K.attention_forward(q.data, k.data, v.data, causal=causal, window=window,
                                            scale=scale, mask=m, need_weights=return_weights)

    def backward(g):
        return K.attention_backward(q.data, k.data, v.data, out, lse, g, causal=causal,
                                    window=window, scale=scale, mask=m)

    result = _make(out, (q, k, v), backward, "attention")
    if return_weights:
        return result, Tensor(weights)
    return result


def rope(x: Tensor, cos, sin, style: str = "neox") -> Tensor:
    """Rotary position embedding on the first ``2 * cos.shape[-1]`` features of x (..., T, D).

    ``style="neox"`` rotates the two halves (GPT-NeoX, Llama); ``"gptj"`` rotates
    interleaved pairs (GPT-J). cos and sin are (T, rotary_dim / 2) for x's positions.
    """
    if style not in ("neox", "gptj"):
        raise ValueError(f"rope: style must be 'neox' or 'gptj', got {style!r}")
    if _check_tensor("rope", x).dtype.kind != "f":
        raise TypeError(f"rope: x must be floating point, got {x.dtype}")
    xp = backend.array_module(x.data)  # host tables move to x's device (CuPy)
    c = xp.asarray(cos.data if isinstance(cos, Tensor) else cos)
    s = xp.asarray(sin.data if isinstance(sin, Tensor) else sin)
    if 2 * c.shape[-1] > x.shape[-1] or c.shape[-2] != x.shape[-2]:
        raise ValueError(f"rope: cos/sin of shape {tuple(c.shape)} do not fit x of shape "
                         f"{x.shape} (need (T, <= D/2))")
    K = get_kernels(x.data)
    y = K.rope_forward(x.data, c, s, style)
    return _make(y, (x,), lambda g: (K.rope_backward(g, c, s, style),), "rope")


__all__ = [
    "relu", "gelu", "softmax", "log_softmax", "cross_entropy", "linear", "layer_norm",
    "embedding", "dropout", "scaled_dot_product_attention", "rope", "is_grad_enabled",
]
