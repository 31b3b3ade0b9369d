"""Where a student's code runs: bubblewrap, an unprivileged user, resource limits.

Two kinds of process run a student's code, and both are wrapped here:

    notebook   the whole notebook in a Jupyter kernel (it may import minattn): the host's
               file system read-only, a fresh /tmp (a size-capped tmpfs) to write in
    functions  the graded functions: a file system holding only the interpreter's
               standard library, NumPy and SciPy (every site-packages folder hidden, so
               minattn cannot be imported however the import is spelled)

With bubblewrap (``bwrap``) both get no network (only their own loopback), their own
process, IPC and host-name namespaces, and die with the grader. Started as root, bwrap
alone is no wall (a root process inside remounts the file system read-write), so the
command drops to an unprivileged user inside the sandbox, after the mounts are made and
before the student's code starts (``setpriv``: no capabilities, no new privileges, no
supplementary groups). Resource limits (``prlimit``: CPU time, address space, file size,
processes) are set before the user changes, so the student cannot raise them.

Without bwrap (or where it is installed but cannot make its namespaces, as in a container
that forbids them: `bwrap_works` tries once) the limits, the separate process and the
unprivileged user (when the interpreter is readable by it) still hold; the file system and
network walls do not: the graded functions could import minattn, and a notebook could
write wherever its user may. `Sandbox.weaker` says so, and the report shows it.
"""

import functools
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field, replace
from pathlib import Path

USER = "minattn-grader"
UNSHARE = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
           "--unshare-cgroup-try"]  # fmt: skip
SITE = "/grader/site"  # where NumPy and SciPy appear for the graded functions
CHILD = "/grader"  # where child.py and wire.py appear


@dataclass(frozen=True)
class Limits:
    cpu_seconds: int = 900
    memory_bytes: int = 6 << 30
    file_bytes: int = 256 << 20
    processes: int = 512

    def prlimit(self):
        if not shutil.which("prlimit"):  # util-linux's; without it the limits are not set
            return []
        return [
            "prlimit",
            f"--cpu={self.cpu_seconds}",
            f"--as={self.memory_bytes}",
            f"--fsize={self.file_bytes}",
            f"--nproc={self.processes}",
            "--",
        ]


