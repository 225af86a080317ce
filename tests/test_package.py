"""The package as a user meets it: the README's commands, CI, the command line."""

import re
import subprocess
import sys

from conftest import REPO

import tinygpt


def _readme_commands():
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_readme_test_command_is_what_ci_runs():
    test_cmds = [c for c in _readme_commands() if "pytest" in c]
    assert test_cmds, "README must show the test command"
    assert test_cmds[0].strip() == 'pip install -e ".[test]" && python -m pytest -q'
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmds[0].strip() in ci.splitlines(), ".ci/run must run the README's test command"
    assert "torch==2.13.0" in ci


def test_version_and_help_from_the_command_line():
    out = subprocess.run([sys.executable, "-m", "tinygpt", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == f"tinygpt {tinygpt.__version__}"
    out = subprocess.run([sys.executable, "-m", "tinygpt", "--help"], capture_output=True,
                         text=True, check=True)
    assert "usage: tinygpt" in out.stdout


def test_library_never_imports_reference_libraries():
    forbidden = {"torch", "transformers", "tiktoken", "tokenizers", "safetensors", "hypothesis",
                 "pytest", "scipy"}
    pattern = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_][\w]*)", re.M)
    for path in (REPO / "tinygpt").rglob("*.py"):
        imported = set(pattern.findall(path.read_text()))
        assert not imported & forbidden, f"{path} imports {imported & forbidden}"
