"""Choose the person-score threshold under which posekit answers "no person found".

    python benchmarks/no_person.py --model posekit-lsp --data $POSEKIT_DATA --json reports/no_person.json

Positives are images with a person: the model's validation images (whole photographs, never
trained on) to choose, LSP's test half to report. Negatives are images with no person: blank
images (one colour), noise (uniform, Gaussian, smooth) and background crops far from the annotated
person (square crops that do not touch the person's box, enlarged by a quarter of its side): from
the validation images to choose, from the LSP test images (and LSPe training images: LSP's test
images are cut tight around their person) to report, each with its own seed. A pose's score is
:attr:`posekit.Pose.score` (the mean joint score) as ``Predictor`` computes it with the model's
own settings; with a person detector, an image scores the best pose among its strong detections,
and 0 where there is none (nobody is found whatever the threshold).

The threshold maximises the true-positive rate minus the false-positive rate on the choosing
sets (Youden's J), or with ``--max-fpr F`` it is the lowest whose false-positive rate on the
choosing sets is at most F (a fixed false-alarm rate, as the Neyman-Pearson rule: "nobody" must be
answered on at least 1 - F of the images without a person, and as many people as possible are
found under that); the report gives both rates on the test sets, and both curves."""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def blanks_and_noise(n: int, seed: int) -> list[np.ndarray]:
    """``n`` images with no person: a third blank, a third white/Gaussian noise, a third smooth noise."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        h, w = (int(v) for v in rng.integers(64, 400, size=2))
        kind = k % 3
        if kind == 0:
            img = np.empty((h, w, 3), np.uint8)
            img[:] = rng.integers(0, 256, size=3)
        elif kind == 1:
            img = (rng.normal(128, rng.uniform(10, 80), (h, w, 3)) if k % 2 else rng.uniform(0, 255, (h, w, 3)))
            img = np.clip(img, 0, 255).astype(np.uint8)
        else:
            small = rng.uniform(0, 255, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
            img = np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
        out.append(img)
    return out


def background_crops(sets: dict, ids: list[str], seed: int, min_side: int = 48, tries: int = 60) -> list[np.ndarray]:
    """At most one square crop per image, at least ``min_side`` pixels, that does not touch the
    annotated person's box enlarged by a quarter of its side (:func:`posekit.data.scenes.background_crop`)."""
    from posekit.data.images import read_image
    from posekit.data.scenes import background_crop

    rng = np.random.default_rng(seed)
    index = {s.sample_id(k): (s, k) for s in sets.values() for k in range(len(s))}
    out = []
    for i in ids:
        s, k = index[i]
        if s.annotated[k].sum() < 2:
            continue
        crop = background_crop(read_image(s.image_paths[k]), s.keypoints[k], s.annotated[k], rng, min_side, tries)
        if crop is not None:
            out.append(crop)
    return out


def candidates(pred, images: list[np.ndarray]) -> list[np.ndarray]:
    """Each image's candidates, (M, 2) arrays of (detection score, pose score) for every detection
    down to ``detect.region_threshold``; without a detector one row (1.0, the whole image's pose
    score)."""
    from posekit.data.images import as_rgb

    if pred.detector is None:
        return [np.array([[1.0, p.score]]) for i in range(0, len(images), 16) for p in pred.predict_batch(images[i:i + 16])]
    out = []
    settings = pred.detector.settings
    for img in images:
        rgb = as_rgb(img)
        boxes, det = pred.detect([rgb], min(settings.region_threshold, settings.score_threshold))[0]
        poses = pred.estimate_detected([(rgb, b) for b in boxes])  # as predict_all crops them
        out.append(np.array([[d, p.score] for d, p in zip(det, poses)]).reshape(-1, 2))
    return out


def scores(cands: list[np.ndarray], score_threshold: float) -> np.ndarray:
    """Each image's person score, the score whose threshold decides whether anybody is found: the
    best pose score among its strong detections (at least ``score_threshold``: ``predict_all``
    finds somebody, and ``predict`` answers a person, exactly when it reaches the threshold), 0
    when there is none."""
    return np.array([max((p for d, p in c if d >= score_threshold), default=0.0) for c in cands])


