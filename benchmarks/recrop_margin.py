"""Choose the second look's settings on the validation split: PCK@0.2 with one look, then with a
second look on a square crop around the first estimate at each margin (``posekit evaluate
--recrop M``), with the first look's heatmaps blended in at each weight (``--fuse W``).

    python benchmarks/recrop_margin.py --model posekit-lsp --data ../shared/data --json reports/recrop_margin.json

The setting with the best validation PCK is printed as the choice; the LSP test split is scored
too (``--test``) but only reported, never used to choose."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from posekit.evaluate import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--margins", type=float, nargs="+", default=[0.05, 0.1, 0.13, 0.17, 0.25])
    ap.add_argument("--fuse", type=float, nargs="+", default=[0.0], help="weights of the first look to try")
    ap.add_argument("--test", action="store_true", help="also score each margin on lsp-test (reported only)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    rows = []
    for margin, fuse in [(False, 0.0)] + [(m, w) for m in a.margins for w in a.fuse]:
        row = {"recrop": margin if margin is not False else None, "fuse": fuse}
        for split in ["val"] + (["lsp-test"] if a.test else []):
            m, _ = evaluate(a.model, a.data, split, recrop=margin, fuse=fuse if margin is not False else None)
            row[split] = {"pck": round(m["pck"], 4), "pcp": round(m["pcp"], 4), "n": m["n"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["val"]["pck"])
    print(f"\nchosen on val: recrop={best['recrop']} fuse={best['fuse']} (val PCK@0.2 {best['val']['pck']}; "
          f"one look {rows[0]['val']['pck']})")
    if a.json:
        out = {"model": a.model, "chosen_on": "val", "chosen": {"recrop": best["recrop"], "fuse": best["fuse"]},
               "results": rows}
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
