"""Test-time augmentation: the flip test, crops of a detected box at several margins (multi-scale
test), and refinement crops around a first estimate, whose heatmaps are warped into one frame and
fused (test-time scale augmentation; refinement with the pose model as its own person detector).
Pure functions on arrays and tensors, no I/O: evaluation and :class:`posekit.Predictor` both run
them, so they score what users get.

Legend: N images, C crops per image, K joints, S the network's input side (pixels), H x W heatmap
cells. "Original" coordinates are pixels of the image as given (0-based, pixel centres at
integers); an affine "matrix" (2, 3) maps original pixels to input pixels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posekit.data.transforms import box_matrix, person_box, to_tensor, warp
from posekit.errors import PosekitError
from posekit.skeleton import NUM_JOINTS


def to_original(kp_input: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Map keypoints (N, K, 2) in input pixels back through each image's affine (N, 2, 3) to
    original pixels (N, K, 2), float64."""
    m = matrix.double()
    a, b = m[:, :, :2], m[:, :, 2]
    return torch.einsum("bij,bkj->bki", torch.linalg.inv(a), kp_input.double() - b[:, None, :])


@dataclass
class Pass:
    """One decoded network pass over a batch: ``maps`` (N, K, H, W) as decoded (flip-averaged
    under the flip test; None for coordinate codecs), ``keypoints`` (N, K, 2) input pixels,
    ``scores`` (N, K)."""

    maps: torch.Tensor | None
    keypoints: torch.Tensor
    scores: torch.Tensor


@torch.no_grad()
def run_network(model, codec, x: torch.Tensor, flip_test: bool = False, output: torch.Tensor | None = None) -> Pass:
    """The network on inputs ``x`` (N, 3, S, S), decoded by ``codec``. With ``flip_test`` the
    mirrored inputs run too, their outputs mapped back by ``codec.unflip`` and averaged before
    decoding (as SimpleBaselines: heatmaps are averaged as maps, so where the two passes disagree
    the stronger mode wins; coordinates are averaged as coordinates). ``output`` is ``model(x)``
    when already computed."""
    if flip_test and output is None:  # the image and its mirror as one batch: one network call
        out, mirrored = model(torch.cat([x, torch.flip(x, dims=[3])])).float().split(len(x))
        out = (out + codec.unflip(mirrored)) / 2
    elif flip_test:
        out = (output.float() + codec.unflip(model(torch.flip(x, dims=[3])).float())) / 2
    else:
        out = (model(x) if output is None else output).float()
    kp, sc = codec.decode(out)
    return Pass(out if codec.is_heatmap else None, kp, sc)


def refinement_box(keypoints: np.ndarray, margin: float, width: int, height: int,
                   region: float | None = None) -> tuple[float, float, float, float]:
    """The square box (x, y, side, side) around estimated joints (K, 2), enlarged by ``margin``
    of its side on each side (``person_box``, as the training crops are made), its side at least
    a tenth of the first pass's ``region`` (the side, pixels, of the square the first pass saw:
    a person box, or by default the whole image) so a collapsed estimate cannot zoom into a few
    pixels."""
    x, y, side, _ = person_box(np.asarray(keypoints, np.float64), np.ones(len(keypoints)), margin, width, height)
    floor = 0.1 * (max(width, height) if region is None else region)
    if side < floor:
        x, y, side = x - (floor - side) / 2, y - (floor - side) / 2, floor
    return x, y, side, side


TOUCH = 0.1  # a person "touches" an image side when a joint lies within this x the pose's longer side of it


def cut_sides(keypoints: np.ndarray, width: int, height: int, border: int,
              touch: float = TOUCH) -> tuple[int, int, int, int]:
    """``border`` for each side (left, top, right, bottom) that the estimated person touches
    (the image frame likely cuts the body there: a joint lies within ``touch`` x the pose's
    longer side of it), 0 for the others: a refinement crop that leaves the image repeats its edge
    pixels only where the body goes on beyond it, and stays black (as in training) elsewhere."""
    x, y = keypoints[:, 0], keypoints[:, 1]
    t = touch * max(x.max() - x.min(), y.max() - y.min(), 1.0)
    return tuple(border if near else 0 for near in (x.min() < t, y.min() < t, x.max() > width - 1 - t,
                                                     y.max() > height - 1 - t))


def region_side(matrices: np.ndarray | None, input_size: int, n: int) -> list[float | None]:
    """The side (original pixels) of the square each of ``n`` first passes saw, from their affines
    (N, 2, 3) onto an ``input_size`` input; None for each without one."""
    if matrices is None:
        return [None] * n
    return [input_size / min(float(np.hypot(m[0, 0], m[1, 0])), float(np.hypot(m[0, 1], m[1, 1])))
            for m in np.asarray(matrices, np.float64)]


