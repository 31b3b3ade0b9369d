"""The documentation refers to things that exist: API names, tests, notebooks and their sections.

``mkdocs build --strict`` (run by ``make test``) catches broken page links and
API cross-references; these tests catch what it cannot see: test names and
parametrised cases quoted in the text, notebook section anchors, and pages or
notebooks left out of the navigation.
"""

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md"))
NAV = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")

# `tests/modules/test_bam.py::test_name`, optionally followed by " (case `a`)" or
# " (cases `a`, `b`)"
TEST_REF = re.compile(r"`tests/((?:\w+/)*test_\w+\.py)::(\w+)`(?: \(cases? ([^)]*)\))?")
API_REF = re.compile(r"\]\[(minattn(?:\.\w+)*)\]")
NOTEBOOK_LINK = re.compile(r"\]\((notebooks/[\w.-]+\.ipynb)(?:#([\w-]+))?\)")


def text_of(page):
    return page.read_text(encoding="utf-8")


def resolve(dotted):
    """Import the longest importable module prefix of ``dotted``, then getattr the rest."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def test_pages_exist():
    names = {p.name for p in PAGES}
    assert {
        "index.md",
        "article.md",
        "article-map.md",
        "contract.md",
        "derivations.md",
        "api.md",
        "gradcheck.md",
        "glossary.md",
        "references.md",
    } <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_api_names_exist(page):
    for dotted in API_REF.findall(text_of(page)):
        try:
            resolve(dotted)
        except (ImportError, AttributeError) as e:
            pytest.fail(f"{page.name} refers to {dotted}, which does not exist: {e}")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_tests_and_cases_exist(page):
    for file, name, cases in TEST_REF.findall(text_of(page)):
        path = ROOT / "tests" / file
        assert path.exists(), f"{page.name} names {file}, which is not in tests/"
        source = path.read_text(encoding="utf-8")
        functions = {
            node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)
        }
        assert name in functions, f"{page.name} names {file}::{name}, which does not exist"
        for case in re.findall(r"`([^`]+)`", cases):
            assert f'"{case}"' in source, f"{page.name}: {file}::{name} has no case {case!r}"


def test_article_map_covers_every_step_and_disagreement():
    text = text_of(DOCS / "article-map.md")
    for step in range(1, 8):
        assert f"| **{step}.**" in text, f"article step {step} missing from the map"
    for words in ("Softmax, then scale", "sqrt of which c", "Bilinear or nearest", "unused gamma"):
        assert words in text
    assert len(TEST_REF.findall(text)) >= 30


def notebook_anchors(path):
    """The anchors mkdocs gives the headings of a notebook's markdown cells."""
    slugify = pytest.importorskip("markdown.extensions.toc").slugify
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    anchors = set()
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                heading = re.match(r"#+\s+(.*)", line)
                if heading:
                    anchors.add(slugify(heading.group(1).strip(), "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_notebook_links_and_sections_exist(page):
    for target, anchor in NOTEBOOK_LINK.findall(text_of(page)):
        path = ROOT / target
        assert path.exists(), f"{page.name} links {target}, which does not exist"
        if anchor:
            sections = notebook_anchors(path)
            assert anchor in sections, f"{page.name}: no section #{anchor} in {target}"


def test_every_page_and_notebook_is_in_the_navigation():
    for page in PAGES:
        assert re.search(rf"\s{re.escape(page.name)}\s", NAV), f"docs/{page.name} is not in the nav"
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        entry = f"notebooks/{notebook.name}"
        assert entry in NAV, f"{entry} is not in the nav of mkdocs.yml"
    for entry in re.findall(r"notebooks/[\w.-]+\.ipynb", NAV):
        assert (ROOT / entry).exists(), f"mkdocs.yml lists {entry}, which does not exist"


def test_notebooks_are_reachable_through_docs():
    link = DOCS / "notebooks"
    assert link.is_dir() and link.resolve() == (ROOT / "notebooks").resolve()


@pytest.mark.parametrize("page", ["index.md", "gradcheck.md", "derivations.md"])
def test_python_examples_run(page):
    """The pages' Python examples run as shown, and their gradient checks pass."""
    blocks = re.findall(r"```python\n(.*?)```", text_of(DOCS / page), flags=re.S)
    assert blocks
    for block in blocks:
        namespace = {}
        exec(compile(block, f"docs/{page}", "exec"), namespace)
        if "report" in namespace:
            assert namespace["report"].ok, str(namespace["report"])
