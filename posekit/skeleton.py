"""The 14-joint Leeds Sports Pose skeleton: the single source of truth for joint order,
left/right flip pairs and limbs. No other module hard-codes a joint index."""
from __future__ import annotations

import numpy as np

# LSP order (both LSP and LSP-extended). Left/right are the person's own.
JOINT_NAMES: tuple[str, ...] = (
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "neck",
    "head_top",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX: dict[str, int] = {n: i for i, n in enumerate(JOINT_NAMES)}


def idx(name: str) -> int:
    """Index of a joint by name; raises a one-line error for an unknown name."""
    try:
        return JOINT_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown joint {name!r}; expected one of {', '.join(JOINT_NAMES)}") from None


def _pairs() -> tuple[tuple[int, int], ...]:
    out = []
    for n in JOINT_NAMES:
        if n.startswith("left_"):
            out.append((idx(n), idx("right_" + n[5:])))
    return tuple(out)


# (left, right) index pairs swapped by a horizontal flip.
FLIP_PAIRS: tuple[tuple[int, int], ...] = _pairs()


def _flip_perm() -> np.ndarray:
    perm = np.arange(NUM_JOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


# keypoints_flipped = keypoints[FLIP_PERM] after mirroring x.
FLIP_PERM: np.ndarray = _flip_perm()

# The 10 body parts ("sticks") of the standard LSP strict-PCP evaluation. Each is
# (name, end_a, end_b) where an end is a tuple of joint indices whose mean is the end point
# (the torso runs from the hip centre to the shoulder centre).
PCP_PARTS: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = tuple(
    (name, tuple(idx(j) for j in a), tuple(idx(j) for j in b))
    for name, a, b in (
        ("right_lower_leg", ("right_ankle",), ("right_knee",)),
        ("right_upper_leg", ("right_knee",), ("right_hip",)),
        ("left_upper_leg", ("left_hip",), ("left_knee",)),
        ("left_lower_leg", ("left_knee",), ("left_ankle",)),
        ("right_lower_arm", ("right_wrist",), ("right_elbow",)),
        ("right_upper_arm", ("right_elbow",), ("right_shoulder",)),
        ("left_upper_arm", ("left_shoulder",), ("left_elbow",)),
        ("left_lower_arm", ("left_elbow",), ("left_wrist",)),
        ("head", ("neck",), ("head_top",)),
        ("torso", ("right_hip", "left_hip"), ("right_shoulder", "left_shoulder")),
    )
)

# Limbs for drawing: every stick of the skeleton.
LIMBS: tuple[tuple[int, int], ...] = tuple(
    (idx(a), idx(b))
    for a, b in (
        ("right_ankle", "right_knee"),
        ("right_knee", "right_hip"),
        ("left_hip", "left_knee"),
        ("left_knee", "left_ankle"),
        ("right_hip", "left_hip"),
        ("right_wrist", "right_elbow"),
        ("right_elbow", "right_shoulder"),
        ("left_shoulder", "left_elbow"),
        ("left_elbow", "left_wrist"),
        ("right_shoulder", "left_shoulder"),
        ("right_shoulder", "right_hip"),
        ("left_shoulder", "left_hip"),
        ("neck", "head_top"),
        ("right_shoulder", "neck"),
        ("left_shoulder", "neck"),
    )
)

# Per-joint spread of human annotation for the object keypoint similarity (OKS): COCO's sigmas
# (Lin et al., ECCV 2014) for the 12 limb joints, and CrowdPose's (Li et al., CVPR 2019, the same
# 14 joints as LSP) for the neck and head top.
_OKS_SIGMA = {"ankle": 0.089, "knee": 0.087, "hip": 0.107, "wrist": 0.062, "elbow": 0.072, "shoulder": 0.079,
              "neck": 0.079, "head_top": 0.079}
OKS_SIGMAS: np.ndarray = np.array([_OKS_SIGMA[n.split("_", 1)[1] if n.startswith(("left_", "right_")) else n]
                                   for n in JOINT_NAMES])

# Torso size for PCK, as in the LSP evaluation code: left shoulder to right hip.
TORSO_PAIR: tuple[int, int] = (idx("left_shoulder"), idx("right_hip"))


def side(j: int) -> str:
    """'left', 'right' or 'center' for drawing colours."""
    n = JOINT_NAMES[j]
    return "left" if n.startswith("left_") else "right" if n.startswith("right_") else "center"



# Drawing palette, shared by posekit.viz and the web page (served by /v1/skeleton). RGB.
SIDE_COLORS: dict[str, tuple[int, int, int]] = {
    "left": (30, 144, 255),
    "right": (255, 110, 0),
    "center": (255, 215, 0),
}
# Limb colours that tell several people apart (person k gets PERSON_COLORS[k % 8]).
PERSON_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (170, 110, 40),
    (0, 128, 128),
    (128, 128, 0),
)
# A joint whose score is below this is drawn as "low confidence" (hollow ring, dashed limbs).
LOW_JOINT_SCORE = 0.3
