"""``fit`` and ``evaluate``: the one training loop every part uses.

``fit`` trains a model on a :class:`~kdutils.core.loader.GpuLoader` with

- an optimizer and a per-step learning-rate schedule built from plain parameters;
- any objective from :mod:`kdutils.distill.objectives` (plain CE by default), with an optional teacher
  that runs in ``eval()`` under ``torch.no_grad()`` and is never updated;
- top-1 / top-5 and a per-epoch history, accumulated on the device (one host sync per
  epoch, plus a NaN check every ``nan_check_every`` steps);
- automatic mixed precision (bf16, or fp16 with a gradient scaler) and channels-last
  memory on CUDA; on the CPU the faster of fp32/bf16 and contiguous/channels-last,
  measured once per model and machine (:func:`choose_cpu_settings`, see ``bench/``);
- a wall-clock budget: when it is spent the run stops cleanly after the current step,
  is evaluated, and its record says ``status: "budget"``;
- a checkpoint after every epoch (atomic), and **resume**: calling ``fit`` again for the
  same run continues from the last checkpoint. Every epoch re-seeds the global RNG and
  the loader from ``(seed, epoch)``, so on the CPU a resumed run ends with the same
  weights and history as an uninterrupted one;
- one JSON record per run (``kdutils.core.records``); a finished run is skipped on re-run
  (its final weights are loaded from the checkpoint) unless ``force=True``.
"""
from __future__ import annotations

import copy
import json
import math
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from kdutils.core import records as R
from kdutils.core.fileio import atomic_torch_save, atomic_write_json
from kdutils.core.profiles import is_headless, runs_dir
from kdutils.distill.objectives import CrossEntropy, primary_logits


@dataclass
class Run:
    """Identifies a run: its record is ``results/<profile>/<part>/<name>.json`` and its
    checkpoint ``runs/checkpoints/<profile>/<part>/<name>.pt``."""

    part: str
    name: str
    profile: str = "quick"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        R.check_name(self.part, "part")
        R.check_name(self.name)

    @property
    def checkpoint_path(self) -> Path:
        return runs_dir() / "checkpoints" / self.profile / self.part / f"{self.name}.pt"

    @property
    def label(self) -> str:
        return f"{self.part}/{self.name}"


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
    from kdutils.models import count_params

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
    stored = json.loads(path.read_text()) if path.exists() else {}
    if key in stored:
        _CPU_CHOICES[key] = _DTYPES[stored[key]["amp"]], stored[key]["channels_last"]
        return _CPU_CHOICES[key]
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
    stored[key] = {"amp": names[best[0]], "channels_last": best[1], "seconds_per_step": {
        f"{names[d]} {'channels_last' if f else 'contiguous'}": median[(d, f)] for d, f in options}}
    atomic_write_json(path, stored)
    return best


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


# --------------------------------------------------------------------------- optimisation
def make_optimizer(params, name: str = "sgd", lr: float = 0.1, momentum: float = 0.9,
                   weight_decay: float = 5e-4, nesterov: bool = True, betas=(0.9, 0.999)):
    """SGD (momentum, Nesterov), Adam or AdamW from plain parameters.

    ``params`` is an iterable of tensors or of param-group dicts; a group's ``lr_scale``
    multiplies ``lr`` (used for fine-tuning chosen layers at a percentage of the base rate).
    """
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be > 0, got {lr!r}")
    groups = list(params)
    if groups and isinstance(groups[0], dict):
        # Copies: the caller's groups keep their ``lr_scale`` (fit can be called again with them).
        groups = [{**{k: v for k, v in g.items() if k != "lr_scale"}, "lr": lr * g.get("lr_scale", 1.0)}
                  for g in groups]
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               nesterov=nesterov and momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {name!r}")


