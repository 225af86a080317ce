"""Exercise 3: one AdamW step (lesson 2, lessons/02_modules_mlp.py).

AdamW keeps two running averages per parameter: exp_avg of the gradient and exp_avg_sq
of its square, and steps each weight by their (bias-corrected) ratio. Its weight decay is
*decoupled*: it shrinks the weights directly instead of going through the gradient.
Write one step, updating ``param``, ``exp_avg`` and ``exp_avg_sq`` in place (the
optimizer keeps those arrays between steps). ``step`` counts from 1. The result must match
torch.optim.AdamW.

Check your work with:  tinygpt exercises check 3
"""

import numpy as np


def adamw_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
               exp_avg_sq: np.ndarray, step: int, lr: float, beta1: float, beta2: float,
               eps: float, weight_decay: float) -> None:
    """One AdamW update of ``param`` given its ``grad``; all three arrays change in place."""
    raise NotImplementedError("adamw_step (exercise 3; see lesson 2)")
