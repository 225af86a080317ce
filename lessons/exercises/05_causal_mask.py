"""Exercise 5: the causal mask and a masked softmax (lesson 4, lessons/04_attention.py).

A language model must not peek at the tokens it is asked to predict: query i may attend
to keys j <= i only. Build that mask (True = may attend) and a softmax that ignores
masked keys. With a KV cache there are more keys than queries: the T queries are the
last T of the S positions.

Check your work with:  tinygpt exercises check 5
"""

import numpy as np


def causal_mask(T: int, S: int | None = None) -> np.ndarray:
    """(T, S) booleans, True where query i may attend to key j; S defaults to T."""
    raise NotImplementedError("causal_mask (exercise 5; see lesson 4)")


def masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of ``scores`` (..., T, S), with weight 0 where mask is
    False; ``mask`` (T, S) broadcasts. Every row has at least one allowed key."""
    raise NotImplementedError("masked_softmax (exercise 5; see lesson 4)")
