import json
import math

import numpy as np
import pytest

from posekit.metrics import error_breakdown, evaluate_keypoints, lr_oracles, mean_px_error, mse, pck, pcp
from posekit.skeleton import JOINT_NAMES, NUM_JOINTS, PCP_PARTS, idx

# A standing figure in a 100x200 image: torso ||left_shoulder - right_hip|| = ||(30, 40)|| = 50.
POSE = {
    "head_top": (50, 10), "neck": (50, 30),
    "right_shoulder": (35, 40), "left_shoulder": (65, 40),
    "right_elbow": (35, 70), "left_elbow": (65, 70),
    "right_wrist": (35, 100), "left_wrist": (65, 100),
    "right_hip": (35, 80), "left_hip": (65, 80),
    "right_knee": (35, 120), "left_knee": (65, 120),
    "right_ankle": (35, 160), "left_ankle": (65, 160),
}
TORSO = 50.0
SIZE = (100, 200)


def gt1():
    return np.array([[POSE[n] for n in JOINT_NAMES]], dtype=float)


def part(name):
    return [p[0] for p in PCP_PARTS].index(name)


def test_perfect_prediction():
    gt = gt1()
    r = evaluate_keypoints(gt.copy(), gt, [SIZE])
    assert r["pck"] == 1.0 and r["pcp"] == 1.0 and r["mse"] == 0.0 and r["mean_px_error"] == 0.0
    assert all(v == 1.0 for v in r["per_joint_pck"].values())


@pytest.mark.parametrize("shift, ok", [((0.2 * TORSO, 0), True), ((6, 8), True),
                                       ((0.2 * TORSO + 1e-6, 0), False)])
def test_pck_threshold_flip(shift, ok):
    gt = gt1()
    pred = gt.copy()
    j = idx("left_wrist")
    pred[0, j] += shift
    overall, per_joint = pck(pred, gt)
    assert overall == pytest.approx(1.0 if ok else 13 / 14)
    assert per_joint[j] == (1.0 if ok else 0.0)
    assert np.all(np.delete(per_joint, j) == 1.0)


def test_pck_per_joint_two_images_and_thr():
    gt = np.concatenate([gt1(), gt1()])
    pred = gt.copy()
    pred[1, idx("head_top"), 1] -= 20  # 0.4 x torso
    overall, per_joint = pck(pred, gt)
    assert overall == pytest.approx(27 / 28)
    assert per_joint[idx("head_top")] == 0.5
    assert pck(pred, gt, thr=0.4)[0] == 1.0


def test_pck_excludes_images_without_torso():
    gt = np.concatenate([gt1(), gt1()])
    pred = gt.copy()
    pred[1] += 1000  # garbage in image 1 ...
    mask = np.ones((2, NUM_JOINTS), bool)
    mask[1, idx("left_shoulder")] = False  # ... which has no torso, so it is excluded
    assert pck(pred, gt, mask)[0] == 1.0
    gt0 = gt.copy()
    gt0[1, idx("left_shoulder")] = gt0[1, idx("right_hip")]  # zero torso: excluded too
    assert pck(pred, gt0)[0] == 1.0
    overall, per_joint = pck(pred[1:], gt[1:], mask[1:])
    assert math.isnan(overall) and np.isnan(per_joint).all()


def test_pck_per_joint_nan_when_never_annotated():
    gt = gt1()
    mask = np.ones((1, NUM_JOINTS), bool)
    mask[0, idx("left_ankle")] = False
    overall, per_joint = pck(gt, gt, mask)
    assert overall == 1.0 and np.isnan(per_joint[idx("left_ankle")])
    r = evaluate_keypoints(gt, gt, [SIZE], mask)
    assert r["per_joint_pck"]["left_ankle"] is None


@pytest.mark.parametrize("frac, ok", [(0.49, True), (0.51, False)])
def test_pcp_strict_endpoint(frac, ok):
    gt = gt1()
    pred = gt.copy()
    pred[0, idx("right_wrist"), 0] += frac * 30  # right lower arm is 30 px long
    overall, per_part = pcp(pred, gt)
    k = part("right_lower_arm")
    assert per_part[k] == (1.0 if ok else 0.0)
    assert overall == pytest.approx(1.0 if ok else 9 / 10)
    assert np.all(np.delete(per_part, k) == 1.0)


def test_pcp_both_endpoints_needed():
    gt = gt1()
    pred = gt.copy()
    pred[0, idx("head_top"), 1] -= 11  # head is 20 px long: the neck end is fine, this end is not
    assert pcp(pred, gt)[1][part("head")] == 0.0


