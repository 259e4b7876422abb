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
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_allclose(shipped.predict(grey).keypoints,
                               shipped.predict(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)).keypoints, atol=1e-4)
    boxes = np.array([[0, 0, rgb.shape[1], rgb.shape[0]]] * 2)  # an array of boxes works like a list
    assert len(shipped.predict_batch([rgb, rgb], boxes)) == 2
    with pytest.raises(Exception, match="32-bit float"):
        shipped.predict(Image.fromarray(grey.astype(np.float32)))


def test_predictor_bad_inputs(shipped, tmp_path):
    from posekit.errors import PosekitError

    with pytest.raises(PosekitError, match="too small to hold a person"):
        shipped.predict(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(PosekitError, match="uint8"):
        shipped.predict(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(PosekitError, match="outside"):
        shipped.predict(EXAMPLES[0], box=(5000, 5000, 20, 20))
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
    assert set(recs[0]["joints"][0]) == {"name", "x", "y", "score", "in_image"}
    assert recs[0]["found"] is True and 0 < recs[0]["score"] <= 1
    assert main(["predict", *EXAMPLES[:2], "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:15] == ["image", "frame", "time", "model", "width", "height", "person", "found", "score",
                            "box_x", "box_y", "box_w", "box_h", "box_score", f"{JOINT_NAMES[0]}_x"] and len(rows) == 3
    assert len(rows[1]) == 14 + 4 * 14 and float(rows[1][14]) == pytest.approx(recs[0]["joints"][0]["x"], abs=0.01)
    assert rows[1][3] == "posekit-lsp" and [float(v) for v in rows[1][9:13]] == recs[0]["box"]
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
    assert main(["predict", str(clip), "--out", str(out), "--json", "--draw"]) == 0
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
    torch_p = Predictor("posekit-lsp", precision="fp32")  # the exported network is float32
    onnx_p = Predictor(str(onnx_path), backend="onnx")
    a = torch_p.predict_batch(EXAMPLES)  # a batch of 4 through the dynamic batch axis
    b = onnx_p.predict_batch(EXAMPLES)
    diff = max(np.abs(x.keypoints - y.keypoints).max() for x, y in zip(a, b))
    assert diff < 0.5, f"ONNX and PyTorch differ by {diff:.3f} px"
    one = onnx_p.predict(EXAMPLES[2])
    # the person detector's batched convolutions move its boxes by ~1e-5 px against one image
    # alone, which the crop and heatmap decoding carry to a few hundredths of a pixel
    np.testing.assert_allclose(one.keypoints, b[2].keypoints, atol=0.1)
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
    assert main(["predict", "--webcam", "0", "--max-frames", "6", "--out", str(out), "--json", "--draw"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert opened == [0] and len(recs) == 6 and recs[0]["image"] == "webcam 0"
    assert len((out / "webcam0.jsonl").read_text().splitlines()) == 6
    assert int(real(str(out / "webcam0_pose.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_predict_cli_bad_inputs_each_named(tmp_path, capsys):
    """Each bad input is reported in one line naming it and skipped; the others are processed; exit 2."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for e in EXAMPLES[:2]:
        (src / "sub" / e.split("/")[-1]).write_bytes(open(e, "rb").read())
    (src / "broken.mp4").write_bytes(b"junk" * 100)
    (src / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    rc = main(["predict", str(src), str(tmp_path / "gone.jpg"), "--out", str(out), "--json"])
    cap = capsys.readouterr()
    assert rc == 2
    recs = [json.loads(line) for line in cap.out.splitlines()]
    assert len(recs) == 2 and all("sub/" in r["image"] for r in recs)  # found in the sub-folder
    assert (out / "sub" / "lsp_im1003.json").is_file() and not list(out.rglob("*_pose.png"))  # no --draw
    err = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert any("broken.mp4: cannot open video" in ln for ln in err)
    assert any("empty.png: empty file" in ln for ln in err)
    assert any("gone.jpg: input not found" in ln for ln in err)
    assert "Traceback" not in cap.err and err[-1].startswith("posekit: error: 3 of 5 inputs failed")
    # a box outside the image: the message names the file
    assert main(["predict", EXAMPLES[0], "--box", "5000,5000,20,20"]) == 2
    assert f"{EXAMPLES[0]}: box" in capsys.readouterr().err
    # --out that is a file, --draw without --out, a missing .onnx
    (tmp_path / "file.txt").write_text("x")
    assert main(["predict", EXAMPLES[0], "--out", str(tmp_path / "file.txt")]) == 2
    assert "must be a folder" in capsys.readouterr().err
    assert main(["predict", EXAMPLES[0], "--draw"]) == 2
    assert "--draw writes annotated images" in capsys.readouterr().err
    assert main(["predict", EXAMPLES[0], "--backend", "onnx", "--model", str(tmp_path / "m.onnx")]) == 2
    assert "m.onnx: model file not found" in capsys.readouterr().err


def test_unwritable_output_is_one_line(tmp_path, capsys):
    """An output path that cannot be written (here: under a file, which fails even for root)."""
    (tmp_path / "file.txt").write_text("x")
    assert main(["export", "--onnx", str(tmp_path / "file.txt" / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "file.txt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["explain", EXAMPLES[0], "--out", str(tmp_path / "file.txt" / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "file.txt" in err and len(err.strip().splitlines()) == 1


def test_same_names_do_not_overwrite(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d in (a, b):
        (d / "x.jpg").write_bytes(open(EXAMPLES[0], "rb").read())
    cv2.imwrite(str(a / "x.png"), cv2.imread(EXAMPLES[1]))
    out = tmp_path / "out"
    assert main(["predict", str(a / "x.jpg"), str(b / "x.jpg"), str(a / "x.png"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["x.json", "x_jpg.json", "x_png.json"]
    capsys.readouterr()


def test_flip_test_predict_both_backends(tmp_path, capsys):
    from posekit.export import export_onnx

    onnx_path = export_onnx("posekit-lsp", tmp_path / "m.onnx")
    t = Predictor("posekit-lsp", flip_test=True, precision="fp32").predict_batch(EXAMPLES)  # as exported
    o = Predictor(str(onnx_path), backend="onnx", flip_test=True).predict_batch(EXAMPLES)
    plain = Predictor("posekit-lsp", flip_test=False).predict_batch(EXAMPLES)
    assert max(np.abs(x.keypoints - y.keypoints).max() for x, y in zip(t, o)) < 0.5
    assert any(np.abs(x.keypoints - y.keypoints).max() > 0.1 for x, y in zip(t, plain))  # it does something
    assert main(["predict", EXAMPLES[0], "--flip-test", "--precision", "fp32", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["joints"][0]["x"] == pytest.approx(t[0].keypoints[0, 0], abs=0.01)


def test_video_csv_and_ctrl_c_on_a_webcam(tmp_path, capsys, monkeypatch):
    import posekit.video as video

    clip = tmp_path / "c.mp4"
    _make_clip(clip, seconds=1, fps=10)
    assert main(["predict", str(clip), "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 11 and rows[3][1] == "2" and float(rows[3][2]) == pytest.approx(0.2)
    # Ctrl-C on a webcam ends it cleanly: the frames so far are kept and the video is finalised
    real = cv2.VideoCapture
    monkeypatch.setattr(video.cv2, "VideoCapture", lambda src, *a: real(str(clip)) if isinstance(src, int) else real(src, *a))
    calls = {"n": 0}
    original = video.FramePoser.__call__

    def interrupt_at_4(self, *a, **k):  # Ctrl-C while the fifth frame is posed
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(video.FramePoser, "__call__", interrupt_at_4)
    out = tmp_path / "o"
    assert main(["predict", "--webcam", "1", "--out", str(out), "--draw", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert len((out / "webcam1.jsonl").read_text().splitlines()) == 4
    assert int(real(str(out / "webcam1_pose.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 4
