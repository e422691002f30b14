"""Generated archives in the real formats, served from 127.0.0.1: a stand-in for the data
sources that the tests (and an end-to-end check without internet) point ``KD_DATA_MIRROR`` at.

The files carry the names the fetchers ask for (``kdutils.core.datasets.REMOTES``), in the
same formats as the originals: CIFAR-10/100 tarballs of torchvision's pickles, Olivetti's
``.mat``, a funneled-LFW tarball, the pizza/steak/sushi zip (``train/`` + ``test/``) and the
course's ``food-11.zip``. ``checksums.json`` gives their sha256 (the mirror's own sums, which
replace the official ones). The images are synthetic (``kdutils.core.data.synthetic_images``).

Command line::

    python tests/fake_mirror.py make --root /tmp/mirror            # quick-sized archives (--scale small|tiny)
    python tests/fake_mirror.py serve --root /tmp/mirror --port 8765 [--make]
    KD_NO_SHARED=1 KD_DATA_MIRROR=http://127.0.0.1:8765 make data PROFILE=quick
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tarfile
import tempfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from kdutils.core import data as D
from kdutils.core.datasets import REMOTES

#: Images per class of the generated CIFAR archives: (train, test). "quick" holds the largest
#: per-class subsets the quick profile draws (1000/200 for CIFAR-10, 100/20 for CIFAR-100).
#: "small": enough images for every quick-profile batch (CIFAR-10: part 3's teacher takes 500 per class and
#: part 4 validates on 50 more it never saw) at a fraction of quick's training work
#: (an end-to-end check of ``make data && make figures`` on a fresh clone, in minutes).
SIZES = {"quick": {"cifar10": (1000, 200), "cifar100": (100, 20)},
         "small": {"cifar10": (600, 20), "cifar100": (30, 10)},
         "tiny": {"cifar10": (6, 3), "cifar100": (2, 1)}}
#: LFW people and their image counts. "quick": two people reach the real threshold of 50
#: (kdutils.core.datasets.LFW_IMAGES_PER_SUBJECT); "tiny" is for tests that lower it to 3.
LFW_PEOPLE = {"quick": {"Ada_Lovelace": 52, "Alan_Turing": 50, "Grace_Hopper": 3},
              "small": {"Ada_Lovelace": 52, "Alan_Turing": 50, "Grace_Hopper": 3},
              "tiny": {"Ada_Lovelace": 4, "Alan_Turing": 3, "Grace_Hopper": 1}}
#: Training and test images per class of the food sample (the real file has about 150 / 50).
FOOD_SAMPLE = {"quick": (150, 50), "small": (60, 15), "tiny": (6, 4)}


def _tar_gz(dest: Path, folder: Path, arcname: str) -> None:
    with tarfile.open(dest, "w:gz", compresslevel=1) as t:
        t.add(folder, arcname=arcname)


def make_cifar_archive(dest_dir: Path, name: str, per_class_train: int, per_class_test: int) -> Path:
    """``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` holding torchvision's folder."""
    k = 10 if name == "cifar10" else 100
    with tempfile.TemporaryDirectory() as tmp:
        D.make_cifar_pickles(tmp, name, n_train=per_class_train * k, n_test=per_class_test * k, seed=5)
        folder = D._CIFAR[name][1]
        dest = Path(dest_dir) / REMOTES[name].filename
        _tar_gz(dest, Path(tmp) / folder, folder)
    return dest


def make_olivetti_mat(dest_dir: Path) -> Path:
    """``olivettifaces.mat``: ``faces`` (4096, 400), one 64x64 image per column, stored column
    by column, 10 consecutive images per subject (the layout scikit-learn reads)."""
    from scipy.io import savemat

    x, _ = D.synthetic_images(400, 40, size=(64, 64), seed=7, grey=True)
    labels = np.arange(400) // 10
    faces = np.empty((400, 64, 64), dtype=np.uint8)
    for i, c in enumerate(labels):  # subject c: a stripe pattern of its own, plus noise
        faces[i] = np.clip(x[i, :, :, 0].astype(int) // 2 + 8 * c, 0, 255)
    dest = Path(dest_dir) / REMOTES["olivetti"].filename
    savemat(dest, {"faces": faces.transpose(0, 2, 1).reshape(400, 4096).T})
    return dest


def make_lfw_archive(dest_dir: Path, people: dict) -> Path:
    """``lfw-funneled.tgz``: ``lfw_funneled/<Name>/<Name>_<k>.jpg``, 250x250 RGB; ``people``
    maps names to image counts."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "lfw_funneled"
        for p, (person, n) in enumerate(sorted(people.items())):
            (root / person).mkdir(parents=True)
            x, _ = D.synthetic_images(n, len(people), size=(250, 250), seed=20 + p)
            for i in range(n):
                Image.fromarray(x[i]).save(root / person / f"{person}_{i + 1:04d}.jpg", quality=80)
        dest = Path(dest_dir) / REMOTES["lfw"].filename
        _tar_gz(dest, root, "lfw_funneled")
    return dest


def make_food_sample_zip(dest_dir: Path, train_per_class: int = 15, test_per_class: int = 6) -> Path:
    """``pizza_steak_sushi_20_percent.zip``: ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``."""
    with tempfile.TemporaryDirectory() as tmp:
        names = ["pizza", "steak", "sushi"]
        for split, n, seed in (("train", train_per_class, 30), ("test", test_per_class, 31)):
            D.make_image_tree(Path(tmp) / split, 3, n, (64, 80), "jpg", vary_size=True, seed=seed, class_names=names)
        dest = Path(dest_dir) / REMOTES["food-pss"].filename
        _zip_folder(dest, Path(tmp))
    return dest


def make_food11_zip(dest_dir: Path) -> Path:
    """The course's ``food-11.zip``: ``food-11/{training/labeled,training/unlabeled,validation,testing}``."""
    with tempfile.TemporaryDirectory() as tmp:
        D.make_food11_tree(Path(tmp) / "food-11", num_classes=11, per_class=4, n_unlabeled=8, n_val_per_class=2,
                           n_test=6)
        dest = Path(dest_dir) / "food-11.zip"
        _zip_folder(dest, Path(tmp))
    return dest


def _zip_folder(dest: Path, folder: Path) -> None:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder).as_posix())


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_mirror(root, scale: str = "quick") -> Path:
    """Write every archive the fetchers ask for into ``root`` plus ``checksums.json``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = [make_cifar_archive(root, name, *SIZES[scale][name]) for name in ("cifar10", "cifar100")]
    files += [make_olivetti_mat(root),
              make_lfw_archive(root, LFW_PEOPLE[scale]),
              make_food_sample_zip(root, *FOOD_SAMPLE[scale]), make_food11_zip(root)]
    (root / "checksums.json").write_text(json.dumps({f.name: f"sha256:{sha256(f)}" for f in files}, indent=1))
    return root


# --------------------------------------------------------------------------- server
class MirrorHandler(SimpleHTTPRequestHandler):
    """Serves a folder with HTTP ``Range`` support. Test switches (class attributes of a
    subclass): ``drop_after`` cuts the first response of each file after that many bytes;
    ``ignore_range`` answers every request with the whole file; ``log`` records requests."""

    drop_after = None
    ignore_range = False
    log: list = []
    dropped: set = set()

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = Path(self.translate_path(self.path))
        self.log.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404, "not on this mirror")
            return
        body = path.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and not self.ignore_range and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(body):
                self.send_error(416, "range not satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if self.drop_after is not None and self.path not in self.dropped:
            self.dropped.add(self.path)
            self.wfile.write(payload[: self.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)


def start_server(root, port: int = 0, handler=MirrorHandler):
    """Serve ``root`` on 127.0.0.1 in a daemon thread; returns (server, base URL)."""
    root = str(Path(root).resolve())

    class Handler(handler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=root, **kw)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("make", "serve"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, help="folder of the archives")
        p.add_argument("--scale", choices=sorted(SIZES), default="quick")
        if name == "serve":
            p.add_argument("--port", type=int, default=8765)
            p.add_argument("--make", action="store_true", help="write the archives first")
    args = ap.parse_args(argv)
    if args.command == "make" or args.make:
        make_mirror(args.root, args.scale)
        print(f"archives written to {args.root}")
    if args.command == "serve":
        server, url = start_server(args.root, args.port)
        print(f"serving {args.root} at {url}  (KD_DATA_MIRROR={url}); Ctrl-C stops", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
