"""Knowledge distillation's teacher cache: a trained model (at its most accurate: refinement crops,
flip test) run once over every training image, its joints and joint scores kept, in original
pixels, in one small ``.npz`` file (no pickle). A student recipe points ``distill.teacher`` at
the file, and its heatmap targets mix the teacher's joints with the labels
(:meth:`posekit.codecs.heatmap.HeatmapCodec.encode`); LSP-extended's crowd-sourced labels are
noisy, and its unannotated joints get the teacher's estimate.

The teacher sees each image framed around its annotated person as LSP frames its people (the
square around the joints' box with ``frame`` of its side on each side): the labels only frame the
image, as the dataset's authors did; the joints are the teacher's own."""
from __future__ import annotations

import json
import os

import numpy as np

from posekit.data.images import read_image
from posekit.data.lsp import load_sets
from posekit.data.splits import make_split
from posekit.data.transforms import apply_affine, box_matrix, invert_affine, person_box, warp
from posekit.errors import DataError

TEACHER_FORMAT = "posekit-teacher-v1"


def framed(image: np.ndarray, kp: np.ndarray, mask: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The image cut to the square around its annotated person (``margin`` per side) and the
    affine (2, 3) from original pixels to the cut's pixels."""
    h, w = image.shape[:2]
    box = person_box(kp, mask, margin, w, h)
    side = max(16, int(round(box[2])))
    m = box_matrix(box, side)
    return warp(image, m, side), m


def teacher_cache(pred, root, out: str | os.PathLike, split: str = "lsp-standard", sets=("lsp", "lspet"),
                  frame: float = 0.17, batch: int = 16, progress: bool = False) -> dict:
    """Run ``pred`` (a :class:`posekit.Predictor`, its settings as given) over the training and
    validation images of ``split`` and write the cache to ``out``. Returns a summary."""
    from posekit.utils import atomic_write_bytes

    loaded = load_sets(root, list(sets))
    sp = make_split(split, loaded)
    ids = sp["train"] + sp["val"]
    index = {s.sample_id(i): (s, i) for s in loaded.values() for i in range(len(s))}
    kps, scores = np.zeros((len(ids), 14, 2)), np.zeros((len(ids), 14), np.float32)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="img", desc="teacher")
    for start in range(0, len(ids), batch):
        chunk = ids[start:start + batch]
        cuts = [framed(read_image(index[i][0].image_paths[index[i][1]]), index[i][0].keypoints[index[i][1]],
                       index[i][0].annotated[index[i][1]], frame) for i in chunk]
        for k, (pose, (_, m)) in enumerate(zip(pred.predict_batch([c for c, _ in cuts]), cuts)):
            kps[start + k] = apply_affine(pose.keypoints, invert_affine(m))
            scores[start + k] = pose.scores
        if bar is not None:
            bar.update(len(chunk))
    meta = {"format": TEACHER_FORMAT, "model": pred.name, "flip_test": pred.flip_test, "refine": pred.refine,
            "refine_weight": pred.refine_weight, "precision": pred.precision, "frame": frame, "split": split}
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(meta)), ids=np.array(ids), keypoints=kps.astype(np.float32),
                        scores=scores)
    atomic_write_bytes(out, buf.getvalue())
    return {"path": str(out), "images": len(ids), **meta}


def load_teacher(path: str | os.PathLike) -> dict:
    """The cache as {sample id: (keypoints (14, 2), scores (14,))}. Raises DataError for a file
    that is not a posekit teacher cache."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != TEACHER_FORMAT:
                raise DataError(f"{path}: not a posekit teacher cache")
            return {i: (k.astype(np.float64), s) for i, k, s in zip(z["ids"].tolist(), z["keypoints"], z["scores"])}
    except FileNotFoundError:
        raise DataError(f"{path}: teacher cache not found (make one with `posekit data teacher`)") from None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a readable teacher cache ({type(e).__name__})") from None
