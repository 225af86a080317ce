"""Check analytic gradients against central finite differences.

For each input x and each element i: (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) should
equal the gradient autograd computed. Use float64 inputs: in float32 the rounding error of
the difference quotient is as large as the tolerance we want.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tinygpt import backend
from tinygpt.tensor import Tensor, no_grad


def numerical_grad(fn: Callable[..., Tensor], inputs: Sequence[Tensor], eps: float = 1e-6):
    """Central-difference gradients of ``fn(*inputs).sum()`` w.r.t. each input (host arrays)."""
    grads = []
    with no_grad():
        for x in inputs:
            g = np.zeros(x.shape, dtype=np.float64)
            flat = x.data.reshape(-1)  # a view: we nudge x in place and put it back
            for i in range(flat.size):
                old = flat[i].item()
                flat[i] = old + eps
                hi = float(fn(*inputs).data.sum())
                flat[i] = old - eps
                lo = float(fn(*inputs).data.sum())
                flat[i] = old
                g.reshape(-1)[i] = (hi - lo) / (2 * eps)
            grads.append(g)
    return grads


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[Tensor], eps: float = 1e-6,
              atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Raise AssertionError naming the input and the worst element if autograd disagrees."""
    for x in inputs:
        if x.dtype != np.float64:
            raise TypeError(f"gradcheck: use float64 inputs, got {x.dtype}")
        x.grad = None
    out = fn(*inputs)
    out.sum().backward()
    expected = numerical_grad(fn, inputs, eps)
    for n, (x, num) in enumerate(zip(inputs, expected)):
        got = np.zeros(x.shape) if x.grad is None else backend.to_numpy(x.grad)
        if not np.allclose(got, num, atol=atol, rtol=rtol):
            i = np.unravel_index(np.argmax(np.abs(got - num)), num.shape)
            raise AssertionError(f"gradcheck: input {n} (shape {x.shape}) at index {i}: "
                                 f"autograd {got[i]:.6g} vs finite difference {num[i]:.6g}")
    return True
