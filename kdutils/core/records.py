"""One JSON record per training run, and tables built from records.

A record lives at ``results/<profile>/<part>/<run>.json`` and is written atomically
(temporary file + ``os.replace``), so a crash never leaves half a file. A record whose
``status`` is ``"complete"`` or ``"budget"`` (stopped by the wall-clock budget) counts
as finished: re-running skips it unless forced.
"""
from __future__ import annotations

import json
import platform
import re
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from kdutils.core.fileio import atomic_write_json as _write_json
from kdutils.core.profiles import results_dir

FINISHED = ("complete", "budget")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.=+-]+$")


def check_name(name: str, what: str = "run name") -> str:
    """``name`` when it is safe as one file or folder name; else a ``ValueError`` saying why.

    Allowed: letters, digits and ``_ . = + -``, not empty and not only dots (``.`` and
    ``..`` would write into the folder itself or its parent).
    """
    if not isinstance(name, str):
        raise ValueError(f"{what} must be text (a str), got {type(name).__name__} {name!r}; quote it, e.g. '{name}'")
    if not _NAME_RE.match(name) or set(name) == {"."}:
        raise ValueError(
            f"{what} {name!r} may only use letters, digits and _ . = + -, must not be empty "
            "and must not be only dots (it becomes a file name or a folder name)"
        )
    return name


_TOKEN_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.=+-]")


def name_token(v: Any) -> str:
    """A short, file-name-safe text for a value (5.0 -> "5", 0.1 -> "0.1", 1e-05 -> "1e-05")."""
    text = f"{v:g}" if isinstance(v, float) else str(v)
    return _TOKEN_BAD_CHARS.sub("-", text)


def make_run_name(params: Mapping[str, Any], keys: Optional[Sequence[str]] = None) -> str:
    """``{"T": 5, "lam": 0.1}`` -> ``"T5_lam0.1"`` (``keys`` picks and orders the parts)."""
    keys = list(params) if keys is None else list(keys)
    return "_".join(f"{k}{name_token(params[k])}" for k in keys)


def record_path(part: str, run: str, profile: str, root: Optional[Path] = None) -> Path:
    check_name(part, "part")
    check_name(run)
    return Path(root or results_dir()) / profile / part / f"{run}.json"


def _jsonable(v: Any):
    try:
        import numpy as np
        import torch

        if isinstance(v, torch.Tensor):
            return v.detach().cpu().tolist()
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return v.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s "model name" on Linux, else what
    :func:`platform.processor` knows), quoted with every wall time."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
    except OSError:
        pass
    return name or "unknown CPU"


def environment() -> dict:
    import torch

    dev = "cpu"
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_device": dev,
        "cpu_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
    }


def new_record(part: str, run: str, profile: str, params: Optional[Mapping] = None, **extra) -> dict:
    rec = {
        "part": check_name(part, "part"),
        "run": check_name(run),
        "profile": profile,
        "status": "running",
        "params": dict(params or {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **environment(),
    }
    rec.update(extra)
    return rec


def atomic_write_json(path: Path, data: Mapping) -> None:
    """Write JSON atomically; tensors, numpy values and paths become plain JSON values."""
    _write_json(path, data, default=_jsonable)


def save_record(record: Mapping, root: Optional[Path] = None) -> Path:
    path = record_path(record["part"], record["run"], record["profile"], root)
    atomic_write_json(path, record)
    return path


class CorruptRecordError(ValueError):
    """A record file that is not a JSON object (truncated, emptied, edited by hand)."""

    def __init__(self, path: Path, problem: str):
        self.path = Path(path)
        super().__init__(
            f"results record {self.path} is damaged ({problem}). Move it aside (e.g. rename it to "
            f"{self.path.name}.bad) to train the run again, or restore it from a backup; "
            "fit(...) with the same run does the former by itself.")


def read_record(path: Path) -> dict:
    """The record stored in ``path``; :class:`CorruptRecordError` names the file when it is
    not a JSON object."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptRecordError(path, f"not valid JSON: {e}") from e
    if not isinstance(rec, dict):
        raise CorruptRecordError(path, f"a JSON {type(rec).__name__}, not an object")
    return rec


def set_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.corrupt-<timestamp>`` (never deleted) and return the
    new path; tables and ``fit`` no longer see it."""
    path = Path(path)
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    path.rename(target)
    return target


def load_record(part: str, run: str, profile: str, root: Optional[Path] = None) -> Optional[dict]:
    """The run's record, None when there is none; :class:`CorruptRecordError` (naming the
    file) when it is damaged."""
    path = record_path(part, run, profile, root)
    if not path.exists():
        return None
    return read_record(path)


def is_finished(record: Optional[Mapping]) -> bool:
    return bool(record) and record.get("status") in FINISHED


def load_records(part: str, profile: str, root: Optional[Path] = None) -> list[dict]:
    """All records of one part and profile, sorted by creation time. A damaged record is
    skipped with a warning that names its file."""
    folder = Path(root or results_dir()) / profile / check_name(part, "part")
    out = []
    for p in sorted(folder.glob("*.json")):
        try:
            rec = read_record(p)
        except CorruptRecordError as e:
            warnings.warn(f"skipped: {e}", stacklevel=2)
            continue
        rec.setdefault("run", p.stem)
        out.append(rec)
    return sorted(out, key=lambda r: (str(r.get("created", "")), str(r["run"])))


def get_field(rec: Mapping, key: str):
    """The value at dotted ``key`` (``a.b.c`` looks into nested dicts, e.g. ``params.alpha``
    or ``best.test_top1``); None when any step is missing. ``a|b`` takes the first
    alternative that is present (records of different kinds in one table column)."""
    for alternative in key.split("|"):
        cur: Any = rec
        for k in alternative.split("."):
            if not isinstance(cur, Mapping) or k not in cur:
                cur = None
                break
            cur = cur[k]
        if cur is not None:
            return cur
    return None


def records_table(records: Iterable[Mapping], columns: Mapping[str, str], index: Optional[str] = None):
    """A pandas DataFrame with one row per record.

    ``columns`` maps a column title to a dotted key into the record, e.g.
    ``{"params": "n_params", "best top-1": "best.test_top1"}``.
    """
    import pandas as pd

    rows = [{title: get_field(r, key) for title, key in columns.items()} for r in records]
    df = pd.DataFrame(rows, columns=list(columns))
    if index:
        df = df.set_index(index)
    return df


def table_markdown(df, floatfmt: str = ".2f", **tabulate_options) -> str:
    """A Markdown table (for the README and the notes); ``tabulate_options`` go to tabulate
    (e.g. ``disable_numparse=True`` keeps already formatted text cells as they are)."""
    try:
        return df.to_markdown(floatfmt=floatfmt, **tabulate_options)
    except ImportError:  # tabulate missing
        return df.to_string()
