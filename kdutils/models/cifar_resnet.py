"""CIFAR-style residual networks built from shared blocks: ResNet, SE, CBAM, WRN, proposal.

One family, one set of blocks. Every network here is a :class:`CifarResNet`: a 3x3
stem convolution with stride 1 (no max-pool: a 32x32 image is already small), a few
stages of residual blocks whose first block may halve the resolution, global average
pooling and one linear layer ``fc``. What changes between the registered models is
only the arguments:

==================  ============================================================
``block``           :class:`BasicBlock` (two 3x3 convs) or :class:`Bottleneck`
                    (1x1 reduce, 3x3, 1x1 expand x4), as in He et al. (2016a).
``preact``          post-activation (conv-BN-ReLU, He et al. 2016a) or
                    pre-activation (BN-ReLU-conv, He et al. 2016b "Identity
                    mappings"), which keeps the shortcut path free of ReLUs.
``attention``       ``None``, ``"se"``, ``"cbam"`` or any ``f(channels) -> Module``:
                    a unit that rescales the residual branch *before* the
                    addition, as in Hu et al. (2018) and Woo et al. (2018).
``layers/widths``   blocks and channels per stage: ResNet-18 is (2, 2, 2, 2) x
                    (64, 128, 256, 512); a WRN-d-k is 3 stages of (d-4)/6 blocks
                    with (16k, 32k, 64k) channels (Zagoruyko & Komodakis 2016).
==================  ============================================================

So SE-ResNet-18 is ResNet-18 with ``attention="se"``, not a copied class, and an
ablation (``ABLATION_PATH``) can change one argument at a time.

Conventions
-----------
* Projection shortcuts (He et al.'s "option B"): when a block changes the
  resolution or the width, the shortcut is a 1x1 convolution (followed by BN in
  post-activation blocks; in pre-activation blocks it reads the pre-activated input
  and has no BN, as in the WRN code). Otherwise the shortcut is the identity.
* Pre-activation networks end with BN-ReLU before pooling (He et al. 2016b; some
  popular CIFAR re-implementations leave it out).
* ``drop_rate`` puts dropout before the last convolution of the residual branch
  (between the two 3x3 convs of a basic block, as in WRN).
* ``zero_init_residual`` makes every residual branch start as zero, so each block
  starts as the identity (Goyal et al. 2017): the last BN's scale is zeroed in
  post-activation blocks, the last conv's weights in pre-activation ones (their
  branch ends with a conv).
* Convolutions feeding a BN have no bias.

Parameter cost of the attention units (per block, C = output channels of the
residual branch, r = 16, ``C // r`` rounded down and at least 1):

* SE (Hu et al. 2018): global average pool -> FC C->C/r -> ReLU -> FC C/r->C ->
  sigmoid, FCs with bias: ``2*C*(C//r) + C//r + C`` parameters.
* CBAM (Woo et al. 2018): a channel gate, shared MLP without bias applied to the
  average- and the max-pooled descriptor, summed, sigmoid: ``2*C*(C//r)``; then a
  spatial gate, 7x7 conv (2 -> 1 channels, no bias) over the channel-wise mean and
  max maps, sigmoid: ``2*7*7 = 98``. Total ``2*C*(C//r) + 98``. We follow the
  paper's equations (W0, W1 and f^{7x7} are written without bias terms); the
  authors' released code adds MLP biases and a BatchNorm after the 7x7 conv
  (``C//r + C + 2`` more), which changes nothing of substance.

For ResNet-18 (eight blocks, C = 64, 64, 128, 128, 256, 256, 512, 512) SE adds
89,080 parameters and CBAM adds 87,824 (ResNet-18 itself has 11,220,132 with 100
classes); the tests check these formulas against the built models.

References
----------
* He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016 (2016a).
* He, Zhang, Ren, Sun. Identity mappings in deep residual networks. ECCV 2016 (2016b).
* Zagoruyko, Komodakis. Wide residual networks. BMVC 2016.
* Hu, Shen, Sun. Squeeze-and-excitation networks. CVPR 2018.
* Woo, Park, Lee, Kweon. CBAM: Convolutional block attention module. ECCV 2018.
* Goyal et al. Accurate, large minibatch SGD: training ImageNet in 1 hour. 2017.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Union

import torch
from torch import nn

from . import check_param_budget, register

AttentionSpec = Union[None, str, Callable[[int], nn.Module]]

#: Names registered by this module, in registration order (the tests iterate over it).
MODEL_NAMES: list[str] = []

#: Parameter budget of the proposed architecture (assignment, part 1).
PROPOSAL_PARAM_BUDGET = 30_000_000


def _register(name: str):
    MODEL_NAMES.append(name)
    return register(name)


# --------------------------------------------------------------------------- attention


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation unit (Hu et al. 2018): rescale each channel by a learned gate.

    ``x * sigmoid(W2 relu(W1 avgpool(x) + b1) + b2)`` with W1: C -> C//r and W2: C//r -> C.
    Parameters: ``2*C*(C//r) + C//r + C``.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x).flatten(1)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * gate[:, :, None, None]


class CBAM(nn.Module):
    """Convolutional block attention module (Woo et al. 2018): channel gate, then spatial gate.

    Channel gate: ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one MLP
    (C -> C//r -> C, ReLU, no bias) shared by both descriptors.
    Spatial gate: ``sigmoid(conv7x7([mean_c(x), max_c(x)]))``, 2 -> 1 channels, no bias.
    Parameters: ``2*C*(C//r) + 2*k*k`` (k = 7: ``+ 98``).
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3)))
        mx = self.mlp(x.amax(dim=(2, 3)))
        x = x * torch.sigmoid(avg + mx)[:, :, None, None]
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(maps))


