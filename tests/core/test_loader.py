import pytest
import torch

from kdutils.core.loader import GpuLoader


def _data(n=20, size=8):
    x = torch.arange(n * size * size * 3, dtype=torch.int64).remainder(251).to(torch.uint8).view(n, size, size, 3)
    return x, torch.arange(n) % 5


def test_batches_shapes_normalisation_and_index():
    x, y = _data()
    ld = GpuLoader((x, y), 8, train=False, mean=(0, 0, 0), std=(1, 1, 1), device="cpu")
    batches = list(ld)
    assert len(ld) == 3 and [len(b[0]) for b in batches] == [8, 8, 4]
    xb, yb, idx = batches[0]
    assert xb.shape == (8, 3, 8, 8) and xb.dtype == torch.float32
    # with mean 0 / std 1 the batch is the images in [0, 1], channels first
    assert torch.allclose(xb, x[:8].permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(yb, y[:8]) and torch.equal(idx, torch.arange(8))


def test_train_epochs_reproducible_and_different():
    x, y = _data()
    a = GpuLoader((x, y), 4, train=True, padding=2, device="cpu", seed=3)
    b = GpuLoader((x, y), 4, train=True, padding=2, device="cpu", seed=3)
    a.set_epoch(1)
    b.set_epoch(1)
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ia, ib)
    b.set_epoch(2)
    assert not torch.equal(next(iter(a))[2], next(iter(b))[2])


def test_random_crop_is_a_window_of_the_padded_image():
    x, y = _data(n=6, size=8)
    ld = GpuLoader((x, y), 6, train=True, padding=2, flip=False, mean=(0, 0, 0), std=(1 / 255,) * 3, device="cpu")
    xb, _, idx = next(iter(ld))
    padded = torch.nn.functional.pad(x, (0, 0, 2, 2, 2, 2)).permute(0, 3, 1, 2).float()
    for img, i in zip(xb, idx):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(img, w) for w in windows)


def test_flip_mirrors_about_half_the_images():
    x, y = _data(n=400, size=4)
    ld = GpuLoader((x, y), 400, train=True, flip=True, mean=(0, 0, 0), std=(1 / 255,) * 3, device="cpu")
    xb, _, idx = next(iter(ld))
    orig = x[idx].permute(0, 3, 1, 2).float()
    flipped = (xb == orig.flip(3)).flatten(1).all(1) & ~(xb == orig).flatten(1).all(1)
    assert 150 < flipped.sum().item() < 250


def test_centre_crop_in_eval():
    x = torch.zeros(2, 10, 10, 3, dtype=torch.uint8)
    x[:, 1:9, 1:9] = 255
    ld = GpuLoader((x, torch.zeros(2, dtype=torch.long)), 2, train=False, crop=8, mean=(0, 0, 0), std=(1, 1, 1), device="cpu")
    xb, _, _ = next(iter(ld))
    assert xb.shape == (2, 3, 8, 8) and torch.all(xb == 1.0)


def test_bad_inputs_raise_clear_errors():
    x, y = _data()
    with pytest.raises(ValueError, match="uint8"):
        GpuLoader((x.float(), y), 4)
    with pytest.raises(ValueError, match="batch_size"):
        GpuLoader((x, y), 0)
    with pytest.raises(ValueError, match="crop"):
        GpuLoader((x, y), 4, crop=16)


def test_cutout_zeroes_a_square_per_image():
    x = torch.full((50, 16, 16, 3), 200, dtype=torch.uint8)
    ld = GpuLoader((x, torch.zeros(50, dtype=torch.long)), 50, train=True, flip=False, cutout=6,
                   mean=(0, 0, 0), std=(1, 1, 1), device="cpu")
    xb, _, _ = next(iter(ld))
    zeros = (xb[:, 0] == 0).flatten(1).sum(1)
    assert zeros.max().item() == 36 and zeros.min().item() >= 9  # a full square, or clipped at a border
    assert torch.equal(xb[:, 0] == 0, xb[:, 2] == 0)  # same square in every channel
    eval_ld = GpuLoader((x, torch.zeros(50, dtype=torch.long)), 50, train=False, cutout=6, device="cpu")
    assert eval_ld.cutout == 0


@pytest.mark.parametrize("channels_last", [True, False])
def test_crop_flip_normalise_in_either_layout(channels_last):
    x, y = _data(n=40, size=8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.2)
    kw = dict(train=True, padding=2, flip=True, mean=mean, std=std, device="cpu", seed=1)
    ld = GpuLoader((x, y), 40, channels_last=channels_last, **kw)
    xb, _, idx = next(iter(ld))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert xb.is_contiguous(memory_format=fmt)
    other = next(iter(GpuLoader((x, y), 40, channels_last=not channels_last, **kw)))[0]
    assert torch.equal(xb, other)  # the layout changes the memory order, never the values
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    padded = torch.nn.functional.pad(x, (0, 0, 2, 2, 2, 2)).permute(0, 3, 1, 2).float() / 255
    flips = 0
    for img, i in zip(xb, idx):
        windows = [(padded[i, :, r:r + 8, c:c + 8] - m) / s for r in range(5) for c in range(5)]
        plain = any(torch.allclose(img, w, atol=1e-5) for w in windows)
        mirrored = any(torch.allclose(img, w.flip(2), atol=1e-5) for w in windows)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 5 < flips < 35


def test_consumers_see_the_thread_count_unchanged():
    threads = torch.get_num_threads()
    x, y = _data()
    for _ in GpuLoader((x, y), 4, train=True, padding=2, device="cpu"):
        assert torch.get_num_threads() == threads  # batches are made with one thread, steps run with all
    assert torch.get_num_threads() == threads


def test_loader_fingerprint_follows_the_data_and_the_settings_not_the_object():
    from kdutils.core.loader import loader_fingerprint

    x, y = _data()
    key = loader_fingerprint(GpuLoader((x, y), 8, device="cpu"))
    assert key == loader_fingerprint(GpuLoader((x.clone(), y.clone()), 8, device="cpu"))
    other_pixels = x.clone()
    other_pixels[3, 0, 0, 0] += 1
    changed = [GpuLoader((other_pixels, y), 8, device="cpu"), GpuLoader((x, (y + 1) % 5), 8, device="cpu"),
               GpuLoader((x, y), 4, device="cpu"), GpuLoader((x, y), 8, device="cpu", seed=1),
               GpuLoader((x, y), 8, device="cpu", flip=False)]
    assert len({key, *(loader_fingerprint(ld) for ld in changed)}) == 6
    assert loader_fingerprint([(x, y)]) is None  # not a GpuLoader: cannot be fingerprinted


def test_loaders_for_refuses_sets_with_other_class_names():
    from kdutils.core.data import ImageSet
    from kdutils.core.loader import loaders_for

    x, y = _data()
    names = [f"c{i}" for i in range(5)]
    train_set = ImageSet(x, y, ["airplane"] + names[1:], source="train")
    test_set = ImageSet(x, y, ["plane"] + names[1:], source="test")
    with pytest.raises(ValueError, match=r"different class lists.*'airplane'.*'plane'"):
        loaders_for(train_set, test_set, 8, (0.5,) * 3, (0.5,) * 3, device="cpu")
    tr, te = loaders_for(train_set, train_set, 8, (0.5,) * 3, (0.5,) * 3, device="cpu")
    assert len(tr) == 2 and len(te) == 1
