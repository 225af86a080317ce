"""Exercise 1: the backward pass of softmax (lesson 1, lessons/01_autograd.py).

softmax turns a row of scores x into probabilities y = exp(x) / sum(exp(x)). During the
backward pass a later layer hands softmax dy = dL/dy, and softmax must hand back
dx = dL/dx. Write ``softmax_backward(y, dy)`` with NumPy: it gets the forward output y (so
it does not need x) and dy, both of shape (..., V); softmax acts on the last axis only.

Check your work with:  tinygpt exercises check 1
"""

import numpy as np


def softmax(x: np.ndarray) -> np.ndarray:
    """Given: softmax over the last axis (subtracting the row max keeps exp() finite)."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dL/dx for y = softmax(x) over the last axis, given dL/dy = dy (same shape as y)."""
    raise NotImplementedError("softmax_backward (exercise 1; see lesson 1)")
