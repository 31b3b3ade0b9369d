"""``minattn grade``: solution notebooks get full marks, student versions get 0, every planted
0.1% error costs exactly its exercise, package calls are flagged, broken notebooks grade.

Grading runs notebooks, so the expensive work happens once, in module-scoped fixtures: each
solution notebook and each student version is executed and graded once, and the planted
errors reuse the functions collected from the solution runs (re-grading only the exercises
whose code changed: grading is a pure function of an exercise's code and the seed).
Notebook 5's solution, whose benchmarks take half a minute, is graded from its cell sources
(`collect.static_collect`, the grader's fallback); its student version runs in a kernel.
"""

import ast
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minattn.course import exercises
from minattn.course.grading import EXERCISES, check, collect, for_notebook, notebooks, runner
from minattn.course.grading.catalog import grade_exercise
from minattn.course.grading.hidden_chain import forward_intermediates
from minattn.course.grading.hidden_family import channel_intermediates
from minattn.course.grading.worker import closure

nbformat = pytest.importorskip("nbformat", reason="grading runs notebooks (extra: test)")
pytest.importorskip("nbclient", reason="grading runs notebooks (extra: test)")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SLOW = "05_making_it_fast"  # half a minute of benchmarks
KERNEL = [stem for stem in notebooks() if stem != SLOW]


def path_of(stem):
    return NOTEBOOKS / f"{stem}.ipynb"


@pytest.fixture(scope="module")
def solutions():
    """{stem: (report, collected)} for every solution notebook."""
    out = {}
    for stem in KERNEL:
        report = runner.grade(path_of(stem))
        out[stem] = (report, report.execution.collected)
    nb = nbformat.read(path_of(SLOW), as_version=4)
    names = [fn for e in for_notebook(SLOW) for fn in e.functions]
    collected = collect.static_collect(nb, names)
    results = runner.grade_collected(for_notebook(SLOW), collected)
    out[SLOW] = (runner.Report(str(path_of(SLOW)), SLOW, results), collected)
    return out


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    """{stem: report} for the student version of every exercise notebook, run in a kernel."""
    folder = tmp_path_factory.mktemp("student")
    assert exercises.main([*(str(path_of(s)) for s in notebooks()), "--out", str(folder)]) == 0
    return {stem: runner.grade(folder / f"{stem}.ipynb") for stem in notebooks()}


# ---------------------------------------------------------------- full marks and zero


@pytest.mark.parametrize("stem", notebooks())
def test_solution_notebook_gets_full_marks(solutions, stem):
    report, _ = solutions[stem]
    assert [r.id for r in report.results] == [e.id for e in for_notebook(stem)]
    for r in report.results:
        assert r.points == r.max_points, f"{r.id}: {r.feedback}"
        assert r.feedback.startswith("ok")
    assert report.total == report.max == sum(e.points for e in for_notebook(stem))
    if report.execution is not None:  # run in a kernel: every cell ran, none failed
        assert report.execution.source == "kernel"
        assert report.execution.errors() == [] and report.execution.notes == []


@pytest.mark.parametrize("stem", notebooks())
def test_student_version_gets_zero_and_runs_to_the_end(students, stem):
    report = students[stem]
    assert report.execution.source == "kernel" and report.execution.notes == []
    assert not any("Timeout" in c.error for c in report.execution.errors())
    ran = {c.index for c in report.execution.cells}
    nb = nbformat.read(report.notebook, as_version=4)
    code = {
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and c.source.strip() and not collect.is_test_cell(c)
    }
    assert ran == code  # every cell ran (check cells are the grader's business)
    assert report.total == 0
    for r in report.results:
        assert r.points == 0 and "not written yet" in r.feedback, f"{r.id}: {r.feedback}"


