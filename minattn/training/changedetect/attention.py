"""Where the learned attention looks: its mass on the pixels that decide a changed pixel."""

import numpy as np

from ...validate import validate_choice
from .model import ChangeDetector

VIEWS = ("own", "other")


def attention_mass(model, pairs, x1, x2, n_pairs=8, per_pair=16, view="own"):
    """Share of changed pixels' attention on the pixels that decide them, and chance's share.

    For each of the first ``n_pairs`` pairs, up to ``per_pair`` query pixels are drawn
    (a fixed draw) from the pooled pixels whose whole ds x ds block changed, in both views;
    each query's attention row over the pooled pair (`ChangeDetector.attention_maps`) is
    summed over the pooled pixels of ``pairs.deciders(i, v)`` (each weighted by the
    share of its block that decides), v the query's own view, or with ``view="other"``
    the other one: a model may read the season off either. Returns (mean share, the share
    a uniform attention would give): a model that does not look at those pixels scores
    about the second number.
    """
    validate_choice(view, "view", VIEWS)
    model = _with_attention(model)
    ds, W = model.ds, x1.shape[3]
    rng = np.random.default_rng(0)
    shares, uniform = [], []
    for i in range(min(n_pairs, len(pairs))):
        changed = np.argwhere(_block_mean(pairs.mask[i], ds) == 1)
        if not len(changed):
            continue
        picks = changed[rng.permutation(len(changed))[:per_pair]] * ds
        for own in (0, 1):
            looked_at = own if view == "own" else 1 - own
            decide = _block_mean(pairs.deciders(i, looked_at), ds)  # (h, 2w): share of each block
            queries = [(r, c + own * W) for r, c in picks]
            maps = model.attention_maps(x1[i : i + 1], x2[i : i + 1], queries)[0]  # (Q, h, 2w)
            shares.extend((maps * decide).sum(axis=(1, 2)))
            uniform.extend([decide.mean()] * len(queries))  # weighted as the shares are
    return float(np.mean(shares)), float(np.mean(uniform))


def _block_mean(a, ds):
    """(H, W) -> (H/ds, W/ds): the mean of each ds x ds block."""
    H, W = a.shape
    return a.reshape(H // ds, ds, W // ds, ds).mean(axis=(1, 3))


def _with_attention(model):
    """The model itself, or a NumPy twin where its backend never forms PAM's attention."""
    if model.mode != "PAM" or model.backend == "numpy":
        return model
    twin = ChangeDetector(model.in_channels, model.channels, mode="PAM", ds=model.ds,
                          dtype=model.dtype)  # fmt: skip
    twin.load_state_dict(model.state_dict())
    return twin
