"""The import graph of ``kdutils``, read from the source with ``ast`` (nothing is imported).

Every ``import`` and ``from ... import`` statement of a module counts, also those inside
functions (a lazy import is still a dependency). An edge joins two modules of the
package; ``from kdutils.core import records`` is an edge to ``kdutils.core.records``,
``from . import register`` inside ``kdutils/models/small_cnn.py`` one to ``kdutils.models``.

Modules are grouped by layer, the folder under ``kdutils/``. :data:`LAYER_RULES` says
which layers a layer may import; parts may in addition import only parts with a smaller
number. ``tests/test_architecture.py`` holds the package to these rules.

Outputs
    ``mermaid_block`` renders two Mermaid flowcharts (layers, then modules), which
    ``--write`` puts between ``<!-- import-graph:start -->`` and
    ``<!-- import-graph:end -->`` in ``ARCHITECTURE.md``; ``draw`` saves the same graph
    as ``docs/architecture.png`` (layers as bands, modules as boxes, beside the
    collapsed layer graph). Imports that break the rules are drawn dashed and red.

Command line::

    python -m kdutils.tools.import_graph --write    # rewrite the block and the PNG (make architecture)
    python -m kdutils.tools.import_graph --check    # exit 1 when the block is out of date
"""
from __future__ import annotations

import argparse
import ast
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

PACKAGE = "kdutils"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent
DOC = REPO_ROOT / "ARCHITECTURE.md"
PNG = REPO_ROOT / "docs" / "architecture.png"
START = "<!-- import-graph:start -->"
END = "<!-- import-graph:end -->"

#: The layers, from the engine up to the command-line tools.
LAYERS = ("core", "distill", "models", "compress", "parts", "tools")
#: Which other layers a layer may import (its own layer it may always import).
LAYER_RULES = {
    "core": (),
    "models": ("core",),
    "compress": ("core",),
    "distill": ("core",),
    "parts": ("core", "distill", "models", "compress"),
    "tools": ("core", "distill", "models", "compress", "parts"),
}
#: Rows of the picture, top to bottom (imports point downwards).
TIERS = (("tools",), ("parts",), ("distill", "models", "compress"), ("core",))


