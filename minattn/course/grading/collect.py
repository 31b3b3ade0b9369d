"""Run a student's notebook in a fresh kernel and collect the functions to grade.

Execution: nbclient, one cell at a time, in a fresh ``python3`` kernel, with a time limit
per cell (an infinite loop is interrupted, the cell records the error, the next cell
runs) and one for the whole notebook. Cells that raise are recorded and skipped over.
The check cells (nbgrader test cells) are not run: the grader runs the hidden tests
itself, and a student's check cell cannot change the grade.

Collection: after the last cell, one injected cell looks at each exercise's function in
the kernel and writes, to a file the grader owns, a description of every global name
the function needs (recursively): the source of functions defined in the notebook,
the modules and library functions it uses, small constants. The grader rebuilds the
functions from that in a fresh process (`minattn.course.grading.worker`), so nothing else of
the student's kernel (a patched package, a replaced ``np.allclose``) reaches the tests.

If the kernel cannot be used (it died, or a cell would not stop even when interrupted),
the functions are collected from the cell sources instead (`static_collect`), and the
report says so.
"""

import ast
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

# The injected cell. It runs in the student's namespace, so it imports what it needs
# inside the function and leaves nothing behind.
COLLECTOR = r"""
def _minattn_collect(requested, path):
    import ast, builtins, dis, importlib, inspect, json, textwrap, types
    ns = globals()

    def global_names(code):
        names, imports = set(), set()
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL"):
                names.add(ins.argval)
            elif ins.opname == "IMPORT_NAME":
                imports.add(ins.argval)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                more, more_imports = global_names(const)
                names |= more
                imports |= more_imports
        return names, imports

    def header_names(source):
        # names a def needs at definition time: decorators, defaults, annotations
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return set()
        names = set()
        for node in tree.body[:1]:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                parts = node.decorator_list + node.args.defaults + [
                    d for d in node.args.kw_defaults if d is not None
                ]
                for part in parts:
                    names |= {n.id for n in ast.walk(part) if isinstance(n, ast.Name)}
        return names

    def describe(name):
        if name not in ns:
            return {"kind": "missing"}
        value = ns[name]
        if isinstance(value, types.ModuleType):
            return {"kind": "module", "module": value.__name__}
        module = getattr(value, "__module__", None) or ""
        type_module = type(value).__module__ or ""
        if isinstance(value, types.FunctionType) and module == "__main__":
            try:
                source = textwrap.dedent(inspect.getsource(value))
            except (OSError, TypeError):
                return {"kind": "unsupported", "type": "function without source"}
            names, imports = global_names(value.__code__)
            names |= header_names(source)
            refs = sorted(n for n in names if n in ns and n != name)
            return {"kind": "def", "source": source, "refs": refs, "imports": sorted(imports)}
        if module.startswith("minattn") or type_module.startswith("minattn"):
            what = getattr(value, "__qualname__", None) or type(value).__name__
            return {"kind": "minattn", "what": f"{module or type_module}.{what}"}
        if isinstance(value, (bool, int, float, complex, str, bytes, type(None), tuple, frozenset)):
            try:
                text = repr(value)
                if ast.literal_eval(text) == value:
                    return {"kind": "value", "repr": text}
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                pass
        if type_module == "numpy" and hasattr(value, "dtype"):
            if value.dtype.kind in "biuf" and value.size <= 100000:
                return {"kind": "array", "data": value.tolist(), "dtype": str(value.dtype)}
        qualname = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        if callable(value) and module and module != "__main__" and qualname:
            try:
                found = importlib.import_module(module)
                for part in qualname.split("."):
                    found = getattr(found, part)
                if found is value:
                    return {"kind": "import", "module": module, "qualname": qualname}
            except Exception:
                pass
        return {"kind": "unsupported", "type": type(value).__name__}

    found, todo = {}, list(requested)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found[name] = describe(name)
        todo += found[name].get("refs", [])
    with builtins.open(path, "w", encoding="utf-8") as f:
        json.dump({"names": found, "requested": list(requested)}, f)


_minattn_collect(__REQUESTED__, __PATH__)
del _minattn_collect
"""


