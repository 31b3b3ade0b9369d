"""``minattn demo``: BAM on a real photograph, step by step, checked, and drawn.

1. Build a feature map from a bundled photograph, or from your own picture with
   ``--image PATH`` (see `minattn.features`).
2. Run BAM once, printing every article step with its shape and a statistic.
3. Check its backward pass by finite differences on a crop, and print the table.
4. Draw the attention of a few query pixels, red high and blue low (the article's
   figure 2), and save the figure.

With PyTorch's default initialisation the energies are tiny and the attention
nearly uniform: an untrained module looks everywhere. To show the article's
"covariance" reading, the demo sets the weights by hand: key shares query's
projection W, and both biases are -W m, with m the image's mean feature vector, so
q_i . k_j = (x_i - m)^T W^T W (x_j - m): large when pixels i and j deviate from
the average pixel in the same way. Without the centring, pixels with large
feature vectors win every row, whatever the query. (Notebook 1 shows exactly when
the energy is the article's pixel covariance; this is its spirit, not its letter.)
``sharpen`` multiplies W so the softmax has something to choose between.
"""

import time
from pathlib import Path

import numpy as np

from ..checking.gradcheck import gradcheck
from ..features import load_image, load_photo, photo_features
from ..modules.bam import BAM

# query pixels (row, col) as fractions of the image: on the astronaut, her hair, the
# neck ring, the orange sleeve and the grey background; on other photos, spread-out points.
QUERIES = ((0.15, 0.45), (0.35, 0.45), (0.78, 0.1), (0.1, 0.9))


def demo_module(x, ds, key_channels=8, sharpen=4.0, seed=0):
    """A BAM for x whose energy compares centred, projected pixel features (see module doc)."""
    channels = x.shape[1]
    bam = BAM(channels, ds, key_channels=key_channels, seed=seed)
    sd = bam.state_dict()
    W = sharpen * sd["query_conv.weight"]  # (Ck, C, 1, 1)
    mean = x.mean(axis=(0, 2, 3))  # pooling keeps the mean of each channel
    sd["query_conv.weight"] = sd["key_conv.weight"] = W
    sd["query_conv.bias"] = sd["key_conv.bias"] = -W[:, :, 0, 0] @ mean
    bam.load_state_dict(sd)
    return bam


def _stat(name, a):
    if "attention" in name:
        uniform = 1 / a.shape[-1]
        return f"rows sum to {a.sum(-1).mean():.3f}, max {a.max():.4f} (uniform 1/N {uniform:.4f})"
    return f"mean {a.mean():+.3f}, std {a.std():.3f}"


def run(
    photo="astronaut",
    size=128,
    channels=32,
    ds=4,
    out="minattn-demo.png",
    sharpen=4.0,
    image=None,
):
    """Run the demo; return the path of the figure it wrote.

    photo: a scikit-image sample photograph by name; image: the path of your own picture
    (PNG, JPEG, ...), used instead of ``photo`` when given.
    """
    t0 = time.perf_counter()
    if not Path(out).resolve().parent.is_dir():
        raise ValueError(f"out={str(out)!r}: the folder {str(Path(out).parent)!r} does not exist")
    if image is not None:
        picture = load_image(image, size)
        source = f"{image}, centred square resized to {size}x{size}"
    else:
        picture = load_photo(photo, size)
        source = f"skimage.data.{photo}(), resized to {size}x{size}"
    x = photo_features(picture, channels)
    print(f"photo: {source}")
    print(f"feature map x: {x.shape} (7 hand-made features -> random 1x1 conv + ReLU)")
    print(f"BAM(in_dim={channels}, ds={ds}, key_channels=8), N = {(size // ds) ** 2} pooled pixels")
    print(f"weights set by hand: key = query = centred projection x{sharpen:g}\n")

    bam = demo_module(x, ds, sharpen=sharpen)
    print(f"{'step':34s} {'shape':18s} statistic")

    def trace(name, a):
        print(f"{name:34s} {str(a.shape):18s} {_stat(name, a)}")

    bam.forward(x, trace=trace)

    # a central crop of about 16x16 pixels (a multiple of ds) keeps the check to a second
    k = min(size // ds, max(1, 16 // ds)) * ds
    r0 = (size - k) // 2 // ds * ds
    crop = np.ascontiguousarray(x[:, :, r0 : r0 + k, r0 : r0 + k])
    print(f"\ngradient check on a central {k}x{k} crop (up to 120 random entries of each array):")
    check = demo_module(crop, ds, sharpen=sharpen, seed=1)
    report = gradcheck(check, crop, max_elements=120)
    print(report)

    path = plot_attention(bam, x, picture, out)
    print(f"\nattention maps (red high, blue low) written to {path}")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s")
    return path


def plot_attention(bam, x, image, out):
    """Save the photo with query pixels marked, and each query's attention map over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H, W = x.shape[2:]
    queries = [(int(r * H), int(c * W)) for r, c in QUERIES]
    maps = bam.attention_maps(x, queries)[0]  # (Q, h, w)
    fig, axes = plt.subplots(1, len(queries) + 1, figsize=(3.2 * (len(queries) + 1), 3.4))
    axes[0].imshow(image)
    axes[0].set_title("photo and query pixels")
    for q, (r, c) in enumerate(queries):
        axes[0].plot(c, r, "wo", markeredgecolor="k")
        axes[0].annotate(str(q + 1), (c, r), xytext=(5, -5), textcoords="offset points", color="w")
    for q, ((r, c), ax) in enumerate(zip(queries, axes[1:], strict=True)):
        ax.imshow(image.mean(axis=2), cmap="gray")
        im = ax.imshow(maps[q], cmap="jet", alpha=0.6, extent=(-0.5, W - 0.5, H - 0.5, -0.5))
        ax.plot(c, r, "wo", markeredgecolor="k")
        ax.set_title(f"attention of query {q + 1}")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return str(out)
