"""CuPy kernels for the GPU: the same functions as ``reference.py``.

The reference kernels are written against the array module of their inputs, so on CuPy
arrays they already run on the GPU; this module re-exports them, except attention (below),
and replaces the purely elementwise ops (GELU, AdamW) with one fused
``cupy.ElementwiseKernel`` each, so a training step does not launch a kernel per
arithmetic operation.

Attention is ``blockwise.py``'s: query blocks against chunks of the keys they may see,
joined by an online softmax (FlashAttention's algorithm in CuPy array operations, not one
fused CUDA kernel), so no (B, H, T, S) score array is held and a local layer's cost grows
linearly with T. Only ``need_weights`` builds the full probabilities (the reference).

Status: written against CuPy's documented API but NOT yet run on real GPU hardware (no
GPU was available when it was written); ``tests/test_kernels.py`` compares it with the
reference whenever CuPy and a GPU are present.
"""

from __future__ import annotations

import math

import cupy

from tinygpt.kernels import reference
from tinygpt.kernels.blockwise import attention_backward, attention_forward  # noqa: F401
from tinygpt.kernels.reference import (  # noqa: F401  (re-exported: they run on CuPy as is)
    cross_entropy_backward,
    cross_entropy_forward,
    embedding_backward,
    layer_norm_backward,
    layer_norm_forward,
    log_softmax_backward,
    log_softmax_forward,
    rope_backward,
    rope_cos_sin,
    rope_forward,
    softmax_backward,
    softmax_forward,
    sum_of_squares,
)

# T is float or double; CUDA's tanh/erf/exp/sqrt are overloaded for both.
_gelu_forward_kernel = cupy.ElementwiseKernel(
    "T x, bool use_tanh",
    "T y",
    """
    if (use_tanh) {
        y = (T)0.5 * x * ((T)1 + tanh((T)0.7978845608028654 * (x + (T)0.044715 * x * x * x)));
    } else {
        y = (T)0.5 * x * ((T)1 + erf(x * (T)0.7071067811865476));
    }
    """,
    "tinygpt_gelu_forward",
)

_gelu_backward_kernel = cupy.ElementwiseKernel(
    "T x, T dy, bool use_tanh",
    "T dx",
    """
    if (use_tanh) {
        T t = tanh((T)0.7978845608028654 * (x + (T)0.044715 * x * x * x));
        T du = (T)0.7978845608028654 * ((T)1 + (T)3 * (T)0.044715 * x * x);
        dx = dy * ((T)0.5 * ((T)1 + t) + (T)0.5 * x * ((T)1 - t * t) * du);
    } else {
        T cdf = (T)0.5 * ((T)1 + erf(x * (T)0.7071067811865476));
        dx = dy * (cdf + x * exp((T)-0.5 * x * x) * (T)0.3989422804014327);
    }
    """,
    "tinygpt_gelu_backward",
)

# One pass over the four arrays, in torch.optim.AdamW's order of operations.
_adamw_kernel = cupy.ElementwiseKernel(
    "T grad, T decay, T lerp_weight, T beta2, T one_minus_beta2, T step_size, "
    "T bias_correction2_sqrt, T eps",
    "T param, T exp_avg, T exp_avg_sq",
    """
    exp_avg = exp_avg + lerp_weight * (grad - exp_avg);
    exp_avg_sq = exp_avg_sq * beta2 + one_minus_beta2 * grad * grad;
    T denom = sqrt(exp_avg_sq) / bias_correction2_sqrt + eps;
    param = param * decay - step_size * exp_avg / denom;
    """,
    "tinygpt_adamw_step",
)


def gelu_forward(x, approximate: str = "tanh"):
    """GELU, "tanh" (GPT-2's gelu_new) or "none" (exact erf) (see reference.gelu_forward)."""
    reference.check_gelu_approximation(approximate)
    return _gelu_forward_kernel(x, approximate == "tanh")


def gelu_backward(x, dy, approximate: str = "tanh"):
    """Gradient of GELU, recomputed from x (see reference.gelu_backward)."""
    reference.check_gelu_approximation(approximate)
    return _gelu_backward_kernel(x, dy, approximate == "tanh")


def adamw_step(param, grad, exp_avg, exp_avg_sq, step: int, lr: float, beta1: float,
               beta2: float, eps: float, weight_decay: float) -> None:
    """One fused AdamW update, in place (see reference.adamw_step)."""
    f = param.dtype.type
    _adamw_kernel(grad, f(1 - lr * weight_decay), f(1 - beta1), f(beta2), f(1 - beta2),
                  f(lr / (1 - beta1**step)), f(math.sqrt(1 - beta2**step)), f(eps),
                  param, exp_avg, exp_avg_sq)
