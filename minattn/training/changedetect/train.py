"""Training the miniature STANet, and what ``minattn train`` runs.

The experiment: draw training pairs from one set of photographs and held-out pairs from
another (``data.make_pairs``), compute the fixed photo features once, then train two
models from the same initial projection, step for step on the same mini-batches:

    attention model   features -> proj -> CDSA(BAM or PAM) -> distance
    baseline          features -> proj                     -> distance

with Adam on STANet's batch-balanced contrastive loss. A pixel is called changed when
its distance exceeds a threshold, chosen for each model as the one with the best F1 on
the *training* pairs; F1, precision and recall are then measured on the held-out pairs.
"""

import contextlib
import ctypes
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...validate import validate_choice, validate_positive_int
from ..losses import contrastive_forward
from ..optim import Adam
from .data import make_pairs
from .model import ChangeDetector, flat_grads, flat_params, set_flat_params

MARGIN = 2.0  # STANet's BCL margin


@dataclass(frozen=True)
class Config:
    """Everything the experiment depends on (the defaults are ``minattn train``'s)."""

    steps: int = 300  # optimiser steps of each model
    batch: int = 8  # pairs per step
    lr: float = 1e-2  # Adam's learning rate
    n_train: int = 128  # training pairs (photos data.TRAIN_PHOTOS)
    n_heldout: int = 32  # held-out pairs (photos data.HELDOUT_PHOTOS)
    size: int = 64  # pixels per side of each view
    features: int = 32  # channels of the fixed photo features
    channels: int = 32  # channels of the learned projection (CDSA's in_c)
    ds: int = 4  # CDSA's pooling factor
    mode: str = "BAM"  # CDSA's attention, "BAM" or "PAM"
    seed: int = 0  # data, initialisation and batch order

    def __post_init__(self):
        for name in ("steps", "batch", "n_train", "n_heldout", "size", "features", "channels"):
            validate_positive_int(getattr(self, name), name)
        validate_positive_int(self.ds, "ds")
        validate_choice(self.mode, "mode", ("BAM", "PAM"))
        validate_positive_int(self.seed, "seed", minimum=0)
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        if self.batch > self.n_train:
            raise ValueError(
                f"batch={self.batch} is larger than the training set, n_train={self.n_train}"
            )
        if self.size % self.ds:
            raise ValueError(f"size={self.size} must be a multiple of ds={self.ds}")


