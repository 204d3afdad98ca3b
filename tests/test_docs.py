"""The docs follow the code where drift would mislead: docs/config.md's key table lists exactly
the schema's keys with their roles, and every relative link in the README and docs/ points at a
file that exists. Nothing about the wording is asserted."""
from __future__ import annotations

import re

from helpers import ROOT

from vaecli import config

HEADER = ["key", "type", "default", "role", "meaning"]
_CELL_SPLIT = re.compile(r"(?<!\\)\|")  # table cells, `\|` inside a cell aside
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]]


def key_table(text: str) -> set[tuple[str, str]]:
    """(key, role) of each row of the table whose header is HEADER."""
    rows, inside = set(), False
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            inside = False
            continue
        cells = _cells(line)
        if cells == HEADER:
            inside = True
        elif inside and not set("".join(cells)) <= set("-: "):
            rows.add((cells[0].strip("`"), cells[3].strip("`")))
    return rows


def test_config_md_lists_every_key_with_its_role():
    documented = key_table((ROOT / "docs" / "config.md").read_text())
    schema = {(k.name, k.role.name) for k in config.keys()}
    assert documented, "docs/config.md has no table headed | key | type | default | role | meaning |"
    assert documented - schema == set(), "rows in docs/config.md that are not schema keys (or have another role)"
    assert schema - documented == set(), "schema keys (with their roles) missing from docs/config.md"


def test_relative_links_point_at_existing_files():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links in code blocks are not links
        for target in _LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL, or an anchor in the same page
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
