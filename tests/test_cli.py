"""CLI smoke tests and every bad input: one line on stderr, exit code 2, nothing half-written."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from conftest import tiny_overrides

from posekit.cli import main


def _train(root, out, *extra):
    mine = {e.split("=", 1)[0] for e in extra if "=" in e}  # a key given once: the test's value
    return main(["train", "--config", "configs/poster.yaml", "--out", str(out), "--epochs", "2", "--no-progress",
                 *[o for o in tiny_overrides(root) if o.split("=", 1)[0] not in mine], *extra])


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("posekit: error: ")
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert _train(synth_root, out) == 0
    return out


def test_train_evaluate_smoke(trained, synth_root, capsys, tmp_path):
    capsys.readouterr()
    rc = main(["evaluate", "--model", str(trained / "best.pt"), "--data", str(synth_root), "--split", "lsp-test",
               "--json", "--out", str(tmp_path / "ev")])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    for k in ("pck", "pcp", "mse", "mean_px_error", "per_joint_pck", "n"):
        assert k in m
    assert m["n"] == 20 and 0 <= m["pck"] <= 1 and 0 <= m["pcp"] <= 1 and len(m["per_joint_pck"]) == 14
    for f in ("metrics.md", "metrics.json", "predictions.png", "loss_curve.png"):
        assert (tmp_path / "ev" / f).stat().st_size > 0
    assert main(["evaluate", "--model", str(trained), "--data", str(synth_root), "--split", "val"]) == 0
    assert "| PCK@0.2 |" in capsys.readouterr().out
    # lsp-train: LSP's first half, whole images; the model trained on (most of) them
    assert main(["evaluate", "--model", str(trained), "--data", str(synth_root), "--split", "lsp-train", "--json"]) == 0
    tr = json.loads(capsys.readouterr().out)
    assert tr["n"] == 20 and tr["split"] == "lsp-train" and tr["train_overlap"] >= 15
    assert main(["evaluate", "--model", str(trained), "--data", str(synth_root), "--flip-test", "--json"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["flip_test"] is True and f["n"] == m["n"] and f["pck"] is not None
    for p in ("fp32", "bf16"):  # the networks' arithmetic is the caller's to choose, and reported
        assert main(["evaluate", "--model", str(trained), "--data", str(synth_root), "--precision", p, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["infer_precision"] == p


def test_paper_test_split_and_overlap_warning(synth_root, tmp_path, capsys):
    out = tmp_path / "paper"
    assert _train(synth_root, out, "data.split=paper", "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(synth_root), "--split", "paper-test", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["n"] == 12 and "warning" not in cap.err
    # lsp-test overlaps a paper-split training set: the user is told
    assert main(["evaluate", "--model", str(out), "--data", str(synth_root), "--json"]) == 0
    cap = capsys.readouterr()
    assert "in this model's training split" in cap.err
    full_overlap = json.loads(cap.out)["train_overlap"]
    # with data.limit_train only the images actually trained on count
    out2 = tmp_path / "paper-limited"
    assert _train(synth_root, out2, "data.split=paper", "data.limit_train=8", "--epochs", "1") == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out2), "--data", str(synth_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train_overlap"] < full_overlap


def test_resume_cli(trained, synth_root, capsys):
    assert main(["train", "--resume", str(trained), "--epochs", "3", "--no-progress"]) == 0
    hist = json.loads((trained / "history.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    # resuming a finished run (what a chain of runs does when called again) leaves it untouched
    before = {f: (trained / f).read_bytes() for f in ("last.pt", "best.pt", "history.json")}
    capsys.readouterr()
    assert main(["train", "--resume", str(trained), "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "finished, 3 epochs trained (train.epochs is 3); raise --epochs to train on; nothing to resume" in said
    assert {f: (trained / f).read_bytes() for f in before} == before


def test_existing_run_needs_resume_or_force(trained, synth_root, capsys):
    capsys.readouterr()
    assert _train(synth_root, trained) == 2
    _one_line_error(capsys, "a run already exists")


def test_missing_data_root(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("POSEKIT_DATA", raising=False)
    assert _train(tmp_path / "nowhere", tmp_path / "out") == 2
    _one_line_error(capsys, "nowhere", "dataset root not found")
    assert not (tmp_path / "out").exists()
    assert main(["data", "check"]) == 2
    _one_line_error(capsys, "no dataset root given")


def test_unknown_config_key_and_model(tmp_path, synth_root, capsys):
    assert _train(synth_root, tmp_path / "o", "train.lrr=0.1") == 2
    _one_line_error(capsys, "unknown config key 'train.lrr'", "did you mean 'lr'")
    assert _train(synth_root, tmp_path / "o", "model.name=resnet9000") == 2
    _one_line_error(capsys, "unknown model 'resnet9000'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: poster_cnn}\ntrain:\n  epochz: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    _one_line_error(capsys, "bad.yaml", "unknown config key 'train.epochz'")
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    _one_line_error(capsys, "nope.yaml: config file not found")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("override,needle", [
    ("model.width=abc", "poster_cnn"),
    ("model.depth=3", "unknown option(s) 'depth'"),
    ("augment.flip=2", "'augment.flip': Input should be less than or equal to 1, got 2"),
    ("data.fractions=[0.5]", "'data.fractions[1]': Field required, got [0.5]"),
    ("train.momentum=abc", "'train.momentum': Input should be a valid number"),
    ("train.batch_size=2.5", "'train.batch_size': Input should be a valid integer, got a number with a fractional part"),
    ("train.device=tpu", "'train.device': String should match pattern"),
    ("data.cache=maybe", "'data.cache': Input should be a valid boolean"),
    ("name=5", "'name': Input should be a valid string, got 5"),
    ("infer.refine=3", "'infer.refine[0]': Input should be less than or equal to 2, got 3"),
    ("infer.refine=wide", "'infer.refine': Input should be a valid list, got 'wide'"),
    ("infer.refine=[0.1,3]", "'infer.refine[1]': Input should be less than or equal to 2, got 3"),
    ("infer.refine=[]", "'infer.refine': List should have at least 1 item"),
    ("infer.refine=[0,0,0,0,0,0,0,0,0]", "'infer.refine': List should have at most 8 items"),
    ("infer.refine=false", "'infer.refine': Input should be a valid list, got False"),
    ("infer.box_margins=[0.1,3]", "'infer.box_margins[1]': Input should be less than or equal to 2, got 3"),
    ("infer.recrop=0.1", "config key 'infer.recrop' was renamed to 'infer.refine'"),
    ("train.optimizer=sdg", "'train.optimizer': Input should be 'sgd', 'adam' or 'adamw', got 'sdg'"),
    ("data.input_size=100000", "'data.input_size': Input should be less than or equal to 1024, got 100000"),
    ("train.momentum=0.5", "'train.momentum' applies to train.optimizer=sgd only (this recipe uses adam)"),
])
def test_bad_config_values(tmp_path, synth_root, capsys, override, needle):
    assert _train(synth_root, tmp_path / "o", override) == 2
    _one_line_error(capsys, needle)
    assert not (tmp_path / "o").exists()


def test_unknown_model_names_the_config_file(tmp_path, capsys):
    bad = tmp_path / "m.yaml"
    bad.write_text("model: {name: resnet9000}\n")
    assert main(["train", "--config", str(bad)]) == 2
    _one_line_error(capsys, "m.yaml", "unknown model 'resnet9000'")


def test_force_replaces_an_earlier_run(tmp_path, synth_root):
    out = tmp_path / "f"
    assert _train(synth_root, out, "--epochs", "2") == 0
    assert _train(synth_root, out, "--epochs", "1", "--force") == 0
    assert len(json.loads((out / "history.json").read_text())) == 1
    assert len(list((out / "tb").glob("events.*"))) == 1


def _damaged_root(tmp_path, synth_root):
    root = tmp_path / "d"
    shutil.copytree(synth_root / "lsp", root / "lsp")
    return root


def test_wrong_joints_shape(tmp_path, synth_root, capsys):
    root = _damaged_root(tmp_path, synth_root)
    scipy.io.savemat(root / "lsp" / "joints.mat", {"joints": np.zeros((2, 14, 40))})
    assert _train(root, tmp_path / "o", "data.sets=[lsp]") == 2
    _one_line_error(capsys, "joints.mat", "shape (2, 14, 40)")
    assert not (tmp_path / "o").exists()


def test_nan_coordinates(tmp_path, synth_root, capsys):
    root = _damaged_root(tmp_path, synth_root)
    j = scipy.io.loadmat(root / "lsp" / "joints.mat")["joints"]
    j[1, 5, 7] = np.nan
    scipy.io.savemat(root / "lsp" / "joints.mat", {"joints": j})
    assert _train(root, tmp_path / "o", "data.sets=[lsp]") == 2
    _one_line_error(capsys, "joints.mat", "joint 6 of image 8")
    assert not (tmp_path / "o").exists()


def test_missing_image(tmp_path, synth_root, capsys):
    root = _damaged_root(tmp_path, synth_root)
    (root / "lsp" / "images" / "im0003.jpg").unlink()
    assert _train(root, tmp_path / "o", "data.sets=[lsp]") == 2
    _one_line_error(capsys, "im0003.jpg: image file not found")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("cache,workers", [(True, 0), (False, 2)])
def test_corrupt_jpeg(tmp_path, synth_root, capsys, cache, workers):
    root = _damaged_root(tmp_path, synth_root)
    p = root / "lsp" / "images" / "im0002.jpg"
    p.write_bytes(p.read_bytes()[:200])
    rc = _train(root, tmp_path / "o", "data.sets=[lsp]", f"data.cache={cache}", f"train.num_workers={workers}")
    assert rc == 2
    _one_line_error(capsys, "im0002.jpg", "truncated or corrupt JPEG")
    assert not (tmp_path / "o").exists()  # images are read before the run folder is made


def test_evaluate_bad_model(tmp_path, synth_root, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "none.pt"), "--data", str(synth_root)]) == 2
    _one_line_error(capsys, "none.pt: model file not found")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["evaluate", "--model", str(tmp_path / "junk.pt"), "--data", str(synth_root)]) == 2
    _one_line_error(capsys, "junk.pt: not a posekit checkpoint")


def test_data_show_and_check(synth_root, tmp_path, capsys):
    assert main(["data", "show", "--data", str(synth_root), "--index", "3", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    assert main(["data", "show", "--data", str(synth_root), "--index", "99"]) == 2
    _one_line_error(capsys, "--index 99 out of range")
    assert main(["data", "check", "--data", str(synth_root), "--no-hashes"]) == 1
    assert "PROBLEM" in capsys.readouterr().out


def test_console_script_runs(tmp_path):
    exe = shutil.which("posekit") or str((__import__("pathlib").Path(sys.executable).parent / "posekit"))
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout and "evaluate" in r.stdout
    r = subprocess.run([sys.executable, "-m", "posekit", "data", "check", "--data", str(tmp_path / "x")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "dataset root not found" in r.stderr


def test_real_data_end_to_end(real_root, tmp_path, capsys):
    """A few steps of the poster recipe on real LSP, then lsp-test evaluation in original pixels."""
    out = tmp_path / "real"
    rc = main(["train", "--config", "configs/poster.yaml", "--data", str(real_root), "--out", str(out), "--epochs", "1",
               "--no-progress", "data.sets=[lsp]", "data.limit_train=64", "data.limit_val=32", "train.num_workers=0",
               "model.width=4"])
    assert rc == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", str(real_root), "--limit", "40", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n"] == 40 and m["split"] == "lsp-test" and m["mean_px_error"] > 0


def test_refinement_and_threshold_flags():
    """--refine and --box-margins take margins (comma-separated) or off, --refine-weight a weight
    in [0, 1), --person-threshold a number in [0, 1]; evaluate also takes --crop-border."""
    import argparse

    from posekit.cli import build_parser, refine_arg, unit_arg, weight_arg

    assert refine_arg("0.1") == [0.1] and refine_arg("0.22,0.05") == [0.22, 0.05]
    assert refine_arg("off") is False and refine_arg("None") is False
    for bad in ("3", "wide", "", "0.1,-1", ",".join(["0.1"] * 9)):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a margin in"):
            refine_arg(bad)
    assert weight_arg("0") == 0.0 and weight_arg("0.3") == 0.3
    for bad in ("1", "-0.1", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"expected a number in \[0, 1\)"):
            weight_arg(bad)
    assert unit_arg("1") == 1.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a number in \[0, 1\]"):
        unit_arg("1.5")
    a = build_parser().parse_args(["evaluate", "--refine", "0.2,0.1", "--refine-weight", "0.3", "--crop-border", "5"])
    assert (a.refine, a.refine_weight, a.crop_border) == ([0.2, 0.1], 0.3, 5)
    a = build_parser().parse_args(["predict", "x.jpg", "--refine", "off", "--person-threshold", "0.5"])
    assert (a.refine, a.refine_weight, a.person_threshold) == (False, None, 0.5)
    a = build_parser().parse_args(["serve", "--refine", "0.1", "--person-threshold", "0"])
    assert (a.refine, a.person_threshold, a.refine_weight, a.crop_border) == ([0.1], 0.0, None, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--recrop", "0.1"])  # the old flag is gone
    # --box-margins (the multi-scale test on detected boxes) parses as --refine does
    assert build_parser().parse_args(["evaluate", "--box-margins", "0.2,0.05"]).box_margins == [0.2, 0.05]
    assert build_parser().parse_args(["predict", "x.jpg", "--box-margins", "off"]).box_margins is False
    assert build_parser().parse_args(["serve", "--box-margins", "0.1"]).box_margins == [0.1]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--box-margins", "0.1,-1"])
    from posekit.cli.commands import predictor_args

    assert predictor_args(build_parser().parse_args(["predict", "x.jpg", "--box-margins", "0.2,0.05"]))[
        "box_margins"] == [0.2, 0.05]


def test_follow_on_is_refused_where_nobody_single_is_followed(capsys, tmp_path):
    """--follow on follows the one person the detector found: with --people all or a given --box
    there is nothing to follow, so it is one line and exit code 2, before any model is loaded."""
    img = tmp_path / "x.jpg"
    img.write_bytes(b"not read")
    for extra in (["--people", "all"], ["--box", "0,0,50,80"]):
        assert main(["predict", str(img), "--follow", "on", *extra]) == 2
        _one_line_error(capsys, "--follow on", "--people all or --box")


class _Scene:
    """A stand-in Predictor (no network) with a detector: on a bright image it finds people whose
    pose scores are ``found`` (in the detector's order); on a dark one nobody, and ``predict``
    answers the whole image's pose of score ``guess`` (the detector found nobody: box_score 0.0)."""

    name, threshold, detector = "stub", 0.3, object()

    def __init__(self, found=(0.5, 0.9), guess=0.12):
        from types import SimpleNamespace

        from posekit.config import VideoConfig

        self.found, self.guess = found, guess
        self.config = SimpleNamespace(video=VideoConfig(smooth=False, roi_margin=None))

    @staticmethod
    def _pose(img, score, **kw):
        from posekit.inference import Pose

        h, w = img.shape[:2]
        kp = np.stack([np.linspace(5, w - 5, 14), np.linspace(5, h - 5, 14)], 1)
        return Pose(kp, np.full(14, score), w, h, score=score, found=score >= _Scene.threshold, **kw)

    def predict_all(self, img):
        if img.mean() < 100:
            return []
        return [self._pose(img, s, box=(10.0 + 40 * i, 5.0, 30.0, 50.0), box_score=0.9 - 0.2 * i, person=i)
                for i, s in enumerate(self.found)]

    def predict(self, img, box=None):
        people = self.predict_all(img)
        if people:
            return people[0]
        guess = self._pose(img, self.guess, box_score=0.0)
        guess.found = False  # a person must be detected too
        return guess

    def predict_people(self, img):
        return self.predict_all(img), self.predict(img)


def _scene_inputs(tmp_path):
    """A bright image (people), a dark one (nobody) and a 4-frame clip: bright, dark, bright, dark."""
    import cv2

    bright, dark = tmp_path / "bright.png", tmp_path / "dark.png"
    cv2.imwrite(str(bright), np.full((90, 120, 3), 200, np.uint8))
    cv2.imwrite(str(dark), np.full((90, 120, 3), 20, np.uint8))
    clip = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (120, 90))
    for v in (200, 20, 200, 20):
        w.write(np.full((90, 120, 3), v, np.uint8))
    w.release()
    return [str(bright), str(dark), str(clip)]