# ---------------------------------------------------------------- one BLAS thread


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with OpenBLAS on one thread, then restore its thread count.

    The matrices of this model are small (32 x 32 weights, 512 pooled pixels): a second
    BLAS thread does not make a step faster, and OpenBLAS's idle threads spin, so on a
    machine with other work they take a core and slow everything down (measured on 2
    cores under load: 30 steps took 41 s of CPU and 56 s with OpenBLAS's default threads,
    11 s and 38 s with one). OpenBLAS reads OPENBLAS_NUM_THREADS only when NumPy loads it,
    too early for a command line to set, so we call its own API (found among the loaded
    libraries) and do nothing where there is none.
    """
    calls = []
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
        for path in paths:
            lib = ctypes.CDLL(path)
            for suffix in ("64_", ""):
                get = getattr(lib, f"scipy_openblas_get_num_threads{suffix}", None)
                get = get or getattr(lib, f"openblas_get_num_threads{suffix}", None)
                put = getattr(lib, f"scipy_openblas_set_num_threads{suffix}", None)
                put = put or getattr(lib, f"openblas_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype = ctypes.c_int
                    calls.append((put, get()))
                    put(1)
                    break
    except OSError:
        pass
    try:
        yield
    finally:
        for put, n in calls:
            put(n)


# ---------------------------------------------------------------- data


def prepare(config):
    """Training and held-out pairs with their features: a dict of arrays."""
    train = make_pairs(config.n_train, split="train", size=config.size, seed=config.seed)
    held = make_pairs(config.n_heldout, split="heldout", size=config.size, seed=config.seed)
    # one fixed feature extractor for everything (its own seed, not the experiment's)
    x1, x2 = train.features(config.features, seed=0)
    h1, h2 = held.features(config.features, seed=0)
    return dict(train=train, heldout=held, x1=x1, x2=x2, h1=h1, h2=h2)


def batches(n, batch, rng):
    """One epoch: a permutation of range(n) cut into batches (a short last batch is dropped)."""
    order = rng.permutation(n)
    return [order[i : i + batch] for i in range(0, n - batch + 1, batch)]


# ---------------------------------------------------------------- metrics


def dataset_loss(model, x1, x2, mask, chunk=16):
    """Contrastive loss over a whole set (forward only, in chunks; the classes are pooled)."""
    d = predict(model, x1, x2, chunk)
    return contrastive_forward(d, mask, MARGIN)[0]


def predict(model, x1, x2, chunk=16):
    """Distance maps of a whole set, (n, H, W), in chunks to bound the N x N memory."""
    with single_threaded_blas():
        return np.concatenate(
            [model.forward(x1[i : i + chunk], x2[i : i + chunk]) for i in range(0, len(x1), chunk)]
        )


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


# ---------------------------------------------------------------- training


def train_models(models, data, config, progress=True, log=print):
    """Train ``models`` (a dict name -> model) side by side with Adam, on the same batches.

    Returns {name: per-step losses}. ``log`` gets one line per epoch. BLAS runs on one
    thread meanwhile (`single_threaded_blas`).
    """
    with single_threaded_blas():
        return _train_models(models, data, config, progress, log)


def _train_models(models, data, config, progress, log):
    rng = np.random.default_rng([config.seed, 2])  # batch order, shared by the models
    opts = {name: Adam(m, lr=config.lr) for name, m in models.items()}
    losses = {name: [] for name in models}
    x1, x2, mask = data["x1"], data["x2"], data["train"].mask
    per_epoch = config.n_train // config.batch
    epochs = -(-config.steps // per_epoch)
    bar = None
    if progress:  # on stderr, so that stdout keeps only the epoch lines (and --json's line)
        from tqdm import tqdm

        bar = tqdm(total=config.steps, desc="training", unit="step", file=sys.stderr, leave=False)
        log = bar.write
    step = 0
    for epoch in range(1, epochs + 1):
        for idx in batches(config.n_train, config.batch, rng):
            if step == config.steps:
                break
            for name, model in models.items():
                losses[name].append(model.loss(x1[idx], x2[idx], mask[idx], MARGIN))
                opts[name].step()
            step += 1
            if bar is not None:
                bar.update()
        done = step - (epoch - 1) * per_epoch  # steps in this epoch (the last may be short)
        line = "  ".join(f"{name} {np.mean(v[-done:]):.4f}" for name, v in losses.items())
        log(f"epoch {epoch:3d}/{epochs}  loss  {line}")
    if bar is not None:
        bar.close()
    return losses


def fit_lbfgs(model, x1, x2, mask, maxiter=100):
    """SciPy's L-BFGS-B on the same loss, with our gradient: a second opinion on it.

    Full batch. Returns (scipy OptimizeResult, the loss at every function evaluation).
    The model's parameters are left at the solution.
    """
    from scipy.optimize import minimize

    history = []

    def fun(theta):
        set_flat_params(model, theta)
        loss = model.loss(x1, x2, mask, MARGIN)
        history.append(loss)
        return loss, flat_grads(model)

    with single_threaded_blas():
        result = minimize(fun, flat_params(model), jac=True, method="L-BFGS-B",
                          options=dict(maxiter=maxiter))  # fmt: skip
    set_flat_params(model, result.x)
    return result, history


# ---------------------------------------------------------------- saving


def save_weights(model, path):
    """The model's state_dict as .npz: keys are the PyTorch port's state_dict keys."""
    np.savez(path, **model.state_dict())
    return Path(path)


def load_weights(path, ds=Config.ds, dtype=np.float64):
    """A ChangeDetector from a file of ``save_weights`` (shapes and keys give the rest)."""
    with np.load(path) as f:
        sd = {k: f[k] for k in f.files}
    if "proj.weight" not in sd:
        raise ValueError(f"{path}: no 'proj.weight' entry; not a file of save_weights()")
    channels, in_channels = sd["proj.weight"].shape[:2]
    if any(k.startswith("cdsa.Self_Att.stages") for k in sd):
        mode = "PAM"
    elif any(k.startswith("cdsa.") for k in sd):
        mode = "BAM"
    else:
        mode = None
    model = ChangeDetector(int(in_channels), int(channels), mode=mode, ds=ds, dtype=dtype)
    model.load_state_dict(sd)
    return model


# ---------------------------------------------------------------- the experiment


def query_pixels(mask, size):
    """Three query pixels of a pair: the centre of its first change, two unchanged ones."""
    rows, cols = np.nonzero(mask)
    if rows.size:
        i = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
        first = (int(rows[i]), int(cols[i]))
    else:
        first = (size // 2, size // 2)
    return [first, (size // 4, size // 4), (3 * size // 4, 3 * size // 4)]


def run(config=None, out="minattn-train.png", progress=True, log=print):
    """The whole experiment; returns the summary dict (what ``--json`` prints)."""
    with single_threaded_blas():
        return _run(config, out, progress, log)


def _run(config, out, progress, log):
    config = Config() if config is None else config
    out = Path(out)
    if not out.resolve().parent.is_dir():
        raise ValueError(f"out={str(out)!r}: the folder {str(out.parent)!r} does not exist")
    t0 = time.perf_counter()
    data = prepare(config)
    log(
        f"data: {config.n_train} training pairs, {config.n_heldout} held-out pairs of "
        f"{config.size}x{config.size} pixels; {data['train'].mask.mean():.1%} and "
        f"{data['heldout'].mask.mean():.1%} of pixels changed"
    )
    kw = dict(ds=config.ds, seed=config.seed)
    models = {
        config.mode: ChangeDetector(config.features, config.channels, mode=config.mode, **kw),
        "baseline": ChangeDetector(config.features, config.channels, mode=None, **kw),
    }
    attn, base = models[config.mode], models["baseline"]
    log(f"models: {attn}\n        {base} (the same projection, no attention)")
    train_mask, held_mask = data["train"].mask, data["heldout"].mask
    show = [0, 1, 2][: config.n_heldout]
    queries = query_pixels(held_mask[0], config.size)
    maps_before = _maps(attn, data, queries)
    first = {n: dataset_loss(m, data["x1"], data["x2"], train_mask) for n, m in models.items()}

    t_train = time.perf_counter()
    losses = train_models(models, data, config, progress, log)
    t_train = time.perf_counter() - t_train

    results = {}
    for name, model in models.items():
        model.eval()
        d_train = predict(model, data["x1"], data["x2"])
        threshold, _ = choose_threshold(d_train, train_mask)
        d_held = predict(model, data["h1"], data["h2"])
        results[name] = dict(
            threshold=threshold,
            train=scores(d_train, train_mask, threshold),
            heldout=scores(d_held, held_mask, threshold),
            loss_last=contrastive_forward(d_train, train_mask, MARGIN)[0],
            pred=d_held[show] > threshold,
        )
    maps_after = _maps(attn, data, queries)
    weights = out.with_suffix(".npz")
    base_weights = out.with_name(out.stem + "-baseline.npz")
    save_weights(attn, weights)
    save_weights(base, base_weights)
    _figure(out, config, losses, data, show, results, queries, maps_before, maps_after)

    a, b = results[config.mode], results["baseline"]
    for name, r in results.items():
        h = r["heldout"]
        log(
            f"{name:>8}: held-out F1 {h['f1']:.3f} (precision {h['precision']:.3f}, recall "
            f"{h['recall']:.3f}) at threshold {r['threshold']:.3f} chosen on the training "
            f"pairs (training F1 {r['train']['f1']:.3f})"
        )
    summary = dict(
        mode=config.mode,
        seed=config.seed,
        steps=config.steps,
        loss_first=first[config.mode],
        loss_last=a["loss_last"],
        baseline_loss_first=first["baseline"],
        baseline_loss_last=b["loss_last"],
        f1=a["heldout"]["f1"],
        precision=a["heldout"]["precision"],
        recall=a["heldout"]["recall"],
        threshold=a["threshold"],
        baseline_f1=b["heldout"]["f1"],
        baseline_precision=b["heldout"]["precision"],
        baseline_recall=b["heldout"]["recall"],
        baseline_threshold=b["threshold"],
        train_f1=a["train"]["f1"],
        baseline_train_f1=b["train"]["f1"],
        train_seconds=t_train,
        total_seconds=time.perf_counter() - t0,
        figure=str(out),
        weights=str(weights),
        baseline_weights=str(base_weights),
        config=asdict(config),
    )
    log(f"held-out F1: {config.mode} {summary['f1']:.3f}, baseline {summary['baseline_f1']:.3f}")
    log(f"training took {t_train:.1f} s; everything {summary['total_seconds']:.1f} s")
    log(f"figure: {out}\nweights: {weights} and {base_weights}")
    return summary


def _maps(model, data, queries):
    """Attention of the query pixels of held-out pair 0 over both views, or None."""
    if model.mode not in ("BAM", "PAM"):
        return None
    return model.attention_maps(data["h1"][:1], data["h2"][:1], queries)[0]


def _figure(out, config, losses, data, show, results, queries, before, after):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = data["heldout"]
    rows = 1 + len(show)
    fig = plt.figure(figsize=(15, 3.0 * rows), layout="constrained")
    grid = fig.add_gridspec(rows, 6)
    ax = fig.add_subplot(grid[0, :2])
    per_epoch = config.n_train // config.batch
    for name, v in losses.items():  # the mean of each epoch (the last one may be short)
        curve = [np.mean(v[i : i + per_epoch]) for i in range(0, len(v), per_epoch)]
        ax.plot(np.arange(1, len(curve) + 1), curve, "o-" if len(curve) < 4 else "-", label=name)
    ax.set(xlabel="epoch", ylabel="contrastive loss (training batches)", title="training loss")
    ax.legend()
    if before is not None:
        for j, (name, maps) in enumerate((("before", before), ("after", after))):
            ax = fig.add_subplot(grid[0, 2 + 2 * j : 4 + 2 * j])
            # the three queries' maps stacked: each (h, 2w), the two views side by side
            stack = np.concatenate([m / m.max() for m in maps], axis=0)
            ax.imshow(stack, cmap="jet", interpolation="nearest")
            h, w2 = maps.shape[1:]
            for k, (r, c) in enumerate(queries):
                ax.plot(c // config.ds, k * h + r // config.ds, "w+", ms=10, mew=2)
            ax.axvline(w2 / 2 - 0.5, color="w", lw=1)
            stage = ", its 1 x 1 stage" if config.mode == "PAM" else ""
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"attention of 3 queries (+), {name} training\nview 1 | view 2, pooled "
                         f"by {config.ds}{stage}; each map / its max", fontsize=9)  # fmt: skip
    names = list(results)
    for r, i in enumerate(show, start=1):
        panels = [
            (held.image1[i], "view 1"),
            (
                held.image2[i],
                f"view 2 (shifted {held.shifts[i][0]:+.1f}, {held.shifts[i][1]:+.1f})",
            ),
            (held.mask[i], "true change"),
        ] + [(results[n]["pred"][r - 1], f"{n}: predicted") for n in names]
        for j, (img, title) in enumerate(panels):
            ax = fig.add_subplot(grid[r, j])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
            ax.set(xticks=[], yticks=[], title=f"held-out {i}: {title}" if j == 0 else title)
        if r == 1:
            ax = fig.add_subplot(grid[r, len(panels)])
            ax.axis("off")
            txt = "\n".join(f"{n}: F1 {results[n]['heldout']['f1']:.3f}" for n in names)
            ax.text(0, 0.5, f"all {len(held)} held-out pairs\n{txt}", va="center")
    fig.savefig(out, dpi=80)
    plt.close(fig)
