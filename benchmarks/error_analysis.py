"""Where a model's PCK@0.2 misses go, on the LSP test split (whole images, as `evaluate`):

- the error kinds of every joint (``metrics.error_breakdown``: good, jitter, inversion, miss),
  overall and per joint;
- two left/right oracles (``metrics.lr_oracles``), which use the ground truth and only bound
  what fixing left/right decisions could give: per image, swap the whole pose's left and right
  joints when the swapped pose is nearer the truth (the person's facing direction), or decide the
  arms and the legs separately.

    python benchmarks/error_analysis.py --model posekit-lsp --data $POSEKIT_DATA --json reports/release_errors.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from posekit.evaluate import evaluate
from posekit.metrics import lr_oracles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=None, help="dataset root (default $POSEKIT_DATA)")
    ap.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None, help="default: the model's own")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    m, extras = evaluate(a.model, a.data, "lsp-test", flip_test=a.flip_test)
    res = extras["res"]
    out = {"model": a.model, "checkpoint": m["checkpoint"], "split": "lsp-test", "n": m["n"], "flip_test": m["flip_test"],
           "errors": m["errors"], "per_joint_errors": m["per_joint_errors"],
           **lr_oracles(res["pred"], res["gt"], res["mask"])}
    print(f"PCK@0.2 {out['pck']:.4f}: " + ", ".join(f"{k} {v:.4f}" for k, v in m["errors"].items()))
    print(f"left/right oracles: whole pose {out['pck_whole_pose_lr_oracle']:.4f} ({out['images_swapped']} images), "
          f"arms and legs apart {out['pck_arms_legs_lr_oracle']:.4f} ({out['chains_swapped']} chains)")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
