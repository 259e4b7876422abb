"""A small person detector: the ResNet-style backbone and top-down neck of
:class:`~posekit.models.resnet_pose.ResNetPose`, with a CenterNet head (Zhou et al. 2019): five
maps at stride 4, read by :class:`posekit.codecs.center.CenterCodec` (centre logit, log box
size, centre offset). It looks at the whole image, letterboxed to ``input_size``."""
from __future__ import annotations

import math

import torch
from torch import nn

from posekit.models.resnet_pose import ResNetPose


class CenterNetDetector(nn.Module):
    """Outputs (N, 5, S/4, S/4) for inputs (N, 3, S, S)."""

    default_input_size = 256
    output_kind = "center"

    def __init__(self, input_size: int = 256, width: int = 16, depths: tuple[int, ...] | list[int] = (1, 1, 2, 1),
                 neck: int = 48, prior: float = 0.05):
        super().__init__()
        if not 0 < prior < 1:
            raise ValueError(f"centernet_detector: prior must be in (0, 1), got {prior}")
        self.input_size = input_size
        self.net = ResNetPose(num_joints=5, input_size=input_size, width=width, depths=depths, neck=neck, out_stride=4)
        with torch.no_grad():  # the centre logit starts at the prior probability of a person (focal-loss init)
            self.net.head[-1].bias[0] = -math.log((1 - prior) / prior)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
