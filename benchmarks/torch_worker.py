"""One PyTorch measurement for ``minattn bench``: BAM forward + backward in PyTorch, two ways.

Run by the harness in its own process (the package never imports torch):

    python benchmarks/torch_worker.py --kind sdpa --config 2,64,64,128,1,64 --dtype float32

--kind article  the article's module (``tests/oracles/article_bam.py``): bmm, softmax, bmm
--kind sdpa     the same module with steps 3-5 done by ``F.scaled_dot_product_attention``
                on (B, 1, N, channels) tensors, the layout its fused CPU flash kernel takes.
                That kernel needs equal query/key/value channels (key_channels = in_dim);
                otherwise PyTorch falls back to its dense "math" kernel. The result says which.

The config is B,C,H,W,ds[,key_channels] (key_channels defaults to C // 8, the article's).
Prints one JSON line: times, peak_mib (peak RSS over the baseline), threads, sdpa_kernel.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "oracles"))  # article_bam.py
from article_bam import ArticleBAM, with_key_channels  # noqa: E402

from minattn.apps.bench import measure  # noqa: E402


class SDPABAM(ArticleBAM):
    """The article's module with bmm-softmax-bmm replaced by one fused SDPA call."""

    def attend(self, input):
        x = self.pool(input)
        B, C, h, w = x.size()
        # (B, ch, h, w) -> (B, 1, N, ch): one head, pixels as the sequence
        q = self.query_conv(x).flatten(2).transpose(1, 2).unsqueeze(1)
        k = self.key_conv(x).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value_conv(x).flatten(2).transpose(1, 2).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.key_channel**-0.5)
        out = out.squeeze(1).transpose(1, 2).reshape(B, C, h, w)
        return out, (h * self.ds, w * self.ds)


def bam_step(kind, cfg, dtype, compiled=False):
    """-> step(): one forward + backward on a (B, C, H, W) input; ``compiled``: the module
    under ``torch.compile`` (it compiles on the first call)."""
    B, C, H, W, ds, ck = cfg
    torch.manual_seed(0)
    module = with_key_channels((SDPABAM if kind == "sdpa" else ArticleBAM)(C, ds).to(dtype), ck)
    forward = torch.compile(module) if compiled else module
    x = torch.randn(B, C, H, W, dtype=dtype, requires_grad=True)
    dy = torch.randn(B, C, H, W, dtype=dtype)

    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        forward(x).backward(dy)

    return step


def sdpa_kernel_used(ck, C, dtype):
    """Which SDPA kernel PyTorch runs for these channels: "flash" if it can, else "math"."""
    q = torch.zeros(1, 1, 4, ck, dtype=dtype)
    v = torch.zeros(1, 1, 4, C, dtype=dtype)
    try:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            F.scaled_dot_product_attention(q, q, v)
        return "flash"
    except RuntimeError:
        return "math"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("article", "sdpa"), default="article")
    p.add_argument("--config", required=True, help="B,C,H,W,ds[,key_channels]")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    cfg = tuple(int(v) for v in args.config.split(","))
    cfg = cfg if len(cfg) == 6 else (*cfg, max(1, cfg[1] // 8))
    dtype = getattr(torch, args.dtype)
    small = (1, cfg[1], 2 * cfg[4], 2 * cfg[4], cfg[4], cfg[5])
    step, warmup = bam_step(args.kind, cfg, dtype), bam_step(args.kind, small, dtype)
    result = measure(step, warmup, args.repeats)
    result["threads"] = torch.get_num_threads()
    result["torch"] = torch.__version__
    if args.kind == "sdpa":
        result["sdpa_kernel"] = sdpa_kernel_used(cfg[5], cfg[1], dtype)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
