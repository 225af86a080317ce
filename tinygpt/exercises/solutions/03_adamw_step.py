"""Exercise 3, reference solution: one AdamW step, in torch.optim.AdamW's order."""

import math

import numpy as np


def adamw_step(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray,
               exp_avg_sq: np.ndarray, step: int, lr: float, beta1: float, beta2: float,
               eps: float, weight_decay: float) -> None:
    """One AdamW update of ``param`` given its ``grad``; all three arrays change in place."""
    param *= 1 - lr * weight_decay  # decoupled decay: straight on the weights
    exp_avg *= beta1
    exp_avg += (1 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1**step  # the averages start at 0: undo that pull
    bias_correction2 = 1 - beta2**step
    denom = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps
    param -= lr / bias_correction1 * exp_avg / denom
