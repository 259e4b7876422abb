import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from posekit import skeleton
from posekit.skeleton import JOINT_NAMES, NUM_JOINTS, idx
from posekit.viz import (
    GT_COLOR,
    PRED_COLOR,
    draw_comparison,
    draw_pose,
    draw_poses,
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


# --- several people, low-score joints, the shared palette -------------------------------------

BIG = KPTS * 2  # on a 400 x 400 image: limbs 2 px wide, joints of radius 4
PANEL = 153  # the legend's panel over black: 60 % white


def _person(kpts=BIG, scores=None, found=True, box=None, **kw):
    return SimpleNamespace(keypoints=kpts, scores=np.ones(NUM_JOINTS) if scores is None else scores,
                           found=found, box=box, **kw)


def _at(img, kpts, name, dx=0, dy=0):
    x, y = kpts[idx(name)]
    return img[int(y) + dy, int(x) + dx]


def _mid(img, kpts, a, b):
    (xa, ya), (xb, yb) = kpts[idx(a)], kpts[idx(b)]
    return img[int((ya + yb) / 2), int((xa + xb) / 2)]


def test_palette_lives_in_skeleton():
    import posekit.viz as viz

    assert viz.SIDE_COLORS is skeleton.SIDE_COLORS
    assert skeleton.SIDE_COLORS == {"left": (30, 144, 255), "right": (255, 110, 0), "center": (255, 215, 0)}
    assert len(set(skeleton.PERSON_COLORS)) == len(skeleton.PERSON_COLORS) >= 8
    assert skeleton.LOW_JOINT_SCORE == 0.3


def test_draw_pose_low_score_joint_is_a_ring_with_dashed_limbs():
    img = np.zeros((400, 400, 3), np.uint8)
    scores = np.ones(NUM_JOINTS)
    scores[idx("left_ankle")] = 0.1
    out = draw_pose(img, BIG, scores=scores)
    x, y = BIG[idx("left_ankle")].astype(int)
    assert not out[y - 1:y + 2, x - 1:x + 2].any()  # hollow: nothing at the centre, not even a limb
    ring = out[y, x + 4].astype(int)  # the ring, anti-aliased, in the side colour
    assert ring[2] > 150 and ring[2] > ring[1] > ring[0]
    assert (_at(out, BIG, "left_knee") == skeleton.SIDE_COLORS["left"]).all()  # a normal joint is filled
    knee = BIG[idx("left_knee")].astype(int)
    dashed = out[knee[1] + 8:y - 8, x].any(axis=1)  # along the knee-ankle limb
    assert dashed.any() and not dashed.all()
    solid = out[int(BIG[idx("left_hip"), 1]) + 8:knee[1] - 8, x].any(axis=1)  # hip-knee: both joints fine
    assert solid.all()
    assert np.array_equal(draw_pose(img, BIG, scores=np.ones(NUM_JOINTS)), draw_pose(img, BIG))
    with pytest.raises(ValueError, match="scores"):
        draw_pose(img, BIG, scores=np.ones(3))


def test_draw_poses_nothing_when_not_found():
    img = np.full((400, 400, 3), 7, np.uint8)
    out = draw_poses(img, [_person(found=False, box=(10, 10, 100, 100))])
    assert np.array_equal(out, img) and out is not img
    assert np.array_equal(draw_poses(img, []), img)


def test_draw_poses_one_person_by_side_with_box_and_legend():
    img = np.zeros((400, 400, 3), np.uint8)
    box = (100.0, 20.0, 200.0, 360.0)
    out = draw_poses(img, [_person(box=box), _person(found=False)], legend=False)
    assert (_mid(out, BIG, "right_knee", "right_ankle") == skeleton.SIDE_COLORS["right"]).all()
    assert (_mid(out, BIG, "left_knee", "left_ankle") == skeleton.SIDE_COLORS["left"]).all()
    assert (_at(out, BIG, "neck") == skeleton.SIDE_COLORS["center"]).all()
    edge = out[200, 99:102].astype(int)  # the box's left side, person 0's colour
    assert np.abs(edge - skeleton.PERSON_COLORS[0]).sum(axis=1).min() < 60
    assert not out[:15, :60].any()
    with_legend = draw_poses(img, [_person(box=box)])
    assert (with_legend[:30, :2] == PANEL).all()  # the legend's see-through white panel in the top-left corner
    assert np.array_equal(with_legend[100:, 100:], out[100:, 100:])  # elsewhere the same drawing


def test_draw_poses_two_people_two_limb_colours():
    img = np.zeros((400, 400, 3), np.uint8)
    second = BIG + [150, 0]
    out = draw_poses(img, [_person(), _person(second)], legend=False)
    c0, c1 = skeleton.PERSON_COLORS[:2]
    assert (_mid(out, BIG, "right_knee", "right_ankle") == c0).all()
    assert (_mid(out, second, "right_knee", "right_ankle") == c1).all()
    assert (_mid(out, second, "left_knee", "left_ankle") == c1).all()
    for k in (BIG, second):  # joints keep their side colours
        assert (_at(out, k, "left_knee") == skeleton.SIDE_COLORS["left"]).all()
        assert (_at(out, k, "right_knee") == skeleton.SIDE_COLORS["right"]).all()
    tagged = draw_poses(img, [_person(person=3), _person(second, person=5)], legend=False)
    assert (_mid(tagged, BIG, "right_knee", "right_ankle") == skeleton.PERSON_COLORS[3]).all()
    one = draw_poses(img, [_person()])
    two = draw_poses(img, [_person(), _person(second)])
    white = lambda im: int((im[:, :5] == PANEL).all(axis=(1, 2)).sum())  # noqa: E731
    assert white(two) > white(one) > 0  # the legend grows a row per person
    with pytest.raises(ValueError, match="box"):
        draw_poses(img, [_person(box=(1, 2, float("nan"), 4))])


def test_legend_never_hides_the_skeleton_and_names_people_by_their_person(monkeypatch):
    """On a small image (229 x 174, as two LSP images side by side) a person in the top-left
    corner stays drawn where the legend is: the legend goes under the drawing and the picture
    shows through its panel. People are labelled by their ``person`` (0, 1, ... as the records)."""
    import posekit.viz as viz

    img = np.full((174, 229, 3), 90, np.uint8)
    corner = KPTS * 0.35  # every joint within the legend's corner
    bare = draw_poses(img, [_person(corner)], legend=False)
    out = draw_poses(img, [_person(corner)])
    for name in JOINT_NAMES:
        assert (_at(out, corner, name) == _at(bare, corner, name)).all(), name
    # the legend goes to the corner holding none of the joints (top-right), never over the person's
    assert (out[1, -2] > img[1, -2]).all() and (out[1, -2] < 255).all() and (out[1, 1] == img[1, 1]).all()
    compared = draw_comparison(img, corner, corner + 1)
    both = draw_pose(draw_pose(img, corner + 1, color=GT_COLOR), corner, color=PRED_COLOR)
    for name in JOINT_NAMES:
        assert (_at(compared, corner, name) == _at(both, corner, name)).all(), name
    seen = []
    monkeypatch.setattr(viz, "_legend", lambda im, entries, points=None: seen.append([e[0] for e in entries]))
    draw_poses(img, [_person(corner, person=0), _person(corner + 60, person=3)])
    assert seen[-1][-2:] == ["person 0", "person 3"]


@pytest.mark.parametrize("size", [(240, 320), (360, 480), (400, 400)])
def test_the_legend_covers_at_most_a_quarter_of_the_width(size):
    """On a small video frame (320 x 240) the key used to cover over a third of the picture."""
    img = np.zeros((*size, 3), np.uint8)
    kp = KPTS * (min(size) / 200)
    out = draw_poses(img, [_person(kp)])
    panel = (out[1] == PANEL).all(axis=1)  # the panel's first row, over black
    assert 0 < panel.sum() <= 0.25 * size[1] + 2, f"{panel.sum()} of {size[1]} columns"


def test_the_legend_takes_the_corner_with_the_fewest_joints():
    """On an LSP-sized photo the key in the top-left corner used to hide the person's head."""
    img = np.full((200, 160, 3), 90, np.uint8)
    brighter = lambda im, ys, xs: bool((im[ys, xs] > 90).all())  # noqa: E731 (under the panel)
    far = KPTS * 0.3 + [100, 130]  # every joint in the bottom-right corner
    out = draw_poses(img, [_person(far)])
    assert brighter(out, 1, 1) and not brighter(out, 198, 158)  # top-left, the first among equals
    head_up = KPTS * 0.3 + [5, 0]  # a small person in the top-left corner
    out = draw_poses(img, [_person(head_up)])
    assert brighter(out, 1, 158) and (out[1, 1] == 90).all()  # top-right
    both_tops = [_person(head_up), _person(head_up + [100, 0])]
    out = draw_poses(img, both_tops)
    assert brighter(out, 198, 1) and (out[1, 1] == 90).all() and (out[1, 158] == 90).all()  # bottom-left
