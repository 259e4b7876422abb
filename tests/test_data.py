import json
import shutil

import numpy as np
import pytest
import scipy.io

from posekit.data.check import check_root
from posekit.data.dataset import ImageCache, PoseLandmarksDataset
from posekit.data.images import read_image
from posekit.data.lsp import load_set, load_sets, parse_joints, resolve_data_root, write_set
from posekit.data.splits import make_split, split_ids
from posekit.data.transforms import PoseTransform
from posekit.errors import DataError
from posekit.skeleton import FLIP_PAIRS, JOINT_NAMES, NUM_JOINTS


def _kp(n, rng):
    return rng.uniform(5, 40, (n, NUM_JOINTS, 2))


@pytest.mark.parametrize("layout", ["lsp", "lspet"])
def test_both_layouts_round_trip(tmp_path, layout):
    rng = np.random.default_rng(0)
    kp = _kp(3, rng)
    vis = rng.random((3, NUM_JOINTS)) > 0.3
    imgs = [np.zeros((48, 48, 3), np.uint8)] * 3
    write_set(tmp_path / layout, imgs, kp, vis, layout=layout)
    raw = scipy.io.loadmat(tmp_path / layout / "joints.mat")["joints"]
    assert raw.shape == ((3, NUM_JOINTS, 3) if layout == "lsp" else (NUM_JOINTS, 3, 3))
    s = load_set(tmp_path / layout)
    assert s.layout == layout and len(s) == 3
    np.testing.assert_array_equal(s.visible, vis)
    if layout == "lsp":
        assert s.annotated.all()  # LSP annotates every joint, occluded or not
        np.testing.assert_allclose(s.keypoints, kp, atol=1e-9)
        # LSP flag: 0 = visible
        assert ((raw[2].T == 0) == vis).all()
    else:
        np.testing.assert_array_equal(s.annotated, vis)  # LSPe: 0 = not annotated
        np.testing.assert_allclose(s.keypoints[vis], kp[vis], atol=1e-9)
        assert (s.keypoints[~vis] == 0).all()  # junk coordinates dropped
        assert ((raw[:, 2].T == 1) == vis).all()
    # 1-based MATLAB in the file, 0-based here
    if layout == "lsp":
        assert raw[0, 0, 0] == pytest.approx(kp[0, 0, 0] + 1)
    elif vis[0, 0]:
        assert raw[0, 0, 0] == pytest.approx(kp[0, 0, 0] + 1)  # (14, 3, N): joint, coord, image


def test_real_data_counts(real_root):
    sets = load_sets(real_root, ["lsp", "lspet"])
    assert len(sets["lsp"]) == 2000 and len(sets["lspet"]) == 10000
    assert int(sets["lsp"].visible.sum()) == 25956
    assert int(sets["lspet"].visible.sum()) == 123213
    assert int(sets["lspet"].annotated.sum()) == 123213
    raw = scipy.io.loadmat(real_root / "lsp" / "joints.mat")["joints"]
    np.testing.assert_allclose(sets["lsp"].keypoints[5, 3], raw[:2, 3, 5] - 1)
    raw = scipy.io.loadmat(real_root / "lspet" / "joints.mat")["joints"]
    np.testing.assert_allclose(sets["lspet"].keypoints[7, 10], raw[10, :2, 7] - 1)
    np.testing.assert_array_equal(sets["lspet"].annotated, raw[:, 2, :].T == 1)
    assert sets["lspet"].image_paths[9999].name == "im10000.jpg"
    im = read_image(sets["lsp"].image_paths[0])
    assert im.ndim == 3 and im.shape[2] == 3


def test_wrong_shape_and_nan(tmp_path):
    with pytest.raises(DataError, match=r"x.mat: 'joints' has shape \(2, 14, 5\)"):
        parse_joints(np.zeros((2, 14, 5)), "x.mat")
    j = np.zeros((3, NUM_JOINTS, 4))
    j[0, 2, 1] = np.nan
    with pytest.raises(DataError, match="non-finite.*joint 3 of image 2"):
        parse_joints(j, "y.mat")
    # NaN in an unannotated LSPe joint is fine (it is junk by definition)
    e = np.zeros((NUM_JOINTS, 3, 2))
    e[:, :2, :] = np.arange(NUM_JOINTS)[:, None, None] * 3.0  # distinct joints: torsos of non-zero length
    e[:, 2, :] = 1
    e[4, 2, 0] = 0
    e[4, 0, 0] = np.nan
    kp, vis, ann, layout = parse_joints(e)
    assert layout == "lspet" and not ann[0, 4] and np.isfinite(kp).all()


