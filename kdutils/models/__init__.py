"""Model registry and model-size helpers.

Every architecture in the project is registered under a short name and built with
``build_model(name, num_classes, **options)``. Families live in their own modules
(``cifar_resnet``, ``torchvision_resnet``, ``small_cnn``, ``mobile``) and register
themselves on import.

``count_params``, ``count_flops`` and ``count_macs`` live in :mod:`kdutils.core.counting`
(the training loop records them too) and are re-exported here.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

from kdutils.core.counting import count_flops, count_macs, count_params

_REGISTRY: Dict[str, Callable[..., nn.Module]] = {}


def register(name: str):
    """Decorator: register a model factory ``f(num_classes, **options) -> nn.Module``."""

    def deco(fn):
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def _load_families() -> None:
    # Imported lazily so that ``kdutils.models`` can be imported by the families.
    import importlib

    for mod in ("cifar_resnet", "torchvision_resnet", "small_cnn", "mobile"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:  # a family not written yet
            if e.name != f"{__name__}.{mod}":
                raise


def available_models() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def build_model(name: str, num_classes: int, *, seed: Optional[int] = None, **options) -> nn.Module:
    """Build a registered model. Unknown names raise a ``ValueError`` listing the known ones.

    ``seed``: the initial weights are drawn after ``torch.manual_seed(seed)``, inside
    ``torch.random.fork_rng`` so the caller's random state is left as it was. Give every
    model that is trained the run's seed: torch seeds each new process differently, so
    without it two runs of a notebook start from different weights.
    """
    _load_families()
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}. "
            "Register new ones with @kdutils.models.register(name)."
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if seed is None:
        return _REGISTRY[name](num_classes=num_classes, **options)
    with torch.random.fork_rng(devices=[]):  # the weights are made on the CPU
        torch.manual_seed(seed)
        return _REGISTRY[name](num_classes=num_classes, **options)


def check_param_budget(model: nn.Module, budget: int, what: str = "model") -> int:
    """Raise ``ValueError`` if ``model`` has more than ``budget`` parameters; return the count."""
    n = count_params(model)
    if n > budget:
        raise ValueError(
            f"{what} has {n:,} parameters, over the budget of {budget:,} "
            f"(by {n - budget:,}). Make it narrower or shallower, or raise the budget "
            "if the assignment allows it."
        )
    return n


def summary(model: nn.Module, input_size=(1, 3, 32, 32), depth: int = 3, verbose: int = 0):
    """A torchinfo summary (returned; printed by the notebook with ``print``)."""
    import torchinfo

    return torchinfo.summary(
        model,
        input_size=input_size,
        depth=depth,
        verbose=verbose,
        col_names=("output_size", "num_params"),
    )


__all__ = [
    "register",
    "build_model",
    "available_models",
    "count_params",
    "check_param_budget",
    "count_flops",
    "count_macs",
    "summary",
]
