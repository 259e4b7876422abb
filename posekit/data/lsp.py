"""Reading the Leeds Sports Pose datasets (LSP and LSP-extended) into one representation.

Both ship a ``joints.mat`` with a variable ``joints`` and a folder ``images/``:

- LSP: shape (3, 14, N), rows x, y, flag with **0 = visible**; every joint is annotated.
- LSP-extended: shape (14, 3, N) with **1 = visible**; 0 means *not annotated* and its x, y
  are junk.

Both use 1-based MATLAB pixel coordinates. Here every set becomes a :class:`PoseSet` with
0-based pixel coordinates (x, y) (the centre of the top-left pixel is (0, 0)), a ``visible``
mask and an ``annotated`` mask (the one losses and metrics use).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posekit.errors import DataError
from posekit.skeleton import NUM_JOINTS, TORSO_PAIR

#: dataset sets posekit knows, in the order they are listed and indexed.
KNOWN_SETS = ("lsp", "lspet")
DATA_ENV = "POSEKIT_DATA"


@dataclass
class PoseSet:
    """One dataset folder: image paths and their annotations (all arrays indexed alike)."""

    name: str
    root: Path
    image_paths: list[Path]
    keypoints: np.ndarray  # (N, 14, 2) float64, 0-based pixels
    visible: np.ndarray  # (N, 14) bool
    annotated: np.ndarray  # (N, 14) bool
    layout: str = "lsp"  # "lsp" (3,14,N) or "lspet" (14,3,N)

    def __len__(self) -> int:
        return len(self.image_paths)

    def sample_id(self, i: int) -> str:
        """Stable id of sample i: ``<set>/<image file name>``."""
        return f"{self.name}/{self.image_paths[i].name}"


def resolve_data_root(root: str | os.PathLike | None) -> Path:
    """The dataset root from the argument, else ``$POSEKIT_DATA``; a clear error when neither
    names an existing folder."""
    if root is None or str(root) == "":
        root = os.environ.get(DATA_ENV)
        if not root:
            raise DataError(
                f"no dataset root given: pass --data DIR or set {DATA_ENV} "
                "(a folder holding lsp/ and/or lspet/)"
            )
    p = Path(root).expanduser()
    if not p.is_dir():
        raise DataError(f"{p}: dataset root not found (expected a folder holding lsp/ and/or lspet/)")
    return p


def _load_mat(path: Path) -> np.ndarray:
    import scipy.io

    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for damaged files
        raise DataError(f"{path}: cannot read MATLAB file ({type(e).__name__}: {e})") from None
    if "joints" not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise DataError(f"{path}: no variable 'joints' (found: {', '.join(keys) or 'none'})")
    j = np.asarray(mat["joints"])
    if not np.issubdtype(j.dtype, np.number):
        raise DataError(f"{path}: 'joints' is not numeric (dtype {j.dtype})")
    return j.astype(np.float64)


def parse_joints(j: np.ndarray, source: str = "joints.mat") -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Convert a raw ``joints`` array of either layout to (keypoints, visible, annotated, layout).

    Keypoints are 0-based pixels. Raises DataError naming ``source`` for a wrong shape or NaN /
    infinite coordinates of annotated joints."""
    if j.ndim == 3 and j.shape[0] == 3 and j.shape[1] == NUM_JOINTS:
        layout = "lsp"
        xy = np.transpose(j[:2], (2, 1, 0))  # (N, 14, 2)
        flag = j[2].T  # (N, 14)
        visible = flag == 0
        annotated = np.ones_like(visible, dtype=bool)
    elif j.ndim == 3 and j.shape[0] == NUM_JOINTS and j.shape[1] == 3:
        layout = "lspet"
        xy = np.transpose(j[:, :2], (2, 0, 1))
        flag = j[:, 2].T
        visible = flag == 1
        annotated = visible.copy()
    else:
        raise DataError(
            f"{source}: 'joints' has shape {tuple(j.shape)}; expected (3, {NUM_JOINTS}, N) (LSP) "
            f"or ({NUM_JOINTS}, 3, N) (LSP-extended)"
        )
    bad_flag = ~np.isin(flag, (0, 1))
    if bad_flag.any():
        n = int(np.argwhere(bad_flag)[0][0])
        raise DataError(f"{source}: visibility flag of image {n + 1} is not 0 or 1")
    keypoints = xy - 1.0  # MATLAB 1-based -> 0-based
    finite = np.isfinite(keypoints).all(axis=-1)
    bad = annotated & ~finite
    if bad.any():
        n, k = np.argwhere(bad)[0]
        raise DataError(
            f"{source}: non-finite (NaN/inf) coordinates for annotated joint {k + 1} of image {n + 1} "
            f"({int(bad.sum())} such joints in all)"
        )
    keypoints = np.where(annotated[..., None], keypoints, 0.0)  # junk of unannotated joints -> 0
    a, b = TORSO_PAIR
    torso = np.linalg.norm(keypoints[:, a] - keypoints[:, b], axis=-1)
    if len(keypoints) and not (annotated[:, a] & annotated[:, b] & (torso > 0)).any():
        raise DataError(f"{source}: no image has a torso (left shoulder to right hip) of non-zero length, "
                        "so PCK cannot be measured: are the coordinates right?")
    return keypoints, visible, annotated, layout