@pytest.mark.parametrize("people", ["one", "all"])
def test_records_have_one_shape_and_nobody_is_the_one_person_answer(tmp_path, capsys, monkeypatch, people):
    """Every record, image or video frame, somebody or nobody, one person or all, has the same
    fields in the same order (one builder); nobody is the one-person answer, not found, person
    null, with that pose's own score; CSV has every JSON field (model, box, box_score too)."""
    import csv
    import io

    import posekit.cli.predict as cp
    from posekit.skeleton import JOINT_NAMES

    monkeypatch.setattr(cp, "Predictor", lambda **k: _Scene())
    inputs = _scene_inputs(tmp_path)
    assert main(["predict", *inputs, "--people", people, "--json"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    fields = ["model", "width", "height", "person", "found", "score", "box", "box_score", "joints"]
    for r in recs:
        video = r["image"].endswith("clip.avi")
        assert list(r) == ["image", *(["frame", "time"] if video else []), *fields], r
        assert len(r["joints"]) == 14 and r["model"] == "stub" and (r["width"], r["height"]) == (120, 90)
    nobody = [r for r in recs if not r["found"]]
    assert [r["image"].rsplit("/", 1)[-1] for r in nobody] == ["dark.png", "clip.avi", "clip.avi"]
    assert all(r["person"] is None and r["score"] == 0.12 and r["box"] is None and r["box_score"] == 0.0
               for r in nobody)
    somebody = [r for r in recs if r["found"]]
    assert [r["score"] for r in somebody] == ([0.5] * 3 if people == "one" else [0.5, 0.9] * 3)  # detector's order
    assert all(r["box"] is not None and r["box_score"] is not None for r in somebody)

    assert main(["predict", *inputs, "--people", people, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0])[:14] == ["image", "frame", "time", "model", "width", "height", "person", "found", "score",
                                  "box_x", "box_y", "box_w", "box_h", "box_score"]
    assert len(rows) == len(recs) and len(rows[0]) == 14 + 4 * len(JOINT_NAMES)
    for row, r in zip(rows, recs):
        cells = [r.get("frame"), r.get("time"), r["model"], r["person"], int(r["found"]), r["score"],
                 *(r["box"] or [None] * 4), r["box_score"], r["joints"][13]["x"]]
        want = ["" if v is None else str(v) for v in cells]
        assert [row[k] for k in ("frame", "time", "model", "person", "found", "score", "box_x", "box_y", "box_w",
                                 "box_h", "box_score", "head_top_x")] == want

    assert main(["predict", inputs[1], "--people", people]) == 0
    assert capsys.readouterr().out.strip() == f"{inputs[1]}: no person found (score 0.12, threshold 0.30)"
    monkeypatch.setattr(cp, "Predictor", lambda **k: _Scene(guess=0.46))  # a pose over the threshold, undetected
    assert main(["predict", inputs[1], "--people", people]) == 0
    assert capsys.readouterr().out.strip().endswith("no person found (score 0.46, threshold 0.30, but no person detected)")


def test_predict_help_says_what_the_defaults_and_records_are(capsys):
    """--box defaults to the detector's person (not the whole image); --json/--csv write one
    record per person with --people all; posekit.PosekitError is the public error type."""
    import posekit
    from posekit.errors import PosekitError

    assert posekit.PosekitError is PosekitError and "PosekitError" in posekit.__all__
    for cmd in ("predict", "explain"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: the detector's best person; without a detector, the whole image" in text
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one JSON object per record (per image or frame; --people all: per person)" in text


def test_outputs_are_checked_before_the_work(tmp_path, capsys, monkeypatch):
    """A file where an output's folder should be is refused before any work, naming the option
    and the file in the way (it said "afile: File exists" after packing every image); pack's split
    settings are checked (a negative validation fraction silently moved training images)."""
    from posekit.cli import main

    afile = tmp_path / "afile"
    afile.write_text("a file")
    monkeypatch.chdir(tmp_path)
    ran = []
    monkeypatch.setattr("posekit.data.pack.load_sets", lambda *a, **k: ran.append(1) or {})
    d = ["--data", str(tmp_path)]
    cases = [
        (["data", "pack", *d, "--out", "afile/p.npz"], "afile/p.npz: --out cannot be written: afile is a file"),
        (["data", "pack", *d, "--out", "p.npz", "--json", "afile/x.json"],
         "afile/x.json: --json cannot be written: afile is a file"),
        (["export", "--model", "posekit-lsp", "--onnx", "afile/x.onnx"],
         "afile/x.onnx: --onnx cannot be written: afile is a file"),
        (["evaluate", "--model", "posekit-lsp", *d, "--out", "afile/r"], "afile/r: --out cannot be created: afile is a file"),
        (["data", "pack", *d, "--out", "v.npz", "--val-fraction", "-0.5"],
         "pack: --val-fraction -0.5: expected a fraction in [0, 1)"),
        (["data", "pack", *d, "--out", "v.npz", "--split-seed", "-1"], "pack: --split-seed -1: expected a seed >= 0"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        assert capsys.readouterr().err.strip() == f"posekit: error: {msg}"
    assert ran == [] and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_file_in_the_way_of_an_output_folder_is_named(tmp_path):
    from posekit.utils import atomic_write_text

    (tmp_path / "afile").write_text("a file")
    with pytest.raises(NotADirectoryError) as e:
        atomic_write_text(tmp_path / "afile" / "sub" / "x.json", "{}")
    assert e.value.filename == str(tmp_path / "afile") and e.value.strerror == "is a file, not a folder"


def test_hidden_files_in_a_folder_are_skipped_and_useless_options_refused(tmp_path, capsys):
    """macOS leaves ``._photo.jpg`` resource forks beside the photos it copies: they are no
    images, and a folder of photos failed because of them. An option that would change nothing
    is refused rather than ignored."""
    from posekit.cli import main
    from posekit.cli.predict import collect_inputs

    (tmp_path / "sub").mkdir()
    (tmp_path / ".cache").mkdir()
    for name in ("a.jpg", "._a.jpg", "sub/b.png", ".cache/c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    found, missing = collect_inputs([str(tmp_path)])
    assert [n for _, n in found] == ["a", "sub/b"] and missing == []
    hidden = tmp_path / "._a.jpg"
    assert [n for _, n in collect_inputs([str(hidden)])[0]] == ["._a"]  # named directly: read as asked
    assert main(["predict", str(tmp_path / "a.jpg"), str(tmp_path / "sub" / "b.png")]) == 2
    assert capsys.readouterr().err.strip().endswith("2 of 2 inputs failed (reported above)")
    assert main(["predict", str(tmp_path / "a.jpg"), "--refine", "off", "--refine-weight", "0.5"]) == 2
    assert "give refine (--refine M[,M...]) too" in capsys.readouterr().err
    assert main(["export", "--model", "posekit-lsp", "--onnx", str(tmp_path / "m.onnx"), "--calib", str(tmp_path)]) == 2
    assert "--calib calibrates --int8 quantisation" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_a_broken_link_in_an_output_path_is_named(tmp_path):
    from posekit.errors import PosekitError
    from posekit.utils import check_output_file, check_writable_folder

    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(PosekitError, match=r"dangling/q\.npz: --out cannot be written: .*dangling is a broken link"):
        check_output_file(tmp_path / "dangling" / "q.npz", "--out")
    with pytest.raises(PosekitError, match=r"--out cannot be created: .*dangling is a broken link"):
        check_writable_folder(tmp_path / "dangling" / "sub", "--out")


def test_options_may_come_between_inputs(tmp_path, capsys, monkeypatch):
    """`predict a.png --json b.png` poses both (it said "unrecognized arguments: b.png" with the
    top-level usage); train's KEY=VALUE overrides mix with options too; an unknown option is
    still refused in one line, exit code 2."""
    import posekit.cli.predict as cp
    from posekit.cli import build_parser

    monkeypatch.setattr(cp, "Predictor", lambda **k: _Scene())
    bright, dark, _clip = _scene_inputs(tmp_path)
    assert main(["predict", bright, "--json", dark, "--people", "all"]) == 0
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in recs] == [bright, bright, dark]
    args = build_parser().parse_args(["train", "--config", "c.yaml", "train.lr=0.1", "--epochs", "3", "data.x=1"])
    assert args.overrides == ["train.lr=0.1", "data.x=1"] and args.epochs == 3
    with pytest.raises(SystemExit) as e:
        main(["predict", bright, "--bogus", dark])
    assert e.value.code == 2 and "posekit: error: unrecognized arguments: --bogus" in capsys.readouterr().err


def test_no_person_line_never_reads_score_equal_to_threshold():
    """A score under the threshold reads as under it: 0.3152 against 0.32 printed "score 0.32,
    threshold 0.32" (no person found at a score equal to the threshold). As many digits as it
    takes, 2 when they suffice."""
    from posekit.cli.predict import text_line

    rec = {"image": "a.jpg", "found": False, "score": 0.3152}
    assert text_line(rec, 0.32) == "a.jpg: no person found (score 0.315, threshold 0.32)"
    assert text_line({**rec, "score": 0.2996}, 0.3) == "a.jpg: no person found (score 0.2996, threshold 0.30)"
    assert text_line({**rec, "score": 0.12}, 0.3) == "a.jpg: no person found (score 0.12, threshold 0.30)"
    assert text_line({**rec, "score": 0.3248}, 0.3245).endswith("(score 0.32, threshold 0.32, but no person detected)")


def test_readable_line_has_one_format_with_or_without_a_detector(capsys):
    """`photo.jpg person 0: person score ...` whether the detector found the person, a box was
    given or there is no detector (the last two printed `photo.jpg: person score ...`)."""
    lines = []
    for extra in ([], ["--box", "20,20,100,150"], ["--detector", "off"]):
        assert main(["predict", "examples/lsp_im1003.jpg", "--model", "posekit-lsp-fast", *extra]) == 0
        lines.append(capsys.readouterr().out.strip())
    assert all(line.startswith("examples/lsp_im1003.jpg person 0: person score 0.") for line in lines), lines


def test_resume_keeps_its_own_recipe(trained, capsys):
    """`--resume RUN --config OTHER` is refused in one line (it would be ignored), nothing trained."""
    capsys.readouterr()
    before = (trained / "last.pt").read_bytes()
    assert main(["train", "--resume", str(trained), "--config", "configs/paper.yaml", "--no-progress"]) == 2
    _one_line_error(capsys, "--config configs/paper.yaml", "keeps its own recipe", "start a new run")
    assert (trained / "last.pt").read_bytes() == before


def test_resume_of_a_run_without_a_checkpoint(tmp_path, capsys):
    """A run killed before its first epoch ended (config.yaml, no last.pt) is named so, not 'model file not found'."""
    run = tmp_path / "o14"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    assert main(["train", "--resume", str(run)]) == 2
    _one_line_error(capsys, "o14", "no checkpoint yet", "without --resume", "--force")


def test_train_out_must_be_a_folder(tmp_path, synth_root, capsys):
    (tmp_path / "afile").write_text("x")
    assert _train(synth_root, tmp_path / "afile") == 2
    _one_line_error(capsys, "afile", "--out must be a folder")
    assert _train(synth_root, tmp_path / "afile" / "sub") == 2
    _one_line_error(capsys, "--out cannot be created", "afile is a file")


def test_an_override_given_twice_is_refused(tmp_path, synth_root, capsys):
    """As a key twice in a YAML file: one line naming the key; the same value twice is no conflict."""
    assert _train(synth_root, tmp_path / "o", "train.lr=1e-3", "train.lr=2e-3") == 2
    _one_line_error(capsys, "'train.lr' is given twice", "train.lr=1e-3")
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(tmp_path / "o"), "--epochs", "2",
                 "train.epochs=5"]) == 2
    _one_line_error(capsys, "'train.epochs' is given twice", "--epochs 2")
    assert not (tmp_path / "o").exists()


def test_a_model_problem_names_the_override(tmp_path, synth_root, capsys):
    """An override that makes the model unbuildable is named, not the recipe file it was applied to."""
    assert _train(synth_root, tmp_path / "o", "data.input_size=97") == 2
    err = _one_line_error(capsys, "data.input_size=97 (command line)", "multiple of 16")
    assert "poster.yaml" not in err
    bad = tmp_path / "m.yaml"
    bad.write_text("data: {input_size: 97}\n")
    assert main(["train", "--config", str(bad), "train.lr=0.1"]) == 2
    _one_line_error(capsys, "m.yaml: ", "multiple of 16")
    assert not (tmp_path / "o").exists()
    # a model that does not fit its codec: the override that made it so is named
    assert _train(synth_root, tmp_path / "c", "model.name=resnet_pose", "model.width=8") == 2
    err = _one_line_error(capsys, "model.name=resnet_pose (command line): ", "do not fit")
    assert not err.startswith("posekit: error: config:") and not (tmp_path / "c").exists()


@pytest.mark.parametrize("size", ["100000", "-5", "8"])
def test_data_show_size_is_range_checked(tmp_path, capsys, size):
    assert main(["data", "show", "--data", str(tmp_path / "nowhere"), "--index", "0", "--size", size,
                 "--out", str(tmp_path / "s.png")]) == 2
    _one_line_error(capsys, f"--size {size}", "16-1024")
    assert not (tmp_path / "s.png").exists()


def _no_long_work(monkeypatch):
    import posekit.data.pack
    import posekit.distill
    import posekit.predict

    def boom(*a, **k):
        raise AssertionError("the long work ran before --out was checked")

    for mod, name in ((posekit.distill, "teacher_cache"), (posekit.data.pack, "pack_split"),
                      (posekit.predict, "Predictor")):
        monkeypatch.setattr(mod, name, boom)


@pytest.mark.parametrize("command", ["teacher", "pack"])
def test_data_outputs_are_checked_before_the_long_pass(tmp_path, capsys, monkeypatch, command):
    """`data teacher` and `data pack` check --out (and pack's --json) the same way, before any work:
    a folder in the way, a name without .npz, a folder that takes no file; nothing is written."""
    from pathlib import Path

    _no_long_work(monkeypatch)
    (tmp_path / "dir.npz").mkdir()
    cases = [(tmp_path / "dir.npz", "--out must be a file"), (tmp_path / "te4.txt", "--out must end in .npz")]
    if Path("/proc/self").is_dir():
        cases.append((Path("/proc/te.npz"), "--out cannot be written"))
    for out, needle in cases:
        assert main(["data", command, "--data", str(tmp_path), "--out", str(out), "--no-progress"]) == 2
        _one_line_error(capsys, str(out), needle)
    if command == "pack" and Path("/proc/self").is_dir():
        assert main(["data", "pack", "--data", str(tmp_path), "--out", str(tmp_path / "b9.npz"), "--json",
                     "/proc/x.json", "--no-progress"]) == 2
        _one_line_error(capsys, "/proc/x.json", "--json cannot be written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npz"]


def test_inference_options_reach_predict_and_serve(monkeypatch, tmp_path):
    """--refine-weight and --crop-border are taken by predict and serve as by evaluate."""
    import socket

    import posekit.cli.predict
    from posekit.serve import app as serve_app

    got = {}
    monkeypatch.setattr(posekit.cli.predict, "run_predict", lambda inputs, p, job, **k: got.update(p) or (0, 1))
    assert main(["predict", "x.png", "--refine", "0.1", "--refine-weight", "0.2", "--crop-border", "3"]) == 0
    assert got["crop_border"] == 3 and got["refine_weight"] == 0.2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    called = []
    monkeypatch.setattr(serve_app, "run", lambda **kw: called.append(kw))
    assert main(["serve", "--port", str(port), "--refine", "0.1", "--refine-weight", "0.2", "--crop-border", "3"]) == 0
    assert called[0]["crop_border"] == 3 and called[0]["refine_weight"] == 0.2
