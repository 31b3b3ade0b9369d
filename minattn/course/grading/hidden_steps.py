"""Hidden tests of the step exercises: the seven steps, the pooling and the resize.

Forward steps are written in notebook 2, backward steps in notebook 3. Every step is
checked the same way, against the truth: the package's own function of the same name
(bound here at import, so a later patch of ``minattn.steps`` cannot move it) run on the
same inputs in extended precision, with the error budget of `budgets` (see `accuracy`):

    values         float64, three random cases (B = 2, 3, 1; h != w; random channel
                   counts; a softmax case with energies in the hundreds); for a forward
                   step also its cache: the package's backward fed it must give the exact
                   gradient at the student's output
    float32        the same in float32; the result must stay float32
    robust inputs  read-only, non-contiguous inputs; nothing the function gets may change

A backward step needs no finite differences: the truth is the exact gradient, which
finite differences only approximate (to about 1e-10).
"""

import numpy as np

from ...ops import resize
from .accuracy import EXACT, exact, expect_close, expect_close_in_norm, share
from .budgets import STEP_FUNCTIONS, backward_budget, bilinear_matrix_budget, forward_budget
from .catalog import Exercise, Part, standard_parts
from .tools import Fail, as_tuple, call, fmt_index, frozen, snapshot, unchanged

REF = {**STEP_FUNCTIONS, "bilinear_matrix": resize.bilinear_matrix}


# ---------------------------------------------------------------- random cases


def _grid(rng):
    """A non-square pooled map: h != w, both at least 2."""
    h = int(rng.integers(2, 5))
    w = int(rng.choice([v for v in range(2, 6) if v != h]))
    return h, w


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _softmax_rows(rng, B, N, dtype):
    e = rng.standard_normal((B, N, N)) * 2
    a = np.exp(e - e.max(axis=-1, keepdims=True))
    return (a / a.sum(axis=-1, keepdims=True)).astype(dtype)


def _case_conv1x1(rng, B, dtype, index):
    h, w = _grid(rng)
    c_in, c_out = int(rng.integers(2, 6)), int(rng.integers(1, 5))
    args = (
        _normal(rng, (B, c_in, h, w), dtype),
        _normal(rng, (c_out, c_in, 1, 1), dtype),
        _normal(rng, (c_out,), dtype),
    )
    return args, f"B={B}, C_in={c_in}, C_out={c_out}, h={h}, w={w}"


def _case_flatten(rng, B, dtype, index):
    h, w = _grid(rng)
    c = int(rng.integers(1, 5))
    return (_normal(rng, (B, c, h, w), dtype),), f"B={B}, C={c}, h={h}, w={w}"


def _case_energy(rng, B, dtype, index):
    h, w = _grid(rng)
    ck = int(rng.integers(1, 4))
    n = h * w
    return (_normal(rng, (B, ck, n), dtype), _normal(rng, (B, ck, n), dtype)), (
        f"B={B}, Ck={ck}, N={n}"
    )


def _case_scale(rng, B, dtype, index):
    h, w = _grid(rng)
    n, ck = h * w, int(rng.integers(1, 9))
    return (_normal(rng, (B, n, n), dtype), ck**-0.5), f"B={B}, N={n}, scale={ck}**-0.5"


def _case_softmax(rng, B, dtype, index):
    h, w = _grid(rng)
    n = h * w
    energy = rng.standard_normal((B, n, n))
    note = ""
    if index % 3 == 1:
        # energies in the hundreds, above where exp overflows (e^709 in float64, e^88 in
        # float32): only a softmax that subtracts a shift first stays finite
        top = rng.uniform(750, 950) if dtype == np.float64 else rng.uniform(120, 240)
        energy *= top / np.abs(energy).max()
        if -energy.min() > energy.max():
            energy = -energy
        note = f", energies up to {top:.0f}"
    else:
        energy *= (3.0, 1.0, 1.0)[index % 3]
    return (energy.astype(dtype),), f"B={B}, N={n}{note}"


