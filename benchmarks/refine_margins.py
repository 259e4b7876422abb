"""Choose the refinement crops on the validation split: PCK@0.2 of the first pass alone, then with
square crops around its estimate (``posekit evaluate --refine M[,M...]``): every set of
``--crops`` margins out of ``--margins``, each with the first pass's heatmaps mixed into the fused
maps at each weight of ``--weights`` (``--refine-weight W``).

    python benchmarks/refine_margins.py --model runs/release_deeper/best.pt --data $POSEKIT_DATA \
        --margins 0.05 0.1 0.13 0.17 0.22 0.3 --crops 1 2 3 --weights 0 0.1 0.2 0.3 0.4 0.5 0.6 \
        --frame 0.17 --test --json reports/recrop_margin.json

The setting with the best validation PCK is printed as the choice; the LSP test split is scored
too (``--test``) but only reported, never used to choose.

Each image's first pass and each margin's crop are run once and kept; a setting then fuses the
kept heatmaps with ``posekit.tta.fuse_heatmaps``, the function ``Predictor`` and ``evaluate``
fuse them with (crops cut with the model's own ``infer.crop_border``), so every row is what
``--refine``/``--refine-weight`` return.

``--frame MARGIN`` scores the validation images framed like LSP's test images instead of whole:
each cut to the square around its annotated person with this margin per side (as LSP's images
were cut from their photographs). The validation split is mostly LSP-extended, whose whole images
show small people in large photographs, a different regime from the test split; framed, the
first pass sees what it sees on LSP test. The ground truth only frames the image, as the
dataset's authors did; the network then runs on the framed image with no box."""
from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import numpy as np
import torch


def framed_val(model: str, data: str | None, margin: float, limit: int | None = None) -> tuple[list, np.ndarray, np.ndarray]:
    """The model's validation images (the first ``limit``), each cut to the square around its
    annotated joints (margin per side), with their truth in the cut's pixels: (images, keypoints,
    masks)."""
    from posekit.checkpoint import read_checkpoint
    from posekit.data.images import read_image
    from posekit.data.lsp import load_sets
    from posekit.data.transforms import apply_affine, box_matrix, person_box, warp

    ck = read_checkpoint(model)
    ids = list(ck["split"]["val"])[:limit]
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


def whole_split(model: str, data: str | None, split: str, limit: int | None = None) -> tuple[list, np.ndarray, np.ndarray]:
    """A split's whole images (the first ``limit``) as ``posekit evaluate`` sees them: (images, keypoints, masks)."""
    from posekit.evaluate import evaluate

    _, extras = evaluate(model, data, split, limit=limit, refine=False, detector=False)
    res = extras["res"]
    return extras["images"], res["gt"], res["mask"]


@torch.inference_mode()
def kept_passes(pred, images: list, margins: list[float], batch: int = 32) -> dict:
    """Each image's first pass (a ``FirstPass``: keypoints in original pixels, maps, affines) and,
    per margin, its refinement crop around the first estimate (maps, affines), run once to be
    fused per setting."""
    from posekit.inference import prepare
    from posekit.tta import FirstPass, refinement_crops, run_network, to_original

    maps, mats, kps = [], [], []
    for i in range(0, len(images), batch):
        prep = [prepare(im, None, pred.input_size, pred.resize_mode) for im in images[i:i + batch]]
        m = torch.stack([p.matrix for p in prep])
        p = run_network(pred.network, pred.codec, torch.stack([p.input for p in prep]).to(pred.device), pred.flip_test)
        if p.maps is None:
            raise SystemExit("refine_margins.py fuses heatmaps: the model must have a heatmap-like codec")
        maps.append(p.maps.cpu())
        mats.append(m.numpy())
        kps.append(to_original(p.keypoints.cpu(), m).numpy())
    first = FirstPass(np.concatenate(kps), torch.cat(maps), np.concatenate(mats))
    crops = {}
    for margin in margins:
        maps, mats = [], []
        for i in range(0, len(images), batch):
            x, ms = refinement_crops(images[i:i + batch], first.keypoints[i:i + batch], [margin], pred.input_size,
                                     pred.crop_border, pred.crop_touch)
            maps.append(run_network(pred.network, pred.codec, x.to(pred.device), pred.flip_test).maps.cpu())
            mats.append(ms)
        crops[margin] = {"maps": torch.cat(maps), "matrices": np.concatenate(mats)}
    return {"first": first, "crops": crops}


