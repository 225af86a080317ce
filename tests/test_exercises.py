"""Classroom exercises: solutions pass, stubs fail helpfully, wrong code fails the right check."""

import ast
import re
import textwrap

import pytest
from conftest import REPO

from tinygpt.cli import main
from tinygpt.exercises import EXERCISES, find_student_file, get_exercise
from tinygpt.exercises.grader import grade, load_student_file, run_checks

STUBS = REPO / "lessons" / "exercises"


def _grade(number: int, path, capsys) -> tuple[int, str]:
    code = grade(get_exercise(number), path)
    return code, capsys.readouterr().out


def _results(number: int, path) -> dict[str, bool]:
    """Check function name -> passed, for one file."""
    ex = get_exercise(number)
    return {r.check.run.__name__: r.passed
            for r in run_checks(ex.checks, load_student_file(path), path)}


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.filename)
def test_every_solution_passes_every_check(ex, capsys):
    code, out = _grade(ex.number, ex.solution, capsys)
    assert code == 0, out
    assert out.count("PASS") == len(ex.checks) and "FAIL" not in out


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.filename)
def test_every_untouched_stub_fails_with_a_helpful_message(ex, capsys):
    stub = STUBS / ex.filename
    code, out = _grade(ex.number, stub, capsys)
    assert code == 1
    assert out.count("FAIL") == len(ex.checks) and "PASS" not in out
    assert out.count("not implemented yet: ") == len(ex.checks)
    assert f"see lesson {ex.lesson})" in out  # the stub points at its lesson
    assert "replace the `raise NotImplementedError` lines" in out


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.filename)
def test_stub_and_solution_define_the_same_functions(ex):
    def functions(path):
        tree = ast.parse(path.read_text())
        return {node.name: ast.unparse(node.args) for node in tree.body
                if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}

    stub, solution = functions(STUBS / ex.filename), functions(ex.solution)
    assert set(ex.functions) <= set(stub)
    for name in ex.functions:
        assert stub[name] == solution[name], f"{name}: the signatures differ"
    first_line = (STUBS / ex.filename).read_text().splitlines()[0]
    assert f"lesson {ex.lesson}, lessons/{ex.lesson:02d}_" in first_line


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.filename)
def test_each_stub_points_at_a_lesson_that_exists(ex):
    lesson = re.search(r"lessons/(\d\d_\w+\.py)", (STUBS / ex.filename).read_text()).group(1)
    if not list((REPO / "lessons").glob("[0-9][0-9]_*.py")):
        pytest.skip("the lessons are not in this checkout")
    assert (REPO / "lessons" / lesson).exists(), f"{ex.filename} points at a missing {lesson}"