#: Attention units selectable by name; any callable ``f(channels) -> nn.Module`` works too
#: (e.g. ``functools.partial(SqueezeExcitation, reduction=8)``).
ATTENTION_UNITS: Dict[str, Callable[[int], nn.Module]] = {
    "se": SqueezeExcitation,
    "cbam": CBAM,
}


def attention_factory(attention: AttentionSpec) -> Optional[Callable[[int], nn.Module]]:
    """Turn ``None`` / a name / a callable into ``None`` or a unit factory ``f(channels)``."""
    if attention is None or callable(attention):
        return attention
    if isinstance(attention, str) and attention.lower() in ATTENTION_UNITS:
        return ATTENTION_UNITS[attention.lower()]
    raise ValueError(
        f"unknown attention {attention!r}; use None, one of {sorted(ATTENTION_UNITS)}, "
        "or a callable f(channels) -> nn.Module"
    )


# --------------------------------------------------------------------------- blocks


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class _ResidualBlock(nn.Module):
    """What both block types share: shortcut, attention, dropout, forward, zero-init.

    A subclass builds ``self.convs`` (the branch's convolutions, in order) and
    ``self.norms`` (post-activation: the BN after each conv; pre-activation: the BN
    before each conv). The branch is then

    * post-activation: ``conv -> BN -> ReLU -> ... -> conv -> BN``, and
      ``out = ReLU(attention(branch(x)) + shortcut(x))``;
    * pre-activation: ``BN -> ReLU -> conv -> ... -> BN -> ReLU -> conv``, and
      ``out = attention(branch(x)) + shortcut(x)``, the projection shortcut (if any)
      reading the pre-activated input ``ReLU(BN(x))``.

    Dropout, if any, comes just before the last conv.
    """

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        stride: int,
        attention: AttentionSpec,
        preact: bool,
        drop_rate: float,
    ):
        super().__init__()
        self.preact = preact
        needs_projection = stride != 1 or in_planes != out_planes
        if not needs_projection:
            self.shortcut = nn.Identity()
        elif preact:
            self.shortcut = conv1x1(in_planes, out_planes, stride)
        else:
            self.shortcut = nn.Sequential(
                conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes)
            )
        self.projects = needs_projection
        make_attention = attention_factory(attention)
        self.attention = make_attention(out_planes) if make_attention else nn.Identity()
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def _branch_post(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.convs) - 1
        out = x
        for i, (conv, bn) in enumerate(zip(self.convs, self.norms)):
            if i == last:
                out = self.dropout(out)
            out = bn(conv(out))
            if i < last:
                out = self.relu(out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.preact:
            out = self.attention(self._branch_post(x)) + self.shortcut(x)
            return self.relu(out)
        # Pre-activation: the first BN-ReLU is shared by the branch and a projection shortcut.
        last = len(self.convs) - 1
        act = torch.relu(self.norms[0](x))
        shortcut = self.shortcut(act) if self.projects else x
        out = act
        for i, conv in enumerate(self.convs):
            if i > 0:
                out = self.relu(self.norms[i](out))
            if i == last:
                out = self.dropout(out)
            out = conv(out)
        return self.attention(out) + shortcut

    def zero_init_last(self) -> None:
        """Make the residual branch output zero at initialisation (block = identity)."""
        if self.preact:
            nn.init.zeros_(self.convs[-1].weight)
        else:
            nn.init.zeros_(self.norms[-1].weight)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions (He et al. 2016a); the first carries the stride.

    ``planes`` is the output width (``expansion = 1``). Parameters without attention:
    ``9*in*planes + 9*planes^2`` conv weights + BN (2 per channel) + the projection.
    """

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        attention: AttentionSpec = None,
        preact: bool = False,
        drop_rate: float = 0.0,
    ):
        super().__init__(in_planes, planes, stride, attention, preact, drop_rate)
        self.convs = nn.ModuleList([conv3x3(in_planes, planes, stride), conv3x3(planes, planes)])
        bn_widths = (in_planes, planes) if preact else (planes, planes)
        self.norms = nn.ModuleList([nn.BatchNorm2d(c) for c in bn_widths])


class Bottleneck(_ResidualBlock):
    """1x1 reduce -> 3x3 (stride here, as in torchvision "ResNet v1.5") -> 1x1 expand x4.

    ``planes`` is the inner width; the block outputs ``4 * planes`` channels, and the
    attention unit works on those.
    """

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        attention: AttentionSpec = None,
        preact: bool = False,
        drop_rate: float = 0.0,
    ):
        out_planes = planes * self.expansion
        super().__init__(in_planes, out_planes, stride, attention, preact, drop_rate)
        self.convs = nn.ModuleList(
            [
                conv1x1(in_planes, planes),
                conv3x3(planes, planes, stride),
                conv1x1(planes, out_planes),
            ]
        )
        bn_widths = (in_planes, planes, planes) if preact else (planes, planes, out_planes)
        self.norms = nn.ModuleList([nn.BatchNorm2d(c) for c in bn_widths])


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


# --------------------------------------------------------------------------- network


class CifarResNet(nn.Module):
    """Stem (3x3 conv, stride 1) -> stages of residual blocks -> global avg pool -> ``fc``.

    Args:
        block: :class:`BasicBlock`, :class:`Bottleneck`, or ``"basic"`` / ``"bottleneck"``.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        num_classes: outputs of ``fc``.
        widths: channels per stage (the inner width for bottlenecks); stage 1 keeps the
            resolution, every later stage halves it with a stride-2 first block.
        stem_width: channels of the stem conv; defaults to ``widths[0]``.
        attention: ``None``, ``"se"``, ``"cbam"`` or ``f(channels) -> nn.Module``, one
            unit per block on the residual branch.
        preact: pre-activation blocks (He et al. 2016b) and a final BN-ReLU.
        width_mult: multiplies the stem and every stage width (rounded to an int).
        drop_rate: dropout probability inside each residual branch.
        zero_init_residual: start every residual branch at zero (see module doc).
        in_channels: image channels.

    ``forward_features(x)`` returns the output of every stage and the pooled vector,
    for feature-based distillation; ``forward(x)`` returns logits.
    """

    def __init__(
        self,
        block: Union[str, type] = BasicBlock,
        layers: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 100,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: Optional[int] = None,
        attention: AttentionSpec = None,
        preact: bool = False,
        width_mult: float = 1.0,
        drop_rate: float = 0.0,
        zero_init_residual: bool = False,
        in_channels: int = 3,
    ):
        super().__init__()
        if isinstance(block, str):
            if block not in _BLOCKS:
                raise ValueError(f"unknown block {block!r}; use one of {sorted(_BLOCKS)}")
            block = _BLOCKS[block]
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ValueError(
                f"layers {tuple(layers)} and widths {tuple(widths)} must be non-empty, "
                "of the same length, with at least one block per stage"
            )
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        attention_factory(attention)  # validate early, with a clear message

        def scaled(w: int) -> int:
            return max(1, int(round(w * width_mult)))

        stem = scaled(stem_width if stem_width is not None else widths[0])
        widths = [scaled(w) for w in widths]
        self.preact = preact

        # Post-activation stems end with BN-ReLU; pre-activation ones leave that to block 1.
        stem_layers = [conv3x3(in_channels, stem)]
        if not preact:
            stem_layers += [nn.BatchNorm2d(stem), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem_layers)

        stages = []
        in_planes = stem
        for i, (n_blocks, width) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_planes, width, stride, attention, preact, drop_rate))
                in_planes = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final_act = (
            nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU(inplace=True))
            if preact
            else nn.Identity()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = in_planes
        self.fc = nn.Linear(in_planes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, _ResidualBlock):
                    m.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{"stage1": ..., "stageN": ..., "pooled": (B, num_features)}``."""
        feats = {}
        x = self.stem(x)
        for i, stage in enumerate(self.stages, start=1):
            x = stage(x)
            feats[f"stage{i}"] = x
        feats["pooled"] = self.pool(self.final_act(x)).flatten(1)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(self.pool(self.final_act(x)).flatten(1))


# --------------------------------------------------------------------------- factories
# Every factory takes ``num_classes`` and passes ``**options`` on to CifarResNet, so a
# notebook can write e.g. build_model("resnet18", 100, attention="cbam", drop_rate=0.1).


def _resnet(layers, num_classes, block=BasicBlock, **options) -> CifarResNet:
    return CifarResNet(block, layers, num_classes, **options)


@_register("resnet18")
def resnet18(num_classes: int = 100, **options) -> CifarResNet:
    """ResNet-18 for CIFAR (He et al. 2016a): 11,220,132 parameters with 100 classes."""
    return _resnet((2, 2, 2, 2), num_classes, **options)


@_register("resnet34")
def resnet34(num_classes: int = 100, **options) -> CifarResNet:
    """ResNet-34 for CIFAR: basic blocks, (3, 4, 6, 3) per stage, about 21.3M parameters."""
    return _resnet((3, 4, 6, 3), num_classes, **options)


@_register("preact_resnet18")
def preact_resnet18(num_classes: int = 100, **options) -> CifarResNet:
    """Pre-activation ResNet-18 (He et al. 2016b)."""
    options.setdefault("preact", True)
    return _resnet((2, 2, 2, 2), num_classes, **options)


@_register("se_resnet18")
def se_resnet18(num_classes: int = 100, **options) -> CifarResNet:
    """SE-ResNet-18 (Hu et al. 2018): ResNet-18 with an SE unit (r = 16) in every block."""
    options.setdefault("attention", "se")
    return _resnet((2, 2, 2, 2), num_classes, **options)


@_register("cbam_resnet18")
def cbam_resnet18(num_classes: int = 100, **options) -> CifarResNet:
    """CBAM-ResNet-18 (Woo et al. 2018): ResNet-18 with CBAM (r = 16, 7x7) in every block."""
    options.setdefault("attention", "cbam")
    return _resnet((2, 2, 2, 2), num_classes, **options)


# Small networks in the layout used by most CIFAR-100 distillation papers (3 stages,
# He et al.'s CIFAR ResNets and WRNs), so that part 2 can compare with published
# teacher/student pairs (e.g. Tian et al. 2020, "Contrastive representation distillation").


@_register("resnet20")
def resnet20(num_classes: int = 100, **options) -> CifarResNet:
    """He et al.'s CIFAR ResNet-20: 3 stages x 3 basic blocks, 16/32/64 channels (~0.28M).

    Uses projection shortcuts (option B), as most distillation code bases do.
    """
    return _resnet((3, 3, 3), num_classes, widths=(16, 32, 64), **options)


@_register("resnet8x4")
def resnet8x4(num_classes: int = 100, **options) -> CifarResNet:
    """ResNet-8x4: stem 32, 3 stages x 1 basic block, 64/128/256 channels (~1.2M).

    A standard small student of the CIFAR-100 distillation literature (student of
    ResNet-32x4 in Tian et al. 2020).
    """
    return _resnet((1, 1, 1), num_classes, widths=(64, 128, 256), stem_width=32, **options)


def _wrn_layout(depth: int, widen_factor: float) -> dict:
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got {depth}"
        )
    n = (depth - 4) // 6
    widths = tuple(int(round(w * widen_factor)) for w in (16, 32, 64))
    return dict(layers=(n, n, n), widths=widths, stem_width=16)