_IMG_RE = re.compile(r"^im(\d+)\.jpg$")


def load_set(folder: str | os.PathLike, name: str | None = None, check_images: bool = True) -> PoseSet:
    """Load one LSP-format folder (``joints.mat`` + ``images/imNNNN.jpg``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found")
    name = name or folder.name
    mat_path = folder / "joints.mat"
    keypoints, visible, annotated, layout = parse_joints(_load_mat(mat_path), str(mat_path))
    n = len(keypoints)
    img_dir = folder / "images"
    if not img_dir.is_dir():
        raise DataError(f"{img_dir}: image folder not found")
    digits = 4 if layout == "lsp" else 5
    paths = [img_dir / f"im{i + 1:0{digits}d}.jpg" for i in range(n)]
    if check_images:
        present = {p.name for p in img_dir.iterdir() if _IMG_RE.match(p.name)}
        missing = [p for p in paths if p.name not in present]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DataError(f"{missing[0]}: image file not found{more} ({mat_path.name} lists {n} images)")
        if len(present) != n:
            raise DataError(f"{mat_path}: lists {n} images, but {img_dir} holds {len(present)} "
                            f"(im{1:0{digits}d}.jpg ...): the annotations and the images must match one to one")
    return PoseSet(name, folder, paths, keypoints, visible, annotated, layout)


def load_sets(root: str | os.PathLike | None, sets: list[str] | tuple[str, ...]) -> dict[str, PoseSet]:
    """Load the named sets (e.g. ``["lsp", "lspet"]``) under a dataset root."""
    root = resolve_data_root(root)
    out = {}
    for s in sets:
        if s not in KNOWN_SETS:
            raise DataError(f"unknown dataset set {s!r}; known: {', '.join(KNOWN_SETS)}")
        folder = root / s
        if not folder.is_dir():
            raise DataError(f"{folder}: dataset folder not found under the data root {root}")
        out[s] = load_set(folder, s)
    return out


def write_set(folder: str | os.PathLike, images: list[np.ndarray], keypoints: np.ndarray,
              visible: np.ndarray, layout: str = "lsp", junk: float = -30.0) -> Path:
    """Write a dataset in the LSP file format (used by tests and examples to make synthetic data).

    ``images`` are RGB uint8 arrays, ``keypoints`` (N, 14, 2) 0-based pixels, ``visible`` (N, 14).
    For the ``lspet`` layout, joints that are not visible are written as not annotated with junk
    coordinates, as in the real LSP-extended file."""
    import cv2
    import scipy.io

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    digits = 4 if layout == "lsp" else 5
    for i, im in enumerate(images):
        ok = cv2.imwrite(str(folder / "images" / f"im{i + 1:0{digits}d}.jpg"), im[..., ::-1],
                         [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise DataError(f"{folder}: cannot write image {i + 1}")
    xy = np.asarray(keypoints, np.float64) + 1.0
    vis = np.asarray(visible, bool)
    if layout == "lsp":
        j = np.concatenate([xy, (~vis)[..., None].astype(np.float64)], axis=-1)  # (N,14,3)
        j = np.transpose(j, (2, 1, 0))  # (3,14,N)
    elif layout == "lspet":
        xy = np.where(vis[..., None], xy, junk)
        j = np.concatenate([xy, vis[..., None].astype(np.float64)], axis=-1)  # (N,14,3)
        j = np.transpose(j, (1, 2, 0))  # (14,3,N)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    scipy.io.savemat(str(folder / "joints.mat"), {"joints": j})
    return folder
