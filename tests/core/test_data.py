import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from kdutils.core import data


def test_cifar_pickles_load_through_torchvision(tiny_cifar):
    root, tr, te = tiny_cifar
    assert tr.images.shape == (200, 32, 32, 3) and tr.images.dtype == torch.uint8
    assert te.images.shape == (100, 32, 32, 3)
    assert tr.num_classes == 10 and tr.labels.min() >= 0 and tr.labels.max() <= 9
    assert "torchvision" in tr.source
    # the pickles hold exactly what we wrote: image 0 of batch 1 in CHW-flattened order
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        d = pickle.load(f)
    first = torch.from_numpy(d["data"][0].reshape(3, 32, 32).transpose(1, 2, 0).copy())
    assert torch.equal(tr.images[0], first)
    assert tr.labels[0].item() == d["labels"][0]


def test_cifar100_pickles(tmp_path):
    root = data.make_cifar_pickles(tmp_path, "cifar100", n_train=50, n_test=20)
    tr = data.load_cifar("cifar100", root, train=True, check_md5=False)
    assert len(tr) == 50 and tr.num_classes == 100


def test_missing_cifar_names_path_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        data.load_cifar("cifar10", tmp_path / "nowhere", train=True)
    msg = str(e.value)
    assert "nowhere" in msg and "download=True" in msg


def test_md5_is_checked_by_default(tiny_cifar):
    root, _, _ = tiny_cifar
    with pytest.raises(FileNotFoundError):  # synthetic files do not match the official md5 sums
        data.load_cifar("cifar10", root, train=True)


def test_image_folder_greyscale_to_rgb_and_resize(tmp_path):
    root = data.make_image_tree(tmp_path / "faces", 3, 4, size=(40, 30), fmt="pgm", grey=True, vary_size=True)
    with pytest.raises(ValueError, match="differ in size"):
        data.load_image_folder(root, use_cache=False)
    ds = data.load_image_folder(root, size=(32, 32))
    assert ds.images.shape == (12, 32, 32, 3)
    # greyscale stays grey after conversion: the three channels are equal
    assert torch.equal(ds.images[..., 0], ds.images[..., 1])
    assert ds.classes == ["class00", "class01", "class02"]
    assert sorted(ds.labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4


def test_image_folder_cache_is_used_and_identical(tmp_path):
    root = data.make_image_tree(tmp_path / "t", 2, 3, fmt="png")
    a = data.load_image_folder(root)
    caches = list(data.cache_dir().glob("folder-*.pt"))
    assert len(caches) == 1
    b = data.load_image_folder(root)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # a changed file invalidates the cache (new fingerprint)
    f = sorted((root / "class00").iterdir())[0]
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(f)
    c = data.load_image_folder(root)
    assert len(list(data.cache_dir().glob("folder-*.pt"))) == 2
    assert not torch.equal(a.images, c.images)


def test_corrupt_image_names_the_file(tmp_path):
    root = data.make_image_tree(tmp_path / "t", 2, 2)
    bad = root / "class01" / "2.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError) as e:
        data.load_image_folder(root, use_cache=False)
    assert str(bad) in str(e.value)


def test_class_count_mismatch_names_both_counts(tmp_path):
    root = data.make_image_tree(tmp_path / "t", 3, 1)
    with pytest.raises(ValueError) as e:
        data.load_image_folder(root, expected_classes=10)
    assert "3 class folders" in str(e.value) and "10 classes" in str(e.value)


def test_missing_folder_explains_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="<root>/<class>"):
        data.load_image_folder(tmp_path / "absent")


def test_load_dataset_uses_folder_tree(tmp_path):
    data.make_image_tree(tmp_path / "cifar10" / "test", 10, 2)
    ds = data.load_dataset("cifar10", tmp_path, "test")
    assert len(ds) == 20 and ds.num_classes == 10
    with pytest.raises(ValueError, match="split"):
        data.load_dataset("cifar10", tmp_path, "val")


def test_food11_layout(tmp_path):
    root = data.make_food11_tree(tmp_path / "food", num_classes=4, per_class=3, n_unlabeled=5, n_test=6)
    lab = data.load_food11(root, "labeled", size=40)
    assert lab.images.shape == (12, 40, 40, 3) and lab.num_classes == 4
    test = data.load_food11(root, "testing", size=40)
    assert len(test) == 6 and (test.labels == -1).all()
    assert [p.split("/")[-1] for p in test.files][:2] == ["0000.jpg", "0001.jpg"]
    with pytest.raises(ValueError, match="split"):
        data.load_food11(root, "train")


def test_per_class_subset_is_balanced(tiny_cifar):
    _, tr, _ = tiny_cifar
    sub = tr.per_class(3)
    assert torch.bincount(sub.labels, minlength=10).tolist() == [3] * 10
    assert torch.equal(sub.images, tr.per_class(3).images)  # deterministic


