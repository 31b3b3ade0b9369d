"""What rounding can do to a correct step: the error budget of every step function.

A budget is ``k * m`` per entry of a result (see `accuracy`): ``m`` the size of the terms
the entry is made of, ``k = rounds(n)`` for a step that sums ``n`` terms per entry. Most
steps are sums of products of their inputs with non-negative constants (a matmul, a mean,
a resize, a reshape), and for those ``m`` is the step itself run on absolute values:
``|q|^T |k|`` for the energy. The softmax and its backward are the exceptions; their
reasoning is written next to them.

``forward_budget(name, args)`` and ``backward_budget(name, dout, cache)`` return the budget
of each array the step returns (a tuple for a backward step, None where it returns None).
"""

import numpy as np

from ...ops import resize, steps
from .accuracy import absolute, rounds

STEP_FUNCTIONS = {
    name: getattr(module, name)
    for module in (steps, resize)
    for name in vars(module)
    if name.endswith(("_forward", "_backward"))
}  # the package's step functions, bound at import (a later patch cannot move them)


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _on_absolute(name, *args):
    """The step run on the inputs' absolute values: the size of every entry's terms."""
    result = STEP_FUNCTIONS[name](*absolute(args))
    return result[0] if name.endswith("_forward") else result


# n, the number of terms one entry sums, for the steps whose m is the step on |inputs|
FAN_IN = {
    "conv1x1_forward": lambda x, w, b: w.shape[1] + 1,  # C_in products and the bias
    "flatten_forward": lambda x: 0,  # a reshape is exact
    "energy_forward": lambda q, k: q.shape[1],  # Ck products
    "scale_forward": lambda e, s: 1,
    "weighted_sum_forward": lambda v, a: a.shape[-1],  # N products
    "unflatten_forward": lambda x, h, w: 0,
    "residual_forward": lambda x, f, gamma: 1,  # a product and a sum
    "upsample_forward": lambda x, ds, mode: 0,  # nearest: a copy (bilinear: below)
    "residual_backward": lambda d, c: d.size,  # dgamma sums dout * f over every entry
    "unflatten_backward": lambda d, c: 0,
    "weighted_sum_backward": lambda d, c: d.shape[1] + d.shape[2],  # C or N products
    "scale_backward": lambda d, c: 1,
    "energy_backward": lambda d, c: d.shape[-1],  # N products
    "flatten_backward": lambda d, c: 0,
    # dweight and dbias sum over every image and pixel, dx over C_out
    "conv1x1_backward": lambda d, c: d.shape[0] * d.shape[2] * d.shape[3] + d.shape[1],
    "avg_pool_backward": lambda d, c: 2,  # a division by ds^2 (or two by ds), a copy
}


def forward_budget(name, args):
    """The budget of a forward step's output, for the inputs ``args``."""
    if name == "softmax_forward":
        return softmax_forward_budget(*args)
    if name == "avg_pool_forward":
        return avg_pool_forward_budget(*args)
    if name == "upsample_forward" and args[2] == "bilinear":
        return _bilinear_factor(*args[0].shape[2:], args[1]) * _on_absolute(name, *args)
    return rounds(FAN_IN[name](*args)) * _on_absolute(name, *args)


def backward_budget(name, dout, cache):
    """The budgets of a backward step's gradients, for ``dout`` and ``cache``."""
    if name == "softmax_backward":
        return (softmax_backward_budget(dout, cache),)
    if name == "upsample_backward":
        ds, mode, _ = cache
        h, w = dout.shape[2] // ds, dout.shape[3] // ds
        k = rounds(ds * ds) if mode == "nearest" else _bilinear_factor(h, w, ds)
        return (k * _on_absolute(name, dout, cache),)
    k = rounds(FAN_IN[name](dout, cache))
    return tuple(None if m is None else k * m for m in _tuple(_on_absolute(name, dout, cache)))


def avg_pool_forward_budget(x, ds):
    """A block's mean sums ds^2 values; but pooling by prefix sums (an integral image, four
    corners per block) is correct too, and its error is that of the prefix sums, each up to
    the whole plane's sum of |x| and rounded H + W times on the way. The budget holds both:
    ``rounds(ds^2)`` times the block's mean |x|, plus ``rounds(H + W)`` times the plane's
    sum of |x| over ds^2 (still about 1e-13 of the entries in float64)."""
    size = np.abs(np.asarray(x, dtype=np.float64))
    plane = size.sum(axis=(2, 3), keepdims=True) / ds**2
    H, W = x.shape[2:]
    return rounds(ds * ds) * _on_absolute("avg_pool_forward", x, ds) + rounds(H + W) * plane


def bilinear_matrix_budget(n_in):
    """Every weight is 1 - f or f, with f = s - floor(s) and s = (o + 0.5) / ds - 0.5 at most
    n_in: rounding s costs up to u n_in absolute, whatever formula finds the two
    neighbours. The budget is absolute (m = 1 for every entry, the size of a weight)."""
    return rounds(n_in)


def _bilinear_factor(h, w, ds):
    """k of a bilinear resize, out = Mh x Mw^T: the two products sum h + w terms; and the
    matrices are the student's own, each nonzero weight (at least 1 / (2 ds)) within
    ``rounds(n) u`` of the exact one, that is within ``2 ds rounds(n) u`` of itself."""
    return rounds(h + w) + 4 * ds * (rounds(h) + rounds(w))


def softmax_forward_budget(energy):
    """The softmax, A_j = exp(x_j - c) / sum_l exp(x_l - c) for a shift c in the row's range
    (the row max; or the log-sum-exp, a textbook-stable variant): rounding x_j - c moves the
    exponent by u |x_j - c| <= u (|x_j - max| + max|x|), and exp turns that absolute error
    into a relative one; the shift itself, when computed (log-sum-exp), is off by
    u max|x| more; the sum of N positive terms adds N u relative. So A_j is within
    ``u A_j (rounds(N) + 2 (|x_j - max| + max|x|))``, and the budget doubles the second
    term: with energies in the hundreds, about 4000 u relative, still 5e-13 in float64."""
    x = np.asarray(energy, dtype=np.float64)
    top = x.max(axis=-1, keepdims=True)
    a = np.exp(x - top)
    a /= a.sum(axis=-1, keepdims=True)
    size = np.abs(x).max(axis=-1, keepdims=True)
    return a * (rounds(x.shape[-1]) + 4 * (np.abs(x - top) + size))


def softmax_backward_budget(dout, attention):
    """The budget of the softmax's backward: ``rounds(N)`` times `softmax_backward_size`."""
    return rounds(np.shape(attention)[-1]) * softmax_backward_size(dout, attention)


def softmax_backward_size(dout, attention):
    """dS_j = A_j (dA_j - sum_l dA_l A_l): the row sum has N products of size |dA_l| A_l,
    and every formula (this one, A dA - A (A . dA), the Jacobian applied by einsum) sums
    the same terms, so m_j = A_j (|dA_j| + sum_l |dA_l| A_l). Where dA_j is close to the
    row sum (the largest weight of a peaked row) dS_j is a cancellation, far smaller than
    m_j, and only its size relative to m_j means anything."""
    a = np.abs(np.asarray(attention, dtype=np.float64))
    d = np.abs(np.asarray(dout, dtype=np.float64))
    return a * (d + (d * a).sum(axis=-1, keepdims=True))