def _case_weighted_sum(rng, B, dtype, index):
    h, w = _grid(rng)
    n, c = h * w, int(rng.integers(2, 6))
    return (_normal(rng, (B, c, n), dtype), _softmax_rows(rng, B, n, dtype)), (
        f"B={B}, C={c}, N={n}"
    )


def _case_unflatten(rng, B, dtype, index):
    h, w = _grid(rng)
    c = int(rng.integers(1, 5))
    return (_normal(rng, (B, c, h * w), dtype), h, w), f"B={B}, C={c}, h={h}, w={w}"


def _case_residual(rng, B, dtype, index):
    h, w = _grid(rng)
    c = int(rng.integers(1, 4))
    x, f = _normal(rng, (B, c, 2 * h, 2 * w), dtype), _normal(rng, (B, c, 2 * h, 2 * w), dtype)
    if index % 2 == 0:
        gamma = rng.uniform(0.5, 1.5, size=1).astype(dtype)
        return (x, f, gamma), f"B={B}, C={c}, H={2 * h}, W={2 * w}, gamma={gamma[0]:.3f}"
    return (x, f, None), f"B={B}, C={c}, H={2 * h}, W={2 * w}, gamma=None"


def _case_avg_pool(rng, B, dtype, index):
    h, w = _grid(rng)
    ds = (2, 3, 1)[index % 3]
    c = int(rng.integers(1, 4))
    return (_normal(rng, (B, c, h * ds, w * ds), dtype), ds), (
        f"B={B}, C={c}, H={h * ds}, W={w * ds}, ds={ds}"
    )


def _case_upsample(mode):
    def case(rng, B, dtype, index):
        h, w = _grid(rng)
        ds = (2, 3, 4)[index % 3]
        c = int(rng.integers(1, 4))
        return (_normal(rng, (B, c, h, w), dtype), ds, mode), (
            f"mode={mode!r}, B={B}, C={c}, h={h}, w={w}, ds={ds}"
        )

    return case


# ---------------------------------------------------------------- the truth


def bilinear_exact(n_in, ds):
    """`resize.bilinear_matrix` in extended precision (its weights are multiples of
    1 / (2 ds); the package computes them in float64, so they are rebuilt here)."""
    o = np.arange(n_in * ds).astype(EXACT)
    s = np.maximum((o + EXACT(0.5)) / ds - EXACT(0.5), 0)
    i0 = np.floor(s).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = s - i0
    M = np.zeros((n_in * ds, n_in), dtype=EXACT)
    rows = np.arange(n_in * ds)
    np.add.at(M, (rows, i0), 1 - frac)
    np.add.at(M, (rows, i1), frac)
    return M


def truth_forward(name, args):
    """(out, cache) of a forward step on ``args``, in extended precision."""
    if name == "upsample_forward" and args[2] == "bilinear":
        x, ds, mode = args
        Mh, Mw = (bilinear_exact(n, ds) for n in x.shape[2:])
        return Mh @ exact(x) @ Mw.T, (ds, mode, (Mh, Mw))
    return REF[name](*exact(args))


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _describe(name, i, n):
    if n == 1:
        return f"the array {name} returns"
    return f"array {i} of what {name} returns"


def _where(desc, dtype, robust, inputs="inputs"):
    extra = f", read-only non-contiguous {inputs}" if robust else ""
    return f" ({np.dtype(dtype).name}, {desc}{extra})"


# ---------------------------------------------------------------- forward steps


