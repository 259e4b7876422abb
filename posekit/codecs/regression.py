"""Holistic regression (the paper, DeepPose): the head outputs 2 x 14 numbers, each joint's
(x, y) normalised to [0, 1] over the input frame (0 = left/top edge, 1 = right/bottom edge)."""
from __future__ import annotations

import torch

from posekit.skeleton import NUM_JOINTS


class RegressionCodec:
    kind = "regression"

    def __init__(self, input_size: int):
        self.input_size = int(input_size)

    def encode(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, 14, 2) input pixels (pixel centres at integers) -> (B, 14, 2) in [0, 1]."""
        return (keypoints + 0.5) / self.input_size

    def decode(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head output (B, 28) -> (keypoints (B, 14, 2) in input pixels, scores (B, 14)).
        Regression has no confidence of its own: scores are 1."""
        xy = output.reshape(output.shape[0], NUM_JOINTS, 2).float()
        kp = xy * self.input_size - 0.5
        return kp, torch.ones(kp.shape[:2], dtype=kp.dtype, device=kp.device)

    def loss_target(self, output: torch.Tensor) -> torch.Tensor:
        """The head output in the encoded space, shaped like :meth:`encode`'s result."""
        return output.reshape(output.shape[0], NUM_JOINTS, 2)
