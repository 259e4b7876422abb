"""posekit.video: frame times from the container (variable frame rate), the annotated video keeps
them, atomic writes, and a bad camera index refused before OpenCV sees it. A stub predictor
stands in for the model."""
import json
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from posekit import video
from posekit.errors import PosekitError

# 6 frames of 1/30 s then 6 of 1/10 s, in ticks of 1/300 s
VFR_TICKS = [10 * i for i in range(7)] + [60 + 30 * i for i in range(1, 6)]
VFR_TIMES = [t / 300 for t in VFR_TICKS]


def encode_video(path, frames, tb, codec="mpeg4", rate=30, fmt=None, pix_fmt="yuv420p", options=None,
                 audio_s=0.0, stream_tb=True):
    """Write ``frames`` ((rgb (H, W, 3) uint8, pts in ``tb``) pairs) to ``path`` with PyAV
    (``fmt``: the container, None: from the name), plus ``audio_s`` s of silent AAC. Returns path."""
    frames = list(frames)
    h, w = frames[0][0].shape[:2]
    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        s = c.add_stream(codec, rate=rate)
        s.codec_context.width, s.codec_context.height, s.codec_context.pix_fmt = w, h, pix_fmt
        if stream_tb:
            s.codec_context.time_base = tb
            if fmt != "avi":
                s.time_base = tb
        a = c.add_stream("aac", rate=8000) if audio_s else None
        for rgb, pts in frames:
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = pts, tb
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
        if a is not None:
            for k in range(0, int(audio_s * 8000), 1024):
                f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                f.sample_rate, f.pts = 8000, k
                for p in a.encode(f):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
    return path


def write_clip(path, ticks, size=(64, 48), tb=Fraction(1, 300)):
    """An MPEG-4 .mp4 with a frame at each of ``ticks`` (in ``tb``), a different grey each."""
    w, h = size
    return encode_video(path, [(np.full((h, w, 3), 20 * i, np.uint8), t) for i, t in enumerate(ticks)], tb)


