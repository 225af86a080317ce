"""Exercise 5, reference solution: the causal mask and a masked softmax."""

import numpy as np


def causal_mask(T: int, S: int | None = None) -> np.ndarray:
    """(T, S) booleans, True where query i may attend to key j; S defaults to T."""
    S = T if S is None else S
    position = S - T + np.arange(T)[:, None]  # queries are the last T positions
    return np.arange(S)[None, :] <= position


def masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of ``scores`` (..., T, S), with weight 0 where mask is
    False; ``mask`` (T, S) broadcasts. Every row has at least one allowed key."""
    scores = np.where(mask, scores, -np.inf)  # exp(-inf) = 0: masked keys get no weight
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
