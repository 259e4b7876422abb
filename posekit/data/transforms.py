"""Image + keypoint transforms.

Geometry is split in two:

1. A deterministic **base affine** ``M`` (2x3) that maps original-image pixels to the network's
   input frame: the paper's *resize* of the whole image (``stretch`` to a square, as the poster
   does, or ``letterbox``: keep the aspect ratio and pad), or, for training only, a
   person-centred crop from the annotated joints' box with a margin. It is applied with one
   ``cv2.warpAffine`` and is exactly invertible, so predictions map back to original pixels.
2. **Random augmentation** at input resolution with albumentations (keypoint-aware): horizontal
   flip (left/right joints are swapped afterwards, see :data:`posekit.skeleton.FLIP_PERM`),
   rotation / scale / shift (``A.Affine``), the paper's random *crop* (pad + random crop), and
   colour jitter, and image degradations (low resolution, blur, noise, occlusion: photos that
   are not clean). These are used for training only.

Then the paper's *to tensor* and *normalise* (ImageNet mean/std).

Coordinates are 0-based pixel positions (pixel centres at integers), the convention of
``cv2.warpAffine``, ``A.HorizontalFlip`` (x -> W-1-x) and ``A.Affine`` (centre (W-1)/2).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from posekit.config import AugmentConfig
from posekit.skeleton import FLIP_PERM

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
RESIZE_MODES = ("stretch", "letterbox")


def resize_matrix(width: int, height: int, size: int, mode: str = "stretch") -> np.ndarray:
    """Affine (2x3) mapping a whole width x height image onto a size x size input."""
    if mode == "stretch":
        sx, sy = size / width, size / height
        ox = oy = 0.0
    elif mode == "letterbox":
        sx = sy = size / max(width, height)
        ox, oy = (size - width * sx) / 2.0, (size - height * sy) / 2.0
    else:
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {', '.join(RESIZE_MODES)}")
    # continuous coordinates: pixel i covers [i, i+1); 0-based centres sit at i + 0.5
    return np.array([[sx, 0.0, 0.5 * sx - 0.5 + ox], [0.0, sy, 0.5 * sy - 0.5 + oy]], np.float64)


def box_matrix(box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Affine mapping the square box (x0, y0, side, side) in image pixels onto a size x size input."""
    x0, y0, w, h = box
    s = size / max(w, h)
    return np.array([[s, 0.0, 0.5 * s - 0.5 - x0 * s], [0.0, s, 0.5 * s - 0.5 - y0 * s]], np.float64)


def person_box(keypoints: np.ndarray, mask: np.ndarray, margin: float = 0.25,
               width: int | None = None, height: int | None = None) -> tuple[float, float, float, float]:
    """A square box around the annotated joints, enlarged by ``margin`` of its side on each side.
    Falls back to the whole image when fewer than two joints are annotated."""
    pts = keypoints[mask.astype(bool)]
    if len(pts) < 2:
        if width is None or height is None:
            raise ValueError("person_box needs at least two annotated joints or the image size")
        side = float(max(width, height))
        return (width - side) / 2.0, (height - side) / 2.0, side, side
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    side = max(x1 - x0, y1 - y0, 1.0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return cx - side / 2.0 + 0.5, cy - side / 2.0 + 0.5, side, side


def apply_affine(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (..., 2) points."""
    p = np.asarray(points, np.float64)
    return p @ m[:, :2].T + m[:, 2]


def transform_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Boxes (P, 4) as (x, y, w, h) through an axis-aligned affine (2, 3): the same boxes in the
    other frame, (P, 4)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros((0, 4))
    corners = apply_affine(np.stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1), m)
    return np.concatenate([corners[:, 0], corners[:, 1] - corners[:, 0]], 1)


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, np.float64))


def compose_affine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The affine ``a`` after ``b`` (both 2x3)."""
    return a @ np.vstack([b, [0.0, 0.0, 1.0]])


def scale_matrix(fx: float, fy: float) -> np.ndarray:
    """Affine of a plain resize by (fx, fy) in pixel-centre coordinates."""
    return np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]], np.float64)


