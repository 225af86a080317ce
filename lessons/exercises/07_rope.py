"""Exercise 7: rotary position embeddings, RoPE (lesson 6, lessons/06_positions.py).

RoPE encodes a token's position by rotating pairs of features of its query and key by an
angle that grows with the position, each pair at its own frequency. Then q . k depends
only on how far apart the two tokens are. Write the cos/sin tables and the rotation in
GPT-NeoX's "rotate-half" layout: feature i pairs with feature i + R/2, for the first R
features of each head (R = 2 * cos.shape[-1]; the rest pass through).

Check your work with:  tinygpt exercises check 7
"""

import numpy as np


def rope_cos_sin(positions: np.ndarray, rotary_dim: int,
                 theta: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position * theta ** (-2i / rotary_dim), each (len(positions), R/2)."""
    raise NotImplementedError("rope_cos_sin (exercise 7; see lesson 6)")


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate the first R = 2 * cos.shape[-1] features of x (..., T, D); cos, sin (T, R/2)."""
    raise NotImplementedError("apply_rope (exercise 7; see lesson 6)")
