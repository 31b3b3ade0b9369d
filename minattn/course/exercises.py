"""``minattn exercises``: write the student version of the exercise notebooks.

The exercise notebooks are stored once, as solutions. Solution code sits between
two marker lines, the nbgrader convention::

    def softmax_backward(dout, cache):
        attention = cache
        ### BEGIN SOLUTION
        return attention * (dout - (dout * attention).sum(axis=-1, keepdims=True))
        ### END SOLUTION

The student version replaces each marked block, markers included, by one line
with the indentation of the ``### BEGIN SOLUTION`` line::

        raise NotImplementedError("exercise: write your solution here")

so the student's cell still defines the function, and the check cell after it
fails with ``NotImplementedError`` until the student writes the body. In a
markdown cell (a written answer) the block becomes ``*Your answer here.*``.
Two cell tags remove whole cells from the student version:

    teacher   notes for teachers (how the notebook is used in a course)
    answer    prose that gives an answer away: a derivation placed after the exercise
              that asks for it, the explanation after a "predict the failing rows" check

Check cells (nbgrader test cells) are made read-only (``editable``/``deletable``
false). Outputs and execution counts are cleared. The nbgrader metadata stays, so
``minattn grade`` recognises each exercise's cell.

``--keep-solutions`` removes only the tagged cells and keeps the solutions: the
source a course on nbgrader hands to ``nbgrader generate_assignment`` (which strips
solutions itself but knows nothing of these tags).

By default the student versions go to ``student/`` in the current folder (``make
clean`` leaves it alone), and an existing file is never overwritten without ``--force``:
it may hold a student's work.

Only the standard library is used (notebooks are JSON), so this runs without
nbformat or Jupyter installed.
"""

import argparse
import copy
import json
import sys
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_STUB = 'raise NotImplementedError("exercise: write your solution here")'
MARKDOWN_STUB = "*Your answer here.*"
REMOVED_TAGS = ("teacher", "answer")  # cells with these tags are not in the student version
DEFAULT_OUT = Path("student")
DEFAULT_NOTEBOOKS = Path("notebooks")


def _marker(line):
    """BEGIN or END if the line is a marker line (it starts with one), "inline" if a marker
    appears later in the line, else None."""
    text = line.strip()
    for marker in (BEGIN, END):
        if text.startswith(marker):
            return marker
    if BEGIN in text or END in text:
        return "inline"
    return None


