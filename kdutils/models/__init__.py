"""Model registry and model-size helpers.

Every architecture in the project is registered under a short name and built with
``build_model(name, num_classes, **options)``. Families live in their own modules
(``cifar_resnet``, ``torchvision_resnet``, ``small_cnn``, ``mobile``) and register
themselves on import.

Counting conventions
--------------------
``count_params`` counts every parameter, trainable or not (the torchsummary
convention used by the assignments). Buffers such as BatchNorm running statistics
are not parameters and are not counted.

``count_flops`` uses ``torch.utils.flop_counter.FlopCounterMode``, which reports
**FLOPs** where one multiply-add counts as 2 FLOPs (so a conv's FLOPs are twice its
MACs). ``count_macs`` is provided as FLOPs / 2 for tables that quote multiply-adds.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn

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


def build_model(name: str, num_classes: int, **options) -> nn.Module:
    """Build a registered model. Unknown names raise a ``ValueError`` listing the known ones."""
    _load_families()
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}. "
            "Register new ones with @kdutils.models.register(name)."
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return _REGISTRY[name](num_classes=num_classes, **options)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them by default, the torchsummary convention).

    Shared parameters are counted once. For an ensemble pass an ``nn.ModuleList``
    (or sum the members' counts): every member counts.
    """
    seen = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


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


@torch.no_grad()
def count_flops(model: nn.Module, input_size=(1, 3, 32, 32)) -> int:
    """Forward FLOPs for one batch of ``input_size`` (1 multiply-add = 2 FLOPs).

    Divide by the batch size for per-image FLOPs (the default batch is 1).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        x = torch.zeros(*input_size, device=device)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def count_macs(model: nn.Module, input_size=(1, 3, 32, 32)) -> int:
    """Multiply-adds (MACs) = FLOPs / 2."""
    return count_flops(model, input_size) // 2


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
