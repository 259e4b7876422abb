"""Inference for users (issue 4): input kinds, output formats, video, webcam errors, ONNX parity."""
import csv
import io
import json

import cv2
import numpy as np
import pytest

from posekit import Predictor
from posekit.cli import main
from posekit.data.images import read_image
from posekit.skeleton import JOINT_NAMES

EXAMPLES = ["examples/lsp_im1003.jpg", "examples/lsp_im1011.jpg", "examples/lsp_im1042.jpg", "examples/lsp_im1078.jpg"]


@pytest.fixture(scope="module")
def shipped():
    return Predictor("posekit-lsp")


def test_predictor_input_kinds(shipped):
    from PIL import Image

    path = EXAMPLES[0]
    rgb = read_image(path)
    ref = shipped.predict(path)
    for other in (shipped.predict(rgb), shipped.predict(rgb[..., ::-1].copy(), color="BGR"),
                  shipped.predict(Image.open(path)), shipped.predict(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))):
        np.testing.assert_allclose(other.keypoints, ref.keypoints, atol=1e-4)
    assert ref.names == JOINT_NAMES and ref.scores.shape == (14,) and np.all(np.isfinite(ref.keypoints))
    # a BGR frame passed as if it were RGB is a different picture: the colour order matters
    swapped = shipped.predict(rgb[..., ::-1].copy())
    assert not np.allclose(swapped.keypoints, ref.keypoints, atol=1e-4)
    grey = shipped.predict(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert grey.keypoints.shape == (14, 2)


def test_predictor_bad_inputs(shipped, tmp_path):
    from posekit.errors import PosekitError

    with pytest.raises(PosekitError, match="zero-size"):
        shipped.predict(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(PosekitError, match="uint8"):
        shipped.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(PosekitError, match="outside"):
        shipped.predict(EXAMPLES[0], box=(5000, 5000, 10, 10))
    with pytest.raises(PosekitError, match="positive"):
        shipped.predict(EXAMPLES[0], box=(0, 0, -1, 10))
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(PosekitError, match="empty file"):
        shipped.predict(tmp_path / "empty.jpg")
    with pytest.raises(PosekitError, match="unknown backend"):
        Predictor("posekit-lsp", backend="tensorrt")


def test_predict_json_csv_and_text(capsys):
    assert main(["predict", *EXAMPLES[:2], "--json"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in recs] == EXAMPLES[:2]
    assert [j["name"] for j in recs[0]["joints"]] == list(JOINT_NAMES)
    assert set(recs[0]["joints"][0]) == {"name", "x", "y", "score"}
    assert main(["predict", *EXAMPLES[:2], "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:5] == ["image", "frame", "width", "height", f"{JOINT_NAMES[0]}_x"] and len(rows) == 3
    assert len(rows[1]) == 4 + 3 * 14 and float(rows[1][4]) == pytest.approx(recs[0]["joints"][0]["x"], abs=0.01)
    assert main(["predict", EXAMPLES[0]]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(EXAMPLES[0]) and "head_top=" in line and "\n" not in line
    with pytest.raises(SystemExit) as e:  # argparse: one stdout format at a time
        main(["predict", EXAMPLES[0], "--json", "--csv"])
    assert e.value.code == 2


def _make_clip(path, seconds=10, fps=10):
    """A 10-second clip: an example image sliding across a wider grey frame."""
    img = cv2.imread(EXAMPLES[0])
    h, w = img.shape[:2]
    W = w + 60
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, h))
    n = seconds * fps
    for i in range(n):
        frame = np.full((h, W, 3), 127, np.uint8)
        x = int(round(60 * i / (n - 1)))
        frame[:, x:x + w] = img
        out.write(frame)
    out.release()
    return n


def test_predict_video(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    n = _make_clip(clip)
    out = tmp_path / "out"
    assert main(["predict", str(clip), "--out", str(out), "--json"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(recs) == n and [r["frame"] for r in recs] == list(range(n))
    assert recs[-1]["time"] == pytest.approx((n - 1) / 10)
    lines = (out / "clip.jsonl").read_text().splitlines()
    assert len(lines) == n and json.loads(lines[5])["frame"] == 5
    cap = cv2.VideoCapture(str(out / "clip_pose.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    ok, first = cap.read()
    assert ok and first.shape[:2] == (recs[0]["height"], recs[0]["width"])
    # the person slides 60 px right over the clip: so do the predicted joints
    x0 = np.mean([j["x"] for j in recs[0]["joints"]])
    x1 = np.mean([j["x"] for j in recs[-1]["joints"]])
    assert 40 < x1 - x0 < 80
    # --max-frames stops early
    assert main(["predict", str(clip), "--json", "--max-frames", "7"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 7


def test_predict_bad_video_and_webcam(tmp_path, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    assert main(["predict", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "broken.mp4: cannot open video" in err and "Traceback" not in err
    assert main(["predict", "--webcam", "57"]) == 2
    err = capsys.readouterr().err
    assert "webcam 57: cannot open the camera" in err
    assert len([ln for ln in err.splitlines() if ln.strip()]) == 1
    assert main(["predict"]) == 2
    assert "needs INPUT" in capsys.readouterr().err


def test_onnx_export_and_parity(tmp_path, capsys):
    onnx_path = tmp_path / "posekit-lsp.onnx"
    assert main(["export", "--model", "posekit-lsp", "--onnx", str(onnx_path)]) == 0
    assert "dynamic batch" in capsys.readouterr().out
    torch_p = Predictor("posekit-lsp")
    onnx_p = Predictor(str(onnx_path), backend="onnx")
    a = torch_p.predict_batch(EXAMPLES)  # a batch of 4 through the dynamic batch axis
    b = onnx_p.predict_batch(EXAMPLES)
    diff = max(np.abs(x.keypoints - y.keypoints).max() for x, y in zip(a, b))
    assert diff < 0.5, f"ONNX and PyTorch differ by {diff:.3f} px"
    one = onnx_p.predict(EXAMPLES[2])
    np.testing.assert_allclose(one.keypoints, b[2].keypoints, atol=1e-3)
    # the shipped name with the onnx backend exports in memory
    c = Predictor("posekit-lsp", backend="onnx").predict(EXAMPLES[0])
    assert np.abs(c.keypoints - a[0].keypoints).max() < 0.5
    assert main(["predict", EXAMPLES[0], "--backend", "onnx", "--model", str(onnx_path), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["joints"]) == 14


def test_onnx_bad_files(tmp_path, capsys):
    from posekit.errors import PosekitError

    with pytest.raises(PosekitError, match="model file not found"):
        Predictor(str(tmp_path / "nope.onnx"), backend="onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(PosekitError, match="not a readable ONNX model"):
        Predictor(str(junk), backend="onnx")
    with pytest.raises(PosekitError, match="backend='onnx'"):
        Predictor(str(junk))
    assert main(["export", "--model", "posekit-lsp", "--onnx", str(tmp_path / "x.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err


def test_onnx_int8_export(tmp_path, capsys):
    out = tmp_path / "q.onnx"
    assert main(["export", "--onnx", str(out), "--int8"]) == 2
    assert "--int8 needs --calib" in capsys.readouterr().err
    assert main(["export", "--onnx", str(out), "--int8", "--calib", "examples"]) == 0
    assert "int8, calibrated on 4 images" in capsys.readouterr().out
    q = Predictor(str(out), backend="onnx").predict_batch(EXAMPLES)
    f = Predictor("posekit-lsp").predict_batch(EXAMPLES)
    # quantised, so not bit-exact, but the same pose: within a few pixels on ~150 px people
    err = np.median([np.linalg.norm(a.keypoints - b.keypoints, axis=1).mean() for a, b in zip(q, f)])
    assert err < 4.0


def test_webcam_loop_with_a_stand_in_camera(tmp_path, capsys, monkeypatch):
    """--webcam N reads frames from cv2.VideoCapture(N): a clip stands in for the camera here."""
    import posekit.video as video

    clip = tmp_path / "cam.mp4"
    _make_clip(clip, seconds=1, fps=10)
    real = cv2.VideoCapture
    opened = []

    def fake_capture(src, *a):
        opened.append(src)
        return real(str(clip)) if isinstance(src, int) else real(src, *a)

    monkeypatch.setattr(video.cv2, "VideoCapture", fake_capture)
    out = tmp_path / "out"
    assert main(["predict", "--webcam", "0", "--max-frames", "6", "--out", str(out), "--json"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert opened == [0] and len(recs) == 6 and recs[0]["image"] == "webcam 0"
    assert len((out / "webcam0.jsonl").read_text().splitlines()) == 6
    assert int(real(str(out / "webcam0_pose.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 6
