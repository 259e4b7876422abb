"""Evaluation: the model sees each whole test image (never a box derived from the ground truth),
its output is mapped back to original-image pixels, then metrics.py scores it. A model with a
re-crop margin (config ``infer.recrop``) then looks again at square crops around its own first
estimate, exactly as ``predict`` does."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from posekit.checkpoint import cascade_stages, load_model
from posekit.data.dataset import PoseLandmarksDataset
from posekit.data.lsp import load_sets
from posekit.data.splits import lsp_test_ids, make_split
from posekit.data.transforms import PoseTransform
from posekit.errors import PosekitError
from posekit.looks import crop_border, fuse_weight, look, recrop_margin, recrop_predict, to_original
from posekit.metrics import evaluate_keypoints
from posekit.models import inference_ready
from posekit.skeleton import JOINT_NAMES
from posekit.utils import atomic_write_text, select_device

EVAL_SPLITS = ("lsp-test", "lsp-train", "paper-test", "val")


@torch.no_grad()
def predict_loader(model, codec, loader: DataLoader, device, amp: bool = False, loss_fn=None,
                   keep_first: bool = True, flip_test: bool = False, keep_maps: bool = False) -> dict:
    """Run a model over an evaluation loader. Returns numpy ``pred``/``gt`` (N, 14, 2) in original
    pixels, ``mask``, ``sizes``, ``scores``, the mean ``loss`` when ``loss_fn`` is given, and the
    first batch's input-frame tensors (for drawing). ``keep_maps`` adds ``maps`` (the decoded
    heatmap-like outputs, None for coordinate outputs) and their input ``matrices``."""
    model.eval()
    preds, gts, masks, sizes, scores, maps, matrices = [], [], [], [], [], [], []
    total, count = 0.0, 0
    first = None
    for batch in loader:
        x = batch["image"].to(device)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else torch.no_grad()
        with ctx:
            out = model(x)
            decoded, kp, sc = look(model, codec, x, flip_test, out)  # flip-test: one more pass, mirrored
        out = out.float()
        if keep_maps:
            maps.append(None if decoded is None else decoded.cpu())
            matrices.append(batch["matrix"].numpy())
        if loss_fn is not None:
            target, weight = codec.encode(batch["keypoints"].to(device), batch["mask"].to(device))
            loss = loss_fn(codec.loss_input(out), target, weight)
            total += loss.item() * len(x)
            count += len(x)
        kp = kp.cpu()
        if keep_first and first is None:
            first = {"image": batch["image"][:16], "pred": kp[:16].numpy(),
                     "keypoints": batch["keypoints"][:16].numpy(), "mask": batch["mask"][:16].numpy()}
        preds.append(to_original(kp, batch["matrix"]).numpy())
        gts.append(batch["gt"].numpy())
        masks.append(batch["gt_mask"].numpy() > 0)
        sizes.append(batch["size"].numpy())
        scores.append(sc.cpu().numpy())
    res = {"pred": np.concatenate(preds), "gt": np.concatenate(gts).astype(np.float64),
           "mask": np.concatenate(masks), "sizes": np.concatenate(sizes), "scores": np.concatenate(scores),
           "first": first}
    if keep_maps:
        res["maps"] = None if not maps or maps[0] is None else torch.cat(maps)
        res["matrices"] = np.concatenate(matrices) if matrices else np.zeros((0, 2, 3))
    if loss_fn is not None:
        res["loss"] = total / max(count, 1)
    return res


def eval_ids(split_name: str, ckpt: dict, sets: dict) -> list[str]:
    cfg = ckpt["config"]
    if split_name == "lsp-test":
        return lsp_test_ids(sets)
    if split_name == "lsp-train":  # LSP 1-1000, whole images: with lsp-test, a train/test gap on one distribution
        test = set(lsp_test_ids(sets))
        s = sets["lsp"]
        return [s.sample_id(i) for i in range(len(s)) if s.sample_id(i) not in test]
    if split_name == "val":
        return list(ckpt["split"]["val"])
    if split_name == "paper-test":
        d = cfg["data"]
        split = make_split("paper", sets, seed=d["split_seed"], fractions=tuple(d["fractions"]))
        return split["test"]
    raise PosekitError(f"unknown evaluation split {split_name!r}; known: {', '.join(EVAL_SPLITS)}")


def evaluate(model_path: str, data_root: str | None, split_name: str = "lsp-test", batch_size: int = 32,
             device: str | None = None, limit: int | None = None, workers: int = 0,
             flip_test: bool = False, per_stage: bool = False,
             recrop: float | list[float] | bool | None = None, fuse: float | None = None,
             border: int | None = None) -> tuple[dict, dict]:
    """Evaluate a checkpoint. Returns (metrics dict, extras with predictions for drawing).
    ``recrop``: None = the model's own re-crop setting, False = one pass, a number or a list of
    numbers = crops at those margins;
    ``fuse``: the first look's weight in the second (None = the model's own).

    A cascade checkpoint runs stage 1 on the whole image, then each refinement stage on crops of
    the original image; ``per_stage`` adds ``stages``: the metrics after every stage."""
    if split_name not in EVAL_SPLITS:
        raise PosekitError(f"unknown evaluation split {split_name!r}; known: {', '.join(EVAL_SPLITS)}")
    dev = select_device(device)
    model, codec, ckpt = load_model(model_path, dev)
    inference_ready(model)  # as Predictor runs it
    cfg = ckpt["config"]
    needed = ["lsp"] if split_name in ("lsp-test", "lsp-train") else list(ckpt["split"].get("sets", cfg["data"]["sets"]))
    sets = load_sets(data_root, needed)
    ids = eval_ids(split_name, ckpt, sets)
    if limit:
        ids = ids[:limit]
    trained_on = ckpt.get("split", {}).get("train", [])
    limit_train = cfg["data"].get("limit_train")
    overlap = sorted(set(ids) & set(trained_on[:limit_train] if limit_train else trained_on))
    tf = PoseTransform(cfg["data"]["input_size"], cfg["data"]["resize_mode"], train=False)
    ds = PoseLandmarksDataset(sets, ids, tf)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    stages = cascade_stages(ckpt, dev)
    margin = recrop_margin(cfg, recrop, cascade=bool(stages))
    fuse = fuse_weight(cfg, fuse) if margin is not None else 0.0
    border = crop_border(cfg, border)
    res = predict_loader(model, codec, loader, dev, flip_test=flip_test, keep_maps=fuse > 0)
    originals = None
    if margin is not None or stages:
        from posekit.data.images import read_image

        originals = [read_image(p) for p in ds.paths()]
    if margin is not None:
        if not np.isfinite(res["pred"]).all():
            raise PosekitError(f"{ckpt['path']}: the model produced non-finite (NaN/inf) predictions")
        res["pred"], res["scores"] = recrop_predict(model, codec, originals, res["pred"], margin,
                                                    cfg["data"]["input_size"], dev, flip_test=flip_test, fuse=fuse,
                                                    first_maps=res.pop("maps", None),
                                                    first_matrices=res.pop("matrices", None), border=border)
    per_stage_metrics = []
    if stages:
        from posekit.models.cascade import run_cascade

        ests = run_cascade(stages, originals, res["pred"], dev)
        for k, est in enumerate(ests, start=1):
            m = evaluate_keypoints(est, res["gt"], res["sizes"], res["mask"])
            per_stage_metrics.append({"stage": k, **{n: m[n] for n in ("pck", "pcp", "mse", "mean_px_error",
                                                                      "per_joint_pck", "per_part_pcp")}})
        res["pred"] = ests[-1]
    if not np.isfinite(res["pred"]).all():
        raise PosekitError(f"{ckpt['path']}: the model produced non-finite (NaN/inf) predictions")
    metrics = evaluate_keypoints(res["pred"], res["gt"], res["sizes"], res["mask"])
    metrics.update(split=split_name, model=cfg["model"]["name"] + (f" + {len(stages)} cascade stage(s)" if stages else ""),
                   checkpoint=ckpt["path"], epoch=int(ckpt["epoch"]) + 1, train_overlap=len(overlap), flip_test=flip_test,
                   recrop=margin, fuse=fuse, crop_border=border if margin is not None else None)
    if per_stage:
        if not stages:
            raise PosekitError(f"{ckpt['path']}: --per-stage needs a cascade checkpoint (this one has a single stage)")
        metrics["stages"] = per_stage_metrics
    extras = {"res": res, "ds": ds, "ckpt": ckpt, "ids": ids}
    return metrics, extras


def markdown_table(metrics: dict) -> str:
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
    """metrics.json, metrics.md, predictions.png (predicted vs true on test images, the paper's
    Fig. 3/5) and loss_curve.png (from the run's history, Fig. 4)."""
    from posekit.data.images import read_image
    from posekit.viz import draw_comparison, make_grid, plot_loss_curves, save_rgb

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1))
    atomic_write_text(out / "metrics.md", markdown_table(metrics))
    written += [out / "metrics.json", out / "metrics.md"]
    res, ds = extras["res"], extras["ds"]
    tiles = []
    for i in range(min(n_images, len(ds))):
        im = read_image(ds.paths()[i])
        tiles.append(draw_comparison(im, res["pred"][i], res["gt"][i], res["mask"][i]))
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
