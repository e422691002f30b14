"""Network compression for part 5: sizes, 8-bit / 16-bit storage, pruning, leaderboard file.

Sizes
    ``model_size_bytes`` counts the bytes of the tensors (in memory); ``file_size`` and
    ``serialized_size`` measure what ``torch.save`` actually writes (tensor bytes plus a
    small per-tensor overhead of the zip container).

Quantization (storage only)
    ``quantize_minmax`` stores every floating tensor as ``uint8`` codes plus the tensor's
    min and max::

        scale = (max - min) / 255
        q     = round((x - min) / scale)        # 0 .. 255, one byte per value
        x'    = min + q * scale                 # |x - x'| <= scale / 2

    That is 4x smaller than float32. Computation still happens in float32 after
    ``dequantize_minmax``; the point is the size of the file. ``to_float16`` is the
    2x-smaller alternative. ``torch_dynamic_int8`` shows PyTorch's own int8 kernels for
    comparison.

Pruning
    Unstructured L1-magnitude pruning with ``torch.nn.utils.prune`` on the weights of
    ``Conv*d`` and ``Linear`` layers: a mask zeroes the smallest weights (globally or per
    layer). ``iterative_prune`` alternates pruning and fine-tuning and records the
    accuracy against the number of non-zero parameters. Note that zeros do not make a
    dense file smaller; they help a compressor (``zipped_size``) or sparse storage.

Leaderboard
    ``write_leaderboard_csv`` writes the Kaggle-style ``Id,Category`` submission.
"""
from __future__ import annotations

import copy
import csv
import io
import os
import zlib
from numbers import Integral
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

import torch
from torch import nn
from torch.nn.utils import prune

from kdutils.core.fileio import atomic_torch_save, atomic_write_text

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, torch.Tensor]

QFORMAT = "minmax-uint8-v1"
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


# ---------------------------------------------------------------------------
# Sizes and saving
# ---------------------------------------------------------------------------
def _state_of(model_or_state: Union[nn.Module, Mapping]) -> Mapping:
    return model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state


def model_size_bytes(model_or_state_dict: Union[nn.Module, Mapping]) -> int:
    """Bytes of all tensors in a model's state dict (parameters *and* buffers).

    Also accepts a state dict or any nested dict / list of tensors, such as the output of
    ``quantize_minmax``. Python numbers and strings are not counted; this is the payload,
    not the file (see ``file_size`` / ``serialized_size``).
    """

    def walk(obj) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, Mapping):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        return 0

    return walk(_state_of(model_or_state_dict))


def file_size(path: PathLike) -> int:
    """Size of a file in bytes (``FileNotFoundError`` naming the path if it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path} (save the model there first)")
    return path.stat().st_size


def serialized_size(obj: Any) -> int:
    """Bytes that ``torch.save(obj, ...)`` would write, measured in memory."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer().nbytes


def zipped_size(path: PathLike, level: int = 9) -> int:
    """Size of a file after zlib compression: shows what the zeros of pruning are worth."""
    return len(zlib.compress(Path(path).read_bytes(), level))


def _atomic_torch_save(obj: Any, path: PathLike) -> int:
    """Save atomically (``kdutils.core.fileio``); return the file size in bytes."""
    return file_size(atomic_torch_save(obj, path))


def cast_floating(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype) -> StateDict:
    """A copy of ``state_dict`` with floating tensors cast to ``dtype`` (others unchanged)."""
    return {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).clone()
        for k, v in state_dict.items()
    }


