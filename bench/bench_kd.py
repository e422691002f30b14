"""Benchmark 3: the overhead of knowledge distillation in ``kdutils.core.train.fit``.

A KD epoch (``fit`` with ``KDLoss`` and a teacher) against what it cannot avoid doing: a
plain training epoch of the same student (``fit`` with cross-entropy) plus one inference
pass of the teacher over the same batches (``eval()``, ``torch.inference_mode()``). The
ratio KD / (student + teacher) shows what the framework adds for KD (the soft-target loss,
the teacher call); target <= 1.05. Batches are pre-made and in memory; candidates alternate.

    python bench/bench_kd.py [--quick]
"""
from __future__ import annotations

import copy

import common
import torch

from kdutils.core.precision import autocast_context, resolve_device, training_settings
from kdutils.core.recipe import Recipe
from kdutils.core.train import Runtime, fit
from kdutils.distill.objectives import KDLoss
from kdutils.distill.teachers import LiveTeacher
from kdutils.models import build_model

LR = 0.01
TEACHER, STUDENT = ("resnet20", {}), ("student_cnn", {"pool_stride": 2})


def main(quick: bool = False, batch_size: int = 64) -> list:
    device = resolve_device("auto")
    rounds = 5 if quick else 9
    n_batches = 2
    torch.manual_seed(0)
    teacher = build_model(TEACHER[0], 10, **TEACHER[1]).to(device).eval()
    student = build_model(STUDENT[0], 10, **STUDENT[1])
    loader = common.BatchList([tuple(t.to(device) for t in b) for b in common.make_batches(n_batches, batch_size)])
    dtype, channels_last = training_settings(student, loader, device)  # what fit will use
    if channels_last:
        teacher.to(memory_format=torch.channels_last)
        loader.batches = [(x.contiguous(memory_format=torch.channels_last), y, i) for x, y, i in loader.batches]
    kd_student, ce_student = copy.deepcopy(student), copy.deepcopy(student)
    objective = KDLoss(alpha=0.9, tau=4.0, teacher=LiveTeacher(teacher))
    recipe, runtime = Recipe(1, lr=LR), Runtime(log="off", device=device)

    def kd_epoch():
        fit(kd_student, loader, None, recipe, objective, runtime=runtime)

    def student_epoch_and_teacher_pass():
        with torch.inference_mode(), autocast_context(device, dtype):
            for x, _, _ in loader:
                teacher(x)
        fit(ce_student, loader, None, recipe, runtime=runtime)

    seconds = common.timed({"kd": kd_epoch, "separate": student_epoch_and_teacher_pass}, rounds, device)
    images = n_batches * batch_size
    rows = [{"teacher -> student": f"{TEACHER[0]} -> {STUDENT[0]} (pool_stride=2)",
             "batches x size": f"{n_batches} x {batch_size}",
             "student epoch + teacher pass, images/s": images / common.median(seconds["separate"]),
             "KD epoch, images/s": images / common.median(seconds["kd"]),
             "KD / (student + teacher) time": common.paired_ratio(seconds["kd"], seconds["separate"]),
             "range over rounds": common.ratio_range(seconds["kd"], seconds["separate"])}]
    title = (f"3. KD overhead: fit(KDLoss, teacher) vs fit(CE) + teacher inference, {device.type} "
             f"(median of {rounds} alternating rounds, {common.clock_words()}; target <= 1.05)")
    common.report("kd_overhead", title, rows, {"rounds": rounds, "device": str(device), "objective": repr(objective)})
    return rows


if __name__ == "__main__":
    main(common.parse_args(__doc__).quick)
