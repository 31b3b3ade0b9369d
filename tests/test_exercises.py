"""The exercise generator: solution blocks out, stubs in, and the student notebook fails as meant.

The solution notebooks themselves are executed by tests/test_notebooks.py; here we
check what ``minattn exercises`` makes of them.
"""

import ast
import json
from pathlib import Path

import pytest

from minattn import exercises
from minattn.exercises import (
    BEGIN,
    CODE_STUB,
    END,
    MARKDOWN_STUB,
    has_solutions,
    strip_solutions,
    student_notebook,
)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXERCISES = NOTEBOOKS / "04_gradcheck_exercises.ipynb"


def code_cell(source, **metadata):
    return {
        "cell_type": "code",
        "execution_count": 3,
        "id": "c1",
        "metadata": metadata,
        "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hello\n"]}],
        "source": source,
    }


def notebook(*cells):
    return {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


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


def test_student_notebook_clears_outputs_and_keeps_the_original():
    source = ["def f():\n", f"    {BEGIN}\n", "    return 42\n", f"    {END}"]
    nb = notebook(code_cell(source, tags=["solution"]), code_cell("f()", tags=["check"]))
    original = json.dumps(nb, sort_keys=True)
    student = student_notebook(nb, name="x.ipynb")
    assert json.dumps(nb, sort_keys=True) == original  # not modified
    first, second = student["cells"]
    assert "".join(first["source"]) == f"def f():\n    {CODE_STUB}"
    assert first["metadata"]["tags"] == ["solution"]
    for cell in student["cells"]:
        assert cell["outputs"] == [] and cell["execution_count"] is None
    assert has_solutions(nb) and not has_solutions(student)


def test_student_notebook_names_file_and_cell_in_errors():
    nb = notebook(code_cell("x = 1"), code_cell(f"{BEGIN}\ny = 2\n"))
    with pytest.raises(ValueError, match=r"bad\.ipynb, cell 1 \(code\), line 1"):
        student_notebook(nb, name="bad.ipynb")


def test_main_writes_student_versions(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    with_markers = notebook(code_cell(f"{BEGIN}\nanswer = 42\n{END}\n"))
    (src / "ex.ipynb").write_text(json.dumps(with_markers))
    (src / "plain.ipynb").write_text(json.dumps(notebook(code_cell("x = 1"))))
    out = tmp_path / "out"
    assert exercises.main([str(src), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ex.ipynb"]  # only notebooks with markers
    assert f"wrote {out / 'ex.ipynb'}" in capsys.readouterr().out
    written = json.loads((out / "ex.ipynb").read_text())
    assert "".join(written["cells"][0]["source"]) == f"{CODE_STUB}\n"


def test_command_line_routes_to_the_generator(tmp_path, capsys):
    from minattn import cli

    assert cli.main(["exercises", str(EXERCISES), "--out", str(tmp_path)]) == 0
    assert (tmp_path / EXERCISES.name).exists()
    assert f"wrote {tmp_path / EXERCISES.name}" in capsys.readouterr().out


def test_main_reports_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text(json.dumps(notebook(code_cell("x = 1"), code_cell(f"{END}\n"))))
    assert exercises.main([str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.ipynb, cell 1" in err and "without" in err
    plain = tmp_path / "plain.ipynb"
    plain.write_text(json.dumps(notebook(code_cell("x = 1"))))
    assert exercises.main([str(plain), "--out", str(tmp_path / "out")]) == 1
    assert "no notebook" in capsys.readouterr().err
    assert exercises.main([str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2


# ---------------------------------------------------------------- the real exercise notebook


def solution_blocks(nb):
    """The lines strictly between markers, per cell, of a notebook dict."""
    blocks = []
    for cell in nb["cells"]:
        inside = False
        for line in "".join(cell["source"]).splitlines():
            if line.strip().startswith(BEGIN):
                inside = True
            elif line.strip().startswith(END):
                inside = False
            elif inside and line.strip():
                blocks.append(line.strip())
    return blocks


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    assert exercises.main([str(EXERCISES), "--out", str(out)]) == 0
    return out / EXERCISES.name


def test_exercise_notebook_has_solutions_and_checks():
    nb = json.loads(EXERCISES.read_text())
    tags = [set(c["metadata"].get("tags", [])) for c in nb["cells"]]
    assert sum("solution" in t for t in tags) >= 10
    assert sum("check" in t for t in tags) >= 10
    for cell, t in zip(nb["cells"], tags, strict=True):  # solution cells hold the markers
        assert ("solution" in t) == (BEGIN in "".join(cell["source"]))


def test_student_notebook_is_valid_and_holds_no_solution(student):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(student, as_version=4)
    nbformat.validate(nb)
    source_nb = json.loads(EXERCISES.read_text())
    solution_lines = set(solution_blocks(source_nb))
    # lines that also occur outside solution blocks (e.g. a bare "return") prove nothing
    outside = {
        line.strip() for cell in source_nb["cells"] for line in "".join(cell["source"]).splitlines()
    } - solution_lines
    revealing = solution_lines - outside
    assert revealing, "the exercise notebook has no solution code to hide"
    for index, cell in enumerate(nb.cells):
        assert BEGIN not in cell.source and END not in cell.source, f"marker left in cell {index}"
        lines = {line.strip() for line in cell.source.splitlines()}
        assert not (lines & revealing), f"solution code left in cell {index}: {lines & revealing}"
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            ast.parse(cell.source)  # raise NotImplementedError keeps every cell valid Python


def test_student_notebook_checks_fail_with_not_implemented(student):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(student, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(student.parent)}},
    )
    client.execute()
    checks = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if "check" in cell.metadata.get("tags", []):
            checks += 1
            assert [e.ename for e in errors] == ["NotImplementedError"], (
                f"check cell {index} should stop at the student's NotImplementedError, got "
                f"{[(e.ename, e.evalue) for e in errors]}"
            )
        else:
            assert not errors, f"cell {index} is not a check cell but fails: {errors[0].evalue}"
    assert checks >= 10
