"""Hyper-parameter searches and sweeps as Optuna studies (part 3's temperature / lambda search).

Hinton's loss in the search is ``CE(y, student) + lam * T**2 * KL(teacher_T || student_T)``:
``T`` (temperature) and ``lam`` (weight of the soft term) span orders of magnitude
(T in [1, 100], lam in [0.01, 100]), so they are sampled **log-uniformly**
(``trial.suggest_float(name, low, high, log=True)``): every decade gets the same number of
trials, whereas a uniform draw on [0.01, 100] would put 90% of the trials above 10.

Optuna (Akiba et al., "Optuna: A Next-generation Hyperparameter Optimization Framework",
KDD 2019, https://optuna.org) keeps every trial of a study in a storage: SQLite by default
(:func:`default_storage`, a file under ``results/<profile>/<part>/``; nothing to start), or
any SQLAlchemy URL (``postgresql://...``) that several machines share. Samplers
(:func:`make_sampler`):

- ``"random"``: :class:`TrialSeededRandomSampler`, Optuna's ``RandomSampler`` whose draws for
  trial ``k`` depend only on ``(seed, k)``: the same study gives the same pairs whether one
  worker or ten run it (the assignment's random log-uniform search);
- ``"tpe"``: Optuna's TPE sampler (Bergstra et al., NeurIPS 2011) for a refined round: it
  models where the good trials of the study lie and samples there (it replaces the
  hand-made "narrow the box around the best trials" step);
- ``"grid"``: ``GridSampler`` over fixed values (the sweep of ``make sweep``).

An optional ``"median"`` pruner (:func:`make_pruner`) stops a trial whose validation
accuracy after an epoch is below the median of earlier trials at that epoch;
:func:`pruning_savings` says how many epochs it saved.

Trials are ranked by a **validation** metric (images held out from the training set);
nothing is chosen on the test set.
"""
from __future__ import annotations

import inspect
import math
import time
import warnings
import zlib
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import optuna

from kdutils.core.records import get_field

#: Seconds between a running trial's heartbeats, and after which a silent trial counts as
#: crashed (its worker was killed): it is then marked failed and retried once.
HEARTBEAT_S = 30
GRACE_S = 120


def round_sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (37.2918 -> 37.3, 0.021437 -> 0.0214)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def _check_range(low: float, high: float, what: str) -> None:
    if not low > 0:
        raise ValueError(f"{what}: low must be > 0 for a log scale, got low={low!r}")
    if not high >= low:
        raise ValueError(f"{what}: high must be >= low, got low={low!r}, high={high!r}")


# --------------------------------------------------------------------------- samplers, pruners
class TrialSeededRandomSampler(optuna.samplers.RandomSampler):
    """``RandomSampler`` whose value of parameter ``name`` in trial ``k`` is drawn from a
    generator seeded by ``(seed, k, name)``: reproducible however many workers share the study."""

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.seed = int(seed)

    def sample_independent(self, study, trial, param_name, param_distribution):
        self._rng.rng.seed(zlib.crc32(f"{self.seed}/{trial.number}/{param_name}".encode()))
        return super().sample_independent(study, trial, param_name, param_distribution)


