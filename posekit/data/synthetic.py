"""Small synthetic datasets in the LSP file format: a stick figure drawn over noise, with its
joints. Tests and the no-data demo use them; a model can learn them in a few epochs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posekit.data.lsp import write_set
from posekit.skeleton import LIMBS, NUM_JOINTS, idx

# A standing pose in a unit box (x right, y down), mirrored sides like a person facing us.
_TEMPLATE = {
    "head_top": (0.50, 0.05), "neck": (0.50, 0.20),
    "right_shoulder": (0.38, 0.23), "left_shoulder": (0.62, 0.23),
    "right_elbow": (0.30, 0.40), "left_elbow": (0.70, 0.40),
    "right_wrist": (0.27, 0.55), "left_wrist": (0.73, 0.55),
    "right_hip": (0.43, 0.55), "left_hip": (0.57, 0.55),
    "right_knee": (0.42, 0.75), "left_knee": (0.58, 0.75),
    "right_ankle": (0.41, 0.95), "left_ankle": (0.59, 0.95),
}


def joint_colors() -> np.ndarray:
    """A distinct RGB colour per joint (used by property tests to find joints in an image)."""
    hues = np.linspace(0, 170, NUM_JOINTS, endpoint=False).astype(np.uint8)
    hsv = np.stack([hues, np.full(NUM_JOINTS, 255, np.uint8), np.full(NUM_JOINTS, 255, np.uint8)], -1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def random_pose(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    base = np.array([_TEMPLATE[n] for n in sorted(_TEMPLATE, key=idx)], np.float64)
    base = base + rng.normal(0, 0.04, base.shape)  # articulation jitter
    side = min(width, height) * rng.uniform(0.55, 0.85)
    ox = rng.uniform(0, width - side * 0.8) if width > side * 0.8 else 0.0
    oy = rng.uniform(0, max(1e-6, height - side))
    return base * side + [ox + side * 0.1, oy]


def render(kp: np.ndarray, width: int, height: int, rng: np.random.Generator, dots: bool = True) -> np.ndarray:
    img = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    for a, b in LIMBS:
        cv2.line(img, tuple(int(round(v)) for v in kp[a]), tuple(int(round(v)) for v in kp[b]),
                 (230, 230, 230), max(1, width // 40), cv2.LINE_AA)
    if dots:
        for j, c in enumerate(joint_colors()):
            cv2.circle(img, tuple(int(round(v)) for v in kp[j]), max(2, width // 30), tuple(int(x) for x in c), -1)
    return img


def make_synthetic_set(folder: str | Path, n: int, layout: str = "lsp", size: tuple[int, int] = (64, 80),
                       seed: int = 0, hidden_fraction: float = 0.1) -> Path:
    """Write ``n`` synthetic images + ``joints.mat`` in the given layout. Some joints are marked
    not visible (for ``lspet`` that means not annotated, with junk coordinates)."""
    rng = np.random.default_rng(seed)
    w, h = size
    images, kps, vis = [], [], []
    for _ in range(n):
        kp = random_pose(rng, w, h)
        images.append(render(kp, w, h, rng))
        kps.append(kp)
        vis.append(rng.random(NUM_JOINTS) >= hidden_fraction)
    return write_set(folder, images, np.array(kps), np.array(vis), layout=layout)


def make_synthetic_root(root: str | Path, n_lsp: int = 40, n_lspet: int = 40, seed: int = 0, **kw) -> Path:
    """A data root with ``lsp/`` (LSP layout) and ``lspet/`` (LSP-extended layout)."""
    root = Path(root)
    make_synthetic_set(root / "lsp", n_lsp, "lsp", seed=seed, **kw)
    if n_lspet:
        make_synthetic_set(root / "lspet", n_lspet, "lspet", seed=seed + 1, **kw)
    return root
