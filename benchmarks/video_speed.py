"""Video: time per frame of one person followed from the last frame's joints (``video.roi_margin``:
one pass, no detector) against every frame detected and posed alone, measured side by side in one
run (the two alternate, clip by clip) on a clip of an LSP test image moving along an ellipse (the
clip of ``video_smoothing.py``), batch 1, the predictor's default threads.

    python benchmarks/video_speed.py --model posekit-lsp --data $POSEKIT_DATA --json reports/video_speed_cpu.json"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def time_clip(pred, frames, times, follow: bool) -> list[float]:
    """Milliseconds per frame of one pass over the clip."""
    from posekit.video import FramePoser

    poser = FramePoser(pred, "one", follow=follow)
    out = []
    for k, (f, t) in enumerate(zip(frames, times)):
        t0 = time.perf_counter()
        poser(f, t, k)
        out.append(1000 * (time.perf_counter() - t0))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--rounds", type=int, default=3, help="passes over the clip in each mode (alternating)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    from video_smoothing import motion_clip

    from posekit.data.images import read_image
    from posekit.data.lsp import load_sets
    from posekit.data.splits import lsp_test_ids
    from posekit.predict import Predictor

    sets = load_sets(a.data, ["lsp"])
    s, sid = sets["lsp"], lsp_test_ids(sets)[0]
    i = [s.sample_id(j) for j in range(len(s))].index(sid)
    frames, _, times = motion_clip(read_image(s.image_paths[i]), s.keypoints[i])
    pred = Predictor(a.model)
    time_clip(pred, frames[:10], times[:10], True)  # warm-up
    ms = {"followed": [], "detected_every_frame": []}
    for _ in range(a.rounds):
        ms["followed"] += time_clip(pred, frames, times, True)
        ms["detected_every_frame"] += time_clip(pred, frames, times, False)
    summary = {k: {"p50_ms": float(np.percentile(v, 50)), "p90_ms": float(np.percentile(v, 90)), "frames": len(v)}
               for k, v in ms.items()}
    ratio = summary["followed"]["p50_ms"] / summary["detected_every_frame"]["p50_ms"]
    result = {"model": a.model, "image": str(s.image_paths[i].name), "clip_frames": len(frames), **summary,
              "followed_over_detected_p50": ratio}
    print(json.dumps(result, indent=1))
    from posekit.utils import write_json

    write_json(a.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
