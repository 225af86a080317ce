"""Exercise 7, reference solution: RoPE tables and the rotate-half rotation."""

import numpy as np


def rope_cos_sin(positions: np.ndarray, rotary_dim: int,
                 theta: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position * theta ** (-2i / rotary_dim), each (len(positions), R/2)."""
    inv_freq = theta ** (-np.arange(0, rotary_dim, 2) / rotary_dim)  # fast pairs first
    angles = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.cos(angles), np.sin(angles)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate the first R = 2 * cos.shape[-1] features of x (..., T, D); cos, sin (T, R/2)."""
    half = cos.shape[-1]
    a, b = x[..., :half], x[..., half:2 * half]  # feature i pairs with i + R/2
    y = x.copy()
    y[..., :half] = a * cos - b * sin
    y[..., half:2 * half] = b * cos + a * sin
    return y