def read_times(path):
    """(frame times in seconds, stream time base, (width, height)) of a video, read with PyAV."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(float(f.pts * f.time_base), f.width, f.height) for f in c.decode(s)]
        return [t for t, _, _ in frames], s.time_base, {(w, h) for _, w, h in frames}


class StubPose:
    def __init__(self, w, h):
        self.keypoints = np.tile([w / 2, h / 2], (14, 1)).astype(np.float64)
        self.scores = np.ones(14)
        self.found, self.box, self.width, self.height = True, None, w, h

    def to_dict(self):
        return {"width": self.width, "height": self.height, "joints": []}


class StubPredictor:
    name = "stub"

    def __init__(self, fail_at=None):
        self.fail_at, self.calls = fail_at, 0

    def predict(self, frame, box=None):
        assert frame.dtype == np.uint8 and frame.ndim == 3
        if self.calls == self.fail_at:
            raise RuntimeError("stub failure")
        self.calls += 1
        return StubPose(frame.shape[1], frame.shape[0])


def _poser(pred):
    """A frame poser over the stub, without smoothing (the stub's joints stay as they are) and
    posing every frame as it comes (the stub has no network to follow a person with)."""
    from posekit.config import VideoConfig

    return video.FramePoser(pred, settings=VideoConfig(smooth=False, roi_margin=None))


def _stub_cli(monkeypatch):
    """The stub in place of the CLI's Predictor (no smoothing, no following, person threshold 0.3):
    ``posekit predict`` on a video runs it. Returns the stub."""
    from types import SimpleNamespace

    from posekit.config import VideoConfig

    stub = StubPredictor()
    stub.config, stub.threshold = SimpleNamespace(video=VideoConfig(smooth=False, roi_margin=None)), 0.3
    monkeypatch.setattr("posekit.cli.predict.Predictor", lambda **k: stub)
    return stub


@pytest.fixture
def vfr_clip(tmp_path):
    return write_clip(tmp_path / "clip.mp4", VFR_TICKS)


def test_vfr_records_have_container_times(vfr_clip):
    recs = []
    assert video.predict_stream(_poser(StubPredictor()), vfr_clip, "clip", None, False, recs.append) == 12
    assert [r["frame"] for r in recs] == list(range(12))
    np.testing.assert_allclose([r["time"] for r in recs], VFR_TIMES, atol=1e-3)
    assert recs[6]["time"] == pytest.approx(0.2, abs=1e-3)


@pytest.mark.parametrize("encoder", ["libx264", "mpeg4"])
def test_drawn_video_keeps_vfr_times(vfr_clip, tmp_path, monkeypatch, encoder):
    if encoder not in av.codec.codecs_available:
        pytest.skip(f"PyAV's FFmpeg has no {encoder} encoder")
    only = tuple(e for e in getattr(video, "ENCODERS", ()) if e[0] == encoder)
    monkeypatch.setattr(video, "ENCODERS", only, raising=False)
    out = tmp_path / "out"
    assert video.predict_stream(_poser(StubPredictor()), vfr_clip, "clip", out, True, lambda r: None) == 12
    lines = (out / "clip.jsonl").read_text().splitlines()
    np.testing.assert_allclose([json.loads(x)["time"] for x in lines], VFR_TIMES, atol=1e-3)
    times, tb, sizes = read_times(out / "clip_pose.mp4")
    with av.open(str(out / "clip_pose.mp4")) as c:
        assert c.streams.video[0].codec_context.name == {"libx264": "h264"}.get(encoder, encoder)
    assert len(times) == 12 and sizes == {(64, 48)}
    np.testing.assert_allclose(times, VFR_TIMES, atol=float(tb) + 1e-9)
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip_pose.mp4"]
    # OpenCV agrees on the written frame times
    cap = cv2.VideoCapture(str(out / "clip_pose.mp4"))
    cv_times = []
    while cap.read()[0]:
        cv_times.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    cap.release()
    np.testing.assert_allclose(cv_times, VFR_TIMES, atol=1e-3)


def test_video_out_pads_odd_sizes(tmp_path):
    w = video.VideoOut(tmp_path / "odd_pose.mp4", (63, 47), fps=10)
    for i in range(3):
        w.write(np.full((47, 63, 3), 80 * i, np.uint8), 1.5 + 0.1 * i)  # starts at its first frame
    w.close()
    times, tb, sizes = read_times(tmp_path / "odd_pose.mp4")
    assert sizes == {(64, 48)}
    np.testing.assert_allclose(times, [0, 0.1, 0.2], atol=float(tb) + 1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["odd_pose.mp4"]


@pytest.mark.parametrize("index", [-1, 64, 10**6])
def test_bad_camera_index_refused_before_opencv(monkeypatch, index):
    def boom(*a, **k):
        pytest.fail("cv2.VideoCapture must not be called for a bad camera index")

    monkeypatch.setattr(cv2, "VideoCapture", boom)
    with pytest.raises(PosekitError) as e:
        video.open_capture(index)
    msg = str(e.value)
    assert msg.startswith(f"webcam {index}: ") and "\n" not in msg


def test_error_midway_leaves_no_temp_file(vfr_clip, tmp_path):
    """A run that fails midway leaves an earlier run's files as they were: neither the video nor
    the records are half-written over them, and no temporary file stays."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip_pose.mp4").write_bytes(b"an earlier run")
    (out / "clip.jsonl").write_text('{"frame": 0}\n')
    with pytest.raises(RuntimeError, match="stub failure"):
        video.predict_stream(_poser(StubPredictor(fail_at=5)), vfr_clip, "clip", out, True, lambda r: None)
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip_pose.mp4"]
    assert (out / "clip_pose.mp4").read_bytes() == b"an earlier run"
    assert (out / "clip.jsonl").read_text() == '{"frame": 0}\n'
    # a long name: the temporary files' names do not grow with it
    long = "v" * 240
    assert video.predict_stream(_poser(StubPredictor()), vfr_clip, long, out, True, lambda r: None) == 12
    assert len((out / f"{long}.jsonl").read_text().splitlines()) == 12 and (out / f"{long}_pose.mp4").stat().st_size


def test_declared_frame_size_checked():
    with pytest.raises(PosekitError, match=r"^clip\.mp4: .*0x48"):
        video._check_frame_size(0, 48, "clip.mp4")
    with pytest.raises(PosekitError, match=r"^clip\.mp4: .*too small to hold a person"):
        video._check_frame_size(8, 48, "clip.mp4")
    with pytest.raises(PosekitError, match=r"^clip\.mp4: .*the limit is"):
        video._check_frame_size(60000, 60000, "clip.mp4")
    video._check_frame_size(64, 48, "clip.mp4")


