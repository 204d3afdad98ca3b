"""The package's layers, lowest first: a module imports only from its own layer or below
(lazy imports inside functions included), and no two modules import each other. The layers
are the architecture's (docs/architecture.md); the package face, vaecli/__init__.py, may name
the API lazily."""
from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "vaecli"
LAYERS = [
    {"vaecli.clock", "vaecli.errors", "vaecli.files", "vaecli.finite", "vaecli.progress", "vaecli.registry",
     "vaecli.pictures", "vaecli.streams", "vaecli.config", "vaecli.data"},
    {"vaecli.models"}, {"vaecli.compiled"}, {"vaecli.rundir"}, {"vaecli.training"}, {"vaecli.evaluation"},
    {"vaecli.tune"}, {"vaecli.api", "vaecli.cli"},
]


def layer(module: str) -> int:
    for i, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vaecli"):
            out |= {f"{node.module}.{a.name}" if node.module == "vaecli" else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vaecli")}
    return out - {"vaecli", "vaecli.__version__"}


def modules() -> dict[str, set[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if name != "vaecli":
            found[name] = imports(path)
    return found


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{m} -> {i}" for m, deps in modules().items() for i in deps if layer(i) > layer(m)]
    assert upward == []


def test_no_two_modules_import_each_other():
    mods = modules()
    resolve = lambda name: next((m for m in (name, name.rpartition(".")[0]) if m in mods), None)
    edges = {m: {resolve(d) for d in deps} - {None, m} for m, deps in mods.items()}
    pairs = sorted({tuple(sorted((a, b))) for a, deps in edges.items() for b in deps
                    if a in edges.get(b, ()) and not (b.startswith(a + ".") or a.startswith(b + "."))})
    assert pairs == []


def test_modules_and_functions_stay_readable_in_one_sitting():
    """No module over 300 lines, no function over 60, no `_private` name taken from another module."""
    long_modules, long_functions, private = [], [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 300:
            long_modules.append(str(path.relative_to(ROOT)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vaecli"):
                private += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert (long_modules, long_functions, private) == ([], [], [])
