"""The array module of the active device: NumPy on the CPU, CuPy on a GPU.

Every compute path asks this module for its array library (``backend.xp``) instead of
importing numpy directly, so the same code runs on both. Switch with
``tinygpt.set_device("cuda")`` or the ``TINYGPT_DEVICE`` environment variable.
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

DEVICES = ("cpu", "cuda")

xp: ModuleType = np  # the array module of the active device
device: str = "cpu"


def set_device(name: str) -> None:
    """Make ``name`` ("cpu" or "cuda") the device new tensors are created on."""
    global xp, device
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; expected one of {DEVICES}")
    if name == "cuda":
        try:
            import cupy
        except ImportError as e:
            raise RuntimeError(
                "device 'cuda' needs CuPy: pip install 'tinygpt[gpu]' (or a cupy build "
                "matching your CUDA version)"
            ) from e
        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise RuntimeError("device 'cuda' requested but CuPy sees no GPU")
        xp, device = cupy, "cuda"
    else:
        xp, device = np, "cpu"


def get_device() -> str:
    """Name of the active device."""
    return device


def array_module(a) -> ModuleType:
    """The array module an existing array belongs to (numpy or cupy)."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np
    mod = type(a).__module__
    if mod.startswith("cupy"):
        import cupy

        return cupy
    return np


def to_numpy(a) -> np.ndarray:
    """Copy an array of any backend to host NumPy memory (no copy if it already is)."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):  # cupy
        return a.get()
    return np.asarray(a)


if os.environ.get("TINYGPT_DEVICE"):
    set_device(os.environ["TINYGPT_DEVICE"])


def scatter_add(target, index, values) -> None:
    """In place ``target[index] += values`` where repeated indices add up (np.add.at)."""
    if array_module(target) is np:
        np.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)
