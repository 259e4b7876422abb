"""Holistic regression (DeepPose, Toshev & Szegedy 2014; the paper): the head outputs 2 x K
numbers, each joint's (x, y) in [0, 1] over the input frame (:func:`~posekit.codecs.base.to_unit`)."""
from __future__ import annotations

import torch

from posekit.codecs.base import from_unit, to_unit
from posekit.skeleton import FLIP_PERM, NUM_JOINTS


class RegressionCodec:
    """Coordinates as the training target. Regression has no confidence: every score is 1."""

    kind = "regression"
    is_heatmap = False
    default_loss = "mse"

    def __init__(self, input_size: int):
        self.input_size = int(input_size)

    def encode(self, keypoints: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: keypoints (N, K, 2) input pixels, mask (N, K). Returns (target (N, K, 2) in
        [0, 1], weight (N, K))."""
        return to_unit(keypoints.float(), self.input_size), mask.float()

    def loss_input(self, output: torch.Tensor) -> torch.Tensor:
        """The head output (N, 2K) shaped like :meth:`encode`'s target (N, K, 2)."""
        return output.reshape(output.shape[0], NUM_JOINTS, 2)

    def decode(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head output (N, 2K) -> (keypoints (N, K, 2) input pixels, scores (N, K), all 1)."""
        kp = from_unit(self.loss_input(output).float(), self.input_size)
        return kp, torch.ones(kp.shape[:2], dtype=kp.dtype, device=kp.device)

    def unflip(self, output: torch.Tensor) -> torch.Tensor:
        """The output of the horizontally mirrored input, mapped back to the original's frame:
        x mirrored (x -> S - 1 - x in pixels, u -> 1 - u in [0, 1]) and left/right joints swapped."""
        xy = self.loss_input(output).clone()
        xy[..., 0] = 1 - xy[..., 0]
        return xy[:, torch.as_tensor(FLIP_PERM, device=output.device)].reshape(output.shape)
