"""The grader: import a student's file by path, run an exercise's checks, report each one.

A check is a small function that calls the student's code on random inputs and compares
the result with tinygpt's own implementation (the reference), by value or by a property
such as finite differences. A failing check prints a hint about where to look, never
the expected numbers or code. Each check draws its inputs from its own seeded
generator, so a run is reproducible.
"""

from __future__ import annotations

import importlib.util
import itertools
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TextIO

import numpy as np


class CheckFailed(Exception):
    """Raised by a check: the message says what went wrong (not what the answer is)."""


class TookTooLong(BaseException):
    """A check (or the import) ran past TIME_LIMIT seconds: an endless loop, most likely.
    A BaseException, like KeyboardInterrupt: an ``except Exception`` in the student's code or
    in a check (one that expects some other error) must not swallow it."""


TIME_LIMIT = 30  # seconds per check; the reference solutions take well under one


@dataclass(frozen=True)
class Check:
    """One named test of a student's code, with the hint shown when it fails."""

    name: str
    hint: str
    run: Callable[[ModuleType], None]


def check(name: str, hint: str) -> Callable[[Callable[[ModuleType], None]], Check]:
    """Decorator: turn ``fn(module)`` into a :class:`Check` with a name and a hint."""
    return lambda fn: Check(name, hint, fn)


@dataclass
class Result:
    """What one check gave: passed or not, and the message to show."""

    check: Check
    passed: bool
    message: str = ""


# ---------------------------------------------------------------------- helpers for checks


def rng(seed: int) -> np.random.Generator:
    """The generator a check draws its inputs from."""
    return np.random.default_rng(seed)


def function(module: ModuleType, name: str) -> Callable:
    """The student's function ``name``, or a failure that says it is missing."""
    fn = getattr(module, name, None)
    if not callable(fn):
        raise CheckFailed(f"the file has no function {name}() (keep the name from the stub)")
    return fn


def as_array(value, what: str) -> np.ndarray:
    """The student's result as a NumPy array (a clear failure if it is not array-like)."""
    if value is None:
        raise CheckFailed(f"{what} returned None: did you forget a return statement?")
    if type(value).__module__.startswith("tinygpt") and hasattr(value, "numpy"):
        raise CheckFailed(f"{what} returned a tinygpt {type(value).__name__}; these "
                          f"exercises work on NumPy arrays: return its .numpy()")
    try:
        return np.asarray(value)
    except Exception as e:  # anything that np.asarray cannot take
        raise CheckFailed(f"{what} returned {type(value).__name__}, not an array ({e})") from e


def expect_shape(got: np.ndarray, shape: tuple, what: str) -> None:
    if got.shape != tuple(shape):
        raise CheckFailed(f"{what} has shape {got.shape}, expected {tuple(shape)}")


def expect_close(got, expected, what: str, rtol: float = 1e-6, atol: float = 1e-9) -> None:
    """Fail unless ``got`` matches ``expected`` elementwise; report only the worst error."""
    got = as_array(got, what)
    expected = np.asarray(expected)
    expect_shape(got, expected.shape, what)
    if not np.issubdtype(got.dtype, np.number) and got.dtype != bool:
        raise CheckFailed(f"{what} has dtype {got.dtype}, expected numbers")
    low_precision = got.dtype in (np.float16, np.float32) and expected.dtype == np.float64
    got = got.astype(np.float64)
    if np.isnan(got).any() and not np.isnan(expected).any():
        raise CheckFailed(f"{what} contains NaN")
    if not np.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
        err = np.where(np.isfinite(got - expected), np.abs(got - expected), np.inf)
        err = np.where(got == expected, 0.0, err)  # -inf == -inf is a match
        where = np.unravel_index(np.argmax(err), err.shape) if err.ndim else ()
        note = LOW_PRECISION_NOTE if low_precision else ""
        raise CheckFailed(f"{what} is off: largest error {err.max():.3g} at index "
                          f"{tuple(int(i) for i in where)}{note}")


LOW_PRECISION_NOTE = (" (your result is float32 or float16 but the inputs are float64: keep "
                      "their precision, this error may be rounding alone)")


def expect_equal(got, expected, what: str) -> None:
    """Exact equality for masks, ids and lists; reports the first difference."""
    if isinstance(expected, np.ndarray):
        got = as_array(got, what)
        expect_shape(got, expected.shape, what)
        if got.dtype != expected.dtype:
            raise CheckFailed(f"{what} has dtype {got.dtype}, expected {expected.dtype}")
        if not np.array_equal(got, expected):
            where = tuple(int(i) for i in np.argwhere(got != expected)[0])
            raise CheckFailed(f"{what} differs first at index {where}")
        return
    if got != expected:
        raise CheckFailed(f"{what} is wrong")


