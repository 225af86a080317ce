"""Fused array-level kernels behind ``tinygpt.functional``: pick the implementation to use.

Three modules expose the same functions (``softmax_forward``, ``attention_backward``,
``adamw_step`` ...): ``reference`` (readable NumPy, the truth), ``cpu`` (numba JIT) and
``cuda`` (CuPy). ``get_kernels()`` chooses among them each time it is called, so switching
device or setting ``TINYGPT_KERNELS`` takes effect at once.
"""

from __future__ import annotations

import ctypes
import os
import sys
from types import ModuleType

import numpy as np

from tinygpt import backend
from tinygpt.kernels import reference

KERNEL_CHOICES = ("numba", "numpy")


def _prefer_workqueue_threads() -> None:
    """Make numba use its workqueue threading layer unless NUMBA_THREADING_LAYER says otherwise.

    numba's default OpenMP threads spin after each parallel loop; between our kernels NumPy's
    BLAS runs its own threads, and on a small machine the two fight (a training step measured
    2x to 8x slower). Workqueue threads park at once. numba picks its layer when it first starts
    threads (the first parallel kernel, or a user's ``numba.set_num_threads``), so this runs on
    ``import tinygpt``, before either can happen.
    """
    if os.environ.get("NUMBA_THREADING_LAYER"):
        return
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"  # read when numba is first imported
    if "numba" in sys.modules:  # already imported: its config has read the variable already
        sys.modules["numba"].config.THREADING_LAYER = "workqueue"


_prefer_workqueue_threads()

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed memory instead of handing it back to the OS.

    A training step allocates and frees the same large arrays (activations, gradients,
    attention tiles) every step. By default glibc gives blocks over its mmap threshold
    straight back to the kernel on free and trims the heap's top, so the next step pays
    again for fresh zeroed pages: a page fault per 4 KiB. Raising both thresholds keeps
    that memory in the process; each step reuses it, so peak use does not grow (peak RSS,
    config a 194 vs 195 MiB, config b 1081 vs 1079 MiB). Config a's training step measured
    120 -> 74-99 ms. Skipped when the user set either MALLOC_* variable or
    TINYGPT_KEEP_FREED_MEMORY=0, and outside glibc (macOS, musl). Returns True when applied.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    if os.environ.get("TINYGPT_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, libc's among them
    except (OSError, AttributeError):
        return False
    # 32 MiB is the largest mmap threshold glibc accepts on 64-bit
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30))


MALLOC_TUNED = _keep_freed_memory()


def get_kernels(like=None) -> ModuleType:
    """The kernel module for now: cuda on a GPU, else cpu (numba) unless
    ``TINYGPT_KERNELS=numpy`` asks for the reference NumPy kernels. With ``like`` (an
    array), the one for where that array lives: a model made before ``set_device("cuda")``
    keeps NumPy arrays, which the CPU kernels compute on (CuPy's would refuse them)."""
    on_gpu = backend.device == "cuda" if like is None else backend.array_module(like) is not np
    if on_gpu:
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
