"""How well a model detects change: distance maps, the threshold, F1, the loss over a set."""

import numpy as np

from ...blas import one_blas_thread
from ..losses import contrastive_forward
from .loop import MARGIN


def predict(model, x1, x2, chunk=16):
    """Distance maps of a whole set, (n, H, W), in chunks to bound the N x N memory."""
    with one_blas_thread():
        return np.concatenate(
            [model.forward(x1[i : i + chunk], x2[i : i + chunk]) for i in range(0, len(x1), chunk)]
        )


def dataset_loss(model, x1, x2, mask, chunk=16):
    """Contrastive loss over a whole set (forward only, in chunks; the classes are pooled)."""
    return contrastive_forward(predict(model, x1, x2, chunk), mask, MARGIN)[0]


def choose_threshold(distance, mask):
    """The threshold with the best F1 on (distance, mask): every cut between two sorted values.

    Returns (threshold, f1). Predicting "changed" for the k largest distances gives
    tp(k) = changed pixels among them, and F1 = 2 tp / (k + positives).
    """
    d = distance.ravel()
    order = np.argsort(d, kind="stable")[::-1]
    ds = d[order]
    tp = np.cumsum(mask.ravel()[order])
    k = np.arange(1, d.size + 1)
    f1 = 2 * tp / (k + mask.sum())
    # a cut between two equal distances cannot be made: only where the next one is smaller
    f1[:-1][ds[:-1] == ds[1:]] = -1
    i = int(np.argmax(f1))
    threshold = (ds[i] + ds[i + 1]) / 2 if i + 1 < d.size else ds[i] - 1.0
    return float(threshold), float(f1[i])


def scores(distance, mask, threshold):
    """F1, precision and recall of ``distance > threshold`` against ``mask`` (all pixels)."""
    pred = distance > threshold
    tp = np.sum(pred & mask)
    precision = tp / max(pred.sum(), 1)
    recall = tp / max(mask.sum(), 1)
    f1 = 2 * tp / max(pred.sum() + mask.sum(), 1)
    return dict(f1=float(f1), precision=float(precision), recall=float(recall))
