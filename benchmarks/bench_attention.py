"""The benchmark table, as a script: the same as ``minattn bench`` (see README.md here).

python benchmarks/bench_attention.py [--quick] [--configs "2,64,64,128,1"] [--dtype float32]
"""

import sys

from minattn.bench import main

if __name__ == "__main__":
    sys.exit(main())
