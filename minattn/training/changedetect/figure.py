"""The figure of ``minattn train``: losses, F1 of every model, held-out pairs, learned maps."""

import numpy as np

from .attention import _with_attention


def changed_query(mask):
    """(row, col) of the changed pixel nearest the centre of a pair's changes (or the centre)."""
    rows, cols = np.nonzero(mask)
    if not rows.size:
        return mask.shape[0] // 2, mask.shape[1] // 2
    i = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
    return int(rows[i]), int(cols[i])


def learned_maps(model, data, i=0):
    """Attention of one changed pixel of held-out pair i, queried from view 1 and view 2.

    Returns (maps (2, h, 2w), the query (row, col)): each map over the pooled pair, view 1
    left, view 2 right.
    """
    r, c = changed_query(data["heldout"].mask[i])
    W = data["h1"].shape[3]
    model = _with_attention(model)
    maps = model.attention_maps(data["h1"][i : i + 1], data["h2"][i : i + 1], [(r, c), (r, c + W)])
    return maps[0], (r, c)


def draw(out, config, losses, data, results, model, masses):
    """Write the figure to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 1 + len(next(iter(results.values()))["distance"])
    fig = plt.figure(figsize=(17, 2.4 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 8)
    _losses(fig.add_subplot(grid[0, :2]), config, losses)
    _f1(fig.add_subplot(grid[0, 2:4]), results)
    maps, query = learned_maps(model, data)
    for k, (where, m) in enumerate(zip(("view 1", "view 2"), maps, strict=True)):
        ax = fig.add_subplot(grid[0, 4 + 2 * k : 6 + 2 * k])
        _map(ax, m, data["heldout"].deciders(0, k), query, k, config.ds)
        ax.set_title(f"attention of a changed pixel (+) of {where}, after training\n(x N: 1 is "
                     f"uniform); its view's unchanged pixels outlined", fontsize=8)  # fmt: skip
    (before, uniform, _), (after, _, _) = masses
    fig.text(0.5, 1.0, f"attention of changed pixels on the unchanged pixels of their view: "
             f"{after:.2f} after training, {before:.2f} with the initial random weights, "
             f"{uniform:.2f} if uniform", ha="center", va="bottom", fontsize=10)  # fmt: skip
    for r in range(1, rows):
        _pair_row(fig, grid, r, r - 1, data["heldout"], results)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _losses(ax, config, losses):
    per_epoch = config.n_train // config.batch
    for name, v in losses.items():  # the mean of each epoch (the last one may be short)
        curve = [np.mean(v[i : i + per_epoch]) for i in range(0, len(v), per_epoch)]
        ax.plot(np.arange(1, len(curve) + 1), curve, "o-" if len(curve) < 4 else "-", label=name)
    ax.set(xlabel="epoch", ylabel="contrastive loss (training batches)", title="training loss")
    ax.legend(fontsize=8)


def _f1(ax, results):
    names = list(results)
    f1 = [results[n]["heldout"]["f1"] for n in names]
    ax.bar(names, f1, color=["C3"] + ["C7"] * (len(names) - 1))
    for k, v in enumerate(f1):
        ax.text(k, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set(ylim=(0, 1), ylabel="F1", title="held-out F1 (threshold from the training pairs)")


def _map(ax, attention, decide, query, view, ds):
    h, w2 = attention.shape
    ax.imshow(attention * h * w2, cmap="jet", interpolation="nearest")
    pooled = decide.reshape(h, ds, w2, ds).mean(axis=(1, 3))
    ax.contour(pooled, levels=[0.5], colors="w", linewidths=1)
    r, c = query
    ax.plot(c / ds - 0.5 + view * w2 / 2, r / ds - 0.5, "w+", ms=12, mew=2)
    ax.axvline(w2 / 2 - 0.5, color="w", lw=1)
    ax.set(xticks=[], yticks=[])


def _pair_row(fig, grid, row, i, held, results):
    panels = [(held.image1[i], "view 1"), (held.image2[i], "view 2"), (held.mask[i], "change")]
    panels += [(r["distance"][i] > r["threshold"], n) for n, r in results.items()]
    for j, (img, title) in enumerate(panels):
        ax = fig.add_subplot(grid[row, j])
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        ax.set(xticks=[], yticks=[])
        ax.set_title(f"held-out {i}: {title}" if j == 0 else title, fontsize=9)
