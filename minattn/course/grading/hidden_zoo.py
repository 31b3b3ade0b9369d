"""Hidden tests of notebook 4: the bug zoo's predictions, the scale factor, vacuous rows.

The truth is computed here, never written down: each bug is planted into the same small
BAM the notebook uses (random non-zero parameters, gamma 0.5-ish, x from seed 1) and
``minattn.gradcheck`` says which rows fail. A prediction earns its point only if it is
exactly that set; the feedback says that it is wrong, not what is right.
"""

import functools

import numpy as np

from ...checking.gradcheck import gradcheck
from ...modules.bam import BAM
from .catalog import Exercise, Part
from .tools import Fail, call

BRANCH = tuple(f"{p}_conv.{w}" for p in ("query", "key", "value") for w in ("weight", "bias"))
ROWS = ("x", *BRANCH, "gamma")


# the bugs, as notebook 4 shows them
def scale_backward_missing_scale(dout, cache):
    return dout


def energy_backward_transposed(dout, cache):
    query, key = cache
    return key @ dout, query @ dout.transpose(0, 2, 1)


def softmax_backward_no_row_sum(dout, cache):
    return cache * dout


def residual_backward_forgotten(dout, cache):
    f, gamma = cache
    return np.zeros_like(dout), gamma[0] * dout, np.array([(dout * f).sum()], dtype=dout.dtype)


def random_bam(seed=0, **kwargs):
    """Notebook 4's module: C=8, ds=2, Ck=2, gamma used, random non-zero parameters."""
    options = {"key_channels": 2, "use_gamma": True, **kwargs}
    bam = BAM(8, 2, seed=seed, **options)
    rng = np.random.default_rng(seed)
    bam.load_state_dict(
        {k: 0.5 * rng.standard_normal(v.shape) for k, v in bam.state_dict().items()}
    )
    return bam


def notebook_x(dtype=np.float64):
    return np.random.default_rng(1).standard_normal((2, 8, 4, 6)).astype(dtype)


def with_bug(bam, step, wrong):
    """``bam`` with its step function ``step`` replaced by ``wrong`` (its own ops table)."""
    setattr(bam.ops, step, wrong)
    return bam


@functools.cache
def report(case):
    """The gradcheck report of one zoo entry (computed once per grading process)."""
    x = notebook_x()
    if case == "missing_scale":
        return gradcheck(with_bug(random_bam(), "scale_backward", scale_backward_missing_scale), x)
    if case == "transposed":
        return gradcheck(with_bug(random_bam(), "energy_backward", energy_backward_transposed), x)
    if case == "no_row_sum":
        return gradcheck(with_bug(random_bam(), "softmax_backward", softmax_backward_no_row_sum), x)
    if case == "residual_forgotten":
        bam = with_bug(random_bam(), "residual_backward", residual_backward_forgotten)
        return gradcheck(bam, x)
    if case == "float32":
        bam = with_bug(
            random_bam(dtype=np.float32), "softmax_backward", softmax_backward_no_row_sum
        )
        return _quiet_gradcheck(bam, notebook_x(np.float32))
    if case == "gamma_zero":
        fresh = BAM(8, 2, key_channels=2, use_gamma=True, seed=0)  # gamma = 0, as initialised
        return gradcheck(with_bug(fresh, "softmax_backward", softmax_backward_no_row_sum), x)
    if case == "healthy":
        return gradcheck(random_bam(), x)
    if case == "missing_scale_ck3":  # another module, so a hard-coded answer fails
        bam = with_bug(random_bam(seed=5, key_channels=3), "scale_backward",
                       scale_backward_missing_scale)  # fmt: skip
        return gradcheck(bam, x)
    raise KeyError(case)


def _quiet_gradcheck(bam, x):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gradcheck warns about float32, as it should
        return gradcheck(bam, x)


def failing(rep):
    return {row.name for row in rep.rows if not row.ok}


def _as_names(value, name):
    if not isinstance(value, set | frozenset | list | tuple):
        raise Fail(f"{name}() must return a set of row names, got {type(value).__name__}")
    names = set(value)
    unknown = sorted(str(n) for n in names - set(ROWS))
    if unknown:
        raise Fail(f"{name}() returned {unknown[0]!r}, which is not a row of the table")
    return names


def prediction(case, function):
    def values(functions, rng):
        got = _as_names(call(functions[function], name=function), function)
        if got != failing(report(case)):
            raise Fail(
                f"{function}(): your set of rows is not the set that fails; follow the gradient "
                "back from the broken step through the graph (and remember rows whose "
                "gradient is zero by mathematics)"
            )

    return Exercise(
        id=function,
        notebook="04_gradcheck_exercises",
        functions=(function,),
        points=1,
        parts=(Part("values", 1.0, values),),
        summary=f"predict the failing rows ({case.replace('_', ' ')})",
    )


def factor_parts():
    def values(functions, rng):
        for case in ("missing_scale", "missing_scale_ck3"):
            rep = report(case)
            row = next(r for r in rep.rows if r.name == "query_conv.weight")
            want = row.analytic / row.numeric
            got = call(functions["scale_bug_factor"], rep, name="scale_bug_factor")
            _close_number(got, want, "scale_bug_factor(report)", case.replace("_", " "))
        for ck in (2, 3, 5):
            bam = BAM(8, 2, key_channels=ck, seed=int(rng.integers(100)))
            got = call(
                functions["scale_bug_factor_explained"], bam, name="scale_bug_factor_explained"
            )
            _close_number(got, ck**0.5, "scale_bug_factor_explained(bam)", f"key_channels={ck}")

    return (Part("values", 1.0, values),)


def _close_number(got, want, what, case):
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise Fail(f"{what} must return a number, got {type(got).__name__} ({case})") from None
    if not abs(value - want) <= 1e-6 * abs(want):
        raise Fail(f"{what}: yours {value:+.6e}, expected {want:+.6e} ({case})")


def vacuous_parts():
    def values(functions, rng):
        for case in ("float32", "gamma_zero", "healthy", "missing_scale"):
            rep = report(case)
            want = {
                r.name for r in rep.rows if max(abs(r.analytic), abs(r.numeric)) < rep.resolution
            }
            got = _as_names(
                call(functions["vacuous_rows"], rep, name="vacuous_rows"), "vacuous_rows"
            )
            if got != want:
                raise Fail(
                    f"vacuous_rows(report) is wrong for the {case.replace('_', ' ')} report: not "
                    "the rows whose analytic and numeric values at the worst element are both "
                    "below report.resolution"
                )

    return (Part("values", 1.0, values),)


ZOO = (
    prediction("missing_scale", "predict_missing_scale"),
    Exercise(
        id="scale_bug_factor",
        notebook="04_gradcheck_exercises",
        functions=("scale_bug_factor", "scale_bug_factor_explained"),
        points=2,
        parts=factor_parts(),
        summary="read the wrong factor off the table, and explain it from the module",
        expected_error="should agree to about 1e-9",
    ),
    prediction("transposed", "predict_transposed"),
    prediction("no_row_sum", "predict_no_row_sum"),
    prediction("residual_forgotten", "predict_residual_forgotten"),
    prediction("float32", "predict_float32"),
    prediction("gamma_zero", "predict_gamma_zero"),
    Exercise(
        id="vacuous_rows",
        notebook="04_gradcheck_exercises",
        functions=("vacuous_rows",),
        points=2,
        parts=vacuous_parts(),
        summary="find the rows of a gradcheck table that tested nothing",
    ),
)