# --------------------------------------------------------------------------- loading


_counter = itertools.count()


def load_student_file(path: str | Path) -> ModuleType:
    """Import a Python file by path as a fresh module (never cached between runs)."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder, not a Python file")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = f"tinygpt_student_{path.stem.replace('-', '_')}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up here
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def _where_in(path: Path, error: BaseException) -> str:
    """' (line N of FILE)' for the deepest frame of the traceback inside the student's file."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    return f" (line {line} of {path.name})" if line else ""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TookTooLong in the block after ``seconds`` (an alarm signal: Unix, main thread;
    elsewhere the block simply runs without a limit)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(signum, frame):
        if frame is not None and frame.f_code.co_filename == __file__:
            return  # the grader's own code (this block's exit, say): the next alarm will do
        raise TookTooLong(f"took longer than {seconds:g} s (an endless loop?)")

    previous = signal.signal(signal.SIGALRM, ring)
    # then every millisecond: a loop whose bare `except:` swallows an alarm soon meets one
    # outside its try (at the loop's jump back), which nothing in it catches
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.001)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _describe(e: BaseException) -> str:
    """``str(e)``, even for an exception whose own __str__ fails."""
    try:
        return str(e)
    except Exception:
        return "(its message could not be printed)"


def _crash_message(e: BaseException, path: Path) -> str:
    """What to show for the student's code stopping with ``e`` (not a CheckFailed)."""
    if isinstance(e, SystemExit):  # exit() / sys.exit() would end the grader itself
        return (f"called exit() or sys.exit({_describe(e)}){_where_in(path, e)}; return a "
                f"value instead")
    if isinstance(e, TookTooLong):
        return f"{_describe(e)}{_where_in(path, e)}"
    return f"raised {type(e).__name__}: {_describe(e)}{_where_in(path, e)}"


def run_checks(checks: list[Check], module: ModuleType, path: Path) -> list[Result]:
    """Run every check; a failure, a NotImplementedError, a crash, an exit() or an endless
    loop (TIME_LIMIT) never stops the rest."""
    return list(each_result(checks, module, path))


def each_result(checks: list[Check], module: ModuleType, path: Path) -> Iterator[Result]:
    """run_checks one check at a time: each Result as soon as its check is done."""
    for c in checks:
        try:
            with np.errstate(all="ignore"), time_limit(TIME_LIMIT):  # overflow shows up in
                c.run(module)  # the checks' messages
        except CheckFailed as e:
            result = Result(c, False, _describe(e))
        except NotImplementedError as e:
            result = Result(c, False, f"not implemented yet: {_describe(e)}".rstrip(": "))
        except (Exception, SystemExit, TookTooLong) as e:  # the student's code crashed or
            # looped: show where, go on
            result = Result(c, False, _crash_message(e, path))
        else:
            result = Result(c, True)
        yield result  # outside the time limit: the caller's printing is not timed


def grade(exercise, path: str | Path, out: TextIO | None = None) -> int:
    """Grade ``path`` for ``exercise``; print PASS/FAIL per check (to ``out``, default
    stdout); return 0 if all pass, else 1."""
    path = Path(path)
    out = out or sys.stdout
    print(f"exercise {exercise.number}: {exercise.title} (lesson {exercise.lesson})", file=out)
    print(f"file: {path}", file=out)
    try:
        with time_limit(TIME_LIMIT):
            module = load_student_file(path)
    except (Exception, SystemExit, TookTooLong) as e:  # a syntax error, a crash, exit() or
        # an endless loop at import
        why = (_crash_message(e, path) if isinstance(e, (SystemExit, TookTooLong))
               else f"{type(e).__name__}: {_describe(e)}{_where_in(path, e)}")
        print(f"  could not import the file: {why}", file=out)
        print(f"0 of {len(exercise.checks)} checks pass", file=out)
        return 1
    results = []
    for r in each_result(exercise.checks, module, path):  # each line as soon as it is known
        results.append(r)
        print(f"  {'PASS' if r.passed else 'FAIL'}  {r.check.name}", file=out, flush=True)
        if r.passed:
            continue
        print(f"        {r.message}", file=out)
        # no hint where the message names the cause already (low precision, exit(), a loop)
        if not r.message.startswith(("not implemented yet", "called exit()", "took longer")) \
                and LOW_PRECISION_NOTE not in r.message:
            print(f"        hint: {r.check.hint}", file=out, flush=True)
    not_done = all(r.message.startswith("not implemented yet") for r in results)
    passed = sum(r.passed for r in results)
    print(f"{passed} of {len(results)} checks pass", file=out)
    if not_done:
        print(f"open {path} and replace the `raise NotImplementedError` lines with your code",
              file=out)
    return 0 if passed == len(results) else 1
