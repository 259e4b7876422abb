"""Heatmaps (SimpleBaselines-style): one Gaussian per joint on a grid at ``stride`` pixels of the
input; decoded by arg-max plus a sub-pixel refinement (DARK, Zhang et al. 2020: a second-order
Taylor step on the log heatmap)."""
from __future__ import annotations

import torch


def input_to_grid(xy: torch.Tensor, stride: int) -> torch.Tensor:
    """Input pixels -> heatmap cells (both with pixel centres at integers)."""
    return (xy + 0.5) / stride - 0.5


def grid_to_input(xy: torch.Tensor, stride: int) -> torch.Tensor:
    return (xy + 0.5) * stride - 0.5


class HeatmapCodec:
    kind = "heatmap"
    default_loss = "mse"

    def __init__(self, input_size: int, stride: int = 4, sigma: float = 2.0, **_):
        if input_size % stride:
            raise ValueError(f"heatmap codec: input size {input_size} is not a multiple of stride {stride}")
        self.input_size, self.stride, self.sigma = int(input_size), int(stride), float(sigma)
        self.size = self.input_size // self.stride

    def encode(self, keypoints: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaussian heatmaps (B, J, H*W) with peak 1 at each joint, and per-joint weights (B, J):
        0 for unannotated joints and for joints outside the frame."""
        g = input_to_grid(keypoints.float(), self.stride)  # (B, J, 2)
        r = torch.arange(self.size, device=keypoints.device, dtype=torch.float32)
        gx = torch.exp(-((r[None, None, :] - g[..., 0:1]) ** 2) / (2 * self.sigma**2))  # (B, J, W)
        gy = torch.exp(-((r[None, None, :] - g[..., 1:2]) ** 2) / (2 * self.sigma**2))  # (B, J, H)
        hm = gy[..., :, None] * gx[..., None, :]
        inside = ((g > -0.5) & (g < self.size - 0.5)).all(-1)
        weight = mask.float() * inside.float()
        return hm.flatten(2), weight

    def loss_input(self, output: torch.Tensor) -> torch.Tensor:
        return output.flatten(2)

    def decode(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, J, H, W) heatmaps -> (keypoints (B, J, 2) input pixels, scores = peak values)."""
        hm = output.float()
        b, j, h, w = hm.shape
        flat = hm.flatten(2)
        score, idx = flat.max(-1)
        x, y = (idx % w).float(), torch.div(idx, w, rounding_mode="floor").float()
        # DARK: take logs, one Newton step of the 2-D quadratic (a Gaussian is a quadratic in log
        # space). The expansion point is the arg-max moved one cell inwards at the border, so every
        # neighbour used is a real cell. (DARK also blurs the heatmap first; a blur biases the
        # border cells, and heatmaps trained against Gaussians are smooth already.)
        lg = torch.log(hm.clamp_min(1e-10))
        xc, yc = x.long().clamp(1, max(1, w - 2)), y.long().clamp(1, max(1, h - 2))
        bi = torch.arange(b, device=hm.device)[:, None].expand(b, j)
        ji = torch.arange(j, device=hm.device)[None, :].expand(b, j)

        def at(dy, dx):
            return lg[bi, ji, (yc + dy).clamp(0, h - 1), (xc + dx).clamp(0, w - 1)]

        c = at(0, 0)
        dx = 0.5 * (at(0, 1) - at(0, -1))
        dy = 0.5 * (at(1, 0) - at(-1, 0))
        dxx = at(0, 1) - 2 * c + at(0, -1)
        dyy = at(1, 0) - 2 * c + at(-1, 0)
        dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
        det = dxx * dyy - dxy**2
        ok = (det > 1e-12) & (dxx < 0) & (dyy < 0) & (w >= 3) & (h >= 3)
        safe = torch.where(ok, det, torch.ones_like(det))
        nx = xc.float() - (dyy * dx - dxy * dy) / safe
        ny = yc.float() - (dxx * dy - dxy * dx) / safe
        # keep the refined point within one cell of the arg-max
        x = torch.where(ok, torch.minimum(torch.maximum(nx, x - 1), x + 1), x)
        y = torch.where(ok, torch.minimum(torch.maximum(ny, y - 1), y + 1), y)
        ox = oy = 0.0
        xy = torch.stack([x + ox, y + oy], -1)
        return grid_to_input(xy, self.stride), score


class IntegralCodec(HeatmapCodec):
    """Integral regression (Sun et al. 2018; DSNT-like): the same heatmap head, decoded by the
    expectation of a softmax over the grid, trained with an L1 loss on the coordinates."""

    kind = "integral"
    default_loss = "l1"

    def __init__(self, input_size: int, stride: int = 4, beta: float = 1.0, **_):
        super().__init__(input_size, stride)
        self.beta = float(beta)

    def encode(self, keypoints: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (keypoints.float() + 0.5) / self.input_size, mask.float()

    def _expect(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, j, h, w = output.shape
        p = torch.softmax(self.beta * output.float().flatten(2), -1).reshape(b, j, h, w)
        r = torch.arange(w, device=output.device, dtype=torch.float32)
        ex = (p.sum(2) * r).sum(-1)
        ey = (p.sum(3) * torch.arange(h, device=output.device, dtype=torch.float32)).sum(-1)
        return torch.stack([ex, ey], -1), p.flatten(2).max(-1).values

    def loss_input(self, output: torch.Tensor) -> torch.Tensor:
        xy, _ = self._expect(output)
        return (grid_to_input(xy, self.stride) + 0.5) / self.input_size

    def decode(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xy, score = self._expect(output)
        return grid_to_input(xy, self.stride), score
