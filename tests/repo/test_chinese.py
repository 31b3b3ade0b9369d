"""The course in Chinese: every notebook and page has its Chinese, in the glossary's terms.

- Each notebook and docs page reaches a Chinese share (``tests/repo/chinese_share.py``) of at least
  ``THRESHOLD``. Why 0.75: a page whose every paragraph has its Chinese scores 0.85 to 1.05
  (notebook 2 as issue 23 found it: 0.85; the derivation pages: 1.02 and 1.05), while a page
  with a Chinese summary beside English prose scores 0.1 to 0.3, and one that quotes the
  article's Chinese around English commentary 0.58 (the article page before its Chinese
  edition). 0.75 passes a complete translation that is 10 to 30 % terser than average and
  fails anything that leaves whole paragraphs in English.
- The Chinese prose uses the fixed terms of ``docs/glossary.md`` and none of their rivals; so does
  the Chinese feedback of the check cells (``minattn/course/grading/chinese.py``).
- A Chinese page ``x.zh.md`` keeps every heading anchor of ``x.md``, so a link to a section
  lands on it in both editions of the site.
"""

import json
import re
from pathlib import Path

import pytest
from chinese_share import HAN, LATIN_WORD, SEGMENT_BREAK, materials, notebook_markdown, prose
from chinese_share import share as chinese_share

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
THRESHOLD = 0.75

# Material not yet in Chinese, {name: why}, while a page is being rewritten (issue 23). Empty:
# every notebook and page has its Chinese.
PENDING = {}

MEASURED = materials()


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_every_notebook_and_page_has_its_chinese(name):
    chinese, english = MEASURED[name]
    value = chinese_share(chinese, english)
    if name in PENDING:
        assert value < THRESHOLD, (
            f"{name} now reaches a Chinese share of {value:.2f}: take it off PENDING"
        )
        pytest.xfail(f"{name}: Chinese share {value:.2f}; {PENDING[name]}")
    assert value >= THRESHOLD, (
        f"{name}: Chinese share {value:.2f} ({chinese} Chinese characters against 1.6 x "
        f"{english} English words), below {THRESHOLD}: some paragraphs have no Chinese"
    )


def test_pending_lists_only_existing_material():
    assert set(PENDING) <= set(MEASURED)


# ---------------------------------------------------------------- the glossary's terms


def fixed_terms():
    """{fixed Chinese term: [rivals]} from the table under "Fixed Chinese terms" in the
    glossary."""
    text = (DOCS / "glossary.md").read_text(encoding="utf-8")
    section = text.split("## Fixed Chinese terms", 1)[1].split("\n## ", 1)[0]
    terms = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[1] in ("统一译名", "---"):
            continue
        terms[cells[1]] = [r.strip() for r in cells[2].split("、") if r.strip() not in ("", "—")]
    return terms


TERMS = fixed_terms()


def chinese_segments(markdown):
    """The Chinese segments of the prose, the article's own words left out: block quotes and
    quotations in corner brackets 「...」."""
    text = "\n".join(line for line in markdown.splitlines() if not line.lstrip().startswith(">"))
    text = re.sub(r"「[^」]*」", " ", text)
    for segment in SEGMENT_BREAK.split(prose(text)):
        han = len(HAN.findall(segment))
        if han and han >= len(LATIN_WORD.findall(segment)):
            yield segment


def rival_pattern(term, rival):
    """A rival, unless it is a gloss right after the fixed term: 注意力分数（能量）."""
    word = rf"\b{re.escape(rival)}\b" if rival.isascii() else re.escape(rival)
    return re.compile(rf"(?<!{re.escape(term)}（){word}", flags=re.I)


