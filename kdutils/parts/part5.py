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
- :func:`make_fine_tuner`, :func:`storage_variant`, :func:`plot_pruning`: the
  compression experiments.
- :func:`write_test_predictions`: the leaderboard file ``Id,Category``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from kdutils import compress as C
from kdutils.core import data as D
from kdutils.core import records as R
from kdutils.core.fileio import atomic_torch_save
from kdutils.core.loader import GpuLoader
from kdutils.core.profiles import Setup
from kdutils.core.train import Run, evaluate, fit, predict_logits
from kdutils.models import build_model

PART = "part5"

#: Mean and std of the inputs of every part-5 model (ImageNet statistics).
NORMALIZATION = D.NORMALIZATION["imagenet"]

#: Storage formats compared by :func:`storage_variant`.
STORAGE_METHODS = ("float32", "float16", "minmax8", "torch_int8")


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
def train_run(model: nn.Module, run: Run, label: str, train_loader, val_loader, *, epochs: int, lr: float,
              force: bool = False, extra: Optional[Mapping] = None, **fit_kwargs) -> dict:
    """``fit`` under ``run`` with a record that also carries ``label`` (the tables' row
    name) and ``size_bytes`` (the float32 state dict as ``torch.save`` writes it). Other
    keyword arguments (``optimizer``, ``weight_decay``, ``objective``, ``teacher``, ...)
    go to ``fit``."""
    info = {"label": label, "size_bytes": C.serialized_size(model.state_dict()), **(extra or {})}
    return fit(model, train_loader, val_loader, epochs=epochs, lr=lr, run=run, force=force, extra=info,
               **fit_kwargs)


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
def make_fine_tuner(train_loader, lr: float, epochs: int = 1, **fit_kwargs) -> Callable[[nn.Module], dict]:
    """A ``fine_tune_fn`` for :func:`kdutils.compress.iterative_prune`: ``fit`` for ``epochs``
    without a ``Run`` (nothing written, no log). Each call uses the next seed, so the
    fine-tuning steps see different augmentations."""
    calls = {"n": 0}

    def fine_tune(model: nn.Module) -> dict:
        calls["n"] += 1
        return fit(model, train_loader, None, epochs=epochs, lr=lr, log="off", seed=calls["n"], **fit_kwargs)

    return fine_tune


def storage_variant(model: nn.Module, build: Callable[[], nn.Module], method: str, path,
                    val_loader) -> dict:
    """Store ``model`` in format ``method``, load it back into ``build()`` and evaluate it.

    ``method``: ``float32`` / ``float16`` (``compress.save_state``), ``minmax8`` (8-bit
    min-max codes, ``compress.save_quantized``), ``torch_int8`` (PyTorch's dynamic int8
    ``Linear`` layers; the file is its ``state_dict``, evaluated on the CPU). Returns
    ``method``, ``file``, ``size_bytes``, ``val_top1``, ``val_top5``; a ``torch_int8``
    that this PyTorch cannot do returns ``note`` with the reason and no accuracy.
    """
    path = Path(path)
    device = "auto"
    if method == "float32":
        size = C.save_state(model, path)
        restored = C.load_state(path, build())
    elif method == "float16":
        size = C.save_state(model, path, dtype=torch.float16)
        restored = C.load_state(path, build())
    elif method == "minmax8":
        size = C.save_quantized(model, path)
        restored = C.load_quantized(path, build())
    elif method == "torch_int8":
        try:
            restored = C.torch_dynamic_int8(model)
        except RuntimeError as e:
            return {"method": method, "file": str(path), "size_bytes": None, "note": str(e)}
        atomic_torch_save(restored.state_dict(), path)  # holds packed int8 weights, not plain tensors
        size = C.file_size(path)
        device = "cpu"  # the int8 kernels run on the CPU only
    else:
        raise ValueError(f"method must be one of {STORAGE_METHODS}, got {method!r}")
    ev = evaluate(restored, val_loader, device=device)
    return {"method": method, "file": str(path), "size_bytes": size, "val_top1": ev["top1"],
            "val_top5": ev["top5"]}


def prune_with_fine_tuning(model: nn.Module, rate: float, steps: int, fine_tune, val_loader,
                           path) -> dict:
    """Iterative magnitude pruning of a copy of ``model`` (``compress.iterative_prune``).

    Every step prunes ``rate`` of the remaining weights, runs ``fine_tune`` and evaluates
    on ``val_loader``. The pruned copy is made permanent and saved (float32) at ``path``.
    Returns ``history`` (one row per step: ``step``, ``sparsity``, ``nonzero_params``,
    ``val_top1``), ``start`` and ``final`` (its first and last rows), ``size_bytes`` (the
    dense file: zeros cost as much as other numbers) and ``zipped_bytes`` (what a
    compressor makes of the zeros).
    """
    pruned = copy.deepcopy(model)
    history = C.iterative_prune(pruned, rate, steps, fine_tune,
                                lambda m: {"val_top1": evaluate(m, val_loader)["top1"]})
    C.remove_pruning(pruned)
    size = C.save_state(pruned, path)
    return {"history": history, "start": history[0], "final": history[-1], "size_bytes": size,
            "zipped_bytes": C.zipped_size(path)}


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


# --------------------------------------------------------------------------- leaderboard
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
    return C.write_leaderboard_csv(path, test_set.files, logits.argmax(1), num_classes=num_classes)


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
]
