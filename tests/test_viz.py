import os

import cv2
import numpy as np
import pytest

from posekit.skeleton import JOINT_NAMES, NUM_JOINTS, idx
from posekit.viz import (
    GT_COLOR,
    PRED_COLOR,
    draw_comparison,
    draw_pose,
    make_grid,
    plot_loss_curves,
    saliency_overlay,
    save_rgb,
)

POSE = {
    "head_top": (100, 20), "neck": (100, 50),
    "right_shoulder": (80, 60), "left_shoulder": (120, 60),
    "right_elbow": (70, 90), "left_elbow": (130, 90),
    "right_wrist": (65, 115), "left_wrist": (135, 115),
    "right_hip": (85, 120), "left_hip": (115, 120),
    "right_knee": (85, 150), "left_knee": (115, 150),
    "right_ankle": (85, 180), "left_ankle": (115, 180),
}
KPTS = np.array([POSE[n] for n in JOINT_NAMES], dtype=float)


def px(img, name):
    x, y = POSE[name]
    return img[y, x]


def test_draw_pose_marks_joints_only():
    img = np.zeros((200, 200, 3), np.uint8)
    out = draw_pose(img, KPTS)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not img.any()  # input untouched
    for n in JOINT_NAMES:
        assert px(out, n).any(), n
    assert not out[:10, :10].any() and not out[190:, 190:].any()
    assert not out[:, :40].any()  # far left strip has no joint


def test_draw_pose_mask_and_outside_points():
    img = np.zeros((200, 200, 3), np.uint8)
    mask = np.ones(NUM_JOINTS, bool)
    mask[idx("head_top")] = False
    out = draw_pose(img, KPTS, mask)
    assert not px(out, "head_top").any()
    kp = KPTS.copy()
    kp[idx("left_wrist")] = (1e9, -5e3)
    kp[idx("right_wrist")] = np.nan
    out = draw_pose(img, kp, color=(255, 0, 0))
    assert not out[..., 1:].any() and out[..., 0].any()


def test_draw_comparison_colours():
    img = np.full((200, 200, 3), 128, np.uint8)
    out = draw_comparison(img, KPTS + 40, KPTS)
    assert (out.reshape(-1, 3) == GT_COLOR).all(1).any()
    assert (out.reshape(-1, 3) == PRED_COLOR).all(1).any()


def test_make_grid_shape_and_letterbox():
    imgs = [np.zeros((40, 10, 3), np.uint8)] + [np.zeros((30, 30), np.uint8)] * 4
    grid = make_grid(imgs, ncols=4, cell=64, pad=4)
    assert grid.shape == (2 * 64 + 3 * 4, 4 * 64 + 5 * 4, 3)
    assert (grid[4:68, 4 + 32] == 0).all()  # tall image centred column is black
    assert (grid[4:68, 4:10] == 255).all()  # letterbox margins stay white
    assert (grid[72:, 72:] == 255).all()  # empty cells are white
    with pytest.raises(ValueError):
        make_grid([])


def test_save_rgb_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    path = tmp_path / "a" / "b" / "img.png"
    save_rgb(path, img)
    back = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(back, img)
    assert os.listdir(path.parent) == ["img.png"]
    save_rgb(tmp_path / "img.jpg", img)
    assert cv2.imread(str(tmp_path / "img.jpg")).shape == img.shape
    with pytest.raises(ValueError):
        save_rgb(tmp_path / "img.gif", img)


def test_plot_loss_curves(tmp_path):
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": None if e == 2 else 1.2 / e} for e in range(1, 6)]
    history[-1]["best_epoch"] = 4
    del history[0]["val_loss"]
    path = tmp_path / "plots" / "loss.png"
    plot_loss_curves(history, path, title="run", ylabel="MSE (normalised coords)")
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(path.parent) == ["loss.png"]


def test_saliency_overlay():
    img = np.zeros((50, 60, 3), np.uint8)
    sal = np.zeros((10, 12), np.float32)
    sal[:5] = 1.0
    out = saliency_overlay(img, sal)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out[5], out[45])


def test_atomic_writes_have_normal_permissions(tmp_path):
    import os

    from posekit.utils import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask
