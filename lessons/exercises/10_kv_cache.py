"""Exercise 10: appending to a KV cache (lesson 10, lessons/10_kv_cache.py).

When a model generates text one token at a time, the keys and values of earlier tokens
never change: keep them in a cache and compute only the new token's. Keys and values
have shape (B, H, S, D), with positions on axis 2. Write the append, and the trim that a
local-window layer uses to keep only its last ``keep`` positions (so its memory stays
bounded however long the text grows).

Check your work with:  tinygpt exercises check 10
"""

import numpy as np


def kv_append(past: np.ndarray | None, new: np.ndarray) -> np.ndarray:
    """The cache after this step: ``past`` (B, H, S, D) or None, then ``new`` (B, H, T, D)."""
    raise NotImplementedError("kv_append (exercise 10; see lesson 10)")


def kv_trim(cache: np.ndarray, keep: int) -> np.ndarray:
    """Only the last ``keep`` positions of ``cache`` (all of it if it is shorter)."""
    raise NotImplementedError("kv_trim (exercise 10; see lesson 10)")