def test_at_least_twenty_graded_exercises_each_in_its_notebook():
    assert len(EXERCISES) >= 20
    by_notebook = {stem: [e.id for e in for_notebook(stem)] for stem in notebooks()}
    forward = {n for n in by_notebook["02_seven_steps"] if n.endswith("_forward")}
    backward = {n for n in by_notebook["03_backward_pass"] if n.endswith("_backward")}
    steps = ("conv1x1", "flatten", "energy", "scale", "softmax", "weighted_sum", "unflatten",
             "residual", "avg_pool", "upsample")  # fmt: skip
    assert forward == {f"{s}_forward" for s in steps}
    assert backward == {f"{s}_backward" for s in steps} | {"bam_backward"}
    assert "bilinear_matrix" in by_notebook["02_seven_steps"]
    assert by_notebook[SLOW] == ["online_attention_forward"]
    assert by_notebook["07_attention_family"] == ["channel_attention_backward"]


# ---------------------------------------------------------------- planted 0.1% errors

OUTPUTS = {  # how many arrays each backward exercise returns
    "residual_backward": 3,
    "weighted_sum_backward": 2,
    "energy_backward": 2,
    "conv1x1_backward": 3,
    "online_attention_forward": 2,
}
DICT_KEYS = {  # the gradients planted into the line-by-line exercises (not dbk: 0 by math)
    "bam_backward": ("dup", "dgamma", "dscaled", "dk2", "dWq", "dpooled", "dx"),
    "channel_attention_backward": ("dout", "dgamma", "dattention", "dflipped", "dX_energy", "dx"),
}

PLANT = """
def __planted__(value, position):
    import numpy as np

    def bump(a):  # one element, the largest, off by 0.1%; a set loses or gains a row
        if a is None:
            return a
        if isinstance(a, (set, frozenset)):
            return set(a) ^ {"x"}
        if isinstance(a, (float, int)) and not isinstance(a, bool):
            return a * 1.001
        a = np.array(a, copy=True)
        i = np.unravel_index(int(np.argmax(np.abs(a))), a.shape)
        a[i] = a[i] * 1.001
        return a

    if isinstance(value, dict):
        return {k: bump(v) if k == position else v for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(bump(v) if i == position else v for i, v in enumerate(value))
    return bump(value) if position == 0 else value
"""


def planted_source(source, position):
    """``source`` with every ``return X`` turned into ``return __planted__(X, position)``."""
    tree = ast.parse(source)

    class Wrap(ast.NodeTransformer):
        def visit_Return(self, node):
            if node.value is None:
                return node
            call = ast.Call(
                ast.Name("__planted__", ast.Load()),
                [node.value, ast.Constant(position)],
                [],
            )
            return ast.copy_location(ast.Return(call), node)

    return ast.unparse(ast.fix_missing_locations(Wrap().visit(tree)))


def plantings(stem):
    """(exercise id, function, position) for every returned array of every exercise."""
    out = []
    for e in for_notebook(stem):
        for fn in e.functions:
            if fn in DICT_KEYS:
                out += [(e.id, fn, key) for key in DICT_KEYS[fn]]
            else:
                out += [(e.id, fn, p) for p in range(OUTPUTS.get(e.id, 1))]
    return out


def rounds(stem, names):
    """Plantings in groups graded together: one per exercise, none calling another's."""
    todo, groups = plantings(stem), []
    while todo:
        group, taken, rest = [], set(), []
        for exercise_id, fn, pos in todo:
            reach = closure(EXERCISES[exercise_id].functions, names)
            clash = exercise_id in taken or any(
                fn in closure(EXERCISES[other].functions, names) or f in reach
                for other, f, _ in group
            )
            if clash:
                rest.append((exercise_id, fn, pos))
            else:
                group.append((exercise_id, fn, pos))
                taken.add(exercise_id)
        groups.append(group)
        todo = rest
    return groups


def with_plants(names, group):
    names = json.loads(json.dumps(names))
    names["__planted__"] = {"kind": "def", "source": PLANT, "refs": [], "imports": ["numpy"]}
    for _, fn, pos in group:
        d = names[fn]
        d["source"] = planted_source(d["source"], pos)
        d["refs"] = sorted({*d["refs"], "__planted__"})
    return names


