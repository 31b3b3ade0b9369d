"""The benchmark table with the PyTorch rows: ``minattn bench`` plus ``torch_worker.py`` here.

python benchmarks/bench_attention.py [--quick] [--configs "2,64,64,128,1;2,64,64,128,1,64"]
                                     [--dtype float32] [--repeats 7]

``minattn bench`` finds the PyTorch worker only when started from the root of a
checkout; this script hands it over from wherever it is run.
"""

import sys
from pathlib import Path

from minattn.apps.bench import main

if __name__ == "__main__":
    sys.exit(main(torch_worker=Path(__file__).resolve().parent / "torch_worker.py"))
