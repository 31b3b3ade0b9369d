"""How small a mistake the graded exercises still catch: the smallest slip that loses points.

A slip is one returned entry, the largest in size, off by a relative ``r``: the notebooks'
own solution with that one entry multiplied by (1 + r). For every exercise and every array
(or dict entry) it returns, the smallest r that still costs the exercise its points is found
by bisection on log10(r) between 1e-16 and 1e-2, at each of a few seeds; the table gives,
per exercise, the largest of these over the outputs and seeds (a slip at least that large
anywhere loses the points) and the output where it is reached.

    .venv/bin/python benchmarks/grading_slips.py [--seeds 3] [--exercise ID ...]

A slip below the threshold is within what rounding allows (the grader's error budget); a
slip above it is at least that many orders of magnitude from any correct formula.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "course"))

import reference_solutions  # noqa: E402

from minattn.course.grading import EXERCISES  # noqa: E402
from minattn.course.grading.catalog import grade_exercise  # noqa: E402


def loses_points(exercise_id, fn, position, size, seed):
    functions = reference_solutions.functions(exercise_id)
    functions[fn] = reference_solutions.slipped(functions[fn], position, size)
    result = grade_exercise(EXERCISES[exercise_id], functions, seed=seed)
    return result.points < result.max_points


def smallest_slip(exercise_id, fn, position, seed, steps=20):
    """The smallest relative slip (to about 5%) that loses points, by bisection in log10."""
    lo, hi = -16.0, -2.0
    if not loses_points(exercise_id, fn, position, 10**hi, seed):
        return float("inf")
    if loses_points(exercise_id, fn, position, 10**lo, seed):
        return 10**lo
    for _ in range(steps):
        mid = (lo + hi) / 2
        if loses_points(exercise_id, fn, position, 10**mid, seed):
            hi = mid
        else:
            lo = mid
        if hi - lo < 0.02:
            break
    return 10**hi


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3, help="seeds per output (default 3)")
    p.add_argument("--exercise", nargs="*", default=None, help="exercise ids (default: all)")
    args = p.parse_args(argv)
    ids = args.exercise or reference_solutions.slippable()
    print(f"{'exercise':28s} {'caught from':>12s} {'best output':>12s}  weakest output")
    for exercise_id in ids:
        found = []
        for fn, position in reference_solutions.outputs(exercise_id):
            worst = max(
                smallest_slip(exercise_id, fn, position, seed) for seed in range(args.seeds)
            )
            found.append((worst, f"{fn}[{position!r}]"))
        worst, where = max(found)
        best = min(size for size, _ in found)
        print(f"{exercise_id:28s} {worst:12.1e} {best:12.1e}  {where}", flush=True)


if __name__ == "__main__":
    main()