@dataclass
class CellRun:
    index: int
    error: str | None = None  # "NameError: name 'x' is not defined", or a timeout
    seconds: float = 0.0


@dataclass
class Execution:
    """What running the notebook gave: per-cell errors, the collected names, notes."""

    cells: list = field(default_factory=list)
    collected: dict | None = None  # {"names": {name: description}, "requested": [...]}
    source: str = "kernel"  # "kernel" or "cell sources"
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    def errors(self):
        return [c for c in self.cells if c.error]

    def error_of(self, index):
        return next((c.error for c in self.cells if c.index == index), None)


def is_test_cell(cell):
    """An nbgrader autograder-test cell (our check cells): graded, not a solution."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def execute(nb, names, *, cwd, cell_timeout=120, total_timeout=1800, run_checks=False):
    """Run ``nb`` (an nbformat notebook, modified: outputs filled in) cell by cell.

    names: the functions to collect afterwards. Returns an `Execution`. The kernel is
    always shut down, whatever the notebook did.
    """
    import tempfile

    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    start = time.monotonic()
    run = Execution()
    with tempfile.TemporaryDirectory(prefix="minattn-grade-") as tmp:
        km = _this_interpreter(Path(tmp) / "kernels")
        client = NotebookClient(
            nb,
            km=km,
            timeout=cell_timeout,
            interrupt_on_timeout=True,
            error_on_timeout={
                "ename": "Timeout",
                "evalue": f"the cell ran longer than {cell_timeout:g} s and was interrupted",
                "traceback": [],
            },
            allow_errors=True,
            kernel_name="python3",
            resources={"metadata": {"path": str(cwd)}},
        )
        try:
            _run_cells(client, nb, names, run, Path(tmp) / "collected.json", start + total_timeout,
                       cell_timeout, total_timeout, run_checks)  # fmt: skip
        except DeadKernelError:
            done = run.cells[-1].index if run.cells else 0
            run.notes.append(f"the kernel died (at or after cell {done}); later cells were not run")
        except Exception as e:  # a kernel that cannot start, a broken notebook...
            run.notes.append(f"running the notebook failed: {type(e).__name__}: {e}")
        finally:
            _shutdown(km)
    run.seconds = time.monotonic() - start
    if run.collected is None:
        run.collected = static_collect(nb, names)
        run.source = "cell sources"
        run.notes.append("the functions were collected from the cell sources, not the kernel")
    return run


def _run_cells(client, nb, names, run, dump, deadline, cell_timeout, total_timeout, run_checks):
    """Execute the notebook's cells, then the collector; fill in ``run``."""
    import subprocess

    with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            if is_test_cell(cell) and not run_checks:
                continue
            if time.monotonic() > deadline:
                run.notes.append(
                    f"the notebook's time limit ({total_timeout:g} s) ran out before cell "
                    f"{index}; the cells after it were not run"
                )
                break
            t0 = time.monotonic()
            limit = max(1.0, min(cell_timeout, deadline - t0))
            client.timeout = limit
            client.execute_cell(cell, index)
            record = CellRun(index, _cell_error(cell), time.monotonic() - t0)
            timed_out = record.seconds >= 0.98 * limit and (
                record.error is None or record.error.startswith(("KeyboardInterrupt", "Timeout"))
            )
            if timed_out:
                record.error = f"Timeout: interrupted after {limit:g} s"
            run.cells.append(record)
            if timed_out and not _responds(client, nb):
                run.notes.append(
                    f"cell {index} did not stop even when interrupted; "
                    "the rest of the notebook was not run"
                )
                return
        collector = COLLECTOR.replace("__REQUESTED__", repr(list(names)))
        collector = collector.replace("__PATH__", repr(str(dump)))
        client.timeout = 60
        probe = _run_extra(client, nb, collector)
        if dump.exists():
            run.collected = json.loads(dump.read_text(encoding="utf-8"))
        else:
            why = _cell_error(probe) or "it did not finish in 60 s"
            run.notes.append(f"collecting the functions failed: {why}")


