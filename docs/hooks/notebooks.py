"""MkDocs hook: the notebooks on the site are executed, exercises appear as students get them.

For every ``notebooks/*.ipynb`` page, before mkdocs-jupyter renders it:

1. the *site version* is chosen: a notebook with solution markers (``### BEGIN SOLUTION``)
   becomes its student version, made by `minattn.course.exercises.student_notebook` (the same
   function ``minattn exercises`` uses), every other notebook is taken as stored;
2. the site version is executed top to bottom in a fresh kernel running this very
   interpreter (as ``tests/repo/test_notebooks.py`` does), so the page shows every output and
   figure. An error fails the build, except in a student version, where the cells that
   check an unwritten exercise raise ``NotImplementedError`` by design: their traceback is
   replaced by a one-line note;
3. the page is rendered from the executed copy (in a temporary folder), and the clean site
   version (no outputs: what a student should start from) is written next to the page as
   the notebook's download.

Nothing here changes the files in ``notebooks/``. Executed notebooks are cached in
``build/notebook-cache/``, keyed by the site version's content, every source file of the
package and the versions of Python and the libraries the notebooks use: an unchanged
notebook with an unchanged package is not run again (``MINATTN_DOCS_CACHE=0`` turns the
cache off; a fresh clone has none). ``MINATTN_DOCS_EXECUTE=0`` skips step 2 (quick
previews with ``mkdocs serve``: the notebook pages then have no outputs). mkdocs-jupyter
runs with ``execute: false`` and ``include_source: false``: this hook does both jobs.
"""

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from mkdocs.plugins import event_priority

log = logging.getLogger("mkdocs.hooks.notebooks")

CELL_TIMEOUT = 600  # seconds per cell
STUDENT_NOTE = (
    "{ename}: {evalue}\n(Student version: this cell runs once the exercise it uses is written.)\n"
)

_state = {"tmp": None, "downloads": {}}
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "notebook-cache"
LIBRARIES = ("numpy", "scipy", "numba", "matplotlib", "scikit-image", "ipykernel", "nbclient")


def _cache_key(nb_text):
    """What an executed notebook depends on: itself, the package's sources, the libraries."""
    h = hashlib.sha256(nb_text.encode())
    h.update(STUDENT_NOTE.encode())
    for path in sorted((ROOT / "minattn").rglob("*.py")):
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    h.update(sys.version.encode())
    for name in LIBRARIES:
        try:
            h.update(f"{name}={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{name}=absent".encode())
    return h.hexdigest()[:20]


def _is_notebook(file):
    return file.src_uri.startswith("notebooks/") and file.src_uri.endswith(".ipynb")


def kernel_dir_for(root):
    """A "python3" kernelspec that runs this interpreter, so no other Python is picked."""
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec_json = {
        "argv": argv,
        "display_name": "Python 3 (minattn docs)",
        "language": "python",
        # tqdm.auto warns, in a kernel without ipywidgets, that it cannot draw widget bars: true
        # of this build's kernel, not of the notebook, so the warning stays off the pages
        "env": {"PYTHONWARNINGS": "ignore:IProgress not found"},
    }
    (spec / "kernel.json").write_text(json.dumps(spec_json))
    return spec.parent


