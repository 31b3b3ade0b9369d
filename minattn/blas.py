"""The OpenBLAS that NumPy loaded: which kernels it picked, and running it on one thread.

NumPy's wheels ship OpenBLAS under a prefixed name (``scipy_openblas_*``, 64-bit
integers: ``*64_``); older builds export the plain ``openblas_*`` API. Both are found
among the libraries this process has mapped (``/proc/self/maps``) and called through
ctypes; where there is no OpenBLAS (another BLAS, another system) nothing happens.
"""

import contextlib
import ctypes


def _loaded_openblas():
    """ctypes handles of the OpenBLAS libraries mapped into this process (may be none)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
        return [ctypes.CDLL(path) for path in paths]
    except OSError:
        return []


def _function(lib, *names):
    """The first of ``names`` that ``lib`` exports, or None."""
    return next((getattr(lib, n) for n in names if hasattr(lib, n)), None)


def openblas_core():
    """The OpenBLAS kernel family NumPy's BLAS picked (e.g. "Haswell"), or "unknown"."""
    for lib in _loaded_openblas():
        get = _function(lib, "scipy_openblas_get_corename64_", "openblas_get_corename")
        if get is not None:
            get.restype = ctypes.c_char_p
            return get().decode()
    return "unknown"


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with OpenBLAS on one thread, then restore its thread count.

    For small matrices (32 x 32 weights, a few hundred pooled pixels) a second BLAS thread
    does not make a product faster, and OpenBLAS's idle threads spin, so on a machine with
    other work they take a core and slow everything down (measured on 2 cores under load:
    30 training steps took 41 s of CPU and 56 s with OpenBLAS's default threads, 11 s and
    38 s with one). OpenBLAS reads OPENBLAS_NUM_THREADS only when NumPy loads it, too early
    for a command line to set, hence its own API.
    """
    calls = []
    for lib in _loaded_openblas():
        for suffix in ("64_", ""):
            get = _function(lib, f"scipy_openblas_get_num_threads{suffix}",
                            f"openblas_get_num_threads{suffix}")  # fmt: skip
            put = _function(lib, f"scipy_openblas_set_num_threads{suffix}",
                            f"openblas_set_num_threads{suffix}")  # fmt: skip
            if get is not None and put is not None:
                get.restype = ctypes.c_int
                calls.append((put, get()))
                put(1)
                break
    try:
        yield
    finally:
        for put, n in calls:
            put(n)
