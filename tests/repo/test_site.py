"""The documentation site: built offline, complete, and rendered as a reader sees it.

The site has two editions, English at the root and Chinese under ``zh/`` (mkdocs-static-i18n);
every page of each links to its counterpart in the other (the language switch). The site is
built once per session with ``mkdocs build --strict`` into a temporary
folder; ``make test`` builds it first into ``build/site`` and passes that folder in
``MINATTN_SITE``, so it is built only once. The static checks read the HTML: no asset
from the network, every local link and anchor resolves (the site works opened from
disk), every notebook page shows its executed outputs and has its download.

The rendering checks start a headless Chromium (Debian's ``chromium`` package; any
Chrome/Chromium named by ``MINATTN_BROWSER`` works too), load pages from disk with the
network of no use (file:// URLs, background networking off), let the scripts run, and
read the resulting DOM: every formula typeset by KaTeX, no raw LaTeX left, no KaTeX
error, Chinese text present. They skip, saying why, when no browser is installed;
``.ci/run`` installs one (and sets ``MINATTN_REQUIRE_BROWSER=1``, which turns that skip
into a failure).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from browser import HEADLESS, require_browser

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CJK = re.compile(r"[\u4e00-\u9fff]")
# the families of stylesheets/extra.css that carry simplified Chinese glyphs
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei")


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    given = os.environ.get("MINATTN_SITE")
    if given:
        path = Path(given).resolve()
        assert (path / "index.html").is_file(), f"MINATTN_SITE={given} holds no built site"
        return path
    path = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-5000:]}"
    return path


def html_pages(site):
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


class Tags(HTMLParser):
    """Every start tag with its attributes, and every id, of one HTML document."""

    def __init__(self):
        super().__init__()
        self.tags, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if attrs.get("id"):
            self.ids.add(attrs["id"])


def parse(path):
    parser = Tags()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def is_remote(url):
    return bool(re.match(r"^\s*(https?:)?//", url or "", flags=re.I))


ASSET_ATTRS = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "video": ("src", "poster"),
    "audio": ("src",),
    "embed": ("src",),
    "object": ("data",),
}


def test_the_site_has_every_page(site):
    """Both editions: docs/x.md is x.html, docs/x.zh.md is zh/x.html, and a page without a
    Chinese edition shows its English in the Chinese site; every notebook is in both."""
    pages = {p.relative_to(site).as_posix() for p in html_pages(site)}
    for page in sorted((ROOT / "docs").glob("*.md")):
        name = page.name.replace(".zh.md", ".md")
        html = name.replace(".md", ".html")
        if page.name.endswith(".zh.md"):
            assert f"zh/{html}" in pages, f"docs/{page.name} has no page zh/{html}"
            title = re.search(r"^# (.*?)(?:\s*\{#[\w-]+\})?$", page.read_text("utf-8"), re.M)
            chinese = (site / "zh" / html).read_text(encoding="utf-8")
            assert re.search(rf"<h1[^>]*>{re.escape(title.group(1))}", chinese), (
                f"zh/{html} does not show docs/{page.name} (its title {title.group(1)!r})"
            )
        else:
            assert html in pages and f"zh/{html}" in pages, f"docs/{page.name} is not in both"
    for notebook in NOTEBOOKS:
        for edition in ("", "zh/"):
            page = f"{edition}notebooks/{notebook.stem}.html"
            assert page in pages, f"{notebook.name} has no page {page}"


def language_links(page):
    """{language: href} of the language switch in a page's header."""
    return {
        attrs["hreflang"]: attrs["href"]
        for tag, attrs in parse(page).tags
        if tag == "a" and attrs.get("hreflang") and attrs.get("href")
    }


def test_the_language_switch_links_each_page_to_itself_in_the_other_language(site):
    """From disk: on every page, the switch's links are files, the same page in each edition."""
    wrong = []
    for page in html_pages(site):
        rel = page.relative_to(site).as_posix()
        if rel.startswith(("assets/", "search/")):
            continue
        base = rel.removeprefix("zh/")
        links = language_links(page)
        expected = {"en": site / base, "zh": site / "zh" / base}
        if set(links) != set(expected):
            wrong.append(f"{rel}: language links {links}")
            continue
        for lang, href in links.items():
            target = Path(os.path.normpath(page.parent / unquote(urlsplit(href).path)))
            if target != expected[lang] or not target.is_file():
                wrong.append(f"{rel}: {lang} -> {href} ({target}), expected {expected[lang]}")
    assert not wrong, "\n".join(wrong[:40])


def test_each_edition_declares_its_language(site):
    for rel, lang in (("index.html", "en"), ("zh/index.html", "zh"), ("zh/glossary.html", "zh")):
        text = (site / rel).read_text(encoding="utf-8")
        assert re.search(rf'<html[^>]*\blang="{lang}"', text), f"{rel} is not lang={lang}"
    nav = (site / "zh" / "index.html").read_text(encoding="utf-8")
    for title in ("首页", "笔记本", "反向传播推导", "术语表"):
        assert title in nav, f"the Chinese edition's navigation lacks {title}"


def test_no_asset_comes_from_the_network(site):
    remote = []
    for page in html_pages(site):
        for tag, attrs in parse(page).tags:
            for attr in ASSET_ATTRS.get(tag, ()):
                value = attrs.get(attr) or ""
                if any(is_remote(part.split()[0]) for part in value.split(",") if part.strip()):
                    remote.append(f"{page.relative_to(site)}: <{tag} {attr}={value!r}>")
            if tag == "style" or "style" in attrs:
                pass  # inline styles are checked with the stylesheets below
    for css in site.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", text):
            if is_remote(url):
                remote.append(f"{css.relative_to(site)}: url({url})")
        for url in re.findall(r"@import\s+(?:url\()?\s*['\"]?([^'\");\s]+)", text):
            if is_remote(url):
                remote.append(f"{css.relative_to(site)}: @import {url}")
    for page in html_pages(site):
        for block in re.findall(r"<style[^>]*>(.*?)</style>", page.read_text("utf-8"), re.S):
            for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", block):
                if is_remote(url):
                    remote.append(f"{page.relative_to(site)}: <style> url({url})")
    assert not remote, "assets from the network:\n" + "\n".join(remote[:40])


