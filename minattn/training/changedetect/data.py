"""Pairs of views of one scene in two seasons, where a change can only be told from afar.

Each pair is two views of a crop of one of scikit-image's bundled photographs. The second
view is taken in another season, under another light: every pixel's colour is mapped by
one random transform per pair, a gain and an offset per colour channel (up to ``gain`` and
``offset``). A **change** is a region whose colour was mapped by a transform of its own
(a roof repainted, a field harvested): one to a few large elliptic regions, each with a
transform drawn anew and visibly different from the season's. Both views get sensor noise.

Why no local model can tell: inside a changed region, a pixel and its neighbours look just
like pixels of an unchanged scene in another season (the same texture in both views, a
colour transform of the same kind and size). Whether a pixel's transform is the season's
can only be read off the rest of the scene, far beyond the region: the unchanged pixels,
whose common transform *is* the season (``ChangePairs.deciders``).

Training and held-out pairs use different photographs (``TRAIN_PHOTOS``,
``HELDOUT_PHOTOS``), and everything is drawn from ``np.random.default_rng([seed, split])``,
so the same arguments give the same pairs, bit for bit.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np

from ...validate import validate_choice, validate_positive_int, validate_seed

TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "camera", "brick", "grass")
HELDOUT_PHOTOS = ("chelsea", "coins", "gravel", "immunohistochemistry")
SPLITS = {"train": (0, TRAIN_PHOTOS), "heldout": (1, HELDOUT_PHOTOS)}
PHOTO_SIDE = 192  # photographs are resized so their shorter side has this many pixels


@dataclass(frozen=True)
class ChangePairs:
    """``n`` image pairs with their change masks.

    image1, image2: (n, H, W, 3) floats in [0, 1]; mask: (n, H, W) bool, True where the
    scene changed; photos: the source photograph of each pair; season: (n, 2, 3) the gain
    and offset per channel that map view 1's colours to view 2's outside the changes.
    """

    image1: np.ndarray
    image2: np.ndarray
    mask: np.ndarray
    photos: tuple
    season: np.ndarray

    def __len__(self):
        return len(self.mask)

    def deciders(self, i, view):
        """(H, 2W) bool over pair i side by side: the pixels that decide a pixel of ``view``.

        The unchanged pixels of its own view (0 or 1): their common colour transform is the
        season's, against which a pixel's own transform tells change from no change.
        """
        unchanged = ~self.mask[i]
        none = np.zeros_like(unchanged)
        return np.concatenate([unchanged, none] if view == 0 else [none, unchanged], axis=1)

    def features(self, channels=32, seed=0, dtype=np.float64):
        """Both views' fixed features, two (n, channels, H, W) arrays (see `view_features`)."""
        f1 = np.stack([view_features(im, 0, channels, seed, dtype) for im in self.image1])
        f2 = np.stack([view_features(im, 1, channels, seed, dtype) for im in self.image2])
        return f1, f2


# ---------------------------------------------------------------- features


def view_features(image, view, channels=32, seed=0, dtype=np.float64):
    """A fixed, local feature extractor: (H, W, 3) image -> (channels, H, W).

    Seven measurements per pixel (R, G, B, brightness smoothed over a few pixels, edge
    strength, row, column), each brought to about mean 0 and variance 1 with *fixed*
    constants, then ReLU(W @ m + b) with W, b fixed random (``seed``) for channels - 1
    channels, and one **time channel**: +1 on view 0, -1 on view 1. Every value depends on
    a few pixels around its own, as a CNN's first layer; ``minattn.features.photo_features``
    instead standardises over the whole image, which is global context made by hand and
    would do part of the attention's work. The time channel tells the two views apart once
    CDSA has put them side by side, as the time (position) embedding of a transformer over
    an image pair does.
    """
    from skimage import filters

    H, W, _ = image.shape
    gray = image.mean(axis=2)
    rows, cols = np.mgrid[0:H, 0:W] / max(H, W)
    m = np.stack([*image.transpose(2, 0, 1), filters.gaussian(gray, sigma=2)])
    m = (m - 0.45) / 0.25  # colour and brightness: photographs' typical mean and spread
    m = np.concatenate([m, [8 * filters.sobel(gray) - 0.5, 3.4 * (rows - 0.5), 3.4 * (cols - 0.5)]])
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((channels - 1, len(m))) / np.sqrt(len(m))
    bias = rng.uniform(-0.5, 0.5, size=(channels - 1, 1, 1))
    feats = np.maximum(np.einsum("ck,khw->chw", weight, m) + bias, 0.0)
    time = np.full((1, H, W), 1.0 - 2.0 * view)
    return np.concatenate([feats, time]).astype(dtype)


# ---------------------------------------------------------------- the pairs


