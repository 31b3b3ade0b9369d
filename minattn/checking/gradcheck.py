"""Gradient checking: compare a module's backward pass with central finite differences.

The loss is L = sum((y - y0) * dy) for a fixed random dy, with y0 the output at
the unperturbed point, so dL/dy = dy exactly and the analytic gradients are
``module.backward(dy)`` and ``module.grads``. A random dy (not ones) matters: with
ones, any error that sums to zero over the output hides. Subtracting y0 changes no
derivative, but keeps the large constant part of sum(y * dy) out of the sum, where
its rounding would swamp the small change a step of eps makes.

Finite differences have a resolution. Every y_i carries a rounding error of about
u |y_i| (u the machine epsilon), so L is uncertain by about u ||y * dy||_2 and a
central difference by that divided by eps. We take 16 times this as the
*resolution*: an element passes when its error is below ``rtol`` relative to
|analytic| + |numeric|, or below the resolution. The relative error shown is
therefore |a - n| / max(|a| + |n|, resolution / rtol). Without the floor, a
gradient that is exactly zero (the key bias: shifting every key by the same
vector adds a constant to each row of energies, which the softmax ignores) would
"fail" against the 1e-9 noise of its numeric estimate, while a real bug, an error
of the size of the gradient itself, fails either way.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..validate import as_tuple, validate_array, validate_positive_int


def rel_error(a, b):
    """max |a - b| / max(1e-12, |a| + |b|), elementwise; 0 means identical."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error needs arrays of one shape, got {a.shape} and {b.shape}")
    return float(np.max(np.abs(a - b) / np.maximum(1e-12, np.abs(a) + np.abs(b)), initial=0.0))


