"""The Gradescope bundle, tested as Gradescope runs it.

``minattn gradescope`` builds the zip; the test unpacks it into ``source/``, runs
``setup.sh`` into a fresh virtual environment and copies ``run_autograder`` beside it, as
Gradescope does when it builds the image; then, for each submission, it lays out
``/autograder/{source,submission,results}`` and runs ``run_autograder`` there. Where
bubblewrap is installed the folder really is mounted at ``/autograder`` (a bwrap whose
root holds the host's folders, read-only but /tmp and /etc, plus that bind mount); without
it, the scripts' test-only switch ``MINATTN_AUTOGRADER_ROOT`` names the folder instead.

setup.sh's other test-only switch, ``MINATTN_SETUP_PYTHON``, points it at the fresh
environment instead of a new one from apt. That environment borrows NumPy, Jupyter and the
rest from the test's own environment (a .pth file, as tests/course/test_wheel.py does), so
the test needs no network, while minattn itself comes from the bundle's wheel alone.

Every results.json is checked against a JSON schema of Gradescope's documented format
(written below) and, for each notebook that is graded, against ``minattn grade --json`` on
the same notebook with the same options. The submissions reuse those of the grading and
isolation tests.
"""

import base64
import hashlib
import io
import json
import os
import shutil
import site
import stat
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path

import pytest

from minattn.apps import cli
from minattn.course import exercises
from minattn.course.grading import for_notebook, manifest, runner, sandbox
from minattn.course.grading.sandbox import Sandbox

nbformat = pytest.importorskip("nbformat", reason="grading runs notebooks (extra: test)")
jsonschema = pytest.importorskip("jsonschema", reason="nbformat's own dependency")

from test_grading import with_plants  # noqa: E402 -- after the skips, as those modules do
from test_isolation import (  # noqa: E402
    FORGE,
    GARBAGE,
    HANG,
    PATCH_NUMPY,
    SOCKETS,
    WRONG_SOFTMAX,
    attacked,
    rewrite_package,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "minattn"
NB2 = ROOT / "notebooks" / "02_seven_steps.ipynb"
NB3 = ROOT / "notebooks" / "03_backward_pass.ipynb"
STEM = "02_seven_steps"
# small limits keep the hanging notebooks short; `minattn grade` gets the same ones
LIMITS = ["--cell-timeout", "10", "--timeout", "60", "--exercise-timeout", "10"]
SLIP = "energy_forward"  # the exercise with the planted 0.1% error
CRASH = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)  # the kernel dies here\n"

# ---------------------------------------------------------------- Gradescope's format

VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
NUMBER, STRING = {"type": "number"}, {"type": "string"}
GRADESCOPE_TEST = {
    "type": "object",
    "properties": {
        "score": NUMBER,
        "max_score": NUMBER,
        "status": {"enum": ["passed", "failed"]},
        "name": STRING,
        "name_format": FORMAT,
        "number": STRING,
        "output": STRING,
        "output_format": FORMAT,
        "tags": {"type": "array", "items": STRING},
        "visibility": VISIBILITY,
        "extra_data": {"type": "object"},
    },
    "additionalProperties": False,
}
GRADESCOPE = {  # the autograder specification's results.json, every field it names
    "type": "object",
    "properties": {
        "score": NUMBER,
        "execution_time": NUMBER,
        "output": STRING,
        "output_format": FORMAT,
        "test_output_format": FORMAT,
        "test_name_format": FORMAT,
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {"type": "array", "items": GRADESCOPE_TEST},
        "leaderboard": {"type": "array"},
    },
    "additionalProperties": False,
    "anyOf": [  # a score at the top, or on every test
        {"required": ["score"]},
        {"required": ["tests"], "properties": {"tests": {"items": {"required": ["score"]}}}},
    ],
}
MINATTN = {  # and what the contract promises on top: every field, one test per exercise
    "required": ["score", "execution_time", "output", "tests"],
    "properties": {
        "tests": {"items": {"required": ["name", "score", "max_score", "output", "status"]}}
    },
}


def valid(doc):
    jsonschema.validate(doc, {"allOf": [GRADESCOPE, MINATTN]})
    return doc


