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
from kdutils.core.seeds import check_seeds, describe, difference, group_by_base, seed_table, seeded_name
from kdutils.core.train import Run, Runtime, evaluate, fit, load_run_weights
from kdutils.distill.objectives import HintonKDLoss, KDLoss
from kdutils.distill.teachers import CachedLogits, TeacherLogits, TeacherSource
from kdutils.models import build_model

#: Records of notebook 03 (teacher, KD table, sweep) and of notebook 04 (search).
PART = "part3"
SEARCH_PART = "part3_search"
TEACHER_RUN = "teacher"
#: The assignment's teacher: torchvision's ResNet-18 with strides changed for an 8x8x512 map.
TEACHER_ARCH = "resnet18_cifar_8x8"
TEACHER_LABEL = "Teacher (ResNet-18, 8x8x512)"
#: The label of a stand-in teacher of another architecture (the quick profile's).
STAND_IN_LABEL = "Teacher ({arch}, quick stand-in for ResNet-18)"
TEACHER_PRODUCED_BY = "notebooks/part3_cifar10_resnet18_kd.ipynb (teacher section)"
#: What section B's tables and heat map show: test top-1 after the last epoch (nothing is
#: chosen by it: no choice of epoch or setting on the test set).
TABLE_METRIC = "last.test_top1"
#: What section C's search ranks its trials by: validation top-1 after the trial's last
#: epoch, on images held out from the training set (:func:`holdout_split`); trials never
#: see the test set, which measures the final students only.
SEARCH_METRIC = "val.top1"

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
#: two identical smoke runs, and in quick (seed 1 of 3, epoch 1, at lr 0.05); clipping the
#: gradient norm at 5 keeps both finite.
#: ``teacher_arch``: the assignment's teacher is :data:`TEACHER_ARCH`; on a CPU without its
#: ImageNet weights it trains at a few images per second, so the quick profile stands in a
#: CIFAR ResNet-20 (0.27M parameters, ~40x cheaper per image) trained on more images per
#: class (``teacher_train_per_class``) and more epochs than the students: a teacher that is
#: clearly better than its students, which is what section B needs to show KD at work.
#: ``seeds``: every student row of section B is trained once per seed (its initialisation);
#: tables show the mean and standard deviation (:mod:`kdutils.core.seeds`).
SETTINGS = {
    "full": dict(FIXED, train_per_class=None, test_per_class=None, batch_size=128,
                 weights="IMAGENET1K_V1", weights_path=None, epochs=30, lr=0.05, backbone_lr_scale=0.2,
                 warmup_epochs=1, student_epochs=30, student_lr=0.01, pool_stride=1, student_grad_clip=None,
                 teacher_arch=TEACHER_ARCH, teacher_train_per_class=None, seeds=(0,)),
    "quick": dict(FIXED, train_per_class=200, test_per_class=200, batch_size=64,
                  weights="random", weights_path=None, epochs=8, lr=0.05, backbone_lr_scale=1.0,
                  warmup_epochs=0, student_epochs=4, student_lr=0.05, pool_stride=2, student_grad_clip=5.0,
                  teacher_arch="resnet20", teacher_train_per_class=500, seeds=(0, 1, 2)),
    "smoke": dict(FIXED, train_per_class=4, test_per_class=4, batch_size=8,
                  weights="random", weights_path=None, epochs=1, lr=0.05, backbone_lr_scale=1.0,
                  warmup_epochs=0, student_epochs=1, student_lr=0.05, pool_stride=2, student_grad_clip=5.0,
                  teacher_arch=TEACHER_ARCH, teacher_train_per_class=4, seeds=(0, 1)),
}


