"""Accuracy against training epochs: evaluate a run's snapshots (``epoch_NNN.pt``, written every
``train.save_every`` epochs, and ``last.pt``) on the LSP test split, whole images, and print
PCK@0.2 / PCP@0.5 per epoch next to the run's validation PCK and learning rate.

    python benchmarks/pck_curve.py --run runs/release80 --data $POSEKIT_DATA --json reports/release_curve.json

``inversion`` is the fraction of joints placed on their left/right counterpart (metrics.error_breakdown).
Snapshots are scored with one pass (``--refine off``). ``--refine MARGIN[,MARGIN...]`` adds
``pck_refine`` / ``pcp_refine``: the same snapshot with refinement crops at those margins
(``posekit evaluate --refine``; ``--refine-weight``: the first pass's weight in the fused maps,
default the model's own, 0 for a training run), as a model shipped with them runs.

    python benchmarks/pck_curve.py --run runs/release_deeper --data $POSEKIT_DATA --refine 0.1 \
        --json reports/release_deeper_curve.json

``train_hours`` is the run's training time up to each snapshot (machine hours, from its
history; ``--base-hours`` adds the runs before it), for accuracy against compute.

Snapshots only report; nothing is selected by test accuracy (the shipped model is the run's last
epoch, as the cosine schedule ends)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from posekit.evaluate import evaluate


def refine_arg(text: str) -> float | list[float] | bool:
    """``--refine``: a margin, comma-separated margins, or off."""
    if text.strip().lower() == "off":
        return False
    try:
        ms = [float(t) for t in text.split(",")]
        return ms[0] if len(ms) == 1 else ms
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected margins like 0.05,0.13 or 'off', got {text!r}") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="run folder")
    ap.add_argument("--data", default=None, help="dataset root (default $POSEKIT_DATA)")
    ap.add_argument("--json", help="write the curve here")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the rows of epoch_*.pt snapshots already in --json (a run in progress, evaluated as it goes)")
    ap.add_argument("--refine", type=refine_arg, default=False, metavar="MARGIN[,MARGIN...]|off",
                    help="also score each snapshot with refinement crops at these margins")
    ap.add_argument("--refine-weight", type=float, default=None, metavar="W",
                    help="with --refine: the first pass's weight in the fused heatmaps (default: the model's own)")
    ap.add_argument("--detector", default=False, help="score through this person detector (default: whole images)")
    ap.add_argument("--base-hours", type=float, default=0.0,
                    help="training hours of the run this one started from (train.init_from), added to its own")
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
        m, _ = evaluate(str(p), a.data, "lsp-test", refine=False, detector=a.detector)
        if m["epoch"] in seen:
            continue
        seen.add(m["epoch"])
        h = history.get(m["epoch"], {})
        hours = a.base_hours + sum(e.get("train_time_s", 0.0) for k, e in history.items() if k <= m["epoch"]) / 3600
        rows.append({"epoch": m["epoch"], "checkpoint": p.name, "train_hours": round(hours, 3),
                     "pck": round(m["pck"], 4), "pcp": round(m["pcp"], 4),
                     "mean_px_error": round(m["mean_px_error"], 2), "inversion": round(m["errors"]["inversion"], 4),
                     "val_pck": round(h.get("pck", float("nan")), 4), "lr": h.get("lr")})
        r = rows[-1]
        if a.refine:
            m2, _ = evaluate(str(p), a.data, "lsp-test", refine=a.refine, refine_weight=a.refine_weight,
                             detector=a.detector)
            r.update(refine=a.refine, refine_weight=m2["refine_weight"], pck_refine=round(m2["pck"], 4),
                     pcp_refine=round(m2["pcp"], 4))
        print(f"epoch {r['epoch']:>3}  lsp-test PCK@0.2 {r['pck']:.3f}  PCP@0.5 {r['pcp']:.3f}  "
              f"mean error {r['mean_px_error']:.1f} px  inversions {r['inversion']:.3f}  val PCK {r['val_pck']:.3f}"
              + (f"  refined {r['pck_refine']:.3f}" if "pck_refine" in r else ""), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps({"run": str(run), "split": "lsp-test", "curve": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
