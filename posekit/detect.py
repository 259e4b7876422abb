"""Finding people: a trained person detector (:class:`~posekit.models.detector.CenterNetDetector`
and its centre codec) run on whole images, its boxes mapped back to original pixels. The first
step of top-down pose estimation (:meth:`posekit.Predictor.predict_all`).

Legend: N images, M people found; boxes (M, 4) are (x, y, w, h) in original pixels, with the
pixel-edge convention of a user's box (the whole image is (0, 0, W, H))."""
from __future__ import annotations

import os

import numpy as np
import torch

from posekit.checkpoint import load_model
from posekit.config import DetectConfig
from posekit.data.images import MIN_SIDE, as_rgb
from posekit.data.transforms import PoseTransform, invert_affine, transform_boxes
from posekit.errors import PosekitError
from posekit.models import inference_ready
from posekit.models.precision import in_precision, resolve_precision
from posekit.utils import select_device

DEFAULT_DETECTOR = "posekit-person"


class PersonDetector:
    """``PersonDetector(model="posekit-person" | checkpoint | run folder, device=None,
    settings=None)``: ``settings`` (a :class:`~posekit.config.DetectConfig`; None: the detector
    recipe's own) sets the score threshold, the NMS overlap, the most people per image and the
    input side the whole image is letterboxed to (``input_size``; None: the size it was trained
    at; the network is fully convolutional, so a smaller side trades small people for speed);
    ``flip_test`` runs the image and its mirror as one batch and averages their outputs
    (:meth:`~posekit.codecs.center.CenterCodec.flip_average`); ``precision`` the network's
    arithmetic (``auto``, ``fp32``, ``bf16``: :func:`posekit.models.precision.resolve_precision`);
    ``settings.denoise`` the noise level (grey levels) from which an image is median-filtered
    before the network reads it (:func:`posekit.data.transforms.denoise`; None: never).

    Raises PosekitError for a checkpoint that is not a person detector."""

    def __init__(self, model: str | os.PathLike = DEFAULT_DETECTOR, device: str | None = None,
                 settings: DetectConfig | None = None, precision: str = "auto"):
        self.device = select_device(device)
        try:
            self.precision = resolve_precision(precision, self.device)
        except ValueError as e:
            raise PosekitError(str(e)) from None
        self.model, self.codec, ck = load_model(model, self.device)
        if getattr(self.codec, "kind", None) != "center":
            raise PosekitError(f"{ck['path']}: not a person detector (its codec is {ck['recipe'].codec.name!r})")
        self.network = in_precision(inference_ready(self.model), self.precision)
        self.name, self.config = str(model), ck["recipe"]
        self.settings = settings or self.config.detect
        self.input_size = self.settings.input_size or self.config.data.input_size
        self.codec = type(self.codec)(self.input_size, self.codec.stride, self.codec.min_overlap)
        self.transform = PoseTransform(self.input_size, "letterbox")

    @torch.inference_mode()
    def detect_batch(self, images: list, score_threshold: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(boxes (M, 4) original pixels, scores (M,), best first) for each image, those scoring at
        least ``score_threshold`` (None: the settings' ``score_threshold``)."""
        if not images:
            return []
        from posekit.data.transforms import denoise, to_tensor, warp

        s = self.settings
        rgbs = [as_rgb(im) for im in images]
        ms = [self.transform.base_matrix(im.shape[1], im.shape[0]) for im in rgbs]
        x = torch.stack([to_tensor(warp(denoise(im, s.denoise), m, self.transform.size))
                         for im, m in zip(rgbs, ms)]).to(self.device)
        threshold = s.score_threshold if score_threshold is None else score_threshold
        if s.flip_test:  # the image and its mirror as one batch: one network call
            out = self.codec.flip_average(*self.network(torch.cat([x, torch.flip(x, dims=[3])])).float().split(len(x)))
        else:
            out = self.network(x)
        found = self.codec.decode(out, s.max_people, threshold, s.nms_iou)
        return [inside_image(to_edges(transform_boxes(b, invert_affine(m))), sc, im.shape[1], im.shape[0])
                for (b, sc), m, im in zip(found, ms, rgbs)]

    def detect(self, image, score_threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (M, 4) original pixels, scores (M,)) of one image (``score_threshold`` as
        :meth:`detect_batch`)."""
        return self.detect_batch([image], score_threshold)[0]


def to_edges(boxes: np.ndarray) -> np.ndarray:
    """Boxes (M, 4) from keypoint coordinates (pixel centres at integers, as the detector's codec
    and :func:`posekit.data.scenes.box_from_joints` give them) to the pixel-edge convention of a
    user's ``--box`` (the whole image is (0, 0, W, H)): x and y move by half a pixel."""
    b = np.array(boxes, np.float64).reshape(-1, 4)
    b[:, :2] += 0.5
    return b


def inside_image(boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Detections (M, 4, pixel edges) clipped to the image (0, 0, width, height); those left
    under :data:`~posekit.data.images.MIN_SIDE` pixels on their longer side (in the letterbox
    padding, or too small to hold a person) are dropped, with their ``scores`` (M,)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, y0 = np.maximum(b[:, 0], 0.0), np.maximum(b[:, 1], 0.0)
    x1, y1 = np.minimum(b[:, 0] + b[:, 2], width), np.minimum(b[:, 1] + b[:, 3], height)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], -1)
    keep = (out[:, 2] > 0) & (out[:, 3] > 0) & (np.maximum(out[:, 2], out[:, 3]) >= MIN_SIDE)
    return out[keep], np.asarray(scores, np.float64).reshape(-1)[keep]


def pose_box(box, margin: float) -> tuple[float, float, float, float]:
    """A detected box (x, y, w, h) with ``margin`` of its size added on each side: the region a
    top-down pose model is given."""
    x, y, w, h = (float(v) for v in box)
    return x - margin * w, y - margin * h, w * (1 + 2 * margin), h * (1 + 2 * margin)