def resolve_setup(profile: Optional[str] = None, data_root: Optional[str] = None,
                  overrides: Optional[Mapping] = None, rehearse: Optional[bool] = None) -> Setup:
    """The part-3 :class:`~kdutils.core.profiles.Setup` (``SETTINGS`` of the profile, non-None
    ``overrides`` applied; ``rehearse``: see :func:`kdutils.core.profiles.resolve`);
    validates ``weights`` and ``pool_stride``."""
    setup = resolve(profile, data_root, SETTINGS, overrides, rehearse=rehearse)
    if setup["weights"] not in ("IMAGENET1K_V1", "random"):
        raise ValueError(f"weights must be 'IMAGENET1K_V1' or 'random' (empty: the profile's default), "
                         f"got {setup['weights']!r}")
    if setup["pool_stride"] not in (1, 2):
        raise ValueError(f"pool_stride must be 1 (the assignment's student) or 2, got {setup['pool_stride']!r}")
    if setup["teacher_arch"] != TEACHER_ARCH and setup["weights"] != "random":
        raise ValueError(f"weights={setup['weights']!r} exist only for the ResNet-18 teacher; the "
                         f"{setup.profile} profile's teacher is {setup['teacher_arch']!r}: pass weights='random', "
                         f"or teacher_arch={TEACHER_ARCH!r}")
    setup.settings["seeds"] = check_seeds(setup["seeds"], "part 3 seeds")
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
    per_class = lambda n: "all" if n is None else f"{n} per class"  # noqa: E731
    n_train, n_test = per_class(s["train_per_class"]), per_class(s["test_per_class"])
    opt = "SGD, Nesterov" if s["nesterov"] else "SGD"
    rows = {
        "network": (teacher_label(s["teacher_arch"]), f"student_cnn, pool_stride={s['pool_stride']}"),
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
        "training images": (per_class(s["teacher_train_per_class"]), n_train),
        "seeds": (s["seed"], ", ".join(map(str, s["seeds"])) + " (one run per seed, mean and std in the table)"),
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


def teacher_label(arch: str) -> str:
    """The teacher's row label: the assignment's ResNet-18, or the stand-in named by ``arch``."""
    return TEACHER_LABEL if arch == TEACHER_ARCH else STAND_IN_LABEL.format(arch=arch)


def build_teacher(setup: Optional[Setup] = None, force: bool = False, arch: str = TEACHER_ARCH) -> nn.Module:
    """The teacher (``setup["teacher_arch"]``, else ``arch``) with 10 outputs, initialised as
    the setup says.

    When the teacher of this profile is already trained (and not ``force``), its weights
    come from the checkpoint anyway, so the model starts random and nothing is
    downloaded. Without a setup: random weights (to load a checkpoint into).
    """
    arch = setup["teacher_arch"] if setup is not None else arch
    options = {"weights": None} if arch == TEACHER_ARCH else {}
    if setup is None or (teacher_is_trained(setup.profile) and not force):
        return build_model(arch, 10, **options)
    torch.manual_seed(setup["seed"])  # the new classifier (and random weights) are drawn from the seed
    if arch != TEACHER_ARCH:
        return build_model(arch, 10)
    weights = None if setup["weights"] == "random" else setup["weights"]
    return build_model(arch, 10, weights=weights, weights_path=setup["weights_path"])


def resnet18_to_inspect(teacher: nn.Module) -> nn.Module:
    """``teacher`` when it is the assignment's ResNet-18, else a fresh random one (section A
    shows the adaptation to 32x32 whichever teacher the profile trains)."""
    return teacher if hasattr(teacher, "layer4") else build_model(TEACHER_ARCH, 10, weights=None)


def teacher_train_set(setup: Setup, train_set):
    """The teacher's training images: the students' ``train_set``, or, when the profile gives
    the teacher more images per class (``teacher_train_per_class``), that larger subset."""
    n = setup["teacher_train_per_class"]
    if n == setup["train_per_class"]:
        return train_set
    from kdutils.parts.part1 import cifar_sets

    return cifar_sets("cifar10", setup, n, setup["test_per_class"])[0]


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
                                "train_per_class", "test_per_class", "teacher_arch", "teacher_train_per_class")}
    params["n_train"] = train_loader.num_samples  # the teacher may see more images than the students
    run = _teacher_run(s.profile, params)
    run.extra.update(label=teacher_label(s["teacher_arch"]), weights_source=getattr(model, "weights_source", None))
    return fit(model, train_loader, test_loader, Recipe.from_dict(s.settings), run=run,
               runtime=Runtime(seed=s["seed"], force=force),
               params=teacher_param_groups(model, s["backbone_lr_scale"]))


