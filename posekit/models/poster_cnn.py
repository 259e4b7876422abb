"""The poster's small network: an 11-layer CNN with batch normalisation for 96x96 input."""
from __future__ import annotations

import torch
from torch import nn

from posekit.models.heads import init_regression_output
from posekit.skeleton import NUM_JOINTS


class PosterCNN(nn.Module):
    """11 weight layers (8 conv + 3 linear) regressing joint coordinates.

    From the poster: 11 layers, batch normalisation, 96x96 input, Xavier initialisation,
    direct coordinate regression. The poster gives no layer table, so the rest is our
    choice: four blocks of two 3x3 conv+BN+ReLU each followed by MaxPool2d(2), with
    channels w,w | 2w,2w | 4w,4w | 8w,8w (w = ``width``, 32 by default), then
    flatten (8w * (S/16)^2) -> 16w -> 16w -> num_joints*2 with ReLU + Dropout between
    (16w = 512 for the default width), Xavier-uniform weights, zero biases, BN weight 1 / bias 0.
    Output (B, num_joints*2): raw x0,y0,x1,y1,... normalised coordinates in the input frame.
    """

    default_input_size = 96
    output_kind = "regression"
    stride = 16

    def __init__(self, num_joints: int = NUM_JOINTS, dropout: float = 0.3, input_size: int = 96,
                 width: int = 32, batch_norm: bool = True):
        super().__init__()
        if input_size <= 0 or input_size % self.stride:
            raise ValueError(f"input_size must be a positive multiple of {self.stride}, got {input_size}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.num_joints = num_joints
        self.input_size = input_size
        layers: list[nn.Module] = []
        cin = 3
        for mult in (1, 2, 4, 8):
            cout = width * mult
            for _ in range(2):
                norm = nn.BatchNorm2d(cout) if batch_norm else nn.Identity()
                layers += [nn.Conv2d(cin, cout, 3, padding=1), norm, nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side, hidden = input_size // self.stride, 16 * width
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cin * side * side, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_joints * 2),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform conv/linear weights, zero biases; BN weight 1, bias 0; the output layer
        then starts at the frame centre (:func:`init_regression_output`, our choice)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        init_regression_output(self.head[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) -> (B, num_joints*2)."""
        return self.head(self.features(x))
