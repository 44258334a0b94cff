"""The package layering, held by a test: imports point down, never up, never in a cycle.

The rule, in one line:

    imports point down types/io/geometry -> sources -> gaussians -> render -> features/codec -> scene -> train | query/eval -> viewer -> cli, never up, never in a cycle, and train and query/eval never import each other.

(LAYERS below is the full list: each layer's packages may import their own layer and lower
ones; training writes scenes, query/eval read them, so neither side imports the other.)

Every module under ``langfield/`` and ``viewer/`` (installed as ``langfield.viewer``) is
parsed with ``ast``; every ``langfield.*`` import counts, also those inside functions (lazy
imports), under ``TYPE_CHECKING`` and through ``importlib.import_module("langfield...")``.
A new package must be given a layer here (the test fails for an unplaced one).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
# Source folders and the dotted package each is installed as.
SOURCE_ROOTS = {ROOT / "langfield": "langfield", ROOT / "viewer": "langfield.viewer"}

# Bottom to top.  A package (first component under ``langfield.``) may import packages of
# its own layer or lower ones.  Refinements of the sketch, from what the code does:
# gaussians sits below render (render.views draws the stored parameters; nothing in
# gaussians renders), and the viewer sits below the CLI (``langfield view`` launches it; the
# viewer must not reach into the CLI's commands).
LAYERS: list[tuple[str, ...]] = [
    # typed values and errors, atomic writes, file integrity, the inputs-are-read-only check,
    # quaternions / look-at poses / SH constants, trajectory files and metrics
    ("types", "io", "integrity", "outputs", "geometry", "trajectory"),
    ("sources", "synthetic"),  # dataset readers; the procedural dataset writer
    ("gaussians",),  # parameters, init, PLY, densification strategies
    ("render",),  # rasterizer backends and the one render entry point
    ("features", "codec"),  # 2D language features, the per-scene autoencoder
    ("scene", "scene_lock", "scene_config"),  # scene directories, one writer per scene, config.json typed
    ("train", "frontend", "query", "eval"),  # writers of scenes | readers of scenes
    ("viewer",),  # the web viewer
    ("cli", "cli_language", "cli_render", "cli_slam", "__main__"),  # the `langfield` command
]
# Pairs of package groups of one layer that must not import each other in either direction.
INDEPENDENT: list[tuple[frozenset[str], frozenset[str]]] = [
    (frozenset({"train"}), frozenset({"query", "eval"})),
]
# The package's own __init__ (``langfield``) holds no code that imports anything of ours.
ROOT_PACKAGE = "__init__"

LAYER_OF = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}


@dataclass(frozen=True)
class Import:
    """One import statement of one module."""

    file: Path
    """Source file."""
    line: int
    """Line of the import."""
    importer: str
    """Dotted name of the importing module."""
    imported: str
    """Dotted name of the imported module (or ``module.name`` for ``from module import name``)."""

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def module_name(path: Path) -> tuple[str, bool]:
    """(dotted module name, is a package __init__) of a source file."""
    for src, dotted in SOURCE_ROOTS.items():
        if path.is_relative_to(src):
            parts = list(path.relative_to(src).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            return ".".join([dotted, *parts]), is_pkg
    raise ValueError(f"{path} is outside the source roots")


def source_files() -> list[Path]:
    return sorted(p for src in SOURCE_ROOTS for p in src.rglob("*.py") if "__pycache__" not in p.parts)


def _resolve_relative(importer: str, is_pkg: bool, module: Optional[str], level: int) -> str:
    """Absolute name of ``from <level dots><module> import ...`` inside ``importer``."""
    base = importer.split(".") if is_pkg else importer.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(path: Path, tree: Optional[ast.AST] = None) -> Iterator[Import]:
    """Every langfield import of one file, at any nesting depth."""
    importer, is_pkg = module_name(path)
    tree = tree if tree is not None else ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module if not node.level else _resolve_relative(importer, is_pkg, node.module, node.level)
            # ``from langfield import render`` imports the package render, not langfield's root.
            names = [f"{mod}.{a.name}" for a in node.names] if mod == "langfield" else [mod or ""]
        elif isinstance(node, ast.Call) and _is_import_module_call(node):
            names = [node.args[0].value]  # type: ignore[attr-defined]
        for name in names:
            if name == "langfield" or name.startswith("langfield."):
                yield Import(path, node.lineno, importer, name)


def _is_import_module_call(node: ast.Call) -> bool:
    f = node.func
    named = (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id == "import_module"
    )
    return named and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)


def package_of(dotted: str) -> str:
    """Layer key of a dotted module name: the first component under ``langfield``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ROOT_PACKAGE