def test_missing_root_and_images(tmp_path, monkeypatch):
    monkeypatch.delenv("POSEKIT_DATA", raising=False)
    with pytest.raises(DataError, match="no dataset root"):
        resolve_data_root(None)
    with pytest.raises(DataError, match="dataset root not found"):
        resolve_data_root(tmp_path / "nope")
    kp = np.ones((2, NUM_JOINTS, 2)) + np.arange(NUM_JOINTS)[None, :, None]
    write_set(tmp_path / "lsp", [np.zeros((20, 20, 3), np.uint8)] * 2, kp, np.ones((2, NUM_JOINTS), bool))
    (tmp_path / "lsp" / "images" / "im0002.jpg").unlink()
    with pytest.raises(DataError, match=r"im0002.jpg: image file not found"):
        load_set(tmp_path / "lsp")


def test_annotations_and_images_must_match_one_to_one(tmp_path):
    """A joints.mat listing fewer images than the folder holds used to train on a silent subset."""
    kp = np.ones((3, NUM_JOINTS, 2)) + np.arange(NUM_JOINTS)[None, :, None]
    write_set(tmp_path / "lsp", [np.zeros((20, 20, 3), np.uint8)] * 3, kp, np.ones((3, NUM_JOINTS), bool))
    import scipy.io

    j = scipy.io.loadmat(str(tmp_path / "lsp" / "joints.mat"))["joints"][:, :, :2]  # 2 of the 3 images
    scipy.io.savemat(str(tmp_path / "lsp" / "joints.mat"), {"joints": j})
    with pytest.raises(DataError, match=r"joints.mat: lists 2 images, but .* holds 3"):
        load_set(tmp_path / "lsp")


def test_every_torso_of_length_zero_is_refused():
    """Such a file used to train for an epoch, then crash on PCK (None) with a TypeError."""
    j = np.zeros((3, NUM_JOINTS, 4))  # every joint of every image at one point
    with pytest.raises(DataError, match=r"x.mat: no image has a torso .* of non-zero length"):
        parse_joints(j, "x.mat")


