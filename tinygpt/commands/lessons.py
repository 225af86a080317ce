"""``tinygpt lessons list|run N``: the numbered lessons in ``lessons/``.

    tinygpt lessons list                       # number, title and file of each lesson
    tinygpt lessons run 4                      # run lessons/04_*.py, figures in lesson_output/04
    tinygpt lessons run 8 --quick --out figs   # the short version, figures in figs/

A lesson is a plain script (jupytext "percent" format, so it also opens as a notebook).
``run`` starts it with this Python in a new process and returns its exit code. The
``lessons/`` folder is looked for beside the package (a source checkout or an editable
install), then in the current directory.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

LESSON_FILE = re.compile(r"^(\d\d)_(\w+)\.py$")


def lessons_folder() -> Path:
    """The ``lessons/`` folder: beside the package, else in the current directory."""
    import tinygpt

    candidates = [Path(tinygpt.__file__).resolve().parents[1] / "lessons", Path.cwd() / "lessons"]
    for folder in candidates:
        if any(LESSON_FILE.match(p.name) for p in folder.glob("*.py")):
            return folder
    raise FileNotFoundError(
        "no lessons/ folder with lesson files found (looked in "
        f"{', '.join(str(c) for c in dict.fromkeys(candidates))}); the lessons ship with the "
        "source checkout: run this from its root"
    )


def find_lessons(folder: Path) -> dict[int, Path]:
    """Lesson number -> file, for every ``NN_topic.py`` in ``folder``."""
    found = {}
    for path in sorted(folder.glob("*.py")):
        match = LESSON_FILE.match(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def lesson_title(path: Path) -> str:
    """The lesson's first Markdown heading ("# # Lesson 4: attention" -> "attention")."""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^# #\s+(?:Lesson \d+:\s*)?(.*)", line)
        if match:
            return match.group(1).strip()
    return path.stem


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``lessons`` command (and its list/run subcommands)."""
    parser = subparsers.add_parser("lessons", help="list and run the numbered lessons")
    commands = parser.add_subparsers(dest="lessons_command", metavar="COMMAND", required=True)
    commands.add_parser("list", help="the lessons, in reading order")
    run_parser = commands.add_parser("run", help="run lesson N as a script")
    run_parser.add_argument("number", type=int, metavar="N", help="lesson number")
    run_parser.add_argument("--quick", action="store_true",
                            help="smaller sizes and fewer steps (about a minute or less)")
    run_parser.add_argument("--out", help="folder for the figures (default lesson_output/NN)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a ``lessons`` subcommand; returns the exit code (2 for a bad number or folder)."""
    try:
        folder = lessons_folder()
        lessons = find_lessons(folder)
        if args.lessons_command == "list":
            titles = {number: lesson_title(path) for number, path in lessons.items()}
            width = max(map(len, titles.values()), default=0)
            for number, path in lessons.items():
                print(f"{number:>3}  {titles[number]:<{width}}  {path.name}")
            print(f"run one with: tinygpt lessons run N [--quick] [--out DIR]   ({folder})")
            return 0
        if args.number not in lessons:
            raise ValueError(f"there is no lesson {args.number}; lessons are "
                             f"{', '.join(str(n) for n in lessons)}")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = [sys.executable, str(lessons[args.number])]
    if args.quick:
        command.append("--quick")
    if args.out:
        command += ["--out", args.out]
    return subprocess.call(command)
