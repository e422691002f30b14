"""Checking a notebook's parameters before any work: one declarative spec per parameter.

Every part declares what its notebook's ``parameters`` cell may hold (``partN.PARAMETERS``),
for example::

    PARAMETERS = {
        "profile": profile(),
        "alpha": number(0, 1, optional=True, help="weight of the soft term"),
        "prune_rates": numbers(0, 1, min_len=2, low_open=True, high_open=True),
        "force": flag(),
    }

and the cell right after ``parameters`` calls ``check_parameters(part.PARAMETERS, globals(),
"<notebook>")``. Every wrong value is reported at once, each with what was given, what
is allowed and how to pass it. The rules are strict where papermill's ``-p`` guesses
types: a bool is not a number (``alpha=True`` is not 1.0), ``"abc"`` is not a float, and a
run name ``10`` arrives as an int (pass it with ``-r run_name 10``, papermill's raw text).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Mapping, Optional, Sequence

from kdutils.core.records import check_name

#: The values of the ``profile`` parameter ("" = ``KD_PROFILE``, else quick).
PROFILE_CHOICES = ("", "smoke", "quick", "full")


@dataclass(frozen=True)
class Param:
    """What one notebook parameter may hold.

    ``kind``: ``"flag"`` (True / False), ``"int"``, ``"number"`` (int or float, never a
    bool), ``"numbers"`` (a list of numbers), ``"text"`` or ``"name"`` (text that becomes a
    file name, empty allowed). ``low`` / ``high`` bound numbers (``low_open`` /
    ``high_open``: the bound itself is excluded), ``choices`` lists the allowed values,
    ``optional``: None is allowed (the profile's default), ``min_len`` / ``max_len`` bound
    a list's length, ``help`` says in words what the parameter is.
    """

    kind: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: Optional[tuple] = None
    optional: bool = False
    min_len: int = 0
    max_len: Optional[int] = None
    increasing: bool = False
    help: str = ""

    def allowed(self) -> str:
        """The allowed values in words (used in every error message)."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "flag":
            text = "True or False"
        elif self.kind == "text":
            text = "text"
        elif self.kind == "name":
            text = "text of letters, digits and _ . = + - (a file name; empty: the default)"
        else:
            what = {"int": "an integer", "number": "a number"}.get(self.kind, "a list of numbers, each")
            text = f"{what}{self._range()}"
            if self.kind == "numbers":
                text += f", at least {self.min_len}" if self.min_len else ""
                text += f", at most {self.max_len}" if self.max_len is not None else ""
                text += ", in increasing order" if self.increasing else ""
        return text + (" or None (the profile's default)" if self.optional else "")

    def _range(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return (" " + " and ".join(parts)) if parts else ""

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` is not allowed, or None when it is."""
        if value is None:
            return None if self.optional else "None is not allowed"
        if self.choices is not None:
            return None if _is_choice(value, self.choices) else "not one of the choices"
        check = {"flag": _flag_problem, "int": self._number_problem, "number": self._number_problem,
                 "numbers": self._numbers_problem, "text": _text_problem, "name": _name_problem}[self.kind]
        return check(value)

    def _number_problem(self, value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, Real):
            return f"{_a(value)} is not a number"
        if self.kind == "int" and not isinstance(value, Integral):
            return "not an integer"
        if not math.isfinite(float(value)):
            return "not a finite number"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return "too small"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return "too large"
        return None

    def _numbers_problem(self, value: Any) -> Optional[str]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            return f"{_a(value)} is not a list"
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            return f"it has {len(value)} values"
        for item in value:
            wrong = self._number_problem(item)
            if wrong:
                return f"item {item!r}: {wrong}"
        if self.increasing and any(b <= a for a, b in zip(value, value[1:])):
            return "not in increasing order"
        return None


def _a(value: Any) -> str:
    """``"an int"``, ``"a str"``: the value's type with its article."""
    kind = type(value).__name__
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def _is_choice(value: Any, choices: tuple) -> bool:
    """``value`` is one of ``choices`` with the same type (True is not the choice 1)."""
    return any(value == c and type(value) is type(c) for c in choices) or (
        isinstance(value, (int, float)) and not isinstance(value, bool)
        and any(isinstance(c, (int, float)) and not isinstance(c, bool) and value == c for c in choices))


def _flag_problem(value: Any) -> Optional[str]:
    return None if isinstance(value, bool) else f"{_a(value)} is not True or False"


def _text_problem(value: Any) -> Optional[str]:
    return None if isinstance(value, str) else f"{_a(value)} is not text"


def _name_problem(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return f"{_a(value)} is not text"
    if value == "":
        return None
    try:
        check_name(value)
    except ValueError:
        return "not a valid file name"
    return None


# --------------------------------------------------------------------------- building specs
def flag(help: str = "") -> Param:
    """True or False (never 0 / 1 or text)."""
    return Param("flag", help=help)


def integer(low: Optional[int] = None, high: Optional[int] = None, *, optional: bool = False,
            choices: Optional[Sequence[int]] = None, help: str = "") -> Param:
    """An int in ``[low, high]`` (a bool or a float is refused)."""
    return Param("int", low=low, high=high, optional=optional,
                 choices=tuple(choices) if choices is not None else None, help=help)


def number(low: Optional[float] = None, high: Optional[float] = None, *, low_open: bool = False,
           high_open: bool = False, optional: bool = False, help: str = "") -> Param:
    """An int or float between ``low`` and ``high`` (a bool or text is refused)."""
    return Param("number", low=low, high=high, low_open=low_open, high_open=high_open, optional=optional,
                 help=help)


def numbers(low: Optional[float] = None, high: Optional[float] = None, *, min_len: int = 0,
            max_len: Optional[int] = None, low_open: bool = False, high_open: bool = False,
            increasing: bool = False, help: str = "") -> Param:
    """A list of numbers, each between ``low`` and ``high``, of ``min_len`` ... ``max_len`` values
    (``increasing``: each larger than the one before, e.g. a range ``[low, high]``)."""
    return Param("numbers", low=low, high=high, low_open=low_open, high_open=high_open, min_len=min_len,
                 max_len=max_len, increasing=increasing, help=help)


def text(choices: Optional[Sequence[str]] = None, *, optional: bool = False, help: str = "") -> Param:
    """Text (a path, a comma list, a model name), or one of ``choices``."""
    return Param("text", choices=tuple(choices) if choices is not None else None, optional=optional, help=help)


def name(help: str = "") -> Param:
    """Text that becomes a file name (a run name); empty means the default."""
    return Param("name", help=help)


def profile() -> Param:
    """The ``profile`` parameter: "", "smoke", "quick" or "full"."""
    return text(PROFILE_CHOICES, help="smoke | quick | full (empty: KD_PROFILE, else quick)")


#: Parameters every part notebook has (``rehearse``: a full-size run with capped steps).
COMMON = {
    "profile": profile(),
    "data_root": text(optional=True, help="where the data lives (empty: KD_DATA_ROOT, else data/)"),
    "force": flag("retrain runs that already have a finished record"),
    "rehearse": flag("run the full profile's settings with capped steps"),
}


# --------------------------------------------------------------------------- checking
def _example(spec: Param) -> str:
    """How to pass an allowed value on papermill's command line."""
    if spec.kind == "numbers":
        low = spec.low if spec.low is not None else 0
        high = spec.high if spec.high is not None else low + 1
        values = ", ".join(f"{low + (high - low) * (i + 1) / (max(spec.min_len, 1) + 1):.2g}"
                           for i in range(max(spec.min_len, 1)))
        return f"-y 'NAME: [{values}]'  (-y passes YAML, so a list arrives as a list)"
    if spec.kind == "name":
        return "-r NAME my_run  (-r passes raw text; -p would turn 10 into a number)"
    if spec.kind == "flag":
        return "-p NAME True"
    return ""


def check_parameters(spec: Mapping[str, Param], values: Mapping[str, Any], notebook: str = "the notebook") -> dict:
    """The parameters of ``spec`` found in ``values`` (a notebook's ``globals()``), checked.

    Raises one ``ValueError`` that lists every wrong parameter with its value, its type,
    what is allowed and how to pass it; parameters of ``spec`` absent from ``values`` are
    skipped (a notebook that predates one). Returns ``{name: value}`` of those checked.
    """
    found = {k: values[k] for k in spec if k in values}
    errors = []
    for key, value in found.items():
        wrong = spec[key].problem(value)
        if wrong:
            example = _example(spec[key]).replace("NAME", key)
            errors.append(f"  {key} = {value!r} ({type(value).__name__}): {wrong}; allowed: {spec[key].allowed()}"
                          + (f" [{spec[key].help}]" if spec[key].help else "")
                          + (f"; e.g. {example}" if example else ""))
    if errors:
        raise ValueError(f"{notebook}: {len(errors)} parameter(s) not allowed (nothing was run):\n"
                         + "\n".join(errors)
                         + "\nFix them in the parameters cell or on the command line (papermill -p NAME VALUE).")
    return found