def forward_parts(name, cases, out_name, stub_names=()):
    """The three parts of a forward-step exercise (see the module docstring).

    stub_names: names the return line after the student's code uses, for the feedback.
    """

    def run(functions, rng, dtype, *, robust=False):
        worst = 0.0
        for index, B in enumerate((2, 3, 1)):
            for case in cases:
                args, desc = case(rng, B, dtype, index)
                where = _where(desc, dtype, robust)
                given = frozen(args) if robust else snapshot(args)
                before = snapshot(given)
                truth, cache_truth = truth_forward(name, args)
                result = _call_stub(functions[name], given, name, where, stub_names)
                out, cache = as_tuple(result, 2, name, "things (out, cache)")
                budget = forward_budget(name, args)
                worst = max(
                    worst, expect_close(out, truth, budget, name=out_name, dtype=dtype, where=where)
                )
                if robust and not unchanged(before, given):
                    raise Fail(f"{name} changed its input in place{where}")
                if name == "softmax_forward":  # the cache is the output: judge yours as exact
                    cache_truth = exact(np.asarray(out))
                dout = _normal(rng, truth.shape, dtype)
                check_cache(name.replace("_forward", "_backward"), cache, cache_truth, dout, where)
        return worst

    def values(functions, rng):
        return share(run(functions, rng, np.float64))

    return standard_parts(values, run)


def _call_stub(function, given, name, where, stub_names):
    try:
        return call(function, *given, name=name, where=where)
    except Fail as e:
        if any(f"name '{n}' is not defined" in str(e) for n in stub_names):
            names = ", ".join(stub_names)
            raise Fail(f"{e} (the return lines after your code use {names}: define them)") from None
        raise


def check_cache(backward_name, cache, cache_truth, dout, where):
    """The package's backward step fed your cache gives the exact gradient at your output.

    The cache is what the backward step will get. The truth is the exact backward for
    the inputs and your output (so the rounding of your forward is not held against it);
    compared in norm, which is what a gradient step sees. The backward runs in the dtype
    of dout (and of your cache): its own rounding is in the budget.
    """
    try:
        got = _tuple(REF[backward_name](dout, cache))
    except Exception as e:
        raise Fail(
            f"the cache your {backward_name.replace('_backward', '_forward')} returns does not "
            f"work with the backward step ({type(e).__name__}: {str(e)[:100]}){where}"
        ) from None
    truth = _tuple(REF[backward_name](exact(dout), cache_truth))
    budgets = backward_budget(backward_name, dout, cache_truth)
    for i, (g, t, b) in enumerate(zip(got, truth, budgets, strict=True)):
        if t is not None:
            name = f"the backward step's output {i} from your cache"
            expect_close_in_norm(g, t, b, name=name, dtype=dout.dtype, where=where)


# ---------------------------------------------------------------- backward steps


def backward_parts(name, cases, grad_names):
    """The three parts of a backward-step exercise.

    grad_names: names of the arrays the backward returns ("dquery", "dkey"). Each is
    compared with the exact gradient for the given dout and cache, within its budget.
    """
    forward = REF[name.replace("_backward", "_forward")]
    n_grads = len(grad_names)

    def run(functions, rng, dtype, *, robust=False):
        worst = 0.0
        for index, B in enumerate((2, 3, 1)):
            for case in cases:
                args, desc = case(rng, B, dtype, index)
                where = _where(desc, dtype, robust, "dout and cache")
                out, cache = forward(*args)
                dout = _normal(rng, out.shape, dtype)
                truth = _tuple(REF[name](exact(dout), exact(cache)))
                budgets = backward_budget(name, dout, cache)
                given = frozen((dout, cache)) if robust else snapshot((dout, cache))
                before = snapshot(given)
                result = call(functions[name], *given, name=name, where=where)
                got = as_tuple(result, n_grads, name)
                for i, (g, t, b) in enumerate(zip(got, truth, budgets, strict=True)):
                    label = f"{grad_names[i]} ({_describe(name, i, n_grads)})"
                    if t is None:
                        if g is not None:
                            raise Fail(f"{label} must be None here{where}")
                        continue
                    worst = max(worst, expect_close(g, t, b, name=label, dtype=dtype, where=where))
                if robust and not unchanged(before, given):
                    raise Fail(f"{name} changed dout or the cache in place{where}")
        return worst

    def values(functions, rng):
        return share(run(functions, rng, np.float64))

    return standard_parts(values, run)


