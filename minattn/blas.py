"""The BLAS libraries this process loaded: which kernels they picked, and running them on
one thread.

Two OpenBLAS builds are usually loaded, each with a pool of threads of its own:

    "numpy"  NumPy's (its C names end in ``64_``: 64-bit integers), which ``@`` and
             ``np.dot`` use in Python code
    "scipy"  SciPy's, which Numba's ``np.dot`` reaches through ``scipy.linalg.cython_blas``
             inside compiled kernels

Both are found by the names of their thread controls among the shared libraries the
process has mapped (``/proc/self/maps``, and SciPy's wheel folder) and called through
ctypes. A shared OpenBLAS (conda) or MKL answers to "scipy"'s plain names. Where none is
found (another BLAS, another system) nothing changes: the results are the same, only
slower if that BLAS threads.

Why one thread. OpenBLAS's idle threads spin, and an attention kernel already runs one
thread per core: left alone, two kernel threads calling SciPy's BLAS queue for its one
pool (9 GFLOP/s for both cores instead of 66, docs/kernels.md, "Threads and BLAS"), and
the small products of training (32 x 32 weights, a few hundred pooled pixels) gain
nothing from a second thread while its spinning takes a core from other work (30 steps:
38 s with one thread, 56 s with OpenBLAS's default, on 2 loaded cores). OpenBLAS reads
OPENBLAS_NUM_THREADS only when it is loaded, too early for a command line to set, hence
its own API. The setting is per library and process: another thread's product made in
that moment also runs on one thread, slower, never wrong.
"""

import ctypes
import glob
import os
import threading

# (get, set) names of a library's thread count, the first found wins
CONTROLS = {
    "numpy": (
        ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
        ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ),
    "scipy": (
        ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
        ("openblas_get_num_threads", "openblas_set_num_threads"),  # a shared OpenBLAS
        ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
    ),
}
CORE_NAMES = ("scipy_openblas_get_corename64_", "openblas_get_corename")

_found = {}  # which -> (get, set) or False, looked up once
_lock = threading.Lock()


def _libraries():
    """ctypes handles of the BLAS libraries this process may use (may be none)."""
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS)

    paths = []
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as f:
            paths += [line.split()[-1] for line in f if ".so" in line]
    root = os.path.dirname(scipy.__file__)
    for folder in (root + ".libs", os.path.join(root, ".dylibs")):
        paths += glob.glob(os.path.join(folder, "*"))
    names = ("blas", "mkl")
    libraries = []
    for path in dict.fromkeys(p for p in paths if any(n in os.path.basename(p) for n in names)):
        try:
            libraries.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libraries


def blas_thread_controls(which="scipy"):
    """-> (get, set) ctypes functions of ``which`` BLAS's thread count, or None."""
    if which not in _found:
        _found[which] = False
        for lib in _libraries():
            found = [(g, s) for g, s in CONTROLS[which] if hasattr(lib, g) and hasattr(lib, s)]
            if found:
                get, set_ = (getattr(lib, name) for name in found[0])
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                _found[which] = (get, set_)
                break
    return _found[which] or None


def openblas_core():
    """The OpenBLAS kernel family NumPy's BLAS picked (e.g. "Haswell"), or "unknown"."""
    for lib in _libraries():
        get = next((getattr(lib, n) for n in CORE_NAMES if hasattr(lib, n)), None)
        if get is not None:
            get.restype = ctypes.c_char_p
            return get().decode()
    return "unknown"


class _OneThread:
    """The context manager `one_blas_thread` returns: a class, 5 us a use (a generator-based
    one took 10; the teaching size enters it twice a pass). Nested and concurrent uses
    share one save: the first to enter saves and sets, the last to leave restores."""

    def __init__(self, which):
        self.which = which
        self.depth = 0
        self.saved = {}

    def __enter__(self):
        with _lock:
            if self.depth == 0:
                for name in self.which:
                    controls = blas_thread_controls(name)
                    if controls is not None and controls[0]() != 1:
                        self.saved[name] = controls[0]()
                        controls[1](1)
            self.depth += 1
        return self

    def __exit__(self, *exc):
        with _lock:
            self.depth -= 1
            if self.depth == 0:
                for name, n in self.saved.items():
                    blas_thread_controls(name)[1](n)
                self.saved = {}


_ONE_THREAD = {which: _OneThread(which) for which in (("numpy", "scipy"), ("scipy",))}


def one_blas_thread(*which):
    """-> a context manager: the BLAS libraries named (default both, "numpy" and "scipy") on
    one thread inside, their settings restored after."""
    which = which or ("numpy", "scipy")
    if which not in _ONE_THREAD:
        _ONE_THREAD[which] = _OneThread(which)
    return _ONE_THREAD[which]
