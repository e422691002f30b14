"""Optuna studies for the (T, lambda) search: log-uniform sampling, samplers, storage, ranking."""
import math

import numpy as np
import optuna
import pytest

from kdutils.core import hparam
from kdutils.core.hparam import best_trial, ranked, round_sig


def _pairs(study, n, **kw):
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(hparam.suggest_pair(trial, **kw))
        study.tell(trial, 0.0)
    return out


def test_random_pairs_are_log_uniform_rounded_and_depend_only_on_seed_and_trial_number():
    study = optuna.create_study(sampler=hparam.make_sampler("random", seed=7))
    pairs = _pairs(study, 400, T_range=(1, 100), lam_range=(0.01, 100))
    again = _pairs(optuna.create_study(sampler=hparam.make_sampler("random", seed=7)), 5)
    other = _pairs(optuna.create_study(sampler=hparam.make_sampler("random", seed=8)), 5)
    assert again == pairs[:5] and other != pairs[:5]
    assert all(1 <= p["T"] <= 100 and 0.01 <= p["lam"] <= 100 for p in pairs)
    assert all(round_sig(p["T"], 3) == p["T"] for p in pairs)
    # log-uniform: each of lambda's four decades holds about a quarter of the trials
    counts, _ = np.histogram(np.log10([p["lam"] for p in pairs]), bins=4, range=(-2, 2))
    assert np.all(np.abs(counts / len(pairs) - 0.25) < 0.07), counts
    assert abs(np.mean([p["T"] < 10 for p in pairs]) - 0.5) < 0.08  # 10 = the geometric middle of [1, 100]


def test_a_shared_sqlite_study_continues_and_tpe_refines(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'studies.sqlite'}"
    first = hparam.open_study("s", url, sampler=hparam.make_sampler("random", 0), heartbeat_s=None)
    for _ in range(6):
        t = first.ask()
        p = hparam.suggest_pair(t)
        first.tell(t, -abs(math.log10(p["T"]) - 1))  # best near T = 10
    second = hparam.open_study("s", url, sampler=hparam.make_sampler("tpe", 1), heartbeat_s=None)
    assert len(hparam.finished_trials(second)) == 6  # the same study, continued
    _pairs(second, 2)
    table = hparam.trials_table(second)
    assert len(table) == 8 and set(table.columns) >= {"state", "T", "lam", "value"}


def test_pruning_savings_counts_the_epochs_not_trained():
    study = optuna.create_study(direction="maximize", pruner=hparam.make_pruner("median"))
    for value in (1.0, 2.0, 3.0):
        t = study.ask()
        for epoch in (1, 2, 3):
            t.report(value, epoch)
        study.tell(t, value)
    t = study.ask()
    t.report(0.1, 1)
    assert t.should_prune()
    study.tell(t, state=optuna.trial.TrialState.PRUNED)
    assert hparam.pruning_savings(study, 3) == {"pruned": 1, "epochs_run": 10, "epochs_saved": 2,
                                                "saved_share": pytest.approx(2 / 12)}


@pytest.mark.parametrize("kind", ["grid", "simplex"])
def test_bad_sampler_settings_are_named(kind):
    with pytest.raises(ValueError, match="grid" if kind == "grid" else "sampler must be"):
        hparam.make_sampler(kind)
    with pytest.raises(ValueError, match="pruner must be"):
        hparam.make_pruner("hyperband!")
    with pytest.raises(ValueError, match="low must be > 0"):
        hparam.suggest_pair(optuna.create_study().ask(), T_range=(0, 10))


def _rec(T, lam, acc):
    return {"run": f"T{T}_lam{lam}", "status": "complete", "params": {"T": T, "lam": lam}, "val": {"top1": acc}}


def test_ranking_on_the_validation_metric():
    recs = [_rec(1, 0.01, 60.0), _rec(4, 0.5, 71.0), _rec(8, 1.0, 72.5), _rec(100, 50, 55.0),
            {"run": "broken", "params": {"T": 2, "lam": 1}}, _rec(3, 3, float("nan"))]
    assert best_trial(recs, "val.top1")["run"] == "T8_lam1.0"
    assert best_trial(recs, "val.top1", maximize=False)["run"] == "T100_lam50"
    assert [r["run"] for r in ranked(recs, "val.top1")][:2] == ["T8_lam1.0", "T4_lam0.5"]
    with pytest.raises(ValueError, match="has a numeric 'val.top1'"):
        best_trial([{"run": "x"}], "val.top1")
    assert round_sig(37.2918) == 37.3 and round_sig(0.021437) == 0.0214
