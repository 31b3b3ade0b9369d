"""minattn: self-attention on image feature maps, from scratch in NumPy.

The package is built in layers (docs/architecture.md), each a folder:

    ops/        1. step functions, the article's seven steps and the rest (+ reference/)
    kernels/       Numba: compiled loops and the streaming attention
    backend.py  2. which function runs each step ("reference", "numpy", "numba")
    modules/    3. BAM and the attention family, compositions of steps
    checking/      gradcheck and compare_steps
    training/      optimisers, losses, change detection
    course/        student versions of the exercises, the grader
    apps/          the command line, the demo, the benchmark

The step files are also reachable from here: ``minattn.steps``, ``minattn.resize``,
``minattn.layers``, ``minattn.batchnorm``, ``minattn.regions``, ``minattn.reference``.
"""

from .checking.compare import CompareReport, compare_steps
from .checking.gradcheck import GradcheckReport, gradcheck, numerical_gradient, rel_error
from .modules.bam import BAM
from .modules.cdsa import CDSA
from .modules.channel import ChannelAttention
from .modules.covariance import CovarianceAttention
from .modules.pam import PAM
from .modules.position import PositionAttention
from .modules.se import SqueezeExcitation
from .ops import batchnorm, layers, reference, regions, resize, steps
from .training import losses, optim

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
    "batchnorm",
    "compare_steps",
    "gradcheck",
    "layers",
    "losses",
    "numerical_gradient",
    "optim",
    "reference",
    "regions",
    "rel_error",
    "resize",
    "steps",
]
__version__ = "0.1.0"
