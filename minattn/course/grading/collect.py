"""Read a submitted notebook into the code its graded functions are rebuilt from.

The one place where a student's notebook becomes Python: every code cell except the
check cells (nbgrader test cells, which the grader replaces by its hidden tests), with
IPython syntax (``%magic``, ``!shell``) turned into plain Python the way IPython itself
does, split into top-level statements. The isolated process runs those statements in
order (`child.py`): a notebook's top-level names, whatever they hold (constants, lists,
helpers, classes, decorated functions, imports), are there when a graded function runs.

The grader also reads, here and without running anything, which top-level names each
function refers to (so feedback can say "it calls your bilinear_matrix, which fails its
own tests") and which names the notebook binds by importing minattn (graded functions
cannot use those; feedback says so).
"""

import ast
from dataclasses import dataclass, field


@dataclass
class Cell:
    index: int
    statements: list  # [[first line, source], ...]
    error: str | None = None  # "SyntaxError: ... (line 3)" when the cell does not parse


@dataclass
class Submission:
    cells: list
    defined: dict = field(default_factory=dict)  # top-level name -> cell of its last binding
    refs: dict = field(default_factory=dict)  # function or class -> top-level names it reads
    package_names: set = field(default_factory=set)  # bound by an import of minattn

    def program(self):
        """What the isolated process runs: [[cell, [[line, source], ...]], ...]."""
        return [[c.index, c.statements] for c in self.cells if c.statements]

    def closure(self, functions):
        """Every top-level name that ``functions`` reach through their references."""
        seen, todo = set(), list(functions)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += sorted(self.refs.get(name, ()))
        return seen

    def error_of(self, index):
        return next((c.error for c in self.cells if c.index == index), None)


def is_test_cell(cell):
    """An nbgrader autograder-test cell (our check cells): graded, not a solution."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def source_of(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def python_source(source):
    """A cell's source as plain Python: IPython's own transformation of magics and shell
    lines (``get_ipython().run_line_magic(...)``), or, without IPython, those lines blanked."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
        )
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # IPython could not transform it: Python will say what is wrong
        return source


def read(nb):
    """The `Submission` of a notebook (a dict or an nbformat node)."""
    submission = Submission([])
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or is_test_cell(cell):
            continue
        source = python_source(source_of(cell))
        if not source.strip():
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError as e:
            where = f" (line {e.lineno})" if e.lineno else ""
            submission.cells.append(Cell(index, [], f"SyntaxError: {e.msg}{where}"))
            continue
        lines = source.splitlines()
        statements = [[_first_line(node), _segment(lines, source, node)] for node in tree.body]
        submission.cells.append(Cell(index, statements))
        _bindings(tree, index, submission)
    return submission


def _first_line(node):
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno] + [d.lineno for d in decorators])


def _segment(lines, source, node):
    """The source of one top-level statement (decorators included)."""
    first = _first_line(node)
    if first < node.lineno or node.end_lineno > node.lineno:  # whole lines of its own
        return "\n".join(lines[first - 1 : node.end_lineno])
    return ast.get_source_segment(source, node) or lines[first - 1]


def _bindings(tree, index, submission):
    """Record what each top-level statement binds, reads, and imports from minattn."""
    for node in tree.body:
        bound = _bound_names(node)
        for name in bound:
            submission.defined[name] = index
            submission.package_names.discard(name)
        if isinstance(node, ast.Import | ast.ImportFrom) and _imports_package(node):
            submission.package_names |= bound
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            reads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            submission.refs[node.name] = reads - {node.name}


def _bound_names(node):
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def _imports_package(node):
    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    return any(m.split(".")[0] == "minattn" for m in modules)
