"""Run-time cost per image of each stage of a DeepPose cascade checkpoint, at batch 1 on the CPU:
stage 1 is JPEG decode + resize + network + decode + mapping back to original pixels (what a
plain model costs); each later stage is its 14 crops around the previous estimate + its network
+ mapping back. Times are medians over the images given (each image is run ``--repeat`` times).

    python benchmarks/cascade_cost.py --model runs/cascade/best.pt --images examples/*.jpg --json reports/cascade_cost_cpu.json"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from posekit.checkpoint import load_model
from posekit.data.images import read_image
from posekit.models import count_parameters, model_flops
from posekit.predict import Predictor
from posekit.skeleton import NUM_JOINTS


@torch.inference_mode()
def measure(model_path: str, images: list[Path], repeat: int, warmup: int = 3) -> dict:
    pred = Predictor(model_path, device="cpu")
    stage1 = load_model(model_path)[0]  # as trained (the predictor's copy has its BN folded)
    stages, pred.stages = pred.stages, []  # stage 1 alone is what `predict` does for a plain model
    if not stages:
        raise SystemExit(f"{model_path}: not a cascade checkpoint (no refinement stages)")
    cfg = pred.config
    times = [[] for _ in range(1 + len(stages))]
    runs = [p for p in images for _ in range(repeat)]
    for n, path in enumerate([runs[0]] * warmup + runs):
        t0 = time.perf_counter()
        img = read_image(path)
        est = pred.predict(img).keypoints[None]
        lap = [time.perf_counter() - t0]
        for st in stages:
            t0 = time.perf_counter()
            est = st.refine([img], est)
            lap.append(time.perf_counter() - t0)
        if n >= warmup:
            for t, v in zip(times, lap):
                t.append(v * 1000)
    rows = [{"stage": 1, "model": cfg.model.name, "input_size": pred.input_size,
             "params": count_parameters(stage1), "gflops": round(model_flops(stage1, pred.input_size), 3),
             "p50_ms": round(float(np.median(times[0])), 2)}]
    for k, (st, t) in enumerate(zip(stages, times[1:]), start=2):
        rows.append({"stage": k, "model": type(st.net).__name__, "input_size": st.input_size, "sigma": st.sigma,
                     "params": count_parameters(st.net), "crops": NUM_JOINTS,
                     "gflops": round(model_flops(st.net, st.input_size) * NUM_JOINTS, 3),
                     "p50_ms": round(float(np.median(t)), 2)})
    total = float(np.median(np.sum(np.array(times), axis=0)))
    return {"model": model_path, "images": len(images), "repeat": repeat, "stages": rows, "total_p50_ms": round(total, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a cascade checkpoint or run folder")
    ap.add_argument("--images", nargs="+", required=True)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    res = measure(a.model, [Path(p) for p in a.images], a.repeat)
    for r in res["stages"]:
        print(f"stage {r['stage']}: {r['model']:<10} {r['input_size']}px {r['params']:>10,} params "
              f"{r['gflops']:>6} GFLOPs  p50 {r['p50_ms']:>7} ms")
    print(f"all stages: p50 {res['total_p50_ms']} ms per image")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": "cpu", "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), **res},
                      f, indent=1)


if __name__ == "__main__":
    main()
