"""README's Quick start: one code block of exactly two self-contained commands, and .ci/run runs
the second one.

The first command must set up a fresh virtual environment, install infodyn and run the main job
(``infodyn demo``); the second must set up its own environment, install the ``test`` extra and run
pytest. ``.ci/run`` extracts the command it runs from README with an embedded Python snippet; that
snippet is executed here and its output compared with the README's second command.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"


def quick_start_commands(text: str):
    """The non-empty, non-comment lines of the first code block under '## Quick start'."""
    m = re.search(r"^## Quick start[ \t]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, "README.md has no '## Quick start' section"
    block = re.search(r"```(?:bash|sh|shell|console)?[ \t]*\n(.*?)```", m.group(1), re.S)
    assert block, "README's Quick start section holds no fenced code block"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _steps(cmd: str):
    return [s.strip() for s in re.split(r"&&|;", cmd) if s.strip()]


def test_quick_start_is_the_first_section():
    headings = re.findall(r"^## (.+?)\s*$", README.read_text(), re.M)
    assert headings, "README.md has no '## ' sections"
    assert headings[0] == "Quick start", f"README must open with '## Quick start'; its first section is {headings[0]!r}"


def test_quick_start_holds_exactly_two_commands():
    cmds = quick_start_commands(README.read_text())
    assert len(cmds) == 2, f"Quick start must hold exactly two commands, found {len(cmds)}: {cmds}"


def test_first_command_sets_up_and_runs_the_demo():
    first = quick_start_commands(README.read_text())[0]
    steps = _steps(first)
    assert any(re.search(r"\bpython3? -m venv\b", s) for s in steps[:1]), \
        f"the first command must start by creating a fresh virtual environment: {first!r}"
    installs = [i for i, s in enumerate(steps) if re.search(r"\bpip install\b", s)
                and re.search(r"(-e\s+)?(\.|'\.'|\"\.\")(\s|$)", s)]
    assert installs, f"the first command must pip-install infodyn from the clone ('pip install -e .'): {first!r}"
    demo = [i for i, s in enumerate(steps) if re.search(r"(^|/)infodyn demo\b", s)]
    assert demo, f"the first command must run `infodyn demo` (the main job): {first!r}"
    assert demo[-1] > installs[0], f"`infodyn demo` must run after infodyn is installed: {first!r}"


def test_second_command_installs_test_extra_and_runs_pytest():
    second = quick_start_commands(README.read_text())[1]
    steps = _steps(second)
    assert re.search(r"\bpython3? -m venv\b", steps[0]), \
        f"the second command must start by creating a fresh virtual environment: {second!r}"
    extra = [i for i, s in enumerate(steps) if re.search(r"\bpip install\b.*\.\[test\]", s)]
    assert extra, f"the second command must install the test extra ('pip install -e .[test]'): {second!r}"
    tests = [i for i, s in enumerate(steps) if re.search(r"(-m pytest|(^|/)pytest)\b", s)]
    assert tests, f"the second command must run pytest: {second!r}"
    assert tests[-1] > extra[0], f"pytest must run after the test extra is installed: {second!r}"


def _ci_snippet() -> str:
    text = CI.read_text()
    m = re.search(r"<<'PY'\n(.*?)\nPY\n", text, re.S)
    assert m, f"{CI} holds no python heredoc (<<'PY' ... PY) that extracts the command"
    return m.group(1)


def test_ci_runs_the_second_command():
    assert CI.is_file(), f"{CI} is missing"
    text = CI.read_text()
    assert re.search(r'bash -c "\$cmd"', text), f"{CI} must run the extracted command with bash -c \"$cmd\""
    got = subprocess.run([sys.executable, "-c", _ci_snippet()], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert got.returncode == 0, f".ci/run's extraction failed: {got.stderr}"
    assert got.stdout.strip() == quick_start_commands(README.read_text())[1]


def test_ci_extraction_refuses_a_block_without_two_commands(tmp_path):
    (tmp_path / "README.md").write_text("# x\n\n## Quick start\n\n```bash\nonly-one-command\n```\n")
    got = subprocess.run([sys.executable, "-c", _ci_snippet()], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert got.returncode != 0 and "exactly two commands" in got.stderr


@pytest.mark.parametrize("bad, why", [
    ("## Quick start\n\n```bash\na\nb\nc\n```\n", 3),
    ("## Quick start\n\n```bash\n# a comment\na\n\nb\n```\n", 2),
])
def test_quick_start_parser(bad, why):
    assert len(quick_start_commands("# t\n\n" + bad)) == why
