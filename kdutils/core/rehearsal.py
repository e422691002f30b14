"""Full-scale rehearsal: the full profile's settings, models and data, with capped steps.

A rehearsal answers, before hours of training are spent, whether every run of the full
profile starts, fits in memory, writes its checkpoint and evaluates, and how long the real
run will take on this device. While one is on:

- ``fit`` trains at most :data:`EPOCHS` epochs of at most ``steps`` steps each; the recipe
  is not changed (the learning-rate schedule is still the full run's);
- ``evaluate`` reads at most ``eval_batches`` batches of its loader;
- a teacher-logit pass (``kdutils.distill.teachers.TeacherLogits``) covers only the batches
  a capped epoch uses (the same batches: the loader draws them from ``(seed, epoch)``);
- everything is written to its own folders, ``results/rehearsal/``, ``runs/rehearsal/``,
  ``figures/rehearsal/`` and ``reports/rehearsal/`` (:func:`folder`), so a rehearsal record
  never stands beside a full one; ``fit`` also refuses to reuse a record of the other kind
  (:func:`check_reuse`).

Every record ``fit`` writes gets a ``"rehearsal"`` block (:meth:`Probe.measurements`):
peak host memory (the process's peak resident set, reset at the start of the run where
Linux allows it), peak GPU memory on CUDA, the checkpoint's size, seconds per training step
(the median after the first, warm-up, step; on CUDA timed after a synchronisation) and the
projected time of the full run on this device: steps per epoch x the full epochs x seconds
per step, plus the full evaluations at the measured seconds per test batch.

Switched on by ``kdutils.core.profiles.resolve(rehearse=True)`` (a notebook's ``rehearse``
parameter) or the environment variable ``KD_REHEARSE=1``; ``KD_REHEARSE_STEPS`` and
``KD_REHEARSE_EVAL_BATCHES`` set the caps (default 3 and 2).
"""
from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

#: Epochs a rehearsal trains of every run (the first includes the warm-up step).
EPOCHS = 2
#: Name of the rehearsal's output folders and of the record block.
FOLDER = "rehearsal"
DEFAULT_STEPS = 3
DEFAULT_EVAL_BATCHES = 2


@dataclass(frozen=True)
class Caps:
    """How much of each run a rehearsal executes."""

    steps: int = DEFAULT_STEPS
    eval_batches: int = DEFAULT_EVAL_BATCHES
    epochs: int = EPOCHS

    def __post_init__(self):
        for name in ("steps", "eval_batches", "epochs"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"rehearsal cap {name} must be an int >= 1, got {value!r}")
        if self.steps < 2:
            raise ValueError(f"a rehearsal needs at least 2 steps per epoch (1 warm-up + 1 timed), got {self.steps}")


_switched_on: Optional[Caps] = None


def _env_flag() -> bool:
    return os.environ.get("KD_REHEARSE", "").strip().lower() not in ("", "0", "false", "no")


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an integer; set it to a whole number (e.g. {default})") from None


def caps() -> Optional[Caps]:
    """The caps in force: those of :func:`switch_on`, else from ``KD_REHEARSE`` and its
    companions, else None (no rehearsal)."""
    if _switched_on is not None:
        return _switched_on
    if _env_flag():
        return Caps(_env_int("KD_REHEARSE_STEPS", DEFAULT_STEPS),
                    _env_int("KD_REHEARSE_EVAL_BATCHES", DEFAULT_EVAL_BATCHES))
    return None


def active() -> bool:
    """True while a rehearsal is on."""
    return caps() is not None


def switch_on(steps: Optional[int] = None, eval_batches: Optional[int] = None) -> Caps:
    """Turn the rehearsal on for this process (caps: the arguments, else the environment's)."""
    global _switched_on
    _switched_on = Caps(steps or _env_int("KD_REHEARSE_STEPS", DEFAULT_STEPS),
                        eval_batches or _env_int("KD_REHEARSE_EVAL_BATCHES", DEFAULT_EVAL_BATCHES))
    return _switched_on


def switch_off() -> None:
    """Undo :func:`switch_on` (``KD_REHEARSE`` in the environment still counts)."""
    global _switched_on
    _switched_on = None


def switch(requested: Optional[bool]) -> bool:
    """A notebook's ``rehearse`` parameter: True turns the rehearsal on; False or None
    leave it to ``KD_REHEARSE``. Returns whether a rehearsal is on."""
    if requested and not active():
        switch_on()
    return active()


@contextmanager
def rehearsing(steps: int = DEFAULT_STEPS, eval_batches: int = DEFAULT_EVAL_BATCHES) -> Iterator[Caps]:
    """``with rehearsing(3, 2): ...`` runs the block as a rehearsal (tests, scripts)."""
    global _switched_on
    before = _switched_on
    _switched_on = Caps(steps, eval_batches)
    try:
        yield _switched_on
    finally:
        _switched_on = before


# --------------------------------------------------------------------------- where and how much
def folder(base: Path) -> Path:
    """``base/rehearsal`` during a rehearsal, else ``base`` (the output folders)."""
    return Path(base) / FOLDER if active() else Path(base)


def cache_name(key: str) -> str:
    """A cache entry's name; a rehearsal's partial entries get their own."""
    return f"{key}-{FOLDER}" if active() else key


def epoch_limit(epochs: int) -> int:
    """The epochs ``fit`` runs of a recipe of ``epochs``."""
    c = caps()
    return epochs if c is None else min(epochs, c.epochs)


