"""minattn: self-attention on image feature maps, from scratch in NumPy.

The article's seven steps live in `minattn.steps` (vectorised) and
`minattn.reference` (literal loops); pooling and the resize in
`minattn.resize`; the Numba kernels in `minattn.kernels`. A backend
(`minattn.backend`) is a table of these step functions, and every module
(`minattn.BAM` and the rest of the family) is a short composition of steps
on the shared base `minattn.modules.base.Module` (the layout: docs/architecture.md).
"""

from . import optim
from .compare import CompareReport, compare_steps
from .gradcheck import GradcheckReport, gradcheck, numerical_gradient, rel_error
from .modules.bam import BAM
from .modules.cdsa import CDSA
from .modules.channel import ChannelAttention
from .modules.covariance import CovarianceAttention
from .modules.pam import PAM
from .modules.position import PositionAttention
from .modules.se import SqueezeExcitation

__all__ = [
    "BAM",
    "CDSA",
    "ChannelAttention",
    "CompareReport",
    "CovarianceAttention",
    "GradcheckReport",
    "PAM",
    "PositionAttention",
    "SqueezeExcitation",
    "compare_steps",
    "gradcheck",
    "optim",
    "numerical_gradient",
    "rel_error",
]
__version__ = "0.1.0"
