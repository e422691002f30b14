"""``fit`` and ``evaluate``: the one training loop every part uses.

``fit(model, train, test, recipe, objective=None, run=None, *, runtime=Runtime(), params=None, callbacks=())``

- *what* is computed: a :class:`~kdutils.core.recipe.Recipe` (optimiser, per-step
  schedule, epochs, gradient clipping) and an objective (plain cross-entropy by default;
  any :class:`~kdutils.core.objective.Objective`, e.g. KD with its teacher source);
- *where and how*: a :class:`Runtime` (device, precision, seed, logging, wall-clock budget,
  ``force``). On CUDA: bf16 (or fp16 with a gradient scaler) autocast and channels-last;
  on the CPU the faster of fp32/bf16 and contiguous/channels-last, measured once per model
  and machine (:mod:`kdutils.core.precision`);
- *which run*: a :class:`Run` names the record ``results/<profile>/<part>/<name>.json`` and
  the checkpoint; without one nothing is written.

The body is a few named steps: reuse a finished run (:func:`_reuse_finished`), set up or
resume (:func:`_start`), train one epoch (:func:`_train_epoch`), test
(:func:`_test_epoch`), checkpoint and record (:func:`_save`), finish (:func:`_finish`).
Top-1/top-5 and the objective's parts are accumulated on the device (one host sync per
epoch, plus a NaN check every ``nan_check_every`` steps). Every epoch re-seeds the global
RNG and the loader from ``(seed, epoch)``, so on the CPU a resumed run ends with the same
weights and history as an uninterrupted one. A finished run is skipped on re-run (its
weights are loaded) unless ``force``, and only when it was trained with the same settings.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from kdutils.core import distributed as D
from kdutils.core import records as R
from kdutils.core import rehearsal
from kdutils.core.counting import count_flops, count_params
from kdutils.core.fileio import atomic_torch_save
from kdutils.core.loader import loader_fingerprint
from kdutils.core.objective import Batch, CrossEntropy, FeatureTaps, Objective
from kdutils.core.outputs import primary_logits
from kdutils.core.precision import autocast_context, resolve_amp, resolve_device, training_settings
from kdutils.core import live_curves
from kdutils.core.profiles import is_headless, runs_dir
from kdutils.core.recipe import Recipe

__all__ = ["Run", "Runtime", "Recipe", "fit", "evaluate", "predict_logits", "save_checkpoint", "load_checkpoint",
           "load_run_weights", "resolve_device"]


@dataclass
class Run:
    """Identifies a run: its record is ``results/<profile>/<part>/<name>.json`` and its
    checkpoint ``runs/checkpoints/<profile>/<part>/<name>.pt``.

    ``params`` are the settings that define the run: a finished run is reused only when
    they match, and so do the epochs, the recipe, the seed and the data (a fingerprint of
    the training and test loaders); otherwise ``fit`` raises and names the change. ``extra`` are further fields for the record (a label,
    where the weights came from, ...), never compared.
    """

    part: str
    name: str
    profile: str = "quick"
    params: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        R.check_name(self.part, "part")
        R.check_name(self.name)

    @property
    def checkpoint_path(self) -> Path:
        return runs_dir() / "checkpoints" / self.profile / self.part / f"{self.name}.pt"

    @property
    def label(self) -> str:
        return f"{self.part}/{self.name}"


@dataclass(frozen=True)
class Runtime:
    """Where and how a run executes; nothing here changes *what* it computes, except the
    precision (``amp``) and the ``seed``.

    ``device``: ``"auto"`` (CUDA, else MPS, else CPU) or a torch device string.
    ``amp``: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"off"``; ``channels_last``: ``"auto"``,
    True or False (see :mod:`kdutils.core.precision`). ``seed``: seeds every epoch.
    ``log``: ``"auto"`` (a progress bar interactively, one line per epoch headless),
    ``"bar"``, ``"lines"`` or ``"off"``. ``budget_s``: training wall-clock limit
    (accumulated over resumes); the run then stops cleanly with status ``"budget"``.
    ``force``: retrain a finished run and ignore its checkpoint. ``input_size``: the shape
    used for FLOPs and the CPU precision measurement (default: the loader's crop).
    """

    device: Any = "auto"
    amp: Any = "auto"
    channels_last: Any = "auto"
    seed: int = 0
    log: str = "auto"
    budget_s: Optional[float] = None
    force: bool = False
    nan_check_every: int = 50
    input_size: Optional[tuple] = None

    def __post_init__(self):
        if self.budget_s is not None and not self.budget_s > 0:
            raise ValueError(f"Runtime.budget_s must be > 0 seconds (or None), got {self.budget_s!r}")
        if self.log not in ("auto", "bar", "lines", "off"):
            raise ValueError(f"Runtime.log must be 'auto', 'bar', 'lines' or 'off', got {self.log!r}")


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
        for batch in rehearsal.eval_batches(loader):
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
    """Write a checkpoint atomically; a full disk raises ``DiskFullError`` ("disk full while
    writing <path>; the previous checkpoint is intact")."""
    atomic_torch_save(state, path, what="checkpoint")


class CorruptCheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, zero bytes, not a checkpoint)."""


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The state dict saved in ``path``; :class:`CorruptCheckpointError` names the file and
    the two ways on when it cannot be read."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
        problem = None if isinstance(state, dict) and "model" in state else f"holds a {type(state).__name__}"
    except FileNotFoundError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, RuntimeError of a zip reader, ...
        first_line = (str(e).strip().splitlines() or [""])[0][:160]
        if "Weights only load failed" in first_line:  # torch's advice to unpickle unsafely does not apply
            first_line = "it holds more than tensors and numbers, or is garbage"
        problem, cause = f"{type(e).__name__}: {first_line}", e
    else:
        cause = None
    if problem is not None:
        raise CorruptCheckpointError(
            f"checkpoint {path} cannot be used ({problem}): it is truncated, empty or not a checkpoint of "
            f"this project. Move it aside (e.g. mv {path} {path}.bad) and run again to start the run over, "
            "or pass force=True to retrain the run from scratch.") from cause
    return state


def _load_model_weights(model: nn.Module, state: dict, path: Path, label: str) -> None:
    """``model.load_state_dict(state["model"])``; a checkpoint of another architecture raises
    a ``ValueError`` naming the file and both models."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        saved = state.get("model_class", "another model (the checkpoint does not say which)")
        detail = str(e).strip().splitlines()
        raise ValueError(
            f"checkpoint {path} of run {label} holds the weights of {saved}, which do not fit the model "
            f"given now ({type(model).__name__}): {' '.join(detail[:3])[:400]}. Build the model the run "
            "was trained with, give this model another run name, or pass force=True to retrain the run.") from e


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
    _load_model_weights(model, load_checkpoint(path), path, run.label)
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
@dataclass
class _Session:
    """Everything one ``fit`` call holds while it trains."""

    model: nn.Module
    train: Any
    test: Any
    recipe: Recipe
    objective: Objective
    run: Optional[Run]
    rt: Runtime
    device: torch.device
    dtype: Optional[torch.dtype]
    channels_last: bool
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    record: Optional[dict] = None
    history: list = field(default_factory=list)
    elapsed: float = 0.0
    start_epoch: int = 0
    progress: Any = None
    taps: Any = None
    probe: Any = None  # a rehearsal's measurements (kdutils.core.rehearsal)
    ddp: Any = None  # the DistributedDataParallel wrapper of ``model`` (kdutils.core.distributed)

    @property
    def label(self) -> str:
        return self.run.label if self.run else type(self.model).__name__


def fit(model: nn.Module, train_loader, test_loader=None, recipe: Optional[Recipe] = None,
        objective: Optional[Objective] = None, run: Optional[Run] = None, *, runtime: Optional[Runtime] = None,
        params=None, callbacks: Iterable[Callable[[int, dict], None]] = ()) -> dict:
    """Train ``model`` in place with ``recipe`` and ``objective``; return its run record.

    ``params``: what to optimise: None (the model's trainable parameters) or a list of
    param-group dicts whose ``lr_scale`` multiplies the recipe's ``lr``. Trainable
    parameters of the objective (a feature regressor) are optimised too.
    ``callbacks``: ``cb(epoch, row)`` after each epoch's history row is made.
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"fit needs a kdutils.core.recipe.Recipe, got {type(recipe).__name__}: "
                        "build one with Recipe(epochs=..., lr=...) or Recipe.from_dict(settings)")
    rt = runtime or Runtime()
    objective = objective if objective is not None else CrossEntropy()
    _check_has_steps(train_loader)
    identity = _run_identity(train_loader, test_loader, recipe, rt) if run is not None else None
    finished = _reuse_finished(model, run, recipe, rt, identity)
    if finished is not None:
        return finished
    if run is not None:
        _check_writable(run)
    s = _start(model, train_loader, test_loader, recipe, objective, run, rt, params)
    callbacks = (*callbacks, *live_curves.from_environment(run))  # KD_TENSORBOARD: live curves
    stopped = None
    try:
        for epoch in range(s.start_epoch, rehearsal.epoch_limit(recipe.epochs)):
            if rt.budget_s is not None and s.elapsed >= rt.budget_s:
                stopped = "budget"
                break
            row, stopped = _train_epoch(s, epoch)
            _test_epoch(s, epoch, row, stopped)
            s.history.append(row)
            s.progress.end_epoch(row)
            for callback in callbacks:
                callback(epoch, row)
            _save(s, "running")
            if stopped:
                break
    finally:
        s.taps.remove()
    return _finish(s, stopped)


def _reuse_finished(model: nn.Module, run: Optional[Run], recipe: Recipe, rt: Runtime,
                    identity: Optional[dict] = None) -> Optional[dict]:
    """The record of a finished run with the same settings (its weights loaded), else None."""
    if run is None:
        return None
    rec = _existing_record(run)  # (a damaged record is moved aside even when forced: never overwritten)
    if rt.force:
        return None
    if not (R.is_finished(rec) and run.checkpoint_path.exists()):
        return None
    rehearsal.check_reuse(rec, run.label)
    _check_same_settings(rec, run, recipe.epochs, identity)
    _load_model_weights(model, load_checkpoint(run.checkpoint_path), run.checkpoint_path, run.label)
    if rt.log != "off":
        print(f"[{run.label}] finished before ({rec['status']}, best top1 "
              f"{(rec.get('best') or {}).get('test_top1')}); loaded its weights. force=True retrains.")
    return rec


def _start(model, train, test, recipe: Recipe, objective: Objective, run: Optional[Run], rt: Runtime,
           params) -> _Session:
    """Device, precision, objective, optimiser and schedule; the record; resume."""
    dev = resolve_device(rt.device)
    model.to(dev)
    dtype, cl = training_settings(model, train, dev, rt.amp, rt.channels_last, recipe.epochs, rt.input_size)
    if cl:
        model.to(memory_format=torch.channels_last)
    for loader in (train, test):
        if hasattr(loader, "channels_last"):
            loader.channels_last = cl
    objective.prepare(dev, dtype, cl)
    groups = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    extra = [p for p in objective.parameters() if p.requires_grad]
    if extra:
        groups = list(groups) + ([{"params": extra}] if groups and isinstance(groups[0], dict) else extra)
    opt = recipe.optimizer_for(groups)
    s = _Session(model, train, test, recipe, objective, run, rt, dev, dtype, cl, opt,
                 recipe.scheduler_for(opt, len(train)),
                 torch.amp.GradScaler(dev.type, enabled=(dtype == torch.float16)))
    s.taps = FeatureTaps(model, objective.feature_layers)
    if run is not None:
        s.record = _new_record(s)
        _resume(s)
    s.progress = _Progress(s.label, recipe.epochs, len(train), rt.log)
    s.probe = rehearsal.probe(dev)
    D.attach(s)  # data-parallel when torchrun started this process (a no-op otherwise)
    return s


def _new_record(s: _Session) -> dict:
    input_size = s.rt.input_size or (1, 3, getattr(s.train, "crop", 32), getattr(s.train, "crop", 32))
    try:
        flops = count_flops(s.model, input_size)
    except Exception:  # some exotic module the counter cannot trace
        flops = None
    run = s.run
    return R.new_record(run.part, run.name, run.profile, run.params, device=str(s.device),
                        amp=str(s.dtype).replace("torch.", "") if s.dtype else "off", channels_last=s.channels_last,
                        seed=s.rt.seed, epochs=s.recipe.epochs, n_params=count_params(s.model),
                        n_trainable=count_params(s.model, trainable_only=True), flops=flops,
                        budget_s=s.rt.budget_s, objective=repr(s.objective), recipe=s.recipe.as_dict(),
                        data_fingerprint=_run_identity(s.train, s.test, s.recipe, s.rt)["data_fingerprint"],
                        **run.extra)


def _resume(s: _Session) -> None:
    """Continue from the run's checkpoint, if there is one (and not ``force``)."""
    ck = s.run.checkpoint_path
    if not ck.exists() or s.rt.force:
        return
    state = load_checkpoint(ck, map_location=s.device)
    if state.get("epochs") != s.recipe.epochs or state.get("epoch", 0) > s.recipe.epochs:
        raise ValueError(
            f"checkpoint {ck} was made for {state.get('epochs')} epochs, this call asks for "
            f"{s.recipe.epochs}; pass force=True to start over or use another run name")
    changes, _ = _identity_changes(state.get("identity") or {}, _run_identity(s.train, s.test, s.recipe, s.rt))
    if changes:
        raise ValueError(f"checkpoint {ck} of the interrupted run {s.label} was made with other settings "
                         f"({_describe_changes(changes)}); pass force=True to start over or use another run name")
    _load_model_weights(s.model, state, ck, s.label)
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    s.scaler.load_state_dict(state["scaler"])
    if state.get("objective"):
        s.objective.load_state_dict(state["objective"])
    s.start_epoch, s.history, s.elapsed = state["epoch"], state["history"], state["elapsed"]
    s.record["created"] = state.get("created", s.record["created"])
    if s.rt.log != "off":
        print(f"[{s.label}] resuming after epoch {s.start_epoch}/{s.recipe.epochs} from {ck}")


def _train_epoch(s: _Session, epoch: int) -> tuple:
    """One epoch of optimisation; returns its history row (without test columns) and
    ``"budget"`` when the wall-clock budget ran out during it, else None."""
    torch.manual_seed(s.rt.seed * 1_000_003 + epoch)
    if hasattr(s.train, "set_epoch"):
        s.train.set_epoch(epoch)
    s.progress.start_epoch(epoch)
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device, dtype=torch.long)
    parts_sum: dict = {}
    seen, stopped, step = 0, None, 0
    for step, data in enumerate(rehearsal.train_batches(s.train, s.probe)):
        batch = Batch(data[0], data[1], data[2] if len(data) > 2 else None, epoch, s.taps.features)
        out, loss, parts = _step(s, batch)
        with torch.no_grad():
            b = len(batch.y)
            loss_sum += loss.detach().float() * b
            correct += primary_logits(out).argmax(1).eq(batch.y).sum()
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0) + v.float() * b
        seen += len(batch.y)
        s.progress.step()
        every = s.rt.nan_check_every
        if every and (step + 1) % every == 0 and not torch.isfinite(loss_sum):
            _raise_nan(s.label, epoch, step, s.start_epoch)
        if s.rt.budget_s is not None and D.any_rank(s, s.elapsed + (time.perf_counter() - t0) >= s.rt.budget_s):
            stopped = "budget"
            break
    loss_sum, correct, seen, parts_sum, seconds = D.epoch_totals(s, loss_sum, correct, seen, parts_sum,
                                                                 time.perf_counter() - t0)
    if not torch.isfinite(loss_sum):
        _raise_nan(s.label, epoch, step, s.start_epoch)
    row = {"epoch": epoch + 1, "train_loss": loss_sum.item() / max(seen, 1),
           "train_top1": 100.0 * correct.item() / max(seen, 1),
           "lr": s.optimizer.param_groups[0]["lr"], "seconds": seconds}
    for k, v in parts_sum.items():
        row[f"train_{k}"] = v.item() / max(seen, 1)
    return row, stopped