@pytest.mark.parametrize("dx, ok", [(38, True), (42, False)])
def test_pcp_torso_uses_mid_hip(dx, ok):
    gt = gt1()
    pred = gt.copy()
    pred[0, idx("right_hip"), 0] += dx  # mid-hip moves dx/2; torso (mid-hip to mid-shoulder) is 40 px
    per_part = pcp(pred, gt)[1]
    assert per_part[part("torso")] == (1.0 if ok else 0.0)
    assert per_part[part("right_upper_leg")] == 0.0  # the hip itself is far off its 40 px limb


def test_pcp_mask_excludes_part():
    gt = gt1()
    pred = gt.copy()
    pred[0, idx("left_hip")] = np.nan
    mask = np.ones((1, NUM_JOINTS), bool)
    mask[0, idx("left_hip")] = False
    overall, per_part = pcp(pred, gt, mask)
    assert overall == 1.0
    assert np.isnan(per_part[part("torso")]) and np.isnan(per_part[part("left_upper_leg")])
    assert np.sum(~np.isnan(per_part)) == 8


def test_mse_known_offset():
    gt = gt1()
    pred = gt.copy()
    pred[..., 0] += 10  # x off by 10 px in a 100 px wide image
    assert mse(pred, gt, [SIZE]) == pytest.approx((0.1 ** 2 + 0) / 2)
    pred = gt.copy()
    pred[0, 0, 1] += 20  # one joint, y off 20 px of 200
    assert mse(pred, gt, [SIZE]) == pytest.approx(0.1 ** 2 / (2 * NUM_JOINTS))
    r = evaluate_keypoints(pred, gt, [SIZE])
    assert r["mse_px96"] == pytest.approx(r["mse"] * 96 ** 2)


def test_mean_px_error_and_mask():
    gt = gt1()
    pred = gt.copy()
    pred[0, :, 0] += 3
    pred[0, :, 1] += 4
    pred[0, idx("neck")] = [1e6, np.inf]
    mask = np.ones((1, NUM_JOINTS), bool)
    mask[0, idx("neck")] = False
    assert mean_px_error(pred, gt, mask) == pytest.approx(5.0)
    assert mse(pred, gt, [SIZE], mask) == pytest.approx((0.03 ** 2 + 0.02 ** 2) / 2)


def test_invalid_inputs_raise():
    gt = gt1()
    bad = gt.copy()
    bad[0, idx("neck"), 0] = np.nan
    with pytest.raises(ValueError, match="pred"):
        pck(bad, gt)
    with pytest.raises(ValueError, match="gt"):
        evaluate_keypoints(gt, bad, [SIZE])
    with pytest.raises(ValueError, match="shape"):
        pck(gt[:, :13], gt)
    with pytest.raises(ValueError, match="mask"):
        pck(gt, gt, np.ones((1, 13), bool))
    with pytest.raises(ValueError, match="sizes"):
        mse(gt, gt, [(0, 10)])


def test_evaluate_keypoints_json():
    rng = np.random.default_rng(0)
    gt = np.concatenate([gt1()] * 3)
    pred = gt + rng.normal(0, 8, gt.shape)
    r = evaluate_keypoints(pred, gt, [SIZE] * 3)
    assert set(r) == {"n", "pck", "pcp", "mse", "mse_px96", "mean_px_error",
                      "per_joint_pck", "per_part_pcp", "pck_curve", "errors", "per_joint_errors"}
    assert json.loads(json.dumps(r, allow_nan=False)) == r
    assert r["n"] == 3 and 0 <= r["pck"] <= 1 and 0 <= r["pcp"] <= 1
    assert list(r["per_joint_pck"]) == list(JOINT_NAMES)
    assert list(r["per_part_pcp"]) == [p[0] for p in PCP_PARTS]
    curve = r["pck_curve"]
    assert list(curve) == ["0.05", "0.1", "0.15", "0.2", "0.25", "0.3", "0.35", "0.4", "0.45", "0.5"]
    assert curve["0.2"] == r["pck"]
    assert all(a <= b for a, b in zip(list(curve.values()), list(curve.values())[1:]))


