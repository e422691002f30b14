"""Searches and sweeps as Optuna studies that several workers (processes, GPUs, machines) share.

A study lives in a storage (:func:`kdutils.core.hparam.default_storage`: SQLite under
``results/<profile>/<part>/``, or any SQLAlchemy URL such as ``postgresql://user@host/db``
that several machines reach). A **worker** (:func:`work`) takes the next trial from the
study, turns it into notebook parameters, runs the notebook once through papermill in
its own process (:func:`kdutils.tools.processes.run_notebook`), reads the metric from the
run's record and reports it back; then the next trial, until the study has its trials.

- Start several workers with ``--workers K`` (K processes here; ``--devices 0,1,...``
  gives each its own ``CUDA_VISIBLE_DEVICES``), or start the same command on several
  machines with the same ``--storage`` URL: they share the study and never run the same
  trial.
- A worker that crashes (killed, machine lost) leaves its trial "running"; its heartbeat
  stops, and after the grace period the next worker to ask marks it failed and queues its
  parameters again (once). A notebook that fails marks its trial failed and the worker
  goes on. Rerunning the command continues the study: finished trials stay, and a trial
  whose record is finished is not trained again.
- The random search draws trial ``k``'s parameters from ``(seed, k)``
  (:class:`kdutils.core.hparam.TrialSeededRandomSampler`), so any number of workers
  gives the notebook's own trials.

Two kinds of study (:class:`StudySpec`):

- ``part3-search`` (:func:`part3_search_spec`): part 3's random log-uniform (T, lambda)
  search, ``notebooks/part3_hparam_search.ipynb`` in ``mode="trial"``, each trial ranked
  by its validation top-1 (images held out from training, never the test set); the notebook
  itself then finds the trials finished and goes on with the refined round and the final run;
- a grid over a notebook's parameters (:func:`grid_spec`; ``make sweep``): Optuna's
  ``GridSampler``, one run per grid point, named as before (``T5_lam0.1``). It maps a
  metric over the grid (a heat map); it chooses nothing.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from kdutils.core import hparam
from kdutils.core import records as R
from kdutils.core.profiles import REPO_ROOT, runs_dir
from kdutils.tools.processes import _signal_tree, run_notebook, stop_on_signals, stop_requested, watch

SEARCH_NOTEBOOK = REPO_ROOT / "notebooks" / "part3_hparam_search.ipynb"


class TrialFailed(RuntimeError):
    """A trial's notebook failed or wrote no metric (the study marks the trial failed)."""


@dataclass(frozen=True)
class StudySpec:
    """What a worker needs to run the trials of one study.

    ``space``: ``{name: (low, high)}`` sampled log-uniformly (``sampler`` "random"/"tpe"), or
    ``{name: [values]}`` for ``sampler="grid"``. ``trial_params(number, params) -> (run
    name, notebook parameters)``. ``metric``: the record's dotted key reported to the study.
    """

    name: str
    notebook: Path
    part: str
    profile: str
    space: Mapping[str, Any]
    sampler: str
    metric: str
    n_trials: int
    storage: str
    trial_params: Callable[[int, Mapping[str, Any]], tuple]
    seed: int = 0
    direction: str = "maximize"
    force: bool = False
    timeout: Optional[float] = None
    kernel: Optional[str] = None
    heartbeat_s: int = hparam.HEARTBEAT_S
    grace_s: int = hparam.GRACE_S
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def open(self):
        grid = self.space if self.sampler == "grid" else None
        return hparam.open_study(self.name, self.storage, hparam.make_sampler(self.sampler, self.seed, grid),
                                 direction=self.direction, heartbeat_s=self.heartbeat_s, grace_s=self.grace_s)