@dataclass
class Sandbox:
    """How to start a student's process on this machine (see the module docstring)."""

    bwrap: str | None
    ids: tuple | None  # (uid, gid) to drop to, when the grader runs as root
    limits: Limits = field(default_factory=Limits)
    without: str = "bubblewrap (bwrap) is not used here"  # why there is no bwrap, if not

    @classmethod
    def here(cls, limits=None, *, use_bwrap=True):
        """This machine's sandbox; MINATTN_GRADE_BWRAP=0 (for measurements) goes without."""
        use_bwrap = use_bwrap and os.environ.get("MINATTN_GRADE_BWRAP", "1") != "0"
        bwrap = shutil.which("bwrap") if use_bwrap else None
        without = cls.without
        if bwrap and not bwrap_works(bwrap):
            bwrap = None
            without = "bubblewrap (bwrap) is installed but cannot make its namespaces here"
        ids = grader_ids()
        if not bwrap and not all(_open_to_all(p) for p in interpreter_paths()):
            ids = None  # without bwrap's binds another user could not even start Python here
        return cls(bwrap, ids, limits or Limits(), without)

    @property
    def weaker(self):
        """None with bubblewrap; else what is not enforced, in one sentence."""
        if self.bwrap:
            return None
        return (
            f"{self.without}: student code ran with resource limits in "
            "its own process, but without the file-system and network walls"
            + ("" if self.ids else ", as the grader's own user")
        )

    def describe(self):
        who = f"uid {self.ids[0]}" if self.ids else f"uid {os.geteuid()}"
        return f"{'bubblewrap' if self.bwrap else 'no sandbox'}, {who}"

    def with_memory(self, memory_bytes):
        """This sandbox with the address space limited to ``memory_bytes``."""
        return replace(self, limits=replace(self.limits, memory_bytes=memory_bytes))

    def _drop(self):
        if not self.ids:
            return []
        uid, gid = self.ids
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]  # fmt: skip

    def notebook(self, argv, work):
        """The command that runs ``argv`` (a Python command line) over the notebook."""
        if not self.bwrap:
            return [*self.limits.prlimit(), *self._drop(), *argv]
        binds = Mounts(host_root=True)
        binds.tmpfs("/tmp", size=self.limits.file_bytes * 4)
        for path in interpreter_paths():
            binds.readonly(path)
        binds.readonly(work)
        return [self.bwrap, *binds.args, *self._walls(work), *self.limits.prlimit(),
                *self._drop(), *argv]  # fmt: skip

    def functions(self, child_files, fds):
        """The command that starts ``child.py`` with only the stdlib, NumPy and SciPy."""
        python = str(Path(sys.executable).resolve())
        if not self.bwrap:
            site = child_files / "site"
            site.mkdir(exist_ok=True)
            for path in numeric_packages():
                (site / path.name).symlink_to(path)
            argv = [python, "-I", "-S", str(child_files / "child.py"), *map(str, fds), str(site)]
            return [*self.limits.prlimit(), *self._drop(), *argv]
        binds = Mounts(host_root=False)
        binds.system()
        binds.tmpfs("/tmp", size=self.limits.file_bytes)
        binds.readonly(sys.base_prefix)
        binds.readonly(str(Path(python).parent))
        for path in hidden_paths():
            binds.hide(path)
        for path in numeric_packages():
            binds.readonly(path, f"{SITE}/{path.name}")
        for name in ("child.py", "wire.py"):
            binds.readonly(child_files / name, f"{CHILD}/{name}")
        argv = [python, "-I", "-S", f"{CHILD}/child.py", *map(str, fds), SITE]
        return [self.bwrap, *binds.args, *self._walls("/tmp"), *self.limits.prlimit(),
                *self._drop(), *argv]  # fmt: skip

    def _walls(self, cwd):
        return [*UNSHARE, "--die-with-parent", "--new-session", "--chdir", str(cwd)]


class Mounts:
    """bwrap's mount arguments, in order, with the folders above each mount point made
    traversable (a bind under /root, mode 0700, would otherwise be out of reach)."""

    def __init__(self, host_root):
        self.args = ["--ro-bind", "/", "/"] if host_root else []
        self.args += ["--dev", "/dev", "--proc", "/proc"]
        self.host_root = host_root
        self.made = set()  # folders of ours (tmpfs or made): anything may be made inside
        self.bound = set()  # bind mount points: their contents are the host's

    def system(self):
        """/usr and its usual companions, read-only (the functions' sandbox)."""
        self.readonly("/usr")
        for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(name):
                self.args += ["--symlink", os.readlink(name), name]
            elif os.path.isdir(name):
                self.readonly(name)

    def tmpfs(self, path, size=None):
        """A fresh, empty folder; ``size`` bytes at most (a tmpfs is memory)."""
        self.args += ["--perms", "1777", *(["--size", str(size)] if size else []), "--tmpfs", path]
        self.made.add(path)

    def _reachable(self, dest):
        """Make every folder above ``dest`` exist and be traversable; False if it already
        is visible as it is on the host (nothing to bind)."""
        ours = not self.host_root  # the functions' sandbox starts from an empty root
        for parent in list(reversed(Path(dest).parents))[1:]:
            p = str(parent)
            if any(_under(p, b) for b in self.bound):
                return True
            if p in self.made:
                ours = True
            elif ours:
                self.args += ["--perms", "0755", "--dir", p]
                self.made.add(p)
            elif not os.stat(p).st_mode & 0o001:  # closed to others: replace it
                self.tmpfs(p)
                ours = True
        return ours or not self.host_root

    def readonly(self, src, dest=None):
        src = str(Path(src).resolve())
        dest = str(dest or src)
        if not os.path.exists(src) or dest in self.bound or dest in self.made:
            return
        if src == dest and any(_under(dest, b) for b in self.bound):
            return  # already there, inside a folder bound whole
        if self._reachable(dest):
            self.args += ["--ro-bind", src, dest]
            self.bound.add(dest)

    def hide(self, path):
        """An empty read-only folder over ``path`` (a site-packages the sandbox must not see)."""
        if os.path.isdir(path) and any(_under(path, b) for b in self.bound):
            self.args += ["--tmpfs", path, "--remount-ro", path]