def _step(s: _Session, batch: Batch) -> tuple:
    """Forward (under autocast), objective, backward, clip, optimiser and schedule step."""
    with autocast_context(s.device, s.dtype):
        out = (s.model if s.ddp is None else s.ddp)(batch.x)
    loss, parts = s.objective(out, batch)
    s.optimizer.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    if s.recipe.grad_clip:
        s.scaler.unscale_(s.optimizer)
        nn.utils.clip_grad_norm_(s.model.parameters(), s.recipe.grad_clip)
    s.scaler.step(s.optimizer)
    s.scaler.update()
    s.scheduler.step()
    return out, loss, parts


def _test_epoch(s: _Session, epoch: int, row: dict, stopped) -> None:
    """Test columns (every ``eval_every`` epochs, after the last one and when stopping)."""
    t0 = time.perf_counter()
    last = epoch + 1 == rehearsal.epoch_limit(s.recipe.epochs)
    if s.test is not None and ((epoch + 1) % s.recipe.eval_every == 0 or last or stopped):
        ev = evaluate(s.model, s.test, s.device, s.dtype, s.channels_last)
        row.update(test_loss=ev["loss"], test_top1=ev["top1"], test_top5=ev["top5"])
    row["eval_seconds"] = time.perf_counter() - t0
    s.elapsed += row["seconds"]


