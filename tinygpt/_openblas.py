"""One setting for NumPy's OpenBLAS, made on ``import tinygpt`` before NumPy loads it.

OpenBLAS's idle threads spin for 2**28 cycles (~0.1 s) after each call before they sleep, so
in a training step they hold the other cores all the time, and attention's threads
(kernels/cpu.py, ``_run_groups``) got no core to run on. 2**20 cycles (~0.3 ms) keeps them
awake across back-to-back BLAS calls and lets them sleep soon after (config a's step, 4
alternating pairs of processes: 44.8-57.4 ms -> 39.3-45.6 ms; 2**4, sleeping at once:
40.8-48.3 ms). OpenBLAS reads the variable when NumPy loads it, so it acts only when tinygpt
is imported before NumPy (the ``tinygpt`` command, or ``import tinygpt`` first); a value the
user set wins. Other BLAS libraries ignore it.
"""

import os
import re
import sys

TIMEOUT = "20"  # log2 of the cycles an idle thread spins (OpenBLAS clamps it to 4..30)


def _read_like_openblas(value: str) -> int:
    """The number OpenBLAS makes of the variable (C's atoi: leading digits, else 0)."""
    match = re.match(r"\s*[+-]?\d+", value)
    return int(match.group()) if match else 0


# True when OpenBLAS's idle threads will nap soon (our value or a user's small one, set
# before NumPy loaded OpenBLAS): only then does attention share its heads among threads.
# OpenBLAS takes 0 or less as "unset": its default, 2**28.
_before_numpy = "numpy" not in sys.modules or "OPENBLAS_THREAD_TIMEOUT" in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", TIMEOUT)
THREADS_NAP = _before_numpy and 0 < _read_like_openblas(os.environ["OPENBLAS_THREAD_TIMEOUT"]) <= 24


def numpy_uses_openblas() -> bool:
    """True when NumPy's BLAS is OpenBLAS with its own threads, the library the setting above
    and attention's threads were measured with (MKL, Accelerate or OpenMP builds keep
    attention on one thread)."""
    import numpy as np

    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        name, config = str(blas["name"]), str(blas.get("openblas configuration", ""))
    except (AttributeError, KeyError, TypeError):  # NumPy before 1.26: no such record
        return False
    # an OpenMP build of OpenBLAS ignores OPENBLAS_THREAD_TIMEOUT: its threads may spin
    return "openblas" in name.lower() and "USE_OPENMP" not in config
