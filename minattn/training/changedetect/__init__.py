"""Change detection in miniature: STANet's task, learned with minattn's manual gradients.

``data``        pairs of views of a patchwork of fields, where a change can only be told
                from afar, with their change masks and features
``model``       features -> 1x1 projection -> CDSA -> distance map (``ChangeDetector``)
``controls``    the attention-free contexts: a pooled block mean, a wider convolution
``config``      ``Config``, everything the experiment depends on
``loop``        the Adam loop, models side by side on the same mini-batches
``metrics``     distance maps of a set, the threshold, F1
``attention``   the attention's mass on the pixels that decide a changed pixel
``lbfgs``       SciPy's L-BFGS-B with our gradient, a second opinion on it
``weights``     state_dicts in ``.npz``
``experiment``  what ``minattn train`` runs; ``figure`` draws it

May import: `minattn.modules`, `minattn.blas`, `minattn.validate`, `minattn.training`.
"""

from .config import Config
from .data import ChangePairs, make_pairs
from .experiment import run
from .lbfgs import fit_lbfgs
from .model import ChangeDetector
from .weights import load_weights, save_attention, save_weights

__all__ = [
    "ChangeDetector",
    "ChangePairs",
    "Config",
    "fit_lbfgs",
    "load_weights",
    "make_pairs",
    "run",
    "save_attention",
    "save_weights",
]
