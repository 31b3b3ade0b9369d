"""PyTorch ports for the training tests: STANet's loss and the miniature model.

Only test code imports this file; the package never imports torch. The ports follow
STANet (models/loss.py, models/backbone.py, models/CDFA_model.py) line for line where
they can; the differences are marked. CDSA itself is the attention family's port,
``originals.STANetCDSA``.
"""

import torch
from originals import STANetCDSA
from torch import nn


class BCL(nn.Module):
    """STANet's batch-balanced contrastive loss, models/loss.py.

    label: +1 no change, -1 change (STANet's convention). The original first sets label
    255 ("ignore") to 1, in place, and only then builds the ignore mask from it, so the
    mask is all ones; we leave that line out (our labels have no 255) and do not write
    into the caller's label.
    """

    def __init__(self, margin=2.0):
        super().__init__()
        self.margin = margin

    def forward(self, distance, label):
        mask = (label != 255).to(distance.dtype)
        distance = distance * mask
        pos_num = torch.sum((label == 1).to(distance.dtype)) + 0.0001
        neg_num = torch.sum((label == -1).to(distance.dtype)) + 0.0001
        loss_1 = torch.sum((1 + label) / 2 * torch.pow(distance, 2)) / pos_num
        loss_2 = (
            torch.sum(
                (1 - label) / 2 * mask * torch.pow(torch.clamp(self.margin - distance, min=0.0), 2)
            )
            / neg_num
        )
        return loss_1 + loss_2


def stanet_label(changed):
    """A bool change mask -> STANet's label tensor (+1 no change, -1 change), float64."""
    changed = torch.as_tensor(changed)
    return torch.where(changed, -1.0, 1.0).to(torch.float64)


class ChangeDetector(nn.Module):
    """minattn.training.changedetect.ChangeDetector in PyTorch: proj -> CDSA -> distance.

    The distance is STANet's ``F.pairwise_distance(feat_A, feat_B, keepdim=True)`` as the
    PyTorch of its day computed it: the norm of (a - b + 1e-6) over dim 1, the channels
    (today's PyTorch takes the last dimension instead), squeezed to (B, H, W).
    """

    def __init__(self, in_channels, channels, mode="BAM", ds=4):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, channels, kernel_size=1)
        self.cdsa = None if mode is None else STANetCDSA(channels, ds=ds, mode=mode)

    def forward(self, x1, x2):
        a, b = self.proj(x1), self.proj(x2)
        if self.cdsa is not None:
            a, b = self.cdsa(a, b)
        return torch.norm(a - b + 1e-6, p=2, dim=1)


def from_numpy_state(module, state_dict):
    """Load a minattn state_dict (numpy arrays) into a float64 torch module, strictly."""
    module.double()
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state_dict.items()})
    return module
