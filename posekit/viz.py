"""Drawing helpers: skeletons (one or several people, with a legend), comparisons, image grids,
loss curves, saliency overlays.

Images are RGB uint8 (H, W, 3) numpy arrays (grayscale (H, W) is accepted); keypoints are
(14, 2) x, y in 0-based pixels. Colours and the low-score threshold come from
:mod:`posekit.skeleton`, shared with the web page. No training logic here.
"""
from __future__ import annotations

import io
import math
import os

import cv2
import numpy as np

from .skeleton import LIMBS, LOW_JOINT_SCORE, NUM_JOINTS, PERSON_COLORS, SIDE_COLORS, side
from .utils import atomic_write_bytes

# SIDE_COLORS (RGB by side), PERSON_COLORS and LOW_JOINT_SCORE come from posekit.skeleton.
GT_COLOR = (0, 200, 0)
PRED_COLOR = (230, 20, 20)
_LEGEND_INK = (60, 60, 60)  # the "low confidence" ring in the legend

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_SCALE = 1 << _SHIFT
_COORD_LIMIT = 1e5  # far-away points are clamped to keep cv2's int coordinates in range


def _as_rgb(image) -> np.ndarray:
    """Contiguous RGB uint8 copy of ``image``."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB or (H, W), got shape {img.shape}")
    return np.ascontiguousarray(img).copy()


def _pt(p) -> tuple[int, int]:
    """Fixed-point cv2 coordinate (with ``_SHIFT`` fractional bits)."""
    x, y = np.clip(p, -_COORD_LIMIT, _COORD_LIMIT)
    return int(round(x * _SCALE)), int(round(y * _SCALE))


def _visible(kpts, mask) -> tuple[np.ndarray, np.ndarray]:
    kpts = np.asarray(kpts, dtype=np.float64)
    if kpts.shape != (NUM_JOINTS, 2):
        raise ValueError(f"kpts must have shape ({NUM_JOINTS}, 2), got {kpts.shape}")
    vis = np.isfinite(kpts).all(axis=1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (NUM_JOINTS,):
            raise ValueError(f"mask must have shape ({NUM_JOINTS},), got {mask.shape}")
        vis &= mask
    return kpts, vis


def _low(scores) -> np.ndarray:
    """(14,) bool: joints scoring under LOW_JOINT_SCORE (or not finite); none when ``scores`` is None."""
    if scores is None:
        return np.zeros(NUM_JOINTS, bool)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (NUM_JOINTS,):
        raise ValueError(f"scores must have shape ({NUM_JOINTS},), got {s.shape}")
    return ~(s >= LOW_JOINT_SCORE)


def _default_sizes(shape) -> tuple[int, int]:
    s = max(shape[:2])
    return max(1, round(s / 200)), max(2, round(s / 100))


def _segment(img, p, q, color, t: int, dashed: bool) -> None:
    """Anti-aliased line from p to q (float pixels), solid or dashed, in place."""
    if not dashed:
        cv2.line(img, _pt(p), _pt(q), color, t, cv2.LINE_AA, _SHIFT)
        return
    m = 4 * t + 4  # dash only the part near the image
    h, w = img.shape[:2]
    ok, a, b = cv2.clipLine((-m * _SCALE, -m * _SCALE, (w + 2 * m) * _SCALE, (h + 2 * m) * _SCALE), _pt(p), _pt(q))
    if not ok:
        return
    a, b = np.array(a, float) / _SCALE, np.array(b, float) / _SCALE
    n = float(np.hypot(*(b - a)))
    dash = max(3.0, 3.0 * t)
    for s0 in np.arange(0.0, n, 2 * dash):
        s1 = min(s0 + dash, n)
        cv2.line(img, _pt(a + (b - a) * s0 / n), _pt(a + (b - a) * s1 / n), color, t, cv2.LINE_AA, _SHIFT)


def _skeleton(img, kpts, vis, low, limb_color, joint_color, t: int, r: int) -> None:
    """Limbs, then joints, in place. ``limb_color`` / ``joint_color``: RGB, or None for side
    colours. A ``low`` joint is a hollow ring; its limbs are dashed, thinner and stop at the ring."""
    ring = max(1, r // 3)
    for a, b in LIMBS:
        if not (vis[a] and vis[b]):
            continue
        c = limb_color if limb_color is not None else SIDE_COLORS[side(a) if side(a) == side(b) else "center"]
        p, q = np.clip(kpts[a], -_COORD_LIMIT, _COORD_LIMIT), np.clip(kpts[b], -_COORD_LIMIT, _COORD_LIMIT)
        weak = bool(low[a] or low[b])
        if weak:
            d = q - p
            n = float(np.hypot(*d))
            cut_a, cut_b = (r + ring if low[a] else 0), (r + ring if low[b] else 0)
            if n <= cut_a + cut_b:
                continue
            p, q = p + d * cut_a / n, q - d * cut_b / n
        _segment(img, p, q, tuple(map(int, c)), max(1, t // 2) if weak else t, weak)
    for j in np.flatnonzero(vis):
        c = tuple(map(int, joint_color if joint_color is not None else SIDE_COLORS[side(j)]))
        cv2.circle(img, _pt(kpts[j]), r * _SCALE, c, ring if low[j] else -1, cv2.LINE_AA, _SHIFT)


def draw_pose(image, kpts, mask=None, color=None, thickness=None, radius=None, scores=None) -> np.ndarray:
    """Copy of ``image`` with LIMBS as anti-aliased lines and joints as dots, coloured by side
    (left / right / center) unless ``color`` (RGB) is given. Line thickness and dot radius scale
    with the image size. Unannotated (``mask`` false) or non-finite joints and their limbs are
    skipped; points outside the image are clipped by cv2. With ``scores`` ((14,) float), a joint
    scoring under ``skeleton.LOW_JOINT_SCORE`` is a hollow ring and its limbs are dashed."""
    out = _as_rgb(image)
    kpts, vis = _visible(kpts, mask)
    low = _low(scores)
    t, r = _default_sizes(out.shape)
    t = t if thickness is None else int(thickness)
    r = r if radius is None else int(radius)
    _skeleton(out, kpts, vis, low, color, color, t, r)
    return out


def _box(box) -> tuple[float, float, float, float]:
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"box must be 4 finite numbers (x, y, w, h), got {box!r}")
    return tuple(float(v) for v in b)


def draw_poses(image, poses, legend: bool = True) -> np.ndarray:
    """Copy of RGB uint8 ``image`` (H, W, 3) with every pose whose ``found`` is true drawn on it.

    A pose has ``keypoints`` ((14, 2) float, original pixels), ``scores`` ((14,) float), ``found``
    (bool), ``box`` ((x, y, w, h) pixels, or None) and optionally ``person`` (int; else its index in
    ``poses``), which picks its colour in ``skeleton.PERSON_COLORS`` and is its label in the
    legend ("person 0", as the records number people). One person drawn: limbs and joints
    coloured by side. Several: each person's limbs in its own colour, joints still by side. Each
    box is a thin rectangle in its person's colour. Low-score joints are hollow rings with dashed
    limbs. ``legend`` adds a key in the corner holding the fewest joints (the top-left one among
    equals: sides, low confidence, and the people when several), under the drawing: it never
    hides a joint or a limb. When no pose is found the copy is returned untouched."""
    out = _as_rgb(image)
    drawn = []  # (pose, person number, colour)
    for i, p in enumerate(poses):
        if p.found:
            k = i if getattr(p, "person", None) is None else int(p.person)
            drawn.append((p, k, PERSON_COLORS[k % len(PERSON_COLORS)]))
    if not drawn:
        return out
    t, r = _default_sizes(out.shape)
    several = len(drawn) > 1
    if legend:
        entries = [("left", SIDE_COLORS["left"]), ("right", SIDE_COLORS["right"]), ("centre", SIDE_COLORS["center"]),
                   ("low confidence", _LEGEND_INK, "ring")]
        if several:
            entries += [(f"person {k}", pc, "line") for _p, k, pc in drawn]
        _legend(out, entries, np.concatenate([p.keypoints for p, _k, _pc in drawn]))
    for p, _k, pc in drawn:
        if p.box is not None:
            x, y, w, h = _box(p.box)
            cv2.rectangle(out, _pt((x, y)), _pt((x + w, y + h)), pc, 1, cv2.LINE_AA, _SHIFT)
    for p, _k, pc in drawn:
        kpts, vis = _visible(p.keypoints, None)
        _skeleton(out, kpts, vis, _low(p.scores), pc if several else None, None, t, r)
    return out


_LEGEND_PANEL = 0.6  # the legend's white panel over the picture: this opaque, the picture shows through
_LEGEND_WIDTH = 0.25  # at most this share of the picture's width, while the letters stay legible
_LEGEND_MIN_SCALE = 0.25  # OpenCV's Hershey font scale under which the labels cannot be read


def _legend(img: np.ndarray, entries, points=None) -> None:
    """Tiny legend in a corner, in place, on a see-through white panel (drawn before what it
    explains, so that drawing stays on top). ``entries``: (label, RGB) or (label, RGB, mark) with
    mark "box" (filled square, the default), "ring" (hollow circle) or "line". ``points`` (N, 2)
    pixels (the joints drawn): the panel goes to the corner covering the fewest of them, the
    top-left one among equals (and without points)."""
    s = max(img.shape[:2])
    scale = max(0.3, s / 900)
    th = max(1, round(s / 450))
    longest = max((e[0] for e in entries), key=len)

    def sizes(scale):  # (text width, text height, baseline, mark side, gap, panel width)
        (tw, tht), base = cv2.getTextSize(longest, cv2.FONT_HERSHEY_SIMPLEX, scale, th)
        gap = max(2, tht // 2)
        return tw, tht, base, tht, gap, gap * 3 + tht + tw

    tw, tht, base, box, gap, w = sizes(scale)
    for _ in range(3):  # a small frame: smaller letters, down to the smallest still legible
        if w <= _LEGEND_WIDTH * img.shape[1] or scale <= _LEGEND_MIN_SCALE:
            break
        scale = max(_LEGEND_MIN_SCALE, scale * _LEGEND_WIDTH * img.shape[1] / w)
        tw, tht, base, box, gap, w = sizes(scale)
    h = gap + len(entries) * (tht + base + gap)
    x0, y0 = _legend_corner(img.shape, w + 1, h + 1, points)
    panel = img[y0:y0 + h + 1, x0:x0 + w + 1]
    panel[:] = cv2.addWeighted(panel, 1 - _LEGEND_PANEL, np.full_like(panel, 255), _LEGEND_PANEL, 0)
    for i, (label, col, *mark) in enumerate(entries):
        col, mark = tuple(map(int, col)), (mark[0] if mark else "box")
        x, y = x0 + gap, y0 + gap + i * (tht + base + gap)
        if mark == "ring":
            cv2.circle(img, (x + box // 2, y + box // 2), max(1, box // 2), col, max(1, box // 5), cv2.LINE_AA)
        elif mark == "line":
            cv2.line(img, (x, y + box // 2), (x + box, y + box // 2), col, max(1, box // 4), cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x, y), (x + box, y + box), col, -1)
        cv2.putText(img, label, (x + gap + box, y + tht), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), th, cv2.LINE_AA)


def _legend_corner(shape, w: int, h: int, points=None) -> tuple[int, int]:
    """The top-left pixel (x, y) of a ``w`` x ``h`` panel in the corner of an image of ``shape``
    that covers the fewest of ``points`` (N, 2): top-left, top-right, bottom-left, bottom-right,
    the first among equals."""
    ih, iw = shape[:2]
    corners = [(0, 0), (max(0, iw - w), 0), (0, max(0, ih - h)), (max(0, iw - w), max(0, ih - h))]
    if points is None or not len(points):
        return corners[0]
    p = np.asarray(points, np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(1)]
    covered = [int(((p[:, 0] >= x) & (p[:, 0] < x + w) & (p[:, 1] >= y) & (p[:, 1] < y + h)).sum()) for x, y in corners]
    return corners[int(np.argmin(covered))]


def draw_comparison(image, pred, gt, mask=None) -> np.ndarray:
    """Ground truth in green, prediction in red (drawn on top), with a small legend under both.
    ``mask`` hides unannotated ground-truth joints; the prediction is drawn for all finite joints."""
    out = _as_rgb(image)
    truth = np.asarray(gt, np.float64).reshape(-1, 2)
    shown = truth if mask is None else truth[np.asarray(mask, bool).reshape(-1)]
    _legend(out, (("GT", GT_COLOR), ("pred", PRED_COLOR)), np.concatenate([np.asarray(pred, np.float64).reshape(-1, 2), shown]))
    out = draw_pose(out, gt, mask, color=GT_COLOR)
    return draw_pose(out, pred, None, color=PRED_COLOR)


def make_grid(images, ncols: int = 4, cell: int = 256, pad: int = 4) -> np.ndarray:
    """Letterbox each RGB image into a ``cell`` x ``cell`` tile (aspect kept, centred) and tile
    them, ``ncols`` per row, with ``pad`` pixels of white between and around tiles."""
    images = list(images)
    if not images:
        raise ValueError("make_grid needs at least one image")
    ncols = max(1, min(int(ncols), len(images)))
    nrows = math.ceil(len(images) / ncols)
    grid = np.full((nrows * cell + (nrows + 1) * pad, ncols * cell + (ncols + 1) * pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        im = _as_rgb(im)
        h, w = im.shape[:2]
        f = cell / max(h, w)
        nw, nh = max(1, round(w * f)), max(1, round(h * f))
        im = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        r, c = divmod(i, ncols)
        y0 = pad + r * (cell + pad) + (cell - nh) // 2
        x0 = pad + c * (cell + pad) + (cell - nw) // 2
        grid[y0:y0 + nh, x0:x0 + nw] = im
    return grid


def encode_rgb(path, image) -> bytes:
    """An RGB uint8 image encoded as PNG/JPEG, the format from ``path``'s extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        raise ValueError(f"save_rgb supports .png, .jpg, .jpeg; got {ext or 'no extension'!r}")
    ok, buf = cv2.imencode(ext, cv2.cvtColor(_as_rgb(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cv2 could not encode image as {ext}")
    return buf.tobytes()


def save_rgb(path, image) -> None:
    """Write an RGB uint8 image as PNG/JPEG (format from the extension), creating parent
    folders, atomically."""
    atomic_write_bytes(path, encode_rgb(path, image))


def plot_loss_curves(history, path, title=None, ylabel=None, best_epoch=None) -> None:
    """Line plot of ``train_loss`` and ``val_loss`` (entries missing/None are skipped) against
    ``epoch`` for a list of dicts, saved atomically (format from the extension, PNG by default).
    The best epoch (``best_epoch`` argument, else the last ``best_epoch`` found in the history)
    is marked with a dashed line. Uses the Agg canvas directly; the global backend is untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    def series(key):
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in pts], [float(p[1]) for p in pts]

    if best_epoch is None:
        marks = [h["best_epoch"] for h in history if h.get("best_epoch") is not None]
        best_epoch = marks[-1] if marks else None
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        x, y = series(key)
        if x:
            ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=label)
    if best_epoch is not None:
        ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel or "loss")
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    atomic_write_bytes(path, buf.getvalue())


def saliency_overlay(image, saliency, alpha: float = 0.5, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a [0, 1] float saliency map (resized to the image if needed; values clipped, NaN
    -> 0) as a colormap heat overlay: (1 - alpha) * image + alpha * heat. Returns RGB uint8."""
    img = _as_rgb(image)
    s = np.nan_to_num(np.asarray(saliency, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    if s.ndim != 2:
        raise ValueError(f"saliency must be a 2-D map, got shape {s.shape}")
    if s.shape != img.shape[:2]:
        s = cv2.resize(s, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.round(np.clip(s, 0, 1) * 255).astype(np.uint8), colormap)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(img, 1 - alpha, heat, alpha, 0)
