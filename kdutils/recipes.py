"""The fixed CIFAR-100 training framework of parts 1 and 2.

Part 1 compares architectures under **one** recipe; part 2 trains teachers and students
with the same recipe ("the part 1 training script"), only the objective changes. The
recipe is data, so the notebooks show it as a table and every record stores it.

``full`` is the assignment's setting, sized so that a network under 30M parameters
finishes inside the 2-hour budget on one current GPU with bf16 autocast and
channels-last (a projection from FLOPs until measured, see README). ``quick`` trains on
the real 100-images-per-class sample for a few epochs on a CPU; ``smoke`` on generated
data for one epoch.
"""
from __future__ import annotations

from typing import Optional

from . import data as D
from .loader import loaders_for
from .losses import CrossEntropy
from .profiles import Setup
from .train import Run, fit

#: One recipe per profile; identical for every model of the ablation.
CIFAR100_RECIPE = {
    "full": dict(epochs=100, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                 weight_decay=5e-4, schedule="cosine", warmup_epochs=1, label_smoothing=0.1,
                 padding=4, flip=True, cutout=8, amp="auto", budget_s=2 * 3600,
                 train_per_class=None, test_per_class=None),
    "quick": dict(epochs=4, batch_size=64, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", warmup_epochs=0, label_smoothing=0.1,
                  padding=4, flip=True, cutout=8, amp="auto", budget_s=2 * 3600,
                  train_per_class=30, test_per_class=10),
    "smoke": dict(epochs=1, batch_size=32, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", warmup_epochs=0, label_smoothing=0.1,
                  padding=4, flip=True, cutout=8, amp="auto", budget_s=2 * 3600,
                  train_per_class=None, test_per_class=None),
}

#: What each recipe key means (for the notebook's and README's framework table).
RECIPE_DOC = {
    "epochs": "training epochs",
    "batch_size": "images per step",
    "optimizer": "optimizer",
    "lr": "peak learning rate",
    "momentum": "momentum",
    "nesterov": "Nesterov momentum",
    "weight_decay": "L2 weight decay",
    "schedule": "learning-rate schedule (per step)",
    "warmup_epochs": "linear warm-up epochs",
    "label_smoothing": "label smoothing of the CE loss",
    "padding": "random crop: zero padding (px)",
    "flip": "random horizontal flip",
    "cutout": "cutout square side (px)",
    "amp": "mixed precision (auto: bf16 on CUDA; on CPU the measured faster of fp32/bf16)",
    "budget_s": "wall-clock budget per run (s)",
    "train_per_class": "training images per class (None: all)",
    "test_per_class": "test images per class (None: all)",
}


def recipe_for(setup: Setup, **overrides) -> dict:
    """The profile's recipe with the non-None ``overrides`` applied."""
    recipe = dict(CIFAR100_RECIPE[setup.profile])
    unknown = set(overrides) - set(recipe)
    if unknown:
        raise ValueError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(recipe)}")
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    return recipe


def recipe_table(recipe: dict):
    """The recipe as a two-column DataFrame (setting, value)."""
    import pandas as pd

    return pd.DataFrame([(RECIPE_DOC.get(k, k), v) for k, v in recipe.items()], columns=["setting", "value"])


def cifar_sets(name: str, setup: Setup, train_per_class: Optional[int] = None,
               test_per_class: Optional[int] = None):
    """Train and test :class:`~kdutils.data.ImageSet` for the setup's profile.

    Smoke: generated pickles (``data.smoke_root``). Otherwise ``setup.data_root`` holding
    torchvision's pickles or ``<name>/{train,test}/<class>/*.png``. The full profile
    downloads the official archive with torchvision when neither is there (e.g. on Colab).
    """
    if setup.data_root is None:
        root, check = D.smoke_root(name), False
    else:
        root, check = setup.data_root, True
    download = setup.profile == "full" and not D.has_cifar(name, root)
    tr = D.load_dataset(name, root, "train", check_md5=check, download=download)
    te = D.load_dataset(name, root, "test", check_md5=check, download=download)
    if train_per_class:
        tr = tr.per_class(train_per_class)
    if test_per_class:
        te = te.per_class(test_per_class)
    return tr, te


def cifar_loaders(name: str, train_set, test_set, recipe: dict, seed: int = 0, device="auto"):
    mean, std = D.NORMALIZATION[name]
    return loaders_for(train_set, test_set, recipe["batch_size"], mean, std, device=device,
                       padding=recipe["padding"], flip=recipe["flip"], cutout=recipe["cutout"], seed=seed)


def train_with_recipe(model, run: Run, recipe: dict, train_loader, test_loader, objective=None,
                      teacher=None, force: bool = False, seed: int = 0, **fit_kwargs) -> dict:
    """``fit`` with the recipe's fixed hyper-parameters (the one framework of parts 1-2).

    ``objective`` defaults to cross-entropy with the recipe's label smoothing. The record
    stores the recipe under ``recipe``.
    """
    objective = objective if objective is not None else CrossEntropy(recipe["label_smoothing"])
    extra = dict(fit_kwargs.pop("extra", None) or {}, recipe=recipe)
    return fit(model, train_loader, test_loader, epochs=recipe["epochs"], objective=objective, teacher=teacher,
               optimizer=recipe["optimizer"], lr=recipe["lr"], momentum=recipe["momentum"],
               nesterov=recipe["nesterov"], weight_decay=recipe["weight_decay"], schedule=recipe["schedule"],
               warmup_epochs=recipe["warmup_epochs"], amp=recipe["amp"], budget_s=recipe["budget_s"],
               run=run, force=force, seed=seed, extra=extra, **fit_kwargs)
