"""PyTorch ports of the originals the attention family is checked against.

Only tests import this file, and only after ``pytest.importorskip("torch")``; the
package never imports torch. Each class keeps its original's parameter names (so
state_dicts move both ways unchanged) and computes exactly what the original
computes, written out again for reading here, with the original named above it.

Sections: DANet (position and channel attention), SENet (squeeze-and-excitation),
then STANet (PAM, CDSA, BAM).
"""

import torch
from torch import nn

# ================================================================ DANet
# Fu et al., "Dual Attention Network for Scene Segmentation" (CVPR 2019);
# github.com/junfu1115/DANet, encoding/nn/da_att.py: PAM_Module, CAM_Module.


class DANetPositionAttention(nn.Module):
    """DANet's ``PAM_Module`` (SAGAN-style): q/k with in_dim // 8 channels, no energy scale,
    softmax over the key pixels, ``gamma * out + x`` with gamma starting at 0."""

    def __init__(self, in_dim):
        super().__init__()
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        B, C, H, W = x.shape
        query = self.query_conv(x).view(B, -1, H * W).permute(0, 2, 1)  # (B, N, Ck)
        key = self.key_conv(x).view(B, -1, H * W)  # (B, Ck, N)
        attention = torch.softmax(torch.bmm(query, key), dim=-1)  # (B, N, N)
        value = self.value_conv(x).view(B, -1, H * W)  # (B, C, N)
        out = torch.bmm(value, attention.permute(0, 2, 1)).view(B, C, H, W)
        return self.gamma * out + x


