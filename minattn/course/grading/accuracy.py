"""How a hidden test judges a returned array: by its error, not by agreement with our rounding.

Two correct formulas for the same step (a softmax through ``exp(x - max)`` or through
``exp(x - logsumexp(x))``, a sum in another order, an einsum instead of a matmul) round
differently, so neither can promise to reproduce the other's last digits. The hidden tests
therefore compare each returned entry ``y`` with the *truth* ``t``: the same mathematics on
the same inputs, evaluated in extended precision (`EXACT`), and allow what rounding in the
tested dtype can do to a correct formula:

    |y - t|  <=  (u + u_ref) * budget  +  floor

``u``       the unit roundoff of the dtype under test (2**-53 in float64, 2**-24 in float32):
            one rounding moves a number by at most u relative to itself.
``u_ref``   the truth's own unit roundoff: 2**-64 where ``np.longdouble`` is x87 extended
            precision (x86-64 Linux); where it is plain float64, u_ref = u and the allowance
            doubles, so the truth's rounding never counts against the student.
``budget``  per entry, ``k * m`` (each hidden test builds it next to its step): ``m`` is the
            size of the terms that make the entry (the step run on absolute values: for
            ``y = sum_j a_j b_j`` it is ``sum_j |a_j| |b_j|``), and ``k = rounds(n)`` the number
            of roundings one entry may collect in a step that sums ``n`` terms.
``floor``   a few times the dtype's smallest normal number, so an entry that underflows to 0
            (a softmax weight of exp(-800)) is not an error.

The budget is in terms of ``m``, not of ``|y|``: a gradient entry that is the difference of
large terms may be wrong in its first digit and still be right to rounding, while an entry
whose terms do not cancel must agree to about ``k u`` relative. A wrong step (a transposed
product, a missing factor, one entry off by 0.1%) is off by many orders of magnitude more.
"""

import numpy as np

from .tools import Fail, fmt_index

EXACT = np.longdouble  # the truth's dtype


def unit_roundoff(dtype):
    """u: half the distance from 1 to the next number of ``dtype``."""
    return float(np.finfo(dtype).eps) / 2


U_REF = unit_roundoff(EXACT)


def rounds(n):
    """How many roundings (in units of u times the terms' size) an entry may collect in a
    step that sums ``n`` terms: any order of summation stays within ``n u`` (Higham's gamma_n,
    to first order); twice that, plus four roundings for what surrounds the sum (a bias, a
    scale, a division, a cast), so other correct formulas fit too."""
    return 2 * (int(n) + 4)


def exact(obj):
    """``obj`` with every floating array converted to `EXACT` (tuples, lists, dicts inside)."""
    if isinstance(obj, np.ndarray) and np.issubdtype(obj.dtype, np.floating):
        return obj.astype(EXACT)
    if isinstance(obj, tuple | list):
        return type(obj)(exact(o) for o in obj)
    if isinstance(obj, dict):
        return {k: exact(v) for k, v in obj.items()}
    return obj


def absolute(obj):
    """``obj`` with every array and float replaced by its absolute value, for the terms' size.

    Integers (ds, shapes) and strings (a mode) stay as they are.
    """
    if isinstance(obj, np.ndarray) and np.issubdtype(obj.dtype, np.floating):
        return np.abs(obj)
    if isinstance(obj, float | np.floating):
        return abs(obj)
    if isinstance(obj, tuple | list):
        return type(obj)(absolute(o) for o in obj)
    if isinstance(obj, dict):
        return {k: absolute(v) for k, v in obj.items()}
    return obj


def as_array(got, shape, dtype, *, name, where=""):
    """The student's array, after the checks that need no numbers: type, shape, dtype."""
    if got is None:
        raise Fail(f"{name}: yours is None{where}")
    if not isinstance(got, np.ndarray | np.generic):
        raise Fail(f"{name}: yours is a {type(got).__name__}, expected a NumPy array{where}")
    got = np.asarray(got)
    if got.shape != tuple(shape):
        raise Fail(f"{name}: yours has shape {got.shape}, expected {tuple(shape)}{where}")
    if dtype is not None and got.dtype != np.dtype(dtype):
        raise Fail(f"{name}: yours has dtype {got.dtype}, expected {np.dtype(dtype)}{where}")
    real = np.issubdtype(got.dtype, np.floating) or np.issubdtype(got.dtype, np.integer)
    if got.size and not real:
        raise Fail(f"{name}: yours has dtype {got.dtype}, expected numbers{where}")
    return got


def allowance(budget, dtype):
    """The largest error rounding can explain, entry by entry (see the module docstring)."""
    floor = 16 * float(np.finfo(dtype).tiny)
    return (unit_roundoff(dtype) + U_REF) * np.asarray(budget, dtype=np.float64) + floor


def expect_close(got, truth, budget, *, name, dtype, where="", check_dtype=True):
    """Every entry of ``got`` within rounding of ``truth``; else `Fail` at the worst entry.

    truth: the `EXACT` result; budget: k * m per entry (broadcastable to truth); dtype: the
    dtype the computation ran in (and, with check_dtype, the dtype ``got`` must have).
    Returns the largest error as a share of what rounding allows (0 to 1).
    """
    got = as_array(got, truth.shape, dtype if check_dtype else None, name=name, where=where)
    if got.size == 0:
        return 0.0
    diff = np.abs(got.astype(EXACT) - truth).astype(np.float64)
    allowed = np.broadcast_to(allowance(budget, dtype), diff.shape)
    excess = np.where(np.isfinite(got), diff / allowed, np.inf)
    worst = np.unravel_index(int(np.argmax(excess)), got.shape)
    if not excess[worst] <= 1:
        g, t = float(got[worst]), float(truth[worst])
        raise Fail(
            f"{name} at index {fmt_index(worst)}: yours {g:+.6e}, expected {t:+.6e}, "
            f"off by {abs(g - t):.1e} where rounding allows {allowed[worst]:.1e}{where}"
        )
    return float(excess[worst])


def expect_close_in_norm(got, truth, budget, *, name, dtype, where=""):
    """``got`` within rounding of ``truth`` in the 2-norm: ``|got - truth| <= |allowance|``.

    For results whose entries need not each be accurate (a backward pass fed an output that
    is right to rounding): the norm is what a gradient step sees. The dtype is not checked.
    """
    got = as_array(got, truth.shape, None, name=name, where=where)
    if got.size == 0:
        return 0.0
    if not np.isfinite(got).all():
        worst = np.unravel_index(int(np.argmax(~np.isfinite(got))), got.shape)
        raise Fail(f"{name} at index {fmt_index(worst)}: yours {float(got[worst])}{where}")
    diff = np.abs(got.astype(EXACT) - truth).astype(np.float64)
    allowed = np.broadcast_to(allowance(budget, dtype), diff.shape)
    off, allows = float(np.linalg.norm(diff)), float(np.linalg.norm(allowed))
    if not off <= allows:
        worst = np.unravel_index(int(np.argmax(diff)), got.shape)
        raise Fail(
            f"{name} is off by {off:.1e} in norm where rounding allows {allows:.1e}; the "
            f"largest difference at index {fmt_index(worst)}: yours {float(got[worst]):+.6e}, "
            f"expected {float(truth[worst]):+.6e}{where}"
        )
    return off / allows if allows else 0.0


def share(ratio):
    """The "ok" detail of a values part: the largest error as a share of what rounding allows."""
    if ratio == 0:
        return "exact in every case"
    return f"largest error {100 * ratio:.2g}% of what rounding allows"
