"""Packaging a trained run as a shipped model: fp16 weights in ``posekit/weights/<name>.pt`` (a
checkpoint with the recipe, split and metrics inside, no optimiser state) and a model card
``<name>.md`` beside it: the data, the recipe, the exact commands, the commit and the metrics."""
from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

from posekit.checkpoint import DEFAULT_MODEL, model_from_config, read_checkpoint, save_checkpoint, with_settings
from posekit.config import Recipe, complete_config
from posekit.errors import PosekitError
from posekit.models import count_parameters, model_flops
from posekit.predict import DEFAULT_CROP_BORDER
from posekit.utils import atomic_write_text


def _infer_line(cfg: Recipe) -> str:
    crops = cfg.infer.refine or []
    flip = (", with the flip test: the mirrored image in the same batch, the two averaged (`infer.flip_test`; "
            "`--no-flip-test` for one image)") if cfg.infer.flip_test else ""
    if not crops:
        return "one pass on the person box (or the whole image)" + flip
    line = (f"{1 + len(crops)} passes fused: the person box (or the whole image), then "
            f"{len(crops)} square refinement crop(s) around the first estimate, margin(s) {', '.join(map(str, crops))} "
            "per side, run as one batch (`infer.refine`")
    if cfg.infer.refine_weight:
        line += f"; the first pass mixed in at weight {cfg.infer.refine_weight} (`infer.refine_weight`)"
    return line + "; `--refine off` for one pass)" + flip


def _denoise_line(threshold: float | None, network: str, key: str) -> str:
    return ("" if threshold is None else f"an image whose estimated noise reaches {threshold:g} grey levels is "
            f"median-filtered 3x3 before {network} reads it (`{key}`); ")


def _inference_line(cfg: Recipe) -> str:
    d = cfg.detect
    if cfg.codec.name == "center":
        return (_denoise_line(d.denoise, "the detector", "detect.denoise")
                + f"the whole image letterboxed to {cfg.data.input_size}x{cfg.data.input_size}; people are centre peaks "
                f"scoring at least {d.score_threshold}, non-maximum suppression at IoU {d.nms_iou}, at most "
                f"{d.max_people} per image (`detect.*`)")
    first = ("the whole image (or a given box)" if d.model is None else
             f"top-down: the person detector `{d.model}` runs first, and the pose is estimated in each detected box "
             + (f"enlarged by {d.box_margin} per side (`detect.box_margin`" if not cfg.infer.box_margins else
                f"cropped once per margin {', '.join(map(str, cfg.infer.box_margins))} per side, the crops in one batch "
                f"and their heatmaps fused (the multi-scale test, `infer.box_margins`")
             + "; a given box wins); " + _denoise_line(d.denoise, "the detector", "detect.denoise")
             + ("the detector runs its flip test (the image and its mirror in one batch, "
                                          "their outputs averaged: `detect.flip_test`); " if d.flip_test else "")
             + "people are detections "
             f"scoring at least {d.score_threshold}, and down to {d.region_threshold} (`detect.region_threshold`) "
             f"every one beside a person found (with nobody found, the best one is the candidate posed)")
    v = cfg.video
    arithmetic = {"auto": "bfloat16 on a CPU with native bfloat16 (AVX512-BF16, AMX), else float32",
                  "fp32": "float32", "bf16": "bfloat16"}[cfg.infer.precision]
    pose_denoise = _denoise_line(cfg.infer.denoise, "the pose network", "infer.denoise")
    return (f"{first}; {pose_denoise}{_infer_line(cfg)}; the networks in {arithmetic} (`infer.precision` {cfg.infer.precision}); "
            f"person threshold {cfg.infer.person_threshold}; in videos each joint is "
            f"smoothed by a One-Euro filter (`video.min_cutoff` {v.min_cutoff} Hz, `video.beta` {v.beta}) and one "
            f"person's box by another (`video.box_min_cutoff` {v.box_min_cutoff} Hz, `video.box_beta` {v.box_beta})"
            + ("" if v.roi_margin is None else f"; one person, once found, is followed in the square around the last "
               f"frame's joints enlarged by {v.roi_margin} per side (`video.roi_margin`), one pass, no detector"))


def _select_line(name: str, cfg: Recipe) -> str:
    if cfg.codec.name == "center":
        return (f"A person detector: run it before a pose model with `--detector {name}` or "
                f"`posekit.Predictor(detector=\"{name}\")`, or alone as `posekit.detect.PersonDetector(\"{name}\")`.")
    default = " (the default)" if name == DEFAULT_MODEL else ""
    return f"Select it with `--model {name}`{default} or `posekit.Predictor(\"{name}\")`."


def _detection_tables(metrics: dict) -> list[str]:
    """The detector's figures from ``benchmarks/detection.py``'s JSON, against OpenCV's HOG."""
    if not metrics:
        return []
    lines = ["## Person detection (`benchmarks/detection.py`: people from LSP 1001-2000 only; no-person images are blank,",
             "noise, and backgrounds of LSP test and held-out validation images)", "",
             "| test set | detector | AP@0.5 | recall (IoU 0.5) | empty answers |", "|---|---|---|---|---|"]
    for name in metrics.get("posekit", {}):
        for who in ("posekit", "hog"):
            r = metrics.get(who, {}).get(name)
            if r is None:
                continue
            cells = [f"{r[k]:.3f}" if k in r else "" for k in ("ap50", "recall50", "empty_rate")]
            lines.append(f"| {name} | {'this detector' if who == 'posekit' else 'OpenCV HOG'} | {' | '.join(cells)} |")
    return lines + [""]


