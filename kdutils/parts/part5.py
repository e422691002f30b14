"""Part 5 (food-11): data splits, loaders, pseudo-labels, compression results, leaderboard.

Used by ``notebooks/part5_food11_compression.ipynb``:

- :func:`food_root` and :func:`load_food_splits`: the four splits of the food-11 homework
  layout (``training/labeled/<cc>``, ``training/unlabeled/00``, ``validation/<cc>``,
  ``testing/00``) as in-memory uint8 :class:`~kdutils.core.data.ImageSet` s, decoded once and
  resized to ``size`` x ``size`` (cached). The number of classes comes from the folders.
- :func:`training_loader` and :func:`eval_loader`: batched augmentation (random ``crop`` +
  flip) for training, a centre ``crop`` for evaluation; ImageNet mean/std for every model
  (the statistics a pretrained teacher expects; the students see the same tensors).
- :func:`select_confident` and :func:`add_pseudo_labels`: semi-supervised learning with
  the teacher's pseudo-labels on the unlabeled images whose confidence (softmax at
  T = 1) reaches a threshold.
- :func:`train_run`: ``fit`` with a record carrying a label and the float32 size.
- :func:`try_build_model`, :func:`skipped_record`, :func:`computed_record`: records for
  runs that cannot happen (pretrained weights offline) and for results that ``fit`` does
  not produce (pruning, quantization).
- :func:`make_fine_tuner`, :func:`storage_variant`, :func:`prune_with_fine_tuning`,
  :func:`plot_pruning`: the compression experiments (over :mod:`kdutils.compress`).
- :class:`Study` (profile, splits, loaders, run names) and the notebook's steps, each one
  call: :func:`train_teachers`, :func:`train_students`, :func:`train_semi_supervised`,
  :func:`train_comparison`, :func:`storage_records`, :func:`pruning_records`; its tables
  and figures (:func:`kd_table`, :func:`quant_table`, :func:`prune_table`,
  :func:`compare_table`, :func:`before_after_table`, :func:`plot_kd_curves`,
  :func:`plot_accuracy_vs_size`) and :func:`findings`, the summary sentences.
- :func:`write_leaderboard_csv`, :func:`write_test_predictions`, :func:`write_leaderboard`:
  the leaderboard file ``Id,Category``.
"""
from __future__ import annotations

import copy
import csv
import io
import os
import time
from dataclasses import dataclass, replace
from numbers import Integral
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from kdutils.compress import prune, quantize, size
from kdutils.core import data as D
from kdutils.core import records as R
from kdutils.core.fileio import atomic_torch_save, atomic_write_text
from kdutils.core.findings import (
    Step,
    band_sentence,
    compare,
    noise_band,
    tally,
    verdict_words,
)
from kdutils.core.loader import GpuLoader
from kdutils.core.profiles import Setup, results_dir, runs_dir
from kdutils.core.recipe import Recipe
from kdutils.core.train import Run, Runtime, evaluate, fit, predict_logits
from kdutils.distill.objectives import KDLoss
from kdutils.distill.teachers import LiveTeacher
from kdutils.models import build_model
from kdutils.models.mobile import match_width

PART = "part5"

#: Mean and std of the inputs of every part-5 model (ImageNet statistics).
NORMALIZATION = D.NORMALIZATION["imagenet"]

#: Storage formats compared by :func:`storage_variant`.
STORAGE_METHODS = ("float32", "float16", "minmax8", "torch_int8")

#: File name suffixes of test images (dropped from the leaderboard ids).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# --------------------------------------------------------------------------- data
def food_root(setup: Setup, food_dir: str = "") -> Path:
    """Where the food-11 tree is: ``food_dir`` if given; generated JPEGs in smoke;
    ``<data_root>/food10`` in quick when it exists (the 10-class sample), else
    ``<data_root>/food11``. Raises ``FileNotFoundError`` naming the fix."""
    if food_dir:
        root = Path(food_dir).expanduser()
    elif setup.data_root is None:
        return D.smoke_root("food11")
    elif setup.profile == "quick" and (setup.data_root / "food10").is_dir():
        root = setup.data_root / "food10"
    else:
        root = setup.data_root / "food11"
    if not (root / "training" / "labeled").is_dir():
        raise FileNotFoundError(
            f"no food-11 tree at {root} (expected training/labeled/<cc>/*.jpg, validation/<cc>/*.jpg, "
            "training/unlabeled/00/*.jpg, testing/00/*.jpg). Set the notebook parameter food_dir "
            "or data_root (see data/README.md)."
        )
    return root


@dataclass
class FoodSplits:
    """The four splits; ``unlabeled`` and ``testing`` carry label -1."""

    labeled: D.ImageSet
    unlabeled: D.ImageSet
    validation: D.ImageSet
    testing: D.ImageSet
    root: Path

    @property
    def classes(self) -> list:
        return self.labeled.classes

    @property
    def num_classes(self) -> int:
        return self.labeled.num_classes

    def counts(self):
        """Images per split and their stored size (a DataFrame)."""
        import pandas as pd

        rows = [(name, len(s), "x".join(map(str, s.images.shape[1:3])))
                for name, s in (("labeled", self.labeled), ("unlabeled", self.unlabeled),
                                ("validation", self.validation), ("testing", self.testing))]
        return pd.DataFrame(rows, columns=["split", "images", "stored size"]).set_index("split")