@_register("wrn")
def wrn(
    num_classes: int = 100, depth: int = 16, widen_factor: float = 8, **options
) -> CifarResNet:
    """Wide ResNet WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis 2016).

    Pre-activation basic blocks, stem 16, three stages of (depth-4)/6 blocks with
    16k/32k/64k channels. WRN-16-8: 11.0M parameters; WRN-28-10: 36.5M.
    """
    options.setdefault("preact", True)
    layout = _wrn_layout(depth, widen_factor)
    return CifarResNet(BasicBlock, num_classes=num_classes, **layout, **options)


@_register("wrn_16_2")
def wrn_16_2(num_classes: int = 100, **options) -> CifarResNet:
    """WRN-16-2, about 0.70M parameters: the < 1M student (student of WRN-40-2 in Tian et al.)."""
    return wrn(num_classes, depth=16, widen_factor=2, **options)


@_register("wrn_40_2")
def wrn_40_2(num_classes: int = 100, **options) -> CifarResNet:
    """WRN-40-2, about 2.2M parameters: a small teacher (or a strong student)."""
    return wrn(num_classes, depth=40, widen_factor=2, **options)


@_register("wrn_28_2")
def wrn_28_2(num_classes: int = 100, **options) -> CifarResNet:
    """WRN-28-2, about 1.5M parameters: between WRN-40-2 and WRN-16-2 in depth, the teacher
    assistant of part 2's TAKD chain (Mirzadeh et al. 2020)."""
    return wrn(num_classes, depth=28, widen_factor=2, **options)


