"""The layers of docs/architecture.md, read from the code: every `installer` import (function-level
ones too) goes down or sideways, production code never imports the lab, and the module-level
imports have no circle."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# lower number, lower layer; a module may import its own layer and the ones below
LAYERS = {
    0: "errors state resources yamlpos site ipplan checks sitefile siteinit passwords environment chunkmarks "
       "journal netprobe node_packages discover waiting usage i18n",
    1: "plan",
    2: "inventory ansible one mfs remote preflight pxecheck pxe bootstate bootserver aptcache testimage image",
    3: "deploy status report reportpage dossier lab",
    4: "operations",
    5: "cli __main__",
}
RANK = {name: rank for rank, names in LAYERS.items() for name in names.split()}


def _modules() -> dict[str, Path]:
    found = {}
    for path in (REPO / "installer").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The installer modules PATH imports (`from installer import x` counts as installer.x)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("installer"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("installer")}
    return out


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "installer"


def test_every_module_has_a_layer():
    assert sorted({_layer(m) for m in MODULES} - set(RANK) - {"installer"}) == []


def test_imports_go_down_or_sideways_and_never_into_the_lab():
    wrong = []
    for module, path in MODULES.items():
        source = _layer(module)
        for target in _imports(path):
            to = _layer(target)
            if to == "installer" or to == source:
                continue
            if to == "lab" and source != "cli":
                wrong.append(f"{module} imports {target}: production code never imports the lab")
            elif RANK[to] > RANK.get(source, 0):
                wrong.append(f"{module} ({source}, layer {RANK.get(source)}) imports {target} (layer {RANK[to]})")
    assert wrong == []


def test_module_level_imports_have_no_circle():
    graph = {m: {t for t in _imports(p, top_level_only=True) if t in MODULES and t != m} for m, p in MODULES.items()}
    circles = []

    def visit(module: str, path: list[str], seen: set[str]) -> None:
        for target in graph[module]:
            if target in path:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in seen:
                seen.add(target)
                visit(target, path + [target], seen)

    for start in graph:
        visit(start, [start], {start})
    assert circles == []
