"""Exercise 8: top-k and top-p (nucleus) filtering (lesson 9, lessons/09_sampling.py).

Before sampling the next token, generation often cuts the long tail of unlikely tokens.
top-k keeps the k largest logits of each row; top-p keeps the smallest set of most likely
tokens whose probabilities add up to at least p. Dropped tokens get the logit -inf, so
their probability after softmax is exactly 0. Logits are (B, V): one row per sequence.
Return new arrays; do not change the input.

Check your work with:  tinygpt exercises check 8
"""

import numpy as np


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest logits per row (and any tied with the k-th); -inf elsewhere.
    A k larger than the row keeps everything."""
    raise NotImplementedError("top_k_filter (exercise 8; see lesson 9)")


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose probability reaches p; -inf else."""
    raise NotImplementedError("top_p_filter (exercise 8; see lesson 9)")