@_register("proposal")
def proposal(
    num_classes: int = 100,
    depth: int = 28,
    widen_factor: float = 8,
    attention: AttentionSpec = "se",
    **options,
) -> CifarResNet:
    """Our design, "SE-WRN-28-8": a pre-activation WRN-28-8 with an SE unit in every block.

    Goal: more than 82 % top-1 on CIFAR-100 in about 2 GPU hours, under 30M parameters.

    Argued from published anchors (CIFAR-100, flip + crop augmentation, 200 epochs):

    * Width pays more than depth on CIFAR (Zagoruyko & Komodakis 2016): WRN-16-8
      (11.0M) reaches about 78 %, WRN-28-10 (36.5M) about 80-81 %, while the
      4-stage ResNet-18 (11.2M) reaches about 76-78 %. Wide 3-stage networks spend
      their width at 32x32 and 16x16, where most of the useful work on small images is.
    * WRN-28-10 is over the 30M budget; WRN-28-8 keeps the depth and 80 % of the width
      (23.4M parameters, 0.64x the compute), losing little accuracy.
    * SE units add about 1 point on CIFAR-100 in Hu et al.'s CIFAR experiments for
      about 0.7 % more parameters here and almost no compute; CBAM's spatial gate
      costs full-resolution work for a smaller gain at 32x32, so SE is the default
      (``attention="cbam"`` is one option away, and the ablation compares them).
    * Pre-activation keeps the shortcut path clean (He et al. 2016b) and is what
      WRN uses.
    * Stronger augmentation takes WRN-28-10 from about 81 % to 83 % (AutoAugment,
      Cubuk et al. 2019); the training recipe (cosine schedule, label smoothing,
      Cutout/TrivialAugment, mixed precision) lives in the notebook, not here.

    Compute: 3.36 GMACs (6.72 GFLOPs) per 32x32 image forward, so one training epoch
    of 50,000 images is about 1.0 PFLOP (forward + backward = 3x forward), 6x a
    ResNet-18 epoch. At 30 TFLOP/s sustained (about what CIFAR ResNet-18 training gets
    from an A100 in bf16, roughly 10 % of its peak) that is about 35 s per epoch, so
    60-100 epochs take 35-60 minutes on an A100 and less on an H100, inside the
    2-hour budget with room for evaluation. 200-epoch schedules would not fit.

    Options: ``depth``, ``widen_factor``, ``attention``, and every
    :class:`CifarResNet` option (``drop_rate``, ``zero_init_residual``, ...). A
    combination over 30M parameters (e.g. ``widen_factor=10``) raises ``ValueError``.
    """
    model = wrn(
        num_classes, depth=depth, widen_factor=widen_factor, attention=attention, **options
    )
    check_param_budget(model, PROPOSAL_PARAM_BUDGET, "proposal")
    return model