class FakeCamera:
    """A webcam that delivers a frame every ``gap`` seconds, then Ctrl-C."""

    def __init__(self, n, gap):
        self.n, self.gap, self.i = n, gap, 0

    def read(self):
        if self.i == self.n:
            raise KeyboardInterrupt
        time.sleep(self.gap)
        self.i += 1
        return True, np.full((48, 64, 3), 30 * self.i, np.uint8)

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_POS_MSEC: 0.0}.get(prop, 0.0)

    def release(self):
        pass


def test_webcam_times_are_capture_times_and_ctrl_c_keeps_the_video(monkeypatch, tmp_path):
    monkeypatch.setattr(video, "open_capture", lambda s: (FakeCamera(5, 0.03), f"webcam {s}"))
    recs = []
    assert video.predict_stream(_poser(StubPredictor()), 0, "webcam0", tmp_path, True, recs.append) == 5
    t = np.array([r["time"] for r in recs])
    assert t[0] >= 0.025 and (np.diff(t) >= 0.025).all()  # seconds since capture began
    times, tb, _ = read_times(tmp_path / "webcam0_pose.mp4")
    np.testing.assert_allclose(times, t - t[0], atol=float(tb) + 1e-4)  # records are rounded to 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["webcam0.jsonl", "webcam0_pose.mp4"]


