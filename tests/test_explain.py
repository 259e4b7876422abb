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


def test_joint_saliency_is_local_for_a_local_model(predictor, monkeypatch):
    # The method, not one model's habits: with a network whose joint maps see only a 9 x 9 input
    # window (one strided conv), a joint's map must lie within that window of the joint it
    # explains, in original pixels, and two joints' maps must differ. (A trained model may
    # rightly use context far from a joint: the shipped model finds ankles from the whole body.)
    torch.manual_seed(0)
    local = torch.nn.Conv2d(3, len(JOINT_NAMES), 9, stride=4, padding=4)
    monkeypatch.setattr(predictor, "model", local.eval())
    monkeypatch.setattr(predictor, "network", local)
    monkeypatch.setattr(predictor, "refine", None)  # one pass on the letterboxed image
    monkeypatch.setattr(predictor, "flip_test", False)  # a random local network is not mirror-symmetric
    img = read_image(IMAGE)
    scale = predictor.input_size / max(img.shape[:2])  # letterbox: input pixels per image pixel
    reach = (4.5 + 2 + 2) / scale  # half the window, the codec's grid offset and the blur, in image pixels
    maps = {}
    for name in ("head_top", "left_ankle"):
        r = saliency(predictor, img, name, smooth=0.5)
        s = r["saliency"]
        assert s.shape == img.shape[:2] and np.isfinite(s).all() and s.min() >= 0
        xx, yy, _ = _grid(s)
        kx, ky = r["pose"].keypoints[JOINT_INDEX[name]]
        far = np.maximum(np.abs(xx - kx), np.abs(yy - ky)) > reach  # outside the (square) window
        assert s[far].max() < 0.02 and s[~far].max() == 1, name
        maps[name] = s
    a, b = (maps[n] > 0.02 for n in ("head_top", "left_ankle"))
    assert (a & b).sum() < 0.5 * min(a.sum(), b.sum())  # two joints, two places


def test_joint_saliency_is_joint_specific(predictor):
    # Measured with the shipped model on this image (r = 15% of the diagonal): the head_top map is
    # 3.1x its image mean near the predicted head top, the left_ankle map 2.4x there: the model
    # locates this ankle from the upper body, so an ankle map is not local to the ankle.
    img = read_image(IMAGE)
    a, b = saliency(predictor, img, "head_top"), saliency(predictor, img, "left_ankle")
    check_map(a["saliency"], img)
    assert a["joints"] == ("head_top",) and b["joints"] == ("left_ankle",)
    kp = a["pose"].keypoints
    ka = kp[JOINT_INDEX["head_top"]]
    sa, sb = a["saliency"], b["saliency"]
    assert near_ratio(sa, ka) > 2.0
    assert near_ratio(sa, ka) > 1.2 * near_ratio(sb, ka)  # the head-top map is the stronger one there
    assert np.abs(sa - sb).mean() > 0.05  # two joints, two different maps


def test_box_limits_the_map_and_model_state_is_kept(predictor):
    img = read_image(IMAGE)
    h, w = img.shape[:2]
    one = Predictor("posekit-lsp", refine=False)
    params = list(one.model.parameters())
    side = min(w, h) * 3 // 4  # a square box (a box is made square around its centre)
    with torch.inference_mode():  # works from inside inference mode too
        r = saliency(one, img, "neck", box=(0, 0, side, side))
    s = r["saliency"]
    assert np.isfinite(s).all() and s[:side, :side].max() == 1
    # outside the box the model sees nothing (the blur leaks a couple of pixels)
    assert s[side + 5:].max() < 1e-3 and s[:, side + 5:].max() < 1e-3
    assert not one.model.training
    assert all(p.requires_grad for p in params) and all(p.grad is None for p in params)
    # with refinement the map explains the refinement pass: it lies in the crop around the first estimate
    refined = Predictor("posekit-lsp", refine=[0.13])
    x0, y0, crop, _ = refined.refinement_box(img, (0, 0, side, side))
    s = saliency(refined, img, "neck", box=(0, 0, side, side))["saliency"]
    yy, xx = np.mgrid[:h, :w]
    outside = (xx < x0 - 5) | (xx > x0 + crop + 5) | (yy < y0 - 5) | (yy > y0 + crop + 5)
    assert s.max() == 1 and (not outside.any() or s[outside].max() < 1e-3)