def all_imports() -> list[Import]:
    return sorted((imp for path in source_files() for imp in imports_of(path)), key=lambda i: (str(i.file), i.line))


def violations(imports: list[Import]) -> list[str]:
    """One message per import that points up a layer or crosses an independence line."""
    out = []
    for imp in imports:
        src, dst = package_of(imp.importer), package_of(imp.imported)
        if src == dst:
            continue
        if src not in LAYER_OF or dst not in LAYER_OF:
            continue  # test_every_package_has_a_layer names it
        if LAYER_OF[dst] > LAYER_OF[src]:
            out.append(
                f"{imp.where}: {imp.importer} (layer {LAYER_OF[src]}, {src}) imports {imp.imported} "
                f"(layer {LAYER_OF[dst]}, {dst}): an upward import"
            )
        for a, b in INDEPENDENT:
            if (src in a and dst in b) or (src in b and dst in a):
                out.append(f"{imp.where}: {imp.importer} imports {imp.imported}: {src} and {dst} must stay independent")
    return out


def package_cycles(imports: list[Import]) -> list[str]:
    """One message per cycle between packages (strongly connected components of the package graph)."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        src, dst = package_of(imp.importer), package_of(imp.imported)
        if src != dst:
            edges.setdefault(src, {}).setdefault(dst, imp)  # the first import names the edge
    # Tarjan's strongly connected components.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    out = []
    for comp in components:
        members = set(comp)
        links = [imp for src in comp for dst, imp in sorted(edges.get(src, {}).items()) if dst in members]
        detail = "; ".join(f"{imp.where}: {imp.importer} imports {imp.imported}" for imp in links)
        out.append(f"import cycle between packages {' <-> '.join(comp)}: {detail}")
    return out


# --------------------------------------------------------------------------- the contract


def test_every_package_has_a_layer():
    packages = {package_of(module_name(p)[0]) for p in source_files()} - {ROOT_PACKAGE}
    assert packages - set(LAYER_OF) == set(), "place these packages in LAYERS"


def test_imports_point_down_the_layers():
    bad = violations(all_imports())
    assert not bad, "layering violations:\n" + "\n".join(bad)


def test_no_import_cycle_between_packages():
    bad = package_cycles(all_imports())
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------- the checker itself


def _imports_of_source(rel: str, text: str) -> list[Import]:
    """Imports of ``text`` as if it were the file ``langfield/<rel>`` (parsed, never written into the tree)."""
    return list(imports_of(ROOT / "langfield" / rel, ast.parse(text)))


def test_checker_sees_lazy_relative_and_dynamic_imports():
    found = _imports_of_source(
        "render/example.py",
        "import os\n"
        "from . import reference\n"
        "from ..gaussians.params import activate\n"
        "from langfield import scene\n"
        "def f():\n"
        "    from langfield.train.config import TrainConfig\n"
        "    import importlib\n"
        "    return importlib.import_module('langfield.query')\n",
    )
    assert sorted((i.line, i.imported) for i in found) == [
        (2, "langfield.render"),
        (3, "langfield.gaussians.params"),
        (4, "langfield.scene"),
        (6, "langfield.train.config"),
        (8, "langfield.query"),
    ]
    bad = sorted(violations(found), key=lambda m: int(m.split(":")[1]))
    # render may use its own package and gaussians; scene, train and query are above it.
    assert [int(m.split(":")[1]) for m in bad] == [4, 6, 8]
    assert "langfield.render.example (layer 3, render) imports langfield.train.config (layer 6, train)" in bad[1]


def test_checker_flags_independence_and_cycles():
    down = _imports_of_source("eval/x.py", "from langfield.train.config import TrainConfig\n")
    up = _imports_of_source("train/y.py", "def g():\n    from langfield.eval.report import write_report\n")
    assert violations(down) == [
        "langfield/eval/x.py:1: langfield.eval.x imports langfield.train.config: eval and train must stay independent"
    ]
    cycles = package_cycles(down + up)
    assert len(cycles) == 1 and "eval <-> train" in cycles[0]
    assert "langfield/train/y.py:2" in cycles[0] and "langfield/eval/x.py:1" in cycles[0]


def test_checker_maps_viewer_to_langfield_viewer_and_places_each_package_once():
    name, is_pkg = module_name(ROOT / "viewer" / "core.py")
    assert (name, is_pkg, package_of(name)) == ("langfield.viewer.core", False, "viewer")
    assert module_name(ROOT / "langfield" / "render" / "__init__.py") == ("langfield.render", True)
    placed = [pkg for layer in LAYERS for pkg in layer]
    assert len(placed) == len(set(placed))
