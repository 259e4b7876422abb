"""Evaluation: each test image goes through :class:`posekit.Predictor` exactly as users run it
(never a box derived from the ground truth: the whole image, or the person detector's box, then
refinement crops or a cascade's stages), and :mod:`posekit.metrics` scores the result.

Splits: ``lsp-test`` (LSP images 1001-2000, the benchmark), ``lsp-train`` (LSP 1-1000, for the
train/test gap), ``paper-test`` (the paper's 70/15/15 split's test part), ``val`` (the
checkpoint's own validation split), ``lsp-multi``: scenes of 1 to 4 people composed from LSP's
test images only (:func:`posekit.data.scenes.multi_person_set`, seed 0), scored for detection
(AP@0.5, recall) and multi-person PCK@0.2 (every true person matched by box IoU; an unmatched one
counts all its joints wrong; also by the person's height in the scene; ``pose_precision``: the
share of the people ``predict_all`` returns that match a true person), and ``val-multi``: the
same made from the validation images, to choose settings on."""
from __future__ import annotations

import numpy as np

from posekit.data.images import read_image
from posekit.data.lsp import load_sets
from posekit.data.splits import lsp_test_ids, make_split
from posekit.errors import PosekitError
from posekit.metrics import average_precision, evaluate_keypoints, multi_person_pck
from posekit.predict import Predictor

EVAL_SPLITS = ("lsp-test", "lsp-train", "paper-test", "val", "lsp-multi", "val-multi")
MULTI_SPLITS = ("lsp-multi", "val-multi")
HEIGHT_BINS = (0.0, 0.25, 0.5, 1.01)  # a person's box height over the scene's, for multi-person PCK by size
MULTI_SCENES = 300  # scenes of lsp-multi


def eval_ids(split_name: str, ckpt: dict, sets: dict) -> list[str]:
    """The sample ids of an evaluation split for a checkpoint."""
    if split_name in ("lsp-test", "lsp-multi"):
        return lsp_test_ids(sets)
    if split_name == "lsp-train":  # LSP 1-1000, whole images: with lsp-test, a train/test gap on one distribution
        test = set(lsp_test_ids(sets))
        s = sets["lsp"]
        return [s.sample_id(i) for i in range(len(s)) if s.sample_id(i) not in test]
    if split_name in ("val", "val-multi"):
        return list(ckpt["split"]["val"])
    if split_name == "paper-test":
        if ckpt["split"].get("name") == "paper" and ckpt["split"].get("test"):
            return list(ckpt["split"]["test"])
        d = ckpt["recipe"].data
        return make_split("paper", sets, seed=d.split_seed, fractions=tuple(d.fractions))["test"]
    raise PosekitError(f"unknown evaluation split {split_name!r}; known: {', '.join(EVAL_SPLITS)}")


def load_samples(sets: dict, ids: list[str], cache=None):
    """(images, keypoints (N, K, 2), masks (N, K), sizes (N, 2)) of sample ids. With a pack's
    ``cache`` (``posekit.data.pack``) the images are its stored copies and the keypoints are moved
    into their pixels (the caller maps predictions back: :func:`from_stored`)."""
    index = {s.sample_id(i): (s, i) for s in sets.values() for i in range(len(s))}
    images, kps, masks = [], [], []
    for sid in ids:
        s, i = index[sid]
        if cache is None:
            images.append(read_image(s.image_paths[i]))
        else:
            images.append(cache.get(s.image_paths[i])[0])
        kps.append(s.keypoints[i])
        masks.append(s.annotated[i])
    if cache is None:
        sizes = np.array([[im.shape[1], im.shape[0]] for im in images], np.float64).reshape(-1, 2)
    else:
        sizes = np.array([cache.get(index[sid][0].image_paths[index[sid][1]])[2] for sid in ids], np.float64)
    return images, np.stack(kps), np.stack(masks), sizes