@pytest.mark.parametrize("stem", notebooks())
def test_a_planted_error_costs_exactly_its_exercise(solutions, stem):
    _, collected = solutions[stem]
    names = collected["names"]
    exercises_here = for_notebook(stem)
    for group in rounds(stem, names):
        planted = {exercise_id for exercise_id, _, _ in group}
        functions = {fn for _, fn, _ in group}
        # everything whose code changed: the planted exercises and those that call them
        affected = [
            e for e in exercises_here if e.id in planted or closure(e.functions, names) & functions
        ]
        results = runner.grade_collected(affected, {"names": with_plants(names, group)})
        for r in results:
            where = f"{r.id} with {sorted(group)}"
            if r.id in planted:
                assert r.points == 0, f"{where}: kept {r.points} ({r.feedback})"
                assert not r.flagged, where
            elif r.points < r.max_points:  # it calls a planted function: the feedback says so
                assert "calls your" in r.feedback and "fails its own tests" in r.feedback, where


def test_other_exercises_keep_full_marks_next_to_a_planted_error(solutions):
    """The claim the test above relies on, shown once on a whole notebook."""
    _, collected = solutions["02_seven_steps"]
    names = collected["names"]
    group = [("bilinear_matrix", "bilinear_matrix", 0)]
    results = runner.grade_collected(
        for_notebook("02_seven_steps"), {"names": with_plants(names, group)}
    )
    by_id = {r.id: r for r in results}
    assert by_id["bilinear_matrix"].points == 0
    assert "the matrix at index" in by_id["bilinear_matrix"].feedback
    upsample = by_id["upsample_forward"]  # calls the student's bilinear_matrix
    assert upsample.points == 0
    assert "calls your bilinear_matrix (exercise bilinear_matrix)" in upsample.feedback
    for r in results:
        if r.id not in ("bilinear_matrix", "upsample_forward"):
            assert r.points == r.max_points, f"{r.id}: {r.feedback}"


# ---------------------------------------------------------------- the package's own call


def cheat(fn, e):
    """Sources that hand the work to minattn, in three disguises."""
    module = "resize" if fn.startswith(("avg_pool", "upsample", "bilinear")) else "steps"
    direct = f"def {fn}(*args):\n    return {module}.{fn}(*args)\n"
    imported = (
        f"def {fn}(*args):\n"
        f"    from minattn.ops.{module} import {fn} as mine\n"
        f"    return mine(*args)\n"
    )
    hidden = (  # no "minattn" in the source: caught when the package's function is called
        f"def {fn}(*args):\n"
        f"    m = importlib.import_module('min' + 'attn.ops.{module}')\n"
        f"    return getattr(m, '{fn}')(*args)\n"
    )
    return module, {"direct": direct, "imported": imported, "hidden": hidden}


@pytest.mark.parametrize("disguise", ["direct", "imported", "hidden"])
def test_calling_the_package_is_flagged(solutions, disguise):
    for stem in ("02_seven_steps", "03_backward_pass"):
        _, collected = solutions[stem]
        names = json.loads(json.dumps(collected["names"]))
        names["importlib"] = {"kind": "module", "module": "importlib"}
        targets = [e for e in for_notebook(stem) if e.id != "bam_backward"]
        for e in targets:
            fn = e.functions[0]
            module, sources = cheat(fn, e)
            names[module] = {"kind": "module", "module": f"minattn.ops.{module}"}
            refs = {"direct": [module], "imported": [], "hidden": ["importlib"]}[disguise]
            names[fn] = {"kind": "def", "source": sources[disguise], "refs": refs, "imports": []}
        results = runner.grade_collected(targets, {"names": names})
        for r in results:
            assert r.flagged and r.points == 0, f"{stem} {r.id} ({disguise}): {r.feedback}"
            assert "package's own" in r.feedback


