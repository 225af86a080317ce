"""Classroom exercises: write a piece of tinygpt yourself, then let the grader check it.

Each exercise is a stub in ``lessons/exercises/NN_name.py`` (functions that raise
``NotImplementedError``), the checks in ``checks/<name>.py`` that compare the student's
functions with tinygpt's own code on random inputs, and a reference solution in
``solutions/NN_name.py``, kept apart so a teacher can hand out the stubs without it.

    tinygpt exercises list
    tinygpt exercises check 1 [--file my_softmax.py]
    tinygpt exercises solution 1
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import tinygpt

HERE = Path(__file__).resolve().parent
SOLUTIONS = HERE / "solutions"


@dataclass(frozen=True)
class Exercise:
    """One exercise: its number, the lesson it belongs to, and the functions to write."""

    number: int
    name: str  # file stem after the number, and the module in checks/
    title: str
    lesson: int
    functions: tuple[str, ...]

    @property
    def filename(self) -> str:
        return f"{self.number:02d}_{self.name}.py"

    @property
    def checks(self) -> list:
        """The :class:`~tinygpt.exercises.grader.Check` list, imported on first use."""
        return importlib.import_module(f"tinygpt.exercises.checks.{self.name}").CHECKS

    @property
    def solution(self) -> Path:
        return SOLUTIONS / self.filename


EXERCISES = [
    Exercise(1, "softmax_backward", "softmax backward", 1, ("softmax_backward",)),
    Exercise(2, "cross_entropy", "cross-entropy loss and its gradient", 2,
             ("cross_entropy", "cross_entropy_backward")),
    Exercise(3, "adamw_step", "one AdamW step", 2, ("adamw_step",)),
    Exercise(4, "bpe_merge", "a BPE merge step", 3, ("count_pairs", "merge", "merge_step")),
    Exercise(5, "causal_mask", "the causal mask and masked softmax", 4,
             ("causal_mask", "masked_softmax")),
    Exercise(6, "local_window_mask", "the local-window mask", 5, ("local_window_mask",)),
    Exercise(7, "rope", "rotary position embeddings (RoPE)", 6, ("rope_cos_sin", "apply_rope")),
    Exercise(8, "top_p", "top-k and top-p (nucleus) filtering", 9,
             ("top_k_filter", "top_p_filter")),
    Exercise(9, "layer_norm", "layer norm, forward and backward", 7,
             ("layer_norm", "layer_norm_backward")),
    Exercise(10, "kv_cache", "appending to a KV cache", 10, ("kv_append", "kv_trim")),
]


def get_exercise(number: int) -> Exercise:
    """The exercise with this number; ValueError naming the valid numbers otherwise."""
    for exercise in EXERCISES:
        if exercise.number == number:
            return exercise
    raise ValueError(f"there is no exercise {number}; exercises are numbered "
                     f"1..{len(EXERCISES)} (see `tinygpt exercises list`)")


def stub_folders() -> list[Path]:
    """Where to look for ``NN_*.py`` when no --file is given, in order."""
    cwd = Path.cwd()
    repo = Path(tinygpt.__file__).resolve().parent.parent
    folders = [cwd / "lessons" / "exercises", cwd, repo / "lessons" / "exercises"]
    return list(dict.fromkeys(folders))


def find_student_file(exercise: Exercise) -> Path:
    """The student's file for ``exercise``: in the first folder that has one, ``NN_name.py``,
    else any ``NN_*.py``."""
    folders = stub_folders()
    for folder in folders:
        for pattern in (exercise.filename, f"{exercise.number:02d}_*.py"):
            found = sorted(folder.glob(pattern))
            if len(found) > 1:  # 05_alice.py, 05_bob.py: grading the first would mislead
                raise FileNotFoundError(
                    f"several files match {pattern} in {folder} "
                    f"({', '.join(f.name for f in found[:5])}); pass --file PATH (or several)")
            if found:
                return found[0]
    raise FileNotFoundError(f"no {exercise.filename} (or {exercise.number:02d}_*.py) in "
                            f"{', '.join(str(f) for f in folders)}; pass --file PATH")


__all__ = ["EXERCISES", "Exercise", "find_student_file", "get_exercise"]