def make_sampler(kind: str = "random", seed: int = 0, grid: Optional[Mapping[str, Sequence]] = None):
    """``"random"`` (:class:`TrialSeededRandomSampler`), ``"tpe"`` or ``"grid"`` (``grid``:
    ``{name: values}``)."""
    if kind == "random":
        return TrialSeededRandomSampler(seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    if kind == "grid":
        if not grid:
            raise ValueError("a grid sampler needs the grid: {name: [values, ...]}")
        return optuna.samplers.GridSampler({k: list(v) for k, v in grid.items()}, seed=seed)
    raise ValueError(f"sampler must be 'random', 'tpe' or 'grid', got {kind!r}")


def make_pruner(kind: Optional[str] = None):
    """``None``/``"none"``: every trial runs all its epochs; ``"median"``: Optuna's
    ``MedianPruner`` (after 3 trials, from the first epoch on)."""
    if kind in (None, "", "none"):
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    raise ValueError(f"pruner must be 'none' or 'median', got {kind!r}")


# --------------------------------------------------------------------------- storage, studies
def default_storage(profile: str, part: str = "part3") -> str:
    """``sqlite:///<results>/<profile>/<part>/studies.sqlite`` (made by :func:`open_study`)."""
    from kdutils.core.profiles import results_dir

    return f"sqlite:///{Path(results_dir()) / profile / part / 'studies.sqlite'}"


def open_study(name: str, storage: str, sampler=None, pruner=None, direction: str = "maximize",
               heartbeat_s: Optional[int] = HEARTBEAT_S, grace_s: Optional[int] = GRACE_S) -> optuna.Study:
    """Create the study ``name`` in ``storage`` (an SQLAlchemy URL) or open it to continue.

    With ``heartbeat_s``, a running trial writes a heartbeat; one silent for ``grace_s``
    seconds (its worker crashed) is marked failed by the next worker and run again once.
    """
    if "://" not in str(storage):
        raise ValueError(f"storage must be an SQLAlchemy URL (sqlite:///path.sqlite, postgresql://...), "
                         f"got {storage!r}")
    if str(storage).startswith("sqlite:///"):
        Path(str(storage)[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
        warnings.simplefilter("ignore")
        kw = dict(heartbeat_interval=heartbeat_s, grace_period=grace_s, **_retry_once()) if heartbeat_s else {}
    engine = {"connect_args": {"timeout": 60}} if str(storage).startswith("sqlite") else {}
    for attempt in range(5):  # workers that start together race to create the tables and the study
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
                warnings.simplefilter("ignore")
                rdb = optuna.storages.RDBStorage(storage, engine_kwargs=engine, **kw)
            return optuna.create_study(study_name=name, storage=rdb, sampler=sampler, pruner=pruner,
                                       direction=direction, load_if_exists=True)
        except Exception as race:  # sqlalchemy's IntegrityError / OperationalError, optuna's DuplicatedStudyError
            if attempt == 4 or type(race).__name__ not in ("IntegrityError", "OperationalError", "DuplicatedStudyError"):
                raise
            time.sleep(0.5 * (attempt + 1))


def _retry_once() -> dict:
    """The storage option that queues a crashed trial's parameters again, once (its name
    changed in Optuna 4.9)."""
    if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters:
        return {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)}


def suggest_pair(trial, T_range: Sequence[float] = (1, 100), lam_range: Sequence[float] = (0.01, 100),
                 digits: Optional[int] = 3) -> dict:
    """``{"T", "lam"}`` for ``trial``, both log-uniform (``suggest_float(..., log=True)``), rounded
    to ``digits`` significant digits for readable run names (never leaving the ranges)."""
    _check_range(*T_range, "T_range")
    _check_range(*lam_range, "lam_range")
    out = {}
    for key, (low, high) in (("T", T_range), ("lam", lam_range)):
        v = trial.suggest_float(key, float(low), float(high), log=True)
        out[key] = v if digits is None else min(max(round_sig(v, digits), low), high)
    return out


def finished_trials(study: optuna.Study) -> list:
    """The study's complete and pruned trials."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return study.get_trials(deepcopy=False, states=states)


def trials_table(study: optuna.Study):
    """One row per trial: number, state, the parameters, the value and the user attributes
    (run name, round, worker)."""
    import pandas as pd

    rows = [{"trial": t.number, "state": t.state.name, **t.params, "value": t.value, **t.user_attrs}
            for t in study.get_trials(deepcopy=False)]
    return pd.DataFrame(rows).set_index("trial") if rows else pd.DataFrame()


def pruning_savings(study: optuna.Study, epochs: int) -> dict:
    """Epochs that pruned trials did not train: ``{"pruned", "epochs_run", "epochs_saved", "saved_share"}``
    (``saved_share``: of all the epochs the finished trials would have trained)."""
    done = finished_trials(study)
    pruned = [t for t in done if t.state == optuna.trial.TrialState.PRUNED]
    saved = sum(epochs - len(t.intermediate_values) for t in pruned)
    planned = epochs * len(done)
    return {"pruned": len(pruned), "epochs_run": planned - saved, "epochs_saved": saved,
            "saved_share": saved / planned if planned else 0.0}


# --------------------------------------------------------------------------- ranking records
def _score(rec: Mapping, metric: str) -> Optional[float]:
    try:
        v = float(get_field(rec, metric))
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def ranked(records: Iterable[Mapping], metric: str, maximize: bool = True) -> list:
    """The records that have a finite ``metric`` (a dotted key, e.g. ``val.top1``), best first."""
    scored = [(s, r) for r in records if (s := _score(r, metric)) is not None]
    scored.sort(key=lambda sr: sr[0], reverse=maximize)
    return [r for _, r in scored]


def best_trial(records: Iterable[Mapping], metric: str, maximize: bool = True) -> Mapping:
    """The record with the best ``metric``; ``ValueError`` if none has it."""
    records = list(records)
    order = ranked(records, metric, maximize)
    if not order:
        raise ValueError(f"none of the {len(records)} records has a numeric {metric!r}")
    return order[0]


__all__ = ["round_sig", "TrialSeededRandomSampler", "make_sampler", "make_pruner", "default_storage", "open_study",
           "suggest_pair", "finished_trials", "trials_table", "pruning_savings", "ranked", "best_trial",
           "HEARTBEAT_S", "GRACE_S"]
