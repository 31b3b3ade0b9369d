"""Hidden tests of the step exercises: the seven steps, the pooling and the resize.

Forward steps are written in notebook 2, backward steps in notebook 3. Every step is
checked the same way, against the package's own function of the same name (bound
here at import, so a later patch of ``minattn.steps`` cannot move the reference):

    values         float64, three random cases (B = 2, 3, 1; h != w; random channel
                   counts), plus central finite differences for a backward step, and for
                   a forward step whether its cache works with the package's backward
    float32        the same in float32; the result must stay float32
    robust inputs  read-only, non-contiguous inputs; nothing the function gets may change
"""

import numpy as np

from ...checking.gradcheck import numerical_gradient
from ...ops import resize, steps
from .catalog import Exercise, Part, standard_parts
from .tools import Fail, as_tuple, call, expect_array, fmt_index, frozen, snapshot, unchanged

REF = {
    name: getattr(module, name)
    for module in (steps, resize)
    for name in vars(module)
    if name.endswith(("_forward", "_backward"))
}
REF["bilinear_matrix"] = resize.bilinear_matrix


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
    # the second case has energies in the hundreds: exp overflows unless the row max goes first
    spread = (3.0, 400.0 if dtype == np.float64 else 60.0, 1.0)[index % 3]
    energy = (rng.standard_normal((B, n, n)) * spread).astype(dtype)
    note = f", energies up to {np.abs(energy).max():.0f}" if spread > 10 else ""
    return (energy,), f"B={B}, N={n}{note}"


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


# ---------------------------------------------------------------- forward steps


def _describe(name, i, n):
    if n == 1:
        return f"the array {name} returns"
    return f"array {i} of what {name} returns"


def forward_parts(name, cases, out_name):
    """The three parts of a forward-step exercise (see the module docstring)."""
    backward = REF[name.replace("_forward", "_backward")]

    def run(functions, rng, dtype, *, robust=False):
        worst = 0.0
        for index, B in enumerate((2, 3, 1)):
            for case in cases:
                args, desc = case(rng, B, dtype, index)
                where = f" ({np.dtype(dtype).name}, {desc}"
                where += ", read-only non-contiguous inputs)" if robust else ")"
                given = frozen(args) if robust else snapshot(args)
                before = snapshot(given)
                expected, ref_cache = REF[name](*args)
                result = call(functions[name], *given, name=name, where=where)
                out, cache = as_tuple(result, 2, name, "things (out, cache)")
                worst = max(worst, expect_array(out, expected, name=out_name, where=where))
                if robust and not unchanged(before, given):
                    raise Fail(f"{name} changed its input in place{where}")
                # the cache is what the backward step will get: it must do the same job
                dout = _normal(rng, expected.shape, dtype)
                want = backward(dout, ref_cache)
                try:
                    got = backward(dout, cache)
                except Exception as e:
                    raise Fail(
                        f"the cache your {name} returns does not work with the backward step "
                        f"({type(e).__name__}: {str(e)[:100]}){where}"
                    ) from None
                for i, (g, w) in enumerate(zip(_tuple(got), _tuple(want), strict=True)):
                    if w is None:
                        continue
                    expect_array(
                        g, w, name=f"the backward step's output {i} from your cache", where=where
                    )
        return worst

    def values(functions, rng):
        return f"max error {run(functions, rng, np.float64):.0e} relative to the arrays' size"

    return standard_parts(values, run)


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


# ---------------------------------------------------------------- backward steps


def backward_parts(name, cases, grad_names, diff_args):
    """The three parts of a backward-step exercise.

    grad_names: names of the arrays the backward returns ("dquery", "dkey").
    diff_args: for each of them, the index of the forward's argument it is the gradient of.
    """
    forward = REF[name.replace("_backward", "_forward")]
    n_grads = len(grad_names)

    def run(functions, rng, dtype, *, robust=False, fd=False):
        worst = 0.0
        for index, B in enumerate((2, 3, 1)):
            for case in cases:
                args, desc = case(rng, B, dtype, index)
                where = f" ({np.dtype(dtype).name}, {desc}"
                where += ", read-only non-contiguous dout and cache)" if robust else ")"
                out, cache = forward(*args)
                dout = _normal(rng, out.shape, dtype)
                expected = _tuple(REF[name](dout, cache))
                given = frozen((dout, cache)) if robust else snapshot((dout, cache))
                before = snapshot(given)
                result = call(functions[name], *given, name=name, where=where)
                got = as_tuple(result, n_grads, name)
                for i, (g, e) in enumerate(zip(got, expected, strict=True)):
                    label = f"{grad_names[i]} ({_describe(name, i, n_grads)})"
                    if e is None:
                        if g is not None:
                            raise Fail(f"{label} must be None here{where}")
                        continue
                    worst = max(worst, expect_array(g, e, name=label, where=where))
                if robust and not unchanged(before, given):
                    raise Fail(f"{name} changed dout or the cache in place{where}")
                if fd and index == 0:
                    _finite_differences(forward, args, dout, got, grad_names, diff_args, where)
        return worst

    def values(functions, rng):
        worst = run(functions, rng, np.float64, fd=True)
        return f"max error {worst:.0e} relative to the arrays' size; finite differences agree"

    return standard_parts(values, run)