def load_teacher(profile: str) -> tuple[nn.Module, dict]:
    """The trained teacher of ``profile`` and its record.

    Raises ``FileNotFoundError`` naming notebook 03's teacher section when it is missing.
    """
    record = R.load_record(PART, TEACHER_RUN, profile) or {}
    arch = (record.get("params") or {}).get("teacher_arch", TEACHER_ARCH)
    model = load_run_weights(build_teacher(arch=arch), _teacher_run(profile), produced_by=TEACHER_PRODUCED_BY)
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
        loaders = make_loaders(teacher_train_set(setup, train_set), test_set, setup)
        return model, train_teacher(model, setup, *loaders)


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
                  "pool_stride": pool_stride, "seed": seed, **(params or {})}
    torch.manual_seed(seed)  # every student starts from the same weights: a fair comparison
    model = build_model("student_cnn", 10, pool_stride=pool_stride)
    run = Run(part, name, profile, run_params, extra={"label": label or name})
    return fit(model, loaders[0], loaders[1], recipe, objective, run, runtime=Runtime(seed=seed, force=force))


def train_students(configs: Sequence[Mapping], setup: Setup, loaders, teacher_logits: Optional[TeacherLogits],
                   force: bool = False) -> list:
    """Section B: every config of :func:`kd_configs` once per seed of ``setup["seeds"]``
    (run ``<config run>`` for seed 0, ``<config run>_seed<s>`` for the others); returns the
    records in config order, seeds innermost."""
    return [train_student(PART, seeded_name(c["run"], seed), setup.profile, lam=c["lam"], T=c["T"],
                          label=c["label"], loaders=loaders, recipe=student_recipe_for(setup),
                          pool_stride=setup["pool_stride"], teacher_logits=teacher_logits, force=force, seed=seed)
            for c in configs for seed in setup["seeds"]]


