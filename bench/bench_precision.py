"""Benchmark 4: memory format and precision of ResNet-18 training steps.

Times the same training step (forward, cross-entropy, backward, SGD step) of CIFAR
ResNet-18 in four settings on the current device: fp32 or bf16 autocast, contiguous (NCHW)
or channels-last memory. Each setting has its own copy of the model (same initial
weights) and its own optimizer; the settings alternate round by round. The table gives
images/s and the speed relative to fp32 + contiguous, and marks the setting that
``kdutils.core.train.fit`` uses with ``Runtime(amp="auto", channels_last="auto")`` on this device: on CUDA
bf16 (fp16 where bf16 is missing) + channels-last; on the CPU the one its own cached
micro-benchmark ``kdutils.core.precision.choose_cpu_settings`` finds fastest.

    python bench/bench_precision.py [--quick]
"""
from __future__ import annotations

import copy

import common
import torch

from kdutils.core.precision import (
    choose_cpu_settings,
    make_training_step,
    resolve_amp,
    resolve_channels_last,
    resolve_device,
)
from kdutils.models import build_model

SETTINGS = {  # name: (autocast dtype, channels_last)
    "fp32 contiguous": (None, False),
    "fp32 channels_last": (None, True),
    "bf16 contiguous": (torch.bfloat16, False),
    "bf16 channels_last": (torch.bfloat16, True),
}


def main(quick: bool = False, model_name: str = "resnet18", batch_size: int = 0) -> list:
    device = resolve_device("auto")
    batch_size = batch_size or (128 if device.type == "cuda" else 32 if quick else 64)
    steps = 10 if device.type == "cuda" else 1
    rounds = 3 if quick else 5
    torch.manual_seed(0)
    base = build_model(model_name, 10)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    candidates = {}
    for name, (dtype, channels_last) in SETTINGS.items():
        model = copy.deepcopy(base).to(device).train()
        xb = x
        if channels_last:
            model.to(memory_format=torch.channels_last)
            xb = x.contiguous(memory_format=torch.channels_last)
        step = make_training_step(model, xb, y, dtype, lr=0.01)
        candidates[name] = lambda step=step: [step() for _ in range(steps)]
    seconds = common.timed(candidates, rounds, device)

    if device.type == "cpu":  # what fit measures for itself (cached per model and machine)
        auto_dtype, auto_cl = choose_cpu_settings(base, (min(batch_size, 32), 3, 32, 32))
    else:
        auto_dtype, auto_cl = resolve_amp("auto", device), resolve_channels_last("auto", device)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[auto_dtype]
    auto = f"{precision} {'channels_last' if auto_cl else 'contiguous'}"
    ref = seconds["fp32 contiguous"]
    rows = []
    for name, secs in seconds.items():
        rows.append({
            "setting": name,
            "images/s": batch_size * steps / common.median(secs),
            "speed vs fp32 contiguous": common.paired_ratio(ref, secs),
            "range over rounds": common.ratio_range(ref, secs),
            "fit (auto)": "chosen" if name == auto else "",
        })
    settings = {"model": model_name, "batch_size": batch_size, "steps_per_trial": steps, "rounds": rounds,
                "device": str(device), "fit_auto": auto}
    title = (f"4. Precision / memory format: {model_name} training steps, batch {batch_size}, "
             f"{device.type} (median of {rounds} alternating rounds, {common.clock_words()})")
    common.report("precision", title, rows, settings)
    return rows


if __name__ == "__main__":
    main(common.parse_args(__doc__).quick)
