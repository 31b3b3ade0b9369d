"""The attention explorer's page: its size and the time to build it, against what it avoids.

For each case the module and its input are built as ``minattn explore`` builds them (the
demo's photograph features and hand-set weights), then ``minattn.explore`` is timed alone
(median of ``--repeats`` builds, the first one not counted). The page holds the pooled map's
queries and keys, 2 N key_channels float32 numbers per stage; the table sets its size against
the N x N float32 attention matrix it does not hold, and the build time against one
``attention_maps`` call for every pooled pixel of one row of the map (what drawing rows in
Python would cost), measured in the same run.

    .venv/bin/python benchmarks/explore_page.py
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from minattn.apps import explore_inputs
from minattn.features import load_photo
from minattn.viz.explore import explore

# (name, module, size, ds): the default run, and maps of 128 x 128 pooled pixels
CASES = [
    ("minattn explore (default)", "bam", 128, 4),
    ("--module position (128 x 128 map)", "position", 128, 1),
    ("--size 512 --ds 4 (128 x 128 map)", "bam", 512, 4),
    ("--module pam (pair, 4 scales)", "pam", 128, 4),
    ("--module cdsa (pair)", "cdsa", 128, 4),
]


def timed(f, repeats):
    f()  # the first call pays for imports and caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    load_photo()  # scikit-image's import, outside the timings
    header = (
        f"{'case':36s} {'N':>6s} {'Ck':>3s} {'page KiB':>9s} {'q+k KiB':>8s} "
        f"{'N x N f32 MiB':>13s} {'page / NxN':>10s} {'build ms':>9s} {'row maps ms':>11s} "
        f"{'build / maps':>12s}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name, module, size, ds in CASES:
            net, x, shown = explore_inputs.build(module, size=size, ds=ds)
            out = Path(tmp) / "page.html"
            build_s = timed(lambda: explore(net, x, shown, out=out), args.repeats)  # noqa: B023
            page = out.stat().st_size
            inner = getattr(net, "Self_Att", net)
            stages = len(getattr(inner, "sizes", (1,)))
            n = (size // ds) ** 2 * (2 if module in explore_inputs.PAIRS else 1)
            qk = 2 * n * inner.key_channels * 4 * stages
            width = size // ds * (2 if module in explore_inputs.PAIRS else 1)
            row = [(0, c * ds) for c in range(width)]  # one query per pooled pixel of row 0
            maps_s = timed(lambda: net.attention_maps(x, row), args.repeats)  # noqa: B023
            print(
                f"{name:36s} {n:6d} {inner.key_channels:3d} {page / 1024:9,.0f} "
                f"{qk / 1024:8,.0f} {n * n * 4 / 2**20:13,.1f} {page / (n * n * 4):10.2e} "
                f"{build_s * 1e3:9.0f} {maps_s * 1e3:11.1f} {build_s / maps_s:12.1f}"
            )
    print(
        "\npage: the HTML file (q and k in base64, the picture as PNG, script and style); "
        "q+k: the raw float32 queries and keys;\nrow maps: one attention_maps call for every "
        f"pooled pixel of the map's first row; times are medians of {args.repeats} runs"
    )


if __name__ == "__main__":
    main()
