"""The import-graph tool on a small fake package: which statements become edges, which break
the layer rules, the Mermaid block, and the --write / --check command line."""
from pathlib import Path

import pytest

from kdutils.tools import import_graph as ig

FILES = {
    "__init__.py": '"""the package"""\n',
    "core/__init__.py": "",
    "core/fileio.py": "import os\nimport json\n",
    "core/records.py": "from kdutils.core.fileio import write  # a name inside a module\n",
    "core/train.py": (
        "import torch\n"
        "from kdutils.core import records as R\n"
        "import kdutils.core.fileio\n"
        "def fit():\n"
        "    from kdutils.distill import objectives  # lazy, still a dependency\n"
    ),
    "distill/__init__.py": "",
    "distill/objectives.py": "from kdutils.core.records import load\n",
    "models/__init__.py": "REGISTRY = {}\n",
    "models/small.py": "from . import REGISTRY\nfrom .. import core\n",
    "parts/__init__.py": "",
    "parts/part1.py": "from kdutils.models import REGISTRY\nfrom kdutils.tools import report\n",
    "parts/part2.py": "from kdutils.parts.part1 import x\nfrom kdutils.parts import part3\n",
    "parts/part3.py": "from kdutils.parts import part1, part2\n",
    "tools/__init__.py": "",
    "tools/report.py": "from kdutils.parts import part1, part2\nfrom kdutils.tools.report import y\n",
}


@pytest.fixture
def package(tmp_path) -> Path:
    root = tmp_path / "kdutils"
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _pairs(graph):
    return {(s.removeprefix("kdutils."), t.removeprefix("kdutils.")) for s, t in graph.edges()}


def test_module_names_and_layers(package):
    assert ig.module_name(package / "core" / "train.py", package) == "kdutils.core.train"
    assert ig.module_name(package / "models" / "__init__.py", package) == "kdutils.models"
    assert ig.layer_of("kdutils.core.train") == "core" and ig.layer_of("kdutils.models") == "models"
    assert ig.layer_of("kdutils") is None
    assert ig.part_number("kdutils.parts.part12") == 12 and ig.part_number("kdutils.parts.helpers") is None


def test_scan_resolves_every_kind_of_import(package):
    graph = ig.scan(package)
    assert _pairs(graph) == {
        ("core.records", "core.fileio"),
        ("core.train", "core.records"),
        ("core.train", "core.fileio"),
        ("core.train", "distill.objectives"),
        ("distill.objectives", "core.records"),
        ("models.small", "models"),
        ("models.small", "core"),
        ("parts.part1", "models"),
        ("parts.part1", "tools.report"),
        ("parts.part2", "parts.part1"),
        ("parts.part2", "parts.part3"),
        ("parts.part3", "parts.part1"),
        ("parts.part3", "parts.part2"),
        ("tools.report", "parts.part1"),
        ("tools.report", "parts.part2"),
    }  # no torch / os / json, no self-import of tools.report
    lazy = [i for i in graph.imports if i.target == "kdutils.distill.objectives"]
    assert [(i.path, i.line) for i in lazy] == [("kdutils/core/train.py", 5)]
    # empty __init__ modules without edges are not drawn; modules with an edge are
    assert "kdutils.tools" not in graph.nodes() and "kdutils.core" in graph.nodes()
    assert "kdutils.models" in graph.nodes() and "kdutils.core.fileio" in graph.nodes()


def test_rule_breaks_name_file_line_and_reason(package):
    breaks = {(i.path, i.line): why for i, why in ig.rule_breaks(ig.scan(package))}
    assert set(breaks) == {
        ("kdutils/core/train.py", 5),  # core -> distill
        ("kdutils/parts/part1.py", 2),  # parts -> tools
        ("kdutils/parts/part2.py", 2),  # part2 -> part3, a later part (part3 -> part1, part2 is fine)
    }
    assert "core may import no other layer" in breaks[("kdutils/core/train.py", 5)]
    assert "smaller number" in breaks[("kdutils/parts/part2.py", 2)]


def test_mermaid_block_marks_breaks_and_is_stable(package):
    graph = ig.scan(package)
    block = ig.mermaid_block(graph)
    assert block.startswith(ig.START) and block.endswith(ig.END)
    assert block == ig.mermaid_block(ig.scan(package))  # same code, same text
    assert block.count("```mermaid") == 2
    assert "3 import edge(s) break the layer rules" in block
    assert "`kdutils.core.train` -> `kdutils.distill.objectives`: core imports distill" in block
    assert "  core_train -.-> distill_objectives" in block
    assert "  core_train --> core_records" in block
    assert "  parts -.->|1| tools" in block and "  tools -->|2| parts" in block
    assert '    models_pkg["__init__"]' in block and "  subgraph parts_layer [parts]" in block
    assert "tools_pkg" not in block


def test_replace_block_keeps_the_rest_and_needs_markers():
    doc = f"# title\n\nbefore\n{ig.START}\nold\n{ig.END}\nafter\n"
    new = ig.replace_block(doc, f"{ig.START}\nnew\n{ig.END}")
    assert new == f"# title\n\nbefore\n{ig.START}\nnew\n{ig.END}\nafter\n"
    with pytest.raises(ValueError, match="import-graph:start"):
        ig.replace_block("# no markers\n", "x")


def test_write_then_check(package, tmp_path, capsys):
    doc = tmp_path / "ARCHITECTURE.md"
    png = tmp_path / "docs" / "architecture.png"
    doc.write_text(f"# Architecture\n\n{ig.START}\n{ig.END}\n\nthe end\n")
    args = ["--doc", str(doc), "--png", str(png), "--package", str(package)]
    assert ig.main(["--check", *args]) == 1
    assert "make architecture" in capsys.readouterr().err
    assert ig.main(["--write", *args]) == 0
    text = doc.read_text()
    assert text.startswith("# Architecture\n\n" + ig.START) and text.endswith(ig.END + "\n\nthe end\n")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert ig.main(["--check", *args]) == 0
    (package / "tools" / "extra.py").write_text("from kdutils.core import train\n")
    assert ig.main(["--check", *args]) == 1  # a new module: the block is out of date


def test_the_real_package(tmp_path):
    graph = ig.scan()
    pairs = _pairs(graph)
    assert ("tools.sweep", "core.records") in pairs
    assert ("models.small_cnn", "models") in pairs
    assert all(ig.layer_of(m) in ig.LAYERS for m in graph.nodes())
    path = ig.draw(graph, tmp_path / "graph.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
