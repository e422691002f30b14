"""Devices and numeric precision: where a run trains and in which precision and memory layout.

- :func:`resolve_device`, :func:`resolve_amp`, :func:`resolve_channels_last` turn the
  ``"auto"`` settings of a :class:`~kdutils.core.train.Runtime` into concrete ones;
- on the CPU, :func:`choose_cpu_settings` *measures* whether bf16 autocast and
  channels-last memory are faster for a given model (they are on CPUs with AMX, not
  everywhere) and caches the choice per model and machine;
- :func:`time_interleaved` and :func:`make_training_step` are the timing tools that the
  choice and ``bench/`` share.
"""
from __future__ import annotations

import copy
import json
import statistics
import time
import warnings
from contextlib import contextmanager, nullcontext
from typing import Callable, Optional

import torch
from torch import nn

from kdutils.core.counting import count_params
from kdutils.core.fileio import atomic_write_json
from kdutils.core.outputs import primary_logits


# --------------------------------------------------------------------------- devices
def resolve_device(device="auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_amp(amp, device: torch.device) -> Optional[torch.dtype]:
    """``"auto"``: bf16 on CUDA where supported, else fp16; off elsewhere (``fit`` measures
    the CPU's choice with :func:`choose_cpu_settings`). ``"bf16"``, ``"fp16"`` or ``"off"``
    force it."""
    if amp in (None, False, "off", "fp32"):
        return None
    if amp == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if amp in ("bf16", torch.bfloat16):
        return torch.bfloat16
    if amp in ("fp16", torch.float16):
        return torch.float16
    raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {amp!r}")


def resolve_channels_last(channels_last, device: torch.device) -> bool:
    """``"auto"``: on for CUDA, off elsewhere (``fit`` measures the CPU's choice with
    :func:`choose_cpu_settings`); True or False force it."""
    if channels_last == "auto":
        return device.type == "cuda"
    return bool(channels_last)


def autocast_context(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- timing
def time_interleaved(candidates: dict, rounds: int, warmup: int = 1,
                     sync: Optional[Callable[[], None]] = None,
                     clock: Callable[[], float] = time.perf_counter) -> dict:
    """Seconds of each candidate (a no-argument callable) per round, timed side by side.

    Each candidate first runs ``warmup`` times untimed (allocator, kernel selection). Then,
    for ``rounds`` rounds, each runs once; odd rounds go in reverse order, so that neither
    always runs first and both see about the same load of a shared machine. ``sync``
    (e.g. ``torch.cuda.synchronize``) is called before each reading of ``clock`` (wall
    time by default; ``time.process_time`` counts this process's CPU time instead).
    """
    sync = sync or (lambda: None)
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    seconds = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync()
            t0 = clock()
            candidates[name]()
            sync()
            seconds[name].append(clock() - t0)
    return seconds


def make_training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: Optional[torch.dtype],
                       lr: float = 1e-3) -> Callable[[], None]:
    """A closure making one SGD step of ``model`` on the batch ``(x, y)``: forward under
    autocast ``dtype`` (None: fp32), cross-entropy, backward, step. The unit of work that
    :func:`choose_cpu_settings` and ``bench/`` time."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)

    def step():
        with autocast_context(x.device, dtype):
            z = primary_logits(model(x))
        loss = nn.functional.cross_entropy(z.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: CPU choices measured in this process: key -> (autocast dtype or None, channels_last).
_CPU_CHOICES: dict = {}


def choose_cpu_settings(model: nn.Module, input_size=(32, 3, 32, 32), amp="auto", channels_last="auto",
                        run_images: Optional[int] = None, rounds: int = 3, margin: float = 0.05) -> tuple:
    """The faster CPU training setting for ``model``: ``(autocast dtype or None, channels_last)``.

    The settings left on ``"auto"`` (fp32 or bf16 autocast; contiguous or channels-last
    memory) are timed on copies of the model (SGD steps on random inputs of ``input_size``,
    one warm-up each, then ``rounds`` interleaved rounds; the model itself is untouched).
    The median-fastest wins, but a setting other than fp32 + contiguous must be at least
    ``margin`` faster, so that timing noise does not flip the choice.

    The measurement costs about ``1 + rounds`` steps per setting. It is made only when that
    is at most 5% of ``run_images`` (the images the run will train on; None: always);
    otherwise fp32 + contiguous is kept. A measured choice is cached per model class,
    parameter count and input size, in memory and in ``<cache_dir>/cpu_settings.json``, so
    later runs and resumed runs on the same machine use the same setting without measuring.

    Measured with ``bench/bench_precision.py`` on the development machine (2 cores of a
    Xeon with AVX-512 and AMX-BF16, torch 2.14, CIFAR ResNet-18 training steps, batch 64,
    speed relative to fp32 + contiguous, see bench/PERFORMANCE.md): channels-last 1.07x,
    bf16 2.22x, bf16 + channels-last 2.66x (two threads, wall time; one thread: 1.05x,
    2.36x, 2.78x). There ``fit`` chooses bf16 + channels-last; on a CPU where bf16 is not
    faster, fp32 stays.
    """
    from kdutils.core.data import cache_dir

    cpu = torch.device("cpu")
    dtypes = [None, torch.bfloat16] if amp == "auto" else [resolve_amp(amp, cpu)]
    formats = [False, True] if channels_last == "auto" else [bool(channels_last)]
    options = [(d, f) for f in formats for d in dtypes]
    default = options[0]
    if len(options) == 1:
        return default
    key = (f"{type(model).__module__}.{type(model).__qualname__}|{count_params(model)} params|"
           f"input {tuple(input_size)}|amp={amp}|channels_last={channels_last}|torch {torch.__version__}|"
           f"{torch.get_num_threads()} threads")
    if key in _CPU_CHOICES:
        return _CPU_CHOICES[key]
    path = cache_dir() / "cpu_settings.json"
    known = _stored_choice(_read_cpu_settings(path).get(key))
    if known is not None:
        _CPU_CHOICES[key] = known
        return known
    if run_images is not None and 20 * len(options) * (1 + rounds) * input_size[0] > run_images:
        return default

    def memory_format(channels_last: bool):
        return torch.channels_last if channels_last else torch.contiguous_format

    x = torch.randn(*input_size)
    y = torch.zeros(input_size[0], dtype=torch.long)
    copies = {f: copy.deepcopy(model).to(cpu, memory_format=memory_format(f)).train() for f in formats}
    steps = {(d, f): make_training_step(copies[f], x.contiguous(memory_format=memory_format(f)), y, d)
             for d, f in options}
    try:
        seconds = time_interleaved(steps, rounds)
    except RuntimeError:  # a setting this model or CPU does not support: keep the default
        return default
    median = {o: statistics.median(s) for o, s in seconds.items()}
    best = min(options, key=median.get)
    if median[best] > (1 - margin) * median[default]:
        best = default
    _CPU_CHOICES[key] = best
    names = {v: k for k, v in _DTYPES.items()}
    _remember_cpu_choice(path, key, {"amp": names[best[0]], "channels_last": best[1], "seconds_per_step": {
        f"{names[d]} {'channels_last' if f else 'contiguous'}": median[(d, f)] for d, f in options}})
    return best


def _read_cpu_settings(path) -> dict:
    """The measured choices stored in ``path`` ({} when there are none). The file is a
    disposable cache: a damaged one is reported with a warning and measured afresh."""
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        warnings.warn(f"the CPU-settings cache {path} is damaged ({e}); measuring again and rewriting it",
                      stacklevel=3)
        return {}
    if not isinstance(stored, dict):
        warnings.warn(f"the CPU-settings cache {path} holds a JSON {type(stored).__name__}, not an object; "
                      "measuring again and rewriting it", stacklevel=3)
        return {}
    return stored


def _stored_choice(entry) -> Optional[tuple]:
    """``(dtype, channels_last)`` of a stored entry; None when absent or malformed."""
    if isinstance(entry, dict) and entry.get("amp") in _DTYPES and isinstance(entry.get("channels_last"), bool):
        return _DTYPES[entry["amp"]], entry["channels_last"]
    return None


@contextmanager
def _file_lock(path):
    """An exclusive lock on ``<path>.lock`` (``fcntl``; where that is missing, no lock)."""
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: writes are still atomic, a rare lost update is re-measured
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remember_cpu_choice(path, key: str, entry: dict) -> None:
    """Add one measured choice to the cache file: read, merge and write under a lock, so
    that processes measuring at the same time keep each other's entries."""
    with _file_lock(path):
        stored = _read_cpu_settings(path)
        stored[key] = entry
        atomic_write_json(path, stored)


def training_settings(model: nn.Module, train_loader, device: torch.device, amp="auto", channels_last="auto",
                      epochs: int = 1, input_size: Optional[tuple] = None) -> tuple:
    """``(autocast dtype or None, channels_last)`` that ``fit`` trains ``model`` with.

    :func:`resolve_amp` and :func:`resolve_channels_last`, except on the CPU, where the
    settings left on ``"auto"`` are measured by :func:`choose_cpu_settings` on batches of
    the loader's image size (at most 32 images).
    """
    dtype, cl = resolve_amp(amp, device), resolve_channels_last(channels_last, device)
    if device.type != "cpu" or "auto" not in (amp, channels_last):
        return dtype, cl
    batch_size = getattr(train_loader, "batch_size", 32)
    crop = getattr(train_loader, "crop", 32)
    shape = tuple(input_size[1:]) if input_size else (3, crop, crop)
    return choose_cpu_settings(model, (min(batch_size, 32), *shape), amp, channels_last,
                               run_images=epochs * len(train_loader) * batch_size)
