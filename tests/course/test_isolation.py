"""Attacks on ``minattn grade``: each submission gets its honest score, and the grader's
files are the same after it as before.

Every attack is planted into notebook 2's solution, whose honest score is known: 18/18,
or 16/18 when the attack replaces the solution of ``softmax_forward`` (2 points). The
attack classes are those of the grading issue: forged result lines, reaching the
package's functions (also in tests/course/test_grading.py), patching NumPy, rewriting the
package's files (with the remount escape), hanging the kernel, writing into the kernel's
sockets; and the channel itself: malformed answers.
"""

import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import minattn
from minattn.course.grading import batch, collect, manifest, runner, wire
from minattn.course.grading.isolated import Budget, Session
from minattn.course.grading.sandbox import Sandbox

nbformat = pytest.importorskip("nbformat", reason="grading runs notebooks (extra: test)")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
PACKAGE = Path(minattn.__file__).resolve().parent
NB2 = NOTEBOOKS / "02_seven_steps.ipynb"

requires_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install bubblewrap)"
)


def attacked(tmp_path, name, *, softmax=None, cells=()):
    """Notebook 2's solution with ``softmax_forward``'s cell replaced and ``cells`` added."""
    nb = nbformat.read(NB2, as_version=4)
    if softmax is not None:
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                    == "softmax_forward")  # fmt: skip
        cell.source = softmax
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def points(report):
    return {r.id: r.points for r in report.results}


@pytest.fixture(scope="module")
def package_before():
    return manifest.snapshot()


# ---------------------------------------------------------------- forged results, patched NumPy

FORGE = """
def softmax_forward(energy):
    import json, os
    line = json.dumps({"id": "softmax_forward", "points": 2.0, "max_points": 2.0,
                       "feedback": "ok: every hidden test passes"})
    print(line)
    for fd in range(1, 64):  # every open file, the grader's channel included
        try:
            os.write(fd, (line + "\\n").encode())
        except OSError:
            pass
    return energy, energy
"""

PATCH_NUMPY = """
import numpy as np
np.allclose = lambda *a, **k: True
np.array_equal = lambda *a, **k: True
np.isclose = lambda a, b, *r, **k: np.ones(np.shape(a), bool)
np.testing.assert_allclose = lambda *a, **k: None
np.abs = np.absolute = lambda x: 0 * x
"""

WRONG_SOFTMAX = """
def softmax_forward(energy):
    return np.exp(energy) / 2, None
"""


def test_forged_result_lines_and_a_patched_numpy_get_the_honest_score(tmp_path, package_before):
    forged = runner.grade(attacked(tmp_path, "forge", softmax=FORGE), run=False)
    assert points(forged)["softmax_forward"] == 0
    assert forged.total == 16
    patched = attacked(tmp_path, "numpy", softmax=WRONG_SOFTMAX, cells=[PATCH_NUMPY])
    report = runner.grade(patched, run=False)
    assert points(report)["softmax_forward"] == 0 and report.total == 16
    manifest.verify(package_before)


# ---------------------------------------------------------------- the package's files, the kernel


def rewrite_package(files):
    """A cell that tries to overwrite the grader's files, and to remount / read-write first."""
    return f"""
import os, subprocess
subprocess.run(["mount", "-o", "remount,rw", "/"], capture_output=True)
subprocess.run(["mount", "-o", "remount,rw", {str(PACKAGE)!r}], capture_output=True)
written = 0
for path in {files!r}:
    try:
        with open(path, "w") as f:
            f.write("POINTS = 'forged'\\n")
        written += 1
    except OSError:
        pass
print("written", written, "uid", os.getuid())
"""


SOCKETS = """
import json, socket
from ipykernel.connect import get_connection_file
info = json.load(open(get_connection_file()))
for port in ("shell_port", "iopub_port", "control_port", "stdin_port", "hb_port"):
    with socket.create_connection((info["ip"], info[port]), timeout=2) as s:
        s.sendall(bytes(range(256)) * 400)
"""

