"""The Adam loop: several models trained side by side on the same mini-batches."""

import sys

import numpy as np

from ...blas import one_blas_thread
from ..optim import Adam

MARGIN = 2.0  # STANet's BCL margin


def batches(n, batch, rng):
    """One epoch: a permutation of range(n) cut into batches (a short last batch is dropped)."""
    order = rng.permutation(n)
    return [order[i : i + batch] for i in range(0, n - batch + 1, batch)]


def train_models(models, data, config, progress=True, log=print):
    """Train ``models`` (a dict name -> model) side by side with Adam, on the same batches.

    data: a dict with the training features ``x1``, ``x2`` (n, C, H, W) and pairs ``train``
    (their ``mask``). Returns {name: per-step losses}. ``log`` gets one line per epoch.
    BLAS runs on one thread meanwhile (`minattn.blas.one_blas_thread`).
    """
    with one_blas_thread():
        return _train_models(models, data, config, progress, log)


def _train_models(models, data, config, progress, log):
    rng = np.random.default_rng([config.seed, 2])  # batch order, shared by the models
    opts = {name: Adam(m, lr=config.lr) for name, m in models.items()}
    losses = {name: [] for name in models}
    x1, x2, mask = data["x1"], data["x2"], data["train"].mask
    per_epoch = config.n_train // config.batch
    epochs = -(-config.steps // per_epoch)
    bar = _progress_bar(config.steps) if progress else None
    log = bar.write if bar is not None else log
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


def _progress_bar(steps):
    """tqdm on stderr, so that stdout keeps only the epoch lines (and --json's line)."""
    from tqdm import tqdm

    return tqdm(total=steps, desc="training", unit="step", file=sys.stderr, leave=False)
