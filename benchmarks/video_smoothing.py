"""Video: jitter and lag of the joints with and without One-Euro smoothing, and person-id switches
when two people cross.

- **Motion clips**: an image moved by a known sub-pixel motion (a slow ellipse, a few pixels),
  each frame JPEG-encoded at quality 70 (fresh compression noise every frame), at 30 frames/s.
  *Jitter*: the mean frame-to-frame change of the error (prediction minus truth), pixels.
  *Lag*: the delay (frames, -5 to 5 in steps of 0.1) at which the truth's motion best matches
  the prediction's, over the joints that stay within PCK's reach of the truth all clip long (a
  joint put on a wrong place is an error, not a delay); clips with none are left out. The
  filter's parameters are chosen on clips of validation images (the least jitter with at most
  ``--max-lag`` frames of lag); test clips of LSP test images are reported.
- **Pan clips** (accuracy under motion): an image sliding across a wider canvas (a blurred copy
  of itself) by 0.8 of its width in ``PAN_FRAMES`` frames, each frame JPEG-encoded at quality
  80: *PCK@0.2 per frame* against the true joints. A filter that lags puts a moving person's
  joints behind them: the slow clips above cannot see that, so a setting must also keep the
  pan clips' PCK within ``--pan-tolerance`` of the same run unsmoothed (the filter may not cost
  accuracy under motion).
- **The box filter** (one person with following off, and frames where the person is detected
  again): its ``box_beta`` is chosen after the joints' filter by the same rule, following off.
- **Per frame against the default**: the baseline is every frame detected and posed on its own,
  unsmoothed; the default follows one person from the last frame's smoothed joints
  (``video.roi_margin``) and smooths them; each half alone is reported too.
- **Crossing clip**: two LSP test people walk across a canvas past each other (one in front),
  posed with ``--people all`` and tracked; an id switch is a true person whose track id changes.

    python benchmarks/video_smoothing.py --model posekit-lsp --data $POSEKIT_DATA --json reports/video_smoothing.json"""
from __future__ import annotations

import argparse
import itertools
import os

import cv2
import numpy as np

FPS = 30.0
PAN_FRAMES = 24


def motion_clip(image: np.ndarray, kp: np.ndarray, n: int = 90, amplitude: float = 6.0, quality: int = 70):
    """(frames, true keypoints (n, K, 2), times) of ``image`` moved along an ellipse."""
    t = np.arange(n) / FPS
    shift = np.stack([amplitude * np.sin(2 * np.pi * t / 3.0), 0.6 * amplitude * np.cos(2 * np.pi * t / 2.0)], -1)
    h, w = image.shape[:2]
    frames = []
    for dx, dy in shift:
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
        moved = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        ok, buf = cv2.imencode(".jpg", moved[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]))
    return frames, kp[None] + shift[:, None, :], t


def pan_clip(image: np.ndarray, kp: np.ndarray, n: int = PAN_FRAMES, quality: int = 80):
    """(frames, true keypoints (n, K, 2), times) of ``image`` sliding left to right across a
    canvas 1.8x its width and 1.2x its height (a blurred copy of the image), by 0.8 of its width."""
    h, w = image.shape[:2]
    cw, ch = int(w * 1.8), int(h * 1.2)
    background = cv2.GaussianBlur(cv2.resize(image, (cw, ch)), (0, 0), 8)
    y0 = (ch - h) // 2
    frames, truth = [], []
    for k in range(n):
        x0 = int(round(k * (cw - w) / (n - 1)))
        frame = background.copy()
        frame[y0:y0 + h, x0:x0 + w] = image
        ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append(np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]))
        truth.append(kp + (x0, y0))
    return frames, np.stack(truth), np.arange(n) / FPS


class CachedPoses:
    """A predictor that runs the network once per frame: the filter settings of the grid change
    only what follows it (tracking and smoothing), so every later call on the same frame array
    gets a copy of the first answer."""

    def __init__(self, pred):
        self.pred, self.cache = pred, {}

    def _get(self, key, compute):
        import copy

        if key not in self.cache:
            self.cache[key] = compute()
        return copy.deepcopy(self.cache[key])

    def predict(self, frame, box=None):
        return self._get(("one", id(frame), box), lambda: self.pred.predict(frame, box))

    def __getattr__(self, name):  # the rest of the Predictor (prepare, estimate, ...), uncached
        return getattr(self.pred, name)

    def best_people(self, frames, boxes=None):
        return [self._get(("best", id(f)), lambda f=f: self.pred.best_people([f])[0]) for f in frames]

    def predict_all(self, frame):
        return self._get(("all", id(frame)), lambda: self.pred.predict_all(frame))

    def predict_people(self, frame):
        return self._get(("people", id(frame)), lambda: self.pred.predict_people(frame))


