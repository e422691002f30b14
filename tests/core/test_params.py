"""The notebook-parameter checker (kdutils.core.params) and every part notebook's spec."""
import ast
import json
import math
from pathlib import Path

import pytest

from kdutils.core import params as P
from kdutils.core.params import check_parameters
from kdutils.parts import part1, part2, part3, part4, part5

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SPECS = {
    "part1_cifar100_architectures.ipynb": part1.PARAMETERS,
    "part2_cifar100_kd.ipynb": part2.PARAMETERS,
    "part3_cifar10_resnet18_kd.ipynb": part3.PARAMETERS,
    "part3_hparam_search.ipynb": part3.SEARCH_PARAMETERS,
    "part4_lwf_faces.ipynb": part4.PARAMETERS,
    "part5_food11_compression.ipynb": part5.PARAMETERS,
}


def _problem(spec, value):
    return spec.problem(value)


def test_a_bool_is_not_a_number_and_text_is_not_a_float():
    alpha = P.number(0, 1)
    assert _problem(alpha, True) == "a bool is not a number"
    assert _problem(alpha, "abc") == "a str is not a number"
    assert _problem(alpha, 0.5) is None and _problem(alpha, 1) is None and _problem(alpha, 0) is None
    assert _problem(alpha, 1.5) == "too large" and _problem(alpha, -0.1) == "too small"
    assert _problem(alpha, math.nan) == "not a finite number"
    assert _problem(alpha, None) == "None is not allowed"
    assert _problem(P.number(0, 1, optional=True), None) is None


def test_open_bounds_integers_and_choices():
    tau = P.number(0, low_open=True)
    assert _problem(tau, 0) == "too small" and _problem(tau, 1e-9) is None
    epochs = P.integer(1, optional=True)
    assert _problem(epochs, 3) is None and _problem(epochs, 3.0) == "not an integer"
    assert _problem(epochs, 0) == "too small" and _problem(epochs, False) == "a bool is not a number"
    stride = P.integer(choices=(1, 2), optional=True)
    assert _problem(stride, 2) is None and _problem(stride, 3) == "not one of the choices"
    assert _problem(stride, True) == "not one of the choices"  # True == 1, but it is not the choice 1
    assert _problem(P.profile(), "quick") is None and _problem(P.profile(), "fast") == "not one of the choices"


def test_flags_lists_text_and_names():
    assert _problem(P.flag(), True) is None and _problem(P.flag(), 1) == "an int is not True or False"
    assert _problem(P.flag(), "False") == "a str is not True or False"
    rates = P.numbers(0, 1, min_len=2, low_open=True, high_open=True)
    assert _problem(rates, [0.2, 0.4]) is None and _problem(rates, (0.2, 0.4)) is None
    assert _problem(rates, 0.5) == "a float is not a list" and _problem(rates, "0.2,0.4") == "a str is not a list"
    assert _problem(rates, [0.5]) == "it has 1 values" and _problem(rates, [0.5, 1.0]).startswith("item 1.0")
    span = P.numbers(0, min_len=2, max_len=2, low_open=True, increasing=True)
    assert _problem(span, [1, 100]) is None and _problem(span, [100, 1]) == "not in increasing order"
    assert _problem(P.text(), "a/b") is None and _problem(P.text(), 3) == "an int is not text"
    assert _problem(P.name(), "") is None and _problem(P.name(), "T5_lam0.1") is None
    assert _problem(P.name(), 10) == "an int is not text" and _problem(P.name(), "..") == "not a valid file name"


def test_check_parameters_names_every_wrong_value_with_what_is_allowed():
    spec = {"alpha": P.number(0, 1, help="weight of the soft term"), "force": P.flag(), "rates": P.numbers(0, 1)}
    assert check_parameters(spec, {"alpha": 0.3, "force": False, "other": object()}) == {"alpha": 0.3, "force": False}
    with pytest.raises(ValueError) as err:
        check_parameters(spec, {"alpha": True, "force": "yes", "rates": 0.5}, "demo.ipynb")
    text = str(err.value)
    assert text.startswith("demo.ipynb: 3 parameter(s) not allowed (nothing was run)")
    assert "alpha = True (bool): a bool is not a number; allowed: a number >= 0 and <= 1" in text
    assert "[weight of the soft term]" in text
    assert "force = 'yes' (str)" in text and "-p force True" in text
    assert "-y 'rates:" in text  # how to pass a list


@pytest.mark.parametrize("notebook", sorted(SPECS))
def test_every_notebook_parameter_has_a_spec_and_its_default_passes(notebook):
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    i = next(k for k, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cells[i]["source"]))
    names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}
    spec = SPECS[notebook]
    assert names <= set(spec), f"parameters without a spec: {sorted(names - set(spec))}"
    assert set(spec) - names <= {"rehearse"}, f"specs without a parameter: {sorted(set(spec) - names - {'rehearse'})}"
    defaults = {}
    exec("".join(cells[i]["source"]), defaults)
    check_parameters(spec, defaults, notebook)  # the defaults themselves are allowed
    assert "check_parameters(" in "".join(cells[i + 1]["source"])  # and the next cell checks them
