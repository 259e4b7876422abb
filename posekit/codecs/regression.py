"""Holistic regression (the paper, DeepPose): the head outputs 2 x 14 numbers, each joint's
(x, y) normalised to [0, 1] over the input frame (0 = left/top edge, 1 = right/bottom edge)."""
from __future__ import annotations

import torch

from posekit.skeleton import NUM_JOINTS


class RegressionCodec:
    kind = "regression"
    default_loss = "mse"

    def __init__(self, input_size: int, **_):
        self.input_size = int(input_size)

    def normalise(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) input pixels (pixel centres at integers) -> [0, 1] over the frame."""
        return (keypoints + 0.5) / self.input_size

    def encode(self, keypoints: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training target (B, J, 2) in [0, 1] and per-joint weight (B, J)."""
        return self.normalise(keypoints), mask.float()

    def loss_input(self, output: torch.Tensor) -> torch.Tensor:
        """The head output shaped like :meth:`encode`'s target."""
        return output.reshape(output.shape[0], NUM_JOINTS, 2)

    def decode(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head output (B, 28) -> (keypoints (B, 14, 2) in input pixels, scores (B, 14)).
        Regression has no confidence of its own: scores are 1."""
        xy = self.loss_input(output).float()
        kp = xy * self.input_size - 0.5
        return kp, torch.ones(kp.shape[:2], dtype=kp.dtype, device=kp.device)
