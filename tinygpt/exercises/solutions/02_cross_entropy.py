"""Exercise 2, reference solution: the cross-entropy loss and its gradient.

log softmax(x)_t = x_t - logsumexp(x), and logsumexp(x) = m + log(sum(exp(x - m))) with m
the row max, which keeps exp() from overflowing. The gradient of one row's loss is
softmax(x) - onehot(t); the mean over N rows divides it by N.
"""

import numpy as np


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    m = logits.max(axis=-1, keepdims=True)
    return m[:, 0] + np.log(np.exp(logits - m).sum(axis=-1))


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over the N rows of -log(softmax(logits[n])[targets[n]]); logits (N, V)."""
    rows = np.arange(len(targets))
    return float(np.mean(_logsumexp(logits) - logits[rows, targets]))


def cross_entropy_backward(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d(mean loss)/d(logits), shape (N, V)."""
    probs = np.exp(logits - _logsumexp(logits)[:, None])
    probs[np.arange(len(targets)), targets] -= 1.0
    return probs / len(targets)
