"""Every notebook under notebooks/ runs top to bottom, is committed without outputs, and shows plots.

Notebooks are executed with nbclient under the kernel name ``python3``, resolved to a kernelspec
written to a temporary folder (put first on ``JUPYTER_PATH``) that starts ``sys.executable``: the
kernel is the interpreter running the tests, whatever kernels the machine has installed. A notebook
already executed by another test module (it names the file, e.g. tests/test_supervision.py for
supervision.ipynb) is not executed twice; a test checks that every notebook is executed somewhere.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REQUIRED = ("information_plane.ipynb", "transfer_tradeoff.ipynb", "estimators.ipynb", "supervision.ipynb")


def executed_elsewhere(nb: Path) -> list:
    """Other test modules that name this notebook (and so execute it themselves)."""
    me = Path(__file__).name
    return [p.name for p in sorted((ROOT / "tests").glob("test_*.py"))
            if p.name != me and nb.name in p.read_text(encoding="utf-8")]


MINE = [nb for nb in NOTEBOOKS if not executed_elsewhere(nb)]


def _read(nb: Path):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(nb, as_version=4)


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch):
    """A ``python3`` kernelspec that runs this interpreter, found before any installed one."""
    pytest.importorskip("ipykernel")
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (infodyn tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return sys.executable


def test_required_notebooks_exist():
    names = {nb.name for nb in NOTEBOOKS}
    missing = [n for n in REQUIRED if n not in names]
    assert not missing, f"notebooks/ lacks {missing}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(nb):
    book = _read(nb)
    dirty = [i for i, c in enumerate(book.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{nb.name}: code cells {dirty} hold outputs; commit the notebook stripped"
    assert book.metadata.get("kernelspec", {}).get("name") == "python3", \
        f"{nb.name}: kernelspec name must be 'python3', got {book.metadata.get('kernelspec')}"


@pytest.mark.parametrize("nb", [nb for nb in NOTEBOOKS if nb not in MINE], ids=lambda p: p.name)
def test_executed_by_another_module(nb):
    """A notebook skipped here must really be executed by the module that names it."""
    for name in executed_elsewhere(nb):
        text = (ROOT / "tests" / name).read_text(encoding="utf-8")
        if "NotebookClient" in text and ".execute(" in text:
            return
    pytest.fail(f"{nb.name} is named by {executed_elsewhere(nb)} but none of them executes it")


@pytest.mark.parametrize("nb", MINE, ids=lambda p: p.name)
def test_settings_cell_comes_first(nb):
    book = _read(nb)
    code = [c.source for c in book.cells if c.cell_type == "code"]
    assert code and code[0].lstrip().lower().startswith("# settings"), \
        f"{nb.name}: the first code cell must hold the settings (start with '# settings')"


@pytest.mark.parametrize("nb", MINE, ids=lambda p: p.name)
def test_runs_top_to_bottom_and_shows_plots(nb, python3_kernel, tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' tempfile.mkdtemp() output lands here
    book = _read(nb)
    client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{nb.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{nb.name} ran but displayed no figure"
    exe = [o for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"
           and "Traceback" in o.get("text", "")]
    assert not exe, f"{nb.name} printed a traceback: {exe[0]['text'][:500]}"


def test_kernel_is_this_interpreter(python3_kernel, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(book, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for o in book.cells[0].outputs).strip()
    assert Path(printed).resolve() == Path(python3_kernel).resolve()
