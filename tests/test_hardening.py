"""Files that never lie, one image door, and one clear line for every bad input.

Each test builds its own equivalent of a failing input found by trying posekit as a user would
(none reads a file from outside the repository)."""
import errno
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from posekit.cli import main
from posekit.errors import PosekitError

EXAMPLE = "examples/lsp_im1003.jpg"


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("posekit: error: "), err[0]
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


# ---------------------------------------------------------------------------- images built here

def png_declaring(w: int, h: int) -> bytes:
    """A valid PNG header declaring w x h pixels, with almost no pixel data."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_declaring(w: int, h: int) -> bytes:
    """A small real JPEG whose start-of-frame header is rewritten to declare w x h pixels."""
    ok, buf = cv2.imencode(".jpg", np.full((32, 32, 3), 90, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def truncated_then_eoi() -> bytes:
    """An LSP image cut short, with the JPEG end-of-image marker appended again."""
    data = Path(EXAMPLE).read_bytes()
    return data[: len(data) * 2 // 3] + b"\xff\xd9"


def png_of(h: int, w: int) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 120, np.uint8))
    return buf.tobytes()


BAD_IMAGES = {
    "bomb_png": (png_declaring(30000, 30000), "too_large", "limit is"),
    "bomb_png_65535": (png_declaring(65535, 65535), "too_large", "limit is"),
    "bomb_jpeg": (jpeg_declaring(65535, 65535), "too_large", "limit is"),
    "truncated_then_eoi": (truncated_then_eoi(), "corrupt", "truncated or corrupt JPEG"),
    "one_pixel": (png_of(1, 1), "too_small", "too small to hold a person"),
    "strip_1x5000": (png_of(1, 5000), "too_small", "too small to hold a person"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_the_image_door_refuses_before_decoding(name, tmp_path):
    from posekit.data.images import ImageError, decode_image, read_image

    data, kind, fragment = BAD_IMAGES[name]
    with pytest.raises(ImageError, match=fragment) as e:
        decode_image(data, "x")
    assert e.value.kind == kind and "\n" not in str(e.value)
    p = tmp_path / f"{name}.img"
    p.write_bytes(data)
    with pytest.raises(ImageError):  # the training data's reader is the same door
        read_image(p)


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_cli_refuses_each_bad_image_in_one_line(name, tmp_path, capsys):
    data, _, fragment = BAD_IMAGES[name]
    p = tmp_path / f"{name}.png"
    p.write_bytes(data)
    assert main(["predict", str(p), "--json"]) == 2
    line = _one_line_error(capsys, f"{name}.png", fragment)
    assert "Traceback" not in line


def test_predictor_and_arrays_go_through_the_door(tmp_path):
    from posekit.predict import Predictor

    pred = Predictor("posekit-lsp", refine=False)
    for name, (data, _, fragment) in BAD_IMAGES.items():
        with pytest.raises(PosekitError, match=fragment):
            pred.predict(data)  # encoded bytes
    with pytest.raises(PosekitError, match="too small to hold a person"):
        pred.predict(np.zeros((1, 5000, 3), np.uint8))
    with pytest.raises(PosekitError, match="limit is"):
        pred.predict(np.zeros((20, 20, 3), np.uint8), box=None) if False else _check_pixels_limit()


def _check_pixels_limit():
    from posekit.data.images import check_size

    check_size(100, 100, "x", max_pixels=5000)


def test_pixel_limit_is_a_setting(monkeypatch):
    from posekit.data.images import DEFAULT_MAX_PIXELS, ImageError, check_size, max_pixels_setting

    assert max_pixels_setting() == DEFAULT_MAX_PIXELS
    monkeypatch.setenv("POSEKIT_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="the limit is 1,000"):
        check_size(40, 40, "x")
    monkeypatch.setenv("POSEKIT_MAX_PIXELS", "lots")
    with pytest.raises(PosekitError, match="POSEKIT_MAX_PIXELS"):
        max_pixels_setting()


def test_tiny_box_is_refused_with_the_minimum():
    from posekit.predict import parse_box

    with pytest.raises(PosekitError, match="too small to hold a person .*minimum is 16"):
        parse_box("3,3,0.001,0.001")
    assert parse_box("3,3,16,4") == (3, 3, 16, 4)


def test_joints_outside_the_image_are_flagged():
    from posekit.cli.predict import text_line
    from posekit.inference import Pose

    kp = np.tile([[10.0, 10.0]], (14, 1))
    kp[3] = [-40.0, 10.0]
    pose = Pose(kp, np.full(14, 0.8), 50, 60, score=0.8, found=True)
    d = pose.to_dict()
    assert [j["in_image"] for j in d["joints"]].count(False) == 1 and d["joints"][3]["in_image"] is False
    line = text_line({"image": "a.jpg", **d}, 0.3)
    assert "left_hip=-40,10(outside)" in line


def test_jpeg_exif_orientation_is_applied():
    """What the photo shows, as OpenCV (the previous decoder) and viewers show it."""
    from PIL import Image

    from posekit.data.images import decode_image

    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255  # left half white
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    import io

    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(buf.getvalue())
    want = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert out.shape == (40, 20, 3) and np.abs(out.astype(int) - want).max() <= 2


# ---------------------------------------------------------------------------- files that never lie

def _cfg(root, **extra):
    from posekit.config import load_config

    return load_config("configs/poster.yaml", tiny_overrides(root, **extra))


def test_best_is_repaired_after_a_kill_between_the_writes(synth_root, tmp_path, monkeypatch):
    """A failure right after last.pt of an improving epoch, before best.pt, must not leave
    best.pt at an older epoch: evaluation picks last.pt, and a resume repairs best.pt."""
    import posekit.checkpoint as ck
    from posekit.train import train

    cfg = _cfg(synth_root, **{"train.epochs": 3})
    run = tmp_path / "run"
    real = ck.save_checkpoint
    calls = {"n": 0}

    def dying(path, **payload):
        real(path, **payload)
        if Path(path).name == "last.pt" and payload["epoch"] == 1 and payload["best"]["epoch"] == 2:
            raise KeyboardInterrupt  # killed between last.pt and best.pt
        calls["n"] += 1

    monkeypatch.setattr(ck, "save_checkpoint", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, progress=False, log=lambda *a: None)
    monkeypatch.setattr(ck, "save_checkpoint", real)
    assert torch.load(run / "last.pt", weights_only=True)["best"]["epoch"] == 2  # the improving epoch was cut
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == 0  # stale: epoch 1
    assert ck.resolve_checkpoint_path(run) == run / "last.pt"  # evaluate --model RUN scores epoch 2
    summary = train(cfg, run, resume=run / "last.pt", progress=False, log=lambda *a: None)
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["epoch"] + 1 == summary["best"]["epoch"]
    assert ck.resolve_checkpoint_path(run) == run / "best.pt"


def test_a_killed_write_leaves_no_temp_file_for_long(tmp_path):
    """A write killed before its rename leaves a temp file; the next write into that folder
    (from any process) removes it. Names near the file-system limit still write."""
    from posekit.utils import atomic_write_bytes

    code = ("import os, posekit.utils as u\n"
            "os.replace = lambda *a: os._exit(9)\n"
            f"u.atomic_write_bytes({str(tmp_path / 'last.pt')!r}, b'x' * 1000)\n")
    r = subprocess.run([sys.executable, "-c", code])
    assert r.returncode == 9
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0] != "last.pt"  # the killed write's temp file
    long_name = "a" * 240 + "_pose.png"
    atomic_write_bytes(tmp_path / long_name, b"png")
    assert sorted(p.name for p in tmp_path.iterdir()) == [long_name]


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    from posekit.utils import atomic_write_bytes

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as e:
        atomic_write_bytes(tmp_path / "m.onnx", b"x" * 100)
    assert e.value.filename == str(tmp_path / "m.onnx") and e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_export_on_a_full_disk_says_which_file(tmp_path, monkeypatch, capsys, synth_root):
    from posekit.train import train

    train(_cfg(synth_root, **{"train.epochs": 1}), tmp_path / "run", progress=False, log=lambda *a: None)
    real = os.write

    def full(fd, data):
        if len(data) > 1000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", full)
    assert main(["export", "--model", str(tmp_path / "run"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    _one_line_error(capsys, "m.onnx: No space left on device")
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".") for p in tmp_path.iterdir())


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_pickles_code_is_refused_unrun(tmp_path, capsys, synth_root):
    from posekit.checkpoint import FORMAT, read_checkpoint

    marker = tmp_path / "ran"
    bad = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "config": {}, "model": {}, "payload": _Evil(marker)}, bad)
    with pytest.raises(PosekitError, match="refused"):
        read_checkpoint(bad)
    assert main(["predict", EXAMPLE, "--model", str(bad)]) == 2
    _one_line_error(capsys, "evil.pt: refused")
    assert main(["train", "--resume", str(bad)]) == 2
    _one_line_error(capsys, "evil.pt: refused")
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(tmp_path / "r"), "--no-progress",
                 *tiny_overrides(synth_root), f"train.init_from={bad}"]) == 2
    _one_line_error(capsys, "evil.pt: refused")
    from posekit.serve.app import create_app

    with pytest.raises(PosekitError, match="refused"):
        create_app(model=str(bad))
    assert not marker.exists()


def test_checkpoints_without_config_or_with_missing_tensors(tmp_path, capsys, synth_root):
    from posekit.checkpoint import FORMAT
    from posekit.train import train

    train(_cfg(synth_root, **{"train.epochs": 1}), tmp_path / "run", progress=False, log=lambda *a: None)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    no_cfg = {k: v for k, v in ck.items() if k != "config"}
    torch.save(no_cfg, tmp_path / "nocfg.pt")
    missing = dict(ck, model={k: v for i, (k, v) in enumerate(ck["model"].items()) if i})
    torch.save(missing, tmp_path / "missing.pt")
    torch.save({"format": FORMAT, "config": ck["config"]}, tmp_path / "noweights.pt")
    for name, fragment in (("nocfg.pt", "no usable config"), ("missing.pt", "1 tensor(s) missing"),
                           ("noweights.pt", "no model weights")):
        assert main(["evaluate", "--model", str(tmp_path / name), "--data", str(synth_root)]) == 2
        _one_line_error(capsys, name, fragment)
        assert main(["train", "--resume", str(tmp_path / name), "--epochs", "3"]) == 2
        _one_line_error(capsys, name)


# ---------------------------------------------------------------------------- every other failure

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synth_root):
    out = tmp_path_factory.mktemp("resume") / "run"
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(out), "--epochs", "1", "--no-progress",
                 *tiny_overrides(synth_root)]) == 0
    return out


@pytest.mark.parametrize("override,fragment", [
    ("model.width=8", "cannot resume with model="),
    ("data.input_size=64", "cannot resume with data.input_size=64"),
    ("train.optimizer=sgd", "cannot resume with train.optimizer='sgd'"),
])
def test_resume_refuses_changes_before_writing(finished_run, capsys, override, fragment):
    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(finished_run), "--epochs", "3", "--no-progress", override]) == 2
    _one_line_error(capsys, "last.pt", fragment)
    after = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    assert after == before  # config.yaml included: nothing rewritten


def test_resume_honours_a_new_weight_decay(finished_run, tmp_path):
    import shutil

    from posekit.checkpoint import read_checkpoint
    from posekit.config import apply_overrides, complete_config
    from posekit.train import train

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    ck = read_checkpoint(run / "last.pt")
    cfg = apply_overrides(complete_config(ck["config"]), ["train.epochs=2", "train.weight_decay=0.01"])
    train(cfg, run, resume=run / "last.pt", progress=False, log=lambda *a: None)
    groups = torch.load(run / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert all(g["weight_decay"] == 0.01 for g in groups)


def test_config_files_that_are_not_configs(tmp_path, capsys):
    (tmp_path / "bytes.yaml").write_bytes(bytes(range(256)) * 3)
    assert main(["train", "--config", str(tmp_path / "bytes.yaml")]) == 2
    _one_line_error(capsys, "bytes.yaml: not a text file")
    (tmp_path / "twice.yaml").write_text("train:\n  lr: 0.1\nmodel:\n  name: poster_cnn\ntrain:\n  epochs: 3\n")
    assert main(["train", "--config", str(tmp_path / "twice.yaml")]) == 2
    _one_line_error(capsys, "twice.yaml: line 5: key 'train' is given twice")
    assert main(["train", "--config", "configs/poster.yaml", "data.input_size=100000"]) == 2
    _one_line_error(capsys, "'data.input_size': Input should be less than or equal to 1024, got 100000")


def test_cli_basics_for_a_stranger(capsys, tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("posekit ")
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = capsys.readouterr().out
    assert "address to listen on" in help_text and "TCP port" in help_text
    assert main(["predict", EXAMPLE, "--model", "posekit-nonesuch"]) == 2
    _one_line_error(capsys, "posekit-nonesuch", "shipped: posekit-lsp")
    # an output folder that cannot be written is refused before the model is loaded
    import posekit.predict as pr

    monkeypatch.setattr(pr, "Predictor", lambda *a, **k: pytest.fail("the model was loaded"))
    (tmp_path / "file").write_text("x")
    assert main(["predict", EXAMPLE, "--out", str(tmp_path / "file" / "sub")]) == 2
    _one_line_error(capsys, "cannot be created")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if not os.access(ro, os.W_OK):  # (root may write anywhere)
        assert main(["predict", EXAMPLE, "--out", str(ro / "out")]) == 2
        _one_line_error(capsys, "cannot be written")


def test_serve_on_a_busy_port_is_one_line(capsys):
    import socket

    from posekit.serve import app as serve_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        called = []
        orig = serve_app.run
        serve_app.run = lambda **kw: called.append(kw)
        try:
            assert main(["serve", "--port", str(port)]) == 2
        finally:
            serve_app.run = orig
    _one_line_error(capsys, f"127.0.0.1:{port}: cannot listen there")
    assert not called  # refused before the model loads


def test_serve_passes_the_flip_test_setting_on(monkeypatch):
    """`serve --no-flip-test` / `--flip-test` reach the Predictor; without either, the model's own (None)."""
    import socket

    from posekit.serve import app as serve_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for flag, want in (([], None), (["--no-flip-test"], False), (["--flip-test"], True)):
        called = []
        monkeypatch.setattr(serve_app, "run", lambda **kw: called.append(kw))
        assert main(["serve", "--port", str(port), *flag]) == 0
        assert called[0]["flip_test"] is want


