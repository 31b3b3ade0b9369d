"""Losses with manual backward passes, in the CS231n layer style.

Each loss is a pair ``*_forward(...) -> (loss, cache)`` and ``*_backward(dloss, cache) ->
dinput``, plus a one-call ``*_loss(...) -> (loss, dinput)`` for training loops. Every loss
is a mean, as PyTorch's default ``reduction="mean"``, so the losses (and their gradients)
equal PyTorch's to rounding:

    mse_forward                   F.mse_loss(pred, target)
    bce_with_logits_forward       F.binary_cross_entropy_with_logits(logits, target)
    contrastive_forward           STANet's batch-balanced contrastive loss (models/loss.py)

The loss is a Python float; ``dloss`` (the upstream gradient, 1.0 for the final loss) is
a number. Inputs are never modified.
"""

import numbers

import numpy as np

from ..validate import validate_array

# STANet adds this to both class counts, so a batch without changed (or without
# unchanged) pixels divides by a small number instead of zero
BCL_COUNT_EPS = 1e-4


def _validate_matching(a, a_name, b, b_name):
    validate_array(a, a_name)
    validate_array(b, b_name)
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got {a.shape} and {b.shape}"
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"{a_name} and {b_name} must have the same dtype, got {a.dtype} and {b.dtype}"
        )


def _validate_dloss(dloss):
    if isinstance(dloss, bool) or not isinstance(dloss, numbers.Real) or not np.isfinite(dloss):
        raise TypeError(f"dloss must be a finite number (1.0 for the final loss), got {dloss!r}")
    return float(dloss)


# ---------------------------------------------------------------- mean squared error


def mse_forward(pred, target):
    """L = mean((pred - target)^2). pred, target: any shape, same shape and dtype."""
    _validate_matching(pred, "pred", target, "target")
    diff = pred - target
    return float(np.mean(diff * diff)), (diff,)


def mse_backward(dloss, cache):
    """dloss: number -> dpred = dloss * 2 (pred - target) / n, pred's shape."""
    (diff,) = cache
    return diff * (2.0 * _validate_dloss(dloss) / diff.size)


def mse_loss(pred, target):
    """(loss, dloss/dpred)."""
    loss, cache = mse_forward(pred, target)
    return loss, mse_backward(1.0, cache)


# ---------------------------------------------------------------- binary cross-entropy


def bce_with_logits_forward(logits, target):
    """L = mean(-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))), z = logits, t = target.

    Written as max(z, 0) - z t + log(1 + exp(-|z|)), which is the same function but never
    takes exp of a large positive number, so logits of +-1000 give finite losses and
    gradients (the naive form gives log(0) = -inf). target in [0, 1], same shape as logits.
    """
    _validate_matching(logits, "logits", target, "target")
    if target.min() < 0 or target.max() > 1:
        raise ValueError(
            f"target must lie in [0, 1] (probabilities of class 1), got values in "
            f"[{target.min():.3g}, {target.max():.3g}]"
        )
    z = logits
    per = np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))
    return float(per.mean()), (z, target)


def bce_with_logits_backward(dloss, cache):
    """dloss: number -> dlogits = dloss * (sigmoid(z) - t) / n."""
    z, target = cache
    # sigmoid without overflow: exp of a non-positive number only
    e = np.exp(-np.abs(z))
    sig = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    return (sig - target) * (_validate_dloss(dloss) / z.size)


def bce_with_logits_loss(logits, target):
    """(loss, dloss/dlogits)."""
    loss, cache = bce_with_logits_forward(logits, target)
    return loss, bce_with_logits_backward(1.0, cache)


# ---------------------------------------------------------------- STANet's contrastive loss


def contrastive_forward(distance, changed, margin=2.0):
    """STANet's batch-balanced contrastive loss (BCL) on a distance map.

    distance: (...) non-negative distances between the two views' features at each pixel;
    changed: (...) bool, the change mask (STANet's label -1 where True, +1 where False).

        L = sum_{unchanged} d^2 / (n_u + 1e-4) + sum_{changed} max(margin - d, 0)^2 / (n_c + 1e-4)

    Unchanged pixels are pulled together (d -> 0), changed ones pushed at least ``margin``
    apart. Each class is averaged on its own ("batch-balanced"): changed pixels are rare
    (a few percent), and a plain mean over all pixels would let the model ignore them.
    """
    validate_array(distance, "distance")
    if not isinstance(changed, np.ndarray) or changed.dtype != np.bool_:
        raise TypeError(
            f"changed must be a bool numpy.ndarray (True where the scene changed), got "
            f"{type(changed).__name__} {getattr(changed, 'dtype', '')}"
        )
    if changed.shape != distance.shape:
        raise ValueError(
            f"changed must have the shape of distance, {distance.shape}, got {changed.shape}"
        )
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not margin > 0:
        raise ValueError(f"margin must be a number > 0, got {margin!r}")
    if distance.min() < 0:
        raise ValueError(f"distance must be >= 0, got a minimum of {distance.min():.3g}")
    n_changed = changed.sum() + BCL_COUNT_EPS
    n_unchanged = (~changed).sum() + BCL_COUNT_EPS
    d = distance
    hinge = np.maximum(margin - d, 0)  # how far a changed pixel is short of the margin
    pull = np.where(changed, 0, d * d).sum() / n_unchanged
    push = np.where(changed, hinge * hinge, 0).sum() / n_changed
    return float(pull + push), (d, changed, hinge, n_changed, n_unchanged)


def contrastive_backward(dloss, cache):
    """dloss: number -> ddistance, distance's shape.

    dL/dd = 2 d / n_u on unchanged pixels, -2 max(margin - d, 0) / n_c on changed ones
    (zero once a changed pixel is beyond the margin).
    """
    d, changed, hinge, n_changed, n_unchanged = cache
    g = np.where(changed, -2 * hinge / n_changed, 2 * d / n_unchanged)
    return (g * _validate_dloss(dloss)).astype(d.dtype, copy=False)


def contrastive_loss(distance, changed, margin=2.0):
    """(loss, dloss/ddistance)."""
    loss, cache = contrastive_forward(distance, changed, margin)
    return loss, contrastive_backward(1.0, cache)
