"""Inference speed, end to end: read the JPEG, decode, letterbox, network, decode the heatmaps,
map back to original pixels (``Predictor.predict(path)``), per backend.

    python benchmarks/inference.py --json reports/inference_cpu.json [--data $POSEKIT_DATA]

Prints a table: latency p50/p90 at batch 1 and throughput at batch 32 for PyTorch eager,
``torch.compile``, ONNX Runtime fp32 and ONNX Runtime int8 (static QDQ quantisation, calibrated on
LSP training images when --data is given, else on the examples), plus CUDA when present. With
--data it also scores each backend on the LSP test split (PCK@0.2), so a faster backend that
loses accuracy shows it."""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from posekit.predict import Predictor

EXAMPLES = sorted(str(p) for p in Path("examples").glob("*.jpg"))


def _latency(pred: Predictor, images: list[str], runs: int, warmup: int = 10) -> tuple[float, float]:
    times = []
    for i in range(warmup + runs):
        path = images[i % len(images)]
        t0 = time.perf_counter()
        pred.predict(path)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 90))


def _throughput(pred: Predictor, images: list[str], batch: int, rounds: int) -> float:
    paths = [images[i % len(images)] for i in range(batch)]
    pred.predict_batch(paths)  # warm-up (and a compile for the new batch size)
    t0 = time.perf_counter()
    for _ in range(rounds):
        pred.predict_batch(paths)
    return batch * rounds / (time.perf_counter() - t0)


def _pck(pred: Predictor, data: str) -> float:
    from posekit.data.lsp import load_sets
    from posekit.metrics import evaluate_keypoints

    s = load_sets(data, ["lsp"])["lsp"]
    idx = list(range(1000, 2000))
    kps, sizes = [], []
    for i in range(0, len(idx), 32):
        poses = pred.predict_batch([s.image_paths[j] for j in idx[i:i + 32]])
        kps += [p.keypoints for p in poses]
        sizes += [(p.width, p.height) for p in poses]
    m = evaluate_keypoints(np.stack(kps), s.keypoints[idx], np.array(sizes), s.annotated[idx])
    return float(m["pck"])


def _calibration_images(data: str | None, n: int) -> list[np.ndarray]:
    from posekit.data.images import read_image

    if data:
        from posekit.data.lsp import load_sets

        s = load_sets(data, ["lsp"])["lsp"]
        return [read_image(s.image_paths[i]) for i in range(0, 1000, max(1, 1000 // n))][:n]
    return [read_image(p) for p in EXAMPLES]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--backends", nargs="+", default=["torch", "torch-compile", "onnx", "onnx-int8", "cuda"])
    ap.add_argument("--runs", type=int, default=300, help="timed batch-1 calls per backend")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=10, help="timed batches for the throughput figure")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"), help="LSP root: adds PCK@0.2 per backend")
    ap.add_argument("--calib", type=int, default=200, help="calibration images for int8")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    if a.data and not Path(a.data, "lsp").is_dir():
        a.data = None
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="posekit-bench-"))
    for backend in a.backends:
        if backend == "cuda" and not torch.cuda.is_available():
            continue
        t0 = time.perf_counter()
        if backend in ("torch", "cuda"):
            pred = Predictor(a.model, device="cuda" if backend == "cuda" else "cpu")
        elif backend == "torch-compile":
            pred = Predictor(a.model, device="cpu")
            pred.network = torch.compile(pred.model)
            pred.predict(EXAMPLES[0])  # the compile itself, not timed below
        elif backend == "onnx":
            pred = Predictor(a.model, backend="onnx")
        elif backend == "onnx-int8":
            from posekit.export import quantize_int8

            path = quantize_int8(a.model, tmp / "int8.onnx", _calibration_images(a.data, a.calib))
            pred = Predictor(str(path), backend="onnx")
        else:
            raise SystemExit(f"unknown backend {backend}")
        setup_s = time.perf_counter() - t0
        p50, p90 = _latency(pred, EXAMPLES, a.runs)
        thr = _throughput(pred, EXAMPLES, a.batch, a.rounds)
        row = {"backend": backend, "p50_ms": round(p50, 2), "p90_ms": round(p90, 2),
               "images_per_s_batch1": round(1000 / p50, 1), f"images_per_s_batch{a.batch}": round(thr, 1),
               "setup_s": round(setup_s, 1)}
        if a.data:
            row["pck"] = round(_pck(pred, a.data), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    ref = next((r["pck"] for r in rows if r["backend"] == "torch" and "pck" in r), None)
    for r in rows:  # the rule: a quantised or compiled backend must keep PCK@0.2 within 1 point
        if ref is not None and "pck" in r:
            r["pck_within_1_point"] = abs(r["pck"] - ref) <= 0.01
    print(f"\n{'backend':<14} {'p50 ms':>8} {'p90 ms':>8} {'img/s b1':>9} {f'img/s b{a.batch}':>10} {'PCK@0.2':>8}  accuracy")
    for r in rows:
        ok = {True: "kept", False: "LOST (>1 point)", None: "-"}[r.get("pck_within_1_point")]
        print(f"{r['backend']:<14} {r['p50_ms']:>8} {r['p90_ms']:>8} {r['images_per_s_batch1']:>9} "
              f"{r[f'images_per_s_batch{a.batch}']:>10} {r.get('pck', '-'):>8}  {ok}")
    if a.json:
        meta = {"model": a.model, "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "images": EXAMPLES,
                "end_to_end": "read JPEG + decode + letterbox + network + heatmap decode + map back"}
        Path(a.json).write_text(json.dumps({**meta, "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