# ---------------------------------------------------------------- the bilinear weights


def bilinear_parts():
    cases = ((3, 2), (4, 3), (5, 4), (1, 2), (2, 1), (6, 2))

    def run(functions, dtype, chosen):
        worst = 0.0
        for n_in, ds in chosen:
            args = (n_in, ds) if dtype is None else (n_in, ds, dtype)
            where = f" (n_in={n_in}, ds={ds}{'' if dtype is None else ', dtype=np.float32'})"
            got = call(functions["bilinear_matrix"], *args, name="bilinear_matrix", where=where)
            truth, budget = bilinear_exact(n_in, ds), bilinear_matrix_budget(n_in)
            worst = max(
                worst,
                expect_close(
                    got, truth, budget, name="the matrix", dtype=dtype or np.float64, where=where
                ),
            )
        return worst

    def values(functions, rng):
        return share(run(functions, None, cases))

    def float32(functions, rng):
        run(functions, np.float32, cases[:3])

    return (Part("values", 0.8, values), Part("float32", 0.2, float32))


# ---------------------------------------------------------------- feedback inside BAM


def bam_context(step):
    """context(functions): the first wrong intermediate of BAM with the student's ``step``."""

    def context(functions):
        try:
            from ...checking.compare import compare_steps
        except ImportError:
            return None
        for interpolation in ("bilinear", "nearest"):
            bam, x = context_bam(interpolation)
            report = compare_steps(bam, x, replace={step: functions[step]})
            row = report.first_mismatch_row
            if row is not None:
                head = f"first wrong intermediate in BAM ({interpolation}): {row.name}"
                if not row.worst:
                    return head
                return (
                    f"{head} at index {fmt_index(row.worst)}: yours {row.got:+.6e}, "
                    f"expected {row.expected:+.6e}"
                )
        return None

    return context


def context_bam(interpolation="bilinear", seed=0):
    """A small BAM with random non-zero parameters (gamma too) and an input for it."""
    from ...modules.bam import BAM

    bam = BAM(8, 2, key_channels=2, interpolation=interpolation, use_gamma=True, seed=seed)
    rng = np.random.default_rng(seed)
    bam.load_state_dict(
        {k: 0.5 * rng.standard_normal(v.shape) + 0.1 for k, v in bam.state_dict().items()}
    )
    x = np.random.default_rng(seed + 1).standard_normal((2, 8, 4, 6))
    return bam, x


# ---------------------------------------------------------------- the exercises

F64 = "is a few roundings: about 1e-16 of the size of the terms it sums, in float64"
F64_ZH = "只是几次舍入：在 float64 下约为它所求和的各项大小的 1e-16"

_CASES = {
    "conv1x1": (_case_conv1x1,),
    "flatten": (_case_flatten,),
    "energy": (_case_energy,),
    "scale": (_case_scale,),
    "softmax": (_case_softmax,),
    "weighted_sum": (_case_weighted_sum,),
    "unflatten": (_case_unflatten,),
    "residual": (_case_residual,),
    "avg_pool": (_case_avg_pool,),
    "upsample": (_case_upsample("nearest"), _case_upsample("bilinear")),
}


# summary: (English, Chinese); the Chinese is the check cell's second line (`chinese`)


def _step_exercise(name, notebook, points, parts, summary):
    """One step's exercise: ``name`` is the function the student writes (and the package's
    step it must not call); ``summary`` is (English, Chinese)."""
    summary, summary_zh = summary
    return Exercise(
        id=name,
        notebook=notebook,
        functions=(name,),
        points=points,
        parts=parts,
        summary=summary,
        replaces=(name,),
        context=bam_context(name),
        expected_error=F64,
        summary_zh=summary_zh,
        expected_error_zh=F64_ZH,
    )