def refinement_crops(images: list[np.ndarray], keypoints: np.ndarray, margins: list[float], input_size: int,
                     border: int = 0, touch: float = TOUCH, regions: list | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """For each RGB image, one square crop per margin around its estimate (``keypoints``
    (N, K, 2) original pixels), ``border`` edge pixels repeated on the sides where the person
    touches the image and a crop leaves it (:func:`cut_sides`, :func:`posekit.data.transforms.warp`);
    ``regions`` (N,) the sides of the squares the first passes saw (:func:`region_side`; None:
    the whole images). Returns (inputs (N*C, 3, S, S), image by image, margin by margin; their
    affines (N, C, 2, 3))."""
    xs, ms = [], []
    for img, kp, region in zip(images, keypoints, regions or [None] * len(images)):
        h, w = img.shape[:2]
        sides = cut_sides(kp, w, h, border, touch)
        for margin in margins:
            m = box_matrix(refinement_box(kp, margin, w, h, region), input_size)
            xs.append(to_tensor(warp(img, m, input_size, sides)))
            ms.append(m)
    return torch.stack(xs), np.stack(ms).reshape(len(images), len(margins), 2, 3)


def _cell_frame(n: int, stride: float) -> np.ndarray:
    """3x3 affine from a grid's cells (centres at 0..n-1) to input pixels."""
    c = (stride - 1) / 2
    return np.array([[stride, 0, c], [0, stride, c], [0, 0, 1]], np.float64)


def warp_heatmaps(maps: torch.Tensor, from_matrices, to_matrices, input_size: int) -> torch.Tensor:
    """Resample heatmaps (N, K, H, W) made on inputs warped by ``from_matrices`` (N, 2, 3) into
    the frame of inputs warped by ``to_matrices`` (N, 2, 3): each output cell takes the bilinear
    value at the same original-image point (zero outside the first maps)."""
    n = maps.shape[-1]
    cells = _cell_frame(n, input_size / n)
    norm = np.array([[2 / n, 0, 1 / n - 1], [0, 2 / n, 1 / n - 1], [0, 0, 1]])  # cells -> grid_sample's [-1, 1]
    thetas = []
    for m1, m2 in zip(np.asarray(from_matrices, np.float64), np.asarray(to_matrices, np.float64)):
        a = np.linalg.inv(cells) @ np.vstack([m1, [0, 0, 1]]) @ np.linalg.inv(np.vstack([m2, [0, 0, 1]])) @ cells
        thetas.append((norm @ a @ np.linalg.inv(norm))[:2])
    theta = torch.as_tensor(np.stack(thetas), dtype=maps.dtype, device=maps.device)
    grid = torch.nn.functional.affine_grid(theta, list(maps.shape), align_corners=False)
    return torch.nn.functional.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class FirstPass:
    """The first pass that refinement crops start from: ``keypoints`` (N, K, 2) original pixels,
    and for heatmap codecs its decoded ``maps`` (N, K, H, W) and their input ``matrices`` (N, 2, 3)
    (None for coordinate codecs, or when the first pass is not mixed in)."""

    keypoints: np.ndarray
    maps: torch.Tensor | None = None
    matrices: np.ndarray | None = None

    def part(self, i: int, j: int) -> FirstPass:
        """Images ``i`` to ``j``."""
        return FirstPass(self.keypoints[i:j], None if self.maps is None else self.maps[i:j],
                         None if self.matrices is None else self.matrices[i:j])


@dataclass
class Refinement:
    """How refinement crops run: one square crop per ``margins`` entry (each enlarges the box
    around the first estimate by that much per side), the first pass mixed into the fused maps at
    ``first_weight``, ``border`` edge pixels repeated outside the image on the sides the person
    touches (``touch``, see :func:`cut_sides`), and the flip test."""

    margins: list[float]
    first_weight: float = 0.0
    border: int = 0
    flip_test: bool = False
    touch: float = TOUCH

    def __post_init__(self):  # the tightest crop first: it lies inside the others, the frame they are fused in
        self.margins = sorted(float(m) for m in self.margins)


def mean_in_frame(maps: torch.Tensor, matrices: np.ndarray, input_size: int) -> torch.Tensor:
    """The mean of each image's C crops' heatmaps (N, C, K, H, W), made on inputs warped by
    ``matrices`` (N, C, 2, 3), in the first crop's frame: (N, K, H, W) float32."""
    frame = matrices[:, 0]
    total = maps[:, 0].float().clone()
    for k in range(1, maps.shape[1]):
        total += warp_heatmaps(maps[:, k].float(), matrices[:, k], frame, input_size)
    return total / maps.shape[1]


def fuse_crops(codec, p: Pass, matrices: np.ndarray, crops: int, input_size: int) -> Pass:
    """Multi-scale test: one pass per person from its ``crops`` crops run in one batch, ``p``
    (N*C inputs, person by person, crop by crop) with their affines ``matrices`` (N*C, 2, 3),
    the first crop of each person the frame of the answer. Heatmap codecs: the maps are warped
    into that frame, averaged and decoded there (as :func:`fuse_heatmaps`); coordinate codecs:
    the keypoints are mapped into it and averaged, and so are the scores. Returns a
    :class:`Pass` of N people in their first crops' input pixels (affines ``matrices[::crops]``).
    The test-time scale augmentation of multi-scale testing (as HRNet's), on the detector's box
    instead of the model's own estimate."""
    if crops == 1:
        return p
    m = np.asarray(matrices, np.float64).reshape(-1, crops, 2, 3)
    n = len(m)
    if p.maps is not None:
        maps = mean_in_frame(p.maps.reshape(n, crops, *p.maps.shape[1:]), m, input_size)
        kp, sc = codec.decode(maps)
        return Pass(maps, kp, sc)
    original = to_original(p.keypoints.cpu(), torch.from_numpy(m.reshape(n * crops, 2, 3))).reshape(n, crops, -1, 2)
    frame = torch.from_numpy(m[:, 0])
    in_frame = torch.einsum("nij,nckj->ncki", frame[:, :, :2], original) + frame[:, None, None, :, 2]
    return Pass(None, in_frame.mean(1).float(), p.scores.float().reshape(n, crops, -1).mean(1))


def fuse_heatmaps(codec, maps: torch.Tensor | None, keypoints: np.ndarray, scores: np.ndarray, matrices: np.ndarray,
                  input_size: int, first: FirstPass | None = None, first_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One pose per image from its C refinement crops (and the first pass).

    Heatmap codecs (``maps`` (N, C, K, H, W), ``matrices`` (N, C, 2, 3)): the crops' maps are
    warped into the first crop's frame and averaged; with ``first_weight`` > 0 the first pass's
    maps are warped there too and mixed in at that weight; the fused maps are decoded. Coordinate
    codecs (``maps`` None) average the crops' ``keypoints`` (N, C, K, 2, original pixels) and
    ``scores`` (N, C, K), then mix the first pass's keypoints in at ``first_weight``. Returns
    (keypoints (N, K, 2) original pixels, scores (N, K))."""
    if maps is None:
        kp, sc = keypoints.mean(1), scores.mean(1)
        if first_weight > 0 and first is not None:
            kp = (1 - first_weight) * kp + first_weight * first.keypoints
        return kp, sc
    frame = matrices[:, 0]
    total = mean_in_frame(maps, matrices, input_size)
    if first_weight > 0 and first is not None and first.maps is not None:
        warped = warp_heatmaps(torch.as_tensor(first.maps, device=total.device).float(), np.asarray(first.matrices),
                               frame, input_size)
        total = (1 - first_weight) * total + first_weight * warped
    kp, sc = codec.decode(total)
    return to_original(kp.cpu(), torch.as_tensor(frame)).numpy(), sc.float().cpu().numpy()


@torch.no_grad()
def refine(model, codec, images: list[np.ndarray], first: FirstPass, how: Refinement, input_size: int, device,
           batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Refinement crops: for each RGB image, square crops around its first estimate
    (``first.keypoints``), one per margin of ``how``, at the network's full input size, run in
    batches and fused by :func:`fuse_heatmaps`. The boxes come from the model's own estimate,
    never the ground truth. Returns (keypoints (N, K, 2) original pixels, scores (N, K)).

    Raises PosekitError for a non-finite first estimate."""
    if not np.isfinite(first.keypoints).all():
        raise PosekitError("the first estimate is not finite (NaN/inf), so there is nothing to refine around")
    step = max(1, batch_size // len(how.margins))
    kps, scores = [np.zeros((0, NUM_JOINTS, 2))], [np.zeros((0, NUM_JOINTS), np.float32)]
    for i in range(0, len(images), step):
        part = first.part(i, i + step)
        x, ms = refinement_crops(images[i:i + step], part.keypoints, how.margins, input_size, how.border, how.touch,
                                 region_side(part.matrices, input_size, len(part.keypoints)))
        n, c = ms.shape[:2]
        p = run_network(model, codec, x.to(device), how.flip_test)
        kp = to_original(p.keypoints.cpu(), torch.from_numpy(ms.reshape(n * c, 2, 3))).numpy()
        maps = None if p.maps is None else p.maps.reshape(n, c, *p.maps.shape[1:])
        out, sc = fuse_heatmaps(codec, maps, kp.reshape(n, c, NUM_JOINTS, 2),
                                p.scores.float().cpu().numpy().reshape(n, c, NUM_JOINTS), ms, input_size, part,
                                how.first_weight)
        kps.append(out)
        scores.append(sc)
    return np.concatenate(kps), np.concatenate(scores)
