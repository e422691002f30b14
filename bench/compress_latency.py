"""Benchmark: CPU inference latency of the compressed food student, and int8 on depthwise layers.

Two tables, every candidate timed side by side with its float32 reference
(``common.timed``: alternating rounds; ratios are medians of per-round ratios):

1. the whole part-5 student (``food_student``, 11 classes) at one crop: float32; the int8
   model (PT2E + torchao's X86InductorQuantizer, ``kdutils.compress.quantize``); the student
   with 30% and 50% of its channels removed (``kdutils.compress.prune.remove_channels``);
   the student with 50% of its weights zeroed (magnitude pruning: same dense shapes);
   at batch 1 and 64.
2. stacks of four blocks of one kind (conv + BN + ReLU) in float32 and int8: 3x3 depthwise,
   1x1 pointwise and ordinary 3x3 convolutions of the same width, to see whether the int8
   kernels speed up depthwise convolutions as they do dense ones (four in a row, so the
   conversions to and from int8 at the ends weigh less).

The weights are random (BatchNorm statistics from a few random batches): latency does not
depend on their values. The int8 models are calibrated on random batches for the same reason.

    python bench/compress_latency.py [--quick] [--threads 1] [--clock cpu] [--crop 64]
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import common
import torch
from torch import nn

from kdutils.compress import prune, quantize
from kdutils.core.counting import count_flops, count_params
from kdutils.models import build_model
from kdutils.models.mobile import conv_bn_relu


def _with_statistics(model: nn.Module, shape) -> nn.Module:
    """``model`` in eval mode after a few training-mode batches (BatchNorm statistics)."""
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.randn(8, *shape))
    return model.eval()


def _int8(model: nn.Module, shape, folder: Path, name: str) -> nn.Module:
    quantized = quantize.quantize_int8(model, [torch.randn(16, *shape) for _ in range(4)])
    path = folder / f"{name}.pt2"
    quantize.save_int8(quantized, path, torch.randn(1, *shape))
    return quantize.load_int8(path)


def _rows(reference: str, candidates: dict, batch: int, shape, rounds: int, extra: dict) -> list:
    x = torch.randn(batch, *shape)
    calls = {name: (lambda m=m: m(x)) for name, m in candidates.items()}
    with torch.inference_mode():
        seconds = common.timed(calls, rounds, torch.device("cpu"))
    ref = seconds[reference]
    return [{"model": name, "batch": batch, **extra.get(name, {}),
             "ms / image": 1e3 * common.median(s) / batch,
             "speed vs float32": common.paired_ratio(ref, s), "range over rounds": common.ratio_range(ref, s)}
            for name, s in seconds.items()]


def whole_student(crop: int, rounds: int, folder: Path) -> list:
    shape = (3, crop, crop)
    base = _with_statistics(build_model("food_student", 11), shape)
    models = {"float32": base, "int8 (PT2E x86)": _int8(base, shape, folder, "student")}
    for amount in (0.3, 0.5):
        models[f"channels -{int(100 * amount)}%"] = prune.remove_channels(copy.deepcopy(base),
                                                                        torch.zeros(2, *shape), amount).eval()
    models["magnitude 50% zeros"] = prune.remove_pruning(prune.prune_magnitude(copy.deepcopy(base), 0.5)).eval()
    extra = {name: {"params": count_params(m), "MFLOPs": count_flops(m, (1, *shape)) / 1e6}
             for name, m in models.items() if name != "int8 (PT2E x86)"}
    extra["int8 (PT2E x86)"] = extra["float32"]  # the same network, its multiply-adds in int8
    return [row for batch in (1, 64) for row in _rows("float32", models, batch, shape, rounds, extra)]


def single_blocks(width: int, side: int, rounds: int, folder: Path) -> list:
    shape, rows = (width, side, side), []
    blocks = {"depthwise 3x3": dict(kernel_size=3, groups=width), "pointwise 1x1": dict(kernel_size=1),
              "ordinary 3x3": dict(kernel_size=3)}
    for kind, options in blocks.items():  # four blocks in a row: int8 stays int8 between them
        block = _with_statistics(nn.Sequential(*(conv_bn_relu(width, width, **options) for _ in range(4))), shape)
        pair = {f"{kind} float32": block, f"{kind} int8": _int8(block, shape, folder, kind.replace(" ", "_"))}
        rows += _rows(f"{kind} float32", pair, 64, shape, rounds, {})
    return rows


def main(quick: bool = False, crop: int = 64) -> None:
    rounds = 5 if quick else 15
    with tempfile.TemporaryDirectory() as tmp:
        student = whole_student(crop, rounds, Path(tmp))
        blocks = single_blocks(128, 16, rounds, Path(tmp))
    settings = {"crop": crop, "rounds": rounds, "block": "4 blocks, 128 channels, 16x16, batch 64"}
    common.report("compress_latency", f"Food student at {crop}px on the CPU: float32, int8, pruned "
                  f"(median of {rounds} alternating rounds, {common.clock_words()})", student, settings)
    common.report("compress_latency_blocks", f"Four blocks of one kind, 128 channels at 16x16, batch 64: float32 vs int8 "
                  f"(median of {rounds} alternating rounds, {common.clock_words()})", blocks, settings)


if __name__ == "__main__":
    import sys

    crop = 64
    if "--crop" in sys.argv:  # the shared options of common.parse_args, plus the crop
        i = sys.argv.index("--crop")
        crop = int(sys.argv[i + 1])
        del sys.argv[i:i + 2]
    main(common.parse_args(__doc__).quick, crop)
