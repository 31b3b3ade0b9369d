"""``Config``: everything the experiment depends on; the defaults are ``minattn train``'s."""

from dataclasses import dataclass

from ...backend import BACKENDS
from ...validate import validate_choice, validate_positive_int

ATTENTION = ("BAM", "PAM")
# (steps, batch, lr) of each attention module's run, when not given. PAM normalises query
# and key with BatchNorm over the batch: it did better on 300 steps of 8 pairs than on 600
# of 4; BAM the other way round, and at lr 0.01 it stayed at the baseline on 3 seeds of 9,
# at 0.005 on none (docs/training.md). Its controls train on the same budget.
BUDGET = {"BAM": (600, 4, 5e-3), "PAM": (300, 8, 1e-2)}
CONTROLS = ("baseline", "pool", "local")  # the attention-free models trained beside it


@dataclass(frozen=True)
class Config:
    steps: int | None = None  # optimiser steps of each model; None: BUDGET[mode]
    batch: int | None = None  # pairs per step; None: BUDGET[mode]
    lr: float | None = None  # Adam's learning rate; None: BUDGET[mode]
    n_train: int = 128  # training pairs (photos data.TRAIN_PHOTOS)
    n_heldout: int = 32  # held-out pairs (photos data.HELDOUT_PHOTOS)
    size: int = 32  # pixels per side of each view
    features: int = 32  # channels of the fixed photo features
    channels: int = 32  # channels of the learned projection (CDSA's in_c)
    ds: int = 2  # CDSA's pooling factor
    mode: str = "BAM"  # CDSA's attention, "BAM" or "PAM"
    seed: int = 0  # data, initialisation and batch order
    backend: str = "numba"  # every model's backend

    def __post_init__(self):
        validate_choice(self.mode, "mode", ATTENTION)
        for name, default in zip(("steps", "batch", "lr"), BUDGET[self.mode], strict=True):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)  # frozen: set once, here
        for name in ("steps", "batch", "n_train", "n_heldout", "size", "features", "channels"):
            validate_positive_int(getattr(self, name), name)
        validate_positive_int(self.ds, "ds")
        validate_choice(self.backend, "backend", BACKENDS)
        validate_positive_int(self.seed, "seed", minimum=0)
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        if self.batch > self.n_train:
            raise ValueError(
                f"batch={self.batch} is larger than the training set, n_train={self.n_train}"
            )
        if self.size % (8 * self.ds):
            raise ValueError(
                f"size={self.size} must be a multiple of 8 * ds = {8 * self.ds} (PAM cuts the "
                f"map pooled by ds into 8 x 8 regions)"
            )
