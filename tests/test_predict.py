"""The Python API and `posekit predict` on images and folders."""
import json
import shutil

import numpy as np
import pytest

from posekit.cli import main
from posekit.data.images import read_image
from posekit.predict import Predictor
from posekit.skeleton import JOINT_NAMES


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, synth_root):
    from conftest import tiny_overrides

    out = tmp_path_factory.mktemp("p") / "run"
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(out), "--epochs", "1", "--no-progress",
                 *tiny_overrides(synth_root, **{"data.resize_mode": "letterbox"})]) == 0
    return out


def test_predictor_api(ckpt):
    p = Predictor(str(ckpt))
    path = "examples/lsp_im1003.jpg"
    a = p.predict(path)
    img = read_image(path)
    b = p.predict(img)
    assert a.keypoints.shape == (14, 2) and a.scores.shape == (14,) and a.names == JOINT_NAMES
    np.testing.assert_allclose(a.keypoints, b.keypoints)
    assert (a.width, a.height) == (img.shape[1], img.shape[0])
    # a box equal to the whole (square-padded) image gives the letterbox answer
    h, w = img.shape[:2]
    c = p.predict(img, box=(0, 0, w, h))
    np.testing.assert_allclose(c.keypoints, a.keypoints, atol=1e-3)
    batch = p.predict_batch([img, img])
    np.testing.assert_allclose(batch[1].keypoints, a.keypoints, atol=1e-4)
    d = a.to_dict()
    assert [j["name"] for j in d["joints"]] == list(JOINT_NAMES)


def test_predict_cli_folder_with_a_bad_file(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree("examples", src)
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    rc = main(["predict", str(src), "--model", str(ckpt), "--out", str(tmp_path / "out"), "--json", "--draw"])
    cap = capsys.readouterr()
    assert rc == 2  # the bad file is reported, the rest processed
    recs = [json.loads(line) for line in cap.out.splitlines()]
    assert len(recs) == 4 and all(len(r["joints"]) == 14 for r in recs)
    assert "broken.jpg" in cap.err and "truncated JPEG" in cap.err
    for stem in ("lsp_im1003", "lsp_im1078"):
        assert (tmp_path / "out" / f"{stem}.json").is_file()
        assert (tmp_path / "out" / f"{stem}_pose.png").stat().st_size > 0


def test_predict_cli_bad_inputs(ckpt, tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.jpg"), "--model", str(ckpt)]) == 2
    assert "missing.jpg: input not found" in capsys.readouterr().err
    assert main(["predict", "examples/lsp_im1003.jpg", "--model", str(ckpt), "--box", "1,2,3"]) == 2
    assert "expected 4 finite numbers x,y,w,h" in capsys.readouterr().err
    assert main(["predict", "examples/lsp_im1003.jpg", "--model", str(tmp_path / "nope.pt")]) == 2
    assert "model file not found" in capsys.readouterr().err
