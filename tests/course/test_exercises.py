"""The exercise notebooks and their student versions (``minattn exercises``).

Grading itself is tested in tests/course/test_grading.py; the solution notebooks are executed
by tests/repo/test_notebooks.py. Here: the generator's rules, that no student version leaks
an answer, and that the nbgrader metadata is well-formed and matches the grader's points.
"""

import ast
import json
import re
from pathlib import Path

import pytest

from minattn.course import exercises
from minattn.course.exercises import (
    BEGIN,
    CODE_STUB,
    END,
    MARKDOWN_STUB,
    has_solutions,
    strip_solutions,
    student_notebook,
)
from minattn.course.grading import EXERCISES, for_notebook
from minattn.course.grading import notebooks as exercise_notebooks

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SOLUTIONS = [NOTEBOOKS / f"{stem}.ipynb" for stem in exercise_notebooks()]


def code_cell(source, **metadata):
    return {
        "cell_type": "code",
        "execution_count": 3,
        "id": "c1",
        "metadata": metadata,
        "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hello\n"]}],
        "source": source,
    }


def markdown_cell(source, **metadata):
    return {"cell_type": "markdown", "id": "m1", "metadata": metadata, "source": source}


def notebook(*cells):
    return {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def text(cell):
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


# ---------------------------------------------------------------- strip_solutions


def test_block_replaced_by_stub_with_its_indentation():
    source = (
        "def f(x):\n"
        '    """Doc."""\n'
        f"    {BEGIN}\n"
        "    y = x + 1\n"
        "    return y\n"
        f"    {END}\n"
        "\n"
        "print(f(1))"
    )
    assert strip_solutions(source) == (f'def f(x):\n    """Doc."""\n    {CODE_STUB}\n\nprint(f(1))')


def test_nested_indentation_and_several_blocks():
    source = (
        "class A:\n"
        "    def f(self):\n"
        f"        {BEGIN}\n"
        "        return 1\n"
        f"        {END}\n"
        "\n"
        f"{BEGIN}\n"
        "top = 2\n"
        f"{END}"
    )
    out = strip_solutions(source)
    assert out == f"class A:\n    def f(self):\n        {CODE_STUB}\n\n{CODE_STUB}"
    ast.parse(out)  # still valid Python
    assert "return 1" not in out and "top = 2" not in out


def test_marker_may_carry_a_comment_and_text_without_markers_is_unchanged():
    assert strip_solutions(f"  {BEGIN} (hard)\n  x = 1\n  {END}\n") == f"  {CODE_STUB}\n"
    plain = "x = 1\n# a comment\n"
    assert strip_solutions(plain) == plain


def test_markdown_block_becomes_an_answer_placeholder():
    source = f"Why?\n\n{BEGIN}\nBecause the rows sum to zero.\n{END}\n"
    assert strip_solutions(source, cell_type="markdown") == f"Why?\n\n{MARKDOWN_STUB}\n"


def test_markdown_may_mention_the_markers_in_prose():
    prose = f"Solutions sit between `{BEGIN}` and `{END}` lines."
    assert strip_solutions(prose, cell_type="markdown") == prose
    with pytest.raises(ValueError, match="must start its line"):
        strip_solutions(f"x = 1  {BEGIN}\n")


@pytest.mark.parametrize(
    "source, message",
    [
        (f"{BEGIN}\nx = 1\n", r"line 1: '### BEGIN SOLUTION' is never closed"),
        (f"x = 1\n{END}\n", r"line 2: '### END SOLUTION' without"),
        (
            f"{BEGIN}\n{BEGIN}\n{END}\n",
            r"line 2: '### BEGIN SOLUTION' inside the block opened on line 1",
        ),
    ],
)
def test_unbalanced_markers_raise(source, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(source, where="nb.ipynb, cell 4")
    with pytest.raises(ValueError, match="nb.ipynb, cell 4"):
        strip_solutions(source, where="nb.ipynb, cell 4")


# ---------------------------------------------------------------- student_notebook


def test_student_notebook_clears_outputs_locks_checks_and_keeps_the_original():
    source = ["def f():\n", f"    {BEGIN}\n", "    return 42\n", f"    {END}"]
    grade = {"grade": True, "solution": False, "locked": True, "grade_id": "f_check"}
    nb = notebook(code_cell(source, tags=["solution"]), code_cell("f()", nbgrader=grade))
    original = json.dumps(nb, sort_keys=True)
    student = student_notebook(nb, name="x.ipynb")
    assert json.dumps(nb, sort_keys=True) == original  # not modified
    first, second = student["cells"]
    assert "".join(first["source"]) == f"def f():\n    {CODE_STUB}"
    assert first["metadata"]["tags"] == ["solution"]
    assert second["metadata"]["editable"] is False and second["metadata"]["deletable"] is False
    assert "editable" not in first["metadata"]
    for cell in student["cells"]:
        assert cell["outputs"] == [] and cell["execution_count"] is None
    assert has_solutions(nb) and not has_solutions(student)
    assert student["metadata"]["minattn"]["assignment"] == "x"


def test_teacher_and_answer_cells_are_removed():
    nb = notebook(
        markdown_cell("# Title"),
        markdown_cell("For teachers: the solutions are here.", tags=["teacher"]),
        code_cell("x = 1"),
        markdown_cell("The answer is 42.", tags=["answer"]),
    )
    assert has_solutions(nb)  # tagged cells alone make it an exercise notebook
    student = student_notebook(nb, name="t.ipynb")
    assert [text(c) for c in student["cells"]] == ["# Title", "x = 1"]


def test_keep_solutions_removes_only_the_tagged_cells():
    nb = notebook(
        code_cell(f"{BEGIN}\nanswer = 42\n{END}\n"),
        markdown_cell("The answer is 42.", tags=["answer"]),
    )
    kept = student_notebook(nb, name="k.ipynb", keep_solutions=True)
    assert len(kept["cells"]) == 1 and "answer = 42" in text(kept["cells"][0])


def test_student_notebook_names_file_and_cell_in_errors():
    nb = notebook(code_cell("x = 1"), code_cell(f"{BEGIN}\ny = 2\n"))
    with pytest.raises(ValueError, match=r"bad\.ipynb, cell 1 \(code\), line 1"):
        student_notebook(nb, name="bad.ipynb")


# ---------------------------------------------------------------- the command


def test_main_writes_student_versions_and_never_overwrites_without_force(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ex.ipynb").write_text(json.dumps(notebook(code_cell(f"{BEGIN}\na = 42\n{END}\n"))))
    (src / "plain.ipynb").write_text(json.dumps(notebook(code_cell("x = 1"))))
    out = tmp_path / "out"
    assert exercises.main([str(src), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ex.ipynb"]  # only notebooks with answers
    assert f"wrote {out / 'ex.ipynb'}" in capsys.readouterr().out
    written = out / "ex.ipynb"
    assert "".join(json.loads(written.read_text())["cells"][0]["source"]) == f"{CODE_STUB}\n"

    written.write_text("a student's work")
    assert exercises.main([str(src), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err
    assert written.read_text() == "a student's work"  # kept
    assert exercises.main([str(src), "--out", str(out), "--force"]) == 0
    assert written.read_text() != "a student's work"


def test_default_folder_is_student_in_the_current_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert exercises.main([str(SOLUTIONS[0])]) == 0
    assert (tmp_path / "student" / SOLUTIONS[0].name).exists()
    makefile = (NOTEBOOKS.parent / "Makefile").read_text()
    clean = next(line for line in makefile.splitlines() if line.strip().startswith("rm -rf"))
    assert "student" not in clean  # make clean leaves the students' work alone


def test_command_line_routes_to_the_generator(tmp_path, capsys):
    from minattn.apps import cli

    target = SOLUTIONS[0]
    assert cli.main(["exercises", str(target), "--out", str(tmp_path)]) == 0
    assert (tmp_path / target.name).exists()
    assert f"wrote {tmp_path / target.name}" in capsys.readouterr().out


def test_main_reports_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps(notebook(code_cell("x = 1"), code_cell(f"{END}\n"))))
    assert exercises.main([str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.ipynb, cell 1" in err and "without" in err
    plain = tmp_path / "plain.ipynb"
    plain.write_text(json.dumps(notebook(code_cell("x = 1"))))
    assert exercises.main([str(plain), "--out", str(tmp_path / "out")]) == 1
    assert "no exercise notebook" in capsys.readouterr().err
    assert exercises.main([str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2


# ---------------------------------------------------------------- the course's notebooks


def hidden_lines(nb):
    """Every line a student must not see: inside solution blocks, and in tagged cells."""
    lines = set()
    for cell in nb["cells"]:
        tags = set(cell["metadata"].get("tags", []))
        inside = False
        for line in text(cell).splitlines():
            if line.strip().startswith(BEGIN):
                inside = True
            elif line.strip().startswith(END):
                inside = False
            elif (inside or tags & {"teacher", "answer"}) and line.strip():
                lines.add(line.strip())
    return lines


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert exercises.main([*map(str, SOLUTIONS), "--out", str(out)]) == 0
    return {path.stem: (path, out / path.name) for path in SOLUTIONS}


def test_every_exercise_notebook_has_exercises():
    assert [p.stem for p in SOLUTIONS] == exercise_notebooks()
    assert len(EXERCISES) >= 20
    for path in SOLUTIONS:
        assert path.exists(), path


@pytest.mark.parametrize("stem", exercise_notebooks())
def test_student_version_holds_no_solution_and_no_answer(students, stem):
    nbformat = pytest.importorskip("nbformat")
    solution_path, student_path = students[stem]
    solution = json.loads(solution_path.read_text())
    nb = nbformat.read(student_path, as_version=4)
    nbformat.validate(nb)
    hidden = hidden_lines(solution)
    # lines that also occur outside hidden places (a bare "return g") prove nothing
    visible_in_solution = set()
    for cell in solution["cells"]:
        if set(cell["metadata"].get("tags", [])) & {"teacher", "answer"}:
            continue
        inside = False
        for line in text(cell).splitlines():
            if line.strip().startswith((BEGIN, END)):
                inside = line.strip().startswith(BEGIN)
            elif not inside:
                visible_in_solution.add(line.strip())
    revealing = hidden - visible_in_solution
    assert revealing, f"{stem} hides nothing"
    for index, cell in enumerate(nb.cells):
        assert BEGIN not in cell.source and END not in cell.source, f"marker left in cell {index}"
        lines = {line.strip() for line in cell.source.splitlines()}
        assert not (lines & revealing), f"{stem}, cell {index} shows {sorted(lines & revealing)}"
        assert not set(cell.metadata.get("tags", [])) & {"teacher", "answer"}
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            ast.parse(cell.source)  # raise NotImplementedError keeps every cell valid Python
    opening = nb.cells[0].source.lower()
    assert "teacher" not in opening and "solution notebook" not in opening
    assert nb.metadata["minattn"]["assignment"] == stem


# The nbgrader cell metadata schema, version 3 (nbgrader/nbgraderformat/v3.json and the
# rules of its validator): the keys, their types, and how they go together.
NBGRADER_KEYS = {"schema_version", "grade", "locked", "solution", "task", "grade_id", "points"}


def check_nbgrader_cell(cell, where):
    meta = cell["metadata"]["nbgrader"]
    assert set(meta) <= NBGRADER_KEYS, f"{where}: unknown nbgrader keys {set(meta) - NBGRADER_KEYS}"
    assert meta["schema_version"] == 3, where
    for key in ("grade", "locked", "solution"):
        assert isinstance(meta[key], bool), f"{where}: {key} must be a bool"
    assert re.fullmatch(r"[a-zA-Z0-9_\-]+", meta["grade_id"]), f"{where}: grade_id"
    if meta["grade"]:
        points = meta["points"]
        assert isinstance(points, int | float) and points >= 0, f"{where}: points"
    else:
        assert "points" not in meta, f"{where}: points without grade"
    if cell["cell_type"] == "markdown":
        assert meta["grade"] == meta["solution"], f"{where}: markdown must be grade and solution"
    if meta["solution"] and cell["cell_type"] == "code":
        assert BEGIN in text(cell), f"{where}: a solution cell without a solution block"
        lines = [line.strip() for line in text(cell).splitlines()]
        # nbgrader's ClearSolutions only knows marker lines that are exactly the marker
        assert all(line in (BEGIN, END) for line in lines if line.startswith(("### B", "### E")))


@pytest.mark.parametrize("stem", exercise_notebooks())
def test_nbgrader_metadata_is_well_formed_and_matches_the_point_table(stem):
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    ids, check_points, solutions = set(), {}, {}
    for index, cell in enumerate(nb["cells"]):
        has_block = any(
            line.strip().startswith(BEGIN) for line in text(cell).splitlines()
        ) and cell["cell_type"] in ("code", "markdown")
        if "nbgrader" not in cell["metadata"]:
            assert not has_block, f"{stem}, cell {index}: solution block outside a solution cell"
            continue
        where = f"{stem}, cell {index}"
        check_nbgrader_cell(cell, where)
        meta = cell["metadata"]["nbgrader"]
        assert meta["grade_id"] not in ids, f"{where}: duplicate grade_id {meta['grade_id']}"
        ids.add(meta["grade_id"])
        if meta["solution"] and cell["cell_type"] == "code":
            solutions[meta["grade_id"]] = index
        if meta["grade"] and not meta["solution"]:  # a test cell: our check cell
            assert meta["locked"], f"{where}: a check cell must be locked"
            exercise_id = meta["grade_id"].removesuffix("_check")
            assert f'check("{exercise_id}"' in text(cell), f"{where}: checks another exercise"
            check_points[exercise_id] = meta["points"]
        if cell["cell_type"] == "markdown":  # a written answer, graded by hand
            assert meta["points"] == 0, f"{where}: minattn grade cannot grade a written answer"
    table = {e.id: e.points for e in for_notebook(stem)}
    assert check_points == table
    assert set(solutions) == set(table)
    for exercise_id, index in solutions.items():  # the next graded cell is its check cell
        follows = next(
            c["metadata"]["nbgrader"]["grade_id"]
            for c in nb["cells"][index + 1 :]
            if c["metadata"].get("nbgrader", {}).get("grade")
        )
        assert follows == f"{exercise_id}_check"
        for fn in EXERCISES[exercise_id].functions:
            assert f"def {fn}(" in text(nb["cells"][index])
