"""Part 2's experiments as data: which network is trained, which frozen network teaches
it, and with which objective.

Every experiment of part 2 uses the same recipe (:mod:`kdutils.parts.part1`, "the part 1
training script"); only three things change from row to row:

* the architecture being trained (a fresh, randomly initialised network),
* the frozen teacher: the trained weights of an earlier experiment (or none),
* the objective (:mod:`kdutils.distill.objectives`).

:func:`part2_plan` lists the experiments (tasks 1-4 and the extras), :func:`build_experiment`
turns one into ``(model_to_train, teacher, objective)``, loading the teacher from the
checkpoint of the run that produced it (a missing prerequisite raises, it is never
retrained silently), :func:`train_experiment` trains it with the recipe, and
:func:`ablation_table` / :func:`kd_findings` turn the records into the ablation table
and the sentences of the notebook's "opinion on KD".

Every run uses seed 0, so all networks of one architecture start from the **same**
random initialisation and see the same batches: the difference between two rows of the
same architecture is the objective (and the teacher), nothing else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

import torch
from torch import nn

from kdutils.core.train import Run, load_run_weights
from kdutils.distill import objectives
from kdutils.models import build_model
from kdutils.parts.part1 import train_with_recipe

#: The record folder of part 2 (``results/<profile>/part2/``).
PART = "part2"

#: What each method trains with (the table's "method" column uses these labels).
METHODS = {
    "baseline": "CE + label smoothing (recipe)",
    "kd": "KD",
    "tfkd_self": "Tf-KD self",
    "tfkd_reg": "Tf-KD reg",
    "no_ls": "CE without label smoothing",
    "pskd": "PS-KD",
}

#: Tf-KD reg's virtual teacher: the correct class gets ``a``; softened at ``tau`` and
#: weighted by ``alpha`` (the defaults of :class:`kdutils.distill.objectives.TfKDRegLoss`).
TFKD_REG = dict(alpha=0.5, tau=20.0, a=0.9)

#: PS-KD's final weight of the model's own past predictions (Kim et al. 2021, CIFAR-100).
PSKD_ALPHA_T = 0.8


@dataclass(frozen=True)
class Experiment:
    """One row of part 2's ablation.

    ``arch`` (at ``width_mult``) is the network trained from a random initialisation;
    ``teacher`` is the experiment whose trained weights teach it (frozen), or ``None``.
    ``alpha``/``tau`` are the objective's weight of the soft term and its temperature
    (for PS-KD ``alpha`` is its final weight ``alpha_T``).
    """

    key: str
    task: str
    method: str
    arch: str
    width_mult: float = 1.0
    teacher: Optional["Experiment"] = None
    alpha: Optional[float] = None
    tau: Optional[float] = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {sorted(METHODS)}")
        if (self.teacher is not None) != (self.method in ("kd", "tfkd_self")):
            raise ValueError(f"{self.key}: methods kd and tfkd_self need a teacher, the others none")

    @property
    def label(self) -> str:
        """The trained network: its registry name, with ``x<width>`` when narrowed."""
        return self.arch if self.width_mult == 1 else f"{self.arch}x{self.width_mult:g}"

    @property
    def lineage(self) -> str:
        """Who taught whom, e.g. ``wrn_40_2-to-wrn_16_2`` (teachers first)."""
        return self.label if self.teacher is None else f"{self.teacher.lineage}-to-{self.label}"

    @property
    def name(self) -> str:
        """The run name: key, lineage and hyper-parameters, so that changing the pair,
        alpha or tau never reuses a run trained for other settings."""
        hyper = "".join(f"_{k}{v:g}" for k, v in (("a", self.alpha), ("t", self.tau)) if v is not None)
        return f"{self.key}_{self.lineage}{hyper}"

    @property
    def teacher_label(self) -> str:
        """What teaches this network, for the table."""
        if self.teacher is not None:
            return f"{self.teacher.label} ({self.teacher.key})"
        return {"tfkd_reg": f"manual soft target (a={TFKD_REG['a']:g})",
                "pskd": "itself, previous epoch"}.get(self.method, "-")

    def run(self, profile: str) -> Run:
        """The run (record + checkpoint) of this experiment; its params feed the table."""
        params = dict(task=self.task, method=METHODS[self.method], method_key=self.method,
                      teacher=self.teacher_label, student=self.label, arch=self.arch,
                      width_mult=self.width_mult, alpha=self.alpha, tau=self.tau,
                      teacher_run=self.teacher.name if self.teacher is not None else None)
        return Run(PART, self.name, profile, params=params)


def part2_plan(teacher: str, student: str, alpha: float, tau: float, width_mult: float = 1.0) -> dict:
    """Part 2's experiments, in the order they must run, keyed by a short id.

    ========= ===================== ============ ======================================
    key       trains                teacher      objective
    ========= ===================== ============ ======================================
    task1_*   teacher / student     -            CE + label smoothing (the recipe)
    task2     student               task1 teach. KD(alpha, tau)
    task3     student               task2        KD(alpha, tau) (from a distilled student)
    task4     teacher architecture  task1 stud.  KD(alpha, tau), reverse KD (Tf-KD paper)
    tfkd_self student               task1 stud.  KD(alpha, tau) from its own trained copy
    tfkd_reg  student               -            TfKDRegLoss (manual soft target)
    no_ls     student               -            CE without label smoothing
    pskd      student               -            PSKDLoss (own past predictions)
    ========= ===================== ============ ======================================
    """
    kd = dict(alpha=alpha, tau=tau, width_mult=width_mult)
    t1 = Experiment("task1_teacher", "Task 1", "baseline", teacher, width_mult)
    s1 = Experiment("task1_student", "Task 1", "baseline", student, width_mult)
    s2 = Experiment("task2", "Task 2", "kd", student, teacher=t1, **kd)
    plan = [
        t1,
        s1,
        s2,
        Experiment("task3", "Task 3", "kd", student, teacher=s2, **kd),
        Experiment("task4", "Task 4", "kd", teacher, teacher=s1, **kd),
        Experiment("tfkd_self", "Extra", "tfkd_self", student, teacher=s1, **kd),
        Experiment("tfkd_reg", "Extra", "tfkd_reg", student, width_mult,
                   alpha=TFKD_REG["alpha"], tau=TFKD_REG["tau"]),
        Experiment("no_ls", "Extra", "no_ls", student, width_mult),
        Experiment("pskd", "Extra", "pskd", student, width_mult, alpha=PSKD_ALPHA_T),
    ]
    return {e.key: e for e in plan}


def make_objective(exp: Experiment, recipe: Mapping, num_samples: int, num_classes: int) -> nn.Module:
    """The objective of ``exp``; the baseline uses the recipe's label smoothing."""
    if exp.method == "baseline":
        return objectives.CrossEntropy(recipe["label_smoothing"])
    if exp.method == "no_ls":
        return objectives.CrossEntropy(0.0)
    if exp.method in ("kd", "tfkd_self"):
        return objectives.KDLoss(exp.alpha, exp.tau)
    if exp.method == "tfkd_reg":
        return objectives.TfKDRegLoss(exp.alpha, exp.tau, TFKD_REG["a"])
    return objectives.PSKDLoss(num_samples, num_classes, alpha_T=exp.alpha, epochs=recipe["epochs"])