# Wrong implementations, each with the check it must fail (and, where useful, one it passes).
WRONG = [
    (1, "def softmax_backward(y, dy):\n    return y * dy\n",
     "rows_sum_to_zero", "returns_the_shape"),
    (1, "def softmax_backward(y, dy):\n    return y * (dy - (dy * y).sum(axis=-1))\n",
     "batch_of_rows", "one_row"),
    (2, """
import numpy as np
def cross_entropy(logits, targets):
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return float(-np.log(p[np.arange(len(targets)), targets]).mean())
def cross_entropy_backward(logits, targets):
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(len(targets)), targets] -= 1
    return p / len(targets)
""", "loss_is_stable", "loss_matches"),
    (2, """
import numpy as np
def cross_entropy(logits, targets):
    return 0.0
def cross_entropy_backward(logits, targets):
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(len(targets)), targets] -= 1
    return p
""", "grad_finite_differences", None),
    (3, """
import numpy as np
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    grad = grad + weight_decay * param  # L2 in the gradient: Adam, not AdamW
    exp_avg[...] = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m = exp_avg / (1 - beta1**step)
    v = exp_avg_sq / (1 - beta2**step)
    param -= lr * m / (np.sqrt(v) + eps)
""", "decoupled_decay", "updates_in_place"),
    (3, """
import numpy as np
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    param *= 1 - lr * weight_decay
    exp_avg[...] = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq[...] = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    m = exp_avg / (1 - beta1**step)
    v = exp_avg_sq / (1 - beta2**step)
    param -= lr * m / np.sqrt(v + eps)
""", "eps_placement", "ten_steps"),
    (3, """
def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay):
    param = param - lr * grad
""", "updates_in_place", None),
    (4, """
from collections import Counter
def count_pairs(ids):
    return dict(Counter(zip(ids, ids[1:])))
def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
        else:
            out.append(ids[i])
        i += 1
    return out
def merge_step(ids, new_id):
    counts = count_pairs(ids)
    pair = max(counts, key=counts.get)
    return merge(ids, pair, new_id), pair
""", "merges", "counts_pairs"),
    (4, """
from collections import Counter
def count_pairs(ids):
    return dict(Counter(zip(ids, ids[1:])))
def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
def merge_step(ids, new_id):
    counts = count_pairs(ids)
    pair = max(counts, key=counts.get)  # ties: the first pair seen, not the smallest
    return merge(ids, pair, new_id), pair
""", "merge_step_picks", "merges"),
    (5, """
import numpy as np
def causal_mask(T, S=None):
    S = T if S is None else S
    return np.arange(S)[None, :] < (S - T + np.arange(T)[:, None])
def masked_softmax(scores, mask):
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True) * mask
""", "mask_values", "mask_type"),
    (5, """
import numpy as np
def causal_mask(T, S=None):
    S = T if S is None else S
    return np.arange(S)[None, :] <= (S - T + np.arange(T)[:, None])
def masked_softmax(scores, mask):
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True) * mask
""", "softmax_zeros", "mask_with_cache"),
    (6, """
import numpy as np
def local_window_mask(T, window, S=None):
    S = T if S is None else S
    pos = S - T + np.arange(T)[:, None]
    j = np.arange(S)[None, :]
    return (j <= pos) & (j >= pos - window)
""", "window_of_one", "wide_window"),
    (6, """
import numpy as np
def local_window_mask(T, window, S=None):
    S = T if S is None else S
    pos = S - T + np.arange(T)[:, None]
    j = np.arange(S)[None, :]
    return (j <= pos) & (j > pos - window)
""", "rejects_bad_window", "with_cache"),
    (7, """
import numpy as np
def rope_cos_sin(positions, rotary_dim, theta=10000.0):
    inv = theta ** (-np.arange(0, rotary_dim, 2) / rotary_dim)
    a = np.asarray(positions, dtype=float)[:, None] * inv
    return np.cos(a), np.sin(a)
def apply_rope(x, cos, sin):  # GPT-J's interleaved pairs, not NeoX's halves
    R = 2 * cos.shape[-1]
    a, b = x[..., 0:R:2], x[..., 1:R:2]
    y = x.copy()
    y[..., 0:R:2] = a * cos - b * sin
    y[..., 1:R:2] = b * cos + a * sin
    return y
""", "full_rotation", "relative_positions"),
    (8, """
import numpy as np
def top_k_filter(logits, k):
    kth = np.sort(logits, axis=-1)[:, -k][:, None]
    return np.where(logits < kth, -np.inf, logits)
def top_p_filter(logits, p):
    order = np.argsort(-logits, axis=-1)
    s = np.take_along_axis(logits, order, -1)
    probs = np.exp(s - s[:, :1]); probs /= probs.sum(-1, keepdims=True)
    drop = np.zeros(logits.shape, bool)
    np.put_along_axis(drop, order, np.cumsum(probs, -1) > p, -1)
    return np.where(drop, -np.inf, logits)
""", "keeps_crossing_token", "top_k_ties"),
    (9, """
import numpy as np
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, ddof=1, keepdims=True) + eps) * weight + bias
def layer_norm_backward(dy, x, weight, eps=1e-5):
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    rows = tuple(range(dy.ndim - 1))
    return dy * weight / np.sqrt(x.var(-1, keepdims=True) + eps), (dy * xhat).sum(rows), \
        dy.sum(rows)
""", "forward_matches", "param_grads"),
    (9, """
import numpy as np
def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) * weight + bias
def layer_norm_backward(dy, x, weight, eps=1e-5):
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
    return dy * weight / np.sqrt(x.var(-1, keepdims=True) + eps), (dy * xhat).sum(0), dy.sum(0)
""", "param_grads", "forward_statistics"),
    (10, """
import numpy as np
def kv_append(past, new):
    return new if past is None else np.concatenate([past, new], axis=0)
def kv_trim(cache, keep):
    return cache[:, :, -keep:]
""", "appends", "trims"),
]


@pytest.mark.parametrize("number, source, fails, passes", WRONG,
                         ids=[f"ex{w[0]}-{w[2]}" for w in WRONG])
