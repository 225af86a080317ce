"""``tinygpt exercises list|check N|solution N``: the classroom exercises.

    tinygpt exercises list                          # what there is, and for which lesson
    tinygpt exercises check 5                       # grade lessons/exercises/05_*.py
    tinygpt exercises check 5 --file mine.py        # grade another file
    tinygpt exercises check 5 --file submissions/   # grade every .py there, then a summary
    tinygpt exercises solution 5                    # print the reference solution

``check`` exits with 0 when every check passes and 1 otherwise (2 for a bad number or a
missing file), so it also works in a script or a class's CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``exercises`` command (and its list/check/solution subcommands)."""
    parser = subparsers.add_parser("exercises", help="list, check and solve the exercises")
    commands = parser.add_subparsers(dest="exercises_command", metavar="COMMAND", required=True)
    commands.add_parser("list", help="the exercises and the lessons they belong to")
    check = commands.add_parser("check", help="grade your solution of exercise N")
    check.add_argument("number", type=int, metavar="N", help="exercise number")
    check.add_argument("--file", nargs="+", metavar="PATH",
                       help="your file (default: lessons/exercises/NN_*.py); several files or "
                            "folders of .py files grade each, then print a summary")
    solution = commands.add_parser("solution", help="print the reference solution of N")
    solution.add_argument("number", type=int, metavar="N", help="exercise number")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run an ``exercises`` subcommand; returns the exit code."""
    from tinygpt.exercises import EXERCISES, find_student_file, get_exercise
    from tinygpt.exercises.grader import grade

    try:
        if args.exercises_command == "list":
            for ex in EXERCISES:
                print(f"{ex.number:>3}  {ex.title:<40} lesson {ex.lesson:<3} {ex.filename}")
            print("grade one with: tinygpt exercises check N [--file PATH]")
            return 0
        exercise = get_exercise(args.number)
        if args.exercises_command == "solution":
            print(exercise.solution.read_text(encoding="utf-8"), end="")
            return 0
        paths = _files(args.file) if args.file else [find_student_file(exercise)]
        if len(paths) == 1:
            return grade(exercise, paths[0])
        failed = []
        for path in paths:  # a class's submissions: each report, then one line each
            if grade(exercise, path):
                failed.append(path)
            print()
        for path in paths:
            print(f"{'FAIL' if path in failed else 'PASS'}  {path}")
        print(f"{len(paths) - len(failed)} of {len(paths)} files pass every check")
        return 1 if failed else 0
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _files(given: list[str]) -> list[Path]:
    """The files named by --file: each file, and the .py files of each folder (sorted)."""
    paths = []
    for name in given:
        p = Path(name)
        if p.is_dir():
            found = sorted(q for q in p.glob("*.py") if q.is_file())
            if not found:
                raise FileNotFoundError(f"--file {p}: the folder has no .py files")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"--file {p}: no such file or folder")
    return list(dict.fromkeys(paths))
