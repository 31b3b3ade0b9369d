"""Grading the course's exercises: hidden tests, ``check`` for notebooks, ``minattn grade``.

In a notebook, a check cell runs the hidden tests of one exercise on the student's
function and prints the verdict::

    from minattn.course.grading import check
    check("softmax_backward", softmax_backward)

For a course, ``minattn grade PATH... [--jobs N] [--csv FILE] [--json]`` grades notebooks:
each runs in a sandboxed kernel, and its functions are called by the hidden tests through
proxies, in an isolated process that cannot import minattn (`runner`, `batch`). The tests
themselves live in the ``hidden_*`` files of this package, never in a notebook.
"""

import warnings

from . import chinese
from .catalog import Exercise, Result, grade_exercise
from .registry import EXERCISES, for_notebook, notebooks

__all__ = ["EXERCISES", "Exercise", "Result", "check", "for_notebook", "grade", "notebooks"]


def check(exercise_id, *functions, seed=0):
    """Run the hidden tests of one exercise on your function(s); print the verdict.

    exercise_id: the exercise's name, e.g. "softmax_backward". functions: the function(s)
    it asks for, in the order the exercise names them. Raises AssertionError, with one
    line saying what is wrong where, when the exercise earns no points; otherwise prints
    the verdict and returns the points. As a check cell's last value, that number is what
    nbgrader's autograder reads as the cell's partial credit, so nbgrader and ``minattn
    grade`` give the same score. Every English line is followed by the same in Chinese
    (`chinese`), for the bilingual notebooks; the English is what ``minattn grade`` reports.
    """
    if exercise_id not in EXERCISES:
        raise ValueError(
            f"exercise_id must be one of minattn's exercises, got {exercise_id!r}; "
            f"they are: {', '.join(EXERCISES)}"
        )
    exercise = EXERCISES[exercise_id]
    if len(functions) != len(exercise.functions):
        raise TypeError(
            f"check({exercise_id!r}, ...) needs {len(exercise.functions)} function(s), "
            f"{', '.join(exercise.functions)}; got {len(functions)}"
        )
    with warnings.catch_warnings():  # a warning on stderr would cost the cell in nbgrader
        warnings.simplefilter("ignore")
        result = grade_exercise(
            exercise, dict(zip(exercise.functions, functions, strict=True)), seed=seed
        )
    score = f"{result.points:g}/{result.max_points:g} points"
    verdict = chinese.verdict(exercise, result.points, result.max_points, result.feedback)
    if result.table:
        print(result.table)
        print(chinese.TABLE_LEGEND)
    if result.points == 0:
        raise AssertionError(f"{exercise_id}: {score}: {result.feedback}\n{verdict}")
    print(f"{exercise_id}: {score}: {result.feedback}")
    print(verdict)
    if exercise.expected_error and result.points == result.max_points:
        print(f"  a correct solution's error {exercise.expected_error}")
        print(chinese.expected_error(exercise))
    return round(float(result.points), 4)


def grade(path, **options):
    """Grade a notebook file; returns a `runner.Report` (see ``minattn grade``)."""
    from .runner import grade as _grade

    return _grade(path, **options)
