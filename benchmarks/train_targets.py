"""The targets of ``minattn train``, measured: F1 per model and seed, attention mass, time.

Runs ``minattn train --json`` as a fresh process for each attention module (BAM, PAM) and
seed (0, 1, 2 by default), each training the attention model and the three attention-free
controls (baseline, pool, local) with the same budget and seed, and prints

* a table of held-out F1 per model and seed, with the mean over seeds and the gaps the
  issue asks for (attention >= baseline + 0.10 and >= every control + 0.05);
* the attention's mass on the pixels that decide a changed pixel, after training and with
  the initial random weights, and their ratio (target: at least 2);
* each run's wall time as a whole process. The seed-0 runs start with an empty Numba cache
  (``NUMBA_CACHE_DIR`` in a fresh folder), so their time includes the first compilation,
  as a new user's first ``minattn train`` would.

Nothing is asserted: the machine's load moves timings (the load average is printed).

    .venv/bin/python benchmarks/train_targets.py                  # BAM and PAM, seeds 0-2
    .venv/bin/python benchmarks/train_targets.py --modes BAM --seeds 0
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("baseline", "pool", "local")


def run_once(mode, seed, folder, fresh_cache):
    """One ``minattn train --json`` process -> (summary dict, wall seconds, CPU seconds)."""
    env = dict(os.environ)
    if fresh_cache:
        env["NUMBA_CACHE_DIR"] = str(Path(folder) / f"numba-cache-{mode}-{seed}")
    out = Path(folder) / f"{mode}-{seed}.png"
    cmd = [sys.executable, "-m", "minattn", "train", "--mode", mode, "--seed", str(seed),
           "--out", str(out), "--json", "--no-progress"]  # fmt: skip
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    return json.loads(done.stdout.strip().splitlines()[-1]), wall, cpu


def _children_cpu():
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def f1_table(mode, runs):
    """Rows: one per model, F1 per seed and the mean; then the gaps of the mean."""
    seeds = sorted(runs)
    lines = [f"{mode}: held-out F1 (threshold chosen on the training pairs)",
             f"{'model':>10} " + " ".join(f"seed {s:<3}" for s in seeds) + "    mean"]  # fmt: skip
    means = {}
    for model in (mode, *MODELS):
        f1 = [runs[s]["f1"] if model == mode else runs[s]["controls_f1"][model] for s in seeds]
        means[model] = sum(f1) / len(f1)
        lines.append(f"{model:>10} " + " ".join(f"{v:8.3f}" for v in f1) + f"  {means[model]:6.3f}")
    gap_base = means[mode] - means["baseline"]
    gap_ctrl = min(means[mode] - means[m] for m in MODELS)
    lines.append(f"{mode} - baseline: {gap_base:+.3f} (target +0.10); {mode} - best control: "
                 f"{gap_ctrl:+.3f} (target +0.05)")  # fmt: skip
    return lines


def mass_table(mode, runs):
    lines = [f"{mode}: attention of changed pixels on the unchanged pixels of their own view"]
    for s in sorted(runs):
        r = runs[s]
        after, before = r["attention_mass"], r["attention_mass_random"]
        uniform = r["attention_mass_uniform"]
        other, other_random = r["attention_mass_other_view"], r["attention_mass_other_view_random"]
        lines.append(f"  seed {s}: learned {after:.3f}, random weights {before:.3f} (ratio "
                     f"{after / before:.2f}, target 2), uniform {uniform:.3f}; on the other "
                     f"view's: learned {other:.3f}, random weights {other_random:.3f}")  # fmt: skip
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="BAM,PAM", help="comma-separated, of BAM and PAM")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = p.parse_args(argv)
    modes, seeds = args.modes.split(","), [int(s) for s in args.seeds.split(",")]
    print(f"minattn train targets, {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at the start")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for mode in modes:
            runs = {}
            for seed in seeds:
                first = seed == seeds[0]
                runs[seed], wall, cpu = run_once(mode, seed, folder, fresh_cache=first)
                note = " (empty Numba cache: first compilation included)" if first else ""
                load = os.getloadavg()[0]
                print(f"  {mode} seed {seed}: {wall:.1f} s wall, {cpu:.1f} s CPU as a whole "
                      f"process{note}; load average {load:.2f}", flush=True)  # fmt: skip
            print("\n".join(["", *f1_table(mode, runs), "", *mass_table(mode, runs), ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
