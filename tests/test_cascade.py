"""DeepPose cascade (issue 5): crop geometry, identity stage, error sampler, a short training run."""
import json

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from posekit.cli import main
from posekit.data.images import read_image
from posekit.models.cascade import (
    ErrorModel,
    Stage,
    crop_matrix,
    joint_from_output,
    joint_target,
    pose_diameter,
    run_cascade,
)
from posekit.skeleton import JOINT_INDEX, NUM_JOINTS


def test_crop_displacement_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        centre = rng.uniform(0, 500, 2)
        side, size = rng.uniform(20, 300), int(rng.choice([32, 64, 96]))
        shift = rng.uniform(-0.4, 0.4, 2)  # a known displacement, in crop units
        gt = centre + shift * side
        t = joint_target(gt, centre, side, size)
        np.testing.assert_allclose(t - 0.5, shift, atol=1e-9)  # displacement from the crop centre
        np.testing.assert_allclose(joint_from_output(t, centre, side, size), gt, atol=1e-9)
    # the crop's centre pixel is the estimate itself: (S - 1) / 2 in crop pixels
    m = crop_matrix(np.array([10.0, 20.0]), 40.0, 64)
    np.testing.assert_allclose(m @ np.array([10.0, 20.0, 1.0]), [31.5, 31.5])


def test_pose_diameter_is_the_torso_diagonal():
    kp = np.zeros((NUM_JOINTS, 2))
    kp[:, 0] = np.linspace(0, 10, NUM_JOINTS)  # a small spread
    kp[JOINT_INDEX["left_shoulder"]] = (0, 0)
    kp[JOINT_INDEX["right_hip"]] = (30, 40)
    assert pose_diameter(kp) == pytest.approx(50.0)
    collapsed = np.zeros((NUM_JOINTS, 2))
    collapsed[0] = (100, 0)
    assert pose_diameter(collapsed) == pytest.approx(25.0)  # floored at a quarter of the extent


class _Fixed(torch.nn.Module):
    """A stage network that always says 'the joint is at this normalised place in the crop'."""

    def __init__(self, where=(0.5, 0.5)):
        super().__init__()
        self.where = torch.tensor(where, dtype=torch.float32)

    def forward(self, x):
        return self.where.repeat(len(x), NUM_JOINTS)


def test_zero_displacement_stage_returns_stage_one():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (120, 90, 3), dtype=np.uint8) for _ in range(3)]
    kp1 = rng.uniform(10, 80, (3, NUM_JOINTS, 2))
    ests = run_cascade([Stage(_Fixed(), 32, 1.0), Stage(_Fixed(), 48, 0.5)], images, kp1)
    assert len(ests) == 3
    for e in ests[1:]:
        np.testing.assert_allclose(e, kp1, atol=1e-9)
    # and a stage that says "a quarter crop to the right" moves every joint by side / 4
    moved = run_cascade([Stage(_Fixed((0.75, 0.5)), 32, 2.0)], images, kp1)[-1]
    side = 2.0 * pose_diameter(kp1)
    np.testing.assert_allclose(moved[..., 0] - kp1[..., 0], np.broadcast_to(side[:, None] / 4, (3, NUM_JOINTS)), atol=1e-6)
    np.testing.assert_allclose(moved[..., 1], kp1[..., 1], atol=1e-6)


def test_error_sampler_reproduces_the_covariance():
    rng = np.random.default_rng(2)
    n = 20000
    mean = np.array([0.05, -0.02])
    cov = np.array([[0.04, 0.012], [0.012, 0.01]])
    est = np.tile(rng.uniform(0, 100, (1, NUM_JOINTS, 2)), (n, 1, 1))
    est[:, JOINT_INDEX["left_shoulder"]] = (0, 0)
    est[:, JOINT_INDEX["right_hip"]] = (0, 100)  # diameter 100 for every sample
    err = rng.multivariate_normal(mean, cov, size=(n, NUM_JOINTS))
    gt = est + err * 100
    em = ErrorModel.fit(gt, est, np.ones((n, NUM_JOINTS), bool))
    np.testing.assert_allclose(em.mean[3], mean, atol=0.005)
    np.testing.assert_allclose(em.cov[3], cov, atol=0.002)
    draws = em.sample(np.full(n, 3), np.random.default_rng(3))
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.005)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), cov, atol=0.002)
    em2 = ErrorModel.from_state(json.loads(json.dumps(em.state())))
    np.testing.assert_allclose(em2.cov, em.cov)


def test_cascade_trains_and_evaluates_per_stage(synth_root, tmp_path, capsys):
    s1 = tmp_path / "s1"
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(s1), "--epochs", "2", "--no-progress",
                 *tiny_overrides(synth_root)]) == 0
    out = tmp_path / "cas"
    over = [o for o in tiny_overrides(synth_root) if not o.startswith("model.")]
    rc = main(["train", "--config", "configs/paper_cascade.yaml", "--out", str(out), "--no-progress", *over,
               f"cascade.stage1={s1}", "train.epochs=3", "train.lr=0.003", "cascade.joints_per_image=14",
               "cascade.stages=[{sigma: 1.5, input_size: 32, model: {name: poster_cnn, width: 4}}]"])
    assert rc == 0
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[-1]["train_loss"] < hist[0]["train_loss"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(synth_root), "--split", "lsp-test", "--json",
                 "--per-stage"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in m["stages"]] == [1, 2]
    assert set(m["stages"][0]) >= {"pck", "pcp", "per_joint_pck"}
    assert m["pck"] == m["stages"][-1]["pck"] and "cascade" in m["model"]
    # stage 1 alone, evaluated from its own checkpoint, is the cascade's stage 1
    assert main(["evaluate", "--model", str(s1), "--data", str(synth_root), "--split", "lsp-test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pck"] == pytest.approx(m["stages"][0]["pck"])
    # prediction takes the cascade like any model and agrees with evaluation's last stage
    from posekit import Predictor

    p = Predictor(str(out))
    assert len(p.stages) == 1
    img = read_image(synth_root / "lsp" / "images" / "im0040.jpg")
    pose = p.predict(img)
    assert pose.keypoints.shape == (14, 2) and np.isfinite(pose.keypoints).all()
    assert main(["evaluate", "--model", str(s1), "--data", str(synth_root), "--per-stage", "--json"]) == 2
    assert "needs a cascade checkpoint" in capsys.readouterr().err
