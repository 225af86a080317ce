"""Exercise 6: the local-window (sliding-window) mask (lesson 5, lessons/05_multihead_local.py).

GPT-Neo's local layers let each query see only the last ``window`` positions: its own and
the window - 1 before it, never the future. Build that mask (True = may attend). As in
exercise 5, with a KV cache the T queries are the last T of S positions. A window below 1
is an error: raise ValueError.

Check your work with:  tinygpt exercises check 6
"""

import numpy as np


def local_window_mask(T: int, window: int, S: int | None = None) -> np.ndarray:
    """(T, S) booleans: query i may attend to key j when i - window < j <= i (positions)."""
    raise NotImplementedError("local_window_mask (exercise 6; see lesson 5)")
