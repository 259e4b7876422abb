"""People across video frames: :class:`Tracker` keeps a stable id per person (box IoU matching
with the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``; a person lost behind
another and seen again is re-identified by the colours inside its box, :func:`appearance`, as
DeepSORT does with a learned descriptor), and a One-Euro filter per person smooths every joint
over time (Casiez, Roussel & Vogel, CHI 2012: a low-pass filter whose cutoff rises with speed, so
slow motion loses its jitter and fast motion lags little; the filter MediaPipe uses). Pure:
numbers in, numbers out.

Legend: P boxes, T tracks, K joints, D appearance bins; boxes (x, y, w, h) pixels; times in seconds."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from posekit.metrics import box_iou

APPEARANCE_BINS = (16, 8)  # hue x saturation


def appearance(image: np.ndarray, boxes) -> np.ndarray:
    """Colour signatures of people: the hue-saturation histogram of each box's pixels (colour
    indexing, Swain & Ballard, IJCV 1991).

    Args:
        image: (H, W, 3) uint8 RGB frame.
        boxes: (P, 4) boxes (x, y, w, h) in pixels; the part inside the image is used.
    Returns:
        (P, D) float32 histograms (D = 16 x 8) summing to 1 (all zeros for a box outside the image).
    """
    import cv2

    h, w = image.shape[:2]
    out = np.zeros((len(boxes), APPEARANCE_BINS[0] * APPEARANCE_BINS[1]), np.float32)
    for i, (x, y, bw, bh) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        x1, y1 = min(w, int(round(x + bw))), min(h, int(round(y + bh)))
        if x1 <= x0 or y1 <= y0:
            continue
        hsv = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, list(APPEARANCE_BINS), [0, 180, 0, 256]).ravel()
        out[i] = hist / max(float(hist.sum()), 1.0)
    return out


def appearance_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bhattacharyya distances (P, T) in [0, 1] between signatures ``a`` (P, D) and ``b`` (T, D)
    from :func:`appearance`: 0 the same colours, 1 none in common (1 for an empty signature)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    coeff = np.sqrt(a)[:, None, :] * np.sqrt(b)[None, :, :]
    return np.sqrt(np.clip(1.0 - coeff.sum(-1), 0.0, 1.0))


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    """The smoothing factor of a first-order low-pass filter at ``cutoff`` Hz over ``dt`` s."""
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One-Euro filter over arrays of any shape (e.g. (K, 2) joints): ``min_cutoff`` (Hz) sets
    the smoothing at rest, ``beta`` how fast the cutoff rises with speed, ``d_cutoff`` (Hz) the
    smoothing of the speed estimate. Speeds are read in units of the ``scale`` given with each
    value (per second): the tracked object's size in pixels makes ``beta`` independent of the
    image's resolution (as MediaPipe's landmark filter scales speed by the object's size); 1 reads
    them in pixels per second."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or beta < 0 or d_cutoff <= 0:
            raise ValueError("OneEuroFilter: min_cutoff and d_cutoff must be positive, beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x = self.dx = self.t = None
        self.scale = math.inf  # the last valid scale (none yet: speed does not raise the cutoff)

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """The filtered value of ``x`` at time ``t`` (s; increasing), speeds read per ``scale``
        (> 0; a non-finite or non-positive scale, e.g. of a pose collapsed to a point, keeps the
        last valid one, and before any the cutoff stays ``min_cutoff``). Non-finite entries pass
        through."""
        x = np.asarray(x, np.float64)
        if math.isfinite(scale) and scale > 0:
            self.scale = float(scale)
        if self.x is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + _alpha(self.d_cutoff, dt) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx) / self.scale
        out = self.x + _alpha(cutoff, dt) * (x - self.x)
        out = np.where(np.isfinite(out), out, x)
        self.x, self.t = out, t
        return out.copy()


def object_scale(points: np.ndarray) -> float:
    """The size (pixels) of a set of points (K, 2): the mean of its bounding box's width and
    height over the finite points (MediaPipe's object scale for landmark smoothing); NaN with
    fewer than two."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(1)]
    if len(p) < 2:
        return float("nan")
    ext = p.max(0) - p.min(0)
    return float(ext.mean())


class BoxSmoother:
    """One person's box (x, y, w, h) over frames through a :class:`OneEuroFilter` on its centre
    and size, speeds read per box size (the mean of its width and height); a box overlapping the
    last smoothed one by less than ``restart_iou`` (another person, a cut) restarts the filter."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 20.0, restart_iou: float = 0.3):
        self.params, self.restart_iou = (min_cutoff, beta), float(restart_iou)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next box passes through as it is."""
        self.filter, self.last = OneEuroFilter(*self.params), None

    def __call__(self, box, t: float) -> np.ndarray:
        """The smoothed box (4,) at time ``t`` (s)."""
        b = np.asarray(box, np.float64).reshape(4)
        if self.last is not None and box_iou(b[None], self.last[None])[0, 0] < self.restart_iou:
            self.reset()
        c = self.filter(np.array([b[0] + b[2] / 2, b[1] + b[3] / 2, b[2], b[3]]), t, (b[2] + b[3]) / 2)
        self.last = np.array([c[0] - c[2] / 2, c[1] - c[3] / 2, c[2], c[3]])
        return self.last.copy()


@dataclass
class Track:
    """One person followed over frames."""

    id: int
    box: np.ndarray
    last_frame: int
    smoother: OneEuroFilter | None = None
    hits: int = 1
    feature: np.ndarray | None = None  # (D,) running appearance signature

    def see(self, box: np.ndarray, frame: int, feature: np.ndarray | None = None) -> None:
        """The track matched ``box`` (with its appearance ``feature``) at ``frame``."""
        self.box, self.last_frame, self.hits = box, frame, self.hits + 1
        if feature is not None:
            self.feature = feature if self.feature is None else 0.9 * self.feature + 0.1 * feature


class Tracker:
    """Stable person ids over a video: each frame's boxes are matched to the tracks seen within
    ``max_age`` frames by IoU with their last boxes (maximising the total IoU; pairs under
    ``min_iou`` stay unmatched). Given appearance ``features``, a box still unmatched is then
    matched to a track unseen for up to ``reid_age`` frames whose running signature is within
    ``reid_distance`` (:func:`appearance_distance`) and whose last box centre is within
    ``reid_reach`` box heights (re-identification: a person hidden behind another for a while
    keeps its id; Wojke et al., DeepSORT, ICIP 2017, with a colour histogram for the learned
    descriptor). Any other box starts a new track. With ``smooth`` each track's joints go
    through its own :class:`OneEuroFilter` (``one_euro``: its parameters), started afresh on re-identification."""

    def __init__(self, min_iou: float = 0.3, max_age: int = 10, smooth: bool = True, one_euro: dict | None = None,
                 reid_age: int = 0, reid_distance: float = 0.4, reid_reach: float = 1.5):
        self.min_iou, self.max_age, self.smooth = float(min_iou), int(max_age), bool(smooth)
        self.reid_age, self.reid_distance, self.reid_reach = int(reid_age), float(reid_distance), float(reid_reach)
        self.one_euro = dict(one_euro or {})
        self.tracks: list[Track] = []
        self.next_id = 0

    def update(self, boxes: np.ndarray, frame: int, known: list | None = None,
               features: np.ndarray | None = None) -> list[int]:
        """The track id of each box (P, 4) of frame ``frame``; ``known`` (P,): the id a box is
        already known to continue (a person followed from its own joints), None to match;
        ``features`` (P, D): the boxes' :func:`appearance` signatures (None: IoU only)."""
        from scipy.optimize import linear_sum_assignment

        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        feats = [None] * len(boxes) if features is None else list(np.asarray(features, np.float64))
        self.tracks = [t for t in self.tracks if frame - t.last_frame <= max(self.max_age, self.reid_age)]
        by_id = {t.id: t for t in self.tracks}
        ids = [-1] * len(boxes)
        for r, tid in enumerate(known or []):
            if tid is not None and tid in by_id:
                by_id.pop(tid).see(boxes[r], frame, feats[r])
                ids[r] = tid
        free = [t for t in self.tracks if t.id in by_id and frame - t.last_frame <= self.max_age]
        rows = [r for r in range(len(boxes)) if ids[r] < 0]
        if free and rows:
            iou = box_iou(boxes[rows], np.stack([t.box for t in free]))
            for r, c in zip(*linear_sum_assignment(-iou)):
                if iou[r, c] >= self.min_iou:
                    free[c].see(boxes[rows[r]], frame, feats[rows[r]])
                    ids[rows[r]] = free[c].id
        if features is not None and self.reid_age > 0:
            self._reidentify(boxes, frame, feats, ids)
        for r, box in enumerate(boxes):
            if ids[r] < 0:
                t = Track(self.next_id, box, frame, self._filter(), feature=feats[r])
                self.tracks.append(t)
                self.next_id += 1
                ids[r] = t.id
        return ids

    def _filter(self) -> OneEuroFilter | None:
        return OneEuroFilter(**self.one_euro) if self.smooth else None

    def _reidentify(self, boxes: np.ndarray, frame: int, feats: list, ids: list[int]) -> None:
        """Match the boxes left unmatched to unmatched tracks by appearance (in place on ``ids``)."""
        from scipy.optimize import linear_sum_assignment

        taken = set(ids)
        lost = [t for t in self.tracks if t.id not in taken and t.feature is not None
                and 0 < frame - t.last_frame <= self.reid_age]
        rows = [r for r in range(len(boxes)) if ids[r] < 0]
        if not lost or not rows:
            return
        dist = appearance_distance(np.stack([feats[r] for r in rows]), np.stack([t.feature for t in lost]))
        for i, r in enumerate(rows):
            for j, t in enumerate(lost):
                reach = self.reid_reach * max(t.box[3], boxes[r][3])
                gap = np.hypot(*(boxes[r][:2] + boxes[r][2:] / 2 - t.box[:2] - t.box[2:] / 2))
                if gap > reach:
                    dist[i, j] = np.inf
        # gate before assigning (as DeepSORT): a pair too far apart in colour or place cannot be taken
        dist = np.where(dist <= self.reid_distance, dist, 1e6)
        for i, j in zip(*linear_sum_assignment(dist)):
            if dist[i, j] <= self.reid_distance:
                t = lost[j]
                t.smoother = self._filter()  # matched by colour, not overlap: a jump, the filter starts afresh
                t.see(boxes[rows[i]], frame, feats[rows[i]])
                ids[rows[i]] = t.id

    def smoothed(self, track_id: int, keypoints: np.ndarray, t: float) -> np.ndarray:
        """Track ``track_id``'s joints (K, 2) at time ``t``, through its filter (as given without
        one), speeds read per the pose's size (:func:`object_scale`)."""
        for tr in self.tracks:
            if tr.id == track_id and tr.smoother is not None:
                return tr.smoother(keypoints, t, object_scale(keypoints))
        return np.asarray(keypoints, np.float64)