def run_clip(pred, frames, times, settings, smooth: bool) -> np.ndarray:
    """The joints (n, K, 2) a FramePoser gives over a clip."""
    from posekit.video import FramePoser

    poser = FramePoser(pred, "one", settings=settings, smooth=smooth)
    return np.stack([poser(f, t, k)[0].keypoints for k, (f, t) in enumerate(zip(frames, times))])


def jitter_and_lag(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, reach: float = 0.2,
                   max_lag: float = 5.0) -> tuple[float, float]:
    """(jitter px, lag frames) of predicted joints (n, K, 2) against the truth (n, K, 2), ``mask`` (K,).

    Lag is the delay, -``max_lag`` to ``max_lag`` frames in steps of 0.1, at which the truth's
    motion best matches the prediction's (least mean distance once each joint's constant offset
    is removed), over the joints the estimate *tracks*: within ``reach`` x torso (PCK's
    threshold) of the truth in every frame. A joint that jumps to a wrong place (a left wrist put
    on the right one) is an error, counted in the jitter, not a delay, and would otherwise decide
    the lag; an estimate with no memory then reads as lagging by up to ``max_lag`` frames. The
    range is two-sided so that noise on a memoryless estimate averages to no lag rather than to a
    positive one. NaN when no joint is tracked."""
    from posekit.metrics import _torso

    err = pred - truth
    jitter = float(np.linalg.norm(np.diff(err, axis=0), axis=-1)[:, mask].mean())
    torso = float(_torso(truth[:1])[0])
    tracked = mask & (np.linalg.norm(err, axis=-1) <= reach * torso).all(0)
    if not tracked.any():
        return jitter, float("nan")
    n, edge = len(truth), int(np.ceil(max_lag))
    k = np.arange(n)
    best = (np.inf, 0.0)
    for lag in np.arange(-max_lag, max_lag + 0.01, 0.1):  # prediction k against the truth at k - lag
        src = np.clip(k - lag, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        f = (src - lo)[:, None, None]
        shifted = truth[lo] * (1 - f) + truth[hi] * f  # (linear interpolation)
        d = pred - shifted
        d = d - d.mean(0, keepdims=True)  # a constant offset is accuracy, not lag
        cost = float(np.linalg.norm(d[edge:n - edge], axis=-1)[:, tracked].mean())
        best = min(best, (cost, round(float(lag), 1)))
    return jitter, best[1]


def clips_of(sets, ids, k: int, make=motion_clip):
    """Clips (frames, truth, times, mask) made by ``make`` from the first ``k`` of ``ids`` with
    all 14 joints annotated among them."""
    from posekit.data.images import read_image

    index = {s.sample_id(i): (s, i) for s in sets.values() for i in range(len(s))}
    out = []
    for sid in ids[:k]:
        s, i = index[sid]
        if s.annotated[i].sum() < 14:
            continue
        frames, truth, times = make(read_image(s.image_paths[i]), s.keypoints[i])
        out.append((frames, truth, times, s.annotated[i]))
    return out


def pan_pck(pred, clips, settings, smooth: bool) -> float:
    """PCK@0.2 over every frame of the pan ``clips``, posed as a FramePoser does."""
    from posekit.metrics import pck

    poses = np.concatenate([run_clip(pred, frames, times, settings, smooth) for frames, _, times, _ in clips])
    truth = np.concatenate([c[1] for c in clips])
    masks = np.concatenate([np.repeat(c[3][None], len(c[1]), 0) for c in clips])
    return float(pck(poses, truth, masks)[0])


def measure(pred, clips, settings, smooth: bool) -> dict:
    """Mean jitter over the clips and mean lag over the clips with a tracked joint (``lag_clips``)."""
    js, ls = [], []
    for frames, truth, times, mask in clips:
        j, lag = jitter_and_lag(run_clip(pred, frames, times, settings, smooth), truth, mask)
        js.append(j)
        ls.append(lag)
    ok = [x for x in ls if np.isfinite(x)]
    return {"jitter_px": float(np.mean(js)), "lag_frames": float(np.mean(ok)) if ok else float("nan"),
            "lag_clips": len(ok)}


def crossing_clip(images, kps, masks, n: int = 90):
    """Two people crossing a 640x400 canvas in opposite directions, the first in front: frames,
    true boxes (n, 2, 4)."""
    from posekit.data.scenes import blurred_background, box_from_joints, person_patch
    from posekit.detect import to_edges

    rng = np.random.default_rng(0)
    canvas = blurred_background(images[2], 640, 400, rng)
    patches = [person_patch(images[i], kps[i], masks[i], 260, False) for i in (0, 1)]
    frames, boxes = [], []
    for k in range(n):
        f = canvas.copy()
        bs = []
        for who in (1, 0):  # person 0 is drawn last: in front
            patch, kp, m = patches[who]
            ph, pw = patch.shape[:2]
            x = int(round(40 + (520 - pw) * (k / (n - 1) if who == 0 else 1 - k / (n - 1))))
            y = 400 - ph - 10
            f[y:y + ph, x:x + pw] = patch
            bs.append((who, to_edges([box_from_joints(kp + [x, y], m)])[0]))
        frames.append(f)
        boxes.append([b for _, b in sorted(bs)])
    return frames, np.array(boxes)


def id_switches(pred, frames, true_boxes) -> dict:
    from posekit.metrics import match_people
    from posekit.video import FramePoser

    poser = FramePoser(pred, "all")
    last = {}
    switches, missed = 0, 0
    for k, f in enumerate(frames):
        poses = [p for p in poser(f, k / FPS, k) if p.found]  # a frame with nobody answers one pose, not found
        boxes = np.array([p.box for p in poses]).reshape(-1, 4)
        pairs = {t: p for p, t in match_people(boxes, true_boxes[k], 0.3)}
        for t in range(len(true_boxes[k])):
            if t not in pairs:
                missed += 1
                continue
            tid = poses[pairs[t]].person
            if t in last and last[t] != tid:
                switches += 1
            last[t] = tid
    return {"frames": len(frames), "people": int(true_boxes.shape[1]), "id_switches": switches,
            "missed_person_frames": missed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--clips", type=int, default=8, help="motion clips of each split")
    ap.add_argument("--pans", type=int, default=30, help="pan clips of each split (0: none)")
    ap.add_argument("--max-lag", type=float, default=1.0)
    ap.add_argument("--pan-tolerance", type=float, default=0.005,
                    help="the most the filter may cost in pan-clip PCK@0.2 against the same run unsmoothed")
    ap.add_argument("--min-cutoffs", type=float, nargs="+", default=[2.0, 4.0, 6.0])
    ap.add_argument("--betas", type=float, nargs="+", default=[0.0, 10.0, 30.0, 100.0],
                    help="speed coefficients (per person size per second)")
    ap.add_argument("--box-betas", type=float, nargs="*", default=[5.0, 20.0, 50.0],
                    help="the box filter's speed coefficients (per box size per second) to choose among, by the "
                         "same rule with following off, after the joints' filter (none: the model's own)")
    ap.add_argument("--previous", metavar="MIN_CUTOFF,BETA",
                    help="also report this joint filter setting (e.g. the one shipped before) on the test clips")
    ap.add_argument("--roi-margin", help="video.roi_margin for the run (off: detect every frame; default: the model's)")
    ap.add_argument("--detector", default=None, help="person detector (default: the model's own; off: whole frames)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    from posekit.checkpoint import read_checkpoint
    from posekit.data.lsp import load_sets
    from posekit.data.splits import lsp_test_ids
    from posekit.evaluate import load_samples
    from posekit.predict import Predictor

    detector = {None: None, "off": False}.get(a.detector, a.detector)
    pred = CachedPoses(Predictor(a.model, detector=detector))  # as `posekit predict` runs it (top-down with a detector)
    ck = read_checkpoint(a.model)
    sets = load_sets(a.data, ["lsp", "lspet"])
    val = clips_of(sets, list(ck["split"]["val"]), a.clips)
    test = clips_of(sets, lsp_test_ids(sets), a.clips)
    val_pans = clips_of(sets, list(ck["split"]["val"]), a.pans, pan_clip)
    test_pans = clips_of(sets, lsp_test_ids(sets), a.pans, pan_clip)
    base = pred.config.video
    if a.roi_margin is not None:
        base = base.model_copy(update={"roi_margin": None if a.roi_margin == "off" else float(a.roi_margin)})
    val_pan_unsmoothed = pan_pck(pred, val_pans, base, False) if val_pans else None
    grid = []
    for mc, beta in itertools.product(a.min_cutoffs, a.betas):
        s = base.model_copy(update={"min_cutoff": mc, "beta": beta})
        pan = {"pan_pck": pan_pck(pred, val_pans, s, True)} if val_pans else {}
        grid.append({"min_cutoff": mc, "beta": beta, **measure(pred, val, s, True), **pan})
        print(grid[-1], flush=True)
    ok = [g for g in grid if g["lag_frames"] <= a.max_lag
          and (val_pan_unsmoothed is None or g["pan_pck"] >= val_pan_unsmoothed - a.pan_tolerance)] or grid
    best = min(ok, key=lambda g: g["jitter_px"])
    chosen = base.model_copy(update={"min_cutoff": best["min_cutoff"], "beta": best["beta"]})
    box_grid = []
    if a.box_betas:  # the box filter: one person with following off (and frames detected again)
        alone = chosen.model_copy(update={"roi_margin": None})
        box_unsmoothed = pan_pck(pred, val_pans, alone, False) if val_pans else None
        for box_beta in a.box_betas:
            s = alone.model_copy(update={"box_beta": box_beta})
            pan = {"pan_pck": pan_pck(pred, val_pans, s, True)} if val_pans else {}
            box_grid.append({"box_min_cutoff": s.box_min_cutoff, "box_beta": box_beta, **measure(pred, val, s, True), **pan})
            print(box_grid[-1], flush=True)
        ok = [g for g in box_grid if g["lag_frames"] <= a.max_lag
              and (box_unsmoothed is None or g["pan_pck"] >= box_unsmoothed - a.pan_tolerance)] or box_grid
        chosen = chosen.model_copy(update={"box_beta": min(ok, key=lambda g: g["jitter_px"])["box_beta"]})
    per_frame = chosen.model_copy(update={"roi_margin": None})  # every frame detected and posed alone
    test_runs = {"per_frame": measure(pred, test, per_frame, False), "smoothing_on": measure(pred, test, chosen, True)}
    if chosen.roi_margin is not None:  # each half of the default alone
        test_runs["followed_not_smoothed"] = measure(pred, test, chosen, False)
        test_runs["smoothed_per_frame"] = measure(pred, test, per_frame, True)
    if test_pans:  # accuracy under motion, PCK@0.2 over every frame of the test pan clips
        test_runs["pan_pck"] = {"per_frame": pan_pck(pred, test_pans, per_frame, False),
                                "default": pan_pck(pred, test_pans, chosen, True)}
        if chosen.roi_margin is not None:
            test_runs["pan_pck"]["followed_not_smoothed"] = pan_pck(pred, test_pans, chosen, False)
            test_runs["pan_pck"]["smoothed_per_frame"] = pan_pck(pred, test_pans, per_frame, True)
    if a.previous:
        mc, beta = (float(v) for v in a.previous.split(","))
        prev = chosen.model_copy(update={"min_cutoff": mc, "beta": beta})
        test_runs["previous"] = {"min_cutoff": mc, "beta": beta, **measure(pred, test, prev, True),
                                 **({"pan_pck": pan_pck(pred, test_pans, prev, True)} if test_pans else {})}
    off, on = test_runs["per_frame"], test_runs["smoothing_on"]
    result = {"model": a.model, "chosen_on_val": {"min_cutoff": best["min_cutoff"], "beta": best["beta"],
                                                  "box_min_cutoff": chosen.box_min_cutoff, "box_beta": chosen.box_beta},
              "roi_margin": chosen.roi_margin,
              "val_per_frame": measure(pred, val, per_frame, False),
              "val_pan_pck_unsmoothed": val_pan_unsmoothed, "pan_clips": {"val": len(val_pans), "test": len(test_pans)},
              "rule": (f"the least validation jitter with a lag of at most {a.max_lag} frames"
                       + (f" and a pan-clip PCK@0.2 at most {a.pan_tolerance} under the same run unsmoothed"
                          if val_pans else "")), "grid": grid,
              "box_grid": box_grid, "box_val_pan_pck_unsmoothed": box_unsmoothed if box_grid else None,
              "test": {"clips": len(test), **test_runs,
                       "jitter_reduction": 1 - on["jitter_px"] / max(off["jitter_px"], 1e-9)}}
    print(f"test: jitter {off['jitter_px']:.3f} -> {on['jitter_px']:.3f} px "
          f"({result['test']['jitter_reduction']:.0%} less), lag {off['lag_frames']:.1f} -> {on['lag_frames']:.1f} frames")
    print({k: v for k, v in result["test"].items() if isinstance(v, dict)})
    result["detector"] = None if pred.detector is None else pred.detector.name
    if pred.detector is not None:
        images, kps, masks, _ = load_samples(sets, lsp_test_ids(sets)[:3])
        result["crossing"] = id_switches(pred, *crossing_clip(images, kps, masks))
        print(f"crossing clip: {result['crossing']}")
    else:
        print("crossing clip skipped: it needs a person detector (--detector)")
    from posekit.utils import write_json

    write_json(a.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
