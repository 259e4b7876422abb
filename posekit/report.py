"""Evaluation reports: ``metrics.json``, ``metrics.md`` (the tables), ``predictions.png``
(predicted against true joints on test images, as the paper's Fig. 3/5) and ``loss_curve.png``
(the run's history, the paper's Fig. 4)."""
from __future__ import annotations

import json
from pathlib import Path

from posekit.skeleton import JOINT_NAMES
from posekit.utils import atomic_write_text


def markdown_table(metrics: dict) -> str:
    """The metrics as Markdown: the overall figures, PCK@0.2 and error kinds per joint, PCP per
    part (detection AP and multi-person PCK, overall and by height, for ``lsp-multi``/``val-multi``)."""
    if "ap50" in metrics:
        rows = [("detection AP@0.5", "ap50"), ("detection recall", "recall"), ("multi-person PCK@0.2", "multi_pck")]
        sizes = [f"| {b['height'][0]:.2f}–{b['height'][1]:.2f} | {b['people']} | "
                 + (f"{b['pck']:.4f} |" if b["pck"] is not None else "– |") for b in metrics.get("multi_pck_by_height", [])]
        by_height = ["", "| height / scene height | people | multi-person PCK@0.2 |", "|---|---|---|", *sizes] if sizes else []
        return "\n".join([f"# Evaluation: {metrics['model']} on {metrics['split']} ({metrics['n']} scenes, "
                          f"{metrics['people']} people)", "", "| metric | value |", "|---|---|",
                          *[f"| {label} | {metrics[k]:.4f} |" for label, k in rows], *by_height]) + "\n"
    lines = [f"# Evaluation: {metrics['model']} on {metrics['split']} ({metrics['n']} images)", "",
             "| metric | value |", "|---|---|"]
    for k, label in (("pck", "PCK@0.2"), ("pcp", "PCP@0.5 (strict)"), ("mse", "MSE (normalised coords)"),
                     ("mse_px96", "MSE ×96² (poster units)"), ("mean_px_error", "mean error (px)")):
        v = metrics.get(k)
        lines.append(f"| {label} | {v:.4f} |" if v is not None else f"| {label} | – |")
    # PCK@0.2 per joint, and where the other joints went (metrics.error_breakdown)
    errs = metrics.get("per_joint_errors") or {}
    kinds = [k for k in ("jitter", "inversion", "miss") if k in errs]
    lines += ["", "| joint | PCK@0.2 |" + "".join(f" {k} |" for k in kinds), "|---|---|" + "---|" * len(kinds)]
    fmt = lambda v: f"{v:.3f}" if v is not None else "–"  # noqa: E731
    for name in [*JOINT_NAMES, "all"]:
        pck_v = metrics["pck"] if name == "all" else metrics["per_joint_pck"].get(name)
        rest = [metrics["errors"][k] if name == "all" else errs[k].get(name) for k in kinds]
        lines.append(f"| {name} | {fmt(pck_v)} |" + "".join(f" {fmt(v)} |" for v in rest))
    if kinds:
        lines += ["", "inversion: nearer the left/right counterpart's truth than its own, and within 0.5 × torso "
                  "of it; jitter: otherwise within 0.5 × torso of its own truth (but not 0.2); miss: the rest."]
    lines += ["", "| part | PCP@0.5 |", "|---|---|"]
    for name, v in metrics["per_part_pcp"].items():
        lines.append(f"| {name} | {v:.3f} |" if v is not None else f"| {name} | – |")
    return "\n".join(lines) + "\n"


def write_report(metrics: dict, extras: dict, out_dir: str | Path, n_images: int = 16) -> list[Path]:
    """Write the report files of an evaluation (see the module docstring) into ``out_dir``;
    ``extras`` as :func:`posekit.evaluate.evaluate` returns them. Returns the paths written."""
    from posekit.viz import draw_comparison, draw_pose, make_grid, plot_loss_curves, save_rgb

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    atomic_write_text(out / "metrics.md", markdown_table(metrics))
    written += [out / "metrics.json", out / "metrics.md"]
    tiles = []
    if "res" in extras:  # one person per image: prediction against truth
        res = extras["res"]
        for i in range(min(n_images, len(extras["images"]))):
            tiles.append(draw_comparison(extras["images"][i], res["pred"][i], res["gt"][i], res["mask"][i]))
    else:  # scenes of several people
        for sc, (boxes, kps) in list(zip(extras["scenes"], extras["preds"]))[:n_images]:
            tile = sc.image
            for k in range(len(kps)):
                tile = draw_pose(tile, kps[k])
            tiles.append(tile)
    if tiles:
        save_rgb(out / "predictions.png", make_grid(tiles, ncols=4, cell=256))
        written.append(out / "predictions.png")
    history = extras["ckpt"].get("history") or []
    hist_file = Path(extras["ckpt"]["path"]).parent / "history.json"
    if hist_file.is_file():
        try:
            history = json.loads(hist_file.read_text())
        except json.JSONDecodeError:
            pass
    if history:
        plot_loss_curves(history, out / "loss_curve.png", title=f"{metrics['model']} training",
                         ylabel="masked MSE (normalised coordinates)")
        written.append(out / "loss_curve.png")
    return written
