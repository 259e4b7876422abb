"""People across video frames: :class:`Tracker` keeps a stable id per person (box IoU matching
with the Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``), and a One-Euro filter
per person smooths every joint over time (Casiez, Roussel & Vogel, CHI 2012: a low-pass filter
whose cutoff rises with speed, so slow motion loses its jitter and fast motion lags little; the
filter MediaPipe uses). Pure: numbers in, numbers out.

Legend: K joints; boxes (x, y, w, h) pixels; times in seconds."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from posekit.metrics import box_iou


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    """The smoothing factor of a first-order low-pass filter at ``cutoff`` Hz over ``dt`` s."""
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One-Euro filter over arrays of any shape (e.g. (K, 2) joints): ``min_cutoff`` (Hz) sets
    the smoothing at rest, ``beta`` how fast the cutoff rises with speed (per pixel/s),
    ``d_cutoff`` (Hz) the smoothing of the speed estimate."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.01, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or beta < 0 or d_cutoff <= 0:
            raise ValueError("OneEuroFilter: min_cutoff and d_cutoff must be positive, beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.x = self.dx = self.t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of ``x`` at time ``t`` (s; increasing). Non-finite entries pass through."""
        x = np.asarray(x, np.float64)
        if self.x is None or t <= self.t:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        dx = (x - self.x) / dt
        self.dx = self.dx + _alpha(self.d_cutoff, dt) * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        out = self.x + _alpha(cutoff, dt) * (x - self.x)
        out = np.where(np.isfinite(out), out, x)
        self.x, self.t = out, t
        return out.copy()


class BoxSmoother:
    """One person's box (x, y, w, h) over frames through a :class:`OneEuroFilter` on its centre
    and size; a box overlapping the last smoothed one by less than ``restart_iou`` (another
    person, a cut) restarts the filter."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, restart_iou: float = 0.3):
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
        c = self.filter(np.array([b[0] + b[2] / 2, b[1] + b[3] / 2, b[2], b[3]]), t)
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

    def see(self, box: np.ndarray, frame: int) -> None:
        """The track matched ``box`` at ``frame``."""
        self.box, self.last_frame, self.hits = box, frame, self.hits + 1


class Tracker:
    """Stable person ids over a video: each frame's boxes are matched to the live tracks' last
    boxes by IoU (maximising the total IoU; pairs under ``min_iou`` stay unmatched); an unmatched
    box starts a new track; a track unmatched for more than ``max_age`` frames ends. With ``smooth`` each
    track's joints go through its own :class:`OneEuroFilter` (``one_euro``: its parameters)."""

    def __init__(self, min_iou: float = 0.3, max_age: int = 10, smooth: bool = True, one_euro: dict | None = None):
        self.min_iou, self.max_age, self.smooth = float(min_iou), int(max_age), bool(smooth)
        self.one_euro = dict(one_euro or {})
        self.tracks: list[Track] = []
        self.next_id = 0

    def update(self, boxes: np.ndarray, frame: int, known: list | None = None) -> list[int]:
        """The track id of each box (P, 4) of frame ``frame``; ``known`` (P,): the id a box is
        already known to continue (a person followed from its own joints), None to match by IoU."""
        from scipy.optimize import linear_sum_assignment

        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self.tracks = [t for t in self.tracks if frame - t.last_frame <= self.max_age]
        by_id = {t.id: t for t in self.tracks}
        ids = [-1] * len(boxes)
        for r, tid in enumerate(known or []):
            if tid is not None and tid in by_id:
                by_id.pop(tid).see(boxes[r], frame)
                ids[r] = tid
        free = [t for t in self.tracks if t.id in by_id]
        rows = [r for r in range(len(boxes)) if ids[r] < 0]
        if free and rows:
            iou = box_iou(boxes[rows], np.stack([t.box for t in free]))
            for r, c in zip(*linear_sum_assignment(-iou)):
                if iou[r, c] >= self.min_iou:
                    free[c].see(boxes[rows[r]], frame)
                    ids[rows[r]] = free[c].id
        for r, box in enumerate(boxes):
            if ids[r] < 0:
                t = Track(self.next_id, box, frame, OneEuroFilter(**self.one_euro) if self.smooth else None)
                self.tracks.append(t)
                self.next_id += 1
                ids[r] = t.id
        return ids

    def smoothed(self, track_id: int, keypoints: np.ndarray, t: float) -> np.ndarray:
        """Track ``track_id``'s joints (K, 2) at time ``t``, through its filter (as given without one)."""
        for tr in self.tracks:
            if tr.id == track_id and tr.smoother is not None:
                return tr.smoother(keypoints, t)
        return np.asarray(keypoints, np.float64)
