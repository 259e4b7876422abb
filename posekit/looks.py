"""Looking at an image: one network pass mapped back to image pixels (``to_original``, ``look``,
flip-test), and the second look on crops around the first estimate (``recrop_predict``), the
crops' and the first look's heatmaps carried into one frame (``carry_maps``) and blended
(``blend_looks``). Pure functions on arrays and tensors, no I/O: ``evaluate`` and ``Predictor``
both run them, so they score what users get."""
from __future__ import annotations

import numpy as np
import torch

from posekit.data.transforms import box_matrix, person_box, to_tensor, warp
from posekit.errors import PosekitError
from posekit.skeleton import FLIP_PERM, NUM_JOINTS


def to_original(kp_input: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Map (B, J, 2) input-frame keypoints back through each sample's (B, 2, 3) affine."""
    m = matrix.double()
    a, b = m[:, :, :2], m[:, :, 2]
    inv = torch.linalg.inv(a)
    return torch.einsum("bij,bkj->bki", inv, kp_input.double() - b[:, None, :])


@torch.no_grad()
def flip_test_predict(model, codec, x: torch.Tensor, out: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip-test: also run the mirror image, mirror its output back with left/right joints
    swapped, and combine. Heatmap-like outputs (B, J, H, W) are averaged as maps and then decoded
    (as SimpleBaselines does: where the two passes disagree, e.g. left/right, the stronger mode
    wins instead of a midpoint between them); coordinate outputs are averaged as coordinates.
    ``out`` is ``model(x)`` when already computed. Returns (keypoints in input pixels, scores)."""
    return look(model, codec, x, flip_test=True, out=out)[1:]


@torch.no_grad()
def look(model, codec, x: torch.Tensor, flip_test: bool = False, out: torch.Tensor | None = None):
    """One look of the network at a batch: (maps, keypoints in input pixels, scores). ``maps`` is
    the heatmap-like output (B, J, H, W) that was decoded (flip-averaged with ``flip_test``), for
    fusing with another look; None for coordinate outputs."""
    out = (model(x) if out is None else out).float()
    if not flip_test:
        return (out if out.dim() == 4 else None), *codec.decode(out)
    outf = model(torch.flip(x, dims=[3])).float()
    perm = torch.as_tensor(FLIP_PERM, device=x.device)
    if out.dim() == 4:  # cell i of the mirror map is cell W-1-i of the original (centre-aligned grid)
        maps = (out + torch.flip(outf, dims=[3])[:, perm]) / 2
        return maps, *codec.decode(maps)
    kp, sc = codec.decode(out)
    kpf, scf = codec.decode(outf)
    kpf = kpf.clone()
    kpf[..., 0] = x.shape[3] - 1 - kpf[..., 0]
    return None, (kp + kpf[:, perm]) / 2, (sc + scf[:, perm]) / 2


MAX_CROPS = 8


def recrop_margin(cfg: dict, recrop=None, cascade: bool = False) -> float | list[float] | None:
    """The re-crop margin(s) in force: ``recrop`` None = the model's own (config ``infer.recrop``,
    absent in older checkpoints = off), False = off, a number in [0, 2] = one crop at that margin,
    a list of them = one crop per margin, all run in one network pass and averaged (returned
    sorted, so the tightest crop, inside all the others, is the frame they are combined in; a
    one-item list is that number). A cascade refines with its own stages, which were fitted to first-look
    estimates: it takes no re-crop."""
    own = recrop is None
    if own:
        recrop = (cfg.get("infer") or {}).get("recrop")
    if recrop is None or recrop is False:
        return None
    items = list(recrop) if isinstance(recrop, (list, tuple)) else [recrop]
    if not 1 <= len(items) <= MAX_CROPS or any(
            isinstance(m, bool) or not isinstance(m, (int, float)) or not (0 <= m <= 2) for m in items):
        raise PosekitError(f"the re-crop margin must be a number in [0, 2], a list of 1 to {MAX_CROPS} of them, "
                           f"or False (off), got {recrop!r}" + (" (the model's infer.recrop)" if own else ""))
    if cascade:
        if own:
            return None
        raise PosekitError("a cascade checkpoint refines with its own stages; the re-crop does not apply to it")
    items = sorted(float(m) for m in items)  # the tightest crop first: the frame the crops are combined in
    return items[0] if len(items) == 1 else items


DEFAULT_CROP_BORDER = 0  # pixels; a model's own infer.crop_border wins (see reports/border_crops.json)
MAX_CROP_BORDER = 10_000


def crop_border(cfg: dict, border: int | None = None) -> int:
    """Pixels of the image's edge repeated where a second look's crop reaches outside the image:
    ``border`` if given, else the model's own (config ``infer.crop_border``), else
    :data:`DEFAULT_CROP_BORDER`. Raises PosekitError for a value that is not an integer in
    [0, MAX_CROP_BORDER]."""
    if border is None:
        border = (cfg.get("infer") or {}).get("crop_border")
    if border is None:
        border = DEFAULT_CROP_BORDER
    if isinstance(border, bool) or not isinstance(border, (int, float)) or border != int(border) \
            or not 0 <= border <= MAX_CROP_BORDER:
        raise PosekitError(f"the crop border must be an integer number of pixels in [0, {MAX_CROP_BORDER}], "
                           f"got {border!r}")
    return int(border)


def margins_of(recrop) -> list[float]:
    """The margins of a re-crop setting (a number or a list) as a sorted list."""
    return sorted(float(m) for m in recrop) if isinstance(recrop, (list, tuple)) else [float(recrop)]


def fuse_weight(cfg: dict, fuse: float | None = None) -> float:
    """The weight of the first look in the second (config ``infer.fuse``, absent = 0): ``fuse``
    None = the model's own, else a number in [0, 1)."""
    if fuse is None:
        fuse = (cfg.get("infer") or {}).get("fuse", 0.0)
    if isinstance(fuse, bool) or not isinstance(fuse, (int, float)) or not 0 <= fuse < 1:
        raise PosekitError(f"the fusing weight of the first look must be a number in [0, 1), got {fuse!r}")
    return float(fuse)


def recrop_box(keypoints: np.ndarray, margin: float, width: int, height: int) -> tuple[float, float, float, float]:
    """The square box around estimated joints (``person_box``, as the training crops are made),
    its side at least a tenth of the image's longer side so a collapsed estimate cannot zoom
    into a few pixels."""
    x, y, side, _ = person_box(np.asarray(keypoints, np.float64), np.ones(len(keypoints)), margin, width, height)
    floor = 0.1 * max(width, height)
    if side < floor:
        x, y, side = x - (floor - side) / 2, y - (floor - side) / 2, floor
    return x, y, side, side


def _pixel_frame(n: int, stride: float) -> np.ndarray:
    """3x3 affine from an output grid's cell coordinates (cell centres at 0..n-1) to input pixels."""
    c = (stride - 1) / 2
    return np.array([[stride, 0, c], [0, stride, c], [0, 0, 1]], np.float64)


def carry_maps(maps: torch.Tensor, from_matrices, to_matrices, input_size: int) -> torch.Tensor:
    """Resample heatmaps (B, J, n, n) made on inputs warped by ``from_matrices`` (B, 2, 3,
    original -> input) into the frame of inputs warped by ``to_matrices``: each output cell takes
    the bilinear value at the same original-image point (zero outside the first maps)."""
    b, _, n, _ = maps.shape
    g2i = _pixel_frame(n, input_size / n)
    norm = np.array([[2 / n, 0, 1 / n - 1], [0, 2 / n, 1 / n - 1], [0, 0, 1]])  # cells -> grid_sample's [-1, 1]
    thetas = []
    for m1, m2 in zip(np.asarray(from_matrices, np.float64), np.asarray(to_matrices, np.float64)):
        a = np.linalg.inv(g2i) @ np.vstack([m1, [0, 0, 1]]) @ np.linalg.inv(np.vstack([m2, [0, 0, 1]])) @ g2i
        thetas.append((norm @ a @ np.linalg.inv(norm))[:2])
    theta = torch.as_tensor(np.stack(thetas), dtype=maps.dtype, device=maps.device)
    grid = torch.nn.functional.affine_grid(theta, list(maps.shape), align_corners=False)
    return torch.nn.functional.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_batch(images: list[np.ndarray], keypoints: np.ndarray, margins: list[float],
               input_size: int, border: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """The second look's inputs: for each image, a square crop around its first estimate
    (``keypoints`` (N, 14, 2) original pixels) per margin, with ``border`` pixels of the image's
    edge repeated where a crop reaches outside the image (:func:`posekit.data.transforms.warp`).
    Returns (inputs (N*K, 3, S, S), image by image, margin by margin; their affines original ->
    input (N, K, 2, 3))."""
    xs, ms = [], []
    for img, kp in zip(images, keypoints):
        h, w = img.shape[:2]
        for margin in margins:
            m = box_matrix(recrop_box(kp, margin, w, h), input_size)
            xs.append(to_tensor(warp(img, m, input_size, border)))
            ms.append(m)
    return torch.stack(xs), np.stack(ms).reshape(len(images), len(margins), 2, 3)


def blend_looks(codec, maps: torch.Tensor | None, keypoints: np.ndarray, scores: np.ndarray, matrices: np.ndarray,
                input_size: int, fuse: float = 0.0, first_maps: torch.Tensor | None = None, first_matrices=None,
                first_keypoints: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Combine the crops' looks of N images, K crops each, into one pose per image.

    Heatmap-like outputs (``maps`` (N, K, J, n, n), ``matrices`` (N, K, 2, 3)): the crops' maps
    are carried into the first crop's frame and averaged; with ``fuse`` > 0 the first look's maps
    (``first_maps``, made on inputs warped by ``first_matrices``) are carried there too and
    blended in at that weight; the blend is decoded. Coordinate outputs (``maps`` None) average
    the crops' ``keypoints`` (N, K, J, 2, original pixels) and ``scores`` (N, K, J), then blend
    ``first_keypoints`` in at ``fuse``. Returns (keypoints (N, J, 2) original pixels, scores (N, J))."""
    if maps is None:
        kp, sc = keypoints.mean(1), scores.mean(1)
        if fuse > 0:
            kp = (1 - fuse) * kp + fuse * first_keypoints
        return kp, sc
    frame = matrices[:, 0]
    total = maps[:, 0].float().clone()
    for k in range(1, maps.shape[1]):
        total += carry_maps(maps[:, k].float(), matrices[:, k], frame, input_size)
    total /= maps.shape[1]
    if fuse > 0 and first_maps is not None:
        carried = carry_maps(torch.as_tensor(first_maps, device=total.device).float(),
                             np.asarray(first_matrices), frame, input_size)
        total = (1 - fuse) * total + fuse * carried
    kp, sc = codec.decode(total)
    return to_original(kp.cpu(), torch.as_tensor(frame)).numpy(), sc.float().cpu().numpy()


@torch.no_grad()
def recrop_predict(model, codec, images: list[np.ndarray], keypoints: np.ndarray, margin, input_size: int,
                   device, flip_test: bool = False, batch_size: int = 32, fuse: float = 0.0,
                   first_maps: torch.Tensor | None = None, first_matrices=None,
                   border: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A second look: for each RGB image, square crops around the first estimate ``keypoints``
    (N, 14, 2 in original pixels), one per margin of ``margin`` (a number or a list; each
    enlarges the box by that much per side), at the network's full input size, run in one pass
    and combined by :func:`blend_looks`. The boxes come from the model's own estimate, never the
    ground truth (the top-down pipeline with the pose model as its own person detector).

    ``fuse`` > 0 blends in the first look at that weight, at no extra network cost: heatmap-like
    outputs carry the first look's maps (``first_maps``, made on inputs warped by
    ``first_matrices``) into the first crop's frame and decode the blend; coordinate outputs blend
    the coordinates. Returns (keypoints (N, 14, 2) in original pixels, scores (N, 14))."""
    if not np.isfinite(keypoints).all():
        raise PosekitError("the first estimate is not finite (NaN/inf), so there is nothing to re-crop around")
    margins = margins_of(margin)
    step = max(1, batch_size // len(margins))
    kps, scores = [np.zeros((0, NUM_JOINTS, 2))], [np.zeros((0, NUM_JOINTS), np.float32)]
    for i in range(0, len(images), step):
        x, ms = crop_batch(images[i:i + step], keypoints[i:i + step], margins, input_size, border)
        n, k = ms.shape[:2]
        maps, kp, sc = look(model, codec, x.to(device), flip_test)
        kp = to_original(kp.cpu(), torch.from_numpy(ms.reshape(n * k, 2, 3))).numpy().reshape(n, k, NUM_JOINTS, 2)
        maps = None if maps is None else maps.reshape(n, k, *maps.shape[1:])
        out, sc = blend_looks(codec, maps, kp, sc.float().cpu().numpy().reshape(n, k, NUM_JOINTS), ms, input_size,
                              fuse, None if first_maps is None else first_maps[i:i + step],
                              None if first_matrices is None else first_matrices[i:i + step], keypoints[i:i + step])
        kps.append(out)
        scores.append(sc)
    return np.concatenate(kps), np.concatenate(scores)
