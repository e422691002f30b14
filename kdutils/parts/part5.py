"""Part 5 (food-11): data splits, loaders, pseudo-labels, compression results, leaderboard.

Used by ``notebooks/part5_food11_compression.ipynb``:

- :func:`food_root` and :func:`load_food_splits`: the four splits of the food-11 homework
  layout (``training/labeled/<cc>``, ``training/unlabeled/00``, ``validation/<cc>``,
  ``testing/00``) as in-memory uint8 :class:`~kdutils.core.data.ImageSet` s, decoded once and
  resized to ``size`` x ``size`` (cached). The number of classes comes from the folders.
  :func:`student_labels`: the students' labeled set cut to fewer images per class than the
  teacher's (the quick profile).
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
- :class:`Study` (profile, splits, loaders, run names, the students' seeds, the teachers'
  logits shared by the students) and the notebook's steps, each one call:
  :func:`build_teacher`, :func:`train_teachers`, :func:`train_students`,
  :func:`train_semi_supervised` (every student once per seed), :func:`train_comparison`,
  :func:`storage_records`, :func:`teacher_storage_records`, :func:`pruning_records`; its tables
  and figures (:func:`kd_table`, :func:`quant_table`, :func:`prune_table`,
  :func:`compare_table`, :func:`before_after_table`, :func:`plot_kd_curves`,
  :func:`plot_accuracy_vs_size`) and :func:`findings`, the summary sentences.
- :func:`write_leaderboard_csv`, :func:`write_test_predictions`, :func:`write_leaderboard`:
  the leaderboard file ``Id,Category``.
"""
from __future__ import annotations

import copy
import csv
import importlib.util
import io
import json
import os
import statistics
import time
from dataclasses import dataclass, replace
from numbers import Integral
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from kdutils.compress import prune, quantize, size
from kdutils.compress.latency import cpu_latency_rounds, paired_speedup
from kdutils.core import data as D
from kdutils.core import distributed as DP
from kdutils.core import records as R
from kdutils.core.fileio import atomic_write_text
from kdutils.core.findings import (
    Step,
    band_sentence,
    compare,
    noise_band,
    tally,
    verdict_words,
)
from kdutils.core.counting import count_flops, count_params
from kdutils.core.loader import GpuLoader
from kdutils.core.profiles import Setup, resolve, results_dir, runs_dir
from kdutils.core.recipe import Recipe
from kdutils.core.seeds import base_name, check_seeds, describe, difference, mean_std, seed_of, seeded_name
from kdutils.core.train import Run, Runtime, evaluate, fit, predict_logits
from kdutils.distill.objectives import KDLoss
from kdutils.distill.teachers import CachedLogits, LiveTeacher, TeacherLogits
from kdutils.models import build_model
from kdutils.models.mobile import match_width

PART = "part5"

#: Mean and std of the inputs of every part-5 model (ImageNet statistics).
NORMALIZATION = D.NORMALIZATION["imagenet"]

#: Storage formats compared by :func:`storage_variant`.
STORAGE_METHODS = ("float32", "float16", "minmax8", "int8_x86")

#: File name suffixes of test images (dropped from the leaderboard ids).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# --------------------------------------------------------------------------- data
def food_root(setup: Setup, food_dir: str = "") -> Path:
    """Where the food-11 tree is: ``food_dir`` if given; generated JPEGs in smoke; else the
    folder :func:`kdutils.core.datasets.obtain` finds or fetches under ``data_root``: in quick
    ``food10/`` (a 10-class sample), the course's ``food-11/`` (or ``food11/``), else the
    downloaded pizza/steak/sushi sample in the food-11 layout; in full the course's
    ``food-11/`` (or its ``food-11.zip``, unpacked). Raises ``FileNotFoundError`` naming the fix."""
    from kdutils.core import datasets

    if food_dir:
        root = Path(food_dir).expanduser()
    elif setup.data_root is None:
        return D.smoke_root("food11")
    else:
        try:
            root = datasets.obtain("food-quick" if setup.profile == "quick" else "food-11", setup.data_root)
        except datasets.DataUnavailable as e:
            raise datasets.DataUnavailable(f"{e}\nOr set the notebook parameter food_dir to a food-11 tree.") from None
        if datasets.note_of(root):
            print(f"food: {datasets.note_of(root)}")  # the quick stand-in: how it differs from food-11
    if not (root / "training" / "labeled").is_dir():
        raise FileNotFoundError(
            f"no food-11 tree at {root} (expected training/labeled/<cc>/*.jpg, validation/<cc>/*.jpg, "
            "training/unlabeled/00/*.jpg, testing/00/*.jpg). Set the notebook parameter food_dir "
            "or data_root (see data/README.md)."
        )
    return root


