"""The lessons: every one runs in --quick mode and writes its figures; the CLI finds them.

The twelve quick runs are the slow part (about two minutes on two cores), so they start
once per session, two at a time (each with one numba/BLAS thread, so the two processes do
not fight over the cores), through ``tinygpt lessons run N --quick``. Lesson 11 reuses the
run folder of lesson 8, so it starts after lesson 8 has finished.
"""

import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA

import tinygpt
from tinygpt import cli
from tinygpt.commands import lessons as lessons_command

LESSONS = REPO / "lessons"
NUMBERS = list(range(1, 13))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAVE_GPT2 = (SHARED_DATA / "gpt2.tiktoken").exists()

# figures each lesson always writes (a lesson may write more)
FIGURES = {
    1: ["graph", "graph_with_grads", "finite_difference_error"],
    2: ["optimizers", "decision_boundary"],
    3: ["merges_step_by_step", "compression", "tokens_ours"]
       + (["tokens_gpt2", "ranks_gpt2_vs_ours"] if HAVE_GPT2 else []),
    4: ["one_head_step_by_step", "why_scale", "attention_map"],
    5: ["masks", "receptive_field", "cost_vs_T"],
    6: ["rope_rotations", "rope_tables", "relative_scores"],
    7: ["parameter_breakdown", "block_layouts"],
    8: ["lr_schedule", "loss", "lr_used"],
    9: ["temperature", "top_k_top_p", "repetition_penalty"],
    10: ["cache_speedup", "cache_memory"],
    11: ["induction_forms", "attention_grid", "head_scores", "two_heads", "control",
         "shakespeare_attention", "shakespeare_head_scores"],
    12: ["safetensors_layout"],
}


def _env() -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.setdefault("TINYGPT_SHARED_DATA", str(SHARED_DATA))
    return env


