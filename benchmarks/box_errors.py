"""How far the person detector's boxes are from the crops a pose model is trained on: for training
images, the square the pose network is given at inference (the detector's best box enlarged by
``detect.box_margin``, squared around its centre as ``posekit.inference.prepare`` does) against the
training crop (the square around the annotated joints, ``augment.person_crop``). Prints the
percentiles of the centre offset (x and y, in units of the training crop's side) and of the side
ratio (inference / training), to compare with the training augmentation's shift and scale.

    python benchmarks/box_errors.py --model posekit-lsp --data $POSEKIT_DATA --every 20 --json reports/box_errors.json"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

PERCENTILES = [5, 10, 25, 50, 75, 90, 95]


def box_errors(found: list, truth: list, box_margin: float, crop_margin: float) -> dict:
    """``found``: per image (boxes (M, 4), scores (M,)), best first; ``truth``: per image
    (keypoints (K, 2), mask (K,)). Returns the offsets (N, 2) of the inference square's centre
    from the training crop's, in crop sides, and the side ratios (N,), for the images where the
    detector found anybody."""
    from posekit.data.transforms import person_box
    from posekit.detect import pose_box

    offsets, ratios = [], []
    for (boxes, _), (kp, mask) in zip(found, truth):
        if not len(boxes):
            continue
        gx, gy, side, _ = person_box(kp, mask, crop_margin)
        x, y, w, h = pose_box(boxes[0], box_margin)
        offsets.append(((x + w / 2 - gx - side / 2) / side, (y + h / 2 - gy - side / 2) / side))
        ratios.append(max(w, h) / side)
    return {"offsets": np.asarray(offsets).reshape(-1, 2), "ratios": np.asarray(ratios)}


def main(argv=None) -> int:
    from posekit.checkpoint import read_checkpoint
    from posekit.data.lsp import load_sets
    from posekit.detect import PersonDetector
    from posekit.evaluate import load_samples

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp", help="the pose model whose training split and settings are used")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--every", type=int, default=20, help="every Nth training image")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    ck = read_checkpoint(a.model)
    cfg = ck["recipe"]
    sets = load_sets(a.data, list(cfg.data.sets))
    images, kps, masks, _ = load_samples(sets, ck["split"]["train"][::a.every])
    det = PersonDetector(cfg.detect.model or "posekit-person")
    found = [det.detect(im, cfg.detect.region_threshold) for im in images]
    crop = cfg.augment.person_crop if cfg.augment.person_crop is not None else 0.17
    e = box_errors(found, list(zip(kps, masks)), cfg.detect.box_margin, crop)
    pct = lambda v: {str(p): round(float(x), 3) for p, x in zip(PERCENTILES, np.percentile(v, PERCENTILES))}  # noqa: E731
    out = {"model": a.model, "images": len(images), "found": len(e["ratios"]), "box_margin": cfg.detect.box_margin,
           "person_crop": crop, "abs_offset_x": pct(np.abs(e["offsets"][:, 0])),
           "abs_offset_y": pct(np.abs(e["offsets"][:, 1])), "side_ratio": pct(e["ratios"]),
           "augment": {"shift": cfg.augment.shift, "scale": list(cfg.augment.scale)}}
    print(json.dumps(out, indent=1))
    from posekit.utils import write_json

    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
