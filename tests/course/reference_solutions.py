"""The notebooks' own solutions as plain functions, for in-process grading; and slips
planted into them (one returned entry off by a relative size).

Each exercise notebook's solution cells (the cells whose nbgrader grade_id is an exercise)
are run in a namespace of their own, with NumPy as ``np``, as the notebook runs them.
"""

import functools
import json
from pathlib import Path

import numpy as np

from minattn.course.grading import EXERCISES, for_notebook, hidden_chain, hidden_family, notebooks

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@functools.cache
def namespace(stem):
    """{name: value} after running the solution cells of notebook ``stem``."""
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text())
    ns = {"np": np}
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if cell["cell_type"] == "code" and grade_id in EXERCISES:
            exec("".join(cell["source"]), ns)
    return ns


def functions(exercise_id):
    """{function name: the notebook's solution} for one exercise."""
    exercise = EXERCISES[exercise_id]
    ns = namespace(exercise.notebook)
    return {name: ns[name] for name in exercise.functions}


def all_exercises():
    return [e.id for stem in notebooks() for e in for_notebook(stem)]


def slippable():
    """The exercises whose answers are numbers (not notebook 4's sets of rows)."""
    return [e for e in all_exercises() if not e.startswith(("predict_", "vacuous_"))]


def slipped(fn, position, size):
    """``fn`` with one returned entry, the largest in size, off by a relative ``size``.

    position: which returned value (an index into a tuple, or a key of a dict).
    """

    def bump(value):
        if isinstance(value, float | int) and not isinstance(value, bool):
            return value * (1 + size)
        a = np.array(value, copy=True)
        i = np.unravel_index(int(np.argmax(np.abs(a))), a.shape)
        a[i] = a[i] * (1 + size)
        return a

    def wrapper(*args):
        result = fn(*args)
        if isinstance(result, dict | tuple):
            keys = result.keys() if isinstance(result, dict) else range(len(result))
            values = {k: result[k] for k in keys}
            if values[position] is not None:  # (dgamma without gamma stays None)
                values[position] = bump(values[position])
            return values if isinstance(result, dict) else tuple(values.values())
        return bump(result)

    return wrapper


def outputs(exercise_id):
    """Every (function, position) of an exercise's returned numbers: where a slip can go."""
    if exercise_id == "bam_backward":
        return [("bam_backward", name) for name, _ in hidden_chain.GRADIENTS if name != "dbk"]
    if exercise_id == "channel_attention_backward":
        return [("channel_attention_backward", name) for name, _ in hidden_family.GRADIENTS]
    if exercise_id == "scale_bug_factor":
        return [("scale_bug_factor", 0), ("scale_bug_factor_explained", 0)]
    counts = {"residual_backward": 3, "weighted_sum_backward": 2, "energy_backward": 2,
              "conv1x1_backward": 3, "online_attention_forward": 2}  # fmt: skip
    fn = EXERCISES[exercise_id].functions[0]
    return [(fn, p) for p in range(counts.get(exercise_id, 1))]