def _execute(nb, kernel_dir, cwd, allow_errors):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    km = KernelManager(
        kernel_name="python3",
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]),
    )
    client = NotebookClient(
        nb,
        km=km,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()


def _replace_student_errors(nb):
    """Turn each error output of a student version into a short note; return how many."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for k, out in enumerate(cell.outputs):
            if out.get("output_type") == "error":
                first = (out.get("evalue") or "").splitlines()[:1]
                text = STUDENT_NOTE.format(ename=out.get("ename"), evalue="".join(first))
                cell.outputs[k] = nbformat.v4.new_output("stream", name="stderr", text=text)
                count += 1
    return count


def site_version(path):
    """(notebook, is_student): the student version if the notebook has solutions, else as stored."""
    from minattn.course.exercises import has_solutions, student_notebook

    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if has_solutions(raw):
        raw = student_notebook(raw, name=Path(path).name)
        student = True
    else:
        student = False
    nb = nbformat.reads(json.dumps(raw), as_version=4)  # joins list-of-lines sources
    for cell in nb.cells:  # stored notebooks have no outputs; make sure downloads have none
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb, student


def on_pre_build(config, **kwargs):
    if _state["tmp"] is not None:
        shutil.rmtree(_state["tmp"], ignore_errors=True)
    _state["tmp"] = Path(tempfile.mkdtemp(prefix="minattn-docs-"))
    _state["downloads"] = {}


def executed(path, kernel_dir, workdir, use_cache=True):
    """The site version of the notebook at ``path``, executed: (notebook, how it was obtained).

    An executed copy is kept in ``build/notebook-cache/``; an unchanged notebook with an
    unchanged package is taken from there instead of being run again. The errors of a student
    version (its exercise cells, by design) are listed in ``nb.metadata["minattn_errors"]``
    before they are replaced by notes. ``tests/repo/test_notebooks.py`` calls this too, so
    ``make test`` runs each notebook once and the site build reuses the run.
    """
    nb, student = site_version(path)
    name = Path(path).name
    cached = CACHE / f"{Path(name).stem}-{_cache_key(nbformat.writes(nb))}.ipynb"
    if use_cache and cached.is_file():
        return nbformat.read(cached, as_version=4), f"executed copy from {cached.relative_to(ROOT)}"
    t0 = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    _execute(nb, kernel_dir, workdir, allow_errors=student)
    nb.metadata["minattn_errors"] = _errors(nb)
    notes = _replace_student_errors(nb) if student else 0
    what = f"student version, {notes} exercise cells not run" if student else "as stored"
    how = f"executed ({what}) in {time.perf_counter() - t0:.1f} s"
    if use_cache:
        CACHE.mkdir(parents=True, exist_ok=True)
        for stale in CACHE.glob(f"{Path(name).stem}-*.ipynb"):
            stale.unlink()
        nbformat.write(nb, cached)
    return nb, how


def _errors(nb):
    """[{"cell": index, "ename": ..., "evalue": first line}] of every error output."""
    return [
        {"cell": i, "ename": out.get("ename"), "evalue": (out.get("evalue") or "").split("\n")[0]}
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


@event_priority(-100)  # after mkdocs-jupyter has wrapped the notebooks in its NotebookFile
def on_files(files, config, **kwargs):
    tmp = _state["tmp"]
    execute = os.environ.get("MINATTN_DOCS_EXECUTE", "1") != "0"
    use_cache = os.environ.get("MINATTN_DOCS_CACHE", "1") != "0"
    kernel_dir = kernel_dir_for(tmp) if execute else None
    notebooks = [f for f in files if _is_notebook(f)]
    total = time.perf_counter()
    for file in notebooks:
        name = Path(file.src_uri).name
        nb, _ = site_version(file.abs_src_path)
        _state["downloads"][file.src_uri] = nbformat.writes(nb)
        if execute:
            nb, how = executed(file.abs_src_path, kernel_dir, tmp / "cwd" / name, use_cache)
            log.info(f"{name}: {how}")
        rendered = tmp / "notebooks" / name  # mkdocs-jupyter matches "notebooks/*.ipynb"
        rendered.parent.mkdir(parents=True, exist_ok=True)
        rendered.write_text(nbformat.writes(nb), encoding="utf-8")
        file.abs_src_path = str(rendered)  # what mkdocs-jupyter converts
        if hasattr(file, "file"):  # mkdocs-jupyter's wrapper: its inner File too
            file.file.abs_src_path = str(rendered)
    if execute and notebooks:
        log.info(f"{len(notebooks)} notebooks ready in {time.perf_counter() - total:.1f} s")
    return files


def _fix_toc(items, headings):
    """mkdocs-jupyter makes the table of contents from the notebook converted to Markdown, and
    drops code spans from headings ("... pooling by" for a heading ending in `ds`, anchor
    "...-by"), while the page's headings keep them ("...-by-ds"): point such entries at the
    heading they mean, with its full text."""
    for item in items:
        if item.id not in headings:
            candidates = [i for i in headings if i.startswith(item.id + "-")]
            if len(candidates) == 1:
                item.id = candidates[0]
                item.title = headings[item.id] or item.title
        _fix_toc(item.children, headings)


def _headings(html):
    """{id: text} of the page's h1-h6 (tags and the permalink sign removed)."""
    found = {}
    for ident, inner in re.findall(r'<h[1-6][^>]*\sid="([^"]+)"[^>]*>(.*?)</h[1-6]>', html, re.S):
        text = re.sub(r"<a class=\"anchor-link\".*?</a>", "", inner, flags=re.S)
        found[ident] = " ".join(re.sub(r"<[^>]+>", "", text).replace("\u00b6", "").split())
    return found


def on_page_context(context, page, config, **kwargs):
    if _is_notebook(page.file):
        page.meta["notebook_download"] = Path(page.file.src_uri).name  # beside the page
        _fix_toc(page.toc, _headings(page.content or ""))
    return context


def on_post_build(config, **kwargs):
    site = Path(config["site_dir"])
    for src_uri, text in _state["downloads"].items():
        target = site / src_uri
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    if _state["tmp"] is not None:
        shutil.rmtree(_state["tmp"], ignore_errors=True)
        _state["tmp"] = None
