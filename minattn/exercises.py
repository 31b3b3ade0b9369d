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
Outputs and execution counts are cleared.

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
DEFAULT_OUT = Path("build") / "student"
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


def has_solutions(nb):
    """True if a cell of the notebook (a dict, as json.load gives) has a marker line."""
    return any(
        _marker(line) in (BEGIN, END)
        for cell in nb.get("cells", [])
        for line in _source(cell).splitlines()
    )


def student_notebook(nb, *, name="notebook"):
    """The student version of a notebook dict: solutions replaced, outputs cleared.

    nb: a notebook as loaded by ``json.load`` (or an nbformat NotebookNode);
    it is not modified. name: the file name, for error messages.
    """
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.get("cells", [])):
        where = f"{name}, cell {index} ({cell.get('cell_type', '?')})"
        source = _source(cell)
        if cell.get("cell_type") in ("code", "markdown"):
            source = strip_solutions(source, cell_type=cell["cell_type"], where=where)
        elif any(_marker(line) in (BEGIN, END) for line in source.splitlines()):
            raise ValueError(f"{where}: solution markers only work in code and markdown cells")
        cell["source"] = source.splitlines(keepends=True)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    student.setdefault("metadata", {})["minattn"] = {
        "student_version_of": name,
        "generated_by": "minattn exercises",
    }
    return student


def write_student_version(path, out_dir):
    """Write the student version of the notebook at ``path`` into ``out_dir``; return its path."""
    path = Path(path)
    student = student_notebook(_load(path), name=str(path))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
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
        description="Write the student version of every notebook with solution markers "
        f"({BEGIN!r} ... {END!r}): each block becomes raise NotImplementedError, "
        "outputs are cleared.",
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
        help=f"where to write the student versions (default: {DEFAULT_OUT}/)",
    )
    return p


def main(argv=None):
    """Entry point of ``minattn exercises``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        sources = _notebooks(args.notebooks)
        written = []
        for path in sources:
            if has_solutions(_load(path)):
                written.append(write_student_version(path, args.out))
    except (ValueError, OSError) as e:
        print(f"minattn exercises: error: {e}", file=sys.stderr)
        return 2
    if not written:
        print(
            f"minattn exercises: error: no notebook with {BEGIN!r} markers among "
            f"{len(sources)} notebook(s) in {', '.join(args.notebooks)}",
            file=sys.stderr,
        )
        return 1
    for target in written:
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
