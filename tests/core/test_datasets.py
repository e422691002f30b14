"""kdutils.core.datasets against generated archives served from 127.0.0.1 (no internet)."""
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdutils.core import data as D
from kdutils.core import datasets as DS
from tests import fake_mirror as FM


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """One folder of tiny archives in the real formats (generated once for the module)."""
    root = tmp_path_factory.mktemp("mirror")
    files = [FM.make_cifar_archive(root, "cifar10", 6, 3), FM.make_olivetti_mat(root),
             FM.make_lfw_archive(root, FM.LFW_PEOPLE["tiny"]), FM.make_food_sample_zip(root, 6, 4),
             FM.make_food11_zip(root)]
    sums = {f.name: f"sha256:{FM.sha256(f)}" for f in files}
    (root / "checksums.json").write_text(json.dumps(sums))
    return root


def serve(monkeypatch, root, **switches):
    """Serve ``root`` (handler switches: drop_after, ignore_range) and point the fetchers at it."""
    handler = type("Handler", (FM.MirrorHandler,), dict(switches, log=[], dropped=set()))
    server, url = FM.start_server(root, handler=handler)
    monkeypatch.setenv(DS.MIRROR_ENV, url)
    return server, handler.log


def leftovers(root):
    """Hidden temporary folders and partial files under ``root`` (must be none after a call)."""
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-") or p.name.endswith(".part")]


def test_download_verifies_extracts_and_loads(archives, tmp_path, monkeypatch):
    server, log = serve(monkeypatch, archives)
    try:
        assert DS.obtain("cifar10", tmp_path) == tmp_path
    finally:
        server.shutdown()
    folder = tmp_path / "cifar-10-batches-py"
    assert DS.verified(folder) and json.loads((folder / DS.MARKER).read_text())["source"].endswith(".tar.gz")
    assert not leftovers(tmp_path) and not (tmp_path / DS.DOWNLOADS).exists()  # archive removed after use
    train = D.load_dataset("cifar10", tmp_path, "train")  # the mirror's own md5 list is checked
    assert len(train) == 60 and train.num_classes == 10 and len(train.files) == 60
    assert [p for p, _ in log] == ["/checksums.json", "/cifar-10-python.tar.gz"]


def test_second_call_is_a_cache_hit(archives, tmp_path, monkeypatch):
    server, log = serve(monkeypatch, archives)
    try:
        first = DS.obtain("faces-orl", tmp_path)
        n_requests = len(log)
        again = DS.obtain("faces-orl", tmp_path)
    finally:
        server.shutdown()
    assert first == again == tmp_path / "faces-orl" and len(log) == n_requests
    assert DS.plan(["faces-orl"], tmp_path)[0]["bytes"] == 0


def test_corrupt_download_is_rejected_and_nothing_is_left(archives, tmp_path, monkeypatch):
    bad = tmp_path / "mirror"
    bad.mkdir()
    (bad / "cifar-10-python.tar.gz").write_bytes((archives / "cifar-10-python.tar.gz").read_bytes()[:-10] + b"0" * 10)
    (bad / "checksums.json").write_text((archives / "checksums.json").read_text())
    server, _ = serve(monkeypatch, bad)
    data_root = tmp_path / "data"
    try:
        with pytest.raises(DS.DataUnavailable) as err:
            DS.obtain("cifar10", data_root)
    finally:
        server.shutdown()
    text = str(err.value)
    assert "CIFAR-10" in text and "failed its sha256 check" in text and "deleted" in text
    assert str(data_root / "cifar-10-batches-py") in text and "170.5 MB" in text
    assert not (data_root / "cifar-10-batches-py").exists() and not leftovers(data_root)
    assert not list((data_root / DS.DOWNLOADS).iterdir())


def test_interrupted_download_resumes_with_a_range_request(archives, tmp_path, monkeypatch):
    server, log = serve(monkeypatch, archives, drop_after=1000)  # the first response stops after 1000 bytes
    try:
        path = DS.obtain("food-quick", tmp_path)
    finally:
        server.shutdown()
    ranges = [r for p, r in log if p.endswith(".zip")]
    assert ranges == [None, "bytes=1000-"]
    assert (path / "training" / "labeled" / "00").is_dir() and not leftovers(tmp_path)


def test_a_server_that_cannot_resume_restarts_cleanly(archives, tmp_path, monkeypatch):
    partial = tmp_path / DS.DOWNLOADS / "olivettifaces.mat.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"garbage from an earlier, different file")
    server, log = serve(monkeypatch, archives, ignore_range=True)
    try:
        DS.obtain("faces-orl", tmp_path)
    finally:
        server.shutdown()
    assert [r for p, r in log if p.endswith(".mat")] == ["bytes=39-"]  # asked to resume, got the whole file
    assert len(list((tmp_path / "faces-orl").glob("s*/*.png"))) == 400 and not leftovers(tmp_path)