def test_content_links_stay_inside_the_site(site):
    """Every link written in the pages' content is internal (the theme's footer may credit
    its makers; the content of the pages, ours, may not send the reader away)."""
    outside = []
    for page in html_pages(site):
        text = page.read_text(encoding="utf-8")
        match = re.search(r'<article class="md-content__inner.*?</article>', text, re.S)
        assert match, f"{page.relative_to(site)}: no article element"
        for url in re.findall(r'<a\s[^>]*href="([^"]*)"', match.group(0)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", url, flags=re.I) or url.startswith("//"):
                outside.append(f"{page.relative_to(site)}: {url}")
    assert not outside, "links that leave the site:\n" + "\n".join(outside[:40])


def test_local_links_and_anchors_resolve(site):
    """Opened from disk, every link lands on a file (never a bare folder) and every
    #anchor on an element with that id."""
    ids = {page: parse(page).ids for page in html_pages(site)}
    broken = []
    for page, parser in ((p, parse(p)) for p in html_pages(site)):
        for tag, attrs in parser.tags:
            for attr in ("href", "src"):
                url = attrs.get(attr)
                if not url or url.startswith(("data:", "mailto:", "javascript:", "blob:")):
                    continue
                if is_remote(url) or re.match(r"^[a-z][a-z0-9+.-]*:", url, flags=re.I):
                    continue  # remote assets fail the test above; remote links are allowed
                parts = urlsplit(url)
                target = page if not parts.path else (page.parent / unquote(parts.path))
                target = Path(os.path.normpath(target))
                where = f"{page.relative_to(site)}: <{tag} {attr}={url!r}>"
                if not target.is_file():
                    broken.append(f"{where} -> no such file")
                elif parts.fragment and target.suffix == ".html":
                    if unquote(parts.fragment) not in ids.get(target, set()):
                        broken.append(f"{where} -> no element with id {parts.fragment!r}")
    assert not broken, "\n".join(broken[:40])


def test_search_works_offline(site):
    """material's offline plugin inlines the index, so search needs no fetch from disk."""
    index = site / "search" / "search_index.js"
    assert index.is_file(), "search/search_index.js missing: is the offline plugin on?"
    assert index.stat().st_size > 10_000


EDITIONS = ("", "zh")


@pytest.mark.parametrize("edition", EDITIONS, ids=["en", "zh"])
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_pages_show_their_outputs(site, notebook, edition):
    page = site / edition / "notebooks" / f"{notebook.stem}.html"
    text = page.read_text(encoding="utf-8")
    source = json.loads(notebook.read_text(encoding="utf-8"))
    code_cells = [c for c in source["cells"] if c["cell_type"] == "code"]
    empty_prompts = len(re.findall(r"In&nbsp;\[&nbsp;\]:", text))
    assert empty_prompts == 0, f"{page.name}: {empty_prompts} code cells were not executed"
    outputs = len(re.findall(r'class="[^"]*jp-OutputArea-output', text))
    assert outputs >= 1, f"{page.name}: no outputs"
    wants_figures = any("plt.show()" in "".join(c["source"]) for c in code_cells)
    figures = len(re.findall(r'<img[^>]+src="data:image/(?:png|svg)', text))
    if wants_figures:
        assert figures >= 1, f"{page.name}: the notebook draws figures, the page shows none"
    assert "Traceback (most recent call last)" not in text, f"{page.name}: a traceback"


@pytest.mark.parametrize("edition", EDITIONS, ids=["en", "zh"])
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_pages_offer_a_clean_download(site, notebook, edition):
    page = site / edition / "notebooks" / f"{notebook.stem}.html"
    assert f'href="{notebook.name}"' in page.read_text(encoding="utf-8"), "no download link"
    download_file = site / edition / "notebooks" / notebook.name
    download = json.loads(download_file.read_text(encoding="utf-8"))
    for cell in download["cells"]:
        assert not cell.get("outputs"), f"the download of {notebook.name} has outputs"
        assert "### BEGIN SOLUTION" not in "".join(cell["source"]), (
            f"the download of {notebook.name} contains solutions"
        )


def test_exercise_notebooks_are_shown_in_their_student_version(site):
    from minattn.course.exercises import has_solutions

    exercises = [p for p in NOTEBOOKS if has_solutions(json.loads(p.read_text("utf-8")))]
    assert exercises, "no notebook with solution markers"
    for notebook in exercises:
        text = (site / "notebooks" / f"{notebook.stem}.html").read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text, f"{notebook.name}: solutions on the site"
        assert "NotImplementedError" in text, f"{notebook.name}: not the student version"


# ---------------------------------------------------------------- in a browser


def render(browser_path, page, query=""):
    """The DOM of a page opened from disk, after its scripts ran."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                browser_path,
                *HEADLESS,
                f"--user-data-dir={profile}",
                "--virtual-time-budget=15000",
                "--dump-dom",
                page.as_uri() + (f"?{query}" if query else ""),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert result.returncode == 0, f"{browser_path} failed on {page}:\n{result.stderr[-2000:]}"
    return result.stdout


class VisibleText(HTMLParser):
    """The text a reader sees: no scripts, styles, code, or KaTeX's hidden TeX source."""

    SKIP = {"script", "style", "pre", "code", "annotation", "noscript", "textarea"}
    VOID = {"br", "img", "input", "meta", "link", "hr", "source", "wbr", "col", "area", "base"}

    def __init__(self):
        super().__init__()
        self.stack, self.hidden, self.parts = [], 0, []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        hide = tag in self.SKIP or "katex-mathml" in classes
        self.stack.append(hide)
        self.hidden += hide

    def handle_endtag(self, tag):
        if tag in self.VOID or not self.stack:
            return
        self.hidden -= self.stack.pop()

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")


def pages_to_render(site):
    """Pages with math (or Chinese) in them: notebooks and the Markdown pages that use it."""
    chosen = []
    for page in html_pages(site):
        text = page.read_text(encoding="utf-8")
        if 'class="arithmatex"' in text or "jp-MarkdownOutput" in text or CJK.search(text):
            chosen.append(page)
    return chosen


@pytest.fixture(scope="session")
def browser_path():
    return require_browser("math, Chinese and search not checked in a browser")


@pytest.fixture(scope="session")
def rendered(site, browser_path):
    pages = pages_to_render(site)
    with ThreadPoolExecutor(max_workers=2) as pool:
        doms = list(pool.map(lambda p: render(browser_path, p), pages))
    return dict(zip(pages, doms, strict=True))


def test_math_is_typeset_everywhere_in_a_browser(site, rendered):
    problems = []
    for page, dom in rendered.items():
        name = page.relative_to(site)
        static = page.read_text(encoding="utf-8")
        has_math = 'class="arithmatex"' in static or re.search(r"\$[^$\n]+\$", static)
        if has_math and 'class="katex"' not in dom:
            problems.append(f"{name}: no formula typeset (is KaTeX loaded?)")
        errors = dom.count("katex-error")
        if errors:
            problems.append(f"{name}: {errors} formulas KaTeX could not parse")
        parser = VisibleText()
        parser.feed(dom)
        text = "".join(parser.parts)
        for raw in RAW_TEX.finditer(text):
            context = text[max(0, raw.start() - 40) : raw.end() + 40].replace("\n", " ")
            problems.append(f"{name}: raw LaTeX left: ...{context}...")
            break
    assert not problems, "\n".join(problems[:40])


def test_search_finds_pages_when_opened_from_disk(site, browser_path):
    """index.html?q=... from disk: the search results list pages (no server, no network)."""
    dom = render(browser_path, site / "index.html", query="q=softmax")
    found = re.search(r"(\d+) matching documents?", dom)
    assert found and int(found.group(1)) >= 3, "search found nothing for 'softmax'"


def test_search_finds_chinese_words_in_the_chinese_edition_from_disk(site, browser_path):
    dom = render(browser_path, site / "zh" / "index.html", query="q=协方差")
    found = re.search(r"(\d+) 个符合条件的结果", dom)
    assert found and int(found.group(1)) >= 3, "the Chinese edition's search found nothing"


def test_the_language_switch_is_there_after_the_scripts_ran(site, rendered):
    """Opened from disk in a browser, the English home page offers 中文 and the Chinese one
    English, each pointing at the other edition's copy of the page."""
    english, chinese = rendered[site / "index.html"], rendered[site / "zh" / "index.html"]
    assert re.search(r'<a href="zh/index.html" hreflang="zh"', english)
    assert re.search(r'<a href="../index.html" hreflang="en"', chinese)
    parser = VisibleText()
    parser.feed(chinese)
    assert len(CJK.findall("".join(parser.parts))) > 500, "zh/index.html shows little Chinese"


def test_chinese_pages_render_in_a_browser(site, rendered):
    for name in (
        "glossary.html",
        "article.html",
        "notebooks/02_seven_steps.html",
        "zh/index.html",
        "zh/derivations.html",
        "zh/notebooks/03_backward_pass.html",
    ):
        page = site / name
        assert page in rendered, f"{name} not rendered"
        parser = VisibleText()
        parser.feed(rendered[page])
        chinese = len(CJK.findall("".join(parser.parts)))
        assert chinese > 200, f"{name}: only {chinese} Chinese characters visible"
    fc_list = shutil.which("fc-list")
    if not fc_list:
        pytest.skip("fc-list not installed: cannot tell whether a Chinese font is present")
    families = subprocess.run(
        [fc_list, ":lang=zh", "family"], capture_output=True, text=True, check=True
    ).stdout
    if not any(font in families for font in CJK_FONTS):
        pytest.skip(
            f"no font of the site's Chinese stack ({', '.join(CJK_FONTS)}) is installed: this "
            "browser would show boxes (apt-get install fonts-noto-cjk)"
        )


def test_the_explorer_of_notebook_6_works_on_the_site(site, browser_path):
    """Notebook 6's attention explorer stays interactive on its page, opened from disk: the
    page's iframe draws a row of weights, a click selects another pixel and draws its row,
    and nothing is fetched from the network (tests/apps/test_explore.py checks the numbers)."""
    from browser import Browser

    page = site / "notebooks" / "06_attention_on_images.html"
    assert "<iframe srcdoc=" in page.read_text(encoding="utf-8"), "no explorer on the page"
    inner = "document.querySelector('iframe[srcdoc]').contentDocument"
    row = f"JSON.parse({inner}.getElementById('attention-values').textContent)"
    with Browser(browser_path) as chromium:
        tab = chromium.open(page.as_uri(), ready=f"{inner}.body.dataset.ready === 'true'")
        first = tab.evaluate(row)
        tab.evaluate(f"{inner}.getElementById('picture').scrollIntoView()")
        frame = tab.box("document.querySelector('iframe[srcdoc]')")
        left, top, width, height = tab.box(f"{inner}.getElementById('picture')")
        tab.click(frame[0] + left + 20.5 * width / 128, frame[1] + top + 100.5 * height / 128)
        second = tab.evaluate(row)
        urls = [u for u in tab.requests if not u.startswith(("file:", "data:", "about:"))]
    for shown in (first, second):
        weights = shown["values"]
        assert shown["shape"] == [32, 32] and len(weights) == 32 * 32
        assert min(weights) >= 0 and abs(sum(weights) - 1) < 1e-9
    assert second["query"] == [100, 20] and second["values"] != first["values"]
    assert not urls, f"the explorer fetched {urls}"
