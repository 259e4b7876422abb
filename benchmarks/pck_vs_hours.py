"""Accuracy against compute: the LSP-test PCK@0.2 of each candidate run's snapshots (the JSON of
``benchmarks/pck_curve.py``) plotted against its training hours, one line per run, so the
choice between candidates is visible; validation PCK dashed where the runs record it.

    python benchmarks/pck_vs_hours.py reports/distill_curve.json reports/fast_curve.json \
        --labels "posekit-lsp (distilled)" "posekit-lsp-fast" --png reports/pck_vs_hours.png

Curves written before ``pck_curve.py`` recorded hours take them from their run's history
(``--histories``, one per curve, ``-`` for none: the cumulative ``train_time_s`` up to each
epoch). ``--chained``: each run started from the one before it (``train.init_from``), so its hours
start where the previous run's history ends: a chain of runs reads as one line of compute."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve_hours(rows: list[dict], history: list[dict] | None, offset: float = 0.0) -> tuple[list[float], float]:
    """The training hours of each snapshot row (its own ``train_hours``, else the cumulative
    ``train_time_s`` of ``history`` up to its epoch), plus ``offset``; and where the run ends
    (the last of those hours, or of the history)."""
    hours, total = {}, 0.0
    for h in history or []:
        total += h.get("train_time_s", 0.0) / 3600
        hours[h["epoch"]] = total
    xs = [offset + r.get("train_hours", hours.get(r["epoch"], 0.0)) for r in rows]
    return xs, max([offset, *xs, offset + total])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("curves", nargs="+", help="JSON files from benchmarks/pck_curve.py")
    ap.add_argument("--labels", nargs="*", help="a label per curve (default: the run folders)")
    ap.add_argument("--histories", nargs="*", help="a history.json per curve (- for none) for hours it lacks")
    ap.add_argument("--chained", action="store_true", help="each run continues the previous one: hours add up")
    ap.add_argument("--png", required=True)
    a = ap.parse_args()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    offset = 0.0
    for k, path in enumerate(a.curves):
        d = json.loads(Path(path).read_text())
        rows = sorted(d["curve"], key=lambda r: r["epoch"])
        label = a.labels[k] if a.labels and k < len(a.labels) else d["run"]
        hist = a.histories[k] if a.histories and k < len(a.histories) and a.histories[k] != "-" else None
        xs, end = curve_hours(rows, json.loads(Path(hist).read_text()) if hist else None, offset)
        if a.chained:
            offset = end
        line, = ax.plot(xs, [r["pck"] for r in rows], marker="o", markersize=3, label=f"{label}: test")
        val = [(x, r["val_pck"]) for x, r in zip(xs, rows) if r.get("val_pck") == r.get("val_pck")]
        if val:
            ax.plot(*zip(*val), linestyle="--", color=line.get_color(), label=f"{label}: validation")
    ax.set_xlabel("training hours")
    ax.set_ylabel("PCK@0.2")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    from posekit.utils import atomic_write_bytes as write

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write(a.png, buf.getvalue())
    print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