def test_the_schema_can_fail():
    good = {"score": 1, "execution_time": 2, "output": "", "tests": []}
    valid(good)
    for bad in (
        {**good, "score": "18"},
        {**good, "visibility": "students"},
        {**good, "tests": [{"name": "x", "score": 1, "max_score": 1, "output": ""}]},  # status
        {
            **good,
            "tests": [
                {
                    "name": "x",
                    "score": 1,
                    "max_score": 1,
                    "output": "",
                    "pts": 1,
                    "status": "passed",
                }
            ],
        },  # fmt: skip
        {k: v for k, v in good.items() if k != "output"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            valid(bad)


# ---------------------------------------------------------------- the bundle


def build(out, *args):
    assert cli.main(["gradescope", str(NB2), "--out", str(out), *LIMITS, *args]) == 0
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build(tmp_path_factory.mktemp("bundle") / "autograder.zip")


def test_the_zip_holds_two_scripts_the_wheel_and_the_configuration(bundle):
    z = zipfile.ZipFile(bundle)
    names = z.namelist()
    assert names == ["setup.sh", "run_autograder", "minattn-0.1.0-py3-none-any.whl",
                     "minattn-gradescope.json"]  # fmt: skip
    for script in ("setup.sh", "run_autograder"):
        mode = z.getinfo(script).external_attr >> 16
        assert stat.S_ISREG(mode) and mode & 0o111 and z.read(script).startswith(b"#!/")
    config = json.loads(z.read("minattn-gradescope.json"))
    assert config["assignments"] == [STEM]
    assert config["options"] == {"seed": 0, "cell_timeout": 10, "total_timeout": 60,
                                 "exercise_timeout": 10}  # fmt: skip
    assert config["time_limit"] == 60 + 11 * 10 + 60  # the notebook, 11 exercises, a margin
    assert b"@TIME_LIMIT@" not in z.read("run_autograder") and b" 230 " in z.read("run_autograder")


def test_no_solutions_and_nothing_beyond_the_package_itself(bundle):
    z = zipfile.ZipFile(bundle)
    wheel = zipfile.ZipFile(io.BytesIO(z.read("minattn-0.1.0-py3-none-any.whl")))
    outside = {n: z.read(n) for n in z.namelist() if not n.endswith(".whl")}
    assert not [n for n, data in outside.items() if b"BEGIN SOLUTION" in data or n.endswith(".py")]
    assert not [n for n in wheel.namelist() if n.endswith(".ipynb")]  # the course notebooks
    # the wheel's files are the package's own, byte for byte: nothing added, nothing else
    package = {
        f"minattn/{p.relative_to(PACKAGE).as_posix()}": p.read_bytes()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".ipynb"
    }
    assert {n: wheel.read(n) for n in wheel.namelist() if n.startswith("minattn/")} == package
    record = wheel.read("minattn-0.1.0.dist-info/RECORD").decode().splitlines()
    for line in record:
        name, digest, size = line.rsplit(",", 2)
        if digest:  # every file's hash and size, as pip checks them
            data = wheel.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={expected.decode()}" and int(size) == len(data), name
    assert sorted(r.rsplit(",", 2)[0] for r in record) == sorted(wheel.namelist())


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    out = tmp_path / "autograder.zip"
    assert cli.main(["gradescope", str(tmp_path / "nothing.ipynb"), "--out", str(out)]) == 2
    assert "no such notebook" in capsys.readouterr().err
    assert cli.main(["gradescope", STEM, "--time-limit", "0", "--out", str(out)]) == 2
    assert "--time-limit must be > 0" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- Gradescope's machine

BWRAP = shutil.which("bwrap")


def at(root):
    """Where the scripts see the folder ``root``: /autograder, or ``root`` without bwrap."""
    return "/autograder" if BWRAP else str(root)


def autograder_mounts(root):
    """bwrap's arguments: every folder of the host's root in its place, read-only but /tmp
    (the fresh environment, the grader's temporary files) and /etc (useradd), and ``root``
    at /autograder. The grader inside starts its own bwrap sandboxes, as root."""
    args = []
    for entry in sorted(os.listdir("/")):
        path = f"/{entry}"
        if entry in ("proc", "dev", "autograder"):
            continue
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--bind" if entry in ("tmp", "etc") else "--ro-bind", path, path]
    return [*args, "--dev-bind", "/dev", "/dev", "--proc", "/proc", "--bind", str(root),
            "/autograder", "--chdir", "/autograder", "--die-with-parent"]  # fmt: skip


def run(root, argv, **variables):
    """Run ``argv`` with ``root`` as /autograder; (the finished process, its seconds)."""
    if BWRAP:
        argv = [BWRAP, *autograder_mounts(root), *argv]
    else:
        variables["MINATTN_AUTOGRADER_ROOT"] = str(root)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env={**env, **variables},
                          cwd=root, timeout=1800)  # fmt: skip
    return done, time.monotonic() - start


def unzip(archive, folder):
    """Extract as unzip does: each file with its mode from the zip."""
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            target = folder / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            target.chmod((info.external_attr >> 16) & 0o777 or 0o644)


@dataclass
class Image:
    root: Path  # the folder that stands for /autograder when the image is built
    python: Path  # the fresh environment's interpreter
    package: Path  # minattn's folder in it
    seconds: float  # what setup.sh took
    snapshot: dict  # the installed grader's files before any submission


@pytest.fixture(scope="module")
def image(bundle, tmp_path_factory):
    """What Gradescope builds: the zip in source/, setup.sh run, run_autograder copied."""
    tmp = tmp_path_factory.mktemp("image")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "env")], check=True)
    env_site = next((tmp / "env" / "lib").glob("python3*/site-packages"))
    (env_site / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    python = tmp / "env" / "bin" / "python"
    root = tmp / "autograder"
    unzip(bundle, root / "source")
    done, seconds = run(root, ["bash", f"{at(root)}/source/setup.sh"],
                        MINATTN_SETUP_PYTHON=str(python))  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    package = env_site / "minattn"
    return Image(root, python, package, seconds, manifest.snapshot(package))


@dataclass
class Graded:
    doc: dict  # results.json
    seconds: float  # what run_autograder took
    log: str  # its stdout and stderr (Gradescope shows them to instructors)


def on_gradescope(image, files, folder, bundle=None):
    """Run ``run_autograder`` on the submission ``files`` ({name: bytes}) in a fresh copy of
    the image at ``folder``; with ``bundle``, that bundle's scripts and configuration."""
    shutil.copytree(image.root, folder, symlinks=True)
    if bundle is not None:
        shutil.rmtree(folder / "source")
        unzip(bundle, folder / "source")
        shutil.copy2(folder / "source" / "run_autograder", folder / "run_autograder")
    for name, data in files.items():
        (folder / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "submission" / name).write_bytes(data)
    done, seconds = run(folder, [f"{at(folder)}/run_autograder"])
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((folder / "results" / "results.json").read_text())
    return Graded(doc, seconds, done.stdout + done.stderr)


# ---------------------------------------------------------------- the submissions

GRADED = ("solution", "student", "slip", "hang", "crash", "forged", "numpy", "kernel", "garbage")
NOT_GRADED = ("none", "wrong", "several", "not_json")


def notebook_bytes(nb):
    return nbformat.writes(nb).encode()


def with_cells(data, *sources):
    nb = nbformat.reads(data.decode(), as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    return notebook_bytes(nb)


@pytest.fixture(scope="module")
def submissions(image, tmp_path_factory):
    """{name: {file name: bytes}}: what students upload, honest and not."""
    tmp = tmp_path_factory.mktemp("submissions")
    solution = NB2.read_bytes()
    student = json.dumps(exercises.student_notebook(json.loads(solution), name=NB2.name))
    student = student.encode()
    installed = sorted(str(p) for p in image.package.rglob("*.py"))
    attacks = {
        "forged": attacked(tmp, "forge", softmax=FORGE),
        "numpy": attacked(tmp, "numpy", softmax=WRONG_SOFTMAX, cells=[PATCH_NUMPY]),
        "kernel": attacked(tmp, "kernel", cells=[rewrite_package(installed), SOCKETS, HANG]),
        "garbage": attacked(tmp, "garbage", softmax=GARBAGE),
    }
    return {
        "solution": {f"{STEM}.ipynb": solution},
        "student": {f"{STEM}.ipynb": student},
        "slip": {"alice.ipynb": notebook_bytes(with_plants(STEM, [(SLIP, SLIP, 0)]))},
        "hang": {f"{STEM}.ipynb": with_cells(student, HANG)},
        "crash": {f"{STEM}.ipynb": with_cells(solution, CRASH)},
        **{name: {f"{STEM}.ipynb": path.read_bytes()} for name, path in attacks.items()},
        "none": {"answers.py": b"print('my answers')\n"},
        "wrong": {"03_backward_pass.ipynb": NB3.read_bytes()},
        "several": {f"{STEM}.ipynb": solution, f"copies/{STEM} (1).ipynb": student},
        "not_json": {f"{STEM}.ipynb": b"my answers, not a notebook\n"},
    }


@pytest.fixture(scope="module")
def both(image, submissions, tmp_path_factory):
    """({name: Graded}, {name: minattn grade's JSON}): every submission through
    run_autograder, two containers at a time, while ``minattn grade --json --jobs 2``
    grades the same notebooks (most of a grade is waiting for a kernel or a time limit)."""
    tmp = tmp_path_factory.mktemp("containers")
    here = start_minattn_grade(submissions, tmp_path_factory.mktemp("minattn-grade"))
    with ThreadPoolExecutor(2) as pool:
        futures = {n: pool.submit(on_gradescope, image, f, tmp / n) for n, f in submissions.items()}
        runs = {name: future.result() for name, future in futures.items()}
    out, err = here.communicate(timeout=1800)
    assert here.returncode == 0, err[-3000:]
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return runs, {Path(d["submission"]).stem: d for d in docs}


def start_minattn_grade(submissions, folder):
    """``minattn grade --json`` on the notebooks of the graded submissions, started."""
    paths = []
    for name in GRADED:
        (data,) = submissions[name].values()
        paths.append(folder / f"{name}.ipynb")
        paths[-1].write_bytes(data)
    argv = [sys.executable, "-m", "minattn.apps.cli", "grade", *map(str, paths), "--json",
            "--jobs", "2", *LIMITS]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def runs(both):
    return both[0]


@pytest.fixture(scope="module")
def graded_here(both):
    return both[1]


# ---------------------------------------------------------------- as Gradescope runs it


def by_name(doc):
    return {t["name"]: t for t in doc["tests"]}


def test_setup_installs_the_bundles_wheel_into_the_fresh_environment(image):
    assert (image.root / "minattn-python").read_text().strip() == str(image.python)
    probe = "import minattn, os; print(minattn.__file__)"
    where = subprocess.run([str(image.python), "-c", probe], capture_output=True, text=True,
                           cwd=image.root, check=True).stdout  # fmt: skip
    assert where.startswith(str(image.package))  # from the bundle's wheel, not the checkout
    assert (image.package / "course" / "grading" / "hidden_steps.py").is_file()
    assert not (image.package / "course" / "notebooks").exists()
    assert stat.S_IMODE((image.root / "source").stat().st_mode) & 0o007 == 0  # closed to others


def test_every_results_json_follows_gradescopes_format(runs):
    for name, graded in runs.items():
        valid(graded.doc)
        assert graded.doc["execution_time"] <= graded.seconds + 1, name
        assert [t["name"] for t in graded.doc["tests"]] == [e.id for e in for_notebook(STEM)]
        assert graded.doc["score"] == sum(t["score"] for t in graded.doc["tests"]), name
        if BWRAP:  # the teachers' view says which walls held
            assert "student code runs under bubblewrap, uid" in graded.log, name


def test_full_marks_zero_and_one_slip(runs):
    solution, student, slip = (runs[n].doc for n in ("solution", "student", "slip"))
    assert solution["score"] == 18
    assert all(t["status"] == "passed" and t["output"].startswith("ok") for t in solution["tests"])
    assert student["score"] == 0
    assert all("not written yet" in t["output"] for t in student["tests"])
    failed = {n: t for n, t in by_name(slip).items() if t["score"] < t["max_score"]}
    assert list(failed) == [SLIP] and failed[SLIP]["score"] == 0
    assert failed[SLIP]["status"] == "failed" and SLIP in failed[SLIP]["output"]
    assert slip["score"] == 18 - failed[SLIP]["max_score"]
    assert "alice.ipynb" in slip["output"]  # the student's file name does not matter


def test_scores_and_feedback_are_minattn_grades(runs, graded_here):
    assert sorted(graded_here) == sorted(GRADED)
    for name in GRADED:
        doc, here = runs[name].doc, graded_here[name]
        assert doc["score"] == here["total"], name
        ours = [(t["name"], t["score"], t["max_score"], t["output"]) for t in doc["tests"]]
        assert ours == [(e["id"], e["points"], e["max_points"], e["feedback"])
                        for e in here["exercises"]], name  # fmt: skip


def test_forgeries_get_their_honest_score_and_leave_the_grader_intact(runs, image):
    scores = {n: runs[n].doc["score"] for n in ("forged", "numpy", "garbage", "kernel")}
    assert scores == {"forged": 16, "numpy": 16, "garbage": 16, "kernel": 18}
    for name in ("forged", "numpy", "garbage"):
        assert by_name(runs[name].doc)["softmax_forward"]["score"] == 0
    manifest.verify(image.snapshot, image.package)  # no file of the installed grader changed


def test_a_hanging_notebook_and_a_dying_kernel(runs, bundle):
    limit = json.loads(zipfile.ZipFile(bundle).read("minattn-gradescope.json"))["time_limit"]
    hang = runs["hang"]
    assert hang.doc["score"] == 0 and hang.seconds < limit
    assert "did not stop even when interrupted" in hang.doc["output"]
    crash = runs["crash"].doc
    assert "the kernel died" in crash["output"]


def test_no_notebook_the_wrong_one_several_or_not_a_notebook(runs, tmp_path):
    for name in NOT_GRADED:
        doc = runs[name].doc
        assert doc["score"] == 0, name
        assert all(t["output"].startswith("not graded:") for t in doc["tests"]), name
    assert "holds no notebook (.ipynb file): it holds answers.py" in runs["none"].doc["output"]
    assert f"Submit {STEM}.ipynb" in runs["none"].doc["output"]
    wrong = runs["wrong"].doc["output"]
    assert "03_backward_pass.ipynb holds the exercises of 03_backward_pass" in wrong
    several = runs["several"].doc["output"]
    assert f"{STEM}.ipynb, copies/{STEM} (1).ipynb all hold the exercises of {STEM}" in several
    junk = tmp_path / f"{STEM}.ipynb"  # what minattn grade says of the same file
    junk.write_bytes(b"my answers, not a notebook\n")
    with pytest.raises(ValueError) as error:
        runner.load(junk)
    expected = str(error.value).replace(str(junk), junk.name)
    assert "is not a notebook" in expected and expected in runs["not_json"].doc["output"]


def test_the_time_limit_and_a_grader_that_cannot_start_leave_valid_json(
    image, submissions, tmp_path
):
    short = build(tmp_path / "short.zip", "--time-limit", "15")
    stopped = on_gradescope(image, submissions["hang"], tmp_path / "short", short)
    assert valid(stopped.doc)["score"] == 0
    assert "did not finish within its time limit (15 s)" in stopped.doc["output"]
    assert stopped.seconds < 15 + 10 + 20  # the limit, timeout's --kill-after, start-up
    broken = tmp_path / "broken"
    shutil.copytree(image.root, tmp_path / "broken-image")
    (tmp_path / "broken-image" / "minattn-python").write_text("/nonexistent/python\n")
    dead = on_gradescope(Image(tmp_path / "broken-image", *astuple(image)[1:]),
                         submissions["solution"], broken)  # fmt: skip
    assert valid(dead.doc)["score"] == 0 and "could not start" in dead.doc["output"]


def test_a_bwrap_that_cannot_make_namespaces_is_not_used(tmp_path, monkeypatch):
    fake = tmp_path / "bwrap"  # as bwrap answers in a container that forbids namespaces
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    sandbox.bwrap_works.cache_clear()
    try:
        here = Sandbox.here()
    finally:
        sandbox.bwrap_works.cache_clear()
    assert here.bwrap is None
    assert here.weaker.startswith("bubblewrap (bwrap) is installed but cannot make its namespaces")
