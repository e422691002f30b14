"""Run one notebook many times, once per parameter set (grid or random search).

Each run is executed by papermill **in its own process** (``python -m papermill``;
papermill and the Jupyter machinery are not thread-safe, and a crashed or leaking
run cannot take the others down), with the notebook's folder as working directory.
Outputs go to ``runs/<sweep>/`` (git-ignored, under ``KD_OUTPUT_ROOT`` when set)::

    runs/<sweep>/<run>.ipynb            the executed notebook (also when it failed)
    runs/<sweep>/logs/<run>.log         papermill's log with the cells' output
    runs/<sweep>/params/<run>.yaml      the parameters the run got
    runs/<sweep>/failures/<run>.json    why a run failed (removed when it later succeeds)
    runs/<sweep>/summary.json           status of every run of the last batch

Contract with the notebook: every parameter set holds a ``run_name``; the notebook has
a ``parameters`` cell with (at least) ``run_name`` and ``profile`` and writes its
``kdutils.core.records`` record under that run name, for the sweep's ``part``. A parameter
set whose record is finished (``kdutils.core.records.is_finished``) is skipped unless
``force``; with ``force`` the notebook also receives ``force=True``.

Parameters are written to a YAML file and given to papermill with ``-f`` rather than
``-p name value``: ``-p`` guesses types from text (a run name ``"10"`` would arrive as
an int), while ``yaml.safe_dump`` round-trips ints, floats (1e-05 included), bools,
``None`` and strings exactly. The notebook sees the same injected-parameters cell.

A failing run is recorded and the batch goes on; the summary says, per run,
``"skipped"``, ``"ok"`` or ``"failed"``. The child gets ``KD_HEADLESS=1`` (one log
line per epoch instead of progress bars) and the repository on ``PYTHONPATH``.

Command line::

    python -m kdutils.tools.sweep notebooks/part3_cifar10_resnet18_kd.ipynb --part part3 --profile quick \\
        --grid T=5,10,20 lam=0.1,0.5                     # 6 runs: T5_lam0.1 ... T20_lam0.5
    python -m kdutils.tools.sweep notebooks/part3_cifar10_resnet18_kd.ipynb --part part3 --profile quick \\
        --random 12 --seed 0 --T-range 1 100 --lam-range 0.01 100
    # options: --set epochs=3 (fixed for every run), --name, --force, --jobs 2,
    #          --timeout SECONDS, --kernel NAME, --dry-run

Heat maps are built from the records with :func:`aggregate`.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from kdutils.core import records as _results
from kdutils.core.records import make_run_name
from kdutils.core.profiles import REPO_ROOT, resolve_profile, runs_dir

#: Lines of the child's log kept in a failure record.
TAIL_LINES = 60


# --------------------------------------------------------------------------- parameter sets
def parse_value(text: str) -> Any:
    """Command-line text to a Python value: int, float, bool, None, else the string."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t


