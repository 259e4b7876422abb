"""Videos and webcams for ``posekit predict``: frames are read with OpenCV, each goes through the
Predictor, and the results come out as one record per frame (stdout and ``<name>.jsonl``) and,
with ``draw``, an annotated video ``<name>_pose.mp4`` written with PyAV.

Timing rules:

* A video file: a record's ``time`` is the frame's own timestamp in the container (its
  presentation time, in seconds from the first frame, rounded to 4 decimals), not frame / fps,
  so a variable-frame-rate clip (as phones record in low light) keeps its real times. A frame
  whose timestamp is missing or does not move forward gets the previous frame's time plus one
  frame at the declared rate.
* A webcam (``source`` an int): ``time`` is the seconds since capture began, taken as each frame
  arrives.
* The annotated video gives every frame that same time, counted from its first frame (to within
  one tick of its time base: 1/90000 s for H.264, 1/60000 s for MPEG-4 Part 2), so a
  variable-frame-rate input gives a variable-frame-rate output with the same frame times, and a
  webcam recording plays back in real time.

The annotated video is H.264 (libx264) when PyAV's FFmpeg has it, else MPEG-4 Part 2, in yuv420p;
a frame with an odd width or height is padded by one column / row (a copy of the last one) on the
right / bottom, since yuv420p needs even sizes; the picture is never cropped or scaled. It is
written to a hidden temp file in the same folder and renamed to ``<name>_pose.mp4`` only when
complete; on any error the temp file is removed and an earlier ``<name>_pose.mp4`` is left as it
was.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from posekit.errors import PosekitError
from posekit.inference import pose_records, reported_poses
from posekit.tracking import appearance
from posekit.utils import named_error, replace_together, temp_path

DEFAULT_FPS = 30.0
MAX_CAMERA_INDEX = 63
# (encoder, time base of the written frames): MPEG-4 Part 2 allows a time base denominator of
# at most 65535
ENCODERS = (("libx264", Fraction(1, 90000)), ("mpeg4", Fraction(1, 60000)))


def _check_frame_size(width: float, height: float, label: str) -> None:
    """The declared frame size goes through the same checks as an image's header
    (:func:`posekit.data.images.check_size`: the pixel limit, the minimum side)."""
    from posekit.data.images import check_size

    if not (math.isfinite(width) and math.isfinite(height)) or width < 1 or height < 1:
        raise PosekitError(f"{label}: declares a frame size of {width:g}x{height:g}")
    check_size(int(width), int(height), label)


def open_capture(source: str | os.PathLike | int) -> tuple[cv2.VideoCapture, str]:
    """An opened capture for a video file or a webcam index (0..63), with a one-line error
    otherwise. A bad camera index is refused before OpenCV sees it (OpenCV can crash on one)."""
    if isinstance(source, int):
        label = f"webcam {source}"
        if not 0 <= source <= MAX_CAMERA_INDEX:
            raise PosekitError(f"{label}: not a camera index (give 0 to {MAX_CAMERA_INDEX})")
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise PosekitError(f"{label}: cannot open the camera (no such device, or it is busy)")
    else:
        p = Path(source)
        label = str(p)
        if not p.is_file():
            raise PosekitError(f"{p}: video file not found")
        if p.stat().st_size == 0:
            raise PosekitError(f"{p}: empty file")
        cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            raise PosekitError(f"{p}: cannot open video (corrupt or unsupported format)")
    try:
        w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        if not (isinstance(source, int) and not (w and h)):  # some cameras tell their size only once streaming
            _check_frame_size(w, h, label)
    except BaseException:
        cap.release()
        raise
    return cap, label


def declared_fps(cap: cv2.VideoCapture) -> float:
    """The capture's declared (average) frame rate, or DEFAULT_FPS when it gives none."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    return fps if fps and math.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS


def iter_frames(cap: cv2.VideoCapture, max_frames: int | None = None):
    """RGB uint8 frames until the stream ends (or ``max_frames``)."""
    n = 0
    while max_frames is None or n < max_frames:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        yield np.ascontiguousarray(frame[..., ::-1])
        n += 1


