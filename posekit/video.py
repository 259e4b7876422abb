"""Videos and webcams for ``posekit predict``: frames are read with OpenCV, each goes through the
Predictor, and the results come out as one record per frame (stdout and ``<name>.jsonl``) and an
annotated video ``<name>_pose.mp4`` at the source's frame rate."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cv2
import numpy as np

from posekit.errors import PosekitError

DEFAULT_FPS = 30.0


def open_capture(source: str | os.PathLike | int) -> tuple[cv2.VideoCapture, str]:
    """An opened capture for a video file or a webcam index, with a one-line error otherwise."""
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise PosekitError(f"webcam {source}: cannot open the camera (no such device, or it is busy)")
        return cap, f"webcam {source}"
    p = Path(source)
    if not p.is_file():
        raise PosekitError(f"{p}: video file not found")
    if p.stat().st_size == 0:
        raise PosekitError(f"{p}: empty file")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise PosekitError(f"{p}: cannot open video (corrupt or unsupported format)")
    return cap, str(p)


def iter_frames(cap: cv2.VideoCapture, max_frames: int | None = None):
    """RGB uint8 frames until the stream ends (or ``max_frames``)."""
    n = 0
    while max_frames is None or n < max_frames:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield np.ascontiguousarray(frame[..., ::-1])
        n += 1


class VideoOut:
    """Annotated frames to an .mp4 (MPEG-4 Part 2, which OpenCV's bundled FFmpeg always writes)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
        if not self.writer.isOpened():
            raise PosekitError(f"{path}: cannot write a video here")

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(np.ascontiguousarray(rgb[..., ::-1]))

    def close(self) -> None:
        self.writer.release()


def predict_stream(pred, source, name: str, out_dir: Path | None, draw: bool, emit, box=None,
                   max_frames: int | None = None) -> int:
    """Run ``pred`` on every frame of a video file or a webcam (``source`` an int). Returns the
    number of frames. A source with no readable frame is an error; Ctrl-C ends a webcam cleanly.

    A record's ``time`` is the frame's place in the video (frame / fps) for a file, and the
    seconds since capture began for a webcam. The annotated video keeps a file's frame rate; for a
    webcam it uses the rate actually achieved over the first frames, so it plays back in real time."""
    from posekit.viz import draw_pose

    cap, label = open_capture(source)
    live = isinstance(source, int)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
    base = out_dir / name if out_dir is not None else None
    writer, jsonl, pending, n = None, None, [], 0
    t0 = time.monotonic()

    def flush(final: bool) -> None:
        nonlocal writer
        if writer is None and pending and (final or len(pending) >= 10 or not live):
            rate = fps
            if live and n > 1:
                rate = max(1.0, min(fps, (n - 1) / max(1e-3, time.monotonic() - t0)))
            writer = VideoOut(base.with_name(base.name + "_pose.mp4"), rate, (pending[0].shape[1], pending[0].shape[0]))
        if writer is not None:
            for f in pending:
                writer.write(f)
            pending.clear()

    try:
        try:
            for frame in iter_frames(cap, max_frames):
                pose = pred.predict(frame, box)
                t = time.monotonic() - t0 if live else n / fps
                rec = {"image": label, "frame": n, "time": round(t, 4), "model": pred.name, **pose.to_dict()}
                emit(rec)
                n += 1
                if base is not None:
                    if jsonl is None:
                        base.parent.mkdir(parents=True, exist_ok=True)
                        jsonl = open(base.with_name(base.name + ".jsonl"), "w")
                    jsonl.write(json.dumps(rec) + "\n")
                    if draw:
                        pending.append(draw_pose(frame, pose.keypoints))
                        flush(False)
        except KeyboardInterrupt:
            if not live:
                raise
        if base is not None and draw:
            flush(True)
    finally:
        cap.release()
        if writer is not None:
            writer.close()
        if jsonl is not None:
            jsonl.close()
    if n == 0:
        raise PosekitError(f"{label}: no frames could be read")
    return n
