"""Package a trained run as a shipped model: fp16 weights in posekit/weights/<name>.pt (with the
config, split and metrics inside, as a checkpoint) and a model card <name>.md beside it.

    python scripts/ship_weights.py --run runs/release --name posekit-lsp \
        --metrics reports/release_lsp_test.json --command "posekit train --config configs/release.yaml ..."
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
from pathlib import Path

from posekit.checkpoint import WEIGHTS_DIR, model_from_config, read_checkpoint, save_checkpoint
from posekit.cli import fuse_arg, recrop_arg
from posekit.looks import margins_of, recrop_margin
from posekit.models import count_parameters, model_flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="checkpoint file or run folder")
    ap.add_argument("--name", default="posekit-lsp")
    ap.add_argument("--metrics", required=True, help="JSON from `posekit evaluate --json` on lsp-test")
    ap.add_argument("--command", required=True, help="the exact training command")
    ap.add_argument("--max-mb", type=float, default=10.0)
    ap.add_argument("--note", default="", help="a line about how the run was made (e.g. the code it started from)")
    ap.add_argument("--recrop", type=recrop_arg, default=None, metavar="MARGIN[,MARGIN...]|off",
                    help="ship with these re-crop margins (infer.recrop), chosen by benchmarks/recrop_margin.py on val; "
                    "off: one look (default: the run's own setting)")
    ap.add_argument("--fuse", type=fuse_arg, default=None, metavar="W",
                    help="ship with this weight of the first look in the second (infer.fuse)")
    a = ap.parse_args()
    ck = read_checkpoint(a.run)
    metrics = json.loads(Path(a.metrics).read_text())
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in ck["model"].items()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    cfg = ck["config"]
    if a.recrop is not None:
        cfg["infer"] = {**cfg.get("infer", {}), "recrop": None if a.recrop is False else recrop_margin({}, a.recrop)}
    if a.fuse is not None:
        cfg["infer"] = {**cfg.get("infer", {}), "fuse": a.fuse}
    if metrics.get("fuse", 0.0) != ((cfg.get("infer") or {}).get("fuse", 0.0) if metrics.get("recrop") is not None else 0.0):
        raise SystemExit(f"{a.metrics}: scored with fuse={metrics.get('fuse', 0.0)}, but the model ships with "
                         f"fuse={(cfg.get('infer') or {}).get('fuse', 0.0)}")
    if recrop_margin({}, metrics.get("recrop")) != recrop_margin(cfg):  # both normalised (sorted, [m] = m)
        raise SystemExit(f"{a.metrics}: scored with recrop={metrics.get('recrop')}, but the model ships with "
                         f"recrop={(cfg.get('infer') or {}).get('recrop')}")
    out = WEIGHTS_DIR / f"{a.name}.pt"
    save_checkpoint(out, config=cfg, split=ck["split"], epoch=ck["epoch"], history=ck["history"],
                    model=state, metrics=metrics, best=ck.get("best"), shipped=True, commit=commit)
    size_mb = out.stat().st_size / 1e6
    if size_mb > a.max_mb:
        out.unlink()
        raise SystemExit(f"{out}: {size_mb:.1f} MB is over the {a.max_mb} MB limit")
    model = model_from_config(cfg)
    s = cfg["data"]["input_size"]
    pj = metrics["per_joint_pck"]
    margin = (cfg.get("infer") or {}).get("recrop")
    note_line = "\n- **Note**: " + a.note if a.note else ""
    how = (", flip-test" if metrics.get("flip_test") else "") + (", second look" if margin is not None else "")
    crops = margins_of(margin) if margin is not None else []
    recrop_line = ("" if margin is None else f"\n- **Inference**: {1 + len(crops)} looks: the whole "
                   "image, then " + ("a square crop" if len(crops) == 1 else f"{len(crops)} square crops")
                   + f" around the first estimate with margin{'s' if len(crops) > 1 else ''} "
                   + f"{', '.join(map(str, crops))} per side"
                   + (" (run in one batch, their heatmaps averaged)" if len(crops) > 1 else "") + " (`infer.recrop`"
                   + (f", with the first look's heatmaps blended in at weight {cfg['infer'].get('fuse', 0.0)} (`infer.fuse`)"
                      if cfg["infer"].get("fuse") else "")
                   + "; chosen on the validation split by `benchmarks/recrop_margin.py`; `--recrop off` for one look)")
    card = f"""# {a.name}

The model posekit ships: `{cfg['model']['name']}` ({count_parameters(model):,} parameters,
{model_flops(model, s):.2f} GFLOPs at {s}x{s}) with a `{cfg['codec']['name']}` head, stored in fp16
({size_mb:.1f} MB). Select it with `--model {a.name}` (the default) or `posekit.Predictor("{a.name}")`.

- **Data**: Leeds Sports Pose (LSP images 1-1000) + LSP-extended (10,000), split `{cfg['data']['split']}`
  (seed {cfg['data']['split_seed']}); validation {len(ck['split']['val'])} images carved from train.
- **Recipe**: `configs/{cfg.get('name', 'release')}.yaml` as run (the full config is inside the .pt file).
- **Command**: `{a.command}`
- **Epochs trained**: {ck['epoch'] + 1} of {cfg['train']['epochs']}{note_line}{recrop_line}
- **Commit**: {commit}
- **Date**: {dt.date.today().isoformat()}

## LSP test split (1000 images, whole image, no ground-truth box{how})

`posekit evaluate --model {a.name} --data $POSEKIT_DATA --split lsp-test --json`

| PCK@0.2 | PCP@0.5 | MSE | mean error (px) |
|---|---|---|---|
| {metrics['pck']:.3f} | {metrics['pcp']:.3f} | {metrics['mse']:.4f} | {metrics['mean_px_error']:.1f} |

| joint | PCK@0.2 |
|---|---|
""" + "\n".join(f"| {k} | {v:.3f} |" for k, v in pj.items()) + """

Data licence: the LSP images are research-only Flickr data (Johnson & Everingham, BMVC 2010 and
CVPR 2011); the weights were trained on them.
"""
    (WEIGHTS_DIR / f"{a.name}.md").write_text(card)
    print(f"wrote {out} ({size_mb:.2f} MB) and {WEIGHTS_DIR / (a.name + '.md')}")


if __name__ == "__main__":
    main()
