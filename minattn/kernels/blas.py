"""The BLAS that multiplies the streaming attention's tiles, and how many threads it may use.

Inside compiled code, ``np.dot(a, b, out)`` on contiguous 2-D float arrays is a call
to the BLAS that SciPy ships (Numba reaches it through ``scipy.linalg.cython_blas``):
OpenBLAS in SciPy's wheels, with a pool of threads of its own. The attention kernels
already run one thread per core, each on its own tiles, and each tile product is
small (a few MFLOP). Left alone, OpenBLAS splits every such product over its pool,
and two kernel threads calling at once queue for that one pool: 9-12 GFLOP/s for
both cores together instead of 50-60 (docs/kernels.md, "Threads and BLAS").
So while the kernels run, that BLAS is asked for one thread per call, and its
setting is put back afterwards (``one_blas_thread``). The setting is per process in
OpenBLAS, so another thread's SciPy call made in that moment also runs on one thread:
slower, never wrong.

The library is found by the names of its thread controls among the shared libraries
the process has loaded. Where none is found (another BLAS, or an unknown platform)
nothing is changed; the results are the same, only slower if that BLAS threads.
"""

import ctypes
import glob
import os
import threading

# (get, set) functions of a BLAS's thread count. SciPy's wheels prefix OpenBLAS's
# names with "scipy_"; NumPy's wheels have their own OpenBLAS, whose names end in
# "64_" and are deliberately not listed: np.dot outside Numba is not ours to change.
CONTROLS = (
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),  # a shared OpenBLAS (conda)
    ("MKL_Get_Max_Threads", "MKL_Set_Num_Threads"),
)

_state = {"controls": None, "depth": 0, "saved": None}
_lock = threading.Lock()


def _candidate_paths():
    """Shared libraries that may hold SciPy's BLAS: those mapped into this process
    (Linux) and those shipped in SciPy's wheel (``scipy.libs``, ``scipy/.dylibs``)."""
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library)

    paths = []
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as f:
            paths += [line.split()[-1] for line in f if ".so" in line]
    root = os.path.dirname(scipy.__file__)
    for folder in (root + ".libs", os.path.join(root, ".dylibs")):
        paths += glob.glob(os.path.join(folder, "*"))
    names = ("blas", "mkl")
    return list(dict.fromkeys(p for p in paths if any(n in os.path.basename(p) for n in names)))


def blas_thread_controls():
    """-> (get, set) ctypes functions of SciPy's BLAS thread count, or None if not found."""
    if _state["controls"] is None:
        _state["controls"] = False
        for path in _candidate_paths():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            found = [(g, s) for g, s in CONTROLS if hasattr(lib, g) and hasattr(lib, s)]
            if found:
                get, set_ = (getattr(lib, name) for name in found[0])
                get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                _state["controls"] = (get, set_)
                break
    return _state["controls"] or None


class _OneBlasThread:
    """The context manager ``one_blas_thread()`` returns (a class: 5 us a use, where a
    generator-based one took 10; the teaching size uses it twice a pass)."""

    def __enter__(self):
        controls = blas_thread_controls()
        if controls is not None:
            get, set_ = controls
            with _lock:
                if _state["depth"] == 0:
                    _state["saved"] = get()
                    if _state["saved"] != 1:
                        set_(1)
                _state["depth"] += 1
        return self

    def __exit__(self, *exc):
        controls = blas_thread_controls()
        if controls is not None:
            with _lock:
                _state["depth"] -= 1
                if _state["depth"] == 0 and _state["saved"] != 1:
                    controls[1](_state["saved"])


_ONE_BLAS_THREAD = _OneBlasThread()


def one_blas_thread():
    """-> a context manager: SciPy's BLAS on one thread per call inside, its setting after.

    Nested and concurrent uses share one save: the first to enter saves and sets,
    the last to leave restores.
    """
    return _ONE_BLAS_THREAD
