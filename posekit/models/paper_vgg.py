"""The paper's network: VGG-16 with BatchNorm regressing joint coordinates directly."""
from __future__ import annotations

import torch
from torch import nn

from posekit.models.heads import init_regression_output
from posekit.skeleton import NUM_JOINTS

# (out_channels per conv) for each of the 5 VGG-16 blocks; each block ends in MaxPool2d(2).
VGG16_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    """3x3 conv (padding 1) + BatchNorm + ReLU."""
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class PaperVGG(nn.Module):
    """VGG-16-BN backbone + 2-layer FC head, exactly as in the paper's table.

    Input (B,3,S,S) with S = ``input_size`` (224 in the paper); output (B, num_joints*2)
    raw regression values x0,y0,x1,y1,... (normalised coordinates in the input frame).
    At 224x224 with 14 joints the model has 27,583,068 trainable parameters.
    """

    default_input_size = 224
    output_kind = "regression"
    stride = 32

    def __init__(self, num_joints: int = NUM_JOINTS, dropout: float = 0.5, input_size: int = 224):
        super().__init__()
        if input_size <= 0 or input_size % self.stride:
            raise ValueError(f"input_size must be a positive multiple of {self.stride}, got {input_size}")
        self.num_joints = num_joints
        self.input_size = input_size
        blocks, cin = [], 3
        for widths in VGG16_BLOCKS:
            layers: list[nn.Module] = []
            for cout in widths:
                layers += conv_bn_relu(cin, cout)
                cin = cout
            layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
        self.features = nn.Sequential(*blocks)
        side = input_size // self.stride
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin * side * side, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_joints * 2),
        )
        init_regression_output(self.head[-1])  # PyTorch's default init elsewhere; see heads.py

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) -> (B, num_joints*2)."""
        return self.head(self.features(x))
