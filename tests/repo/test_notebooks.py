"""The notebooks: each runs top to bottom in a fresh kernel, and none is stored with outputs.

Every ``notebooks/*.ipynb`` is picked up (not subfolders), so a new notebook is tested
as soon as it is added. The kernel is this interpreter's: a kernelspec named
"python3" whose argv starts with ``sys.executable`` is written to a temporary
directory and handed to the kernel manager, so a "python3" kernelspec elsewhere on
the machine (a user-level one pointing at another Python) cannot be picked instead.
"""

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory):
    """A directory holding a "python3" kernelspec that runs this very interpreter."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / "python3"
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec_json = {"argv": argv, "display_name": "Python 3 (minattn tests)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(spec_json))
    return root


def run_notebook(nb, kernel_dir, cwd):
    km = KernelManager(
        kernel_name="python3",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]),
    )
    client = NotebookClient(
        nb,
        km=km,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def test_kernel_is_this_interpreter(kernel_dir, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")]
    run_notebook(nb, kernel_dir, tmp_path)
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert printed == sys.prefix


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, kernel_dir, tmp_path):
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    run_notebook(nb, kernel_dir, tmp_path)  # raises CellExecutionError on any error
    print(f"{path.name}: executed in {time.perf_counter() - t0:.1f} s")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} have stored outputs or execution counts; clear them "
        f"(e.g. jupyter nbconvert --clear-output --inplace {path.name})"
    )
