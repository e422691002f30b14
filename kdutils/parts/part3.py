"""Part 3: CIFAR-10 with a ResNet-18 teacher (8x8x512) and the small student CNN.

Shared by ``notebooks/part3_cifar10_resnet18_kd.ipynb`` (A: teacher, B: KD table and the
(T, lambda) sweep) and ``notebooks/part3_hparam_search.ipynb`` (C: random search in
Hinton's form), so both train and load the teacher, build the data, and train students
the same way:

- :data:`SETTINGS` (smoke / quick / full) and :func:`setup_table`, the training set-up
  of the teacher and the student as a table;
- :func:`cifar10_sets` and :func:`make_loaders`: the data and the one pair of loaders
  (random crop + flip) that the teacher and every student use ("same data tricks");
- :func:`build_teacher`, :func:`train_teacher`, :func:`load_teacher`,
  :func:`teacher_for_students`: the teacher's run ``part3/teacher``;
- the teacher's logits of the exact augmented training images, computed once per epoch
  and shared by all students (and cached on disk): :class:`~kdutils.distill.teachers.TeacherLogits`,
  handed to the students' objectives as a :class:`~kdutils.distill.teachers.CachedLogits` source;
- :func:`student_objective`, :func:`train_student`, :func:`kd_table`,
  :func:`search_recipe`, :func:`search_scatter`.

The two KD forms of part 3 (``lam`` always weights the soft term):

- B, the lambda mix: ``L = (1 - lam) * CE(y, P_S) + lam * T^2 * H(P_T(T), P_S(T))``
  (:class:`~kdutils.distill.objectives.KDLoss` with ``alpha = lam``, in its KL form: same
  gradients, see :func:`student_objective`); ``lam = 0`` is training without KD,
  ``lam = 1`` uses the soft targets only;
- C, Hinton's form: ``L = CE(y, P_S) + lam * T^2 * KL(P_T(T) || P_S(T))`` with ``lam``
  unbounded (:class:`~kdutils.distill.objectives.HintonKDLoss`).

Inputs of every part-3 model are normalised with the ImageNet mean and std, the
statistics the pretrained teacher was trained with; the student sees the very same
tensors.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from kdutils.core import data as D
from kdutils.core import records as R
from kdutils.core.records import make_run_name
from kdutils.core.loader import loaders_for
from kdutils.core.profiles import Setup, resolve
from kdutils.core.objective import CrossEntropy, Objective
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, fit, load_run_weights
from kdutils.distill.objectives import HintonKDLoss, KDLoss
from kdutils.distill.teachers import CachedLogits, TeacherLogits, TeacherSource
from kdutils.models import build_model

#: Records of notebook 03 (teacher, KD table, sweep) and of notebook 04 (search).
PART = "part3"
SEARCH_PART = "part3_search"
TEACHER_RUN = "teacher"
TEACHER_LABEL = "Teacher (ResNet-18, 8x8x512)"
TEACHER_PRODUCED_BY = "notebooks/part3_cifar10_resnet18_kd.ipynb (teacher section)"
#: What tables, heat maps and the search rank by: test top-1 after the last epoch (no
#: choice of epoch on the test set).
SEARCH_METRIC = "last.test_top1"

#: Mean and std of the inputs of every part-3 model (the teacher's ImageNet statistics).
NORMALIZATION = D.NORMALIZATION["imagenet"]

#: Settings fixed in every profile (shown by :func:`setup_table`).
FIXED = dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
             padding=4, flip=True, seed=0)

#: Per-profile settings of notebook 03 (04 uses the data, teacher and student keys).
#: ``weights``: "IMAGENET1K_V1" (pretrained) or "random"; ``lr`` is the teacher's new
#: classifier's rate, the pretrained layers get ``lr * backbone_lr_scale``. ``student_lr``:
#: 0.01 for the assignment's 46.8M-parameter student (no BatchNorm) over 30 epochs, 0.05
#: for the small ``pool_stride=2`` variant's few CPU steps (0.01 barely moved it in 3
#: quick epochs: test top-1 20.8% vs 26.0% at 0.05). ``student_grad_clip``: the smoke
#: teacher (random init, one epoch on generated images) gives erratic logits, and the
#: lambda=1, T=20 student (gradient ~T times CE's, no BatchNorm) diverged to NaN in one of
#: two identical smoke runs; clipping the gradient norm at 5 keeps smoke finite.
SETTINGS = {
    "full": dict(FIXED, train_per_class=None, test_per_class=None, batch_size=128,
                 weights="IMAGENET1K_V1", weights_path=None, epochs=30, lr=0.05, backbone_lr_scale=0.2,
                 warmup_epochs=1, student_epochs=30, student_lr=0.01, pool_stride=1, student_grad_clip=None),
    "quick": dict(FIXED, train_per_class=200, test_per_class=100, batch_size=64,
                  weights="random", weights_path=None, epochs=4, lr=0.05, backbone_lr_scale=1.0,
                  warmup_epochs=0, student_epochs=3, student_lr=0.05, pool_stride=2, student_grad_clip=None),
    "smoke": dict(FIXED, train_per_class=4, test_per_class=4, batch_size=8,
                  weights="random", weights_path=None, epochs=1, lr=0.05, backbone_lr_scale=1.0,
                  warmup_epochs=0, student_epochs=1, student_lr=0.05, pool_stride=2, student_grad_clip=5.0),
}


def resolve_setup(profile: Optional[str] = None, data_root: Optional[str] = None,
                  overrides: Optional[Mapping] = None) -> Setup:
    """The part-3 :class:`~kdutils.core.profiles.Setup` (``SETTINGS`` of the profile, non-None
    ``overrides`` applied); validates ``weights`` and ``pool_stride``."""
    setup = resolve(profile, data_root, SETTINGS, overrides)
    if setup["weights"] not in ("IMAGENET1K_V1", "random"):
        raise ValueError(f"weights must be 'IMAGENET1K_V1' or 'random' (empty: the profile's default), "
                         f"got {setup['weights']!r}")
    if setup["pool_stride"] not in (1, 2):
        raise ValueError(f"pool_stride must be 1 (the assignment's student) or 2, got {setup['pool_stride']!r}")
    return setup


# --------------------------------------------------------------------------- set-up table
def _augmentation(s: Setup) -> str:
    return f"random crop 32 (zero padding {s['padding']}) + horizontal flip" if s["flip"] else \
        f"random crop 32 (zero padding {s['padding']})"


def setup_table(setup: Setup):
    """The training set-up of the teacher and the section-B student (one row per setting)."""
    import pandas as pd

    s = setup
    st = student_recipe_for(setup)
    init = ("ImageNet weights (torchvision IMAGENET1K_V1); new 10-way fc: PyTorch default (Kaiming-uniform)"
            if s["weights"] == "IMAGENET1K_V1" and not s["weights_path"]
            else f"weights from {s['weights_path']}; new fc: PyTorch default" if s["weights_path"]
            else "random (PyTorch default, Kaiming-uniform); BatchNorm weight 1, bias 0")
    n_train = "all" if s["train_per_class"] is None else f"{s['train_per_class']} per class"
    n_test = "all" if s["test_per_class"] is None else f"{s['test_per_class']} per class"
    opt = "SGD, Nesterov" if s["nesterov"] else "SGD"
    rows = {
        "augmentation": (_augmentation(s), "the same loader as the teacher"),
        "initialisation": (init, "random (PyTorch default, Kaiming-uniform)"),
        "optimizer": (opt, st.optimizer.upper() + (", Nesterov" if st.nesterov else "")),
        "learning rate": (f"{s['lr']} (new fc), {s['lr'] * s['backbone_lr_scale']:g} (other layers)",
                          f"{st.lr}"),
        "lr schedule": (f"{s['schedule']}, {s['warmup_epochs']} warm-up epoch(s), per step",
                        f"{st.schedule}, per step"),
        "momentum": (s["momentum"], st.momentum),
        "weight decay": (s["weight_decay"], st.weight_decay),
        "dropout": ("none (ResNet-18 has none)", "none"),
        "max-pool stride": ("1 (after the stem, see above)", f"{s['pool_stride']} (the assignment: 1)"),
        "batch size": (s["batch_size"], s["batch_size"]),
        "gradient clipping": ("none", "none" if st.grad_clip is None else f"norm {st.grad_clip}"),
        "epochs": (s["epochs"], st.epochs),
        "training images": (n_train, n_train),
        "test images": (n_test, n_test),
        "loss": ("cross-entropy", "(1 - lambda) CE + lambda T^2 KL(P_T(T) || P_S(T)); test at T = 1"),
    }
    return pd.DataFrame(rows, index=["teacher", "student"]).T


# --------------------------------------------------------------------------- data
def cifar10_sets(setup: Setup):
    """Train and test :class:`~kdutils.core.data.ImageSet` of CIFAR-10 for the setup.

    Smoke: generated pickles; otherwise ``setup.data_root`` (torchvision pickles or the
    ``cifar10/{train,test}/<class>/*.png`` tree). Subsets of ``train_per_class`` /
    ``test_per_class`` images per class (``None``: all).
    """
    from kdutils.parts.part1 import cifar_sets

    return cifar_sets("cifar10", setup, setup["train_per_class"], setup["test_per_class"])


def make_loaders(train_set, test_set, setup: Setup, batch_size: Optional[int] = None, device="auto"):
    """The augmenting training loader and the test loader every part-3 model uses."""
    mean, std = NORMALIZATION
    return loaders_for(train_set, test_set, batch_size or setup["batch_size"], mean, std, device=device,
                       padding=setup["padding"], flip=setup["flip"], seed=setup["seed"])


# --------------------------------------------------------------------------- teacher
def _teacher_run(profile: str, params: Optional[dict] = None) -> Run:
    return Run(PART, TEACHER_RUN, profile, params or {})


def teacher_is_trained(profile: str) -> bool:
    run = _teacher_run(profile)
    return R.is_finished(R.load_record(PART, TEACHER_RUN, profile)) and run.checkpoint_path.exists()


def build_teacher(setup: Optional[Setup] = None, force: bool = False) -> nn.Module:
    """``resnet18_cifar_8x8`` with 10 outputs, initialised as the setup says.

    When the teacher of this profile is already trained (and not ``force``), its weights
    come from the checkpoint anyway, so the model starts random and nothing is
    downloaded. Without a setup: random weights (to load a checkpoint into).
    """
    if setup is None or (teacher_is_trained(setup.profile) and not force):
        return build_model("resnet18_cifar_8x8", 10, weights=None)
    weights = None if setup["weights"] == "random" else setup["weights"]
    torch.manual_seed(setup["seed"])  # the new classifier (and random weights) are drawn from the seed
    return build_model("resnet18_cifar_8x8", 10, weights=weights, weights_path=setup["weights_path"])


def teacher_param_groups(model: nn.Module, backbone_lr_scale: float) -> list:
    """The new classifier at the base rate, every other layer at ``backbone_lr_scale`` of it."""
    head = list(model.fc.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": head, "lr_scale": 1.0}, {"params": body, "lr_scale": backbone_lr_scale}]


def train_teacher(model: nn.Module, setup: Setup, train_loader, test_loader, force: bool = False) -> dict:
    """Fine-tune (or train) the teacher as run ``part3/teacher``; return its record.

    A finished run is not trained again: its weights are loaded (see ``kdutils.core.train.fit``).
    """
    s = setup
    params = {k: s[k] for k in ("weights", "weights_path", "epochs", "lr", "backbone_lr_scale", "batch_size",
                                "train_per_class", "test_per_class")}
    run = _teacher_run(s.profile, params)
    run.extra.update(label=TEACHER_LABEL, weights_source=getattr(model, "weights_source", None))
    return fit(model, train_loader, test_loader, Recipe.from_dict(s.settings), run=run,
               runtime=Runtime(seed=s["seed"], force=force),
               params=teacher_param_groups(model, s["backbone_lr_scale"]))


def load_teacher(profile: str) -> tuple[nn.Module, dict]:
    """The trained teacher of ``profile`` and its record.

    Raises ``FileNotFoundError`` naming notebook 03's teacher section when it is missing.
    """
    model = load_run_weights(build_teacher(), _teacher_run(profile), produced_by=TEACHER_PRODUCED_BY)
    return model, R.load_record(PART, TEACHER_RUN, profile)


def teacher_for_students(setup: Setup, train_set=None, test_set=None,
                         train_if_missing: bool = False) -> tuple[nn.Module, dict]:
    """The trained teacher; when it is missing and ``train_if_missing``, train it here on
    ``train_set`` / ``test_set`` with notebook 03's settings for the profile, and say so."""
    try:
        return load_teacher(setup.profile)
    except FileNotFoundError as missing:
        if not train_if_missing:
            raise
        print(f"{missing}\n-> training the teacher here, with notebook 03's {setup.profile} settings.")
        model = build_teacher(setup)
        return model, train_teacher(model, setup, *make_loaders(train_set, test_set, setup))


# --------------------------------------------------------------------------- students
def student_objective(lam: float, T: Optional[float], form: str = "mix",
                      teacher: Optional[TeacherSource] = None) -> Objective:
    """The student's loss: plain CE when ``lam == 0`` (no teacher needed), otherwise

    - ``form="mix"`` (section B): ``(1 - lam) CE + lam T^2 KL(P_T(T) || P_S(T))``, lam in [0, 1];
    - ``form="hinton"`` (section C): ``CE + lam T^2 KL(P_T(T) || P_S(T))``, lam >= 0;

    with the teacher's logits from ``teacher`` (a :class:`CachedLogits` of a
    :class:`TeacherLogits` table, or a :class:`~kdutils.distill.teachers.LiveTeacher`).
    The soft term is written as a KL divergence: the same gradients as the assignment's
    cross-entropy ``H(P_T, P_S)`` (they differ by the teacher's entropy, a constant), but
    it is 0 when the student matches the teacher, so the training loss stays readable
    (with H, ``lam T^2`` times the teacher's entropy, ~900 at T=20, would dominate it).
    """
    if form not in ("mix", "hinton"):
        raise ValueError(f"form must be 'mix' (section B) or 'hinton' (section C), got {form!r}")
    if lam == 0:
        return CrossEntropy()
    if T is None:
        raise ValueError(f"lam={lam} > 0 needs a temperature T")
    if teacher is None:
        raise ValueError(f"lam={lam} > 0 needs the teacher's logits (teacher_logits=TeacherLogits(...))")
    if form == "mix":
        return KDLoss(alpha=lam, tau=T, form="kl", teacher=teacher)
    return HintonKDLoss(lam=lam, tau=T, teacher=teacher)


def student_recipe_for(setup: Setup) -> Recipe:
    """The recipe of the section-B students (the teacher's optimizer family)."""
    s = setup
    return Recipe.from_dict(s.settings, epochs=s["student_epochs"], lr=s["student_lr"], warmup_epochs=0,
                            grad_clip=s["student_grad_clip"])


def search_recipe(epochs: int, lr_drop_epochs: int = 0) -> Recipe:
    """Section C's recipe: Adam (lr 1e-3, betas (0.9, 0.999), weight decay 1e-4);
    with ``lr_drop_epochs = k > 0`` the rate drops to 1e-4 for the last ``k`` epochs."""
    if not 0 <= lr_drop_epochs < epochs:
        raise ValueError(f"lr_drop_epochs must lie in [0, epochs={epochs}), got {lr_drop_epochs!r}")
    if lr_drop_epochs:
        return Recipe(epochs, optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="multistep",
                      milestones=(epochs - lr_drop_epochs,), gamma=0.1)
    return Recipe(epochs, optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="constant")


def train_student(part: str, name: str, profile: str, *, lam: float, T: Optional[float], loaders,
                  recipe: Recipe, pool_stride: int, teacher_logits: Optional[TeacherLogits] = None,
                  form: str = "mix", label: Optional[str] = None, params: Optional[Mapping] = None,
                  force: bool = False, seed: int = 0) -> dict:
    """Train one ``student_cnn`` with :func:`student_objective` as run ``<part>/<name>``.

    ``loaders`` is the (train, test) pair of :func:`make_loaders`; ``recipe`` is
    :func:`student_recipe_for` or :func:`search_recipe`. The record's ``params`` hold
    ``T``, ``lam``, the loss form and the pooling stride (what tables and heat maps read),
    plus ``params``. The student's initial weights are drawn from ``seed``, so all
    students of a table start alike. Returns the record.
    """
    teacher = CachedLogits(teacher_logits) if teacher_logits is not None and lam != 0 else None
    objective = student_objective(lam, T, form, teacher)
    run_params = {"T": None if T is None or lam == 0 else float(T), "lam": float(lam), "form": form,
                  "pool_stride": pool_stride, **(params or {})}
    torch.manual_seed(seed)  # every student starts from the same weights: a fair comparison
    model = build_model("student_cnn", 10, pool_stride=pool_stride)
    run = Run(part, name, profile, run_params, extra={"label": label or name})
    return fit(model, loaders[0], loaders[1], recipe, objective, run, runtime=Runtime(seed=seed, force=force))


def search_trials(pairs: Sequence[Mapping], round_no: int, profile: str, *, loaders, epochs: int,
                  pool_stride: int, teacher_logits: TeacherLogits, force: bool = False, seed: int = 0) -> list:
    """Section C: one short Hinton-form student per ``{"T", "lam"}`` pair of a search round.

    Runs are named ``r<round>_<i>_T<T>_lam<lam>`` under :data:`SEARCH_PART` with
    :func:`search_recipe` (constant Adam rate); returns their records.
    """
    return [train_student(SEARCH_PART, f"r{round_no}_{i:02d}_{make_run_name(p, ('T', 'lam'))}", profile,
                          lam=p["lam"], T=p["T"], loaders=loaders, recipe=search_recipe(epochs),
                          pool_stride=pool_stride, teacher_logits=teacher_logits, form="hinton",
                          label=f"round {round_no}, trial {i}", params={"round": round_no}, force=force, seed=seed)
            for i, p in enumerate(pairs)]


def kd_configs(lam: float = 0.1) -> list[dict]:
    """Section B's table rows: no KD, soft targets only at T=20, and KD1-3 (T=5, 10, 20)."""
    return [
        {"run": "student_lam0", "label": "Student, lambda=0 (no KD)", "lam": 0.0, "T": None},
        {"run": "student_lam1_T20", "label": "Student, lambda=1, T=20", "lam": 1.0, "T": 20.0},
        {"run": f"KD1_T5_lam{lam:g}", "label": f"KD1 (T=5, lambda={lam:g})", "lam": lam, "T": 5.0},
        {"run": f"KD2_T10_lam{lam:g}", "label": f"KD2 (T=10, lambda={lam:g})", "lam": lam, "T": 10.0},
        {"run": f"KD3_T20_lam{lam:g}", "label": f"KD3 (T=20, lambda={lam:g})", "lam": lam, "T": 20.0},
    ]


def kd_table(records: Sequence[Mapping]):
    """A display table of teacher and students, one row per record (index: the label);
    print it with ``table_markdown(df, floatfmt="g")`` to keep lambda's digits.

    Columns: ``T`` and ``lambda`` (``-`` where they do not apply), parameters (millions),
    epochs, train top-1 (running accuracy over the last training epoch, augmented images,
    weights changing during the epoch) and test top-1 (after the last epoch, T = 1).
    """
    df = R.records_table(records, {
        "model": "label", "T": "params.T", "lambda": "params.lam", "parameters": "n_params",
        "epochs": "epochs_done", "train top-1 (%)": "last.train_top1", "test top-1 (%)": "last.test_top1",
    }, index="model")
    for col in ("T", "lambda"):
        df[col] = [f"{v:g}" if v == v and v is not None else "-" for v in df[col]]
    df["parameters"] = [f"{n / 1e6:.2f}M" for n in df["parameters"]]
    return df.round({"train top-1 (%)": 2, "test top-1 (%)": 2})


def search_scatter(records: Sequence[Mapping], title: str = "", metric: str = SEARCH_METRIC,
                   ranges: Optional[Mapping[str, Sequence[float]]] = None):
    """Test accuracy over (T, lambda) on log axes, one marker per trial (section C).

    Marker shape: the search round (``params.round``); colour: ``metric``; the best
    trial is ringed and labelled. ``ranges`` (``{"T": (lo, hi), "lam": (lo, hi)}``)
    draws the refined search box.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    df = R.records_table(records, {"T": "params.T", "lam": "params.lam", "acc": metric, "round": "params.round"})
    df = df.dropna(subset=["T", "lam", "acc"])
    if df.empty:
        raise ValueError(f"no record has params.T, params.lam and {metric!r}")
    df["round"] = df["round"].fillna(1).astype(int)
    T, lam, acc = (df[c].astype(float).tolist() for c in ("T", "lam", "acc"))
    rnd = df["round"].tolist()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    lo, hi = min(acc), max(acc)
    sc = None
    for r, marker in zip(sorted(set(rnd)), "os^D"):
        pick = [i for i, v in enumerate(rnd) if v == r]
        sc = ax.scatter([T[i] for i in pick], [lam[i] for i in pick], c=[acc[i] for i in pick], cmap="viridis",
                        vmin=lo, vmax=hi, marker=marker, s=70, edgecolors="k", linewidths=0.5,
                        label=f"round {r} ({len(pick)} trials)")
    best = max(range(len(acc)), key=acc.__getitem__)
    ax.scatter([T[best]], [lam[best]], s=260, facecolors="none", edgecolors="red", linewidths=1.5)
    ax.annotate(f"best {acc[best]:.1f}%", (T[best], lam[best]), textcoords="offset points", xytext=(-10, 10),
                ha="right", color="red")
    if ranges:
        (t0, t1), (l0, l1) = ranges["T"], ranges["lam"]
        ax.add_patch(Rectangle((t0, l0), t1 - t0, l1 - l0, fill=False, ls="--", color="grey",
                               label="refined range"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("temperature T (log)")
    ax.set_ylabel("lambda (log)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.colorbar(sc, ax=ax, label="test top-1 (%)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


__all__ = [
    "PART", "SEARCH_PART", "TEACHER_RUN", "TEACHER_PRODUCED_BY", "NORMALIZATION", "SETTINGS",
    "resolve_setup", "setup_table", "cifar10_sets", "make_loaders",
    "build_teacher", "teacher_param_groups", "train_teacher", "load_teacher", "teacher_for_students",
    "teacher_is_trained", "TeacherLogits", "CachedLogits",
    "student_objective", "student_recipe_for", "search_recipe", "train_student", "search_trials", "kd_configs",
    "kd_table", "SEARCH_METRIC",
    "search_scatter",
]


# =========================================================================== findings and report page
from kdutils.core import findings as F  # noqa: E402  (the part's text and page spec close the module)
from kdutils.core import report_spec as S  # noqa: E402

#: How section B's KD table is read (notebook part3_cifar10_resnet18_kd, after the table).
READING_KD = (
    "**The KD table.** The soft targets can only help as far as the teacher is better than the student, "
    "so the first question is whether they help at all relative to lambda=0; then how the temperature "
    "changes the result at lambda=0.1, and what lambda=1 (soft targets alone, no labels) costs. With the "
    "`quick` profile's weak, briefly trained teacher the differences are mostly noise; the `full` profile "
    "is the one to interpret."
)
#: How section C's search is read (notebook part3_hparam_search, after the verdict).
READING_SEARCH = (
    "**The search.** A short trial is a noisy, optimistic proxy for a long run (the ranking of pairs can "
    "change with training length), so the refined round narrows the range rather than trusting one "
    "winner, and the final run is compared with the same schedule without KD. In the `quick` and `smoke` "
    "profiles the teacher is weak and the trials are one epoch on a few hundred images, so the verdict "
    "only shows the pipeline working; the `full` profile's threshold is the one to judge."
)
#: Both readings: what part 3's report page prints under its findings.
OPINION = READING_KD + "\n\n" + READING_SEARCH


def _top1(record: Mapping) -> Optional[float]:
    return R.get_field(record, SEARCH_METRIC)


def n_test_images(profile: str) -> int:
    """CIFAR-10 test images every part-3 run of ``profile`` is measured on."""
    per_class = SETTINGS.get(profile, {}).get("test_per_class")
    return per_class * 10 if per_class else 10_000


def findings(records: Sequence[Optional[Mapping]], n_test: Optional[int] = None) -> list:
    """Sentences (Markdown) from the finished records of ``part3`` (section B: students
    against the student without KD) and ``part3_search`` (section C: best trial, final run
    against the same schedule without KD), on test top-1 after the last epoch; both
    notebooks and the report's page show them. ``n_test`` defaults to :func:`n_test_images`."""
    done = [r for r in records if R.is_finished(r)]
    if not done:
        return ["No run of part 3 has finished yet in this profile."]
    n_test = n_test_images(done[0].get("profile", "")) if n_test is None else n_test
    runs = {r["run"]: r for r in done if r.get("part") == PART}
    return _kd_findings(runs, n_test) + _search_findings([r for r in done if r.get("part") == SEARCH_PART], n_test)


def _kd_findings(runs: Mapping[str, Mapping], n_test: int) -> list:
    ref, teacher = runs.get("student_lam0"), runs.get(TEACHER_RUN)
    if ref is None or _top1(ref) is None:
        return []
    base = _top1(ref)
    out = [F.band_sentence(base, n_test)]
    if teacher is not None and _top1(teacher) is not None:
        noise = F.noise_band((_top1(teacher) + base) / 2, n_test)
        out.append(f"{F.compare('The teacher', _top1(teacher), 'the student without KD', base, noise)} "
                   "(test top-1 after the last epoch).")
    steps = []
    for name, r in runs.items():
        if r is ref or _top1(r) is None or not (name.startswith("student_") or name[:2] == "KD"):
            continue
        noise = F.noise_band((_top1(r) + base) / 2, n_test)
        out.append(F.compare(r.get("label") or name, _top1(r), "the student without KD", base, noise) + ".")
        steps.append(F.Step(r.get("label") or name, _top1(r) - base, noise))
    return out + F.tally(steps, what="KD setting", count=True)


def _search_findings(search: Sequence[Mapping], n_test: int) -> list:
    trials = [r for r in search if not r["run"].startswith("final_") and _top1(r) is not None]
    finals = [r for r in search if r["run"].startswith("final_") and _top1(r) is not None]
    no_kd = next((r for r in finals if r["run"] == "final_no_kd"), None)
    final = next((r for r in reversed(finals) if r is not no_kd), None)
    out = []
    if trials:
        best = max(trials, key=_top1)
        out.append(f"Search: the best of {len(trials)} trials had T={best['params']['T']:g}, "
                   f"lambda={best['params']['lam']:g} ({_top1(best):.2f}% test top-1 after its last epoch).")
    if final is not None and no_kd is not None:
        name = f"The final student (T={final['params']['T']:g}, lambda={final['params']['lam']:g})"
        noise = F.noise_band((_top1(final) + _top1(no_kd)) / 2, n_test)
        out.append(F.compare(name, _top1(final), "the same schedule without KD", _top1(no_kd), noise) + ".")
    return out


#: Part 3's page of the report (kdutils.tools.report); its text is :func:`findings` and :data:`OPINION`.
REPORT = S.PartSpec(
    part="part3",
    title="Part 3 - CIFAR-10 KD: ResNet18 teacher (8x8x512), small student, T and lambda",
    notebooks=("part3_cifar10_resnet18_kd.ipynb", "part3_hparam_search.ipynb"),
    data="CIFAR-10",
    tables=(
        S.Table("A/B: teacher and students, L = (1-lambda) CE + lambda T^2 H(p_T, p_S)", "part3",
                (S.LABEL, S.T_COL, S.LAMBDA_COL, S.PARAMS, S.FLOPS, S.TOP1, S.TOP5, S.LAST_TOP1, S.EPOCHS,
                 S.TRAIN_TIME), runs=r"^(teacher|student_|KD\d)"),
        S.Table("C: random log-uniform (T, lambda) search, Hinton form; final students and best trials",
                "part3_search", (S.LABEL, S.T_COL, S.LAMBDA_COL, S.TOP1, S.LAST_TOP1, S.EPOCHS, S.TRAIN_TIME),
                order="metric", max_rows=6),
    ),
    figures=("part3_heatmap", "part3_search_scatter"),
    baseline=r"^student_lam0$",
    contenders=r"^(student_|KD\d)",
    opinion_title="Reading",
)
