"""Exercise 8, reference solution: top-k and top-p filtering."""

import numpy as np


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest logits per row (and any tied with the k-th); -inf elsewhere.
    A k larger than the row keeps everything."""
    k = min(k, logits.shape[-1])
    kth = np.sort(logits, axis=-1)[:, -k][:, None]
    return np.where(logits < kth, -np.inf, logits)


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose probability reaches p; -inf else."""
    order = np.argsort(-logits, axis=-1, kind="stable")  # most likely first
    sorted_logits = np.take_along_axis(logits, order, axis=-1)
    probs = np.exp(sorted_logits - sorted_logits[:, :1])
    probs /= probs.sum(axis=-1, keepdims=True)
    before = np.cumsum(probs, axis=-1) - probs  # the mass of the more likely tokens
    drop = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(drop, order, before >= p, axis=-1)  # back to the original places
    return np.where(drop, -np.inf, logits)
