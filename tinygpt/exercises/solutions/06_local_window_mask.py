"""Exercise 6, reference solution: the local-window mask."""

import numpy as np


def local_window_mask(T: int, window: int, S: int | None = None) -> np.ndarray:
    """(T, S) booleans: query i may attend to key j when i - window < j <= i (positions)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    S = T if S is None else S
    position = S - T + np.arange(T)[:, None]  # queries are the last T positions
    j = np.arange(S)[None, :]
    return (j <= position) & (j > position - window)
