"""The Python API and `posekit predict` on images and folders."""
import json
import shutil

import numpy as np
import pytest
import torch

from posekit.cli import main
from posekit.data.images import read_image
from posekit.errors import PosekitError
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
    assert "broken.jpg" in cap.err and "truncated or corrupt JPEG" in cap.err
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


def test_refine_is_a_second_pass_around_the_first_estimate(ckpt, synth_root, tmp_path, capsys):
    """``refine`` runs the network again on the square crop around its own first estimate: the
    same as predicting with that box by hand (with no border repeated); evaluate sees the same;
    the margin can live in the checkpoint's config (``infer.refine``, ``infer.recrop`` in older
    checkpoints) and be overridden either way."""
    import torch

    from posekit.evaluate import evaluate
    from posekit.predict import DEFAULT_CROP_BORDER
    from posekit.tta import refinement_box

    img = read_image("examples/lsp_im1003.jpg")
    h, w = img.shape[:2]
    one = Predictor(str(ckpt))
    assert one.refine is None and one.refinement is None  # the recipe sets no refinement
    assert one.crop_border == DEFAULT_CROP_BORDER == 10  # the recipe sets no border: the default
    a = one.predict(img)
    two = Predictor(str(ckpt), refine=0.1, crop_border=0)
    assert two.refine == [0.1] and two.crop_border == 0  # one margin is a one-item list
    b = two.predict(img)
    by_hand = one.predict(img, box=refinement_box(a.keypoints, 0.1, w, h))
    np.testing.assert_allclose(b.keypoints, by_hand.keypoints, atol=1e-3)
    np.testing.assert_allclose(b.scores, by_hand.scores, atol=1e-5)
    assert np.abs(b.keypoints - a.keypoints).max() > 0.5  # a different pass, not the first one again

    # evaluate's numbers are predict's, the refinement pass included
    m, extras = evaluate(str(ckpt), str(synth_root), "val", refine=0.1, crop_border=0)
    assert m["refine"] == [0.1] and m["crop_border"] == 0
    paths = extras["images"]
    mine = np.stack([p.keypoints for p in two.predict_batch(paths)])
    np.testing.assert_allclose(extras["res"]["pred"], mine, atol=1e-3)
    m0, _ = evaluate(str(ckpt), str(synth_root), "val")
    assert m0["refine"] is None and m0["crop_border"] is None and m0["mse"] != m["mse"]

    # the model's own setting, and the overrides of it
    ck = torch.load(str(ckpt / "best.pt"), map_location="cpu", weights_only=False)
    ck["config"]["infer"] = {"refine": [0.1], "crop_border": 0}
    torch.save(ck, tmp_path / "refine.pt")
    own = Predictor(str(tmp_path / "refine.pt"))
    assert own.refine == [0.1] and own.crop_border == 0
    np.testing.assert_allclose(own.predict(img).keypoints, b.keypoints, atol=1e-4)
    ck["config"]["infer"] = {"recrop": 0.1, "crop_border": 0}  # a checkpoint written before the rename
    torch.save(ck, tmp_path / "recrop.pt")
    old = Predictor(str(tmp_path / "recrop.pt"))
    assert old.refine == [0.1] and old.config.infer.refine == [0.1]
    np.testing.assert_allclose(old.predict(img).keypoints, b.keypoints, atol=1e-4)
    assert Predictor(str(tmp_path / "refine.pt"), refine=False).refine is None
    assert main(["predict", "examples/lsp_im1003.jpg", "--model", str(tmp_path / "refine.pt"), "--json",
                 "--refine", "off"]) == 0
    rec = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([[j["x"], j["y"]] for j in rec["joints"]], a.keypoints, atol=0.01)
    with pytest.raises(SystemExit):
        main(["predict", "examples/lsp_im1003.jpg", "--model", str(ckpt), "--refine", "3"])
    assert "expected a margin in [0, 2], up to 8 of them comma-separated, or 'off', got '3'" in capsys.readouterr().err
    for bad in (True, "off", 3.0, float("nan"), [], [0.1, 3.0], [0.1] * 9, [0.1, True]):
        with pytest.raises(PosekitError, match=r"Predictor: 'refine(\[\d\])?': "):
            Predictor(str(ckpt), refine=bad)
    with pytest.raises(PosekitError, match="unknown Predictor option.*recrop"):
        Predictor(str(ckpt), recrop=0.1)  # the old name is refused, not ignored

    # flip-test applies to both passes; explain sees the pass that made the pose
    flip1 = Predictor(str(ckpt), flip_test=True)
    flip2 = Predictor(str(ckpt), flip_test=True, refine=0.1, crop_border=0)
    assert flip2.refinement.flip_test and flip2.refinement.margins == [0.1] and flip2.refinement.border == 0
    first = flip1.predict(img)
    np.testing.assert_allclose(flip2.predict(img).keypoints,
                               flip1.predict(img, box=refinement_box(first.keypoints, 0.1, w, h)).keypoints, atol=1e-3)
    assert two.refinement_box(img) == pytest.approx(refinement_box(a.keypoints, 0.1, w, h))
    assert one.refinement_box(img, (1, 2, 30, 40)) == (1, 2, 30, 40)