def test_corrupt_and_truncated_images(tmp_path):
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((30, 30, 3), 128, np.uint8))
    good = tmp_path / "good.jpg"
    good.write_bytes(buf.tobytes())
    assert read_image(good).shape == (30, 30, 3)
    (tmp_path / "trunc.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(DataError, match="trunc.jpg: truncated or corrupt JPEG"):
        read_image(tmp_path / "trunc.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="junk.jpg: not an image"):
        read_image(tmp_path / "junk.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="empty.jpg: empty file"):
        read_image(tmp_path / "empty.jpg")
    # a JPEG with trailing newline after its end marker (as some LSP files have) is fine
    (tmp_path / "nl.jpg").write_bytes(buf.tobytes() + b"\n")
    assert read_image(tmp_path / "nl.jpg").shape == (30, 30, 3)


def test_splits_deterministic_and_disjoint(synth_root):
    sets = load_sets(synth_root, ["lsp", "lspet"])
    a = make_split("paper", sets, seed=3)
    b = make_split("paper", sets, seed=3)
    c = make_split("paper", sets, seed=4)
    assert a == b and a["train"] != c["train"]
    n = len(sets["lsp"]) + len(sets["lspet"])
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (56, 12, 12)
    assert len(set(a["train"]) | set(a["val"]) | set(a["test"])) == n
    s = make_split("lsp-standard", sets, seed=0, val_fraction=0.25)
    assert s["test"] == [f"lsp/im{i:04d}.jpg" for i in range(21, 41)]  # second half of LSP
    assert not set(s["test"]) & (set(s["train"]) | set(s["val"]))
    assert all(f"lspet/im{i:05d}.jpg" in s["train"] + s["val"] for i in range(1, 41))
    assert len(s["val"]) == 15
    json.dumps(s)  # saved with every run


def test_split_ids_limits(synth_root):
    """data.limit_train / data.limit_val keep the first N ids; limit_val=0 means no validation."""
    s = make_split("lsp-standard", load_sets(synth_root, ["lsp", "lspet"]), seed=0, val_fraction=0.25)
    assert split_ids(s) == (s["train"], s["val"])
    assert split_ids(s, limit_train=5, limit_val=3) == (s["train"][:5], s["val"][:3])
    assert split_ids(s, limit_val=0) == (s["train"], [])
    train, val = split_ids(s, limit_train=10 ** 6, limit_val=10 ** 6)
    assert (train, val) == (s["train"], s["val"])
    train.append("x")  # copies: the split itself is left alone
    assert "x" not in s["train"]


def test_real_lsp_standard_split(real_root):
    sets = load_sets(real_root, ["lsp", "lspet"])
    s = make_split("lsp-standard", sets, seed=0)
    assert s["test"][0] == "lsp/im1001.jpg" and s["test"][-1] == "lsp/im2000.jpg" and len(s["test"]) == 1000
    assert len(s["train"]) + len(s["val"]) == 11000


def test_cache_downscales_and_keeps_keypoints_exact(synth_root):
    sets = load_sets(synth_root, ["lsp"])
    ids = [sets["lsp"].sample_id(i) for i in range(4)]
    tf = PoseTransform(48, "stretch")
    plain = PoseLandmarksDataset(sets, ids, tf)
    cache = ImageCache(plain.paths(), max_side=40)  # 64x80 originals are halved
    assert max(im.shape[:2] for im in cache.images) == (40, 32)
    cached = PoseLandmarksDataset(sets, ids, tf, cache=cache)
    for i in range(len(ids)):
        a, b = plain[i], cached[i]
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-5)
        np.testing.assert_allclose(a["matrix"], b["matrix"])
        assert b["size"].tolist() == [64, 80]
        # same picture, blurrier: the mean absolute difference stays small
        assert (a["image"] - b["image"]).abs().mean() < 0.35


def test_dataset_items_and_cache_agree(synth_root):
    sets = load_sets(synth_root, ["lsp"])
    ids = [sets["lsp"].sample_id(i) for i in range(6)]
    tf = PoseTransform(32, "letterbox")
    plain = PoseLandmarksDataset(sets, ids, tf)
    cache = ImageCache(plain.paths(), max_side=1000)
    cached = PoseLandmarksDataset(sets, ids, tf, cache=cache)
    for i in range(len(ids)):
        a, b = plain[i], cached[i]
        assert a["image"].shape == (3, 32, 32)
        assert np.allclose(a["keypoints"], b["keypoints"]) and np.allclose(a["image"], b["image"])
        assert a["size"].tolist() == [64, 80]
    with pytest.raises(DataError, match="not in the loaded data sets"):
        PoseLandmarksDataset(sets, ["lsp/im9999.jpg"], tf)


def test_data_check_real_and_damaged(real_root, tmp_path):
    ok, bad = check_root(real_root, ["lsp", "lspet"])
    assert not bad, bad
    assert any("2000 image checksums match" in line for line in ok)
    assert any("10000 image checksums match" in line for line in ok)
    copy = tmp_path / "data"
    shutil.copytree(real_root / "lsp", copy / "lsp")
    (copy / "lsp" / "images" / "im0005.jpg").unlink()
    p = copy / "lsp" / "images" / "im0010.jpg"
    p.write_bytes(p.read_bytes()[:-100])
    ok, bad = check_root(copy, ["lsp"])
    text = "\n".join(bad)
    assert "1 image(s) missing, e.g. images/im0005.jpg" in text
    assert "im0010.jpg: checksum mismatch" in text


def test_data_check_synthetic_is_not_lsp(synth_root):
    ok, bad = check_root(synth_root, ["lsp"], hashes=False)
    assert any("expected 2000" in b for b in bad)
    assert any("md5" in b for b in bad)


def test_skeleton_single_source():
    # the order of the LSP README
    assert JOINT_NAMES == ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
                           "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
                           "left_wrist", "neck", "head_top")
    assert len(JOINT_NAMES) == NUM_JOINTS == 14
    names = {JOINT_NAMES[a][5:] for a, b in FLIP_PAIRS}
    assert names == {"hip", "knee", "ankle", "shoulder", "elbow", "wrist"}
    for a, b in FLIP_PAIRS:
        assert JOINT_NAMES[a].startswith("left_") and JOINT_NAMES[b] == "right_" + JOINT_NAMES[a][5:]


def test_crowd_items_pose_the_framed_person_and_leave_plain_items_alone(synth_root):
    from posekit.config import AugmentConfig

    sets = load_sets(synth_root, ["lsp"])
    ids = [sets["lsp"].sample_id(i) for i in range(6)]
    aug = AugmentConfig(person_crop=0.2)
    tf = PoseTransform(48, "letterbox", train=True, augment=aug)
    plain = PoseLandmarksDataset(sets, ids, tf, seed=3)
    half = PoseLandmarksDataset(sets, ids, tf, seed=3, crowd=0.5)
    crowd = PoseLandmarksDataset(sets, ids, tf, seed=3, crowd=1.0)
    kinds = set()
    for i in range(len(ids)):
        a, b, c = plain[i], half[i], crowd[i]
        kinds.add(b["size"].tolist() == [64, 80])
        if b["size"].tolist() == [64, 80]:  # an item left plain is drawn exactly as without crowds
            assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["keypoints"], b["keypoints"])
        # crowd 1: a canvas (its own size), the person framed as a plain item frames it
        assert c["size"].tolist() != [64, 80] and c["image"].shape == (3, 48, 48)
        k = c["keypoints"][c["mask"] > 0].numpy()
        span = k.max(0) - k.min(0)
        np.testing.assert_allclose(span.max() * (1 + 2 * 0.2), 48, rtol=0.02)
        np.testing.assert_allclose(np.c_[c["gt"].numpy(), np.ones(14)] @ c["matrix"].numpy().T,
                                   c["keypoints"].numpy(), atol=1e-3)
    assert kinds == {True, False}
    with pytest.raises(Exception, match="crowd needs person_crop"):
        AugmentConfig(crowd=0.5)
    # validation items are never crowds
    val = PoseLandmarksDataset(sets, ids, PoseTransform(48, "letterbox", augment=aug), crowd=1.0)
    assert val[0]["size"].tolist() == [64, 80]
