"""float32 against bfloat16 inference (``infer.precision``): the networks alone at batch 1 on
posekit's batch-1 thread count (the pose network on one input and on the flip test's two, the
person detector on one), end-to-end ``Predictor.predict`` on images, accuracy on evaluation
splits run exactly as ``posekit evaluate --precision P`` runs them, and how far the same images'
joints move between the two (``fp32_vs_bf16``), all in one run.

    python benchmarks/precision.py --model posekit-lsp --data $POSEKIT_DATA --splits lsp-test val lsp-multi \
        --image $POSEKIT_DATA/lsp/images/im1[0-9][0-9][1-9].jpg --json reports/precision_cpu.json

bfloat16 is only fast on a CPU that multiplies it natively (``native_bf16`` in the JSON: AVX512-BF16
or AMX); elsewhere it is emulated and slower than float32, and ``auto`` picks float32 there."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from network_speed import median_ms  # noqa: E402  (the network alone, timed as network_speed.py times it)


def network_times(pred, runs: int) -> dict:
    """Median ms of the pose network (batch 1 and 2) and the detector (batch 1) on one thread."""
    from posekit.predict import default_threads, torch_threads

    s = pred.input_size
    out = {}
    with torch_threads(default_threads(1)):
        for b in (1, 2):
            x = torch.randn(b, 3, s, s).contiguous(memory_format=torch.channels_last)
            out[f"pose_batch{b}_ms"] = median_ms(pred.network, x, runs)
        if pred.detector is not None:
            d = pred.detector.input_size
            x = torch.randn(1, 3, d, d).contiguous(memory_format=torch.channels_last)
            out["detector_batch1_ms"] = median_ms(pred.detector.network, x, runs)
    return out


def predict_times(pred, images: list[str], runs: int) -> dict:
    from posekit.data.images import read_image

    arrays = [read_image(p) for p in images]
    for a in arrays[:5]:
        pred.predict(a)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        pred.predict(arrays[i % len(arrays)])
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    return {"predict_p50_ms": round(float(np.median(ms)), 2), "predict_p90_ms": round(float(np.percentile(ms, 90)), 2)}


SHIFT_PX = 5.0


def joint_shift(kp_a, sc_a, kp_b, sc_b) -> dict:
    """How far the same images' joints (N, K, 2, pixels) and joint scores (N, K) move between two
    runs: percentiles of the joint shift, the images with any joint moved over ``SHIFT_PX``, and
    percentiles of the absolute score change."""
    d = np.linalg.norm(np.asarray(kp_a) - np.asarray(kp_b), axis=-1)
    ds = np.abs(np.asarray(sc_a) - np.asarray(sc_b))
    q = (50, 90, 95, 99)
    return {"images": len(d), "joint_shift_px": {str(p): round(float(v), 3) for p, v in zip(q, np.percentile(d, q))},
            "joint_shift_max_px": round(float(d.max()), 2), "images_over_5px": int((d.max(1) > SHIFT_PX).sum()),
            "joint_score_change": {str(p): round(float(v), 4) for p, v in zip(q, np.percentile(ds, q))}}


def main(argv=None) -> int:
    from posekit.evaluate import evaluate
    from posekit.models.precision import native_bf16
    from posekit.predict import Predictor

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--splits", nargs="*", default=["lsp-test"], help="evaluation splits (none: speed only)")
    ap.add_argument("--image", nargs="*", default=[], help="images for end-to-end predict latency")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.splits and not a.data:
        raise SystemExit("precision.py: --splits needs --data or POSEKIT_DATA")
    rows, preds = [], {}
    for precision in ("fp32", "bf16"):
        pred = Predictor(a.model, precision=precision)
        row = {"precision": precision, **network_times(pred, a.runs)}
        if a.image:
            row.update(predict_times(pred, a.image, a.runs))
        for split in a.splits:
            m, extras = evaluate(a.model, a.data, split, precision=precision)
            keys = ("pck", "pcp", "mse", "multi_pck", "ap50", "recall")
            row[split] = {k: round(m[k], 4) for k in keys if isinstance(m.get(k), float)}
            if "res" in extras:  # single-person splits: the joints, to compare the two arithmetics
                preds.setdefault(split, {})[precision] = (extras["res"]["pred"], extras["res"]["scores"])
        rows.append(row)
        print(json.dumps(row), flush=True)
    speedup = {k: round(rows[0][k] / rows[1][k], 2) for k in rows[0] if k.endswith("_ms")}
    shifts = {split: joint_shift(*p["fp32"], *p["bf16"]) for split, p in preds.items()}
    for split, sh in shifts.items():
        print(f"{split}: fp32 -> bf16 joint shift (px) {sh['joint_shift_px']}, images with a joint moved over "
              f"{SHIFT_PX:g} px: {sh['images_over_5px']} of {sh['images']}")
    print(f"bf16 speed-up (fp32 time / bf16 time): {speedup}")
    out = {"model": a.model, "native_bf16": native_bf16(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
           "runs": a.runs, "images": len(a.image), "results": rows, "bf16_speedup": speedup, "fp32_vs_bf16": shifts}
    from posekit.utils import write_json

    write_json(a.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
