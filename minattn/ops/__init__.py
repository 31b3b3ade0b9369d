"""Layer 1, the step functions: every operation of every module as a forward/backward pair.

    out, cache = step_forward(inputs...)
    grads      = step_backward(dout, cache)

``steps``      the article's seven steps (1x1 convolutions, flatten, energy, scale, softmax,
               weighted sum, unflatten, residual)
``resize``     the average pooling before the attention and the resize back after it
``layers``     what the rest of the family adds: channel energy, the row-max trick, SE's
               squeeze, linear, ReLU, sigmoid, the gate, centring and unit norm
``batchnorm``  STANet's BatchNorm on the query and key
``regions``    the image pair side by side, and PAM's regions
``reference/`` the same functions, same names and caches, as literal loops

May import: NumPy and `minattn.validate`. Nothing here knows about backends or modules.
"""

from . import batchnorm, layers, reference, regions, resize, steps

__all__ = ["batchnorm", "layers", "reference", "regions", "resize", "steps"]
