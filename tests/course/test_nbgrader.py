"""nbgrader for real: the documented flow on a temporary course, and the same scores as
``minattn grade``.

    minattn exercises --keep-solutions --out source/course   (teachers' cells removed)
    nbgrader generate_assignment course                      (every exercise notebook)
    submitted/<student>/course/02_seven_steps.ipynb          (three students)
    nbgrader autograde course
    scores from nbgrader's gradebook (nbgrader.api.Gradebook)

The students: one with every solution (full marks), one with the unchanged release
version (zero), one with a planted slip that loses part of one exercise (partial credit:
nbgrader reads the number a check cell returns as its last value).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minattn.course import exercises
from minattn.course.grading import notebooks, runner

pytest.importorskip("nbgrader", reason="the nbgrader round trip needs nbgrader (extra: course)")
nbformat = pytest.importorskip("nbformat", reason="grading runs notebooks (extra: test)")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
STEM = "02_seven_steps"
# softmax in float64 whatever the input: values right, the float32 part (15%) lost
SLIP = ("e = np.exp(energy - energy.max(axis=-1, keepdims=True))",
        "e = np.exp((energy - energy.max(axis=-1, keepdims=True)).astype(np.float64))")  # fmt: skip


def nbgrader(root, *args):
    # nbgrader runs alembic (its database migrations) by name: this environment's bin first
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args, "--force"],
        cwd=root,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def submission(release, source, kind):
    """The release notebook as a student hands it in: solutions filled in, or a slip."""
    nb = nbformat.read(release, as_version=4)
    if kind == "unchanged":
        return nb
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nbformat.read(source, as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution"):
            lines = answers[grade_id].splitlines()  # the marker lines out, the code kept
            cell.source = "\n".join(line for line in lines if "### " not in line)
            if kind == "slip" and grade_id == "softmax_forward":
                assert SLIP[0] in cell.source
                cell.source = cell.source.replace(*SLIP)
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    (root / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = 'minattn'\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
    )
    source = root / "source" / "course"
    sources = [str(NOTEBOOKS / f"{stem}.ipynb") for stem in notebooks()]
    assert exercises.main([*sources, "--keep-solutions", "--out", str(source)]) == 0
    nbgrader(root, "generate_assignment", "course")
    release = root / "release" / "course" / f"{STEM}.ipynb"
    assert sorted(p.stem for p in release.parent.glob("*.ipynb")) == notebooks()
    for kind in ("full", "unchanged", "slip"):
        folder = root / "submitted" / kind / "course"
        folder.mkdir(parents=True)
        nb = submission(release, source / f"{STEM}.ipynb", kind)
        nbformat.write(nb, folder / f"{STEM}.ipynb")
    nbgrader(root, "autograde", "course")
    return root


def gradebook_scores(root):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        out = {}
        for kind in ("full", "unchanged", "slip"):
            nb = gb.find_submission_notebook(STEM, "course", kind)
            out[kind] = {
                g.cell.name.removesuffix("_check"): g.score for g in nb.grades if g.max_score
            }
        return out


def test_nbgrader_scores_equal_minattn_grade(course):
    scores = gradebook_scores(course)
    assert sum(scores["full"].values()) == 18
    assert sum(scores["unchanged"].values()) == 0
    slip = scores["slip"]
    assert 0 < slip["softmax_forward"] < 2
    assert sum(slip.values()) == pytest.approx(18 - 0.15 * 2)  # the float32 part of 2 points
    for kind in ("full", "unchanged", "slip"):
        path = course / "autograded" / kind / "course" / f"{STEM}.ipynb"
        report = runner.grade(path, run=False)
        ours = {r.id: r.points for r in report.results}
        assert ours == pytest.approx(scores[kind]), kind
