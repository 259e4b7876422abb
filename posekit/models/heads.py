"""Pieces shared by model heads."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def init_regression_output(layer: nn.Linear, weight_scale: float = 0.1, centre: float = 0.5) -> None:
    """Start a coordinate-regression output layer at the frame centre: bias = ``centre`` (the
    middle of the [0, 1] normalised frame) and the existing weights scaled by ``weight_scale``.
    Without this, a freshly initialised head predicts coordinates of magnitude ~1 and the first
    epochs are spent pulling them back into the frame (measured on LSP: val MSE 0.065 vs 0.022
    after one epoch of the poster recipe)."""
    layer.weight.mul_(weight_scale)
    layer.bias.fill_(centre)