def parse_assignments(items: Iterable[str], multi: bool = True) -> dict[str, Any]:
    """``["T=5,10", "lam=0.1"]`` -> ``{"T": [5, 10], "lam": [0.1]}`` (``multi=False``: no lists)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"expected NAME=VALUE[,VALUE...], got {item!r}")
        key, _, values = item.partition("=")
        key = key.strip()
        if not key.isidentifier():
            raise ValueError(f"{key!r} is not a valid parameter name (a Python identifier)")
        if multi:
            vals = [parse_value(v) for v in values.split(",") if v.strip() != ""]
            if not vals:
                raise ValueError(f"no values given for {key!r} in {item!r}")
            out[key] = vals
        else:
            out[key] = parse_value(values)
    return out


def grid(axes: Mapping[str, Sequence[Any]], fixed: Optional[Mapping[str, Any]] = None) -> list[dict]:
    """The cartesian product of ``axes`` as parameter sets, each with a ``run_name``.

    The run name is built from the axes only (``T5_lam0.1``); ``fixed`` values are
    added to every set but not to the name.
    """
    keys = list(axes)
    sets = []
    for combo in itertools.product(*(axes[k] for k in keys)):
        p = dict(zip(keys, combo))
        sets.append({**(fixed or {}), **p, "run_name": make_run_name(p, keys)})
    return sets


def random_sets(
    n: int,
    seed: int = 0,
    T_range=(1, 100),
    lam_range=(0.01, 100),
    fixed: Optional[Mapping[str, Any]] = None,
) -> list[dict]:
    """``n`` log-uniform ``(T, lam)`` sets from :func:`kdutils.core.hparam.sample_pairs`, named ``T.._lam..``."""
    from kdutils.core.hparam import sample_pairs

    sets = []
    for p in sample_pairs(n, T_range=T_range, lam_range=lam_range, seed=seed):
        sets.append({**(fixed or {}), **p, "run_name": make_run_name(p, ("T", "lam"))})
    return _dedupe_names(sets)


def _dedupe_names(sets: list[dict]) -> list[dict]:
    seen: dict[str, int] = {}
    for p in sets:
        name = p["run_name"]
        if name in seen:
            seen[name] += 1
            p["run_name"] = f"{name}_{seen[name]}"
        else:
            seen[name] = 1
    return sets


def _plain(v: Any) -> Any:
    """numpy scalars / paths / tuples to plain YAML-safe values."""
    if hasattr(v, "item") and callable(v.item) and not isinstance(v, (str, bytes)):
        try:
            return v.item()
        except (TypeError, ValueError):
            pass
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


# --------------------------------------------------------------------------- running
def _child_env() -> dict:
    env = dict(os.environ)
    env["KD_HEADLESS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    # The "python3" kernel spec says "python": make it this interpreter's.
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH", "")) if p)
    return env


def _tail(path: Path, n: int = TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _error_line(tail: str) -> str:
    """The most telling line of a log tail (the last ``SomethingError: ...``)."""
    for line in reversed(tail.splitlines()):
        s = line.strip()
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt|Exit)\b.*", s):
            return s
    lines = [s for s in tail.splitlines() if s.strip()]
    return lines[-1].strip() if lines else ""


def execute(
    notebook: Path,
    output: Path,
    params: Mapping[str, Any],
    *,
    params_file: Path,
    log_file: Path,
    kernel: Optional[str] = None,
    timeout: Optional[float] = None,
) -> tuple[int, float]:
    """Run ``python -m papermill`` once in a child process; return (exit code, seconds).

    The child runs in its own process group, so that on ``timeout`` the papermill
    process and its kernel are stopped together (exit code 124, as ``timeout(1)``).
    """
    import yaml

    notebook = Path(notebook).resolve()
    for p in (output, params_file, log_file):
        Path(p).parent.mkdir(parents=True, exist_ok=True)
    params_file.write_text(yaml.safe_dump(_plain(dict(params)), sort_keys=False))
    cmd = [
        sys.executable, "-m", "papermill", str(notebook), str(output),
        "-f", str(params_file),
        "--cwd", str(notebook.parent),
        "--log-output", "--no-progress-bar",
    ]
    if kernel:
        cmd += ["-k", kernel]
    t0 = time.perf_counter()
    with open(log_file, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=_child_env(),
            cwd=str(notebook.parent), start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            log.write(f"\nkdutils.tools.sweep: TimeoutError: stopped after {timeout} s\n")
            rc = 124
        except BaseException:  # Ctrl-C: the child is in its own session and did not get it
            _stop_group(proc)
            raise
    return rc, time.perf_counter() - t0


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the process group started for ``proc`` (papermill and its kernel)."""
    if os.name != "posix":  # no process groups: stop papermill, its kernel notices
        proc.kill()
        proc.wait()
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_notebook(
    notebook,
    folder: Path,
    name: str,
    params: Mapping[str, Any],
    *,
    kernel: Optional[str] = None,
    timeout: Optional[float] = None,
    context: Optional[Mapping[str, Any]] = None,
) -> dict:
    """Execute ``notebook`` once (:func:`execute`) into ``folder`` and record the outcome.

    Writes ``folder/<name>.ipynb``, ``folder/logs/<name>.log`` and
    ``folder/params/<name>.yaml``; a failure also writes ``folder/failures/<name>.json``
    (``context``, e.g. the sweep and part, comes first in it), removed again when the
    run later succeeds. Returns ``{"run", "status" ("ok" | "failed"), "seconds",
    "output", "log"}``, plus ``"returncode"``, ``"error"`` (the telling line of the log)
    and ``"failure"`` (the failure file) when it failed. Used by :func:`run_sweep` and by
    ``kdutils.tools.run_notebooks``.
    """
    notebook = Path(notebook)
    folder = Path(folder)
    output = folder / f"{name}.ipynb"
    log_file = folder / "logs" / f"{name}.log"
    failure_file = folder / "failures" / f"{name}.json"
    rc, secs = execute(notebook, output, params, params_file=folder / "params" / f"{name}.yaml",
                       log_file=log_file, kernel=kernel, timeout=timeout)
    outcome = {"run": name, "status": "ok", "seconds": round(secs, 2), "output": str(output),
               "log": str(log_file)}
    if rc == 0:
        if failure_file.exists():
            failure_file.unlink()
        return outcome
    tail = _tail(log_file)
    failure = {
        **(context or {}),
        "run": name,
        "notebook": str(notebook.resolve()),
        "output": str(output),
        "log": str(log_file),
        "params": dict(params),
        "returncode": rc,
        "error": _error_line(tail),
        "error_tail": tail,
        "seconds": round(secs, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _results.atomic_write_json(failure_file, failure)
    return {**outcome, "status": "failed", "returncode": rc, "error": failure["error"],
            "failure": str(failure_file)}


def run_sweep(
    notebook,
    param_sets: Sequence[Mapping[str, Any]],
    *,
    part: str,
    profile: str,
    name: Optional[str] = None,
    force: bool = False,
    jobs: int = 1,
    timeout: Optional[float] = None,
    kernel: Optional[str] = None,
    log: Optional[Callable[[str], None]] = print,
) -> list[dict]:
    """Execute ``notebook`` once per parameter set; return one summary dict per set.

    Each summary: ``{"run", "status" ("skipped" | "ok" | "failed"), "params", "seconds",
    "output", ...}``; a failed run adds ``"error"`` (its telling line) and the failure
    file's path, an ``ok`` run whose record is still not finished adds a ``"note"``.
    Runs go one after the other unless ``jobs > 1`` (each run is still its own process;
    the threads only wait on them). ``profile`` is passed to the notebook as the
    ``profile`` parameter and, with ``part``, says where the run's record is looked up.
    """
    notebook, profile, name = _check_sweep(notebook, part, profile, name, jobs)
    sets = _prepare_sets(param_sets, profile, force)
    sweep = _Sweep(notebook=notebook, part=part, profile=profile, name=name, folder=runs_dir() / name,
                   force=force, total=len(sets), kernel=kernel, timeout=timeout, say=_line_printer(log))
    if int(jobs) == 1:
        summary = [_run_one(sweep, i, p) for i, p in enumerate(sets)]
    else:
        with ThreadPoolExecutor(max_workers=int(jobs)) as pool:
            summary = list(pool.map(lambda ip: _run_one(sweep, *ip), enumerate(sets)))
    _finish(sweep, summary)
    return summary


@dataclass(frozen=True)
class _Sweep:
    """What every run of one sweep shares."""

    notebook: Path
    part: str
    profile: str
    name: str
    folder: Path
    force: bool
    total: int
    kernel: Optional[str]
    timeout: Optional[float]
    say: Callable[[str], None]


def _check_sweep(notebook, part: str, profile: str, name: Optional[str], jobs: int) -> tuple[Path, str, str]:
    """The notebook's path, the resolved profile and the sweep's name; a clear error when one is wrong."""
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook {str(notebook)!r} does not exist")
    profile = resolve_profile(profile)
    _results.check_name(part, "part")
    name = _results.check_name(name or f"{part}-{profile}", "sweep name")
    if int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs!r}")
    return notebook, profile, name


def _prepare_sets(param_sets: Sequence[Mapping[str, Any]], profile: str, force: bool) -> list[dict]:
    """Checked copies of the parameter sets, with ``profile`` (and ``force``) added; names unique."""
    sets = []
    for i, ps in enumerate(param_sets):
        if "run_name" not in ps:
            raise ValueError(f"parameter set #{i} {dict(ps)!r} has no 'run_name'")
        _results.check_name(ps["run_name"])
        if ps.get("profile", profile) != profile:
            raise ValueError(
                f"parameter set {ps['run_name']!r} asks for profile {ps['profile']!r} "
                f"but the sweep runs profile {profile!r}"
            )
        p = {**ps, "profile": profile}
        if force:
            p["force"] = True
        sets.append(p)
    names = [p["run_name"] for p in sets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"run names must be unique within a sweep; repeated: {dupes}")
    return sets


def _line_printer(log: Optional[Callable[[str], None]]) -> Callable[[str], None]:
    """``log`` made to print whole lines also when runs finish in several threads (None: silent)."""
    lock = threading.Lock()

    def say(msg: str) -> None:
        if log is not None:
            with lock:
                log(msg)

    return say


def _run_one(sweep: _Sweep, index: int, p: dict) -> dict:
    """Run one parameter set (or skip it when its record is finished); its summary entry."""
    run = p["run_name"]
    tag = f"[{index + 1}/{sweep.total}] {run}"
    entry: dict = {"run": run, "params": p, "output": str(sweep.folder / f"{run}.ipynb")}
    if not sweep.force and _results.is_finished(_results.load_record(sweep.part, run, sweep.profile)):
        sweep.say(f"{tag}: skipped (record finished)")
        return {**entry, "status": "skipped", "seconds": 0.0}
    sweep.say(f"{tag}: running")
    outcome = run_notebook(sweep.notebook, sweep.folder, run, p, kernel=sweep.kernel, timeout=sweep.timeout,
                           context={"sweep": sweep.name, "part": sweep.part, "profile": sweep.profile})
    entry = {**entry, **outcome}
    secs = outcome["seconds"]
    if outcome["status"] == "ok":
        if not _results.is_finished(_results.load_record(sweep.part, run, sweep.profile)):
            entry["note"] = (
                f"the notebook ran but no finished record {sweep.part}/{run} ({sweep.profile}) "
                "exists: check that it saves its record under run_name"
            )
        sweep.say(f"{tag}: ok ({secs:.1f} s)" + (f"; note: {entry['note']}" if "note" in entry else ""))
    else:
        sweep.say(f"{tag}: FAILED (exit {outcome['returncode']}, {secs:.1f} s): {outcome['error']}"
                  f"  -> {outcome['failure']}")
    return entry


def _finish(sweep: _Sweep, summary: list[dict]) -> None:
    """Write ``summary.json`` (when anything ran) and say how many runs ended how."""
    if summary:
        _results.atomic_write_json(
            sweep.folder / "summary.json",
            {"sweep": sweep.name, "notebook": str(sweep.notebook.resolve()), "part": sweep.part,
             "profile": sweep.profile, "runs": summary},
        )
    counts = {s: sum(e["status"] == s for e in summary) for s in ("ok", "skipped", "failed")}
    sweep.say(f"sweep {sweep.name}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
              + f" (outputs in {sweep.folder})")


# --------------------------------------------------------------------------- results
def aggregate(
    part: str,
    profile: str,
    x: str = "params.T",
    y: str = "params.lam",
    value: str = "best.test_top1",
    root=None,
    aggfunc: str = "max",
    finished_only: bool = True,
):
    """A pandas pivot table (rows ``y``, columns ``x``, cells ``value``) for a heat map.

    Built from the part's records (``kdutils.core.records.load_records``), finished ones only
    by default; records lacking ``x``, ``y`` or ``value`` are left out, and repeated
    ``(x, y)`` cells are combined with ``aggfunc`` (``"max"``, ``"mean"``, ...). Axis
    titles are the last part of the dotted keys (``T``, ``lam``).
    """
    import pandas as pd

    records = _results.load_records(part, profile, root)
    if finished_only:
        records = [r for r in records if _results.is_finished(r)]
    xn, yn, vn = (k.rsplit(".", 1)[-1] for k in (x, y, value))
    if len({xn, yn, vn}) < 3:
        xn, yn, vn = x, y, value
    df = _results.records_table(records, {xn: x, yn: y, vn: value})
    df = df.dropna(subset=[xn, yn, vn])
    if df.empty:
        return pd.DataFrame(index=pd.Index([], name=yn), columns=pd.Index([], name=xn), dtype=float)
    df[vn] = df[vn].astype(float)
    table = df.pivot_table(index=yn, columns=xn, values=vn, aggfunc=aggfunc)
    return table.sort_index().sort_index(axis=1)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m kdutils.tools.sweep",
        description="Run a notebook once per parameter set (grid or log-uniform random search) with papermill.",
    )
    ap.add_argument("notebook", help="the notebook to execute (it runs in its own folder)")
    ap.add_argument("--part", required=True, help="the part whose records the notebook writes, e.g. part3")
    ap.add_argument("--profile", default=None, help="smoke | quick | full (default: KD_PROFILE, else quick)")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--grid", nargs="+", metavar="NAME=V1,V2", help="axes of a cartesian grid")
    mode.add_argument("--random", type=int, metavar="N", help="N log-uniform (T, lam) pairs")
    ap.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    ap.add_argument("--T-range", dest="T_range", nargs=2, type=float, default=(1.0, 100.0), metavar=("LOW", "HIGH"))
    ap.add_argument("--lam-range", dest="lam_range", nargs=2, type=float, default=(0.01, 100.0), metavar=("LOW", "HIGH"))
    ap.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="parameters fixed for every run")
    ap.add_argument("--name", default=None, help="sweep name, the folder under runs/ (default PART-PROFILE)")
    ap.add_argument("--force", action="store_true", help="re-run finished runs (and pass force=True)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at the same time (default 1, sequential)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds allowed per run")
    ap.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    ap.add_argument("--dry-run", action="store_true", help="list the parameter sets and stop")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fixed = parse_assignments(args.set, multi=False)
        if args.grid:
            sets = grid(parse_assignments(args.grid), fixed)
        else:
            if args.random < 1:
                raise ValueError(f"--random needs N >= 1, got {args.random}")
            sets = random_sets(args.random, args.seed, tuple(args.T_range), tuple(args.lam_range), fixed)
        profile = resolve_profile(args.profile)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        for p in sets:
            print(json.dumps(p))
        print(f"{len(sets)} runs, part={args.part}, profile={profile}")
        return 0
    summary = run_sweep(
        args.notebook, sets, part=args.part, profile=profile, name=args.name,
        force=args.force, jobs=args.jobs, timeout=args.timeout, kernel=args.kernel,
    )
    return 1 if any(e["status"] == "failed" for e in summary) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