def _mjpg_avi(path, n=12, size=(64, 48), fps=10):
    """An MJPG .avi of ``n`` noise frames (its header declares ``n``)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(n):
        w.write(np.random.default_rng(i).integers(0, 255, (size[1], size[0], 3), np.uint8))
    w.release()
    return path


def test_a_truncated_video_is_an_error_and_writes_no_files(tmp_path, capsys, monkeypatch):
    """A video whose frames stop before the frame count its container declares: one line naming
    it and the frames, exit code 2; as any error midway, the records already emitted stay and no .jsonl or
    _pose.mp4 is written (an earlier one is kept). A whole file, --max-frames stopping first, and
    a container that declares no length are not truncations."""

    from posekit.cli import main

    whole = _mjpg_avi(tmp_path / "whole.avi", n=60)  # 6 s at 10 frames/s
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[:int(len(data) * 0.6)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "cut.jsonl").write_text("an earlier run\n")
    recs = []
    with pytest.raises(PosekitError, match=r"cut\.avi: truncated: \d+ of 60 frames decoded$") as e:
        video.predict_stream(_poser(StubPredictor()), cut, "cut", out, True, recs.append)
    n = len(recs)
    assert 0 < n < 60 and str(e.value) == f"{cut}: truncated: {n} of 60 frames decoded"
    assert sorted(p.name for p in out.iterdir()) == ["cut.jsonl"] and (out / "cut.jsonl").read_text() == "an earlier run\n"
    assert video.predict_stream(_poser(StubPredictor()), whole, "whole", out, True, lambda r: None) == 60
    assert len((out / "whole.jsonl").read_text().splitlines()) == 60
    assert video.predict_stream(_poser(StubPredictor()), cut, "c3", None, False, lambda r: None, max_frames=3) == 3
    real = video.declared_length
    monkeypatch.setattr(video, "declared_length", lambda p: (None, None, None))
    assert video.predict_stream(_poser(StubPredictor()), cut, "c", None, False, lambda r: None) == n
    monkeypatch.setattr(video, "declared_length", real)

    _stub_cli(monkeypatch)
    assert main(["predict", str(cut), "--json", "--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert cap.err.strip() == f"posekit: error: {e.value}"
    assert len(cap.out.splitlines()) == n and (out / "cut.jsonl").read_text() == "an earlier run\n"


def _cut_before(path, k, dest):
    """``dest``: ``path`` cut just before its video's frame ``k`` (0-based; the stored frames, in
    the order they are stored)."""
    with av.open(str(path)) as c:
        pos = [p.pos for p in c.demux(c.streams.video[0]) if p.size]
    dest.write_bytes(path.read_bytes()[:pos[k] - 8])  # 8: the chunk's id and size before its data
    return dest


def _count_cv2(path):
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.mark.parametrize("frames,fps,kept", [(12, 30, 7), (8, 10, 5), (60, 30, 30)])
def test_a_short_truncated_avi_names_its_frames(tmp_path, capsys, monkeypatch, frames, fps, kept):
    """A short clip cut part way: the shortfall is counted in frames against the AVI header's
    count (a shortfall in seconds let most of a short clip go missing), in the documented words,
    exit code 2, no files; one frame short (a decoder may drop a last one) and the whole clip
    are read."""

    from posekit.cli import main

    whole = _mjpg_avi(tmp_path / "clip.avi", n=frames, fps=fps)
    cut = _cut_before(whole, kept, tmp_path / "t_clip.avi")
    assert _count_cv2(cut) == kept and cv2.VideoCapture(str(cut)).get(cv2.CAP_PROP_FRAME_COUNT) == frames
    out = tmp_path / "out"
    recs = []
    with pytest.raises(PosekitError) as e:
        video.predict_stream(_poser(StubPredictor()), cut, "t_clip", out, True, recs.append)
    assert str(e.value) == f"{cut}: truncated: {kept} of {frames} frames decoded"
    assert len(recs) == kept and not list(out.glob("*"))  # nothing written, no temporary file left
    _stub_cli(monkeypatch)
    assert main(["predict", str(cut), "--json", "--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert cap.err.strip() == f"posekit: error: {cut}: truncated: {kept} of {frames} frames decoded"
    assert len(cap.out.splitlines()) == kept and not list(out.glob("*"))
    one_short = _cut_before(whole, frames - 1, tmp_path / "one_short.avi")
    assert video.predict_stream(_poser(StubPredictor()), one_short, "s", None, False, lambda r: None) == frames - 1
    assert video.predict_stream(_poser(StubPredictor()), whole, "w", None, False, lambda r: None) == frames
    assert video.predict_stream(_poser(StubPredictor()), cut, "c", None, False, lambda r: None, max_frames=kept) == kept


def _mp4(path, pts, codec="mpeg4", audio_s=0.0, options=None, size=(64, 48)):
    """An .mp4 with a 10 frames/s video frame at each of ``pts`` (in tenths of a second; a
    negative one is trimmed by the edit list the muxer writes), and ``audio_s`` s of silent AAC."""
    w, h = size
    noise = [(np.random.default_rng(i).integers(0, 255, (h, w, 3), np.uint8), t) for i, t in enumerate(pts)]
    return encode_video(path, noise, Fraction(1, 10), codec, 10, "mp4", options=options, audio_s=audio_s)


def _avi_with_gaps(path, pts):
    """An MJPEG .avi at 10 frames/s with frames at ``pts`` only: the muxer counts the skipped
    slots in its header (12 for pts up to 11) and stores no frame there."""
    greys = [(np.full((48, 64, 3), 20 * i, np.uint8), t) for i, t in enumerate(pts)]
    return encode_video(path, greys, Fraction(1, 10), "mjpeg", 10, "avi", "yuvj420p")


def test_whole_videos_that_decode_fewer_frames_than_counted_are_not_truncated(tmp_path):
    """Files read whole are let through where a container's count or length runs past the
    frames: an AVI with skipped frame slots, an MP4 whose edit list trims its first frames (its
    frame count includes them), an MP4 and a fragmented MP4 whose audio runs longer than the
    video. Cut, the (fast-start) MP4 is refused with its frames counted."""
    def run(path):
        return video.predict_stream(_poser(StubPredictor()), path, path.stem, None, False, lambda r: None)

    gaps = _avi_with_gaps(tmp_path / "gaps.avi", [0, 1, 2, 5, 6, 9, 10, 11])
    assert cv2.VideoCapture(str(gaps)).get(cv2.CAP_PROP_FRAME_COUNT) == 12 and run(gaps) == 8
    trimmed = _mp4(tmp_path / "trimmed.mp4", range(-3, 12))
    with av.open(str(trimmed)) as c:
        assert c.streams.video[0].frames == 15
    assert run(trimmed) == 12
    audio = _mp4(tmp_path / "audio.mp4", range(12), audio_s=4)
    assert run(audio) == 12
    frag = _mp4(tmp_path / "frag.mp4", range(60), audio_s=9, options={"movflags": "frag_keyframe+empty_moov"})
    with av.open(str(frag)) as c:
        assert c.streams.video[0].frames == 0
    assert run(frag) == 60

    fast = _mp4(tmp_path / "fast.mp4", range(60), audio_s=9, options={"movflags": "faststart"})
    (tmp_path / "t_fast.mp4").write_bytes(fast.read_bytes()[:fast.stat().st_size // 2])
    n = _count_cv2(tmp_path / "t_fast.mp4")
    with pytest.raises(PosekitError, match=rf"^{tmp_path / 't_fast.mp4'}: truncated: {n} of 60 frames decoded$"):
        run(tmp_path / "t_fast.mp4")


def test_a_video_s_files_appear_together(vfr_clip, tmp_path, capsys, monkeypatch):
    """The records and the drawn video of one input are renamed into place together: a folder in
    the way of the .jsonl leaves no _pose.mp4 either, and no temporary file. The message names the
    input and the output that could not be written (not a temporary file)."""

    from posekit.cli import main

    out = tmp_path / "out"
    (out / "clip.jsonl").mkdir(parents=True)
    with pytest.raises(OSError) as e:
        video.predict_stream(_poser(StubPredictor()), vfr_clip, "clip", out, True, lambda r: None)
    assert e.value.filename == str(out / "clip.jsonl")
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl"]
    _stub_cli(monkeypatch)
    assert main(["predict", str(vfr_clip), "--json", "--out", str(out), "--draw"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"posekit: error: {vfr_clip}: cannot write {out / 'clip.jsonl'}: a folder is in the way", err
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl"]


def test_an_image_s_files_appear_together(tmp_path, capsys, monkeypatch):
    """An image's .json and _pose.png appear together or not at all; the message names both the
    input and the output in the way."""

    from posekit.cli import main

    img = tmp_path / "two.png"
    cv2.imwrite(str(img), np.full((48, 64, 3), 90, np.uint8))
    out = tmp_path / "out"
    (out / "two_pose.png").mkdir(parents=True)
    stub = _stub_cli(monkeypatch)
    stub.name, stub.detector = "stub", None
    monkeypatch.setattr("posekit.cli.predict.reported_poses", lambda pred, im, people, box: [pred.predict(im)])
    monkeypatch.setattr("posekit.cli.predict.pose_records", lambda poses, **w: [{**w, "found": True}])
    assert main(["predict", str(img), "--out", str(out), "--draw", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"posekit: error: {img}: cannot write {out / 'two_pose.png'}: a folder is in the way", err
    assert sorted(p.name for p in out.iterdir()) == ["two_pose.png"]


def _ts_segment(path, size, n, start):
    """An MPEG-TS segment of ``n`` frames at 10 frames/s from frame ``start``."""
    w, h = size
    greys = [(np.full((h, w, 3), 20 * i, np.uint8), start + i) for i in range(n)]
    return encode_video(path, greys, Fraction(1, 10), "mpeg4", 10, "mpegts", stream_tb=False).read_bytes()


def test_a_frame_size_change_is_refused_and_ts_is_a_video(tmp_path, capsys, monkeypatch):
    """MPEG-TS segments joined end to end at two sizes: OpenCV scales every frame to the first
    size, so the joints would be wrong; refused, exit 2, one line with the time and both sizes,
    nothing written. A plain .ts (and the other video extensions) is read as a video."""

    from posekit.cli import main

    joined = tmp_path / "joined.ts"
    joined.write_bytes(_ts_segment(tmp_path / "a.ts", (320, 240), 10, 0) + _ts_segment(tmp_path / "b.ts", (480, 360), 10, 10))
    _stub_cli(monkeypatch)
    out = tmp_path / "out"
    assert main(["predict", str(joined), "--json", "--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert cap.err.strip() == (f"posekit: error: {joined}: the frame size changes by 1.00 s (320x240, then 480x360); "
                               "re-encode the video at one size to pose it"), cap.err
    assert cap.out == "" and not list(out.glob("*"))
    assert main(["predict", str(tmp_path / "a.ts"), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10
    video.check_one_frame_size(joined, "joined.ts", until=0.5)  # --max-frames ending before the change: read
    with pytest.raises(PosekitError, match=r"changes by 1\.\d\d s \(320x240, then 480x360\)"):
        video.check_one_frame_size(joined, "joined.ts", every=0.3)
    video.check_one_frame_size(tmp_path / "a.ts", "a.ts")
    video.check_one_frame_size(tmp_path / "out", "no video")  # PyAV cannot read it: let through (OpenCV decides)


def _h264_encoder():
    """An H.264 encoder PyAV's FFmpeg can open, or None."""
    for name in ("libx264", "libopenh264"):
        if name in av.codec.codecs_available:
            try:
                av.codec.Codec(name, "w")
            except Exception:
                continue
            return name
    return None


