"""Exercise 1, reference solution: the backward pass of softmax.

For one row, dy_i/dx_j = y_i (1[i == j] - y_j). Applying that Jacobian to dy gives
dx_j = y_j (dy_j - sum_i dy_i y_i): the sum is one number per row.
"""

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    """Given: softmax over the last axis (subtracting the row max keeps exp() finite)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dL/dx for y = softmax(x) over the last axis, given dL/dy = dy (same shape as y)."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
