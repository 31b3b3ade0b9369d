"""``compare_steps``: which step of a forward and backward pass went wrong?

A gradient check says *that* a backward pass is wrong; this says *where*. The module
runs twice on the same input and upstream gradient, once with the package's step
functions and once with some of them replaced by your own, and every intermediate
of both runs (each step's output, by the step's name) is compared in order, like
the ``cmp`` of makemore's "backprop ninja" exercise, but for the whole chain.
"""

import copy
from dataclasses import dataclass

import numpy as np

from ..backend import ops_for
from ..validate import as_tuple


@dataclass
class StepRow:
    name: str
    shape: tuple
    exact: bool
    close: bool
    max_abs: float
    worst: tuple = ()  # index of the largest difference, and the two values there
    expected: float = 0.0
    got: float = 0.0


@dataclass
class CompareReport:
    """Every intermediate of both runs, in computation order."""

    rows: list
    rtol: float
    replaced: tuple

    @property
    def ok(self):
        return all(r.close for r in self.rows)

    @property
    def first_mismatch(self):
        """Name of the first intermediate that differs (it names the step's function), or None."""
        return next((r.name for r in self.rows if not r.close), None)

    @property
    def first_mismatch_row(self):
        return next((r for r in self.rows if not r.close), None)

    def __str__(self):
        head = ("name", "shape", "exact", "close", "max abs diff")
        lines = [
            (
                r.name,
                "x".join(map(str, r.shape)),
                "yes" if r.exact else "no",
                "yes" if r.close else "NO",
                f"{r.max_abs:.2e}",
            )
            for r in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]

        def fmt(cells):
            return "  ".join(c.ljust(wd) for c, wd in zip(cells, widths, strict=True)).rstrip()

        replaced = ", ".join(self.replaced) or "nothing"
        out = [f"compare_steps: your {replaced} against the package's (close: {self.rtol:g} rel.)"]
        out += [fmt(head), fmt(["-" * wd for wd in widths]), *map(fmt, lines)]
        bad = self.first_mismatch_row
        if bad is None:
            out.append("ok: every intermediate matches")
        else:
            out.append(
                f"first mismatch: {bad.name} at index {bad.worst}: expected {bad.expected:+.6e}, "
                f"got {bad.got:+.6e}"
            )
        return "\n".join(out)


def compare_steps(module, x, replace=None, dy=None, *, rtol=None, seed=0):
    """Run ``module`` forward and backward twice, the second time with ``replace``'s functions.

    module: any minattn module. x: its input, or a tuple of inputs (CDSA's x1, x2).
    replace: {step function name: your function}, e.g. {"softmax_backward": my_fn}; the
        names are those of ``module.ops.step_names()``.
    dy: the upstream gradient (a tuple for several outputs); default a seeded random one.
    rtol: what counts as close (default 1e-10 in float64, 1e-5 in float32).
    Returns a `CompareReport`. Both runs go step by step: on the numba backend the
    streaming kernel is replaced by the steps it fuses, so each of them can be compared.
    Neither ``module`` nor ``x`` is changed.
    """
    replace = dict(replace or {})
    inputs = as_tuple(x)
    ops = ops_for(module.backend, fused=False)
    valid = ops.step_names()
    unknown = sorted(set(replace) - set(valid))
    if unknown:
        raise ValueError(f"replace names unknown step functions {unknown}; valid names: {valid}")
    for name, f in replace.items():
        if not callable(f):
            raise TypeError(f"replace[{name!r}] must be a function, got {type(f).__name__}")
    if rtol is None:
        rtol = 1e-10 if module.dtype == np.float64 else 1e-5

    def run(step_functions):
        m = copy.deepcopy(module)  # BatchNorm's running statistics must not move twice
        _set_ops(m, step_functions)
        records = []
        outputs = m.forward(*inputs, trace=lambda name, a: records.append((name, np.copy(a))))
        outputs = as_tuple(outputs)
        douts = dy if dy is not None else _random_like(outputs, seed)
        douts = as_tuple(douts)
        m.backward(*douts, trace=lambda name, a: records.append((name, np.copy(a))))
        return records

    expected = run(ops)
    got = run(_replaced(ops, replace))
    # An array that is zero in exact arithmetic (the key-bias gradient) holds rounding noise
    # of the size of the numbers that cancelled in it, so "close" has a floor: a millionth
    # of the largest intermediate, times rtol.
    floor = 1e-6 * max(float(np.abs(a).max(initial=0.0)) for _, a in expected)
    rows = [
        _compare(name, a, b, rtol, floor) for (name, a), (_, b) in zip(expected, got, strict=False)
    ]
    if len(expected) != len(got) or any(e[0] != g[0] for e, g in zip(expected, got, strict=False)):
        rows.append(StepRow("(the two runs called different steps)", (), False, False, np.inf))
    return CompareReport(rows, rtol, tuple(sorted(replace)))


def _replaced(ops, replace):
    new = copy.copy(ops)
    for name, f in replace.items():
        setattr(new, name, f)
    return new


def _set_ops(module, ops):
    module.ops = ops
    for child in module.children:
        _set_ops(child, ops)


def _random_like(outputs, seed):
    rng = np.random.default_rng([seed, 2])
    douts = tuple(rng.standard_normal(y.shape).astype(y.dtype) for y in outputs)
    return douts if len(douts) > 1 else douts[0]


def _compare(name, expected, got, rtol, floor):
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return StepRow(name, got.shape, False, False, np.inf)
    diff = np.abs(expected.astype(np.float64) - got.astype(np.float64))
    if diff.size == 0:
        return StepRow(name, got.shape, True, True, 0.0)
    diff = np.where(np.isnan(diff), np.inf, diff)
    w = np.unravel_index(int(np.argmax(diff)), diff.shape)
    max_abs = float(diff[w])
    return StepRow(
        name,
        got.shape,
        bool(np.array_equal(expected, got)),
        max_abs <= rtol * max(float(np.abs(expected).max()), floor),
        max_abs,
        tuple(int(i) for i in w),
        float(expected[w]),
        float(got[w]),
    )
