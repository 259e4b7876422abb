"""DeepPose cascade (issue 5): crop geometry, identity stage, error sampler, a short training run."""
import json

import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from posekit.cli import main
from posekit.codecs import from_unit
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
    """A stage network whose output row j always says 'joint j is at this place in the crop':
    (0.5, 0.5) + step * j, so each joint's answer is told apart from the others'."""

    def __init__(self, step=(0.0, 0.0)):
        super().__init__()
        j = torch.arange(NUM_JOINTS, dtype=torch.float32)[:, None]
        self.rows = (0.5 + j * torch.tensor(step, dtype=torch.float32)).reshape(-1)

    def forward(self, x):
        return self.rows.repeat(len(x), 1)


def test_zero_displacement_stage_returns_stage_one():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (120, 90, 3), dtype=np.uint8) for _ in range(3)]
    kp1 = rng.uniform(10, 80, (3, NUM_JOINTS, 2))
    ests = run_cascade([Stage(_Fixed(), 32, 1.0), Stage(_Fixed(), 48, 0.5)], images, kp1)
    assert len(ests) == 3
    for e in ests[1:]:
        np.testing.assert_allclose(e, kp1, atol=1e-9)
    # a stage whose row j says "j/100 of a crop to the right" moves joint j by j/100 x its crop side
    moved = run_cascade([Stage(_Fixed((0.01, 0.0)), 32, 2.0)], images, kp1)[-1]
    side = 2.0 * pose_diameter(kp1)
    want = side[:, None] * np.arange(NUM_JOINTS)[None, :] / 100
    np.testing.assert_allclose(moved[..., 0] - kp1[..., 0], want, atol=1e-4)  # float32 outputs
    np.testing.assert_allclose(moved[..., 1], kp1[..., 1], atol=1e-6)