def _h264_ts_segment(path, size, n, start, encoder):
    """An H.264 MPEG-TS segment of ``n`` frames at 30 frames/s from frame ``start``, a moving bar
    on grey (libx264's defaults: B-frames, one key frame at the start)."""
    w, h = size

    def bar(i):
        rgb = np.full((h, w, 3), 90, np.uint8)
        rgb[:, (4 * i) % (w - 8):(4 * i) % (w - 8) + 8] = 200
        return rgb
    frames = [(bar(i), start + i) for i in range(n)]
    return encode_video(path, frames, Fraction(1, 30), encoder, 30, "mpegts", stream_tb=False).read_bytes()


@pytest.mark.parametrize("join", ["continuous", "restart", "short middle"])
def test_a_frame_size_change_in_h264_ts_is_refused(tmp_path, capsys, monkeypatch, join):
    """H.264 segments at two sizes joined end to end (2 s of 320x240, then 2 s of 480x360): the
    decoder holds frames back, so each key frame sampled is decoded alone and drained. Refused
    whether the timestamps run on or restart at the join (times then run on, as the records'
    do), and where the second size lasts a fraction of a second, with no key frame after the one
    it starts with, before the first size comes back. One segment alone is read."""

    from posekit.cli import main

    enc = _h264_encoder()
    if enc is None:
        pytest.skip("PyAV's FFmpeg has no H.264 encoder")
    a = _h264_ts_segment(tmp_path / "a.ts", (320, 240), 60, 0, enc)
    if join == "short middle":
        data = (a + _h264_ts_segment(tmp_path / "b.ts", (480, 360), 10, 60, enc)
                + _h264_ts_segment(tmp_path / "c.ts", (320, 240), 50, 70, enc))
    else:
        data = a + _h264_ts_segment(tmp_path / "b.ts", (480, 360), 60, 60 if join == "continuous" else 0, enc)
    joined = tmp_path / "joined.ts"
    joined.write_bytes(data)
    with pytest.raises(PosekitError, match=r"joined\.ts: the frame size changes by (1\.9[3-9]|2\.0\d) s "
                                           r"\(320x240, then 480x360\); re-encode the video at one size to pose it$"):
        video.check_one_frame_size(joined, "joined.ts")
    video.check_one_frame_size(tmp_path / "a.ts", "a.ts")
    video.check_one_frame_size(tmp_path / "b.ts", "b.ts")
    video.check_one_frame_size(joined, "joined.ts", until=1.5)  # --max-frames ending before the change: read
    _stub_cli(monkeypatch)
    out = tmp_path / "out"
    assert main(["predict", str(joined), "--json", "--out", str(out)]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and not list(out.glob("*")) and len(cap.err.strip().splitlines()) == 1
    assert cap.err.startswith(f"posekit: error: {joined}: the frame size changes by ")


def test_a_full_disk_at_the_end_leaves_nothing_and_names_the_output(vfr_clip, tmp_path, monkeypatch):
    """The records' file failing as it is closed (disk full, file too large) leaves neither the
    finished video nor a temporary file, and the error names the records' file; the video's own
    failure at its end names the video, never a temporary name."""
    import errno

    out = tmp_path / "out"

    class Full:
        def __init__(self, path, mode):
            self.f = open(path, mode)  # noqa: SIM115

        def writelines(self, lines):
            self.f.writelines(lines)

        def close(self):
            self.f.close()
            raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(video, "open", Full, raising=False)
    with pytest.raises(OSError) as e:
        video.predict_stream(_poser(StubPredictor()), vfr_clip, "clip", out, True, lambda r: None)
    assert e.value.filename == str(out / "clip.jsonl") and list(out.iterdir()) == []
    monkeypatch.undo()

    real_open = av.open

    def trailer_fails(*a, **k):
        c = real_open(*a, **k)
        if a[1:2] == ("w",):
            tmp = a[0]

            class Closing:
                def __getattr__(self, name):
                    return getattr(c, name)

                def close(self):
                    c.close()
                    raise OSError(errno.EFBIG, "File too large", tmp)

            return Closing()
        return c

    monkeypatch.setattr(av, "open", trailer_fails)
    with pytest.raises(PosekitError) as e:
        video.predict_stream(_poser(StubPredictor()), vfr_clip, "clip", out, True, lambda r: None)
    assert str(e.value) == f"{out / 'clip_pose.mp4'}: cannot write the video (File too large)" and list(out.iterdir()) == []
