"""The notebooks: each runs top to bottom in a fresh kernel, and none is stored with outputs.

Every ``notebooks/*.ipynb`` is picked up (not subfolders), so a new notebook is tested as
soon as it is added. Each is executed exactly as the documentation site shows it, by the
site's own hook (docs/hooks/notebooks.py): a notebook with exercises in its student
version, any other as stored. The hook keeps the executed copy in ``build/notebook-cache``,
so the site build that follows in ``make test`` reuses this run instead of running the
notebook again. The solution versions of the exercise notebooks are run by the grader in
tests/course (they must run without an error and get full marks there).

The kernel is this interpreter's: the hook writes a "python3" kernelspec whose argv starts
with ``sys.executable`` and hands only that one to the kernel manager.
"""

import importlib.util
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# what the student version of an exercise notebook may raise: the exercise's stub
# (NotImplementedError), or a check cell reporting the unwritten exercise (AssertionError)
STUDENT_ERRORS = {"NotImplementedError", "AssertionError"}


def _load_hook():
    spec = importlib.util.spec_from_file_location(
        "docs_notebooks_hook", ROOT / "docs/hooks/notebooks.py"
    )
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


@pytest.fixture(scope="session")
def hook():
    return _load_hook()


@pytest.fixture(scope="session")
def kernel_dir(hook, tmp_path_factory):
    return hook.kernel_dir_for(tmp_path_factory.mktemp("kernels"))


def test_kernel_is_this_interpreter(hook, kernel_dir, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")]
    hook._execute(nb, kernel_dir, tmp_path, allow_errors=False)
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs).strip()
    assert printed == sys.prefix


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, hook, kernel_dir, tmp_path):
    t0 = time.perf_counter()
    nb, how = hook.executed(path, kernel_dir, tmp_path)  # raises CellExecutionError on an error
    print(f"{path.name}: {how} ({time.perf_counter() - t0:.1f} s)")
    _, student = hook.site_version(path)
    errors = nb.metadata.get("minattn_errors", [])
    if not student:
        assert not errors, f"{path.name}: cells raised {errors}"
        return
    unexpected = [e for e in errors if e["ename"] not in STUDENT_ERRORS]
    assert not unexpected, f"{path.name} (student version): cells raised {unexpected}"


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
