"""A correct solution always gets full marks; a wrong one always loses its points.

The corpus (`alternatives_steps`, `alternatives_more`, `alternatives_globals`) holds, for
every exercise, at least three correct solutions in styles unlike the notebooks' (einsum,
tensordot, loops, views, other stable formulas, notebook globals, decorators), each first
checked against the package's own functions in float64, then graded at several seeds; and
the wrong ones (notebook 4's bugs, notebook 7's slip, the classic mistakes), each losing its
points. A slip of one entry, the largest, by a relative 1e-3 (what the exercises caught
before) down to 1e-9, loses the points of every exercise. Grading here is in-process
(`grade_exercise` with plain callables), as a notebook's ``check()`` does; the results the
tests read are plain data, as the isolation helper's proxies return them.
"""

import alternatives_globals
import alternatives_more
import alternatives_steps
import numpy as np
import pytest
import reference_solutions

from minattn.course.grading import EXERCISES, hidden_chain, hidden_family, hidden_online
from minattn.course.grading.catalog import grade_exercise
from minattn.course.grading.hidden_steps import _CASES, REF
from minattn.course.grading.hidden_zoo import failing, report

CORRECT = {**alternatives_steps.CORRECT, **alternatives_more.CORRECT}
WRONG = {**alternatives_steps.WRONG, **alternatives_more.WRONG}
SEEDS = (0, 1, 2)


def as_functions(exercise_id, fn):
    fns = fn if isinstance(fn, tuple) else (fn,)
    return dict(zip(EXERCISES[exercise_id].functions, fns, strict=True))


def cases(table):
    return [(eid, label, fn) for eid, entries in table.items() for label, fn, *_ in entries]


# ---------------------------------------------------------------- the corpus itself


def test_every_exercise_has_three_honest_alternatives():
    assert set(CORRECT) == set(EXERCISES)
    for exercise_id, entries in CORRECT.items():
        assert len(entries) >= 3, exercise_id
    styles = {label for entries in CORRECT.values() for label, _ in entries}
    for style in ("einsum", "tensordot", "loop", "view", "logsumexp", "np.kron"):
        assert any(style in s for s in styles), style


def agree(got, want, what, scale=0.0):
    """Equal to float64 precision, relative to ``want`` (or to ``scale``, if larger: for a
    gradient that is zero by mathematics, the size of the chain it comes from)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(float(np.abs(want).max(initial=0)), scale, 1e-300)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * scale, err_msg=what)


def honest_step(exercise_id, fn):
    """The alternative against the package's function, float64, one random case per case."""
    rng = np.random.default_rng(7)
    step = exercise_id.rsplit("_", 1)[0]
    if exercise_id == "bilinear_matrix":
        for n_in, ds in ((3, 2), (1, 4), (5, 3)):
            agree(fn(n_in, ds), REF["bilinear_matrix"](n_in, ds), exercise_id)
        return
    for case in _CASES[step]:
        args, desc = case(rng, 2, np.float64, 1)
        if exercise_id.endswith("_forward"):
            agree(fn(*args)[0], REF[exercise_id](*args)[0], f"{exercise_id} {desc}")
            continue
        out, cache = REF[f"{step}_forward"](*args)
        dout = rng.standard_normal(out.shape)
        want = REF[exercise_id](dout, cache)
        want = want if isinstance(want, tuple) else (want,)
        got = fn(dout, cache)
        got = got if isinstance(got, tuple) else (got,)
        for g, w in zip(got, want, strict=True):
            assert (g is None) == (w is None)
            if w is not None:  # a gradient entry may cancel: compare at dout's size too
                agree(g, w, f"{exercise_id} {desc}", np.abs(dout).max())


def honest_other(exercise_id, fn):
    """The same for the chain, the online softmax, channel attention and notebook 4."""
    rng = np.random.default_rng(8)
    if exercise_id == "bam_backward":
        dz, fwd, _ = hidden_chain.random_case(rng, np.float64, "bilinear", True)
        want, got = hidden_chain.reference_gradients(dz, fwd), fn(dz, fwd)
        assert set(got) == set(want)
        size = max(np.abs(w).max() for w in want.values() if w is not None)
        for name in want:
            agree(got[name], want[name], name, size)
    elif exercise_id == "channel_attention_backward":
        dy, fwd, _ = hidden_family.random_case(rng, np.float64, 2)
        want, got = hidden_family.reference_gradients(dy, fwd), fn(dy, fwd)
        size = max(np.abs(w).max() for w in want.values())
        for name in want:
            agree(got[name], want[name], name, size)
    elif exercise_id == "online_attention_forward":
        q, k, v = rng.standard_normal((3, 2, 3, 21))
        for g, w in zip(fn(q, k, v, 0.6, 5), hidden_online.reference(q, k, v, 0.6), strict=True):
            agree(g, w, exercise_id)
    elif exercise_id.startswith("predict_"):
        assert set(fn()) == failing(report(exercise_id.removeprefix("predict_"))), exercise_id
    elif exercise_id == "scale_bug_factor":
        row = next(r for r in report("missing_scale").rows if r.name == "query_conv.weight")
        assert fn[0](report("missing_scale")) == pytest.approx(row.analytic / row.numeric)
    else:  # vacuous_rows
        rep = report("gamma_zero")
        want = {r.name for r in rep.rows if max(abs(r.analytic), abs(r.numeric)) < rep.resolution}
        assert set(fn(rep)) == want


