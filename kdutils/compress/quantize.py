"""Smaller storage for a trained model: 8-bit min-max codes, float16, PyTorch's dynamic int8.

``quantize_minmax`` stores every floating tensor as ``uint8`` codes plus the tensor's min
and max::

    scale = (max - min) / 255
    q     = round((x - min) / scale)        # 0 .. 255, one byte per value
    x'    = min + q * scale                 # |x - x'| <= scale / 2

That is 4x smaller than float32. Computation still happens in float32 after
``dequantize_minmax``; the point is the size of the file. ``to_float16`` is the 2x-smaller
alternative. ``torch_dynamic_int8`` shows PyTorch's own int8 kernels for comparison.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Mapping, Union

import torch
from torch import nn

from kdutils.compress.size import (
    PathLike,
    StateDict,
    cast_floating,
    load_state_into,
    save_file,
    state_of,
)

QFORMAT = "minmax-uint8-v1"


def to_float16(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Floating tensors to ``float16`` (half the bytes); integer buffers unchanged."""
    return cast_floating(state_dict, torch.float16)


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
    return save_file(quantize_minmax(state_of(model)), path)


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


__all__ = [
    "QFORMAT",
    "to_float16",
    "quantize_tensor",
    "dequantize_tensor",
    "quantize_minmax",
    "dequantize_minmax",
    "save_quantized",
    "load_quantized",
    "torch_dynamic_int8",
]
