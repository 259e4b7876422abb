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


def test_recrop_is_a_second_look_around_the_first_estimate(ckpt, synth_root, tmp_path, capsys):
    """``recrop`` runs the network again on the square crop around its own first estimate: the
    same as predicting with that box by hand; evaluate sees the same; the margin can live in the
    checkpoint's config (``infer.recrop``) and be overridden either way."""
    import torch

    from posekit.evaluate import evaluate
    from posekit.looks import recrop_box

    img = read_image("examples/lsp_im1003.jpg")
    h, w = img.shape[:2]
    one = Predictor(str(ckpt))
    assert one.recrop is None  # the recipe sets no re-crop
    a = one.predict(img)
    two = Predictor(str(ckpt), recrop=0.1)
    b = two.predict(img)
    by_hand = one.predict(img, box=recrop_box(a.keypoints, 0.1, w, h))
    np.testing.assert_allclose(b.keypoints, by_hand.keypoints, atol=1e-3)
    np.testing.assert_allclose(b.scores, by_hand.scores, atol=1e-5)
    assert np.abs(b.keypoints - a.keypoints).max() > 0.5  # a different look, not the first one again

    # evaluate's numbers are predict's, second look included
    m, extras = evaluate(str(ckpt), str(synth_root), "val", recrop=0.1)
    assert m["recrop"] == 0.1
    paths = [str(p) for p in extras["ds"].paths()]
    mine = np.stack([p.keypoints for p in two.predict_batch(paths)])
    np.testing.assert_allclose(extras["res"]["pred"], mine, atol=1e-3)
    m0, _ = evaluate(str(ckpt), str(synth_root), "val")
    assert m0["recrop"] is None and m0["mse"] != m["mse"]

    # the model's own setting, and the overrides of it
    ck = torch.load(str(ckpt / "best.pt"), map_location="cpu", weights_only=False)
    ck["config"]["infer"] = {"recrop": 0.1}
    torch.save(ck, tmp_path / "recrop.pt")
    own = Predictor(str(tmp_path / "recrop.pt"))
    assert own.recrop == 0.1
    np.testing.assert_allclose(own.predict(img).keypoints, b.keypoints, atol=1e-4)
    assert Predictor(str(tmp_path / "recrop.pt"), recrop=False).recrop is None
    assert main(["predict", "examples/lsp_im1003.jpg", "--model", str(tmp_path / "recrop.pt"), "--json",
                 "--recrop", "off"]) == 0
    rec = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([[j["x"], j["y"]] for j in rec["joints"]], a.keypoints, atol=0.01)
    with pytest.raises(SystemExit):
        main(["predict", "examples/lsp_im1003.jpg", "--model", str(ckpt), "--recrop", "3"])
    assert "expected a margin in [0, 2], up to 8 of them comma-separated, or 'off', got '3'" in capsys.readouterr().err
    for bad in (True, "off", 3.0, float("nan"), [], [0.1, 3.0], [0.1] * 9, [0.1, True]):
        with pytest.raises(PosekitError, match="re-crop margin must be a number in"):
            Predictor(str(ckpt), recrop=bad)

    # flip-test applies to both looks; explain sees the pass that made the pose
    flip1 = Predictor(str(ckpt), flip_test=True)
    flip2 = Predictor(str(ckpt), flip_test=True, recrop=0.1)
    first = flip1.predict(img)
    np.testing.assert_allclose(flip2.predict(img).keypoints,
                               flip1.predict(img, box=recrop_box(first.keypoints, 0.1, w, h)).keypoints, atol=1e-3)
    assert two.last_look_box(img) == pytest.approx(recrop_box(a.keypoints, 0.1, w, h))
    assert one.last_look_box(img, (1, 2, 30, 40)) == (1, 2, 30, 40)


def test_recrop_of_a_nan_first_look_is_refused():
    from posekit.codecs import build_codec
    from posekit.looks import recrop_predict

    img = np.zeros((40, 30, 3), np.uint8)
    kp = np.full((1, 14, 2), np.nan)
    with pytest.raises(PosekitError, match="first estimate is not finite"):
        recrop_predict(lambda x: x, build_codec("regression", 32), [img], kp, 0.1, 32, "cpu")
    out, sc = recrop_predict(lambda x: x, build_codec("regression", 32), [], np.zeros((0, 14, 2)), 0.1, 32, "cpu")
    assert out.shape == (0, 14, 2) and sc.shape == (0, 14)


