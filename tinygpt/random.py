"""One seeded random generator for the whole library, so runs are reproducible.

Random numbers are drawn on the host with NumPy's PCG64 and moved to the device, so the
same seed gives the same initialisation on the CPU and on a GPU. The generator's state
is a plain dict of ints: the trainer saves it in checkpoints for an exact resume.
"""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reset the global generator (like ``torch.manual_seed``)."""
    global _rng
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
    _rng = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    """The global generator (host NumPy)."""
    return _rng


def get_rng_state() -> dict:
    """A JSON-serialisable snapshot of the global generator."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a snapshot taken with :func:`get_rng_state`."""
    _rng.bit_generator.state = state
