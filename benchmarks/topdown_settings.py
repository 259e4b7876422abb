"""Choose how a pose model runs on the person detector's boxes, on the validation split: PCK@0.2 for
each margin around the detected box (``detect.box_margin``) and each refinement setting
(``--refine``: off, or crops around the first estimate), with and without the flip test
(``--flip-test off on``), with and without the person detector's own flip test
(``--detector-flip-test off on``: ``detect.flip_test``), and each lowest score at which the best
detection is still the region (``detect.region_threshold``), the detector run once per image
and setting of its flip test.

    python benchmarks/topdown_settings.py --model posekit-lsp --detector posekit-person --data $POSEKIT_DATA \
        --box-margins 0.1 0.15 --region-thresholds 0.1 --refine off 0.13 --refine-weight 0.1 \
        --flip-test off on --multi --max-looks 2 --json reports/topdown_settings.json

``--multi`` also scores every setting on ``val-multi`` (scenes of 1-4 people composed from the
validation images, as ``posekit evaluate --split val-multi``: every person found by
``Predictor.predict_all`` and posed on its box) and chooses by the mean of the two PCKs, so that
one person and several weigh the same. ``--max-looks N`` leaves out of the choice the settings that
run the network on more than N inputs per person (one per crop of the box, list
``--box-margins 0.05,0.2`` for the multi-scale test, plus one per refinement crop, twice that with
the flip test): they are reported, but cost more than the budget.

The validation images are whole photographs (mostly LSP-extended: people at many sizes and places,
the regime top-down is for); the detector's best box is the pose's region, as in
``Predictor.predict``, and the whole image where it finds nobody. The setting with the best
validation PCK (with ``--multi``: the best mean, below) is printed as the choice; LSP test
(``--test``) is only reported. ``--flip-test`` lists the settings compared (default: off only,
whatever the model's own). ``whole`` rows
are the model on the whole image, without the detector, for comparison."""
from __future__ import annotations

import argparse
import itertools
import json
import os

import numpy as np


def load_split(model: str, data: str | None, split: str, limit: int | None):
    """(images, keypoints (N, K, 2), masks (N, K), sizes (N, 2)) of a split's whole images."""
    from posekit.checkpoint import read_checkpoint
    from posekit.data.lsp import load_sets
    from posekit.evaluate import eval_ids, load_samples

    ck = read_checkpoint(model)
    sets = load_sets(data, ["lsp"] if split == "lsp-test" else list(ck["recipe"].data.sets))
    return load_samples(sets, eval_ids(split, ck, sets)[:limit])


def run(pred, images: list, boxes: list, batch: int = 32) -> np.ndarray:
    poses = [p for i in range(0, len(images), batch) for p in pred.predict_batch(images[i:i + batch], boxes[i:i + batch])]
    return np.stack([p.keypoints for p in poses])


def score(kp, truth) -> dict:
    from posekit.metrics import evaluate_keypoints

    m = evaluate_keypoints(kp, truth[1], truth[3], truth[2])
    return {"pck": round(m["pck"], 4), "pcp": round(m["pcp"], 4), "n": len(kp)}


def choose(rows: list[dict], multi: bool, max_looks: int | None) -> dict:
    """The best detector-box row: by validation PCK, or with ``multi`` by the mean of the validation
    and val-multi PCKs; rows over ``max_looks`` network inputs per person are left out (None: any).
    Raises SystemExit (one line) when none is left."""
    ok = [r for r in rows if r["box_margin"] is not None and (max_looks is None or r["looks"] <= max_looks)]
    if not ok:
        raise SystemExit(f"topdown_settings.py: no setting runs at most {max_looks} network inputs per person")
    return max(ok, key=lambda r: (r["val"]["pck"] + r["val-multi"]["pck"]) / 2 if multi else r["val"]["pck"])


def set_margins(pred, margins: list[float]) -> None:
    """``pred`` crops a detected box with this one margin, or (several) once per margin: the
    multi-scale test (``infer.box_margins``)."""
    pred.box_margin, pred.box_margins = (margins[0], None) if len(margins) == 1 else (margins[0], sorted(margins))


def run_detected(pred, images: list, found: list, region_threshold: float, batch: int = 32) -> np.ndarray:
    """Keypoints (N, K, 2) of each image's pose on its best detection (down to
    ``region_threshold``; ``found``: (boxes, scores) per image), as ``Predictor.estimate_detected``
    crops it; on the whole image where there is none."""
    kp = np.zeros((len(images), 14, 2))
    picked = [i for i, (_, s) in enumerate(found) if len(s) and s[0] >= region_threshold]
    for k in range(0, len(picked), batch):
        part = picked[k:k + batch]
        for i, p in zip(part, pred.estimate_detected([(images[i], found[i][0][0]) for i in part])):
            kp[i] = p.keypoints
    rest = sorted(set(range(len(images))) - set(picked))
    if rest:
        kp[rest] = run(pred, [images[i] for i in rest], [None] * len(rest))
    return kp


def multi_pck(pred, det, margins: list[float], region_threshold: float, source: tuple,
              detector_flip_test: bool = False) -> dict:
    """Multi-person PCK@0.2 on val-multi with ``pred`` run top-down on ``det`` at these settings
    (``margins``: one crop's margin, or several for the multi-scale test; the detector's flip test
    or not)."""
    from posekit.evaluate import MULTI_SCENES, multi_person_metrics

    pred.detector = det
    det.settings = pred.config.detect.model_copy(update={"region_threshold": region_threshold,  # the pose model's own
                                                         "flip_test": detector_flip_test})
    set_margins(pred, margins)
    try:
        m, _ = multi_person_metrics(pred, *source, MULTI_SCENES)
    finally:
        pred.detector = None
    return {"pck": round(m["multi_pck"], 4), "people": m["people"], "recall": round(m["recall"], 4)}


