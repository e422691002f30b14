"""CPU inference latency of several models, measured side by side.

A shared machine's speed drifts with its load; two models timed one after the other can
differ by that drift alone. :func:`cpu_latency` therefore times all candidates in
interleaved rounds (``kdutils.core.precision.time_interleaved``: each round runs every
model once, alternating the order) and reports the median per model, so every model sees
about the same load and their *ratios* stay meaningful even when the absolute numbers move.
"""
from __future__ import annotations

import statistics
from typing import Dict, List, Mapping, Sequence

import torch
from torch import nn

from kdutils.core.precision import time_interleaved

#: Batch sizes of the latency tables: one image (interactive use) and a batch (throughput).
BATCH_SIZES = (1, 64)


def _check_cpu(name: str, model: nn.Module) -> None:
    devices = {t.device.type for t in list(model.parameters()) + list(model.buffers())}
    if devices - {"cpu"}:
        raise ValueError(f"model {name!r} is on {sorted(devices)}; pass a CPU copy "
                         "(copy.deepcopy(model).cpu()) to measure CPU latency")


def cpu_latency_rounds(models: Mapping[str, nn.Module], image_shape: Sequence[int],
                       batch_sizes: Sequence[int] = BATCH_SIZES, rounds: int = 10,
                       warmup: int = 2) -> Dict[int, Dict[str, List[float]]]:
    """Seconds per batch of each CPU model in every round, ``{batch size: {name: [s, ...]}}``.

    ``image_shape`` is one input without the batch dimension, e.g. ``(3, 64, 64)``. For
    each batch size, a random batch runs through every model ``warmup`` times untimed,
    then in interleaved rounds under ``torch.inference_mode()``: ``rounds`` of them, three
    times as many at batch 1 (cheap, and the noisiest). The models are put in ``eval()``;
    the threads are torch's current setting (``torch.get_num_threads()``).
    """
    if not models:
        raise ValueError("cpu_latency needs at least one model")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    for name, model in models.items():
        _check_cpu(name, model)
        model.eval()
    result: Dict[int, Dict[str, List[float]]] = {}
    for batch in batch_sizes:
        x = torch.randn(int(batch), *image_shape)

        def runner(model: nn.Module):
            return lambda: model(x)

        with torch.inference_mode():
            result[int(batch)] = time_interleaved({n: runner(m) for n, m in models.items()},
                                                  3 * rounds if batch == 1 else rounds, warmup=warmup)
    return result


def cpu_latency(models: Mapping[str, nn.Module], image_shape: Sequence[int],
                batch_sizes: Sequence[int] = BATCH_SIZES, rounds: int = 10,
                warmup: int = 2) -> Dict[str, Dict[int, float]]:
    """Milliseconds per image of each CPU model, ``{name: {batch size: ms}}``: the median
    over the rounds of :func:`cpu_latency_rounds`, divided by the batch size."""
    timed = cpu_latency_rounds(models, image_shape, batch_sizes, rounds, warmup)
    return {name: {b: 1e3 * statistics.median(by_name[name]) / b for b, by_name in timed.items()}
            for name in models}


def paired_speedup(timed: Mapping[int, Mapping[str, List[float]]], reference: str,
                   candidate: str) -> Dict[int, float]:
    """How many times faster ``candidate`` runs than ``reference``, per batch size: the
    median over rounds of ``reference / candidate`` within a round (both saw the same load),
    steadier than the ratio of the two medians."""
    return {b: statistics.median(r / c for r, c in zip(by_name[reference], by_name[candidate]))
            for b, by_name in timed.items()}


__all__ = ["BATCH_SIZES", "cpu_latency_rounds", "cpu_latency", "paired_speedup"]
