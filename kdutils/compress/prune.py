"""Pruning: zero the weights that matter least, or remove whole channels, and measure the result.

Unstructured L1-magnitude pruning with ``torch.nn.utils.prune`` on the weights of ``Conv*d``
and ``Linear`` layers: a mask zeroes the smallest weights (globally or per layer). Zeros do
not make a dense file smaller or a dense model faster; they help a compressor
(``size.zipped_size``) or sparse storage. ``prune_channels`` zeroes whole output filters
(the tensors keep their shapes).

``remove_channels`` is structured pruning that really shrinks the network: with
torch-pruning's dependency graph (DepGraph, Fang et al., CVPR 2023,
https://arxiv.org/abs/2301.12900) it removes the output channels of smallest L1 norm
together with everything that depends on them (the BatchNorm that follows, the next
layer's inputs, a depthwise convolution's channels, the other side of a residual sum).
The result is an ordinary, narrower model: ``save_pruned`` stores its weights with the
layer widths, ``load_pruned`` narrows a freshly built model of the original architecture
to those widths and loads the weights (no masks).

``iterative_prune`` alternates either kind of pruning with fine-tuning and records the
accuracy (and whatever else ``evaluate_fn`` measures) after every step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from kdutils.core.counting import count_params
from kdutils.core.fileio import atomic_torch_save

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


# --------------------------------------------------------------------------- structured: remove channels
PRUNED_FORMAT = "pruned-channels-v1"


def _torch_pruning():
    try:
        import torch_pruning
    except ImportError as e:
        raise RuntimeError(
            f"removing channels needs torch-pruning (DepGraph): pip install torch-pruning ({e})"
        ) from e
    return torch_pruning


def output_layer(model: nn.Module) -> nn.Module:
    """The last ``Linear`` (else ``Conv*d``) layer: the one whose outputs are the classes, which
    channel pruning must keep."""
    layers = prunable_layers(model)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("model has no Conv/Linear layers to prune")
    return (linears or layers)[-1]


def remove_channels(model: nn.Module, example_inputs: torch.Tensor, amount: float,
                    ignored_layers: Optional[Sequence[nn.Module]] = None,
                    round_to: Optional[int] = None) -> nn.Module:
    """Remove ``amount`` of the channels of every prunable group of layers, in place.

    torch-pruning traces ``model`` on ``example_inputs`` (one small batch) into a
    dependency graph and groups the layers whose channels must go together (a conv and
    its BN, a depthwise conv and the pointwise conv feeding it, every layer on either
    side of a residual sum). In each group it removes the ``amount`` channels with the
    smallest L1 norm summed over the group (``GroupMagnitudeImportance(p=1)``): the
    layers become narrower, parameters, FLOPs, file and latency shrink. ``amount`` is a
    fraction of the *current* channels, so ``k`` calls leave about ``(1 - amount)**k`` of
    them. ``ignored_layers`` keep their output channels (default: :func:`output_layer`,
    the classes); ``round_to`` keeps channel counts multiples of that number.
    """
    amount = _check_fraction(amount, "amount")
    if amount == 0:
        return model
    tp = _torch_pruning()
    model.to(memory_format=torch.contiguous_format)  # fit may leave it channels-last
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    pruner = tp.pruner.BasePruner(
        model, example_inputs.to(p.device), importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=amount, ignored_layers=list(ignored_layers or [output_layer(model)]), round_to=round_to)
    pruner.step()
    model.train(was_training)
    return model


def _layer_widths(model: nn.Module) -> Dict[str, Dict[str, int]]:
    """The groups of every convolution (the rest of a narrowed layer's shape is in its weights)."""
    return {name: {"groups": m.groups} for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)}


def save_pruned(model: nn.Module, path, meta: Optional[Mapping[str, Any]] = None) -> int:
    """Save a model narrowed by :func:`remove_channels`: its state dict, each convolution's
    ``groups`` and ``meta`` (e.g. the architecture's name and options, for the caller that
    rebuilds it). Readable with ``torch.load(..., weights_only=True)``. Returns the bytes."""
    if any(hasattr(m, "weight_mask") for m in model.modules()):
        raise ValueError("the model still carries pruning masks; call remove_pruning(model) before save_pruned")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    obj = {"format": PRUNED_FORMAT, "state": state, "convs": _layer_widths(model), "meta": dict(meta or {}),
           "params": count_params(model)}
    atomic_torch_save(obj, path)
    return Path(path).stat().st_size


