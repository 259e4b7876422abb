"""posekit against MediaPipe Pose (full) on the LSP test split, in one run: PCK@0.2 and PCP@0.5 of
MediaPipe's landmarks mapped to the 14 LSP joints, and end-to-end batch-1 latency (image file to
joints) of MediaPipe and of posekit's models, timed on the same images one after the other.

    make mp-venv   # MediaPipe 0.10.14 in .venv-mp (benchmark only; posekit does not depend on it)
    python benchmarks/peer_mediapipe.py --data $POSEKIT_DATA --models posekit-lsp posekit-lsp-fast \
        --json reports/peer_mediapipe.json

The mapping: MediaPipe's shoulders, elbows, wrists, hips, knees and ankles are LSP's (both
person-centric). LSP's neck and head top have no MediaPipe landmark; each is the mid-shoulder point
plus a multiple of (mid-ear - mid-shoulder), the multiple fitted by least squares on LSP's
training images (1-1000) and applied unchanged on the test images. An image where MediaPipe finds
nobody counts as all its joints wrong (``found`` in the JSON)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# LSP joint -> MediaPipe landmark (None: neck and head top, fitted)
MP_INDEX = [28, 26, 24, 23, 25, 27, 16, 14, 12, 11, 13, 15, None, None]
FAR = -1e4  # where a joint of an image without a detection is put: beyond any threshold


def run_mediapipe(python: str, paths: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        lst, out = Path(tmp) / "images.txt", Path(tmp) / "mp.json"
        lst.write_text("\n".join(paths) + "\n")
        subprocess.run([python, str(HERE / "mediapipe_run.py"), "--list", str(lst), "--json", str(out)], check=True)
        return json.loads(out.read_text())


def head_points(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mid-shoulder, mid-ear - mid-shoulder) of landmarks (33, 3)."""
    shoulder = (lm[11, :2] + lm[12, :2]) / 2
    return shoulder, (lm[7, :2] + lm[8, :2]) / 2 - shoulder


def fit_head(landmarks: list, gt: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Least-squares multiples (neck, head top) of (mid-ear - mid-shoulder) from the mid-shoulder."""
    coefs = []
    for j in (12, 13):
        num = den = 0.0
        for lm, g, m in zip(landmarks, gt, mask):
            if lm is None or not m[j]:
                continue
            s, d = head_points(np.asarray(lm))
            num += float(np.dot(g[j] - s, d))
            den += float(np.dot(d, d))
        coefs.append(num / den if den else 0.0)
    return coefs[0], coefs[1]


def to_lsp(lm, coefs: tuple[float, float]) -> np.ndarray:
    """MediaPipe landmarks (33, 3) in pixels -> LSP joints (14, 2), 0-based pixel centres."""
    if lm is None:
        return np.full((14, 2), FAR)
    lm = np.asarray(lm, np.float64)
    lm[:, :2] -= 0.5  # MediaPipe's 0..1 spans the image's edges; posekit's pixel centres are integers
    out = np.array([lm[i, :2] if i is not None else [0, 0] for i in MP_INDEX], np.float64)
    s, d = head_points(lm)
    out[12], out[13] = s + coefs[0] * d, s + coefs[1] * d
    return out


def time_posekit(model: str, paths: list[str]) -> list[float]:
    from posekit.predict import Predictor

    pred = Predictor(model)
    for p in paths[:5]:
        pred.predict(p)
    ms = []
    for p in paths:
        t0 = time.perf_counter()
        pred.predict(p)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def stats(ms) -> dict:
    ms = np.asarray(ms, np.float64)
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
            "runs": int(len(ms))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--models", nargs="*", default=["posekit-lsp"], help="posekit models timed beside it")
    ap.add_argument("--timed", type=int, default=200, help="test images timed per model (the first N)")
    ap.add_argument("--mp-python", default=str(HERE.parent / ".venv-mp" / "bin" / "python"))
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from posekit.data.lsp import load_sets
    from posekit.metrics import pck, pcp

    lsp = load_sets(a.data, ["lsp"])["lsp"]
    n = len(lsp) // 2
    train, test = list(range(n)), list(range(n, len(lsp)))
    paths = [str(p) for p in lsp.image_paths]
    got = run_mediapipe(a.mp_python, paths)
    lms = [got["landmarks"][p] for p in paths]
    coefs = fit_head([lms[i] for i in train], lsp.keypoints[train], lsp.annotated[train])
    pred = np.stack([to_lsp(lms[i], coefs) for i in test])
    gt, mask = lsp.keypoints[test], lsp.annotated[test]
    p, per_joint = pck(pred, gt, mask)
    result = {"split": "lsp-test", "images": len(test), "mediapipe": {
        "model": "mediapipe 0.10.14 solutions.pose, model_complexity=1 (full), static_image_mode",
        "pck": round(float(p), 4), "pcp": round(float(pcp(pred, gt, mask)[0]), 4),
        "found": round(float(np.mean([lms[i] is not None for i in test])), 4),
        "neck_head_coefs": [round(c, 4) for c in coefs],
        **stats([got["ms"][paths[i]] for i in test[:a.timed]])}, "posekit": {}}
    print(f"mediapipe  PCK@0.2 {result['mediapipe']['pck']:.3f}  p50 {result['mediapipe']['p50_ms']} ms", flush=True)
    for model in a.models:
        result["posekit"][model] = stats(time_posekit(model, [paths[i] for i in test[:a.timed]]))
        r = result["posekit"][model]
        r["over_mediapipe"] = round(r["p50_ms"] / result["mediapipe"]["p50_ms"], 3)
        print(f"{model}  p50 {r['p50_ms']} ms ({r['over_mediapipe']}x mediapipe)", flush=True)
    from posekit.utils import write_json

    write_json(a.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