def rates(pos: np.ndarray, neg: np.ndarray, thr: float) -> dict:
    return {"tpr": float((pos >= thr).mean()), "fpr": float((neg >= thr).mean())}


def choose_threshold(curve: list[dict], max_fpr: float | None = None) -> float | None:
    """The threshold of ``curve`` (dicts of threshold, tpr, fpr on the choosing sets): the highest
    TPR − FPR (Youden's J), or with ``max_fpr`` the lowest whose FPR is at most it (None if none is)."""
    if max_fpr is None:
        return max((c["tpr"] - c["fpr"], c["threshold"]) for c in curve)[1]
    ok = [c["threshold"] for c in curve if c["fpr"] <= max_fpr]
    return min(ok) if ok else None


def main(argv=None) -> int:
    from posekit.cli import refine_arg  # a margin list, as --box-margins

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--noise", type=int, default=300, help="blank and noise images per side (choose, test)")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each split (quick runs)")
    ap.add_argument("--max-fpr", type=float, default=None,
                    help="choose the lowest threshold with at most this false-positive rate (default: Youden's J)")
    ap.add_argument("--detector-thresholds", type=float, nargs="+", default=None,
                    help="also choose detect.score_threshold among these (default: the model's own)")
    ap.add_argument("--box-margins", type=refine_arg, default=None, metavar="M[,M...]",
                    help="the multi-scale test on the detected boxes (default: the model's own infer.box_margins)")
    ap.add_argument("--detector-flip-test", choices=["on", "off"], default=None,
                    help="the person detector's flip test (default: the model's own detect.flip_test)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.max_fpr is not None and not 0 <= args.max_fpr <= 1:
        print(f"no_person.py: --max-fpr {args.max_fpr}: expected a rate in [0, 1]", file=sys.stderr)
        return 2

    from posekit.checkpoint import read_checkpoint
    from posekit.cli.commands import on_off
    from posekit.data.images import read_image
    from posekit.data.lsp import load_sets
    from posekit.data.splits import lsp_test_ids
    from posekit.predict import Predictor

    ck = read_checkpoint(args.model)
    val_ids = list(ck["split"]["val"])[:args.limit]
    sets = load_sets(args.data, sorted({i.split("/")[0] for i in val_ids} | {"lsp"}))
    test_ids = lsp_test_ids(sets)[:args.limit]
    paths = {s.sample_id(i): s.image_paths[i] for s in sets.values() for i in range(len(s))}
    pred = Predictor(args.model, box_margins=args.box_margins, detector_flip_test=on_off(args.detector_flip_test))
    if pred.detector is not None:
        floor = min(pred.detector.settings.region_threshold, pred.detector.settings.score_threshold)
        if any(st < floor for st in args.detector_thresholds or []):
            print(f"no_person.py: --detector-thresholds: candidates are detected down to {floor} "
                  "(detect.region_threshold); give thresholds at least that", file=sys.stderr)
            return 2
    choose_neg = {"blank_noise": blanks_and_noise(args.noise, 1), "background": background_crops(sets, val_ids, 2)}
    # LSP's test images are cut tight around their person, so their backgrounds come from LSPe
    # training images instead (never the validation images the threshold is chosen on)
    val = set(ck["split"]["val"])
    lspet_train = [i for i in ck["split"]["train"] if i.startswith("lspet/") and i not in val][:args.limit or 1000]
    if "lspet" not in sets:
        sets.update(load_sets(args.data, ["lspet"]))
    test_neg = {"blank_noise": blanks_and_noise(args.noise, 3),
                "background": background_crops(sets, test_ids, 4) + background_crops(sets, lspet_train, 5)}
    cand = {"pos_choose": candidates(pred, [read_image(paths[i]) for i in val_ids]),
            "pos_test": candidates(pred, [read_image(paths[i]) for i in test_ids]),
            **{f"choose_{k}": candidates(pred, v) for k, v in choose_neg.items()},
            **{f"test_{k}": candidates(pred, v) for k, v in test_neg.items()}}
    own = pred.detector.settings.score_threshold if pred.detector is not None else 1.0
    grid = np.round(np.arange(0.02, 0.81, 0.01), 2)
    by_detector = []
    for st in args.detector_thresholds or [own]:
        pos = scores(cand["pos_choose"], st)
        neg = np.concatenate([scores(cand[f"choose_{k}"], st) for k in choose_neg])
        curve = [{"threshold": float(t), **rates(pos, neg, t)} for t in grid]
        t = choose_threshold(curve, args.max_fpr)
        test_neg_all = np.concatenate([scores(cand[f"test_{k}"], st) for k in test_neg])
        by_detector.append({"score_threshold": st, "threshold": t, "choose": None if t is None else rates(pos, neg, t),
                            "test": None if t is None else rates(scores(cand["pos_test"], st), test_neg_all, t),
                            "choose_curve": curve})
    ok = [b for b in by_detector if b["threshold"] is not None]
    if not ok:
        print(f"no_person.py: no threshold up to {grid[-1]} keeps the false-positive rate at {args.max_fpr} "
              "or less on the choosing sets", file=sys.stderr)
        return 2
    key = (lambda b: b["choose"]["tpr"]) if args.max_fpr is not None else (lambda b: b["choose"]["tpr"] - b["choose"]["fpr"])
    pick = max(ok, key=key)
    st, best, choose_curve = pick["score_threshold"], pick["threshold"], pick["choose_curve"]
    pos_choose, pos_test = scores(cand["pos_choose"], st), scores(cand["pos_test"], st)
    neg_choose = {k: scores(cand[f"choose_{k}"], st) for k in choose_neg}
    neg_test = {k: scores(cand[f"test_{k}"], st) for k in test_neg}
    all_choose = np.concatenate(list(neg_choose.values()))
    all_test = np.concatenate(list(neg_test.values()))
    own_neg = {kind: np.concatenate([scores(cand[f"{kind}_{k}"], own) for k in src])
               for kind, src in (("choose", choose_neg), ("test", test_neg))}
    as_shipped = {"score_threshold": own, "threshold": pred.threshold,  # what the model answers with today
                  "choose": rates(scores(cand["pos_choose"], own), own_neg["choose"], pred.threshold),
                  "test": rates(scores(cand["pos_test"], own), own_neg["test"], pred.threshold)}
    result = {
        "score": "the best Pose.score (mean joint score) among the detections of at least detect.score_threshold "
                 "(0 where there is none)", "chosen_threshold": float(best), "score_threshold": st,
        "by_score_threshold": [{k: v for k, v in b.items() if k != "choose_curve"} for b in by_detector],
        "as_shipped": as_shipped,
        "rule": "Youden's J" if args.max_fpr is None else f"the lowest with a false-positive rate of at most {args.max_fpr}",
        "model": args.model, "detector": None if pred.detector is None else pred.detector.name,
        "box_margins": pred.box_margins, "detector_flip_test": pred.detector_flip_test,
        "chosen_on": {"positives": f"validation split, {len(pos_choose)} whole images",
                      "negatives": {k: len(v) for k, v in neg_choose.items()}},
        "choose": rates(pos_choose, all_choose, best),
        "test": {"positives": len(pos_test), "negatives": {k: len(v) for k, v in neg_test.items()},
                 **rates(pos_test, all_test, best),
                 "fpr_by_kind": {k: rates(pos_test, v, best)["fpr"] for k, v in neg_test.items()}},
        "score_quantiles": {name: [float(q) for q in np.quantile(v, [0.01, 0.05, 0.5, 0.95, 0.99])]
                            for name, v in (("lsp_test", pos_test), ("no_person_test", all_test))},
        "curve": [{"threshold": float(t), "test": rates(pos_test, all_test, t)} for t in grid],
        "choose_curve": choose_curve,
    }
    print(f"detect.score_threshold {st:.2f}, threshold {best:.2f} (chosen on the validation images, their "
          "backgrounds, blank and noise): "
          f"LSP test true-positive rate {result['test']['tpr']:.3f}, no-person false-positive rate "
          f"{result['test']['fpr']:.3f} (" + ", ".join(f"{k} {v:.3f}" for k, v in result["test"]["fpr_by_kind"].items())
          + f"); as shipped (detect.score_threshold {own:.2f}, threshold {pred.threshold:.2f}): LSP test true-positive "
          f"rate {as_shipped['test']['tpr']:.3f}, no-person false-positive rate {as_shipped['test']['fpr']:.3f}")
    from posekit.utils import write_json

    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
