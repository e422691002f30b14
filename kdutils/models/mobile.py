"""Small efficient CNNs for part 5 (food-11, 128x128 RGB): the student and the comparison.

Building blocks
---------------
All convolutions are bias-free because a BatchNorm follows each one (the BN's shift
plays the role of the bias). With a ``k x k`` kernel, ``C_in`` inputs, ``C_out``
outputs and ``g`` groups the parameter counts are:

=====================  ==========================================
block                  parameters
=====================  ==========================================
``ConvBlock``          ``k*k*C_in*C_out`` + BN ``2*C_out``
``GroupConvBlock``     ``k*k*C_in*C_out/g`` + BN ``2*C_out``
``DepthwiseSeparable``  depthwise ``k*k*C_in`` + BN ``2*C_in``
                       + pointwise ``C_in*C_out`` + BN ``2*C_out``
=====================  ==========================================

(BN has a weight and a bias per channel; its running mean/variance are buffers, not
parameters.) A depthwise-separable block costs about ``1/C_out + 1/k^2`` of an ordinary
convolution, which is what lets a 100k-parameter student be several layers deep.

Registered models
-----------------
``food_student``
    MobileNet-v1-style student, about 95k parameters at ``width=1.0``; the factory
    enforces the assignment's budget of 100,000 parameters.
``conv_net`` / ``dwsep_net`` / ``group_net``
    One topology (stem, seven blocks in four resolutions, global pooling, FC) built from
    ordinary, depthwise-separable or group convolutions. ``match_width`` picks the
    ``width`` that gives each one the same parameter count (default 250,000 ≈ 1 MB of
    float32 weights), so the comparison is at equal size.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from . import check_param_budget, count_params, register

FOOD_STUDENT_BUDGET = 100_000


# ---------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------
def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """``Conv2d`` (no bias, "same" padding) + ``BatchNorm2d`` + ``ReLU``.

    Parameters: ``k*k*in*out/groups + 2*out``.
    """
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvBlock(nn.Sequential):
    """An ordinary 3x3 convolution + BN + ReLU (the baseline block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(*conv_bn_relu(in_channels, out_channels, 3, stride))


class DepthwiseSeparable(nn.Sequential):
    """MobileNet-v1 block: 3x3 depthwise conv + BN + ReLU, then 1x1 pointwise + BN + ReLU.

    The depthwise conv (``groups=in_channels``) filters each channel on its own and
    carries the stride; the pointwise conv mixes channels.
    Parameters: ``9*C_in + 2*C_in + C_in*C_out + 2*C_out``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.depthwise = conv_bn_relu(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = conv_bn_relu(in_channels, out_channels, 1, 1)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: interleave the channels of ``groups`` groups.

    Without it, a stack of group convolutions with the same ``groups`` splits into
    ``groups`` independent narrow networks (channel group *i* only ever sees group *i*).
    It has no parameters.
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    """Validate a *group* convolution: ``1 < groups < in_channels``, dividing both widths.

    ``groups == 1`` is an ordinary convolution and ``groups == in_channels`` a depthwise
    one; the comparison wants the case in between.
    """
    if not isinstance(groups, int) or isinstance(groups, bool):
        raise ValueError(f"groups must be an int, got {groups!r}")
    if not 1 < groups < in_channels:
        raise ValueError(
            f"groups={groups} must satisfy 1 < groups < in_channels={in_channels} "
            "(groups=1 is an ordinary conv, groups=in_channels a depthwise conv); "
            "pick e.g. 4 or 8 and make the layer wider."
        )
    for what, c in (("in_channels", in_channels), ("out_channels", out_channels)):
        if c % groups:
            raise ValueError(
                f"groups={groups} must divide {what}={c}; use a width that is a "
                f"multiple of {groups}."
            )


class GroupConvBlock(nn.Sequential):
    """3x3 group convolution + BN + ReLU (+ channel shuffle so that groups exchange information).

    Parameters: ``9*C_in*C_out/groups + 2*C_out`` (the shuffle has none).
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 4, shuffle: bool = True
    ):
        check_groups(in_channels, out_channels, groups)
        layers = list(conv_bn_relu(in_channels, out_channels, 3, stride, groups=groups))
        if shuffle:
            layers.append(ChannelShuffle(groups))
        super().__init__(*layers)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``min_value``)."""
    min_value = divisor if min_value is None else min_value
    return max(min_value, int(round(value / divisor)) * divisor)


class _Classifier(nn.Sequential):
    """Global average pool + dropout + fully connected layer."""

    def __init__(self, in_features: int, num_classes: int, dropout: float):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(in_features, num_classes),
        )


# ---------------------------------------------------------------------------
# The food-11 student (<= 100k parameters)
# ---------------------------------------------------------------------------
# (out_channels, stride) of the depthwise-separable blocks after the stride-2 stem.
# 128x128 input -> stem 64 -> 32 -> 16 -> 8 -> 4 before global pooling.
FOOD_STUDENT_STEM = 32
FOOD_STUDENT_BLOCKS: Tuple[Tuple[int, int], ...] = (
    (64, 2),
    (64, 1),
    (96, 2),
    (96, 1),
    (128, 2),
    (128, 1),
    (256, 2),
)


class MobileStudent(nn.Module):
    """MobileNet-style network: ordinary stem conv, depthwise-separable blocks, pooled FC head."""

    def __init__(
        self,
        num_classes: int = 11,
        stem: int = FOOD_STUDENT_STEM,
        blocks: Sequence[Tuple[int, int]] = FOOD_STUDENT_BLOCKS,
        width: float = 1.0,
        dropout: float = 0.2,
    ):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width multiplier must be > 0, got {width!r}")
        c = make_divisible(stem * width)
        self.stem = conv_bn_relu(3, c, 3, stride=2)
        layers = []
        for out, stride in blocks:
            out = make_divisible(out * width)
            layers.append(DepthwiseSeparable(c, out, stride))
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = _Classifier(c, num_classes, dropout)
        self.num_features = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.stem(x)))


@register("food_student")
def food_student(
    num_classes: int = 11, width: float = 1.0, dropout: float = 0.2, budget: int = FOOD_STUDENT_BUDGET
) -> MobileStudent:
    """The part-5 student: about 95k parameters at ``width=1.0`` (11 classes).

    ``width`` multiplies every channel count (rounded to multiples of 8). A width whose
    model exceeds ``budget`` parameters raises ``ValueError``.
    """
    model = MobileStudent(num_classes, width=width, dropout=dropout)
    check_param_budget(model, budget, f"food_student(width={width})")
    return model


# ---------------------------------------------------------------------------
# The architecture comparison: one topology, three kinds of convolution
# ---------------------------------------------------------------------------
# (channel multiplier of `width`, stride) for the seven blocks after the stride-2 stem.
COMPARISON_STAGES: Tuple[Tuple[int, int], ...] = (
    (1, 1),
    (2, 2),
    (2, 1),
    (4, 2),
    (4, 1),
    (8, 2),
    (8, 1),
)
KINDS = ("conv", "dwsep", "group")


class ComparisonNet(nn.Module):
    """Stem + seven blocks of one ``kind`` + classifier.

    ``width`` is the channel count of the first stage (a float: every stage's channels
    are ``round(width * multiplier)``, rounded to a multiple of ``groups`` for group
    convolutions, so parameter counts can be matched finely). The stem is an ordinary
    3x3 conv in all three nets: with 3 input channels there is nothing to group.
    """

    def __init__(
        self,
        kind: str,
        num_classes: int = 11,
        width: float = 16,
        groups: int = 4,
        dropout: float = 0.2,
        stages: Sequence[Tuple[int, int]] = COMPARISON_STAGES,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        if kind == "group":
            if isinstance(groups, bool) or not isinstance(groups, int) or groups < 2:
                raise ValueError(
                    f"group_net needs an int groups >= 2 (1 is an ordinary conv), got {groups!r}; "
                    "try 4 or 8"
                )
            divisor, min_channels = groups, 2 * groups  # every stage: groups < channels
        else:
            divisor, min_channels = 1, 1
        channels = [make_divisible(width * m, divisor, min_channels) for m, _ in stages]
        self.kind, self.groups, self.channels = kind, groups if kind == "group" else 1, channels

        c = channels[0]
        self.stem = conv_bn_relu(3, c, 3, stride=2)
        layers = []
        for out, (_, stride) in zip(channels, stages):
            if kind == "conv":
                layers.append(ConvBlock(c, out, stride))
            elif kind == "dwsep":
                layers.append(DepthwiseSeparable(c, out, stride))
            else:
                layers.append(GroupConvBlock(c, out, stride, groups))
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = _Classifier(c, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.stem(x)))


# Default widths = match_width(kind, 250_000, num_classes=11): about 250k parameters
# (1 MB of float32) each. Re-run match_width for another class count or target.
@register("conv_net")
def conv_net(num_classes: int = 11, width: float = 14.6875, dropout: float = 0.2) -> ComparisonNet:
    """Comparison net with ordinary 3x3 convolutions."""
    return ComparisonNet("conv", num_classes, width=width, dropout=dropout)


@register("dwsep_net")
def dwsep_net(num_classes: int = 11, width: float = 42.75, dropout: float = 0.2) -> ComparisonNet:
    """Comparison net with depthwise-separable blocks."""
    return ComparisonNet("dwsep", num_classes, width=width, dropout=dropout)


@register("group_net")
def group_net(
    num_classes: int = 11, width: float = 29.265625, groups: int = 4, dropout: float = 0.2
) -> ComparisonNet:
    """Comparison net with 3x3 group convolutions (``1 < groups < channels``) + channel shuffle."""
    return ComparisonNet("group", num_classes, width=width, groups=groups, dropout=dropout)


def _comparison_params(kind: str, width: float, num_classes: int, **kw) -> int:
    # Built on the meta device: shapes only, no memory, fast enough for a search.
    with torch.device("meta"):
        return count_params(ComparisonNet(kind, num_classes, width=width, **kw))


def match_width(
    kind: str,
    target_params: int = 250_000,
    num_classes: int = 11,
    tol: float = 1 / 64,
    **kw,
) -> float:
    """The ``width`` whose ``<kind>`` comparison net has the parameter count closest to target.

    ``kind`` is ``"conv"``, ``"dwsep"`` or ``"group"`` (the ``_net`` suffix is accepted);
    extra options (``groups``, ``dropout``) go to the net. The count grows with
    ``width`` (as a step function, channels being integers), so a bisection down to
    ``tol`` channels finds the two widths either side of the target and keeps the
    closer. Build the net with ``build_model(f"{kind}_net", num_classes, width=w)``.
    """
    kind = kind[:-4] if kind.endswith("_net") else kind
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (or with '_net'), got {kind!r}")
    if not isinstance(target_params, int) or target_params <= 0:
        raise ValueError(f"target_params must be a positive int, got {target_params!r}")

    def n(w):
        return _comparison_params(kind, w, num_classes, **kw)

    lo, hi = 1.0, 2.0
    if n(lo) >= target_params:
        return lo
    while n(hi) < target_params:
        lo, hi = hi, hi * 2
        if hi > 1e5:
            raise ValueError(f"no width reaches {target_params:,} parameters for {kind}_net")
    while hi - lo > tol:  # invariant: n(lo) < target <= n(hi)
        mid = (lo + hi) / 2
        if n(mid) < target_params:
            lo = mid
        else:
            hi = mid
    return lo if target_params - n(lo) < n(hi) - target_params else hi


__all__ = [
    "conv_bn_relu",
    "ConvBlock",
    "DepthwiseSeparable",
    "GroupConvBlock",
    "ChannelShuffle",
    "check_groups",
    "make_divisible",
    "MobileStudent",
    "ComparisonNet",
    "food_student",
    "conv_net",
    "dwsep_net",
    "group_net",
    "match_width",
    "FOOD_STUDENT_BUDGET",
]