def test_a_chain_that_calls_a_step_function_is_flagged(solutions):
    _, collected = solutions["03_backward_pass"]
    names = json.loads(json.dumps(collected["names"]))
    d = names["bam_backward"]
    line = next(s for s in d["source"].splitlines() if 'g["dscaled"] =' in s)
    indent = line[: len(line) - len(line.lstrip())]
    d["source"] = d["source"].replace(
        line, f'{indent}g["dscaled"] = steps.softmax_backward(g["dattention"], A)'
    )
    d["refs"] = sorted({*d["refs"], "steps"})
    names["steps"] = {"kind": "module", "module": "minattn.ops.steps"}
    (result,) = runner.grade_collected([EXERCISES["bam_backward"]], {"names": names})
    assert result.flagged and result.points == 0 and "minattn.ops.steps" in result.feedback


# ---------------------------------------------------------------- broken notebooks


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """Notebook 2's exercises with a syntax error, an infinite loop and a missing function."""
    nb = nbformat.read(path_of("02_seven_steps"), as_version=4)
    cells = [
        nbformat.v4.new_code_cell("import numpy as np\nfrom minattn.course.grading import check")
    ]
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if grade_id == "flatten_forward":
            continue  # the student deleted the cell
        if grade_id == "softmax_forward":
            cell.source = cell.source.replace(
                "def softmax_forward(energy):", "def softmax_forward(energy)"
            )
        if grade_id == "energy_forward":
            cell.source = cell.source.replace(
                "energy = query.transpose(0, 2, 1) @ key", "while True:\n        pass"
            )
        if grade_id:
            cells.append(cell)
    cells.append(nbformat.v4.new_code_cell("while True:\n    pass  # a stray infinite loop"))
    cells.append(nbformat.v4.new_code_cell("1 / 0"))
    nb.cells = cells
    path = tmp_path_factory.mktemp("broken") / "alice.ipynb"  # another name: metadata says which
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def broken_run(broken, capsys_module):
    code = runner.main([str(broken), "--json", "--cell-timeout", "3", "--exercise-timeout", "5"])
    return code, capsys_module()


@pytest.fixture(scope="module")
def capsys_module():
    """A module-scoped stand-in for capsys: redirect stdout while the fixture runs."""
    import contextlib
    import io

    buffer = io.StringIO()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(buffer))

    def read():
        stack.close()
        return buffer.getvalue()

    return read


def test_a_broken_notebook_grades_without_crashing(broken_run):
    code, out = broken_run
    assert code == 0
    table, last = out.rstrip("\n").rsplit("\n", 1)
    report = json.loads(last)  # the last line is one JSON object
    assert set(report) == {"total", "max", "exercises"}
    by_id = {e["id"]: e for e in report["exercises"]}
    assert list(by_id) == [e.id for e in for_notebook("02_seven_steps")]
    for e in report["exercises"]:
        assert set(e) == {"id", "points", "max_points", "feedback"}
    assert "SyntaxError" in by_id["softmax_forward"]["feedback"]
    assert "timed out" in by_id["energy_forward"]["feedback"]
    assert "not defined" in by_id["flatten_forward"]["feedback"]
    for bad in ("softmax_forward", "energy_forward", "flatten_forward"):
        assert by_id[bad]["points"] == 0
    for good in ("conv1x1_forward", "bilinear_matrix", "upsample_forward", "residual_forward"):
        assert by_id[good]["points"] == by_id[good]["max_points"], by_id[good]["feedback"]
    assert report["total"] == sum(e["points"] for e in report["exercises"])
    assert "Timeout" in table and "ZeroDivisionError" in table  # the cells that failed


