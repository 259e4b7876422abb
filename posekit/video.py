"""Videos and webcams for ``posekit predict``: frames are read with OpenCV, each goes through the
Predictor, and the results come out as one record per frame (stdout and ``<name>.jsonl``) and an
annotated video ``<name>_pose.mp4`` at the source's frame rate."""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own chatter about bad files
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")  # posekit reports the problem itself, in one line

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from posekit.errors import PosekitError  # noqa: E402

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
    """Run ``pred`` on every frame of a video file or webcam (``source`` an int). Returns the
    number of frames. A source with no readable frame is an error; Ctrl-C ends a webcam cleanly."""
    from posekit.viz import draw_pose

    cap, label = open_capture(source)
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
    writer, jsonl, n = None, None, 0
    try:
        if out_dir is not None:
            base = out_dir / name
            base.parent.mkdir(parents=True, exist_ok=True)
            jsonl = open(base.with_name(base.name + ".jsonl"), "w")
        try:
            for frame in iter_frames(cap, max_frames):
                pose = pred.predict(frame, box)
                rec = {"image": str(source) if not isinstance(source, int) else label, "frame": n,
                       "time": round(n / fps, 4), "model": pred.name, **pose.to_dict()}
                emit(rec)
                if jsonl is not None:
                    jsonl.write(json.dumps(rec) + "\n")
                    if writer is None:
                        writer = VideoOut(base.with_name(base.name + "_pose.mp4"), fps, (frame.shape[1], frame.shape[0]))
                    writer.write(draw_pose(frame, pose.keypoints) if draw else frame)
                n += 1
        except KeyboardInterrupt:
            if not isinstance(source, int):
                raise
    finally:
        cap.release()
        if writer is not None:
            writer.close()
        if jsonl is not None:
            jsonl.close()
    if n == 0:
        raise PosekitError(f"{label}: no frames could be read")
    return n