def load_food_splits(root, size: int, labeled_per_class: Optional[int] = None,
                     validation_per_class: Optional[int] = None, unlabeled_max: Optional[int] = None,
                     seed: int = 0) -> FoodSplits:
    """Load the food-11 splits at ``size`` x ``size`` (optionally subsampled, deterministically).

    The classes are the folders of ``training/labeled``; ``validation`` must have the same
    folders (else ``ValueError``). ``unlabeled_max`` keeps a random subset of that many
    unlabeled images (the test split is always kept whole: one prediction per image).
    """
    labeled = D.load_food11(root, "labeled", size)
    validation = D.load_food11(root, "validation", size)
    if validation.classes != labeled.classes:
        raise ValueError(
            f"validation classes {validation.classes} differ from the labeled training classes "
            f"{labeled.classes} under {root}; both need the same <cc> folders"
        )
    unlabeled = D.load_food11(root, "unlabeled", size)
    testing = D.load_food11(root, "testing", size)
    if labeled_per_class:
        labeled = labeled.per_class(labeled_per_class, seed)
    if validation_per_class:
        validation = validation.per_class(validation_per_class, seed)
    if unlabeled_max and unlabeled_max < len(unlabeled):
        g = torch.Generator().manual_seed(seed)
        unlabeled = unlabeled.subset(torch.randperm(len(unlabeled), generator=g)[:unlabeled_max].sort().values)
    return FoodSplits(labeled, unlabeled, validation, testing, Path(root))


def training_loader(train_set: D.ImageSet, batch_size: int, crop: int, seed: int = 0, device="auto") -> GpuLoader:
    """Shuffled batches with a random ``crop`` (no padding) and horizontal flips."""
    mean, std = NORMALIZATION
    return GpuLoader(train_set, batch_size, train=True, crop=crop, flip=True, mean=mean, std=std, device=device,
                     seed=seed)


def eval_loader(images: D.ImageSet, crop: int, batch_size: int = 256, device="auto") -> GpuLoader:
    """Fixed-order, centre-cropped batches (for unlabeled/test inference and evaluation)."""
    mean, std = NORMALIZATION
    return GpuLoader(images, batch_size, train=False, crop=crop, mean=mean, std=std, device=device)


# --------------------------------------------------------------------------- the study
@dataclass
class Study:
    """What every part-5 experiment shares: the resolved profile, the splits and two loaders.

    :meth:`run` names an experiment's record and checkpoint, its params carrying the data
    settings. ``force`` retrains / recomputes finished runs; ``device`` and ``log`` go to
    every loader and training call (the tests pass ``device="cpu", log="off"``).
    """

    setup: Setup
    splits: FoodSplits
    force: bool = False
    device: str = "auto"
    log: str = "auto"

    def __post_init__(self):
        s = self.settings
        self.train_loader = training_loader(self.splits.labeled, s["batch_size"], s["crop"], device=self.device)
        self.val_loader = eval_loader(self.splits.validation, s["crop"], device=self.device)

    @property
    def settings(self) -> dict:
        return self.setup.settings

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    def recipe(self, epochs: str, lr: str) -> Recipe:
        """The one recipe of part 5 (the profile's optimizer and weight decay, cosine schedule)
        with the epochs and rate of the settings named ``epochs`` and ``lr``."""
        s = self.settings
        return Recipe(s[epochs], optimizer=s["optimizer"], lr=s[lr], weight_decay=s["weight_decay"])

    @property
    def fine_tune_recipe(self) -> Recipe:
        """The pruning steps' fine-tuning: one epoch at ``prune_lr``."""
        return replace(self.recipe("student_epochs", "prune_lr"), epochs=1)

    @property
    def runtime(self) -> Runtime:
        """How every training call runs: ``device``, ``log`` and ``force``."""
        return Runtime(device=self.device, log=self.log, force=self.force)

    @property
    def compressed_dir(self) -> Path:
        """Where the stored (quantized, pruned) models go: ``runs/compressed/<profile>/part5``."""
        return runs_dir() / "compressed" / self.setup.profile / PART

    def run(self, name: str, **params) -> Run:
        """The :class:`Run` of one experiment; ``params`` extend (or override) the data settings."""
        s = self.settings
        base = dict(data=str(self.splits.root), size=s["size"], crop=s["crop"], n_train=len(self.splits.labeled),
                    n_val=len(self.splits.validation))
        return Run(PART, name, self.setup.profile, {**base, **params})


