"""Accuracy against training epochs: evaluate a run's snapshots (``epoch_NNN.pt``, written every
``train.save_every`` epochs, and ``last.pt``) on the LSP test split, whole images, and print
PCK@0.2 / PCP@0.5 per epoch next to the run's validation PCK and learning rate.

    python benchmarks/pck_curve.py --run runs/release80 --data $POSEKIT_DATA --json reports/release_curve.json

``inversion`` is the fraction of joints placed on their left/right counterpart (metrics.error_breakdown).
``--recrop MARGIN`` adds ``pck_recrop`` / ``pcp_recrop``: the same snapshot with a second look at
that margin (``posekit evaluate --recrop``), as a model shipped with it runs.

Snapshots only report; nothing is selected by test accuracy (the shipped model is the run's last
epoch, as the cosine schedule ends)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from posekit.cli import recrop_arg
from posekit.evaluate import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="run folder")
    ap.add_argument("--data", default=None, help="dataset root (default $POSEKIT_DATA)")
    ap.add_argument("--json", help="write the curve here")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the rows of epoch_*.pt snapshots already in --json (a run in progress, evaluated as it goes)")
    ap.add_argument("--recrop", type=recrop_arg, default=None, metavar="MARGIN[,MARGIN...]",
                    help="also score a second look at this margin (or these crops' margins)")
    a = ap.parse_args()
    run = Path(a.run)
    snaps = sorted(run.glob("epoch_*.pt"))
    if (run / "last.pt").is_file():
        snaps.append(run / "last.pt")
    if not snaps:
        raise SystemExit(f"{run}: no epoch_*.pt or last.pt")
    history = {h["epoch"]: h for h in json.loads((run / "history.json").read_text())}
    rows, seen = [], set()
    done = {}
    if a.reuse and a.json and Path(a.json).is_file():
        done = {r["checkpoint"]: r for r in json.loads(Path(a.json).read_text())["curve"]
                if r["checkpoint"].startswith("epoch_")}
    for p in snaps:
        if p.name in done:
            rows.append(done[p.name])
            seen.add(done[p.name]["epoch"])
            continue
        m, _ = evaluate(str(p), a.data, "lsp-test")
        if m["epoch"] in seen:
            continue
        seen.add(m["epoch"])
        h = history.get(m["epoch"], {})
        rows.append({"epoch": m["epoch"], "checkpoint": p.name, "pck": round(m["pck"], 4), "pcp": round(m["pcp"], 4),
                     "mean_px_error": round(m["mean_px_error"], 2), "inversion": round(m["errors"]["inversion"], 4),
                     "val_pck": round(h.get("pck", float("nan")), 4), "lr": h.get("lr")})
        r = rows[-1]
        if a.recrop is not None:
            m2, _ = evaluate(str(p), a.data, "lsp-test", recrop=a.recrop)
            r.update(recrop=a.recrop, pck_recrop=round(m2["pck"], 4), pcp_recrop=round(m2["pcp"], 4))
        print(f"epoch {r['epoch']:>3}  lsp-test PCK@0.2 {r['pck']:.3f}  PCP@0.5 {r['pcp']:.3f}  "
              f"mean error {r['mean_px_error']:.1f} px  inversions {r['inversion']:.3f}  val PCK {r['val_pck']:.3f}"
              + (f"  second look {r['pck_recrop']:.3f}" if "pck_recrop" in r else ""), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"run": str(run), "split": "lsp-test", "curve": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
