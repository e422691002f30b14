"""A projection (not a measurement) of each part's full-profile training time.

For every training run of the full profiles the work is

    images x epochs x (3 x forward FLOPs of the trained network + forward FLOPs of a live teacher)

(3 x forward = forward + backward, the usual estimate; FLOPs from
``kdutils.models.count_flops``, 1 multiply-add = 2 FLOPs, at full width). The sum per part
is divided by an **assumed** sustained throughput: 35% of the dense bf16 peak of an A100
(312 TFLOP/s) and of an H100 SXM (989 TFLOP/s). Small networks (the part-3 student, the
food-11 students) keep a GPU far less busy than that, so their rows are lower bounds.
A last column does the same with the throughput measured on this machine by
``bench_precision.py`` (ResNet-18 training steps in ``fit``'s chosen setting), when that has run.

The workloads follow the full profiles of the notebooks (their ``SETTINGS`` and
``kdutils.parts.part1``); where the count of images of a data set is not in the code it is
stated below.

    python bench/projection.py
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import common  # first: puts the repository on sys.path

from kdutils.models import build_model, count_flops
from kdutils.models.cifar_resnet import ABLATION_PATH
from kdutils.models.mobile import match_width
from kdutils.parts import part2, part3
from kdutils.parts.part1 import CIFAR100_RECIPE

#: Assumed sustained throughput: this fraction of the dense bf16 peak (FLOP/s).
UTILISATION = 0.35
PEAK_BF16 = {"A100": 312e12, "H100 SXM": 989e12}

CIFAR_TRAIN = 50_000
FACES_TRAIN = 40 * 40  # notebook 05 full: 40 subjects (assumed) x n_train=40 images
FOOD_LABELED, FOOD_UNLABELED = 3_080, 6_786  # food-11 (ML2021 HW3 layout): training/labeled, training/unlabeled


@dataclass(frozen=True)
class Job:
    """``runs`` training runs of ``model`` over ``images`` x ``epochs`` (``passes=1``: forward
    passes only, e.g. a teacher's logits computed once and shared)."""

    part: str
    what: str
    model: tuple  # (registry name, num_classes, options)
    images: int
    epochs: int
    runs: int = 1
    teacher: Optional[tuple] = None  # a teacher run live at every step (forward only)
    size: int = 32
    passes: int = 3  # forward + backward ~ 3 forward passes


def full_profile_jobs() -> list:
    """The full profile's training runs of every part."""
    c100 = CIFAR100_RECIPE["full"]["epochs"]
    jobs = [Job("part1", e["name"], (e["model"], 100, e["options"]), CIFAR_TRAIN, c100) for e in ABLATION_PATH]
    for e in part2.part2_plan("wrn_40_2", "wrn_16_2", 0.9, 4.0).values():  # notebook 02's full pair
        teacher = (e.teacher.arch, 100, {}) if e.teacher is not None else None
        jobs.append(Job("part2", e.key, (e.arch, 100, {}), CIFAR_TRAIN, c100, teacher=teacher))
    p3 = part3.SETTINGS["full"]
    teacher8x8 = ("resnet18_cifar_8x8", 10, {"weights": None})
    student = ("student_cnn", 10, {"pool_stride": p3["pool_stride"]})
    jobs += [
        Job("part3", "teacher (fine-tuned)", teacher8x8, CIFAR_TRAIN, p3["epochs"]),
        # teacher logits: one forward pass per epoch, shared by every student (TeacherLogits)
        Job("part3", "teacher logits", teacher8x8, CIFAR_TRAIN, p3["student_epochs"], passes=1),
        Job("part3", "KD table (5) + make sweep grid (16)", student, CIFAR_TRAIN, p3["student_epochs"], runs=21),
        # notebook 04 full: 20 + 10 trials of 3 epochs, then one final run of 30 epochs
        Job("part3", "search trials (30 x 3 epochs)", student, CIFAR_TRAIN, 3, runs=30),
        Job("part3", "search final run", student, CIFAR_TRAIN, 30),
        # notebook 05 full: feature extraction, fine-tuning, LwF (10 warm-up + 30 joint epochs)
        Job("part4", "three methods x 30 epochs", teacher8x8, FACES_TRAIN, 30, runs=3),
        Job("part4", "LwF warm-up", teacher8x8, FACES_TRAIN, 10),
    ]
    # notebook 06 full: 128 px crops, 11 classes
    food_teacher = ("resnet18_food", 11, {"weights": None})
    food_student = ("food_student", 11, {})
    jobs += [
        Job("part5", "teacher from scratch", food_teacher, FOOD_LABELED, 40, size=128),
        Job("part5", "teacher fine-tuned", food_teacher, FOOD_LABELED, 15, size=128),
        Job("part5", "student (CE)", food_student, FOOD_LABELED, 80, size=128),
        Job("part5", "students with KD (2 teachers)", food_student, FOOD_LABELED, 80, runs=2, teacher=food_teacher,
            size=128),
        Job("part5", "student KD + pseudo-labels", food_student, FOOD_LABELED + FOOD_UNLABELED, 80,
            teacher=food_teacher, size=128),
    ]
    for kind in ("conv", "dwsep", "group"):
        width = match_width(kind, 250_000, 11)
        jobs.append(Job("part5", f"{kind}_net comparison", (f"{kind}_net", 11, {"width": width}), FOOD_LABELED, 40,
                        size=128))
    return jobs


_FLOPS: dict = {}


def forward_flops(model: tuple, size: int) -> int:
    """Forward FLOPs per image of ``(name, num_classes, options)`` at ``size`` x ``size``."""
    key = (model[0], model[1], tuple(sorted(model[2].items())), size)
    if key not in _FLOPS:
        _FLOPS[key] = count_flops(build_model(model[0], model[1], **model[2]), (1, 3, size, size))
    return _FLOPS[key]


def job_flops(job: Job) -> float:
    per_image = job.passes * forward_flops(job.model, job.size)
    if job.teacher is not None:
        per_image += forward_flops(job.teacher, job.size)
    return per_image * job.images * job.epochs * job.runs


def measured_cpu_flops() -> Optional[tuple]:
    """``(FLOP/s, description)`` of fit's ResNet-18 training steps from bench_precision, if run."""
    path = common.output_dir() / "precision.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    chosen = [r for r in result["rows"] if r.get("fit (auto)")] or result["rows"][:1]
    images_per_s = chosen[0]["images/s"]
    flops = 3 * forward_flops((result["settings"]["model"], 10, {}), 32) * images_per_s
    return flops, f"{images_per_s:.3g} images/s of {result['settings']['model']} ({chosen[0]['setting']}) on " \
                  f"{result['environment']['device']}, load average {result['environment']['load_average_1min']}"


def main() -> list:
    jobs = full_profile_jobs()
    cpu = measured_cpu_flops()
    rows = []
    for part in sorted({j.part for j in jobs}):
        mine = [j for j in jobs if j.part == part]
        total = sum(job_flops(j) for j in mine)
        row = {"part": part, "training runs": sum(j.runs for j in mine if j.passes == 3), "PFLOP": total / 1e15}
        for gpu, peak in PEAK_BF16.items():
            row[f"{gpu} h (projected)"] = total / (UTILISATION * peak) / 3600
        if cpu is not None:
            row["this CPU, days (projected)"] = total / cpu[0] / 86400
        rows.append(row)
    title = (f"Projection, not a measurement: full-profile training compute per part at "
             f"{UTILISATION:.0%} of the dense bf16 peak" + (f"; CPU column from {cpu[1]}" if cpu else ""))
    settings = {"utilisation": UTILISATION, "peak_bf16_flops": PEAK_BF16,
                "jobs": [dict(part=j.part, what=j.what, model=j.model[0], images=j.images, epochs=j.epochs,
                              runs=j.runs, teacher=j.teacher[0] if j.teacher else None, size=j.size,
                              passes=j.passes, PFLOP=job_flops(j) / 1e15) for j in jobs]}
    common.report("projection", title, rows, settings)
    return rows


if __name__ == "__main__":
    main()
