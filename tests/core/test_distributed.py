"""Data-parallel ``fit`` on the CPU: 2 gloo processes started by torchrun against one process.

The worker script (written to a temporary folder) trains a small CNN without BatchNorm on
generated images, so a 2-process run with the same *global* batch computes the same
averaged gradients as one process, up to the order of floating-point sums.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from kdutils.core import distributed as D
from kdutils.core.loader import GpuLoader, RankShard

#: Agreement asked of a 2-process run with a 1-process run of the same global batch
#: (3 epochs of SGD): losses and accuracies per epoch.
LOSS_TOL = 1e-4
TOP1_TOL = 1e-6  # accuracies are counts of images: equal

WORKER = textwrap.dedent('''
    import os, signal, sys
    import torch
    from torch import nn
    from kdutils.core import distributed as D
    from kdutils.core.data import synthetic_images
    from kdutils.core.loader import GpuLoader
    from kdutils.core.recipe import Recipe
    from kdutils.core.train import Run, Runtime, fit

    D.init_from_env()
    images, labels = (torch.as_tensor(a) for a in synthetic_images(96, 4, (16, 16), seed=1))
    train = GpuLoader((images[:64], labels[:64]), 16, train=True, padding=2, device="cpu", seed=3)
    test = GpuLoader((images[64:], labels[64:]), 32, train=False, device="cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                          nn.Linear(128, 4))
    kill_after = int(os.environ.get("KILL_AFTER_EPOCH", "0"))

    def crash(epoch, row):  # a hard kill of rank 0 (its checkpoint holds the epoch before)
        if kill_after and epoch + 1 == kill_after and D.rank() == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    rec = fit(model, train, test, Recipe(3, lr=0.1, momentum=0.9), run=Run("ddp", sys.argv[1], "smoke"),
              runtime=Runtime(device="cpu", amp="off", channels_last=False, log="lines"), callbacks=[crash])
    D.shutdown()
''')


def _run(tmp_path: Path, name: str, procs: int, kill_after: int = 0) -> subprocess.CompletedProcess:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, KD_OUTPUT_ROOT=str(tmp_path / "out"), KD_CACHE_DIR=str(tmp_path / "cache"),
               KD_HEADLESS="1", OMP_NUM_THREADS="1", KILL_AFTER_EPOCH=str(kill_after),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, str(script), name] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", str(script), name]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def _record(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / "out" / "results" / "smoke" / "ddp" / f"{name}.json").read_text())


def _max_differences(a: dict, b: dict) -> dict:
    """The largest per-epoch difference of each metric between two records."""
    assert [h["epoch"] for h in a["history"]] == [h["epoch"] for h in b["history"]] == [1, 2, 3]
    keys = ("train_loss", "test_loss", "train_top1", "test_top1", "test_top5")
    return {k: max(abs(ha[k] - hb[k]) for ha, hb in zip(a["history"], b["history"])) for k in keys}


def test_two_gloo_processes_resume_after_a_kill_and_match_one_process(tmp_path):
    one = _run(tmp_path, "one", 1)
    assert one.returncode == 0, one.stderr[-2000:]
    # 2 processes; rank 0 is killed (SIGKILL) in epoch 2, torchrun stops rank 1 too.
    killed = _run(tmp_path, "two", 2, kill_after=2)
    assert killed.returncode != 0
    assert _record(tmp_path, "two")["status"] == "running"  # epoch 1's record and checkpoint
    resumed = _run(tmp_path, "two", 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.count("resuming after epoch 1/3") == 2  # each rank loads the checkpoint
    assert resumed.stdout.count("epoch 3/3") == 1
    single, double = _record(tmp_path, "one"), _record(tmp_path, "two")
    assert double["status"] == "complete" and double["distributed"]["world_size"] == 2
    assert single.get("distributed") is None
    diff = _max_differences(single, double)
    print("2 gloo processes vs 1 process, largest per-epoch difference:", diff)
    assert all(diff[k] <= LOSS_TOL for k in ("train_loss", "test_loss")), diff
    assert all(diff[k] <= TOP1_TOL for k in ("train_top1", "test_top1", "test_top5")), diff


def test_rank_shards_are_disjoint_and_reassemble_the_global_batch():
    images = torch.randint(0, 256, (40, 8, 8, 3), dtype=torch.uint8)
    labels = torch.arange(40) % 5
    loader = GpuLoader((images, labels), 8, train=True, padding=2, device="cpu", seed=1, cutout=3)
    loader.set_epoch(2)
    whole = list(loader)
    parts = [list(RankShard(loader, r, 2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole) == len(RankShard(loader, 0, 2)) == 5
    for (x, y, i), (x0, y0, i0), (x1, y1, i1) in zip(whole, *parts):
        assert len(i0) == len(i1) == 4 and not set(i0.tolist()) & set(i1.tolist())
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([i0, i1]), i)


def test_shard_needs_a_divisible_batch_and_outside_a_group_nothing_changes():
    images = torch.zeros((12, 4, 4, 3), dtype=torch.uint8)
    loader = GpuLoader((images, torch.zeros(12, dtype=torch.long)), 6, device="cpu")
    with pytest.raises(ValueError, match="not divisible by the 4 processes"):
        RankShard(loader, 0, 4)
    assert not D.is_active() and D.world_size() == 1 and D.is_writer()
    loss, correct = torch.tensor(2.0), torch.tensor(3)
    assert D.epoch_totals(None, loss, correct, 5, {}, 1.5) == (loss, correct, 5, {}, 1.5)
    assert D.any_rank(None, True) and not D.any_rank(None, False)
    assert D.from_writer(loss) is loss  # alone, this process's tensor is rank 0's
    assert D.init_from_env() is False  # no WORLD_SIZE: one process
