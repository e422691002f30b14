"""Benchmark 1: kdutils' GpuLoader against torchvision's DataLoader with PIL transforms.

Both produce the same training batches from the same in-memory uint8 CIFAR-10 images
(``../shared/data/cifar10/train`` when present, else generated): random crop 32 with 4
pixels of zero padding, random horizontal flip, conversion to float and normalisation,
shuffled, the same batch size. GpuLoader is timed handing over contiguous NCHW batches (as
torchvision does) and channels-last ones (what ``fit`` asks for where channels-last is
faster). The torchvision side is the usual recipe

    Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)])

over a data set that turns each stored image into a PIL image (as ``torchvision.datasets.CIFAR10``
does), with 0 and 2 worker processes (``persistent_workers`` so that worker start-up is
not counted). Each candidate reads whole epochs; candidates alternate round by round.

    python bench/bench_loader.py [--quick]
"""
from __future__ import annotations

import common
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from kdutils.core.data import NORMALIZATION
from kdutils.core.loader import GpuLoader


class PILImages(Dataset):
    """Stored uint8 images handed to ``transform`` as PIL images, one at a time."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images.numpy(), labels.numpy(), transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def epoch_reader(loader):
    """A closure that reads one epoch of ``loader``."""

    def run():
        for _ in loader:
            pass

    return run


def main(quick: bool = False, batch_size: int = 128) -> list:
    images, source = common.cifar10_train(2_560 if quick else 10_000)
    mean, std = NORMALIZATION["cifar10"]
    rounds = 3 if quick else 5
    gpu_loaders = {layout: GpuLoader(images, batch_size, train=True, padding=4, flip=True, mean=mean, std=std,
                                     channels_last=layout == "channels_last")
                   for layout in ("contiguous", "channels_last")}
    pil = PILImages(images.images, images.labels, T.Compose([
        T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]))
    torchvision_loaders = {
        workers: DataLoader(pil, batch_size, shuffle=True, drop_last=True, num_workers=workers,
                            persistent_workers=workers > 0)
        for workers in (0, 2)
    }
    device = gpu_loaders["contiguous"].device
    candidates = {f"kdutils GpuLoader ({device.type}, {layout})": epoch_reader(loader)
                  for layout, loader in gpu_loaders.items()}
    for workers, loader in torchvision_loaders.items():
        candidates[f"torchvision DataLoader + PIL, {workers} workers"] = epoch_reader(loader)
    seconds = common.timed(candidates, rounds, device, wall=True)  # workers are other processes

    n = len(gpu_loaders["contiguous"]) * batch_size  # all drop the last incomplete batch
    ours = next(iter(seconds))  # contiguous NCHW: the layout torchvision hands over
    rows = [{"loader": name, "images/s": n / common.median(secs),
             "GpuLoader (contiguous) speed-up": common.paired_ratio(secs, seconds[ours]),
             "range over rounds": common.ratio_range(secs, seconds[ours])}
            for name, secs in seconds.items()]
    settings = {"images": source, "images_per_epoch": n, "batch_size": batch_size, "rounds": rounds,
                "augmentation": "RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize"}
    title = (f"1. Loader: one epoch of {n} CIFAR-10 images, batch {batch_size}, crop+flip+normalise "
             f"(median of {rounds} alternating rounds, {common.clock_words(wall=True)})")
    common.report("loader", title, rows, settings)
    return rows


if __name__ == "__main__":
    main(common.parse_args(__doc__).quick)
