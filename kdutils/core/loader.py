"""Fast batches from an in-memory uint8 image tensor.

The whole data set stays as one (N, H, W, 3) uint8 tensor on the training device (as in
KellerJordan/cifar10-airbench). Each batch is cut out with one gather of pixels (random
crop of a zero-padded copy, the horizontal flip folded into the column order), converted
to float straight into the layout the model wants (channels-last, which convolutions
prefer, or contiguous NCHW) and normalised in place: four passes over the batch, no
per-image Python or PIL work (``bench/bench_loader.py`` compares it with torchvision).
On the CPU a batch is made with one thread: the passes are short and memory-bound, and
on a busy 2-core machine (load average 10) one thread made batches 8x faster than two,
which waited for each other at every pass.

Randomness is drawn from a generator seeded by ``(seed, epoch)``, so epoch ``e`` is the same
whether a run starts fresh or resumes from a checkpoint: resumed runs reproduce. In
data-parallel training (:mod:`kdutils.core.distributed`) each process iterates a
:class:`RankShard`: its disjoint slice of every global batch, with the same permutation and
random crops/flips as one process draws.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import torch

from kdutils.core.data import ImageSet, check_same_classes


class GpuLoader:
    """Batches ``(x, y, index)`` of an :class:`~kdutils.core.data.ImageSet` (or tensors).

    Parameters
    ----------
    data: ImageSet or (images uint8 (N, H, W, 3), labels) tuple.
    batch_size: images per batch.
    train: shuffle and augment (random crop + flip) when True; otherwise a fixed order and
        a centre crop.
    crop: output size (default: the stored size). Smaller than the stored size means a
        random crop (train) / centre crop (eval) without padding, e.g. food-11's 128 from 142.
    padding: zero padding before a same-size random crop (CIFAR's 4 pixels). Train only.
    flip: random horizontal flip with probability 0.5. Train only.
    mean, std: per-channel normalisation in [0, 1] units.
    device: where the images live and batches are made ("auto": CUDA if available).
    drop_last: drop the last incomplete batch (train default True).
    seed: the base seed; epoch ``e`` uses ``seed * 1_000_003 + e``.
    """

    def __init__(self, data, batch_size: int = 128, train: bool = True, crop: Optional[int] = None,
                 padding: int = 0, flip: bool = True, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), device="auto", drop_last: Optional[bool] = None,
                 seed: int = 0, channels_last: bool = True, cutout: int = 0):
        if isinstance(data, ImageSet):
            images, labels = data.images, data.labels
        else:
            images, labels = data
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be a uint8 (N, H, W, 3) tensor, got {tuple(images.shape)} {images.dtype}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if len(images) == 0:
            raise ValueError("the data set is empty")
        n, h, w, _ = images.shape
        crop = crop or h
        if crop > h or crop > w:
            raise ValueError(f"crop {crop} is larger than the stored images ({h}x{w})")
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if not 0 <= cutout <= crop:
            raise ValueError(f"cutout must lie in [0, crop={crop}], got {cutout}")
        self.cutout = cutout if train else 0
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
        self.batch_size, self.train, self.crop, self.flip = batch_size, train, crop, flip
        self.padding = padding if train else 0
        self.drop_last = train if drop_last is None else drop_last
        self.seed, self.epoch, self.channels_last = seed, 0, channels_last
        p = self.padding
        imgs = images.to(self.device)
        if p:
            imgs = torch.nn.functional.pad(imgs, (0, 0, p, p, p, p))  # pad W and H of NHWC
        self.images = imgs.contiguous()
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(self.device)
        self.mean = torch.tensor(mean, device=self.device, dtype=torch.float32).view(1, 3, 1, 1) * 255
        self.inv_std = 1.0 / (torch.tensor(std, device=self.device, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.arange = torch.arange(crop, device=self.device)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffling and augmentation the next iteration draws."""
        self.epoch = int(epoch)

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device="cpu")
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        return g

    def _crop_offsets(self, b: int, g: torch.Generator):
        span_h = self.images.shape[1] - self.crop
        span_w = self.images.shape[2] - self.crop
        if self.train:
            oy = torch.randint(0, span_h + 1, (b,), generator=g)
            ox = torch.randint(0, span_w + 1, (b,), generator=g)
        else:
            oy = torch.full((b,), span_h // 2)
            ox = torch.full((b,), span_w // 2)
        return oy.to(self.device), ox.to(self.device)

    def make_batch(self, idx: torch.Tensor, g: Optional[torch.Generator] = None):
        """Images ``idx`` (a 1-D index tensor on the device) cropped, flipped, normalised."""
        return self._assemble(idx, self._draw(len(idx), g))

    def _draw(self, b: int, g: Optional[torch.Generator]) -> dict:
        """The random choices of a batch of ``b`` images, drawn from ``g`` in a fixed order
        (crop offsets, flips, cutout centres): a slice of them is what a rank's share of the
        batch gets (:class:`RankShard`)."""
        _, h, w, _ = self.images.shape
        c = self.crop
        if h == c and w == c:
            oy = ox = torch.zeros(b, dtype=torch.long, device=self.device)
        else:
            oy, ox = self._crop_offsets(b, g)
        draws = {"oy": oy, "ox": ox}
        if self.train and self.flip:
            draws["flip"] = (torch.rand(b, generator=g) < 0.5).to(self.device)
        if self.cutout:
            draws["cy"] = torch.randint(0, c, (b, 1), generator=g).to(self.device)
            draws["cx"] = torch.randint(0, c, (b, 1), generator=g).to(self.device)
        return draws

    def _assemble(self, idx: torch.Tensor, draws: dict):
        """The batch of images ``idx`` with the random choices ``draws`` (one row per image)."""
        b, c = len(idx), self.crop
        n, h, w, _ = self.images.shape
        cols = self.arange.expand(b, c)
        if "flip" in draws:  # a flipped image reads its columns right to left
            cols = torch.where(draws["flip"][:, None], self.arange.flip(0), self.arange)
        rows = draws["oy"][:, None] + self.arange  # (B, c)
        cols = draws["ox"][:, None] + cols  # (B, c)
        pixels = idx[:, None, None] * (h * w) + rows[:, :, None] * w + cols[:, None, :]  # (B, c, c)
        x = self.images.view(n * h * w, 3).index_select(0, pixels.flatten()).view(b, c, c, 3)
        out = torch.empty((b, 3, c, c), device=self.device, memory_format=(
            torch.channels_last if self.channels_last else torch.contiguous_format))
        out.copy_(x.permute(0, 3, 1, 2))  # uint8 -> float in the layout the model wants
        out.sub_(self.mean).mul_(self.inv_std)
        if self.cutout:
            out.mul_(self._cutout_mask(draws["cy"], draws["cx"]))
        return out, self.labels[idx]

    def _cutout_mask(self, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
        """(B, 1, c, c) mask, 0 inside a square of side ``cutout`` around the centres (cy, cx)."""
        half = self.cutout // 2
        inside_y = (self.arange >= cy - half) & (self.arange < cy - half + self.cutout)  # (B, c)
        inside_x = (self.arange >= cx - half) & (self.arange < cx - half + self.cutout)
        return (~(inside_y[:, :, None] & inside_x[:, None, :])).unsqueeze(1).float()

    def __iter__(self) -> Iterator:
        return self.batches()

    def batches(self, rank: int = 0, world_size: int = 1) -> Iterator:
        """The epoch's batches ``(x, y, index)``; with ``world_size > 1`` only rank ``rank``'s
        share of each: the same permutation and random choices as one process draws, cut
        into ``world_size`` consecutive, disjoint slices (see :class:`RankShard`)."""
        g = self._generator()
        n = len(self.labels)
        order = torch.randperm(n, generator=g) if self.train else torch.arange(n)
        order = order.to(self.device)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for s in range(0, stop, self.batch_size):
            idx = order[s:s + self.batch_size]
            with _one_thread_on_cpu(self.device):
                draws = self._draw(len(idx), g)
                if world_size > 1:
                    if len(idx) < world_size:  # a last batch too small to share: every rank skips it
                        continue
                    mine = _share(len(idx), rank, world_size)
                    idx, draws = idx[mine], {k: v[mine] for k, v in draws.items()}
                x, y = self._assemble(idx, draws)
            yield x, y, idx


def _share(b: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s consecutive slice of a batch of ``b`` (sizes differ by at most one)."""
    base, extra = divmod(b, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


class RankShard:
    """One process's view of a :class:`GpuLoader` in data-parallel training.

    It yields, for every global batch of the epoch, this rank's disjoint slice (a global
    batch of ``B`` gives each of ``W`` ranks ``B / W`` images), with the permutation, crops
    and flips the single-process loader draws: together the ranks see exactly the
    single-process run's images, in as many steps. Everything else (``len``,
    ``set_epoch``, ``batch_size``, ``crop``, ...) is the wrapped loader's; the loader itself
    stays whole, so a teacher-logit table built on it still covers every image.
    """

    def __init__(self, loader: "GpuLoader", rank: int, world_size: int):
        if not isinstance(loader, GpuLoader):
            raise TypeError(f"data-parallel training shards a kdutils GpuLoader, got {type(loader).__name__}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        if loader.batch_size % world_size:
            raise ValueError(f"the global batch size {loader.batch_size} is not divisible by the {world_size} "
                             "processes: choose a batch size (or a process count) that divides evenly")
        self.loader, self.rank, self.world_size = loader, rank, world_size

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        return self.loader.batches(self.rank, self.world_size)

    def __getattr__(self, name):
        return getattr(self.__dict__["loader"], name)

    def __setattr__(self, name, value):
        if name in ("loader", "rank", "world_size"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.loader, name, value)


@contextmanager
def _one_thread_on_cpu(device: torch.device):
    """Run the block with one intra-op thread when ``device`` is the CPU (then restore)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _content_hash(loader) -> str:
    """Hash of the loader's images and labels, computed once per loader (they never change)."""
    key = (loader.images.data_ptr(), tuple(loader.images.shape), loader.labels.data_ptr())
    cached = getattr(loader, "_content_hash_cache", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha1()
    h.update(loader.images.cpu().numpy().tobytes())
    h.update(loader.labels.cpu().numpy().tobytes())
    loader._content_hash_cache = (key, h.hexdigest())
    return loader._content_hash_cache[1]


def loader_fingerprint(loader, model: Optional[torch.nn.Module] = None, extra: tuple = ()) -> Optional[str]:
    """A key that changes with the loader's images, labels and every setting that changes
    its batches (and, when given, with ``model``'s weights and the values in ``extra``).

    ``fit`` keeps it in a run's record (the identity of the data a run was trained on);
    :class:`~kdutils.distill.teachers.TeacherLogits` names its cache with it. None for a
    loader that is not a :class:`GpuLoader` (its data cannot be fingerprinted cheaply).
    """
    if not all(hasattr(loader, a) for a in ("images", "labels", "batch_size", "crop", "mean", "inv_std")):
        return None
    h = hashlib.sha1()
    if model is not None:
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(_content_hash(loader).encode())
    cfg = (loader.batch_size, loader.crop, getattr(loader, "padding", 0), getattr(loader, "flip", False),
           getattr(loader, "cutout", 0), getattr(loader, "drop_last", False), getattr(loader, "train", None),
           getattr(loader, "seed", 0), loader.mean.flatten().tolist(), loader.inv_std.flatten().tolist(),
           *extra)
    h.update(repr(cfg).encode())
    return h.hexdigest()[:20]


def loaders_for(train_set: ImageSet, test_set: ImageSet, batch_size: int, mean, std, device="auto",
                padding: int = 4, crop: Optional[int] = None, flip: bool = True, seed: int = 0,
                eval_batch_size: Optional[int] = None, cutout: int = 0):
    """The usual pair: an augmenting training loader and a plain test loader (the two sets
    must name the same classes in the same order, :func:`~kdutils.core.data.check_same_classes`)."""
    check_same_classes(train_set, test_set)
    tr = GpuLoader(train_set, batch_size, train=True, crop=crop, padding=padding, flip=flip,
                   mean=mean, std=std, device=device, seed=seed, cutout=cutout)
    te = GpuLoader(test_set, eval_batch_size or max(batch_size, 256), train=False, crop=crop,
                   mean=mean, std=std, device=device)
    return tr, te
