"""Inference on images: the same preprocessing as evaluation (the whole image, or a given person
box, resized to the model's input), the codec's decoding, and a mapping back to original pixels."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posekit.checkpoint import DEFAULT_MODEL, load_model
from posekit.data.images import read_image
from posekit.data.transforms import PoseTransform, box_matrix, to_tensor, warp
from posekit.errors import PosekitError
from posekit.evaluate import flip_test_predict, to_original
from posekit.skeleton import JOINT_NAMES, NUM_JOINTS
from posekit.utils import select_device

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Pose:
    """14 joints in original-image pixels, a confidence per joint, and the joint names."""

    keypoints: np.ndarray  # (14, 2) x, y
    scores: np.ndarray  # (14,)
    width: int
    height: int
    names: tuple[str, ...] = JOINT_NAMES

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height,
                "joints": [{"name": n, "x": round(float(x), 2), "y": round(float(y), 2), "score": round(float(s), 4)}
                           for n, (x, y), s in zip(self.names, self.keypoints, self.scores)]}


class Predictor:
    """``Predictor(model="posekit-lsp" | checkpoint path, device=None)``; ``predict(image)`` takes a
    path or an RGB uint8 array, with an optional person box (x, y, w, h)."""

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, device: str | None = None, flip_test: bool = False):
        self.device = select_device(device)
        self.model, self.codec, ckpt = load_model(model, self.device)
        cfg = ckpt["config"]
        self.name = str(model)
        self.input_size = cfg["data"]["input_size"]
        self.transform = PoseTransform(self.input_size, cfg["data"]["resize_mode"])
        self.flip_test = flip_test

    def _prepare(self, image, box) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        img = read_image(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise PosekitError(f"image must be RGB uint8 (H, W, 3), got {img.dtype} {img.shape}")
        h, w = img.shape[:2]
        if h == 0 or w == 0:
            raise PosekitError("zero-size image")
        zeros, ones = np.zeros((NUM_JOINTS, 2)), np.ones(NUM_JOINTS)
        if box is None:
            item = self.transform(img, zeros, ones)
            return item["image"], item["matrix"], w, h
        x, y, bw, bh = (float(v) for v in box)
        if bw <= 0 or bh <= 0:
            raise PosekitError(f"box {box}: width and height must be positive")
        side = max(bw, bh)
        m = box_matrix((x + bw / 2 - side / 2, y + bh / 2 - side / 2, side, side), self.input_size)
        return to_tensor(warp(img, m, self.input_size)), torch.from_numpy(m), w, h

    @torch.inference_mode()
    def predict_batch(self, images: list, boxes: list | None = None) -> list[Pose]:
        boxes = boxes or [None] * len(images)
        prepared = [self._prepare(im, b) for im, b in zip(images, boxes)]
        x = torch.stack([p[0] for p in prepared]).to(self.device)
        m = torch.stack([p[1] for p in prepared])
        if self.flip_test:
            kp, sc = flip_test_predict(self.model, self.codec, x)
        else:
            kp, sc = self.codec.decode(self.model(x).float())
        orig = to_original(kp.cpu(), m).numpy()
        return [Pose(orig[i], sc[i].cpu().numpy(), p[2], p[3]) for i, p in enumerate(prepared)]

    def predict(self, image, box=None) -> Pose:
        return self.predict_batch([image], [box])[0]


def collect_images(inputs: list[str]) -> list[Path]:
    """Image files from files and folders (recursively), in a stable order."""
    out = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_EXTS and q.is_file())
        elif p.exists():
            out.append(p)
        else:
            raise PosekitError(f"{p}: input not found")
    if not out:
        raise PosekitError(f"no images found in {', '.join(inputs)}")
    return out


def run_predict(inputs: list[str], model: str, out_dir: str | None, draw: bool, flip_test: bool,
                box=None, emit=print) -> int:
    """The CLI's work: one JSON record per image on stdout; annotated images and JSON files in
    ``out_dir``. A bad image is reported and skipped; returns the number of failures."""
    from posekit.viz import draw_pose, save_rgb

    pred = Predictor(model, flip_test=flip_test)
    failures = 0
    for path in collect_images(inputs):
        try:
            pose = pred.predict(path, box)
        except PosekitError as e:
            failures += 1
            print(f"posekit: skipped {e}", file=sys.stderr)
            continue
        rec = {"image": str(path), "model": pred.name, **pose.to_dict()}
        emit(json.dumps(rec))
        if out_dir:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            from posekit.utils import atomic_write_text

            atomic_write_text(out / f"{path.stem}.json", json.dumps(rec, indent=1))
            if draw:
                save_rgb(out / f"{path.stem}_pose.png", draw_pose(read_image(path), pose.keypoints))
    return failures
