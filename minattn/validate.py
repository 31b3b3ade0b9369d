"""Taking arguments at the public boundary: clear errors instead of silent wrong results.

Every ``validate_*`` message names the argument, what was received and what was expected.
`as_tuple` is the one place that turns "an array, or a tuple of arrays" into a tuple.
"""

import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def validate_dtype(dtype, name="dtype"):
    """Return ``dtype`` as np.float32 or np.float64, or raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{name} must be np.float32 or np.float64, got {dtype!r}") from e
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be np.float32 or np.float64, got {dt}")
    return dt


def validate_positive_int(value, name, minimum=1):
    """An int >= minimum (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def validate_seed(seed):
    """None, an int >= 0 or a np.random.Generator (what np.random.default_rng takes)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise TypeError(f"seed must be None, an int >= 0 or a np.random.Generator, got {seed!r}")
    return seed


def validate_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def validate_array(x, name, ndim=None, dtype=None):
    """A finite float ndarray of ``ndim`` dimensions and, if given, exactly ``dtype``.

    Returns ``x`` itself (never a modified copy): callers must not write into it.
    """
    if not isinstance(x, np.ndarray):
        target = np.dtype(np.float64 if dtype is None else dtype).name
        raise TypeError(
            f"{name} must be a numpy.ndarray, got {type(x).__name__}; "
            f"convert it with np.asarray({name}, dtype=np.{target})"
        )
    if x.dtype not in FLOAT_DTYPES:
        kind = "complex" if np.iscomplexobj(x) else "non-floating"
        raise TypeError(
            f"{name} must be a float32 or float64 array, got {kind} dtype {x.dtype}; "
            f"convert it, e.g. {name}.astype(np.float64)"
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the module computes in {np.dtype(dtype)}; "
            f"pass {name}.astype(np.{np.dtype(dtype).name}) or build the module with "
            f"dtype=np.{x.dtype.name}"
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape} ({x.ndim}-D)")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if not np.isfinite(x).all():
        n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values; expected finite numbers"
        )
    return x


def validate_feature_map(x, in_dim, ds, dtype):
    """x must be (B, in_dim, H, W) with H and W multiples of ds."""
    validate_array(x, "x", ndim=4, dtype=dtype)
    B, C, H, W = x.shape
    if C != in_dim:
        raise ValueError(
            f"x has {C} channels (shape {x.shape}) but the module was built with in_dim={in_dim}; "
            f"expected shape (B, {in_dim}, H, W)"
        )
    for axis, size in (("H", H), ("W", W)):
        if size % ds:
            lo, hi = (size // ds) * ds, (size // ds + 1) * ds
            valid = f"{lo} or {hi}" if lo > 0 else f"{hi}"
            raise ValueError(
                f"x has {axis}={size} (shape {x.shape}), which is not a multiple of ds={ds}: "
                f"the pooled map would not resize back to the input. Use {axis}={valid} "
                f"(crop or pad x), or a ds that divides {size}"
            )
    return x


def validate_shapes(**arrays):
    """Check arrays against named axes, e.g. ``validate_shapes(q=(q, "B Ck N"), k=(k, "B Ck N"))``.

    Each argument must be an ndarray with one axis per name; an axis name used more than
    once must have one size, and a number must match exactly. Returns {axis name: size}.
    """
    dims = {}
    for name, (a, spec) in arrays.items():
        axes = spec.split()
        want = f"({', '.join(axes)})"
        if not isinstance(a, np.ndarray):
            raise TypeError(
                f"{name} must be a numpy.ndarray of shape {want}, got {type(a).__name__}"
            )
        if a.ndim != len(axes):
            raise ValueError(f"{name} must have shape {want}, got shape {a.shape} ({a.ndim}-D)")
        for axis, size in zip(axes, a.shape, strict=True):
            expected = int(axis) if axis.isdigit() else dims.setdefault(axis, size)
            if size != expected:
                known = ", ".join(f"{k}={v}" for k, v in dims.items() if not k.isdigit())
                raise ValueError(
                    f"{name} has shape {a.shape} but must have shape {want} with {axis}={expected}"
                    + (f" (from the other arguments: {known})" if known else "")
                )
    return dims


def as_tuple(value):
    """``value`` if it is a tuple, else ``(value,)``.

    A step's backward and a module's forward/backward return a bare array when there is one
    result and a tuple when there are several; code that handles both goes through here.
    """
    return value if isinstance(value, tuple) else (value,)
