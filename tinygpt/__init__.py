"""tinygpt: a from-scratch, readable GPT framework in NumPy (autograd, BPE, GPT, training)."""

from tinygpt import _openblas, backend  # noqa: F401  (_openblas first: before NumPy loads)
from tinygpt.backend import get_device, set_device
from tinygpt.random import get_rng_state, manual_seed, set_rng_state
from tinygpt.tensor import (
    Tensor,
    arange,
    cat,
    full,
    is_grad_enabled,
    no_grad,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    stack,
    tensor,
    tril,
    triu,
    where,
    zeros,
    zeros_like,
)

__version__ = "0.1.0"

from tinygpt import functional, nn, optim  # noqa: E402  (they need Tensor first)

__all__ = [
    "Tensor", "arange", "backend", "cat", "full", "functional", "get_device", "get_rng_state",
    "is_grad_enabled", "manual_seed", "nn", "no_grad", "ones", "ones_like", "optim", "rand",
    "randint", "randn", "set_device", "set_rng_state", "stack", "tensor", "tril", "triu", "where",
    "zeros", "zeros_like", "__version__",
]