def part3_search_spec(profile: str, n_trials: int, *, seed: int = 0, sampler: str = "random",
                      T_range=(1.0, 100.0), lam_range=(0.01, 100.0), storage: Optional[str] = None,
                      fixed: Optional[Mapping[str, Any]] = None, **options) -> StudySpec:
    """Part 3's search: the notebook's own study (``part3_search-<profile>-seed<seed>``), run
    name and metric, so workers and the notebook share their trials. ``sampler="tpe"``
    continues it as the refined round (round 2)."""
    from kdutils.parts import part3 as kd

    round_no = 1 if sampler == "random" else 2
    fixed = dict(fixed or {})

    def trial_params(number: int, params: Mapping[str, Any]) -> tuple:
        name = kd.trial_name(number, params, round_no)
        return name, {**fixed, "mode": "trial", "T": params["T"], "lam": params["lam"], "run_name": name,
                      "trial_round": round_no, "seed": seed, "profile": profile}

    return StudySpec(f"part3_search-{profile}-seed{seed}", SEARCH_NOTEBOOK, kd.SEARCH_PART, profile,
                     {"T": tuple(T_range), "lam": tuple(lam_range)}, sampler, kd.SEARCH_METRIC, n_trials,
                     storage or hparam.default_storage(profile), trial_params, seed=seed, fixed=fixed, **options)


def grid_spec(notebook, part: str, profile: str, axes: Mapping[str, Sequence[Any]], *, metric: str,
              name: Optional[str] = None, storage: Optional[str] = None, fixed: Optional[Mapping[str, Any]] = None,
              **options) -> StudySpec:
    """A grid sweep of ``notebook`` over ``axes`` (every combination once), as a study."""
    keys, fixed = list(axes), dict(fixed or {})
    n = 1
    for values in axes.values():
        n *= len(values)

    def trial_params(number: int, params: Mapping[str, Any]) -> tuple:
        run = R.make_run_name(params, keys)
        return run, {**fixed, **params, "run_name": run, "profile": profile}

    return StudySpec(name or f"{part}-{profile}-grid", Path(notebook), part, profile, dict(axes), "grid", metric, n,
                     storage or hparam.default_storage(profile, part), trial_params, fixed=fixed, **options)


# --------------------------------------------------------------------------- one worker
def _suggest(spec: StudySpec, trial) -> dict:
    if spec.sampler == "grid":
        return {k: trial.suggest_categorical(k, list(v)) for k, v in spec.space.items()}
    if set(spec.space) == {"T", "lam"}:
        return hparam.suggest_pair(trial, spec.space["T"], spec.space["lam"])
    return {k: trial.suggest_float(k, float(lo), float(hi), log=True) for k, (lo, hi) in spec.space.items()}


def _objective(spec: StudySpec, worker: str, say: Callable[[str], None]) -> Callable:
    folder = runs_dir() / spec.name

    def objective(trial) -> float:
        params = _suggest(spec, trial)
        run, nb_params = spec.trial_params(trial.number, params)
        trial.set_user_attr("run_name", run)
        trial.set_user_attr("worker", worker)
        record = R.load_record(spec.part, run, spec.profile)
        if spec.force or not R.is_finished(record):
            say(f"[{worker}] trial {trial.number} {run}: running")
            if spec.force:
                nb_params = {**nb_params, "force": True}
            outcome = run_notebook(spec.notebook, folder, run, nb_params, kernel=spec.kernel, timeout=spec.timeout,
                                   context={"study": spec.name, "part": spec.part, "profile": spec.profile})
            if outcome["status"] != "ok":
                raise TrialFailed(f"{run}: {outcome['status']} ({outcome.get('error')}); see {outcome.get('failure')}")
            record = R.load_record(spec.part, run, spec.profile)
        value = R.get_field(record or {}, spec.metric)
        if value is None:
            raise TrialFailed(f"{run}: its record {spec.part}/{run} ({spec.profile}) has no {spec.metric!r}")
        say(f"[{worker}] trial {trial.number} {run}: {spec.metric} = {float(value):.4g}")
        return float(value)

    return objective


def work(spec: StudySpec, say: Callable[[str], None] = print, max_failures: int = 3) -> dict:
    """Run trials of ``spec``'s study in this process until it has ``n_trials`` finished ones
    (a grid: until every point was tried), a stop signal, or ``max_failures`` failures in a
    row. Returns ``{"worker", "completed", "failed"}`` (trial numbers of this worker)."""
    import optuna

    worker = f"{socket.gethostname()}:{os.getpid()}"
    study = spec.open()
    if _retry_failed_points(spec, study):
        say(f"[{worker}] failed grid points queued again")
    objective = _objective(spec, worker, say)
    mine = {"worker": worker, "completed": [], "failed": []}
    while stop_requested() is None:
        if _study_done(spec, study):
            break
        study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        seen = set(mine["completed"] + mine["failed"])
        for t in study.get_trials(deepcopy=False):  # this worker's newly finished trial
            if t.user_attrs.get("worker") == worker and t.number not in seen and t.state.is_finished():
                mine["completed" if t.state == optuna.trial.TrialState.COMPLETE else "failed"].append(t.number)
        if _failures_in_a_row(mine) >= max_failures:
            say(f"[{worker}] {max_failures} failed trials in a row: stopping (see runs/{spec.name}/failures/)")
            break
    return mine