def test_a_wrong_implementation_fails_the_right_check(number, source, fails, passes, tmp_path):
    path = tmp_path / "student.py"
    path.write_text(textwrap.dedent(source))
    results = _results(number, path)
    assert set(results) == {c.run.__name__ for c in get_exercise(number).checks}
    assert results[fails] is False
    if passes:
        assert results[passes] is True


def test_failures_print_a_hint_but_never_the_solution(tmp_path, capsys):
    path = tmp_path / "student.py"
    path.write_text(WRONG[0][1])
    code, out = _grade(1, path, capsys)
    assert code == 1
    assert "hint: " in out and "PASS  returns an array shaped like dy" in out
    solution_lines = [line.strip() for line in get_exercise(1).solution.read_text().splitlines()
                      if line.strip().startswith("return")]
    assert solution_lines and not any(line in out for line in solution_lines)


def test_crashes_missing_functions_and_syntax_errors_are_reported(tmp_path, capsys):
    crash = tmp_path / "crash.py"
    crash.write_text("def softmax_backward(y, dy):\n    return 1 / 0\n")
    code, out = _grade(1, crash, capsys)
    assert code == 1 and "raised ZeroDivisionError: division by zero (line 2 of crash.py)" in out

    missing = tmp_path / "missing.py"
    missing.write_text("def softmax_backwards(y, dy):\n    return dy\n")
    code, out = _grade(1, missing, capsys)
    assert code == 1 and "has no function softmax_backward()" in out

    broken = tmp_path / "broken.py"
    broken.write_text("def softmax_backward(y, dy)\n    return dy\n")
    code, out = _grade(1, broken, capsys)
    assert code == 1 and "could not import the file: SyntaxError" in out

    none = tmp_path / "none.py"
    none.write_text("def softmax_backward(y, dy):\n    y * dy\n")
    code, out = _grade(1, none, capsys)
    assert "returned None: did you forget a return statement?" in out


def test_cli_list_check_and_solution(tmp_path, capsys):
    assert main(["exercises", "list"]) == 0
    out = capsys.readouterr().out
    for ex in EXERCISES:
        assert re.search(rf"^\s*{ex.number}\s+{re.escape(ex.title)}\s+lesson {ex.lesson}\b",
                         out, re.M)

    assert main(["exercises", "solution", "5"]) == 0
    assert capsys.readouterr().out == get_exercise(5).solution.read_text()

    assert main(["exercises", "check", "10", "--file", str(get_exercise(10).solution)]) == 0
    assert "5 of 5 checks pass" in capsys.readouterr().out
    assert main(["exercises", "check", "10"]) == 1  # the untouched stub in lessons/exercises
    assert "10_kv_cache.py" in capsys.readouterr().out


def test_cli_bad_number_or_file_is_a_clear_error(tmp_path, capsys):
    assert main(["exercises", "check", "42"]) == 2
    assert "there is no exercise 42; exercises are numbered 1..10" in capsys.readouterr().err
    assert main(["exercises", "solution", "0"]) == 2
    assert "no exercise 0" in capsys.readouterr().err
    missing = tmp_path / "nope.py"
    assert main(["exercises", "check", "3", "--file", str(missing)]) == 2
    assert f"--file {missing}: no such file or folder" in capsys.readouterr().err