def test_flip_test_is_a_model_setting_a_caller_can_turn_off(ckpt, tmp_path, capsys):
    """A model shipped with ``infer.flip_test`` runs the flip test by default (as Predictor(flip_test=True)
    does); flip_test=False and the CLI's --no-flip-test turn it off; the plain model stays off."""
    import torch

    ck = torch.load(ckpt / "best.pt", weights_only=True, map_location="cpu")
    ck["config"]["infer"]["flip_test"] = True
    flipped = tmp_path / "flip.pt"
    torch.save(ck, flipped)
    img = "examples/lsp_im1003.jpg"
    on, off = Predictor(str(flipped)), Predictor(str(flipped), flip_test=False)
    assert on.flip_test and not off.flip_test and not Predictor(str(ckpt)).flip_test
    assert np.abs(on.predict(img).keypoints - off.predict(img).keypoints).max() > 0.1  # the CLI check below can tell them apart
    np.testing.assert_allclose(on.predict(img).keypoints, Predictor(str(ckpt), flip_test=True).predict(img).keypoints, atol=1e-5)
    np.testing.assert_allclose(off.predict(img).keypoints, Predictor(str(ckpt)).predict(img).keypoints, atol=1e-5)
    for flag, want in (([], on), (["--no-flip-test"], off)):
        assert main(["predict", img, "--model", str(flipped), "--json", *flag]) == 0
        got = json.loads(capsys.readouterr().out)
        got = got[0] if isinstance(got, list) else got
        np.testing.assert_allclose(np.array([[j["x"], j["y"]] for j in got["joints"]]), want.predict(img).keypoints, atol=6e-3)


def test_crop_border_repeats_the_edge_in_refinement_crops(ckpt):
    """The refinement crops repeat ``crop_border`` edge pixels where they leave the image (as
    :func:`posekit.data.transforms.warp` with a border): the predictor's crops are exactly
    :func:`posekit.tta.refinement_crops` with its border, and the border changes the crops of a
    person at the image's edge."""
    from posekit.tta import refinement_crops

    img = read_image("examples/lsp_im1003.jpg")
    h, w = img.shape[:2]
    kp = np.tile([[w - 1.0, h / 2]], (14, 1)) + np.linspace(-30, 30, 14)[:, None] * [0, 1]  # on the right edge
    x0, m0 = refinement_crops([img], kp[None], [0.1], 32, 0)
    x20, m20 = refinement_crops([img], kp[None], [0.1], 32, 20)
    np.testing.assert_array_equal(m0, m20)  # the same boxes
    assert not torch.equal(x0, x20)  # what lies outside the image differs
    p = Predictor(str(ckpt), refine=0.1)
    assert p.crop_border == 10 and p.refinement.border == 10
    assert Predictor(str(ckpt), refine=0.1, crop_border=7).refinement.border == 7