@functools.cache
def bwrap_works(bwrap):
    """Can ``bwrap`` make the namespaces the sandboxes use? Not where they are forbidden (a
    container run with the default Docker profile, for one): there every student process
    would fail to start, so the grader goes without bwrap and says so."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *UNSHARE,
            "--die-with-parent", "--new-session", shutil.which("true") or "/bin/true"]  # fmt: skip
    try:
        return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _open_to_all(path):
    """Can any user reach ``path`` (every folder above it searchable by others)?"""
    path = Path(path).resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.is_dir())


def _under(path, folder):
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# ---------------------------------------------------------------- what to show, what to hide


def interpreter_paths():
    """What the notebook's kernel needs to see: this interpreter, its packages, minattn."""
    import minattn

    paths = {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent)}
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    paths.add(str(Path(minattn.__file__).resolve().parents[1]))
    return sorted({str(Path(p).resolve()) for p in paths})


def numeric_packages():
    """The folders of NumPy and SciPy, and of the shared libraries their wheels carry."""
    import importlib.util

    found = []
    for name in ("numpy", "scipy"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        folder = Path(list(spec.submodule_search_locations)[0]).resolve()
        found.append(folder)
        libs = folder.parent / f"{name}.libs"
        if libs.is_dir():
            found.append(libs.resolve())
    return found


def hidden_paths():
    """Every folder packages are installed in, minattn's folder included."""
    import minattn

    candidates = set(sys.path) | {
        sysconfig.get_paths(vars={"base": p, "platbase": p})[key]
        for p in {sys.prefix, sys.base_prefix, "/usr", "/usr/local"}
        for key in ("purelib", "platlib")
    }
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for root in ("/usr/lib", "/usr/local/lib"):
        candidates |= {f"{root}/python3/dist-packages", f"{root}/{version}/dist-packages"}
    candidates.add(str(Path(minattn.__file__).resolve().parent))
    stdlib = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    keep = {str(Path(p).resolve()) for p in stdlib}
    keep.add(str(Path(sysconfig.get_paths()["stdlib"], "lib-dynload").resolve()))
    out = set()
    for p in candidates:
        if p and os.path.isdir(p):
            resolved = str(Path(p).resolve())
            if resolved not in keep and not p.endswith(".zip"):
                out.add(resolved)
    return sorted(out)


def grader_ids():
    """(uid, gid) of an unprivileged user to run student code as, when we are root; else None.

    The user is ``minattn-grader`` (made on first use, with no home and no shell), or the one
    named by MINATTN_GRADER_USER, or ``nobody`` if neither can be had.
    """
    if os.geteuid() != 0:
        return None
    name = os.environ.get("MINATTN_GRADER_USER", USER)
    for attempt in (name, "nobody"):
        try:
            entry = pwd.getpwnam(attempt)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            if attempt == USER and shutil.which("useradd"):
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", "--user-group",
                     "--shell", "/usr/sbin/nologin", USER],
                    capture_output=True, check=False,
                )  # fmt: skip
                try:
                    entry = pwd.getpwnam(USER)
                    return entry.pw_uid, entry.pw_gid
                except KeyError:
                    continue
    return 65534, 65534


def environment(home):
    """The environment of a student's process: nothing of the grader's but PATH."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{home}/.matplotlib",
        "NUMBA_CACHE_DIR": f"{home}/.numba",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