def train_batches(loader, probe: Optional["Probe"] = None):
    """The batches of one training epoch: all of them, or the first ``steps`` during a
    rehearsal (timed by ``probe`` when given)."""
    c = caps()
    if c is None:
        return loader
    return probe.timed(islice(loader, c.steps)) if probe is not None else islice(loader, c.steps)


def eval_batches(loader):
    """The batches an evaluation reads: all of them, or the first ``eval_batches``."""
    c = caps()
    return loader if c is None else islice(loader, c.eval_batches)


def check_reuse(record: Mapping, label: str) -> None:
    """Refuse a finished record of the other kind: a rehearsal's record never stands for a
    full run, nor a real run's for a rehearsal (which would measure nothing)."""
    made_in_rehearsal = FOLDER in record
    if made_in_rehearsal and not active():
        raise ValueError(
            f"the finished record of {label} was made by a rehearsal (capped steps, see its "
            f"'{FOLDER}' block): it cannot stand for a real run. Delete it (and its checkpoint) or "
            "train with force=True.")
    if active() and not made_in_rehearsal:
        raise ValueError(
            f"the finished record of {label} comes from a real run, not a rehearsal: a rehearsal writes to "
            f"its own folders (results/{FOLDER}/). Remove the stray record or run with force=True.")


# --------------------------------------------------------------------------- measurements
def _reset_host_peak() -> str:
    """Reset this process's peak resident set (Linux: ``/proc/self/clear_refs``). Returns
    the scope later peaks cover: ``"run"``, or ``"process"`` where it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "run"
    except OSError:
        return "process"


def host_peak_bytes() -> int:
    """The peak resident set of this process since its start or the last reset."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


class Probe:
    """The measurements of one ``fit`` call during a rehearsal."""

    def __init__(self, device):
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self.host_scope = _reset_host_peak()
        self.step_seconds: list = []

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def timed(self, batches) -> Iterator:
        """Yield ``batches``; the time from one request to the next is one training step
        (loading the batch, forward, backward and update)."""
        self._sync()
        t = time.perf_counter()
        for batch in batches:
            yield batch
            self._sync()
            now = time.perf_counter()
            self.step_seconds.append(now - t)
            t = now

    def seconds_per_step(self) -> Optional[float]:
        """The median step time after the run's first (warm-up) step."""
        timed = self.step_seconds[1:] or self.step_seconds
        return statistics.median(timed) if timed else None

    def measurements(self, history: list, recipe, train, test, checkpoint: Optional[Path]) -> dict:
        """The record's rehearsal block: caps, peaks, checkpoint size and the projection."""
        import torch

        c = caps() or Caps()
        per_step = self.seconds_per_step()
        steps_per_epoch, epochs = len(train), recipe.epochs
        out: dict = {"caps": asdict(c), "steps_done": len(self.step_seconds),
                     "steps_timed": max(len(self.step_seconds) - 1, 0), "seconds_per_step": per_step,
                     "steps_per_epoch": steps_per_epoch, "epochs": epochs,
                     "peak_host_bytes": host_peak_bytes(), "host_peak_scope": self.host_scope,
                     "peak_gpu_bytes": torch.cuda.max_memory_allocated(self.device) if self.cuda else None,
                     "peak_gpu_reserved_bytes": torch.cuda.max_memory_reserved(self.device) if self.cuda else None,
                     "checkpoint_bytes": checkpoint.stat().st_size if checkpoint and checkpoint.exists() else None,
                     "device": str(self.device)}
        out.update(_projection(per_step, steps_per_epoch, epochs, recipe.eval_every, history, test, c))
        return out


def _projection(per_step, steps_per_epoch, epochs, eval_every, history, test, c: Caps) -> dict:
    """Projected seconds of the full run: training steps, plus every full evaluation at the
    seconds per test batch of the rehearsal's last evaluation (the first one warmed up)."""
    train_s = per_step * steps_per_epoch * epochs if per_step is not None else None
    evals = sum(1 for e in range(1, epochs + 1) if e % eval_every == 0 or e == epochs)
    timed_evals = [h["eval_seconds"] for h in history if h.get("test_top1") is not None and "eval_seconds" in h]
    eval_s = per_batch = None
    if test is not None and timed_evals:
        full_batches = len(test)
        per_batch = timed_evals[-1] / max(min(c.eval_batches, full_batches), 1)
        eval_s = per_batch * full_batches * evals
    total = None if train_s is None else train_s + (eval_s or 0.0)
    return {"evals": evals, "eval_batches": len(test) if test is not None else 0,
            "seconds_per_eval_batch": per_batch, "projected_train_seconds": train_s,
            "projected_eval_seconds": eval_s, "projected_seconds": total}


def probe(device) -> Optional[Probe]:
    """A :class:`Probe` during a rehearsal, else None (``fit`` then measures nothing)."""
    return Probe(device) if active() else None


def annotate(record: dict, session: Any) -> None:
    """Add the rehearsal block to a ``fit`` record (``session``: fit's ``_Session``); the
    record's ``projected_seconds`` becomes the rehearsal's projection."""
    p = getattr(session, "probe", None)
    if p is None:
        return
    run = session.run
    block = p.measurements(session.history, session.recipe, session.train, session.test,
                           run.checkpoint_path if run is not None else None)
    record[FOLDER] = block
    record["projected_seconds"] = block["projected_seconds"]
