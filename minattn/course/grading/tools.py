"""What every hidden test uses: calling a student's function safely, and comparing arrays.

A hidden test either returns (its part of the exercise passed) or raises `Fail` with
one line of feedback that names the first wrong intermediate, the worst index and the
two values there. Tolerances are tight on purpose: a 0.1% error in any element of
any returned array must fail.

    float64   |yours - expected| <= 1e-6 |expected| + 1e-9 max|expected|
    float32   |yours - expected| <= 1e-4 |expected| + 1e-5 max|expected|

The absolute term is relative to the whole array, so an element that is the result of
a cancellation (a softmax gradient near 0) does not fail on rounding, while an error
of 1e-3 relative to any element larger than 1e-6 of the array's scale does.
"""

import contextlib

import numpy as np

TOLERANCES = {np.dtype(np.float64): (1e-6, 1e-9), np.dtype(np.float32): (1e-4, 1e-5)}


class Fail(Exception):
    """A hidden test failed; ``str(e)`` is the one-line feedback."""


class UsedPackage(Exception):
    """The student's function called the package's own implementation."""


def tolerances(dtype):
    return TOLERANCES.get(np.dtype(dtype), TOLERANCES[np.dtype(np.float64)])


def fmt_index(index):
    return "(" + ", ".join(str(int(i)) for i in index) + ")"


def call(function, *args, name=None, where=""):
    """Call a student's function; any exception becomes a `Fail` naming it."""
    name = name or getattr(function, "__name__", "your function")
    try:
        return function(*args)
    except UsedPackage:
        raise
    except NotImplementedError:
        raise Fail(f"{name} is not written yet (it raises NotImplementedError)") from None
    except RecursionError:
        raise Fail(f"{name} recursed without end{where}") from None
    except Exception as e:  # the student's error, whatever it is, costs this exercise only
        message = str(e).splitlines()[0][:160] if str(e) else ""
        raise Fail(f"{name} raised {type(e).__name__}: {message}{where}") from None


def as_tuple(result, n, name, what="arrays"):
    """The student's result as a tuple of n entries (a single array when n == 1)."""
    if n == 1:
        if isinstance(result, tuple | list) and len(result) == 1:
            return (result[0],)
        return (result,)
    if not isinstance(result, tuple | list):
        raise Fail(f"{name} must return a tuple of {n} {what}, got {type(result).__name__}")
    if len(result) != n:
        raise Fail(f"{name} must return {n} {what}, got {len(result)}")
    return tuple(result)


def expect_array(got, expected, *, name, where="", dtype=None, validate_dtype=True, scale=0.0):
    """Compare one returned array with the expected one; raise `Fail` on any difference.

    name: what the array is ("dkey, the 2nd array softmax_backward returns").
    where: the case, e.g. " (float64, B=2, N=12)". dtype: the dtype the result must
    have (default: expected's). scale: a floor for the array's scale, for an array that
    is zero by mathematics (the key bias's gradient: rounding noise around 0, whose
    right size is that of the terms summed into it). Returns the largest error relative
    to the array's scale.
    """
    if got is None:
        raise Fail(f"{name}: yours is None{where}")
    if not isinstance(got, np.ndarray | np.generic):
        raise Fail(f"{name}: yours is a {type(got).__name__}, expected a NumPy array{where}")
    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        raise Fail(f"{name}: yours has shape {got.shape}, expected {expected.shape}{where}")
    want = np.dtype(dtype if dtype is not None else expected.dtype)
    if validate_dtype and got.dtype != want:
        raise Fail(f"{name}: yours has dtype {got.dtype}, expected {want}{where}")
    if got.size == 0:
        return 0.0
    if not np.issubdtype(got.dtype, np.number):
        raise Fail(f"{name}: yours has dtype {got.dtype}, expected numbers{where}")
    rtol, atol = tolerances(want)
    g = got.astype(np.float64)
    e = expected.astype(np.float64)
    scale = max(float(np.max(np.abs(e))), float(scale), 1e-300)
    diff = np.abs(g - e)
    allowed = rtol * np.abs(e) + atol * scale
    bad = ~np.isfinite(g) | (diff > allowed)
    if bad.any():
        excess = np.where(np.isfinite(g), diff / allowed, np.inf)
        worst = np.unravel_index(int(np.argmax(excess)), g.shape)
        raise Fail(
            f"{name} at index {fmt_index(worst)}: yours {g[worst]:+.6e}, "
            f"expected {e[worst]:+.6e}{where}"
        )
    return float(np.max(diff) / scale)


def readonly(a):
    """A read-only, non-contiguous copy of ``a``: same values, same dtype, strided memory.

    The copy is every other element of a buffer twice as long in the last axis, so code
    that assumes C-contiguous memory (``a.ravel()`` as a view, in-place ``+=``) is caught.
    """
    a = np.asarray(a)
    if a.ndim == 0:
        b = a.copy()
    else:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        b = big[..., ::2]
    b.flags.writeable = False
    return b


def frozen(obj):
    """``obj`` (an array, or a tuple/list/dict holding arrays) with every array read-only."""
    if isinstance(obj, np.ndarray):
        return readonly(obj)
    if isinstance(obj, tuple):
        return tuple(frozen(o) for o in obj)
    if isinstance(obj, list):
        return [frozen(o) for o in obj]
    if isinstance(obj, dict):
        return {k: frozen(v) for k, v in obj.items()}
    return obj


def snapshot(obj):
    """Deep copies of every array in ``obj``, to check later that nothing was modified."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, tuple | list):
        return type(obj)(snapshot(o) for o in obj)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    return obj


def unchanged(before, after):
    """True if every array of ``after`` equals its snapshot ``before``, bit for bit."""
    if isinstance(before, np.ndarray):
        return np.array_equal(before, after, equal_nan=True)
    if isinstance(before, tuple | list):
        return all(unchanged(b, a) for b, a in zip(before, after, strict=True))
    if isinstance(before, dict):
        return all(unchanged(before[k], after[k]) for k in before)
    return True


@contextlib.contextmanager
def forbidding(names):
    """Inside the block, the package's own functions ``names`` raise `UsedPackage`.

    Wraps every call of a student's function in the grader, so a solution that calls the
    package's implementation (under any alias bound at call time) is caught.
    """
    from ...ops import resize, steps
    from ...ops.reference import resize as ref_resize
    from ...ops.reference import steps as ref_steps

    modules = [steps, resize, ref_steps, ref_resize]
    with contextlib.suppress(ImportError):
        from ...ops import layers

        modules.append(layers)
    with contextlib.suppress(ImportError):
        from ...ops.reference import layers as ref_layers

        modules.append(ref_layers)
    saved = []
    for module in modules:
        for name in names:
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, _raiser(f"{module.__name__}.{name}"))
    try:
        yield
    finally:
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def _raiser(qualified):
    def refuse(*args, **kwargs):
        raise UsedPackage(qualified)

    return refuse


def guard(function, names):
    """``function`` wrapped so that calling the package's ``names`` inside it is caught."""
    if not names:
        return function

    def guarded(*args, **kwargs):
        with forbidding(names):
            return function(*args, **kwargs)

    guarded.__name__ = getattr(function, "__name__", "function")
    guarded.__wrapped__ = function
    return guarded