def test_heatmap_stage_recovers_a_known_displacement():
    # a fully convolutional stage read by the heatmap codec: map j of crop j peaks where joint j
    # lies in the crop, and refinement moves the estimate there exactly (to DARK's precision)
    from posekit.codecs import build_codec

    size = 64
    codec = build_codec({"name": "heatmap", "stride": 4, "sigma": 1.5}, size)
    rng = np.random.default_rng(5)
    img = np.zeros((300, 300, 3), np.uint8)
    kp1 = rng.uniform(100, 200, (1, NUM_JOINTS, 2))
    side = 2.0 * float(pose_diameter(kp1[0]))
    truth = kp1[0] + rng.uniform(-0.3, 0.3, (NUM_JOINTS, 2)) * side
    crop_pts = np.stack([from_unit(joint_target(truth[j], kp1[0, j], side, size), size) for j in range(NUM_JOINTS)])

    class _Maps(torch.nn.Module):
        def forward(self, x):  # crop k (joint k) gets a map peaking at the truth's place in it
            kp = torch.zeros(len(x), NUM_JOINTS, 2)
            for k in range(len(x)):
                kp[k, :] = torch.as_tensor(crop_pts[k % NUM_JOINTS], dtype=torch.float32)
            return codec.encode(kp, torch.ones(len(x), NUM_JOINTS))[0].reshape(len(x), NUM_JOINTS, size // 4, size // 4)

    moved = run_cascade([Stage(_Maps(), size, 2.0, codec)], [img], kp1)[-1][0]
    assert np.abs(moved - truth).max() < 0.02 * side


def test_subnormal_weights_are_flushed_on_load():
    # Adam's weight decay leaves subnormal weights, which slow CPU convolutions several times
    from posekit.checkpoint import flush_denormals

    tiny = torch.finfo(torch.float32).tiny
    w = torch.tensor([1e-40, -1e-42, tiny, 0.5, -2.0], dtype=torch.float32)
    out = flush_denormals({"w": w, "n": torch.tensor(3)})
    assert out["w"].tolist() == [0.0, 0.0, tiny, 0.5, -2.0] and out["n"].item() == 3
    assert w[0].item() != 0  # the caller's tensors are left alone


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


def test_error_fit_leaves_out_misses_beyond_the_crops_reach():
    # 10% gross misses (20 diameters away) swell the plain fit; with reach=1 they are left out
    rng = np.random.default_rng(4)
    n = 5000
    cov = np.array([[0.02, 0.0], [0.0, 0.01]])
    est = np.tile(rng.uniform(0, 100, (1, NUM_JOINTS, 2)), (n, 1, 1))
    est[:, JOINT_INDEX["left_shoulder"]] = (0, 0)
    est[:, JOINT_INDEX["right_hip"]] = (0, 100)
    err = rng.multivariate_normal([0, 0], cov, size=(n, NUM_JOINTS))
    miss = rng.random((n, NUM_JOINTS)) < 0.1
    err[miss] = 20.0
    gt = est + err * 100
    mask = np.ones((n, NUM_JOINTS), bool)
    plain = ErrorModel.fit(gt, est, mask)
    assert plain.cov[5, 0, 0] > 10 * cov[0, 0]
    robust = ErrorModel.fit(gt, est, mask, reach=1.0)
    np.testing.assert_allclose(robust.cov[5], cov, atol=0.002)
    np.testing.assert_allclose(robust.excluded, miss.mean(0), atol=1e-9)
    assert plain.excluded.max() == 0


def test_cascade_trains_and_evaluates_per_stage(synth_root, tmp_path, capsys, monkeypatch):
    import posekit.cascade_task as cascade_task
    from posekit.checkpoint import read_checkpoint

    reaches = []
    fit = ErrorModel.fit.__func__

    def spy(cls, gt, est, mask, reach=None):
        reaches.append(reach)
        return fit(cls, gt, est, mask, reach=reach)

    monkeypatch.setattr(cascade_task.ErrorModel, "fit", classmethod(spy))
    s1 = tmp_path / "s1"
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(s1), "--epochs", "2", "--no-progress",
                 *tiny_overrides(synth_root)]) == 0
    out = tmp_path / "cas"
    over = [o for o in tiny_overrides(synth_root) if not o.startswith("model.")]
    rc = main(["train", "--config", "configs/paper_cascade.yaml", "--out", str(out), "--no-progress", *over,
               f"cascade.stage1={s1}", "train.epochs=3", "train.lr=0.003", "cascade.joints_per_image=14",
               "cascade.stages=[{sigma: 1.5, input_size: 32, model: {name: poster_cnn, width: 4}}]"])
    assert rc == 0
    # the stage trains through the one training loop, in its own run folder
    hist = json.loads((out / "stage2" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert {"train_loss", "val_loss", "val_pck_before", "val_pck"} <= set(hist[0])
    cas = read_checkpoint(out / "last.pt")
    assert [h["stage"] for h in cas["cascade"]["history"]] == [2]
    best = read_checkpoint(out / "stage2" / "best.pt")
    assert cas["cascade"]["history"][0]["history"] == best["history"]
    assert cas["cascade"]["stages"][0]["epoch"] == best["epoch"]
    # the error model is fitted within the crop's reach: error_reach (1.0) x sigma (1.5) / 2
    assert reaches == [pytest.approx(0.75)]
    assert "left out beyond the crop's reach" in capsys.readouterr().out
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
    from posekit.models.precision import Bf16Network

    assert isinstance(Predictor(str(out), precision="bf16").stages[0].net, Bf16Network)  # the stages too
    assert not isinstance(Predictor(str(out), precision="fp32").stages[0].net, Bf16Network)
    from posekit.data.lsp import load_sets
    from posekit.metrics import pck

    lsp = load_sets(synth_root, ["lsp"])["lsp"]
    test = list(range(20, 40))
    poses = p.predict_batch([read_image(lsp.image_paths[i]) for i in test])
    pred = np.stack([q.keypoints for q in poses])
    assert pck(pred, lsp.keypoints[test], lsp.annotated[test])[0] == pytest.approx(m["pck"], abs=1e-9)
    assert main(["evaluate", "--model", str(s1), "--data", str(synth_root), "--per-stage", "--json"]) == 2
    assert "needs a cascade checkpoint" in capsys.readouterr().err
    # a cascade's stages were fitted to first-look estimates: no second look, asked for or inherited
    assert main(["evaluate", "--model", str(out), "--data", str(synth_root), "--refine", "0.1", "--json"]) == 2
    assert "refinement crops do not apply to it" in capsys.readouterr().err
    assert Predictor(str(out), refine=None).refine is None
    # resuming a finished cascade trains nothing and writes nothing: its stage run and its own
    # checkpoints are left untouched
    before = {f: (out / f).read_bytes() for f in ("stage2/last.pt", "stage2/best.pt", "stage2/history.json",
                                                  "last.pt", "best.pt")}
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert {f: (out / f).read_bytes() for f in before} == before
    assert "finished, every stage's run trained (raise --epochs to train on); nothing to resume" in capsys.readouterr().out
    again = read_checkpoint(out / "last.pt")
    for name, v in cas["cascade"]["stages"][0]["state"].items():
        assert torch.equal(again["cascade"]["stages"][0]["state"][name], v), name
    capsys.readouterr()
    # what a cascade cannot do is refused in one line
    assert main(["export", "--model", str(out), "--onnx", str(tmp_path / "c.onnx")]) == 2
    assert "torch backend" in capsys.readouterr().err
    assert main(["train", "--config", "configs/paper_cascade.yaml", "--out", str(tmp_path / "x"), *over,
                 "cascade.stage1=null"]) == 2
    assert "cascade.stages needs cascade.stage1" in capsys.readouterr().err
    # a heatmap stage (fully convolutional net, heatmap codec) trains and evaluates the same way
    hm = tmp_path / "cas_hm"
    rc = main(["train", "--config", "configs/paper_cascade.yaml", "--out", str(hm), "--no-progress", *over,
               f"cascade.stage1={s1}", "train.epochs=2", "train.lr=0.003", "cascade.joints_per_image=14",
               "cascade.stages=[{sigma: 1.5, input_size: 32, codec: {name: heatmap, stride: 4, sigma: 1.0}, "
               "model: {name: resnet_pose, width: 8, depths: [1, 1, 1, 1], neck: 16}}]"])
    assert rc == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(hm), "--data", str(synth_root), "--split", "lsp-test", "--json",
                 "--per-stage"]) == 0
    mh = json.loads(capsys.readouterr().out)
    assert mh["stages"][0]["pck"] == pytest.approx(m["stages"][0]["pck"]) and len(mh["stages"]) == 2
    # a codec that does not fit the stage's model is refused in one line
    assert main(["train", "--config", "configs/paper_cascade.yaml", "--out", str(tmp_path / "y"), *over,
                 f"cascade.stage1={s1}", "cascade.stages=[{sigma: 1.5, input_size: 32, codec: heatmap, "
                 "model: {name: poster_cnn, width: 4}}]"]) == 2
    assert "the heatmap codec needs a heatmap model" in capsys.readouterr().err
    # bad stage codecs and a bad error_reach are refused in one line, naming the problem
    stage = "cascade.stages=[{sigma: 1.5, input_size: 32, model: {name: poster_cnn, width: 4}, codec: %s}]"
    for codec, msg in (("{stride: 4}", "'cascade.stages[0].codec.name': Field required"),
                       ("nope", "unknown codec 'nope'")):
        assert main(["train", "--config", "configs/paper_cascade.yaml", "--out", str(tmp_path / "z"), *over,
                     f"cascade.stage1={s1}", stage % codec]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert main(["train", "--config", "configs/paper_cascade.yaml", "--out", str(tmp_path / "z"), *over,
                 f"cascade.stage1={s1}", "cascade.error_reach=-1"]) == 2
    assert "'cascade.error_reach': Input should be greater than 0, got -1" in capsys.readouterr().err


@pytest.mark.slow
def test_cascade_stage_honours_train_keys(synth_root, tmp_path):
    """A stage trains through the one loop under the cascade recipe's ``train.*``: optimiser and
    its momentum, learning rate and schedule, weight average, snapshots and early stopping."""
    from posekit.checkpoint import read_checkpoint

    s1 = tmp_path / "s1"
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(s1), "--epochs", "1", "--no-progress",
                 *tiny_overrides(synth_root)]) == 0
    out = tmp_path / "cas"
    over = [o for o in tiny_overrides(synth_root) if not o.startswith(("model.", "train.optimizer", "train.lr"))]
    assert main(["train", "--config", "configs/paper_cascade.yaml", "--out", str(out), "--no-progress", *over,
                 f"cascade.stage1={s1}", "cascade.joints_per_image=14",
                 "cascade.stages=[{sigma: 1.5, input_size: 32, model: {name: poster_cnn, width: 4}}]",
                 "train.epochs=4", "train.optimizer=sgd", "train.momentum=0.7", "train.lr=0.002",
                 "train.scheduler=step", "train.step_size=1", "train.gamma=0.5", "train.ema=0.9",
                 "train.save_every=2", "train.grad_clip=1.0", "train.early_stopping_patience=10"]) == 0
    stage = out / "stage2"
    ck = read_checkpoint(stage / "last.pt")
    group = ck["optimizer"]["param_groups"][0]
    assert group["momentum"] == 0.7 and "betas" not in group  # SGD with the recipe's momentum
    assert [round(h["lr"], 6) for h in ck["history"]] == [0.002, 0.001, 0.0005, 0.00025]  # the step schedule
    assert ck["ema_updates"] > 0 and "train_model" in ck  # the averaged weights are what ships
    assert sorted(p.name for p in stage.glob("epoch_*.pt")) == ["epoch_002.pt", "epoch_004.pt"]
