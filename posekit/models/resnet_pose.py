"""A compact ResNet-style backbone with a light top-down neck, for heatmap / integral heads.

Stem (stride 2) -> 4 stages of BasicBlocks at strides 4, 8, 16, 32 (widths w, 2w, 4w, 8w;
``depths`` blocks each) -> top-down upsampling with lateral 1x1 convs back to ``out_stride``
(4 by default) -> a 1x1 conv to one map per joint. Width and depth come from the config. Plain
PyTorch, CPU-friendly (3x3 convs, BN, ReLU; BN folds into the convs at export).

``zero_init_residual`` starts every block's last BN scale at 0, so each block begins as the
identity (as in torchvision's ResNet). With ``train.init_from`` this grows a trained model: the
blocks that exist in the checkpoint take its weights, the added ones start as the identity, and
the grown network computes exactly what the checkpoint did before its first step."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posekit.skeleton import NUM_JOINTS


def _conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(_conv_bn(cin, cout, 3, stride), _conv_bn(cout, cout, 3, 1, relu=False))
        self.skip = None if stride == 1 and cin == cout else _conv_bn(cin, cout, 1, stride, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + (x if self.skip is None else self.skip(x)), inplace=True)


class ResNetPose(nn.Module):
    """Outputs (B, num_joints, S/out_stride, S/out_stride) maps for the heatmap/integral codecs."""

    default_input_size = 128
    output_kind = "heatmap"

    def __init__(self, num_joints: int = NUM_JOINTS, input_size: int = 128, width: int = 32,
                 depths: tuple[int, ...] | list[int] = (2, 2, 2, 2), neck: int = 64, out_stride: int = 4,
                 zero_init_residual: bool = False):
        super().__init__()
        if len(depths) != 4 or min(depths) < 1:
            raise ValueError("resnet_pose: depths must be 4 positive integers")
        if out_stride not in (4, 8, 16):
            raise ValueError("resnet_pose: out_stride must be 4, 8 or 16")
        if input_size % 32:
            raise ValueError(f"resnet_pose: input_size must be a multiple of 32, got {input_size}")
        self.input_size, self.num_joints, self.stride = input_size, num_joints, out_stride
        self.stem = nn.Sequential(_conv_bn(3, width // 2, 3, 2), _conv_bn(width // 2, width, 3, 1))
        widths = [width, width * 2, width * 4, width * 8]
        stages, cin = [], width
        for w, d in zip(widths, depths):
            blocks = [BasicBlock(cin, w, 2)] + [BasicBlock(w, w) for _ in range(d - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.stages = nn.ModuleList(stages)
        n_lat = {4: 4, 8: 3, 16: 2}[out_stride]  # stages whose outputs feed the top-down path
        self.laterals = nn.ModuleList([nn.Conv2d(w, neck, 1) for w in widths[-n_lat:]])
        self.smooth = nn.ModuleList([_conv_bn(neck, neck, 3) for _ in range(n_lat - 1)])
        self.head = nn.Sequential(_conv_bn(neck, neck, 3), nn.Conv2d(neck, num_joints, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.head[-1].weight, std=0.001)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.body[-1][1].weight)  # the last BN's scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        feats = feats[-len(self.laterals):]
        y = self.laterals[-1](feats[-1])
        for i in range(len(self.laterals) - 2, -1, -1):
            y = F.interpolate(y, scale_factor=2, mode="nearest") + self.laterals[i](feats[i])
            y = self.smooth[i](y)
        return self.head(y)