def test_crop_border_repeats_edge_pixels():
    from posekit.data.transforms import box_matrix, warp

    img = np.zeros((40, 40, 3), np.uint8)
    img[:, -1] = 200  # the right edge column
    m = box_matrix((20, 0, 40, 40), 40)  # half the crop lies right of the image
    black = warp(img, m, 40)
    rep = warp(img, m, 40, border=10)
    assert black[20, 30].max() == 0
    assert rep[20, 25].min() == 200 and rep[20, 35].max() == 0  # 10 px repeated, then black


# ---------------------------------------------------------------------------- "no person here"

def test_no_person_is_an_answer_everywhere(tmp_path, capsys):
    """Below the person threshold: the CLI says so (exit 0), JSON says so, nothing is drawn,
    the server answers an empty list of people."""
    assert main(["predict", EXAMPLE, "--person-threshold", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(EXAMPLE) and "no person found (score 0." in line and "threshold 1.00" in line
    assert main(["predict", EXAMPLE, "--person-threshold", "1", "--json", "--out", str(tmp_path), "--draw"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["found"] is False and 0 < rec["score"] < 1
    from posekit.data.images import read_image

    drawn = cv2.imread(str(tmp_path / "lsp_im1003_pose.png"))[..., ::-1]
    assert np.array_equal(drawn, read_image(EXAMPLE))  # nothing drawn
    assert main(["predict", EXAMPLE, "--json"]) == 0  # the model's own threshold: a person
    rec = json.loads(capsys.readouterr().out)
    assert rec["found"] is True
    from fastapi.testclient import TestClient

    from posekit.serve.app import create_app

    with TestClient(create_app(person_threshold=1.0)) as client:
        body = client.post("/v1/pose", files={"image": ("a.jpg", Path(EXAMPLE).read_bytes(), "image/jpeg")}).json()
    assert body["people"] == [] and body["threshold"] == 1.0 and 0 < body["score"] < 1


def test_nobody_is_one_answer_in_every_mode(tmp_path, capsys):
    """A blank image: `predict` (one person) and `predict --people all` give the same record, the
    best candidate's pose (its own score, not an invented 0.0), found false, person null; the
    HTTP answer's score is that same score, for people=all and one."""
    from fastapi.testclient import TestClient

    from posekit.predict import Predictor
    from posekit.serve.app import create_app

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 128, np.uint8))
    recs = []
    for people in ("one", "all"):
        assert main(["predict", str(blank), "--people", people, "--json"]) == 0
        recs.append(json.loads(capsys.readouterr().out))
    assert recs[0] == recs[1]
    rec = recs[0]
    assert rec["found"] is False and rec["person"] is None and 0 < rec["score"] and len(rec["joints"]) == 14
    pred = Predictor("posekit-lsp")
    assert rec["score"] == round(pred.predict(str(blank)).score, 4)
    with TestClient(create_app(predictor=pred)) as client:
        for people in ("all", "one"):
            body = client.post("/v1/pose", files={"image": ("b.png", blank.read_bytes(), "image/png")},
                               data={"people": people}).json()
            assert body["people"] == [] and body["score"] == rec["score"]


def test_blank_and_noise_images_find_nobody():
    from posekit.predict import Predictor

    pred = Predictor("posekit-lsp")
    grey = np.full((200, 160, 3), 128, np.uint8)
    poses = pred.predict_batch([grey, np.zeros((120, 120, 3), np.uint8)])
    assert [p.found for p in poses] == [False, False] and all(p.score < pred.threshold for p in poses)
    assert pred.predict(EXAMPLE).found


def test_batch_one_thread_policy_and_serve_workers(monkeypatch):
    import posekit.predict as pr
    from posekit.serve import app as serve_app

    assert pr.default_threads(1) == 1 and pr.default_threads(8) == max(1, os.cpu_count() or 1)
    seen = []
    pred = pr.Predictor("posekit-lsp", refine=False)
    real = pred._estimate
    monkeypatch.setattr(pred, "_estimate", lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    before = torch.get_num_threads()
    pred.predict(EXAMPLE)  # (one network call per group of boxes posed: a weak detection beside the person is one more)
    one, seen[:] = list(seen), []
    pred.predict_batch([EXAMPLE] * 3)
    assert one and set(one) == {1} and set(seen) == {pr.default_threads(3)}
    assert torch.get_num_threads() == before  # restored after
    pinned = pr.Predictor("posekit-lsp", refine=False, threads=2)
    assert pinned.threads == 2
    with pytest.raises(PosekitError, match="threads must be a positive integer"):
        pr.Predictor("posekit-lsp", threads=0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert serve_app.serve_threads(1) * 1 <= 2 and serve_app.serve_threads(2) * 2 <= 2
    with pytest.raises(PosekitError, match="more inference workers than the 2 CPU cores"):
        serve_app.create_app(workers=3)


def _encode(rgb_or_rgba: np.ndarray, fmt: str, orientation: int = 1) -> bytes:
    import io

    from PIL import Image

    im = Image.fromarray(rgb_or_rgba)
    kw = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_shown_as_pil_shows_it(fmt, orientation):
    """All eight EXIF orientations, every format with EXIF, against PIL's ``exif_transpose`` (the
    viewers' reading). Orientation 7 (transpose + 180 degrees) was decoded as 5 for JPEGs."""
    import io

    from PIL import Image, ImageOps

    from posekit.data.images import decode_image

    rgb = np.zeros((24, 40, 3), np.uint8)  # four quadrants of different colours: any flip shows
    rgb[:12, :20] = (255, 0, 0)
    rgb[:12, 20:] = (0, 255, 0)
    rgb[12:, :20] = (0, 0, 255)
    rgb[12:, 20:] = (255, 255, 255)
    data = _encode(rgb, fmt, orientation)
    with Image.open(io.BytesIO(data)) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB")).astype(int)
    out = decode_image(data).astype(int)
    assert out.shape == want.shape
    assert np.abs(out - want).mean() < 3, f"orientation {orientation}: {fmt} shown differently from PIL"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF", "BMP"])
def test_semi_transparent_images_keep_their_stored_colour(fmt):
    """Alpha is dropped alike in every format: the colour stored, not a premultiplied (darkened)
    one. OpenCV's TIFF reader premultiplied by the alpha."""
    from posekit.data.images import decode_image

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[..., 3] = 128
    try:
        data = _encode(rgba, fmt)
    except (OSError, KeyError):
        pytest.skip(f"PIL cannot write RGBA {fmt}")
    out = decode_image(data)
    assert out.shape == (20, 30, 3)
    assert np.abs(out.astype(int) - (200, 100, 50)).max() <= 1, f"{fmt}: {out[0, 0]}"


def test_a_cut_tiff_header_is_refused_without_a_warning(recwarn):
    """PIL's TIFF reader warns on a damaged EXIF block; the user gets posekit's one line only."""
    from posekit.data.images import decode_image

    data = _encode(np.zeros((40, 60, 3), np.uint8), "TIFF")
    for cut in (30, 60, len(data) // 2):
        with pytest.raises(PosekitError):
            decode_image(data[:cut])
    assert [str(w.message) for w in recwarn] == []


def test_the_files_of_one_result_are_all_or_none(tmp_path, monkeypatch):
    """A rename failing part way (a file held open or immutable) gives the targets already
    replaced their earlier files back: never a new .json beside an earlier _pose.png. Without
    earlier files, none of the new ones stays. No temporary file is left."""
    import errno
    import os

    from posekit import utils

    png, rec = tmp_path / "x_pose.png", tmp_path / "x.json"
    real, failed = os.replace, []

    def failing(src, dst):
        if Path(dst) == rec and not failed:
            failed.append(1)
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real(src, dst)

    monkeypatch.setattr(utils.os, "replace", failing)
    png.write_bytes(b"earlier png")
    rec.write_bytes(b"earlier json")
    with pytest.raises(OSError) as e:
        utils.atomic_write_files({png: b"new png", rec: b"new json"})
    assert e.value.filename == str(rec) and "Operation not permitted" in str(e.value)
    assert png.read_bytes() == b"earlier png" and rec.read_bytes() == b"earlier json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x_pose.png"]
    png.unlink()
    rec.unlink()
    failed.clear()
    with pytest.raises(OSError):
        utils.atomic_write_files({png: b"new png", rec: b"new json"})
    assert list(tmp_path.iterdir()) == []
    utils.atomic_write_files({png: b"new png", rec: b"new json"})  # and when nothing fails, both
    assert png.read_bytes() == b"new png" and rec.read_bytes() == b"new json" and len(list(tmp_path.iterdir())) == 2


def test_libtiff_s_own_stderr_line_is_silenced(capfd, monkeypatch):
    """A cut RGBA TIFF goes through Pillow's libtiff, which prints "TIFFFillStrip: Read error on
    strip 0" on file descriptor 2 before posekit's own one line: silenced, and only then."""
    import os

    from posekit.data import images

    real = images._decode_pil

    def noisy(*a, **k):
        os.write(2, b"TIFFFillStrip: Read error on strip 0\n")
        return real(*a, **k)

    monkeypatch.setattr(images, "_decode_pil", noisy)
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 200
    assert images.decode_image(_encode(rgba, "TIFF")).shape == (20, 30, 3)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_a_multi_picture_jpeg_is_a_jpeg():
    """Phones write JPEGs with a second picture in an MPF block; Pillow calls them MPO. They are
    ordinary .jpg photos: the first picture is decoded."""
    import io

    from PIL import Image

    from posekit.data.images import decode_image

    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (250, 20, 20)
    first = Image.fromarray(rgb)
    buf = io.BytesIO()
    first.save(buf, format="MPO", save_all=True, append_images=[Image.fromarray(255 - rgb)], quality=95)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.format == "MPO"
    out = decode_image(buf.getvalue())
    assert out.shape == (40, 60, 3) and np.abs(out.astype(int) - rgb).mean() < 3


def test_a_file_that_is_no_checkpoint_is_named_so(tmp_path):
    """An image or an ONNX file given where a checkpoint goes: "not a posekit checkpoint" (it said
    the file "holds Python objects"), and exporting the person detector is refused in one line
    (its ONNX file was accepted by no command)."""
    from posekit.checkpoint import read_checkpoint
    from posekit.export import export_onnx

    img = tmp_path / "photo.jpg"
    img.write_bytes(_encode(np.zeros((20, 20, 3), np.uint8), "JPEG"))
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch")  # the start of an ONNX protobuf
    with pytest.raises(PosekitError, match=r"photo\.jpg: not a posekit checkpoint$"):
        read_checkpoint(img)
    with pytest.raises(PosekitError, match=r"model\.onnx: not a posekit checkpoint \(an ONNX file"):
        read_checkpoint(onnx)
    with pytest.raises(PosekitError, match=r"a person detector; ONNX export is for pose models"):
        export_onnx("posekit-person", tmp_path / "det.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "photo.jpg"]


def test_write_json_writes_a_whole_report_or_nothing(tmp_path):
    """Benchmarks' ``--json``: the object written atomically, indent 1, a newline at the end; no
    path writes nothing."""
    import json

    from posekit.utils import write_json

    out = tmp_path / "r.json"
    write_json(out, {"pck": 0.5, "rows": [1, 2]})
    text = out.read_text()
    assert text.endswith("}\n") and json.loads(text) == {"pck": 0.5, "rows": [1, 2]} and '\n "pck"' in text
    write_json(None, {"x": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_a_float_tiff_is_unsupported_not_corrupt(tmp_path, capsys):
    """A valid 32-bit float TIFF was "truncated or corrupt TIFF data" (CLI exit 2, server 400):
    it is a valid file of a kind posekit does not read, said as for a PIL image of mode 'F'."""
    import re

    from PIL import Image

    from posekit.data.images import ImageError, as_rgb, decode_image

    depth = np.linspace(0, 1, 40 * 60, dtype=np.float32).reshape(40, 60)
    path = tmp_path / "depth.tif"
    Image.fromarray(depth).save(path)
    assert Image.open(path).mode == "F"
    want = "32-bit float pixels (PIL mode 'F') are not supported; convert the image to 8-bit RGB"
    assert main(["predict", str(path), "--model", "posekit-lsp-fast"]) == 2
    _one_line_error(capsys, f"{path}: {want}")
    with pytest.raises(ImageError, match=re.escape(f"upload: {want}")) as e:
        decode_image(path.read_bytes(), "upload")
    assert e.value.kind == "not_image"  # the server's 415, as for other kinds it does not read
    with pytest.raises(PosekitError, match=re.escape(f"image: {want}")):
        as_rgb(Image.fromarray(depth))


def test_16bit_arrays_and_pil_images_are_read_as_16bit_files(tmp_path):
    """A uint16 array and a PIL 'I;16' image were refused, though a 16-bit PNG of the same pixels
    is read (top 8 bits): every input goes through the same door, to the same pose."""
    from PIL import Image

    from posekit.data.images import as_rgb, read_image
    from posekit.predict import Predictor

    rgb = read_image(EXAMPLE)
    rng = np.random.default_rng(0)
    grey16 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) << 8 | rng.integers(0, 256, rgb.shape[:2], np.uint16)
    rgb16 = rgb.astype(np.uint16) << 8 | rng.integers(0, 256, rgb.shape, np.uint16)
    grey_png, rgb_png = tmp_path / "grey16.png", tmp_path / "rgb16.png"
    Image.fromarray(grey16).save(grey_png)
    assert cv2.imwrite(str(rgb_png), rgb16[..., ::-1]) and Image.open(grey_png).mode == "I;16"
    np.testing.assert_array_equal(as_rgb(grey16), read_image(grey_png))
    np.testing.assert_array_equal(as_rgb(rgb16), read_image(rgb_png))
    pred = Predictor("posekit-lsp-fast")
    want = pred.predict(grey_png).keypoints
    for other in (grey16, grey16[..., None], Image.open(grey_png)):
        np.testing.assert_allclose(pred.predict(other).keypoints, want, atol=1e-4)
    want = pred.predict(rgb_png).keypoints
    np.testing.assert_allclose(pred.predict(rgb16).keypoints, want, atol=1e-4)
    np.testing.assert_allclose(pred.predict(rgb16[..., ::-1], color="BGR").keypoints, want, atol=1e-4)


def test_serve_help_lists_every_route(capsys):
    """`posekit serve --help` names every API route the server has (GET /v1/skeleton was missing)."""
    from fastapi.routing import APIRoute

    from posekit.serve import create_app

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    routes = [f"{m} {r.path}" for r in create_app(predictor=object()).routes
              if isinstance(r, APIRoute) and r.include_in_schema for m in r.methods]
    assert "GET /v1/skeleton" in routes and "POST /v1/pose" in routes
    for route in [*routes, "GET /openapi.json", "/docs", "a page at /"]:
        assert route in text, route


def test_serve_on_port_0_takes_a_free_port_and_says_which(capsys, monkeypatch):
    """`--port 0` was refused (expected 1-65535); it is any free port, as uvicorn's, and the first
    line printed gives the one chosen, the port the server's socket is bound to."""
    from types import SimpleNamespace

    import uvicorn

    from posekit.serve import app as serve_app

    called = []
    monkeypatch.setattr(serve_app, "run", lambda **kw: called.append(kw))
    assert main(["serve", "--port", "0"]) == 0 and called[0]["port"] == 0
    monkeypatch.undo()
    served = []
    monkeypatch.setattr(serve_app, "create_app", lambda **kw: SimpleNamespace(state=SimpleNamespace(
        predictor=SimpleNamespace(name="stub"))))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(sockets[0].getsockname()))
    serve_app.run(host="127.0.0.1", port=0)
    host, port = served[0]
    assert host == "127.0.0.1" and port > 0
    assert capsys.readouterr().out.startswith(f"posekit serve: http://127.0.0.1:{port}/ ")
    assert main(["serve", "--port", "-1"]) == 2
    _one_line_error(capsys, "--port -1: expected 1-65535, or 0 for any free port")