def _shutdown(km):
    """Stop the kernel at once, even if it is stuck in a loop that ignores interrupts."""
    import contextlib

    from jupyter_core.utils import run_sync

    with contextlib.suppress(Exception):
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)


def _this_interpreter(folder):
    """A kernel manager for a "python3" kernel that runs this very interpreter.

    The kernelspec is written to ``folder`` and is the only one the manager sees, so a
    "python3" kernelspec elsewhere (a user's, pointing at a Python without minattn)
    cannot be picked instead.
    """
    import sys

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    spec = Path(folder) / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "Python 3 (minattn grade)", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    # asynchronous, as nbclient's own: it interrupts a cell from inside its event loop
    return AsyncKernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(folder)])
    )


def _responds(client, nb, wait=10):
    """After an interrupted cell: does the kernel run a trivial cell within ``wait`` s?"""
    old = client.timeout
    client.timeout = wait
    start = time.monotonic()
    try:
        probe = _run_extra(client, nb, "pass")
    except Exception:
        return False
    finally:
        client.timeout = old
    return time.monotonic() - start < 0.9 * wait and _cell_error(probe) is None


def _run_extra(client, nb, source):
    """Run ``source`` as an extra cell at the end of ``nb`` (removed again); return the cell."""
    import nbformat

    cell = nbformat.v4.new_code_cell(source)
    nb.cells.append(cell)
    try:
        client.execute_cell(cell, len(nb.cells) - 1)
    finally:
        nb.cells.pop()
    return cell


def _cell_error(cell):
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = str(output.get("evalue", "")).splitlines()
            return f"{output.get('ename', 'Error')}: {value[0] if value else ''}".rstrip(": ")
    return None


# ---------------------------------------------------------------- without a kernel


def static_collect(nb, names):
    """Collect the functions from the cell sources, when the kernel could not be used.

    The last top-level ``def`` of each name wins, as it would in a kernel run top to
    bottom; top-level ``import`` lines give the modules; simple constants their values.
    Cells that do not parse are skipped.
    """
    defs, bindings = {}, {}
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code" or is_test_cell(cell):
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        source = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
        )  # IPython magics and shell lines are not Python
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defs[node.name] = ast.get_source_segment(source, node, padded=False)
                if node.decorator_list:
                    first = node.decorator_list[0]
                    lines = source.splitlines()[first.lineno - 1 : node.end_lineno]
                    defs[node.name] = "\n".join(lines)
                bindings.pop(node.name, None)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    module = alias.name if alias.asname else alias.name.split(".")[0]
                    bindings[bound] = {"kind": "module", "module": module}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    bindings[alias.asname or alias.name] = {
                        "kind": "from",
                        "module": node.module,
                        "attr": alias.name,
                    }
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        value = ast.literal_eval(node.value)
                        bindings[target.id] = {"kind": "value", "repr": repr(value)}
                    except (ValueError, SyntaxError, TypeError):
                        bindings.pop(target.id, None)
    found, todo = {}, list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        if name in defs:
            refs, imports = _source_names(defs[name])
            found[name] = {
                "kind": "def",
                "source": defs[name],
                "refs": sorted(r for r in refs if (r in defs or r in bindings) and r != name),
                "imports": sorted(imports),
            }
            todo += found[name]["refs"]
        elif name in bindings:
            found[name] = _resolve_binding(bindings[name])
        else:
            found[name] = {"kind": "missing"}
    return {"names": found, "requested": list(names)}


def _resolve_binding(binding):
    """A static ``from m import a`` binding, described like the collector does."""
    if binding["kind"] != "from":
        return binding
    module, attr = binding["module"], binding["attr"]
    if module.split(".")[0] == "minattn":
        return {"kind": "minattn", "what": f"{module}.{attr}"}
    return {"kind": "import", "module": module, "qualname": attr}


def _source_names(source):
    """Names a function's source reads (a superset of its globals), and what it imports."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set()
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    imports = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module)
    return names, imports
