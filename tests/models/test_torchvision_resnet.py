"""The torchvision ResNet-18 adapted to small images (part 3's 8x8x512 teacher, part 5's food teacher).

No test downloads anything: models are built with ``weights=None`` and the offline
case is simulated by making torchvision's weight loader raise.
"""
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from kdutils.models import build_model
from kdutils.models.torchvision_resnet import describe_changes, feature_map_shape


def _is_shortcut(name: str) -> bool:
    return ".downsample." in name


@pytest.fixture(scope="module")
def teacher():
    return build_model("resnet18_cifar_8x8", 10, weights=None)


@pytest.fixture(scope="module")
def reference():
    return torchvision.models.resnet18(weights=None)


# ---------------------------------------------------------------- teacher topology
def test_last_feature_map_is_8x8x512(teacher):
    assert feature_map_shape(teacher, (1, 3, 32, 32)) == (1, 512, 8, 8)
    assert teacher(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_17_convs_plus_shortcuts_and_one_maxpool(teacher):
    convs = [n for n, m in teacher.named_modules() if isinstance(m, nn.Conv2d)]
    main_path = [n for n in convs if not _is_shortcut(n)]
    shortcuts = [n for n in convs if _is_shortcut(n)]
    assert len(main_path) == 17  # 1 stem + 4 stages x 2 blocks x 2 convs
    assert shortcuts == ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    assert sum(isinstance(m, nn.MaxPool2d) for m in teacher.modules()) == 1


def test_only_strides_change(teacher, reference):
    ref = dict(reference.named_modules())
    changed = []
    for name, m in teacher.named_modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            r = ref[name]
            assert m.kernel_size == r.kernel_size, name
            assert m.padding == r.padding, name
            assert m.dilation == r.dilation, name
            if m.stride != r.stride:
                changed.append(name)
    assert changed == ["conv1", "maxpool", "layer4.0.conv1", "layer4.0.downsample.0"]
    lines = describe_changes(teacher)
    assert any(l.startswith("conv1 ") and "stride 2 -> 1" in l for l in lines)
    assert any(l.startswith("fc ") and "1000 -> 10" in l for l in lines)
    assert len(lines) == 5


def test_torchvision_state_dict_loads_strictly(reference):
    sd = reference.state_dict()
    adapted = build_model("resnet18_cifar_8x8", 1000, weights=None)
    adapted.load_state_dict(sd, strict=True)  # same keys, same shapes
    for k, v in adapted.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_weights_path_for_10_classes(tmp_path, reference):
    sd = reference.state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(sd, path)
    model = build_model("resnet18_cifar_8x8", 10, weights_path=str(path))
    got = model.state_dict()
    assert torch.equal(got["layer4.1.conv2.weight"], sd["layer4.1.conv2.weight"])
    assert torch.equal(got["bn1.running_var"], sd["bn1.running_var"])
    assert got["fc.weight"].shape == (10, 512)
    assert model.weights_source == "file:resnet18.pth"
    food = build_model("resnet18_food", 101, weights_path=path)
    assert torch.equal(food.state_dict()["conv1.weight"], sd["conv1.weight"])
    assert feature_map_shape(food, (1, 3, 128, 128)) == (1, 512, 4, 4)


def test_weights_path_mismatch_and_missing_file(tmp_path, reference):
    sd = reference.state_dict()
    del sd["layer3.1.bn2.bias"]
    path = tmp_path / "broken.pth"
    torch.save(sd, path)
    with pytest.raises(RuntimeError, match="layer3.1.bn2.bias"):
        build_model("resnet18_cifar_8x8", 10, weights_path=path)
    with pytest.raises(FileNotFoundError, match="weights_path"):
        build_model("resnet18_cifar_8x8", 10, weights_path=tmp_path / "nope.pth")


@pytest.mark.parametrize("exc", [urllib.error.URLError("no network"), OSError("offline")])
def test_offline_weights_error_says_how_to_proceed(monkeypatch, exc):
    def no_network(*args, **kwargs):
        raise exc

    # Both the module-level loader and the enum method: nothing can reach the network.
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", no_network)
    for name in ("resnet18_cifar_8x8", "resnet18_food"):
        with pytest.raises(RuntimeError) as info:
            build_model(name, 10)  # default weights="IMAGENET1K_V1"
        msg = str(info.value)
        assert "weights=None" in msg and "weights_path=" in msg


def test_unknown_weights_name():
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        build_model("resnet18_cifar_8x8", 10, weights="IMAGENET9K")
