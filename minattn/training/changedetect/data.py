"""A small change-detection data set cut from scikit-image's bundled photographs.

Each pair is two views of one scene at two times, with the ground-truth change mask,
built the way a real pair comes about rather than the way that would flatter attention:

* the scene is a crop of a photograph; "objects" are blob-shaped patches cut from other
  photographs of the same split. Some objects appear (only in the second view), some
  disappear (only in the first), some move (both places change), and some stay put
  (present in both views: an object that is there twice is not a change);
* the second view is misregistered by a sub-pixel shift of up to ``max_shift`` pixels,
  resampled bilinearly, as two acquisitions never line up exactly. The mask is drawn in
  the first view's coordinates, as change labels are;
* both views get their own nuisance changes, which must not count: brightness (gain and
  offset), a colour cast (per-channel gains), a smooth illumination ramp across the view
  (a shadow, haze), and sensor noise.

Training and held-out pairs come from different photographs (``TRAIN_PHOTOS``,
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
    scene changed (in image1's coordinates); photos: the source photograph of each pair;
    shifts: (n, 2) the (row, col) misregistration of image2, in pixels.
    """

    image1: np.ndarray
    image2: np.ndarray
    mask: np.ndarray
    photos: tuple
    shifts: np.ndarray

    def __len__(self):
        return len(self.mask)

    def features(self, channels=32, seed=0, dtype=np.float64):
        """The project's fixed photo features of both views: two (n, channels, H, W) arrays.

        One fixed random projection (``seed``) for every image, as one CNN would be.
        """
        from ...features import photo_features

        f1 = np.concatenate([photo_features(im, channels, seed, dtype) for im in self.image1])
        f2 = np.concatenate([photo_features(im, channels, seed, dtype) for im in self.image2])
        return f1, f2


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


def make_pairs(
    n,
    *,
    split="train",
    size=64,
    seed=0,
    max_shift=2.0,
    events=(1, 3),
    static=(0, 2),
    radius=(3.0, 9.0),
    gain=0.25,
    cast=0.12,
    ramp=0.25,
    noise=(0.01, 0.04),
):
    """Draw ``n`` pairs of ``size`` x ``size`` views (see the module docstring).

    Args:
        n: number of pairs.
        split: "train" (photos TRAIN_PHOTOS) or "heldout" (HELDOUT_PHOTOS).
        size: side of each view in pixels.
        seed: int >= 0; the pairs are a pure function of the arguments.
        max_shift: largest misregistration of the second view, in pixels (each axis).
        events: (lo, hi) number of changes per pair (appear, disappear or move).
        static: (lo, hi) number of objects present in both views at the same place.
        radius: (lo, hi) semi-axes of the elliptic objects, in pixels.
        gain, cast, ramp: nuisance strengths: brightness gain in 1 +- gain (and an offset
            of +- gain / 3), per-channel colour gains in 1 +- cast, an illumination ramp
            whose multiplier runs over 1 +- ramp across the view.
        noise: (lo, hi) standard deviation of the Gaussian sensor noise.

    Returns:
        ChangePairs with image1, image2 (n, size, size, 3), mask (n, size, size).
    """
    from scipy import ndimage

    n = validate_positive_int(n, "n")
    size = validate_positive_int(size, "size", minimum=16)
    split = validate_choice(split, "split", tuple(SPLITS))
    seed = validate_seed(seed)
    if isinstance(seed, np.random.Generator) or seed is None:
        raise TypeError(f"seed must be an int >= 0 (the pairs are a function of it), got {seed!r}")
    for name, value in (("max_shift", max_shift), ("gain", gain), ("cast", cast), ("ramp", ramp)):
        if not (isinstance(value, int | float) and 0 <= value < size / 4):
            raise ValueError(f"{name} must be a number in [0, {size / 4}), got {value!r}")
    events, static = _validate_range(events, "events", int), _validate_range(static, "static", int)
    radius, noise = _validate_range(radius, "radius", float), _validate_range(noise, "noise", float)
    if events[0] < 1:
        raise ValueError(f"events must have lo >= 1 (every pair has a change), got {events}")
    if radius[0] < 1 or 2 * radius[1] + 2 > size:
        raise ValueError(f"radius must lie in [1, {(size - 2) / 2}], got {radius}")

    index, photos = SPLITS[split]
    rng = np.random.default_rng([seed, index])
    margin = int(np.ceil(max_shift)) + 1  # room for the shifted crop of the second view
    S = size + 2 * margin
    image1 = np.empty((n, size, size, 3))
    image2 = np.empty((n, size, size, 3))
    masks = np.empty((n, size, size), dtype=bool)
    names, shifts = [], np.empty((n, 2))
    for i in range(n):
        name = photos[rng.integers(len(photos))]
        scene = _crop(load_scene_photo(name), S, rng)
        t1, t2 = scene.copy(), scene.copy()
        change = np.zeros((S, S), dtype=bool)
        # objects that stay put: the same patch at the same place in both views
        for _ in range(rng.integers(static[0], static[1] + 1)):
            blob, patch, (r, c) = _object(photos, S, margin, radius, rng)
            _paste(t1, blob, patch, r, c)
            _paste(t2, blob, patch, r, c)
        for _ in range(rng.integers(events[0], events[1] + 1)):
            blob, patch, (r, c) = _object(photos, S, margin, radius, rng)
            kind = rng.integers(3)  # 0 appears, 1 disappears, 2 moves
            if kind in (1, 2):
                _paste(t1, blob, patch, r, c)
                _mark(change, blob, r, c)
            if kind == 2:
                r, c = _place(blob.shape, S, margin, rng)
            if kind in (0, 2):
                _paste(t2, blob, patch, r, c)
                _mark(change, blob, r, c)
        # misregistration: the second view looks at the scene shifted by (dy, dx)
        dy, dx = rng.uniform(-max_shift, max_shift, size=2)
        t2 = ndimage.shift(t2, (-dy, -dx, 0), order=1, mode="nearest")
        crop = (slice(margin, margin + size),) * 2
        image1[i] = _nuisance(t1[crop], gain, cast, ramp, noise, rng)
        image2[i] = _nuisance(t2[crop], gain, cast, ramp, noise, rng)
        masks[i] = change[crop]
        names.append(name)
        shifts[i] = dy, dx
    return ChangePairs(image1, image2, masks, tuple(names), shifts)


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


