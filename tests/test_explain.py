"""Gradient saliency maps (posekit.explain): shape and range, locality around the explained
joint, different joints give different maps, and a regression (coordinate-output) model."""
import cv2
import numpy as np
import pytest
import torch

from posekit.checkpoint import save_checkpoint, shipped_models
from posekit.data.images import read_image
from posekit.errors import PosekitError
from posekit.explain import render, run_explain, saliency
from posekit.models import build_model
from posekit.predict import Predictor
from posekit.skeleton import JOINT_INDEX, JOINT_NAMES

torch.set_num_threads(1)
IMAGE = "examples/lsp_im1003.jpg"


@pytest.fixture(scope="module")
def predictor():
    if "posekit-lsp" not in shipped_models():
        pytest.skip("no posekit-lsp weights shipped in this checkout")
    return Predictor("posekit-lsp")


def _grid(s):
    h, w = s.shape
    yy, xx = np.mgrid[:h, :w]
    return xx, yy, float(np.hypot(h, w))


def near_ratio(s, point, radius=0.15):
    """Mean saliency within ``radius`` x image diagonal of ``point`` over the image's mean."""
    xx, yy, diag = _grid(s)
    disk = (xx - point[0]) ** 2 + (yy - point[1]) ** 2 <= (radius * diag) ** 2
    return float(s[disk].mean() / s.mean())


def centroid(s):
    xx, yy, _ = _grid(s)
    return np.array([(s * xx).sum(), (s * yy).sum()]) / s.sum()


def check_map(s, image):
    assert s.shape == image.shape[:2] and s.dtype == np.float32
    assert np.isfinite(s).all() and s.min() >= 0 and s.max() <= 1
    assert s.std() > 0.05  # not constant
    assert s.max() == 1  # normalised by the 99th percentile, then clipped


def test_all_joints_map(predictor):
    r = saliency(predictor, IMAGE)
    check_map(r["saliency"], r["image"])
    assert r["joints"] == JOINT_NAMES
    np.testing.assert_allclose(r["pose"].keypoints, predictor.predict(IMAGE).keypoints)


def test_joint_saliency_is_local_and_joint_specific(predictor):
    # Measured with the shipped model on this image (r = 15% of the diagonal): the head_top map
    # is 3.3x its image mean near the predicted head top and 0.6x near the left ankle; the
    # left_ankle map 1.8x near the ankle and 1.4x near the head top.
    img = read_image(IMAGE)
    a, b = saliency(predictor, img, "head_top"), saliency(predictor, img, "left_ankle")
    check_map(a["saliency"], img)
    assert a["joints"] == ("head_top",) and b["joints"] == ("left_ankle",)
    kp = a["pose"].keypoints
    ka, kb = kp[JOINT_INDEX["head_top"]], kp[JOINT_INDEX["left_ankle"]]
    sa, sb = a["saliency"], b["saliency"]
    assert near_ratio(sa, ka) > 2.5
    assert near_ratio(sb, kb) > 1.5
    # each map is stronger than the other one around its own joint ...
    assert near_ratio(sa, ka) > 1.5 * near_ratio(sb, ka)
    assert near_ratio(sb, kb) > 1.5 * near_ratio(sa, kb)
    # ... and its centroid is nearer its own joint than the other joint
    ca, cb = centroid(sa), centroid(sb)
    assert np.linalg.norm(ca - ka) < np.linalg.norm(ca - kb)
    assert np.linalg.norm(cb - kb) < np.linalg.norm(cb - ka)
    assert np.linalg.norm(ca - cb) > 0.1 * _grid(sa)[2]


def test_box_limits_the_map_and_model_state_is_kept(predictor):
    img = read_image(IMAGE)
    h, w = img.shape[:2]
    params = list(predictor.model.parameters())
    side = min(w, h) * 3 // 4  # a square box (a box is made square around its centre)
    with torch.inference_mode():  # works from inside inference mode too
        r = saliency(predictor, img, "neck", box=(0, 0, side, side))
    s = r["saliency"]
    assert np.isfinite(s).all() and s[:side, :side].max() == 1
    # outside the box the model sees nothing (the blur leaks a couple of pixels)
    assert s[side + 5:].max() < 1e-3 and s[:, side + 5:].max() < 1e-3
    assert not predictor.model.training
    assert all(p.requires_grad for p in params) and all(p.grad is None for p in params)


def test_unknown_joint(predictor, tmp_path):
    with pytest.raises(PosekitError, match="unknown joint 'nose'; expected one of right_ankle, .*head_top"):
        saliency(predictor, IMAGE, "nose")
    with pytest.raises(PosekitError, match="unknown joint"):
        run_explain(IMAGE, "posekit-lsp", "nose", tmp_path / "x.png")
    with pytest.raises(PosekitError, match=r"\.png, \.jpg or \.jpeg"):
        run_explain(IMAGE, "posekit-lsp", None, tmp_path / "x.gif")
    assert not list(tmp_path.iterdir())

    class NoTorch:  # a Predictor on the onnx backend has no torch model
        model = None

    with pytest.raises(PosekitError, match="torch backend"):
        saliency(NoTorch(), IMAGE)


def test_run_explain_writes_png(predictor, tmp_path):
    out = run_explain(IMAGE, "posekit-lsp", "head_top", tmp_path / "sub" / "sal.png")
    png = cv2.imread(out)
    img = read_image(IMAGE)
    assert png is not None and png.shape == img.shape
    assert np.abs(png.astype(int) - img[..., ::-1]).mean() > 10  # an overlay, not the image itself
    plain = render(saliency(predictor, img), alpha=0.4, draw_skeleton=False)
    assert plain.shape == img.shape and plain.dtype == np.uint8


def test_regression_model(tmp_path):
    torch.manual_seed(0)
    cfg = {"model": {"name": "poster_cnn", "width": 4, "dropout": 0.0}, "codec": "regression",
           "data": {"input_size": 32, "resize_mode": "stretch"}}
    model = build_model("poster_cnn", width=4, dropout=0.0, input_size=32)
    save_checkpoint(tmp_path / "tiny.pt", config=cfg, model=model.state_dict())
    pred = Predictor(str(tmp_path / "tiny.pt"), device="cpu")
    img = read_image(IMAGE)
    for joint in (None, "left_wrist"):
        r = saliency(pred, img, joint)
        s = r["saliency"]
        assert s.shape == img.shape[:2] and np.isfinite(s).all()
        assert s.min() >= 0 and s.max() == 1 and s.std() > 0
    assert r["pose"].keypoints.shape == (14, 2)


def test_explain_cli(tmp_path, capsys):
    from posekit.cli import main

    out = tmp_path / "sal.png"
    assert main(["explain", "examples/lsp_im1011.jpg", "--joint", "left_wrist", "--out", str(out)]) == 0
    assert "left_wrist" in capsys.readouterr().out
    img = cv2.imread(str(out))
    assert img is not None and img.shape == cv2.imread("examples/lsp_im1011.jpg").shape
    assert main(["explain", "examples/lsp_im1011.jpg", "--joint", "nose", "--out", str(out)]) == 2
    assert "unknown joint 'nose'" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "none.jpg"), "--out", str(out)]) == 2
    assert "image file not found" in capsys.readouterr().err