class DANetChannelAttention(nn.Module):
    """DANet's ``CAM_Module``: energy X X^T over channels, softmax of (row max - energy),
    each channel a weighted sum of channels, ``gamma * out + x``."""

    def __init__(self, in_dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        B, C, H, W = x.shape
        flat = x.view(B, C, -1)  # (B, C, N)
        energy = torch.bmm(flat, flat.permute(0, 2, 1))  # (B, C, C)
        rowmax = torch.max(energy, -1, keepdim=True)[0].expand_as(energy)
        attention = torch.softmax(rowmax - energy, dim=-1)
        out = torch.bmm(attention, flat).view(B, C, H, W)
        return self.gamma * out + x


# ================================================================ SENet
# Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018). The original is Caffe
# (github.com/hujie-frank/SENet); the PyTorch SELayer most code uses is
# github.com/moskomule/senet.pytorch, senet/se_module.py.


class SELayer(nn.Module):
    """Squeeze (global mean per channel), excite (Linear-ReLU-Linear without bias, sigmoid),
    gate (scale each channel). Keys ``fc.0.weight`` (C // r, C) and ``fc.2.weight`` (C, C // r)."""

    def __init__(self, channel, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        B, C, _, _ = x.shape
        gate = self.fc(self.avg_pool(x).view(B, C)).view(B, C, 1, 1)
        return x * gate.expand_as(x)


# ================================================================ STANet (family-b appends below)
# Chen and Shi, "A Spatial-Temporal Attention-Based Method and a New Dataset for Remote
# Sensing Image Change Detection" (Remote Sensing 2020); github.com/justchenhao/STANet,
# models/PAM2.py (_PAMBlock, PAMBlock, PAM), models/BAM.py (BAM), models/backbone.py (CDSA,
# weights_init). Written by family-b. What the originals do, and what the ports keep:
#   - the pair is one map (B, C, h, 2w), image 1 left, image 2 right (CDSA's torch.cat on dim 3);
#   - _PAMBlock stacks the two halves of the width on a new last axis, (B, C, h, w, 2), cuts the
#     (h, w) axes into s x s cells (each cell of both images is one region: a region never
#     straddles the seam), puts the regions on the batch axis region-major, and attends within
#     each with energy * key_channels ** -0.5 and a softmax; f_key / f_query are Conv2d +
#     BatchNorm2d (no ReLU), f_value a Conv2d; with ds != 1 each stage pools by itself and
#     resizes back with F.interpolate (nearest, its default); no residual;
#   - the last row and column of cells take the remainder (h // s rows each, the last up to h),
#     and torch.cat of regions of unequal size then fails: PAM runs only when s divides h and w;
#   - PAM concatenates its stages along channels and mixes them by conv_bn, a bias-free 1x1
#     Conv2d (in_channels * len(sizes) -> out_channels; its BatchNorm is commented out), whose
#     input has out_channels * len(sizes) channels: PAM runs only when in_channels == out_channels;
#   - CDSA builds BAM(in_c, ds) or PAM(in_c, in_c, sizes=[1, 2, 4, 8], ds), then re-initialises:
#     every Conv weight N(0, 0.02), every BatchNorm weight N(1, 0.02) and bias 0 (conv biases
#     keep PyTorch's default); BAM's gamma is created but unused (out = up(attn) + input).


class STANetPAMBlock(nn.Module):
    """STANet's ``_PAMBlock``: attention within the s x s regions of a pair, at one scale."""

    def __init__(self, in_channels, key_channels, value_channels, scale=1, ds=1):
        super().__init__()
        self.scale, self.ds = scale, ds
        self.key_channels, self.value_channels = key_channels, value_channels
        self.pool = nn.AvgPool2d(ds)
        self.f_key = nn.Sequential(
            nn.Conv2d(in_channels, key_channels, kernel_size=1), nn.BatchNorm2d(key_channels)
        )
        self.f_query = nn.Sequential(
            nn.Conv2d(in_channels, key_channels, kernel_size=1), nn.BatchNorm2d(key_channels)
        )
        self.f_value = nn.Conv2d(in_channels, value_channels, kernel_size=1)

    def region_bounds(self, h, w):
        """STANet's cells, (row0, row1, col0, col1) row by row; the last ones take the rest."""
        step_h, step_w = h // self.scale, w // self.scale
        bounds = []
        for i in range(self.scale):
            for j in range(self.scale):
                r0, c0 = i * step_h, j * step_w
                r1 = h if i == self.scale - 1 else min(r0 + step_h, h)
                c1 = w if j == self.scale - 1 else min(c0 + step_w, w)
                bounds.append((r0, r1, c0, c1))
        return bounds

    def split_regions(self, t):
        """(B, C, h, 2w) -> (s*s*B, C, h/s, w/s, 2): region-major on the batch axis."""
        w = t.shape[3] // 2
        pair = torch.stack([t[:, :, :, :w], t[:, :, :, w:]], 4)  # (B, C, h, w, 2)
        cells = self.region_bounds(t.shape[2], w)
        return torch.cat([pair[:, :, r0:r1, c0:c1] for r0, r1, c0, c1 in cells], dim=0)

    def merge_regions(self, context, batch_size):
        """(s*s*B, C, h/s, w/s, 2) -> (B, C, h, 2w): cells along width, rows along height."""
        s, B = self.scale, batch_size
        rows = [
            torch.cat([context[B * (i * s + j) : B * (i * s + j + 1)] for j in range(s)], 3)
            for i in range(s)
        ]
        merged = torch.cat(rows, 2)  # (B, C, h, w, 2)
        return torch.cat([merged[..., 0], merged[..., 1]], 3)

    def attend(self, value, query, key):
        """Attention within each region: (B', C, h', w', 2) each -> (B', Cv, h', w', 2)."""
        Bn, _, hl, wl, _ = value.shape
        v = value.contiguous().view(Bn, self.value_channels, -1)
        q = query.contiguous().view(Bn, self.key_channels, -1).permute(0, 2, 1)
        k = key.contiguous().view(Bn, self.key_channels, -1)
        sim = torch.softmax((self.key_channels**-0.5) * torch.bmm(q, k), dim=-1)
        context = torch.bmm(v, sim.permute(0, 2, 1))
        return context.view(Bn, self.value_channels, hl, wl, 2)

    def forward(self, input):
        x = self.pool(input) if self.ds != 1 else input
        B, h, w = x.shape[0], x.shape[2], x.shape[3] // 2
        value, query, key = self.f_value(x), self.f_query(x), self.f_key(x)
        context = self.attend(*(self.split_regions(t) for t in (value, query, key)))
        context = self.merge_regions(context, B)
        if self.ds != 1:
            context = torch.nn.functional.interpolate(context, [h * self.ds, 2 * w * self.ds])
        return context


class STANetPAM(nn.Module):
    """STANet's ``PAM``: one _PAMBlock per scale, concatenated, mixed by a bias-free 1x1 conv."""

    def __init__(self, in_channels, out_channels, sizes=(1,), ds=1):
        super().__init__()
        key_channels = out_channels // 8
        self.stages = nn.ModuleList(
            [STANetPAMBlock(in_channels, key_channels, out_channels, s, ds) for s in sizes]
        )
        self.conv_bn = nn.Sequential(
            nn.Conv2d(in_channels * len(sizes), out_channels, kernel_size=1, bias=False)
        )

    def forward(self, feats):
        return self.conv_bn(torch.cat([stage(feats) for stage in self.stages], 1))


class STANetBAM(nn.Module):
    """STANet's ``BAM`` (the article's module): pool, attention, nearest resize, ``+ input``."""

    def __init__(self, in_dim, ds=8):
        super().__init__()
        self.key_channel = in_dim // 8
        self.ds = ds
        self.pool = nn.AvgPool2d(ds)
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))  # created, never used

    def forward(self, input):
        x = self.pool(input)
        B, C, h, w = x.shape
        q = self.query_conv(x).view(B, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(x).view(B, -1, h * w)
        attention = torch.softmax((self.key_channel**-0.5) * torch.bmm(q, k), dim=-1)
        v = self.value_conv(x).view(B, -1, h * w)
        out = torch.bmm(v, attention.permute(0, 2, 1)).view(B, C, h, w)
        return torch.nn.functional.interpolate(out, [h * self.ds, w * self.ds]) + input


def stanet_weights_init(m):
    """STANet's ``weights_init`` (models/backbone.py), which CDSA applies to all it holds."""
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


class STANetCDSA(nn.Module):
    """STANet's ``CDSA``: the pair side by side, BAM or PAM(sizes 1, 2, 4, 8), split again."""

    def __init__(self, in_c, ds=1, mode="BAM"):
        super().__init__()
        if mode == "BAM":
            self.Self_Att = STANetBAM(in_c, ds=ds)
        elif mode == "PAM":
            self.Self_Att = STANetPAM(in_c, in_c, sizes=[1, 2, 4, 8], ds=ds)
        self.apply(stanet_weights_init)

    def forward(self, x1, x2):
        width = x1.shape[3]
        x = self.Self_Att(torch.cat((x1, x2), 3))
        return x[:, :, :, :width], x[:, :, :, width:]


def stanet_regions(x, scale):
    """STANet's region split of a NumPy pair map (B, C, h, 2w) -> (s*s*B, C, n), flattened."""
    block = STANetPAMBlock(1, 1, 1, scale)
    regions = block.split_regions(torch.from_numpy(x))
    return regions.contiguous().view(regions.shape[0], regions.shape[1], -1).numpy()


def stanet_region_merge(regions, scale, height, width):
    """STANet's merge of NumPy regions (s*s*B, C, n) -> (B, C, height, width), width = 2w."""
    block = STANetPAMBlock(1, 1, 1, scale)
    R, C, _ = regions.shape
    cells = torch.from_numpy(regions).view(R, C, height // scale, width // 2 // scale, 2)
    return block.merge_regions(cells, R // (scale * scale)).numpy()
