"""``minattn demo --image PATH``: the demo on the user's own picture (its errors:
test_cli_errors.py)."""

import numpy as np
import pytest

from minattn.apps.cli import main
from minattn.features import load_image


def write_picture(path, height=90, width=140):
    """A wide test picture: blue margins left and right, a green square in the middle with
    a red disc in it. Written with scikit-image (PNG or JPEG, from the suffix)."""
    from skimage import io

    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[..., 2] = 200  # blue everywhere
    left = (width - height) // 2
    img[:, left : left + height] = (20, 180, 40)  # the centred square: green
    rows, cols = np.mgrid[0:height, 0:width]
    disc = (rows - height / 2) ** 2 + (cols - width / 2) ** 2 < (height / 4) ** 2
    img[disc] = (220, 30, 30)
    io.imsave(str(path), img, check_contrast=False)
    return img


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_demo_runs_on_a_picture_of_your_own(tmp_path, capsys, suffix):
    picture = tmp_path / f"mine{suffix}"
    write_picture(picture)
    out = tmp_path / "attention.png"
    assert main(["demo", "--image", str(picture), "--size", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert str(picture) in text and "centred square" in text
    assert "overall: PASS" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_image_cuts_the_centred_square_and_scales_to_unit_range(tmp_path):
    picture = tmp_path / "wide.png"
    original = write_picture(picture)
    before = picture.read_bytes()
    img = load_image(picture, size=32)
    assert img.shape == (32, 32, 3) and img.dtype == np.float64
    assert 0.0 <= img.min() and img.max() <= 1.0
    # the blue margins are cut away: the border of the result is the green square
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    assert np.allclose(border.mean(axis=0), np.array([20, 180, 40]) / 255, atol=0.02)
    # the red disc is in the middle
    assert img[16, 16, 0] > 0.8 and img[16, 16, 1] < 0.2
    assert picture.read_bytes() == before and original.dtype == np.uint8


def test_load_image_accepts_grey_and_rgba(tmp_path):
    from skimage import io

    grey = (np.arange(40 * 40).reshape(40, 40) % 256).astype(np.uint8)
    io.imsave(str(tmp_path / "grey.png"), grey, check_contrast=False)
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    io.imsave(str(tmp_path / "rgba.png"), rgba, check_contrast=False)
    g = load_image(tmp_path / "grey.png", size=20)
    assert g.shape == (20, 20, 3) and np.allclose(g[..., 0], g[..., 1])
    r = load_image(tmp_path / "rgba.png", size=20)
    assert r.shape == (20, 20, 3) and np.allclose(r[..., 0], 1.0) and np.allclose(r[..., 1:], 0)