def _forward(step, points, out_name, summary, stub_names=()):
    name = f"{step}_forward"
    parts = forward_parts(name, _CASES[step], out_name, stub_names)
    return _step_exercise(name, "02_seven_steps", points, parts, summary)


def _backward(step, points, grad_names, summary):
    name = f"{step}_backward"
    parts = backward_parts(name, _CASES[step], grad_names)
    return _step_exercise(name, "03_backward_pass", points, parts, summary)


# the names are the notebooks' (the exercise's text, or the stub's return line)
FORWARD = (
    _forward("avg_pool", 2, "pooled", ("average pooling by ds", "按 ds 平均池化")),
    _forward("conv1x1", 2, "out", ("step 1: a 1x1 convolution", "第 1 步：1x1 卷积")),
    _forward(
        "flatten",
        1,
        "out",
        ("step 2: (B, C, h, w) -> (B, C, N)", "第 2 步：(B, C, h, w) -> (B, C, N)"),
    ),
    _forward(
        "energy",
        2,
        "energy",
        ("step 3: the energy query^T key", "第 3 步：注意力分数，查询与键的点积"),
    ),
    _forward("scale", 1, "scaled", ("step 4: the scale", "第 4 步：缩放")),
    _forward(
        "softmax",
        2,
        "attention",
        ("step 3: the stable row softmax", "第 3 步：数值稳定的按行 softmax"),
    ),
    _forward(
        "weighted_sum", 2, "out", ("step 5: the weighted sum of values", "第 5 步：值的加权和")
    ),
    _forward(
        "unflatten",
        1,
        "out",
        ("step 6: (B, C, N) -> (B, C, h, w)", "第 6 步：(B, C, N) -> (B, C, h, w)"),
    ),
    Exercise(
        id="bilinear_matrix",
        notebook="02_seven_steps",
        functions=("bilinear_matrix",),
        points=2,
        parts=bilinear_parts(),
        summary="the bilinear interpolation weights (align_corners=False)",
        replaces=("bilinear_matrix",),
        expected_error="is exactly 0, or a few times 1e-16",
        summary_zh="双线性插值的权重（align_corners=False）",
        expected_error_zh="恰好为 0，或是 1e-16 的几倍",
    ),
    _forward(
        "upsample",
        2,
        "out",
        ("the resize back, nearest and bilinear", "上采样，最近邻与双线性"),
        ("out", "Mh", "Mw"),
    ),
    _forward("residual", 1, "z", ("step 7: the residual", "第 7 步：残差连接")),
)

BACKWARD = (
    _backward("residual", 1, ("dx", "df", "dgamma"), ("step 7 backward", "第 7 步的反向传播")),
    _backward(
        "upsample",
        2,
        ("dx",),
        ("the resize's backward, nearest and bilinear", "上采样的反向传播，最近邻与双线性"),
    ),
    _backward("unflatten", 1, ("dx",), ("step 6 backward", "第 6 步的反向传播")),
    _backward(
        "weighted_sum", 2, ("dvalue", "dattention"), ("step 5 backward", "第 5 步的反向传播")
    ),
    _backward(
        "softmax",
        3,
        ("dscaled",),
        ("the softmax backward, without its Jacobian", "softmax 的反向传播，不构造雅可比矩阵"),
    ),
    _backward("scale", 1, ("denergy",), ("step 4 backward", "第 4 步的反向传播")),
    _backward(
        "energy",
        2,
        ("dquery", "dkey"),
        ("step 3 backward: the energy", "第 3 步的反向传播：注意力分数"),
    ),
    _backward("flatten", 1, ("dx",), ("step 2 backward", "第 2 步的反向传播")),
    _backward("conv1x1", 3, ("dx", "dweight", "dbias"), ("step 1 backward", "第 1 步的反向传播")),
    _backward("avg_pool", 2, ("dx",), ("average pooling backward", "平均池化的反向传播")),
)