def warp(image: np.ndarray, m: np.ndarray, size: int, border=0) -> np.ndarray:
    """``cv2.warpAffine`` of ``image`` by the 2x3 affine ``m`` (original -> output pixels) to a
    size x size output; a large downscale is first done by area averaging (then the exact
    remaining affine), which avoids aliasing. Outside the image the output is black, except
    within ``border`` original pixels of its edge, which repeat the edge pixels: one number for
    every side, or (left, top, right, bottom)."""
    left, top, right, bottom = (border,) * 4 if np.isscalar(border) else tuple(border)
    h0, w0 = image.shape[:2]
    m0 = np.asarray(m, np.float64)
    h, w = h0, w0
    s = min(abs(m0[0, 0]) + abs(m0[0, 1]), abs(m0[1, 0]) + abs(m0[1, 1]))
    if s < 0.5:
        f = min(1.0, s * 2.0)
        sw, sh = max(1, round(w * f)), max(1, round(h * f))
        image = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        m = compose_affine(m0, invert_affine(scale_matrix(sw / w, sh / h)))
    mode = cv2.BORDER_REPLICATE if max(left, top, right, bottom) > 0 else cv2.BORDER_CONSTANT
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=mode, borderValue=(0, 0, 0))
    if mode == cv2.BORDER_REPLICATE:  # black beyond the repeated strip of each side
        inv = invert_affine(m0)
        outside = lambda sx, sy: (sx < -0.5 - left) | (sx > w0 - 0.5 + right) | (sy < -0.5 - top) | (sy > h0 - 0.5 + bottom)  # noqa: E731
        if inv[0, 1] == 0 and inv[1, 0] == 0:  # axis-aligned (every crop of a box): per column and per row
            r = np.arange(size, dtype=np.float64)
            out[:, outside(inv[0, 0] * r + inv[0, 2], 0.0)] = 0
            out[outside(0.0, inv[1, 1] * r + inv[1, 2]), :] = 0
        else:
            grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1).astype(np.float64)
            src = apply_affine(grid, inv)
            out[outside(src[..., 0], src[..., 1])] = 0
    return out


_MEAN_255 = torch.tensor(MEAN * 255.0, dtype=torch.float32).view(3, 1, 1)
_STD_255 = torch.tensor(STD * 255.0, dtype=torch.float32).view(3, 1, 1)