def chinese_sources():
    """(name, Markdown) of every notebook and docs page with Chinese prose; not the glossary,
    whose table names the rivals."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        yield path.name, notebook_markdown(path.read_text(encoding="utf-8"))
    for path in sorted(DOCS.glob("*.md")):
        if not path.name.startswith("glossary"):
            yield path.name, path.read_text(encoding="utf-8")
    yield "README.zh-CN.md", (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    yield "grader feedback", grader_chinese()


def grader_chinese():
    """The Chinese a check cell prints (minattn/course/grading/chinese.py and each exercise's
    Chinese summary and expected error), one paragraph per text, placeholders left out."""
    from minattn.course.grading import EXERCISES, chinese

    texts = [zh for _, zh in chinese.KINDS] + list(chinese.PHRASES.values())
    texts += [chinese.TABLE_LEGEND, chinese.UNKNOWN]
    texts += [t for e in EXERCISES.values() for t in (e.summary_zh, e.expected_error_zh)]
    return "\n\n".join(re.sub(r"\{\w+\}", " ", t) for t in texts)


def test_the_glossary_fixes_the_terms_the_issue_names():
    for term in ("查询", "键", "值", "注意力分数", "缩放", "上采样", "反向传播", "梯度检验"):
        assert term in TERMS, f"the glossary fixes no term {term}"
    assert "能量" in TERMS["注意力分数"] and "缩放回" in TERMS["上采样"]


PENDING_NAMES = {Path(name).name: reason for name, reason in PENDING.items()}


@pytest.mark.parametrize(
    "name, markdown", list(chinese_sources()), ids=[n for n, _ in chinese_sources()]
)
def test_chinese_prose_uses_the_fixed_terms(name, markdown):
    found = []
    for segment in chinese_segments(markdown):
        for term, rivals in TERMS.items():
            for rival in rivals:
                for hit in rival_pattern(term, rival).finditer(segment):
                    context = segment[max(0, hit.start() - 20) : hit.end() + 20].replace("\n", " ")
                    found.append(f"{rival!r} instead of {term!r}: ...{context}...")
    if found and name in PENDING_NAMES:
        pytest.xfail(f"{name}: {len(found)} rival terms; {PENDING_NAMES[name]}")
    assert not found, f"{name}:\n" + "\n".join(found[:30])


def test_every_fixed_term_is_used():
    text = "\n".join(markdown for _, markdown in chinese_sources())
    unused = [term for term in TERMS if term not in text]
    assert not unused, f"the glossary fixes terms the course never uses: {unused}"


def test_the_grader_feedback_is_checked_too():
    segments = list(chinese_segments(grader_chinese()))
    assert any("注意力分数" in segment for segment in segments)
    assert len(segments) > 50


def test_rival_pattern_allows_a_gloss_only():
    pattern = rival_pattern("注意力分数", "能量")
    assert not pattern.search("注意力分数（能量）很小")
    assert pattern.search("能量很小")
    assert rival_pattern("查询", "query").search("每个 query 像素")
    assert not rival_pattern("查询", "query").search("查询（query）像素")


# ---------------------------------------------------------------- the Chinese pages


def anchors(path):
    """The anchors of a page's headings: an explicit {#id}, else the toc extension's slug."""
    from markdown.extensions.toc import slugify

    found = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"#{1,6}\s+(.*?)\s*$", line)
        if heading:
            explicit = re.search(r"\{#([\w-]+)\}\s*$", heading.group(1))
            found.add(explicit.group(1) if explicit else slugify(heading.group(1), "-"))
    return found


CHINESE_PAGES = sorted(DOCS.glob("*.zh.md"))


@pytest.mark.parametrize("page", CHINESE_PAGES, ids=lambda p: p.name)
def test_chinese_pages_keep_the_english_anchors(page):
    english = DOCS / page.name.replace(".zh.md", ".md")
    assert english.exists(), f"{page.name} has no English page beside it"
    missing = anchors(english) - anchors(page)
    assert not missing, f"{page.name} lacks the anchors {sorted(missing)} of {english.name}"


def test_every_page_not_pending_has_a_chinese_edition_or_is_bilingual():
    for page in sorted(DOCS.glob("*.md")):
        name = f"docs/{page.name}"
        if page.name.endswith(".zh.md") or name in PENDING:
            continue
        edition = page.with_name(page.name.replace(".md", ".zh.md"))
        assert edition.exists(), f"{name} has no Chinese edition {edition.name}"


def test_exercise_11_returns_z_as_its_text_says():
    """The stub's names match the text (issue 23): the student's code sets z."""
    nb = json.loads((ROOT / "notebooks/02_seven_steps.ipynb").read_text(encoding="utf-8"))
    cell = next(
        "".join(c["source"])
        for c in nb["cells"]
        if c["metadata"].get("nbgrader", {}).get("grade_id") == "residual_forward"
    )
    assert "return z, (f, gamma)" in cell
