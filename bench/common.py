"""What every benchmark shares: ratios of interleaved timings, data, output files, tables.

Shared machines are noisy: another process can take a core for seconds, so one absolute
time means little. The benchmarks therefore time the candidates of a comparison **side by
side** with ``kdutils.core.precision.time_interleaved``: round after round, each candidate runs once,
in an order that alternates (A B, B A, A B, ...), and a comparison is summarised by the
median over rounds of the per-round ratio (both candidates of a round saw about the same
load), with the lowest and highest per-round ratio beside it.

Options of every script: ``--quick`` (a shorter run), ``--threads N`` (torch's intra-op
threads; default: torch's choice) and ``--clock cpu`` (time this process's CPU time
instead of wall time). On a machine shared with other jobs, ``--threads 1 --clock cpu``
gives ratios that hardly move from run to run; with more threads than free cores, threads
wait for each other at every parallel operation and wall times scatter widely.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from kdutils.core import data as D  # noqa: E402
from kdutils.core.profiles import runs_dir, shared_data_dir  # noqa: E402
from kdutils.core.precision import time_interleaved  # noqa: E402

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
#: The clock that ``timed`` reads (set by ``configure``).
clock = {"name": "wall"}


# --------------------------------------------------------------------------- options
def configure(threads: int = 0, clock_name: str = "wall") -> None:
    """Set torch's intra-op threads (0: leave torch's choice) and the clock of ``timed``."""
    if threads:
        torch.set_num_threads(threads)
    if clock_name not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock_name!r}")
    clock["name"] = clock_name


def parse_args(doc: str) -> argparse.Namespace:
    """The options every script takes (``--quick``, ``--threads``, ``--clock``), applied."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a shorter run: fewer images, batches and rounds")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall time, or this process's CPU time (steadier on a shared machine)")
    args = ap.parse_args()
    configure(args.threads, args.clock)
    return args


# --------------------------------------------------------------------------- timing
def timed(candidates: dict, rounds: int, device: torch.device, wall: bool = False) -> dict:
    """``time_interleaved`` (one warm-up each) with the configured clock; ``wall=True``
    forces wall time (for work done in other processes, e.g. DataLoader workers)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    read = CLOCKS["wall" if wall else clock["name"]]
    return time_interleaved(candidates, rounds, warmup=1, sync=sync, clock=read)


def clock_words(wall: bool = False) -> str:
    return "wall time" if wall or clock["name"] == "wall" else "CPU time of this process"


def paired_ratio(numerator: List[float], denominator: List[float]) -> float:
    """The median over rounds of ``numerator[r] / denominator[r]``."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def ratio_range(numerator: List[float], denominator: List[float]) -> str:
    """The lowest and highest per-round ratio, e.g. ``"0.93-1.04"``: how noisy the median is."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def median(values: List[float]) -> float:
    return statistics.median(values)


# --------------------------------------------------------------------------- data
def cifar10_train(n: Optional[int] = None):
    """CIFAR-10 training images: ``../shared/data/cifar10`` when present (through
    ``kdutils.core.data.load_dataset``), else generated images of the same shape. Returns
    ``(ImageSet, source)``; ``n`` keeps ``n / 10`` images of each class."""
    root = shared_data_dir()
    if root is not None and (root / "cifar10" / "train").is_dir():
        images, source = D.load_dataset("cifar10", root, "train"), str(root / "cifar10" / "train")
    else:
        x, y = D.synthetic_images(n or 10_000, 10, size=(32, 32), seed=0)
        images = D.ImageSet(torch.from_numpy(x), torch.from_numpy(y).long(), [str(c) for c in range(10)])
        source = "generated"
    if n is not None:
        images = images.per_class(n // images.num_classes)
    return images, f"{source} ({len(images)} images)"


class BatchList:
    """A tiny loader over pre-made batches ``(x, y, index)``: what ``fit`` gets when the
    benchmark wants to time the training loop and nothing else."""

    def __init__(self, batches):
        self.batches = list(batches)
        self.batch_size = len(self.batches[0][1])

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def make_batches(n_batches: int, batch_size: int, num_classes: int = 10, size: int = 32, seed: int = 0):
    """``n_batches`` random normalised image batches with labels and indices (CPU tensors)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n_batches):
        x = torch.randn(batch_size, 3, size, size, generator=g)
        y = torch.randint(0, num_classes, (batch_size,), generator=g)
        out.append((x, y, torch.arange(b * batch_size, (b + 1) * batch_size)))
    return out


# --------------------------------------------------------------------------- output
def environment() -> dict:
    """Device, versions and thread count: stored with every result."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if dev == "cuda" else (platform.processor() or platform.machine())
    return {
        "device": dev,
        "device_name": name,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "clock": clock["name"],
        "cpu_cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
    }


def output_dir() -> Path:
    path = runs_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def report(name: str, title: str, rows: List[dict], settings: dict, floatfmt: str = ".3g") -> str:
    """Print ``rows`` as a Markdown table under ``title`` and write ``runs/bench/<name>.csv``
    (the table), ``<name>.json`` (table, settings, environment) and ``<name>.md`` (the
    printed text); return the text."""
    import pandas as pd

    env = environment()
    text = (f"\n## {title}\n\n" + pd.DataFrame(rows).to_markdown(index=False, floatfmt=floatfmt) + "\n\n"
            f"{env['device']} ({env['cpu_capability']}, {env['torch_threads']} threads, load average "
            f"{env['load_average_1min']} on {env['cpu_cores']} cores), torch {env['torch']}, "
            f"`{env['command']}`\n")
    print(text, flush=True)
    out = output_dir()
    pd.DataFrame(rows).to_csv(out / f"{name}.csv", index=False)
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps({"benchmark": name, "title": title, "settings": settings,
                                                  "environment": env, "rows": rows}, indent=2))
    return text
