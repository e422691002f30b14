"""How big a model is, and saving / loading its state dict in a chosen float dtype.

``model_size_bytes`` counts the bytes of the tensors (in memory); ``file_size`` and
``serialized_size`` measure what ``torch.save`` actually writes (tensor bytes plus a small
per-tensor overhead of the zip container); ``zipped_size`` shows what a compressor makes of
a file (the zeros of pruning only pay off there). ``save_state`` / ``load_state`` write and
read a state dict atomically, optionally cast to another float dtype (e.g. float16).
"""
from __future__ import annotations

import io
import os
import zlib
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch
from torch import nn

from kdutils.core.fileio import atomic_torch_save

PathLike = Union[str, os.PathLike]
StateDict = Dict[str, torch.Tensor]


def state_of(model_or_state: Union[nn.Module, Mapping]) -> Mapping:
    """The state dict of a module; a mapping is returned as it is."""
    return model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state


def model_size_bytes(model_or_state_dict: Union[nn.Module, Mapping]) -> int:
    """Bytes of all tensors in a model's state dict (parameters *and* buffers).

    Also accepts a state dict or any nested dict / list of tensors, such as the output of
    ``quantize.quantize_minmax``. Python numbers and strings are not counted; this is the
    payload, not the file (see ``file_size`` / ``serialized_size``).
    """

    def walk(obj) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, Mapping):
            return sum(walk(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(walk(v) for v in obj)
        return 0

    return walk(state_of(model_or_state_dict))


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


def save_file(obj: Any, path: PathLike) -> int:
    """``torch.save`` atomically (``kdutils.core.fileio``); return the file size in bytes."""
    return file_size(atomic_torch_save(obj, path))


def cast_floating(state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype) -> StateDict:
    """A copy of ``state_dict`` with floating tensors cast to ``dtype`` (others unchanged)."""
    return {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).clone()
        for k, v in state_dict.items()
    }


def save_state(
    model: Union[nn.Module, Mapping], path: PathLike, dtype: Optional[torch.dtype] = None
) -> int:
    """Save a state dict atomically, floating tensors cast to ``dtype`` if given; return bytes.

    ``dtype=torch.float16`` gives a file about half the float32 size. Call
    ``prune.remove_pruning`` first on a pruned model, or the file holds weights *and* masks.
    """
    state = state_of(model)
    state = cast_floating(state, dtype) if dtype is not None else {k: v.detach() for k, v in state.items()}
    return save_file(state, path)


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
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
             for k, v in state_dict.items() if v.shape != own[k].shape]
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


__all__ = [
    "PathLike",
    "StateDict",
    "state_of",
    "model_size_bytes",
    "file_size",
    "serialized_size",
    "zipped_size",
    "save_file",
    "cast_floating",
    "save_state",
    "load_state_into",
    "load_state",
]