def test_refine_of_a_nan_first_estimate_is_refused():
    from posekit.codecs import build_codec
    from posekit.tta import FirstPass, Refinement, refine

    img = np.zeros((40, 30, 3), np.uint8)
    kp = np.full((1, 14, 2), np.nan)
    with pytest.raises(PosekitError, match="first estimate is not finite"):
        refine(lambda x: x, build_codec("regression", 32), [img], FirstPass(kp), Refinement([0.1]), 32, "cpu")
    out, sc = refine(lambda x: x, build_codec("regression", 32), [], FirstPass(np.zeros((0, 14, 2))),
                     Refinement([0.1]), 32, "cpu")
    assert out.shape == (0, 14, 2) and sc.shape == (0, 14)


def test_refinement_box_is_square_and_never_collapses():
    from posekit.tta import refinement_box

    kp = np.array([[10.0, 20.0], [30.0, 60.0]] * 7)
    x, y, side, side2 = refinement_box(kp, 0.25, 200, 100)
    assert side == side2 == pytest.approx(40 * 1.5)
    assert (x + side / 2, y + side / 2) == pytest.approx((20.5, 40.5))  # centred on the joints
    x, y, side, _ = refinement_box(np.full((14, 2), 50.0), 0.1, 200, 100)  # every joint in one place
    assert side == pytest.approx(20.0) and x + side / 2 == pytest.approx(50.5)
    # the crop's centre is the joints' centre: box_matrix puts it at the input's middle pixel
    from posekit.data.transforms import apply_affine, box_matrix

    m = box_matrix(refinement_box(kp, 0.17, 200, 100), 64)
    assert apply_affine(np.array([20.0, 40.0]), m) == pytest.approx([31.5, 31.5])


def test_warp_heatmaps_moves_a_peak_to_the_same_image_point():
    """A Gaussian made on one input frame, warped into another, peaks at the same original
    point; warped into its own frame it is unchanged."""
    import torch

    from posekit.codecs import build_codec
    from posekit.codecs.heatmap import grid_to_input
    from posekit.data.transforms import box_matrix
    from posekit.tta import to_original, warp_heatmaps

    size, codec = 64, build_codec({"name": "heatmap", "stride": 4, "sigma": 2.0}, 64)
    m1 = box_matrix((0.0, -20.0, 120.0, 120.0), size)  # a whole 120x80 image, letterboxed
    m2 = box_matrix((-25.0, -36.0, 144.0, 144.0), size)  # another frame, holding the whole blob
    point = np.array([[[52.0, 33.0]] * 14])
    in1 = torch.from_numpy((point @ m1[:, :2].T + m1[:, 2]).astype(np.float32))
    maps = codec.encode(in1, torch.ones(1, 14))[0].reshape(1, 14, 16, 16)
    same = warp_heatmaps(maps, m1[None], m1[None], size)
    torch.testing.assert_close(same, maps, atol=1e-5, rtol=0)
    carried = warp_heatmaps(maps, m1[None], m2[None], size)[0, 0]
    r = torch.arange(16, dtype=torch.float64)
    w = carried.double() / carried.sum()
    centre = torch.stack([(w.sum(0) * r).sum(), (w.sum(1) * r).sum()])  # the warped blob's centroid, in cells
    back = to_original(grid_to_input(centre, 4)[None, None].float(), torch.from_numpy(m2[None])).numpy()
    assert np.abs(back[0, 0] - point[0, 0]).max() < 0.1  # original pixels (cells are 7.5 and 9 px here)


