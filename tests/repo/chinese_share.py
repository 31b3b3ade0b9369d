"""How much of the course a reader who reads only Chinese can read: the Chinese share.

The measure (issue 23): Chinese characters in the explanatory prose of a notebook or a docs
page, against 1.6 times the English words of the same material. 1.6 is about how many Chinese
characters a translation spends per English word, so a page whose every paragraph has its
Chinese scores about 1; a page with a Chinese summary and English prose scores 0.1 to 0.3.

What counts as explanatory prose: the Markdown cells of a notebook, or the Markdown of a page
(with its Chinese edition, ``page.zh.md``, beside it), block quotes of the article included (a
Chinese reader reads them). Left out: code (fenced blocks and inline code), formulas, HTML tags,
link targets and mkdocstrings' directives (``::: minattn.BAM`` and its options: the API page's
generated entries, whose docstrings are English in both editions). Measured so, the files as
issue 23 found them give its figures (notebook 02: 0.85 here, 0.86 in the issue; 01: 0.17;
03: 0.28; 05: 0.15; 06: 0.05; 07: 0.14; 08: 0.08).

The prose is cut into segments (paragraphs, list items, table cells). A segment is Chinese when
it has at least as many Chinese characters as Latin words, else English: Chinese characters are
counted in the Chinese segments, English words in the English ones, so the English terms a
Chinese sentence keeps (softmax, NumPy) do not count as untranslated English.

Run ``python tests/repo/chinese_share.py`` for the table of the working tree, or
``python tests/repo/chinese_share.py --rev REV`` for the files as they were at a git revision.
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORDS_PER_CHARACTER = 1.6  # Chinese characters a translation spends per English word
HAN = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")

FENCED = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
AUTODOC = re.compile(r"^:::[^\n]*(?:\n[ \t]+[^\n]*)*", re.M)  # mkdocstrings: ::: name + options
DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
INLINE_MATH = re.compile(r"\$[^$\n]+\$")
INLINE_CODE = re.compile(r"`[^`\n]*`")
HTML_TAG = re.compile(r"<[^>\n]+>")
LINK_TARGET = re.compile(r"\]\([^)]*\)|\]\[[^\]]*\]|\{#[\w-]+\}")
QUOTE_MARK = re.compile(r"^\s*>\s?", re.M)
SEGMENT_BREAK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*+] |\d+\. |#))|\|")


def prose(markdown):
    """The explanatory prose of Markdown text: no code, formulas, tags or link targets."""
    text = FENCED.sub("\n", markdown)
    text = AUTODOC.sub("\n", text)
    text = DISPLAY_MATH.sub(" ", text)
    text = QUOTE_MARK.sub("", text)
    for pattern in (INLINE_CODE, INLINE_MATH, HTML_TAG, LINK_TARGET):
        text = pattern.sub(" ", text)
    return text


def counts(markdown):
    """(Chinese characters in Chinese segments, English words in English segments)."""
    chinese = english = 0
    for segment in SEGMENT_BREAK.split(prose(markdown)):
        han, words = len(HAN.findall(segment)), len(LATIN_WORD.findall(segment))
        if han >= words:
            chinese += han
        else:
            english += words
    return chinese, english


def notebook_markdown(text):
    cells = json.loads(text)["cells"]
    return "\n\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in cells
        if c["cell_type"] == "markdown"
    )


def share(chinese, english):
    return chinese / (WORDS_PER_CHARACTER * english) if english else float("inf")


def reader(rev=None):
    """A function path -> text (None if the file does not exist), now or at a git revision."""
    if rev is None:
        return lambda rel: (ROOT / rel).read_text("utf-8") if (ROOT / rel).is_file() else None

    def at_rev(rel):
        result = subprocess.run(
            ["git", "show", f"{rev}:{rel}"], cwd=ROOT, capture_output=True, text=True
        )
        return result.stdout if result.returncode == 0 else None

    return at_rev


def materials(rev=None):
    """Every notebook and docs page: {name: (Chinese characters, English words)}.

    A page ``x.md`` and its Chinese edition ``x.zh.md`` are one material, named ``x.md``.
    """
    read = reader(rev)
    if rev is None:
        names = [p.relative_to(ROOT).as_posix() for p in ROOT.glob("notebooks/*.ipynb")]
        names += [p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md")]
    else:
        listed = subprocess.run(
            ["git", "ls-tree", "--name-only", rev, "notebooks/", "docs/"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        names = [n for n in listed if re.fullmatch(r"notebooks/[^/]+\.ipynb|docs/[^/]+\.md", n)]
    found = {}
    for name in sorted(names):
        if name.endswith(".zh.md"):
            continue
        text = read(name)
        markdown = notebook_markdown(text) if name.endswith(".ipynb") else text
        chinese, english = counts(markdown)
        if name.endswith(".md"):
            edition = read(name[: -len(".md")] + ".zh.md")
            if edition is not None:
                chinese += counts(edition)[0]
        found[name] = (chinese, english)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", help="measure the files as they were at this git revision")
    args = parser.parse_args(argv)
    rows = materials(args.rev)
    print(f"{'material':45s} {'Chinese chars':>13s} {'English words':>13s} {'share':>6s}")
    for name, (chinese, english) in rows.items():
        print(f"{name:45s} {chinese:13d} {english:13d} {share(chinese, english):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