def _run_lesson(number: int, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tinygpt", "lessons", "run", str(number), "--quick",
               "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory) -> tuple[Path, dict[int, Future]]:
    """Start every lesson in quick mode (two at a time); results arrive as futures."""
    root = tmp_path_factory.mktemp("lessons")
    pool = ThreadPoolExecutor(max_workers=2)
    futures: dict[int, Future] = {}
    order = [8] + [n for n in NUMBERS if n not in (8, 11)]  # the longest first, 11 last
    for n in order:
        futures[n] = pool.submit(_run_lesson, n, root / f"{n:02d}")

    def after_eight():
        futures[8].result()
        return _run_lesson(11, root / "11")

    futures[11] = pool.submit(after_eight)
    yield root, futures
    pool.shutdown(wait=True)


@pytest.mark.parametrize("number", NUMBERS)
def test_lesson_runs_quick_and_writes_its_figures(number, quick_runs):
    root, futures = quick_runs
    result = futures[number].result()
    assert result.returncode == 0, f"lesson {number} failed:\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    assert "What to notice" in result.stdout
    out = root / f"{number:02d}"
    written = {p.stem for p in out.glob("*.png")}
    missing = [name for name in FIGURES[number] if name not in written]
    assert not missing, f"lesson {number} did not write {missing}; it wrote {sorted(written)}"
    for path in out.glob("*.png"):
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, f"{path} is not a PNG"


def test_lesson_11_reused_lesson_8s_model(quick_runs):
    root, futures = quick_runs
    stdout = futures[11].result().stdout
    assert f"loaded {root / '08' / 'run'}" in stdout


def test_every_lesson_is_a_percent_format_notebook():
    """jupytext's percent format: `# %%` code cells and `# %% [markdown]` cells whose lines
    are all comments; each lesson opens with a markdown title naming its number."""
    found = lessons_command.find_lessons(LESSONS)
    assert sorted(found) == NUMBERS
    for number, path in found.items():
        text = path.read_text(encoding="utf-8")
        cells = re.split(r"^# %%(.*)$", text, flags=re.M)[1:]
        kinds = [header.strip() for header in cells[0::2]]
        bodies = cells[1::2]
        assert kinds[0] == "[markdown]", f"{path.name} must open with a markdown cell"
        assert bodies[0].lstrip().startswith(f"# # Lesson {number}:"), path.name
        assert "" in kinds and kinds.count("[markdown]") >= 3, path.name
        for kind, body in zip(kinds, bodies):
            if kind == "[markdown]":
                lines = [line for line in body.strip().splitlines() if line]
                assert all(line.startswith("#") for line in lines), \
                    f"{path.name}: a markdown cell holds a non-comment line"


def test_lessons_tolerate_jupyter_arguments_and_default_to_lesson_output(tmp_path):
    """Jupyter starts kernels with its own arguments (-f kernel.json); they are ignored, and
    without --out the figures go to lesson_output/NN under the current directory."""
    command = [sys.executable, str(LESSONS / "01_autograd.py"), "-f", "/tmp/kernel-1.json",
               "--quick"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=_env(),
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "lesson_output" / "01" / "graph.png").read_bytes().startswith(
        PNG_SIGNATURE)


def test_common_setup_and_savefig(tmp_path):
    sys.path.insert(0, str(LESSONS))
    try:
        import _common
    finally:
        sys.path.remove(str(LESSONS))
    lesson = _common.setup(3, "test", argv=["--quick", "--out", str(tmp_path / "o"), "-x"])
    assert lesson.quick and lesson.out == tmp_path / "o" and lesson.out.is_dir()
    assert lesson.pick("full", "quick") == "quick"
    fig = _common.plt.figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    path = lesson.savefig(fig, "line")
    assert path == tmp_path / "o" / "line.png" and path.read_bytes().startswith(PNG_SIGNATURE)
    assert not _common.setup(3, "test", argv=["--out", str(tmp_path / "o")]).quick


def test_cli_lists_every_lesson_with_its_title(capsys):
    assert cli.main(["lessons", "list"]) == 0
    out = capsys.readouterr().out
    for number, path in lessons_command.find_lessons(LESSONS).items():
        line = next(line for line in out.splitlines() if line.endswith(path.name))
        assert line.split()[0] == str(number)
        assert lessons_command.lesson_title(path) in line
    assert "attention from scratch" in out


def test_cli_run_rejects_an_unknown_lesson(capsys):
    assert cli.main(["lessons", "run", "99"]) == 2
    err = capsys.readouterr().err
    assert "no lesson 99" in err and "1, 2, 3" in err


def test_cli_says_where_it_looked_when_there_are_no_lessons(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "site" / "tinygpt" / "__init__.py"
    monkeypatch.setattr(tinygpt, "__file__", str(fake))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["lessons", "list"]) == 2
    err = capsys.readouterr().err
    assert "no lessons/ folder" in err
    assert str(tmp_path / "site" / "lessons") in err and str(tmp_path / "lessons") in err


def test_cli_finds_lessons_in_the_current_directory(tmp_path, monkeypatch, capsys):
    """An installed package (no lessons beside it) uses ./lessons."""
    monkeypatch.setattr(tinygpt, "__file__", str(tmp_path / "site" / "tinygpt" / "__init__.py"))
    (tmp_path / "lessons").mkdir()
    (tmp_path / "lessons" / "01_hello.py").write_text("# %% [markdown]\n# # Lesson 1: hi\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["lessons", "list"]) == 0
    assert "hi" in capsys.readouterr().out


def test_lesson_11_full_run_forms_an_induction_head(tmp_path):
    """The lesson's point is a circuit that forms: run it in full (about 15 s) and check
    that it says so, not just that it draws figures (a kernel's float32 rounding once
    pushed the circuit past the old fixed step count, silently)."""
    command = [sys.executable, str(LESSONS / "11_inside_a_model.py"), "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "the induction score passed 0.5 at step" in result.stdout
    found = re.search(r"another place the induction head scores ([0-9.]+)", result.stdout)
    assert found and float(found.group(1)) > 0.5, result.stdout[-2000:]


def test_quick_mode_from_the_environment_for_notebooks(tmp_path, monkeypatch):
    """A notebook has no --quick flag: TINYGPT_LESSON_QUICK=1 stands in for it."""
    monkeypatch.syspath_prepend(str(LESSONS))
    import _common

    monkeypatch.setenv("TINYGPT_LESSON_QUICK", "1")
    assert _common.setup(1, "t", ["--out", str(tmp_path)]).quick
    monkeypatch.setenv("TINYGPT_LESSON_QUICK", "0")
    assert not _common.setup(1, "t", ["--out", str(tmp_path)]).quick
    assert _common.setup(1, "t", ["--out", str(tmp_path), "--quick"]).quick
