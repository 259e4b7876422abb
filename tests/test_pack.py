"""`posekit data pack` and training from a pack (issue 7)."""
import json

import numpy as np
import pytest
from conftest import tiny_overrides

from posekit.cli import main
from posekit.data.lsp import load_sets
from posekit.data.pack import load_pack
from posekit.data.transforms import apply_affine
from posekit.errors import DataError


def test_pack_round_trip_and_train_from_it(synth_root, tmp_path, capsys):
    out = tmp_path / "p.npz"
    assert main(["data", "pack", "--data", str(synth_root), "--out", str(out), "--size", "48", "--no-progress",
                 "--val-fraction", "0.1"]) == 0
    assert "48x48 person-centred crops" in capsys.readouterr().out
    sets, cache, split, margin = load_pack(out)
    assert margin == 0.4
    orig = load_sets(synth_root, ["lsp", "lspet"])
    assert set(split) >= {"train", "val"} and len(split["train"]) == 54 and split["test"] == []
    sid = split["train"][3]
    name = sid.split("/")[0]
    i = [orig[name].sample_id(j) for j in range(len(orig[name]))].index(sid)
    ps = sets[name]
    k = [ps.sample_id(j) for j in range(len(ps))].index(sid)
    np.testing.assert_allclose(ps.keypoints[k], orig[name].keypoints[i])  # annotations in original pixels
    img, pre, (w, h) = cache.get(ps.image_paths[k])
    assert img.shape == (48, 48, 3) and (w, h) == (64, 80)
    # the stored affine puts the annotated joints inside the crop
    inside = apply_affine(orig[name].keypoints[i][orig[name].annotated[i]], pre)
    assert (inside > -0.5).all() and (inside < 47.5).all()
    # training from the pack needs no dataset folder
    run = tmp_path / "run"
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(run), "--epochs", "1", "--no-progress",
                 *tiny_overrides(tmp_path / "no-such-root"), f"data.pack={out}", "augment.person_crop=0.2"]) == 0
    saved = json.loads((run / "split.json").read_text())
    assert saved["train"] == split["train"]
    # data.repeat oversamples a set from a pack too (its sample ids name their set)
    capsys.readouterr()
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(tmp_path / "rep"), "--epochs", "1",
                 "--no-progress", *tiny_overrides(tmp_path / "no-such-root"), f"data.pack={out}",
                 "augment.person_crop=0.2", "data.repeat={lsp: 3}"]) == 0
    n_lsp = sum(i.startswith("lsp/") for i in split["train"])
    assert 0 < n_lsp and f"(train {len(split['train']) + 2 * n_lsp}, " in capsys.readouterr().out
    # a recipe that wants more of the image than the pack holds is refused
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(tmp_path / "r2"), "--epochs", "1",
                 "--no-progress", *tiny_overrides(tmp_path / "no-such-root"), f"data.pack={out}"]) == 2
    assert "needs augment.person_crop <= 0.4" in capsys.readouterr().err


def test_bad_pack(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable posekit pack"):
        load_pack(tmp_path / "x.npz")
    good = tmp_path / "half.npz"
    good.write_bytes(b"PK\x03\x04" + b"\x00" * 40)  # a half-copied zip
    with pytest.raises(DataError, match="not a readable posekit pack"):
        load_pack(good)
    with pytest.raises(DataError, match="pack file not found"):
        load_pack(tmp_path / "none.npz")


def test_a_part_named_twice_is_packed_once(synth_root, tmp_path):
    from posekit.data.pack import pack_split

    once = pack_split(synth_root, tmp_path / "a.npz", {"parts": ["test"]}, size=32)
    twice = pack_split(synth_root, tmp_path / "b.npz", {"parts": ["test", "test"]}, size=32)
    assert twice["images"] == once["images"] > 0