def combine(kept: dict, margins: tuple, weight: float, input_size: int, codec, batch: int = 100) -> np.ndarray:
    """The keypoints (N, 14, 2) of the setting ``--refine margins --refine-weight weight`` from kept passes."""
    from posekit.tta import fuse_heatmaps

    first, out = kept["first"], []
    for i in range(0, len(first.keypoints), batch):
        sl = slice(i, i + batch)
        maps = torch.stack([kept["crops"][m]["maps"][sl] for m in margins], 1)
        mats = np.concatenate([kept["crops"][m]["matrices"][sl] for m in margins], 1)
        out.append(fuse_heatmaps(codec, maps, None, None, mats, input_size, first.part(i, i + batch), weight)[0])
    return np.concatenate(out)


def score(kp: np.ndarray, truth) -> dict:
    from posekit.metrics import evaluate_keypoints

    images, gt, mask = truth
    sizes = np.array([[im.shape[1], im.shape[0]] for im in images])
    m = evaluate_keypoints(kp, gt, sizes, mask)
    return {"pck": round(m["pck"], 4), "pcp": round(m["pcp"], 4), "n": len(images)}


def settings(margins: list[float], crops: list[int], weights: list[float]) -> list[tuple]:
    """(margins, first-pass weight) for every set of ``crops`` margins (the smallest first: its
    crop is the frame the maps are fused in) and every weight."""
    return [(tuple(c), w) for k in crops for c in itertools.combinations(sorted(margins), k) for w in weights]


def main() -> None:
    from posekit.predict import Predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--margins", type=float, nargs="+", default=[0.05, 0.1, 0.13, 0.17, 0.25])
    ap.add_argument("--crops", type=int, nargs="+", default=[1], help="numbers of crops per setting to try")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0],
                    help="weights of the first pass in the fused maps to try (--refine-weight)")
    ap.add_argument("--test", action="store_true", help="also score each setting on lsp-test (reported only)")
    ap.add_argument("--frame", type=float, default=None, help="score val images framed around the person (margin)")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each split (quick runs)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    pred = Predictor(a.model, device="cpu", refine=False, detector=False)  # whole images: the model is its own detector
    splits = {"val": framed_val(a.model, a.data, a.frame, a.limit) if a.frame is not None
              else whole_split(a.model, a.data, "val", a.limit)}
    if a.test:
        splits["lsp-test"] = whole_split(a.model, a.data, "lsp-test", a.limit)
    kept = {name: kept_passes(pred, truth[0], a.margins) for name, truth in splits.items()}
    rows = [{"refine": None, "refine_weight": 0.0,
             **{name: score(kept[name]["first"].keypoints, truth) for name, truth in splits.items()}}]
    print(json.dumps(rows[0]), flush=True)
    for margins, weight in settings(a.margins, a.crops, a.weights):
        row = {"refine": margins[0] if len(margins) == 1 else list(margins), "refine_weight": weight}
        for name, truth in splits.items():
            row[name] = score(combine(kept[name], margins, weight, pred.input_size, pred.codec), truth)
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["val"]["pck"])
    print(f"\nchosen on val: refine={best['refine']} refine_weight={best['refine_weight']} (val PCK@0.2 "
          f"{best['val']['pck']}; first pass alone {rows[0]['val']['pck']})"
          + (f"; its lsp-test PCK@0.2 {best['lsp-test']['pck']}" if a.test else ""))
    if a.json:
        out = {"model": a.model, "chosen_on": "val" + (f", framed with margin {a.frame}" if a.frame is not None else ""),
               "crop_border": pred.crop_border, "chosen": {"refine": best["refine"], "refine_weight": best["refine_weight"]},
               "results": rows}
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