def test_map_explains_the_person_answered(monkeypatch):
    """When predict() answers another detection than the best (its best box's pose was nobody),
    the map is of the pass on that person's box, not the best box's."""
    import dataclasses

    from posekit.detect import pose_box

    if "posekit-lsp" not in shipped_models():
        pytest.skip("no posekit-lsp weights shipped in this checkout")
    img = read_image(IMAGE)
    h, w = img.shape[:2]
    one = Predictor("posekit-lsp", refine=False)
    answered = (0.0, 0.0, w / 3, h / 3)
    plain = one.predict
    monkeypatch.setattr(one, "predict", lambda im, box=None: dataclasses.replace(plain(im, box), box=answered))
    monkeypatch.setattr(one, "best_people", lambda rgbs, boxes=None: [((w / 2, h / 2, w / 3, h / 3), 0.9)])
    s = saliency(one, img, "neck")["saliency"]
    x, y, bw, bh = pose_box(answered, one.box_margin)
    side = max(bw, bh)
    inside = np.zeros_like(s, bool)
    inside[:int(y + bh / 2 + side / 2) + 5, :int(x + bw / 2 + side / 2) + 5] = True
    assert s.max() == 1 and s[~inside].max() < 1e-3


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
    out = run_explain(IMAGE, "posekit-lsp", "head_top", tmp_path / "sub" / "sal.png")["out"]
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


def test_explain_draws_no_skeleton_when_nobody_is_found(predictor, tmp_path, capsys):
    """As ``posekit predict --draw``: with no person found the map is drawn without a skeleton,
    and the command says so. An output folder that is a file is named as such."""
    from posekit.cli import main

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 160, 3), 128, np.uint8))
    result = saliency(predictor, read_image(blank))
    assert not result["pose"].found
    np.testing.assert_array_equal(render(result), render(result, draw_skeleton=False))
    assert main(["explain", str(blank), "--out", str(tmp_path / "b.png")]) == 0
    assert "no person found" in capsys.readouterr().out
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with pytest.raises(PosekitError, match=r"afile: the output's folder must be a folder, and this is a file"):
        run_explain(IMAGE, "posekit-lsp", None, afile / "x.png")


def test_explain_and_the_teacher_read_a_noisy_photo_as_predict_does(tmp_path):
    from posekit.cli import build_parser
    from posekit.explain import run_explain
    from posekit.predict import Predictor

    image = cv2.imread("examples/lsp_im1003.jpg")
    noisy = np.clip(image + np.random.default_rng(5).normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "noisy.png"
    cv2.imwrite(str(path), noisy)
    rgb = np.ascontiguousarray(noisy[..., ::-1])
    out = tmp_path / "sal.png"
    for denoise in (None, False):  # the model's own noise filter, and none
        got = run_explain(path, "posekit-lsp", "left_wrist", out, denoise=denoise)["pose"].keypoints
        assert np.allclose(got, Predictor("posekit-lsp", denoise=denoise).predict(rgb).keypoints, atol=1e-3)
    assert build_parser().parse_args(["explain", str(path), "--out", str(out), "--no-denoise"]).denoise is False
    assert build_parser().parse_args(["data", "teacher", "--out", "t.npz", "--no-denoise"]).denoise is False


def test_explain_errors_name_the_image(tmp_path, capsys):
    """As ``posekit predict``: an error about the image (a box outside it) names the image."""
    from posekit.cli import main

    assert main(["explain", IMAGE, "--box", "5000,5000,20,20", "--out", str(tmp_path / "sal.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"posekit: error: {IMAGE}: box ") and "outside" in err[0], err
    assert not (tmp_path / "sal.png").exists()
