"""One PyTorch measurement for ``minattn bench``: the article's module, forward + backward.

Run by the harness in its own process (the package never imports torch):

    python benchmarks/torch_worker.py --config 2,64,64,128,1 --dtype float32 --repeats 5

Prints one JSON line: times, peak_mib (peak RSS over the baseline), threads.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # article_bam.py
from article_bam import ArticleBAM  # noqa: E402

from minattn.bench import measure  # noqa: E402


def bam_step(cfg, dtype):
    """-> step(): one forward + backward of ArticleBAM on a (B, C, H, W) input."""
    B, C, H, W, ds = cfg
    torch.manual_seed(0)
    module = ArticleBAM(C, ds).to(dtype)
    x = torch.randn(B, C, H, W, dtype=dtype, requires_grad=True)
    dy = torch.randn(B, C, H, W, dtype=dtype)

    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).backward(dy)

    return step


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="B,C,H,W,ds")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    cfg = tuple(int(v) for v in args.config.split(","))
    dtype = getattr(torch, args.dtype)
    small = (1, cfg[1], 2 * cfg[4], 2 * cfg[4], cfg[4])
    result = measure(bam_step(cfg, dtype), bam_step(small, dtype), args.repeats)
    result["threads"] = torch.get_num_threads()
    result["torch"] = torch.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