def build_network(exp: Experiment, num_classes: int) -> nn.Module:
    """``exp.arch`` with ``width_mult`` passed only when it narrows the network (so that
    models without that option still work at full width)."""
    options = {"width_mult": exp.width_mult} if exp.width_mult != 1 else {}
    return build_model(exp.arch, num_classes, **options)


def build_experiment(exp: Experiment, profile: str, recipe: Mapping, num_samples: int, num_classes: int,
                     seed: int = 0):
    """``(model_to_train, teacher, objective)`` of one experiment.

    ``model_to_train`` is ``exp.arch`` freshly initialised from ``seed``. ``teacher`` is
    ``None`` or ``exp.teacher.arch`` with the final weights of ``exp.teacher``'s run, in
    ``eval()`` mode with gradients off; a teacher that has not been trained raises
    ``FileNotFoundError`` naming the notebook cell that trains it. For reverse KD (task 4)
    the trained network is the teacher *architecture* and the frozen teacher is the
    task-1 student.
    """
    torch.manual_seed(seed)
    model = build_network(exp, num_classes)
    teacher = None
    if exp.teacher is not None:
        teacher = build_network(exp.teacher, num_classes)
        load_run_weights(teacher, exp.teacher.run(profile), produced_by=f"the {exp.teacher.task} cell")
        teacher.eval().requires_grad_(False)
    return model, teacher, make_objective(exp, recipe, num_samples, num_classes)


