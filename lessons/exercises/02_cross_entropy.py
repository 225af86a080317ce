"""Exercise 2: the cross-entropy loss and its gradient (lesson 2, lessons/02_modules_mlp.py).

A language model outputs logits (N, V): one score per vocabulary entry for each of N
positions. The loss is the mean over positions of -log softmax(logits)[target]. Write
the loss and its gradient with respect to the logits, with NumPy. Both must stay finite
when the logits are large (try logits around 1000).

Check your work with:  tinygpt exercises check 2
"""

import numpy as np


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over the N rows of -log(softmax(logits[n])[targets[n]]); logits (N, V)."""
    raise NotImplementedError("cross_entropy (exercise 2; see lesson 2)")


def cross_entropy_backward(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """d(mean loss)/d(logits), shape (N, V)."""
    raise NotImplementedError("cross_entropy_backward (exercise 2; see lesson 2)")
