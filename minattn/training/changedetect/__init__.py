"""Change detection in miniature: STANet's task, learned with minattn's manual gradients.

``data``   pairs of views of one scene with their change masks, from bundled photographs
``model``  features -> 1x1 projection -> CDSA -> distance map (``ChangeDetector``)
``train``  the training loop, threshold choice, F1, the figure: ``minattn train``
"""

from .data import ChangePairs, make_pairs
from .model import ChangeDetector
from .train import Config, fit_lbfgs, load_weights, run, save_weights

__all__ = [
    "ChangeDetector",
    "ChangePairs",
    "Config",
    "fit_lbfgs",
    "load_weights",
    "make_pairs",
    "run",
    "save_weights",
]