def test_recrop_box_is_square_and_never_collapses():
    from posekit.looks import recrop_box

    kp = np.array([[10.0, 20.0], [30.0, 60.0]] * 7)
    x, y, side, side2 = recrop_box(kp, 0.25, 200, 100)
    assert side == side2 == pytest.approx(40 * 1.5)
    assert (x + side / 2, y + side / 2) == pytest.approx((20.5, 40.5))  # centred on the joints
    x, y, side, _ = recrop_box(np.full((14, 2), 50.0), 0.1, 200, 100)  # every joint in one place
    assert side == pytest.approx(20.0) and x + side / 2 == pytest.approx(50.5)
    # the crop's centre is the joints' centre: box_matrix puts it at the input's middle pixel
    from posekit.data.transforms import apply_affine, box_matrix

    m = box_matrix(recrop_box(kp, 0.17, 200, 100), 64)
    assert apply_affine(np.array([20.0, 40.0]), m) == pytest.approx([31.5, 31.5])


def test_carry_maps_moves_a_peak_to_the_same_image_point():
    """A Gaussian made on one input frame, carried into another, peaks at the same original
    point; carried into its own frame it is unchanged."""
    import torch

    from posekit.codecs import build_codec
    from posekit.codecs.heatmap import grid_to_input
    from posekit.data.transforms import box_matrix
    from posekit.looks import carry_maps, to_original

    size, codec = 64, build_codec({"name": "heatmap", "stride": 4, "sigma": 2.0}, 64)
    m1 = box_matrix((0.0, -20.0, 120.0, 120.0), size)  # a whole 120x80 image, letterboxed
    m2 = box_matrix((-25.0, -36.0, 144.0, 144.0), size)  # another frame, holding the whole blob
    point = np.array([[[52.0, 33.0]] * 14])
    in1 = torch.from_numpy((point @ m1[:, :2].T + m1[:, 2]).astype(np.float32))
    maps = codec.encode(in1, torch.ones(1, 14))[0].reshape(1, 14, 16, 16)
    same = carry_maps(maps, m1[None], m1[None], size)
    torch.testing.assert_close(same, maps, atol=1e-5, rtol=0)
    carried = carry_maps(maps, m1[None], m2[None], size)[0, 0]
    r = torch.arange(16, dtype=torch.float64)
    w = carried.double() / carried.sum()
    centre = torch.stack([(w.sum(0) * r).sum(), (w.sum(1) * r).sum()])  # the carried blob's centroid, in cells
    back = to_original(grid_to_input(centre, 4)[None, None].float(), torch.from_numpy(m2[None])).numpy()
    assert np.abs(back[0, 0] - point[0, 0]).max() < 0.1  # original pixels (cells are 7.5 and 9 px here)


def test_blend_looks_averages_the_crops_in_the_first_crops_frame():
    """Two crops' maps of the same image point decode to it; two crops that disagree by a little
    decode between them; the first look blended in at a weight pulls the result its way; the
    crops' frame is the first crop's."""
    from posekit.codecs import build_codec
    from posekit.data.transforms import box_matrix
    from posekit.looks import blend_looks

    size, codec = 64, build_codec({"name": "heatmap", "stride": 4, "sigma": 2.0}, 64)
    frames = np.stack([box_matrix((10.0, 0.0, 100.0, 100.0), size), box_matrix((0.0, -10.0, 130.0, 130.0), size)])

    def maps_at(points, matrices):  # one Gaussian per frame at an original point
        inp = [np.array([pt] * 14) @ m[:, :2].T + m[:, 2] for pt, m in zip(points, matrices)]
        return codec.encode(torch.from_numpy(np.stack(inp)).float(), torch.ones(len(inp), 14))[0].reshape(-1, 14, 16, 16)

    p, q = np.array([60.0, 50.0]), np.array([62.0, 51.0])
    same = blend_looks(codec, maps_at([p, p], frames)[None], None, None, frames[None], size)[0]
    assert np.abs(same[0] - p).max() < 0.2
    mid = blend_looks(codec, maps_at([p, q], frames)[None], None, None, frames[None], size)[0]
    assert np.abs(mid[0] - (p + q) / 2).max() < 0.4
    whole = box_matrix((-20.0, -20.0, 200.0, 200.0), size)[None]
    r = np.array([66.0, 53.0])
    pulled = blend_looks(codec, maps_at([p, p], frames)[None], None, None, frames[None], size, fuse=0.3,
                         first_maps=maps_at([r], whole), first_matrices=whole)[0]
    assert 0.5 < np.linalg.norm(pulled[0, 0] - p) < np.linalg.norm(r - p) / 2  # pulled toward r, less than halfway