def test_error_breakdown_kinds():
    """Each counted joint is exactly one of good / jitter / inversion / miss (torso 50 px)."""
    gt = np.concatenate([gt1()] * 2)
    pred = gt.copy()
    lw, rw, la, ra = idx("left_wrist"), idx("right_wrist"), idx("left_ankle"), idx("right_ankle")
    pred[0, lw] = gt[0, rw] + (3, 0)  # on the other wrist (30 px away from its own): inversion
    pred[0, la] += (0, 20)  # 0.4 torso off: jitter
    pred[0, idx("head_top")] += (0, 60)  # 1.2 torso off, near nothing: miss
    pred[1, ra] += (9, 0)  # 0.18 torso: good
    pred[1, idx("left_elbow")] = (48, 70)  # 0.34 torso from its own truth, 0.26 from the right elbow's: inversion
    mask = np.ones((2, NUM_JOINTS), bool)
    mask[1, idx("neck")] = False  # unannotated: not counted
    overall, per_joint = error_breakdown(pred, gt, mask)
    counted = 2 * NUM_JOINTS - 1
    assert overall == pytest.approx({"good": (counted - 4) / counted, "jitter": 1 / counted,
                                     "inversion": 2 / counted, "miss": 1 / counted})
    assert overall["good"] == pytest.approx(pck(pred, gt, mask)[0])
    assert per_joint["inversion"]["left_wrist"] == 0.5 and per_joint["inversion"]["right_wrist"] == 0
    assert per_joint["jitter"]["left_ankle"] == 0.5 and per_joint["miss"]["head_top"] == 0.5
    assert per_joint["inversion"]["left_elbow"] == 0.5
    assert per_joint["good"]["neck"] == 1.0
    for name in JOINT_NAMES:  # the kinds partition every joint
        assert sum(per_joint[k][name] for k in per_joint) == pytest.approx(1.0)
    # a joint without a left/right counterpart is never an inversion, however close to itself
    pred[0, idx("neck")] = gt[0, idx("neck")] + (0, 40)
    assert error_breakdown(pred, gt, mask)[1]["inversion"]["neck"] == 0


def test_lr_oracles():
    """The left/right oracles: swapping a whole pose fixes a person seen facing the wrong way;
    deciding arms and legs apart also fixes one swapped leg."""
    from posekit.skeleton import FLIP_PERM

    gt = np.concatenate([gt1()] * 2)
    pred = gt.copy()
    pred[0] = gt[0, FLIP_PERM]  # facing the wrong way: every left/right joint swapped
    legs = [idx(f"{s}_{j}") for s in ("left", "right") for j in ("hip", "knee", "ankle")]
    pred[1, legs] = gt[1, legs[3:] + legs[:3]]  # only the legs swapped
    mask = np.ones((2, NUM_JOINTS), bool)
    r = lr_oracles(pred, gt, mask)
    assert r["pck"] < 0.5
    assert r["images_swapped"] == 1 and r["pck_whole_pose_lr_oracle"] == pytest.approx((14 + 8) / 28)
    assert r["chains_swapped"] == 3 and r["pck_arms_legs_lr_oracle"] == 1.0


def test_oks_is_cocos_formula():
    from posekit.metrics import keypoint_similarity, oks
    from posekit.skeleton import OKS_SIGMAS

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, (14, 2))
    assert oks(a, a, [400.0])[0, 0] == pytest.approx(1.0)
    b = a + [3.0, 4.0]  # every joint 5 px away
    want = np.exp(-25.0 / (2 * 400.0 * (2 * OKS_SIGMAS) ** 2))
    np.testing.assert_allclose(keypoint_similarity(b, a, [400.0])[0, 0], want)
    assert oks(b, a, [400.0])[0, 0] == pytest.approx(want.mean())
    far = np.stack([a, b, a + 1000])
    assert oks(far, a, [400.0]).shape == (3, 1) and oks(far, a, [400.0])[2, 0] < 1e-6
    c = a.copy()
    c[0] = np.nan
    assert keypoint_similarity(c, a, [400.0])[0, 0, 0] == 0.0  # a missing joint counts 0


def test_pose_nms_drops_a_second_pose_of_one_person_and_a_mix_of_two():
    from posekit.metrics import oks, pose_nms

    rng = np.random.default_rng(1)
    a = rng.uniform(0, 100, (14, 2))
    b = a + [300.0, 0.0]  # another person, far away
    twice = a + 1.0  # the first person posed again from a second box
    mix = np.concatenate([a[:7], b[7:]])  # a box across both: half the joints of each
    kp, areas = np.stack([a, b, twice, mix]), [1e4] * 4
    assert pose_nms(kp, areas, 0.3) == [0, 1]
    assert oks(mix, kp[:2], areas[:2]).max() == pytest.approx(0.5, abs=1e-6)  # like neither person alone...
    assert pose_nms(kp, areas, 0.6) == [0, 1]  # ...but its joints are all theirs: still dropped
    assert pose_nms(kp[[0, 1]], areas[:2], 0.3) == [0, 1]  # different people are kept
    assert pose_nms(kp[[3, 0, 1]], areas[:3], 0.3) == [0]  # order decides: the first kept is the best
    assert pose_nms(np.zeros((0, 14, 2)), [], 0.3) == []