def test_offline_message_names_data_set_folder_size_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv(DS.MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(FileNotFoundError) as err:
        DS.obtain("cifar100", tmp_path)
    text = str(err.value)
    for part in ("CIFAR-100", str(tmp_path / "cifar-100-python"), "169.0 MB",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "python -m kdutils.tools.data fetch"):
        assert part in text
    assert "Traceback" not in text and not (tmp_path / "cifar-100-python").exists()


def test_olivetti_images_are_read_as_scikit_learn_reads_them(tmp_path, monkeypatch):
    from scipy.io import savemat

    faces = np.zeros((400, 64, 64), dtype=np.uint8)
    faces[:, :, :32] = 200  # left half bright: a transposed reading would brighten the top half
    faces[np.arange(400), 0, 0] = np.arange(400) % 10  # image index within the subject
    mirror = tmp_path / "m"
    mirror.mkdir()
    savemat(mirror / "olivettifaces.mat", {"faces": faces.transpose(0, 2, 1).reshape(400, 4096).T})
    (mirror / "checksums.json").write_text(json.dumps({"olivettifaces.mat": f"sha256:{FM.sha256(mirror / 'olivettifaces.mat')}"}))
    server, _ = serve(monkeypatch, mirror)
    try:
        root = DS.obtain("faces-orl", tmp_path / "data")
    finally:
        server.shutdown()
    img = np.asarray(Image.open(root / "s40" / "3.png"))
    assert img.shape == (64, 64) and img[1:, :32].min() == 255 and img[:, 32:].max() == 0
    assert img[0, 0] == round(2 * 255 / 200)  # s40/3.png is the subject's third image (index 2)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(f"s{i}" for i in range(1, 41))


def test_lfw_stand_in_keeps_people_with_enough_images(archives, tmp_path, monkeypatch):
    monkeypatch.setattr(DS, "LFW_IMAGES_PER_SUBJECT", 3)
    server, _ = serve(monkeypatch, archives)
    try:
        root = DS.obtain("faces", tmp_path)
    finally:
        server.shutdown()
    people = {p.name: len(list(p.glob("*.jpg"))) for p in root.iterdir() if p.is_dir()}
    assert people == {"Ada_Lovelace": 3, "Alan_Turing": 3}
    assert Image.open(root / "Ada_Lovelace" / "1.jpg").size == (94, 125)  # scikit-learn's face window
    assert "LFW stand-in" in DS.note_of(root) and "12 people" in DS.note_of(root)


def test_food_sample_is_laid_out_like_food11(archives, tmp_path, monkeypatch):
    server, _ = serve(monkeypatch, archives)
    try:
        root = DS.obtain("food-quick", tmp_path)
    finally:
        server.shutdown()
    assert root == tmp_path / "food-pizza-steak-sushi"
    assert (root / "classes.txt").read_text().split() == ["pizza", "steak", "sushi"]
    labeled, val = D.load_food11(root, "labeled", 32), D.load_food11(root, "validation", 32)
    assert labeled.classes == ["pizza", "steak", "sushi"] and len(labeled) == 12 and len(val) == 6
    assert len(D.load_food11(root, "unlabeled", 32)) == 6 and len(D.load_food11(root, "testing", 32)) == 6


def test_present_data_wins_over_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv(DS.MIRROR_ENV, "http://127.0.0.1:9")
    D.make_food11_tree(tmp_path / "food-11", num_classes=3, per_class=2, n_unlabeled=2, n_val_per_class=1, n_test=2)
    assert DS.obtain("food-quick", tmp_path) == tmp_path / "food-11"  # the course's tree, nothing fetched
    assert DS.obtain("food-11", tmp_path) == tmp_path / "food-11"
    D.make_image_tree(tmp_path / "cifar10" / "train", 10, 1)
    assert DS.find("cifar10", tmp_path) == tmp_path and D.has_cifar("cifar10", tmp_path)


def test_course_food11_zip_in_the_data_root_is_unpacked(archives, tmp_path, monkeypatch):
    monkeypatch.setenv(DS.MIRROR_ENV, "http://127.0.0.1:9")
    with pytest.raises(DS.DataUnavailable, match="gdown"):
        DS.obtain("food-11", tmp_path)  # no checksum is published: never downloaded, only explained
    (tmp_path / "food-11.zip").write_bytes((archives / "food-11.zip").read_bytes())
    root = DS.obtain("food-11", tmp_path)
    assert root == tmp_path / "food-11" and (root / "training" / "unlabeled" / "00").is_dir()
    assert not DS.verified(root)


def test_archive_members_outside_the_target_are_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DS.DataUnavailable, match="outside"):
        DS.extract(archive, tmp_path / "into")
    assert not (tmp_path / "escaped.txt").exists()


def test_git_blob_checksum_matches_git(tmp_path):
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello\n")
    assert DS.file_checksum(f, "gitsha1") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object
    with pytest.raises(ValueError, match="unknown checksum"):
        DS.file_checksum(f, "crc32")


def test_quick_subset_is_the_same_from_the_full_set_and_from_a_sample_tree(tmp_path):
    """The per-class draw depends on file names only: torchvision's pickles of the whole set and
    an image tree holding the first ``pool`` names per class give the same images."""
    full = D.make_cifar_pickles(tmp_path / "full", "cifar100", n_train=120, n_test=20, seed=3, num_classes=10)
    whole = D.load_cifar("cifar100", full, train=True, check_md5=False)
    assert len(set(whole.files)) == 120
    for c in range(10):  # the sample tree: the first 8 images per class by file name
        idx = sorted((i for i in range(len(whole)) if int(whole.labels[i]) == c), key=lambda i: whole.files[i])
        folder = tmp_path / "sample" / whole.classes[c]
        folder.mkdir(parents=True)
        for i in idx[:8]:
            Image.fromarray(whole.images[i].numpy()).save(folder / whole.files[i])
    sample = D.load_image_folder(tmp_path / "sample")
    a, b = whole.per_class(3, pool=8), sample.per_class(3, pool=8)
    names_a, names_b = [Path(f).name for f in a.files], [Path(f).name for f in b.files]
    assert len(names_a) == 30 and sorted(names_a) == sorted(names_b)
    by_name = dict(zip(names_b, b.images))
    assert all(bool((by_name[n] == img).all()) for n, img in zip(names_a, a.images))
    with pytest.raises(ValueError, match="lower the per-class setting"):
        whole.per_class(9, pool=8)