def make_pairs(n, *, split="train", size=64, seed=0, changes=(1, 2), radius=(0.16, 0.25),
               gain=0.4, offset=0.2, noise=(0.01, 0.03)):  # fmt: skip
    """Draw ``n`` pairs of ``size`` x ``size`` views (see the module docstring).

    Args:
        n: number of pairs.
        split: "train" (photos TRAIN_PHOTOS) or "heldout" (HELDOUT_PHOTOS).
        size: side of each view in pixels.
        seed: int >= 0; the pairs are a pure function of the arguments.
        changes: (lo, hi) changed regions per pair.
        radius: (lo, hi) semi-axes of the elliptic changed regions, as fractions of size.
        gain, offset: the season's (and each change's) colour transform: per channel a gain
            in 1 +- gain and an offset in +- offset.
        noise: (lo, hi) standard deviation of the Gaussian sensor noise.

    Returns:
        ChangePairs with image1, image2 (n, size, size, 3), mask (n, size, size).
    """
    n, size, seed, split, changes, radius, noise = _validate(
        n, size, seed, split, changes, radius, gain, offset, noise
    )
    index, photos = SPLITS[split]
    rng = np.random.default_rng([seed, index])
    out = {k: [] for k in ("image1", "image2", "mask", "photos", "season")}
    for _ in range(n):
        name = photos[rng.integers(len(photos))]
        scene = _crop(load_scene_photo(name), size, rng)
        season = _transform(gain, offset, rng)
        view2, mask = _apply(scene, *season), np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(changes[0], changes[1] + 1)):
            region = _ellipse(size, radius, rng)
            own = _different_transform(season, gain, offset, rng)
            view2 = np.where(region[..., None], _apply(scene, *own), view2)
            mask |= region
        out["image1"].append(_sensor(scene, noise, rng))
        out["image2"].append(_sensor(view2, noise, rng))
        out["mask"].append(mask)
        out["photos"].append(name)
        out["season"].append(season)
    arrays = {k: np.stack(v) for k, v in out.items() if k != "photos"}
    return ChangePairs(**arrays, photos=tuple(out["photos"]))


def _validate(n, size, seed, split, changes, radius, gain, offset, noise):
    n = validate_positive_int(n, "n")
    size = validate_positive_int(size, "size", minimum=16)
    split = validate_choice(split, "split", tuple(SPLITS))
    seed = validate_seed(seed)
    if isinstance(seed, np.random.Generator) or seed is None:
        raise TypeError(f"seed must be an int >= 0 (the pairs are a function of it), got {seed!r}")
    changes = _validate_range(changes, "changes", int)
    if changes[0] < 1:
        raise ValueError(f"changes must have lo >= 1 (every pair has a change), got {changes}")
    radius = _validate_range(radius, "radius", float)
    if radius[0] * size < 1 or radius[1] > 0.5:
        raise ValueError(f"radius must lie in [{1 / size}, 0.5] (fractions of size), got {radius}")
    for name, value in (("gain", gain), ("offset", offset)):
        if not (isinstance(value, int | float) and 0 < value <= 0.5):
            raise ValueError(f"{name} must be a number in (0, 0.5], got {value!r}")
    return n, size, seed, split, changes, radius, _validate_range(noise, "noise", float)


def _validate_range(value, name, kind):
    try:
        lo, hi = value
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a (lo, hi) pair, got {value!r}") from e
    ok = (int,) if kind is int else (int, float)
    if not all(isinstance(v, ok) and not isinstance(v, bool) for v in (lo, hi)):
        raise TypeError(f"{name} must be a pair of {kind.__name__}s, got {value!r}")
    if not 0 <= lo <= hi:
        raise ValueError(f"{name} must satisfy 0 <= lo <= hi, got {value!r}")
    return lo, hi


@cache
def load_scene_photo(name):
    """A bundled photograph as (h, w, 3) floats in [0, 1], shorter side PHOTO_SIDE pixels."""
    from skimage import color, data, transform

    img = getattr(data, name)()
    if img.ndim == 2:
        img = color.gray2rgb(img)
    img = img[..., :3].astype(np.float64) / 255.0
    h, w = img.shape[:2]
    s = PHOTO_SIDE / min(h, w)
    img = transform.resize(img, (round(h * s), round(w * s)), anti_aliasing=True, order=1)
    img = np.clip(img, 0.0, 1.0)
    img.setflags(write=False)  # cached and shared: nobody may write into it
    return img


def _crop(img, S, rng):
    """A random S x S window of img (flipped at random, for variety)."""
    h, w = img.shape[:2]
    r, c = rng.integers(h - S + 1), rng.integers(w - S + 1)
    out = img[r : r + S, c : c + S]
    return out[:, ::-1] if rng.random() < 0.5 else out


def _transform(gain, offset, rng):
    """A colour transform, (2, 3): per channel a gain in 1 +- gain and an offset in +- offset."""
    return np.stack([1 + rng.uniform(-gain, gain, 3), rng.uniform(-offset, offset, 3)])


def _different_transform(season, gain, offset, rng):
    """A transform that moves a mid-grey (0.45) at least offset * 2/3 away from the season's
    on some channel: a change big enough to see, drawn from the same ranges."""
    while True:
        own = _transform(gain, offset, rng)
        if np.abs(_apply(0.45, *own) - _apply(0.45, *season)).max() > offset * 2 / 3:
            return own


def _apply(img, g, o):
    return img * g + o


def _ellipse(size, radius, rng):
    """(size, size) bool: a random elliptic region, its centre inside the view."""
    ry, rx = rng.uniform(*radius, size=2) * size
    theta = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.2 * size, 0.8 * size, size=2)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    u = np.cos(theta) * (yy - cy) + np.sin(theta) * (xx - cx)
    v = -np.sin(theta) * (yy - cy) + np.cos(theta) * (xx - cx)
    return (u / ry) ** 2 + (v / rx) ** 2 <= 1.0


def _sensor(img, noise, rng):
    """Sensor noise of a random strength, clipped to [0, 1]."""
    out = img + rng.normal(0.0, rng.uniform(*noise), size=img.shape)
    return np.clip(out, 0.0, 1.0)
