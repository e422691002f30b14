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
:func:`kd_tasks_table` / :func:`findings` turn the records into the KD table and the
sentences of the notebook's "opinion on KD" (also printed on the part's report page, with
:data:`OPINION`).

Runs of one seed share it: all networks of one architecture trained with seed ``s`` start
from the **same** random initialisation and see the same batches, so the difference between
two rows of the same architecture is the objective (and the teacher), nothing else. Student
rows are trained once per seed of the profile (``SETTINGS[...]["seeds"]``; quick: 3) and the
table shows their mean and standard deviation; teachers are trained once (seed 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from kdutils.core import findings as F
from kdutils.core.profiles import Setup, resolve
from kdutils.core.records import get_field, load_record, records_table
from kdutils.core.seeds import base_name, describe, difference, group_by_base, seed_table, seeded_name
from kdutils.core.train import Run, load_run_weights
from kdutils.distill import methods, objectives
from kdutils.distill.teachers import LiveTeacher
from kdutils.models import build_model
from kdutils.parts import part1
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
    "kd_ls": "KD + logit standardization",
    "dkd": "DKD",
    "fitnets": "FitNets (hint + regressor)",
    "at": "attention transfer",
    "rkd": "RKD (distance + angle)",
    "dml": "DML (two students)",
    "takd": "TAKD (via an assistant)",
}

#: The methods that distil from a frozen teacher network (the others have none).
TEACHER_METHODS = ("kd", "tfkd_self", "kd_ls", "dkd", "fitnets", "at", "rkd", "takd")

#: Hyper-parameters of the further methods (:mod:`kdutils.distill.methods`), the authors'
#: CIFAR-100 values: KD + logit standardization at the authors' base temperature 2 (Sun et
#: al. 2024; the KD row's alpha); DKD's alpha/beta/tau and warm-up (20 of 240 epochs, scaled
#: to the recipe's epochs); FitNets and attention-transfer weights of Tian et al.'s benchmark
#: (CRD, ICLR 2020: beta 100 and 1000); RKD's distance/angle weights 25/50; DML's KL at T = 1.
METHOD_SETTINGS = {
    "kd_ls": dict(tau=2.0),
    "dkd": dict(alpha=1.0, beta=8.0, tau=4.0, warmup_share=20 / 240),
    "fitnets": dict(beta=100.0, batch_norm=True),
    "at": dict(beta=1000.0),
    "rkd": dict(w_dist=25.0, w_angle=50.0),
    "dml": dict(tau=1.0, weight=1.0),
}

#: Which modules of the CIFAR ResNets/WRNs the feature methods read: FitNets the middle
#: stage's output, attention transfer every stage's, RKD the pooled embedding.
FEATURE_LAYERS = dict(fitnets=("stages.1",), at=("stages.0", "stages.1", "stages.2"), rkd=("pool",))

#: The teacher assistant of TAKD for a (teacher, student) pair: between them in depth.
ASSISTANTS = {("wrn_40_2", "wrn_16_2"): "wrn_28_2"}

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
        if (self.teacher is not None) != (self.method in TEACHER_METHODS):
            raise ValueError(f"{self.key}: methods {', '.join(TEACHER_METHODS)} need a teacher, the others none")

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
                "pskd": "itself, previous epoch",
                "dml": f"a peer {self.label}, trained alongside"}.get(self.method, "-")

    def run(self, profile: str, seed: int = 0) -> Run:
        """The run (record + checkpoint) of this experiment trained with ``seed`` (run name
        :func:`~kdutils.core.seeds.seeded_name`); its params feed the table."""
        params = dict(task=self.task, method=METHODS[self.method], method_key=self.method,
                      teacher=self.teacher_label, student=self.label, arch=self.arch,
                      width_mult=self.width_mult, alpha=self.alpha, tau=self.tau,
                      teacher_run=self.teacher.name if self.teacher is not None else None)
        settings = METHOD_SETTINGS.get(self.method)
        if settings:  # a changed setting of a further method must not reuse the old run
            params["method_settings"] = settings
        params["seed"] = seed
        return Run(PART, seeded_name(self.name, seed), profile, params=params)


