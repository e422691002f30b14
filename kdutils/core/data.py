"""Data sets as in-memory uint8 tensors.

Every loader returns an :class:`ImageSet`: ``images`` (N, H, W, 3) uint8, ``labels`` (N,)
int64, ``classes`` (names) and ``files`` (source file names, where there are files).
Images are decoded once; the decoded tensor is cached on disk, so the second load of a
folder is a single ``torch.load``. Training-time augmentation happens in batches on the
training device (``kdutils.core.loader``), never per image in PIL.

Sources
-------
- CIFAR-10 / CIFAR-100 through torchvision's own download and parsing code
  (``load_cifar``), or, when ``root`` holds ``cifar10/{train,test}/<class>/*.png``
  folders (e.g. ``../shared/data``), through the image-folder path (``load_dataset``).
- Any image-folder tree ``<root>/<class>/*.{png,jpg,jpeg,pgm,bmp}`` (``load_image_folder``):
  greyscale converted to RGB, resized when sizes differ.
- The food-11 layout (``load_food11``) and face trees (``kdutils.parts.part4``, part 4).

Generators (``make_cifar_pickles``, ``make_image_tree``, ``make_food11_tree``) write small
synthetic data sets in the same on-disk formats, for tests and the smoke profile.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from kdutils.core.fileio import atomic_torch_save, atomic_write_json
from kdutils.core import rehearsal

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp")

#: Per-channel mean and std of the training images (computed on the full training sets).
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, H, W, 3) uint8
    labels: torch.Tensor  # (N,) int64; -1 for unlabelled images
    classes: list = field(default_factory=list)
    files: list = field(default_factory=list)
    source: str = ""

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {tuple(self.images.shape)} {self.images.dtype}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index) -> "ImageSet":
        index = torch.as_tensor(index, dtype=torch.long)
        files = [self.files[i] for i in index.tolist()] if self.files else []
        return ImageSet(self.images[index], self.labels[index], list(self.classes), files, self.source)

    def per_class(self, n: int, seed: int = 0, pool: Optional[int] = None) -> "ImageSet":
        """A class-balanced subset with at most ``n`` images per class (deterministic).

        The draw depends on the images' file names, not on the order or number of files in
        the source: each class's images are sorted by file name, ``pool`` (if given) keeps the
        first ``pool`` of them, and a permutation seeded with ``seed`` picks ``n``. Two sources
        holding the same first ``pool`` file names per class (torchvision's pickles of the whole
        set, or an image tree of that sample) give the same subset. Without file names the
        images are taken in their stored order.
        """
        if pool is not None and n > pool:
            raise ValueError(f"{n} images per class were asked for, but the subsets are drawn from the first "
                             f"{pool} per class ({self.source}); lower the per-class setting to <= {pool}")
        names = [Path(f).name for f in self.files] if len(self.files) == len(self) else None
        g = torch.Generator().manual_seed(seed)
        keep = []
        for c in range(self.num_classes):
            idx = torch.nonzero(self.labels == c).flatten()
            if names is not None:
                idx = idx[sorted(range(len(idx)), key=lambda i: names[idx[i]])]
            if pool is not None:
                idx = idx[:pool]
            keep.append(idx[torch.randperm(len(idx), generator=g)[:n]].sort().values)
        return self.subset(torch.cat(keep)) if keep else self

    def first_classes(self, k: int) -> "ImageSet":
        """The images of the first ``k`` classes (labels ``0..k-1``, i.e. the first ``k`` class
        names in sorted order), their labels unchanged; ``k`` must not exceed the classes held."""
        if not 1 <= k <= self.num_classes:
            raise ValueError(f"{k} classes were asked for, but {self.source or 'the set'} has {self.num_classes}; "
                             f"choose 1..{self.num_classes}")
        out = self.subset(torch.nonzero((self.labels >= 0) & (self.labels < k)).flatten())
        out.classes = list(self.classes[:k])
        return out

    def __repr__(self) -> str:
        return (f"ImageSet({len(self)} images {tuple(self.images.shape[1:])}, "
                f"{self.num_classes} classes, source={self.source!r})")


# --------------------------------------------------------------------------- caches
def cache_dir() -> Path:
    from kdutils.core.profiles import REPO_ROOT

    return Path(os.environ.get("KD_CACHE_DIR", REPO_ROOT / "data" / "cache"))


def _fingerprint(files: Sequence[Path], extra: str) -> str:
    h = hashlib.sha1(extra.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- decoding
def decode_image(path: Path, size: Optional[tuple] = None) -> np.ndarray:
    """Decode one image file to (H, W, 3) uint8 RGB, resized to ``size`` = (H, W) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = _to_rgb(im)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(
            f"cannot read image {path}: {e}. Remove or replace the file (it is corrupt or "
            "not an image) and load again."
        ) from e


