"""``minattn.explore``: a page on which one points at a pixel and sees where it looks.

    path = minattn.explore(module, x, image=None, *, out="attention.html", title=None)

writes one self-contained HTML file (script, style and picture inline; nothing fetched from
the network; it opens from disk) and returns its path. Pointing at a pixel shows its
attention over the picture, red high and blue low as the article's figure 2, the pixels it
attends to most, and how its row of the attention matrix is made.

What the page holds, and why. It does not hold the N x N attention matrix: it holds, for
every pixel j of the pooled map, the query q_j and the key k_j the module computes (steps 1
and 2), and when a pixel i is chosen the page's script computes its row itself:

    energy   e_j = q_i . k_j * scale          (steps 3 and 4; DANet has no scale)
    weight   a_j = softmax(e)_j               (over PAM's region of i only, for PAM)

so the arithmetic a student just implemented is what draws the picture, and the page grows
with N * key_channels, not N * N. q and k are stored as float32 (base64), which the contract
allows ("float32 accuracy") and which halves the page.

For tests, ``PAGE.html#query=ROW,COL`` selects that input pixel when the page loads (``&scale=S``
picks one of PAM's scales), and the text of the element with id ``attention-values`` is
``{"query": [ROW, COL], "shape": [h, w], "values": [...]}``: the row drawn, equal to
``module.attention_maps(x, [(ROW, COL)])[0, 0]``.

In Jupyter the returned path displays as the page itself, in an ``<iframe srcdoc=...>``: the
same page, interactive without any widget extension, and on the executed notebooks of the
documentation site too.
"""

import base64
import html
import json
import os
import re
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..modules.bam import BAM, project_forward
from ..modules.cdsa import CDSA
from ..modules.pam import PAM
from ..modules.position import PositionAttention
from . import page as explore_page

MODULES = (BAM, PositionAttention, PAM, CDSA)  # the family's pixel-to-pixel attentions
DEFAULT_TITLE = "Where does a pixel look? · 像素看向哪里？"


@dataclass(frozen=True)
class View:
    """What the page needs of a module and its input (one picture).

    input (H, W): input pixels of the picture (for a pair, both images side by side);
    grid (h, w): the pooled map the attention runs on, ``ds`` input pixels a side;
    pair: the width of image 1 in input pixels when the picture is a pair, else None;
    scale: the energy's factor (None: DANet's, none);
    stages: [(size, q, k)], q and k (h * w, Ck) float32 row-major; size is PAM's scale
    (its regions are size x size cells of each image), None for attention over all pixels.
    """

    module: str
    input: tuple
    grid: tuple
    ds: int
    pair: int | None
    scale: float | None
    stages: list


class Page(str):
    """The path of a written explorer page. In Jupyter it displays as the page itself."""

    def _repr_html_(self):
        return embed(Path(self).read_text(encoding="utf-8"))


def explore(module, x, image=None, *, out="attention.html", title=None):
    """Write an explorer page of ``module``'s attention on ``x``; return its path.

    Args:
        module: BAM, PositionAttention, PAM or CDSA (any backend, either dtype).
        x: its input with batch size 1: (1, C, H, W); for PAM (1, C, H, 2W), the pair side
            by side; for CDSA the pair (x1, x2), each (1, C, H, W).
        image: (H, W, 3) floats in [0, 1], drawn under the maps (for PAM (H, 2W, 3); for
            CDSA the pair (image1, image2)), or None.
        out: where to write the page (its folder must exist).
        title: the page's heading; None for a default.

    Returns the path as a `Page`, a str that Jupyter shows as the interactive page.
    Nothing is written when an argument is wrong.
    """
    out = _check_out(out)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    view = view_of(module, x)
    picture = picture_of(image, view, isinstance(module, CDSA))
    page = page_html(view, picture, DEFAULT_TITLE if title is None else title)
    Path(out).write_text(page, encoding="utf-8")
    return Page(out)


# ---------------------------------------------------------------- what the page needs


