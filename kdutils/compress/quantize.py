"""Smaller storage and int8 inference for a trained model.

Storage (the assignment's method): ``quantize_minmax`` stores every floating tensor as
``uint8`` codes plus the tensor's min and max::

    scale = (max - min) / 255
    q     = round((x - min) / scale)        # 0 .. 255, one byte per value
    x'    = min + q * scale                 # |x - x'| <= scale / 2

That is 4x smaller than float32. Computation still happens in float32 after
``dequantize_minmax``; the point is the size of the file. ``to_float16`` is the 2x-smaller
alternative.

Inference: ``quantize_int8`` makes a model that *computes* in int8 on x86 CPUs, through
PyTorch's maintained path (PT2E export quantization with torchao's X86InductorQuantizer,
calibrated on sample images); ``save_int8`` / ``load_int8`` store it as a ``torch.export``
archive and lower it to oneDNN's int8 convolution kernels (depthwise ones included). It
replaces the eager ``torch.ao.quantization.quantize_dynamic``, which only touched the
``Linear`` layer of a CNN and which torch 2.14 reports as deprecated ("torch.ao.quantization
is deprecated and will be removed in 2.10", its DeprecationWarning).
"""
from __future__ import annotations

import copy
import io
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Union

import torch
from torch import nn

from kdutils.compress.size import (
    PathLike,
    StateDict,
    cast_floating,
    file_size,
    load_state_into,
    model_size_bytes,
    save_file,
    state_of,
)
from kdutils.core.fileio import atomic_write

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


# --------------------------------------------------------------------------- real int8 inference
#: The largest batch an exported int8 model accepts (the batch is its one free dimension).
_MAX_BATCH = 4096


def _torchao_pt2e():
    """torchao's PT2E quantization API (``prepare_pt2e``, ``convert_pt2e``, the x86 quantizer
    module); ``RuntimeError`` naming the fix when torchao is missing."""
    # torchao 0.18 registers an Enum with torch's pytree on import, which torch 2.14 answers
    # with a logged warning addressed to torchao's developers: silenced during the import.
    pytree_log = logging.getLogger("torch.utils._pytree")
    level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as e:
        raise RuntimeError(
            "int8 inference needs torchao (PyTorch's maintained quantization library): "
            f"pip install torchao ({e})"
        ) from e
    finally:
        pytree_log.setLevel(level)
    return prepare_pt2e, convert_pt2e, x86


def _export(model: nn.Module, example: torch.Tensor):
    """``torch.export`` with a free batch dimension (an example batch of 1 is doubled:
    export specialises a size-1 dimension)."""
    example = example.detach().cpu()
    if example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def _own_tensors(graph_module: torch.fx.GraphModule) -> None:
    """Remove the parameters and buffers the graph no longer reads (``convert_pt2e`` keeps
    the float32 weights next to their int8 copies; exported, they would double the file),
    and give every tensor it reads its own storage (``torch.export.save`` stores one
    storage per group of views and warns when no tensor of a group covers the others)."""
    used = {n.target for n in graph_module.graph.nodes if n.op == "get_attr"}
    names = [n for n, _ in graph_module.named_parameters()] + [n for n, _ in graph_module.named_buffers()]
    for name in names + sorted(used - set(names)):
        owner_name, _, attr = name.rpartition(".")
        owner = graph_module.get_submodule(owner_name) if owner_name else graph_module
        value = getattr(owner, attr, None)
        if name not in used:
            delattr(owner, attr)
        elif isinstance(value, torch.Tensor):
            copy_ = value.detach().clone()
            if isinstance(value, nn.Parameter):
                owner.register_parameter(attr, nn.Parameter(copy_, requires_grad=False))
            elif attr in owner._buffers:
                owner.register_buffer(attr, copy_)
            else:
                setattr(owner, attr, copy_)


def quantize_int8(model: nn.Module, calibration: Iterable[torch.Tensor]) -> torch.fx.GraphModule:
    """Static int8 post-training quantization for x86 CPUs (PT2E + torchao's X86InductorQuantizer).

    ``model`` is exported (``torch.export``, batch dimension free), observers are inserted
    by the quantizer's default recipe (int8 weights per output channel, symmetric;
    uint8 activations per tensor), ``calibration`` (batches of input images, e.g. training
    images) runs through it to record activation ranges, and ``convert_pt2e`` folds
    the weights to int8. Returns that converted graph: float in, float out, int8
    weights and quantize / dequantize steps around every convolution and the linear
    layer. :func:`save_int8` stores it, :func:`load_int8` lowers it to oneDNN's int8
    kernels. ``model`` is left unchanged (the float32 model is deep-copied).
    """
    prepare_pt2e, convert_pt2e, x86 = _torchao_pt2e()
    batches = [b.detach().float().cpu() for b in calibration]
    if not batches:
        raise ValueError("quantize_int8 needs at least one calibration batch (e.g. a few training images)")
    float_model = copy.deepcopy(model).cpu().eval()
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(_export(float_model, batches[0]).module(), quantizer)
    with torch.no_grad():
        for batch in batches:
            prepared(batch)
    converted = convert_pt2e(prepared)
    _own_tensors(converted)
    return converted


