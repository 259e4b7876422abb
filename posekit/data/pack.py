"""``posekit data pack``: a compact, self-contained copy of a split for a training machine.

Each image of the split is cut to a square, person-centred crop (the annotated joints' box plus
``margin`` of its side on every side, or the whole image when fewer than two joints are
annotated), resized to ``size`` pixels and stored as JPEG bytes. The file also holds the
annotations in original pixels, each crop's affine (original pixels -> crop pixels), the original
image sizes and the split itself. A training config that sets ``data.pack`` reads everything from
it, without the dataset folder: the decoded crops stand in for the image cache, so the same
transforms (person crop, flip, rotation, scale) run on them unchanged.

One ``.npz`` file (numpy's own zip container) with plain arrays: no pickle."""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np

from posekit.data.dataset import ImageCache, _run_threaded
from posekit.data.images import decode_image, read_image
from posekit.data.lsp import PoseSet, load_sets
from posekit.data.splits import make_split
from posekit.data.transforms import box_matrix, person_box, scale_matrix, warp
from posekit.errors import DataError
from posekit.utils import atomic_write_bytes

PACK_FORMAT = "posekit-pack-v1"


def _pack_settings(split: dict | None, out, size: int, margin: float | None, quality: int) -> dict:
    """The split settings of :func:`pack_split` with their defaults, each part once; DataError
    (one line naming the option) for any out of range."""
    sp = {"name": "lsp-standard", "sets": ["lsp", "lspet"], "seed": 0, "val_fraction": 0.05,
          "fractions": (0.7, 0.15, 0.15), "parts": ("train", "val"), **(split or {})}
    sp["parts"] = tuple(dict.fromkeys(sp["parts"]))
    if not 0 <= sp["val_fraction"] < 1:
        raise DataError(f"pack: --val-fraction {sp['val_fraction']}: expected a fraction in [0, 1)")
    if int(sp["seed"]) < 0:
        raise DataError(f"pack: --split-seed {sp['seed']}: expected a seed >= 0")
    if Path(out).suffix != ".npz":
        raise DataError(f"{out}: a pack file must end in .npz")
    if not 16 <= size <= 1024 or not (margin is None or 0 <= margin <= 2) or not 30 <= quality <= 100:
        raise DataError(f"pack: --size {size}, --margin {margin}, --quality {quality}: expected a size of 16-1024, "
                        "a margin of 0-2 and a quality of 30-100")
    return sp


def pack_split(root, out: str | os.PathLike, split: dict | None = None, size: int = 144, margin: float | None = 0.4,
               quality: int = 75, progress: bool = False) -> dict:
    """Write a pack of the dataset under ``root`` to ``out`` (.npz): ``split`` says which split
    (keys ``name`` "lsp-standard" | "paper", ``sets``, ``seed``, ``val_fraction``, ``fractions``,
    ``parts``: the parts packed, default train and val); each image becomes a ``size``-pixel
    square person crop with ``margin`` context per side (None: the whole image, stretched to the
    square), JPEG ``quality``. Returns a summary (images, bytes, path, ...). Raises DataError for
    bad settings or data."""
    sp = _pack_settings(split, out, size, margin, quality)
    split_name, sets, which, out = sp["name"], list(sp["sets"]), sp["parts"], Path(out)
    loaded = load_sets(root, sets)
    split = make_split(split_name, loaded, seed=sp["seed"], fractions=tuple(sp["fractions"]),
                       val_fraction=sp["val_fraction"])
    ids = [i for part in which for i in split.get(part, [])]
    if not ids:
        raise DataError(f"pack: the {split_name} split's {'+'.join(which)} holds no images (--val-fraction "
                        f"{sp['val_fraction']})")
    lookup = {s.sample_id(i): (s, i) for s in loaded.values() for i in range(len(s))}
    n = len(ids)
    blobs: list[bytes] = [b""] * n
    pre = np.zeros((n, 2, 3), np.float64)
    sizes = np.zeros((n, 2), np.int64)

    def one(k: int) -> None:
        s, i = lookup[ids[k]]
        img = read_image(s.image_paths[i])
        h, w = img.shape[:2]
        if margin is None:
            m = scale_matrix(size / w, size / h)
        else:
            m = box_matrix(person_box(s.keypoints[i], s.annotated[i], margin, w, h), size)
        crop = warp(img, m, size)
        ok, enc = cv2.imencode(".jpg", crop[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise DataError(f"{s.image_paths[i]}: cannot encode its crop")
        blobs[k], pre[k], sizes[k] = enc.tobytes(), m, (w, h)

    _run_threaded(one, list(range(n)), 2, progress, "packing")
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    sel = [lookup[i] for i in ids]
    meta = {"format": PACK_FORMAT, "split": {k: v for k, v in split.items() if k != "test"}
            | {"test": split.get("test", []) if "test" in which else []},
            "size": size, "margin": margin, "quality": quality, "sets": list(sets), "parts": list(which)}
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), ids=np.array(ids), jpeg=np.frombuffer(b"".join(blobs), np.uint8),
             offsets=offsets, keypoints=np.stack([s.keypoints[i] for s, i in sel]).astype(np.float64),
             visible=np.stack([s.visible[i] for s, i in sel]), annotated=np.stack([s.annotated[i] for s, i in sel]),
             sizes=sizes, pre=pre)
    atomic_write_bytes(out, buf.getvalue())
    return {"path": str(out), "images": n, "bytes": out.stat().st_size, "size": size, "margin": margin,
            "quality": quality, "split": split_name}