def from_stored(keypoints: np.ndarray, sets: dict, ids: list[str], cache) -> np.ndarray:
    """Predictions (N, K, 2) on a pack's stored images, back in original pixels."""
    from posekit.data.transforms import apply_affine, invert_affine

    index = {s.sample_id(i): (s, i) for s in sets.values() for i in range(len(s))}
    pres = [cache.get(index[sid][0].image_paths[index[sid][1]])[1] for sid in ids]
    return np.stack([apply_affine(k, invert_affine(m)) for k, m in zip(keypoints, pres)])


def _stage_metrics(pred: Predictor, images, kps, masks, sizes, batch_size: int) -> list[dict]:
    """A cascade's metrics after every stage (stage 1: its first pass)."""
    from posekit.models.cascade import run_cascade

    first = np.concatenate([[p.keypoints for p in pred.estimate([pred.prepare(im) for im in images[i:i + batch_size]],
                                                                  refined=False)]
                            for i in range(0, len(images), batch_size)] if images else [np.zeros((0, 14, 2))])
    out = []
    for k, est in enumerate(run_cascade(pred.stages, images, first, pred.device), start=1):
        m = evaluate_keypoints(est, kps, sizes, masks)
        out.append({"stage": k, **{n: m[n] for n in ("pck", "pcp", "mse", "mean_px_error", "per_joint_pck",
                                                      "per_part_pcp")}})
    return out


def multi_person_metrics(pred: Predictor, images, kps, masks, n: int) -> tuple[dict, dict]:
    """Detection and multi-person PCK of ``pred`` (with its detector) on ``n`` scenes composed (seed 0)
    of the given one-person images: (metrics, extras with the scenes and predictions)."""
    from posekit.data.scenes import multi_person_set
    from posekit.detect import to_edges

    if pred.detector is None:
        raise PosekitError("each multi-person split (lsp-multi, val-multi) needs a person detector (--detector)")
    scenes = multi_person_set(images, kps, masks, n=n, seed=0)
    dets, preds, truths = [], [], []
    for sc in scenes:
        dets.append(pred.detect([sc.image])[0])  # the detector's own boxes: its AP, before any pose is scored
        poses = pred.predict_all(sc.image)
        boxes = np.array([p.box for p in poses]).reshape(-1, 4)
        preds.append((boxes, np.array([p.keypoints for p in poses]).reshape(-1, 14, 2)))
        truths.append((to_edges(sc.boxes), sc.keypoints, sc.masks))
    det = average_precision(dets, [t[0] for t in truths], 0.5)
    mp = multi_person_pck(preds, truths)
    returned = sum(len(b) for b, _ in preds)
    metrics = {"n": len(scenes), "people": det["people"], "ap50": det["ap"], "recall": det["recall"],
               "precision": det["precision"], "multi_pck": mp["pck"],
               # what predict_all answers: people returned, and the share of them that is a true person
               "poses_returned": returned, "pose_precision": mp["matched"] / returned if returned else None,
               "multi_pck_by_height": _by_height(scenes, mp["per_person"])}
    return metrics, {"scenes": scenes, "preds": preds}


def _by_height(scenes, per_person) -> list[dict]:
    """Multi-person PCK of the people whose box height is within each bin of ``HEIGHT_BINS``
    (fractions of the scene's height): how accuracy falls with a person's size."""
    heights = np.array([b[3] / sc.image.shape[0] for sc in scenes for b in np.asarray(sc.boxes).reshape(-1, 4)])
    counts = np.array(per_person, np.float64).reshape(-1, 2)
    out = []
    for lo, hi in zip(HEIGHT_BINS[:-1], HEIGHT_BINS[1:]):
        sel = (heights >= lo) & (heights < hi)
        n = counts[sel].sum(0)
        out.append({"height": [lo, min(hi, 1.0)], "people": int(sel.sum()), "pck": float(n[0] / n[1]) if n[1] else None})
    return out