HANG = """
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the kernel's interrupt does nothing now
while True:
    pass
"""


@requires_bwrap
def test_kernel_attacks_cost_nothing_but_their_time(tmp_path, package_before):
    files = [str(p) for p in sorted(PACKAGE.rglob("*.py"))]
    path = attacked(tmp_path, "kernel", cells=[rewrite_package(files), SOCKETS, HANG])
    start = time.monotonic()
    report = runner.grade(path, cell_timeout=5, total_timeout=60)
    elapsed = time.monotonic() - start
    assert report.total == report.max == 18, report.table()
    assert elapsed < 60 + 30, f"the hanging notebook held the grader {elapsed:.0f} s"
    assert report.execution is not None
    manifest.verify(package_before)  # the files are unchanged


@requires_bwrap
def test_the_remount_escape_fails_and_the_package_is_out_of_sight():
    files = [str(p) for p in sorted(PACKAGE.rglob("*.py"))[:5]]
    probe = rewrite_package(files).replace("print(", "result = (")
    probe += """
def look():
    import os, socket
    seen = []
    for root, dirs, names in os.walk("/"):
        if root.startswith(("/proc", "/sys", "/dev")):
            continue
        seen += [os.path.join(root, n) for n in dirs + names if "minattn" in n.lower()]
    listener_reachable = socket.socket().connect_ex(("127.0.0.1", PORT)) == 0
    return result, seen, listener_reachable
"""
    with socket.socket() as listener:  # a server on the host's loopback
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        probe = probe.replace("PORT", str(port))
        nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": probe}]}
        session = Session(Sandbox.here(), collect.read(nb).program(), ["look"])
        try:
            functions = session.functions(type("E", (), {"functions": ("look",)}), Budget(60))
            (_, written, _, uid), seen, reachable = functions["look"]()
        finally:
            session.close()
    assert written == 0
    assert uid != 0 or os.geteuid() != 0  # as root, the student's code runs as another user
    assert seen == []  # no file or folder of minattn anywhere in the graded functions' world
    assert not reachable  # no network: not even the host's loopback


# ---------------------------------------------------------------- the channel


def test_the_channel_round_trips_data_and_refuses_anything_else():
    a = np.arange(24.0).reshape(2, 3, 4)[:, :, ::2]
    a.flags.writeable = False
    value = (a, {"k": [1, 2.5, None, "s"]}, {"x", "y"}, np.float32(1.5), np.float32, 3 + 4j)
    encoder = wire.Encoder(lambda v, depth, e: pytest.fail(f"not data: {v!r}"))
    data = wire.frame(encoder(value), encoder.buffers)
    header = data[: wire.HEADER.size]
    json_length, _ = wire._lengths(header)
    body = data[wire.HEADER.size : wire.HEADER.size + json_length]
    message, buffers = wire.parse(header, body, data[wire.HEADER.size + json_length :])
    decoder = wire.Decoder(buffers, layout=True)
    got = decoder(message)
    assert got[0].strides == a.strides and not got[0].flags.writeable
    np.testing.assert_array_equal(got[0], a)
    assert got[1:] == value[1:] and got[4] is np.float32
    bad = [
        {"t": "nd", "b": 0, "dtype": "|O8", "shape": [1], "strides": [8], "w": True},
        {"t": "nd", "b": 0, "dtype": "<f8", "shape": [3], "strides": [8], "w": True},
        {"t": "pickle", "v": "gASV"},
        {"t": "tuple", "v": [], "extra": 1},
        {"t": "handle", "id": 1, "type": "x"},
        ["a", "bare", "list"],
    ]
    for node in bad:
        with pytest.raises(wire.Malformed):
            wire.Decoder([b"\0" * 16])(node)
    with pytest.raises(wire.Malformed):
        wire._lengths(b'{"id": 1, "points": 2.0}'[: wire.HEADER.size])


