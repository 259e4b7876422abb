"""People as points (CenterNet, Zhou et al. 2019, "Objects as Points"): a person is the peak of a
centre heatmap, with its box size and the centre's sub-cell offset regressed at that cell.

Legend: N images, P people, S input side (pixels), H = W = S / stride cells. Boxes are
(x, y, w, h) in input pixels; outputs are (N, 5, H, W): centre logit, log width and log height
(in cells), x and y offset of the centre within its cell. Box coordinates are in the frame of
keypoints (pixel centres at integers)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from posekit.codecs.base import from_unit, to_unit


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """The radius (cells) by which a box's corners may move and keep ``min_overlap`` IoU with it
    (CenterNet's rule, from CornerNet)."""
    a1, b1, c1 = 1, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return max(0.0, min(r1, r2, r3))


class CenterCodec:
    """Person boxes <-> centre heatmap + size + offset targets, and back (with NMS)."""

    kind = "center"
    is_heatmap = False
    channels = 5

    def __init__(self, input_size: int, stride: int = 4, min_overlap: float = 0.7):
        if stride not in (2, 4, 8) or input_size % stride:
            raise ValueError(f"center codec: stride must be 2, 4 or 8 and divide the input size {input_size}")
        if not 0 < min_overlap < 1:
            raise ValueError(f"center codec: min_overlap must be in (0, 1), got {min_overlap}")
        self.input_size, self.stride, self.min_overlap = int(input_size), int(stride), float(min_overlap)
        self.size = self.input_size // self.stride

    def unflip(self, output: torch.Tensor) -> torch.Tensor:
        """Outputs (N, 5, H, W) of the horizontally mirrored input, mapped back to the original's
        frame: cell i of a mirrored map is cell W - 1 - i of the original (the grid is
        centre-aligned), so the maps are mirrored and the x offsets change sign."""
        out = torch.flip(output, dims=[3]).clone()
        out[:, 3] = -out[:, 3]
        return out

    def flip_average(self, output: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
        """The flip test (CenterNet): outputs (N, 5, H, W) of the inputs and of their mirrors, fused
        into outputs (N, 5, H, W) of the inputs. The centre heatmaps are averaged as
        probabilities (returned as logits), the log sizes and the offsets as they are. The result
        is exactly mirror-symmetric: an image's mirror is answered with its boxes mirrored."""
        out, back = output.float(), self.unflip(mirrored.float())
        fused = (out + back) / 2
        p = (torch.sigmoid(out[:, 0]) + torch.sigmoid(back[:, 0])) / 2
        fused[:, 0] = torch.logit(p.clamp(1e-6, 1 - 1e-6))
        return fused

    def encode(self, boxes: np.ndarray) -> dict:
        """Targets of one image's boxes (P, 4) input pixels: ``heat`` (1, H, W) Gaussians peaking at
        1 on each centre cell, ``wh`` (2, H, W) log width / height in cells, ``offset`` (2, H, W)
        and ``mask`` (1, H, W), 1 on the centre cells. Boxes whose centre is outside are skipped."""
        n = self.size
        heat = np.zeros((1, n, n), np.float32)
        wh, off, mask = np.zeros((2, n, n), np.float32), np.zeros((2, n, n), np.float32), np.zeros((1, n, n), np.float32)
        r = np.arange(n, dtype=np.float32)
        for x, y, w, h in np.asarray(boxes, np.float64).reshape(-1, 4):
            c = np.asarray(from_unit(to_unit(np.array([x + w / 2, y + h / 2]), self.stride), 1))
            ci = np.round(c).astype(int)
            if w <= 0 or h <= 0 or not (0 <= ci[0] < n and 0 <= ci[1] < n):
                continue
            sigma = (2 * gaussian_radius(h / self.stride, w / self.stride, self.min_overlap) + 1) / 6
            g = np.exp(-((r[None, :] - ci[0]) ** 2 + (r[:, None] - ci[1]) ** 2) / (2 * sigma ** 2))
            heat[0] = np.maximum(heat[0], g)
            wh[:, ci[1], ci[0]] = np.log(max(w, 1.0) / self.stride), np.log(max(h, 1.0) / self.stride)
            off[:, ci[1], ci[0]] = c - ci
            mask[0, ci[1], ci[0]] = 1.0
        return {"heat": heat, "wh": wh, "offset": off, "mask": mask}

    def loss(self, output: torch.Tensor, target: dict) -> torch.Tensor:
        """CenterNet's loss of outputs (N, 5, H, W) against batched :meth:`encode` targets: the
        penalty-reduced focal loss on the centre heatmap, plus L1 on log size and offset at the
        centre cells, each normalised by the number of people."""
        out = output.float()
        p = torch.sigmoid(out[:, :1]).clamp(1e-4, 1 - 1e-4)
        t = target["heat"]
        pos = t.eq(1).float()
        pos_loss = (torch.log(p) * (1 - p) ** 2 * pos).sum()
        neg_loss = (torch.log(1 - p) * p ** 2 * (1 - t) ** 4 * (1 - pos)).sum()
        m = target["mask"]
        n = m.sum().clamp_min(1.0)
        reg = (F.l1_loss(out[:, 1:3] * m, target["wh"] * m, reduction="sum")
               + F.l1_loss(out[:, 3:5] * m, target["offset"] * m, reduction="sum")) / n
        return -(pos_loss + neg_loss) / n + reg

    @torch.no_grad()
    def decode(self, output: torch.Tensor, max_people: int = 20, score_threshold: float = 0.3,
               nms_iou: float = 0.5) -> list[tuple[np.ndarray, np.ndarray]]:
        """Outputs (N, 5, H, W) -> per image (boxes (M, 4) input pixels, scores (M,)), highest
        first: the centre heatmap's local maxima (3x3) over ``score_threshold``, at most
        ``max_people``, after non-maximum suppression at ``nms_iou`` (OpenCV's NMSBoxes)."""
        import cv2

        out = output.float()
        heat = torch.sigmoid(out[:, 0])
        peaks = heat * (F.max_pool2d(heat[:, None], 3, 1, 1)[:, 0] == heat)
        n, h, w = heat.shape
        k = min(h * w, 4 * max_people)
        scores, idx = peaks.flatten(1).topk(k, dim=1)
        results = []
        for i in range(n):
            keep = scores[i] >= score_threshold
            ii, s = idx[i][keep], scores[i][keep]
            ys, xs = (ii // w), (ii % w)
            cx = xs.float() + out[i, 3, ys, xs]
            cy = ys.float() + out[i, 4, ys, xs]
            bw, bh = torch.exp(out[i, 1, ys, xs]) * self.stride, torch.exp(out[i, 2, ys, xs]) * self.stride
            centre = from_unit(to_unit(torch.stack([cx, cy], -1), 1), self.stride)
            boxes = torch.stack([centre[:, 0] - bw / 2, centre[:, 1] - bh / 2, bw, bh], -1).cpu().numpy()
            s = s.cpu().numpy()
            if len(s):
                kept = cv2.dnn.NMSBoxes(boxes.tolist(), s.tolist(), score_threshold, nms_iou)
                kept = np.asarray(kept, int).reshape(-1)[:max_people]
                boxes, s = boxes[kept], s[kept]
            results.append((boxes.astype(np.float64).reshape(-1, 4), s.astype(np.float64)))
        return results
