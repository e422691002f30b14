"""Run every part notebook headlessly with one profile (what ``make figures`` does first).

Each notebook ``notebooks/part[1-5]_*.ipynb`` is executed by papermill in its own process,
with the notebook's folder as working directory and ``KD_HEADLESS=1``, through the same
function the sweep driver uses (:func:`kdutils.tools.processes.run_notebook`). It receives the
``profile`` parameter (and ``data_root`` when given). Outputs go to ``runs/<profile>/``
(git-ignored, under ``KD_OUTPUT_ROOT`` when set)::

    runs/<profile>/<notebook>.ipynb            the executed notebook (also when it failed)
    runs/<profile>/logs/<notebook>.log         papermill's log with the cells' output
    runs/<profile>/failures/<notebook>.json    why it failed (removed when it later succeeds)
    runs/<profile>/summary.json                status of every notebook of the last call

A failing notebook is reported and the next one runs; the exit code is 1 when any failed.
Ctrl-C, SIGTERM or SIGHUP stops the running notebook with its kernel, records it as
``"interrupted"``, marks the rest ``"not run"``, writes the summary and exits with
``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM).
The notebooks' own records (``results/``) and figures (``figures/``) are what the report
step (``python -m kdutils.tools.report``) reads.

Command line::

    python -m kdutils.tools.run_notebooks --profile quick               # all part notebooks
    python -m kdutils.tools.run_notebooks --profile quick --only part1,part3  # or: --only 1,3
    # options: --data-root PATH, --timeout SECONDS (per notebook), --kernel NAME
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from kdutils.core import records as _results
from kdutils.core.profiles import REPO_ROOT, resolve_profile, runs_dir
from kdutils.tools.processes import Interrupted, raise_if_stopped, run_notebook, signal_name, stop_on_signals, stop_requested

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
#: The part notebooks (part1_* ... part5_*); the report notebook is run by ``kdutils.tools.report``.
PART_NOTEBOOKS = "part[1-5]_*.ipynb"


def part_notebooks(only: Optional[Sequence[str]] = None, folder: Optional[Path] = None) -> list[Path]:
    """The part notebooks of ``folder`` (default ``notebooks/``) in name order; ``only`` keeps
    those whose name starts with a prefix (``["part1", "part3"]``). A prefix that matches no
    notebook is an error."""
    folder = Path(folder or NOTEBOOKS_DIR)
    found = sorted(folder.glob(PART_NOTEBOOKS))
    if not only:
        return found
    only = [f"part{p}" if p.isdigit() else p for p in only]
    unknown = [p for p in only if not any(nb.name.startswith(p) for nb in found)]
    if unknown:
        names = ", ".join(nb.name for nb in found) or "none"
        raise ValueError(f"--only {','.join(unknown)} matches no part notebook in {folder} (found: {names})")
    return [nb for nb in found if any(nb.name.startswith(p) for p in only)]


def run_all(
    profile: Optional[str] = None,
    only: Optional[Sequence[str]] = None,
    *,
    data_root: Optional[str] = None,
    timeout: Optional[float] = None,
    kernel: Optional[str] = None,
    folder: Optional[Path] = None,
    log: Optional[Callable[[str], None]] = print,
) -> list[dict]:
    """Execute the part notebooks one after the other; return one outcome dict per notebook
    (``{"run", "status" ("ok" | "failed"), "seconds", "output", "log", ...}``, see
    :func:`kdutils.tools.sweep.run_notebook`) and write ``runs/<profile>/summary.json``."""
    profile = resolve_profile(profile)
    notebooks = part_notebooks(only, folder)
    if not notebooks:
        raise FileNotFoundError(f"no part notebooks ({PART_NOTEBOOKS}) in {folder or NOTEBOOKS_DIR}")
    out = runs_dir() / profile
    params = {"profile": profile, **({"data_root": str(data_root)} if data_root else {})}
    say = log or (lambda msg: None)
    with stop_on_signals():  # SIGTERM / SIGHUP / Ctrl-C: stop the notebook, write the summary, raise Interrupted
        summary = [_run_one(nb, f"[{i}/{len(notebooks)}] {nb.name}", out, params, kernel, timeout, say)
                   for i, nb in enumerate(notebooks, 1)]
        stopped = {"stopped_by": signal_name(stop_requested())} if stop_requested() is not None else {}
        _results.atomic_write_json(out / "summary.json",
                                   {"profile": profile, "params": params, "notebooks": summary, **stopped})
        failed = [e["run"] for e in summary if e["status"] == "failed"]
        ok = sum(e["status"] == "ok" for e in summary)
        say(f"{ok} ok, {len(failed)} failed" + (f": {', '.join(failed)}" if failed else "")
            + (f"; stopped by {stopped['stopped_by']}" if stopped else "") + f" (executed notebooks in {out})")
        raise_if_stopped()
    return summary


def _run_one(nb: Path, tag: str, out: Path, params: dict, kernel, timeout, say) -> dict:
    """Run one notebook (or, after a stop signal, record it as ``"not run"``); its outcome."""
    if stop_requested() is not None:
        return {"run": nb.stem, "status": "not run", "seconds": 0.0, "output": str(out / f"{nb.stem}.ipynb")}
    say(f"{tag}: running (profile {params['profile']})")
    outcome = run_notebook(nb, out, nb.stem, params, kernel=kernel, timeout=timeout,
                           context={"profile": params["profile"]})
    if outcome["status"] == "ok":
        say(f"{tag}: ok ({outcome['seconds']:.1f} s) -> {outcome['output']}")
    else:
        say(f"{tag}: {outcome['status'].upper()} (exit {outcome['returncode']}, {outcome['seconds']:.1f} s): "
            f"{outcome['error']}  -> {outcome['log']}")
    return outcome


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m kdutils.tools.run_notebooks",
        description="Run every part notebook headlessly (papermill) with one profile; outputs in runs/<profile>/.",
    )
    ap.add_argument("--profile", default=None, help="smoke | quick | full (default: KD_PROFILE, else quick)")
    ap.add_argument("--only", default="", help="comma-separated notebook prefixes, e.g. part1,part3 or 1,3 (default: all)")
    ap.add_argument("--data-root", default=None, help="passed to every notebook as data_root")
    ap.add_argument("--timeout", type=float, default=None, help="seconds allowed per notebook")
    ap.add_argument("--kernel", default=None, help="Jupyter kernel name (default: the notebook's)")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    try:
        summary = run_all(args.profile, only, data_root=args.data_root, timeout=args.timeout, kernel=args.kernel)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"run_notebooks {stop}: the running notebook was stopped, the rest not started", file=sys.stderr)
        return stop.exit_code
    return 1 if any(e["status"] == "failed" for e in summary) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