def numerical_gradient(f, x, eps=1e-6, indices=None, *, bar=None):
    """Central differences (f(x + eps e_i) - f(x - eps e_i)) / 2 eps of a scalar function f.

    x is not modified (f sees a perturbed copy). ``indices``: flat indices to check,
    default all; entries not checked are NaN in the result, which has x's shape.
    """
    x = validate_array(x, "x")
    if not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    xp = np.array(x, dtype=x.dtype, copy=True)
    flat = xp.reshape(-1)  # a view: writing flat[i] perturbs xp
    grad = np.full(x.size, np.nan)
    for i in range(x.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + eps
        f_plus = float(f(xp))
        flat[i] = old - eps
        f_minus = float(f(xp))
        flat[i] = old
        grad[i] = (f_plus - f_minus) / (2 * eps)
        if bar is not None:
            bar.update()
    return grad.reshape(x.shape)


@dataclass
class Row:
    name: str
    shape: tuple
    checked: int
    max_abs: float
    max_rel: float
    worst: tuple
    analytic: float
    numeric: float
    ok: bool


@dataclass
class GradcheckReport:
    """What `gradcheck` found: one row per checked array, plus the extra checks."""

    rows: list
    extra: list = field(default_factory=list)  # (description, ok)
    eps: float = 1e-6
    rtol: float = 1e-7
    resolution: float = 0.0
    vacuous: list = field(default_factory=list)  # arrays that do not affect the output

    @property
    def ok(self):
        return all(r.ok for r in self.rows) and all(ok for _, ok in self.extra)

    @property
    def max_rel(self):
        return max(r.max_rel for r in self.rows)

    def __str__(self):
        head = ("name", "shape", "checked", "max abs err", "max rel err", "worst index")
        head += ("analytic", "numeric", "pass")
        lines = [
            [
                r.name,
                "x".join(map(str, r.shape)),
                str(r.checked),
                f"{r.max_abs:.2e}",
                f"{r.max_rel:.2e}",
                str(r.worst),
                f"{r.analytic:+.6e}",
                f"{r.numeric:+.6e}",
                "ok" if r.ok else "FAIL",
            ]
            for r in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]

        def fmt(cells):
            return "  ".join(c.ljust(wd) for c, wd in zip(cells, widths, strict=True)).rstrip()

        out = [
            f"gradient check by central differences, eps={self.eps:g}: an element passes if "
            f"|analytic - numeric| < {self.rtol:g} (|analytic| + |numeric|)",
            f"or < {self.resolution:.1e}, the finite-difference resolution "
            f"(rel err = |a - n| / max(|a| + |n|, {self.resolution / self.rtol:.2g}))",
            fmt(head),
            fmt(["-" * wd for wd in widths]),
        ]
        out += [fmt(line) for line in lines]
        out += [f"{'ok  ' if ok else 'FAIL'}  {what}" for what, ok in self.extra]
        if self.vacuous:
            out.append(
                f"note  {', '.join(self.vacuous)}: both gradients exactly zero, so the output does "
                f"not depend on it here and its check proves nothing (gamma unused, or 0?)"
            )
        out.append(f"overall: {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(out)


def gradcheck(module, x, eps=1e-6, *, rtol=1e-7, max_elements=None, seed=0):
    """Check ``module.backward`` (every input gradient and ``module.grads``) by finite differences.

    module: any minattn module (``forward``, ``backward``, ``params``, ``grads``).
    x: the input, or a tuple of inputs for a module with several (CDSA's x1, x2; rows
    "x1", "x2"). max_elements: check at most this many entries of each array, drawn at
    random (default: all). Returns a `GradcheckReport`; ``report.ok`` is the verdict.
    The module's parameters and buffers are restored afterwards; its cache is not.
    A progress bar shows on a terminal when the check takes a while.
    """
    for attr in ("forward", "backward", "params", "grads"):
        if not hasattr(module, attr):
            raise TypeError(
                f"module must have forward, backward, params and grads (like minattn.BAM); "
                f"{type(module).__name__} has no {attr!r}"
            )
    inputs = as_tuple(x)
    names = ["x"] if len(inputs) == 1 else [f"x{i + 1}" for i in range(len(inputs))]
    inputs = [validate_array(a, n) for a, n in zip(inputs, names, strict=True)]
    if not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if any(a.dtype != np.float64 for a in inputs) or getattr(module, "dtype", None) != np.float64:
        warnings.warn(
            "gradcheck in float32 cannot reach a relative error of 1e-7: finite differences "
            "need float64 (build the module and x with dtype=np.float64)",
            stacklevel=2,
        )
    if max_elements is not None:
        validate_positive_int(max_elements, "max_elements")
    buffers = {k: b.copy() for k, b in getattr(module, "buffers", {}).items()}
    try:
        return _gradcheck(module, inputs, names, eps, rtol, max_elements, seed)
    finally:
        for k, b in buffers.items():  # training-mode forwards moved the running statistics
            module.buffers[k][...] = b


def _gradcheck(module, inputs, names, eps, rtol, max_elements, seed):
    # not default_rng(seed) itself: x is often drawn from that, and dy = x is a poor test
    rng = np.random.default_rng([seed, 1])
    ys, dys, analytic = _analytic(module, inputs, names, rng)
    resolution = _resolution(ys, dys, eps)
    inputs = [a.copy() for a in inputs]  # perturbed in place below; the caller's stay as they are
    targets = {**dict(zip(names, inputs, strict=True)), **module.params}
    plan = _sample(targets, max_elements, rng)
    loss = _centred_loss(module, inputs, ys, dys)
    rows, vacuous = _compare_rows(targets, plan, analytic, loss, eps, rtol, resolution)
    extra = _extra_checks(module, inputs, dys, analytic, resolution)
    return GradcheckReport(rows, extra, eps, rtol, resolution, vacuous)


def _analytic(module, inputs, names, rng):
    """One forward and backward with a random dy: (outputs, dy, {array name: gradient})."""
    ys = as_tuple(module.forward(*inputs))
    dys = tuple(rng.standard_normal(y.shape).astype(y.dtype) for y in ys)
    dxs = as_tuple(module.backward(*dys))
    analytic = dict(zip(names, dxs, strict=True))
    analytic.update({k: v.copy() for k, v in module.grads.items()})
    return ys, dys, analytic


def _resolution(ys, dys, eps):
    """The smallest gradient error central differences can see (the module docstring)."""
    size = float(np.sqrt(sum(np.sum((y * dy) ** 2) for y, dy in zip(ys, dys, strict=True))))
    return 16 * np.finfo(ys[0].dtype).eps * size / eps


def _sample(targets, max_elements, rng):
    """{array name: the flat indices to check}: all, or ``max_elements`` drawn at random."""
    plan = {}
    for name, value in targets.items():
        idx = np.arange(value.size)
        if max_elements is not None and value.size > max_elements:
            idx = np.sort(rng.choice(value.size, max_elements, replace=False))
        plan[name] = idx
    return plan


def _centred_loss(module, inputs, ys, dys):
    """loss_at(array)(value): L = sum((y - y0) * dy) with ``array`` set to ``value``."""

    def loss():
        outs = as_tuple(module.forward(*inputs))
        return sum(np.sum((o - y) * dy) for o, y, dy in zip(outs, ys, dys, strict=True))

    def loss_at(array):
        def f(value):  # perturb the live array in place: modules may share it
            saved = array.copy()
            array[...] = value
            try:
                return loss()
            finally:
                array[...] = saved

        return f

    return loss_at


def _compare_rows(targets, plan, analytic, loss_at, eps, rtol, resolution):
    """One `Row` per array, and the names of the arrays whose gradients are both exactly 0."""
    floor = max(1e-12, resolution / rtol)
    rows, vacuous = [], []
    total = sum(i.size for i in plan.values())
    with tqdm(
        total=total, desc="gradcheck", unit="entry", disable=None, leave=False, delay=2.0
    ) as bar:
        for name, value in targets.items():
            idx = plan[name]
            numeric = numerical_gradient(loss_at(value), value, eps, indices=idx, bar=bar)
            numeric = numeric.reshape(-1)[idx]
            a = analytic[name].reshape(-1)[idx].astype(np.float64)
            err = np.abs(a - numeric)
            rel = err / np.maximum(np.abs(a) + np.abs(numeric), floor)
            w = int(np.argmax(rel))
            worst = tuple(int(i) for i in np.unravel_index(idx[w], value.shape))
            ok = bool(rel[w] < rtol)
            rows.append(
                Row(name, value.shape, idx.size, err.max(), rel[w], worst, a[w], numeric[w], ok)
            )
            if not a.any() and not numeric.any():
                vacuous.append(name)
    return rows, vacuous


def _extra_checks(module, inputs, dys, analytic, resolution):
    """Checks beyond the rows: [(what, ok)]."""
    module.forward(*inputs)
    zero = as_tuple(module.backward(*(np.zeros_like(dy) for dy in dys)))
    zero_ok = not any(z.any() for z in zero) and not any(g.any() for g in module.grads.values())
    first = as_tuple(module.backward(*dys))
    first_grads = {k: v.copy() for k, v in module.grads.items()}
    second = as_tuple(module.backward(*dys))
    same = all(np.array_equal(a, b) for a, b in zip(first, second, strict=True)) and all(
        np.array_equal(first_grads[k], module.grads[k]) for k in first_grads
    )
    # the check means something only if finite differences resolve the gradients at all
    largest = max(float(np.abs(g).max()) for g in analytic.values())
    return [
        (
            f"finite differences resolve the gradients (resolution {resolution:.1e} < 1e-3 x "
            f"largest gradient {largest:.2g})",
            resolution < 1e-3 * largest,
        ),
        ("zero upstream gradient gives zero gradients", zero_ok),
        ("a second backward gives identical gradients", same),
    ]
