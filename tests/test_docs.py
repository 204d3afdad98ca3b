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


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def documented_modules() -> set[str]:
    """The modules docs/architecture.md's layer tables name, as paths under vaecli/."""
    text = ARCHITECTURE.read_text().split("## One trainer")[0]
    found, folder = set(), None
    for line in text.splitlines():
        if line.startswith("**Foundation**"):
            folder = ""
        elif m := re.match(r"\*\*`([\w/]+)/`\*\*", line):
            folder = m[1] + "/"
        elif folder is not None and line.startswith("| `"):
            for name in re.findall(r"`([\w/.]+\.py)`", line.split(" | ")[0]):
                found.add(name.removeprefix("vaecli/") if name.startswith("vaecli/") else folder + name)
    return found


def test_architecture_lists_every_module_and_no_other():
    modules = {str(p.relative_to(ROOT / "vaecli")) for p in (ROOT / "vaecli").rglob("*.py")}
    documented = documented_modules()
    required = {m for m in modules if not m.endswith("__init__.py") or m == "__init__.py"}
    assert sorted(required - documented) == [], "add these modules to docs/architecture.md's tables"
    assert sorted(documented - modules) == [], "docs/architecture.md names modules that do not exist"


def _recipe(pattern: str) -> list[str]:
    m = re.search(pattern, ARCHITECTURE.read_text(), re.S)
    assert m, f"docs/architecture.md lost its recipe line {pattern!r}"
    return [p.strip() for p in m[1].split(",")]


def _params(fn) -> list[str]:
    import inspect
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]


def test_architecture_recipes_name_real_signatures():
    """The "how to add things" recipes give the signatures the registered entries have."""
    from vaecli import registry
    from vaecli.evaluation import modes

    objective = _recipe(r"### Add an objective.*?a function `\(([^)]*)\)`")
    assert {tuple(_params(o.load())) for o in registry.OBJECTIVES.values()} == {tuple(objective)}
    kind = _recipe(r"\*\*Model kind\*\*: a function `\(([^)]*)\)")
    assert {tuple(_params(k.load())) for k in registry.MODEL_KINDS.values()} == {tuple(kind)}
    mode = _recipe(r"### Add a sample mode.*?A draw function `\(([^)]*)\)")
    assert {tuple(_params(m.draw)) for m in modes.MODES.values()} == {tuple(mode)}
    for section, table in (("Likelihood", registry.LIKELIHOODS), ("Prior", registry.PRIORS)):
        line = re.search(rf"\*\*{section}\*\*: a class with (.*?) in `", ARCHITECTURE.read_text(), re.S)[1]
        methods = dict(re.findall(r"`(\w+)\(([^)]*)\)`", line))
        assert methods, section
        for entry in table.values():
            cls = entry.load()
            for name, args in methods.items():
                assert _params(getattr(cls, name)) == [a.strip() for a in args.split(",") if a.strip()], (cls, name)
