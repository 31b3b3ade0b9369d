"""How far the float32 path is from float64: the figures in docs/numerics.md.

    .venv/bin/python benchmarks/float32_error.py

For each configuration, the same random parameters (non-zero gamma) and input run in
float64 and float32 on every backend; the table gives the largest error of the
float32 result relative to the largest entry of the float64 result, for the output,
dx and the worst parameter gradient (the key bias, zero in theory, is compared on
the scale of dx).
"""

import numpy as np

from minattn import BAM

CONFIGS = [  # (B, C, H, W, ds, input scale)
    (2, 16, 16, 16, 1, 1.0),
    (2, 64, 32, 32, 2, 1.0),
    (1, 64, 64, 64, 4, 1.0),
    (2, 64, 32, 32, 2, 10.0),
    (2, 64, 32, 32, 2, 1e-3),
]


def rel(a, b, scale=None):
    return float(np.abs(a.astype(np.float64) - b).max() / (scale or np.abs(b).max()))


def main():
    print(f"{'B, C, H, W, ds':18s} {'scale':>6s} {'backend':8s} {'y':>9s} {'dx':>9s} {'grads':>9s}")
    for B, C, H, W, ds, s in CONFIGS:
        rng = np.random.default_rng(0)
        x, dy = s * rng.standard_normal((B, C, H, W)), rng.standard_normal((B, C, H, W))
        for backend in ("numpy", "numba"):
            m64 = BAM(C, ds, use_gamma=True, backend=backend, seed=1)
            m64.params["gamma"] = np.array([0.7])
            m32 = BAM(C, ds, use_gamma=True, backend=backend, dtype=np.float32)
            m32.load_state_dict(m64.state_dict())
            y64, y32 = m64.forward(x), m32.forward(x.astype(np.float32))
            dx64, dx32 = m64.backward(dy), m32.backward(dy.astype(np.float32))
            dx_scale = np.abs(dx64).max()
            g = max(
                rel(m32.grads[k], m64.grads[k], dx_scale if k == "key_conv.bias" else None)
                for k in m64.grads
            )
            errors = f"{rel(y32, y64):9.1e} {rel(dx32, dx64):9.1e} {g:9.1e}"
            print(f"{f'{B}, {C}, {H}, {W}, {ds}':18s} {s:6g} {backend:8s} {errors}")


if __name__ == "__main__":
    main()
