"""The docs hold together: the README links every page of docs/, every Markdown link to a local
file resolves, and every `docs/<page>.md` that code, recipes or docs cite exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CITED = re.compile(r"(?<![\w/.])docs/[\w/.-]+?\.md\b")
SOURCES = ("rlkit", "tests", "recipes", "benchmarks", "launch", "rewards", "rollouts", "docs")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def local_links(path: Path) -> list[str]:
    """Link targets of a Markdown file that point into the repository (no URL, no bare anchor)."""
    targets = [m.group(1) for m in LINK.finditer(path.read_text(encoding="utf-8"))]
    return [t for t in targets if not re.match(r"^(\w+:|#)", t)]


def test_readme_links_every_doc():
    linked = {(ROOT / t.split("#")[0]).resolve() for t in local_links(ROOT / "README.md")}
    pages = sorted((ROOT / "docs").glob("*.md"))
    missing = [p.name for p in pages if p.resolve() not in linked]
    assert pages and not missing, f"docs not linked from README.md: {missing}"


def test_every_local_link_resolves():
    broken = [
        f"{path.relative_to(ROOT)}: {target}"
        for path in _markdown_files()
        for target in local_links(path)
        if not (path.parent / target.split("#")[0]).exists()
    ]
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_every_cited_doc_exists():
    files = [ROOT / "README.md"]
    for top in SOURCES:
        files += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".md", ".yaml")]
    broken = sorted(
        f"{path.relative_to(ROOT)}: {cite}"
        for path in files
        for cite in set(CITED.findall(path.read_text(encoding="utf-8")))
        if not (ROOT / cite).is_file()
    )
    assert not broken, "cited docs that do not exist:\n" + "\n".join(broken)


def test_the_checks_see_a_broken_link(tmp_path):
    page, gone = tmp_path / "page.md", "docs/" + "none.md"  # split: this file cites nothing
    page.write_text(f"[ok](https://x.org) [anchor](#a) [gone](missing.md#s) see {gone}\n")
    assert local_links(page) == ["missing.md#s"]
    assert CITED.findall(page.read_text()) == [gone]