@pytest.mark.parametrize("exercise_id, style, fn", cases(CORRECT))
def test_each_alternative_is_correct_in_float64(exercise_id, style, fn):
    if exercise_id in alternatives_steps.CORRECT:
        honest_step(exercise_id, fn)
    else:
        honest_other(exercise_id, fn)


# ---------------------------------------------------------------- graded


@pytest.mark.parametrize("exercise_id, style, fn", cases(CORRECT))
def test_each_correct_alternative_gets_full_marks(exercise_id, style, fn):
    for seed in SEEDS:
        result = grade_exercise(EXERCISES[exercise_id], as_functions(exercise_id, fn), seed=seed)
        assert result.points == result.max_points, f"{style}, seed {seed}: {result.feedback}"


@pytest.mark.parametrize("exercise_id, mistake, fn", cases(WRONG))
def test_each_wrong_solution_loses_its_points(exercise_id, mistake, fn):
    part = next(p for label, f, p in WRONG[exercise_id] if label == mistake)
    result = grade_exercise(EXERCISES[exercise_id], as_functions(exercise_id, fn))
    assert result.parts[part] is False, result.feedback
    if part == "values":  # wrong numbers: the whole exercise, and the feedback says where
        assert result.points == 0
        if EXERCISES[exercise_id].notebook != "04_gradcheck_exercises":  # (never an answer)
            assert "yours" in result.feedback and "expected" in result.feedback
    else:
        assert 0 < result.points < result.max_points


@pytest.mark.parametrize("stem, ids, source", alternatives_globals.SNIPPETS)
def test_notebook_globals_get_full_marks_in_process(stem, ids, source):
    ns = {}
    exec(source, ns)
    for exercise_id in ids:
        exercise = EXERCISES[exercise_id]
        assert exercise.notebook == stem
        result = grade_exercise(exercise, {f: ns[f] for f in exercise.functions})
        assert result.points == result.max_points, f"{exercise_id}: {result.feedback}"


# ---------------------------------------------------------------- slips


@pytest.mark.parametrize("exercise_id", reference_solutions.slippable())
@pytest.mark.parametrize("size", [1e-3, 1e-9])
def test_a_slip_of_one_entry_loses_the_points(exercise_id, size):
    exercise = EXERCISES[exercise_id]
    for fn, position in reference_solutions.outputs(exercise_id):
        if size < 1e-6 and exercise_id == "scale_bug_factor":
            continue  # a number read off a finite-difference table: 1e-6 is its resolution
        functions = reference_solutions.functions(exercise_id)
        functions[fn] = reference_solutions.slipped(functions[fn], position, size)
        result = grade_exercise(exercise, functions)
        assert result.points == 0, f"{fn} at {position}, slip {size:g}: {result.feedback}"
        assert "yours" in result.feedback


# ---------------------------------------------------------------- through minattn grade


@pytest.mark.parametrize("stem", sorted({stem for stem, _, _ in alternatives_globals.SNIPPETS}))
def test_notebook_globals_through_minattn_grade(tmp_path, stem):
    """Issue 22, kinds 2 and 3: helpers that read a list, dict, set, class or lru_cache at
    notebook level, graded in the isolated child, which runs the notebook's own cells."""
    nbformat = pytest.importorskip("nbformat", reason="grading runs notebooks (extra: test)")
    from minattn.course.grading import runner

    chosen = [s for s in alternatives_globals.SNIPPETS if s[0] == stem]
    cells = [nbformat.v4.new_code_cell(source) for _, _, source in chosen]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"minattn": {"assignment": stem}})
    nbformat.write(nb, tmp_path / "globals.ipynb")
    report = runner.grade(tmp_path / "globals.ipynb", run=False)
    by_id = {r.id: r for r in report.results}
    for _, ids, _ in chosen:
        for exercise_id in ids:
            r = by_id[exercise_id]
            assert r.points == r.max_points, f"{exercise_id}: {r.feedback}"