class PackCache(ImageCache):
    """The decoded crops of a pack, with the ``ImageCache`` interface: ``get(path)`` returns
    (crop, affine original -> crop, original (w, h))."""

    def __init__(self, images: list[np.ndarray], pre: np.ndarray, sizes: np.ndarray, keys: list[str]):  # noqa: D107
        self.images, self.pre, self.sizes = images, pre, sizes
        self.index = {k: i for i, k in enumerate(keys)}


def load_pack(path: str | os.PathLike, progress: bool = False) -> tuple[dict[str, PoseSet], PackCache, dict, float | None]:
    """(sets, cache, split, crop margin (None: whole images)) from a pack file: what training
    and evaluation need, without the dataset folder."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: pack file not found (make one with `posekit data pack`)")
    try:
        z = np.load(p, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        split, margin = meta["split"], None if meta["margin"] is None else float(meta["margin"])
        ids = [str(i) for i in z["ids"]]
        jpeg, offsets = z["jpeg"], z["offsets"]
        kp, vis, ann, sizes, pre = z["keypoints"], z["visible"], z["annotated"], z["sizes"], z["pre"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{p}: not a readable posekit pack ({type(e).__name__})") from None
    if meta.get("format") != PACK_FORMAT:
        raise DataError(f"{p}: not a posekit pack (format {meta.get('format')!r})")
    if not (len(ids) + 1 == len(offsets) == len(kp) + 1 == len(sizes) + 1 == len(pre) + 1):
        raise DataError(f"{p}: inconsistent pack (array lengths differ)")
    images: list[np.ndarray] = [None] * len(ids)  # type: ignore[list-item]

    def dec(k: int) -> None:
        images[k] = decode_image(jpeg[offsets[k]:offsets[k + 1]].tobytes(), f"{p}[{ids[k]}]")

    _run_threaded(dec, list(range(len(ids))), 2, progress, "unpacking")
    keys, sets = [], {}
    by_set: dict[str, list[int]] = {}
    for k, sid in enumerate(ids):
        by_set.setdefault(sid.split("/", 1)[0], []).append(k)
    for name, ks in by_set.items():
        paths = [p / ids[k] for k in ks]  # virtual paths: <pack>/<set>/<file>; sample ids stay <set>/<file>
        sets[name] = PoseSet(name=name, root=p, image_paths=paths, keypoints=kp[ks], visible=vis[ks], annotated=ann[ks],
                             layout="pack")
    keys = [str(p / sid) for sid in ids]
    return sets, PackCache(images, pre, sizes, keys), split, margin