def main(argv=None) -> int:
    from posekit.cli import refine_arg
    from posekit.detect import PersonDetector
    from posekit.predict import Predictor

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--detector", default="posekit-person")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--box-margins", nargs="+", type=refine_arg, default=[[0.0], [0.05], [0.1], [0.15], [0.2]],
                    help="margins around the detected box: M, or M,M[,...] for the multi-scale test (one crop per "
                    "margin, fused)")
    ap.add_argument("--region-thresholds", type=float, nargs="+", default=[0.1, 0.3],
                    help="lowest scores of the best detection still used as the region")
    ap.add_argument("--refine", nargs="+", default=["off"], help="refinement settings: off or margins M[,M...]")
    ap.add_argument("--refine-weight", type=float, default=None, help="with crops: the first pass's weight")
    ap.add_argument("--flip-test", nargs="+", choices=["off", "on"], default=["off"], help="flip test settings to compare")
    ap.add_argument("--detector-flip-test", nargs="+", choices=["off", "on"], default=["off"],
                    help="the person detector's flip test settings to compare (detect.flip_test)")
    ap.add_argument("--multi", action="store_true", help="also score val-multi; choose by the mean of the two PCKs")
    ap.add_argument("--max-looks", type=int, default=None, help="choose among settings of at most this many network "
                    "inputs per person (default: any)")
    ap.add_argument("--test", action="store_true", help="also score lsp-test (reported only)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if any(m is False for m in a.box_margins):
        ap.error("--box-margins: margins M or M,M[,...], not off")
    splits = {"val": load_split(a.model, a.data, "val", a.limit)}
    if a.test:
        splits["lsp-test"] = load_split(a.model, a.data, "lsp-test", a.limit)
    det = PersonDetector(a.detector)
    floor = min(a.region_thresholds)
    multi = load_split(a.model, a.data, "val-multi", None)[:3] if a.multi else None  # the scenes' source people
    rows, found_rate = [], {}
    for k, det_flip in enumerate(v == "on" for v in a.detector_flip_test):
        det.settings = det.settings.model_copy(update={"flip_test": det_flip})
        found = {name: [det.detect(im, floor) for im in t[0]] for name, t in splits.items()}
        found_rate[f"detector_flip_test={det_flip}"] = {
            str(th): {name: round(float(np.mean([len(s) and s[0] >= th for _, s in f])), 4) for name, f in found.items()}
            for th in a.region_thresholds}
        print(f"a person found (best detection's score at least ...; detector flip test {det_flip}) in: "
              f"{found_rate[f'detector_flip_test={det_flip}']}", flush=True)
        for r, flip in itertools.product(a.refine, a.flip_test):
            refine = False if r == "off" else [float(v) for v in r.split(",")]
            pred = Predictor(a.model, detector=False, refine=refine, refine_weight=a.refine_weight if refine else None,
                             flip_test=flip == "on")
            setting = {"refine": pred.refine, "refine_weight": pred.refine_weight, "flip_test": pred.flip_test}
            flips = 2 if pred.flip_test else 1
            if k == 0:  # the whole image, without the detector
                row = {"box_margin": None, "detector_flip_test": None, **setting,
                       "looks": (1 + len(pred.refine or [])) * flips}
                row.update({name: score(run(pred, t[0], [None] * len(t[0])), t) for name, t in splits.items()})
                rows.append(row)
                print(json.dumps(row), flush=True)
            for th in a.region_thresholds:
                for given in a.box_margins:
                    ms = sorted(given)
                    set_margins(pred, ms)
                    row = {"box_margin": ms[0] if len(ms) == 1 else ms, "region_threshold": th,
                           "detector_flip_test": det_flip, **setting, "looks": (len(ms) + len(pred.refine or [])) * flips}
                    for name, t in splits.items():
                        row[name] = score(run_detected(pred, t[0], found[name], th), t)
                    if multi is not None:
                        row["val-multi"] = multi_pck(pred, det, ms, th, multi, det_flip)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    best = choose(rows, a.multi, a.max_looks)
    print(f"chosen on val{' and val-multi' if a.multi else ''}: box_margin={best['box_margin']} "
          f"region_threshold={best['region_threshold']} detector_flip_test={best['detector_flip_test']} "
          f"refine={best['refine']} flip_test={best['flip_test']} "
          f"(val PCK@0.2 {best['val']['pck']}" + (f", val-multi {best['val-multi']['pck']}" if a.multi else "") + ")"
          + (f"; its lsp-test PCK@0.2 {best['lsp-test']['pck']}" if a.test else ""))
    if a.json:
        from posekit.utils import write_json

        out = {"model": a.model, "detector": a.detector, "found_rate": found_rate,
               "chosen_on": "mean of val (whole images) and val-multi PCK@0.2" if a.multi else "val (whole images)",
               "max_looks": a.max_looks,
               "chosen": {k: best[k] for k in ("box_margin", "region_threshold", "detector_flip_test", "refine",
                                               "refine_weight", "flip_test")},
               "results": rows}
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
