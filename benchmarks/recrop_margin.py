"""Choose the second look's settings on the validation split: PCK@0.2 with one look, then with
square crops around the first estimate (``posekit evaluate --recrop M[,M...]``): every set of
``--crops`` margins out of ``--margins``, each with the first look's heatmaps blended in at each
weight (``--fuse W``).

    python benchmarks/recrop_margin.py --model posekit-lsp --data $POSEKIT_DATA --json reports/recrop_margin.json

The setting with the best validation PCK is printed as the choice; the LSP test split is scored
too (``--test``) but only reported, never used to choose.

Each image's first look and each margin's crop look are run once and kept; a setting then
combines the kept looks with ``posekit.looks.blend_looks``, the function ``Predictor`` and
``evaluate`` combine them with, so every row is what ``--recrop``/``--fuse`` return (tested).

``--frame MARGIN`` scores the validation images framed like LSP's test images instead of whole:
each cut to the square around its annotated person with this margin per side (as LSP's images
were cut from their photographs). The validation split is mostly LSP-extended, whose whole images
show small people in large photographs, a different regime from the test split; framed, the
first look sees what it sees on LSP test. The ground truth only frames the image, as the
dataset's authors did; the looks then run on the framed image with no box."""
from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import numpy as np
import torch


def framed_val(model: str, data: str | None, margin: float) -> tuple[list, np.ndarray, np.ndarray]:
    """The model's validation images, each cut to the square around its annotated joints (margin
    per side), with their truth in the cut's pixels: (images, keypoints, masks)."""
    from posekit.checkpoint import read_checkpoint
    from posekit.data.images import read_image
    from posekit.data.lsp import load_sets
    from posekit.data.transforms import apply_affine, box_matrix, person_box, warp

    ck = read_checkpoint(model)
    ids = list(ck["split"]["val"])
    sets = load_sets(data, sorted({i.split("/")[0] for i in ids}))
    index = {s.sample_id(k): (s, k) for s in sets.values() for k in range(len(s))}
    images, kps, masks = [], [], []
    for i in ids:
        s, k = index[i]
        img = read_image(s.image_paths[k])
        h, w = img.shape[:2]
        box = person_box(s.keypoints[k], s.annotated[k], margin, w, h)
        side = max(8, int(round(box[2])))
        m = box_matrix(box, side)
        images.append(warp(img, m, side))
        kps.append(apply_affine(s.keypoints[k], m))
        masks.append(s.annotated[k])
    return images, np.stack(kps), np.stack(masks)


def whole_split(model: str, data: str | None, split: str) -> tuple[list, np.ndarray, np.ndarray]:
    """A split's whole images as ``posekit evaluate`` sees them: (images, keypoints, masks)."""
    from posekit.data.images import read_image
    from posekit.evaluate import evaluate

    _, extras = evaluate(model, data, split, recrop=False)
    res = extras["res"]
    return [read_image(p) for p in extras["ds"].paths()], res["gt"], res["mask"]


@torch.inference_mode()
def kept_looks(pred, images: list, margins: list[float], batch: int = 32) -> dict:
    """Each image's first look (maps, affines, keypoints in original pixels) and, per margin, its
    crop's look around the first estimate (maps, affines), run once to be combined per setting."""
    from posekit.looks import crop_batch, look, to_original

    first = {"maps": [], "matrices": [], "keypoints": []}
    for i in range(0, len(images), batch):
        prep = [pred._prepare_rgb(im, None) for im in images[i:i + batch]]
        m = torch.stack([p[1] for p in prep])
        maps, kp, _ = look(pred.network, pred.codec, torch.stack([p[0] for p in prep]).to(pred.device))
        if maps is None:
            raise SystemExit("recrop_margin.py combines heatmaps: the model must have a heatmap-like head")
        first["maps"].append(maps.cpu())
        first["matrices"].append(m.numpy())
        first["keypoints"].append(to_original(kp.cpu(), m).numpy())
    first = {"maps": torch.cat(first["maps"]), "matrices": np.concatenate(first["matrices"]),
             "keypoints": np.concatenate(first["keypoints"])}
    crops = {}
    for margin in margins:
        maps, mats = [], []
        for i in range(0, len(images), batch):
            x, ms = crop_batch(images[i:i + batch], first["keypoints"][i:i + batch], [margin], pred.input_size)
            maps.append(look(pred.network, pred.codec, x.to(pred.device))[0].cpu())
            mats.append(ms)
        crops[margin] = {"maps": torch.cat(maps), "matrices": np.concatenate(mats)}
    return {"first": first, "crops": crops}


