"""Person detection: posekit's detector against OpenCV's HOG people detector on three test sets,
all from LSP's test images (never training images):

- ``lsp-multi``: 300 scenes of 1 to 4 people composed from LSP test images (seed 0, as
  ``posekit evaluate --split lsp-multi``): AP@0.5 and recall (IoU >= 0.5 and >= 0.3);
- ``lsp-test``: the 1000 LSP test images themselves, one person each, whole;
- ``no-person``: images with nobody (blank, noise, and background crops far from the annotated
  person, as ``benchmarks/no_person.py`` makes them, from the LSP test images and the detector's
  validation images, never its training images): the fraction where nothing is found, by the
  detector and by ``Predictor.predict_all`` (the detector and the pose's person threshold).

    make hog-venv   # OpenCV 4 for the HOG baseline
    python benchmarks/detection.py --detector posekit-person --pose posekit-lsp --data $POSEKIT_DATA \
        --json reports/detection.json

HOG runs in ``.venv-hog`` (``--hog-python``) through ``benchmarks/hog_detect.py`` on the same images,
written to a temporary folder as PNG."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def test_sets(data: str, limit: int | None, held_out: list[str]):
    """{"lsp-multi": [(image, true boxes)], "lsp-test": [...], "no-person": [(image, empty)]};
    ``held_out``: ids of images the detector never trained on (its validation split), whose
    backgrounds join the LSP test images' as no-person crops (LSP's test images are cut tight
    around their person and leave little background)."""
    sys.path.insert(0, str(HERE))
    from no_person import background_crops, blanks_and_noise

    from posekit.data.lsp import load_sets
    from posekit.data.scenes import box_from_joints, multi_person_set
    from posekit.data.splits import lsp_test_ids
    from posekit.detect import to_edges
    from posekit.evaluate import MULTI_SCENES, load_samples

    sets = load_sets(data, ["lsp", "lspet"])
    ids = lsp_test_ids(sets)[:limit]
    images, kps, masks, _ = load_samples(sets, ids)
    scenes = multi_person_set(images, kps, masks, n=MULTI_SCENES if limit is None else min(limit, MULTI_SCENES), seed=0)
    single = [(im, to_edges([box_from_joints(k, m, im.shape[1], im.shape[0])])) for im, k, m in zip(images, kps, masks)]
    empty = np.zeros((0, 4))
    nobody = [(im, empty) for im in blanks_and_noise(100 if limit else 300, 3)]
    nobody += [(im, empty) for im in background_crops(sets, ids + list(held_out)[:limit], 4)]
    return {"lsp-multi": [(sc.image, to_edges(sc.boxes)) for sc in scenes], "lsp-test": single, "no-person": nobody}


def hog_detections(sets: dict, python: str) -> dict:
    """HOG's (boxes, scores) per image of every set, from ``hog_detect.py`` in another environment."""
    import cv2

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, items in sets.items():
            folder = Path(tmp) / name
            folder.mkdir()
            for k, (im, _) in enumerate(items):
                cv2.imwrite(str(folder / f"{k:05d}.png"), im[..., ::-1])
            res = Path(tmp) / f"{name}.json"
            subprocess.run([python, str(HERE / "hog_detect.py"), "--images", str(folder), "--json", str(res)], check=True)
            got = json.loads(res.read_text())
            out[name] = [(np.array(got[f"{k:05d}.png"]["boxes"]).reshape(-1, 4), np.array(got[f"{k:05d}.png"]["scores"]))
                         for k in range(len(items))]
    return out


def score(dets: list, items: list) -> dict:
    from posekit.metrics import average_precision

    truths = [t for _, t in items]
    if not sum(len(t) for t in truths):
        return {"empty_rate": float(np.mean([len(b) == 0 for b, _ in dets]))}
    a5, a3 = average_precision(dets, truths, 0.5), average_precision(dets, truths, 0.3)
    return {"ap50": a5["ap"], "recall50": a5["recall"], "recall30": a3["recall"], "ap30": a3["ap"],
            "people": a5["people"], "detections": a5["detections"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="posekit-person")
    ap.add_argument("--pose", default="posekit-lsp", help="pose model for the no-person rate of predict_all")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--hog-python", default=str(HERE.parent / ".venv-hog" / "bin" / "python"))
    ap.add_argument("--limit", type=int, default=None, help="first N test images (quick runs)")
    ap.add_argument("--input-size", type=int, default=None, help="run the detector at this input side (default: its own)")
    ap.add_argument("--denoise", type=float, default=None,
                    help="median-filter images whose estimated noise reaches this (grey levels) first (detect.denoise; "
                         "default: the detector's own)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    from posekit.checkpoint import read_checkpoint
    from posekit.detect import PersonDetector
    from posekit.predict import Predictor

    det = PersonDetector(a.detector)
    if a.input_size:  # the same network at another input side
        det = PersonDetector(a.detector, settings=det.settings.model_copy(update={"input_size": a.input_size}))
    if a.denoise is not None:
        det.settings = det.settings.model_copy(update={"denoise": a.denoise})
    sets = test_sets(a.data, a.limit, read_checkpoint(a.detector)["split"]["val"])
    result = {"detector": a.detector, "input_size": det.input_size, "denoise": det.settings.denoise,
              "sets": {k: len(v) for k, v in sets.items()},
              "posekit": {}, "hog": {}}
    for name, items in sets.items():
        result["posekit"][name] = score([det.detect(im) for im, _ in items], items)
        print(f"posekit {name}: {result['posekit'][name]}", flush=True)
    pred = Predictor(a.pose, detector=det)  # the pose model's person threshold decides predict_all's answer
    result["posekit"]["no-person"]["predict_all_empty_rate"] = float(np.mean(
        [len(pred.predict_all(im)) == 0 for im, _ in sets["no-person"]]))
    if Path(a.hog_python).exists():
        for name, dets in hog_detections(sets, a.hog_python).items():
            result["hog"][name] = score(dets, sets[name])
            print(f"hog {name}: {result['hog'][name]}", flush=True)
    else:
        print(f"HOG baseline skipped: {a.hog_python} not found (make hog-venv)", file=sys.stderr)
    from posekit.utils import write_json

    write_json(a.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