def test_fuse_heatmaps_averages_the_crops_in_the_first_crops_frame():
    """Two crops' maps of the same image point decode to it; two crops that disagree by a little
    decode between them; the first pass mixed in at a weight pulls the result its way; the
    crops' frame is the first crop's."""
    from posekit.codecs import build_codec
    from posekit.data.transforms import box_matrix
    from posekit.tta import FirstPass, fuse_heatmaps

    size, codec = 64, build_codec({"name": "heatmap", "stride": 4, "sigma": 2.0}, 64)
    frames = np.stack([box_matrix((10.0, 0.0, 100.0, 100.0), size), box_matrix((0.0, -10.0, 130.0, 130.0), size)])

    def maps_at(points, matrices):  # one Gaussian per frame at an original point
        inp = [np.array([pt] * 14) @ m[:, :2].T + m[:, 2] for pt, m in zip(points, matrices)]
        return codec.encode(torch.from_numpy(np.stack(inp)).float(), torch.ones(len(inp), 14))[0].reshape(-1, 14, 16, 16)

    p, q = np.array([60.0, 50.0]), np.array([62.0, 51.0])
    same = fuse_heatmaps(codec, maps_at([p, p], frames)[None], None, None, frames[None], size)[0]
    assert np.abs(same[0] - p).max() < 0.2
    mid = fuse_heatmaps(codec, maps_at([p, q], frames)[None], None, None, frames[None], size)[0]
    assert np.abs(mid[0] - (p + q) / 2).max() < 0.4
    whole = box_matrix((-20.0, -20.0, 200.0, 200.0), size)[None]
    r = np.array([66.0, 53.0])
    first = FirstPass(np.tile(r, (1, 14, 1)), maps_at([r], whole), whole)
    pulled = fuse_heatmaps(codec, maps_at([p, p], frames)[None], None, None, frames[None], size, first, 0.3)[0]
    assert 0.5 < np.linalg.norm(pulled[0, 0] - p) < np.linalg.norm(r - p) / 2  # pulled toward r, less than halfway
    # at weight 0 the first pass is not mixed in
    alone = fuse_heatmaps(codec, maps_at([p, p], frames)[None], None, None, frames[None], size, first, 0.0)[0]
    np.testing.assert_allclose(alone, same)


def test_fuse_crops_gives_one_pose_per_person_in_the_first_crops_frame():
    """The multi-scale test's fusion: inputs come person by person, crop by crop; heatmaps of one
    original point in two frames decode to it, each person to their own point; coordinates are
    averaged as original points; one crop is the pass as it is."""
    from posekit.codecs import build_codec
    from posekit.data.transforms import box_matrix
    from posekit.tta import Pass, fuse_crops, to_original

    size, codec = 64, build_codec({"name": "heatmap", "stride": 4, "sigma": 2.0}, 64)
    frames = [box_matrix((10.0, 0.0, 100.0, 100.0), size), box_matrix((0.0, -10.0, 130.0, 130.0), size)]
    p, q = np.array([60.0, 50.0]), np.array([40.0, 70.0])
    ms = np.stack(frames * 2)  # person A's two crops, then person B's
    inputs = np.stack([np.array([pt] * 14) @ m[:, :2].T + m[:, 2] for pt, m in zip([p, p, q, q], ms)])
    maps = codec.encode(torch.from_numpy(inputs).float(), torch.ones(4, 14))[0].reshape(4, 14, 16, 16)
    kp, sc = codec.decode(maps)
    fused = fuse_crops(codec, Pass(maps, kp, sc), ms, 2, size)
    assert fused.maps.shape == (2, 14, 16, 16) and fused.scores.shape == (2, 14)
    back = to_original(fused.keypoints, torch.from_numpy(ms[::2])).numpy()
    assert np.abs(back[0] - p).max() < 0.3 and np.abs(back[1] - q).max() < 0.3  # cells are 6-8 px
    one = Pass(maps, kp, sc)
    assert fuse_crops(codec, one, ms, 1, size) is one
    # coordinates: person A seen at p in one crop and at q in the other -> their mean, in crop 1's frame
    coords = torch.from_numpy(np.stack([inputs[0], np.array([q] * 14) @ frames[1][:, :2].T + frames[1][:, 2]])).float()
    mean = fuse_crops(None, Pass(None, coords, torch.tensor([[0.2] * 14, [0.6] * 14])), ms[:2], 2, size)
    back = to_original(mean.keypoints, torch.from_numpy(ms[:1])).numpy()
    np.testing.assert_allclose(back[0], np.tile((p + q) / 2, (14, 1)), atol=1e-3)
    np.testing.assert_allclose(mean.scores.numpy(), [[0.4] * 14], atol=1e-6)


@pytest.fixture(scope="module")
def heatmap_ckpt(tmp_path_factory, synth_root):
    from conftest import tiny_overrides

    out = tmp_path_factory.mktemp("h") / "run"
    over = [o for o in tiny_overrides(synth_root) if not o.startswith(("model.", "data.input_size"))]
    assert main(["train", "--config", "configs/release.yaml", "--out", str(out), "--epochs", "1", "--no-progress", *over,
                 "data.input_size=64", "model.width=8", "model.depths=[1,1,1,1]", "model.neck=16"]) == 0
    return out


