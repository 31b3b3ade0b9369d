"""minattn: self-attention on image feature maps, from scratch in NumPy.

The article's seven steps live in `minattn.steps` (vectorised) and
`minattn.reference` (literal loops); pooling and the resize in
`minattn.resize`; the Numba kernels in `minattn.kernels`; the module
that composes them is `minattn.BAM`.
"""

from .bam import BAM
from .gradcheck import GradcheckReport, gradcheck, numerical_gradient, rel_error

__all__ = ["BAM", "GradcheckReport", "gradcheck", "numerical_gradient", "rel_error"]
__version__ = "0.1.0"