def save_int8(quantized: torch.fx.GraphModule, path: PathLike, example: torch.Tensor) -> int:
    """Store a :func:`quantize_int8` model as a ``torch.export`` archive (``.pt2``); return bytes.

    The archive holds the int8 weights, their scales and zero points, and the graph (the
    operations, as JSON); ``example`` (one input batch) fixes every dimension but the batch.
    For a model of 100k parameters the graph is larger than the weights: see
    :func:`int8_weight_bytes`.
    """
    program = _export(quantized, example)
    program.example_inputs = None  # not stored: the archive would carry a batch of images
    buffer = io.BytesIO()  # (torch.export.save wants a .pt2 name; the temporary file has none)
    torch.export.save(program, buffer)
    return file_size(atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue())))


def int8_weight_bytes(path: PathLike) -> int:
    """Bytes of the tensors (int8 weights, scales, zero points) inside a :func:`save_int8` file."""
    _torchao_pt2e()  # registers the quantized operators the file uses
    program = torch.export.load(Path(path))
    return model_size_bytes(dict(program.state_dict)) + model_size_bytes(
        {k: v for k, v in program.constants.items() if isinstance(v, torch.Tensor)})


class Int8Model(nn.Module):
    """A lowered int8 program as an ordinary module: ``model(x)`` runs without gradients,
    ``train()`` / ``eval()`` only set the flag (an exported program has no training mode)."""

    def __init__(self, program: torch.fx.GraphModule):
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "Int8Model":
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.program(x.float().contiguous())


def _cpu_decompositions() -> dict:
    # The decompositions that stay valid after autograd (composite-implicit ones only),
    # as in torchao.quantization.pt2e.lowering.lower_pt2e_quantized_to_x86.
    table = torch.export.default_decompositions()
    for op in list(table):
        if not torch._export.utils._is_cia_op(op):
            del table[op]
    return table


def load_int8(path: PathLike) -> Int8Model:
    """Load a :func:`save_int8` file and lower it for x86 CPUs: the quantize / dequantize
    patterns are fused into oneDNN's int8 convolution and linear kernels
    (``onednn.qconv_pointwise``, ``onednn.qlinear_pointwise``) by Inductor's freezing passes,
    without compiling code. torchao's ``lower_pt2e_quantized_to_x86`` does the same for
    one fixed input shape; here the batch size stays free."""
    from torch._inductor.constant_folding import constant_fold
    from torch._inductor.fx_passes.freezing_patterns import freezing_passes

    _torchao_pt2e()  # registers the quantized_decomposed / onednn operators the file uses
    program = torch.export.load(Path(path))
    module = program.run_decompositions(_cpu_decompositions()).module()
    graph = module.graph
    for node in list(graph.nodes):  # aten.t -> permute, so that the linear layer fuses too
        if node.op == "call_function" and node.target == torch.ops.aten.t.default:
            with graph.inserting_before(node):
                permuted = graph.call_function(torch.ops.aten.permute.default, args=(node.args[0], [1, 0]))
            node.replace_all_uses_with(permuted)
            graph.erase_node(node)
    module.recompile()
    # The passes propagate the placeholder's own fake tensor (symbolic batch): a real
    # example would fix the batch size to its own.
    symbolic_input = next(n for n in graph.nodes if n.op == "placeholder").meta["val"]
    with torch.no_grad():
        freezing_passes(module, (symbolic_input,))
        constant_fold(module)
    return Int8Model(module)


def int8_kernels(model: Int8Model) -> dict:
    """How many times each operator occurs in a lowered int8 model (``onednn.qconv_pointwise``
    counts the convolutions that run in int8; a float ``aten.convolution`` left over would
    show a layer the quantizer skipped)."""
    counts: Dict[str, int] = {}
    for node in model.program.graph.nodes:
        if node.op == "call_function":
            counts[str(node.target)] = counts.get(str(node.target), 0) + 1
    return counts


__all__ = [
    "QFORMAT",
    "to_float16",
    "quantize_tensor",
    "dequantize_tensor",
    "quantize_minmax",
    "dequantize_minmax",
    "save_quantized",
    "load_quantized",
    "quantize_int8",
    "save_int8",
    "int8_weight_bytes",
    "Int8Model",
    "load_int8",
    "int8_kernels",
]
