"""A floor for the LSP test split: predict the same pose for every image — the mean of the LSP
training poses, in coordinates normalised by image width and height — and score it with posekit's
metrics. A regressor that stays near this has learned little beyond the average pose.

    python benchmarks/mean_pose_baseline.py --data $POSEKIT_DATA --json reports/mean_pose_lsp_test.json
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from posekit.data.images import read_image
from posekit.data.lsp import load_sets
from posekit.data.splits import lsp_train_count
from posekit.metrics import evaluate_keypoints


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset root (default $POSEKIT_DATA)")
    ap.add_argument("--json", help="write the metrics here")
    a = ap.parse_args()
    s = load_sets(a.data, ["lsp"])["lsp"]
    sizes = np.array([read_image(p).shape[1::-1] for p in s.image_paths], np.float64)
    n_train = lsp_train_count(len(s))
    norm = (s.keypoints + 0.5) / sizes[:, None, :]
    mean = norm[:n_train].mean(0)
    pred = mean[None] * sizes[n_train:, None, :] - 0.5
    m = evaluate_keypoints(pred, s.keypoints[n_train:], sizes[n_train:], s.annotated[n_train:])
    m.update(split="lsp-test", model="mean-pose baseline (LSP train mean)")
    print(f"mean pose on lsp-test: PCK@0.2 {m['pck']:.3f}  PCP@0.5 {m['pcp']:.3f}  MSE {m['mse']:.4f}  "
          f"mean error {m['mean_px_error']:.1f} px")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(m, f)


if __name__ == "__main__":
    main()