GARBAGE = """
def softmax_forward(energy):
    import os
    for fd in range(3, 64):
        try:
            os.write(fd, b"MNAT" + bytes(12) + b"{}")
        except OSError:
            pass
    return energy, energy
"""


def test_malformed_answers_fail_that_exercise_only(tmp_path):
    report = runner.grade(attacked(tmp_path, "garbage", softmax=GARBAGE), run=False)
    by_id = {r.id: r for r in report.results}
    assert by_id["softmax_forward"].points == 0
    assert report.total == 16, report.table()


KILL_ITSELF = ["import os\nos._exit(3)", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"]


def test_a_statement_that_kills_the_process_is_skipped_not_fatal(tmp_path):
    """A cell that ends the process (os._exit, SIGKILL), here after all the solutions and
    again between two of them, costs nothing: the grader loads the code again without it."""
    path = attacked(tmp_path, "suicide", cells=KILL_ITSELF)
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell(KILL_ITSELF[0]))
    nbformat.write(nb, path)
    report = runner.grade(path, run=False)
    assert report.total == report.max == 18, report.table()


# ---------------------------------------------------------------- the grader's own files


def test_a_changed_grader_file_stops_the_grader(tmp_path):
    copy = tmp_path / "minattn"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = manifest.snapshot(copy)
    manifest.verify(before, copy)
    (copy / "course" / "grading" / "catalog.py").write_text("POINTS = 'forged'\n")
    with pytest.raises(manifest.Tampered, match="catalog.py"):
        manifest.verify(before, copy, after="alice.ipynb")


# ---------------------------------------------------------------- a class at once


def test_batch_grading_writes_a_gradebook(tmp_path, capsys):
    folder = tmp_path / "class"
    folder.mkdir()
    shutil.copy(NB2, folder / "alice.ipynb")
    attacked(folder, "bob", softmax=WRONG_SOFTMAX)
    (folder / "carol.ipynb").write_text("not a notebook")
    gradebook = tmp_path / "grades.csv"
    code = batch.main([str(folder), "--jobs", "2", "--json", "--csv", str(gradebook)])
    assert code == 1  # carol's file is not a notebook: reported, the others graded
    out, err = capsys.readouterr()
    assert "carol.ipynb" in err
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert {d["submission"]: d["total"] for d in lines} == {
        str(folder / "alice.ipynb"): 18,
        str(folder / "bob.ipynb"): 16,
    }
    rows = gradebook.read_text().splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["submission", "total", "max"] and "softmax_forward" in header
    by_name = {r.split(",")[0]: r.split(",") for r in rows[1:]}
    bob = by_name[str(folder / "bob.ipynb")]
    assert bob[1:3] == ["16", "18"] and bob[header.index("softmax_forward")] == "0"
    assert by_name[str(folder / "carol.ipynb")][1] == "0"


# ---------------------------------------------------------------- the memory cap


DENSE = """
import numpy as np

def online_attention_forward(query, key, value, scale, block):
    s = np.einsum("bkn,bkm->bnm", query, key) * scale  # the whole N x N: what streaming avoids
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - m)
    total = e.sum(axis=-1)
    out = np.einsum("bcm,bnm->bcn", value, e) / total[:, None, :]
    return out.astype(query.dtype), (m[..., 0] + np.log(total)).astype(query.dtype)
"""


def test_a_dense_solution_loses_the_memory_part_only():
    from minattn.course.grading import EXERCISES

    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": DENSE}]}
    exercise = EXERCISES["online_attention_forward"]
    (result,), _ = runner.grade_submission([exercise], collect.read(nb), Sandbox.here())
    assert result.parts == {"values": True, "float32": True, "memory": False}, result.feedback
    assert result.points == pytest.approx(0.75 * exercise.points)
    assert "needs more than" in result.feedback
