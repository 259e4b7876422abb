"""Keypoint metrics for 14-joint LSP poses (pure numpy, no I/O).

Conventions: ``pred``/``gt`` are float arrays (N, 14, 2) of x, y in 0-based original-image
pixels (a single (14, 2) pose is accepted as N = 1); ``mask`` (N, 14) bool marks annotated
joints (default: all), unannotated joints are excluded from every metric; ``sizes`` (N, 2)
is the image (width, height). Values where ``mask`` is false are ignored, even NaN.
"""
from __future__ import annotations

import math

import numpy as np

from .skeleton import FLIP_PERM, JOINT_NAMES, NUM_JOINTS, OKS_SIGMAS, PCP_PARTS, TORSO_PAIR, idx

# Relative slack so a distance exactly at the threshold counts as correct despite rounding.
_REL_TOL = 1e-9
PCK_CURVE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 11))


def _check(pred, gt, mask=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and return (pred, gt, mask) as (N,14,2) float64, (N,14,2) float64, (N,14) bool,
    with unannotated entries of pred/gt set to 0."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim == 2:
        pred = pred[None]
    if gt.ndim == 2:
        gt = gt[None]
    if gt.ndim != 3 or gt.shape[1:] != (NUM_JOINTS, 2):
        raise ValueError(f"gt must have shape (N, {NUM_JOINTS}, 2), got {gt.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred shape {pred.shape} does not match gt shape {gt.shape}")
    if mask is None:
        mask = np.ones(gt.shape[:2], dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.ndim == 1:
            mask = mask[None]
        if mask.shape != gt.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match (N, {NUM_JOINTS}) = {gt.shape[:2]}")
        mask = mask.astype(bool)
    for name, a in (("pred", pred), ("gt", gt)):
        bad = mask & ~np.isfinite(a).all(axis=-1)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"{name} has {int(bad.sum())} non-finite annotated joint(s), "
                             f"first at image {i}, joint {JOINT_NAMES[j]}")
    m3 = mask[..., None]
    return np.where(m3, pred, 0.0), np.where(m3, gt, 0.0), mask


def _ratio(num, den) -> np.ndarray | float:
    """num / den with NaN where den == 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out if out.ndim else float(out)


def _torso(gt: np.ndarray) -> np.ndarray:
    """(N,) torso sizes of the LSP evaluation: ||gt[left_shoulder] - gt[right_hip]||."""
    a, b = TORSO_PAIR
    return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)


def _pck_counts(pred, gt, mask, thr):
    """(correct, counted) bool arrays (N, 14) for validated inputs."""
    a, b = TORSO_PAIR
    torso = _torso(gt)
    valid_img = mask[:, a] & mask[:, b] & (torso > 0)
    counted = mask & valid_img[:, None]
    dist = np.linalg.norm(pred - gt, axis=-1)
    correct = counted & (dist <= thr * torso[:, None] * (1 + _REL_TOL))
    return correct, counted


def pck(pred, gt, mask=None, thr: float = 0.2) -> tuple[float, np.ndarray]:
    """Percentage of Correct Keypoints (LSP / Sapp & Taskar): a joint is correct when its
    distance to the truth is <= ``thr`` x torso, torso = ||gt[left_shoulder] - gt[right_hip]||.

    Images whose torso is 0 or whose torso joints are unannotated are excluded entirely.
    Returns (overall fraction over all counted joints, per-joint fractions (14,)); entries
    with nothing to count are NaN.
    """
    pred, gt, mask = _check(pred, gt, mask)
    correct, counted = _pck_counts(pred, gt, mask, thr)
    return _ratio(correct.sum(), counted.sum()), _ratio(correct.sum(0), counted.sum(0))


ERROR_KINDS: tuple[str, ...] = ("good", "jitter", "inversion", "miss")


def error_breakdown(pred, gt, mask=None, thr: float = 0.2, jitter: float = 0.5) -> tuple[dict, dict]:
    """Where the PCK misses go (the error types of Ronchi & Perona, ICCV 2017, for one person).
    Every counted joint (as in :func:`pck`) is exactly one of:

    - ``good``: within ``thr`` x torso of its truth (so ``good`` is PCK@thr);
    - ``inversion``: not good, nearer its left/right counterpart's truth than its own, and within
      ``jitter`` x torso of it (a left wrist placed on the right wrist);
    - ``jitter``: neither, but within ``jitter`` x torso of its truth (the right place, imprecisely);
    - ``miss``: anything else.

    As in coco-analyze, a joint is first matched to the nearer of its own and its counterpart's
    truth, then judged by the ``jitter`` radius.

    Returns (overall fractions, per-joint fractions: kind -> joint name -> fraction or None)."""
    pred, gt, mask = _check(pred, gt, mask)
    correct, counted = _pck_counts(pred, gt, mask, thr)
    torso = _torso(gt)[:, None] * (1 + _REL_TOL)
    d_own = np.linalg.norm(pred - gt, axis=-1)
    d_mirror = np.linalg.norm(pred - gt[:, FLIP_PERM], axis=-1)
    has_mirror = mask[:, FLIP_PERM] & (FLIP_PERM != np.arange(NUM_JOINTS))[None]
    inversion = counted & ~correct & has_mirror & (d_mirror < d_own) & (d_mirror <= jitter * torso)
    jit = counted & ~correct & ~inversion & (d_own <= jitter * torso)
    miss = counted & ~correct & ~inversion & ~jit
    kinds = dict(zip(ERROR_KINDS, (correct, jit, inversion, miss)))
    overall = {k: _num(_ratio(v.sum(), counted.sum())) for k, v in kinds.items()}
    per_joint = {k: {name: _num(x) for name, x in zip(JOINT_NAMES, _ratio(v.sum(0), counted.sum(0)))}
                 for k, v in kinds.items()}
    return overall, per_joint


LR_CHAINS: tuple[tuple[str, ...], ...] = (("shoulder", "elbow", "wrist"), ("hip", "knee", "ankle"))


def _swap_where_nearer(pred, gt, mask, joints: list[int], swapped: list[int]) -> tuple[np.ndarray, int]:
    """pred with pred[:, swapped] moved to ``joints`` on the images where that is nearer the truth."""
    def cost(p):
        return np.where(mask[:, joints], np.linalg.norm(p - gt[:, joints], axis=-1), 0.0).sum(1)

    better = cost(pred[:, swapped]) < cost(pred[:, joints])
    out = pred.copy()
    out[np.ix_(better, joints)] = pred[np.ix_(better, swapped)]
    return out, int(better.sum())


def lr_oracles(pred, gt, mask=None) -> dict:
    """Two left/right oracles that peek at the truth, bounding what fixing left/right decisions
    alone could give: PCK@0.2 after swapping, per image, the whole pose's left and right joints
    where the swapped pose is nearer the truth (the person's facing direction), and after deciding
    the arms and the legs (:data:`LR_CHAINS`) apart. An analysis, never a prediction."""
    pred, gt, mask = _check(pred, gt, mask)
    whole, n_whole = _swap_where_nearer(pred, gt, mask, list(range(NUM_JOINTS)), list(FLIP_PERM))
    chains, n_chain = pred, 0
    for ch in LR_CHAINS:
        left, right = [idx(f"left_{c}") for c in ch], [idx(f"right_{c}") for c in ch]
        chains, n = _swap_where_nearer(chains, gt, mask, left + right, right + left)
        n_chain += n
    return {"pck": _num(pck(pred, gt, mask)[0]),
            "pck_whole_pose_lr_oracle": _num(pck(whole, gt, mask)[0]), "images_swapped": n_whole,
            "pck_arms_legs_lr_oracle": _num(pck(chains, gt, mask)[0]), "chains_swapped": n_chain}


def _endpoints(kp: np.ndarray, ends: tuple[int, ...]) -> np.ndarray:
    return kp[:, list(ends)].mean(axis=1)


def pcp(pred, gt, mask=None, thr: float = 0.5) -> tuple[float, np.ndarray]:
    """Strict Percentage of Correct Parts over the 10 ``PCP_PARTS``: a part is correct when
    BOTH predicted end points lie within ``thr`` x the ground-truth part length of the true
    end points (an end point is the mean of its joints, e.g. the torso runs hip centre to
    shoulder centre). Parts with any unannotated joint, or of zero length, are excluded.
    Returns (overall fraction, per-part fractions (10,), NaN where nothing counted).
    """
    pred, gt, mask = _check(pred, gt, mask)
    n = gt.shape[0]
    correct = np.zeros((n, len(PCP_PARTS)), dtype=bool)
    counted = np.zeros_like(correct)
    for k, (_, ea, eb) in enumerate(PCP_PARTS):
        ga, gb = _endpoints(gt, ea), _endpoints(gt, eb)
        length = np.linalg.norm(ga - gb, axis=-1)
        ok = mask[:, list(ea + eb)].all(axis=1) & (length > 0)
        lim = thr * length * (1 + _REL_TOL)
        da = np.linalg.norm(_endpoints(pred, ea) - ga, axis=-1)
        db = np.linalg.norm(_endpoints(pred, eb) - gb, axis=-1)
        counted[:, k] = ok
        correct[:, k] = ok & (da <= lim) & (db <= lim)
    return _ratio(correct.sum(), counted.sum()), _ratio(correct.sum(0), counted.sum(0))


def _check_sizes(sizes, n: int) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=np.float64)
    if sizes.ndim == 1:
        sizes = sizes[None]
    if sizes.shape != (n, 2):
        raise ValueError(f"sizes must have shape ({n}, 2) of (width, height), got {sizes.shape}")
    if not (np.isfinite(sizes).all() and (sizes > 0).all()):
        raise ValueError("sizes must be finite and positive (width, height)")
    return sizes


def mse(pred, gt, sizes, mask=None) -> float:
    """The paper's MSE: mean, over annotated joints and both coordinates, of the squared error
    after dividing x by the image width and y by the image height, i.e. what
    ``torch.nn.MSELoss()`` gives on coordinates normalised to [0, 1]. NaN if nothing annotated.
    """
    pred, gt, mask = _check(pred, gt, mask)
    sizes = _check_sizes(sizes, gt.shape[0])
    err = ((pred - gt) / sizes[:, None, :]) ** 2
    return _ratio(err.sum(-1)[mask].sum(), 2 * mask.sum())


def mean_px_error(pred, gt, mask=None) -> float:
    """Mean Euclidean distance in pixels over annotated joints (NaN if none)."""
    pred, gt, mask = _check(pred, gt, mask)
    dist = np.linalg.norm(pred - gt, axis=-1)
    return _ratio(dist[mask].sum(), mask.sum())


def _num(x) -> float | None:
    """Plain Python float, or None for NaN (keeps the result strict-JSON serialisable)."""
    x = float(x)
    return None if math.isnan(x) else x


def evaluate_keypoints(pred, gt, sizes, mask=None) -> dict:
    """All metrics as a JSON-serialisable dict of plain floats (fractions in [0, 1]); any
    metric with nothing to count is None.

    Keys: ``n`` (images), ``pck`` (thr 0.2 x torso), ``pcp`` (strict, thr 0.5), ``mse``
    (see :func:`mse`), ``mse_px96`` (= mse x 96^2: the mean squared error per coordinate in
    pixels of a 96x96 rescaled image, directly comparable with the poster's loss measured on
    96x96 inputs), ``mean_px_error`` (original pixels), ``per_joint_pck`` (joint name -> value),
    ``per_part_pcp`` (part name -> value), ``pck_curve`` ("0.05", "0.1", ..., "0.5" -> pck),
    ``errors`` (:func:`error_breakdown`: kind -> fraction) and ``per_joint_errors``.
    """
    pred, gt, mask = _check(pred, gt, mask)
    p_all, p_joint = pck(pred, gt, mask)
    c_all, c_part = pcp(pred, gt, mask)
    m = mse(pred, gt, sizes, mask)
    errors, per_joint_errors = error_breakdown(pred, gt, mask)
    return {
        "n": int(gt.shape[0]),
        "pck": _num(p_all),
        "pcp": _num(c_all),
        "mse": _num(m),
        "mse_px96": _num(m * 96.0 ** 2),
        "mean_px_error": _num(mean_px_error(pred, gt, mask)),
        "per_joint_pck": {name: _num(v) for name, v in zip(JOINT_NAMES, p_joint)},
        "per_part_pcp": {part[0]: _num(v) for part, v in zip(PCP_PARTS, c_part)},
        "pck_curve": {f"{t:g}": _num(pck(pred, gt, mask, thr=t)[0]) for t in PCK_CURVE_THRESHOLDS},
        "errors": errors,
        "per_joint_errors": per_joint_errors,
    }


# ---------------------------------------------------------------------------- people and boxes
# Boxes are (x, y, w, h) in pixels: (x, y) the top-left corner.

def _intersections(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intersection areas (M, P), areas of ``a`` (M,), areas of ``b`` (P,)) of boxes (x, y, w, h)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum((a[:, 0] + a[:, 2])[:, None], (b[:, 0] + b[:, 2])[None])
                 - np.maximum(a[:, 0][:, None], b[:, 0][None]), 0, None)
    ih = np.clip(np.minimum((a[:, 1] + a[:, 3])[:, None], (b[:, 1] + b[:, 3])[None])
                 - np.maximum(a[:, 1][:, None], b[:, 1][None]), 0, None)
    return iw * ih, a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]


def box_iou(a, b) -> np.ndarray:
    """Intersection over union of every box of ``a`` (M, 4) with every box of ``b`` (P, 4): (M, P)."""
    inter, area_a, area_b = _intersections(a, b)
    return np.nan_to_num(_ratio(inter, area_a[:, None] + area_b[None] - inter))  # 0 for two empty boxes


def box_cover(a, b) -> np.ndarray:
    """The share of each box of ``b`` (P, 4, x y w h) that lies inside each box of ``a`` (M, 4):
    (M, P) in [0, 1] (0 for an empty box of ``b``)."""
    inter, _, area_b = _intersections(a, b)
    return np.nan_to_num(_ratio(inter, area_b[None]))


GROUP_MEMBER_AREA = (0.15, 0.6)  # a group's members: each this share of its box's area, at least and at most


def group_boxes(boxes, cover: float, member_area: tuple[float, float] = GROUP_MEMBER_AREA) -> list[int]:
    """The boxes (P, 4) that hold two or more of the others, each at least ``cover`` of its area
    inside and between ``member_area`` shares of the holding box's area: a box around a group, not
    a person (posed, it is a figure made of several people). Members must be clearly smaller than
    the box (people side by side or in a row, of one size, never hold each other) and not tiny
    (small people far behind a near one are not its group). Returns their indices, in order."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = b[:, 2] * b[:, 3]
    share = area[None, :] / np.maximum(area[:, None], 1e-9)
    member = (box_cover(b, b) >= cover) & (share >= member_area[0]) & (share <= member_area[1])
    np.fill_diagonal(member, False)
    return [i for i in range(len(b)) if int(member[i].sum()) >= 2]


def keypoint_similarity(a, b, area) -> np.ndarray:
    """Per-joint similarity (COCO's OKS terms) of every pose of ``a`` (M, K, 2) with every pose of
    ``b`` (P, K, 2): exp(-d^2 / (2 area k^2)), d the joint's distance in pixels, k its
    :data:`~posekit.skeleton.OKS_SIGMAS` spread doubled (as COCO), ``area`` (P,) each pose of
    ``b``'s scale (square pixels, e.g. its box area). Returns (M, P, K) in [0, 1]; 0 where a
    joint is not finite."""
    a = np.asarray(a, np.float64).reshape(-1, NUM_JOINTS, 2)
    b = np.asarray(b, np.float64).reshape(-1, NUM_JOINTS, 2)
    area = np.maximum(np.asarray(area, np.float64).reshape(-1), 1e-9)
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    e = d2 / (2 * area[None, :, None] * (2 * OKS_SIGMAS) ** 2)
    return np.where(np.isfinite(e), np.exp(-np.where(np.isfinite(e), e, 0)), 0.0)


def oks(a, b, area) -> np.ndarray:
    """Object keypoint similarity (COCO, Lin et al. ECCV 2014) of every pose of ``a`` (M, K, 2)
    with every pose of ``b`` (P, K, 2) at ``b``'s scales ``area`` (P,): the mean over joints of
    :func:`keypoint_similarity`. Returns (M, P) in [0, 1]."""
    return keypoint_similarity(a, b, area).mean(-1)


def pose_nms(keypoints, areas, threshold: float) -> list[int]:
    """Greedy non-maximum suppression of poses (parametric pose NMS of RMPE/AlphaPose, Fang et
    al., ICCV 2017, with OKS as the pose distance as MMPose's ``oks_nms``):
    in the given order (best first), a pose is dropped when the poses already kept account for
    its joints, i.e. when the mean over its joints of the best :func:`keypoint_similarity` with
    any kept pose (at that pose's ``areas`` scale) is above ``threshold``. With one kept pose this
    is its OKS; taking each joint's best catches a pose made of two people's joints. ``keypoints``
    (P, K, 2), ``areas`` (P,). Returns the kept indices, in order."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, NUM_JOINTS, 2)
    sim = keypoint_similarity(kp, kp, areas)  # (P, P, K)
    keep: list[int] = []
    for i in range(len(kp)):
        if not keep or sim[i, keep].max(0).mean() <= threshold:
            keep.append(i)
    return keep


def average_precision(detections: list, truths: list, iou: float = 0.5) -> dict:
    """Detection AP at an IoU threshold over a set of images (PASCAL VOC's all-point
    interpolation): ``detections[i]`` is (boxes (M, 4), scores (M,)) of image i, ``truths[i]``
    its true boxes (P, 4). Each detection, in descending score over all images, matches the
    unmatched true box it overlaps most if that IoU reaches ``iou``. Returns ``ap``, ``recall``
    (of all detections), ``precision`` (of all detections) and the counts."""
    rows, n_true = [], 0
    for i, ((boxes, scores), gt) in enumerate(zip(detections, truths)):
        n_true += len(gt)
        rows += [(float(s), i, k) for k, s in enumerate(np.asarray(scores).reshape(-1))]
    rows.sort(key=lambda r: -r[0])
    used = [np.zeros(len(g), bool) for g in truths]
    tp = np.zeros(len(rows))
    for r, (_, i, k) in enumerate(rows):
        gt = np.asarray(truths[i], np.float64).reshape(-1, 4)
        if not len(gt):
            continue
        ious = box_iou(np.asarray(detections[i][0])[k:k + 1], gt)[0]
        ious[used[i]] = -1
        j = int(np.argmax(ious))
        if ious[j] >= iou:
            used[i][j], tp[r] = True, 1
    ctp = np.cumsum(tp)
    recall = ctp / max(n_true, 1)
    precision = ctp / np.arange(1, len(rows) + 1)
    env = np.concatenate([[0], precision, [0]])
    for t in range(len(env) - 2, -1, -1):
        env[t] = max(env[t], env[t + 1])
    rec = np.concatenate([[0], recall, [recall[-1] if len(recall) else 0]])
    ap = float(np.sum((rec[1:] - rec[:-1]) * env[1:]))
    return {"ap": ap, "recall": float(recall[-1]) if len(rows) else 0.0,
            "precision": float(precision[-1]) if len(rows) else 0.0, "detections": len(rows), "people": n_true,
            "matched": int(tp.sum())}


def match_people(pred_boxes, true_boxes, min_iou: float = 0.3) -> list[tuple[int, int]]:
    """The one-to-one matching of predicted to true people by box IoU (Hungarian, maximising the
    total IoU; scipy.optimize.linear_sum_assignment); pairs under ``min_iou`` are dropped.
    Returns (pred index, true index) pairs."""
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(pred_boxes, true_boxes)
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]


def multi_person_pck(pred: list, truth: list, thr: float = 0.2, min_iou: float = 0.3) -> dict:
    """PCK@``thr`` over every true person of a set of images: ``pred[i]`` is (boxes (M, 4),
    keypoints (M, K, 2)) of image i, ``truth[i]`` (boxes (P, 4), keypoints (P, K, 2), masks
    (P, K)). People are matched by :func:`match_people`; a true person without a match counts
    all its joints wrong. Returns ``pck``, ``people``, ``matched`` and ``per_person``: (correct,
    counted) joints of every true person, image by image."""
    correct = counted = matched = people = 0
    per_person = []
    for (pb, pk), (tb, tk, tm) in zip(pred, truth):
        tb, tk, tm = np.asarray(tb).reshape(-1, 4), np.asarray(tk).reshape(-1, NUM_JOINTS, 2), np.asarray(tm, bool)
        pairs = dict((t, p) for p, t in match_people(pb, tb, min_iou))
        people += len(tb)
        matched += len(pairs)
        for t in range(len(tb)):
            g = tk[t]
            p = np.asarray(pk)[pairs[t]] if t in pairs else np.full_like(g, np.inf)
            c, n = _pck_counts(np.where(np.isfinite(p), p, 1e9)[None], g[None], tm[t][None], thr)
            correct, counted = correct + int(c.sum()), counted + int(n.sum())
            per_person.append((int(c.sum()), int(n.sum())))
    return {"pck": _num(_ratio(correct, counted)), "people": people, "matched": matched, "joints": counted,
            "per_person": per_person}
