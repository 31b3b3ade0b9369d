"""The course from the wheel: built, installed into a fresh virtual environment, used from an
empty folder with no checkout in sight.

The wheel is installed without its dependencies; the fresh environment borrows NumPy,
Jupyter and the rest from the test's own environment (one line in a .pth file), so the
test needs no network, while minattn itself, its notebooks included, comes from the wheel
alone.
"""

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minattn.course.grading import notebooks

ROOT = Path(__file__).resolve().parents[2]


def run(*args, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """(the fresh environment's bin folder, the wheel) with the wheel installed in it."""
    tmp = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "-w", str(tmp / "dist"), str(ROOT), cwd=tmp)  # fmt: skip
    (wheel,) = (tmp / "dist").glob("minattn-*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", str(tmp / "env"), cwd=tmp)
    env_site = next((tmp / "env" / "lib").glob("python3*/site-packages"))
    (env_site / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(sys.executable, "-m", "pip", "--python", str(tmp / "env" / "bin" / "python"), "install",
        "--quiet", "--no-deps", str(wheel), cwd=tmp)  # fmt: skip
    return tmp / "env" / "bin", wheel


def test_the_wheel_carries_the_course_notebooks(fresh):
    _, wheel = fresh
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(Path(n).stem for n in names if n.endswith(".ipynb"))
    assert shipped == sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert all(n.startswith("minattn/") for n in names if n.endswith(".ipynb"))


def test_from_an_empty_folder_write_fill_and_grade_to_full_marks(fresh, tmp_path):
    bin_, _ = fresh
    where = run(str(bin_ / "python"), "-c", "import minattn; print(minattn.__file__)", cwd=tmp_path)
    assert str(ROOT) not in where and str(bin_.parent) in where  # minattn from the wheel
    run(str(bin_ / "minattn"), "exercises", "--out", "student", cwd=tmp_path)
    assert sorted(p.stem for p in (tmp_path / "student").glob("*.ipynb")) == notebooks()
    run(str(bin_ / "minattn"), "notebooks", "--out", "course", cwd=tmp_path)
    assert len(list((tmp_path / "course").glob("*.ipynb"))) == 8
    stem = "02_seven_steps"
    student = json.loads((tmp_path / "student" / f"{stem}.ipynb").read_text())
    solution = json.loads((tmp_path / "course" / f"{stem}.ipynb").read_text())
    answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in solution["cells"]
               if c["metadata"].get("nbgrader", {}).get("solution")}  # fmt: skip
    for cell in student["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = answers[grade_id]
    (tmp_path / "filled.ipynb").write_text(json.dumps(student))
    out = run(str(bin_ / "minattn"), "grade", "filled.ipynb", "--json", cwd=tmp_path)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["total"] == report["max"] == 18, out


def test_from_an_installed_wheel_the_gradescope_bundle_carries_that_package(fresh, tmp_path):
    bin_, wheel = fresh
    out = run(str(bin_ / "minattn"), "gradescope", "02_seven_steps", "--out", "ag.zip",
              cwd=tmp_path)  # fmt: skip
    assert "wrote ag.zip" in out
    bundle = zipfile.ZipFile(tmp_path / "ag.zip")
    assert sorted(bundle.namelist()) == sorted(["setup.sh", "run_autograder",
        "minattn-gradescope.json", Path(wheel).name])  # fmt: skip
    inner = zipfile.ZipFile(bundle.open(Path(wheel).name))
    ours = {n for n in inner.namelist() if n.startswith("minattn/")}
    built = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("minattn/")}
    assert ours == {n for n in built if not n.endswith(".ipynb")}  # all but the notebooks
