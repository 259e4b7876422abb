"""MediaPipe Pose (the legacy ``mp.solutions.pose`` graph, BlazePose GHUM "full",
``model_complexity=1``, its own person detector) over a list of image files: the peer that
``benchmarks/peer_mediapipe.py`` measures posekit against.

It runs in its own environment, with nothing of posekit (``make mp-venv`` makes ``.venv-mp`` with
``mediapipe==0.10.14``, the last release that bundles the pose models in the package; nothing is
downloaded at run time):

    .venv-mp/bin/python benchmarks/mediapipe_run.py --list images.txt --json landmarks.json

Writes ``{"landmarks": {path: [[x, y, visibility] * 33] or null}, "ms": {path: ms}}``: landmarks in
original pixels (null where no person was found), and per image the time from the file to the
landmarks (``cv2.imread``, BGR to RGB, ``Pose.process``) at batch 1, after ``--warmup`` images."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import mediapipe as mp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", required=True, help="a text file with one image path per line")
    ap.add_argument("--json", required=True)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    paths = [p for p in Path(a.list).read_text().splitlines() if p]
    pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)
    for p in paths[:a.warmup]:
        pose.process(cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB))
    out, ms = {}, {}
    for p in paths:
        t0 = time.perf_counter()
        image = cv2.imread(p)
        res = pose.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        ms[p] = (time.perf_counter() - t0) * 1000
        h, w = image.shape[:2]
        lm = res.pose_landmarks
        out[p] = None if lm is None else [[v.x * w, v.y * h, v.visibility] for v in lm.landmark]
    Path(a.json).write_text(json.dumps({"landmarks": out, "ms": ms}))
    print(f"{len(paths)} images, a person in {sum(v is not None for v in out.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