def test_grade_errors_exit_cleanly(tmp_path, capsys):
    assert runner.main([str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
    (tmp_path / "junk.ipynb").write_text("not json")
    assert runner.main([str(tmp_path / "junk.ipynb")]) == 2
    assert "not a notebook" in capsys.readouterr().err
    plain = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(plain, tmp_path / "plain.ipynb")
    assert runner.main([str(tmp_path / "plain.ipynb")]) == 2
    assert "holds none of minattn's exercises" in capsys.readouterr().err
    assert runner.main([str(tmp_path / "plain.ipynb"), "--cell-timeout", "0"]) == 2
    from minattn.apps import cli

    assert cli.main(["grade", str(tmp_path / "missing.ipynb")]) == 2


# ---------------------------------------------------------------- feedback and partial credit


def test_feedback_names_the_first_wrong_intermediate():
    def softmax_backward(dout, cache):  # forgets the row-sum term
        return cache * dout

    result = grade_exercise(EXERCISES["softmax_backward"], {"softmax_backward": softmax_backward})
    assert result.points == 0
    assert result.feedback.startswith(
        "first wrong intermediate in BAM (bilinear): softmax_backward#1 at index ("
    )
    assert "yours" in result.feedback and "expected" in result.feedback
    assert "\n" not in result.feedback

    def energy_backward(dout, cache):  # right, but float32 comes back as float64
        q, k = (a.astype(np.float64) for a in cache)
        d = dout.astype(np.float64)
        return k @ d.transpose(0, 2, 1), q @ d

    result = grade_exercise(EXERCISES["energy_backward"], {"energy_backward": energy_backward})
    assert result.parts == {"values": True, "float32": False, "robust inputs": True}
    assert result.points == pytest.approx(0.85 * 2)
    assert "float32 part fails" in result.feedback and "dtype float64" in result.feedback

    def scale_backward(dout, cache):  # right values, but scales dout in place
        dout *= cache
        return dout

    result = grade_exercise(EXERCISES["scale_backward"], {"scale_backward": scale_backward})
    assert result.parts == {"values": True, "float32": True, "robust inputs": False}
    assert "read-only" in result.feedback


def test_check_prints_or_raises_one_line():
    def flatten_forward(x):
        return x.reshape(x.shape[0], x.shape[1], -1), x.shape

    check("flatten_forward", flatten_forward)
    with pytest.raises(AssertionError, match=r"flatten_forward: 0/1 points: .*yours"):
        check("flatten_forward", lambda x: (x.reshape(x.shape[0], -1, x.shape[1]), x.shape))
    with pytest.raises(ValueError, match="exercise_id must be one of"):
        check("nonsense", flatten_forward)
    with pytest.raises(TypeError, match="needs 2 function"):
        check("scale_bug_factor", flatten_forward)


def test_the_chain_notebook_forward_matches_the_graders():
    nb = nbformat.read(path_of("03_backward_pass"), as_version=4)
    source = next(c.source for c in nb.cells if c.get("id") == "chain-forward")
    from minattn import resize, steps

    ns = {"np": np, "steps": steps, "resize": resize}
    exec(textwrap.dedent(source), ns)
    rng = np.random.default_rng(0)
    P = {
        "query_conv.weight": rng.standard_normal((2, 6, 1, 1)),
        "query_conv.bias": rng.standard_normal(2),
        "key_conv.weight": rng.standard_normal((2, 6, 1, 1)),
        "key_conv.bias": rng.standard_normal(2),
        "value_conv.weight": rng.standard_normal((6, 6, 1, 1)),
        "value_conv.bias": rng.standard_normal(6),
        "gamma": np.array([0.7]),
    }
    x = rng.standard_normal((2, 6, 4, 6))
    for interpolation in ("nearest", "bilinear"):
        z1, fwd1 = ns["bam_forward"](P, x, 2, interpolation, True)
        z2, fwd2 = forward_intermediates(P, x, 2, interpolation, True)
        assert fwd1.keys() == fwd2.keys()
        for key, value in fwd1.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, fwd2[key], err_msg=key)


def test_the_channel_notebook_forward_matches_the_graders():
    nb = nbformat.read(path_of("07_attention_family"), as_version=4)
    source = next(c.source for c in nb.cells if c.get("id") == "cam-forward")
    source = source[: source.index("x_cam = ")]  # the function, not its check against minattn
    ns = {"np": np}
    exec(textwrap.dedent(source), ns)
    x = 0.3 * np.random.default_rng(2).standard_normal((2, 5, 3, 4))
    gamma = np.array([0.6])
    y1, fwd1 = ns["channel_forward"](x, gamma)
    y2, fwd2 = channel_intermediates(x, gamma)
    assert fwd1.keys() == fwd2.keys()
    for key, value in fwd1.items():
        np.testing.assert_allclose(value, fwd2[key], rtol=1e-13, atol=1e-15, err_msg=key)