@dataclass
class FoodSplits:
    """The four splits; ``unlabeled`` and ``testing`` carry label -1.

    ``labeled`` is what the students learn from; ``teacher_labeled``, when set, is the
    larger labeled set the teacher trains on (:func:`student_labels`: the quick profile's
    students get fewer labels than their teacher), else the teacher trains on ``labeled``.
    """

    labeled: D.ImageSet
    unlabeled: D.ImageSet
    validation: D.ImageSet
    testing: D.ImageSet
    root: Path
    teacher_labeled: Optional[D.ImageSet] = None

    @property
    def classes(self) -> list:
        return self.labeled.classes

    @property
    def num_classes(self) -> int:
        return self.labeled.num_classes

    @property
    def teacher_set(self) -> D.ImageSet:
        """The labeled images the teacher trains on."""
        return self.labeled if self.teacher_labeled is None else self.teacher_labeled

    def counts(self):
        """Images per split and their stored size (a DataFrame); with a larger teacher set,
        its row ``labeled (teacher)`` and the students' ``labeled (students)``."""
        import pandas as pd

        labeled = [("labeled", self.labeled)] if self.teacher_labeled is None else [
            ("labeled (teacher)", self.teacher_labeled), ("labeled (students)", self.labeled)]
        rows = [(name, len(s), "x".join(map(str, s.images.shape[1:3])))
                for name, s in (*labeled, ("unlabeled", self.unlabeled),
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


def student_labels(splits: FoodSplits, per_class: Optional[int], seed: int = 0) -> FoodSplits:
    """The splits with the students' labeled set cut to ``per_class`` images per class
    (:meth:`~kdutils.core.data.ImageSet.per_class`: drawn by file name with ``seed``, the same
    on every machine) while the teacher keeps every labeled image (``teacher_labeled``). The
    images left out are used by no student: not as labeled images, not as unlabeled ones
    (the teacher trained on them, so its pseudo-labels there would be its training labels).
    ``None``, or a count no class exceeds, returns ``splits`` unchanged."""
    if per_class is None:
        return splits
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"student_labeled_per_class must be an int >= 1 (or None: all), got {per_class!r}")
    if splits.teacher_labeled is not None:
        raise ValueError("these splits already hold the students' subset; cut the teacher's splits instead")
    if int(torch.bincount(splits.labeled.labels).max()) <= per_class:
        return splits
    return replace(splits, labeled=splits.labeled.per_class(per_class, seed), teacher_labeled=splits.labeled)


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
    every loader and training call (the tests pass ``device="cpu", log="off"``). ``seed``
    is the seed of the runs trained once (teachers, comparison nets): the initial weights
    of every model built to be trained (``build_model(..., seed=study.seed)``) and the
    training's. Students are trained once per seed of :attr:`seeds` (the profile's
    ``seeds``), run ``<name>`` for the first and ``<name>_seed<s>`` for the others.

    ``train_loader`` batches the students' labeled images, ``teacher_loader`` the teacher's
    (the same loader unless :attr:`FoodSplits.teacher_labeled` is set). Every loader keeps
    the seed 0 of its augmentations, so all students of one loader see the same batches and
    share the teacher's logits (:meth:`teacher_logits`).
    """

    setup: Setup
    splits: FoodSplits
    force: bool = False
    device: str = "auto"
    log: str = "auto"
    seed: int = 0

    def __post_init__(self):
        s = self.settings
        self.train_loader = training_loader(self.splits.labeled, s["batch_size"], s["crop"], device=self.device)
        self.teacher_loader = self.train_loader if self.splits.teacher_labeled is None else training_loader(
            self.splits.teacher_labeled, s["batch_size"], s["crop"], device=self.device)
        self.val_loader = eval_loader(self.splits.validation, s["crop"], device=self.device)
        self._logit_tables: dict = {}

    @property
    def seeds(self) -> tuple:
        """The seeds every student run is trained with (``settings["seeds"]``, else ``seed``)."""
        return check_seeds(tuple(self.settings.get("seeds") or (self.seed,)), "part 5 seeds")

    def teacher_logits(self, teacher: nn.Module, loader) -> TeacherLogits:
        """The logits of ``teacher`` for every epoch of ``loader``, computed on first use and shared
        by every student trained on that loader (all seeds; cached on disk under
        ``KD_CACHE_DIR``, keyed by the teacher's weights and the loader)."""
        key = (id(teacher), id(loader))
        if key not in self._logit_tables:
            self._logit_tables[key] = (teacher, loader, TeacherLogits(teacher, loader))
        return self._logit_tables[key][2]

    @property
    def settings(self) -> dict:
        return self.setup.settings

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    def recipe(self, epochs: str, lr: str) -> Recipe:
        """The one recipe of part 5 (the profile's optimizer and weight decay, cosine schedule,
        validation every ``eval_every`` epochs and after the last) with the epochs and rate of
        the settings named ``epochs`` and ``lr``."""
        s = self.settings
        return Recipe(s[epochs], optimizer=s["optimizer"], lr=s[lr], weight_decay=s["weight_decay"],
                      eval_every=s.get("eval_every", 1))

    @property
    def fine_tune_recipe(self) -> Recipe:
        """The pruning steps' fine-tuning: one epoch at ``prune_lr``."""
        return replace(self.recipe("student_epochs", "prune_lr"), epochs=1)

    @property
    def runtime(self) -> Runtime:
        """How every training call runs: ``device``, ``log`` and ``force``."""
        return Runtime(device=self.device, log=self.log, force=self.force, seed=self.seed)

    @property
    def compressed_dir(self) -> Path:
        """Where the stored (quantized, pruned) models go: ``runs/compressed/<profile>/part5``."""
        return runs_dir() / "compressed" / self.setup.profile / PART

    def runtime_of(self, seed: int) -> Runtime:
        """:attr:`runtime` with another ``seed`` (a student's)."""
        return replace(self.runtime, seed=seed)

    def run(self, name: str, **params) -> Run:
        """The :class:`Run` of one experiment; ``params`` extend (or override) the data settings
        (``n_train``: the students' labeled images unless given)."""
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
    if DP.is_writer():  # of several processes (kdutils.tools.launch), rank 0 writes
        R.save_record(rec)
    return rec


def computed_record(run: Run, compute: Callable[[], Mapping], force: bool = False) -> dict:
    """The finished record of ``run``, or ``compute()``'s values saved as a complete record.

    For results that ``fit`` does not produce (pruning, quantization): ``compute`` returns
    a dict merged into the record (with ``seconds``, the time it took). A finished record
    is returned as is unless ``force`` or its params differ from ``run.params`` (a record
    of other settings, or of an older version of the measurement, is computed again).
    """
    rec = R.load_record(run.part, run.name, run.profile)
    if R.is_finished(rec) and not force and rec.get("params") == json.loads(json.dumps(run.params, default=str)):
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


def _cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cpu().eval()


def side_by_side_latency(candidate: nn.Module, reference: nn.Module, image_shape: Sequence[int]) -> dict:
    """CPU milliseconds per image of ``candidate`` and ``reference`` (CPU models), timed in
    interleaved rounds (``compress.latency``) at batch sizes 1 and 64: ``latency_ms`` and
    ``reference_latency_ms`` (medians, ``{"1": ms, "64": ms}``), ``speedup`` (median over
    rounds of reference / candidate time: > 1 is faster) and ``threads``."""
    timed = cpu_latency_rounds({"reference": reference, "candidate": candidate}, image_shape)
    ms = {name: {str(b): round(1e3 * statistics.median(by_name[name]) / b, 4) for b, by_name in timed.items()}
          for name in ("reference", "candidate")}
    speedup = {str(b): round(v, 3) for b, v in paired_speedup(timed, "reference", "candidate").items()}
    return {"latency_ms": ms["candidate"], "reference_latency_ms": ms["reference"], "speedup": speedup,
            "threads": torch.get_num_threads()}


def _store_and_load(model: nn.Module, build: Callable[[], nn.Module], method: str, path: Path,
                    calibration) -> Tuple[nn.Module, int, dict]:
    """``(restored model, file bytes, extra record fields)`` of one storage format."""
    if method == "float32":
        nbytes = size.save_state(model, path)
        return size.load_state(path, build()), nbytes, {}
    if method == "float16":
        nbytes = size.save_state(model, path, dtype=torch.float16)
        return size.load_state(path, build()), nbytes, {}
    if method == "minmax8":
        nbytes = quantize.save_quantized(model, path)
        return quantize.load_quantized(path, build()), nbytes, {}
    if method == "int8_x86":
        if calibration is None:
            raise ValueError("int8_x86 needs calibration batches (training images), e.g. calibration_batches(study)")
        batches = list(calibration)
        quantized = quantize.quantize_int8(_cpu_copy(model), batches)
        nbytes = quantize.save_int8(quantized, path, batches[0][:1])
        restored = quantize.load_int8(path)
        kernels = quantize.int8_kernels(restored)
        return restored, nbytes, {"weight_bytes": quantize.int8_weight_bytes(path),
                                  "int8_convs": kernels.get("onednn.qconv_pointwise.default", 0),
                                  "float_convs": kernels.get("aten.convolution.default", 0)}
    raise ValueError(f"method must be one of {STORAGE_METHODS}, got {method!r}")


def storage_variant(model: nn.Module, build: Callable[[], nn.Module], method: str, path,
                    val_loader, calibration=None, image_shape: Optional[Sequence[int]] = None) -> dict:
    """Store ``model`` in format ``method``, load it back and evaluate it.

    ``method``: ``float32`` / ``float16`` (``compress.size.save_state``) and ``minmax8``
    (8-bit min-max codes, ``compress.quantize.save_quantized``) are loaded into ``build()``
    and compute in float32; ``int8_x86`` is a real int8 model (``compress.quantize``: PT2E
    with torchao's x86 quantizer, calibrated on ``calibration``, batches of training
    images; the file is a ``torch.export`` archive; it runs on the CPU). Returns
    ``method``, ``file``, ``size_bytes``, ``val_top1``, ``val_top5`` (int8: also
    ``weight_bytes``, the tensors inside the archive, and how many convolutions run in
    int8); where this machine cannot make the int8 model, ``note`` says why and there is
    no accuracy. With ``image_shape`` (one input, e.g. ``(3, 64, 64)``) also ``n_params``,
    ``flops`` and the CPU latency of the restored model measured side by side with the
    float32 ``model`` (:func:`side_by_side_latency`).
    """
    path = Path(path)
    try:
        restored, nbytes, extra = _store_and_load(model, build, method, path, calibration)
    except RuntimeError as e:  # torchao missing, or no int8 kernels on this machine
        if method != "int8_x86":
            raise
        return {"method": method, "file": str(path), "size_bytes": None, "note": str(e)}
    ev = evaluate(restored, val_loader, device="cpu" if method == "int8_x86" else "auto")
    out = {"method": method, "file": str(path), "size_bytes": nbytes, "val_top1": ev["top1"],
           "val_top5": ev["top5"], **extra}
    if image_shape is not None:
        out.update(n_params=count_params(model), flops=count_flops(_cpu_copy(model), (1, *image_shape)),
                   **side_by_side_latency(_cpu_copy(restored) if method != "int8_x86" else restored,
                                          _cpu_copy(model), image_shape))
    return out


def _deployable(model: nn.Module, method: str, path: Path, meta: Optional[Mapping]) -> Tuple[nn.Module, int]:
    """The model as one would ship it after pruning (a CPU copy without masks) and the bytes
    of its file at ``path``: a dense float32 state dict after magnitude pruning (zeros
    included), the narrowed model (``compress.prune.save_pruned``) after channel pruning."""
    shipped = prune.remove_pruning(_cpu_copy(model))
    if method == "channels":
        return shipped, prune.save_pruned(shipped, path, meta)
    return shipped, size.save_state(shipped, path)


def prune_with_fine_tuning(model: nn.Module, rate: float, steps: int, fine_tune, val_loader,
                           path, method: str = "magnitude", image_shape: Optional[Sequence[int]] = None,
                           meta: Optional[Mapping] = None) -> dict:
    """Iterative pruning of a copy of ``model`` (``compress.prune.iterative_prune``).

    Every step prunes ``rate`` (``method="magnitude"``: of the remaining weights, zeroed;
    ``"channels"``: of the channels, removed), runs ``fine_tune`` and evaluates on
    ``val_loader``. The result is saved at ``path`` as one would ship it (magnitude: the
    dense float32 state dict; channels: the narrowed model with ``meta``, reloaded by
    ``compress.prune.load_pruned``). Returns ``history`` (one row per step: ``step``,
    ``params``, ``sparsity``, ``nonzero_params``, ``val_top1``; with ``image_shape``,
    needed for channels, also ``flops``, ``file_bytes``, ``zipped_bytes`` and the CPU
    latency measured side by side with the unpruned model), ``start`` and ``final`` (its
    first and last rows), ``size_bytes`` and ``zipped_bytes`` of the saved file.
    """
    path = Path(path)
    pruned, reference = copy.deepcopy(model), _cpu_copy(model) if image_shape is not None else None
    scratch = path.with_name(f".{path.stem}-step.pt")

    def measure(m: nn.Module) -> dict:
        row = {"val_top1": evaluate(m, val_loader)["top1"]}
        if image_shape is not None:
            shipped, nbytes = _deployable(m, method, scratch, meta)
            row.update(flops=count_flops(shipped, (1, *image_shape)), file_bytes=nbytes,
                       zipped_bytes=size.zipped_size(scratch), **side_by_side_latency(shipped, reference, image_shape))
        return row

    example = torch.zeros(2, *image_shape) if image_shape is not None else None
    history = prune.iterative_prune(pruned, rate, steps, fine_tune, measure, method=method, example_inputs=example)
    scratch.unlink(missing_ok=True)
    _, nbytes = _deployable(pruned, method, path, meta)
    return {"history": history, "start": history[0], "final": history[-1], "size_bytes": nbytes,
            "zipped_bytes": size.zipped_size(path)}


def _method_of(rec: Mapping) -> str:
    return rec["params"].get("method", "magnitude")


def plot_pruning(records: Sequence[Mapping], title: str = ""):
    """Validation top-1 (y) against non-zero parameters and against CPU latency at batch 1 and
    64 (three panels), one line per pruning record: magnitude pruning solid, channel removal
    dashed. Latency is shown as the speed relative to the unpruned model timed side by side
    (``speedup``: its time over the pruned model's, per round), which a busy machine moves far
    less than milliseconds. Records without latency leave those panels empty."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    xs = (("nonzero_params", None, "non-zero parameters"),
          ("speedup", "1", "CPU latency, batch 1: x faster than unpruned"),
          ("speedup", "64", "CPU latency, batch 64: x faster than unpruned"))
    for i, rec in enumerate(records):
        style = "o--" if _method_of(rec) == "channels" else "o-"
        label = f"{'channels' if _method_of(rec) == 'channels' else 'magnitude'} {rec['params']['rate']:g}/step"
        for ax, (key, batch, _) in zip(axes, xs):
            pts = [(h[key] if batch is None else h[key][batch], h["val_top1"]) for h in rec["history"]
                   if key in h and (batch is None or batch in h[key])]
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{i % 10}", label=label, markersize=4)
    axes[0].invert_xaxis()  # pruning goes from right (dense) to left (small)
    for ax, (_, _, xlabel) in zip(axes, xs):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation top-1 (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title or "Iterative pruning with fine-tuning: magnitude (zeros) vs channels (removed)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the notebook's steps: training
#: The runs of the KD table, in its order; the students among them (each trained once per seed).
KD_RUNS = ("teacher_scratch", "teacher_pretrained", "student", "student_kd_scratch", "student_kd_pretrained",
           "student_kd_semi")
STUDENT_RUNS = ("student", "student_kd_scratch", "student_kd_pretrained", "student_kd_semi")
TEACHER_PRETRAINED = "teacher ResNet-18 (ImageNet, fine-tuned)"
#: The assignment's teacher architecture (the pretrained teacher's always).
TEACHER_ARCH = "resnet18_food"


def kd_objective(settings: Mapping, teacher: Union[nn.Module, TeacherLogits]) -> KDLoss:
    """The part-5 KD loss ``KDLoss(alpha, T)``: distilling from a live ``teacher`` model, or from
    its logits computed once per epoch (a :class:`~kdutils.distill.teachers.TeacherLogits`
    table of the student's loader, e.g. :meth:`Study.teacher_logits`; the same soft targets)."""
    source = CachedLogits(teacher) if isinstance(teacher, TeacherLogits) else LiveTeacher(teacher)
    return KDLoss(settings["alpha"], settings["T"], teacher=source)


def teacher_arch(settings: Mapping, key: str) -> str:
    """The architecture of the teacher ``key``: the profile's ``teacher_arch`` from scratch,
    ResNet-18 when pretrained (its ImageNet weights)."""
    return settings.get("teacher_arch", TEACHER_ARCH) if key == "scratch" else TEACHER_ARCH


def teacher_label(settings: Mapping, key: str) -> str:
    """The KD table's name of the teacher ``key``."""
    if key == "pretrained":
        return TEACHER_PRETRAINED
    arch = teacher_arch(settings, key)
    if arch == TEACHER_ARCH:
        return "teacher ResNet-18 (scratch)"
    return f"teacher {arch} (scratch, stand-in for ResNet-18)"


def build_teacher(study: Study, key: str = "scratch") -> nn.Module:
    """A fresh, randomly initialised teacher ``key`` of :func:`teacher_arch` (seeded by the study):
    the scratch teacher to train, or the shell a stored teacher is loaded into."""
    arch = teacher_arch(study.settings, key)
    options = dict(weights=None) if arch == TEACHER_ARCH else {}
    return build_model(arch, study.num_classes, seed=study.seed, **options)


def _pretrained_teacher(study: Study, weights_path: str):
    """``(model or None, reason, note)``: the ImageNet ResNet-18, unless the profile or the
    network says no."""
    if not study.settings["try_pretrained"]:
        return None, "the smoke profile downloads nothing", "not tried in the smoke profile"
    model, reason = try_build_model(TEACHER_ARCH, study.num_classes, weights="IMAGENET1K_V1",
                                    weights_path=weights_path or None, seed=study.seed)  # the new fc
    return model, reason, "not available offline (ImageNet weights could not be loaded)"


def train_teachers(study: Study, scratch: nn.Module, pretrained_weights: str = "") -> Tuple[dict, str]:
    """Train the teacher ``scratch`` (:func:`build_teacher`) and, where its ImageNet weights load,
    fine-tune a pretrained ResNet-18 (else a ``skipped`` record says why), both on the teacher's
    labeled images (:attr:`FoodSplits.teacher_set`).

    ``pretrained_weights``: a local weights file (empty: torchvision's ``IMAGENET1K_V1``).
    Returns ``({"scratch": model, ["pretrained": model]}, a line saying what happened to
    the pretrained teacher)``.
    """
    train_teacher(study, "scratch", scratch)
    teachers = {"scratch": scratch}
    model, reason, note = _pretrained_teacher(study, pretrained_weights)
    if model is None:
        skipped_record(teacher_run(study, "pretrained", pretrained_weights), note, reason, label=TEACHER_PRETRAINED)
        return teachers, f"Pretrained teacher skipped: {reason}"
    train_teacher(study, "pretrained", model, pretrained_weights)
    teachers["pretrained"] = model
    return teachers, f"Pretrained teacher weights: {model.weights_source}"


def teacher_run(study: Study, key: str, pretrained_weights: str = "") -> Run:
    """The run of the teacher ``key`` (``scratch`` or ``pretrained``)."""
    weights = "random" if key == "scratch" else pretrained_weights or "IMAGENET1K_V1"
    return study.run(f"teacher_{key}", model=teacher_arch(study.settings, key), weights=weights,
                     n_train=len(study.splits.teacher_set))


def train_teacher(study: Study, key: str, model: nn.Module, pretrained_weights: str = "") -> dict:
    """Train (or reuse) the teacher ``key`` on the teacher's labeled images: from scratch at
    ``teacher_lr`` for ``teacher_epochs``, the pretrained one fine-tuned at ``finetune_lr``; its
    record."""
    epochs, lr = ("teacher_epochs", "teacher_lr") if key == "scratch" else ("finetune_epochs", "finetune_lr")
    return train_run(model, teacher_run(study, key, pretrained_weights), teacher_label(study.settings, key),
                     study.teacher_loader, study.val_loader, study.recipe(epochs, lr), runtime=study.runtime)


def _kd_params(settings: Mapping) -> dict:
    return dict(model="food_student", T=settings["T"], alpha=settings["alpha"])


def _student(study: Study, seed: int, model: Optional[nn.Module] = None) -> nn.Module:
    """``model`` for the study's first seed (the notebook's own student), else a fresh student
    initialised from ``seed``."""
    return model if model is not None and seed == study.seeds[0] else build_model(
        "food_student", study.num_classes, seed=seed)


def train_students(study: Study, student: nn.Module, teachers: Mapping[str, nn.Module]) -> dict:
    """Train the student from scratch (cross-entropy), then one fresh student distilled from each
    teacher (``student_kd_scratch``, ``student_kd_pretrained``; a missing teacher gives a
    ``skipped`` record), each once per seed of :attr:`Study.seeds` (``student`` is the first
    seed's plain student). Returns the first seed's trained students by run name."""
    students = {}
    for seed in study.seeds:
        model = _student(study, seed, student)
        train_plain_student(study, model, seed)
        students.setdefault("student", model)
    for key in ("scratch", "pretrained"):
        for seed in study.seeds:
            model, _ = train_kd_student(study, key, teachers, seed)
            if model is not None:
                students.setdefault(f"student_kd_{key}", model)
    return students


def train_plain_student(study: Study, student: nn.Module, seed: Optional[int] = None) -> dict:
    """Train ``student`` from scratch with cross-entropy (run ``student`` of ``seed``, default the
    first of the study's seeds); its record."""
    seed = study.seeds[0] if seed is None else seed
    return train_run(student, study.run(seeded_name("student", seed), model="food_student", teacher="none"),
                     "student (scratch, CE)", study.train_loader, study.val_loader,
                     study.recipe("student_epochs", "lr"), runtime=study.runtime_of(seed))


def train_kd_student(study: Study, key: str, teachers: Mapping[str, nn.Module],
                     seed: Optional[int] = None) -> Tuple[Optional[nn.Module], dict]:
    """A fresh student (initialised from ``seed``) distilled from the teacher ``key`` (run
    ``student_kd_<key>`` of ``seed``) with the teacher's logits shared by every seed
    (:meth:`Study.teacher_logits`); the model and its record, ``(None, a skipped record)`` when
    that teacher is not among ``teachers``."""
    seed = study.seeds[0] if seed is None else seed
    run = study.run(seeded_name(f"student_kd_{key}", seed), teacher=f"teacher_{key}", **_kd_params(study.settings))
    label = f"student KD <- teacher ({key})"
    if key not in teachers:
        return None, skipped_record(run, f"teacher_{key} not available", label=label)
    model = build_model("food_student", study.num_classes, seed=seed)
    objective = kd_objective(study.settings, study.teacher_logits(teachers[key], study.train_loader))
    rec = train_run(model, run, label, study.train_loader, study.val_loader, study.recipe("student_epochs", "lr"),
                    objective, study.runtime_of(seed))
    return model, rec


def seed_records(records: Mapping[str, Mapping], name: str, finished: bool = True) -> list:
    """The records of run ``name`` over its seeds (``name``, ``name_seed1``, ...), lowest seed
    first; only finished ones unless ``finished`` is False."""
    runs = [r for run, r in records.items() if r and base_name(run) == name and (R.is_finished(r) or not finished)]
    return sorted(runs, key=lambda r: seed_of(r["run"]))


def mean_top1(records: Mapping[str, Mapping], name: str) -> float:
    """Mean final validation top-1 of run ``name`` over its finished seeds (NaN for none)."""
    return mean_std(_top1(r) for r in seed_records(records, name))[0]


def best_teacher(teachers: Mapping[str, nn.Module], profile: str) -> str:
    """The key of the teacher with the best final validation top-1 (from its record)."""
    acc = {k: R.load_record(PART, f"teacher_{k}", profile)["last"]["test_top1"] for k in teachers}
    return max(acc, key=acc.get)


def train_semi_supervised(study: Study, teacher_key: str, teacher: nn.Module) -> Tuple[nn.Module, dict]:
    """KD from ``teacher`` on the students' labeled images plus the unlabeled ones it labels with
    confidence ``>= pseudo_threshold`` (run ``student_kd_semi``, once per seed of
    :attr:`Study.seeds`). Returns the first seed's student and the pseudo-label summary of
    :func:`add_pseudo_labels` (also kept in every record as ``pseudo_labels``)."""
    semi = semi_supervised_set(study, teacher)
    model = None
    for seed in study.seeds:
        trained, _ = _train_semi(study, teacher_key, teacher, seed, semi)
        model = trained if model is None else model
    return model, semi[2]


def semi_supervised_set(study: Study, teacher: nn.Module) -> tuple:
    """``(training set, its loader, pseudo-label summary)``: the students' labeled images plus the
    unlabeled images ``teacher`` labels with confidence ``>= pseudo_threshold``."""
    s, splits = study.settings, study.splits
    logits = predict_logits(teacher, eval_loader(splits.unlabeled, s["crop"], device=study.device),
                            device=study.device)
    logits = DP.from_writer(logits)  # several processes pick the same pseudo-labels (rank 0's)
    semi_set, pseudo = add_pseudo_labels(splits.labeled, splits.unlabeled, logits, s["pseudo_threshold"])
    return semi_set, training_loader(semi_set, s["batch_size"], s["crop"], device=study.device), pseudo


def _train_semi(study: Study, teacher_key: str, teacher: nn.Module, seed: int,
                semi: Optional[tuple] = None) -> Tuple[nn.Module, dict]:
    """The semi-supervised student of ``seed`` (on ``semi``, :func:`semi_supervised_set`) and its record."""
    s = study.settings
    semi_set, loader, pseudo = semi or semi_supervised_set(study, teacher)
    model = build_model("food_student", study.num_classes, seed=seed)
    run = study.run(seeded_name("student_kd_semi", seed), teacher=f"teacher_{teacher_key}", n_train=len(semi_set),
                    pseudo_threshold=s["pseudo_threshold"], n_pseudo=pseudo["n_pseudo"], **_kd_params(s))
    rec = train_run(model, run, "student KD + pseudo-labels", loader, study.val_loader,
                    study.recipe("student_epochs", "lr"), kd_objective(s, study.teacher_logits(teacher, loader)),
                    study.runtime_of(seed), extra={"pseudo_labels": pseudo})
    return model, rec


def describe_pseudo_labels(teacher_key: str, pseudo: Mapping) -> str:
    """One sentence on the pseudo-labels: how many, at which threshold, per class."""
    mean = pseudo["mean_confidence"]
    mean = "n/a" if mean is None else f"{mean:.2f}"
    return (f"teacher_{teacher_key} labels {pseudo['n_pseudo']} of {pseudo['n_unlabeled']} unlabeled images with "
            f"confidence >= {pseudo['threshold']} (mean confidence {mean}); per class: "
            f"{pseudo['pseudo_per_class']}")


def train_comparison(study: Study, kinds: Sequence[str] = ("conv", "dwsep", "group")) -> list:
    """Train one ``<kind>_net`` per block kind on the students' labeled images, each at the width
    that gives about ``compare_params`` parameters (``match_width``). Returns their records."""
    s, records = study.settings, []
    for kind in kinds:
        width = match_width(kind, s["compare_params"], study.num_classes)
        model = build_model(f"{kind}_net", study.num_classes, width=width, seed=study.seed)
        records.append(train_run(model, study.run(f"{kind}_net", model=f"{kind}_net", width=width), f"{kind}_net",
                                 study.train_loader, study.val_loader, study.recipe("compare_epochs", "lr"),
                                 runtime=study.runtime))
    return records


def records_by_run(profile: str) -> dict:
    """This part's records of ``profile``, by run name."""
    return {r["run"]: r for r in R.load_records(PART, profile)}


def final_student_name(students: Iterable[str], records: Mapping[str, Mapping]) -> str:
    """The trained student (``students``: their run names, or a dict by run name) with the best
    mean final validation top-1 over its seeds (the one compressed next: its first seed)."""
    return max((n for n in STUDENT_RUNS if n in students), key=lambda n: mean_top1(records, n))


# --------------------------------------------------------------------------- the notebook's runs, one by one
#: One recipe for every model (AdamW + cosine schedule); the profiles differ in size and epochs.
RECIPE = dict(optimizer="adamw", weight_decay=0.05, teacher_lr=2e-3, finetune_lr=5e-4, lr=5e-3, prune_lr=1e-3,
              T=4.0, alpha=0.5, compare_params=250_000)
#: The notebook's settings per profile. ``teacher_arch``: the teacher trained from scratch; the
#: assignment's is ResNet-18, which trains at about 35 images/s at 64 px on a 2-core CPU in
#: float32, so the quick profile stands in ``conv_net`` (section 6's plain-convolution net,
#: ~250k parameters, about 10x cheaper per image) trained for twice the students' epochs.
#: ``student_labeled_per_class``: the quick students learn from 50 labeled images per class
#: while the teacher trains on all of them (150 per class in the food10 sample), so the
#: teacher knows more than a student can learn from its labels alone (on images held out of
#: the labeled training set, the stand-in teacher led the student without KD by about 16
#: points). ``seeds``: every student run is trained once per seed (initial weights); tables
#: show mean and standard deviation over them. ``eval_every``: validation every k epochs (and
#: after the last); quick's 3 saves about a second per skipped evaluation on a CPU.
SETTINGS = {
    "smoke": dict(RECIPE, size=40, crop=32, batch_size=16, unlabeled_max=None, teacher_epochs=1, finetune_epochs=1,
                  student_epochs=1, compare_epochs=1, prune_steps=2, pseudo_threshold=0.0, try_pretrained=False,
                  teacher_arch=TEACHER_ARCH, student_labeled_per_class=None, seeds=(0,), eval_every=1),
    "quick": dict(RECIPE, size=72, crop=64, batch_size=32, unlabeled_max=1000, teacher_epochs=30, finetune_epochs=5,
                  student_epochs=15, compare_epochs=10, prune_steps=3, pseudo_threshold=0.5, try_pretrained=True,
                  teacher_arch="conv_net", student_labeled_per_class=50, seeds=(0, 1, 2), eval_every=3),
    "full": dict(RECIPE, size=142, crop=128, batch_size=64, unlabeled_max=None, teacher_epochs=40, finetune_epochs=15,
                 student_epochs=80, compare_epochs=40, prune_steps=5, pseudo_threshold=0.9, try_pretrained=True,
                 teacher_arch=TEACHER_ARCH, student_labeled_per_class=None, seeds=(0,), eval_every=1),
}
#: The training runs of the notebook, by record name (its compression steps train no run of
#: their own); a student run of another seed is ``<run>_seed<s>``.
TRAINING_RUNS = KD_RUNS + ("conv_net", "dwsep_net", "group_net")


def resolve_setup(profile: Optional[str], data_root: Optional[str], image_size: Optional[int] = None,
                  crop: Optional[int] = None, T: Optional[float] = None, alpha: Optional[float] = None,
                  pseudo_threshold: Optional[float] = None, epochs: Optional[int] = None,
                  rehearse: Optional[bool] = False) -> Setup:
    """The notebook's profile and :data:`SETTINGS` with its parameters applied (None: the
    profile's value; ``epochs`` sets every training run's epochs)."""
    overrides = dict(size=image_size, crop=crop, T=T, alpha=alpha, pseudo_threshold=pseudo_threshold)
    if epochs is not None:
        overrides.update(teacher_epochs=epochs, finetune_epochs=epochs, student_epochs=epochs, compare_epochs=epochs)
    setup = resolve(profile, data_root, SETTINGS, overrides, rehearse=rehearse)
    setup.settings["seeds"] = check_seeds(setup["seeds"], "part 5 seeds")
    return setup


def study_for(setup: Setup, food_dir: str = "", force: bool = False) -> Study:
    """The notebook's :class:`Study`: the food-11 tree of ``setup`` (or ``food_dir``), loaded
    at the profile's size, the students' labeled images cut to ``student_labeled_per_class``
    (:func:`student_labels`)."""
    splits = load_food_splits(food_root(setup, food_dir), setup["size"], unlabeled_max=setup["unlabeled_max"])
    return Study(setup, student_labels(splits, setup["student_labeled_per_class"]), force=force)


def finished_teachers(study: Study, keys: Sequence[str] = ("scratch", "pretrained")) -> dict:
    """The teachers ``keys`` the notebook would hand its students, loaded from their finished
    runs; the pretrained one is left out where its record says it was skipped. Raises
    ``FileNotFoundError`` naming the run to train first."""
    teachers = {}
    for key in keys:
        run = teacher_run(study, key)
        rec = R.load_record(PART, run.name, run.profile)
        if key == "pretrained" and (rec or {}).get("status") == "skipped":
            continue
        if not (R.is_finished(rec) and run.checkpoint_path.exists()):
            raise FileNotFoundError(f"part5 run {run.name} ({run.profile}) has not finished yet: train it first "
                                    f"(python -m kdutils.tools.launch part5 {run.name}, or the notebook)")
        model = build_teacher(study, key)
        train_teacher(study, key, model, rec["params"].get("weights", "") if key == "pretrained" else "")
        teachers[key] = model  # fit reused the finished run: its weights are loaded
    return teachers


def check_training_run(run: str) -> None:
    """Raise ``ValueError`` naming the training runs unless ``run`` is one of them (a student run
    may carry a seed suffix, ``student_seed1``)."""
    base = base_name(run)
    if base not in TRAINING_RUNS or (base != run and base not in STUDENT_RUNS):
        raise ValueError(f"part5 has no training run {run!r}: launch one of {', '.join(TRAINING_RUNS)} "
                         "(a student of another seed: <run>_seed<s>; quantization and pruning are not training "
                         "runs: they run in the notebook)")


def _seed_of_run(study: Study, run: str) -> int:
    """The seed of the student run ``run`` (no suffix: the first seed); ``ValueError`` when the
    profile does not train that seed."""
    seed = seed_of(run) if base_name(run) != run else study.seeds[0]
    if seed not in study.seeds:
        raise ValueError(f"part5 run {run!r}: the {study.setup.profile} profile trains its students with seeds "
                         f"{list(study.seeds)}, not {seed}")
    return seed


def train_named(study: Study, run: str, pretrained_weights: str = "") -> dict:
    """Train the notebook's training run ``run`` (one of :data:`TRAINING_RUNS`, a student with
    its seed suffix) alone, as the notebook would: the same model, seed, recipe and record;
    its record. A student's teachers must have finished (:func:`finished_teachers`)."""
    check_training_run(run)
    if run == "teacher_scratch":
        return train_teacher(study, "scratch", build_teacher(study))
    if run == "teacher_pretrained":
        if not DP.is_writer():  # several processes: rank 0 fetches the ImageNet weights, then the others
            DP.barrier()
        model, reason, note = _pretrained_teacher(study, pretrained_weights)
        if DP.is_writer():
            DP.barrier()
        if model is None:
            return skipped_record(teacher_run(study, "pretrained", pretrained_weights), note, reason,
                                  label=TEACHER_PRETRAINED)
        return train_teacher(study, "pretrained", model, pretrained_weights)
    if run.endswith("_net"):
        return train_comparison(study, (run[:-len("_net")],))[0]
    seed, base = _seed_of_run(study, run), base_name(run)
    if base == "student":
        return train_plain_student(study, build_model("food_student", study.num_classes, seed=seed), seed)
    if base == "student_kd_semi":
        teachers = finished_teachers(study)
        key = best_teacher(teachers, study.setup.profile)
        return _train_semi(study, key, teachers[key], seed)[1]
    key = base[len("student_kd_"):]
    return train_kd_student(study, key, finished_teachers(study, (key,)), seed)[1]

# --------------------------------------------------------------------------- the notebook's steps: compression
def storage_path(folder, source: str, method: str) -> Path:
    """The file of ``source`` stored in format ``method``."""
    return Path(folder) / f"{source}-{method}.pt"


def calibration_batches(study: Study, images: int = 256, batch_size: int = 64) -> list:
    """The first ``images`` labeled training images (centre crops, normalised, in file order)
    as CPU batches: what the int8 model's activation ranges are calibrated on."""
    batches, n = [], 0
    for x, *_ in eval_loader(study.splits.labeled, study.settings["crop"], batch_size, device="cpu"):
        batches.append(x[: images - n])
        n += len(batches[-1])
        if n >= images:
            break
    return batches


#: What a measured compression record adds to its params (older records are computed again).
MEASURED = "params, FLOPs, file bytes, CPU ms/image at batch 1 and 64 side by side with float32 (paired ratios)"


def storage_records(study: Study, source: str, model: nn.Module, arch: str, methods: Sequence[str],
                    measure: bool = False, **build_options) -> list:
    """:func:`storage_variant` of ``model`` (run ``source``) in every format of ``methods``, each
    as a computed record ``quant-<source>-<method>``; ``arch`` and ``build_options`` rebuild
    an empty model to load the stored file into. ``int8_x86`` is calibrated on
    :func:`calibration_batches`; ``measure`` adds parameters, FLOPs and CPU latency at the
    profile's crop (the compression table's columns)."""
    def build() -> nn.Module:
        return build_model(arch, study.num_classes, **build_options)

    crop, records = study.settings["crop"], []
    extra = dict(measured=MEASURED) if measure else {}
    for method in methods:
        run = study.run(f"quant-{source}-{method}", model=source, method=method, **extra)
        path = storage_path(study.compressed_dir, source, method).with_suffix(".pt2" if method == "int8_x86" else ".pt")
        calibration = calibration_batches(study) if method == "int8_x86" else None
        records.append(computed_record(run, lambda: {
            "label": f"{source} ({method})",
            **storage_variant(model, build, method, path, study.val_loader, calibration,
                              (3, crop, crop) if measure else None)}, study.force))
    return records


PRUNE_LABELS = {"magnitude": "pruned {rate:g}/step", "channels": "channels -{rate:g}/step"}


def pruning_records(study: Study, source: str, model: nn.Module, rates: Sequence[float],
                    methods: Sequence[str] = ("magnitude",)) -> list:
    """:func:`prune_with_fine_tuning` of ``model`` (run ``source``) with every method of
    ``methods`` (``magnitude``: zero weights, the assignment's; ``channels``: remove them) at
    every rate of ``rates`` (``prune_steps`` steps, one epoch at ``prune_lr`` after each),
    each as a computed record ``prune-<source>-rate<rate>`` (magnitude) or
    ``prune-<source>-channels-rate<rate>``, measured per step at the profile's crop. Without
    torch-pruning the channel runs get a ``skipped`` record saying so and are left out of the
    returned list (the tables and the figure show the others)."""
    s, crop, records = study.settings, study.settings["crop"], []
    for method in methods:
        for rate in rates:
            kind = "" if method == "magnitude" else f"{method}-"
            run = study.run(f"prune-{source}-{kind}rate{rate:g}", model=source, method=method, rate=rate,
                            steps=s["prune_steps"], fine_tune="1 epoch, lr {}".format(s["prune_lr"]),
                            measured=MEASURED)
            if method == "channels" and importlib.util.find_spec("torch_pruning") is None:
                skipped_record(run, "torch-pruning not installed", "pip install torch-pruning (requirements.txt)",
                               label=f"{source} {PRUNE_LABELS[method].format(rate=rate)}")
                print(f"{run.name} skipped: pip install torch-pruning to remove channels")
                continue
            path = study.compressed_dir / f"{source}-{kind}pruned-{rate:g}.pt"
            records.append(computed_record(run, lambda: {
                "label": f"{source} {PRUNE_LABELS[method].format(rate=rate)}",
                **prune_with_fine_tuning(model, rate, s["prune_steps"],
                                         make_fine_tuner(study.train_loader, study.fine_tune_recipe, study.device),
                                         study.val_loader, path, method, (3, crop, crop),
                                         meta=dict(arch="food_student", num_classes=study.num_classes))},
                study.force))
    return records


# --------------------------------------------------------------------------- the notebook's tables and figures
def teacher_storage_records(study: Study, key: str, teacher: nn.Module) -> list:
    """:func:`storage_records` of the teacher ``key`` as float32 and 8-bit files (the "before" of
    the before/after table), rebuilt as its own architecture (:func:`teacher_arch`)."""
    arch = teacher_arch(study.settings, key)
    return storage_records(study, f"teacher_{key}", teacher, arch, ("float32", "minmax8"),
                           **(dict(weights=None) if arch == TEACHER_ARCH else {}))


def _seed_columns(records: Mapping[str, Mapping], name: str) -> dict:
    """The KD table's columns over the seeds of run ``name``: mean, std and count of the final
    validation top-1, the values per seed, the mean best-epoch top-1 and the mean seconds."""
    runs = seed_records(records, name)
    mean, std, n = mean_std(_top1(r) for r in runs)
    return {"val top-1 %": mean, "± std": std, "seeds": n,
            "per seed": ", ".join(f"{_top1(r):.1f}" for r in runs),
            "best epoch top-1 %": mean_std(R.get_field(r, "best.test_top1") for r in runs)[0],
            "train s": mean_std(r.get("train_seconds") for r in runs)[0]}


def kd_table(records: Mapping[str, Mapping]):
    """Teachers and students (rows in :data:`KD_RUNS` order, a student's seeds in one row): model,
    parameters, teacher, T, alpha, training images, final validation top-1 as the mean over
    the seeds with its standard deviation, their number and the value of each, the mean
    best-epoch top-1, mean training seconds per run, status (of the first seed) and note."""
    table = R.records_table([records[n] for n in KD_RUNS], {
        "run": "run", "model": "label", "params": "n_params", "teacher": "params.teacher", "T": "params.T",
        "alpha": "params.alpha", "train images": "params.n_train", "status": "status", "note": "note",
    }, index="run")
    folded = [_seed_columns(records, n) for n in table.index]
    for i, column in enumerate(folded[0]):
        table.insert(6 + i, column, [row[column] for row in folded])
    table[["params", "train images", "seeds"]] = table[["params", "train images", "seeds"]].astype("Int64")
    return table


def plot_kd_curves(records: Mapping[str, Mapping]):
    """Validation top-1 per epoch of the finished runs of the KD table (a student's curve: the
    mean over its seeds, :func:`kdutils.core.report_spec.fold_seeds`)."""
    from kdutils.core.plots import plot_curves

    trained = [row for n in KD_RUNS for row in S.fold_seeds(seed_records(records, n))]
    labels = [r["label"] + (f" (mean of {len(r['seed_runs'])} seeds)" if r.get("seed_runs") else "") for r in trained]
    return plot_curves(trained, ("test_top1",), "validation top-1 (%)", "Teachers and students on food-11",
                       labels=labels)


def quant_table(quant: Sequence[Mapping]):
    """Storage formats: file bytes, validation top-1 and ``x smaller than float32`` (against the
    same model's float32 file). The ``note`` column is dropped when every row lacks one."""
    table = R.records_table(quant, {"model": "params.model", "format": "method", "file bytes": "size_bytes",
                                    "val top-1 %": "val_top1", "note": "note"})
    float32_bytes = table[table["format"] == "float32"].set_index("model")["file bytes"]
    table["x smaller than float32"] = float32_bytes.reindex(table["model"]).values / table["file bytes"]
    return table.dropna(axis=1, how="all")


def prune_table(prune_records: Sequence[Mapping]):
    """One row per pruning method and rate: steps, accuracy before and after, final
    parameters and sparsity, sizes."""
    return R.records_table(prune_records, {
        "rate per step": "params.rate", "method": "params.method", "steps": "params.steps",
        "val top-1 % before": "start.val_top1", "params": "final.params",
        "final sparsity": "final.sparsity", "non-zero params": "final.nonzero_params",
        "val top-1 % after": "final.val_top1",
        "file bytes": "size_bytes", "zipped bytes": "zipped_bytes"}, index="rate per step")


def _compression_row(technique: str, params, nbytes, values: Mapping) -> dict:
    """One row of :func:`compression_table` from a record's measured ``values``."""
    ms, speedup = values.get("latency_ms") or {}, values.get("speedup") or {}
    return {"technique": technique, "params": params, "file bytes": nbytes, "FLOPs": values.get("flops"),
            "ms/img b1": ms.get("1"), "ms/img b64": ms.get("64"), "x faster b1": speedup.get("1"),
            "x faster b64": speedup.get("64"), "val top-1 %": values.get("val_top1")}


def compression_table(quant: Sequence[Mapping], prune_records: Sequence[Mapping]):
    """One row per compression technique of the final student: the storage formats and int8
    model of :func:`storage_records` (``measure=True``) and the last step of every pruning
    record, with parameters (after magnitude pruning: the non-zero ones), file bytes, FLOPs
    per image, CPU ms per image at batch 1 and 64 and "x faster" (the median over
    interleaved rounds of the float32 model's time over this one's: > 1 is faster), and
    validation top-1."""
    import pandas as pd

    rows = [_compression_row(f"{r['method']} ({'int8 compute' if r['method'] == 'int8_x86' else 'float32 compute'})",
                             r.get("n_params"), r.get("size_bytes"), r) for r in quant if r.get("latency_ms")]
    for r in prune_records:
        final = r["final"]
        params = final["nonzero_params"] if _method_of(r) == "magnitude" else final.get("params")
        rows.append(_compression_row(f"{r['label']} x{r['params']['steps']}", params, r["size_bytes"], final))
    table = pd.DataFrame(rows, columns=list(_compression_row("", 0, 0, {})))
    table[["params", "file bytes", "FLOPs"]] = table[["params", "file bytes", "FLOPs"]].astype("Int64")
    return table.set_index("technique")


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
    seeds = len(seed_records(by_run, "student"))
    students = f"students {student.get('epochs')} epochs" + (f", {seeds} seeds each" if seeds > 1 else "")
    if not R.is_finished(teacher):
        return (f"Profile {student['profile']} on {student.get('device', 'an unrecorded device')}: "
                f"{student['params']['n_train']} labeled images{classes}, {student['params']['crop']}px crops; "
                f"{students}.")
    n_teacher, n_student = teacher["params"]["n_train"], student["params"]["n_train"]
    images = (f"{n_student} labeled images{classes}" if n_teacher == n_student else
              f"the teacher {n_teacher} labeled images, the students {n_student}{classes}")
    return (f"Profile {student['profile']} on {student.get('device', 'an unrecorded device')}: {images}, "
            f"{student['params']['crop']}px crops; teacher {teacher.get('epochs')} epochs, {students}.")


def _against_student(by_run: Mapping[str, Mapping], name: str, who: str, n_test: Optional[int]) -> Tuple[str, Step]:
    """``name``'s mean final top-1 over its seeds against the student trained without KD, judged
    against the larger of the seed spread (:func:`kdutils.core.seeds.difference`, both sides
    with two or more seeds) and the test-set noise band near the two means."""
    values = [_top1(r) for r in seed_records(by_run, name)]
    base = [_top1(r) for r in seed_records(by_run, "student")]
    diff = difference(values, base)
    base_mean = sum(base) / len(base)
    noise = noise_band(base_mean + diff.delta / 2, n_test)
    band = max(filter(None, (diff.spread, noise)), default=None)
    sides = f"top-1 {describe(values, 1)} vs {describe(base, 1)} for the student"
    if diff.known:
        judged = (f"{verdict_words(diff.delta, band)}: the larger of the seed spread ±{diff.spread:.2f} "
                  "and the noise band")
    else:
        judged = verdict_words(diff.delta, band)
    return f"{who}: {sides} without KD ({diff.delta:+.1f} points, {judged}).", Step(who, diff.delta, band)


def _kd_sentences(by_run: Mapping[str, Mapping], n_test: Optional[int]) -> list:
    """The teacher, then each distilled student, against the student trained without KD (means
    over seeds, judged against the larger of the seed spread and the noise band)."""
    out, steps = [], []
    for run in _finished(by_run, ("teacher_scratch", "teacher_pretrained")):
        out.append(_against_student(by_run, run, by_run[run]["label"], n_test)[0])
    for run in _finished(by_run, ("student_kd_scratch", "student_kd_pretrained", "student_kd_semi")):
        sentence, step = _against_student(by_run, run, by_run[run]["label"], n_test)
        out.append(sentence)
        steps.append(step)
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
    for fmt in ("float16", "minmax8", "int8_x86"):
        rec = by_run.get(f"quant-{final}-{fmt}")
        if R.is_finished(rec) and rec.get("val_top1") is not None:
            delta = rec["val_top1"] - f32["val_top1"]
            noise = noise_band((rec["val_top1"] + f32["val_top1"]) / 2, n_test)
            out.append(f"{fmt}: {f32['size_bytes'] / rec['size_bytes']:.2f}x smaller than float32, "
                       f"{delta:+.1f} points ({verdict_words(delta, noise)}){_speed_words(rec)}.")
    return out


def _speed_words(values: Mapping) -> str:
    """", 1.80x the float32 model's speed at batch 64 (1.10x at batch 1)" from side-by-side timings."""
    speedup = values.get("speedup") or {}
    if not (speedup.get("64") and speedup.get("1")):
        return ""
    return (f", {speedup['64']:.2f}x the float32 model's speed at batch 64 "
            f"({speedup['1']:.2f}x at batch 1)")


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
                   f"({verdict_words(after - before, noise)}){_speed_words(r['final'])}.")
    channels = sorted((r for r in records if r["run"].startswith(f"prune-{final}-channels-rate") and R.is_finished(r)),
                      key=lambda r: r["params"]["rate"])
    for r in channels:
        start, end = r["start"], r["final"]
        noise = noise_band((start["val_top1"] + end["val_top1"]) / 2, n_test)
        out.append(f"Removing {r['params']['rate']:g} of the channels per step: {start['params']:,} -> "
                   f"{end['params']:,} parameters after {r['params']['steps']} steps, {start['val_top1']:.1f}% -> "
                   f"{end['val_top1']:.1f}% ({verdict_words(end['val_top1'] - start['val_top1'], noise)})"
                   f"{_speed_words(end)}.")
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
    (:func:`kdutils.core.findings.band_sentence`); each teacher and each KD student against
    the student without KD (means over seeds, judged against the larger of the seed spread
    and the noise band); the teacher against the final student after 8-bit quantization;
    each storage format against float32; each pruning rate; the three block kinds. Every
    other difference is judged against the noise band.
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
    "student_labels",
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
    "TEACHER_ARCH",
    "kd_objective",
    "teacher_arch",
    "teacher_label",
    "build_teacher",
    "train_teachers",
    "train_students",
    "teacher_run",
    "train_teacher",
    "train_plain_student",
    "train_kd_student",
    "SETTINGS",
    "TRAINING_RUNS",
    "resolve_setup",
    "study_for",
    "finished_teachers",
    "check_training_run",
    "train_named",
    "seed_records",
    "mean_top1",
    "best_teacher",
    "train_semi_supervised",
    "semi_supervised_set",
    "describe_pseudo_labels",
    "train_comparison",
    "records_by_run",
    "final_student_name",
    "storage_path",
    "storage_records",
    "teacher_storage_records",
    "pruning_records",
    "kd_table",
    "plot_kd_curves",
    "quant_table",
    "prune_table",
    "compression_table",
    "calibration_batches",
    "MEASURED",
    "PRUNE_LABELS",
    "side_by_side_latency",
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
                (S.LABEL, S.PARAMS, S.FLOPS, S.LAST_TOP1, S.EPOCHS, S.TRAIN_TIME), runs=r"^(teacher_|student)"),
        S.Table("Compression of the final student: storage formats, int8, magnitude and channel pruning", "part5",
                (S.LABEL, S.Column("params", "n_params|final.nonzero_params", "count"),
                 S.Column("file size", "size_bytes", "bytes"), S.Column("FLOPs", "flops|final.flops", "flops"),
                 S.Column("CPU ms/img b64", "latency_ms.64|final.latency_ms.64", "num"),
                 S.Column("val top-1 %", "val_top1|final.val_top1", "pct")),
                runs=r"^(quant|prune)-", max_rows=10),
        S.Table("Plain vs depthwise-separable vs group convolutions at matched parameters", "part5",
                (S.LABEL, S.Column("width", "params.width", "num"), S.PARAMS, S.FLOPS, S.LAST_TOP1, S.EPOCHS,
                 S.TRAIN_TIME), runs=r"^(conv|dwsep|group)_net$"),
    ),
    figures=("part5_accuracy_vs_size", "part5_pruning"),
    baseline=r"^student$",
    contenders=r"^student",
    sizes=("params.n_train", "params.n_val"),
    metric=S.LAST_TOP1,  # the findings' number: the last epoch, never the best epoch picked on the test split
)


# --------------------------------------------------------------------------- notebook parameters
from kdutils.core import params as P  # noqa: E402  (the notebook's parameter spec closes the module)

#: What the notebook's ``parameters`` cell may hold; its next cell checks them before any work.
PARAMETERS = {
    **P.COMMON,
    "food_dir": P.text(help="the food-11 tree; empty: the profile's"),
    "image_size": P.integer(8, optional=True, help="stored image size (px)"),
    "crop": P.integer(8, optional=True, help="training / evaluation crop (px)"),
    "T": P.number(0, low_open=True, optional=True, help="KD temperature"),
    "alpha": P.number(0, 1, optional=True, help="KD weight of the soft term, (1 - alpha) on the labels"),
    "pseudo_threshold": P.number(0, 1, optional=True, help="teacher confidence needed for a pseudo-label"),
    "prune_rates": P.numbers(0, 1, min_len=2, low_open=True, high_open=True,
                             help="fraction of the remaining weights removed per step; two or more to compare"),
    "epochs": P.integer(1, optional=True, help="epochs of every training run"),
    "pretrained_weights": P.text(help="local ResNet-18 ImageNet file; empty: torchvision's"),
}
