"""The exercises of the course and how each is scored.

An `Exercise` is one graded task: the function(s) a student writes in one notebook,
its points, and its hidden tests, split into `Part`s for partial credit. The first part
is always "values" (the numbers are right, in float64, on random shapes); the other
parts (float32, read-only and non-contiguous inputs...) only count once the values
are right, so a 0.1% error anywhere costs the whole exercise.

The hidden tests live in the ``hidden_*`` files of this package, never in a notebook.
``EXERCISES`` maps each exercise id (the nbgrader ``grade_id`` of its solution cell,
and the name of the function the student writes) to its `Exercise`, in course order.
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .tools import Fail, UsedPackage, guard


@dataclass(frozen=True)
class Part:
    """One scored piece of an exercise: ``test(functions, rng)`` raises `Fail` or returns."""

    name: str
    share: float  # fraction of the exercise's points
    test: Callable


def standard_parts(values, run):
    """The three parts most exercises share: the values in float64 (70% of the points),
    float32 (15%) and read-only, non-contiguous inputs (15%).

    values(functions, rng) checks the float64 values and returns a note; run(functions, rng,
    dtype, robust=False) runs the hidden cases and raises `Fail`.
    """

    def float32(functions, rng):
        run(functions, rng, np.float32)

    def robust(functions, rng):
        run(functions, rng, np.float64, robust=True)

    return (
        Part("values", 0.7, values),
        Part("float32", 0.15, float32),
        Part("robust inputs", 0.15, robust),
    )


@dataclass(frozen=True)
class Exercise:
    id: str
    notebook: str  # file stem, e.g. "03_backward_pass"
    functions: tuple  # names of the functions the student writes, in check() order
    points: float
    parts: tuple
    summary: str  # what to write, in a few words (the teachers' page lists these)
    replaces: tuple = ()  # the package functions it re-implements (calling them is flagged)
    context: Callable | None = None  # context(functions) -> "in BAM, the first wrong ..."
    expected_error: str = ""  # what the check cell says a correct solution gets


@dataclass
class Result:
    id: str
    points: float
    max_points: float
    feedback: str
    flagged: bool = False
    parts: dict = field(default_factory=dict)  # part name -> True/False/None (not run)
    table: str | None = None  # a longer report for the notebook's check cell (not graded)

    def as_json(self):
        return {
            "id": self.id,
            "points": round(float(self.points), 4),
            "max_points": float(self.max_points),
            "feedback": self.feedback,
        }


def seed_for(exercise_id, seed, part):
    """The random stream of one part of one exercise: the same for every student and run."""
    return np.random.default_rng([seed, zlib.crc32(exercise_id.encode()), part])


def grade_exercise(exercise, functions, *, seed=0):
    """Run the hidden tests of ``exercise`` on ``functions`` ({name: callable or None}).

    Returns a `Result`. Never raises for anything the student's code does (exceptions
    become feedback); a timeout is the caller's business (the grader runs this in a
    worker process it can kill).
    """
    missing = [n for n in exercise.functions if not callable(functions.get(n))]
    if missing:
        return Result(
            exercise.id,
            0.0,
            exercise.points,
            f"{missing[0]} is not defined as a function after running the notebook",
            parts={p.name: None for p in exercise.parts},
        )
    guarded = {n: guard(functions[n], exercise.replaces) for n in exercise.functions}
    points, detail, failures, parts = 0.0, None, [], {}
    for index, part in enumerate(exercise.parts):
        try:
            result = part.test(guarded, seed_for(exercise.id, seed, index))
        except UsedPackage as e:
            return Result(
                exercise.id,
                0.0,
                exercise.points,
                f"flagged: your code calls the package's own {e} instead of computing it; "
                "write it yourself with NumPy",
                flagged=True,
                parts={p.name: False for p in exercise.parts},
            )
        except Fail as e:
            parts[part.name] = False
            if index == 0:  # wrong values: nothing else counts
                message = str(e)
                if exercise.context is not None:
                    message = _with_context(message, exercise, guarded)
                parts.update({later.name: None for later in exercise.parts[1:]})
                table = getattr(e, "table", None)
                return Result(exercise.id, 0.0, exercise.points, message, parts=parts, table=table)
            failures.append((part.name, str(e)))
            continue
        parts[part.name] = True
        points += part.share * exercise.points
        if index == 0:
            detail = result
    if not failures:
        feedback = "ok: every hidden test passes" + (f" ({detail})" if detail else "")
    else:
        name, message = failures[0]
        feedback = f"values right, but the {name} part fails: {message}"
        if len(failures) > 1:
            feedback += f" (and the {', '.join(n for n, _ in failures[1:])} part)"
    return Result(exercise.id, round(points, 6), exercise.points, feedback, parts=parts)


def _with_context(message, exercise, guarded):
    """The failing test's line, led by the first wrong intermediate inside the module."""
    try:
        where = exercise.context(guarded)
    except (Fail, UsedPackage):
        where = None
    except Exception:  # the context is a courtesy; it must never cost the student anything
        where = None
    if not where:
        return message
    return f"{where}; on its own: {message}"
