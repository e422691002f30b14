"""Searches and sweeps on the command line: Optuna studies whose workers run a notebook once per trial.

One engine for both (:mod:`kdutils.tools.study`): a grid sweep is a study with Optuna's
``GridSampler``, part 3's random log-uniform search a study with a random sampler (TPE for
the refined round). Each trial is executed by papermill **in its own process**
(:mod:`kdutils.tools.processes`; papermill and the Jupyter machinery are not thread-safe,
and a crashed or leaking run cannot take the others down), with the notebook's folder as
working directory. Outputs go to ``runs/<study>/`` (git-ignored, under ``KD_OUTPUT_ROOT``)::

    runs/<study>/<run>.ipynb            the executed notebook (also when it failed)
    runs/<study>/logs/<run>.log         papermill's log with the cells' output
    runs/<study>/params/<run>.yaml      the parameters the run got
    runs/<study>/failures/<run>.json    why a run failed (removed when it later succeeds)

and the study itself to its storage (SQLite under ``results/<profile>/<part>/`` unless
``--storage`` names another SQLAlchemy URL). Contract with a grid notebook: it has a
``parameters`` cell with (at least) ``run_name`` and ``profile`` and writes its
``kdutils.core.records`` record under that run name, for ``--part``; the trial's value is the
record's ``--metric``. A trial whose record is finished is not run again unless ``--force``
(the notebook then also receives ``force=True``). Parameters reach papermill as a YAML file
(``-f``), so ints, floats, bools, ``None`` and strings arrive with their types.

A failing notebook marks its trial failed and the worker goes on; rerunning the command
continues the study (a grid's failed points are tried again). Ctrl-C, SIGTERM or SIGHUP
stops the running notebook and its kernel and exits with ``128 + signal``; with
``--workers K`` it reaches every worker, which stops its own notebook and kernel.

Command line::

    python -m kdutils.tools.sweep notebooks/part3_cifar10_resnet18_kd.ipynb --part part3 --profile quick \\
        --grid T=5,10,20 lam=0.1,0.5                     # 6 runs: T5_lam0.1 ... T20_lam0.5
    python -m kdutils.tools.sweep --study part3-search --profile quick --trials 6 --workers 2
    # options: --set epochs=3 (fixed for every run), --name, --storage URL, --workers K, --devices 0,1,
    #          --sampler tpe, --force, --timeout SECONDS, --kernel NAME, --dry-run

Heat maps are built from the records with :func:`aggregate`.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from kdutils.core import records as _results
from kdutils.core.records import make_run_name
from kdutils.core.profiles import resolve_profile
# The child-process layer lives in kdutils.tools.processes; these names stay importable from here.
from kdutils.tools.processes import (  # noqa: F401 (re-exported)
    TAIL_LINES, Interrupted, _child_env, _error_line, _plain, _stop_group, _tail, execute, run_notebook,
    raise_if_stopped, signal_name, stop_on_signals, stop_requested,
)


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
        description="Searches and sweeps as Optuna studies: workers run a notebook once per trial with papermill.",
    )
    ap.add_argument("notebook", nargs="?", help="the notebook of a --grid sweep (it runs in its own folder)")
    ap.add_argument("--part", help="the part whose records a --grid notebook writes, e.g. part3")
    ap.add_argument("--profile", default=None, help="smoke | quick | full (default: KD_PROFILE, else quick)")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--grid", nargs="+", metavar="NAME=V1,V2", help="axes of a grid (GridSampler study)")
    mode.add_argument("--study", choices=("part3-search",), help="a predefined study: part 3's (T, lambda) search")
    ap.add_argument("--trials", type=int, default=None, help="finished trials the search study needs "
                    "(default: the notebook's first round for the profile)")
    ap.add_argument("--sampler", choices=("random", "tpe"), default="random",
                    help="random (round 1) or tpe (the refined round 2) for --study")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sampled pairs (default 0; the notebook's seed)")
    ap.add_argument("--T-range", dest="T_range", nargs=2, type=float, default=(1.0, 100.0), metavar=("LOW", "HIGH"))
    ap.add_argument("--lam-range", dest="lam_range", nargs=2, type=float, default=(0.01, 100.0), metavar=("LOW", "HIGH"))
    ap.add_argument("--metric", default="last.test_top1", help="record key a --grid sweep maps (default last.test_top1)")
    ap.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE", help="notebook parameters fixed for every trial")
    ap.add_argument("--name", default=None, help="study name of a --grid sweep, also the folder under runs/")
    ap.add_argument("--storage", default=None, help="SQLAlchemy URL of the study (default: SQLite under "
                    "results/<profile>/<part>/; postgresql://... to share one study between machines)")
    ap.add_argument("--workers", "--jobs", dest="workers", type=int, default=1,
                    help="worker processes started here (default 1)")
    ap.add_argument("--devices", default="", help="comma list of GPUs; worker i gets CUDA_VISIBLE_DEVICES=devices[i]")
    ap.add_argument("--force", action="store_true", help="re-run trials whose record is finished (and pass force=True)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds allowed per trial")
    ap.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    ap.add_argument("--heartbeat", type=int, default=None, help="seconds between a running trial's heartbeats")
    ap.add_argument("--grace", type=int, default=None, help="seconds of silence after which a trial counts as crashed")
    ap.add_argument("--dry-run", action="store_true", help="describe the study and stop")
    return ap


def study_spec(args):
    """The :class:`kdutils.tools.study.StudySpec` the command line asks for."""
    from kdutils.tools import study as S

    profile = resolve_profile(args.profile)
    options = dict(force=args.force, timeout=args.timeout, kernel=args.kernel,
                   fixed=parse_assignments(args.set, multi=False))
    options.update({k: v for k, v in (("heartbeat_s", args.heartbeat), ("grace_s", args.grace)) if v})
    if args.study:
        n = args.trials or _search_trials(profile)
        if n < 1:
            raise ValueError(f"--trials must be >= 1, got {n}")
        return S.part3_search_spec(profile, n, seed=args.seed, sampler=args.sampler, T_range=tuple(args.T_range),
                                   lam_range=tuple(args.lam_range), storage=args.storage, **options)
    if not args.notebook or not args.part:
        raise ValueError("a --grid sweep needs the notebook and --part (e.g. notebooks/part3_cifar10_resnet18_kd.ipynb "
                         "--part part3)")
    if not Path(args.notebook).is_file():
        raise FileNotFoundError(f"notebook {args.notebook!r} does not exist")
    _results.check_name(args.part, "part")
    name = _results.check_name(args.name or f"{args.part}-{profile}-grid", "study name")
    return S.grid_spec(args.notebook, args.part, profile, parse_assignments(args.grid), metric=args.metric,
                       name=name, storage=args.storage, **options)


def _search_trials(profile: str) -> int:
    """The search notebook's first-round trials for ``profile`` (its SETTINGS cell)."""
    return {"full": 20, "quick": 6}.get(profile, 3)


def _worker_argv(argv: Sequence[str]) -> list:
    """``argv`` without ``--workers/--jobs K`` and ``--devices D`` (each worker runs alone)."""
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in ("--workers", "--jobs", "--devices"):
            skip = True
            continue
        if a.split("=", 1)[0] in ("--workers", "--jobs", "--devices"):
            continue
        out.append(a)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        spec = study_spec(args)
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from kdutils.tools import study as S

    if args.dry_run:
        print(f"study {spec.name}: {spec.n_trials} trials of {spec.notebook.name}, sampler {spec.sampler}, "
              f"space {dict(spec.space)}, metric {spec.metric}, storage {spec.storage}, part {spec.part}, "
              f"profile {spec.profile}")
        if args.grid:
            for p in grid(spec.space, spec.fixed):
                print(json.dumps(p))
        return 0
    if args.workers > 1:
        devices = [d for d in args.devices.split(",") if d.strip()]
        rc = S.spawn_workers(_worker_argv(argv), args.workers, devices)
    else:
        with stop_on_signals():
            mine = S.work(spec)
        rc = 1 if mine["failed"] else 0
        if stop_requested() is not None:
            rc = 128 + stop_requested()
    print("\n".join(S.summary_lines(spec)))
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