@pytest.mark.parametrize("which", ["heatmap", "regression"])
def test_refine_weight_mixes_the_first_pass_in(which, heatmap_ckpt, ckpt, synth_root):
    """``refine_weight`` mixes the first pass into the refinement pass: 0 is the refinement pass
    alone; heatmaps are mixed as maps, coordinates as coordinates; evaluate gives what predict
    gives."""
    from posekit.evaluate import evaluate

    model = str(heatmap_ckpt if which == "heatmap" else ckpt)
    img = read_image("examples/lsp_im1003.jpg")
    first = Predictor(model).predict(img)
    second = Predictor(model, refine=0.1).predict(img)
    np.testing.assert_allclose(Predictor(model, refine=0.1, refine_weight=0.0).predict(img).keypoints, second.keypoints)
    fused = Predictor(model, refine=0.1, refine_weight=0.5)
    assert fused.refine_weight == 0.5 and fused.refinement.first_weight == 0.5
    both = fused.predict(img)
    if which == "regression":
        np.testing.assert_allclose(both.keypoints, 0.5 * first.keypoints + 0.5 * second.keypoints, atol=1e-4)
    else:
        assert np.abs(both.keypoints - second.keypoints).max() > 1e-3
    m, extras = evaluate(model, str(synth_root), "val", refine=0.1, refine_weight=0.5)
    assert m["refine_weight"] == 0.5 and m["refine"] == [0.1]
    mine = np.stack([p.keypoints for p in fused.predict_batch(extras["images"])])
    np.testing.assert_allclose(extras["res"]["pred"], mine, atol=1e-3)
    assert Predictor(model).refine_weight == 0.0  # no refinement pass, nothing to mix into
    with pytest.raises(PosekitError, match="weighs the first pass against refinement crops"):  # it was ignored
        Predictor(model, refine_weight=0.5)
    with pytest.raises(PosekitError, match="Predictor: 'refine_weight': Input should be less than 1"):
        Predictor(model, refine=0.1, refine_weight=1.0)
    with pytest.raises(PosekitError, match="unknown Predictor option.*fuse"):
        Predictor(model, refine=0.1, fuse=0.5)  # the old name is refused, not ignored


@pytest.mark.parametrize("which", ["heatmap", "regression"])
def test_several_crops_are_one_pass_averaged(which, heatmap_ckpt, ckpt, synth_root, capsys):
    """``refine`` as a list runs one crop per margin in one network pass: heatmaps are warped
    into the first crop's frame and averaged (then the first pass is mixed in), coordinates are
    averaged; a single margin is a one-item list; the CLI and evaluate take the list too."""
    from posekit.evaluate import evaluate
    from posekit.tta import refinement_crops, run_network, to_original, warp_heatmaps

    model = str(heatmap_ckpt if which == "heatmap" else ckpt)
    img = read_image("examples/lsp_im1003.jpg")
    one = Predictor(model, refine=False)
    first = one.predict(img)
    multi = Predictor(model, refine=[0.05, 0.2], refine_weight=0.3)
    assert multi.refine == [0.05, 0.2] and Predictor(model, refine=[0.1]).refine == [0.1]
    assert Predictor(model, refine=0.1).refine == [0.1]
    assert Predictor(model, refine=[0.2, 0.05]).refine == [0.05, 0.2]  # sorted: the tightest crop is the frame
    got = multi.predict(img).keypoints
    # by hand: the two crops (with the predictor's border), run together; the first pass's maps from the whole image
    x, ms = refinement_crops([img], first.keypoints[None], [0.05, 0.2], one.input_size, multi.crop_border)
    assert x.shape[0] == 2 and ms.shape == (1, 2, 2, 3)
    with torch.inference_mode():
        crops = run_network(one.network, one.codec, x)
        prep = one.prepare(img)
        maps1 = run_network(one.network, one.codec, prep.input[None]).maps
    if which == "regression":
        assert crops.maps is None and maps1 is None
        kp = to_original(crops.keypoints, torch.from_numpy(ms[0])).numpy()
        np.testing.assert_allclose(got, 0.7 * kp.mean(0) + 0.3 * first.keypoints, atol=1e-3)
    else:
        maps, frame = crops.maps, ms[:, 0]
        blend = 0.7 * (maps[:1] + warp_heatmaps(maps[1:], ms[:, 1], frame, one.input_size)) / 2 \
            + 0.3 * warp_heatmaps(maps1, prep.matrix[None].numpy(), frame, one.input_size)
        want = to_original(one.codec.decode(blend)[0], torch.from_numpy(frame)).numpy()[0]
        np.testing.assert_allclose(got, want, atol=1e-3)
    m, extras = evaluate(model, str(synth_root), "val", refine=[0.05, 0.2], refine_weight=0.3)
    assert m["refine"] == [0.05, 0.2] and m["refine_weight"] == 0.3
    mine = np.stack([p.keypoints for p in multi.predict_batch(extras["images"])])
    np.testing.assert_allclose(extras["res"]["pred"], mine, atol=1e-3)
    capsys.readouterr()
    assert main(["predict", "examples/lsp_im1003.jpg", "--model", model, "--json", "--refine", "0.05,0.2",
                 "--refine-weight", "0.3"]) == 0
    rec = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([[j["x"], j["y"]] for j in rec["joints"]], got, atol=0.01)


