"""The part-3 student: a small three-conv CNN, exactly as the assignment specifies.

Architecture (``student_cnn``, 32x32 RGB input, default ``pool_stride=1``)
--------------------------------------------------------------------------
==========================================  ============  ===============
layer                                       output        parameters
==========================================  ============  ===============
conv1  5x5, 32 filters, stride 1, pad 1     30x30x32      5*5*3*32+32     =      2,432
ReLU, max-pool 2x2, stride 1, pad 0         29x29x32
conv2  3x3, 64 filters, stride 1, pad 1     29x29x64      3*3*32*64+64    =     18,496
ReLU, max-pool 2x2, stride 1, pad 0         28x28x64
conv3  3x3, 128 filters, stride 1, pad 1    28x28x128     3*3*64*128+128  =     73,856
ReLU, max-pool 2x2, stride 1, pad 0         27x27x128
flatten                                     93,312
fc1    93,312 -> 500, ReLU                  500           93312*500+500   = 46,656,500
fc2    500 -> num_classes (logits)          10            500*10+10       =      5,010
total (10 classes)                                                          46,756,294
==========================================  ============  ===============

Spatial sizes follow ``out = floor((in + 2*pad - kernel) / stride) + 1``: the 5x5 conv
with padding 1 shrinks 32 to 30, and each 2x2 max-pool **with stride 1** removes only
one pixel, so the maps stay large (27x27) and the first fully-connected layer alone
holds ~46.7M parameters, 99.8% of the model: four times more than the ResNet-18
teacher (11.2M). That is what the assignment's numbers give; we keep them by default
and say so in the notebook. ``pool_stride=2`` (the usual choice, halving the map at
each pool) gives 30 -> 15 -> 15 -> 7 -> 7 -> 3, an FC input of 128*3*3 = 1,152 and
676,294 parameters in all.

The model returns logits; the softmax is applied by the loss (cross-entropy / KD) or at
inference time.
"""
from __future__ import annotations

import torch
from torch import nn

from . import register


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def student_spatial_sizes(input_size: int = 32, pool_stride: int = 1) -> list[int]:
    """The map side after conv1, pool1, conv2, pool2, conv3, pool3 (for a square input)."""
    sizes, s = [], input_size
    for kernel in (5, 3, 3):
        s = _out(s, kernel, 1, 1)
        sizes.append(s)
        s = _out(s, 2, pool_stride, 0)
        sizes.append(s)
    if s < 1:
        raise ValueError(f"input_size={input_size} is too small for pool_stride={pool_stride}")
    return sizes


class StudentCNN(nn.Module):
    """conv(5x5,32)-ReLU-pool, conv(3x3,64)-ReLU-pool, conv(3x3,128)-ReLU-pool, FC500-ReLU, FC.

    ``features`` holds the convolutional part (its output is the last feature map) and
    ``classifier`` the two fully-connected layers, so the model can be inspected or
    hooked stage by stage.
    """

    def __init__(
        self,
        num_classes: int = 10,
        pool_stride: int = 1,
        dropout: float = 0.0,
        input_size: int = 32,
        in_channels: int = 3,
        hidden: int = 500,
    ):
        super().__init__()
        if pool_stride not in (1, 2):
            raise ValueError(f"pool_stride must be 1 (the assignment) or 2, got {pool_stride!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        side = student_spatial_sizes(input_size, pool_stride)[-1]
        self.pool_stride = pool_stride
        self.feature_shape = (128, side, side)

        def pool():
            return nn.MaxPool2d(kernel_size=2, stride=pool_stride, padding=0)

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=5, stride=1, padding=1),
            nn.ReLU(inplace=True),
            pool(),
            nn.Conv2d(32, 64, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            pool(),
            nn.Conv2d(64, 128, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            pool(),
        )
        head = [nn.Flatten(), nn.Linear(128 * side * side, hidden), nn.ReLU(inplace=True)]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden, num_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register("student_cnn")
def student_cnn(
    num_classes: int = 10,
    pool_stride: int = 1,
    dropout: float = 0.0,
    input_size: int = 32,
) -> nn.Module:
    """The assignment's student (see the module docstring for shapes and counts).

    ``pool_stride=1`` is the assignment's setting (46.8M parameters for 10 classes);
    ``pool_stride=2`` a much smaller variant (0.68M). ``dropout`` (default 0) is applied
    after the 500-unit layer.
    """
    return StudentCNN(num_classes, pool_stride=pool_stride, dropout=dropout, input_size=input_size)


@torch.no_grad()
def describe_student(model: nn.Module, input_size=(1, 3, 32, 32)) -> list[dict]:
    """One row per leaf layer: ``{"layer", "type", "output", "params"}``.

    Output shapes are measured with forward hooks (batch dimension dropped), so the
    table shows what the model really computes; ``pandas.DataFrame(rows)`` prints it.
    """
    rows, hooks = [], []
    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0:
            def hook(m, i, o, name=name):
                rows.append(
                    {
                        "layer": name,
                        "type": type(m).__name__,
                        "output": "x".join(str(d) for d in o.shape[1:]),
                        "params": sum(p.numel() for p in m.parameters()),
                    }
                )

            hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(*input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


__all__ = ["StudentCNN", "student_cnn", "student_spatial_sizes", "describe_student"]