def view_of(module, x):
    """The `View` of ``module`` on ``x``: its query and key for every pooled pixel."""
    if not isinstance(module, MODULES):
        names = ", ".join(m.__name__ for m in MODULES)
        raise TypeError(
            f"module must be one of the family's pixel attentions ({names}), got "
            f"{type(module).__name__}"
        )
    if isinstance(module, CDSA):
        x1, x2 = _pair_input(x)
        module._validate_inputs(x1, x2)
        _check_batch(x1, "x1")
        view = view_of(module.Self_Att, np.concatenate((x1, x2), axis=3))  # as pair_concat
        return replace(view, module=repr(module), pair=x1.shape[3])
    module._validate_inputs(x)
    module._validate_params()
    _check_batch(x, "x")
    H, W = x.shape[2:]
    if isinstance(module, PAM):
        stages = [(s, *module.query_key(x, s)) for s in module.sizes]  # (1, Ck, h, 2w) each
        ds, pair, scale = module.ds, W // 2, module.scale
    else:
        ds = getattr(module, "ds", 1)  # PositionAttention does not pool
        pooled = x if ds == 1 else module.ops.avg_pool_forward(x, ds)[0]
        (q, k, _), _ = project_forward(module.ops, module.params, pooled)  # steps 1-2
        stages = [(None, q, k)]
        pair, scale = None, getattr(module, "scale", None)  # DANet: no scale
    flat = [(s, _rows(q), _rows(k)) for s, q, k in stages]
    return View(repr(module), (H, W), (H // ds, W // ds), ds, pair, scale, flat)


def _rows(a):
    """(1, Ck, ...) -> (N, Ck) float32: pixel j's vector is row j, as the script reads it."""
    return np.ascontiguousarray(a[0].reshape(a.shape[1], -1).T, dtype="<f4")


def _pair_input(x):
    if not (isinstance(x, tuple | list) and len(x) == 2):
        got = type(x).__name__ + (f" of length {len(x)}" if isinstance(x, tuple | list) else "")
        raise TypeError(f"x must be CDSA's input pair (x1, x2), got {got}")
    return x


def _check_batch(x, name):
    if x.shape[0] != 1:
        raise ValueError(
            f"{name} has batch size {x.shape[0]} (shape {x.shape}), expected 1: the page "
            f"shows one picture; pass {name}[:1]"
        )


def _check_out(out):
    if not isinstance(out, str | os.PathLike):
        raise TypeError(f"out must be a path (str or pathlib.Path), got {type(out).__name__}")
    folder = Path(out).resolve().parent
    if not folder.is_dir():
        raise ValueError(f"out={str(out)!r}: the folder {str(folder)!r} does not exist")
    if Path(out).is_dir():
        raise ValueError(f"out={str(out)!r} is a folder; expected a file name such as page.html")
    return out


# ---------------------------------------------------------------- the picture


def picture_of(image, view, is_pair):
    """image (H, W, 3) in [0, 1] (a pair of them for CDSA) -> joined (H, W, 3), or None."""
    if image is None:
        return None
    H, W = view.input
    if is_pair:
        if not (isinstance(image, tuple | list) and len(image) == 2):
            raise TypeError(
                f"image must be a pair (image1, image2) for CDSA, each ({H}, {W // 2}, 3), "
                f"got {type(image).__name__}"
            )
        for name, part in zip(("image[0]", "image[1]"), image, strict=True):
            _check_image(part, name, (H, W // 2, 3))
        return np.concatenate(image, axis=1)
    return _check_image(image, "image", (H, W, 3))


def _check_image(image, name, shape):
    if not isinstance(image, np.ndarray) or image.dtype.kind != "f":
        got = f"dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise TypeError(
            f"{name} must be a float array in [0, 1] of shape {shape}, got {got} "
            f"(for 8-bit pixels pass image / 255)"
        )
    if image.shape != shape:
        raise ValueError(
            f"{name} has shape {image.shape}, but x is {shape[0]} x {shape[1]} pixels: "
            f"expected shape {shape}"
        )
    if not (np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1):
        raise ValueError(
            f"{name} must hold values in [0, 1], got values from {np.nanmin(image):.3g} to "
            f"{np.nanmax(image):.3g}" + ("" if np.isfinite(image).all() else " and NaN or inf")
        )
    return image


def png_data_url(rgb):
    """(H, W, 3) floats in [0, 1] -> a PNG as a data: URL (zlib, no imaging library)."""
    pixels = np.round(rgb * 255).astype(np.uint8).reshape(rgb.shape[0], -1)
    # PNG's "Sub" filter: each byte minus the byte one pixel to its left (mod 256),
    # which makes a photograph compress about a third better than raw rows
    sub = pixels.copy()
    sub[:, 3:] -= pixels[:, :-3]
    rows = np.concatenate([np.ones((len(sub), 1), np.uint8), sub], axis=1)  # 1: "Sub"

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 8, 2, 0, 0, 0)  # 8-bit RGB
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ---------------------------------------------------------------- the page


def page_html(view, picture, title):
    """The page's text: the template of `minattn.viz.page` filled with ``view``."""
    H, W = view.input
    h, w = view.grid
    data = {
        "module": view.module,
        "input": [H, W],
        "grid": [h, w],
        "ds": view.ds,
        "pair": view.pair,
        "scale": view.scale,
        "keyChannels": view.stages[0][1].shape[1],
        "query": [H // 2, (view.pair or W) // 2],  # the middle of (the first) image
        "stages": [{"size": s, "q": _base64(q), "k": _base64(k)} for s, q, k in view.stages],
        "image": None if picture is None else png_data_url(picture),
    }
    subtitle = (
        f"{view.module}: input {H} × {W} pixels, attention over the pooled {h} × {w} map "
        f"(N = {h * w}) · 输入 {H} × {W} 像素，注意力在池化后的 {h} × {w} 特征图上"
    )
    page = explore_page.PAGE
    for slot in ("style", "body", "script"):  # the template's parts, then the values, once each
        page = page.replace("{{" + slot + "}}", getattr(explore_page, slot.upper()))
    values = {
        "title": html.escape(title),
        "subtitle": html.escape(subtitle),
        # inside <script>, "</" could end the element: JSON allows writing it "<\/"
        "data": json.dumps(data).replace("</", "<\\/"),
    }
    page = re.sub(r"\{\{(title|subtitle|data)\}\}", lambda m: values[m.group(1)], page)
    return page


def _base64(a):
    return base64.b64encode(a.tobytes()).decode("ascii")


def embed(page, height=900):
    """The page as HTML for a notebook's output: an iframe whose srcdoc is the whole page.

    The frame keeps the page's ids, style and script apart from the notebook's; the page's
    script sets the frame's height to its own once it has drawn.
    """
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" title="attention explorer" '
        f'style="width: 100%; height: {height}px; border: 0"></iframe>'
    )
