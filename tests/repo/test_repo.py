"""The repository stands alone, and its two READMEs tell the same story.

- No file refers to a path outside the repository (a clone has nothing beside it), and
  every relative link in the Markdown files and the notebooks lands inside it, on a file
  that exists.
- ``README.zh-CN.md`` names the same commands and options as ``README.md``, each links
  the other, and every command they name exists.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_ZH = ROOT / "README.zh-CN.md"

# paths that exist only on the machine the project was written on
OUTSIDE = [
    re.compile(r"\.\./shared\b"),
    re.compile(r"/work/(?:shared|main)\b"),
    re.compile(r"/tmp/(?:minattn|issue)"),
    re.compile(r"\bseed/ARTICLE\.md\b"),
    re.compile(r"\bDESIGN\.md\b"),
]
VENDORED = ("docs/assets/",)  # minified third-party files, checked by their own README
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def repository_files():
    """The files git tracks or would track (new files too), else every file but the venv."""
    if shutil.which("git") and (ROOT / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\0")
        return sorted(ROOT / name for name in listed if name and (ROOT / name).is_file())
    skip = {".venv", ".git", "build", "__pycache__", ".pytest_cache", ".ruff_cache"}
    return sorted(
        p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
    )


def text_of(path):
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary


def test_no_file_refers_to_a_path_outside_the_repository():
    this = Path(__file__).resolve()
    found = []
    for path in repository_files():
        rel = path.relative_to(ROOT).as_posix()
        if path.resolve() == this or rel.startswith(VENDORED):
            continue
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for pattern in OUTSIDE:
                if pattern.search(line):
                    found.append(f"{rel}:{number}: {line.strip()[:120]}")
    assert not found, "references to files outside the repository:\n" + "\n".join(found)


def links_in(path):
    """Relative link targets written in a Markdown file, or in a notebook's Markdown cells."""
    text = text_of(path) or ""
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for target in LINK.findall(text):
        parts = urlsplit(target)
        if parts.scheme or target.startswith(("#", "//")) or not parts.path:
            continue
        yield target, unquote(parts.path)


def test_relative_links_stay_inside_and_exist():
    broken = []
    for path in repository_files():
        if path.suffix not in (".md", ".ipynb"):
            continue
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(VENDORED):
            continue
        for target, link_path in links_in(path):
            resolved = (path.parent / link_path).resolve()
            if not resolved.is_relative_to(ROOT.resolve()):
                broken.append(f"{rel}: ({target}) leaves the repository")
            elif not resolved.exists():
                broken.append(f"{rel}: ({target}) does not exist")
    assert not broken, "\n".join(broken)


def commands(path):
    """`make` targets, `minattn` subcommands and --options a README names in its code (fenced
    blocks and `inline code`), as a set."""
    markdown = path.read_text(encoding="utf-8")
    fenced = re.findall(r"```.*?\n(.*?)```", markdown, flags=re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", markdown, flags=re.S))
    text = "\n".join(fenced + inline)
    found = {f"make {t}" for t in re.findall(r"\bmake ([a-z][a-z-]*)\b", text)}
    found |= {f"minattn {c}" for c in re.findall(r"\bminattn ([a-z][a-z-]*)\b", text)}
    found |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", text))
    return found


def test_the_chinese_readme_names_the_same_commands():
    english, chinese = commands(README), commands(README_ZH)
    assert "make demo" in english and "make test" in english and "make lab" in english
    assert english == chinese, (
        f"only in README.md: {sorted(english - chinese)}; "
        f"only in README.zh-CN.md: {sorted(chinese - english)}"
    )


def test_each_readme_links_the_other():
    assert "](README.zh-CN.md)" in README.read_text(encoding="utf-8")
    assert "](README.md)" in README_ZH.read_text(encoding="utf-8")


def test_the_first_screen_of_the_readme_gives_the_commands():
    first_screen = "\n".join(README.read_text(encoding="utf-8").splitlines()[:20])
    for command in ("make demo", "make test", "make lab"):
        assert command in first_screen, f"{command} is not on the README's first screen"


def test_every_command_the_readmes_name_exists():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    from minattn.apps.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    subcommands = set(subparsers.choices)
    for name in sorted(commands(README)):
        if name.startswith("make "):
            assert name[5:] in targets, f"the README names {name!r}; the Makefile has no target"
        elif name.startswith("minattn "):
            assert name[8:] in subcommands, f"the README names {name!r}, which does not exist"


@pytest.mark.parametrize("option", ["--image", "--photo", "--size", "--ds", "--out"])
def test_the_demo_options_the_readme_names_exist(option):
    from minattn.apps.cli import build_parser

    parser = build_parser()
    demo = next(a for a in parser._actions if a.dest == "command").choices["demo"]
    assert option in demo._option_string_actions
