"""Exercise 9: layer norm, forward and backward (lesson 7, lessons/07_gpt_model.py).

Every GPT block normalises its input: each row x (the C features of one token) becomes
(x - mean) / sqrt(var + eps), then is scaled by ``weight`` and shifted by ``bias``
(both of shape (C,)). ``var`` is the biased variance (divide by C). Write the forward pass
and the backward pass: given dy = dL/dy, return dL/dx, dL/dweight and dL/dbias.

Check your work with:  tinygpt exercises check 9
"""

import numpy as np


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
               eps: float = 1e-5) -> np.ndarray:
    """Normalise the last axis of x (..., C), then scale by weight and shift by bias."""
    raise NotImplementedError("layer_norm (exercise 9; see lesson 7)")


def layer_norm_backward(dy: np.ndarray, x: np.ndarray, weight: np.ndarray,
                        eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias) for y = layer_norm(x, weight, bias, eps) and dy = dL/dy."""
    raise NotImplementedError("layer_norm_backward (exercise 9; see lesson 7)")