def part2_plan(teacher: str, student: str, alpha: float, tau: float, width_mult: float = 1.0,
               assistant: Optional[str] = None) -> dict:
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
    kd_ls     student               task1 teach. KD(alpha, tau 2) + logit standardization
    dkd       student               task1 teach. DKDLoss (decoupled KD)
    fitnets   student               task1 teach. HintLoss (hint + regressor)
    at        student               task1 teach. AttentionTransferLoss (every stage)
    rkd       student               task1 teach. RKDLoss (pooled embedding)
    dml       student               -            DMLLoss (a peer student)
    assistant assistant             task1 teach. KD(alpha, tau) (TAKD's first link)
    takd      student               assistant    KD(alpha, tau) (TAKD's second link)
    ========= ===================== ============ ======================================

    The further methods (from ``kd_ls`` on) are in :data:`METHOD_SETTINGS`; TAKD's rows
    appear when an ``assistant`` architecture is given or :data:`ASSISTANTS` knows the pair.
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
    return {e.key: e for e in plan + further_methods(t1, student, alpha, tau, width_mult, assistant)}


def further_methods(t1: Experiment, student: str, alpha: float, tau: float, width_mult: float,
                    assistant: Optional[str] = None) -> list:
    """The rows of the further distillation methods (:mod:`kdutils.distill.methods`), each
    training ``student`` from scratch; teacher-based ones learn from the task-1 teacher
    ``t1``, TAKD through an ``assistant`` (default: :data:`ASSISTANTS` of the pair; none known,
    no TAKD rows)."""
    m = METHOD_SETTINGS
    rows = [Experiment("kd_ls", "Extra", "kd_ls", student, width_mult, t1, alpha, m["kd_ls"]["tau"]),
            Experiment("dkd", "Extra", "dkd", student, width_mult, t1, tau=m["dkd"]["tau"]),
            Experiment("fitnets", "Extra", "fitnets", student, width_mult, t1),
            Experiment("at", "Extra", "at", student, width_mult, t1),
            Experiment("rkd", "Extra", "rkd", student, width_mult, t1),
            Experiment("dml", "Extra", "dml", student, width_mult, tau=m["dml"]["tau"])]
    assistant = assistant or ASSISTANTS.get((t1.arch, student))
    if assistant:
        ta = Experiment("assistant", "TAKD assistant", "kd", assistant, width_mult, t1, alpha, tau)
        rows += [ta, Experiment("takd", "Extra", "takd", student, width_mult, ta, alpha, tau)]
    return rows


def make_objective(exp: Experiment, recipe: Mapping, num_samples: int, num_classes: int,
                   teacher: Optional[nn.Module] = None, student: Optional[nn.Module] = None) -> nn.Module:
    """The objective of ``exp``; the baseline uses the recipe's label smoothing. KD
    objectives get ``teacher`` (the trained network) as a live teacher source; the further
    methods (:func:`further_objective`) also look at the ``student`` being trained."""
    if exp.method in ("kd_ls", "dkd", "fitnets", "at", "rkd", "dml"):
        return further_objective(exp, recipe, num_classes, teacher, student)
    if exp.method == "baseline":
        return objectives.CrossEntropy(recipe["label_smoothing"])
    if exp.method == "no_ls":
        return objectives.CrossEntropy(0.0)
    if exp.method in ("kd", "tfkd_self", "takd"):
        if teacher is None:
            raise ValueError(f"experiment {exp.key} ({exp.method}) needs its trained teacher network")
        return objectives.KDLoss(exp.alpha, exp.tau, teacher=LiveTeacher(teacher))
    if exp.method == "tfkd_reg":
        return objectives.TfKDRegLoss(num_classes, exp.alpha, exp.tau, TFKD_REG["a"])
    return objectives.PSKDLoss(num_samples, num_classes, alpha_T=exp.alpha, epochs=recipe["epochs"])


def _feature_pairs(method: str, student: nn.Module, teacher: nn.Module) -> list:
    """The (student, teacher) module names ``method`` reads (:data:`FEATURE_LAYERS`), checked
    to exist in both networks."""
    layers = FEATURE_LAYERS[method]
    for role, net in (("student", student), ("teacher", teacher)):
        names = dict(net.named_modules())
        missing = [n for n in layers if n not in names]
        if missing:
            raise ValueError(f"{method} reads the modules {list(layers)}, which the {role} "
                             f"{type(net).__name__} lacks ({missing}); part2.FEATURE_LAYERS names them for the "
                             "CIFAR ResNets/WRNs: choose such a pair or edit FEATURE_LAYERS")
    return [(n, n) for n in layers]


def further_objective(exp: Experiment, recipe: Mapping, num_classes: int, teacher: Optional[nn.Module],
                      student: Optional[nn.Module]) -> nn.Module:
    """The objective of one of the further methods (:data:`METHOD_SETTINGS`): KD + logit
    standardization, DKD, FitNets, attention transfer, RKD (from ``teacher``) or DML (a peer
    of ``student``'s architecture, built after it so it starts from other weights)."""
    m = METHOD_SETTINGS.get(exp.method, {})
    if student is None or (teacher is None and exp.method != "dml"):
        raise ValueError(f"experiment {exp.key} ({exp.method}) needs the student being trained"
                         + ("" if exp.method == "dml" else " and its trained teacher network"))
    if exp.method == "dml":
        return methods.DMLLoss(build_network(exp, num_classes), m["tau"], m["weight"])
    if exp.method == "kd_ls":
        return objectives.KDLoss(exp.alpha, exp.tau, teacher=LiveTeacher(teacher), standardize=True)
    if exp.method == "dkd":
        warmup = max(1, round(m["warmup_share"] * recipe["epochs"]))
        return methods.DKDLoss(m["alpha"], m["beta"], exp.tau, warmup, teacher=LiveTeacher(teacher))
    pairs = _feature_pairs(exp.method, student, teacher)
    source = LiveTeacher(teacher, feature_layers=[t for _, t in pairs])
    if exp.method == "at":
        return methods.AttentionTransferLoss(source, pairs, m["beta"])
    (s_layer, t_layer), = pairs
    if exp.method == "rkd":
        return methods.RKDLoss(source, s_layer, t_layer, m["w_dist"], m["w_angle"])
    channels = [methods.layer_output_shape(net, layer)[1] for net, layer in ((student, s_layer), (teacher, t_layer))]
    return objectives.HintLoss(source, s_layer, t_layer, *channels, beta=m["beta"], batch_norm=m["batch_norm"])


def build_network(exp: Experiment, num_classes: int) -> nn.Module:
    """``exp.arch`` with ``width_mult`` passed only when it narrows the network (so that
    models without that option still work at full width)."""
    options = {"width_mult": exp.width_mult} if exp.width_mult != 1 else {}
    return build_model(exp.arch, num_classes, **options)


def build_experiment(exp: Experiment, profile: str, recipe: Mapping, num_samples: int, num_classes: int,
                     seed: int = 0):
    """``(model_to_train, teacher, objective)`` of one experiment (the objective holds the
    teacher as its :class:`~kdutils.distill.teachers.LiveTeacher`).

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
    return model, teacher, make_objective(exp, recipe, num_samples, num_classes, teacher, model)


def train_experiment(exp: Experiment, profile: str, recipe: Mapping, train_loader, test_loader,
                     num_classes: int, force: bool = False, seed: int = 0) -> dict:
    """Build ``exp`` and train it with the recipe; returns its record (skipped when finished)."""
    model, _, objective = build_experiment(exp, profile, recipe, train_loader.num_samples, num_classes, seed)
    run = exp.run(profile, seed)
    run.extra.update(n_train=train_loader.num_samples, n_test=test_loader.num_samples,
                     n_extra_params=objective.extra_parameter_count())
    return train_with_recipe(model, run, recipe, train_loader, test_loader, objective=objective, force=force,
                             seed=seed)


#: Rows trained once whatever the profile's seeds: they only teach (the task-1 teacher, TAKD's
#: assistant); every other row is a student row, trained once per seed.
SINGLE_SEED = ("task1_teacher", "assistant")


def seeds_of(exp: Experiment, seeds: Sequence[int]) -> tuple:
    """The seeds ``exp`` is trained with: ``(0,)`` for :data:`SINGLE_SEED` rows, else ``seeds``.
    Teachers are always the seed-0 run of the experiment that teaches."""
    return (0,) if exp.key in SINGLE_SEED else tuple(seeds)


def train_seeds(exp: Experiment, profile: str, recipe: Mapping, train_loader, test_loader, num_classes: int,
                seeds: Sequence[int], force: bool = False) -> list:
    """:func:`train_experiment` once per seed of :func:`seeds_of`; returns the records."""
    return [train_experiment(exp, profile, recipe, train_loader, test_loader, num_classes, force, seed)
            for seed in seeds_of(exp, seeds)]


def load_plan_records(plan: Mapping[str, Experiment], profile: str, seeds: Sequence[int]) -> list:
    """The records of every experiment of ``plan`` and seed (missing ones as None)."""
    return [load_record(PART, exp.run(profile, seed).name, profile)
            for exp in plan.values() for seed in seeds_of(exp, seeds)]


# --------------------------------------------------------------------------- the notebook's runs
#: The same pair and KD hyper-parameters in every profile; the CPU profiles narrow both
#: networks. ``seeds``: every student row is trained once per seed (mean and std in the
#: table); teachers once. Notebook 02 and ``kdutils.tools.launch`` read it from here.
#:
#: The quick profile must show a teacher that is clearly better than its students on a
#: 2-core CPU in minutes, which all 100 classes do not allow (measured on the 100-per-class
#: sample: a WRN-40-2 x0.25 teacher after 10 epochs on 10,000 images, 336 s, reached 15.3 %,
#: its student 3.5 %, and KD's soft targets were nearly flat). So quick learns the **first
#: ``classes`` = 20 classes** (sorted names) of CIFAR-100; the teacher trains on every
#: training image of them it has (``teacher_train_per_class``) for ``teacher_epochs``, the
#: students on the recipe's ``train_per_class`` for ``epochs``; ``test_per_class``: the
#: test images per class. None: the recipe's value (part 1's ``CIFAR100_RECIPE``), which the
#: full profile keeps for every run: all 100 classes, all images, the same epochs.
SETTINGS = {
    "smoke": dict(teacher="wrn_40_2", student="wrn_16_2", alpha=0.9, tau=4.0, width_mult=0.25, seeds=(0,),
                  classes=None, epochs=None, test_per_class=None, teacher_epochs=None, teacher_train_per_class=None),
    "quick": dict(teacher="wrn_40_2", student="wrn_16_2", alpha=0.9, tau=4.0, width_mult=0.25, seeds=(0, 1, 2),
                  classes=20, epochs=8, test_per_class=20, teacher_epochs=25, teacher_train_per_class=100),
    "full": dict(teacher="wrn_40_2", student="wrn_16_2", alpha=0.9, tau=4.0, width_mult=1.0, seeds=(0,),
                 classes=None, epochs=None, test_per_class=None, teacher_epochs=None, teacher_train_per_class=None),
}

#: The rows trained with the teacher's recipe (:func:`recipe_of`): only the task-1 teacher.
TEACHER_ROWS = ("task1_teacher",)


def recipe_for(setup: Setup, epochs: Optional[int] = None) -> dict:
    """The students' recipe: part 1's recipe of the profile with the setup's ``epochs`` and
    ``test_per_class`` (when set) and the notebook's ``epochs`` parameter (when given)."""
    recipe = part1.recipe_for(setup, epochs=epochs if epochs is not None else setup.settings.get("epochs"))
    if setup.settings.get("test_per_class"):
        recipe["test_per_class"] = setup["test_per_class"]
    return recipe


def recipe_of(key: str, setup: Setup, recipe: Mapping, epochs: Optional[int] = None) -> dict:
    """The recipe row ``key`` trains with: ``recipe`` for students, and for the
    :data:`TEACHER_ROWS` the same with the setup's ``teacher_epochs`` (unless the notebook's
    ``epochs`` parameter sets every run's) and ``teacher_train_per_class``."""
    if key not in TEACHER_ROWS:
        return dict(recipe)
    out = dict(recipe)
    if epochs is None and setup.settings.get("teacher_epochs"):
        out["epochs"] = setup["teacher_epochs"]
    if setup.settings.get("teacher_train_per_class"):
        out["train_per_class"] = setup["teacher_train_per_class"]
    return out


def cifar_loaders(setup: Setup, recipe: Mapping) -> tuple:
    """``(train_loader, test_loader, num_classes)`` of CIFAR-100 for ``recipe``: its per-class
    subsets, limited to the setup's first ``classes`` classes when set."""
    train_set, test_set = part1.cifar_sets("cifar100", setup, recipe["train_per_class"], recipe["test_per_class"])
    if setup.settings.get("classes"):
        train_set, test_set = (s.first_classes(setup["classes"]) for s in (train_set, test_set))
    return (*part1.cifar_loaders("cifar100", train_set, test_set, recipe), train_set.num_classes)


def resolve_setup(profile: Optional[str] = None, data_root: Optional[str] = None,
                  overrides: Optional[Mapping] = None, rehearse: Optional[bool] = None) -> Setup:
    """Part 2's :class:`~kdutils.core.profiles.Setup`: :data:`SETTINGS` of the profile with the
    non-None ``overrides`` (teacher, student, alpha, tau) applied."""
    return resolve(profile, data_root, SETTINGS, overrides, rehearse=rehearse)


def plan_for(setup: Setup) -> dict:
    """:func:`part2_plan` of the setup's pair, alpha, tau and width (the notebook's plan)."""
    return part2_plan(setup["teacher"], setup["student"], setup["alpha"], setup["tau"], setup["width_mult"])


def find_run(plan: Mapping[str, Experiment], profile: str, seeds: Sequence[int], run: str) -> tuple:
    """``(experiment, seed)`` of the plan's run called ``run``: its record name
    (:meth:`Experiment.run`) or its key with the seed's suffix (``task2``, ``task2_seed1``)."""
    runs = {}
    for key, exp in plan.items():
        for seed in seeds_of(exp, seeds):
            runs[exp.run(profile, seed).name] = runs[seeded_name(key, seed)] = (exp, seed)
    if run not in runs:
        names = ", ".join(seeded_name(k, s) for k, e in plan.items() for s in seeds_of(e, seeds))
        raise ValueError(f"part2 has no run {run!r} in the {profile} profile; name a record or one of {names}")
    return runs[run]


#: The KD table's columns: title -> dotted key into a record.
TABLE_COLUMNS = {
    "task": "params.task",
    "method": "params.method",
    "teacher": "params.teacher",
    "student (trained)": "params.student",
    "alpha": "params.alpha",
    "tau": "params.tau",
    "params": "n_params",
    "extra params": "n_extra_params",
    "best top-1": "best.test_top1",
    "best top-5": "best.test_top5",
    "last top-1": "last.test_top1",
}


def kd_tasks_table(records: Iterable[Mapping]):
    """Part 2's KD table: one row per ``experiment`` (tasks 1-4 and the extras; the runs of
    its seeds folded into one row) with the columns of :data:`TABLE_COLUMNS` (top-1 columns: the
    mean over seeds), ``seeds``, ``best top-1 std`` (over seeds) and ``gain``: the mean best
    top-1 minus that of the baseline (task 1) runs of the same trained network (``NaN`` when
    the records hold no such baseline)."""
    records = [r for r in records if r]
    runs = records_table(records, TABLE_COLUMNS)
    runs["experiment"] = [base_name(r["run"]) if r.get("run") else i for i, r in enumerate(records)]
    keys = ["experiment"] + [c for c in TABLE_COLUMNS if not c.startswith(("best", "last"))]
    tops = [c for c in TABLE_COLUMNS if c.startswith(("best", "last"))]
    folded = seed_table(runs, keys, tops)
    table = folded[keys].copy()
    for col in tops:
        table[col] = folded[f"{col} mean"]
    table["best top-1 std"], table["seeds"] = folded["best top-1 std"], folded["seeds"]
    baseline = dict(zip(table.loc[table["method"] == METHODS["baseline"], "student (trained)"],
                        table.loc[table["method"] == METHODS["baseline"], "best top-1"]))
    table["gain"] = [row["best top-1"] - baseline[row["student (trained)"]]
                     if row["student (trained)"] in baseline and row["best top-1"] == row["best top-1"] else math.nan
                     for _, row in table.iterrows()]
    return table


def seed_values(records: Iterable[Optional[Mapping]]) -> dict:
    """Best top-1 of every finished run, grouped by experiment (run name without ``_seed<s>``)."""
    done = [r for r in records if r and r.get("best") and r.get("run")]
    return {k: [r["best"]["test_top1"] for r in rs] for k, rs in group_by_base(done).items()}


#: CIFAR-100's classes and test images (what the full profile tests on).
CIFAR100_CLASSES, CIFAR100_TEST_IMAGES = 100, 10_000


def n_test_images(records: Iterable[Optional[Mapping]]) -> Optional[int]:
    """How many test images the records were measured on: a recorded ``n_test``, else the
    framework's ``test_per_class`` times the 100 classes, else the whole CIFAR-100 test set
    for the full profile; None when unknown (the smoke profile's generated set)."""
    for r in filter(None, records):
        if r.get("n_test"):
            return int(r["n_test"])
        per_class = get_field(r, "framework.test_per_class|recipe.test_per_class")
        if per_class:
            return int(per_class) * CIFAR100_CLASSES
        if r.get("profile") == "full":
            return CIFAR100_TEST_IMAGES
    return None


def gain_noise(table, n_test: Optional[int]) -> Optional[float]:
    """The noise band (:func:`kdutils.core.findings.noise_band`, points) of a gain measured on
    ``n_test`` test images, at the mean best top-1 of the table's baselines (0 without
    baselines, None without ``n_test``). Gains inside it are indistinguishable from noise."""
    base = table.loc[table["method"] == METHODS["baseline"], "best top-1"]
    if base.empty:
        return 0.0
    return F.noise_band(float(base.mean()), n_test)


def findings(records: Iterable[Optional[Mapping]], n_test: Optional[int] = None) -> list:
    """Sentences (Markdown) for the "opinion on KD", every number taken from the
    :func:`kd_tasks_table` of the measured ``records`` (the notebook's section 10 and the
    report's page both call this); ``n_test`` defaults to :func:`n_test_images`. Gains inside
    :func:`gain_noise` are called noise."""
    done = [r for r in records if r and r.get("best")]
    if not done:
        return ["No run of part 2 has measured anything yet in this profile."]
    n_test = n_test_images(done) if n_test is None else n_test
    table = kd_tasks_table(done)
    rows = table.to_dict("records")
    base = [r for r in rows if r["method"] == METHODS["baseline"]]
    noise = gain_noise(table, n_test)
    out = [F.band_sentence(sum(r["best top-1"] for r in base) / len(base), n_test)] if base else []
    if len(base) == 2:
        teacher, student = sorted(base, key=lambda r: -r["params"])
        gap = teacher["best top-1"] - student["best top-1"]
        out.append(f"Task 1: the teacher {teacher['student (trained)']} ({teacher['params']:,} parameters) "
                   f"reached {teacher['best top-1']:.2f}% best top-1, the student "
                   f"{student['student (trained)']} ({student['params']:,}) {student['best top-1']:.2f}% "
                   f"(a gap of {gap:+.2f} points).")
        if F.verdict(gap, noise) in ("noise", "loss"):
            out.append("The teacher is not measurably better than the student here, so task 2 cannot show "
                       "the transfer from a stronger network that KD is meant for.")
    values = seed_values(done)
    baselines = {r["student (trained)"]: values.get(r["experiment"], []) for r in rows
                 if r["method"] == METHODS["baseline"]}
    steps = []
    for r in rows:
        experiment = r["experiment"]
        if r["method"] == METHODS["baseline"] or math.isnan(r["gain"]):
            continue
        diff = difference(values[experiment], baselines[r["student (trained)"]])
        band = max(filter(None, (diff.spread, noise)), default=noise)  # seeds and the test set both count
        who = r["student (trained)"] if r["teacher"] == "-" else f"{r['teacher']} -> {r['student (trained)']}"
        out.append(f"{r['task']}, {r['method']} ({who}): {describe(values[experiment])} best top-1, "
                   f"{r['gain']:+.2f} points over its own baseline "
                   f"({describe(baselines[r['student (trained)']])}; {F.verdict_words(r['gain'], band)}).")
        steps.append(F.Step(f"{r['task']} {r['method']}", r["gain"], band))
    return out + F.tally(steps, what="method", count=True)


#: The notebook's argued opinion on KD (section 10): shown by the notebook and printed on
#: part 2's report page.
OPINION = (
    "**My reading.** KD works, but mostly not for the reason its name suggests. The task-2 gain of a "
    "student over its own baseline is what everyone expects; the telling rows are tasks 3 and 4 and "
    "Tf-KD. If KD transferred the *superior* knowledge of a stronger network, a student could not "
    "teach its own architecture (task 3, Tf-KD self) and certainly not a larger one (task 4). "
    "Yuan et al. found the opposite on CIFAR-100 and ImageNet: self-taught and reverse-taught networks "
    "gain too, often about as much as normally taught ones, and a hand-made soft target (Tf-KD reg) "
    "comes close. That points at the soft targets acting as a **learned, sample-specific label "
    "smoothing**: they cap the confidence the network is pushed towards and spread the rest of the "
    "probability over classes that look alike, which regularises more sensibly than uniform smoothing. "
    "PS-KD is the same idea with the network teaching itself along the way, at no extra training cost.\n\n"
    "So my opinion: use KD when a good teacher exists anyway (it is cheap: one more forward pass per "
    "step and usually a point or two for the student), but compare it against the teacher-free "
    "baselines, not only against plain cross-entropy: part of its gain is available from label "
    "smoothing, Tf-KD reg or PS-KD without training any teacher. Our recipe already smooths labels "
    "(0.1), which absorbs some of what KD would otherwise add; the \"CE without label smoothing\" row "
    "measures how much. Whether this run's numbers support any of this is stated in the findings: at "
    "the quick profile's scale they usually cannot, and the claims rest on the full run and the papers."
)


# =========================================================================== report page
from kdutils.core import report_spec as S  # noqa: E402  (the page spec closes the module)

#: Part 2's page of the report (kdutils.tools.report); its text is :func:`findings` and :data:`OPINION`.
REPORT = S.PartSpec(
    part="part2",
    title="Part 2 - Knowledge distillation on CIFAR-100",
    notebooks=("part2_cifar100_kd.ipynb",),
    data="CIFAR-100",
    tables=(S.Table("KD tasks 1-4 and the extra methods (teacher -> trained network)", "part2",
                    (S.Column("task", "params.task"), S.Column("method", "params.method"),
                     S.Column("trained", "params.student"), S.Column("teacher", "params.teacher"),
                     S.PARAMS, S.Column("extra params", "n_extra_params", "count"), S.FLOPS, S.TOP1, S.TOP5,
                     S.EPOCHS, S.TRAIN_TIME), max_rows=20),),
    figures=("part2_gain",),
    label="{params[task]} {params[method]} ({params[student]})",
    baseline=r"^task1_student_",
    contenders=r"^(task1_student|task2|task3|tfkd_self|tfkd_reg|no_ls|pskd|kd_ls|dkd|fitnets|at|rkd|dml|takd)_",
    opinion_title="Opinion on KD",
)


# --------------------------------------------------------------------------- notebook parameters
from kdutils.core import params as P  # noqa: E402  (the notebook's parameter spec closes the module)

#: What the notebook's ``parameters`` cell may hold; its next cell checks them before any work.
PARAMETERS = {
    **P.COMMON,
    "teacher": P.text(help="teacher architecture, a kdutils.models name; empty: wrn_40_2"),
    "student": P.text(help="student architecture; empty: wrn_16_2"),
    "alpha": P.number(0, 1, optional=True, help="weight of the soft term, (1 - alpha) on the labels"),
    "tau": P.number(0, low_open=True, optional=True, help="KD temperature"),
    "epochs": P.integer(1, optional=True, help="epochs of every run"),
}