def strip_solutions(source, *, cell_type="code", where="source"):
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block of ``source``.

    source: the text of one cell. cell_type: "code" (the block becomes
    ``raise NotImplementedError(...)`` with the BEGIN line's indentation) or
    "markdown" (the block becomes ``*Your answer here.*``). where: a description
    of the cell (file and cell number) for error messages.

    Raises ValueError, naming ``where`` and the line, for a BEGIN without END, an
    END without BEGIN, a BEGIN inside a block, or a marker that shares its line
    with code (in a markdown cell, a marker in the middle of a line is prose and is
    left alone). A marker line is one whose text starts with the marker, so
    ``### BEGIN SOLUTION`` may be followed by a comment. Text without markers comes
    back unchanged.
    """
    if cell_type not in ("code", "markdown"):
        raise ValueError(f"{where}: cell_type must be 'code' or 'markdown', got {cell_type!r}")
    out = []
    begin_line = None  # 1-based line number of the open BEGIN, None outside a block
    lines = source.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        kind = _marker(line)
        if kind == "inline" and cell_type == "markdown":
            kind = None  # prose that mentions a marker, e.g. in backticks
        if kind == "inline":
            raise ValueError(
                f"{where}, line {number}: a solution marker must start its line, "
                f"got {line.strip()!r}"
            )
        if kind == BEGIN:
            if begin_line is not None:
                raise ValueError(
                    f"{where}, line {number}: {BEGIN!r} inside the block opened on line "
                    f"{begin_line}; close it with {END!r} first"
                )
            begin_line = number
            indent = line[: len(line) - len(line.lstrip())]
            stub = CODE_STUB if cell_type == "code" else MARKDOWN_STUB
            newline = "\n" if line.endswith("\n") else ""
            out.append(f"{indent}{stub}{newline}")
        elif kind == END:
            if begin_line is None:
                raise ValueError(f"{where}, line {number}: {END!r} without a {BEGIN!r} before it")
            begin_line = None
            if not line.endswith("\n"):  # END was the cell's last line: so is the stub
                out[-1] = out[-1].rstrip("\n")
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise ValueError(f"{where}, line {begin_line}: {BEGIN!r} is never closed by {END!r}")
    return "".join(out)


def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell):
    return set(cell.get("metadata", {}).get("tags", []))


def _nbgrader(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def has_solutions(nb):
    """True if the notebook (a dict, as json.load gives) has anything a student must not see:
    a solution marker line, an nbgrader solution cell, or a cell tagged teacher or answer."""
    return any(
        _marker(line) in (BEGIN, END)
        for cell in nb.get("cells", [])
        for line in _source(cell).splitlines()
    ) or any(
        _nbgrader(cell).get("solution") or _tags(cell) & set(REMOVED_TAGS)
        for cell in nb.get("cells", [])
    )


def student_notebook(nb, *, name="notebook", keep_solutions=False):
    """The student version of a notebook dict: solutions replaced, tagged cells removed.

    nb: a notebook as loaded by ``json.load`` (or an nbformat NotebookNode); it is not
    modified. name: the file name, for error messages and the notebook's metadata.
    keep_solutions: only remove the cells tagged teacher or answer (nbgrader's source).
    Check cells become read-only; outputs and execution counts are cleared.
    """
    student = copy.deepcopy(nb)
    cells = []
    for index, cell in enumerate(student.get("cells", [])):
        if _tags(cell) & set(REMOVED_TAGS):
            continue
        where = f"{name}, cell {index} ({cell.get('cell_type', '?')})"
        source = _source(cell)
        if cell.get("cell_type") in ("code", "markdown"):
            stripped = strip_solutions(source, cell_type=cell["cell_type"], where=where)
            source = source if keep_solutions else stripped
        elif any(_marker(line) in (BEGIN, END) for line in source.splitlines()):
            raise ValueError(f"{where}: solution markers only work in code and markdown cells")
        cell["source"] = source.splitlines(keepends=True)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        meta = cell.setdefault("metadata", {})
        meta.pop("execution", None)
        if _nbgrader(cell).get("grade") and not _nbgrader(cell).get("solution"):
            meta["editable"] = False  # a check cell: run it, do not change it
            meta["deletable"] = False
        cells.append(cell)
    student["cells"] = cells
    stem = Path(name).stem
    student.setdefault("metadata", {})["minattn"] = {
        **student.get("metadata", {}).get("minattn", {}),
        "assignment": stem,
        "student_version_of": Path(name).name,
        "generated_by": "minattn exercises" + (" --keep-solutions" if keep_solutions else ""),
    }
    return student


def write_student_version(path, out_dir, *, force=False, keep_solutions=False):
    """Write the student version of the notebook at ``path`` into ``out_dir``; return its path.

    Raises FileExistsError if the target exists and ``force`` is false: it may hold a
    student's work.
    """
    path = Path(path)
    student = student_notebook(_load(path), name=path.name, keep_solutions=keep_solutions)
    out_dir = Path(out_dir)
    target = out_dir / path.name
    if target.exists() and not force:
        raise FileExistsError(
            f"{target} exists (a student's work?); not overwritten, use --force to replace it"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(student, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def _load(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a notebook (invalid JSON: {e})") from e


def _notebooks(paths):
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(p.glob("*.ipynb"))
        elif p.is_file():
            found.append(p)
        else:
            raise ValueError(f"no such notebook or directory: {p}")
    return found


def build_parser():
    p = argparse.ArgumentParser(
        prog="minattn exercises",
        description="Write the student version of every exercise notebook: solution blocks "
        f"({BEGIN!r} ... {END!r}) become raise NotImplementedError, teachers' notes and "
        "answer prose (cells tagged teacher or answer) are removed, outputs are cleared.",
    )
    p.add_argument(
        "notebooks",
        nargs="*",
        default=[str(DEFAULT_NOTEBOOKS)],
        help=f"notebooks or directories of notebooks (default: {DEFAULT_NOTEBOOKS}/)",
    )
    p.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        metavar="DIR",
        help=f"where to write the student versions (default: {DEFAULT_OUT}/ in the current "
        "folder, which make clean does not delete)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite student notebooks that already exist (they may hold a student's work)",
    )
    p.add_argument(
        "--keep-solutions",
        action="store_true",
        help="remove only the teachers' notes and answer prose, keep the solutions: the "
        "source notebooks for nbgrader generate_assignment",
    )
    return p


def main(argv=None):
    """Entry point of ``minattn exercises``; returns the exit status.

    0: every student version written; 1: none to write, or some kept because they exist
    (the others are written); 2: a bad notebook or path.
    """
    args = build_parser().parse_args(argv)
    try:
        sources = [p for p in _notebooks(args.notebooks) if has_solutions(_load(p))]
        written, kept = [], []
        for path in sources:
            try:
                written.append(
                    write_student_version(
                        path, args.out, force=args.force, keep_solutions=args.keep_solutions
                    )
                )
            except FileExistsError as e:
                kept.append(e)
    except (ValueError, OSError) as e:
        print(f"minattn exercises: error: {e}", file=sys.stderr)
        return 2
    if not sources:
        print(
            f"minattn exercises: error: no exercise notebook (solution markers, or cells tagged "
            f"{' or '.join(REMOVED_TAGS)}) in {', '.join(args.notebooks)}",
            file=sys.stderr,
        )
        return 1
    for target in written:
        print(f"wrote {target}")
    for e in kept:
        print(f"minattn exercises: {e}", file=sys.stderr)
    return 1 if kept else 0


if __name__ == "__main__":
    sys.exit(main())
