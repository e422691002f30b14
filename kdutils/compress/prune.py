"""Pruning: zero the weights (or whole filters) that matter least, and measure the sparsity.

Unstructured L1-magnitude pruning with ``torch.nn.utils.prune`` on the weights of ``Conv*d``
and ``Linear`` layers: a mask zeroes the smallest weights (globally or per layer).
``prune_channels`` zeroes whole output filters instead. ``iterative_prune`` alternates
pruning and fine-tuning and records the accuracy against the number of non-zero
parameters. Zeros do not make a dense file smaller; they help a compressor
(``size.zipped_size``) or sparse storage.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable_layers(model: nn.Module) -> List[nn.Module]:
    """The ``Conv*d`` and ``Linear`` layers whose ``weight`` pruning acts on."""
    return [m for m in model.modules() if isinstance(m, PRUNABLE)]


def _effective_weight(module: nn.Module) -> torch.Tensor:
    # With a pruning mask the parameter is ``weight_orig``; ``weight`` is only refreshed
    # at the next forward, so recompute it from the mask.
    if hasattr(module, "weight_mask"):
        return module.weight_orig.detach() * module.weight_mask
    return module.weight.detach()


def _check_fraction(value: float, what: str, allow_zero: bool = True) -> float:
    ok = (0.0 <= value < 1.0) if allow_zero else (0.0 < value < 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        lo = "0 <=" if allow_zero else "0 <"
        raise ValueError(f"{what} must be a fraction with {lo} {what} < 1, got {value!r}")
    return float(value)


def prune_magnitude(model: nn.Module, amount: float, scope: str = "global") -> nn.Module:
    """Unstructured L1 (magnitude) pruning of Conv/Linear weights, in place.

    ``amount`` is the fraction of the *still unpruned* weights to zero (PyTorch's
    semantics: on a fresh model that is the target sparsity; calling again prunes
    further). ``scope="global"`` ranks all weights together, so layers with many small
    weights lose more; ``scope="layer"`` removes ``amount`` from every layer.
    Biases and BatchNorm parameters are left alone.
    """
    amount = _check_fraction(amount, "amount")
    layers = prunable_layers(model)
    if not layers:
        raise ValueError("model has no Conv/Linear layers to prune")
    if amount == 0:
        return model
    # torch's pruning flattens weights and masks with .view(-1), which fails on a model
    # in channels-last layout (fit may train in it): return to the default layout first,
    # including the masked ``weight`` that pruning keeps as a plain attribute.
    model.to(memory_format=torch.contiguous_format)
    for m in layers:
        if hasattr(m, "weight_mask"):
            m.weight = m.weight_orig * m.weight_mask
    if scope == "global":
        torch_prune.global_unstructured(
            [(m, "weight") for m in layers], pruning_method=torch_prune.L1Unstructured, amount=amount
        )
    elif scope == "layer":
        for m in layers:
            torch_prune.l1_unstructured(m, "weight", amount=amount)
    else:
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    return model


def prune_channels(model: nn.Module, amount: float, skip_depthwise: bool = True) -> nn.Module:
    """Structured pruning: zero the ``amount`` output channels (filters) of smallest L1 norm.

    Applied per Conv2d layer (``torch.nn.utils.prune.ln_structured``, ``dim=0``). Whole
    filters become zero, which a follow-up "surgery" could remove to make the layers
    really narrower; here, as with unstructured pruning, the tensors keep their shape.
    Depthwise convs are skipped by default (a zero filter there kills a channel outright).
    """
    amount = _check_fraction(amount, "amount")
    for m in prunable_layers(model):
        if not isinstance(m, nn.Conv2d) or amount == 0:
            continue
        if skip_depthwise and m.groups > 1 and m.groups == m.in_channels:
            continue
        torch_prune.ln_structured(m, "weight", amount=amount, n=1, dim=0)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of zero weights in the prunable (Conv/Linear) layers' ``weight`` tensors."""
    layers = prunable_layers(model)
    total = sum(m.weight_orig.numel() if hasattr(m, "weight_mask") else m.weight.numel() for m in layers)
    if total == 0:
        return 0.0
    zeros = sum(int((_effective_weight(m) == 0).sum()) for m in layers)
    return zeros / total


def count_nonzero_params(model: nn.Module) -> int:
    """Non-zero entries of all parameters, with pruning masks applied (each parameter once)."""
    seen = set()
    total = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            mask = getattr(module, name[: -len("_orig")] + "_mask", None) if name.endswith("_orig") else None
            value = p.detach() * mask if mask is not None else p.detach()
            total += int(torch.count_nonzero(value))
    return total


def remove_pruning(model: nn.Module) -> nn.Module:
    """Make pruning permanent: fold each mask into its weight and drop ``weight_orig``/``weight_mask``.

    Afterwards the state dict has its original keys again (and zeros in the weights).
    """
    for m in model.modules():
        if torch_prune.is_pruned(m) and hasattr(m, "weight_mask"):
            torch_prune.remove(m, "weight")
    return model


def iterative_prune(
    model: nn.Module,
    rate: float,
    steps: int,
    fine_tune_fn: Optional[Callable[[nn.Module], Any]],
    evaluate_fn: Callable[[nn.Module], Union[float, Mapping[str, Any]]],
    scope: str = "global",
) -> List[Dict[str, Any]]:
    """Prune ``rate`` of the remaining weights ``steps`` times, fine-tuning after each cut.

    Records one dict per step: ``step`` (0 = before pruning), ``rate``, ``sparsity``,
    ``nonzero_params`` and ``accuracy`` = ``evaluate_fn(model)`` after the fine-tuning
    (if ``evaluate_fn`` returns a dict, its items are recorded instead). After ``k``
    steps the sparsity is about ``1 - (1 - rate)**k``. The model stays pruned in place
    with masks (so that fine-tuning keeps zeros at zero); call ``remove_pruning`` before
    saving it.
    """
    rate = _check_fraction(rate, "rate", allow_zero=False)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")

    def record(step: int) -> Dict[str, Any]:
        row: Dict[str, Any] = {
            "step": step,
            "rate": rate,
            "sparsity": sparsity(model),
            "nonzero_params": count_nonzero_params(model),
        }
        result = evaluate_fn(model)
        if isinstance(result, Mapping):
            row.update(result)
        else:
            row["accuracy"] = float(result)
        return row

    history = [record(0)]
    for step in range(1, steps + 1):
        prune_magnitude(model, rate, scope=scope)
        if fine_tune_fn is not None:
            fine_tune_fn(model)
        history.append(record(step))
    return history


__all__ = [
    "PRUNABLE",
    "prunable_layers",
    "prune_magnitude",
    "prune_channels",
    "sparsity",
    "count_nonzero_params",
    "remove_pruning",
    "iterative_prune",
]
