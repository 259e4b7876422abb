"""Heatmaps (SimpleBaselines, Xiao et al. 2018): one Gaussian per joint on a grid of cells
``stride`` input pixels apart, decoded by arg-max plus a sub-pixel step (DARK, Zhang et al.
2020: a second-order Taylor step on the log heatmap); and integral regression (Sun et al. 2018),
the same maps decoded by a softmax expectation.

Legend: N images, K joints, S input side, H = W = S / stride cells."""
from __future__ import annotations

import torch

from posekit.codecs.base import from_unit, to_unit
from posekit.skeleton import FLIP_PERM


def input_to_grid(xy: torch.Tensor, stride: int) -> torch.Tensor:
    """Input pixels -> heatmap cells (both with pixel centres at integers)."""
    return from_unit(to_unit(xy, stride), 1)


def grid_to_input(xy: torch.Tensor, stride: int) -> torch.Tensor:
    """Heatmap cells -> input pixels (inverse of :func:`input_to_grid`)."""
    return from_unit(to_unit(xy, 1), stride)


class HeatmapCodec:
    """Gaussian heatmaps; outputs (N, K, H, W)."""

    kind = "heatmap"
    is_heatmap = True
    default_loss = "mse"

    def __init__(self, input_size: int, stride: int = 4, sigma: float = 2.0):
        if stride not in (1, 2, 4, 8, 16) or input_size % stride:
            raise ValueError(f"heatmap codec: stride must be 1, 2, 4, 8 or 16 and divide the input size "
                             f"{input_size}, got {stride}")
        if not 0 < sigma <= 32:
            raise ValueError(f"heatmap codec: sigma must be in (0, 32] cells, got {sigma}")
        self.input_size, self.stride, self.sigma = int(input_size), int(stride), float(sigma)
        self.size = self.input_size // self.stride

    def unflip(self, output: torch.Tensor) -> torch.Tensor:
        """Maps (N, K, H, W) of the horizontally mirrored input, mapped back to the original's frame:
        cell i of a mirrored map is cell W - 1 - i of the original (the grid is centre-aligned), and
        left/right joints swap."""
        return torch.flip(output, dims=[3])[:, torch.as_tensor(FLIP_PERM, device=output.device)]

    def encode(self, keypoints: torch.Tensor, mask: torch.Tensor, teacher: torch.Tensor | None = None,
               teacher_mask: torch.Tensor | None = None, teacher_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: keypoints (N, K, 2) input pixels, mask (N, K). Returns Gaussian heatmaps
        (N, K, H*W) with peak 1 at each joint, and weights (N, K): 0 for unannotated joints and
        joints outside the frame.

        Knowledge distillation (soft targets, Hinton et al. 2015): with a ``teacher``'s estimate
        (N, K, 2) of the joints it trusts (``teacher_mask`` (N, K)), a joint's target is the
        labels' Gaussian and the teacher's mixed at ``teacher_weight``; a joint only the teacher
        places (unannotated in the labels) gets the teacher's Gaussian at weight ``teacher_weight``."""
        hm, weight = self._gaussians(keypoints, mask)
        if teacher is None or teacher_weight <= 0:
            return hm, weight
        thm, tweight = self._gaussians(teacher, teacher_mask)
        both, only_t = (weight > 0) & (tweight > 0), (weight == 0) & (tweight > 0)
        w = float(teacher_weight)
        hm = torch.where(both[..., None], (1 - w) * hm + w * thm, torch.where(only_t[..., None], thm, hm))
        return hm, torch.where(only_t, tweight * w, weight)

    def _gaussians(self, keypoints: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = input_to_grid(keypoints.float(), self.stride)  # (B, J, 2)
        r = torch.arange(self.size, device=keypoints.device, dtype=torch.float32)
        gx = torch.exp(-((r[None, None, :] - g[..., 0:1]) ** 2) / (2 * self.sigma**2))  # (B, J, W)
        gy = torch.exp(-((r[None, None, :] - g[..., 1:2]) ** 2) / (2 * self.sigma**2))  # (B, J, H)
        hm = gy[..., :, None] * gx[..., None, :]
        inside = ((g > -0.5) & (g < self.size - 0.5)).all(-1)
        weight = mask.float() * inside.float()
        return hm.flatten(2), weight

    def loss_input(self, output: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) -> (N, K, H*W), like the target."""
        return output.flatten(2)

    def decode(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, H, W) heatmaps -> (keypoints (N, K, 2) input pixels, scores (N, K): peak values)."""
        hm = output.float()
        b, j, h, w = hm.shape
        flat = hm.flatten(2)
        score, idx = flat.max(-1)
        x, y = (idx % w).float(), torch.div(idx, w, rounding_mode="floor").float()
        # DARK: take logs, one Newton step of the 2-D quadratic (a Gaussian is a quadratic in log
        # space). The expansion point is the arg-max moved one cell inwards at the border, so every
        # neighbour used is a real cell. (DARK also blurs the heatmap first; a blur biases the
        # border cells, and heatmaps trained against Gaussians are smooth already.)
        xc, yc = x.long().clamp(1, max(1, w - 2)), y.long().clamp(1, max(1, h - 2))
        # the 3x3 neighbourhood of every expansion point, gathered at once: (N, K, 3 rows, 3 columns)
        step = torch.arange(-1, 2, device=hm.device)
        rows = (yc[..., None] + step).clamp(0, h - 1)
        cols = (xc[..., None] + step).clamp(0, w - 1)
        idx = (rows[..., :, None] * w + cols[..., None, :]).flatten(2)
        p = torch.log(flat.gather(-1, idx).clamp_min(1e-10)).view(b, j, 3, 3)
        c = p[..., 1, 1]
        dx = 0.5 * (p[..., 1, 2] - p[..., 1, 0])
        dy = 0.5 * (p[..., 2, 1] - p[..., 0, 1])
        dxx = p[..., 1, 2] - 2 * c + p[..., 1, 0]
        dyy = p[..., 2, 1] - 2 * c + p[..., 0, 1]
        dxy = 0.25 * (p[..., 2, 2] - p[..., 2, 0] - p[..., 0, 2] + p[..., 0, 0])
        det = dxx * dyy - dxy**2
        ok = (det > 1e-12) & (dxx < 0) & (dyy < 0) & (w >= 3) & (h >= 3)
        safe = torch.where(ok, det, torch.ones_like(det))
        nx = xc.float() - (dyy * dx - dxy * dy) / safe
        ny = yc.float() - (dxx * dy - dxy * dx) / safe
        # keep the refined point within one cell of the arg-max
        x = torch.where(ok, torch.minimum(torch.maximum(nx, x - 1), x + 1), x)
        y = torch.where(ok, torch.minimum(torch.maximum(ny, y - 1), y + 1), y)
        return grid_to_input(torch.stack([x, y], -1), self.stride), score


class IntegralCodec(HeatmapCodec):
    """Integral regression (Sun et al. 2018; DSNT-like): the same heatmap head, decoded by the
    expectation of a softmax over the grid, trained with an L1 loss on the coordinates."""

    kind = "integral"
    default_loss = "l1"

    def __init__(self, input_size: int, stride: int = 4, beta: float = 1.0):
        super().__init__(input_size, stride)
        if not 0 < beta <= 100:
            raise ValueError(f"integral codec: beta must be in (0, 100], got {beta}")
        self.beta = float(beta)

    def encode(self, keypoints: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: keypoints (N, K, 2) input pixels, mask (N, K). Returns (target (N, K, 2) in [0, 1],
        weight (N, K))."""
        return to_unit(keypoints.float(), self.input_size), mask.float()

    def _expect(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, j, h, w = output.shape
        p = torch.softmax(self.beta * output.float().flatten(2), -1).reshape(b, j, h, w)
        r = torch.arange(w, device=output.device, dtype=torch.float32)
        ex = (p.sum(2) * r).sum(-1)
        ey = (p.sum(3) * torch.arange(h, device=output.device, dtype=torch.float32)).sum(-1)
        return torch.stack([ex, ey], -1), p.flatten(2).max(-1).values

    def loss_input(self, output: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) logits -> the expected positions (N, K, 2) in [0, 1]."""
        xy, _ = self._expect(output)
        return to_unit(grid_to_input(xy, self.stride), self.input_size)

    def decode(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, H, W) logits -> (keypoints (N, K, 2) input pixels, scores (N, K): the softmax peaks)."""
        xy, score = self._expect(output)
        return grid_to_input(xy, self.stride), score