def _save(s: _Session, status: str) -> None:
    """Checkpoint (atomic) and record after an epoch (rank 0 only under torchrun)."""
    if s.run is None or not D.is_writer():
        return
    objective_state = s.objective.state_dict()
    save_checkpoint(s.run.checkpoint_path, {
        "model": s.model.state_dict(), "optimizer": s.optimizer.state_dict(),
        "scheduler": s.scheduler.state_dict(), "scaler": s.scaler.state_dict(),
        "objective": objective_state if len(objective_state) else {},
        "epoch": len(s.history) and s.history[-1]["epoch"], "epochs": s.recipe.epochs, "history": s.history,
        "elapsed": s.elapsed, "created": s.record["created"], "model_class": type(s.model).__name__,
        "identity": _run_identity(s.train, s.test, s.recipe, s.rt),
    })
    _fill(s.record, s.history, s.elapsed, status, None)
    R.save_record(s.record)


def _finish(s: _Session, stopped) -> dict:
    status = "budget" if stopped == "budget" else "complete"
    record = s.record if s.record is not None else {"run": None, "params": {}}
    _fill(record, s.history, s.elapsed, status, s.recipe.epochs)
    rehearsal.annotate(record, s)
    if s.run is not None and D.is_writer():
        R.save_record(record)
    if stopped == "budget" and s.rt.log != "off":
        print(f"[{s.label}] wall-clock budget of {s.rt.budget_s:.0f}s spent after {len(s.history)} epoch(s); "
              "stopped cleanly.")
    return record


