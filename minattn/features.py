"""Feature maps from real photographs, for the demo and the notebooks.

BAM sits inside a CNN and attends over its feature maps. We have no trained CNN,
so we build a stand-in that a reader can hold in their head: seven hand-made
per-pixel features (colour, smoothed brightness, edge strength, position), each
standardised, then one fixed random 1x1 convolution with a ReLU, like the first
layer of a CNN. Pixels with similar colour, texture and position get similar
feature vectors, which is what the "covariance" of the article picks up.
"""

import warnings

import numpy as np

from .validate import validate_positive_int

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon")


def load_photo(name="astronaut", size=128):
    """A scikit-image bundled photograph as (size, size, 3) floats in [0, 1] (offline)."""
    from skimage import color, data, transform

    validate_positive_int(size, "size")
    if name not in PHOTOS:
        raise ValueError(f"photo must be one of {', '.join(PHOTOS)}; got {name!r}")
    img = getattr(data, name)()
    if img.ndim == 2:
        img = color.gray2rgb(img)
    img = transform.resize(img[..., :3], (size, size), anti_aliasing=True)
    return np.clip(img, 0.0, 1.0)


def load_image(path, size=128):
    """Your own picture (PNG, JPEG, or any format scikit-image reads) as (size, size, 3) floats.

    The largest centred square is cut out (so nothing is stretched) and resized to
    size x size; greyscale becomes RGB, an alpha channel is dropped. A missing file, a
    folder or a file that is not an image raises ValueError naming the path.
    """
    from pathlib import Path

    from skimage import color, io, transform

    validate_positive_int(size, "size")
    file = Path(path)
    if not file.exists():
        raise ValueError(f"image={str(path)!r}: no such file")
    if not file.is_file():
        raise ValueError(f"image={str(path)!r}: not a file")
    try:
        with warnings.catch_warnings():  # imageio's plugin deprecation notes are not for users
            warnings.simplefilter("ignore")
            img = np.asarray(io.imread(str(file)))
    except Exception as e:  # every reader raises its own kind: name the file and the cause
        cause = (str(e).strip().splitlines() or [""])[0]  # imageio adds lines of plugin advice
        raise ValueError(
            f"image={str(path)!r}: cannot read it as an image; expected a picture file such "
            f"as PNG or JPEG (the reader said {type(e).__name__}: {cause})"
        ) from None
    if img.dtype == bool:
        img = img.astype(np.float64)
    if img.ndim == 3 and img.shape[2] in (1, 2):  # grey, grey + alpha
        img = img[..., 0]
    if img.ndim == 2:
        img = color.gray2rgb(img)
    if not (img.ndim == 3 and img.shape[2] in (3, 4) and min(img.shape[:2]) >= 1):
        raise ValueError(
            f"image={str(path)!r}: expected a 2-D picture (grey, RGB or RGBA), "
            f"got an array of shape {img.shape}"
        )
    if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
        raise ValueError(f"image={str(path)!r}: unsupported pixel type {img.dtype}")
    H, W = img.shape[:2]
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    square = img[top : top + side, left : left + side, :3]
    # floats are taken to be in [0, 1] already; integers are scaled by their type's range
    out = transform.resize(square, (size, size), anti_aliasing=side > size)
    return np.clip(np.nan_to_num(out.astype(np.float64)), 0.0, 1.0)


def photo_features(image, channels=32, seed=0, dtype=np.float64):
    """Turn an (H, W, 3) image into a (1, channels, H, W) feature map.

    Base features per pixel: R, G, B, brightness smoothed with a Gaussian (sigma 2),
    edge strength (Sobel magnitude), row and column position, each standardised to
    mean 0 and variance 1; then ReLU(W @ base + b) with W, b fixed random (``seed``).
    """
    from skimage import filters

    validate_positive_int(channels, "channels")
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"image must be an (H, W, 3) array, got {getattr(image, 'shape', image)}")
    H, W, _ = image.shape
    gray = image.mean(axis=2)
    rows, cols = np.mgrid[0:H, 0:W] / max(H, W)
    base = np.stack(
        [
            image[..., 0],
            image[..., 1],
            image[..., 2],
            filters.gaussian(gray, sigma=2),
            filters.sobel(gray),
            rows,
            cols,
        ]
    )  # (7, H, W)
    base = (base - base.mean(axis=(1, 2), keepdims=True)) / (
        base.std(axis=(1, 2), keepdims=True) + 1e-8
    )
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((channels, base.shape[0])) / np.sqrt(base.shape[0])
    bias = rng.uniform(-0.5, 0.5, size=(channels, 1, 1))
    feats = np.maximum(np.einsum("ck,khw->chw", weight, base) + bias, 0.0)
    return feats[None].astype(dtype)
