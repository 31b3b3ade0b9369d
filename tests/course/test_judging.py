"""How a returned array is judged (`minattn.course.grading.accuracy`): against the truth in
extended precision, within what rounding allows; and what the notebooks say about it.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from minattn.course.grading import EXERCISES, for_notebook, notebooks
from minattn.course.grading.accuracy import (
    EXACT,
    U_REF,
    absolute,
    allowance,
    exact,
    expect_close,
    expect_close_in_norm,
    rounds,
    unit_roundoff,
)
from minattn.course.grading.tools import Fail

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_unit_roundoff_and_the_truths_precision():
    assert unit_roundoff(np.float64) == 2.0**-53
    assert unit_roundoff(np.float32) == 2.0**-24
    assert U_REF <= unit_roundoff(np.float64)  # never coarser than what it judges
    if np.finfo(np.longdouble).nmant >= 63:  # x87 extended precision (x86-64 Linux)
        assert U_REF == 2.0**-64
    assert rounds(0) == 8 and rounds(10) == 28


def test_exact_and_absolute_keep_the_structure():
    cache = (np.array([1.5, -2.0], dtype=np.float32), 3, "bilinear", None, (2, 4))
    up = exact(cache)
    assert up[0].dtype == EXACT and up[1:] == cache[1:]
    assert absolute({"a": np.array([-1.0]), "s": -0.5, "ds": 2})["s"] == 0.5
    assert absolute((np.array([-1.0]),))[0][0] == 1.0
    assert exact(np.arange(3)).dtype == np.arange(3).dtype  # integers stay integers


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_correct_sum_passes_and_a_slip_fails(dtype):
    a, b = np.random.default_rng(1).standard_normal((2, 5, 7)).astype(dtype)
    truth = np.einsum("ij,ij->i", a.astype(EXACT), b.astype(EXACT))
    budget = rounds(7) * np.einsum("ij,ij->i", np.abs(a), np.abs(b)).astype(np.float64)
    forward = np.einsum("ij,ij->i", a, b)
    backward = (a[:, ::-1] * b[:, ::-1]).sum(axis=1)  # another order of summation
    for got in (forward, backward):
        assert 0 <= expect_close(got, truth, budget, name="y", dtype=dtype) <= 1
    slipped = forward.copy()
    slipped[np.argmax(np.abs(slipped))] *= 1 + 1e-4
    with pytest.raises(Fail, match=r"y at index \(\d\): yours .*, expected .*, off by .* where"):
        expect_close(slipped, truth, budget, name="y", dtype=dtype, where=" (case)")


def test_the_budget_is_the_terms_size_not_the_results():
    # 1e17 + 1 - 1e17: a correct float64 sum loses the 1 entirely; its terms are 1e17 in size
    assert 1e17 + 1.0 - 1e17 == 0.0
    truth = np.array([1.0], dtype=EXACT)
    budget = rounds(3) * np.array([2e17 + 1])
    expect_close(np.array([0.0]), truth, budget, name="y", dtype=np.float64)
    with pytest.raises(Fail):  # but not when the terms are small
        expect_close(
            np.array([0.0]), truth, rounds(3) * np.array([1.0]), name="y", dtype=np.float64
        )


def test_underflow_is_not_an_error_and_nan_always_is():
    truth = np.array([np.exp(EXACT(-800)), 1.0], dtype=EXACT)  # exp(-800) underflows in float64
    budget = np.array([0.0, 10.0])
    expect_close(np.array([0.0, 1.0]), truth, budget, name="A", dtype=np.float64)
    assert allowance([0.0], np.float32)[0] > allowance([0.0], np.float64)[0] > 0
    with pytest.raises(Fail, match="yours \\+nan"):
        expect_close(np.array([0.0, np.nan]), truth, budget, name="A", dtype=np.float64)
    with pytest.raises(Fail, match="nan"):
        expect_close_in_norm(np.array([np.nan, 1.0]), truth, budget, name="A", dtype=np.float64)


def test_what_is_not_an_array_of_the_right_shape_and_dtype_fails_with_one_line():
    truth = np.zeros((2, 3), dtype=EXACT)
    cases = [
        (None, "yours is None"),
        ([[0.0] * 3] * 2, "yours is a list, expected a NumPy array"),
        (np.zeros((3, 2)), r"yours has shape \(3, 2\), expected \(2, 3\)"),
        (np.zeros((2, 3), dtype=np.float32), "yours has dtype float32, expected float64"),
    ]
    for got, message in cases:
        with pytest.raises(Fail, match=message):
            expect_close(got, truth, 1.0, name="out", dtype=np.float64)
    with pytest.raises(Fail, match="yours has dtype complex128, expected numbers"):
        expect_close(
            truth.astype(complex), truth, 1.0, name="out", dtype=np.float64, check_dtype=False
        )


def test_the_norm_comparison_allows_rounding_spread_over_entries():
    truth = np.ones(4, dtype=EXACT)
    budget = np.full(4, 10.0)
    u = unit_roundoff(np.float64)
    spread = np.ones(4) + np.array([9, -9, 9, -9]) * u  # each entry within, the norm within
    assert expect_close_in_norm(spread, truth, budget, name="g", dtype=np.float64) < 1
    with pytest.raises(Fail, match="off by .* in norm where rounding allows"):
        expect_close_in_norm(np.ones(4) * (1 + 1e-9), truth, budget, name="g", dtype=np.float64)


# ---------------------------------------------------------------- what the notebooks say


def task_cells():
    """(exercise, the markdown cell before its solution cell) for every exercise."""
    for stem in notebooks():
        cells = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
            if cell["cell_type"] == "code" and grade_id in EXERCISES:
                task = next(c for c in reversed(cells[:i]) if c["cell_type"] == "markdown")
                yield EXERCISES[grade_id], "".join(task["source"])


def test_every_exercise_states_its_time_limit_next_to_it():
    seen = set()
    for exercise, text in task_cells():
        assert f"Time limit: {exercise.time_limit:g} s" in text, exercise.id
        assert f"时间限制：{exercise.time_limit:g} 秒" in text, exercise.id
        seen.add(exercise.id)
    assert seen == set(EXERCISES)


@pytest.mark.parametrize("stem", notebooks())
def test_no_notebook_states_the_old_fixed_tolerance(stem):
    text = (NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8")
    assert "10^{-6}$ relative fails" not in text
    assert "相对误差超过 $10^{-6}$" not in text
    for exercise in for_notebook(stem):
        assert exercise.time_limit > 0
