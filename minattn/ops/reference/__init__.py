"""The Torch-free reference: every step as literal loops over pixels and channels.

One file per vectorised step file, with the same function names, signatures and
caches, each formula written the way it reads on paper, one scalar at a time. It is
slow (use it on maps of a few dozen pixels) and it is what every fast path is checked
against. It shares no code with the fast path, so a shared mistake cannot hide in a
shared helper.
"""

from . import batchnorm, layers, regions, resize, steps
from .batchnorm import *  # noqa: F403
from .layers import *  # noqa: F403
from .regions import *  # noqa: F403
from .resize import *  # noqa: F403
from .steps import *  # noqa: F403

__all__ = ["batchnorm", "layers", "regions", "resize", "steps"]
