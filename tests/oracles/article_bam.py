"""The article's PyTorch module, as the article gives it: the oracle minattn is checked against.

Only test and benchmark code imports this file; the package never imports torch.
``ArticleBAM`` is the article's code with its debugging comments removed. The two
variants change exactly one line each: the resize mode its comment promises, and
the SAGAN-style ``gamma * out + input`` its unused ``gamma`` suggests.
"""

import torch
import torch.nn.functional as F
from torch import nn


class ArticleBAM(nn.Module):
    """Basic self-attention module"""

    def __init__(self, in_dim, ds=8, activation=nn.ReLU):
        super().__init__()
        self.chanel_in = in_dim
        self.key_channel = self.chanel_in // 8
        self.activation = activation
        self.ds = ds
        self.pool = nn.AvgPool2d(self.ds)
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def attend(self, input):
        x = self.pool(input)
        m_batchsize, C, width, height = x.size()
        proj_query = self.query_conv(x).view(m_batchsize, -1, width * height).permute(0, 2, 1)
        proj_key = self.key_conv(x).view(m_batchsize, -1, width * height)
        energy = torch.bmm(proj_query, proj_key)
        energy = (self.key_channel**-0.5) * energy
        attention = self.softmax(energy)
        proj_value = self.value_conv(x).view(m_batchsize, -1, width * height)
        out = torch.bmm(proj_value, attention.permute(0, 2, 1))
        out = out.view(m_batchsize, C, width, height)
        return out, (width * self.ds, height * self.ds)

    def forward(self, input):
        out, size = self.attend(input)
        out = F.interpolate(out, size)
        out = out + input
        return out


class BilinearBAM(ArticleBAM):
    """What the article's comment says: resize back by bilinear interpolation."""

    def forward(self, input):
        out, size = self.attend(input)
        return F.interpolate(out, size, mode="bilinear", align_corners=False) + input


class GammaBAM(ArticleBAM):
    """SAGAN / DANet: the learned gamma scales the attention branch."""

    def forward(self, input):
        out, size = self.attend(input)
        return self.gamma * F.interpolate(out, size) + input


def with_key_channels(module, key_channels):
    """Rebuild the q/k convolutions of ``module`` with ``key_channels`` outputs (in place)."""
    C = module.chanel_in
    module.key_channel = key_channels
    module.query_conv = nn.Conv2d(C, key_channels, kernel_size=1).to(module.value_conv.weight.dtype)
    module.key_conv = nn.Conv2d(C, key_channels, kernel_size=1).to(module.value_conv.weight.dtype)
    return module
