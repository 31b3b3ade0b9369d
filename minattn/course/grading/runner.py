"""``minattn grade``: one notebook, graded by hidden tests that run in the grader alone.

    notebook run      the student's notebook, top to bottom, in a Jupyter kernel inside the
                      notebook sandbox (`notebook_run`): which cells raised becomes notes
    graded calls      the notebook's code cells, run again in an isolated process that
                      cannot import minattn (`isolated`, `child.py`); the hidden tests run
                      HERE, calling the student's functions through proxies, and compare
                      what comes back with values computed here
    report            a table, and with --json one JSON line last:
                      {"total": ..., "max": ..., "exercises": [{"id", "points", "max_points",
                      "feedback"}]}

Whatever the notebook does (syntax errors, exceptions, infinite loops, missing functions,
a dead kernel, forged output), the grade completes within its time limits; only a file
that is not a notebook of the course is an error. Many notebooks at once: `batch`.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from . import collect
from .catalog import Result, grade_exercise
from .isolated import Budget, Session
from .notebook_run import Execution, Run
from .registry import EXERCISES, for_notebook, notebooks
from .sandbox import Sandbox
from .tools import OutOfTime

# exercise_timeout None: each exercise's own time limit (Exercise.time_limit, in its notebook)
DEFAULTS = {"cell_timeout": 120.0, "total_timeout": 300.0, "exercise_timeout": None}


@dataclass
class Report:
    notebook: str  # the graded file
    assignment: str  # which exercise notebook it is, e.g. "03_backward_pass"
    results: list
    execution: Execution | None = None
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

    def run_notes(self, leave_out=()):
        """How the notebook ran (cells with errors) and the grader's notes, one line each;
        notes in ``leave_out`` left out."""
        lines = []
        if self.execution is not None:
            ran = f"ran in {self.execution.seconds:.1f} s"
            errors = self.execution.errors()
            if errors:
                shown = ", ".join(f"{c.index} ({c.error[:70]})" for c in errors[:6])
                more = f" and {len(errors) - 6} more" if len(errors) > 6 else ""
                ran += f"; cells with errors: {shown}{more}"
            lines.append(f"notebook {ran}")
            lines += [f"note: {n}" for n in self.execution.notes]
        return lines + [f"note: {n}" for n in self.notes if n not in leave_out]

    def table(self):
        lines = [f"minattn grade: {self.notebook} (exercises of {self.assignment})"]
        lines += self.run_notes()
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


def load(path):
    """(notebook, its assignment stem) of the file at ``path``; ValueError if it is neither."""
    import nbformat

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
    return nb, assignment


def grade(path, *, seed=0, sandbox=None, run=True, **limits):
    """Grade the notebook at ``path``; returns a `Report`. Raises ValueError if it is not one.

    sandbox: where student code runs (default: `Sandbox.here()`). run: also execute the
    notebook in a kernel (for notes on its cells; the grade does not depend on it).
    limits: cell_timeout, total_timeout, exercise_timeout (seconds; see DEFAULTS).
    """
    limits = {**DEFAULTS, **{k: v for k, v in limits.items() if v is not None}}
    start = time.monotonic()
    nb, assignment = load(path)
    sandbox = sandbox or Sandbox.here()
    exercises = for_notebook(assignment)
    submission = collect.read(nb)
    notebook = None
    if run:
        notebook = Run(path, sandbox, cell_timeout=limits["cell_timeout"],
                       total_timeout=limits["total_timeout"])  # fmt: skip
    try:
        results, session = grade_submission(exercises, submission, sandbox, seed=seed,
                                            **limits)  # fmt: skip
    finally:
        execution = notebook.finish() if notebook else None
    _explain_missing(results, exercises, nb, submission, session)
    notes = [n for n in (sandbox.weaker, session.problem) if n]
    report = Report(str(path), assignment, results, execution, notes=notes)
    report.seconds = time.monotonic() - start
    return report


def grade_submission(exercises, submission, sandbox, *, seed=0, exercise_timeout=None,
                     cell_timeout=120.0, total_timeout=300.0):  # fmt: skip
    """Run the hidden tests of ``exercises`` on the functions of ``submission`` (a
    `collect.Submission`), each in the isolated process; ([Result, ...], the `Session`).

    Each exercise may spend its ``time_limit`` (or ``exercise_timeout`` seconds, if given)
    inside the student's functions; an exercise that runs out gets 0 and the next one a
    fresh process.
    """
    names = [fn for e in exercises for fn in e.functions]
    session = Session(sandbox, submission.program(), names,
                      package_names=submission.package_names, setup_timeout=total_timeout,
                      statement_timeout=cell_timeout)  # fmt: skip
    results = []
    try:
        for exercise in exercises:
            limit = exercise_timeout or exercise.time_limit
            functions = session.functions(exercise, Budget(limit))
            try:
                results.append(grade_exercise(exercise, functions, seed=seed))
            except OutOfTime:
                why = f"timed out: your functions ran longer than {limit:g} s"
                results.append(_zero(exercise.id, why + " (an infinite loop?)"))
    finally:
        session.close()
    _explain_dependencies(results, exercises, submission)
    return results, session


def _explain_dependencies(results, exercises, submission):
    owner = {fn: e.id for e in exercises for fn in e.functions}
    failed = {r.id for r in results if r.points < r.max_points}
    for result, exercise in zip(results, exercises, strict=True):
        if result.id not in failed or result.flagged:
            continue
        calls = sorted(
            fn
            for fn in submission.closure(exercise.functions) - set(exercise.functions)
            if owner.get(fn) in failed and owner[fn] != exercise.id
        )
        if calls:
            which = ", ".join(f"{fn} (exercise {owner[fn]})" for fn in calls)
            result.feedback += f"; note: it calls your {which}, which fails its own tests"


def _explain_missing(results, exercises, nb, submission, session):
    failed = session.ready.failed if session.ready else []
    for result, exercise in zip(results, exercises, strict=True):
        if "after running the notebook" not in result.feedback:
            continue
        index = solution_cell(nb, exercise)
        if index is None:
            result.feedback += " (its cell is gone from the notebook)"
            continue
        error = submission.error_of(index) or next(
            (e for cell, _, e in failed if cell == index), None
        )
        if error:
            result.feedback += f": its cell {index} raised {error}"


def _zero(exercise_id, feedback):
    exercise = EXERCISES[exercise_id]
    return Result(
        exercise_id, 0.0, exercise.points, feedback, parts={p.name: None for p in exercise.parts}
    )
