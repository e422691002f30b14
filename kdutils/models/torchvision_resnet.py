"""torchvision's ResNet-18 as a teacher: ImageNet weights, adapted to small images.

Two registered models share one builder (:func:`build_resnet18`):

``resnet18_cifar_8x8``  (part 3, 32x32 CIFAR images)
    torchvision's ``resnet18`` with only **strides** changed so that the last feature
    map (the output of ``layer4``) is 8x8x512 for a 32x32 input. Every kernel size,
    every padding, every layer and every parameter tensor stays as in torchvision, so an
    ImageNet state dict loads with ``strict=True`` (the classifier ``fc`` aside when the
    number of classes is not 1000).

``resnet18_food``  (part 5, 128x128 images)
    torchvision's ``resnet18`` unchanged (a 128x128 input gives a 4x4x512 map), with
    the classifier replaced by ``num_classes`` outputs.

What "18" counts
----------------
ResNet-18 has 18 weighted layers on its main path: 1 stem conv (7x7) + 4 stages x 2
basic blocks x 2 convs (3x3) = **17 convolutions**, plus the fully-connected layer.
The three 1x1 "downsample" convolutions on the shortcut of the first block of
``layer2``, ``layer3`` and ``layer4`` are not counted in the name (torchvision holds
20 ``Conv2d`` modules in all). There is exactly one max-pool (after the stem).

The stride plan chosen for 32x32 (torchvision's strides -> ours)
-----------------------------------------------------------------
=====================  ==========  ==========  ==============
module                 ImageNet    ours        map at 32x32
=====================  ==========  ==========  ==============
conv1 (7x7, pad 3)     2           **1**       32x32x64
maxpool (3x3, pad 1)   2           **1**       32x32x64
layer1                 1           1           32x32x64
layer2 (first block)   2           2           16x16x128
layer3 (first block)   2           2           8x8x256
layer4 (first block)   2           **1**       8x8x512
=====================  ==========  ==========  ==============

(In ``layer4`` both the first 3x3 conv and the 1x1 downsample conv go to stride 1; the
1x1 conv stays because it still maps 256 to 512 channels.)

Why this plan: the 32x32 image is already as small as ImageNet's map after the stem, so
the stem's two stride-2 steps (conv1 and max-pool, /4 in all) are the ones that throw
away the most information; CIFAR ResNets keep the first stage at full resolution for
that reason. Keeping ``layer2`` and ``layer3`` at stride 2 preserves the
"halve the map where the channels double" pattern the pretrained filters were trained
with, and only the last stage (the one that needs the 8x8 output) gives up its stride.
Other plans reach 8x8 too (e.g. keep the max-pool at stride 2 and set ``layer3`` to
stride 1: 0.75 instead of 0.97 GMACs, but the first stage then sees 16x16), yet they
down-sample earlier and usually cost accuracy on CIFAR. The price of ours is compute:
``layer4`` works on an 8x8 map (7x7 for ImageNet at 224), 0.97 GMACs per 32x32 image
in all, about half of ImageNet ResNet-18's 1.8 GMACs at 224x224 (measured with
``kdutils.models.count_macs``).

Weights
-------
``weights="IMAGENET1K_V1"`` (the default) downloads torchvision's weights or reads
them from the torch hub cache; ``weights=None`` starts from random weights (the smoke
and quick profiles); ``weights_path="file.pth"`` loads a local torchvision-format
state dict instead (useful offline: download ``resnet18-f37072fd.pth`` once, copy it
over). Pretrained weights expect inputs normalised with the ImageNet mean and std.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from torch import nn

from . import register

#: Keys of the classifier, left out of a pretrained state dict when ``num_classes != 1000``.
_FC_KEYS = ("fc.weight", "fc.bias")


# --------------------------------------------------------------------------- weights
def _offline_help(what: str) -> str:
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"{what}. To proceed: pass weights=None to start from random weights (what the "
        "smoke/quick profiles do), or weights_path='path/to/resnet18-f37072fd.pth' to load a "
        "local torchvision-format state dict, or copy that file (downloaded on a machine "
        "with internet from https://download.pytorch.org/models/resnet18-f37072fd.pth) "
        f"into the torch hub cache {cache}."
    )


def _pretrained_state_dict(weights, progress: bool) -> dict:
    """The state dict of torchvision's ``ResNet18_Weights`` entry ``weights``.

    Raises ``ValueError`` for an unknown weights name and ``RuntimeError`` (with the
    ways to proceed) when the file is neither cached nor downloadable.
    """
    from torchvision.models import ResNet18_Weights

    try:
        w = ResNet18_Weights.verify(weights)
    except (ValueError, KeyError, TypeError) as e:
        known = ", ".join(m.name for m in ResNet18_Weights)
        raise ValueError(
            f"unknown ResNet-18 weights {weights!r}; use one of {known}, 'DEFAULT' or None"
        ) from e
    try:
        return w.get_state_dict(progress=progress, check_hash=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; hash/corrupt file -> RuntimeError
        raise RuntimeError(
            _offline_help(f"could not obtain the ResNet-18 weights {w.name} ({type(e).__name__}: {e})")
        ) from e


def _file_state_dict(weights_path: Union[str, os.PathLike]) -> dict:
    """Read a torchvision-format state dict (or a checkpoint holding one) from a file."""
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights_path {str(path)!r} does not exist; give the path of a torchvision "
            "ResNet-18 state dict (e.g. resnet18-f37072fd.pth) or pass weights_path=None"
        )
    sd = torch.load(path, map_location="cpu", weights_only=True)
    # Accept our own checkpoints too: {"model": sd} / {"state_dict": sd}.
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(sd).__name__})")
    # Weights saved from nn.DataParallel / torch.compile carry a prefix.
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_backbone_state(model: nn.Module, state_dict: dict, num_classes: int) -> None:
    """Load ``state_dict`` strictly; the classifier is skipped when ``num_classes != 1000``.

    With 1000 classes the load is ``strict=True`` including ``fc``. Otherwise the
    ``fc`` entries are dropped and every other key must match exactly (no missing,
    no unexpected key): a wrong architecture fails loudly instead of half-loading.
    """
    if num_classes == 1000:
        model.load_state_dict(state_dict, strict=True)
        return
    sd = {k: v for k, v in state_dict.items() if k not in _FC_KEYS}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k not in _FC_KEYS]
    if missing or unexpected:
        raise RuntimeError(
            "the state dict does not match torchvision's ResNet-18 "
            f"(missing: {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            f"unexpected: {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
        )


# --------------------------------------------------------------------------- builder
def adapt_to_32x32(model: nn.Module) -> nn.Module:
    """Change strides (only) so that a 32x32 input gives an 8x8x512 ``layer4`` output.

    conv1 and the max-pool go to stride 1; ``layer2`` and ``layer3`` keep stride 2;
    the first block of ``layer4`` (its 3x3 conv1 and its 1x1 downsample conv) goes to
    stride 1. Kernel sizes, paddings and parameter shapes are untouched, so the
    module keeps torchvision's state-dict keys and shapes. Works in place; returns it.
    """
    model.conv1.stride = (1, 1)
    model.maxpool.stride = 1
    block = model.layer4[0]
    block.conv1.stride = (1, 1)
    block.downsample[0].stride = (1, 1)
    block.stride = 1  # informational attribute of BasicBlock, kept consistent
    return model


def build_resnet18(
    num_classes: int = 1000,
    weights: Optional[str] = "IMAGENET1K_V1",
    weights_path: Optional[Union[str, os.PathLike]] = None,
    progress: bool = False,
    adapt: Optional[Callable[[nn.Module], nn.Module]] = None,
) -> nn.Module:
    """torchvision's ``resnet18`` with ``num_classes`` outputs, optionally adapted.

    Weights: ``weights_path`` (a local file) wins over ``weights``; ``weights=None``
    and no path gives random weights. The state dict is loaded *before* ``adapt`` runs
    (which only changes strides and so cannot affect loading) and before a new ``fc``
    would be needed: with ``num_classes != 1000`` the classifier is freshly initialised.
    The result carries ``model.weights_source`` (a string) for records and notebooks.
    """
    from torchvision.models import resnet18

    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    model = resnet18(weights=None, num_classes=num_classes)
    if weights_path is not None:
        load_backbone_state(model, _file_state_dict(weights_path), num_classes)
        source = f"file:{Path(weights_path).name}"
    elif weights is not None:
        sd = _pretrained_state_dict(weights, progress)
        load_backbone_state(model, sd, num_classes)
        source = f"torchvision:{getattr(weights, 'name', weights)}"
    else:
        source = "random"
    if adapt is not None:
        model = adapt(model)
    model.weights_source = source
    return model


@register("resnet18_cifar_8x8")
def resnet18_cifar_8x8(
    num_classes: int = 10,
    weights: Optional[str] = "IMAGENET1K_V1",
    weights_path: Optional[Union[str, os.PathLike]] = None,
    progress: bool = False,
) -> nn.Module:
    """ResNet-18 (torchvision, ImageNet weights by default) adapted to 32x32 -> 8x8x512.

    See the module docstring for the stride plan; :func:`describe_changes` lists it.
    """
    return build_resnet18(num_classes, weights, weights_path, progress, adapt=adapt_to_32x32)


@register("resnet18_food")
def resnet18_food(
    num_classes: int = 101,
    weights: Optional[str] = "IMAGENET1K_V1",
    weights_path: Optional[Union[str, os.PathLike]] = None,
    progress: bool = False,
) -> nn.Module:
    """Unchanged torchvision ResNet-18 for 128x128 images (layer4 map 4x4x512), new ``fc``."""
    return build_resnet18(num_classes, weights, weights_path, progress, adapt=None)


# --------------------------------------------------------------------------- inspection
def _fmt(v) -> str:
    if isinstance(v, tuple):
        return "x".join(str(int(x)) for x in v) if len(set(v)) > 1 else str(int(v[0]))
    return str(v)


def describe_changes(model: nn.Module) -> list[str]:
    """Human-readable differences between ``model`` and torchvision's ``resnet18``.

    One line per changed attribute, ``"<layer> (<kind>): <what> <before> -> <after>"``,
    comparing every ``Conv2d`` / ``MaxPool2d`` (kernel, stride, padding, dilation) and
    the classifier's output size. An unchanged model gives only the ``fc`` line (if any).
    """
    from torchvision.models import resnet18

    ref = dict(resnet18(weights=None).named_modules())
    lines = []
    for name, mod in model.named_modules():
        base = ref.get(name)
        if base is None or type(base) is not type(mod):
            if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.Linear)):
                lines.append(f"{name} ({type(mod).__name__}): added, not in torchvision's resnet18")
            continue
        if isinstance(mod, (nn.Conv2d, nn.MaxPool2d)):
            if isinstance(mod, nn.Conv2d):
                kind = f"Conv2d {mod.kernel_size[0]}x{mod.kernel_size[1]}, {mod.in_channels}->{mod.out_channels}"
            else:
                k = mod.kernel_size if isinstance(mod.kernel_size, int) else mod.kernel_size[0]
                kind = f"MaxPool2d {k}x{k}"
            for attr in ("kernel_size", "stride", "padding", "dilation"):
                a, b = getattr(base, attr), getattr(mod, attr)
                if _fmt(a) != _fmt(b):
                    lines.append(f"{name} ({kind}): {attr} {_fmt(a)} -> {_fmt(b)}")
        elif isinstance(mod, nn.Linear) and mod.out_features != base.out_features:
            lines.append(
                f"{name} (Linear {mod.in_features}->{mod.out_features}): outputs {base.out_features} -> {mod.out_features}"
            )
    return lines


@torch.no_grad()
def feature_map_shape(model: nn.Module, input_size=(1, 3, 32, 32), layer: str = "layer4") -> tuple:
    """Shape of the output of ``model.<layer>`` (default ``layer4``) for a zero input.

    Uses a forward hook, so it checks the model as it really runs (N, C, H, W): for
    ``resnet18_cifar_8x8`` and a 32x32 input, ``(1, 512, 8, 8)``.
    """
    seen = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: seen.__setitem__("shape", tuple(o.shape)))
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters(), None)
        model(torch.zeros(*input_size, device=p.device if p is not None else "cpu"))
    finally:
        handle.remove()
        model.train(was_training)
    return seen["shape"]


__all__ = [
    "resnet18_cifar_8x8",
    "resnet18_food",
    "build_resnet18",
    "adapt_to_32x32",
    "load_backbone_state",
    "describe_changes",
    "feature_map_shape",
]