def _next_time(t: float, prev: float | None, fps: float) -> float:
    """``t``, unless it is missing or does not move forward from ``prev`` (then one frame on)."""
    if prev is None:
        return t if math.isfinite(t) and t >= 0 else 0.0
    return t if math.isfinite(t) and t > prev else prev + 1.0 / fps


def timed_frames(cap: cv2.VideoCapture, live: bool, fps: float, max_frames: int | None = None):
    """(time in seconds, RGB frame) pairs, timed by the rules in the module docstring."""
    t0, prev = time.monotonic(), None
    for frame in iter_frames(cap, max_frames):
        t = time.monotonic() - t0 if live else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        prev = _next_time(t, prev, fps)
        yield prev, frame


def pick_encoder() -> tuple[str, Fraction] | None:
    """(encoder name, time base) of the first of ENCODERS that PyAV's FFmpeg can encode with."""
    import av

    for name, tb in ENCODERS:
        if name in av.codec.codecs_available:
            try:
                av.codec.Codec(name, "w")
            except Exception:
                continue
            return name, tb
    return None


def _even(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` padded by one column / row (a copy of the last) to an even width and height."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return rgb


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _why(e: BaseException) -> str:
    """Why a write failed, in words that name no temporary file (an OSError's strerror)."""
    return e.strerror if isinstance(e, OSError) and e.strerror else _one_line(e)


class VideoOut:
    """Annotated frames, each at its own time, to an .mp4 (see the module docstring). ``close()``
    finishes the file and moves it into place; ``abort()`` removes what was written."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float = DEFAULT_FPS):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(self.path)
        self.container, self.first, self.last = None, None, -1
        enc = pick_encoder()
        if enc is None:
            raise PosekitError(f"{self.path}: PyAV's FFmpeg has neither an H.264 nor an MPEG-4 encoder")
        name, self.time_base = enc
        w, h = size
        try:
            self.container = av.open(str(self.tmp), "w", format="mp4")
            self.stream = self.container.add_stream(name, rate=Fraction(fps).limit_denominator(1001))
            cc = self.stream.codec_context
            cc.width, cc.height, cc.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            cc.time_base = self.stream.time_base = self.time_base
            if name == "libx264":
                cc.options = {"preset": "veryfast", "crf": "20"}
            else:
                cc.bit_rate = max(1_000_000, int(cc.width * cc.height * fps / 4))
        except Exception as e:
            self.abort()
            raise PosekitError(f"{self.path}: cannot write a video here ({_one_line(e)})") from e
        except BaseException:
            self.abort()
            raise

    def write(self, rgb: np.ndarray, t: float) -> None:
        """Add ``rgb`` (uint8 (H, W, 3)) at ``t`` seconds (the first frame written is time 0)."""
        import av

        if self.first is None:
            self.first = t
        pts = max(round((t - self.first) / self.time_base), self.last + 1)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_even(rgb)), format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        self.last = pts
        self._mux(frame)

    def _mux(self, frame) -> None:
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except Exception as e:
            raise PosekitError(f"{self.path}: cannot write the video ({_why(e)})") from e

    def finish(self) -> tuple[Path, Path]:
        """Flush the encoder and close the file, still under its temporary name: (temp, ``path``),
        for :func:`posekit.utils.replace_together`."""
        try:
            self._mux(None)
            try:
                self.container.close()
            except Exception as e:
                raise PosekitError(f"{self.path}: cannot write the video ({_why(e)})") from e
            self.container = None
        except BaseException:
            self.abort()
            raise
        return self.tmp, self.path

    def close(self) -> None:
        """Flush the encoder, close the file and rename it to ``path``."""
        replace_together([self.finish()])

    def abort(self) -> None:
        """Drop the video: close what is open and remove the temp file."""
        if self.container is not None:
            try:
                self.container.close()
            except Exception:
                pass
            self.container = None
        self.tmp.unlink(missing_ok=True)


class FramePoser:
    """The poses of successive frames: ``people`` "one" (the best person, or the caller's
    ``box``) or "all" (every person the detector finds), each person followed across frames with
    a stable ``person`` id and its joints smoothed by a One-Euro filter (``settings``: a
    :class:`~posekit.config.VideoConfig`; ``smooth`` False turns the filter off). One person is
    followed as MediaPipe does: once found, each next frame is posed in the square around the
    last joints (``video.roi_margin``), one pass without the detector, which runs again only
    when the pose is lost; ``follow`` False detects on every frame."""

    def __init__(self, pred, people: str = "one", box=None, settings=None, smooth: bool | None = None,
                 follow: bool | None = None):
        from posekit.tracking import BoxSmoother, Tracker

        if people not in ("one", "all"):
            raise PosekitError(f"people must be 'one' or 'all', got {people!r}")
        v = settings if settings is not None else pred.config.video
        self.pred, self.people, self.box = pred, people, box
        smooth = v.smooth if smooth is None else smooth
        self.tracker = Tracker(v.track_iou, v.max_age, smooth,
                               {"min_cutoff": v.min_cutoff, "beta": v.beta, "d_cutoff": v.d_cutoff},
                               v.reid_age, v.reid_distance, v.reid_reach)
        self.box_smoother = BoxSmoother(v.box_min_cutoff, v.box_beta, v.track_iou) if smooth else None
        from posekit.config import VideoConfig

        margin = VideoConfig().roi_margin if follow and v.roi_margin is None else v.roi_margin  # asked for: the default
        self.roi_margin = margin if people == "one" and box is None and follow is not False else None
        self.last = None  # the last found pose (its smoothed joints): the next frame's region
        self.followed = None  # this frame's person id when it was followed from the last frame's joints

    def __call__(self, frame: np.ndarray, t: float, index: int) -> list:
        """The frame's poses, never none: one, found or not, in "one" mode; the people found in
        "all" mode, or with nobody the one-person answer, not found
        (:func:`posekit.inference.reported_poses`)."""
        every = self.people == "all" and self.box is None
        poses = reported_poses(self.pred, frame, "all") if every else [self._one(frame, t)]
        h, w = frame.shape[:2]
        live = [p for p in poses if p.found]
        known = [self.followed] if self.people == "one" else None  # followed from its own joints: the same person
        boxes = [p.box if p.box is not None else (0, 0, w, h) for p in live]
        features = appearance(frame, boxes) if self.tracker.reid_age > 0 else None
        ids = self.tracker.update(boxes, index, known, features)
        for p, i in zip(live, ids):
            p.person = i
            p.keypoints = self.tracker.smoothed(i, p.keypoints, t)
        if self.roi_margin is not None:
            self.last = poses[0] if poses[0].found else None
        return poses

    def _one(self, frame: np.ndarray, t: float):
        """One person: followed from the last frame's joints, else detected (its box smoothed),
        else the caller's box or the whole frame."""
        self.followed = None
        if self.roi_margin is not None and self.last is not None:
            pose = self._one_followed(frame)
            if pose is not None:
                return pose
        if self.box is None and self.box_smoother is not None and getattr(self.pred, "detector", None) is not None:
            return self._one_steady(frame, t)
        return self.pred.predict(frame, self.box)

    def _one_followed(self, frame: np.ndarray):
        """The person of the last frame posed in the square around its joints (one pass, or a
        cascade's stages; no detector); None when the pose is lost there (the frame is then posed from a detection).
        The square is the pose's ``box``; ``box_score`` stays the last detection's."""
        from posekit.tta import refinement_box

        h, w = frame.shape[:2]
        region = refinement_box(self.last.keypoints, self.roi_margin, w, h)
        # the square is already the refinement crop: one pass (a cascade still runs its stages)
        cascade = bool(getattr(self.pred, "stages", None))
        pose = self.pred.estimate([self.pred.prepare(frame, region)], refined=cascade)[0]
        if not pose.found:
            return None
        pose.box, pose.box_score = tuple(float(v) for v in region), self.last.box_score
        self.followed = self.last.person
        if self.box_smoother is not None:
            self.box_smoother.reset()  # a detection after a loss starts afresh
        return pose

    def _one_steady(self, frame: np.ndarray, t: float):
        """The person :meth:`Predictor.predict` answers, posed again on its box smoothed over time
        (a steady crop: the detector's frame-to-frame wobble does not reach the joints)."""
        _, one = self.pred.predict_people(frame)  # the person predict() answers for this frame as an image
        if not one.found:  # nobody: its best candidate's pose, not found
            self.box_smoother.reset()
            return one
        steady = self.box_smoother(one.box, t)
        pose = self.pred.estimate_detected([(frame, steady)])[0]  # posed as a detected box is
        pose.box, pose.box_score, pose.found = tuple(float(v) for v in steady), one.box_score, True
        return pose


class StreamOutput:
    """What a stream writes into ``out_dir``: ``<name>.jsonl`` (a record per line) and, with
    ``draw``, ``<name>_pose.mp4``, both opened at the first frame."""

    def __init__(self, base: Path | None, draw: bool, fps: float):
        self.base, self.draw, self.fps = base, draw, fps
        self.jsonl = self.writer = None
        self.jsonl_tmp = None

    def add(self, frame: np.ndarray, t: float, poses: list, recs: list[dict]) -> None:
        from posekit.viz import draw_poses

        if self.base is None:
            return
        if self.jsonl is None:  # written beside, renamed into place by finish(): never half a file
            self.base.parent.mkdir(parents=True, exist_ok=True)
            self.jsonl_tmp = temp_path(self.base.with_name(self.base.name + ".jsonl"))
            self.jsonl = open(self.jsonl_tmp, "w")
        try:
            self.jsonl.writelines(json.dumps(rec) + "\n" for rec in recs)
        except OSError as e:  # named by the records' file, not its temporary name
            raise named_error(e, self.base.with_name(self.base.name + ".jsonl")) from None
        if self.draw:
            if self.writer is None:
                self.writer = VideoOut(self.base.with_name(self.base.name + "_pose.mp4"), (frame.shape[1], frame.shape[0]),
                                       self.fps)
            self.writer.write(draw_poses(frame, poses), t)

    def finish(self) -> None:
        """Close the video and the records and rename both into place, together: neither
        appears unless both do."""
        done = []
        try:
            if self.jsonl is not None:
                records, jsonl, self.jsonl = self.base.with_name(self.base.name + ".jsonl"), self.jsonl, None
                done.append((self.jsonl_tmp, records))
                self.jsonl_tmp = None
                try:
                    jsonl.close()
                except OSError as e:
                    raise named_error(e, records) from None
            if self.writer is not None:
                writer, self.writer = self.writer, None
                done.insert(0, writer.finish())  # the video first, the records last
            replace_together(done)
        except BaseException:
            for tmp, _ in done:
                Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            self.close()

    def close(self) -> None:
        """Close what is open; an unfinished video or record file is removed."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        if self.jsonl is not None:
            self.jsonl.close()
            self.jsonl = None
        if self.jsonl_tmp is not None:
            Path(self.jsonl_tmp).unlink(missing_ok=True)
            self.jsonl_tmp = None


def declared_length(path) -> tuple[int | None, float | None, float | None]:
    """What a video file's container declares of its length, read with PyAV: (frames, seconds,
    slot), each None where it gives none.

    * ``frames``: the frames a whole file decodes to, where the container counts them. AVI: its
      header's count, in frame slots of ``slot`` seconds each (a chunk left empty for a skipped
      frame is a slot that decodes to nothing, so the frames decoded are counted by the slot of
      the last one). MP4/MOV: the samples its index holds, less those an edit list trims (the
      stream's frame count includes them); None for a fragmented file, which counts none.
      Other containers with a frame count: that count.
    * ``seconds``: only where there is no frame count (a fragmented MP4): the video track's
      duration (which honours edit lists, and leaves out an audio track that runs longer), else
      the container's; it adds up the fragments that are there, so a file cut between two
      fragments looks whole. Other containers give none (their duration is estimated from what
      is there, so it shrinks with a truncated file)."""
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None, None, None
            s = c.streams.video[0]
            mov = any(k in c.format.name for k in ("mp4", "mov"))
            if s.frames > 0:
                if "avi" in c.format.name.split(","):
                    return s.frames, None, float(s.time_base) if s.time_base else None
                if mov:
                    index = s.index_entries
                    kept = sum(not e.is_discard for e in index) if len(index) else 0
                    return (kept if 0 < kept <= s.frames else s.frames), None, None
                return s.frames, None, None
            if not mov:
                return None, None, None
            if s.duration and s.duration > 0 and s.time_base:
                return None, float(s.duration * s.time_base), None
            return None, (c.duration / 1e6 if c.duration and c.duration > 0 else None), None
    except Exception:  # OpenCV read it; a length PyAV cannot give is no length
        return None, None, None


# an inter-coded video's key frames closer than this (in seconds) to the last one sampled are
# skipped, unless they follow a break in the timestamps: at most two decoded per second where key
# frames come closer together; intra-only video is sampled once per ``every``
KEY_FRAME_GAP = 0.5
# decoding times that step forward by more than this are a break (a gap between joined segments)
TIME_GAP = 1.0


def _key_frame_sizes(path, until: float | None, every: float, since: float | None = None):
    """(time in seconds, (width, height)) of a video file's key frames, read with PyAV, after
    ``since`` seconds (None: from the start) up to ``until`` (None: to the end). Each sampled key
    frame is decoded alone: the decoder is drained after it (H.264 holds frames back) and reset,
    and skips the loop filter (only the size is read). Sampled: the first key frame
    after a break in the timestamps (decoding times that step back, stand still or jump ahead by
    over TIME_GAP s, or a key frame shown no later than a frame before it: segments joined);
    else, for inter-coded video (where a new segment starts at a key frame), every key frame at
    least KEY_FRAME_GAP s (or ``every``, if less) after the last one sampled; for intra-only
    video (every frame a key frame), one per ``every`` seconds. Where the timestamps restart,
    times run on from one frame after the latest so far, as the records' times do."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.video:
            return
        stream = c.streams.video[0]
        codec, tb, start = stream.codec_context, stream.time_base, stream.start_time or 0
        codec.skip_frame = "NONKEY"
        codec.options = {"skip_loop_filter": "all"}  # no deblocking: a quarter less work for H.264
        gap = every if codec.codec.intra_only else min(every, KEY_FRAME_GAP)
        step = 1.0 / float(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
        due, shift, latest, prev_dts, broken = -math.inf, 0.0, -math.inf, None, False
        for packet in c.demux(stream):
            dts = t = None
            if tb:
                dts = None if packet.dts is None else float((packet.dts - start) * tb)
                ts = packet.pts if packet.pts is not None else packet.dts
                t = None if ts is None else float((ts - start) * tb) + shift
            if dts is not None:
                broken |= prev_dts is not None and not prev_dts < dts <= prev_dts + TIME_GAP
                prev_dts = dts
            if packet.is_keyframe and t is not None and t <= latest:  # timestamps restarted
                shift, t, broken = shift + latest + step - t, latest + step, True
            if t is not None:
                latest = max(latest, t)
            if not packet.is_keyframe or (t is not None and t < due and not broken):
                continue
            if since is not None and (t is None or t <= since):
                continue
            if until is not None and t is not None and t > until:
                return
            due, broken = (-math.inf if t is None else t + gap), False
            sizes = [(f.width, f.height) for f in codec.decode(packet)]
            sizes += [(f.width, f.height) for f in codec.decode(None)]  # drained: no frame held back
            codec.flush_buffers()  # ready for the next packet
            for size in sizes:
                yield t, size


def check_one_frame_size(path, label: str, until: float | None = None, every: float = 1.0) -> None:
    """Raise PosekitError when a video file's frame size changes part way (streams joined end to
    end, as MPEG-TS segments can be): OpenCV would scale every frame to the first one's size, and
    the joints would be placed in the wrong pixels. A new frame size starts at a key frame, so
    key frames alone are decoded (:func:`_key_frame_sizes`: for inter-coded video each one, and
    each first one after a break in the timestamps; for intra-only video, where every frame is
    one, one per ``every`` seconds), up to ``until`` seconds (None: the whole file); a size held
    for less than the time between two samples can be missed. Once a new size is seen, the key
    frames since the last sample are decoded, each, to tell when it starts. A file PyAV cannot
    read is let through (OpenCV read it)."""
    first, seen = None, None
    try:
        with contextlib.closing(_key_frame_sizes(path, until, every)) as sizes:
            for at, size in sizes:
                first = first or size
                if size != first:
                    break
                seen = at
            else:
                return
        if seen is not None and at is not None:  # when it starts: the first key frame at the new size
            with contextlib.closing(_key_frame_sizes(path, at, 0.0, since=seen)) as sizes:
                at = next((t for t, s in sizes if s != first), at)
    except Exception:
        if first is None or size == first:
            return
    when = "part way" if at is None else f"by {at:.2f} s"
    raise PosekitError(f"{label}: the frame size changes {when} ({first[0]}x{first[1]}, then {size[0]}x{size[1]}); "
                       "re-encode the video at one size to pose it")


def check_complete(path, decoded: int, first: float, last: float, fps: float) -> None:
    """Raise PosekitError when the ``decoded`` frames of a video file (timestamps ``first`` to
    ``last`` s at ``fps``) stop before the end its container declares (a truncated or damaged
    file; :func:`declared_length`). Where it counts its frames: ``<path>: truncated: <decoded> of
    <frames> frames decoded``, when more than one, or 2 %, is missing (a decoder may drop a last
    frame, or the leading frames of an open group of pictures).
    Where it gives only a length in seconds: ``<path>: truncated: frames up to <t> s of <length> s
    decoded``, when the shortfall is more than 0.5 s, 2 % of the length and 3 frames."""
    frames, length, slot = declared_length(path)
    if frames is not None:
        reached = max(decoded, round(last / slot) + 1) if slot and math.isfinite(last) else decoded
        if reached < frames - max(1, round(0.02 * frames)):
            raise PosekitError(f"{path}: truncated: {decoded} of {frames} frames decoded")
        return
    if length is None:
        return
    span = last - first + 1.0 / max(fps, 1e-6)
    if span < length - max(0.5, 0.02 * length, 3.0 / max(fps, 1e-6)):
        raise PosekitError(f"{path}: truncated: frames up to {span:.2f} s of {length:.2f} s decoded")


def predict_stream(poser: FramePoser, source, name: str, out_dir: Path | None, draw: bool, emit,
                   max_frames: int | None = None) -> int:
    """Run ``poser`` (a :class:`FramePoser`) on every frame of a video file or a webcam
    (``source`` an int). Returns the number of frames. Ctrl-C ends a webcam cleanly.

    Raises PosekitError for a source with no readable frame, for a video file whose frame size
    changes part way (:func:`check_one_frame_size`, before any frame), and for one that ends
    before the frames its container declares (:func:`check_complete`: ``<path>: truncated: 7 of
    12 frames decoded``; checked where the container gives a frame count, or else a length in
    seconds, and ``max_frames`` did not stop it first). As for any error midway
    (Ctrl-C on a file too), the records already passed to ``emit`` stay there, and no
    ``<name>.jsonl`` or ``<name>_pose.mp4`` is written (an earlier one is left as it was).

    Each record is ``{"image", "frame", "time", "model", **pose.to_dict()}`` (one per person,
    :func:`posekit.inference.pose_records`), passed to ``emit`` and, with ``out_dir``, written to
    ``<name>.jsonl`` there. ``time`` is the frame's own container timestamp in seconds for a file, and the seconds
    since capture began for a webcam (rules in the module docstring). With ``draw`` the annotated
    ``<name>_pose.mp4`` keeps those frame times, so it has the source's (possibly variable) timing
    and a webcam recording plays in real time."""
    cap, label = open_capture(source)
    live = isinstance(source, int)
    fps = declared_fps(cap)
    if not live:  # with --max-frames, up to well past where they end (a variable frame rate)
        try:
            check_one_frame_size(source, label, None if max_frames is None else 3 * max_frames / fps + 1.0)
        except BaseException:
            cap.release()
            raise
    out = StreamOutput(out_dir / name if out_dir is not None else None, draw, fps)
    n, first, last = 0, None, None
    try:
        try:
            for t, frame in timed_frames(cap, live, fps, max_frames):
                first, last = t if first is None else first, t
                poses = poser(frame, t, n)
                recs = pose_records(poses, image=label, frame=n, time=round(t, 4), model=poser.pred.name)
                for rec in recs:
                    emit(rec)
                out.add(frame, t, poses, recs)
                n += 1
        except KeyboardInterrupt:
            if not live:
                raise
        if n == 0:
            raise PosekitError(f"{label}: no frames could be read")
        if not live and (max_frames is None or n < max_frames):
            check_complete(source, n, first, last, fps)
        out.finish()
    finally:
        cap.release()
        out.close()
    return n