def test_refine_chunks_match_one_batch():
    """Images of different sizes, several crops each, fused with their own first passes: chunks
    of 3 images give what one batch gives (each image keeps its own first maps and matrices), and
    the order the margins are given in (to the settings) does not matter."""
    from posekit.codecs import build_codec
    from posekit.config import InferConfig
    from posekit.data.transforms import PoseTransform
    from posekit.models import build_model
    from posekit.tta import FirstPass, Refinement, refine, run_network, to_original

    torch.manual_seed(0)
    net = build_model("resnet_pose", input_size=64, width=8, depths=[1, 1, 1, 1], neck=16).eval()
    codec = build_codec({"name": "heatmap", "stride": 4, "sigma": 2.0}, 64)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (int(h), int(w), 3), dtype=np.uint8)
              for h, w in zip(rng.integers(60, 200, 7), rng.integers(60, 200, 7))]
    tf = PoseTransform(64, "letterbox")
    items = [tf(img, np.zeros((14, 2)), np.ones(14)) for img in images]
    x, m = torch.stack([t["image"] for t in items]), torch.stack([t["matrix"] for t in items])
    with torch.inference_mode():
        p = run_network(net, codec, x)
    first = FirstPass(to_original(p.keypoints, m).numpy(), p.maps, m.numpy())
    how = Refinement([0.05, 0.2], first_weight=0.3)
    one, s1 = refine(net, codec, images, first, how, 64, "cpu", batch_size=32)
    chunked, s2 = refine(net, codec, images, first, how, 64, "cpu", batch_size=6)
    np.testing.assert_allclose(chunked, one, atol=1e-3)
    np.testing.assert_allclose(s2, s1, atol=1e-4)
    # margins given in another order are sorted by the settings (the tightest crop is the frame)
    margins = InferConfig(refine=[0.2, 0.05]).refine
    swapped, _ = refine(net, codec, images, first, Refinement(margins, first_weight=0.3), 64, "cpu", batch_size=6)
    np.testing.assert_allclose(swapped, one, atol=1e-3)
    # a first pass paired with the wrong image would move the result
    wrong = FirstPass(first.keypoints, p.maps.flip(0), m.numpy()[::-1])
    moved, _ = refine(net, codec, images, wrong, how, 64, "cpu")
    assert np.abs(moved - one).max() > 1e-2