# Immerkaer's mask: the difference of two Laplacians, blind to image structure up to second order
_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_sigma(image: np.ndarray) -> float:
    """The standard deviation (grey levels, 0-255) of the additive white noise in an RGB or grey
    uint8 image (H, W[, 3]), estimated from its grey image by Immerkaer's method (J. Immerkaer,
    "Fast Noise Variance Estimation", CVIU 1996): the mean absolute response to a 3x3 mask that
    cancels smooth image structure, times sqrt(pi/2)/6. Texture raises the estimate a little;
    per-channel noise counts about 0.67x (the grey image averages the channels). Images under
    3x3 pixels: 0.0."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape[:2]
    if h < 3 or w < 3:
        return 0.0
    response = cv2.filter2D(grey, cv2.CV_16S, _NOISE_MASK)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * cv2.norm(response, cv2.NORM_L1) / (6 * (h - 2) * (w - 2)))


def denoise(image: np.ndarray, threshold: float | None) -> np.ndarray:
    """``image`` (RGB uint8 (H, W, 3)) through a 3x3 median filter (``cv2.medianBlur``) when its
    estimated noise (:func:`noise_sigma`) reaches ``threshold`` grey levels; else (and for None)
    the image itself, the same array. The filter removes most per-pixel noise and keeps edges,
    so a network trained on clean photos still finds people in grainy ones."""
    if threshold is None or noise_sigma(image) < threshold:
        return image
    return cv2.medianBlur(np.ascontiguousarray(image), 3)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised float tensor (3, H, W): (pixel / 255 - MEAN) / STD. The
    image is never written to (a float image is copied, not normalised in place)."""
    image = np.ascontiguousarray(image)
    if not image.flags.writeable:  # torch only wraps writable memory without a warning; nothing is written
        image = image.copy()
    x = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32, copy=True)
    return x.sub_(_MEAN_255).div_(_STD_255).contiguous()


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor` (for drawing)."""
    x = tensor.detach().cpu().float().numpy().transpose(1, 2, 0) * STD + MEAN
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def degradations(a: AugmentConfig) -> list:
    """The albumentations steps of ``a``'s image degradations (low resolution, blur, noise,
    occlusion), in the order a camera would add them; pixels only, the joints do not move."""
    import albumentations as A

    linear = {"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR}
    steps = [
        (a.low_resolution, lambda p: A.Downscale(scale_range=(0.25, 0.75), interpolation_pair=linear, p=p)),
        (a.blur, lambda p: A.OneOf([A.GaussianBlur(sigma_limit=(0.5, 3.0)), A.MotionBlur(blur_limit=(3, 11))], p=p)),
        (a.noise, lambda p: A.OneOf([A.GaussNoise(std_range=(0.02, 0.2)),
                                     A.ImageCompression(quality_range=(10, 60))], p=p)),
        (a.occlusion, lambda p: A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.1, 0.3),
                                                hole_width_range=(0.1, 0.3), fill="random_uniform", p=p)),
    ]
    return [make(p) for p, make in steps if p > 0]


class PoseTransform:
    """Maps (image, keypoints, mask) to the network's input.

    ``__call__`` returns a dict: ``image`` (3, S, S) tensor, ``keypoints`` (14, 2) float32 in input
    pixels, ``mask`` (14,) float32, ``matrix`` (2, 3) base affine original -> input (identity of
    the random part: only meaningful when ``train`` is False), ``flipped`` bool."""

    def __init__(self, input_size: int, resize_mode: str = "stretch", train: bool = False,
                 augment: AugmentConfig | None = None):
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {resize_mode!r}; expected one of {', '.join(RESIZE_MODES)}")
        self.size = int(input_size)
        self.resize_mode = resize_mode
        self.train = train
        self.augment = augment or AugmentConfig()
        self._album = self._build_album() if train else None

    def _build_album(self):
        import albumentations as A

        a = self.augment
        ts = []
        if a.flip > 0:
            ts.append(A.HorizontalFlip(p=a.flip))
        if a.geometric:
            ts.append(A.Affine(scale=tuple(a.scale), translate_percent=(-a.shift, a.shift),
                               rotate=(-a.rotate, a.rotate), border_mode=cv2.BORDER_CONSTANT,
                               fill=0, p=1.0))
        if a.crop_padding > 0:
            s, pad = self.size, int(a.crop_padding)
            ts += [A.PadIfNeeded(s + 2 * pad, s + 2 * pad, border_mode=cv2.BORDER_CONSTANT, fill=0),
                   A.RandomCrop(s, s)]
        if a.color > 0:
            c = a.color
            ts.append(A.ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(0.1, c / 4), p=0.8))
        ts += degradations(a)
        if not ts:
            return None
        return A.Compose(ts, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
                         save_applied_params=True)

    def base_matrix(self, width: int, height: int, keypoints=None, mask=None) -> np.ndarray:
        if self.augment.person_crop is not None and keypoints is not None:
            box = person_box(keypoints, mask, self.augment.person_crop, width, height)
            return box_matrix(box, self.size)
        return resize_matrix(width, height, self.size, self.resize_mode)

    def __call__(self, image: np.ndarray, keypoints: np.ndarray, mask: np.ndarray,
                 seed: int | None = None, orig_size: tuple[int, int] | None = None,
                 pre: np.ndarray | None = None, teacher: np.ndarray | None = None,
                 teacher_mask: np.ndarray | None = None) -> dict:
        """``keypoints``/``mask`` are in original-image pixels. When ``image`` is a rescaled copy
        (an image cache), ``pre`` maps original pixels to it and ``orig_size`` is (w, h) of the
        original, so the base affine and the returned ``matrix`` stay in original pixels.
        ``teacher`` (K, 2) original pixels, with ``teacher_mask`` (K,): a teacher's estimate of the
        same joints, moved exactly as the keypoints are (returned as ``teacher``, ``teacher_mask``)."""
        if pre is None:
            h, w = image.shape[:2]
        else:
            w, h = orig_size
        m = self.base_matrix(w, h, keypoints, mask)
        m_img = m if pre is None else compose_affine(m, invert_affine(pre))
        out = warp(image, m_img, self.size)
        k = len(keypoints)
        pts = apply_affine(keypoints if teacher is None else np.concatenate([keypoints, teacher]), m)
        masks = [np.asarray(mask, np.float32).copy()] + ([] if teacher is None else [np.asarray(teacher_mask, np.float32)])
        flipped = False
        if self._album is not None:
            if seed is not None:
                self._album.set_random_seed(int(seed) % (2**32))
            r = self._album(image=out, keypoints=pts.astype(np.float32))
            out = r["image"]
            pts = np.asarray(r["keypoints"], np.float64).reshape(-1, 2)
            flipped = any(name == "HorizontalFlip" for name, _ in r.get("applied_transforms", []))
        parts = [pts[:k], pts[k:]] if teacher is not None else [pts]
        if flipped:  # the person's left is now on the image's right: rename the joints
            parts, masks = [q[FLIP_PERM] for q in parts], [q[FLIP_PERM] for q in masks]
        item = {
            "image": to_tensor(out),
            "keypoints": torch.from_numpy(parts[0].astype(np.float32)),
            "mask": torch.from_numpy(masks[0]),
            "matrix": torch.from_numpy(m.astype(np.float64)),
            "flipped": flipped,
        }
        if teacher is not None:
            item.update(teacher=torch.from_numpy(parts[1].astype(np.float32)), teacher_mask=torch.from_numpy(masks[1]))
        return item
