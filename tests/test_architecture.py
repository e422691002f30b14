"""The layout of ARCHITECTURE.md, held by the code: layers import downwards only, functions stay
short, tests mirror the package, one numbering (part N) for notebooks and figures, and the
import graph in ARCHITECTURE.md is the one the code gives. Everything is read with ``ast``."""
import ast
import json
import re
from pathlib import Path

import pytest

from kdutils.tools import import_graph as ig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdutils"
MAX_FUNCTION_LINES = 80


@pytest.fixture(scope="module")
def graph():
    return ig.scan(PACKAGE)


def _listing(items) -> str:
    return "\n  " + "\n  ".join(items)


# --------------------------------------------------------------------------- (a) import direction
def test_the_layer_rules_are_the_documented_ones():
    # Changing a rule is a design decision: change ARCHITECTURE.md together with this test.
    assert ig.LAYERS == ("core", "distill", "models", "compress", "parts", "tools")
    assert {k: set(v) for k, v in ig.LAYER_RULES.items()} == {
        "core": set(),
        "models": {"core"},
        "compress": {"core"},
        "distill": {"core"},
        "parts": {"core", "distill", "models", "compress"},
        "tools": {"core", "distill", "models", "compress", "parts"},
    }


def test_every_module_lives_in_a_layer(graph):
    loose = [m for m in graph.modules if m != "kdutils" and ig.layer_of(m) not in ig.LAYERS]
    assert not loose, "modules outside the layers:" + _listing(loose)


@pytest.mark.parametrize("layer", ig.LAYERS)
def test_imports_go_down_the_layers(graph, layer):
    breaks = [f"{i.path}:{i.line} {why}" for i, why in ig.rule_breaks(graph) if ig.layer_of(i.source) == layer]
    assert not breaks, f"imports of {layer} against ARCHITECTURE.md:" + _listing(breaks)


def test_the_rules_catch_what_they_should():
    def imp(src, dst):
        return ig.Import(f"kdutils.{src}", f"kdutils.{dst}", "x.py", 1)

    assert ig.rule_break(imp("core.train", "distill.objectives"))
    assert ig.rule_break(imp("models.small_cnn", "distill.objectives"))
    assert ig.rule_break(imp("parts.part3", "tools.sweep"))
    assert ig.rule_break(imp("parts.part2", "parts.part3"))  # a later part
    assert ig.rule_break(imp("parts.part2", "parts.part2x"))  # not a numbered part
    assert ig.rule_break(imp("parts.part4", "parts.part3")) is None
    assert ig.rule_break(imp("tools.report", "parts.part5")) is None
    assert ig.rule_break(imp("core.train", "core.records")) is None


# --------------------------------------------------------------------------- (b) short functions
def test_no_function_is_longer_than_80_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:" + _listing(long)


# --------------------------------------------------------------------------- (c) tests mirror the package
def test_every_module_has_its_test_module():
    missing = []
    for path in sorted(PACKAGE.glob("*/*.py")):
        if path.name != "__init__.py":
            test = ROOT / "tests" / path.parent.name / f"test_{path.name}"
            if not test.is_file():
                missing.append(f"{path.relative_to(ROOT)} -> {test.relative_to(ROOT)}")
    assert not missing, "modules without a test module:" + _listing(missing)


# --------------------------------------------------------------------------- (d) one numbering
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PART_NOTEBOOKS = [p for p in NOTEBOOKS if p.name != "report.ipynb"]


def test_notebooks_are_named_by_part():
    bad = [p.name for p in PART_NOTEBOOKS if not re.fullmatch(r"part[1-9]\d*_[a-z0-9_]+\.ipynb", p.name)]
    assert not bad, "notebooks not named partN_<what>.ipynb (or report.ipynb):" + _listing(bad)
    parts = {int(re.match(r"part(\d+)", p.name).group(1)) for p in PART_NOTEBOOKS}
    modules = {ig.part_number(m) for m in ig.scan(PACKAGE).modules} - {None}
    assert parts == modules, "every part has a notebook and a module kdutils/parts/partN.py"


def _code(path: Path) -> ast.Module:
    """The notebook's code cells as one module (IPython's % and ! lines left out)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = [line for c in cells if c["cell_type"] == "code"
             for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!"))]
    return ast.parse("\n".join(lines))


def _figure_names(tree: ast.Module) -> list:
    """The name argument of every ``save_figure(fig, name)`` call; its leading text for an f-string."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "save_figure":
            keyword = next((k.value for k in node.keywords if k.arg == "name"), None)
            arg = node.args[1] if len(node.args) > 1 else keyword
            if isinstance(arg, ast.JoinedStr) and arg.values:
                arg = arg.values[0]
            names.append(arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None)
    return names


@pytest.mark.parametrize("path", PART_NOTEBOOKS, ids=[p.name for p in PART_NOTEBOOKS])
def test_part_notebooks_save_figures_named_by_part(path):
    prefix = re.match(r"(part\d+)_", path.name).group(1) + "_"
    tree = _code(path)
    names = _figure_names(tree)
    assert names, f"{path.name} saves no figure through kdutils.core.plots.save_figure"
    bad = [str(n) for n in names if n is None or not n.startswith(prefix)]
    assert not bad, f"{path.name}: figure names not starting with {prefix} (None: not a literal):" + _listing(bad)
    direct = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "savefig"]
    assert not direct, f"{path.name} calls savefig directly (use save_figure): code lines {direct}"


# --------------------------------------------------------------------------- (e) the picture is current
def test_architecture_md_import_graph_is_up_to_date(graph):
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert ig.START in text and ig.END in text
    assert ig.replace_block(text, ig.mermaid_block(graph)) == text, \
        "ARCHITECTURE.md's import graph is out of date: run `make architecture`"
    assert (ROOT / "docs" / "architecture.png").is_file(), "docs/architecture.png is missing: run `make architecture`"
