"""OpenCV's HOG people detector (Dalal & Triggs 2005; ``cv2.HOGDescriptor_getDefaultPeopleDetector``)
on a folder of images: the baseline ``benchmarks/detection.py`` compares posekit's detector with.

OpenCV 5 no longer ships it in the main package, so this script runs in a separate environment
with OpenCV 4 and nothing of posekit (``make hog-venv`` makes ``.venv-hog``):

    .venv-hog/bin/python benchmarks/hog_detect.py --images DIR --json detections.json

Writes ``{"file name": {"boxes": [[x, y, w, h], ...], "scores": [...]}}`` for every PNG/JPEG in
DIR; the image is upscaled so its shorter side is at least 256 pixels (HOG's window is 64x128),
and boxes are in the original pixels."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np


def detect(hog, image: np.ndarray) -> tuple[list, list]:
    h, w = image.shape[:2]
    f = max(1.0, 256 / min(h, w))
    big = cv2.resize(image, (round(w * f), round(h * f))) if f > 1 else image
    rects, weights = hog.detectMultiScale(big, winStride=(8, 8), padding=(8, 8), scale=1.05)
    boxes = [[float(v) / f for v in r] for r in rects]
    return boxes, [float(s) for s in np.asarray(weights).reshape(-1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    out = {}
    for p in sorted(Path(a.images).iterdir()):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            boxes, scores = detect(hog, cv2.imread(str(p)))
            out[p.name] = {"boxes": boxes, "scores": scores}
    Path(a.json).write_text(json.dumps(out))
    print(f"{len(out)} images, {sum(len(v['boxes']) for v in out.values())} detections")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
