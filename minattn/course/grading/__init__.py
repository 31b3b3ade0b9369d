"""Grading the course's exercises: hidden tests, ``check`` for notebooks, ``minattn grade``.

In a notebook, a check cell runs the hidden tests of one exercise on the student's
function and prints the verdict::

    from minattn.course.grading import check
    check("softmax_backward", softmax_backward)

For a course, ``minattn grade NOTEBOOK.ipynb [--json]`` runs a student's whole notebook in
a fresh kernel and grades every exercise of it (see `minattn.course.grading.runner`). The
tests themselves live in the ``hidden_*`` files of this package, never in a notebook.
"""

from .catalog import Exercise, Result, grade_exercise
from .registry import EXERCISES, for_notebook, notebooks

__all__ = ["EXERCISES", "Exercise", "Result", "check", "for_notebook", "grade", "notebooks"]


def check(exercise_id, *functions, seed=0):
    """Run the hidden tests of one exercise on your function(s); print the verdict.

    exercise_id: the exercise's name, e.g. "softmax_backward". functions: the function(s)
    it asks for, in the order the exercise names them. Raises AssertionError, with one
    line saying what is wrong where, unless every test passes.
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
    result = grade_exercise(
        exercise, dict(zip(exercise.functions, functions, strict=True)), seed=seed
    )
    score = f"{result.points:g}/{result.max_points:g} points"
    if result.table:
        print(result.table)
    if result.points < result.max_points:
        raise AssertionError(f"{exercise_id}: {score}: {result.feedback}")
    print(f"{exercise_id}: {score}: {result.feedback}")
    if exercise.expected_error:
        print(f"  a correct solution's error {exercise.expected_error}")


def grade(path, **options):
    """Grade a notebook file; returns a `runner.Report` (see ``minattn grade``)."""
    from .runner import grade as _grade

    return _grade(path, **options)
