"""Does a rerun of a training command reproduce the original run? Compares two run folders: the
weights of every epoch snapshot both have (``epoch_NNN.pt``: the model as validated, averaged
weights where ``train.ema`` is on) and every epoch both histories have (train/val loss, PCK).

    python benchmarks/rerun_check.py --pair runs/release160 runs/rerun/release160 --json reports/rerun_check.json

A rerun may be stopped early: only the epochs both runs reached are compared."""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import torch

KEYS = ("train_loss", "val_loss", "pck", "pcp")


def _history(run: Path) -> list[dict]:
    h = json.loads((run / "history.json").read_text())
    return h if isinstance(h, list) else h.get("history", [])


def _same(x, y) -> bool:
    """Equal, or both NaN (a diverged epoch reproduced is still reproduced)."""
    return x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))


def compare(original: Path, rerun: Path) -> dict:
    snaps = sorted({p.name for p in original.glob("epoch_*.pt")} & {p.name for p in rerun.glob("epoch_*.pt")})
    weights = []
    for name in snaps:
        a = torch.load(original / name, map_location="cpu", weights_only=False)["model"]
        b = torch.load(rerun / name, map_location="cpu", weights_only=False)["model"]
        same = sorted(a) == sorted(b) and all(a[k].shape == b[k].shape for k in a)
        diff = max(((a[k].double() - b[k].double()).abs().max().item() for k in a), default=0.0) if same else float("nan")
        weights.append({"epoch": int(re.findall(r"\d+", name)[0]), "tensors": len(a), "same_names_and_shapes": same,
                        "identical": same and all(torch.equal(a[k], b[k]) for k in a), "max_abs_diff": diff})
    ha, hb = _history(original), _history(rerun)
    epochs = []
    for ea, eb in zip(ha, hb):
        epochs.append({"epoch": ea["epoch"], **{f"{k}": [ea.get(k), eb.get(k)] for k in KEYS},
                       "identical": all(_same(ea.get(k), eb.get(k)) for k in KEYS)})
    return {"original": str(original), "rerun": str(rerun), "snapshots": weights, "epochs": epochs,
            "all_identical": bool(weights or epochs) and all(w["identical"] for w in weights)
            and all(e["identical"] for e in epochs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", nargs=2, action="append", required=True, metavar=("ORIGINAL", "RERUN"))
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    rows = [compare(Path(o), Path(r)) for o, r in a.pair]
    for r in rows:
        print(f"{r['rerun']}: {len(r['epochs'])} epoch(s) and {len(r['snapshots'])} snapshot(s) compared with "
              f"{r['original']}: {'bit-identical' if r['all_identical'] else 'DIFFERENT'}")
        for e in r["epochs"]:
            print(f"  epoch {e['epoch']}: val_loss {e['val_loss'][0]:.6g} vs {e['val_loss'][1]:.6g}, "
                  f"pck {e['pck'][0]:.4f} vs {e['pck'][1]:.4f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"pairs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
