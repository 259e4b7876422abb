"""Pose models on the whole validation photos, split by the set each photo comes from.

    python benchmarks/val_by_set.py --model posekit-lsp runs/release_crowd/best.pt --data $POSEKIT_DATA \
        --json reports/release_lsp_val.json

The validation split of ``lsp-standard`` is carved at random from LSP's first 1000 images and all
of LSP-extended's 10,000, so about 1 in 11 of its photos is LSP's own kind (labels placed by the
dataset's authors, like the LSP test half's) and the rest are LSPe's (labels from crowd workers).
Its PCK over all photos says how a model does on LSPe's kind; the LSP part alone, small as it is,
is the validation that matches the LSP test half. Each model runs as ``posekit evaluate --split
val`` runs it (its own detector and settings); a run checkpoint runs with its recipe's settings,
so give it the shipped model's with ``--settings-from posekit-lsp``. Also reported: the
multi-person PCK@0.2 on ``val-multi`` (``--multi``) and PCK@0.2 on the whole photos
without the person detector (``--whole-image``). Figures: PCK@0.2, PCP@0.5 and the paired
count of joints only one of two models gets right (against the first model)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def with_settings_of(model: str, source: str, folder: str) -> str:
    """A copy of checkpoint ``model`` in ``folder`` run with the ``infer`` and ``detect`` settings of
    ``source`` (:func:`posekit.checkpoint.with_settings`)."""
    from posekit.checkpoint import read_checkpoint, save_checkpoint, with_settings

    ck = read_checkpoint(model)
    src = read_checkpoint(source)["config"]
    config = with_settings(ck["config"], {s: src[s] for s in ("infer", "detect")}, model)
    out = os.path.join(folder, f"{len(os.listdir(folder))}.pt")
    keep = {k: v for k, v in ck.items() if k not in ("config", "recipe", "path", "format", "optimizer", "train_model")}
    save_checkpoint(out, **keep, config=config)
    return out


def hits(res: dict) -> tuple[np.ndarray, np.ndarray]:
    """(correct, counted), each (N, K) bool, as PCK@0.2 counts them (:func:`posekit.metrics.pck`:
    a joint is counted when annotated on an image whose torso is annotated and not 0, and correct
    within 0.2 x torso of its label)."""
    from posekit.metrics import _pck_counts

    return _pck_counts(np.asarray(res["pred"], np.float64), np.asarray(res["gt"], np.float64),
                       np.asarray(res["mask"]) > 0, 0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", required=True, help="shipped names, run folders or checkpoints")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--settings-from", help="run every model with this model's infer and detect settings")
    ap.add_argument("--multi", action="store_true", help="also val-multi's multi-person PCK@0.2")
    ap.add_argument("--whole-image", action="store_true", help="also PCK@0.2 on the whole photos without the detector")
    ap.add_argument("--json")
    a = ap.parse_args()
    from posekit.errors import PosekitError
    from posekit.evaluate import evaluate
    from posekit.metrics import evaluate_keypoints

    rows, first = [], None

    def write():
        if a.json:
            Path(a.json).write_text(json.dumps({"split": "val (whole photos)", "settings_from": a.settings_from,
                                                "models": rows}, indent=1))

    try:
        with tempfile.TemporaryDirectory() as tmp:
            for model in a.model:
                path = with_settings_of(model, a.settings_from, tmp) if a.settings_from else model
                m, ex = evaluate(path, a.data, "val", batch_size=16)
                res, ids = ex["res"], ex["ids"]
                row = {"model": model, "all": {"n": m["n"], "pck": m["pck"], "pcp": m["pcp"]}}
                for name in ("lsp", "lspet"):
                    sel = np.array([i.startswith(name + "/") for i in ids])
                    k = evaluate_keypoints(res["pred"][sel], res["gt"][sel], res["sizes"][sel], res["mask"][sel])
                    row[name] = {"n": int(sel.sum()), "pck": k["pck"], "pcp": k["pcp"]}
                correct, counted = hits(res)
                if first is None:
                    first = (correct, counted, ids)
                elif ids != first[2]:
                    raise PosekitError(f"{model}: its validation split is not {a.model[0]}'s; joints are paired "
                                       f"only between models of one split")
                else:
                    sel = np.array([i.startswith("lsp/") for i in ids])[:, None] & counted & first[1]
                    row["lsp_joints_against_first"] = {"only_first": int((first[0] & ~correct & sel).sum()),
                                                       "only_this": int((correct & ~first[0] & sel).sum())}
                if a.whole_image:
                    row["whole_image_pck"] = evaluate(path, a.data, "val", batch_size=16, detector=False)[0]["pck"]
                if a.multi:
                    row["val_multi_pck"] = evaluate(path, a.data, "val-multi")[0]["multi_pck"]
                rows.append(row)
                print(json.dumps(row))
                write()  # after each model: a later failure keeps the rows measured
    except (PosekitError, OSError, KeyError, ValueError, RuntimeError) as e:
        print(f"val_by_set: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