def train_experiment(exp: Experiment, profile: str, recipe: Mapping, train_loader, test_loader,
                     num_classes: int, force: bool = False, seed: int = 0) -> dict:
    """Build ``exp`` and train it with the recipe; returns its record (skipped when finished)."""
    model, teacher, objective = build_experiment(exp, profile, recipe, train_loader.num_samples,
                                                 num_classes, seed)
    return train_with_recipe(model, exp.run(profile), recipe, train_loader, test_loader,
                             objective=objective, teacher=teacher, force=force, seed=seed)


#: The ablation table's columns: title -> dotted key into a record.
TABLE_COLUMNS = {
    "task": "params.task",
    "method": "params.method",
    "teacher": "params.teacher",
    "student (trained)": "params.student",
    "alpha": "params.alpha",
    "tau": "params.tau",
    "params": "n_params",
    "best top-1": "best.test_top1",
    "best top-5": "best.test_top5",
    "last top-1": "last.test_top1",
}


def ablation_table(records: Iterable[Mapping]):
    """One row per record with the columns of :data:`TABLE_COLUMNS` and ``gain``: the
    best top-1 minus that of the baseline (task 1) run of the same trained network
    (``NaN`` when the records hold no such baseline)."""
    from kdutils.core.records import records_table

    records = list(records)
    table = records_table(records, TABLE_COLUMNS)
    baseline = {r["params"]["student"]: r["best"]["test_top1"] for r in records
                if r["params"].get("method_key") == "baseline" and r.get("best")}
    table["gain"] = [row["best top-1"] - baseline[row["student (trained)"]]
                     if row["student (trained)"] in baseline and row["best top-1"] is not None else math.nan
                     for _, row in table.iterrows()]
    return table


def top1_standard_error(top1: float, n_test: int) -> float:
    """Binomial standard error (percentage points) of a top-1 accuracy on ``n_test`` images."""
    p = min(max(top1 / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n_test)


def gain_noise(table, n_test: int) -> float:
    """Two standard errors (points) of the difference of two top-1 accuracies on
    ``n_test`` test images, at the mean best top-1 of the table's baselines (0 without
    baselines). Gains smaller than this are indistinguishable from noise."""
    base = table.loc[table["method"] == METHODS["baseline"], "best top-1"]
    if base.empty:
        return 0.0
    return 2 * math.sqrt(2) * top1_standard_error(float(base.mean()), n_test)


def kd_findings(table, n_test: int) -> list:
    """Sentences for the "opinion on KD", every number taken from ``table``
    (:func:`ablation_table`); differences below :func:`gain_noise` are called noise."""
    rows = table.to_dict("records")
    base = [r for r in rows if r["method"] == METHODS["baseline"]]
    others = [r for r in rows if r["method"] != METHODS["baseline"] and not math.isnan(r["gain"])]
    noise = gain_noise(table, n_test)
    out = []
    if base:
        out.append(f"With {n_test:,} test images, two accuracies near "
                   f"{sum(r['best top-1'] for r in base) / len(base):.1f}% must differ by more than "
                   f"{noise:.2f} points (two standard errors of the difference) to be told apart from noise.")
    if len(base) == 2:
        teacher, student = sorted(base, key=lambda r: -r["params"])
        gap = teacher["best top-1"] - student["best top-1"]
        out.append(f"Task 1: the teacher {teacher['student (trained)']} ({teacher['params']:,} parameters) "
                   f"reached {teacher['best top-1']:.2f}% best top-1, the student "
                   f"{student['student (trained)']} ({student['params']:,}) {student['best top-1']:.2f}% "
                   f"(a gap of {gap:+.2f} points).")
        if gap <= noise:
            out.append("The teacher is not measurably better than the student here, so task 2 cannot show "
                       "the transfer from a stronger network that KD is meant for.")
    for r in others:
        verdict = "within noise" if abs(r["gain"]) <= noise else ("a real gain" if r["gain"] > 0 else "a real loss")
        who = r["student (trained)"] if r["teacher"] == "-" else f"{r['teacher']} -> {r['student (trained)']}"
        out.append(f"{r['task']}, {r['method']} ({who}): "
                   f"{r['best top-1']:.2f}% best top-1, {r['gain']:+.2f} points over its own baseline ({verdict}).")
    if others:
        best = max(others, key=lambda r: r["gain"])
        wins = sum(r["gain"] > noise for r in others)
        out.append(f"Largest gain: {best['task']} {best['method']} ({best['gain']:+.2f}); "
                   f"{wins} of {len(others)} methods beat their baseline by more than the noise level.")
    return out
