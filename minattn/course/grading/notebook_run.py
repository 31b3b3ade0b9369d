"""The notebook run: a student's notebook executed top to bottom, in the sandbox.

The grader starts ``python -m minattn.course.grading.notebook_run NOTEBOOK REPORT ...``
inside the notebook sandbox (`sandbox.Sandbox.notebook`): nbclient and its kernel both run
there, talking over the sandbox's own loopback, with a temporary HOME and working folder,
resource limits and no write access to anything else. Cells run one at a time with a
time limit each (an interrupted cell records the error and the next one runs) and one
for the whole notebook. Check cells are not run: the grader runs the hidden tests itself.

What this process reports (which cells raised, how long they took) is untrusted: the
student's kernel could have written it. It becomes notes in the feedback, never a score,
and the grader kills the whole sandbox when the notebook's time is up.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .collect import is_test_cell

MAX_REPORT = 1 << 20


@dataclass
class CellRun:
    index: int
    error: str | None = None  # "NameError: name 'x' is not defined", or a timeout
    seconds: float = 0.0


@dataclass
class Execution:
    """What running the notebook gave (as reported from inside the sandbox): notes only."""

    cells: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0

    def errors(self):
        return [c for c in self.cells if c.error]

    def error_of(self, index):
        return next((c.error for c in self.cells if c.index == index), None)


# ---------------------------------------------------------------- the grader's side


class Run:
    """A notebook run in progress; `finish` waits for it (up to its deadline) and reads it."""

    def __init__(self, path, sandbox, *, cell_timeout, total_timeout):
        import tempfile

        from .sandbox import environment

        self.start = time.monotonic()
        self.deadline = self.start + total_timeout + 15  # the kernel's start and stop
        self.total_timeout = total_timeout
        self.work = Path(tempfile.mkdtemp(prefix="minattn-notebook-"))
        self.work.chmod(0o755)  # read-only for the sandbox: it writes nothing here
        notebook = self.work / "submission.ipynb"
        notebook.write_bytes(Path(path).read_bytes())
        notebook.chmod(0o644)
        self.report = open(self.work / "report.json", "w+b")  # noqa: SIM115 -- closed in finish
        program = "minattn.course.grading.notebook_run"
        argv = [sys.executable, "-m", program, str(notebook), str(cell_timeout), str(total_timeout)]
        self.proc = subprocess.Popen(
            sandbox.notebook(argv, self.work),
            cwd=self.work,
            env=environment("/tmp"),
            stdin=subprocess.DEVNULL,
            stdout=self.report,  # the one thing the run writes outside its sandbox
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def finish(self):
        """The `Execution`, with a note if the run had to be stopped or said nothing usable."""
        import shutil

        run = Execution()
        try:
            self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            run.notes.append(
                f"the notebook did not finish within its time limit ({self.total_timeout:g} s) "
                "and was stopped"
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()
        try:
            self.report.seek(0)
            run.cells, notes = read_report(self.report.read(MAX_REPORT + 1))
            run.notes += notes
        except ValueError as e:
            run.notes.append(f"the notebook run reported nothing usable ({e})")
        self.report.close()
        shutil.rmtree(self.work, ignore_errors=True)
        run.seconds = time.monotonic() - self.start
        return run


def read_report(data):
    """(cells, notes) from the run's report (bytes), parsed strictly; ValueError if malformed."""
    if not data:
        raise ValueError("no report")
    if len(data) > MAX_REPORT:
        raise ValueError("a report too large")
    try:
        doc = json.loads(data.decode("utf-8").strip().splitlines()[-1])
        cells = [
            CellRun(int(i), None if e is None else str(e)[:300], float(s))
            for i, e, s in doc["cells"]
        ]
        notes = [str(n)[:300] for n in doc["notes"]][:20]
    except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"a malformed report: {type(e).__name__}") from None
    return cells, notes


# ---------------------------------------------------------------- inside the sandbox


def main(argv=None):
    """Run the notebook; print the report, one JSON line, on the original stdout."""
    notebook, cell_timeout, total_timeout = (argv or sys.argv[1:])[:3]
    import tempfile

    import nbformat

    report = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # anything else printed goes nowhere
    nb = nbformat.read(notebook, as_version=4)
    home = Path(tempfile.mkdtemp(prefix="minattn-run-"))  # the sandbox's own /tmp
    os.environ.update(HOME=str(home), MPLCONFIGDIR=str(home / ".matplotlib"),
                      NUMBA_CACHE_DIR=str(home / ".numba"))  # fmt: skip
    os.chdir(home)
    run = execute(nb, cell_timeout=float(cell_timeout), total_timeout=float(total_timeout))
    doc = {"cells": [[c.index, c.error, c.seconds] for c in run.cells], "notes": run.notes}
    report.write(json.dumps(doc) + "\n")
    report.close()
    return 0


def execute(nb, *, cell_timeout, total_timeout):
    """Run ``nb`` cell by cell in a fresh kernel of this interpreter; an `Execution`."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    run = Execution()
    km = _this_interpreter(Path.cwd() / "kernels")
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
        resources={"metadata": {"path": str(Path.cwd())}},
    )
    try:
        _run_cells(client, nb, run, time.monotonic() + total_timeout, cell_timeout)
    except DeadKernelError:
        done = run.cells[-1].index if run.cells else 0
        run.notes.append(f"the kernel died (at or after cell {done}); later cells were not run")
    except Exception as e:  # a kernel that cannot start, a broken notebook...
        run.notes.append(f"running the notebook failed: {type(e).__name__}: {e}")
    finally:
        _shutdown(km)
    return run


def _run_cells(client, nb, run, deadline, cell_timeout):
    with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip() or is_test_cell(cell):
                continue
            if time.monotonic() > deadline:
                run.notes.append(
                    f"the notebook's time limit ran out before cell {index}; "
                    "the cells after it were not run"
                )
                return
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


def _shutdown(km):
    """Stop the kernel at once, even if it is stuck in a loop that ignores interrupts."""
    from jupyter_core.utils import run_sync

    with contextlib.suppress(Exception):
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)


def _this_interpreter(folder):
    """A kernel manager for a "python3" kernel that runs this very interpreter (the only
    kernelspec it sees, so no "python3" elsewhere can be picked instead)."""
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
    import nbformat

    old = client.timeout
    client.timeout = wait
    start = time.monotonic()
    cell = nbformat.v4.new_code_cell("pass")
    nb.cells.append(cell)
    try:
        client.execute_cell(cell, len(nb.cells) - 1)
    except Exception:
        return False
    finally:
        nb.cells.pop()
        client.timeout = old
    return time.monotonic() - start < 0.9 * wait and _cell_error(cell) is None


def _cell_error(cell):
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = str(output.get("evalue", "")).splitlines()
            return f"{output.get('ename', 'Error')}: {value[0] if value else ''}".rstrip(": ")
    return None


if __name__ == "__main__":
    sys.exit(main())