def holdout_split(train_set, fraction: float, seed: int = 0) -> tuple:
    """``(fit_set, val_set)``: ``fraction`` of every class's training images (at least one)
    held out for validation, chosen by ``seed``; the search trains on ``fit_set`` and ranks
    its trials on ``val_set``."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must lie in (0, 1), got {fraction!r}")
    g = torch.Generator().manual_seed(seed)
    fit_idx, val_idx = [], []
    for c in torch.unique(train_set.labels).tolist():
        idx = torch.nonzero(train_set.labels == c).flatten()
        if len(idx) < 2:
            raise ValueError(f"class {c} has {len(idx)} training image(s): a validation split needs at least 2")
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        val_idx.append(idx[:k])
        fit_idx.append(idx[k:])
    return (train_set.subset(torch.cat(fit_idx).sort().values), train_set.subset(torch.cat(val_idx).sort().values))


def validation_callback(model: nn.Module, val_loader, trial=None):
    """``fit`` callback: validation loss and top-1/top-5 into every epoch's row
    (``val_loss``, ``val_top1``, ``val_top5``); with an Optuna ``trial``, the top-1 is
    reported and a trial its pruner stops raises ``optuna.TrialPruned``."""
    def callback(epoch: int, row: dict) -> None:
        ev = evaluate(model, val_loader)
        row.update(val_loss=ev["loss"], val_top1=ev["top1"], val_top5=ev["top5"])
        if trial is not None:
            import optuna

            trial.report(ev["top1"], epoch + 1)
            if trial.should_prune():
                raise optuna.TrialPruned(f"validation top-1 {ev['top1']:.2f}% after epoch {epoch + 1}")
    return callback


def trial_name(number: int, pair: Mapping, round_no: int) -> str:
    """The record name of search trial ``number``: ``r<round>_<number>_T<T>_lam<lam>``."""
    return f"r{round_no}_{number:02d}_{make_run_name(pair, ('T', 'lam'))}"


def search_trial(name: str, profile: str, *, T: float, lam: float, loaders, epochs: int, pool_stride: int,
                 teacher_logits: TeacherLogits, round_no: int = 1, force: bool = False, seed: int = 0,
                 trial=None) -> dict:
    """Section C: one short Hinton-form student as run ``part3_search/<name>``.

    ``loaders`` is ``(fit_loader, val_loader)``: it trains on the training images minus
    the held-out ones (:func:`holdout_split`) with :func:`search_recipe` and is measured on
    the held-out ones only (no test set). The record gets ``val`` (the last epoch's
    validation loss/top-1/top-5: :data:`SEARCH_METRIC`); a pruned trial's record gets
    status ``"pruned"``. Returns the record.
    """
    objective = student_objective(lam, T, "hinton", CachedLogits(teacher_logits))
    torch.manual_seed(seed)  # every trial starts from the same weights
    model = build_model("student_cnn", 10, pool_stride=pool_stride)
    run = Run(SEARCH_PART, name, profile, {"T": float(T), "lam": float(lam), "form": "hinton",
                                           "pool_stride": pool_stride, "seed": seed, "round": round_no},
              extra={"label": f"round {round_no}: T={T:g}, lambda={lam:g}", "evaluated_on": "validation",
                     "n_val": len(loaders[1].labels)})
    try:
        record = fit(model, loaders[0], None, search_recipe(epochs), objective, run,
                     runtime=Runtime(seed=seed, force=force), callbacks=[validation_callback(model, loaders[1], trial)])
    except Exception as stop:
        if type(stop).__name__ == "TrialPruned":
            _mark(run, "pruned")
        raise
    last = next((h for h in reversed(record.get("history", [])) if "val_top1" in h), None)
    if last is not None and "val" not in record:
        record["val"] = {"epoch": last["epoch"], "top1": last["val_top1"], "top5": last["val_top5"],
                         "loss": last["val_loss"]}
        R.save_record(record)
    return record


def _mark(run: Run, status: str) -> None:
    record = R.load_record(run.part, run.name, run.profile)
    if record is not None:
        R.save_record({**record, "status": status})


def run_search(study, n_total: int, profile: str, *, T_range, lam_range, round_no: int, **trial_kw) -> list:
    """Top the Optuna ``study`` up to ``n_total`` finished trials, training each in this
    process (:func:`search_trial`, the pair from :func:`kdutils.core.hparam.suggest_pair`);
    trials that workers (``python -m kdutils.tools.sweep --study part3-search``) or an
    earlier run finished are kept. Returns the records of the study's finished trials."""
    from kdutils.core import hparam

    def objective(trial) -> float:
        pair = hparam.suggest_pair(trial, T_range, lam_range)
        name = trial_name(trial.number, pair, round_no)
        trial.set_user_attr("run_name", name)
        trial.set_user_attr("round", round_no)
        record = search_trial(name, profile, **pair, round_no=round_no, trial=trial, **trial_kw)
        return R.get_field(record, SEARCH_METRIC)

    missing = n_total - len(hparam.finished_trials(study))
    if missing > 0:
        study.optimize(objective, n_trials=missing)
    return study_records(study, profile)


def search_table(records: Sequence[Mapping]):
    """Section C's trials, one row per record (index: the run): T, lambda, round, epochs
    trained, status and validation top-1 (the ranking metric; trials have no test column)."""
    df = R.records_table(records, {"run": "run", "T": "params.T", "lambda": "params.lam", "round": "params.round",
                                   "epochs": "epochs_done", "status": "status",
                                   "validation top-1 (%)": SEARCH_METRIC}, index="run")
    return df.round({"validation top-1 (%)": 2})


def study_records(study, profile: str) -> list:
    """The records of the study's finished trials (user attribute ``run_name``), in trial order."""
    from kdutils.core import hparam

    names = [t.user_attrs.get("run_name") for t in hparam.finished_trials(study)]
    return [r for n in names if n and (r := R.load_record(SEARCH_PART, n, profile)) is not None]


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
    """A display table of teacher and students, one row per model (index: the label), the
    runs of one label over several seeds folded into one row; print it with
    ``table_markdown(df, floatfmt="g")`` to keep lambda's digits.

    Columns: ``T`` and ``lambda`` (``-`` where they do not apply), parameters (millions),
    epochs, ``seeds`` (runs in the row), train top-1 (running accuracy over the last training
    epoch, augmented images, weights changing during the epoch; mean over seeds), test top-1
    (after the last epoch, T = 1; mean over seeds) and its standard deviation over seeds.
    """
    df = R.records_table(records, {
        "model": "label", "T": "params.T", "lambda": "params.lam", "parameters": "n_params",
        "epochs": "epochs_done", "train top-1 (%)": "last.train_top1", "test top-1 (%)": "last.test_top1",
    })
    folded = seed_table(df, ["model", "T", "lambda", "parameters", "epochs"],
                        ["train top-1 (%)", "test top-1 (%)"]).set_index("model")
    out = folded[["T", "lambda", "parameters", "epochs", "seeds"]].copy()
    out["train top-1 (%)"] = folded["train top-1 (%) mean"]
    out["test top-1 (%)"] = folded["test top-1 (%) mean"]
    out["test top-1 std"] = folded["test top-1 (%) std"]
    for col in ("T", "lambda"):
        out[col] = [f"{v:g}" if v == v and v is not None else "-" for v in out[col]]
    out["parameters"] = [f"{n / 1e6:.2f}M" for n in out["parameters"]]
    return out.round({"train top-1 (%)": 2, "test top-1 (%)": 2, "test top-1 std": 2})