def test_refine_margins_benchmark_chooses_on_framed_val(heatmap_ckpt, synth_root, tmp_path, monkeypatch):
    """benchmarks/refine_margins.py --frame: validation images cut square around their person,
    truth moved into the cut; every setting scored; the choice is the best validation row."""
    import runpy
    import sys

    mod = runpy.run_path("benchmarks/refine_margins.py")
    images, kp, mask = mod["framed_val"](str(heatmap_ckpt), str(synth_root), 0.17)
    assert len(images) == len(kp) > 0
    for img, k, m in zip(images, kp, mask):
        h, w = img.shape[:2]
        assert h == w
        pts = k[m.astype(bool)]
        side = pts.max(0) - pts.min(0)
        assert (pts >= -0.5).all() and (pts <= w - 0.5).all()  # the person lies inside the cut ...
        assert max(side) / w == pytest.approx(1 / 1.34, rel=0.1) or max(side) < 8  # ... with the margin around
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["refine_margins.py", "--model", str(heatmap_ckpt), "--data", str(synth_root),
                                      "--margins", "0.2", "0.1", "--crops", "1", "2", "--weights", "0", "0.5",
                                      "--frame", "0.17", "--json", str(out)])
    runpy.run_path("benchmarks/refine_margins.py", run_name="__main__")
    d = json.loads(out.read_text())
    assert [(r["refine"], r["refine_weight"]) for r in d["results"]] == [
        (None, 0.0), (0.1, 0.0), (0.1, 0.5), (0.2, 0.0), (0.2, 0.5), ([0.1, 0.2], 0.0), ([0.1, 0.2], 0.5)]
    # each row, made from kept passes, is what the predictor returns with that setting
    framed = images[:6], kp[:6], mask[:6]
    pred = Predictor(str(heatmap_ckpt), refine=False)
    assert d["crop_border"] == pred.crop_border
    kept = mod["kept_passes"](pred, framed[0], [0.1, 0.2])
    for margins, weight in [((0.1,), 0.5), ((0.1, 0.2), 0.5), ((0.1, 0.2), 0.0)]:
        rows = mod["combine"](kept, margins, weight, pred.input_size, pred.codec, batch=4)
        p = Predictor(str(heatmap_ckpt), refine=list(margins), refine_weight=weight)
        np.testing.assert_allclose(rows, np.stack([q.keypoints for q in p.predict_batch(framed[0])]), atol=1e-3)
    np.testing.assert_allclose(mod["score"](kept["first"].keypoints, framed)["pck"],
                               mod["score"](np.stack([q.keypoints for q in pred.predict_batch(framed[0])]), framed)["pck"])
    best = max(d["results"], key=lambda r: r["val"]["pck"])
    assert d["chosen"] == {"refine": best["refine"], "refine_weight": best["refine_weight"]} and "framed" in d["chosen_on"]
    assert all(r["val"]["n"] == len(images) for r in d["results"])


def test_wrong_kinds_of_arguments_are_one_line_errors():
    """Not a TypeError from deep inside: a model or detector of the wrong type is named; any
    iterable of images is a batch."""
    with pytest.raises(PosekitError, match="model must be a shipped name or a path.*got a int"):
        Predictor(model=123)
    pred = Predictor("posekit-lsp-fast")
    with pytest.raises(PosekitError, match="detector must be .*got a Predictor"):
        Predictor("posekit-lsp-fast", detector=pred)
    frames = (np.zeros((64, 48, 3), np.uint8) for _ in range(2))
    assert len(pred.predict_batch(frames)) == 2


def test_person_is_none_when_nobody_is_found():
    """``Pose.person`` agrees with the record: None when nobody is found (predict and
    predict_people's one-person answer, with and without a detector; a pose marked not found after
    it was made), not 0, the number a found pose would have; a found pose keeps its number."""
    from posekit.inference import Pose

    blank = np.zeros((64, 64, 3), np.uint8)
    for pred in (Predictor("posekit-lsp-fast"), Predictor("posekit-lsp-fast", detector=False)):
        people, one = pred.predict_people(blank)
        for pose in (pred.predict(blank), one):
            assert not pose.found and pose.person is None and pose.to_dict()["person"] is None
        assert people == []
    pose = Pose(np.zeros((14, 2)), np.full(14, 0.8), 64, 64, score=0.8, person=2)
    assert pose.person == 2 and pose.to_dict()["person"] == 2
    pose.found = False  # as the Predictor marks its best candidate when nobody is found
    assert pose.person is None and pose.to_dict()["person"] is None