def to_float16(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Floating tensors to ``float16`` (half the bytes); integer buffers unchanged."""
    return cast_floating(state_dict, torch.float16)


def save_state(
    model: Union[nn.Module, Mapping], path: PathLike, dtype: Optional[torch.dtype] = None
) -> int:
    """Save a state dict atomically, floating tensors cast to ``dtype`` if given; return bytes.

    ``dtype=torch.float16`` gives a file about half the float32 size. Call
    ``remove_pruning`` first on a pruned model, or the file holds weights *and* masks.
    """
    state = _state_of(model)
    state = cast_floating(state, dtype) if dtype is not None else {k: v.detach() for k, v in state.items()}
    return _atomic_torch_save(state, path)


def load_state_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load ``state_dict`` into ``model``, casting each tensor to the model's dtype and device."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"state dict does not fit the model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]} (was it saved from the same architecture, pruning removed?)"
        )
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state_dict.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(
            f"{len(wrong)} tensors have the wrong shape (saved vs model), e.g. {wrong[:3]}; "
            "build the model with the same options (width, classes) it was saved with"
        )
    cast = {k: v.to(dtype=own[k].dtype, device=own[k].device) for k, v in state_dict.items()}
    model.load_state_dict(cast)
    return model


def load_state(path: PathLike, model: nn.Module) -> nn.Module:
    """Load a file written by ``save_state`` (any float dtype) back into a float32 ``model``."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    return load_state_into(model, state)


# ---------------------------------------------------------------------------
# 8-bit min-max quantization
# ---------------------------------------------------------------------------
def quantize_tensor(t: torch.Tensor) -> Dict[str, Any]:
    """One floating tensor -> ``{"q": uint8 codes, "min", "max", "dtype"}``.

    A constant tensor (max == min) gets scale 0 and all codes 0; it is restored exactly.
    """
    x = t.detach().cpu().to(torch.float64)
    if x.numel() == 0:
        lo = hi = 0.0
        q = torch.zeros(x.shape, dtype=torch.uint8)
    else:
        lo, hi = x.min().item(), x.max().item()
        scale = (hi - lo) / 255.0
        if scale > 0:
            q = torch.round((x - lo) / scale).clamp_(0, 255).to(torch.uint8)
        else:
            q = torch.zeros(x.shape, dtype=torch.uint8)
    return {"q": q, "min": lo, "max": hi, "dtype": str(t.dtype).replace("torch.", "")}


def dequantize_tensor(entry: Mapping[str, Any]) -> torch.Tensor:
    """Inverse of ``quantize_tensor``: ``min + q * (max - min) / 255`` in the original dtype."""
    lo, hi = float(entry["min"]), float(entry["max"])
    scale = (hi - lo) / 255.0
    x = lo + entry["q"].to(torch.float64) * scale
    return x.to(getattr(torch, entry["dtype"]))


def quantize_minmax(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """Quantize a state dict: floating tensors to uint8 + (min, max), the rest kept as is.

    Returns ``{"format": QFORMAT, "codes": uint8 vector, "entries": {name: entry}}`` in
    the state dict's order. The codes of all quantized tensors are concatenated into one
    buffer (``torch.save`` spends a few hundred bytes of container overhead per stored
    tensor, which would eat into the 4x saving of a small model); a quantized entry is
    ``{"offset", "shape", "min", "max", "dtype"}`` locating its codes in that buffer. A
    non-floating tensor (e.g. BN ``num_batches_tracked``) is kept as ``{"raw": tensor}``.
    The result holds only tensors, numbers, lists and strings, so
    ``torch.load(..., weights_only=True)`` reads it.
    """
    entries: Dict[str, Any] = {}
    codes: List[torch.Tensor] = []
    offset = 0
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"state dict entry {name!r} is a {type(t).__name__}, not a tensor")
        if t.is_floating_point():
            e = quantize_tensor(t)
            q = e.pop("q")
            codes.append(q.reshape(-1))
            entries[name] = {"offset": offset, "shape": list(q.shape), **e}
            offset += q.numel()
        else:
            entries[name] = {"raw": t.detach().cpu().clone()}
    packed = torch.cat(codes) if codes else torch.zeros(0, dtype=torch.uint8)
    return {"format": QFORMAT, "codes": packed, "entries": entries}


def dequantize_minmax(qdict: Mapping[str, Any]) -> StateDict:
    """Rebuild a state dict (original dtypes and shapes) from ``quantize_minmax`` output."""
    if not isinstance(qdict, Mapping) or qdict.get("format") != QFORMAT:
        raise ValueError(
            f"not a quantized state dict of format {QFORMAT!r} (was it written by save_quantized?)"
        )
    codes = qdict["codes"]
    state: StateDict = {}
    for name, e in qdict["entries"].items():
        if "raw" in e:
            state[name] = e["raw"].clone()
            continue
        n = 1
        for d in e["shape"]:
            n *= d
        q = codes[e["offset"] : e["offset"] + n].reshape(e["shape"])
        state[name] = dequantize_tensor({**e, "q": q})
    return state


def save_quantized(model: Union[nn.Module, Mapping], path: PathLike) -> int:
    """Save the 8-bit min-max quantized state dict atomically; return the file size in bytes."""
    return _atomic_torch_save(quantize_minmax(_state_of(model)), path)


def load_quantized(path: PathLike, model: nn.Module) -> nn.Module:
    """Load a ``save_quantized`` file (``weights_only=True``) and dequantize it into ``model``."""
    qdict = torch.load(Path(path), map_location="cpu", weights_only=True)
    return load_state_into(model, dequantize_minmax(qdict))


def torch_dynamic_int8(model: nn.Module) -> nn.Module:
    """PyTorch's dynamic int8 quantization of the ``Linear`` layers (a copy; CPU inference).

    For comparison with the storage-only min-max scheme: here the matrix multiplies run
    in int8. In a CNN only the final FC layer is affected, so the saving is small;
    convolutions need static quantization with calibration. Raises ``RuntimeError`` with
    an explanation if this PyTorch build has no quantization engine.
    """
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as e:  # removed / moved to torchao in some releases
        raise RuntimeError(
            "torch.ao.quantization.quantize_dynamic is not available in this PyTorch "
            f"({torch.__version__}); use the min-max storage quantization instead, or "
            "install torchao."
        ) from e
    m = copy.deepcopy(model).cpu().eval()
    try:
        return quantize_dynamic(m, {nn.Linear}, dtype=torch.qint8)
    except (RuntimeError, NotImplementedError, AssertionError) as e:
        raise RuntimeError(
            f"dynamic int8 quantization failed on this machine ({e}); the quantized "
            f"engines available are {torch.backends.quantized.supported_engines}."
        ) from e


# ---------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------
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
        prune.global_unstructured(
            [(m, "weight") for m in layers], pruning_method=prune.L1Unstructured, amount=amount
        )
    elif scope == "layer":
        for m in layers:
            prune.l1_unstructured(m, "weight", amount=amount)
    else:
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    return model


def prune_channels(model: nn.Module, amount: float, skip_depthwise: bool = True) -> nn.Module:
    """Structured pruning: zero the ``amount`` output channels (filters) of smallest L1 norm.

    Applied per Conv2d layer (``prune.ln_structured``, ``dim=0``). Whole filters become
    zero, which a follow-up "surgery" could remove to make the layers really narrower;
    here, as with unstructured pruning, the tensors keep their shape. Depthwise convs
    are skipped by default (a zero filter there kills a channel outright).
    """
    amount = _check_fraction(amount, "amount")
    for m in prunable_layers(model):
        if not isinstance(m, nn.Conv2d) or amount == 0:
            continue
        if skip_depthwise and m.groups > 1 and m.groups == m.in_channels:
            continue
        prune.ln_structured(m, "weight", amount=amount, n=1, dim=0)
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
        if prune.is_pruned(m) and hasattr(m, "weight_mask"):
            prune.remove(m, "weight")
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


# ---------------------------------------------------------------------------
# Leaderboard submission
# ---------------------------------------------------------------------------
def image_id(name: Union[str, os.PathLike]) -> str:
    """Test-image file name -> submission id: ``"test/0001.jpg"`` -> ``"0001"``."""
    p = Path(name)
    return p.stem if p.suffix.lower() in IMAGE_SUFFIXES else p.name


def write_leaderboard_csv(
    path: PathLike,
    ids: Sequence[Union[str, os.PathLike]],
    predictions: Iterable,
    num_classes: int = 11,
) -> Path:
    """Write the Kaggle-style submission: header ``Id,Category``, one row per test image.

    ``ids`` are test file names or ids (file names are reduced with ``image_id``), in the
    order of ``predictions`` (class indices: a list, numpy array or tensor of ints in
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

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["Id", "Category"])
    writer.writerows(zip(ids, classes))
    return atomic_write_text(path, buf.getvalue())


__all__ = [
    "model_size_bytes",
    "file_size",
    "serialized_size",
    "zipped_size",
    "cast_floating",
    "to_float16",
    "save_state",
    "load_state",
    "load_state_into",
    "quantize_tensor",
    "dequantize_tensor",
    "quantize_minmax",
    "dequantize_minmax",
    "save_quantized",
    "load_quantized",
    "torch_dynamic_int8",
    "prunable_layers",
    "prune_magnitude",
    "prune_channels",
    "sparsity",
    "count_nonzero_params",
    "remove_pruning",
    "iterative_prune",
    "image_id",
    "write_leaderboard_csv",
]
