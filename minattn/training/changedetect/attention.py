"""Where the learned attention looks: its mass on the pixels that decide a changed pixel."""

import numpy as np

from .model import ChangeDetector


def attention_mass(model, pairs, x1, x2, n_pairs=8, per_pair=16):
    """Share of changed pixels' attention on the pixels that decide them, and chance's share.

    For each of the first ``n_pairs`` pairs, up to ``per_pair`` query pixels are drawn
    (a fixed draw) from the pooled pixels whose whole ds x ds block changed, in both views;
    each query's attention row over the pooled pair (`ChangeDetector.attention_maps`) is
    summed over the pooled pixels of ``pairs.deciders(i, view)`` (each weighted by the
    share of its block that decides). Returns (mean share, the share a uniform
    attention would give): a model that does not look at the deciding pixels scores about
    the second number.
    """
    model = _with_attention(model)
    ds, W = model.ds, x1.shape[3]
    rng = np.random.default_rng(0)
    shares, uniform = [], []
    for i in range(min(n_pairs, len(pairs))):
        changed = np.argwhere(_block_mean(pairs.mask[i], ds) == 1)
        if not len(changed):
            continue
        picks = changed[rng.permutation(len(changed))[:per_pair]] * ds
        for view in (0, 1):
            decide = _block_mean(pairs.deciders(i, view), ds)  # (h, 2w): share of each block
            queries = [(r, c + view * W) for r, c in picks]
            maps = model.attention_maps(x1[i : i + 1], x2[i : i + 1], queries)[0]  # (Q, h, 2w)
            shares.extend((maps * decide).sum(axis=(1, 2)))
            uniform.append(decide.mean())
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
