"""Obtaining the data sets: find each one under the data root, or download and lay it out.

Every data set a part reads has one entry in :data:`DATASETS`: the folder it lives in under
the data root (``data/`` or ``KD_DATA_ROOT``), other folders that count as the same data (a
sample tree, the course's own copy), and where to get it. :func:`obtain` returns the folder,
fetching it first when it is missing:

- the download shows a progress bar (tqdm), resumes an interrupted transfer (HTTP ``Range``)
  or restarts it when the server cannot resume, and verifies the checksum the source
  publishes; a file that fails the check is deleted and reported;
- the data are laid out in a hidden temporary folder beside the target and moved into place
  with one rename, so a half download or a half extraction never looks like data;
- the finished folder holds ``.kd-source.json`` (source, checksum, date); the archive is
  removed; the next call finds the folder and downloads nothing;
- offline or on any failure, :class:`DataUnavailable` names the data set, the folder it
  expected, the size and the exact command or URL to get it.

``KD_DATA_MIRROR=http://host:port/path`` fetches every file from ``<mirror>/<file name>``
instead of its source (a local mirror, or the tests' generated archives). A mirror may
publish ``checksums.json`` (``{"<file name>": "<algorithm>:<hex>"}``), which then replaces the
official checksums; without it the official ones apply.

The command line is ``python -m kdutils.tools.data fetch --profile quick|full``.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

MIRROR_ENV = "KD_DATA_MIRROR"
MARKER = ".kd-source.json"
DOWNLOADS = ".downloads"
#: Seconds without data before a download counts as failed.
TIMEOUT_S = 60
#: Tries per download (each later one resumes where the previous stopped).
ATTEMPTS = 3


class DataUnavailable(FileNotFoundError):
    """A data set is missing and could not be obtained; the message says how to get it."""


@dataclass(frozen=True)
class Remote:
    """One downloadable file and the checksum its source publishes."""

    filename: str
    url: str
    checksum: str  # "<algorithm>:<hex>", algorithm md5 | sha256 | gitsha1 (git's blob id)
    size: int  # bytes
    cite: str  # where the URL and checksum come from
    size_exact: bool = True


#: The files the data sets are built from. Each URL and checksum is the one named in ``cite``.
REMOTES = {
    # torchvision.datasets.CIFAR10.url / .tgz_md5 (torchvision 0.17-0.24); size from the server.
    "cifar10": Remote("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      "md5:c58f30108f718f92721af3b95e74349a", 170_498_071,
                      "torchvision.datasets.CIFAR10 (url, tgz_md5); https://www.cs.toronto.edu/~kriz/cifar.html"),
    # torchvision.datasets.CIFAR100.url / .tgz_md5.
    "cifar100": Remote("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                       "md5:eb9058c3a382ffc7106e4002c42a8d85", 169_001_437,
                       "torchvision.datasets.CIFAR100 (url, tgz_md5); https://www.cs.toronto.edu/~kriz/cifar.html"),
    # sklearn.datasets._olivetti_faces.FACES (scikit-learn 1.9), the file fetch_olivetti_faces reads.
    "olivetti": Remote("olivettifaces.mat", "https://ndownloader.figshare.com/files/5976027",
                       "sha256:b612fb967f2dc77c9c62d3e1266e0c73d5fca46a4b8906c18e454d41af987794", 4_000_000,
                       "scikit-learn sklearn/datasets/_olivetti_faces.py (FACES)", size_exact=False),
    # sklearn.datasets._lfw.FUNNELED_ARCHIVE (scikit-learn 1.9), what fetch_lfw_people downloads.
    "lfw": Remote("lfw-funneled.tgz", "https://ndownloader.figshare.com/files/5976015",
                  "sha256:b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a", 240_000_000,
                  "scikit-learn sklearn/datasets/_lfw.py (FUNNELED_ARCHIVE)", size_exact=False),
    # Food-101's pizza, steak and sushi classes, 20 % of their images, as published in the
    # repository of the "Zero to Mastery Learn PyTorch" course. The checksum is git's blob id of
    # data/pizza_steak_sushi_20_percent.zip at the pinned commit (`git ls-tree` of that commit).
    "food-pss": Remote(
        "pizza_steak_sushi_20_percent.zip",
        "https://raw.githubusercontent.com/mrdbourke/pytorch-deep-learning/"
        "baa27b691617461c173ecf3439793cd8cde74e13/data/pizza_steak_sushi_20_percent.zip",
        "gitsha1:dfc8ad2ae9415304d69cc6a0ee443c340cb29049", 30_000_000,
        "github.com/mrdbourke/pytorch-deep-learning @ baa27b6, git blob id of the file", size_exact=False),
}


@dataclass(frozen=True)
class DataSet:
    """A data set as the parts read it: its folder under the data root and how to obtain it."""

    key: str
    title: str
    folder: str
    remote: Optional[str]  # key of REMOTES; None: cannot be downloaded (see ``by_hand``)
    build: Optional[Callable[[Path, Path, "DataSet"], None]]  # (downloaded file, temporary parent, self)
    by_hand: str  # how to get it without this module
    also: tuple = ()  # other folders (relative to the data root) that hold the same data
    local_archive: str = ""  # an archive the user may place in the data root instead
    note: str = ""  # shown when the data set is used (e.g. how close a stand-in is)
    ready: tuple = field(default=())  # sub-paths that must exist inside the folder


def size_text(n: int, exact: bool = True) -> str:
    """``n`` bytes as a short human text (MB / GB, decimal units)."""
    text = f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"
    return text if exact else f"about {text}"


# --------------------------------------------------------------------------- checksums
def file_checksum(path: Path, algorithm: str) -> str:
    """The hex digest of ``path``: ``md5``, ``sha256`` or ``gitsha1`` (git's blob id)."""
    if algorithm == "gitsha1":
        h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    elif algorithm in ("md5", "sha256", "sha1"):
        h = hashlib.new(algorithm)
    else:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; use md5, sha256 or gitsha1")
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mirror() -> str:
    return os.environ.get(MIRROR_ENV, "").strip().rstrip("/")


def _mirror_checksums(mirror: str) -> dict:
    """``<mirror>/checksums.json`` when the mirror publishes one, else ``{}``."""
    try:
        with urllib.request.urlopen(f"{mirror}/checksums.json", timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read().decode())
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
        return {}


def source_of(remote: Remote) -> tuple:
    """(URL, checksum) to use: the source's, or the mirror's when ``KD_DATA_MIRROR`` is set."""
    mirror = _mirror()
    if not mirror:
        return remote.url, remote.checksum
    return f"{mirror}/{remote.filename}", _mirror_checksums(mirror).get(remote.filename, remote.checksum)


# --------------------------------------------------------------------------- download
def _stream(url: str, part: Path, remote: Remote) -> None:
    """Append the rest of ``url`` to ``part`` (resuming with ``Range``; restarting when the
    server answers with the whole file). Raises ``OSError`` or ``HTTPException`` on failure."""
    from tqdm.auto import tqdm

    start = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to fetch: the part file is complete
            return
        raise
    with resp:
        if start and resp.status != 206:
            start = 0  # the server ignored the range: start again from the first byte
        length = int(resp.headers.get("Content-Length") or 0)
        with open(part, "ab" if start else "wb") as f, tqdm(
                total=(start + length) or remote.size, initial=start, unit="B", unit_scale=True,
                desc=remote.filename, leave=False) as bar:
            got = 0
            for block in iter(lambda: resp.read(1 << 20), b""):
                f.write(block)
                got += len(block)
                bar.update(len(block))
    if length and got < length:
        raise http.client.IncompleteRead(b"", length - got)


def fetch_file(remote: Remote, folder: Path, url: Optional[str] = None, checksum: Optional[str] = None) -> Path:
    """Download ``remote`` into ``folder`` (resuming, with a progress bar) and verify it
    against ``checksum`` (default: :func:`source_of`, which also gives the URL).

    Returns the verified file. A file whose checksum differs is deleted and
    :class:`DataUnavailable` raised; so is a transfer that failed :data:`ATTEMPTS` times
    (its partial file is kept, and the next call resumes it).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if url is None or checksum is None:
        url, checksum = source_of(remote)
    algorithm, expected = checksum.split(":", 1)
    final, part = folder / remote.filename, folder / f"{remote.filename}.part"
    if final.exists() and file_checksum(final, algorithm) == expected:
        return final
    final.unlink(missing_ok=True)
    error: Optional[BaseException] = None
    for attempt in range(ATTEMPTS):
        before = part.stat().st_size if part.exists() else 0
        try:
            _stream(url, part, remote)
            error = None
            break
        except (OSError, http.client.HTTPException) as e:
            error = e
            if not part.exists() or part.stat().st_size <= before:
                break  # no byte arrived (offline, refused, 404): trying again would not help
            time.sleep(0.2 * (attempt + 1))  # cut off mid-way: resume from what arrived
    if error is not None:
        raise DataUnavailable(f"downloading {url} failed ({type(error).__name__}: {error})") from error
    got = file_checksum(part, algorithm)
    if got != expected:
        size = part.stat().st_size
        part.unlink()
        raise DataUnavailable(
            f"{remote.filename} from {url} failed its {algorithm} check (expected {expected}, got {got}, "
            f"{size} bytes); the file was deleted. Run the command again; if it fails again the source "
            "or the mirror serves a different file")
    os.replace(part, final)
    return final


# --------------------------------------------------------------------------- extraction
def extract(archive: Path, into: Path) -> None:
    """Extract a .tar(.gz) or .zip into ``into``, refusing members that leave it."""
    into = into.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            _check_members(names, into, archive)
            z.extractall(into)
        return
    with tarfile.open(archive) as t:
        members = t.getmembers()
        _check_members([m.name for m in members], into, archive)
        bad = [m.name for m in members if m.issym() or m.islnk() or m.isdev()]
        if bad:
            raise DataUnavailable(f"{archive} holds links or devices ({bad[:3]}); refusing to extract it")
        t.extractall(into)


def _check_members(names, into: Path, archive: Path) -> None:
    for name in names:
        target = (into / name).resolve()
        if target != into and into not in target.parents:
            raise DataUnavailable(f"{archive} holds {name!r}, which would land outside {into}; refusing it")


def _remove_stale_temporaries(root: Path, key: str) -> None:
    """Remove ``.tmp-<key>-<pid>`` folders of processes that no longer run."""
    for tmp in root.glob(f".tmp-{key}-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        alive = False
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- builders
def _build_cifar(archive: Path, tmp: Path, ds: DataSet) -> None:
    """The CIFAR archive holds exactly torchvision's folder (``cifar-10-batches-py/``)."""
    extract(archive, tmp)
    if not (tmp / ds.folder).is_dir():
        found = sorted(p.name for p in tmp.iterdir())
        raise DataUnavailable(f"{archive.name} has no {ds.folder}/ folder (it holds {found})")


def _build_olivetti(mat_file: Path, tmp: Path, ds: DataSet) -> None:
    """Olivetti's ``.mat`` -> ``s1..s40/1..10.png`` (64x64 greyscale), read as scikit-learn's
    ``fetch_olivetti_faces`` reads it: ``faces`` is (4096, 400), each column a 64x64 image
    stored column by column; image ``i`` belongs to subject ``i // 10``."""
    import numpy as np
    from PIL import Image
    from scipy.io import loadmat

    faces = np.asarray(loadmat(str(mat_file))["faces"], dtype=np.float64).T
    if faces.shape != (400, 4096):
        raise DataUnavailable(f"{mat_file.name}: 'faces' should be 4096 x 400, got {faces.T.shape}")
    faces = faces.reshape(400, 64, 64).transpose(0, 2, 1)
    faces = np.round(255 * (faces - faces.min()) / max(faces.max() - faces.min(), 1e-12)).astype(np.uint8)
    for i, img in enumerate(faces):
        subject = tmp / ds.folder / f"s{i // 10 + 1}"
        subject.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(subject / f"{i % 10 + 1}.png")


#: LFW stand-in for the course's face set: people with at least this many images, this many each.
LFW_IMAGES_PER_SUBJECT = 50
#: scikit-learn's default face window of the 250x250 funneled LFW images (``fetch_lfw_people``'s
#: ``slice_=(slice(70, 195), slice(78, 172))``): rows 70-195, columns 78-172.
LFW_FACE_BOX = (78, 70, 172, 195)


def _build_lfw(archive: Path, tmp: Path, ds: DataSet) -> None:
    """LFW (funneled) -> ``<person>/<k>.jpg`` for every person with at least
    :data:`LFW_IMAGES_PER_SUBJECT` images, the first that many by file name, cropped to the face."""
    from PIL import Image

    raw = tmp / "raw"
    extract(archive, raw)
    people = [p for p in sorted(raw.glob("*/*")) if p.is_dir()]
    kept = 0
    for person in people:
        files = sorted(f for f in person.iterdir() if f.suffix.lower() == ".jpg")
        if len(files) < LFW_IMAGES_PER_SUBJECT:
            continue
        out = tmp / ds.folder / person.name
        out.mkdir(parents=True)
        for k, f in enumerate(files[:LFW_IMAGES_PER_SUBJECT]):
            with Image.open(f) as im:
                im.convert("RGB").crop(LFW_FACE_BOX).save(out / f"{k + 1}.jpg", quality=95)
        kept += 1
    shutil.rmtree(raw)
    if not kept:
        raise DataUnavailable(f"{archive.name} holds nobody with {LFW_IMAGES_PER_SUBJECT} images")


def _split_key(path: Path) -> str:
    """A fixed pseudo-random order of files that depends on their names only."""
    return hashlib.sha1(path.name.encode()).hexdigest()


def _build_food_sample(archive: Path, tmp: Path, ds: DataSet) -> None:
    """``train/<class>/*.jpg`` + ``test/<class>/*.jpg`` -> the food-11 layout: per class, 2/3 of
    the training images labelled, 1/3 unlabelled; half the test images validation, half testing
    (order fixed by the file names)."""
    raw = tmp / "raw"
    extract(archive, raw)
    train = next((p for p in [raw / "train", *raw.glob("*/train")] if p.is_dir()), None)
    test = next((p for p in [raw / "test", *raw.glob("*/test")] if p.is_dir()), None)
    if train is None or test is None:
        raise DataUnavailable(f"{archive.name} has no train/<class>/ and test/<class>/ folders")
    classes = sorted(p.name for p in train.iterdir() if p.is_dir())
    out = tmp / ds.folder
    counters = {"training/unlabeled/00": 0, "testing/00": 0}

    def put(f: Path, where: str) -> None:
        dest = out / where
        dest.mkdir(parents=True, exist_ok=True)
        if where in counters:  # unlabelled images get neutral names (their class is hidden)
            counters[where] += 1
            os.replace(f, dest / f"{counters[where]:04d}{f.suffix.lower()}")
        else:
            os.replace(f, dest / f.name)

    for c, name in enumerate(classes):
        tr = sorted(train.joinpath(name).iterdir(), key=_split_key)
        te = sorted(test.joinpath(name).iterdir(), key=_split_key)
        n_lab, n_val = round(len(tr) * 2 / 3), len(te) // 2
        for i, f in enumerate(tr):
            put(f, f"training/labeled/{c:02d}" if i < n_lab else "training/unlabeled/00")
        for i, f in enumerate(te):
            put(f, f"validation/{c:02d}" if i < n_val else "testing/00")
    (out / "classes.txt").write_text("\n".join(classes) + "\n")
    shutil.rmtree(raw)


def _build_food11_course(archive: Path, tmp: Path, ds: DataSet) -> None:
    """The course's ``food-11.zip`` unpacks to ``food-11/`` (no checksum is published, so the
    layout is what is checked)."""
    extract(archive, tmp)
    missing = [r for r in ds.ready if not (tmp / ds.folder / r).is_dir()]
    if missing:
        raise DataUnavailable(f"{archive} does not unpack to the food-11 layout: {ds.folder}/{missing} missing")


FOOD11_BY_HAND = (
    "The course's food-11 archive (ML2021 homework 3/13, 'food-11.zip', about 1.1 GB; no checksum is "
    "published): `pip install gdown && gdown --id 1awF7pZ9Dz7X1jn1_QAiKN-_v56veCEKy --output food-11.zip` "
    "or https://www.dropbox.com/s/m9q6273jl3djall/food-11.zip?dl=1 ; put food-11.zip in the data root "
    "(it is unpacked for you) or unzip it there so that food-11/training/labeled/00/ exists")
FOOD_LAYOUT = ("training/labeled", "training/unlabeled", "validation", "testing")

DATASETS = {
    "cifar10": DataSet("cifar10", "CIFAR-10", "cifar-10-batches-py", "cifar10", _build_cifar,
                       "or download the archive from that URL and unpack it in the data root",
                       also=("cifar10/train",)),
    "cifar100": DataSet("cifar100", "CIFAR-100", "cifar-100-python", "cifar100", _build_cifar,
                        "or download the archive from that URL and unpack it in the data root",
                        also=("cifar100/train",)),
    "faces-orl": DataSet("faces-orl", "ORL/AT&T faces (Olivetti, 40 subjects x 10)", "faces-orl", "olivetti",
                         _build_olivetti, "or any <subject>/* image tree of the ORL faces in faces-orl/",
                         note="Olivetti copy of the ORL faces: 40 subjects x 10 images, 64x64 greyscale"),
    "faces": DataSet("faces", "faces (course set; stand-in: LFW people with >= 50 images)", "faces", "lfw",
                     _build_lfw, "or put the course's face set (<subject>/*, 100 subjects x 50 images) in faces/",
                     note=("LFW stand-in for the course's 100 subjects x 50 images: every LFW person with at "
                           f"least {LFW_IMAGES_PER_SUBJECT} images (12 people), {LFW_IMAGES_PER_SUBJECT} "
                           "images each, face window 125x94 RGB")),
    "food-quick": DataSet("food-quick", "food sample (Food-101 pizza/steak/sushi, food-11 layout)",
                          "food-pizza-steak-sushi", "food-pss", _build_food_sample,
                          "or the course's food-11 archive (see the full profile)",
                          also=("food10", "food-11", "food11"), ready=FOOD_LAYOUT,
                          note=("quick food stand-in: 3 Food-101 classes (pizza, steak, sushi), about 100 "
                                "labelled + 50 unlabelled training and 25 + 25 validation/testing images "
                                "per class; the course's food-11 is used instead when it is present")),
    "food-11": DataSet("food-11", "food-11 (the course's archive)", "food-11", None, _build_food11_course,
                       FOOD11_BY_HAND, also=("food11",), local_archive="food-11.zip", ready=FOOD_LAYOUT),
}
#: Which data set a folder name under the data root belongs to.
BY_FOLDER = {ds.folder: key for key, ds in DATASETS.items()}


# --------------------------------------------------------------------------- finding and obtaining
def find(key: str, root) -> Optional[Path]:
    """The folder of data set ``key`` under ``root`` if it is there (its own folder first,
    then the alternatives), else ``None``. For CIFAR it is ``root`` (the loaders take the root)."""
    ds, root = DATASETS[key], Path(root)
    for rel in (ds.folder, *ds.also):
        where = root / rel
        if where.is_dir() and all((where / r).is_dir() for r in ds.ready):
            return root if key in ("cifar10", "cifar100") else where
    return None


def describe_missing(key: str, root, reason: str = "") -> str:
    """The message for a data set that is not there: what, where, how big, how to get it."""
    ds, root = DATASETS[key], Path(root)
    lines = [f"{ds.title} is missing: expected {root / ds.folder}" + (f" ({reason})" if reason else "") + "."]
    if ds.remote:
        r = REMOTES[ds.remote]
        lines.append(f"Download: {size_text(r.size, r.size_exact)} from {r.url} ({r.checksum}).")
        lines.append("Get it with:  python -m kdutils.tools.data fetch --profile <quick|full>  (or `make data`),")
        lines.append(f"  {ds.by_hand}.")
    else:
        lines.append(f"It cannot be downloaded automatically. {ds.by_hand}.")
    lines.append("Or point data_root / KD_DATA_ROOT at a folder that holds it.")
    return "\n".join(lines)


def obtain(key: str, root, download: bool = True) -> Path:
    """The folder of data set ``key`` under ``root``, obtained first when it is missing.

    Raises :class:`DataUnavailable` (with :func:`describe_missing`'s message) when it is
    missing and cannot be obtained. ``download=False`` only looks.
    """
    if key not in DATASETS:
        raise ValueError(f"unknown data set {key!r}; known: {', '.join(DATASETS)}")
    ds, root = DATASETS[key], Path(root)
    found = find(key, root)
    if found is not None:
        return found
    archive = root / ds.local_archive if ds.local_archive else None
    if not download and not (archive and archive.is_file()):
        raise DataUnavailable(describe_missing(key, root, "not downloaded"))
    if ds.remote is None and not (archive and archive.is_file()):
        raise DataUnavailable(describe_missing(key, root))
    try:
        if archive is None or not archive.is_file():
            remote = REMOTES[ds.remote]
            url, checksum = source_of(remote)
            print(f"{ds.title}: downloading {size_text(remote.size, remote.size_exact)} from {url} "
                  f"into {root / ds.folder}")
            archive = fetch_file(remote, root / DOWNLOADS, url, checksum)
            _lay_out(ds, archive, root, {"source": url, "checksum": checksum})
            archive.unlink(missing_ok=True)
            if not any(archive.parent.iterdir()):
                archive.parent.rmdir()
        else:
            _lay_out(ds, archive, root, {"source": str(archive), "checksum": "none published"})
    except DataUnavailable as e:
        raise DataUnavailable(describe_missing(key, root, str(e))) from None
    if ds.note:
        print(f"{ds.title}: {ds.note}")
    return find(key, root) or root / ds.folder


def _lay_out(ds: DataSet, archive: Path, root: Path, provenance: dict) -> None:
    """Build ``ds`` from ``archive`` in a hidden temporary folder, then rename it into place."""
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root, ds.key)
    tmp = root / f".tmp-{ds.key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        ds.build(archive, tmp, ds)
        made = tmp / ds.folder
        provenance.update(data_set=ds.title, file=archive.name, note=ds.note,
                          written=time.strftime("%Y-%m-%d %H:%M:%S"))
        (made / MARKER).write_text(json.dumps(provenance, indent=1) + "\n")
        os.replace(made, root / ds.folder)
    except DataUnavailable:
        raise
    except Exception as e:  # a damaged archive: report it, leave nothing behind
        raise DataUnavailable(f"could not unpack {archive.name}: {type(e).__name__}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def note_of(folder) -> str:
    """What a stand-in folder laid out by :func:`obtain` is (its note), or ``""``."""
    try:
        return json.loads((Path(folder) / MARKER).read_text()).get("note", "")
    except (OSError, ValueError):
        return ""


def verified(folder) -> bool:
    """True when ``folder`` was laid out by :func:`obtain` from a checksum-verified download."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("checksum", "none published") != "none published"
    except (OSError, ValueError):
        return False


def plan(keys, root) -> list:
    """One row per data set: key, title, folder, present (path or None), bytes to download."""
    rows = []
    for key in dict.fromkeys(keys):
        ds = DATASETS[key]
        found = find(key, root)
        remote = REMOTES.get(ds.remote) if ds.remote else None
        size = 0 if found is not None or remote is None else remote.size
        rows.append(dict(key=key, title=ds.title, folder=str(Path(root) / ds.folder), present=found,
                         bytes=size, exact=remote.size_exact if remote else True,
                         downloadable=remote is not None or bool(ds.local_archive and (Path(root) / ds.local_archive).is_file())))
    return rows