@pytest.fixture(scope="module")
def heatmap_ckpt(tmp_path_factory, synth_root):
    from conftest import tiny_overrides

    out = tmp_path_factory.mktemp("h") / "run"
    over = [o for o in tiny_overrides(synth_root) if not o.startswith("model.")]
    assert main(["train", "--config", "configs/release.yaml", "--out", str(out), "--epochs", "1", "--no-progress", *over,
                 "data.input_size=64", "model.width=8", "model.depths=[1,1,1,1]", "model.neck=16"]) == 0
    return out


@pytest.mark.parametrize("which", ["heatmap", "regression"])
def test_fusing_the_two_looks(which, heatmap_ckpt, ckpt, synth_root):
    """``fuse`` blends the first look into the second: 0 is the second look alone; heatmaps are
    blended as maps, coordinates as coordinates; evaluate gives what predict gives."""
    from posekit.evaluate import evaluate

    model = str(heatmap_ckpt if which == "heatmap" else ckpt)
    img = read_image("examples/lsp_im1003.jpg")
    first = Predictor(model).predict(img)
    second = Predictor(model, recrop=0.1).predict(img)
    np.testing.assert_allclose(Predictor(model, recrop=0.1, fuse=0.0).predict(img).keypoints, second.keypoints)
    fused = Predictor(model, recrop=0.1, fuse=0.5)
    both = fused.predict(img)
    if which == "regression":
        np.testing.assert_allclose(both.keypoints, 0.5 * first.keypoints + 0.5 * second.keypoints, atol=1e-4)
    else:
        assert np.abs(both.keypoints - second.keypoints).max() > 1e-3
    m, extras = evaluate(model, str(synth_root), "val", recrop=0.1, fuse=0.5)
    assert m["fuse"] == 0.5
    mine = np.stack([p.keypoints for p in fused.predict_batch([str(p) for p in extras["ds"].paths()])])
    np.testing.assert_allclose(extras["res"]["pred"], mine, atol=1e-3)
    assert Predictor(model).fuse == 0.0  # no second look, nothing to fuse
    with pytest.raises(PosekitError, match="fusing weight"):
        Predictor(model, recrop=0.1, fuse=1.0)


@pytest.mark.parametrize("which", ["heatmap", "regression"])
def test_several_crops_are_one_pass_averaged(which, heatmap_ckpt, ckpt, synth_root, capsys):
    """``recrop`` as a list looks at one crop per margin in one network pass: heatmaps are carried
    into the first crop's frame and averaged (then the first look is blended in), coordinates
    are averaged; a one-item list is that number; the CLI and evaluate take the list too."""
    from posekit.evaluate import evaluate
    from posekit.looks import carry_maps, crop_batch, look, to_original

    model = str(heatmap_ckpt if which == "heatmap" else ckpt)
    img = read_image("examples/lsp_im1003.jpg")
    one = Predictor(model, recrop=False)
    first = one.predict(img)
    multi = Predictor(model, recrop=[0.05, 0.2], fuse=0.3)
    assert multi.recrop == [0.05, 0.2] and Predictor(model, recrop=[0.1]).recrop == 0.1
    assert Predictor(model, recrop=[0.2, 0.05]).recrop == [0.05, 0.2]  # sorted: the tightest crop is the frame
    got = multi.predict(img).keypoints
    # by hand: the two crops, run together; the first look's maps from the whole image
    x, ms = crop_batch([img], first.keypoints[None], [0.05, 0.2], one.input_size)
    assert x.shape[0] == 2 and ms.shape == (1, 2, 2, 3)
    with torch.inference_mode():
        maps, kp, _ = look(one.network, one.codec, x)
        prep = one._prepare_rgb(img, None)
        maps1 = look(one.network, one.codec, prep[0][None])[0]
    if which == "regression":
        crops = to_original(kp, torch.from_numpy(ms[0])).numpy()
        np.testing.assert_allclose(got, 0.7 * crops.mean(0) + 0.3 * first.keypoints, atol=1e-3)
    else:
        frame = ms[:, 0]
        blend = 0.7 * (maps[:1] + carry_maps(maps[1:], ms[:, 1], frame, one.input_size)) / 2 \
            + 0.3 * carry_maps(maps1, prep[1][None].numpy(), frame, one.input_size)
        want = to_original(one.codec.decode(blend)[0], torch.from_numpy(frame)).numpy()[0]
        np.testing.assert_allclose(got, want, atol=1e-3)
    m, extras = evaluate(model, str(synth_root), "val", recrop=[0.05, 0.2], fuse=0.3)
    assert m["recrop"] == [0.05, 0.2]
    mine = np.stack([p.keypoints for p in multi.predict_batch([str(p) for p in extras["ds"].paths()])])
    np.testing.assert_allclose(extras["res"]["pred"], mine, atol=1e-3)
    capsys.readouterr()
    assert main(["predict", "examples/lsp_im1003.jpg", "--model", model, "--json", "--recrop", "0.05,0.2",
                 "--fuse", "0.3"]) == 0
    rec = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose([[j["x"], j["y"]] for j in rec["joints"]], got, atol=0.01)