def test_default_file_is_found_from_the_current_folder(tmp_path, monkeypatch):
    ex = get_exercise(6)
    folder = tmp_path / "lessons" / "exercises"
    folder.mkdir(parents=True)
    mine = folder / "06_my_attempt.py"
    mine.write_text(ex.solution.read_text())
    monkeypatch.chdir(tmp_path)
    assert find_student_file(ex) == mine  # NN_*.py in ./lessons/exercises comes first
    monkeypatch.chdir(folder)
    assert find_student_file(ex) == folder / "06_my_attempt.py"
    monkeypatch.setattr("tinygpt.exercises.stub_folders", lambda: [tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="no 06_local_window_mask.py .* pass --file"):
        find_student_file(ex)


def test_a_class_folder_is_graded_file_by_file_with_a_summary(tmp_path, capsys, monkeypatch):
    ex = get_exercise(5)
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "05_alice.py").write_text(ex.solution.read_text())
    off_by_one = ex.solution.read_text().replace("] <= position", "] < position")
    (folder / "05_bob.py").write_text(off_by_one)
    assert main(["exercises", "check", "5", "--file", str(folder)]) == 1
    out = capsys.readouterr().out
    assert f"PASS  {folder / '05_alice.py'}" in out and f"FAIL  {folder / '05_bob.py'}" in out
    assert out.rstrip().endswith("1 of 2 files pass every check")
    # without --file, two candidates are not graded as if the first were the only one
    monkeypatch.setattr("tinygpt.exercises.stub_folders", lambda: [folder])
    with pytest.raises(FileNotFoundError, match="several files match 05_\\*.py"):
        find_student_file(ex)
    assert main(["exercises", "check", "5", "--file", str(tmp_path / "none")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_an_in_place_softmax_backward_is_graded_correct(tmp_path):
    """Working in place on its inputs is a valid answer: the checks pass copies."""
    path = tmp_path / "student.py"
    path.write_text("def softmax_backward(y, dy):\n"
                    "    dy -= (dy * y).sum(-1, keepdims=True)\n"
                    "    dy *= y\n"
                    "    return dy\n")
    assert all(_results(1, path).values())


def test_adam_that_rebinds_param_after_an_in_place_decay_gets_the_in_place_hint(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(textwrap.dedent("""
        import numpy as np
        def adamw_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                       weight_decay):
            param *= 1 - lr * weight_decay
            exp_avg *= beta1
            exp_avg += (1 - beta1) * grad
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            m = exp_avg / (1 - beta1**step)
            v = exp_avg_sq / (1 - beta2**step)
            param = param - lr * m / (np.sqrt(v) + eps)
        """))
    assert _results(3, path)["updates_in_place"] is False


def test_top_p_that_keeps_going_at_exactly_p_is_caught(tmp_path):
    solution = (REPO / "tinygpt" / "exercises" / "solutions" / "08_top_p.py").read_text()
    path = tmp_path / "student.py"
    path.write_text(solution.replace("before >= p", "before > p"))
    assert path.read_text() != solution  # the mutation applied
    assert _results(8, path)["keeps_crossing_token"] is False


@pytest.mark.parametrize("body, fragment", [
    ("    import sys\n    sys.exit(0)\n", "called exit() or sys.exit(0)"),
    ("    exit()\n", "called exit()"),
    ("    while True:\n        pass\n", "took longer than 1 s (an endless loop?)"),
    ("    from tinygpt import tensor\n    return tensor([[True]])\n", "return its .numpy()"),
    ("    class Odd(Exception):\n        def __str__(self):\n            raise ValueError\n"
     "    raise Odd()\n", "its message could not be printed"),
])
def test_exit_endless_loops_and_odd_results_are_failures_not_a_stopped_grader(
        body, fragment, tmp_path, capsys, monkeypatch):
    from tinygpt.exercises import grader

    monkeypatch.setattr(grader, "TIME_LIMIT", 1)
    path = tmp_path / "student.py"
    path.write_text(f"def causal_mask(T, S=None):\n{body}")
    code, out = _grade(5, path, capsys)
    assert code == 1 and fragment in out and "checks pass" in out


def test_an_endless_loop_is_reported_as_one_even_through_except_exception(
        tmp_path, capsys, monkeypatch):
    """The time limit is a BaseException: neither the student's ``except Exception`` nor a
    check that expects another error (here ValueError for a bad window) may swallow it."""
    from tinygpt.exercises import grader

    monkeypatch.setattr(grader, "TIME_LIMIT", 1)
    solution = (REPO / "tinygpt" / "exercises" / "solutions" / "06_local_window_mask.py")
    path = tmp_path / "student.py"
    path.write_text(solution.read_text() + (
        "\n_exact = local_window_mask\n"
        "def local_window_mask(T, window, S=None):\n"
        "    if window < 1:\n"
        "        while True:\n"  # loops instead of raising ValueError
        "            pass\n"
        "    try:\n"
        "        return _exact(T, window, S)\n"
        "    except Exception:\n"
        "        return None\n"))
    code, out = _grade(6, path, capsys)
    assert code == 1 and "took longer than 1 s (an endless loop?)" in out
    assert "raised TookTooLong" not in out


@pytest.mark.parametrize("source, fragment", [
    ("import sys\nsys.exit('bye')\n", "called exit() or sys.exit(bye)"),
    ("while True:\n    pass\n", "took longer than 1 s"),
])
def test_exit_or_an_endless_loop_at_import_is_reported(source, fragment, tmp_path, capsys,
                                                       monkeypatch):
    from tinygpt.exercises import grader

    monkeypatch.setattr(grader, "TIME_LIMIT", 1)
    path = tmp_path / "student.py"
    path.write_text(source)
    code, out = _grade(5, path, capsys)
    assert code == 1 and "could not import the file" in out and fragment in out


def test_a_bare_except_inside_an_endless_loop_cannot_hold_the_grader(tmp_path, capsys,
                                                                      monkeypatch):
    # the alarm rang once and the bare except swallowed it: the grade never ended
    from tinygpt.exercises import grader

    monkeypatch.setattr(grader, "TIME_LIMIT", 0.5)
    path = tmp_path / "student.py"
    path.write_text("import numpy as np\n"
                    "def softmax_backward(y, dy):\n"
                    "    while True:\n"
                    "        try:\n"
                    "            np.zeros(3).sum()\n"
                    "        except:\n"
                    "            pass\n")
    code, out = _grade(1, path, capsys)
    assert code == 1 and "took longer than 0.5 s" in out and "checks pass" in out
    assert "hint:" not in out  # the message says what happened


def test_a_rope_that_changes_the_tables_in_place_fails(tmp_path, capsys):
    # sin negated in place rotated the reference the same wrong way: two checks passed
    solution = (REPO / "tinygpt" / "exercises" / "solutions" / "07_rope.py").read_text()
    path = tmp_path / "student.py"
    path.write_text(solution.replace("    half = cos.shape[-1]\n",
                                     "    half = cos.shape[-1]\n    np.negative(sin, out=sin)\n"))
    assert path.read_text() != solution
    results = _results(7, path)
    assert not results["full_rotation"] and not results["partial_rotation"]
    code, out = _grade(7, path, capsys)
    assert "apply_rope changed the sin table in place" in out


def test_a_crash_at_import_names_the_line(tmp_path, capsys):
    path = tmp_path / "student.py"
    path.write_text("import numpy as np\nx = np.zeros(3)[5]\n")
    code, out = _grade(1, path, capsys)
    assert code == 1 and "IndexError" in out and "(line 2 of student.py)" in out


def test_a_float32_answer_is_told_it_lost_precision(tmp_path, capsys):
    solution = (REPO / "tinygpt" / "exercises" / "solutions" / "09_layer_norm.py").read_text()
    path = tmp_path / "student.py"
    path.write_text(solution + "\n_exact = layer_norm\n"
                    "def layer_norm(x, weight, bias, eps=1e-5):\n"
                    "    return _exact(x.astype('float32'), weight.astype('float32'),\n"
                    "                  bias.astype('float32'), eps)\n")
    code, out = _grade(9, path, capsys)
    assert code == 1 and "your result is float32" in out
    assert "hint:" not in out  # not pointed at a bug it does not have


def test_each_check_is_printed_before_the_next_one_runs(monkeypatch):
    """A class watching the grader (or output sent to a file) sees each PASS/FAIL as soon as
    its check is done, not all at the end (six endless loops take three minutes)."""
    import io

    from tinygpt.exercises import grader

    ex = get_exercise(5)
    path = REPO / "tinygpt" / "exercises" / "solutions" / "05_causal_mask.py"
    out, lines_before = io.StringIO(), []
    original = grader.each_result

    def watched(checks, module, path):
        for result in original(checks, module, path):
            lines_before.append(len(re.findall(r"(PASS|FAIL) ", out.getvalue())))
            yield result

    monkeypatch.setattr(grader, "each_result", watched)
    assert grade(ex, path, out) == 0
    assert lines_before == list(range(len(ex.checks)))


@pytest.mark.parametrize("number, old, new, check", [
    # positions ignored (0..N-1 assumed): wrong for a KV cache, whose positions start later
    (7, "np.asarray(positions, dtype=np.float64)", "np.arange(len(positions), dtype=np.float64)",
     "table_values"),
    # a softmax without the max subtracted: exp(1000) overflows and every token is kept
    (8, "np.exp(sorted_logits - sorted_logits[:, :1])", "np.exp(sorted_logits)",
     "top_p_large_logits"),
])
def test_mistakes_the_first_checks_let_through_are_caught(number, old, new, check, tmp_path):
    solution = next((REPO / "tinygpt" / "exercises" / "solutions").glob(f"{number:02d}_*.py"))
    path = tmp_path / "student.py"
    path.write_text(solution.read_text().replace(old, new))
    assert path.read_text() != solution.read_text()  # the mutation applied
    results = _results(number, path)
    assert results[check] is False
    assert sum(not ok for ok in results.values()) == 1  # only the check meant for it
