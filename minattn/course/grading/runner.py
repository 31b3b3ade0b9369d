"""``minattn grade NOTEBOOK.ipynb [--json]``: execute, collect, run the hidden tests, report.

    1. run the notebook in a fresh kernel, cell by cell, with time limits (`collect.execute`)
    2. collect each exercise's functions and what they need (`collect.COLLECTOR`)
    3. grade every exercise in a worker process (`worker`), killed and restarted when an
       exercise runs out of time, so an infinite loop costs that exercise only
    4. print a table, and with --json one JSON line last:
       {"total": ..., "max": ..., "exercises": [{"id", "points", "max_points", "feedback"}]}

Whatever the notebook does (syntax errors, exceptions, infinite loops, missing functions,
a dead kernel), the grade completes; only a file that is not a notebook is an error.
"""

import argparse
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import collect
from .catalog import Result
from .registry import EXERCISES, for_notebook, notebooks
from .worker import closure

DEFAULTS = {"cell_timeout": 120.0, "total_timeout": 1800.0, "exercise_timeout": 60.0}


@dataclass
class Report:
    notebook: str  # the graded file
    assignment: str  # which exercise notebook it is, e.g. "03_backward_pass"
    results: list
    execution: collect.Execution | None = None
    seconds: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def total(self):
        return round(float(sum(r.points for r in self.results)), 4)

    @property
    def max(self):
        return round(float(sum(r.max_points for r in self.results)), 4)

    def as_json(self):
        return {
            "total": self.total,
            "max": self.max,
            "exercises": [r.as_json() for r in self.results],
        }

    def table(self):
        lines = [f"minattn grade: {self.notebook} (exercises of {self.assignment})"]
        if self.execution is not None:
            ran = f"ran in {self.execution.seconds:.1f} s"
            errors = self.execution.errors()
            if errors:
                shown = ", ".join(f"{c.index} ({c.error[:70]})" for c in errors[:6])
                more = f" and {len(errors) - 6} more" if len(errors) > 6 else ""
                ran += f"; cells with errors: {shown}{more}"
            lines.append(f"notebook {ran}")
            lines += [f"note: {n}" for n in self.execution.notes]
        lines += [f"note: {n}" for n in self.notes]
        width = max([len("exercise")] + [len(r.id) for r in self.results])
        lines.append(f"{'exercise':{width}s}  {'points':>11s}  feedback")
        lines.append(f"{'-' * width}  {'-' * 11}  {'-' * 8}")
        for r in self.results:
            score = f"{_num(r.points)} / {_num(r.max_points)}"
            lines.append(f"{r.id:{width}s}  {score:>11s}  {r.feedback}")
        lines.append(f"{'total':{width}s}  {_num(self.total) + ' / ' + _num(self.max):>11s}")
        return "\n".join(lines)


def _num(x):
    return f"{x:.2f}".rstrip("0").rstrip(".") if x != int(x) else f"{int(x)}"


# ---------------------------------------------------------------- which notebook is it?


def assignment_of(nb, path):
    """The exercise notebook ``nb`` is a version of (its stem), or None."""
    known = set(notebooks())
    meta = nb.get("metadata", {}).get("minattn", {})
    for candidate in (meta.get("assignment"), Path(str(path)).stem):
        if candidate in known:
            return candidate
    counts = {}
    for cell in nb.get("cells", []):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in EXERCISES:
            stem = EXERCISES[grade_id].notebook
            counts[stem] = counts.get(stem, 0) + 1
    return max(counts, key=counts.get) if counts else None


def solution_cell(nb, exercise):
    """Index of the cell where the student writes ``exercise`` (by nbgrader id, or its def)."""
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == exercise.id:
            return index
    for index, cell in enumerate(nb.get("cells", [])):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if cell.get("cell_type") == "code" and f"def {exercise.functions[0]}(" in source:
            return index
    return None


# ---------------------------------------------------------------- the whole job