def test_recrop_predict_chunks_match_one_batch():
    """Images of different sizes, several crops each, fused with their own first looks: chunks of
    3 images give what one batch gives (each image keeps its own first maps and matrices), and
    the order the margins are given in does not matter."""
    from posekit.codecs import build_codec
    from posekit.data.transforms import PoseTransform
    from posekit.looks import look, recrop_predict, to_original
    from posekit.models import build_model

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
        maps, kp, _ = look(net, codec, x)
    first = to_original(kp, m).numpy()
    args = dict(fuse=0.3, first_maps=maps, first_matrices=m.numpy())
    one, s1 = recrop_predict(net, codec, images, first, [0.05, 0.2], 64, "cpu", batch_size=32, **args)
    chunked, s2 = recrop_predict(net, codec, images, first, [0.05, 0.2], 64, "cpu", batch_size=6, **args)
    np.testing.assert_allclose(chunked, one, atol=1e-3)
    np.testing.assert_allclose(s2, s1, atol=1e-4)
    swapped, _ = recrop_predict(net, codec, images, first, [0.2, 0.05], 64, "cpu", batch_size=6, **args)
    np.testing.assert_allclose(swapped, one, atol=1e-3)
    # a first look paired with the wrong image would move the result
    wrong, _ = recrop_predict(net, codec, images, first, [0.05, 0.2], 64, "cpu", fuse=0.3,
                              first_maps=maps.flip(0), first_matrices=m.numpy()[::-1])
    assert np.abs(wrong - one).max() > 1e-2


def test_recrop_margin_benchmark_chooses_on_framed_val(heatmap_ckpt, synth_root, tmp_path, monkeypatch):
    """benchmarks/recrop_margin.py --frame: validation images cut square around their person,
    truth moved into the cut; every setting scored; the choice is the best validation row."""
    import runpy
    import sys

    mod = runpy.run_path("benchmarks/recrop_margin.py")
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
    monkeypatch.setattr(sys, "argv", ["recrop_margin.py", "--model", str(heatmap_ckpt), "--data", str(synth_root),
                                      "--margins", "0.2", "0.1", "--crops", "1", "2", "--fuse", "0", "0.5",
                                      "--frame", "0.17", "--json", str(out)])
    runpy.run_path("benchmarks/recrop_margin.py", run_name="__main__")
    d = json.loads(out.read_text())
    assert [(r["recrop"], r["fuse"]) for r in d["results"]] == [
        (None, 0.0), (0.1, 0.0), (0.1, 0.5), (0.2, 0.0), (0.2, 0.5), ([0.1, 0.2], 0.0), ([0.1, 0.2], 0.5)]
    # each row, made from kept looks, is what the predictor returns with that setting
    framed = images[:6], kp[:6], mask[:6]
    pred = Predictor(str(heatmap_ckpt), recrop=False)
    kept = mod["kept_looks"](pred, framed[0], [0.1, 0.2])
    for margins, fuse in [((0.1,), 0.5), ((0.1, 0.2), 0.5), ((0.1, 0.2), 0.0)]:
        rows = mod["combine"](kept, margins, fuse, pred.input_size, pred.codec, batch=4)
        p = Predictor(str(heatmap_ckpt), recrop=list(margins), fuse=fuse)
        np.testing.assert_allclose(rows, np.stack([q.keypoints for q in p.predict_batch(framed[0])]), atol=1e-3)
    np.testing.assert_allclose(mod["score"](kept["first"]["keypoints"], framed)["pck"],
                               mod["score"](np.stack([q.keypoints for q in pred.predict_batch(framed[0])]), framed)["pck"])
    best = max(d["results"], key=lambda r: r["val"]["pck"])
    assert d["chosen"] == {"recrop": best["recrop"], "fuse": best["fuse"]} and "framed" in d["chosen_on"]
    assert all(r["val"]["n"] == len(images) for r in d["results"])
