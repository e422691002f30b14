"""Face data for part 4: an image-folder tree split per subject into training and test images.

Layout: ``<root>/<subject>/*`` in any image format Pillow reads (``.pgm``, ``.png``,
``.jpg``, ...), greyscale or colour, any size. Every image is converted to RGB and resized
to the network's input (32x32 for part 3's ResNet-18) while loading
(:func:`kdutils.data.load_image_folder`, cached after the first decode).

The split is per subject and deterministic: a permutation drawn from ``seed`` orders each
subject's images, the first ``n_train`` go to training and the next ``n_test`` to test;
further images are left out. The assignment's setting is 100 subjects x 50 images split
40/10; the ORL set has 10 images per subject, split 8/2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data import ImageSet, load_image_folder


@dataclass
class FaceSplit:
    """Training and test images of the kept subjects (labels ``0..len(subjects)-1``)."""

    train: ImageSet
    test: ImageSet
    dropped: list = field(default_factory=list)  # subjects with too few images (drop_small_subjects=True)

    @property
    def subjects(self) -> list:
        return list(self.train.classes)


def _check_count(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int (images per subject), got {value!r}")
    return value


def load_faces(root, n_train: int = 40, n_test: int = 10, size: int = 32, drop_small_subjects: bool = False,
               seed: int = 0) -> FaceSplit:
    """Load ``<root>/<subject>/*`` and split every subject into ``n_train`` + ``n_test`` images.

    A subject with fewer than ``n_train + n_test`` images raises a ``ValueError`` that names
    it, unless ``drop_small_subjects=True``, which leaves it out (listed in ``dropped``) and
    numbers the remaining subjects from 0 in sorted folder order.
    """
    _check_count("n_train", n_train)
    _check_count("n_test", n_test)
    faces = load_image_folder(Path(root), size=(size, size))
    need = n_train + n_test
    counts = torch.bincount(faces.labels, minlength=faces.num_classes).tolist()
    small = [(name, n) for name, n in zip(faces.classes, counts) if n < need]
    if small and not drop_small_subjects:
        listed = ", ".join(f"{name} ({n} images)" for name, n in small)
        raise ValueError(
            f"{len(small)} subject(s) under {root} have fewer than n_train + n_test = {need} images: {listed}. "
            "Lower n_train / n_test, add images, or pass drop_small_subjects=True to leave them out."
        )
    dropped = [name for name, _ in small]
    kept = [c for c, name in enumerate(faces.classes) if name not in dropped]
    if not kept:
        raise ValueError(f"no subject under {root} has {need} images; lower n_train / n_test")

    g = torch.Generator().manual_seed(seed)
    train_idx, test_idx, train_lab, test_lab = [], [], [], []
    for new_label, c in enumerate(kept):
        idx = torch.nonzero(faces.labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        train_idx.append(idx[:n_train])
        test_idx.append(idx[n_train:need])
        train_lab += [new_label] * n_train
        test_lab += [new_label] * n_test
    subjects = [faces.classes[c] for c in kept]

    def part(index, labels) -> ImageSet:
        s = faces.subset(torch.cat(index))
        return ImageSet(s.images, torch.tensor(labels, dtype=torch.long), subjects, s.files, s.source)

    return FaceSplit(part(train_idx, train_lab), part(test_idx, test_lab), dropped)


__all__ = ["FaceSplit", "load_faces"]