def _finite_differences(forward, args, dout, got, grad_names, diff_args, where):
    """The student's gradients against central differences of L = sum(forward(...) * dout)."""
    for i, arg_index in enumerate(diff_args):
        if got[i] is None or args[arg_index] is None:
            continue

        def loss(v, arg_index=arg_index):
            perturbed = list(args)
            perturbed[arg_index] = v
            return float(np.sum(forward(*perturbed)[0] * dout))

        numeric = numerical_gradient(loss, np.array(args[arg_index], dtype=np.float64))
        analytic = np.asarray(got[i], dtype=np.float64)
        diff = np.abs(analytic - numeric)
        allowed = 1e-6 * (np.abs(analytic) + np.abs(numeric)) + 1e-7 * np.abs(numeric).max()
        if (diff > allowed).any():
            w = np.unravel_index(int(np.argmax(diff / np.maximum(allowed, 1e-300))), diff.shape)
            raise Fail(
                f"{grad_names[i]} disagrees with finite differences at index {fmt_index(w)}: "
                f"yours {analytic[w]:+.6e}, numeric {numeric[w]:+.6e}{where}"
            )


# ---------------------------------------------------------------- the bilinear weights


def bilinear_parts():
    cases = ((3, 2), (4, 3), (5, 4), (1, 2), (2, 1), (6, 2))

    def values(functions, rng):
        worst = 0.0
        for n_in, ds in cases:
            where = f" (n_in={n_in}, ds={ds})"
            got = call(functions["bilinear_matrix"], n_in, ds, name="bilinear_matrix", where=where)
            expected = REF["bilinear_matrix"](n_in, ds)
            worst = max(worst, expect_array(got, expected, name="the matrix", where=where))
        return f"max error {worst:.0e}"

    def float32(functions, rng):
        for n_in, ds in cases[:3]:
            where = f" (n_in={n_in}, ds={ds}, dtype=np.float32)"
            got = call(
                functions["bilinear_matrix"], n_in, ds, np.float32, name="bilinear_matrix",
                where=where,
            )  # fmt: skip
            expected = REF["bilinear_matrix"](n_in, ds, np.float32)
            expect_array(got, expected, name="the matrix", where=where)

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

F64 = "should be around 1e-16 (the same numbers up to rounding)"

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


def _forward(step, points, out_name, summary):
    name = f"{step}_forward"
    return Exercise(
        id=name,
        notebook="02_seven_steps",
        functions=(name,),
        points=points,
        parts=forward_parts(name, _CASES[step], out_name),
        summary=summary,
        replaces=(name,),
        context=bam_context(name),
        expected_error=F64,
    )


def _backward(step, points, grad_names, diff_args, summary):
    name = f"{step}_backward"
    return Exercise(
        id=name,
        notebook="03_backward_pass",
        functions=(name,),
        points=points,
        parts=backward_parts(name, _CASES[step], grad_names, diff_args),
        summary=summary,
        replaces=(name,),
        context=bam_context(name),
        expected_error=F64,
    )


FORWARD = (
    _forward("avg_pool", 2, "pooled", "average pooling by ds"),
    _forward("conv1x1", 2, "out", "step 1: a 1x1 convolution"),
    _forward("flatten", 1, "out", "step 2: (B, C, h, w) -> (B, C, N)"),
    _forward("energy", 2, "energy", "step 3: the energy query^T key"),
    _forward("scale", 1, "scaled", "step 4: the scale"),
    _forward("softmax", 2, "attention", "step 3: the stable row softmax"),
    _forward("weighted_sum", 2, "out", "step 5: the weighted sum of values"),
    _forward("unflatten", 1, "out", "step 6: (B, C, N) -> (B, C, h, w)"),
    Exercise(
        id="bilinear_matrix",
        notebook="02_seven_steps",
        functions=("bilinear_matrix",),
        points=2,
        parts=bilinear_parts(),
        summary="the bilinear interpolation weights (align_corners=False)",
        replaces=("bilinear_matrix",),
        expected_error="should be exactly 0 (or around 1e-16)",
    ),
    _forward("upsample", 2, "out", "the resize back, nearest and bilinear"),
    _forward("residual", 1, "out", "step 7: the residual"),
)

BACKWARD = (
    _backward("residual", 1, ("dx", "df", "dgamma"), (0, 1, 2), "step 7 backward"),
    _backward("upsample", 2, ("dx",), (0,), "the resize's backward, nearest and bilinear"),
    _backward("unflatten", 1, ("dx",), (0,), "step 6 backward"),
    _backward("weighted_sum", 2, ("dvalue", "dattention"), (0, 1), "step 5 backward"),
    _backward("softmax", 3, ("denergy",), (0,), "the softmax backward, without its Jacobian"),
    _backward("scale", 1, ("denergy",), (0,), "step 4 backward"),
    _backward("energy", 2, ("dquery", "dkey"), (0, 1), "step 3 backward: the energy"),
    _backward("flatten", 1, ("dx",), (0,), "step 2 backward"),
    _backward("conv1x1", 3, ("dx", "dweight", "dbias"), (0, 1, 2), "step 1 backward"),
    _backward("avg_pool", 2, ("dx",), (0,), "average pooling backward"),
)
