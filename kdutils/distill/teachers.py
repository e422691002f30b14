"""Teacher sources: where an objective's soft targets come from.

A distillation objective holds one source in ``objective.teacher`` and calls it with the
step's :class:`~kdutils.core.objective.Batch`. The sources:

- :class:`LiveTeacher`: a trained model run on the batch, in ``eval()`` and without
  gradients, in the run's autocast precision (parts 2 and 5; optionally also its
  intermediate features, for feature-based distillation);
- :class:`CachedLogits`: the same logits computed once per epoch and shared by every
  student trained on the same loader (part 3's tables, sweep and search), cached on disk;
- :class:`RecordedLogits`: responses recorded once before training, looked up by sample
  (Learning without Forgetting, part 4);
- :class:`ManualTarget`: a hand-made distribution from the label (Teacher-free KD "reg");
- :class:`OwnPredictions`: the student's own predictions of the previous epoch, per
  sample (PS-KD).

Each is an ``nn.Module`` so that buffers (recorded responses, the PS-KD memory) are saved
in checkpoints with the objective; a live teacher's *weights* are deliberately not a
submodule: they are not the run's state and stay out of its checkpoints.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdutils.core.data import cache_dir
from kdutils.core.fileio import atomic_torch_save
from kdutils.core.loader import loader_fingerprint
from kdutils.core.objective import Batch, FeatureTaps, check_unit
from kdutils.core.outputs import primary_logits
from kdutils.core import rehearsal
from kdutils.core.precision import autocast_context, resolve_amp


class TeacherSource(nn.Module):
    """Base class: ``source(batch)`` returns the targets the objective distils from."""

    def prepare(self, device: torch.device, dtype: Optional[torch.dtype], channels_last: bool) -> None:
        """Called by ``fit`` once before training (after the objective moved to ``device``)."""


class LiveTeacher(TeacherSource):
    """A trained model that runs on every batch (``eval()``, no gradients, never updated).

    ``feature_layers``: names of the teacher's modules whose outputs are kept in
    :attr:`features` after each call (for feature-based objectives).
    """

    def __init__(self, model: nn.Module, feature_layers: Sequence[str] = ()):
        super().__init__()
        object.__setattr__(self, "model", model)  # not a submodule: kept out of checkpoints
        self.feature_layers = tuple(feature_layers)
        self.taps = FeatureTaps(model, self.feature_layers)
        self.dtype: Optional[torch.dtype] = None

    @property
    def features(self) -> dict:
        """The outputs of ``feature_layers`` from the latest call."""
        return self.taps.features

    def prepare(self, device, dtype, channels_last) -> None:
        self.model.to(device).eval()
        self.model.requires_grad_(False)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.dtype = dtype

    def forward(self, batch: Batch) -> torch.Tensor:
        self.model.eval()
        with autocast_context(batch.x.device, self.dtype), torch.no_grad():
            return primary_logits(self.model(batch.x)).float()

    def extra_repr(self) -> str:
        return f"{type(self.model).__name__}" + (f", features {self.feature_layers}" if self.feature_layers else "")


class TeacherLogits:
    """The teacher's logits for the exact images a training loader yields, epoch by epoch.

    A :class:`~kdutils.core.loader.GpuLoader` draws epoch ``e``'s order, crops and flips from
    a generator seeded by ``(seed, e)``: every student trained on the same loader sees the
    same augmented images in epoch ``e``. So the teacher (in ``eval()``, without
    gradients) runs once per epoch over the loader and its logits, indexed by sample,
    serve every student: the same soft targets as a :class:`LiveTeacher` (a test checks
    it), at the cost of one teacher pass per epoch instead of one per student. Epochs are
    computed on first use and cached on disk under ``<KD_CACHE_DIR>/teacher_logits/<key>/``
    (``cache=True``), where the key hashes the teacher's weights, the images and the
    loader's settings, so later runs reuse them and any change gives a new key.
    """

    def __init__(self, teacher: nn.Module, loader, amp="auto", cache: bool = True):
        self.teacher, self.loader = teacher, loader
        self.dtype = resolve_amp(amp, loader.device)
        self.key = loader_fingerprint(loader, teacher, extra=(loader.device.type, str(self.dtype)))
        # (a rehearsal computes only the batches of its capped epochs: own cache entries)
        self.folder: Optional[Path] = cache_dir() / "teacher_logits" / rehearsal.cache_name(self.key) if cache else None
        self._epochs: dict = {}

    def __call__(self, epoch: int) -> torch.Tensor:
        """(N, num_classes) float logits of epoch ``epoch``; rows of samples the epoch
        leaves out (``drop_last``) are NaN."""
        if epoch not in self._epochs:
            path = self.folder / f"epoch{epoch:03d}.pt" if self.folder else None
            cached = self._load_cached(path) if path is not None and path.exists() else None
            if cached is not None:
                self._epochs[epoch] = cached
            else:
                self._epochs[epoch] = self._compute(epoch)
                if path is not None:
                    atomic_torch_save(self._epochs[epoch].cpu(), path)
        return self._epochs[epoch]

    def _load_cached(self, path: Path) -> Optional[torch.Tensor]:
        """The cached logits in ``path``; None (with a warning) when the file is damaged or
        holds something else: the cache is disposable and the caller rebuilds it."""
        n = self.loader.num_samples
        try:
            table = torch.load(path, map_location=self.loader.device, weights_only=True)
            if isinstance(table, torch.Tensor) and table.ndim == 2 and table.shape[0] == n:
                return table
            problem = f"holds {type(table).__name__} {tuple(getattr(table, 'shape', ()))}, not ({n}, classes) logits"
        except Exception as e:  # truncated, zero bytes, not a torch file
            problem = f"cannot be read ({type(e).__name__}: {e})"
        warnings.warn(f"teacher-logits cache {path} {problem}; computing the logits again and rewriting it",
                      stacklevel=3)
        return None

    @torch.no_grad()
    def _compute(self, epoch: int) -> torch.Tensor:
        t0 = time.perf_counter()
        loader, teacher = self.loader, self.teacher.to(self.loader.device)
        was_training, previous_epoch = teacher.training, loader.epoch
        teacher.eval()
        out = None
        try:
            loader.set_epoch(epoch)
            for x, _, idx in rehearsal.train_batches(loader):
                with autocast_context(loader.device, self.dtype):
                    z = teacher(x).float()
                if out is None:
                    out = torch.full((loader.num_samples, z.shape[1]), float("nan"), device=z.device)
                out[idx] = z
        finally:
            loader.set_epoch(previous_epoch)
            teacher.train(was_training)
        print(f"[teacher logits] epoch {epoch + 1}: {loader.num_samples} images in "
              f"{time.perf_counter() - t0:.1f}s (cached for every student)", flush=True)
        return out


class CachedLogits(TeacherSource):
    """A :class:`TeacherLogits` table as a source: the logits of ``(batch.epoch, batch.index)``."""

    def __init__(self, table: TeacherLogits):
        super().__init__()
        self.table = table

    def forward(self, batch: Batch) -> torch.Tensor:
        if batch.index is None:
            raise ValueError("CachedLogits needs the sample index of every batch (kdutils.core.loader yields it)")
        return self.table(batch.epoch)[batch.index.to(self.table.loader.device)].to(batch.y.device)

    def extra_repr(self) -> str:
        return f"teacher logits {self.table.key}"


class RecordedLogits(TeacherSource):
    """Responses recorded once, one row per training sample, looked up by ``batch.index``."""

    def __init__(self, recorded: torch.Tensor):
        super().__init__()
        self.register_buffer("recorded", recorded.detach().float().clone())

    def forward(self, batch: Batch) -> torch.Tensor:
        if batch.index is None:
            raise ValueError("RecordedLogits needs the sample index of every batch (kdutils.core.loader yields it)")
        return self.recorded[batch.index]


def manual_soft_target(targets: torch.Tensor, num_classes: int, a: float = 0.9) -> torch.Tensor:
    """Tf-KD's manually designed teacher: the correct class gets ``a``, the other
    ``num_classes - 1`` classes share ``1 - a`` equally."""
    check_unit("a", a)
    if num_classes < 2:
        raise ValueError("manual_soft_target needs at least 2 classes")
    out = torch.full((targets.shape[0], num_classes), (1 - a) / (num_classes - 1), device=targets.device)
    out.scatter_(1, targets.view(-1, 1), a)
    return out


class ManualTarget(TeacherSource):
    """Teacher-free KD's virtual teacher (Yuan et al., CVPR 2020): :func:`manual_soft_target`
    of the labels, used as the teacher's logits (the objective softens it at its ``tau``)."""

    def __init__(self, num_classes: int, a: float = 0.9):
        super().__init__()
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"ManualTarget needs num_classes >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.a = check_unit("a", a)

    def forward(self, batch: Batch) -> torch.Tensor:
        return manual_soft_target(batch.y, self.num_classes, self.a)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, a={self.a}"


class OwnPredictions(TeacherSource):
    """The student's own softmax predictions of the previous epoch, one row per sample
    (PS-KD). Rows not yet filled (first epoch) are marked by :attr:`filled`."""

    def __init__(self, num_samples: int, num_classes: int):
        super().__init__()
        self.register_buffer("memory", torch.zeros(num_samples, num_classes))
        self.register_buffer("filled", torch.zeros(num_samples, dtype=torch.bool))

    def forward(self, batch: Batch) -> tuple:
        """``(predictions, filled)`` of the batch's samples."""
        if batch.index is None:
            raise ValueError("OwnPredictions needs the sample index of every batch (kdutils.core.loader yields it)")
        return self.memory[batch.index], self.filled[batch.index]

    @torch.no_grad()
    def remember(self, batch: Batch, logits: torch.Tensor) -> None:
        self.memory[batch.index] = F.softmax(logits.detach().float(), dim=1)
        self.filled[batch.index] = True
