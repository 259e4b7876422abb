"""Choose the pose NMS threshold of ``Predictor.predict_all`` (``detect.pose_nms``) on val-multi.

    python benchmarks/pose_nms.py --model posekit-lsp --data $POSEKIT_DATA --test --json reports/pose_nms.json

``predict_all`` poses every detection; two boxes on one person, or a weak box across two people,
give a second pose of joints that are already someone else's. Pose NMS drops a pose when the
people already kept account for its joints (:func:`posekit.metrics.pose_nms`, by object keypoint
similarity). For each threshold (and off) the report gives multi-person PCK@0.2, the people
returned and the share of them that is a true person (``pose_precision``), on val-multi (scenes
of 1-4 people composed from the validation images, as ``posekit evaluate --split val-multi``),
and with ``--test`` on lsp-multi (reported only). The network runs once per scene; each threshold
filters the same poses.

The choice: among thresholds whose val-multi PCK is within ``--max-pck-loss`` of no pose NMS, the
highest pose precision, and among those the highest threshold (the least suppression)."""
from __future__ import annotations

import argparse
import json
import os
import sys


def choose(rows: list[dict], max_pck_loss: float) -> float | None:
    """The threshold to use from ``rows`` (dicts of threshold (None: off), multi_pck,
    pose_precision on the choosing split): see the module's docstring. None: pose NMS off."""
    off = next(r for r in rows if r["threshold"] is None)
    ok = [r for r in rows if r["multi_pck"] >= off["multi_pck"] - max_pck_loss]
    best = max(r["pose_precision"] or 0.0 for r in ok)
    tied = [r["threshold"] for r in ok if (r["pose_precision"] or 0.0) == best]
    return None if None in tied else max(tied)


class Filtered:
    """``pred`` whose ``predict_all`` answers the poses it gives without pose NMS (computed once
    per image, cached) filtered as ``predict_all`` does (:func:`posekit.predict.drop_duplicate_poses`)
    at ``threshold``."""

    def __init__(self, pred, cache: dict, threshold: float | None):
        self.pred, self.cache, self.threshold = pred, cache, threshold

    def __getattr__(self, name):
        return getattr(self.pred, name)

    def predict_all(self, image, color: str = "RGB"):
        from posekit.predict import drop_duplicate_poses

        key = (image.shape, image.tobytes())
        if key not in self.cache:
            self.cache[key] = self.pred.predict_all(image, color)
        out = list(self.cache[key])
        return out if self.threshold is None else drop_duplicate_poses(out, self.threshold)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.7])
    ap.add_argument("--max-pck-loss", type=float, default=0.005, help="largest val-multi PCK loss allowed")
    ap.add_argument("--test", action="store_true", help="also report lsp-multi")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if any(not 0 <= t <= 1 for t in a.thresholds):
        print(f"pose_nms.py: --thresholds {a.thresholds}: expected values in [0, 1]", file=sys.stderr)
        return 2
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from topdown_settings import load_split

    from posekit.evaluate import MULTI_SCENES, multi_person_metrics
    from posekit.predict import Predictor

    pred = Predictor(a.model)
    if pred.detector is None:
        print(f"pose_nms.py: {a.model}: the model has no person detector", file=sys.stderr)
        return 2
    pred.detector.settings = pred.detector.settings.model_copy(update={"pose_nms": None})
    splits = ["val-multi"] + (["lsp-multi"] if a.test else [])
    rows = {s: [] for s in splits}
    for split in splits:
        source = load_split(a.model, a.data, split, None)[:3]
        cache: dict = {}
        for t in [None, *a.thresholds]:
            m, _ = multi_person_metrics(Filtered(pred, cache, t), *source, MULTI_SCENES)
            row = {"threshold": t, "multi_pck": round(m["multi_pck"], 4), "people": m["people"],
                   "poses_returned": m["poses_returned"],
                   "pose_precision": None if m["pose_precision"] is None else round(m["pose_precision"], 4)}
            rows[split].append(row)
            print(split, json.dumps(row), flush=True)
    chosen = choose(rows["val-multi"], a.max_pck_loss)
    print(f"chosen on val-multi: pose_nms={chosen}")
    if a.json:
        from posekit.utils import write_json

        out = {"model": a.model, "chosen_on": "val-multi", "max_pck_loss": a.max_pck_loss, "chosen": chosen,
               "results": rows}
        write_json(a.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
