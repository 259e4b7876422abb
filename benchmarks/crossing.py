"""Id switches when people cross, with and without re-identification and pose NMS.

    python benchmarks/crossing.py --model posekit-lsp --data $POSEKIT_DATA --json reports/crossing.json

Clips of two people crossing a canvas in opposite directions, the first in front
(``video_smoothing.crossing_clip``, 90 frames): four from validation images (people with all 14
joints annotated, three images per clip) to compare settings, and the one of
``benchmarks/video_smoothing.py`` from the first three LSP test images (reported). Every frame
goes through ``posekit predict --people all`` (``FramePoser``: the detector, ``predict_all``, the
tracker); a true person is followed when a found pose's box overlaps theirs (IoU 0.3). For each
setting: id switches (a true person's id changing between frames where they are followed) and
person-frames missed. Settings: re-identification (``video.reid_age``: 0 off, or the model's) and
pose NMS (``detect.pose_nms``: off, or the model's)."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from video_smoothing import crossing_clip, id_switches

    from posekit.checkpoint import read_checkpoint
    from posekit.data.lsp import load_sets
    from posekit.data.splits import lsp_test_ids
    from posekit.evaluate import load_samples
    from posekit.predict import Predictor

    pred = Predictor(a.model)
    if pred.detector is None:
        print(f"crossing.py: {a.model}: the model has no person detector", file=sys.stderr)
        return 2
    sets = load_sets(a.data, list(read_checkpoint(a.model)["recipe"].data.sets))
    images, kps, masks, _ = load_samples(sets, list(read_checkpoint(a.model)["split"]["val"])[:40])
    full = [i for i in range(len(images)) if masks[i].sum() == masks.shape[1]]
    clips = {"val": [crossing_clip([images[i] for i in full[3 * c:3 * c + 3]], kps[full[3 * c:3 * c + 3]],
                                   masks[full[3 * c:3 * c + 3]]) for c in range(4)]}
    images, kps, masks, _ = load_samples(sets, lsp_test_ids(sets)[:3])
    clips["test"] = [crossing_clip(images, kps, masks)]
    video, detect = pred.config.video, pred.detector.settings
    rows = []
    for reid, nms in itertools.product([0, video.reid_age], [None, detect.pose_nms]):
        pred.config = pred.config.model_copy(update={"video": video.model_copy(update={"reid_age": reid})})
        pred.detector.settings = detect.model_copy(update={"pose_nms": nms})
        row = {"reid_age": reid, "pose_nms": nms}
        for split, cs in clips.items():
            runs = [id_switches(pred, *c) for c in cs]
            row[split] = {"clips": len(cs), "id_switches": sum(r["id_switches"] for r in runs),
                          "missed_person_frames": sum(r["missed_person_frames"] for r in runs),
                          "person_frames": sum(r["frames"] * r["people"] for r in runs)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    from posekit.utils import write_json

    write_json(a.json, {"model": a.model, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