def grade(path, *, seed=0, **limits):
    """Grade the notebook at ``path``; returns a `Report`. Raises ValueError if it is not one."""
    import nbformat

    limits = {**DEFAULTS, **{k: v for k, v in limits.items() if v is not None}}
    start = time.monotonic()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such notebook: {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise ValueError(f"{path} is not a notebook ({type(e).__name__}: {e})") from None
    assignment = assignment_of(nb, path)
    if assignment is None:
        raise ValueError(
            f"{path} holds none of minattn's exercises (looked for the notebook metadata "
            f"'minattn.assignment', the file name, and nbgrader grade ids); exercise "
            f"notebooks: {', '.join(notebooks())}"
        )
    exercises = for_notebook(assignment)
    names = [fn for e in exercises for fn in e.functions]
    execution = collect.execute(
        nb,
        names,
        cwd=path.resolve().parent,
        cell_timeout=limits["cell_timeout"],
        total_timeout=limits["total_timeout"],
    )
    results = grade_collected(
        exercises, execution.collected, seed=seed, exercise_timeout=limits["exercise_timeout"]
    )
    _explain_missing(results, exercises, nb, execution)
    report = Report(str(path), assignment, results, execution)
    report.seconds = time.monotonic() - start
    return report


def grade_collected(exercises, collected, *, seed=0, exercise_timeout=60.0):
    """Run the hidden tests of ``exercises`` on ``collected`` functions; list of `Result`s.

    collected: {"names": {name: description}} as `collect` makes it. Each exercise runs
    in a worker process with ``exercise_timeout`` seconds; feedback then says which
    failing exercises call another exercise's function that fails too.
    """
    names = collected["names"]
    by_id = run_workers([e.id for e in exercises], names, seed, exercise_timeout)
    results = [by_id[e.id] for e in exercises]
    _explain_dependencies(results, exercises, names)
    return results


def _explain_dependencies(results, exercises, names):
    owner = {fn: e.id for e in exercises for fn in e.functions}
    failed = {r.id for r in results if r.points < r.max_points}
    for result, exercise in zip(results, exercises, strict=True):
        if result.id not in failed or result.flagged:
            continue
        calls = sorted(
            fn
            for fn in closure(exercise.functions, names) - set(exercise.functions)
            if owner.get(fn) in failed and owner[fn] != exercise.id
        )
        if calls:
            which = ", ".join(f"{fn} (exercise {owner[fn]})" for fn in calls)
            result.feedback += f"; note: it calls your {which}, which fails its own tests"


def _explain_missing(results, exercises, nb, execution):
    for result, exercise in zip(results, exercises, strict=True):
        if "is not defined after running" not in result.feedback:
            continue
        index = solution_cell(nb, exercise)
        if index is None:
            result.feedback += " (its cell is gone from the notebook)"
            continue
        error = execution.error_of(index)
        if error:
            result.feedback += f": its cell {index} raised {error}"
        elif all(c.index != index for c in execution.cells):
            result.feedback += f": its cell {index} was not run"


# ---------------------------------------------------------------- worker processes


def run_workers(exercise_ids, names, seed, exercise_timeout, *, startup_timeout=120.0):
    """Grade ``exercise_ids`` in worker processes; {id: Result}.

    An exercise that takes longer than ``exercise_timeout`` s (or crashes the worker)
    gets 0 points; the worker is killed and a new one grades the exercises after it.
    """
    remaining = list(exercise_ids)
    results = {}
    while remaining:
        before = len(remaining)
        job = {"exercises": remaining, "names": names, "seed": seed}
        _one_worker(job, remaining, results, exercise_timeout, startup_timeout)
        if len(remaining) == before:  # the worker failed before its first exercise
            for exercise_id in remaining:
                results[exercise_id] = _zero(exercise_id, "the grader's worker failed to start")
            break
    return results


def _one_worker(job, remaining, results, exercise_timeout, startup_timeout):
    with tempfile.TemporaryDirectory(prefix="minattn-worker-") as tmp:
        stderr = open(Path(tmp) / "stderr.txt", "w+b")  # noqa: SIM115 -- closed below
        env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "minattn.course.grading.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=tmp,
            env=env,
        )
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        buffer, current = b"", None
        deadline = time.monotonic() + startup_timeout
        try:
            while remaining:
                events = selector.select(max(0.0, deadline - time.monotonic()))
                if not events:
                    if current is not None:
                        results[current] = _zero(
                            current,
                            f"timed out: the hidden tests took longer than {exercise_timeout:g} s "
                            "(an infinite loop?)",
                        )
                        remaining.remove(current)
                    break
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:  # the worker exited
                    if current is not None:
                        results[current] = _zero(
                            current, "the grader's worker crashed while testing it"
                        )
                        remaining.remove(current)
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    message = json.loads(line)
                    if "start" in message:
                        current = message["start"]
                        deadline = time.monotonic() + exercise_timeout
                    else:
                        results[message["id"]] = Result(
                            message["id"],
                            message["points"],
                            message["max_points"],
                            message["feedback"],
                            flagged=message.get("flagged", False),
                            parts=message.get("parts", {}),
                        )
                        remaining.remove(message["id"])
                        current = None
                        deadline = time.monotonic() + exercise_timeout
        finally:
            selector.close()
            proc.kill()
            proc.wait()
            proc.stdout.close()
            stderr.close()


def _zero(exercise_id, feedback):
    exercise = EXERCISES[exercise_id]
    return Result(
        exercise_id, 0.0, exercise.points, feedback, parts={p.name: None for p in exercise.parts}
    )


# ---------------------------------------------------------------- command line


def build_parser():
    p = argparse.ArgumentParser(
        prog="minattn grade",
        description="Grade a student's exercise notebook: run it in a fresh kernel, then run "
        "the hidden tests of every exercise on the student's functions.",
    )
    p.add_argument("notebook", help="the student's .ipynb")
    p.add_argument(
        "--json",
        action="store_true",
        help='end with one JSON line: {"total", "max", "exercises": [...]}',
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the hidden tests (default 0)")
    p.add_argument(
        "--cell-timeout",
        type=float,
        default=DEFAULTS["cell_timeout"],
        metavar="S",
        help="interrupt a cell after S seconds (default %(default)g)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULTS["total_timeout"],
        metavar="S",
        help="stop running the notebook after S seconds in all (default %(default)g)",
    )
    p.add_argument(
        "--exercise-timeout",
        type=float,
        default=DEFAULTS["exercise_timeout"],
        metavar="S",
        help="an exercise whose hidden tests take longer gets 0 (default %(default)g)",
    )
    return p


def main(argv=None):
    """Entry point of ``minattn grade``; returns the exit status (0 when graded)."""
    args = build_parser().parse_args(argv)
    for name in ("cell_timeout", "timeout", "exercise_timeout"):
        if not getattr(args, name) > 0:
            print(f"minattn grade: error: --{name.replace('_', '-')} must be > 0", file=sys.stderr)
            return 2
    try:
        report = grade(
            args.notebook,
            seed=args.seed,
            cell_timeout=args.cell_timeout,
            total_timeout=args.timeout,
            exercise_timeout=args.exercise_timeout,
        )
    except (ValueError, OSError) as e:
        print(f"minattn grade: error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    if args.json:
        print(json.dumps(report.as_json()))
    return 0
