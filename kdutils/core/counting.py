"""Model size and cost: parameters and FLOPs, one convention everywhere.

``count_params`` counts every parameter, trainable or not (the torchsummary convention
used by the assignments); shared parameters count once; buffers such as BatchNorm running
statistics are not parameters. ``count_flops`` uses
``torch.utils.flop_counter.FlopCounterMode``, which reports **FLOPs** with one
multiply-add = 2 FLOPs (a convolution's FLOPs are twice its MACs); ``count_macs`` is
FLOPs / 2 for tables that quote multiply-adds.
"""
from __future__ import annotations

import torch
from torch import nn


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
