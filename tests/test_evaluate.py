"""Predictions map back to original-image pixels exactly: an oracle scores perfectly."""
import numpy as np
import pytest
from torch.utils.data import DataLoader

from posekit.codecs import build_codec, to_unit
from posekit.data.dataset import PoseLandmarksDataset
from posekit.data.lsp import load_sets
from posekit.data.synthetic import make_synthetic_set
from posekit.data.transforms import PoseTransform
from posekit.inference import predict_loader
from posekit.metrics import evaluate_keypoints
from posekit.tta import to_original


class _Oracle:
    """Stands in for a model: returns the encoded true keypoints of the batch it is given."""

    def __init__(self, codec):
        self.codec, self.batches = codec, []

    def eval(self):
        return self

    def __call__(self, x):
        return to_unit(self.batches.pop(0), self.codec.input_size).reshape(len(x), -1)


def _oracle_metrics(sets, ids, mode, size=40):
    ds = PoseLandmarksDataset(sets, ids, PoseTransform(size, mode))
    codec = build_codec("regression", size)
    oracle = _Oracle(codec)
    loader = DataLoader(ds, batch_size=4)
    oracle.batches = [b["keypoints"] for b in loader]
    res = predict_loader(oracle, codec, loader, device=__import__("torch").device("cpu"))
    return evaluate_keypoints(res["pred"], res["gt"], res["sizes"], res["mask"]), res


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_oracle_scores_perfectly_on_non_square_images(tmp_path, mode):
    make_synthetic_set(tmp_path / "lsp", 10, "lsp", size=(90, 50))  # wide images
    sets = load_sets(tmp_path, ["lsp"])
    m, res = _oracle_metrics(sets, [sets["lsp"].sample_id(i) for i in range(10)], mode)
    assert m["pck"] == 1.0 and m["pcp"] == 1.0
    assert m["mse"] < 1e-10 and m["mean_px_error"] < 1e-4
    np.testing.assert_allclose(res["pred"], sets["lsp"].keypoints, atol=1e-4)


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_oracle_on_real_lsp_test_images(real_root, mode):
    sets = load_sets(real_root, ["lsp"])
    ids = [sets["lsp"].sample_id(i) for i in range(1000, 1040)]
    m, _ = _oracle_metrics(sets, ids, mode, size=96)
    assert m["pck"] == 1.0 and m["mean_px_error"] < 1e-3


def test_to_original_inverts_each_samples_affine():
    import torch

    m = torch.tensor([[[2.0, 0.0, 3.0], [0.0, 0.5, -1.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=torch.float64)
    orig = torch.tensor([[[1.0, 2.0]], [[5.0, 6.0]]], dtype=torch.float64)
    inp = torch.einsum("bij,bkj->bki", m[:, :, :2], orig) + m[:, None, :, 2]
    assert torch.allclose(to_original(inp, m), orig)


def test_markdown_table_shows_error_kinds_per_joint():
    """evaluate's table: PCK@0.2 and the error kinds per joint, plus an "all" row; metrics from
    before the error kinds (no per_joint_errors) still print, with PCK alone."""
    from posekit.report import markdown_table
    from posekit.skeleton import FLIP_PERM, JOINT_NAMES, idx

    gt = np.array([[[50 + 10 * (j % 2), 10 + 12 * j] for j in range(len(JOINT_NAMES))]], float)
    pred = gt.copy()
    pred[0, idx("left_wrist")] = gt[0, FLIP_PERM[idx("left_wrist")]]  # on the right wrist
    m = {**evaluate_keypoints(pred, gt, [(120, 200)]), "model": "m", "split": "s"}
    lines = markdown_table(m).splitlines()
    assert "| joint | PCK@0.2 | jitter | inversion | miss |" in lines
    assert "| left_wrist | 0.000 | 0.000 | 1.000 | 0.000 |" in lines
    assert f"| all | {m['pck']:.3f} | 0.000 | {1 / 14:.3f} | 0.000 |" in lines
    old = {k: v for k, v in m.items() if k not in ("errors", "per_joint_errors")}
    assert "| left_wrist | 0.000 |" in markdown_table(old).splitlines()
