"""The documents users read: docs/api.md documents every public function, and every
relative link in README.md and docs/*.md leads to a file of the repository (and, for a
link into a markdown file, to one of its headings), so nothing points outside a clone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

import byzagg

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Every rule, and the helpers whose contract docs/api.md states.
PUBLIC = [*byzagg.RULES, "pairwise_distances", "krum_scores", "aggregate", "flatten", "unflatten", "backend"]

FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks, with inline code removed."""
    inside = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.strip()):
            inside = not inside
            continue
        if not inside:
            yield number, INLINE_CODE.sub("", line)


def headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for _, line in prose_lines(text) if re.match(r"^#{1,6}\s", line)]


def raw_headings(text: str) -> list[str]:
    """Headings with their inline code kept (GitHub slugs include it)."""
    inside, out = False, []
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            inside = not inside
        elif not inside and re.match(r"^#{1,6}\s", line):
            out.append(line.lstrip("#").strip())
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in raw_headings(path.read_text()):
        base = slug(heading)
        count = seen.get(base, 0)
        out.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return out


def tracked_files() -> set[str] | None:
    """The files git tracks or would track (not ignored): what a clone has once they are
    committed; None outside a git checkout."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return None
    files = {name for name in listing.split("\0") if name}
    return files or None


def links(path: Path):
    """(line number, target) of every link in the document."""
    for number, line in prose_lines(path.read_text()):
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1)
        match = REFERENCE_LINK.match(line)
        if match:
            yield number, match.group(1)


def test_api_md_documents_every_public_function():
    text = (ROOT / "docs" / "api.md").read_text()
    titles = " ".join(headings(text))
    missing = [name for name in PUBLIC if not re.search(rf"\b{name}\(", titles)]
    assert not missing, f"docs/api.md has no section (a heading 'name(...)') for: {', '.join(missing)}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS])
def test_relative_links_resolve_inside_the_repository(document):
    tracked = tracked_files()
    problems = []
    for number, target in links(document):
        if SCHEME.match(target) or target.startswith("//"):
            continue  # a web address
        file_part, _, anchor = target.partition("#")
        where = f"{document.relative_to(ROOT)}:{number}: {target}"
        if not file_part:
            resolved = document
        else:
            resolved = (document.parent / file_part).resolve()
            try:
                relative = resolved.relative_to(ROOT).as_posix()
            except ValueError:
                problems.append(f"{where} points outside the repository")
                continue
            if not resolved.exists():
                problems.append(f"{where} does not exist")
                continue
            if tracked is not None:
                is_tracked = relative in tracked if resolved.is_file() else any(
                    name.startswith(relative.rstrip("/") + "/") for name in tracked
                )
                if not is_tracked:
                    problems.append(f"{where} is not in the repository (git ignores it)")
                    continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: no heading with the anchor #{anchor} in {resolved.relative_to(ROOT)}")
    assert not problems, "\n".join(problems)


def test_the_link_checker_sees_links_and_skips_code(tmp_path):
    sample = tmp_path / "sample.md"
    sample.write_text(
        "# A title (with `code`)\n"
        "See [api](docs/api.md#the-rules) and ![fig](img.png \"title\").\n"
        "`[not](a-link.md)` and\n"
        "```\n[not](either.md)\n```\n"
        "[ref]: other.md\n"
        "[web](https://example.org/x.md)\n"
    )
    assert [t for _, t in links(sample)] == ["docs/api.md#the-rules", "img.png", "other.md", "https://example.org/x.md"]
    assert anchors(sample) == {"a-title-with-code"}
    assert slug("Tie-breaking (documented exceptions to permutation invariance)") == (
        "tie-breaking-documented-exceptions-to-permutation-invariance"
    )