def _to_rgb(im):
    """A PIL image as 8-bit RGB. 16-bit greyscale (PNG ``I;16``, PGM with a maximum above
    255, read as ``I``) is scaled from 0..65535 to 0..255; PIL's own conversion would clip
    it and turn almost every pixel white."""
    from PIL import Image

    if im.mode == "I" or im.mode.startswith("I;16"):
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"integer pixel values {values.min()}..{values.max()} lie outside 16 bits")
        im = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")
    return im.convert("RGB")


def is_hidden(path: Path) -> bool:
    """Hidden files and folders (``.name``), including macOS's ``._name`` resource forks."""
    return Path(path).name.startswith(".")


def list_image_files(folder: Path) -> list:
    """The image files in ``folder`` (by extension), sorted; hidden files (``.x``, macOS's
    ``._x.png``) are skipped."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not is_hidden(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def check_same_classes(train: "ImageSet", test: "ImageSet") -> None:
    """Raise when a training and a test set name different classes (or the same in another
    order): label ``i`` must mean the same class in both. Sets without names pass."""
    if train.classes and test.classes and list(train.classes) != list(test.classes):
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        detail = (f"only in the training set: {only_train}; only in the test set: {only_test}"
                  if only_train or only_test else "the same names in another order")
        raise ValueError(
            f"the training set ({train.source}) and the test set ({test.source}) have different class lists "
            f"({detail}).\ntraining classes: {list(train.classes)}\ntest classes: {list(test.classes)}\n"
            "Rename the class folders so that both splits use the same names.")


def decode_files(files: Sequence[Path], size: Optional[tuple] = None, workers: int = 4) -> torch.Tensor:
    """Decode many files into one (N, H, W, 3) uint8 tensor, in a thread pool.

    Without ``size`` all images must have the same size, else a ``ValueError`` asks for one.
    """
    if not files:
        return torch.zeros(0, *(size or (1, 1)), 3, dtype=torch.uint8)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        arrays = list(pool.map(lambda f: decode_image(f, size), files))
    shapes = [a.shape for a in arrays]
    if len(set(shapes)) > 1:
        common = max(set(shapes), key=shapes.count)
        odd = [(f, a.shape) for f, a in zip(files, arrays) if a.shape != common]
        listed = "; ".join(f"{f} is {h}x{w}" for f, (h, w, _) in odd[:5]) + ("; ..." if len(odd) > 5 else "")
        raise ValueError(
            f"images differ in size: {len(files) - len(odd)} of {len(files)} are {common[0]}x{common[1]}, "
            f"but {listed}. Replace or resize those files, or resize every image while loading: "
            f"size=({common[0]}, {common[1]}) in load_image_folder / load_dataset (in a notebook: "
            f"setup.settings['image_size'] = ({common[0]}, {common[1]}) before the data is loaded)"
        )
    return torch.from_numpy(np.stack(arrays))


def load_image_folder(
    root,
    size: Optional[tuple] = None,
    classes: Optional[Sequence[str]] = None,
    expected_classes: Optional[int] = None,
    unlabeled: bool = False,
    use_cache: bool = True,
) -> ImageSet:
    """Load ``<root>/<class>/*.<ext>`` into memory (cached after the first decode).

    ``classes``: the class folders in label order (default: sorted folder names).
    ``expected_classes``: raise if the number of class folders differs.
    ``unlabeled``: every image gets label -1 (e.g. food-11's ``testing/00``).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} does not exist. Expected the layout <root>/<class>/*.png|jpg|pgm "
            "(see data/README.md), or set data_root / KD_DATA_ROOT to where the data lives."
        )
    if classes is None:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{root} holds no class folders; expected <root>/<class>/*.png|jpg|pgm")
    if expected_classes is not None and len(classes) != expected_classes:
        raise ValueError(
            f"{root} has {len(classes)} class folders but {expected_classes} classes were expected; "
            "check the data root or pass the right number of classes"
        )
    files, labels = [], []
    for i, c in enumerate(classes):
        cf = root / c
        if not cf.is_dir():
            raise FileNotFoundError(f"class folder {cf} is missing")
        fs = list_image_files(cf)
        if not fs and not unlabeled:
            raise ValueError(
                f"class folder {cf} holds no images ({', '.join(IMAGE_EXTENSIONS)}); an empty class would "
                "still get a label. Add its images, or remove the folder (or rename it to start with '.')")
        files += fs
        labels += [-1 if unlabeled else i] * len(fs)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")

    key = _fingerprint(files, f"{root.resolve()}|{size}|{list(classes)}|{unlabeled}")
    cpath = cache_dir() / f"folder-{root.name}-{key}.pt"
    if use_cache and cpath.exists():
        try:
            obj = torch.load(cpath, weights_only=True)
            return ImageSet(obj["images"], obj["labels"], list(classes), [str(f) for f in files], str(root))
        except Exception:  # a damaged cache is rebuilt, never trusted
            cpath.unlink(missing_ok=True)
    images = decode_files(files, size)
    labels_t = torch.tensor(labels, dtype=torch.long)
    if use_cache:
        atomic_torch_save({"images": images, "labels": labels_t}, cpath)
    return ImageSet(images, labels_t, list(classes), [str(f) for f in files], str(root))


# --------------------------------------------------------------------------- CIFAR
_CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", 10),
    "cifar100": ("CIFAR100", "cifar-100-python", 100),
}


#: The md5 sums of generated CIFAR pickles, written beside them by :func:`make_cifar_pickles`.
MD5_MANIFEST = "MD5SUMS.json"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unchecked(base):
    """torchvision's CIFAR class for generated pickles: the files are checked against the md5
    sums that :func:`make_cifar_pickles` recorded in ``MD5_MANIFEST`` instead of the official
    ones (a pickle can run code, so nothing is unpickled unchecked); parsing unchanged."""

    class Generated(base):
        def _check_integrity(self) -> bool:
            folder = Path(self.root) / self.base_folder
            if not folder.is_dir():
                return False
            manifest = folder / MD5_MANIFEST
            if not manifest.is_file():
                raise ValueError(
                    f"{folder} has no {MD5_MANIFEST}: check_md5=False loads only pickles written by "
                    "kdutils.core.data.make_cifar_pickles (which records their md5 sums). Load the official "
                    "files with check_md5=True, or generate the data again (delete the folder).")
            sums = json.loads(manifest.read_text())
            self.train_list = [[name, sums.get(name)] for name, _ in base.train_list]
            self.test_list = [[name, sums.get(name)] for name, _ in base.test_list]
            self.meta = dict(base.meta, md5=sums.get(base.meta["filename"]))
            for name, expected in self.train_list + self.test_list + [[base.meta["filename"], self.meta["md5"]]]:
                path = folder / name
                if not path.is_file() or expected is None or _md5(path) != expected:
                    raise ValueError(
                        f"generated CIFAR file {path} is missing or does not match its md5 sum in {manifest}; "
                        "it changed after it was written. Delete the folder to generate it again.")
            return True

    Generated.__name__ = f"Generated{base.__name__}"
    return Generated


def load_cifar(name: str, root, train: bool = True, download: bool = False, check_md5: bool = True) -> ImageSet:
    """CIFAR-10/100 through torchvision (its md5 check and pickle parsing).

    ``download=True`` first obtains a missing set with :func:`kdutils.core.datasets.obtain`
    (torchvision's URL and checksum, a progress bar, atomic extraction). ``files`` holds the
    image file names stored in the pickles (used by :meth:`ImageSet.per_class`).
    ``check_md5=False`` accepts files that are not the official ones (the synthetic pickles
    the tests write); everything else is torchvision's own code path.
    """
    import torchvision

    if name not in _CIFAR:
        raise ValueError(f"unknown CIFAR set {name!r}; choose 'cifar10' or 'cifar100'")
    from kdutils.core import datasets

    cls_name, folder, k = _CIFAR[name]
    base = getattr(torchvision.datasets, cls_name)
    root = Path(root)
    if download:
        datasets.obtain(name, root)  # checksummed download, atomic extraction (kdutils.core.datasets)
    if check_md5 and datasets.verified(root / folder) and (root / folder / MD5_MANIFEST).is_file():
        check_md5 = False  # a mirror's generated archive, verified at download: check its own md5 list
    if check_md5 and rehearsal.active() and (root / folder / MD5_MANIFEST).is_file():
        check_md5 = False  # a rehearsal's generated full-size set (kdutils.tools.rehearsal): its own md5 list
    cls = base if check_md5 else _unchecked(base)
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"{name} not found under {root} (expected {root / folder}). Get it with "
            f"`python -m kdutils.tools.data fetch --profile <quick|full>` (or `make data`), or point "
            f"data_root at a folder holding {folder}/ or {name}/{{train,test}}/<class>/*.png. ({e})"
        ) from e
    images = torch.from_numpy(np.ascontiguousarray(ds.data))
    labels = torch.tensor(ds.targets, dtype=torch.long)
    if len(ds.classes) != k:
        raise ValueError(f"{name} should have {k} classes, the files list {len(ds.classes)}")
    files = _cifar_file_names(root / folder, ds.train_list if train else ds.test_list, len(labels))
    return ImageSet(images, labels, list(ds.classes), files, f"torchvision:{root / folder}")


def _cifar_file_names(folder: Path, file_list, n: int) -> list:
    """The image file names stored in the CIFAR pickles (``filenames``), in torchvision's
    order; ``[]`` when the files do not carry them. Read after torchvision checked the files."""
    names: list = []
    for file_name, _ in file_list:
        with open(folder / file_name, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        got = entry.get("filenames")
        if got is None:
            return []
        names += [v.decode() if isinstance(v, bytes) else str(v) for v in got]
    return names if len(names) == n else []


def has_cifar(name: str, root) -> bool:
    """True when ``root`` holds CIFAR ``name`` as torchvision pickles or as an image tree."""
    from kdutils.core import datasets

    return datasets.find(name, root) is not None


#: The quick profile draws its CIFAR subsets from the first this-many images per class (by file
#: name) of each split, so that the full set (torchvision's pickles) and a sample tree holding
#: exactly those images give the same subset (:meth:`ImageSet.per_class`).
SUBSET_POOL = {"cifar10": {"train": 1000, "test": 200}, "cifar100": {"train": 100, "test": 20}}


def load_dataset(name: str, root, split: str = "train", download: bool = False, **kw) -> ImageSet:
    """CIFAR-10/100 from ``root``: torchvision's pickles if present, else the image-folder
    layout ``<root>/<name>/<split>/<class>/*.png``; ``download=True`` first obtains the set
    when neither is there (:func:`kdutils.core.datasets.obtain`)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    folder_tree = root / name / split
    check_md5 = kw.pop("check_md5", True)
    if name in _CIFAR and download:
        from kdutils.core import datasets

        datasets.obtain(name, root)  # nothing to fetch when the pickles or the image tree are there
    if name in _CIFAR and not (root / _CIFAR[name][1]).is_dir() and folder_tree.is_dir():
        return load_image_folder(folder_tree, expected_classes=_CIFAR[name][2], **kw)
    if name in _CIFAR:
        return load_cifar(name, root, train=(split == "train"), check_md5=check_md5)
    return load_image_folder(folder_tree, **kw)


# --------------------------------------------------------------------------- food-11
def load_food11(root, split: str, size: int = 142, use_cache: bool = True) -> ImageSet:
    """One split of the food-11 homework layout, resized to ``size`` x ``size``.

    ``split``: ``labeled`` (training/labeled), ``unlabeled`` (training/unlabeled),
    ``validation`` or ``testing`` (unlabelled). Labels of unlabelled splits are -1.
    """
    root = Path(root)
    where = {
        "labeled": root / "training" / "labeled",
        "unlabeled": root / "training" / "unlabeled",
        "validation": root / "validation",
        "testing": root / "testing",
    }
    if split not in where:
        raise ValueError(f"split must be one of {', '.join(where)}, got {split!r}")
    if not root.is_dir():
        raise FileNotFoundError(
            f"food-11 root {root} does not exist. Expected training/labeled/<cc>/*.jpg, "
            "training/unlabeled/00/*.jpg, validation/<cc>/*.jpg and testing/00/*.jpg "
            "(see data/README.md)"
        )
    unl = split in ("unlabeled", "testing")
    ds = load_image_folder(where[split], size=(size, size), unlabeled=unl, use_cache=use_cache)
    if not unl:
        names_file = root / "classes.txt"
        if names_file.exists():
            names = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
            if len(names) == ds.num_classes:
                ds.classes = names
    return ds


# --------------------------------------------------------------------------- synthetic data
def synthetic_images(n: int, num_classes: int, size=(32, 32), seed: int = 0, grey: bool = False):
    """Learnable synthetic images: each class has its own colour and stripe orientation,
    plus noise. Returns (uint8 (N, H, W, 3) numpy array, labels numpy array)."""
    labels = np.empty(n, dtype=np.int64)
    out = np.empty((n, *size, 3), dtype=np.uint8)
    for i, (img, c) in enumerate(synthetic_stream(n, num_classes, size, seed, grey)):
        out[i], labels[i] = img, c
    return out, labels


def synthetic_stream(n: int, num_classes: int, size=(32, 32), seed: int = 0, grey: bool = False):
    """The images of :func:`synthetic_images` one at a time (``(image, label)``, the same
    values), so that a large set is written without holding it in memory."""
    rng = np.random.default_rng(seed)
    h, w = size
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:h, 0:w]
    for c in labels:
        crng = np.random.default_rng(1000 + int(c))
        colour = crng.uniform(40, 215, size=3)
        angle = np.pi * c / max(num_classes, 1)
        freq = 2 * np.pi / (4 + (c % 5))
        stripes = 40 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
        img = colour[None, None, :] + stripes[..., None] + rng.normal(0, 20, size=(h, w, 3))
        if grey:
            img = img.mean(axis=2, keepdims=True).repeat(3, axis=2)
        yield np.clip(img, 0, 255).astype(np.uint8), c


def make_cifar_pickles(root, name: str = "cifar10", n_train: int = 100, n_test: int = 50, seed: int = 0,
                       num_classes: Optional[int] = None) -> Path:
    """Write a small synthetic CIFAR-10/100 in torchvision's pickle format (same files,
    keys and shapes as the official archive; the md5 sums differ, so load with
    ``check_md5=False``, which checks them against the sums recorded here in ``MD5SUMS.json``)."""
    if name not in _CIFAR:
        raise ValueError(f"unknown CIFAR set {name!r}")
    _, folder, k = _CIFAR[name]
    k_used = num_classes or k
    base = Path(root) / folder
    base.mkdir(parents=True, exist_ok=True)
    label_key = "labels" if name == "cifar10" else "fine_labels"

    def dump(fname, n, s):
        x, y = synthetic_images(n, k_used, seed=s)
        d = {"data": x.transpose(0, 3, 1, 2).reshape(n, -1), label_key: y.tolist(),
             "filenames": [f"img_{i}.png" for i in range(n)]}
        if name == "cifar100":
            d["coarse_labels"] = [int(v) // 5 for v in y]
        with open(base / fname, "wb") as f:
            pickle.dump(d, f)

    if name == "cifar10":
        per = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
        for i, n in enumerate(per):
            dump(f"data_batch_{i + 1}", n, seed + i)
        dump("test_batch", n_test, seed + 99)
        meta = {"label_names": [f"class{c}" for c in range(k)]}
        with open(base / "batches.meta", "wb") as f:
            pickle.dump(meta, f)
    else:
        dump("train", n_train, seed)
        dump("test", n_test, seed + 99)
        meta = {"fine_label_names": [f"class{c:02d}" for c in range(k)], "coarse_label_names": [f"super{c}" for c in range(20)]}
        with open(base / "meta", "wb") as f:
            pickle.dump(meta, f)
    sums = {p.name: _md5(p) for p in sorted(base.iterdir()) if p.is_file() and p.name != MD5_MANIFEST}
    atomic_write_json(base / MD5_MANIFEST, sums)
    return Path(root)


def make_image_tree(root, num_classes: int = 3, per_class: int = 4, size=(32, 32), fmt: str = "png",
                    grey: bool = False, vary_size: bool = False, seed: int = 0, class_names=None) -> Path:
    """Write ``<root>/<class>/<i>.<fmt>`` synthetic images (``vary_size`` gives each image a
    different size, as real photo sets have)."""
    from PIL import Image

    root = Path(root)
    names = class_names or [f"class{c:02d}" for c in range(num_classes)]
    rng = np.random.default_rng(seed)
    counts = {c: 0 for c in range(num_classes)}
    for img, c in synthetic_stream(num_classes * per_class, num_classes, size=size, seed=seed, grey=grey):
        d = root / names[c]
        d.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(img)
        if grey:
            im = im.convert("L")
        if vary_size:
            s = rng.uniform(0.7, 1.4, size=2)
            im = im.resize((max(8, int(size[1] * s[0])), max(8, int(size[0] * s[1]))))
        im.save(d / f"{counts[c] + 1}.{fmt}")
        counts[c] += 1
    return root


def make_food11_tree(root, num_classes: int = 11, per_class: int = 6, n_unlabeled: int = 12,
                     n_val_per_class: int = 3, n_test: int = 10, seed: int = 0, size=(48, 56),
                     splits=("labeled", "validation", "unlabeled", "testing")) -> Path:
    """A food-11 layout of JPEGs of varied sizes around ``size`` (classes ``00``, ``01``,
    ...); tiny by default. ``splits`` picks which of the four to write (e.g. one per process)."""
    root = Path(root)
    names = [f"{c:02d}" for c in range(num_classes)]
    if "labeled" in splits:
        make_image_tree(root / "training" / "labeled", num_classes, per_class, size, "jpg", vary_size=True,
                        seed=seed, class_names=names)
    if "validation" in splits:
        make_image_tree(root / "validation", num_classes, n_val_per_class, size, "jpg", vary_size=True,
                        seed=seed + 1, class_names=names)
    for sub, n, s in (("training/unlabeled", n_unlabeled, seed + 2), ("testing", n_test, seed + 3)):
        if sub.split("/")[-1] not in splits:
            continue
        tmp = root / f".tmp_{s}"
        make_image_tree(tmp, 1, n, size, "jpg", vary_size=True, seed=s, class_names=["00"])
        dest = root / sub / "00"
        dest.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(sorted((tmp / "00").iterdir(), key=lambda p: int(p.stem))):
            f.rename(dest / f"{i:04d}.jpg")
        (tmp / "00").rmdir()
        tmp.rmdir()
    return root


def smoke_root(kind: str) -> Path:
    """Generated data for the smoke profile (written once under ``runs/smoke-data``).

    ``kind``: ``cifar10`` / ``cifar100`` (torchvision pickles; load with ``check_md5=False``),
    ``food11`` (food-11 JPEG tree of varied sizes) or ``faces`` (greyscale PGM subjects).
    """
    from kdutils.core.profiles import runs_dir

    root = runs_dir() / "smoke-data" / kind
    done = root / ".complete"
    manifests = list(root.glob(f"*/{MD5_MANIFEST}")) if kind in _CIFAR else [done]
    if done.exists() and manifests:  # (CIFAR written before the md5 sums were recorded is written again)
        return root
    if kind in ("cifar10", "cifar100"):
        make_cifar_pickles(root, kind, n_train=400 if kind == "cifar10" else 500, n_test=200, seed=1,
                           num_classes=10)
    elif kind == "food11":
        make_food11_tree(root, num_classes=11, per_class=8, n_unlabeled=24, n_val_per_class=4, n_test=12)
    elif kind == "faces":
        make_image_tree(root, num_classes=6, per_class=10, size=(56, 46), fmt="pgm", grey=True, seed=3,
                        class_names=[f"s{i + 1}" for i in range(6)])
    else:
        raise ValueError(f"unknown smoke data kind {kind!r}; choose cifar10, cifar100, food11 or faces")
    done.touch()
    return root