def _narrow_layer(name: str, module: nn.Module, state: Mapping[str, torch.Tensor], groups: Optional[int]) -> None:
    """Give ``module`` the tensor shapes of ``state`` (its entries ``<name>.<tensor>``) and the
    matching attributes (channels, features, groups)."""
    prefix = f"{name}." if name else ""
    for key, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
        saved = state.get(prefix + key)
        if tensor is None or saved is None or saved.shape == tensor.shape:
            continue
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.Linear)):
            raise ValueError(f"layer {name!r} ({type(module).__name__}) changed shape in the saved file; "
                             "only Conv, BatchNorm and Linear layers can be narrowed")
        new = torch.empty(saved.shape, dtype=tensor.dtype, device=tensor.device)
        setattr(module, key, nn.Parameter(new, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else new)
    if isinstance(module, nn.modules.conv._ConvNd):
        module.groups = groups if groups is not None else module.groups
        module.out_channels = module.weight.shape[0]
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None:
        module.num_features = module.weight.shape[0]
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape


def load_pruned(path, model: nn.Module) -> nn.Module:
    """Load a :func:`save_pruned` file into ``model``, a freshly built model of the original
    architecture: its layers are narrowed to the saved widths, then the weights are loaded
    (strictly: every tensor must fit). Returns ``model``; :func:`read_pruned_meta` gives the
    ``meta`` stored with it."""
    saved = _read_pruned(path)
    convs = saved["convs"]
    for name, module in model.named_modules():
        _narrow_layer(name, module, saved["state"], convs.get(name, {}).get("groups"))
    model.load_state_dict(saved["state"])
    return model


def _read_pruned(path) -> Mapping[str, Any]:
    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(saved, Mapping) or saved.get("format") != PRUNED_FORMAT:
        raise ValueError(f"{path} is not a file written by save_pruned (format {PRUNED_FORMAT!r}); "
                         "a plain state dict loads with kdutils.compress.size.load_state")
    return saved


def read_pruned_meta(path) -> Dict[str, Any]:
    """The ``meta`` dict stored by :func:`save_pruned` (and ``params``, the parameter count)."""
    saved = _read_pruned(path)
    return {**saved["meta"], "params": saved["params"]}


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


METHODS = ("magnitude", "channels")


def prune_step(model: nn.Module, rate: float, method: str = "magnitude", scope: str = "global",
               example_inputs: Optional[torch.Tensor] = None) -> nn.Module:
    """One pruning step of ``method``: ``"magnitude"`` zeroes ``rate`` of the remaining weights
    (:func:`prune_magnitude`, ``scope``), ``"channels"`` removes ``rate`` of the channels
    (:func:`remove_channels`, traced on ``example_inputs``)."""
    if method == "magnitude":
        return prune_magnitude(model, rate, scope=scope)
    if method == "channels":
        if example_inputs is None:
            raise ValueError("method='channels' needs example_inputs (one batch of the model's input shape)")
        return remove_channels(model, example_inputs, rate)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def iterative_prune(
    model: nn.Module,
    rate: float,
    steps: int,
    fine_tune_fn: Optional[Callable[[nn.Module], Any]],
    evaluate_fn: Callable[[nn.Module], Union[float, Mapping[str, Any]]],
    scope: str = "global",
    method: str = "magnitude",
    example_inputs: Optional[torch.Tensor] = None,
) -> List[Dict[str, Any]]:
    """Prune ``rate`` ``steps`` times (:func:`prune_step`), fine-tuning after each cut.

    Records one dict per step: ``step`` (0 = before pruning), ``rate``, ``method``,
    ``params`` (the parameter count: it falls when channels are removed, not when
    weights are zeroed), ``sparsity``, ``nonzero_params`` and ``accuracy`` =
    ``evaluate_fn(model)`` after the fine-tuning (if ``evaluate_fn`` returns a dict, its
    items are recorded instead). With ``"magnitude"`` the sparsity after ``k`` steps is
    about ``1 - (1 - rate)**k`` and the model stays pruned in place with masks (so that
    fine-tuning keeps zeros at zero; call ``remove_pruning`` before saving it); with
    ``"channels"`` about ``(1 - rate)**k`` of the channels remain and the model is an
    ordinary narrower one (:func:`save_pruned`).
    """
    rate = _check_fraction(rate, "rate", allow_zero=False)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def record(step: int) -> Dict[str, Any]:
        row: Dict[str, Any] = {"step": step, "rate": rate, "method": method, "params": count_params(model),
                               "sparsity": sparsity(model), "nonzero_params": count_nonzero_params(model)}
        result = evaluate_fn(model)
        if isinstance(result, Mapping):
            row.update(result)
        else:
            row["accuracy"] = float(result)
        return row

    history = [record(0)]
    for step in range(1, steps + 1):
        prune_step(model, rate, method, scope, example_inputs)
        if fine_tune_fn is not None:
            fine_tune_fn(model)
        history.append(record(step))
    return history


__all__ = [
    "PRUNABLE",
    "prunable_layers",
    "prune_magnitude",
    "prune_channels",
    "PRUNED_FORMAT",
    "output_layer",
    "remove_channels",
    "save_pruned",
    "load_pruned",
    "read_pruned_meta",
    "METHODS",
    "prune_step",
    "sparsity",
    "count_nonzero_params",
    "remove_pruning",
    "iterative_prune",
]