def test_first_classes_keeps_the_labels_and_names_of_the_first_k_classes(tiny_cifar):
    _, tr, _ = tiny_cifar
    sub = tr.first_classes(3)
    assert sub.classes == tr.classes[:3] and sub.num_classes == 3
    assert sorted(set(sub.labels.tolist())) == [0, 1, 2]
    assert len(sub) == int((tr.labels < 3).sum())
    keep = torch.nonzero(tr.labels < 3).flatten()
    assert torch.equal(sub.images, tr.images[keep])
    with pytest.raises(ValueError, match="choose 1..10"):
        tr.first_classes(11)


def test_synthetic_images_are_class_dependent():
    x, y = data.synthetic_images(200, 4, seed=0)
    means = np.stack([x[y == c].reshape(-1, 3).mean(0) for c in range(4)])
    # the class colours differ far more than noise would make them
    assert np.ptp(means, axis=0).max() > 20


@pytest.mark.shared_data
def test_real_cifar10_sample_loads_as_image_folder(shared_data):
    ds = data.load_dataset("cifar10", shared_data, "test")
    assert ds.images.shape[1:] == (32, 32, 3)
    assert ds.num_classes == 10 and ds.classes[0] == "airplane"
    assert len(ds) == 2000
    assert torch.bincount(ds.labels).tolist() == [200] * 10


# --------------------------------------------------------------------------- issue 13: reliability
def test_train_and_test_trees_with_other_class_names_raise_naming_both_lists(tmp_path):
    names = [f"c{i}" for i in range(10)]
    data.make_image_tree(tmp_path / "cifar10" / "train", 10, 2, class_names=["airplane"] + names[1:])
    data.make_image_tree(tmp_path / "cifar10" / "test", 10, 1, class_names=["plane"] + names[1:])
    tr = data.load_dataset("cifar10", tmp_path, "train")
    te = data.load_dataset("cifar10", tmp_path, "test")
    with pytest.raises(ValueError, match=r"only in the training set: \['airplane'\]; only in the test set: "
                                         r"\['plane'\](.|\n)*training classes: \['airplane', 'c1'"):
        data.check_same_classes(tr, te)
    data.check_same_classes(tr, tr.subset(range(3)))  # the same names pass


def test_16_bit_greyscale_png_and_pgm_scale_to_8_bits(tmp_path):
    ramp = (np.arange(16 * 16).reshape(16, 16) * 256).astype(np.uint16)  # 0 .. 65280
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with open(tmp_path / "g16.pgm", "wb") as f:
        f.write(b"P5\n16 16\n65535\n" + ramp.astype(">u2").tobytes())
    expected = np.round(ramp / 257.0).astype(np.uint8)
    for name in ("g16.png", "g16.pgm"):
        rgb = data.decode_image(tmp_path / name)
        assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
        assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1, name
        assert (rgb == 255).mean() < 0.01  # not the nearly all-white picture of a clipped conversion


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = data.make_image_tree(tmp_path / "t", 2, 2)
    (root / "class02").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*class02 holds no images"):
        data.load_image_folder(root, use_cache=False)


def test_an_odd_sized_image_is_named_with_the_fix(tmp_path):
    root = data.make_image_tree(tmp_path / "cifar10" / "train", 10, 2)
    odd = root / "class03" / "1.png"
    Image.fromarray(np.zeros((33, 32, 3), np.uint8)).save(odd)
    with pytest.raises(ValueError, match=rf"19 of 20 are 32x32, but {odd} is 33x32.*size=\(32, 32\)"):
        data.load_dataset("cifar10", tmp_path, "train", use_cache=False)
    assert data.load_dataset("cifar10", tmp_path, "train", size=(32, 32)).images.shape == (20, 32, 32, 3)


def test_hidden_and_macos_resource_files_are_not_images(tmp_path):
    root = data.make_image_tree(tmp_path / "t", 2, 2)
    (root / "class00" / "._1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    (root / "class01" / ".thumb.png").write_bytes(b"hidden")
    ds = data.load_image_folder(root, use_cache=False)
    assert len(ds) == 4 and not any("/." in f for f in ds.files)


def test_generated_cifar_pickles_are_md5_checked_before_unpickling(tmp_path):
    root = data.make_cifar_pickles(tmp_path / "gen", "cifar10", n_train=20, n_test=10)
    assert len(data.load_cifar("cifar10", root, train=True, check_md5=False)) == 20
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(batch.read_bytes() + b"appended")  # e.g. a replaced, code-running pickle
    with pytest.raises(ValueError, match=r"data_batch_2 .*does not match its md5 sum"):
        data.load_cifar("cifar10", root, train=True, check_md5=False)
    (root / "cifar-10-batches-py" / data.MD5_MANIFEST).unlink()
    with pytest.raises(ValueError, match=r"no MD5SUMS.json"):
        data.load_cifar("cifar10", root, train=False, check_md5=False)


def test_smoke_data_written_without_md5_sums_is_written_again(tmp_path):
    first = data.smoke_root("cifar10")
    manifest = first / "cifar-10-batches-py" / data.MD5_MANIFEST
    manifest.unlink()  # as written by an older version of the project
    assert data.smoke_root("cifar10") == first and manifest.is_file()
    assert len(data.load_cifar("cifar10", first, train=False, check_md5=False)) == 200
