"""Optional live training curves in TensorBoard, through ``fit``'s ``callbacks`` hook.

Off by default. ``KD_TENSORBOARD=1`` (or a folder) makes every ``fit`` with a run write
each epoch's history row (losses, accuracies, learning rate, seconds) as TensorBoard
scalars under ``runs/tensorboard/<profile>/<part>/<run>/`` (or ``<folder>/<profile>/...``);
watch them with ``tensorboard --logdir runs/tensorboard``. Needs the ``tensorboard``
package (``pip install tensorboard``); without it the switch raises an error that says so.

A callback can also be passed by hand: ``fit(..., callbacks=[TensorBoardCurves(folder)])``.
"""
from __future__ import annotations

import os
from numbers import Real
from pathlib import Path
from typing import Mapping, Optional

from kdutils.core.profiles import runs_dir

ENV = "KD_TENSORBOARD"


class TensorBoardCurves:
    """``cb(epoch, row)``: every numeric value of the history ``row`` as a scalar named
    ``<prefix>/<key>`` (``train_loss`` -> ``train/loss``), at step ``row["epoch"]``."""

    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # torch's writer needs the tensorboard package
            raise ImportError(f"{ENV} asks for TensorBoard curves, but the tensorboard package is missing: "
                              f"pip install tensorboard (or unset {ENV})") from e
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def __call__(self, epoch: int, row: Mapping) -> None:
        step = int(row.get("epoch", epoch + 1))
        for key, value in row.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, Real):
                continue
            self.writer.add_scalar(scalar_name(key), float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def scalar_name(key: str) -> str:
    """``train_loss`` -> ``train/loss``, ``old_test_top1`` -> ``old_test/top1``, ``lr`` -> ``lr``:
    TensorBoard groups the curves by the part before the last ``/``."""
    head, _, tail = key.rpartition("_")
    return f"{head}/{tail}" if head else key


def log_dir_for(part: str, profile: str, name: str, setting: Optional[str] = None) -> Optional[Path]:
    """Where a run's curves go for the ``KD_TENSORBOARD`` ``setting`` (default: the
    environment): None when off (unset, empty or ``0``), ``runs/tensorboard/...`` for ``1``,
    else under the folder it names."""
    setting = os.environ.get(ENV, "") if setting is None else setting
    setting = setting.strip()
    if setting in ("", "0"):
        return None
    root = runs_dir() / "tensorboard" if setting == "1" else Path(setting)
    return root / profile / part / name


def from_environment(run) -> tuple:
    """The callbacks ``fit`` adds for ``run`` (a :class:`kdutils.core.train.Run` or None):
    a :class:`TensorBoardCurves` when ``KD_TENSORBOARD`` is on, else none."""
    if run is None:
        return ()
    folder = log_dir_for(run.part, run.profile, run.name)
    return () if folder is None else (TensorBoardCurves(folder),)