def lr_factor(step: int, total: int, steps_per_epoch: int, schedule: str = "cosine",
              warmup_steps: int = 0, milestones=(), gamma: float = 0.1, final_scale: float = 0.0) -> float:
    """The multiplier of the base learning rate at ``step`` (0-based) of ``total`` steps.

    ``cosine``: linear warm-up, then cosine decay to ``final_scale``; ``constant``;
    ``multistep``: times ``gamma`` at each epoch in ``milestones``; ``linear``: linear decay.
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "multistep":
        epoch = step // max(steps_per_epoch, 1)
        return gamma ** sum(1 for m in milestones if epoch >= m)
    progress = (step - warmup_steps) / max(total - warmup_steps, 1)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return final_scale + (1 - final_scale) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return final_scale + (1 - final_scale) * (1 - progress)
    raise ValueError(f"schedule must be 'cosine', 'linear', 'multistep' or 'constant', got {schedule!r}")


# --------------------------------------------------------------------------- metrics
@torch.no_grad()
def _topk_correct(logits: torch.Tensor, y: torch.Tensor, ks=(1, 5)) -> list:
    kmax = min(max(ks), logits.shape[1])
    pred = logits.topk(kmax, dim=1).indices
    hit = pred.eq(y.view(-1, 1))
    return [hit[:, :min(k, kmax)].any(dim=1).sum() for k in ks]


@torch.no_grad()
def evaluate(model: nn.Module, loader, device="auto", amp="auto", channels_last="auto",
             output: Optional[Callable] = None) -> dict:
    """Loss (cross-entropy at tau = 1), top-1 and top-5 accuracy in percent.

    ``output`` picks the logits from the model's output (default: the output itself, or
    its first item when the model returns a tuple).
    """
    device = resolve_device(device)
    dtype = resolve_amp(amp, device)
    pick = output or primary_logits
    was = model.training
    model.eval()
    loss = torch.zeros((), device=device)
    c1 = torch.zeros((), device=device, dtype=torch.long)
    c5 = torch.zeros((), device=device, dtype=torch.long)
    n = 0
    try:
        for batch in loader:
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            with autocast_context(device, dtype):
                z = pick(model(x)).float()
            loss += nn.functional.cross_entropy(z, y, reduction="sum")
            a, b = _topk_correct(z, y)
            c1 += a
            c5 += b
            n += len(y)
    finally:
        model.train(was)
    if n == 0:
        raise ValueError("evaluate() got an empty loader")
    return {"loss": loss.item() / n, "top1": 100.0 * c1.item() / n, "top5": 100.0 * c5.item() / n, "n": n}


@torch.no_grad()
def predict_logits(model: nn.Module, loader, device="auto", amp="auto", output: Optional[Callable] = None) -> torch.Tensor:
    """Logits for every sample of a (non-shuffling) loader, in loader order, on the CPU."""
    device = resolve_device(device)
    dtype = resolve_amp(amp, device)
    pick = output or primary_logits
    was = model.training
    model.eval()
    outs = []
    try:
        for batch in loader:
            with autocast_context(device, dtype):
                outs.append(pick(model(batch[0].to(device))).float().cpu())
    finally:
        model.train(was)
    return torch.cat(outs)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, state: dict) -> None:
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_run_weights(model: nn.Module, run: Run, produced_by: str = "") -> nn.Module:
    """Load the final weights of a finished run into ``model``.

    Raises ``FileNotFoundError`` naming the run (and what produces it) when the run has
    not been trained yet, so a notebook never retrains a prerequisite silently.
    """
    rec = R.load_record(run.part, run.name, run.profile)
    path = run.checkpoint_path
    if not R.is_finished(rec) or not path.exists():
        hint = f" Run {produced_by} first." if produced_by else ""
        raise FileNotFoundError(
            f"no finished run {run.label} (profile {run.profile}) with a checkpoint at {path}.{hint}"
        )
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


# --------------------------------------------------------------------------- logging
class _Progress:
    def __init__(self, label: str, epochs: int, steps: int, mode: str):
        self.label, self.epochs, self.steps = label, epochs, steps
        self.mode = ("lines" if is_headless() else "bar") if mode == "auto" else mode
        self.bar = None

    def start_epoch(self, epoch: int):
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.steps, desc=f"{self.label} {epoch + 1}/{self.epochs}", leave=False)

    def step(self):
        if self.bar is not None:
            self.bar.update(1)

    def end_epoch(self, row: dict):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode == "off":
            return
        test = ""
        if row.get("test_top1") is not None:
            test = f" | test loss {row['test_loss']:.3f} top1 {row['test_top1']:.2f}% top5 {row['test_top5']:.2f}%"
        print(f"[{self.label}] epoch {row['epoch']}/{self.epochs} train loss {row['train_loss']:.3f} "
              f"top1 {row['train_top1']:.2f}%{test} | lr {row['lr']:.2e} | {row['seconds']:.1f}s", flush=True)
        sys.stdout.flush()


# --------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    train_loader,
    test_loader=None,
    *,
    epochs: int,
    objective: Optional[nn.Module] = None,
    teacher: Optional[nn.Module] = None,
    optimizer: str = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 5e-4,
    betas=(0.9, 0.999),
    schedule: str = "cosine",
    warmup_epochs: float = 0,
    milestones=(),
    gamma: float = 0.1,
    final_lr_scale: float = 0.0,
    param_groups=None,
    grad_clip: Optional[float] = None,
    run: Optional[Run] = None,
    force: bool = False,
    budget_s: Optional[float] = None,
    device="auto",
    amp="auto",
    channels_last="auto",
    seed: int = 0,
    log: str = "auto",
    eval_every: int = 1,
    nan_check_every: int = 50,
    input_size: Optional[tuple] = None,
    extra: Optional[dict] = None,
    on_epoch_end: Optional[Callable[[int, dict], None]] = None,
) -> dict:
    """Train ``model`` and return its run record (a dict; see module docstring).

    The model is trained in place. ``run`` names the record and checkpoint; without it
    nothing is written (handy for short fine-tuning inside another experiment).
    ``budget_s`` limits the training wall time (accumulated over resumes).
    ``on_epoch_end(epoch, row)`` is called after each epoch's history row is made.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if budget_s is not None and budget_s <= 0:
        raise ValueError(f"budget_s must be > 0 seconds (or None), got {budget_s!r}")
    dev = resolve_device(device)
    objective = objective if objective is not None else CrossEntropy()
    if getattr(objective, "needs_teacher", False) and teacher is None:
        raise ValueError(f"{type(objective).__name__} needs a teacher: pass teacher=...")
    label = run.label if run else type(model).__name__

    # ---- a finished run is not trained again
    if run is not None and not force:
        rec = R.load_record(run.part, run.name, run.profile)
        if R.is_finished(rec) and run.checkpoint_path.exists():
            _check_same_settings(rec, run, epochs)
            model.load_state_dict(load_checkpoint(run.checkpoint_path)["model"])
            if log != "off":
                print(f"[{label}] finished before ({rec['status']}, best top1 "
                      f"{(rec.get('best') or {}).get('test_top1')}); loaded its weights. force=True retrains.")
            return rec

    model.to(dev)
    dtype, cl = training_settings(model, train_loader, dev, amp, channels_last, epochs, input_size)
    if cl:
        model.to(memory_format=torch.channels_last)
    for loader in (train_loader, test_loader):
        if hasattr(loader, "channels_last"):
            loader.channels_last = cl
    objective.to(dev)
    if teacher is not None:
        teacher.to(dev).eval()
        teacher.requires_grad_(False)
        if cl:
            teacher.to(memory_format=torch.channels_last)

    params = param_groups if param_groups is not None else [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay, nesterov, betas)
    steps_per_epoch = len(train_loader)
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total_steps, steps_per_epoch, schedule, warmup_steps,
                                 milestones, gamma, final_lr_scale))
    scaler = torch.amp.GradScaler(dev.type, enabled=(dtype == torch.float16))

    # ---- record and resume
    start_epoch, history, elapsed = 0, [], 0.0
    record = None
    if run is not None:
        from kdutils.models import count_flops, count_params

        if input_size is None:
            crop = getattr(train_loader, "crop", 32)
            input_size = (1, 3, crop, crop)
        try:
            flops = count_flops(model, input_size)
        except Exception:  # some exotic module the counter cannot trace
            flops = None
        record = R.new_record(run.part, run.name, run.profile, run.params, device=str(dev),
                              amp=str(dtype).replace("torch.", "") if dtype else "off", channels_last=cl,
                              seed=seed, epochs=epochs, n_params=count_params(model),
                              n_trainable=count_params(model, trainable_only=True), flops=flops,
                              budget_s=budget_s, objective=repr(objective), **(extra or {}))
        ck = run.checkpoint_path
        if ck.exists() and not force:
            state = load_checkpoint(ck, map_location=dev)
            if state.get("epochs") != epochs or state.get("epoch", 0) > epochs:
                raise ValueError(
                    f"checkpoint {ck} was made for {state.get('epochs')} epochs, this call asks for "
                    f"{epochs}; pass force=True to start over or use another run name")
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if state.get("objective"):
                objective.load_state_dict(state["objective"])
            start_epoch, history, elapsed = state["epoch"], state["history"], state["elapsed"]
            record["created"] = state.get("created", record["created"])
            if log != "off":
                print(f"[{label}] resuming after epoch {start_epoch}/{epochs} from {ck}")

    progress = _Progress(label, epochs, steps_per_epoch, log)
    stopped = None
    model.train()
    for epoch in range(start_epoch, epochs):
        if budget_s is not None and elapsed >= budget_s:
            stopped = "budget"
            break
        torch.manual_seed(seed * 1_000_003 + epoch)
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        progress.start_epoch(epoch)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev, dtype=torch.long)
        parts_sum: dict = {}
        seen = 0
        for step, batch in enumerate(train_loader):
            x, y = batch[0], batch[1]
            index = batch[2] if len(batch) > 2 else None
            teacher_logits = None
            with autocast_context(dev, dtype):
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = primary_logits(teacher(x)).float()
                out = model(x)
            loss, parts = objective(out, y, teacher_logits=teacher_logits, index=index, epoch=epoch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            with torch.no_grad():
                b = len(y)
                loss_sum += loss.detach().float() * b
                correct += primary_logits(out).argmax(1).eq(y).sum()
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0) + v.float() * b
            seen += len(y)
            progress.step()
            if nan_check_every and (step + 1) % nan_check_every == 0 and not torch.isfinite(loss_sum):
                _raise_nan(label, epoch, step, start_epoch)
            if budget_s is not None and elapsed + (time.perf_counter() - t0) >= budget_s:
                stopped = "budget"
                break
        if not torch.isfinite(loss_sum):
            _raise_nan(label, epoch, step, start_epoch)
        train_seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "train_loss": loss_sum.item() / max(seen, 1),
               "train_top1": 100.0 * correct.item() / max(seen, 1),
               "lr": opt.param_groups[0]["lr"], "seconds": train_seconds}
        for k, v in parts_sum.items():
            row[f"train_{k}"] = v.item() / max(seen, 1)
        if test_loader is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs or stopped):
            ev = evaluate(model, test_loader, dev, dtype, cl)
            row.update(test_loss=ev["loss"], test_top1=ev["top1"], test_top5=ev["top5"])
        row["eval_seconds"] = time.perf_counter() - t0 - train_seconds
        elapsed += train_seconds
        history.append(row)
        progress.end_epoch(row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
        if run is not None:
            save_checkpoint(run.checkpoint_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "objective": objective.state_dict() if len(objective.state_dict()) else {},
                "epoch": epoch + 1, "epochs": epochs, "history": history, "elapsed": elapsed,
                "created": record["created"],
            })
            _fill(record, history, elapsed, "running", None)
            R.save_record(record)
        if stopped:
            break

    status = "budget" if stopped == "budget" else "complete"
    if record is None:
        record = {"run": None, "params": {}}
    _fill(record, history, elapsed, status, epochs)
    if run is not None:
        R.save_record(record)
    if stopped == "budget" and log != "off":
        print(f"[{label}] wall-clock budget of {budget_s:.0f}s spent after {len(history)} epoch(s); stopped cleanly.")
    return record