def combine(kept: dict, margins: tuple, fuse: float, input_size: int, codec, batch: int = 100) -> np.ndarray:
    """The keypoints (N, 14, 2) of the setting --recrop ``margins`` --fuse ``fuse`` from kept looks."""
    from posekit.looks import blend_looks

    first, n = kept["first"], len(kept["first"]["keypoints"])
    out = []
    for i in range(0, n, batch):
        sl = slice(i, i + batch)
        maps = torch.stack([kept["crops"][m]["maps"][sl] for m in margins], 1)
        mats = np.concatenate([kept["crops"][m]["matrices"][sl] for m in margins], 1)
        out.append(blend_looks(codec, maps, None, None, mats, input_size, fuse, first["maps"][sl],
                               first["matrices"][sl])[0])
    return np.concatenate(out)


def score(kp: np.ndarray, truth) -> dict:
    from posekit.metrics import evaluate_keypoints

    images, gt, mask = truth
    sizes = np.array([[im.shape[1], im.shape[0]] for im in images])
    m = evaluate_keypoints(kp, gt, sizes, mask)
    return {"pck": round(m["pck"], 4), "pcp": round(m["pcp"], 4), "n": len(images)}


def settings(margins: list[float], crops: list[int], fuses: list[float]) -> list[tuple]:
    """(margins, fuse) for every set of ``crops`` margins (the smallest first: its crop is the
    frame the looks are combined in) and every weight."""
    return [(tuple(c), w) for k in crops for c in itertools.combinations(sorted(margins), k) for w in fuses]


def main() -> None:
    from posekit.predict import Predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--margins", type=float, nargs="+", default=[0.05, 0.1, 0.13, 0.17, 0.25])
    ap.add_argument("--crops", type=int, nargs="+", default=[1], help="numbers of crops per setting to try")
    ap.add_argument("--fuse", type=float, nargs="+", default=[0.0], help="weights of the first look to try")
    ap.add_argument("--test", action="store_true", help="also score each setting on lsp-test (reported only)")
    ap.add_argument("--frame", type=float, default=None, help="score val images framed around the person (margin)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    pred = Predictor(a.model, device="cpu", recrop=False)
    splits = {"val": framed_val(a.model, a.data, a.frame) if a.frame is not None else whole_split(a.model, a.data, "val")}
    if a.test:
        splits["lsp-test"] = whole_split(a.model, a.data, "lsp-test")
    kept = {name: kept_looks(pred, truth[0], a.margins) for name, truth in splits.items()}
    rows = [{"recrop": None, "fuse": 0.0, **{name: score(kept[name]["first"]["keypoints"], truth)
                                             for name, truth in splits.items()}}]
    print(json.dumps(rows[0]), flush=True)
    for margins, fuse in settings(a.margins, a.crops, a.fuse):
        row = {"recrop": margins[0] if len(margins) == 1 else list(margins), "fuse": fuse}
        for name, truth in splits.items():
            row[name] = score(combine(kept[name], margins, fuse, pred.input_size, pred.codec), truth)
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["val"]["pck"])
    print(f"\nchosen on val: recrop={best['recrop']} fuse={best['fuse']} (val PCK@0.2 {best['val']['pck']}; "
          f"one look {rows[0]['val']['pck']})" + (f"; its lsp-test PCK@0.2 {best['lsp-test']['pck']}" if a.test else ""))
    if a.json:
        out = {"model": a.model, "chosen_on": "val" + (f", framed with margin {a.frame}" if a.frame is not None else ""),
               "chosen": {"recrop": best["recrop"], "fuse": best["fuse"]}, "results": rows}
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