def _check_same_settings(rec: dict, run: Run, epochs: int, identity: Optional[dict] = None) -> None:
    """A finished run is reused only for the settings it was trained with: its ``params``,
    the epochs and (:func:`_run_identity`) its data, recipe and seed. A record written before
    these were kept is reused with a warning that says it could not be checked."""
    saved = json.loads(json.dumps(rec.get("params", {}), default=str))
    asked = json.loads(json.dumps(run.params, default=str))
    # Settings named by both must agree; a label the caller leaves out is no conflict.
    diff = {k: (saved[k], asked[k]) for k in set(saved) & set(asked) if saved[k] != asked[k]}
    if rec.get("epochs") != epochs:
        diff["epochs"] = (rec.get("epochs"), epochs)
    changes, unknown = _identity_changes(rec, identity or {})
    diff.update(changes)
    if diff:
        raise ValueError(
            f"run {run.label} ({run.profile}) finished before with other settings ({_describe_changes(diff)}). "
            "Pass force=True to retrain it, or give the new settings another run name."
        )
    if unknown:
        warnings.warn(
            f"run {run.label} ({run.profile}) finished before, but its record does not say which "
            f"{', '.join(unknown)} it was trained with, so fit cannot check that they match; reusing it. "
            "Pass force=True to retrain it, or give the new settings another run name.", stacklevel=4)


