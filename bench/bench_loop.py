"""Benchmark 2: the efficiency of ``kdutils.core.train.fit``'s training loop.

An epoch of ``fit`` (no test loader, ``log="off"``) against a minimal hand-written loop
(forward, cross-entropy, backward, optimizer step; nothing else) on the same model, the
same optimizer settings and the same pre-made batches already in memory. Both use the
precision and memory format that ``fit`` picks on this device, so the ratio
``fit / raw`` (images/s) measures what the framework adds per step: schedule, metrics,
checks. Each candidate trains its own copy of the model; they alternate round by round.

    python bench/bench_loop.py [--quick]
"""
from __future__ import annotations

import copy

import common
import torch
from torch import nn

from kdutils.core.precision import autocast_context, resolve_device, training_settings
from kdutils.core.recipe import Recipe, make_optimizer
from kdutils.core.train import Runtime, fit
from kdutils.models import build_model

LR = 0.01


def cases(quick: bool):
    """(label, model, batch size, batches): a small CNN and CIFAR ResNet-18 (a few batches)."""
    return [
        ("small CNN (student_cnn, pool_stride=2)", build_model("student_cnn", 10, pool_stride=2), 128, 2),
        ("ResNet-18 (CIFAR)", build_model("resnet18", 10), 32, 1 if quick else 2),
    ]


def loop_pair(model: nn.Module, batches: list, device: torch.device):
    """``(fit_epoch, raw_epoch)``: closures training copies of ``model`` for one epoch each."""
    loader = common.BatchList(batches)
    fit_model, raw_model = copy.deepcopy(model).to(device), copy.deepcopy(model).to(device)
    dtype, channels_last = training_settings(raw_model, loader, device)  # fit's own choice
    if channels_last:  # what kdutils' loader would deliver
        raw_model.to(memory_format=torch.channels_last)
        loader.batches = [(x.contiguous(memory_format=torch.channels_last), y, i) for x, y, i in batches]
    opt = make_optimizer(raw_model.parameters(), "sgd", lr=LR)  # fit's defaults: momentum, Nesterov, wd

    def raw_epoch():
        raw_model.train()
        for x, y, _ in loader:
            with autocast_context(device, dtype):
                out = raw_model(x)
            loss = nn.functional.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def fit_epoch():
        fit(fit_model, loader, None, Recipe(1, lr=LR), runtime=Runtime(log="off", device=device))

    return fit_epoch, raw_epoch


def main(quick: bool = False) -> list:
    device = resolve_device("auto")
    rounds = 5 if quick else 9
    rows = []
    for label, model, batch_size, n_batches in cases(quick):
        batches = [tuple(t.to(device) for t in b) for b in common.make_batches(n_batches, batch_size)]
        fit_epoch, raw_epoch = loop_pair(model, batches, device)
        seconds = common.timed({"fit": fit_epoch, "raw": raw_epoch}, rounds, device)
        images = n_batches * batch_size
        rows.append({"model": label, "batches x size": f"{n_batches} x {batch_size}",
                     "raw images/s": images / common.median(seconds["raw"]),
                     "fit images/s": images / common.median(seconds["fit"]),
                     "fit / raw": common.paired_ratio(seconds["raw"], seconds["fit"]),
                     "range over rounds": common.ratio_range(seconds["raw"], seconds["fit"])})
    title = (f"2. Loop efficiency: fit vs a minimal loop, same pre-made batches, {device.type} "
             f"(median of {rounds} alternating rounds, {common.clock_words()}; target fit/raw >= 0.95)")
    common.report("loop", title, rows, {"rounds": rounds, "device": str(device), "lr": LR})
    return rows


if __name__ == "__main__":
    main(common.parse_args(__doc__).quick)
