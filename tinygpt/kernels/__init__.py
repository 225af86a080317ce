"""Fused array-level kernels behind ``tinygpt.functional``: pick the implementation to use.

Three modules expose the same functions (``softmax_forward``, ``attention_backward``,
``adamw_step`` ...): ``reference`` (readable NumPy, the truth), ``cpu`` (numba JIT) and
``cuda`` (CuPy). ``get_kernels()`` chooses among them each time it is called, so switching
device or setting ``TINYGPT_KERNELS`` takes effect at once.
"""

from __future__ import annotations

import os
from types import ModuleType

from tinygpt import backend
from tinygpt.kernels import reference

KERNEL_CHOICES = ("numba", "numpy")


def get_kernels() -> ModuleType:
    """The kernel module for now: cuda on a GPU, else cpu (numba) unless
    ``TINYGPT_KERNELS=numpy`` asks for the reference NumPy kernels."""
    if backend.device == "cuda":
        from tinygpt.kernels import cuda

        return cuda
    choice = os.environ.get("TINYGPT_KERNELS", "numba").strip().lower() or "numba"
    if choice not in KERNEL_CHOICES:
        raise ValueError(
            f"TINYGPT_KERNELS={choice!r} is not a kernel choice; expected one of {KERNEL_CHOICES}"
        )
    if choice == "numpy":
        return reference
    from tinygpt.kernels import cpu

    return cpu