def _crop(img, S, rng):
    """A random S x S window of img (flipped at random, for variety)."""
    h, w = img.shape[:2]
    r, c = rng.integers(h - S + 1), rng.integers(w - S + 1)
    out = img[r : r + S, c : c + S]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.array(out)


def _object(photos, S, margin, radius, rng):
    """A random elliptic blob, its texture (a patch of a photo of the split) and a place."""
    ry, rx = rng.uniform(radius[0], radius[1], size=2)
    theta = rng.uniform(0, np.pi)
    half = int(np.ceil(max(ry, rx)))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    u = np.cos(theta) * yy + np.sin(theta) * xx
    v = -np.sin(theta) * yy + np.cos(theta) * xx
    blob = (u / ry) ** 2 + (v / rx) ** 2 <= 1.0
    source = load_scene_photo(photos[rng.integers(len(photos))])
    patch = _crop(source, blob.shape[0], rng) * rng.uniform(0.7, 1.3)
    return blob, np.clip(patch, 0, 1), _place(blob.shape, S, margin, rng)


def _place(shape, S, margin, rng):
    """Top-left corner so that the object lies inside the first view's crop."""
    k = shape[0]
    return rng.integers(margin, S - margin - k + 1, size=2)


def _paste(img, blob, patch, r, c):
    k = blob.shape[0]
    region = img[r : r + k, c : c + k]
    region[blob] = patch[blob]


def _mark(mask, blob, r, c):
    k = blob.shape[0]
    mask[r : r + k, c : c + k] |= blob


def _nuisance(img, gain, cast, ramp, noise, rng):
    """Brightness, colour cast, an illumination ramp and noise: changes that do not count."""
    H, W, _ = img.shape
    g = 1 + rng.uniform(-gain, gain)
    offset = rng.uniform(-gain, gain) / 3
    colour = 1 + rng.uniform(-cast, cast, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:H, 0:W] / max(H - 1, W - 1) - 0.5
    light = 1 + 2 * rng.uniform(-ramp, ramp) * (np.cos(angle) * yy + np.sin(angle) * xx)
    out = img * g * colour * light[..., None] + offset
    out = out + rng.normal(0.0, rng.uniform(*noise), size=img.shape)
    return np.clip(out, 0.0, 1.0)