def _check_same_settings(rec: dict, run: Run, epochs: int) -> None:
    """A finished run is reused only for the settings it was trained with."""
    saved = json.loads(json.dumps(rec.get("params", {}), default=str))
    asked = json.loads(json.dumps(run.params, default=str))
    # Settings named by both must agree; a label the caller leaves out is no conflict.
    diff = {k: (saved[k], asked[k]) for k in set(saved) & set(asked) if saved[k] != asked[k]}
    if rec.get("epochs") != epochs:
        diff["epochs"] = (rec.get("epochs"), epochs)
    if diff:
        changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(
            f"run {run.label} ({run.profile}) finished before with other settings ({changes}). "
            "Pass force=True to retrain it, or give the new settings another run name."
        )


def _fill(record: dict, history: list, elapsed: float, status: str, epochs: Optional[int]) -> None:
    record["history"] = history
    record["train_seconds"] = elapsed
    record["epochs_done"] = len(history)
    record["status"] = status
    evald = [h for h in history if h.get("test_top1") is not None]
    if evald:
        best = max(evald, key=lambda h: h["test_top1"])
        record["best"] = {k: best.get(k) for k in ("epoch", "test_top1", "test_top5", "test_loss")}
        last = evald[-1]
        record["last"] = {k: last.get(k) for k in ("epoch", "test_top1", "test_top5", "test_loss", "train_top1", "train_loss")}
    if history:
        record["epoch_seconds"] = elapsed / len(history)
        if epochs:
            record["projected_seconds"] = record["epoch_seconds"] * record.get("epochs", epochs)
    if record.get("budget_s") is not None:
        record["within_budget"] = status == "complete" and elapsed <= record["budget_s"]
    if status != "running":
        record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")


def _raise_nan(label, epoch, step, start_epoch):
    raise FloatingPointError(
        f"[{label}] the training loss became NaN/inf in epoch {epoch + 1} (by step {step + 1}). "
        "Lower the learning rate, check the input normalisation, or try amp='off'. "
        f"The checkpoint of the last good epoch is kept (epoch {max(epoch, start_epoch)}); "
        "fix the cause and re-run with force=True to start over."
    )