# --------------------------------------------------------------------------- reading the code
@dataclass(frozen=True)
class Import:
    """One import statement's dependency: ``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int


@dataclass
class Graph:
    """Modules of the package (dotted name -> file) and the imports between them."""

    modules: dict = field(default_factory=dict)
    imports: list = field(default_factory=list)

    def edges(self) -> list[tuple[str, str]]:
        """Distinct (source, target) module pairs, sorted."""
        return sorted({(i.source, i.target) for i in self.imports})

    def nodes(self) -> list[str]:
        """Modules drawn: every module except an ``__init__`` without any import edge."""
        linked = {m for e in self.edges() for m in e}
        return sorted(m for m, p in self.modules.items() if p.name != "__init__.py" or m in linked)

    def layer_edges(self) -> Counter:
        """``(source layer, target layer) -> number of module edges`` (within a layer too)."""
        return Counter((layer_of(s), layer_of(t)) for s, t in self.edges())


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """``kdutils/core/train.py`` -> ``kdutils.core.train``; a package's ``__init__.py`` -> the package."""
    parts = list(path.resolve().relative_to(package_dir.resolve().parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> Optional[str]:
    """``kdutils.core.train`` -> ``core``; ``kdutils`` itself has no layer (None)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def part_number(module: str) -> Optional[int]:
    """``kdutils.parts.part3`` -> 3; any other module -> None."""
    m = re.fullmatch(rf"{PACKAGE}\.parts\.part(\d+)", module)
    return int(m.group(1)) if m else None


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from X import ...`` reads from (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(node: ast.AST, module: str, is_package: bool, known) -> Iterator[str]:
    """The package modules one import statement depends on."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        origin = _absolute(node, module, is_package)
        # ``from pkg import mod`` is the submodule when there is one, else ``pkg`` itself.
        names = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
    for name in names:
        while name and name not in known:  # kdutils.core.train.fit -> kdutils.core.train
            name = name.rpartition(".")[0]
        if name.split(".")[0] == PACKAGE and name:
            yield name


def scan(package_dir: Path = PACKAGE_DIR) -> Graph:
    """Parse every module of the package; collect the imports between its modules."""
    package_dir = Path(package_dir)
    files = sorted(p for p in package_dir.rglob("*.py") if "__pycache__" not in p.parts)
    graph = Graph(modules={module_name(p, package_dir): p for p in files})
    root = package_dir.parent
    for module, path in graph.modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        seen = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, module, is_package, graph.modules):
                if target != module and (target, node.lineno) not in seen:
                    seen.add((target, node.lineno))
                    graph.imports.append(Import(module, target, path.relative_to(root).as_posix(), node.lineno))
    graph.imports.sort(key=lambda i: (i.path, i.line, i.target))
    return graph


def rule_break(imp: Import) -> Optional[str]:
    """Why ``imp`` goes against the layer rules, or None when it follows them."""
    src, dst = layer_of(imp.source), layer_of(imp.target)
    if src is None or dst is None:
        return None
    if src not in LAYER_RULES:
        return f"{imp.source} is in no known layer ({', '.join(LAYERS)})"
    if dst != src and dst not in LAYER_RULES[src]:
        allowed = ", ".join(LAYER_RULES[src]) or "no other layer"
        return f"{src} imports {dst} ({src} may import {allowed})"
    a, b = part_number(imp.source), part_number(imp.target)
    if src == dst == "parts" and (a is None or b is None or b >= a):
        return f"{imp.source} imports {imp.target} (a part imports only parts with a smaller number)"
    return None


def rule_breaks(graph: Graph) -> list[tuple[Import, str]]:
    """Every import of ``graph`` that goes against the rules, with the reason."""
    return [(i, why) for i in graph.imports if (why := rule_break(i)) is not None]


# --------------------------------------------------------------------------- Mermaid
def _node_id(module: str) -> str:
    return module.removeprefix(f"{PACKAGE}.").replace(".", "_") + ("_pkg" if module.count(".") == 1 else "")


def _label(module: str) -> str:
    return "__init__" if module.count(".") == 1 else module.rpartition(".")[2]


def _breaking_pairs(graph: Graph) -> set:
    return {(i.source, i.target) for i, _ in rule_breaks(graph)}


def mermaid_layers(graph: Graph) -> str:
    """The collapsed graph: one node per layer, one arrow per layer pair with its edge count."""
    bad_layers = {(layer_of(s), layer_of(t)) for s, t in _breaking_pairs(graph)}
    lines = ["flowchart TB"]
    lines += [f"  {layer}" for layer in LAYERS]
    for (a, b), n in sorted(graph.layer_edges().items()):
        if a != b and a is not None and b is not None:
            arrow = "-.->" if (a, b) in bad_layers else "-->"
            lines.append(f"  {a} {arrow}|{n}| {b}")
    return "\n".join(lines)


def mermaid_modules(graph: Graph) -> str:
    """One subgraph per layer, one node per module, one arrow per import edge."""
    bad = _breaking_pairs(graph)
    nodes = graph.nodes()
    lines = ["flowchart TB"]
    for layer in LAYERS:
        members = [m for m in nodes if layer_of(m) == layer]
        if members:
            lines.append(f"  subgraph {layer}_layer [{layer}]")
            lines += [f'    {_node_id(m)}["{_label(m)}"]' for m in members]
            lines.append("  end")
    for s, t in graph.edges():
        if s in nodes and t in nodes:
            lines.append(f"  {_node_id(s)} {'-.->' if (s, t) in bad else '-->'} {_node_id(t)}")
    return "\n".join(lines)


def mermaid_block(graph: Graph) -> str:
    """The generated text that sits between the markers of ARCHITECTURE.md."""
    # module pairs, not file:line, so that the block changes only when the graph does
    breaks = sorted({(i.source, i.target, why) for i, why in rule_breaks(graph)})
    note = (f"{len(breaks)} import edge(s) break the layer rules (dashed): "
            + "; ".join(f"`{s}` -> `{t}`: {why}" for s, t, why in breaks)) if breaks else \
        "Every import follows the layer rules."
    return "\n".join([
        START,
        "<!-- generated by `python -m kdutils.tools.import_graph --write` (make architecture); do not edit -->",
        f"{len(graph.nodes())} modules, {len(graph.edges())} import edges. {note}",
        "",
        "Layers (an arrow reads \"imports\"; its number counts module-to-module edges):",
        "",
        "```mermaid", mermaid_layers(graph), "```",
        "",
        "Modules:",
        "",
        "```mermaid", mermaid_modules(graph), "```",
        END,
    ])


def replace_block(text: str, block: str) -> str:
    """``text`` with its marked block replaced by ``block`` (a ValueError when markers are missing)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document has no {START} ... {END} block")
    return text[:start] + block + text[end + len(END):]


# --------------------------------------------------------------------------- the picture
COLOURS = {"core": "#8da0cb", "distill": "#fc8d62", "models": "#66c2a5",
           "compress": "#e78ac3", "parts": "#a6d854", "tools": "#ffd92f"}
BOX_H = 0.42
ROW_H = 0.75
SLOT = 1.5  # the least width of a module box's slot


def _layer_regions(graph: Graph, width: float) -> dict:
    """Layer -> (x0, x1, y0, y1, rows) of its region of the bands; the first tier is on top."""
    size = Counter(layer_of(m) for m in graph.nodes())
    regions, y = {}, 0.0
    for tier in reversed(TIERS):
        total = sum(max(1, size[layer]) for layer in tier)
        spans = {layer: width * max(1, size[layer]) / total for layer in tier}
        rows = max(-(-size[layer] // max(1, int(spans[layer] // SLOT))) for layer in tier)
        height = max(1, rows) * ROW_H + 0.45
        x = 0.0
        for layer in tier:
            regions[layer] = (x, x + spans[layer], y, y + height, max(1, rows))
            x += spans[layer]
        y += height
    return regions


def _by_depth(graph: Graph, layer: str) -> list[str]:
    """The layer's modules, those that import more of their own layer first (they go on top)."""
    members = [m for m in graph.nodes() if layer_of(m) == layer]
    inside = {m: [t for s, t in graph.edges() if s == m and t in members] for m in members}
    depth: dict = {}

    def walk(m: str, path: tuple) -> int:
        if m not in depth:
            depth[m] = 1 + max((walk(t, path + (m,)) for t in inside[m] if t not in path), default=-1)
        return depth[m]

    return sorted(members, key=lambda m: (-walk(m, ()), m))


def _module_boxes(graph: Graph, regions: dict) -> dict:
    """Module -> (x centre, y centre, box width), row by row inside its layer's region."""
    boxes = {}
    for layer, (x0, x1, y0, y1, rows) in regions.items():
        members = _by_depth(graph, layer)
        per_row = max(1, -(-len(members) // rows))
        slot = (x1 - x0) / per_row
        for i, m in enumerate(members):
            row, col = divmod(i, per_row)
            boxes[m] = (x0 + slot * (col + 0.5), y1 - 0.4 - ROW_H * (row + 0.5), min(1.1, slot * 0.86))
    return boxes


def _box(ax, x: float, y: float, w: float, h: float, text: str, face: str, edge: str, size: float):
    from matplotlib.patches import FancyBboxPatch

    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02", facecolor=face,
                           edgecolor=edge, linewidth=1.5, zorder=4)
    ax.add_patch(patch)
    ax.text(x, y, text, ha="center", va="center", fontsize=size, zorder=5)
    return patch


def _arrow(ax, a, b, colour: str, bad: bool, rad: float, width: float = 0.9) -> None:
    """An arrow from box patch ``a`` to box patch ``b`` (clipped at their borders)."""
    from matplotlib.patches import FancyArrowPatch

    (xa, ya), (xb, yb) = (_centre(a), _centre(b))
    ax.add_patch(FancyArrowPatch(
        (xa, ya), (xb, yb), patchA=a, patchB=b, arrowstyle="-|>", mutation_scale=10,
        linewidth=1.5 if bad else width, color="#d62728" if bad else colour, alpha=0.95 if bad else 0.5,
        linestyle=(0, (4, 2)) if bad else "-", connectionstyle=f"arc3,rad={rad}", shrinkA=1, shrinkB=1,
        zorder=3 if bad else 2))


def _centre(patch) -> tuple[float, float]:
    bb = patch.get_bbox()
    return (bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2


def _draw_modules(ax, graph: Graph) -> None:
    """Bands per layer, a box per module, an arrow per import edge."""
    from matplotlib.patches import Rectangle

    width = 12.0
    regions = _layer_regions(graph, width)
    for layer, (x0, x1, y0, y1, _) in regions.items():
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=COLOURS[layer], alpha=0.2,
                               edgecolor="white", linewidth=3, zorder=0))
        ax.text(x0 + 0.08, y1 - 0.06, layer, ha="left", va="top", fontsize=10, fontweight="bold", zorder=1)
    patches = {m: _box(ax, x, y, w, BOX_H, _label(m), "white", COLOURS[layer_of(m)], 7.5)
               for m, (x, y, w) in _module_boxes(graph, regions).items()}
    bad = _breaking_pairs(graph)
    for s, t in graph.edges():
        if s in patches and t in patches:
            (xs, ys), (xt, yt) = _centre(patches[s]), _centre(patches[t])
            # boxes on one row: an arc over the row (height ~0.35 whatever the distance)
            rad = -min(0.4, 0.7 / abs(xt - xs)) * (1 if xt > xs else -1) if abs(ys - yt) < 1e-6 else 0.06
            _arrow(ax, patches[s], patches[t], COLOURS[layer_of(s)], (s, t) in bad, rad=rad)
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(-0.1, max(r[3] for r in regions.values()) + 0.1)
    ax.set_title("modules (an arrow reads \"imports\")", fontsize=11)


def _draw_layers(ax, graph: Graph) -> None:
    """The collapsed graph: a box per layer, an arrow per layer pair labelled with its edge count.

    An arrow between neighbouring rows bends a little (so that two opposite arrows stay
    apart); one that skips a row bends out to the right, around the boxes in between.
    """
    counts = graph.layer_edges()
    modules = Counter(layer_of(m) for m in graph.nodes())
    patches = {}
    for row, tier in enumerate(TIERS):
        for i, layer in enumerate(tier):
            x, y = (i + 0.5) * 3.0 / len(tier), (len(TIERS) - row - 0.5) * 1.6
            text = f"{layer}\n{modules[layer]} modules\ninside: {counts.get((layer, layer), 0)}"
            patches[layer] = _box(ax, x, y, 0.86, 0.62, text, COLOURS[layer], "#333333", 7.5)
    bad = {(layer_of(s), layer_of(t)) for s, t in _breaking_pairs(graph)}
    for (a, b), n in sorted(counts.items()):
        if a == b or a not in patches or b not in patches:
            continue
        (xa, ya), (xb, yb) = _centre(patches[a]), _centre(patches[b])
        dx, dy = xb - xa, yb - ya
        rows = round(abs(dy) / 1.6)
        bulge = 0.9 + 0.35 * rows  # how far right of the boxes an arrow that skips rows passes
        rad = 0.45 if rows == 0 else 0.12 if rows == 1 else 2 * bulge / math.hypot(dx, dy) * (1 if dy > 0 else -1)
        _arrow(ax, patches[a], patches[b], "#444444", (a, b) in bad, rad=rad, width=0.6 + 0.15 * n)
        # the middle of the arc (a quadratic Bezier curve): halfway to its control point
        ax.text(xa + dx / 2 + rad * dy / 2, ya + dy / 2 - rad * dx / 2, str(n), fontsize=8, ha="center",
                va="center", color="#d62728" if (a, b) in bad else "#222222", zorder=6,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.set_xlim(-0.05, 3.85)
    ax.set_ylim(0, len(TIERS) * 1.6)
    ax.set_title("layers (numbers: module edges)", fontsize=11)


def draw(graph: Graph, path: Path = PNG) -> Path:
    """Save the layer graph and the module graph side by side as a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(17, 8), gridspec_kw={"width_ratios": [1, 3.4]})
    _draw_layers(left, graph)
    _draw_modules(right, graph)
    for ax in (left, right):
        ax.set_axis_off()
    n = len(rule_breaks(graph))
    fig.suptitle("kdutils import graph, drawn from the code by kdutils.tools.import_graph"
                 + (f" ({n} import(s) against the layer rules: red, dashed)" if n else ""), fontsize=12)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- command line
def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdutils.tools.import_graph", description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the block of the document and the PNG")
    mode.add_argument("--check", action="store_true", help="exit 1 when the block is out of date")
    ap.add_argument("--doc", type=Path, default=DOC, help=f"the Markdown file (default {DOC.name})")
    ap.add_argument("--png", type=Path, default=PNG, help="the picture (default docs/architecture.png)")
    ap.add_argument("--package", type=Path, default=PACKAGE_DIR, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    graph = scan(args.package)
    text = args.doc.read_text(encoding="utf-8")
    updated = replace_block(text, mermaid_block(graph))
    if args.check:
        if updated != text:
            print(f"{args.doc}: the import graph is out of date; run `make architecture`", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        args.doc.write_text(updated, encoding="utf-8")
    draw(graph, args.png)
    print(f"{args.doc}: {len(graph.nodes())} modules, {len(graph.edges())} edges; picture {args.png}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
