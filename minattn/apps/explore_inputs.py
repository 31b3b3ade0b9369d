"""What ``minattn explore`` shows: a module of the family on the demo's photograph features.

    minattn explore [--image PATH | --photo NAME] [--module bam|position|pam|cdsa]
                    [--weights FILE.npz] [--size S] [--ds N] [--out FILE.html]

The input is `minattn.features.photo_features` of a photograph, as in ``minattn demo``.
Without ``--weights`` each module gets the demo's hand-set weights (`demo_module`): query and
key share one projection, centred on the mean pixel, so that the attention means something
on a photograph. With ``--weights FILE.npz``, a state_dict saved with ``np.savez`` under the
PyTorch names (``minattn train --save`` writes one), the module is built to the shapes in
the file and loads it strictly, and the features get as many channels as it expects.

PAM and CDSA look at an image pair. From one picture we make the second one as notebook 6
does: the same scene moved by 4 pixels, 25% brighter, and one square replaced by a patch of
another photograph, a change to point at.
"""

import time
from pathlib import Path

import numpy as np

from ..features import load_image, load_photo, photo_features
from ..modules.bam import BAM
from ..modules.cdsa import CDSA
from ..modules.pam import PAM
from ..modules.position import PositionAttention
from ..viz.explore import explore
from .demo import demo_module

MODULES = ("bam", "position", "pam", "cdsa")
PAIRS = ("pam", "cdsa")  # the modules that look at an image pair
CHANNELS, KEY_CHANNELS, DS = 32, 8, 4  # the demo's
PAM_SIZES = (1, 2, 4, 8)  # STANet's, as CDSA's PAM
SHIFT = 4  # pixels the second image of a pair is moved by
# the key that tells each module's (C_k, C) in a state_dict, and whose presence marks CDSA's PAM
SHAPE_KEYS = {
    "bam": "query_conv.weight",
    "position": "query_conv.weight",
    "pam": "stages.0.f_query.0.weight",
    "cdsa": "Self_Att.query_conv.weight",
}
CDSA_PAM_KEY = "Self_Att.stages.0.f_query.0.weight"


def run(
    module="bam", photo=None, image=None, weights=None, size=128, ds=None, out="attention.html"
):
    """Build the module and its input, write the page, print and return its path."""
    t0 = time.perf_counter()
    net, x, shown = build(module, photo, image, weights, size, ds)
    path = explore(net, x, shown, out=out)
    took = time.perf_counter() - t0
    print(f"{net!r} on photo features {x[0].shape if isinstance(x, tuple) else x.shape}")
    print(f"weights: {weights or 'hand-set, as minattn demo (query = key, centred projection)'}")
    print(
        f"attention explorer written to {path} ({Path(path).stat().st_size / 1024:,.0f} KiB, "
        f"{took:.1f} s); open it in a browser: no server, no network"
    )
    return path


def build(module="bam", photo=None, image=None, weights=None, size=128, ds=None):
    """-> (module, x, image to draw): the module with its weights, on the photo's features."""
    if module not in MODULES:
        raise ValueError(f"module must be one of {', '.join(MODULES)}; got {module!r}")
    ds = _check_ds(module, ds)
    _check_size(module, size, ds)
    state = None if weights is None else load_weights(weights)
    channels, key_channels = _shapes(module, state)
    x, shown = _inputs(module, _picture(photo, image, size, module in PAIRS), size, channels)
    mode = "PAM" if state is not None and CDSA_PAM_KEY in state else "BAM"
    net = _module(module, channels, key_channels, ds, mode)
    if state is None:
        hand_set(net, x)
    else:
        _load(net, state, weights)
    return net, x, shown


def _check_ds(module, ds):
    if module == "position":
        if ds not in (None, 1):
            raise ValueError(
                f"--ds {ds} does not apply to --module position: DANet's position attention "
                f"does not pool (it attends over every pixel); use --size to set N"
            )
        return 1
    if ds is not None and (isinstance(ds, bool) or not isinstance(ds, int) or ds < 1):
        raise ValueError(f"--ds must be an int >= 1, got {ds!r}")
    return DS if ds is None else ds


def _check_size(module, size, ds):
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ValueError(f"--size must be an int >= 8, got {size!r}")
    step = ds * (max(PAM_SIZES) if module == "pam" else 1)
    if size % step:
        why = f"ds={ds}" if step == ds else f"ds={ds} times PAM's largest scale {max(PAM_SIZES)}"
        raise ValueError(f"--size {size} must be a multiple of {step} ({why})")


