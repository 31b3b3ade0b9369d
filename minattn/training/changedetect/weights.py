"""Weight files: a model's state_dict in ``.npz``, keyed by the PyTorch port's names."""

from pathlib import Path

import numpy as np

from .model import ChangeDetector


def save_weights(model, path):
    """The whole model's state_dict: ``proj.*`` and ``cdsa.*`` (the PyTorch port's keys)."""
    np.savez(path, **model.state_dict())
    return Path(path)


def save_attention(model, path):
    """Only the attention module's state_dict: ``model.cdsa`` (a ``minattn.CDSA``).

    The keys are CDSA's own (``Self_Att.query_conv.weight``, ...), so the file loads into
    ``minattn.CDSA(model.channels, model.ds, model.mode)`` (or STANet's PyTorch CDSA) as is:
    ``cdsa.load_state_dict(dict(np.load(path)))``.
    """
    if model.mode not in ("BAM", "PAM"):
        raise ValueError(f"mode={model.mode!r} has no attention module to save (BAM or PAM has)")
    np.savez(path, **model.cdsa.state_dict())
    return Path(path)


def load_weights(path, ds=4, dtype=np.float64, backend="numpy"):
    """A ChangeDetector from a file of ``save_weights`` (keys and shapes give the rest)."""
    with np.load(path) as f:
        sd = {k: f[k] for k in f.files}
    if "proj.weight" not in sd:
        raise ValueError(f"{path}: no 'proj.weight' entry; not a file of save_weights()")
    channels, in_channels = sd["proj.weight"].shape[:2]
    model = ChangeDetector(int(in_channels), int(channels), mode=_mode_of(sd), ds=ds,
                           dtype=dtype, backend=backend)  # fmt: skip
    model.load_state_dict(sd)
    return model


def _mode_of(state_dict):
    """Which ChangeDetector mode a state_dict's keys belong to."""
    keys = [k for k in state_dict if k.startswith("cdsa.")]
    if not keys:
        return None
    if any(k.startswith("cdsa.Self_Att.stages") for k in keys):
        return "PAM"
    if any(k.startswith("cdsa.Self_Att.query_conv") for k in keys):
        return "BAM"
    return "local" if any(k.startswith("cdsa.Self_Att.conv.") for k in keys) else "pool"
