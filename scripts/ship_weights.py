"""Package a trained run as a shipped model (posekit/weights/<name>.pt in fp16 and its model card
<name>.md); the work is :func:`posekit.ship.ship`.

    python scripts/ship_weights.py --run runs/release_deeper/best.pt --name posekit-lsp \
        --metrics reports/release_lsp_test.json --command "posekit train --config configs/release.yaml ..." \
        --infer refine=[0.05,0.13,0.22] refine_weight=0.1 --detect model=posekit-person box_margin=0.1
    python scripts/ship_weights.py --run runs/detector/best.pt --name posekit-person \
        --metrics reports/detector_lsp_multi.json --command "posekit train --config configs/detector.yaml ..."
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from posekit.errors import PosekitError
from posekit.ship import ship


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="checkpoint file or run folder")
    ap.add_argument("--name", default="posekit-lsp")
    ap.add_argument("--metrics", help="JSON from `posekit evaluate --json`, scored with the settings shipped")
    ap.add_argument("--command", action="append", required=True, help="a command of the chain that made it (repeat)")
    ap.add_argument("--infer", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                    help="infer settings to ship with (repeats add up)")
    ap.add_argument("--detect", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                    help="detect settings to ship with (model=posekit-person: run that person detector first)")
    ap.add_argument("--video", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                    help="video settings to ship with (One-Euro smoothing: min_cutoff=, beta=)")
    ap.add_argument("--max-mb", type=float, default=10.0)
    ap.add_argument("--note", default="", help="a line about how the run was made")
    a = ap.parse_args()
    settings = {section: {k: yaml.safe_load(v) for k, _, v in (kv.partition("=") for kv in kvs)}
                for section, kvs in (("infer", a.infer), ("detect", a.detect), ("video", a.video))}
    metrics = json.loads(Path(a.metrics).read_text()) if a.metrics else {}
    try:
        out, card = ship(a.run, a.name, metrics, a.command, settings, a.note, a.max_mb)
    except PosekitError as e:
        print(f"ship_weights: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