#: Recipe fields that change what is recorded (how often the test set is read), not the model.
_RECIPE_NOT_COMPARED = ("eval_every",)


def _run_identity(train, test, recipe: Recipe, rt: Runtime) -> dict:
    """What decides a run's result besides ``Run.params``: the data (fingerprints of the
    training and test loaders: images, labels, loader settings; None for a loader that
    cannot be fingerprinted), the recipe and the seed. Kept in records and checkpoints."""
    return {"data_fingerprint": {"train": loader_fingerprint(train),
                                 "test": loader_fingerprint(test) if test is not None else None},
            "recipe": recipe.as_dict(), "seed": rt.seed}


def _identity_changes(saved: dict, asked: dict) -> tuple:
    """``(changes, unknown)`` between a stored identity (a record or a checkpoint) and this
    call's: ``{key: (stored, now)}`` of the values that differ, and the keys whose stored
    value is missing (older files). Fields known on one side only are not compared."""
    plain = lambda v: json.loads(json.dumps(v, default=str))  # noqa: E731
    changes, unknown = {}, []
    for key, now in plain(asked).items():
        before = plain(saved.get(key))
        if before is None:
            unknown.append(key.replace("_", " "))
        elif isinstance(now, dict) and isinstance(before, dict):
            for k in sorted((set(before) & set(now)) - set(_RECIPE_NOT_COMPARED)):
                if before[k] != now[k]:
                    if None in (before[k], now[k]):
                        unknown.append(f"{key.replace('_', ' ')} ({k})")
                    else:
                        changes[f"{key}.{k}"] = (before[k], now[k])
        elif before != now:
            changes[key] = (before, now)
    return changes, unknown