# --------------------------------------------------------------------------- pseudo-labels
def select_confident(logits: torch.Tensor, threshold: float):
    """The rows of ``logits`` whose top softmax probability (T = 1) is ``>= threshold``.

    Returns ``(index, labels, confidence)``: positions of the selected rows, their argmax
    classes, and the confidence of *every* row (for a histogram). ``threshold`` in [0, 1].
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the pseudo-label threshold must lie in [0, 1], got {threshold!r}")
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, classes), got shape {tuple(logits.shape)}")
    confidence, labels = logits.float().softmax(dim=1).max(dim=1)
    index = torch.nonzero(confidence >= threshold).flatten()
    return index, labels[index], confidence


def add_pseudo_labels(labeled: D.ImageSet, unlabeled: D.ImageSet, logits: torch.Tensor,
                      threshold: float) -> Tuple[D.ImageSet, dict]:
    """The labeled set plus the unlabeled images the teacher labels with confidence ``>= threshold``.

    ``logits`` are the teacher's outputs for ``unlabeled`` in order (e.g. from
    ``predict_logits(teacher, eval_loader(unlabeled, crop))``). Returns the combined
    set and a summary dict (``n_unlabeled``, ``n_pseudo``, ``threshold``,
    ``pseudo_per_class``, ``mean_confidence``).
    """
    if len(logits) != len(unlabeled):
        raise ValueError(f"{len(logits)} rows of logits for {len(unlabeled)} unlabeled images")
    if logits.shape[1] != labeled.num_classes:
        raise ValueError(f"logits have {logits.shape[1]} classes, the labeled set {labeled.num_classes}")
    if labeled.images.shape[1:] != unlabeled.images.shape[1:]:
        raise ValueError(
            f"labeled images {tuple(labeled.images.shape[1:])} and unlabeled images "
            f"{tuple(unlabeled.images.shape[1:])} differ in size; load both at the same size"
        )
    index, labels, confidence = select_confident(logits, threshold)
    picked = unlabeled.subset(index)
    combined = D.ImageSet(
        torch.cat([labeled.images, picked.images]),
        torch.cat([labeled.labels, labels.to(labeled.labels.dtype)]),
        list(labeled.classes),
        list(labeled.files) + list(picked.files),
        f"{labeled.source} + pseudo-labelled {unlabeled.source}",
    )
    info = {
        "threshold": float(threshold),
        "n_unlabeled": len(unlabeled),
        "n_pseudo": len(index),
        "pseudo_per_class": torch.bincount(labels, minlength=labeled.num_classes).tolist(),
        "mean_confidence": float(confidence.mean()) if len(confidence) else None,
    }
    return combined, info


# --------------------------------------------------------------------------- training and records
def train_run(model: nn.Module, run: Run, label: str, train_loader, val_loader, recipe: Recipe,
              objective=None, runtime: Runtime = Runtime(), extra: Optional[Mapping] = None) -> dict:
    """``fit`` under ``run`` with a record that also carries ``label`` (the tables' row
    name), ``size_bytes`` (the float32 state dict as ``torch.save`` writes it) and ``extra``."""
    run.extra.update(label=label, size_bytes=size.serialized_size(model.state_dict()), **(extra or {}))
    return fit(model, train_loader, val_loader, recipe, objective, run, runtime=runtime)


def try_build_model(name: str, num_classes: int, **options):
    """``build_model``, but a ``RuntimeError`` (pretrained weights that cannot be fetched
    offline) returns ``(None, reason)`` instead of failing; success gives ``(model, "")``."""
    try:
        return build_model(name, num_classes, **options), ""
    except RuntimeError as e:
        return None, str(e)


def skipped_record(run: Run, note: str, reason: str = "", **extra) -> dict:
    """Save and return a record with ``status: "skipped"``, a short ``note`` for tables and
    the full ``reason``. It does not count as finished, so a later run trains it."""
    rec = R.new_record(run.part, run.name, run.profile, run.params, status="skipped", note=note,
                       reason=reason or note, **extra)
    R.save_record(rec)
    return rec


def computed_record(run: Run, compute: Callable[[], Mapping], force: bool = False) -> dict:
    """The finished record of ``run``, or ``compute()``'s values saved as a complete record.

    For results that ``fit`` does not produce (pruning, quantization): ``compute`` returns
    a dict merged into the record (with ``seconds``, the time it took). A finished record
    is returned as is unless ``force``.
    """
    rec = R.load_record(run.part, run.name, run.profile)
    if R.is_finished(rec) and not force:
        return rec
    t0 = time.perf_counter()
    values = dict(compute())
    rec = R.new_record(run.part, run.name, run.profile, run.params, **values)
    rec.update(status="complete", seconds=time.perf_counter() - t0,
               finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    R.save_record(rec)
    return rec


# --------------------------------------------------------------------------- compression
def make_fine_tuner(train_loader, recipe: Recipe, device="auto") -> Callable[[nn.Module], dict]:
    """A ``fine_tune_fn`` for :func:`kdutils.compress.prune.iterative_prune`: ``fit`` with
    ``recipe`` without a ``Run`` (nothing written, no log). Each call uses the next seed,
    so the fine-tuning steps see different augmentations."""
    calls = {"n": 0}

    def fine_tune(model: nn.Module) -> dict:
        calls["n"] += 1
        return fit(model, train_loader, None, recipe, runtime=Runtime(device=device, log="off", seed=calls["n"]))

    return fine_tune


def storage_variant(model: nn.Module, build: Callable[[], nn.Module], method: str, path,
                    val_loader) -> dict:
    """Store ``model`` in format ``method``, load it back into ``build()`` and evaluate it.

    ``method``: ``float32`` / ``float16`` (``compress.size.save_state``), ``minmax8`` (8-bit
    min-max codes, ``compress.quantize.save_quantized``), ``torch_int8`` (PyTorch's dynamic int8
    ``Linear`` layers; the file is its ``state_dict``, evaluated on the CPU). Returns
    ``method``, ``file``, ``size_bytes``, ``val_top1``, ``val_top5``; a ``torch_int8``
    that this PyTorch cannot do returns ``note`` with the reason and no accuracy.
    """
    path = Path(path)
    device = "auto"
    if method == "float32":
        nbytes = size.save_state(model, path)
        restored = size.load_state(path, build())
    elif method == "float16":
        nbytes = size.save_state(model, path, dtype=torch.float16)
        restored = size.load_state(path, build())
    elif method == "minmax8":
        nbytes = quantize.save_quantized(model, path)
        restored = quantize.load_quantized(path, build())
    elif method == "torch_int8":
        try:
            restored = quantize.torch_dynamic_int8(model)
        except RuntimeError as e:
            return {"method": method, "file": str(path), "size_bytes": None, "note": str(e)}
        atomic_torch_save(restored.state_dict(), path)  # holds packed int8 weights, not plain tensors
        nbytes = size.file_size(path)
        device = "cpu"  # the int8 kernels run on the CPU only
    else:
        raise ValueError(f"method must be one of {STORAGE_METHODS}, got {method!r}")
    ev = evaluate(restored, val_loader, device=device)
    return {"method": method, "file": str(path), "size_bytes": nbytes, "val_top1": ev["top1"],
            "val_top5": ev["top5"]}


def prune_with_fine_tuning(model: nn.Module, rate: float, steps: int, fine_tune, val_loader,
                           path) -> dict:
    """Iterative magnitude pruning of a copy of ``model`` (``compress.prune.iterative_prune``).

    Every step prunes ``rate`` of the remaining weights, runs ``fine_tune`` and evaluates
    on ``val_loader``. The pruned copy is made permanent and saved (float32) at ``path``.
    Returns ``history`` (one row per step: ``step``, ``sparsity``, ``nonzero_params``,
    ``val_top1``), ``start`` and ``final`` (its first and last rows), ``size_bytes`` (the
    dense file: zeros cost as much as other numbers) and ``zipped_bytes`` (what a
    compressor makes of the zeros).
    """
    pruned = copy.deepcopy(model)
    history = prune.iterative_prune(pruned, rate, steps, fine_tune,
                                    lambda m: {"val_top1": evaluate(m, val_loader)["top1"]})
    prune.remove_pruning(pruned)
    nbytes = size.save_state(pruned, path)
    return {"history": history, "start": history[0], "final": history[-1], "size_bytes": nbytes,
            "zipped_bytes": size.zipped_size(path)}


def plot_pruning(records: Sequence[Mapping], title: str = ""):
    """Non-zero parameters (x) vs validation top-1 (y), one line per pruning rate."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, rec in enumerate(records):
        hist = rec["history"]
        ax.plot([h["nonzero_params"] for h in hist], [h["val_top1"] for h in hist], "o-", color=f"C{i % 10}",
                label=f"rate {rec['params']['rate']:g} per step")
        for h in hist:
            ax.annotate(f"{100 * h['sparsity']:.0f}%", (h["nonzero_params"], h["val_top1"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 4))
    ax.invert_xaxis()  # pruning goes from right (dense) to left (sparse)
    ax.set_xlabel("non-zero parameters (pruning proceeds to the left; labels: sparsity)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(title or "Iterative magnitude pruning with fine-tuning")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------- the notebook's steps: training
#: The runs of the KD table, in its order; the students among them.
KD_RUNS = ("teacher_scratch", "teacher_pretrained", "student", "student_kd_scratch", "student_kd_pretrained",
           "student_kd_semi")
STUDENT_RUNS = ("student", "student_kd_scratch", "student_kd_pretrained", "student_kd_semi")
TEACHER_PRETRAINED = "teacher ResNet-18 (ImageNet, fine-tuned)"


def kd_objective(settings: Mapping, teacher: nn.Module) -> KDLoss:
    """The part-5 KD loss: ``KDLoss(alpha, T)`` distilling from the live ``teacher``."""
    return KDLoss(settings["alpha"], settings["T"], teacher=LiveTeacher(teacher))


def _pretrained_teacher(study: Study, weights_path: str):
    """``(model or None, reason, note)``: the ImageNet ResNet-18, unless the profile or the
    network says no."""
    if not study.settings["try_pretrained"]:
        return None, "the smoke profile downloads nothing", "not tried in the smoke profile"
    model, reason = try_build_model("resnet18_food", study.num_classes, weights="IMAGENET1K_V1",
                                    weights_path=weights_path or None)
    return model, reason, "not available offline (ImageNet weights could not be loaded)"


def train_teachers(study: Study, scratch: nn.Module, pretrained_weights: str = "") -> Tuple[dict, str]:
    """Train the ResNet-18 teacher ``scratch`` and, where its ImageNet weights load, fine-tune a
    pretrained one (else a ``skipped`` record says why).

    ``pretrained_weights``: a local weights file (empty: torchvision's ``IMAGENET1K_V1``).
    Returns ``({"scratch": model, ["pretrained": model]}, a line saying what happened to
    the pretrained teacher)``.
    """
    train_run(scratch, study.run("teacher_scratch", model="resnet18_food", weights="random"),
              "teacher ResNet-18 (scratch)", study.train_loader, study.val_loader,
              study.recipe("teacher_epochs", "teacher_lr"), runtime=study.runtime)
    teachers = {"scratch": scratch}
    run = study.run("teacher_pretrained", model="resnet18_food", weights=pretrained_weights or "IMAGENET1K_V1")
    model, reason, note = _pretrained_teacher(study, pretrained_weights)
    if model is None:
        skipped_record(run, note, reason, label=TEACHER_PRETRAINED)
        return teachers, f"Pretrained teacher skipped: {reason}"
    train_run(model, run, TEACHER_PRETRAINED, study.train_loader, study.val_loader,
              study.recipe("finetune_epochs", "finetune_lr"), runtime=study.runtime)
    teachers["pretrained"] = model
    return teachers, f"Pretrained teacher weights: {model.weights_source}"


def _kd_params(settings: Mapping) -> dict:
    return dict(model="food_student", T=settings["T"], alpha=settings["alpha"])


def train_students(study: Study, student: nn.Module, teachers: Mapping[str, nn.Module]) -> dict:
    """Train ``student`` from scratch (cross-entropy), then one fresh student distilled from each
    teacher (``student_kd_scratch``, ``student_kd_pretrained``; a missing teacher gives a
    ``skipped`` record). Returns the trained students by run name."""
    recipe, runtime = study.recipe("student_epochs", "lr"), study.runtime
    train_run(student, study.run("student", model="food_student", teacher="none"), "student (scratch, CE)",
              study.train_loader, study.val_loader, recipe, runtime=runtime)
    students = {"student": student}
    for key in ("scratch", "pretrained"):
        run = study.run(f"student_kd_{key}", teacher=f"teacher_{key}", **_kd_params(study.settings))
        label = f"student KD <- teacher ({key})"
        if key not in teachers:
            skipped_record(run, f"teacher_{key} not available", label=label)
            continue
        model = build_model("food_student", study.num_classes)
        train_run(model, run, label, study.train_loader, study.val_loader, recipe,
                  kd_objective(study.settings, teachers[key]), runtime)
        students[run.name] = model
    return students


def best_teacher(teachers: Mapping[str, nn.Module], profile: str) -> str:
    """The key of the teacher with the best final validation top-1 (from its record)."""
    acc = {k: R.load_record(PART, f"teacher_{k}", profile)["last"]["test_top1"] for k in teachers}
    return max(acc, key=acc.get)


def train_semi_supervised(study: Study, teacher_key: str, teacher: nn.Module) -> Tuple[nn.Module, dict]:
    """KD from ``teacher`` on the labeled images plus the unlabeled ones it labels with confidence
    ``>= pseudo_threshold`` (run ``student_kd_semi``). Returns the student and the pseudo-label
    summary of :func:`add_pseudo_labels` (also kept in the record as ``pseudo_labels``)."""
    s, splits = study.settings, study.splits
    logits = predict_logits(teacher, eval_loader(splits.unlabeled, s["crop"], device=study.device),
                            device=study.device)
    semi_set, pseudo = add_pseudo_labels(splits.labeled, splits.unlabeled, logits, s["pseudo_threshold"])
    loader = training_loader(semi_set, s["batch_size"], s["crop"], device=study.device)
    model = build_model("food_student", study.num_classes)
    run = study.run("student_kd_semi", teacher=f"teacher_{teacher_key}", n_train=len(semi_set),
                    pseudo_threshold=s["pseudo_threshold"], n_pseudo=pseudo["n_pseudo"], **_kd_params(s))
    train_run(model, run, "student KD + pseudo-labels", loader, study.val_loader, study.recipe("student_epochs", "lr"),
              kd_objective(s, teacher), study.runtime, extra={"pseudo_labels": pseudo})
    return model, pseudo


def describe_pseudo_labels(teacher_key: str, pseudo: Mapping) -> str:
    """One sentence on the pseudo-labels: how many, at which threshold, per class."""
    mean = pseudo["mean_confidence"]
    mean = "n/a" if mean is None else f"{mean:.2f}"
    return (f"teacher_{teacher_key} labels {pseudo['n_pseudo']} of {pseudo['n_unlabeled']} unlabeled images with "
            f"confidence >= {pseudo['threshold']} (mean confidence {mean}); per class: "
            f"{pseudo['pseudo_per_class']}")


def train_comparison(study: Study, kinds: Sequence[str] = ("conv", "dwsep", "group")) -> list:
    """Train one ``<kind>_net`` per block kind, each at the width that gives about
    ``compare_params`` parameters (``match_width``). Returns their records."""
    s, records = study.settings, []
    for kind in kinds:
        width = match_width(kind, s["compare_params"], study.num_classes)
        model = build_model(f"{kind}_net", study.num_classes, width=width)
        records.append(train_run(model, study.run(f"{kind}_net", model=f"{kind}_net", width=width), f"{kind}_net",
                                 study.train_loader, study.val_loader, study.recipe("compare_epochs", "lr"),
                                 runtime=study.runtime))
    return records


def records_by_run(profile: str) -> dict:
    """This part's records of ``profile``, by run name."""
    return {r["run"]: r for r in R.load_records(PART, profile)}


def final_student_name(students: Iterable[str], records: Mapping[str, Mapping]) -> str:
    """The trained student (``students``: their run names, or a dict by run name) with the best
    final validation top-1 (the one compressed next)."""
    return max((n for n in STUDENT_RUNS if n in students), key=lambda n: records[n]["last"]["test_top1"])


# --------------------------------------------------------------------------- the notebook's steps: compression
def storage_path(folder, source: str, method: str) -> Path:
    """The file of ``source`` stored in format ``method``."""
    return Path(folder) / f"{source}-{method}.pt"


def storage_records(study: Study, source: str, model: nn.Module, arch: str, methods: Sequence[str],
                    **build_options) -> list:
    """:func:`storage_variant` of ``model`` (run ``source``) in every format of ``methods``, each
    as a computed record ``quant-<source>-<method>``; ``arch`` and ``build_options`` rebuild
    an empty model to load the stored file into."""
    def build() -> nn.Module:
        return build_model(arch, study.num_classes, **build_options)

    records = []
    for method in methods:
        run = study.run(f"quant-{source}-{method}", model=source, method=method)
        path = storage_path(study.compressed_dir, source, method)
        records.append(computed_record(run, lambda: {
            "label": f"{source} ({method})", **storage_variant(model, build, method, path, study.val_loader)},
            study.force))
    return records


def pruning_records(study: Study, source: str, model: nn.Module, rates: Sequence[float]) -> list:
    """:func:`prune_with_fine_tuning` of ``model`` (run ``source``) at every rate of ``rates``
    (``prune_steps`` steps, one epoch at ``prune_lr`` after each), each as a computed record
    ``prune-<source>-rate<rate>``."""
    s, records = study.settings, []
    for rate in rates:
        run = study.run(f"prune-{source}-rate{rate:g}", model=source, rate=rate, steps=s["prune_steps"],
                        fine_tune="1 epoch, lr {}".format(s["prune_lr"]))
        path = study.compressed_dir / f"{source}-pruned-{rate:g}.pt"
        records.append(computed_record(run, lambda: {
            "label": f"{source} pruned {rate:g}/step",
            **prune_with_fine_tuning(model, rate, s["prune_steps"],
                                     make_fine_tuner(study.train_loader, study.fine_tune_recipe,
                                                     study.device),
                                     study.val_loader, path)}, study.force))
    return records


# --------------------------------------------------------------------------- the notebook's tables and figures
def kd_table(records: Mapping[str, Mapping]):
    """Teachers and students (rows in :data:`KD_RUNS` order): model, parameters, teacher, T,
    alpha, training images, final and best validation top-1, time, status."""
    table = R.records_table([records[n] for n in KD_RUNS], {
        "run": "run", "model": "label", "params": "n_params", "teacher": "params.teacher", "T": "params.T",
        "alpha": "params.alpha", "train images": "params.n_train", "val top-1 %": "last.test_top1",
        "best epoch top-1 %": "best.test_top1", "train s": "train_seconds", "status": "status", "note": "note",
    }, index="run")
    table[["params", "train images"]] = table[["params", "train images"]].astype("Int64")
    return table


def plot_kd_curves(records: Mapping[str, Mapping]):
    """Validation top-1 per epoch of the finished runs of the KD table."""
    from kdutils.core.plots import plot_curves

    trained = [records[n] for n in KD_RUNS if R.is_finished(records[n])]
    return plot_curves(trained, ("test_top1",), "validation top-1 (%)", "Teachers and students on food-11",
                       labels=[r["label"] for r in trained])


def quant_table(quant: Sequence[Mapping]):
    """Storage formats: file bytes, validation top-1 and ``x smaller than float32`` (against the
    same model's float32 file). The ``note`` column is dropped when every row lacks one."""
    table = R.records_table(quant, {"model": "params.model", "format": "method", "file bytes": "size_bytes",
                                    "val top-1 %": "val_top1", "note": "note"})
    float32_bytes = table[table["format"] == "float32"].set_index("model")["file bytes"]
    table["x smaller than float32"] = float32_bytes.reindex(table["model"]).values / table["file bytes"]
    return table.dropna(axis=1, how="all")


def prune_table(prune_records: Sequence[Mapping]):
    """One row per pruning rate: steps, accuracy before and after, final sparsity, sizes."""
    return R.records_table(prune_records, {
        "rate per step": "params.rate", "steps": "params.steps", "val top-1 % before": "start.val_top1",
        "final sparsity": "final.sparsity", "non-zero params": "final.nonzero_params",
        "val top-1 % after": "final.val_top1",
        "file bytes": "size_bytes", "zipped bytes": "zipped_bytes"}, index="rate per step")


def compare_table(compare: Sequence[Mapping]):
    """The block-kind comparison: width, parameters, bytes, FLOPs, accuracy, seconds per epoch."""
    return R.records_table(compare, {"model": "label", "width": "params.width", "params": "n_params",
                                     "float32 bytes": "size_bytes", "FLOPs": "flops",
                                     "val top-1 %": "last.test_top1", "s / epoch": "epoch_seconds"}, index="model")


def before_after_table(quant: Sequence[Mapping], records: Mapping[str, Mapping]):
    """The float32 and 8-bit files of :func:`storage_records` (teacher first) with their
    parameters, ``x smaller than teacher`` and ``points vs teacher`` (against the first row)."""
    shown = [r for r in quant if r["method"] in ("float32", "minmax8")]
    table = R.records_table(shown, {"model": "label", "source": "params.model", "file bytes": "size_bytes",
                                    "val top-1 %": "val_top1"})
    table.insert(1, "params", [records[s]["n_params"] for s in table["source"]])
    teacher = table.iloc[0]
    table["x smaller than teacher"] = teacher["file bytes"] / table["file bytes"]
    table["points vs teacher"] = table["val top-1 %"] - teacher["val top-1 %"]
    return table.drop(columns=["source"]).set_index("model")


def plot_accuracy_vs_size(quant: Sequence[Mapping], compare: Sequence[Mapping], prune_records: Sequence[Mapping]):
    """Validation top-1 against the file size (log scale): storage formats (o), the ~1 MB
    architectures (s, float32 size) and the pruned students (^, zipped size)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = [(r["label"], r["size_bytes"], r["val_top1"], "o") for r in quant if r.get("val_top1") is not None]
    points += [(r["label"], r["size_bytes"], r["last"]["test_top1"], "s") for r in compare]
    points += [(f"{r['label']} (zipped)", r["zipped_bytes"], r["final"]["val_top1"], "^") for r in prune_records]
    for i, (label, nbytes, top1, marker) in enumerate(points):
        ax.scatter(nbytes / 1024, top1, marker=marker, color=plt.cm.tab20(i % 20), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("file size on disk (KiB, log scale)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("Accuracy vs size: o storage formats, s ~1 MB architectures, ^ pruned (zipped)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


# --------------------------------------------------------------------------- leaderboard
def image_id(name: Union[str, os.PathLike]) -> str:
    """Test-image file name -> submission id: ``"test/0001.jpg"`` -> ``"0001"``."""
    p = Path(name)
    return p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name


def _class_ids(ids: Sequence[str], predictions: Sequence, num_classes: int) -> list:
    """The predictions as plain ints in ``[0, num_classes)`` (``ValueError`` naming the id)."""
    classes = []
    for i, c in zip(ids, predictions):
        if hasattr(c, "item"):  # numpy / torch scalars
            c = c.item()
        if isinstance(c, float) and c.is_integer():
            c = int(c)
        if isinstance(c, bool) or not isinstance(c, Integral) or not 0 <= c < num_classes:
            raise ValueError(
                f"prediction for id {i!r} is {c!r}; class ids must be ints in "
                f"[0, {num_classes - 1}] (pass argmax indices, not logits or names)"
            )
        classes.append(int(c))
    return classes


def write_leaderboard_csv(path, ids: Sequence[Union[str, os.PathLike]], predictions: Iterable,
                          num_classes: int = 11) -> Path:
    """Write the Kaggle-style submission: header ``Id,Category``, one row per test image.

    ``ids`` are test file names or ids (file names are reduced with :func:`image_id`), in
    the order of ``predictions`` (class indices: a list, numpy array or tensor of ints in
    ``[0, num_classes)``). Raises ``ValueError`` on a length mismatch, duplicate ids or an
    invalid class id. The file is written atomically. Returns the path.
    """
    ids = [image_id(i) for i in ids]
    if isinstance(predictions, torch.Tensor):
        predictions = predictions.detach().cpu().tolist()
    else:
        predictions = list(predictions)
    if len(ids) != len(predictions):
        raise ValueError(
            f"{len(ids)} ids but {len(predictions)} predictions; there must be exactly one "
            "prediction per test image"
        )
    if not ids:
        raise ValueError("no test images: ids and predictions are empty")
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"duplicate ids in the submission: {dup}")
    classes = _class_ids(ids, predictions, num_classes)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["Id", "Category"])
    writer.writerows(zip(ids, classes))
    return atomic_write_text(path, buf.getvalue())


def write_test_predictions(model: nn.Module, test_set: D.ImageSet, path, crop: int, num_classes: int,
                           device="auto") -> Path:
    """Predict every test image (centre crop) and write the ``Id,Category`` leaderboard CSV.

    Ids are the test file names without extension (``0007.jpg`` -> ``0007``), one row per
    image in file order; categories are class indices in ``[0, num_classes)`` (the test
    split's single folder says nothing about the classes). Returns the path.
    """
    if not test_set.files or len(test_set.files) != len(test_set):
        raise ValueError("the test set needs its file names (one per image) to name the rows")
    logits = predict_logits(model, eval_loader(test_set, crop, device=device), device=device)
    if logits.shape[1] != num_classes:
        raise ValueError(f"the model predicts {logits.shape[1]} classes, the data set has {num_classes}")
    return write_leaderboard_csv(path, test_set.files, logits.argmax(1), num_classes=num_classes)


def leaderboard_path(profile: str) -> Path:
    """``results/<profile>/part5/leaderboard.csv``."""
    return results_dir() / profile / PART / "leaderboard.csv"


def write_leaderboard(study: Study, source: str) -> Path:
    """The leaderboard file (:func:`leaderboard_path`) of the student ``source`` after 8-bit
    quantization: its ``minmax8`` file of :func:`storage_records` loaded back, the model one
    would ship."""
    model = quantize.load_quantized(storage_path(study.compressed_dir, source, "minmax8"),
                                    build_model("food_student", study.num_classes))
    return write_test_predictions(model, study.splits.testing, leaderboard_path(study.setup.profile),
                                  study.settings["crop"], study.num_classes, device=study.device)


# --------------------------------------------------------------------------- findings
NOTHING_YET = "No student of part 5 has finished training in this profile yet, so there is nothing to report."


def _top1(rec: Mapping) -> float:
    return rec["last"]["test_top1"]


def _finished(by_run: Mapping[str, Mapping], names: Iterable[str]) -> list:
    return [n for n in names if R.is_finished(by_run.get(n))]


def _setting_sentence(by_run: Mapping[str, Mapping], num_classes: Optional[int]) -> str:
    student, teacher = by_run["student"], by_run.get("teacher_scratch")
    classes = f", {num_classes} classes" if num_classes else ""
    epochs = f"teacher {teacher.get('epochs')} epochs, " if R.is_finished(teacher) else ""
    return (f"Profile {student['profile']} on {student.get('device', 'an unrecorded device')}: "
            f"{student['params']['n_train']} labeled images{classes}, {student['params']['crop']}px crops; "
            f"{epochs}students {student.get('epochs')} epochs.")


def _kd_sentences(by_run: Mapping[str, Mapping], n_test: Optional[int]) -> list:
    """Each distilled student against the student trained from scratch, judged against the noise band."""
    base, out, steps = _top1(by_run["student"]), [], []
    for run in _finished(by_run, ("student_kd_scratch", "student_kd_pretrained", "student_kd_semi")):
        rec = by_run[run]
        delta, noise = _top1(rec) - base, noise_band((_top1(rec) + base) / 2, n_test)
        out.append(f"{rec['label']}: {_top1(rec):.1f}% vs {base:.1f}% from scratch "
                   f"({delta:+.1f} points, {verdict_words(delta, noise)}).")
        steps.append(Step(rec["label"], delta, noise))
    return out + tally(steps, what="KD variant")


def _size_sentences(by_run: Mapping[str, Mapping], final: str, n_test: Optional[int]) -> list:
    """The teacher's float32 file against the final student's 8-bit file, and each storage
    format of the final student against its float32 file."""
    out = []
    teachers = _finished(by_run, ("teacher_scratch", "teacher_pretrained"))
    t32 = by_run.get(f"quant-{max(teachers, key=lambda n: _top1(by_run[n]))}-float32") if teachers else None
    s8, f32 = by_run.get(f"quant-{final}-minmax8"), by_run.get(f"quant-{final}-float32")
    if R.is_finished(t32) and R.is_finished(s8):
        t, s = t32["val_top1"], s8["val_top1"]
        points, noise = s - t, noise_band((s + t) / 2, n_test)
        out.append(f"Teacher {t32['label']}: {t32['size_bytes'] / 2**20:.1f} MiB, {t:.1f}%; final student "
                   f"{s8['label']}: {s8['size_bytes'] / 1024:.0f} KiB "
                   f"({t32['size_bytes'] / s8['size_bytes']:.0f}x smaller), {s:.1f}% "
                   f"({points:+.1f} points, {verdict_words(points, noise)}).")
    if not R.is_finished(f32):
        return out
    for fmt in ("float16", "minmax8", "torch_int8"):
        rec = by_run.get(f"quant-{final}-{fmt}")
        if R.is_finished(rec) and rec.get("val_top1") is not None:
            delta = rec["val_top1"] - f32["val_top1"]
            noise = noise_band((rec["val_top1"] + f32["val_top1"]) / 2, n_test)
            out.append(f"{fmt}: {f32['size_bytes'] / rec['size_bytes']:.2f}x smaller than float32, "
                       f"{delta:+.1f} points ({verdict_words(delta, noise)}).")
    return out


def _pruning_sentences(records: Iterable[Mapping], final: str, n_test: Optional[int]) -> list:
    """Each pruning rate of the final student: sparsity reached, accuracy before and after."""
    pruned = sorted((r for r in records if r["run"].startswith(f"prune-{final}-rate") and R.is_finished(r)),
                    key=lambda r: r["params"]["rate"])
    out = []
    for r in pruned:
        before, after = r["start"]["val_top1"], r["final"]["val_top1"]
        noise = noise_band((before + after) / 2, n_test)
        out.append(f"Pruning {r['params']['rate']:g}/step: sparsity {100 * r['final']['sparsity']:.0f}% after "
                   f"{r['params']['steps']} steps, {before:.1f}% -> {after:.1f}% "
                   f"({verdict_words(after - before, noise)}).")
    return out


def _comparison_sentence(by_run: Mapping[str, Mapping], n_test: Optional[int]) -> list:
    """The three block kinds at matched parameter counts: accuracies, the best and its margin."""
    nets = [by_run[n] for n in _finished(by_run, ("conv_net", "dwsep_net", "group_net"))]
    if not nets:
        return []
    ranked = sorted(nets, key=_top1, reverse=True)
    sizes = [r["n_params"] for r in nets]
    text = (f"At matched size ({min(sizes) / 1e3:.0f}k-{max(sizes) / 1e3:.0f}k parameters): "
            + ", ".join(f"{r['label']} {_top1(r):.1f}%" for r in nets) + f"; best: {ranked[0]['label']}")
    if len(ranked) > 1:
        best, second = ranked[0], ranked[1]
        noise = noise_band((_top1(best) + _top1(second)) / 2, n_test)
        text += f" ({compare(best['label'], _top1(best), second['label'], _top1(second), noise)})"
    return [text + "."]


def findings(records: Iterable[Optional[Mapping]], n_test: Optional[int] = None,
             num_classes: Optional[int] = None) -> list:
    """The measured sentences of part 5, from its run records alone (the notebook's last section
    displays them; a report can print the same list).

    The setting; how far apart two accuracies must be on ``n_test`` validation images
    (default: the ``n_val`` the records store) to be told apart
    (:func:`kdutils.core.findings.band_sentence`); each KD student against the student from
    scratch; the teacher against the final student after 8-bit quantization; each storage
    format against float32; each pruning rate; the three block kinds. Every difference is
    judged against the noise band.
    """
    recs = [r for r in (records.values() if isinstance(records, Mapping) else records) if r]
    by_run = {r["run"]: r for r in recs}
    if not R.is_finished(by_run.get("student")):
        return [NOTHING_YET]
    if n_test is None:
        n_test = by_run["student"]["params"].get("n_val")
    out = [_setting_sentence(by_run, num_classes), band_sentence(_top1(by_run["student"]), n_test)]
    out += _kd_sentences(by_run, n_test)
    final = final_student_name(_finished(by_run, STUDENT_RUNS), by_run)
    out += _size_sentences(by_run, final, n_test) + _pruning_sentences(recs, final, n_test)
    return out + _comparison_sentence(by_run, n_test)


__all__ = [
    "PART",
    "NORMALIZATION",
    "STORAGE_METHODS",
    "food_root",
    "FoodSplits",
    "load_food_splits",
    "training_loader",
    "eval_loader",
    "select_confident",
    "add_pseudo_labels",
    "train_run",
    "try_build_model",
    "skipped_record",
    "computed_record",
    "make_fine_tuner",
    "storage_variant",
    "prune_with_fine_tuning",
    "plot_pruning",
    "write_test_predictions",
    "IMAGE_SUFFIXES",
    "image_id",
    "write_leaderboard_csv",
    "Study",
    "KD_RUNS",
    "STUDENT_RUNS",
    "kd_objective",
    "train_teachers",
    "train_students",
    "best_teacher",
    "train_semi_supervised",
    "describe_pseudo_labels",
    "train_comparison",
    "records_by_run",
    "final_student_name",
    "storage_path",
    "storage_records",
    "pruning_records",
    "kd_table",
    "plot_kd_curves",
    "quant_table",
    "prune_table",
    "compare_table",
    "before_after_table",
    "plot_accuracy_vs_size",
    "leaderboard_path",
    "write_leaderboard",
    "NOTHING_YET",
    "findings",
]


# =========================================================================== report page
from kdutils.core import report_spec as S  # noqa: E402  (the page spec closes the module)

#: Part 5's page of the report (kdutils.tools.report); its text is :func:`findings` (and
#: ``OPINION`` when the part defines one).
REPORT = S.PartSpec(
    part="part5",
    title="Part 5 - Food-11: student <= 100k parameters, KD, compression",
    notebooks=("part5_food11_compression.ipynb",),
    data="food-11 (validation split as the test set)",
    tables=(
        S.Table("Teachers and students: KD from each teacher, semi-supervised KD", "part5",
                (S.LABEL, S.PARAMS, S.FLOPS, S.TOP1, S.TOP5, S.EPOCHS, S.TRAIN_TIME), runs=r"^(teacher_|student)"),
        S.Table("Compression of the final student: storage formats and iterative pruning", "part5",
                (S.LABEL, S.Column("file size", "size_bytes", "bytes"), S.Column("zipped", "zipped_bytes", "bytes"),
                 S.Column("sparsity", "final.sparsity", "share"),
                 S.Column("val top-1 %", "val_top1|final.val_top1", "pct"), S.Column("time", "seconds", "seconds")),
                runs=r"^(quant|prune)-", max_rows=8),
        S.Table("Plain vs depthwise-separable vs group convolutions at matched parameters", "part5",
                (S.LABEL, S.Column("width", "params.width", "num"), S.PARAMS, S.FLOPS, S.TOP1, S.EPOCHS,
                 S.TRAIN_TIME), runs=r"^(conv|dwsep|group)_net$"),
    ),
    figures=("part5_accuracy_vs_size", "part5_pruning"),
    baseline=r"^student$",
    contenders=r"^student",
    sizes=("params.n_train", "params.n_val"),
)
