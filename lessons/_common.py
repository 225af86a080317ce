"""What every lesson shares: its options, where its figures go, headless matplotlib.

A lesson starts with ``lesson = setup(3, "BPE")``. ``lesson.quick`` is True with ``--quick``
(smaller sizes, fewer steps: the test suite runs every lesson that way) and
``lesson.savefig(fig, "merges")`` writes ``lesson_output/03/merges.png`` (``--out DIR`` to
change). Run as a script, figures are only written; opened as a notebook (jupytext), they
are shown inline too, and Jupyter's own command-line arguments are ignored.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

IN_NOTEBOOK = "ipykernel" in sys.modules
if not IN_NOTEBOOK:
    matplotlib.use("Agg")  # scripts and tests draw into files, no display needed

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

LESSONS = Path(__file__).resolve().parent
ROOT = LESSONS.parent
if importlib.util.find_spec("tinygpt") is None:  # a checkout that was not pip-installed
    sys.path.insert(0, str(ROOT))


@dataclass
class Lesson:
    """One lesson's run: its number, output folder and whether it runs in quick mode."""

    number: int
    out: Path
    quick: bool

    def savefig(self, fig: plt.Figure, name: str) -> Path:
        """Write ``fig`` as ``<out>/<name>.png``; show it inline in a notebook."""
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        print(f"[figure saved: {path}]")
        if IN_NOTEBOOK:
            plt.show()
        else:
            plt.close(fig)
        return path

    def pick(self, full, quick):
        """``quick`` in quick mode, else ``full`` (sizes and step counts)."""
        return quick if self.quick else full


def setup(number: int, title: str, argv: list[str] | None = None) -> Lesson:
    """Parse ``--out`` and ``--quick`` (ignoring anything else, e.g. Jupyter's arguments)."""
    parser = argparse.ArgumentParser(description=f"tinygpt lesson {number:02d}: {title}")
    parser.add_argument("--out", help=f"folder for the figures (default lesson_output/"
                                      f"{number:02d})")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes and fewer steps (the test suite uses it)")
    args, _ = parser.parse_known_args(argv)
    # a notebook has no command line: TINYGPT_LESSON_QUICK=1 in the environment is --quick
    quick = args.quick or os.environ.get("TINYGPT_LESSON_QUICK", "") not in ("", "0")
    out = Path(args.out or Path("lesson_output") / f"{number:02d}")
    out.mkdir(parents=True, exist_ok=True)
    print(f"Lesson {number:02d}: {title}{'  (quick mode)' if quick else ''}")
    return Lesson(number, out, quick)


def notice(*points: str) -> None:
    """Print the things to notice in what was just computed."""
    print("\nWhat to notice:")
    for point in points:
        print(f"  * {point}")


def shared_data(name: str) -> Path | None:
    """A reference file from ../shared/data (or $TINYGPT_SHARED_DATA); None when absent."""
    folder = Path(os.environ.get("TINYGPT_SHARED_DATA", ROOT.parent / "shared" / "data"))
    path = folder / name
    return path if path.exists() else None


def best_time(fn: Callable[[], object], repeat: int = 3) -> float:
    """Seconds of the fastest of ``repeat`` calls (the least disturbed by other work)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