def _failures_in_a_row(mine: dict) -> int:
    """Failed trials of this worker since its last completed one."""
    numbers = sorted(mine["completed"] + mine["failed"])
    run = 0
    for n in reversed(numbers):
        if n in mine["completed"]:
            break
        run += 1
    return run


def _study_done(spec: StudySpec, study) -> bool:
    """A grid: every point was tried (optuna's ``GridSampler`` gives trial ``k < n`` point
    ``k``; a crashed worker's point is taken up again) and none is queued; a search:
    ``n_trials`` finished (complete or pruned) trials."""
    import optuna

    if spec.sampler == "grid":
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        return study.sampler.is_exhausted(study) and not waiting
    return len(hparam.finished_trials(study)) >= spec.n_trials


def _retry_failed_points(spec: StudySpec, study) -> int:
    """Queue again every grid point whose trials all failed (a rerun retries them); how many."""
    import optuna

    if spec.sampler != "grid":
        return 0
    states: dict = {}
    for t in study.get_trials(deepcopy=False):
        key = tuple(sorted(t.system_attrs.get("fixed_params", t.params).items()))
        states.setdefault(key, set()).add(t.state)
    failed = [dict(k) for k, st in states.items() if st == {optuna.trial.TrialState.FAIL}]
    for params in failed:
        study.enqueue_trial(params)
    return len(failed)


# --------------------------------------------------------------------------- several workers
def spawn_workers(argv: Sequence[str], workers: int, devices: Sequence[str] = ()) -> int:
    """Start ``workers`` processes of ``python -m kdutils.tools.sweep <argv> --workers 1``
    (worker ``i`` sees GPU ``devices[i % len(devices)]`` when devices are given); wait for
    all; the largest exit code. SIGTERM, SIGHUP or Ctrl-C sent to this process reaches every
    worker (:func:`kdutils.tools.processes.watch`), which stops its notebook and kernel; the
    exit code is then ``128 + signal``. A second signal kills the workers and theirs at once."""
    procs: list = []
    with stop_on_signals(), ExitStack() as watched:
        try:
            for i in range(workers):
                if stop_requested() is not None:
                    break
                env = dict(os.environ)
                if devices:
                    env["CUDA_VISIBLE_DEVICES"] = str(devices[i % len(devices)])
                procs.append(watched.enter_context(watch(subprocess.Popen(
                    [sys.executable, "-m", "kdutils.tools.sweep", *argv, "--workers", "1"], env=env))))
                time.sleep(0.5)  # the first worker creates the study; the others open it
            rc = max([p.wait() for p in procs] or [0])
        except KeyboardInterrupt:  # a second stop signal (or Ctrl-C without handlers)
            for p in procs:
                _signal_tree(p, signal.SIGKILL)
            for p in procs:
                p.wait()
            rc = 130
    return 128 + stop_requested() if stop_requested() is not None else rc


def summary_lines(spec: StudySpec) -> list:
    """How the study stands: trials per state and per worker, and the best trial."""
    import optuna

    study = spec.open()
    trials = study.get_trials(deepcopy=False)
    states: dict = {}
    workers: dict = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
        if t.state == optuna.trial.TrialState.COMPLETE:
            w = t.user_attrs.get("worker", "?")
            workers[w] = workers.get(w, 0) + 1
    lines = [f"study {spec.name} ({spec.storage}): " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())),
             "completed per worker: " + ", ".join(f"{w}: {n}" for w, n in sorted(workers.items()))]
    if spec.sampler != "grid" and any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        best = study.best_trial
        lines.append(f"best trial {best.number} ({best.user_attrs.get('run_name')}): {spec.metric} = {best.value:.4g}")
    return lines


__all__ = ["StudySpec", "TrialFailed", "part3_search_spec", "grid_spec", "work", "spawn_workers", "summary_lines"]