def search_scatter(records: Sequence[Mapping], title: str = "", metric: str = SEARCH_METRIC,
                   ranges: Optional[Mapping[str, Sequence[float]]] = None):
    """Each trial's ``metric`` (validation top-1) over (T, lambda) on log axes, one marker per trial (section C).

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
    fig.colorbar(sc, ax=ax, label="validation top-1 (%)" if metric == SEARCH_METRIC else metric)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


__all__ = [
    "PART", "SEARCH_PART", "TEACHER_RUN", "TEACHER_PRODUCED_BY", "NORMALIZATION", "SETTINGS",
    "resolve_setup", "setup_table", "cifar10_sets", "make_loaders",
    "build_teacher", "teacher_param_groups", "train_teacher", "load_teacher", "teacher_for_students",
    "teacher_is_trained", "TeacherLogits", "CachedLogits",
    "student_objective", "student_recipe_for", "search_recipe", "train_student", "kd_configs",
    "kd_table", "SEARCH_METRIC", "TABLE_METRIC", "holdout_split", "validation_callback", "trial_name", "search_trial",
    "run_search", "study_records", "search_table",
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
    return R.get_field(record, TABLE_METRIC)


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


def _by_config(runs: Mapping[str, Mapping]) -> dict:
    """Test top-1 of the finished runs grouped by config (run name without ``_seed<s>``)."""
    return group_by_base(r for r in runs.values() if _top1(r) is not None)


def _kd_findings(runs: Mapping[str, Mapping], n_test: int) -> list:
    """Section B's sentences: each config's mean test top-1 over its seeds against the student
    without KD; a difference counts only beyond the larger of the seed spread
    (:func:`kdutils.core.seeds.difference`) and the test-set noise band."""
    groups = _by_config(runs)
    ref = groups.get("student_lam0")
    if not ref:
        return []
    base = [_top1(r) for r in ref]
    out = [F.band_sentence(sum(base) / len(base), n_test)]
    steps = []
    for name, group in groups.items():
        if name != TEACHER_RUN and (name == "student_lam0" or not (name.startswith("student_") or name[:2] == "KD")):
            continue
        diff = difference([_top1(r) for r in group], base)
        noise = F.noise_band(sum(base) / len(base) + diff.delta / 2, n_test)  # near the two means
        band = max(filter(None, (diff.spread, noise)), default=None)
        who = "The teacher" if name == TEACHER_RUN else group[0].get("label") or name
        out.append(f"{F.compare(who, diff.delta + sum(base) / len(base), 'the student without KD', sum(base) / len(base), band)}"
                   f" ({describe([_top1(r) for r in group])} vs {describe(base)}; band: the larger of the seed "
                   "spread and the test-set noise band).")
        if name != TEACHER_RUN:
            steps.append(F.Step(who, diff.delta, band))
    return out + F.tally(steps, what="KD setting", count=True)


def _search_findings(search: Sequence[Mapping], n_test: int) -> list:
    trials = [r for r in search if not r["run"].startswith("final_") and R.get_field(r, SEARCH_METRIC) is not None]
    finals = [r for r in search if r["run"].startswith("final_") and _top1(r) is not None]
    no_kd = next((r for r in finals if r["run"] == "final_no_kd"), None)
    final = next((r for r in reversed(finals) if r is not no_kd), None)
    out = []
    if trials:
        best = max(trials, key=lambda r: R.get_field(r, SEARCH_METRIC))
        out.append(f"Search: the best of {len(trials)} trials, ranked on images held out from training, had "
                   f"T={best['params']['T']:g}, lambda={best['params']['lam']:g} "
                   f"({R.get_field(best, SEARCH_METRIC):.2f}% validation top-1 after its last epoch).")
    if final is not None and no_kd is not None:
        name = f"The final student (T={final['params']['T']:g}, lambda={final['params']['lam']:g})"
        noise = F.noise_band((_top1(final) + _top1(no_kd)) / 2, n_test)
        out.append(F.compare(name, _top1(final), "the same schedule without KD", _top1(no_kd), noise) + ".")
    return out


#: The search trials' ranking column: validation top-1 after the last epoch (no test column).
VAL_TOP1 = S.Column("val top-1 %", SEARCH_METRIC, "pct")

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
        S.Table("C: random log-uniform (T, lambda) search, Hinton form: best trials by validation top-1",
                "part3_search", (S.LABEL, S.T_COL, S.LAMBDA_COL, VAL_TOP1, S.EPOCHS, S.TRAIN_TIME),
                runs=r"^(?!final_)", order="metric", max_rows=4, metric=VAL_TOP1),
        S.Table("C: the final students, measured once on the test set", "part3_search",
                (S.LABEL, S.T_COL, S.LAMBDA_COL, S.TOP1, S.LAST_TOP1, S.EPOCHS, S.TRAIN_TIME), runs=r"^final_"),
    ),
    figures=("part3_heatmap", "part3_search_scatter"),
    baseline=r"^student_lam0$",
    contenders=r"^(student_|KD\d)",
    opinion_title="Reading",
)


# --------------------------------------------------------------------------- notebook parameters
from kdutils.core import params as P  # noqa: E402  (the notebooks' parameter specs close the module)

#: What the KD notebook's ``parameters`` cell may hold; its next cell checks them before any work.
PARAMETERS = {
    **P.COMMON,
    "weights": P.text(("", "IMAGENET1K_V1", "random"), help="the teacher's start; empty: the profile's"),
    "weights_path": P.text(help="a local torchvision resnet18 state dict; empty: none"),
    "epochs": P.integer(1, optional=True, help="teacher epochs"),
    "student_epochs": P.integer(1, optional=True, help="student epochs"),
    "pool_stride": P.integer(choices=(1, 2), optional=True, help="the student's max-pool stride"),
    "mode": P.text(("", "all", "single"), help="the whole notebook or one student (sweeps)"),
    "T": P.number(0, low_open=True, help="temperature of the single run"),
    "lam": P.number(0, help="lambda, the weight of the soft term"),
    "run_name": P.name("record name of the single run; empty: T<T>_lam<lam>"),
}

#: What the search notebook's ``parameters`` cell may hold.
SEARCH_PARAMETERS = {
    **P.COMMON,
    "n_trials": P.integer(1, optional=True, help="first-round trials"),
    "T_range": P.numbers(0, min_len=2, max_len=2, low_open=True, increasing=True, help="[low, high] of T"),
    "lam_range": P.numbers(0, min_len=2, max_len=2, low_open=True, increasing=True, help="[low, high] of lambda"),
    "refine": P.flag("a second round around the best trials"),
    "threshold": P.number(0, 100, optional=True, help="test top-1 (%) the final student should exceed"),
    "seed": P.integer(0, help="seed of the sampled (T, lambda) pairs"),
    "refine_sampler": P.text(("tpe", "random"), help="sampler of the refined round"),
    "pruner": P.text(("none", "median"), help="stop trials below the median validation accuracy early"),
    "storage": P.text(help="Optuna storage URL; empty: SQLite under results/<profile>/part3/"),
    "val_fraction": P.number(0, 1, low_open=True, high_open=True, optional=True,
                             help="share of the training images held out for validation"),
    "mode": P.text(("", "search", "trial"), help="the whole search, or one trial (for sweep workers)"),
    "T": P.number(0, low_open=True, optional=True, help="temperature of the single trial"),
    "lam": P.number(0, optional=True, help="lambda of the single trial"),
    "run_name": P.name("record name of the single trial"),
    "trial_round": P.integer(1, 2, help="search round of the single trial"),
}