# --------------------------------------------------------------------------- ablation

#: From the baseline ResNet-18 to the proposal, one change per row. Part 1 trains each
#: row with the same recipe; "change" says what differs from the row above.
ABLATION_PATH: list[dict] = [
    dict(
        name="ResNet-18",
        model="resnet18",
        options={},
        change="baseline: post-activation basic blocks, 4 stages 64-512 (He et al. 2016a)",
    ),
    dict(
        name="CBAM-ResNet-18",
        model="cbam_resnet18",
        options={},
        change="+ CBAM on every residual branch: channel gate (avg- and max-pooled, r=16) "
        "then a 7x7 spatial gate (Woo et al. 2018)",
    ),
    dict(
        name="SE-ResNet-18",
        model="se_resnet18",
        options={},
        change="CBAM -> SE: channel gate on average-pooled features only (MLP with biases), "
        "no spatial gate (Hu et al. 2018); is the spatial gate worth its cost?",
    ),
    dict(
        name="SE-PreAct-ResNet-18",
        model="preact_resnet18",
        options={"attention": "se"},
        change="post-activation -> pre-activation blocks (He et al. 2016b)",
    ),
    dict(
        name="SE-WRN-16-8",
        model="wrn",
        options={"depth": 16, "widen_factor": 8, "attention": "se"},
        change="layout: 4 stages 64-512 -> 3 wide stages 128/256/512 at 32/16/8 px "
        "(WRN-16-8, about the same parameters, more compute at high resolution)",
    ),
    dict(
        name="SE-WRN-28-8 (proposal)",
        model="proposal",
        options={},
        change="deeper: 2 -> 4 blocks per stage (WRN-28-8)",
    ),
]
