"""Robustness: PCK@0.2 on LSP's test split under image corruptions, three severities each, and
the mean PCK under corruption relative to the clean images, for each model.

Corruptions (seeded; the severity grows left to right): Gaussian blur (sigma 1, 2, 4 px), motion
blur (a line kernel of 5, 9, 15 px at a random angle), Gaussian noise (sigma 10, 20, 40 grey
levels), JPEG compression (quality 30, 15, 8), brightness and contrast (x0.7 +20, x0.5 +40,
x0.35 +60), and an occluding grey patch over a random annotated joint (a square of 0.15, 0.25,
0.35 x the person's size).

    python benchmarks/robustness.py --model posekit-lsp posekit-lsp-fast --data $POSEKIT_DATA \
        --json reports/robustness.json

``--detector A B`` scores each model through each of those person detectors instead of its own
(results keyed "MODEL @ DETECTOR"; ``off``: the whole image); choose between detectors with ``--split val``."""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

SEVERITIES = {
    "gaussian_blur": (1.0, 2.0, 4.0),
    "motion_blur": (5, 9, 15),
    "noise": (10.0, 20.0, 40.0),
    "jpeg": (30, 15, 8),
    "brightness_contrast": ((0.7, 20.0), (0.5, 40.0), (0.35, 60.0)),
    "occlusion": (0.15, 0.25, 0.35),
}


def corrupt(image: np.ndarray, kind: str, level, kp: np.ndarray, mask: np.ndarray, rng) -> np.ndarray:
    """``image`` (RGB uint8) under one corruption at one level."""
    if kind == "gaussian_blur":
        return cv2.GaussianBlur(image, (0, 0), sigmaX=level)
    if kind == "motion_blur":
        k = np.zeros((level, level), np.float32)
        k[level // 2] = 1
        rot = cv2.getRotationMatrix2D(((level - 1) / 2, (level - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        k = cv2.warpAffine(k, rot, (level, level))
        return cv2.filter2D(image, -1, k / max(k.sum(), 1e-6))
    if kind == "noise":
        return np.clip(image + rng.normal(0, level, image.shape), 0, 255).astype(np.uint8)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    if kind == "brightness_contrast":
        a, b = level
        return np.clip(image.astype(np.float32) * a + b, 0, 255).astype(np.uint8)
    if kind == "occlusion":
        pts = kp[mask.astype(bool)]
        size = level * float(np.max(pts.max(0) - pts.min(0)))
        cx, cy = pts[rng.integers(len(pts))]
        out = image.copy()
        x0, y0 = int(round(cx - size / 2)), int(round(cy - size / 2))
        out[max(0, y0):max(0, y0 + int(size)), max(0, x0):max(0, x0 + int(size))] = 128
        return out
    raise ValueError(f"unknown corruption {kind!r}")


def corruption_rng(seed: int, kind: str, level_index: int) -> np.random.Generator:
    """The random draws of one corruption at one severity (``level_index`` into its
    :data:`SEVERITIES`), the same for every model scored."""
    return np.random.default_rng([seed, level_index, list(SEVERITIES).index(kind) + 1])


def score(pred, images, kps, masks, batch: int = 16) -> float:
    from posekit.metrics import pck

    out = []
    for i in range(0, len(images), batch):
        out += [p.keypoints for p in pred.predict_batch(images[i:i + batch])]
    return float(pck(np.stack(out), kps, masks)[0])


def split_samples(data, split: str, model: str, limit: int | None = None):
    """(images, keypoints, masks, sizes) of LSP test (``split`` "lsp-test") or of ``model``'s
    validation images ("val": to choose on), the first ``limit``."""
    from posekit.data.lsp import load_sets
    from posekit.evaluate import load_samples

    if split == "val":
        from posekit.checkpoint import read_checkpoint

        sets = load_sets(data, ["lsp", "lspet"])
        ids = list(read_checkpoint(model)["split"]["val"])
    else:
        from posekit.data.splits import lsp_test_ids

        sets = load_sets(data, ["lsp"])
        ids = lsp_test_ids(sets)
    return load_samples(sets, ids[:limit])


def runs(models: list[str], detectors: list[str] | None) -> list[tuple[str, str, object]]:
    """(result key, model, Predictor's ``detector`` argument) for each model, through each of
    ``detectors`` if given ("off": False, the whole image), else through the model's own (None)."""
    if not detectors:
        return [(m, m, None) for m in models]
    return [(f"{m} @ {d}", m, False if d == "off" else d) for m in models for d in detectors]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=["posekit-lsp"])
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--limit", type=int, default=None, help="first N images of the split (quick runs)")
    ap.add_argument("--split", choices=["lsp-test", "val"], default="lsp-test",
                    help="val: the first model's validation images (to choose between models on)")
    ap.add_argument("--detector", nargs="+", default=None,
                    help="person detectors to score each model through (off: the whole image; default: the model's own)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    from posekit.predict import Predictor

    images, kps, masks, _ = split_samples(a.data, a.split, a.model[0], a.limit)
    result = {"split": a.split, "images": len(images), "seed": a.seed, "severities": {k: list(v) for k, v in SEVERITIES.items()},
              "models": {}}
    for name, model, detector in runs(a.model, a.detector):
        pred = Predictor(model) if detector is None else Predictor(model, detector=detector)
        clean = score(pred, images, kps, masks)
        rows = {}
        for kind, levels in SEVERITIES.items():
            rows[kind] = []
            for k, level in enumerate(levels):
                rng = corruption_rng(a.seed, kind, k)
                bad = [corrupt(im, kind, level, kp, m, rng) for im, kp, m in zip(images, kps, masks)]
                rows[kind].append(score(pred, bad, kps, masks))
            print(f"{name} {kind}: " + ", ".join(f"{v:.3f}" for v in rows[kind]), flush=True)
        mean = float(np.mean([v for vs in rows.values() for v in vs]))
        result["models"][name] = {"clean": clean, "corrupted": rows, "mean_corrupted": mean,
                                  "relative_to_clean": mean / clean if clean else None}
        print(f"{name}: clean {clean:.3f}, mean under corruption {mean:.3f} ({mean / clean:.1%} of clean)", flush=True)
    from posekit.utils import write_json

    write_json(a.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
