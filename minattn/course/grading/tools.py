"""What every hidden test uses: calling a student's function safely, and its inputs.

A hidden test either returns (its part of the exercise passed) or raises `Fail` with
one line of feedback that names the first wrong intermediate, the worst index and the
two values there. How returned numbers are judged (by their error, within what rounding
allows) is `minattn.course.grading.accuracy`.
"""

import contextlib
import tracemalloc

import numpy as np


class Fail(Exception):
    """A hidden test failed; ``str(e)`` is the one-line feedback."""


class UsedPackage(Exception):
    """The student's function called the package's own implementation."""


class StudentError(Exception):
    """An exception raised by the student's code in the isolated process, as data."""

    def __init__(self, type_name, message):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message = type_name, message


class OutOfTime(BaseException):  # noqa: N818 -- a BaseException: no `except Exception` eats it
    """The student's functions used up the exercise's time budget."""


class OverMemory(Fail):
    """The student's function needed more memory than the cap it was called with."""


def fmt_index(index):
    return "(" + ", ".join(str(int(i)) for i in index) + ")"


def call(function, *args, name=None, where=""):
    """Call a student's function; any exception becomes a `Fail` naming it.

    ``function`` is the student's own (``check`` in a notebook) or a proxy that runs it in
    the isolated process (``minattn grade``), whose exceptions arrive as `StudentError`.
    """
    name = name or getattr(function, "__name__", "your function")
    try:
        return function(*args)
    except (UsedPackage, OverMemory):
        raise
    except Exception as e:  # the student's error, whatever it is, costs this exercise only
        raise _failure(e, name, where) from None


def _failure(e, name, where):
    kind, message = (e.type_name, e.message) if isinstance(e, StudentError) else (
        type(e).__name__, str(e))  # fmt: skip
    if kind == "NotImplementedError":
        return Fail(f"{name} is not written yet (it raises NotImplementedError)")
    if kind == "RecursionError":
        return Fail(f"{name} recursed without end{where}")
    limit = 400 if isinstance(e, StudentError) else 160
    message = message.splitlines()[0][:limit] if message else ""
    return Fail(f"{name} raised {kind}: {message}{where}")


def call_with_memory_cap(function, args, cap_bytes, *, name=None, where=""):
    """Call a student's function that may use at most ``cap_bytes`` more memory; its result.

    Raises `OverMemory` if it needs more, `Fail` for anything else it raises. A proxy runs
    the call in a fresh isolated process whose address space the kernel limits (so the
    time is the student's alone); a local function is measured with tracemalloc, in a
    call of its own.
    """
    name = name or getattr(function, "__name__", "your function")
    over = OverMemory(f"{name} needs more than {cap_bytes / 2**20:.1f} MiB{where}")
    # a proxy, possibly inside `guard`'s wrapper
    capped = getattr(getattr(function, "__wrapped__", function), "with_memory_cap", None)
    if capped is not None:
        try:
            return capped(cap_bytes)(*args)
        except StudentError as e:
            if e.type_name in ("MemoryError", "ProcessDied"):
                raise over from None
            raise _failure(e, name, where) from None
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = call(function, *args, name=name, where=where)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if peak > cap_bytes:
        raise over
    return result


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
    from ...ops import layers, reference, resize, steps

    modules = [steps, resize, layers, reference.steps, reference.resize, reference.layers]
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
