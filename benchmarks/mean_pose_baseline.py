"""A floor for a test split: predict the same pose for every image — the mean of the split's
training poses, in coordinates normalised by image width and height — and score it with posekit's
metrics. A regressor that stays near this has learned little beyond the average pose.

    python benchmarks/mean_pose_baseline.py --data $POSEKIT_DATA --json reports/mean_pose_lsp_test.json
    python benchmarks/mean_pose_baseline.py --data $POSEKIT_DATA --split paper --json reports/mean_pose_paper_test.json

``lsp-test``: the mean of LSP 1-1000 on LSP 1001-2000. ``paper``: the paper's seeded 70/15/15
split of LSP + LSP-extended (``configs/paper.yaml``: seed 0), the mean of its train part on its
test part.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from posekit.data.images import read_image
from posekit.data.lsp import load_sets
from posekit.data.splits import lsp_train_count, make_split
from posekit.metrics import evaluate_keypoints


def _normalised(sets: dict) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """sample id -> (keypoints (14, 2) pixels, annotated (14,), size (2,) as width, height,
    keypoints normalised to [0, 1])."""
    out = {}
    for s in sets.values():
        for i, p in enumerate(s.image_paths):
            size = np.array(read_image(p).shape[1::-1], np.float64)
            out[s.sample_id(i)] = (s.keypoints[i], s.annotated[i], size, (s.keypoints[i] + 0.5) / size)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset root (default $POSEKIT_DATA)")
    ap.add_argument("--split", choices=("lsp-test", "paper"), default="lsp-test")
    ap.add_argument("--seed", type=int, default=0, help="the paper split's seed (configs/paper.yaml: 0)")
    ap.add_argument("--json", help="write the metrics here")
    a = ap.parse_args()
    if a.split == "paper":
        sets = load_sets(a.data, ["lsp", "lspet"])
        split = make_split("paper", sets, seed=a.seed)
        train_ids, test_ids, name = split["train"], split["test"], "paper-test"
    else:
        sets = load_sets(a.data, ["lsp"])
        ids = [sets["lsp"].sample_id(i) for i in range(len(sets["lsp"]))]
        n_train = lsp_train_count(len(ids))
        train_ids, test_ids, name = ids[:n_train], ids[n_train:], "lsp-test"
    by_id = _normalised(sets)
    mean = np.mean([by_id[i][3] for i in train_ids], axis=0)
    kp, ann, sizes = (np.stack([by_id[i][k] for i in test_ids]) for k in range(3))
    pred = mean[None] * sizes[:, None, :] - 0.5
    m = evaluate_keypoints(pred, kp, sizes, ann)
    m.update(split=name, model=f"mean-pose baseline (the {name.replace('-test', '')} train mean)")
    print(f"mean pose on {name}: PCK@0.2 {m['pck']:.3f}  PCP@0.5 {m['pcp']:.3f}  MSE {m['mse']:.4f}  "
          f"mean error {m['mean_px_error']:.1f} px")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(m, f)


if __name__ == "__main__":
    main()