def _describe_changes(diff: dict) -> str:
    """``"lr: 0.1 -> 0.05, training data: fingerprint 'ab..' -> 'cd..'"``."""
    names = {"data_fingerprint.train": "training data (images, labels or loader settings)",
             "data_fingerprint.test": "test data (images, labels or loader settings)"}
    return ", ".join(f"{names.get(k, k)}: {a!r} -> {b!r}" for k, (a, b) in sorted(diff.items()))


def _existing_record(run: Run) -> Optional[dict]:
    """The run's record; a damaged one is moved aside (``<name>.corrupt-<time>``, never
    deleted) with a warning, and the run then counts as having no record."""
    try:
        return R.load_record(run.part, run.name, run.profile)
    except R.CorruptRecordError as e:
        moved = R.set_aside(e.path)
        warnings.warn(f"{e} Moved it aside to {moved}; {run.label} runs as if it had no record "
                      "(resuming from its checkpoint, if there is one).", stacklevel=4)
        return None


def _check_writable(run: Run) -> None:
    """Write and remove a probe file where the run's record and checkpoint go, so that a
    read-only output folder is reported before training, not after the first epoch."""
    for folder in (R.record_path(run.part, run.name, run.profile).parent, run.checkpoint_path.parent):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise PermissionError(
                f"cannot write to {folder} ({e.strerror or e}), where run {run.label} keeps its record and "
                "checkpoint. Make the folder writable, or set KD_OUTPUT_ROOT to a writable folder and "
                "start again.") from e


def _check_has_steps(train) -> None:
    """A training loader that yields no batch would record an untrained model as complete."""
    try:
        steps = len(train)
    except TypeError:  # an iterable without a length
        return
    if steps == 0:
        n = getattr(train, "num_samples", None)
        if n is None and hasattr(train, "dataset"):
            n = len(train.dataset)
        raise ValueError(
            f"the training loader yields no batch: {n if n is not None else 'too few'} training images, batch size "
            f"{getattr(train, 'batch_size', '?')}, drop_last={getattr(train, 'drop_last', '?')}, so every "
            "epoch would train 0 steps. Use a batch size of at most the number of training images, "
            "drop_last=False, or more training data.")


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
        record["last"] = {k: last.get(k) for k in ("epoch", "test_top1", "test_top5", "test_loss", "train_top1",
                                                   "train_loss")}
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
