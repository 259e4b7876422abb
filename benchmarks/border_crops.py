"""Refinement crops when the person touches the image border: PCK@0.2 on images cropped tight to
their annotated joints, for each number of edge pixels repeated outside the image
(``infer.crop_border``; 0 = black, as the first pass's letterbox pads).

    python benchmarks/border_crops.py --model posekit-lsp --data $POSEKIT_DATA --json reports/border_crops.json

Each image is cut to the box around its annotated joints (no margin), so the person touches the
image's edges and the refinement crops, enlarged around the first estimate, reach outside it.
Edge pixels are repeated only on the sides the estimated person touches (``infer.crop_touch``): a
setting is chosen on the model's validation split cut that way (``val_tight``), among the settings
that lose at most ``--max-loss`` on the validation images framed like LSP's (``val_framed``, where
the body is not cut); the LSP test split, cut tight, is only reported. The first pass alone
(``--refine off``) is scored alongside. The model is run on the whole images, as its own person
detector (no detector: the refinement crops are what reach outside the image)."""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def tight_crops(sets: dict, ids: list[str], pad: int = 0) -> tuple[list, np.ndarray, np.ndarray]:
    """Each image cut to its annotated joints' box (plus ``pad`` pixels), with its truth in the
    cut's pixels: (images, keypoints (N, 14, 2), masks (N, 14)). Boxes under 16 pixels are skipped."""
    from posekit.data.images import MIN_SIDE, read_image

    index = {s.sample_id(k): (s, k) for s in sets.values() for k in range(len(s))}
    images, kps, masks = [], [], []
    for i in ids:
        s, k = index[i]
        img = read_image(s.image_paths[k])
        h, w = img.shape[:2]
        pts = s.keypoints[k][s.annotated[k]]
        if len(pts) < 2:
            continue
        x0, y0 = np.floor(pts.min(0) - pad).astype(int).clip(0)
        x1, y1 = np.ceil(pts.max(0) + pad).astype(int)
        x1, y1 = min(w - 1, x1), min(h - 1, y1)
        if min(x1 - x0 + 1, y1 - y0 + 1) < MIN_SIDE:
            continue
        images.append(np.ascontiguousarray(img[y0:y1 + 1, x0:x1 + 1]))
        kps.append(s.keypoints[k] - [x0, y0])
        masks.append(s.annotated[k])
    return images, np.stack(kps), np.stack(masks)


def score(pred, images, kps, masks, batch: int = 16) -> float:
    from posekit.metrics import pck

    out = []
    for i in range(0, len(images), batch):
        out += [p.keypoints for p in pred.predict_batch(images[i:i + batch])]
    return float(pck(np.stack(out), kps, masks)[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--settings", nargs="+", default=["0:0.1", "10:0.05", "10:0.1", "10:0.15", "20:0.05", "20:0.1",
                                                     "20:0.15", "20:1"],
                    help="BORDER:TOUCH pairs (crop_border pixels, crop_touch fraction of the pose's size)")
    ap.add_argument("--max-loss", type=float, default=0.005, help="the most framed-validation PCK a setting may lose")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each split (quick runs)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from posekit.checkpoint import read_checkpoint
    from posekit.data.lsp import load_sets
    from posekit.data.splits import lsp_test_ids
    from posekit.predict import Predictor

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from refine_margins import framed_val

    ck = read_checkpoint(args.model)
    val_ids = list(ck["split"]["val"])
    sets = load_sets(args.data, sorted({i.split("/")[0] for i in val_ids} | {"lsp"}))
    splits = {"val_tight": tight_crops(sets, val_ids[:args.limit]),
              "val_framed": framed_val(args.model, args.data, 0.17, limit=args.limit),
              "test_tight": tight_crops(sets, lsp_test_ids(sets)[:args.limit])}
    if not any(item.split(":")[0] == "0" for item in args.settings):
        args.settings = ["0:0.1", *args.settings]  # black borders: what every other setting is measured against
    one = Predictor(args.model, refine=False, detector=False)
    rows = [{"setting": "first pass only", "crop_border": None, "crop_touch": None,
             **{k: score(one, *v) for k, v in splits.items()}}]
    for item in args.settings:
        b, t = item.split(":")
        pred = Predictor(args.model, crop_border=int(b), crop_touch=float(t), detector=False)
        rows.append({"setting": f"border {b}, touch {t}", "crop_border": int(b), "crop_touch": float(t),
                     **{k: score(pred, *v) for k, v in splits.items()}})
        print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{v}" for k, v in rows[-1].items()), flush=True)
    base = next(r for r in rows if r["crop_border"] == 0)
    ok = [r for r in rows if r["crop_border"] is not None and r["val_framed"] >= base["val_framed"] - args.max_loss]
    best = max(ok, key=lambda r: r["val_tight"])
    print(f"chosen on val: {best['setting']} (tight {best['val_tight']:.4f} vs {base['val_tight']:.4f} black, framed "
          f"{best['val_framed']:.4f} vs {base['val_framed']:.4f}; test tight {best['test_tight']:.4f} vs "
          f"{base['test_tight']:.4f})")
    result = {"model": args.model, "images": {k: len(v[0]) for k, v in splits.items()}, "rows": rows,
              "chosen": {"crop_border": best["crop_border"], "crop_touch": best["crop_touch"]},
              "rule": f"the best tight-crop validation PCK among settings losing at most {args.max_loss} framed-validation PCK",
              "metric": "PCK@0.2"}
    from posekit.utils import write_json

    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