def model_card(name: str, ck: dict, cfg: Recipe, metrics: dict, commands: list[str], size_mb: float, note: str = "",
               commit: str = "") -> str:
    """The Markdown model card of a shipped model."""
    model = model_from_config(cfg)
    s = cfg.data.input_size
    lines = [f"# {name}", "",
             f"`{cfg.model.name}` ({count_parameters(model):,} parameters, {model_flops(model, s):.2f} GFLOPs at "
             f"{s}x{s}) with a `{cfg.codec.name}` head, stored in fp16 ({size_mb:.1f} MB). {_select_line(name, cfg)}", "",
             f"- **Data**: Leeds Sports Pose (LSP images 1-1000) + LSP-extended (10,000), split `{cfg.data.split}` "
             f"(seed {cfg.data.split_seed}); validation {len(ck['split']['val'])} images carved from train.",
             f"- **Recipe**: `{cfg.name}` (the full config is inside the .pt file).",
             "- **Commands**, in order:", *[f"  {i}. `{c}`" for i, c in enumerate(commands, 1)],
             f"- **Epochs trained**: {ck['epoch'] + 1} of {cfg.train.epochs}"]
    if note:
        lines.append(f"- **Note**: {note}")
    lines += [f"- **Inference**: {_inference_line(cfg)}", f"- **Commit**: {commit}",
              f"- **Date**: {dt.date.today().isoformat()}", ""]
    if cfg.codec.name == "center":
        lines += _detection_tables(metrics)
    elif metrics:
        pj = metrics.get("per_joint_pck", {})
        lines += [f"## {metrics.get('split', 'lsp-test')} ({metrics.get('n', '?')} images)", "",
                  "| PCK@0.2 | PCP@0.5 | MSE | mean error (px) |", "|---|---|---|---|",
                  f"| {metrics['pck']:.3f} | {metrics['pcp']:.3f} | {metrics['mse']:.4f} | {metrics['mean_px_error']:.1f} |",
                  "", "| joint | PCK@0.2 |", "|---|---|", *[f"| {k} | {v:.3f} |" for k, v in pj.items()], ""]
    lines += ["Data licence: the LSP images are research-only Flickr data (Johnson & Everingham, BMVC 2010 and",
              "CVPR 2011); the weights were trained on them.", ""]
    return "\n".join(lines)


def ship(run: str, name: str, metrics: dict, commands: list[str], settings: dict | None = None, note: str = "",
         max_mb: float = 10.0) -> tuple[Path, Path]:
    """Write ``<name>.pt`` (fp16) and ``<name>.md`` into ``posekit/weights/`` from checkpoint ``run``,
    with ``settings`` ({section: {key: value}} for the ``infer``, ``detect`` and ``video``
    sections; ``detect.model`` names the person detector the pose model runs first) replacing the
    run's own. The metrics must have been
    scored with the settings shipped (refine, refine_weight, detector, box_margins,
    detector_flip_test, denoise, detector_denoise). Returns the two paths.

    Raises PosekitError for metrics of other settings or a file over ``max_mb``."""
    ck = read_checkpoint(run)
    cfg = complete_config(with_settings(ck["config"], settings, "ship"), str(run))
    shipped = {"refine": cfg.infer.refine, "refine_weight": cfg.infer.refine_weight if cfg.infer.refine else 0.0,
               "crop_border": (DEFAULT_CROP_BORDER if cfg.infer.crop_border is None else cfg.infer.crop_border)
               if cfg.infer.refine else None, "detector": cfg.detect.model,
               "box_margins": cfg.infer.box_margins if cfg.detect.model else None,
               "detector_flip_test": bool(cfg.detect.model and cfg.detect.flip_test), "denoise": cfg.infer.denoise,
               "detector_denoise": cfg.detect.denoise if cfg.detect.model else None}
    for key, value in shipped.items() if metrics and cfg.codec.name != "center" else ():
        # a pose model's metrics come from `posekit evaluate --json`; one without the noise
        # filter's keys predates the filter: scored without it
        scored = metrics.get(key, None if key in ("denoise", "detector_denoise") else value)
        if scored != value:
            raise PosekitError(f"the metrics were scored with {key}={scored!r}, but the model ships with "
                               f"{value!r}")
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in ck["model"].items()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    from posekit import checkpoint

    out = checkpoint.WEIGHTS_DIR / f"{name}.pt"
    save_checkpoint(out, config=cfg.to_dict(), split=ck["split"], epoch=ck["epoch"], history=ck["history"],
                    model=state, metrics=metrics, best=ck.get("best"), shipped=True, commit=commit)
    size_mb = out.stat().st_size / 1e6
    if size_mb > max_mb:
        out.unlink()
        raise PosekitError(f"{out}: {size_mb:.1f} MB is over the {max_mb} MB limit")
    card = checkpoint.WEIGHTS_DIR / f"{name}.md"
    atomic_write_text(card, model_card(name, ck, cfg, metrics, commands, size_mb, note, commit))
    return out, card