# ---------------------------------------------------------------- pictures


def _picture(photo, image, size, pair):
    """The picture at size x size (size + SHIFT for a pair, to move within)."""
    side = size + SHIFT if pair else size
    if image is not None:
        return load_image(image, side)
    return load_photo("astronaut" if photo is None else photo, side)


def image_pair(big, size):
    """One (size + SHIFT)-sided picture -> two size x size views of one scene.

    View 2 shows the scene moved up-left by SHIFT pixels, 25% brighter, and a square of it
    (a quarter of the side, below and right of the middle) replaced by another photograph.
    """
    first = big[:size, :size]
    second = np.clip(1.25 * big[SHIFT : size + SHIFT, SHIFT : size + SHIFT] + 0.05, 0, 1)
    side, top = size // 4, size // 2 + size // 16
    patch = load_photo("coffee", size)[size // 3 : size // 3 + side, size // 3 : size // 3 + side]
    second[top : top + side, top : top + side] = patch
    return first, second


# ---------------------------------------------------------------- modules


def _inputs(module, picture, size, channels):
    """-> (x, the image drawn under the maps): one picture, or a pair made from it."""
    if module not in PAIRS:
        return photo_features(picture, channels), picture
    first, second = image_pair(picture, size)
    x1, x2 = photo_features(first, channels), photo_features(second, channels)
    if module == "cdsa":
        return (x1, x2), (first, second)
    return np.concatenate([x1, x2], axis=3), np.concatenate([first, second], axis=1)


def _module(module, channels, key_channels, ds, mode):
    """The module, PyTorch's initialisation (seed 0); BatchNorm in evaluation mode."""
    if module == "bam":
        return BAM(channels, ds, key_channels=key_channels, seed=0)
    if module == "position":
        return PositionAttention(channels, key_channels=key_channels, seed=0)
    if module == "pam":
        return PAM(channels, channels, PAM_SIZES, ds, key_channels=key_channels, seed=0).eval()
    return CDSA(channels, ds, mode, seed=0).eval()  # key_channels: C // 8, as STANet


def hand_set(net, x):
    """The demo's weights: every query and key projection becomes the demo's centred one.

    ``demo_module`` scales them for BAM's energy (times key_channels ** -0.5); DANet's
    position attention has no such scale, so its projection is shrunk to give the same
    energies. Values and the rest keep PyTorch's initialisation: they do not change where
    a pixel looks.
    """
    inner = net.Self_Att if isinstance(net, CDSA) else net
    joined = np.concatenate(x, axis=3) if isinstance(x, tuple) else x
    unscaled = isinstance(inner, PositionAttention)
    sharpen = 4.0 * (inner.key_channels**-0.25 if unscaled else 1.0)
    demo = demo_module(joined, 1, inner.key_channels, sharpen).state_dict()
    for name, p in inner.params.items():
        for marks, source in (
            (("query_conv.", "f_query.0."), "query_conv."),
            (("key_conv.", "f_key.0."), "key_conv."),
        ):
            if any(mark in name for mark in marks):
                p[...] = demo[source + name.rsplit(".", 1)[1]]  # weight or bias


# ---------------------------------------------------------------- weights


def load_weights(path):
    """A state_dict saved with np.savez: {name: array}, read without pickles."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--weights {path}: no such file; expected an .npz saved with np.savez")
    try:
        with np.load(file, allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}
    except Exception as e:  # a zip of something else, a .npy, a text file: say what was expected
        raise ValueError(
            f"--weights {path}: cannot read it as an .npz of arrays ({type(e).__name__}: {e}); "
            f"expected np.savez(FILE, **module.state_dict())"
        ) from None


def _shapes(module, state):
    """(C, C_k) from the weights' query projection, or the demo's when there are none."""
    if state is None:
        return CHANNELS, KEY_CHANNELS
    key = SHAPE_KEYS[module]
    if module == "cdsa" and CDSA_PAM_KEY in state:
        key = CDSA_PAM_KEY
    shape = np.shape(state.get(key))
    if len(shape) != 4:  # a missing key: building with the defaults lets load_state_dict say so
        return CHANNELS, KEY_CHANNELS
    return int(shape[1]), int(shape[0])


def _load(net, state, path):
    try:
        net.load_state_dict(state)
    except (ValueError, TypeError) as e:
        raise ValueError(f"--weights {path} does not fit {net!r}: {e}") from None
