"""Distillation: the heatmap codec's soft targets, the teacher cache and a student run."""
import numpy as np
import pytest
import torch
from conftest import tiny_overrides

from posekit.codecs import build_codec


def test_soft_targets_mix_teacher_and_labels():
    """Both annotated: the labels' Gaussian and the teacher's mixed at the weight; only the
    teacher: its Gaussian at the weight; only the labels, or weight 0: the labels alone."""
    c = build_codec({"name": "heatmap", "stride": 4, "sigma": 2.0}, 64)
    kp = torch.tensor([[[20.0, 20.0], [40.0, 30.0], [10.0, 50.0]]])
    t = torch.tensor([[[24.0, 20.0], [30.0, 40.0], [12.0, 50.0]]])
    mask, tmask = torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    labels, lw = c.encode(kp, mask)
    teacher, _ = c.encode(t, torch.ones(1, 3))
    hm, w = c.encode(kp, mask, t, tmask, teacher_weight=0.25)
    torch.testing.assert_close(hm[0, 0], 0.75 * labels[0, 0] + 0.25 * teacher[0, 0])
    torch.testing.assert_close(hm[0, 1], teacher[0, 1])
    torch.testing.assert_close(hm[0, 2], labels[0, 2])
    assert w.tolist() == [[1.0, 0.25, 1.0]] and lw.tolist() == [[1.0, 0.0, 1.0]]
    same, w0 = c.encode(kp, mask, t, tmask, teacher_weight=0.0)
    torch.testing.assert_close(same, labels)
    assert w0.tolist() == lw.tolist()


@pytest.mark.slow
def test_teacher_cache_and_a_student_run(synth_root, tmp_path, capsys):
    """`posekit data teacher` caches a model's joints for every training and validation image
    (in original pixels, as the model predicts on the framed image), and a recipe with
    distill.teacher trains on it; a file that is not a teacher cache is refused in one line."""
    from posekit.cli import main
    from posekit.distill import load_teacher

    over = [o for o in tiny_overrides(synth_root) if not o.startswith(("model.", "data.input_size"))]
    net = ["data.input_size=64", "model.width=8", "model.depths=[1,1,1,1]", "model.neck=16"]
    assert main(["train", "--config", "configs/release.yaml", "--out", str(tmp_path / "t"), "--epochs", "1",
                 "--no-progress", *over, *net]) == 0
    cache = tmp_path / "teacher.npz"
    assert main(["data", "teacher", "--model", str(tmp_path / "t"), "--data", str(synth_root), "--out", str(cache),
                 "--refine", "0.1", "--refine-weight", "0.2", "--precision", "fp32", "--no-progress"]) == 0
    assert "training and validation images" in capsys.readouterr().out
    meta = __import__("json").loads(str(np.load(cache)["meta"]))
    assert meta["precision"] == "fp32" and meta["refine"] == [0.1]  # the teacher's arithmetic is the caller's, and recorded
    got = load_teacher(cache)
    split = __import__("json").loads((tmp_path / "t" / "split.json").read_text())
    assert set(got) == set(split["train"]) | set(split["val"])
    kp, sc = next(iter(got.values()))
    assert kp.shape == (14, 2) and sc.shape == (14,) and np.isfinite(kp).all()
    assert main(["train", "--config", "configs/release.yaml", "--out", str(tmp_path / "s"), "--epochs", "1",
                 "--no-progress", *over, *net, f"distill.teacher={cache}", "distill.weight=0.5"]) == 0
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    assert main(["train", "--config", "configs/release.yaml", "--out", str(tmp_path / "x"), "--epochs", "1",
                 "--no-progress", *over, *net, f"distill.teacher={tmp_path / 'other.npz'}"]) == 2
    err = capsys.readouterr().err
    assert "other.npz" in err and "teacher" in err and "Traceback" not in err