def evaluate(model_path: str, data_root: str | None, split_name: str = "lsp-test", limit: int | None = None,
             batch_size: int = 32, per_stage: bool = False, **predictor) -> tuple[dict, dict]:
    """Evaluate a checkpoint (file, run folder or shipped name) on a split, run as
    :class:`posekit.Predictor` runs it with the options ``predictor`` (device, flip_test,
    detector, detector_flip_test and the ``infer`` overrides: refine, refine_weight, crop_border,
    box_margins, precision, denoise; None: the model's own). ``per_stage`` (cascades) adds
    ``stages``: the metrics after every stage.

    Returns (metrics: a JSON-ready dict, extras: predictions and samples, for drawing). Raises
    PosekitError for a bad split, model or data, and for non-finite predictions."""
    if split_name not in EVAL_SPLITS:
        raise PosekitError(f"unknown evaluation split {split_name!r}; known: {', '.join(EVAL_SPLITS)}")
    pred = Predictor(model_path, **predictor)
    ckpt, cfg = pred.checkpoint, pred.config
    lsp_only = split_name in ("lsp-test", "lsp-train", "lsp-multi")
    cache = None
    if str(data_root or "").endswith(".npz"):  # a pack: its stored images, scored in original pixels
        if split_name in MULTI_SPLITS:
            raise PosekitError(f"{data_root}: the {split_name} split is composed from the dataset's images, not a pack")
        from posekit.data.pack import load_pack

        sets, cache, pack_split, _ = load_pack(data_root)
        ckpt = {**ckpt, "split": {**ckpt["split"], "test": pack_split.get("test", [])}}
    else:
        sets = load_sets(data_root, ["lsp"] if lsp_only else list(ckpt["split"].get("sets", cfg.data.sets)))
    ids = eval_ids(split_name, ckpt, sets)[:limit]
    images, kps, masks, sizes = load_samples(sets, ids, cache)
    settings = dict(split=split_name, checkpoint=ckpt["path"], epoch=int(ckpt["epoch"]) + 1 if "epoch" in ckpt else None,
                    model=cfg.model.name + (f" + {len(pred.stages)} cascade stage(s)" if pred.stages else ""),
                    detector=None if pred.detector is None else pred.detector.name, flip_test=pred.flip_test,
                    refine=pred.refine, refine_weight=pred.refine_weight, crop_border=pred.crop_border if pred.refine else None,
                    box_margins=pred.box_margins if pred.detector is not None else None,
                    detector_flip_test=pred.detector_flip_test, denoise=pred.infer.denoise,
                    detector_denoise=None if pred.detector is None else pred.detector.settings.denoise,
                    infer_precision=pred.precision)  # not "precision": the multi-person splits' detection precision
    if split_name in MULTI_SPLITS:
        n = MULTI_SCENES if limit is None else min(MULTI_SCENES, limit)
        metrics, extras = multi_person_metrics(pred, images, kps, masks, n)
        return {**metrics, **settings}, {**extras, "ckpt": ckpt}
    poses = [p for i in range(0, len(images), batch_size) for p in pred.predict_batch(images[i:i + batch_size])]
    found = np.array([p.keypoints for p in poses]).reshape(-1, 14, 2)
    if cache is not None:
        found = from_stored(found, sets, ids, cache)
    res = {"pred": found, "gt": kps, "mask": masks, "sizes": sizes,
           "scores": np.array([p.scores for p in poses]).reshape(-1, 14)}
    if not np.isfinite(res["pred"]).all():
        raise PosekitError(f"{ckpt['path']}: the model produced non-finite (NaN/inf) predictions")
    if per_stage and not pred.stages:
        raise PosekitError(f"{ckpt['path']}: --per-stage needs a cascade checkpoint (this one has a single stage)")
    trained_on = ckpt.get("split", {}).get("train", [])
    overlap = set(ids) & set(trained_on[:cfg.data.limit_train] if cfg.data.limit_train else trained_on)
    metrics = {**evaluate_keypoints(res["pred"], kps, sizes, masks), **settings, "train_overlap": len(overlap)}
    if per_stage:
        metrics["stages"] = _stage_metrics(pred, images, kps, masks, sizes, batch_size)
    return metrics, {"res": res, "images": images, "ckpt": ckpt, "ids": ids}
