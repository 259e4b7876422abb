"""The choice rules of benchmarks/no_person.py (person threshold), benchmarks/topdown_settings.py
(how the pose model uses the detector's box) and benchmarks/pose_nms.py (pose NMS): what each
picks, and a clear refusal when nothing fits; and the measures of benchmarks/precision.py (joint
shift between two arithmetics), benchmarks/box_errors.py (detector crops against training crops)
and benchmarks/val_by_set.py (joint hits)."""
import runpy

import pytest

no_person = runpy.run_path("benchmarks/no_person.py")
topdown = runpy.run_path("benchmarks/topdown_settings.py")

CURVE = [{"threshold": 0.2, "tpr": 0.99, "fpr": 0.20}, {"threshold": 0.26, "tpr": 0.97, "fpr": 0.09},
         {"threshold": 0.32, "tpr": 0.90, "fpr": 0.05}, {"threshold": 0.4, "tpr": 0.80, "fpr": 0.01}]


def test_person_threshold_youden_or_a_fixed_false_positive_rate():
    choose = no_person["choose_threshold"]
    assert choose(CURVE) == 0.26  # the highest TPR - FPR (0.88)
    assert choose(CURVE, max_fpr=0.05) == 0.32  # the lowest with at most 5 % false positives
    assert choose(CURVE, max_fpr=0.01) == 0.4
    assert choose(CURVE, max_fpr=0.001) is None  # none meets it: the script refuses (exit 2)
    assert no_person["main"](["--max-fpr", "1.5"]) == 2  # a rate outside [0, 1] is refused before any work


def _row(margin, looks, val, multi):
    return {"box_margin": margin, "looks": looks, "val": {"pck": val}, "val-multi": {"pck": multi}}


def test_topdown_settings_choice_weighs_several_people_and_keeps_to_the_cost():
    rows = [_row(None, 1, 0.9, 0.9),  # the whole image: reported, never chosen
            _row(0.15, 2, 0.572, 0.617), _row(0.1, 2, 0.557, 0.644), _row(0.1, 4, 0.574, 0.639)]
    choose = topdown["choose"]
    assert choose(rows, multi=False, max_looks=None) is rows[3]  # validation PCK alone
    assert choose(rows, multi=True, max_looks=None) is rows[3]  # the best mean, at any cost
    assert choose(rows, multi=True, max_looks=2) is rows[2]  # the best mean within two inputs per person
    assert choose(rows, multi=False, max_looks=2) is rows[1]
    with pytest.raises(SystemExit, match="no setting runs at most 0 network inputs per person"):
        choose(rows, multi=True, max_looks=0)


def test_pose_nms_choice_keeps_pck_and_takes_the_least_suppression():
    choose = runpy.run_path("benchmarks/pose_nms.py")["choose"]

    def row(t, pck, precision):
        return {"threshold": t, "multi_pck": pck, "pose_precision": precision}

    rows = [row(None, 0.6439, 0.9738), row(0.2, 0.6423, 0.9898), row(0.3, 0.6423, 0.9898), row(0.5, 0.6423, 0.9857)]
    assert choose(rows, 0.005) == 0.3  # the best precision within the PCK loss; of the tied, the highest
    assert choose(rows, 0.001) is None  # every threshold loses too much PCK: off
    assert choose([row(None, 0.6, 0.99), row(0.3, 0.6, 0.99)], 0.005) is None  # no gain: off
    assert runpy.run_path("benchmarks/pose_nms.py")["main"](["--thresholds", "1.5"]) == 2


def test_precision_benchmark_joint_shift_counts_what_moved():
    import numpy as np

    shift = runpy.run_path("benchmarks/precision.py")["joint_shift"]
    a = np.zeros((4, 14, 2))
    b = a.copy()
    b[1, 3] = (3.0, 4.0)  # 5 px: not over the 5 px mark
    b[2, 0] = (0.0, 6.0)  # 6 px: over it
    sa, sb = np.zeros((4, 14)), np.zeros((4, 14))
    sb[3, 5] = 0.2
    r = shift(a, sa, b, sb)
    assert r["images"] == 4 and r["images_over_5px"] == 1 and r["joint_shift_max_px"] == 6.0
    assert r["joint_shift_px"]["50"] == 0.0 and r["joint_score_change"]["99"] > 0


def test_box_errors_measure_the_detector_square_against_the_training_crop():
    import numpy as np

    box_errors = runpy.run_path("benchmarks/box_errors.py")["box_errors"]
    kp = np.array([[10.0, 20.0], [50.0, 100.0]] + [[30.0, 60.0]] * 12)  # joints' box 40 x 80 around (30, 60)
    mask = np.ones(14)
    # a detector box equal to the joints' box: with margin 0.1 its longer side is 96; the training
    # crop (margin 0.25) is the square of side 80 * 1.5 = 120 around the same centre
    found = [(np.array([[10.0, 20.0, 40.0, 80.0]]), np.array([0.9])), (np.zeros((0, 4)), np.zeros(0))]
    e = box_errors(found, [(kp, mask), (kp, mask)], box_margin=0.1, crop_margin=0.25)
    assert e["ratios"] == pytest.approx([96 / 120]) and len(e["offsets"]) == 1  # nobody found: left out
    # person_box puts its square half a pixel down and right (pixel centres at integers): the same
    # centre otherwise
    assert e["offsets"][0] == pytest.approx([-0.5 / 120, -0.5 / 120])


def test_latency_entries_take_precision_refine_weight_and_box_margins():
    parse = runpy.run_path("benchmarks/latency.py")["parse_spec"]
    name, opts = parse("posekit-lsp:refine=0.05;0.22,refine_weight=0.1,precision=fp32,flip_test=on")
    assert name == "posekit-lsp"
    assert opts == {"refine": [0.05, 0.22], "refine_weight": 0.1, "precision": "fp32", "flip_test": True}
    assert parse("posekit-lsp:box_margins=0.05;0.2")[1] == {"box_margins": [0.05, 0.2]}
    assert parse("posekit-lsp:box_margins=off")[1] == {"box_margins": False}
    assert parse("posekit-lsp:denoise=off")[1] == {"denoise": False}
    assert parse("posekit-lsp:denoise=12")[1] == {"denoise": 12.0}
    with pytest.raises(SystemExit, match="unknown option 'half'"):
        parse("posekit-lsp:half=1")


def test_the_side_by_side_latency_script_refuses_what_it_cannot_run(tmp_path):
    import subprocess

    def run(args, **env):
        import os

        return subprocess.run(["bash", "benchmarks/latency_vs_old_default.sh", *args], capture_output=True, text=True,
                              env={**os.environ, **env})

    usage = run([], POSEKIT_DATA="")
    assert usage.returncode == 2 and usage.stderr.startswith("usage:") and len(usage.stderr.splitlines()) == 1
    missing = run([str(tmp_path / "out.json"), "posekit-lsp"], POSEKIT_DATA=str(tmp_path), OLD=str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "nowhere is not a checkout of be0b09a" in missing.stderr
    assert not (tmp_path / "out.json").exists()


def test_robustness_runs_each_model_through_each_detector_given():
    from robustness import runs

    assert runs(["a", "b"], None) == [("a", "a", None), ("b", "b", None)]  # each model's own detector
    assert runs(["a"], ["d1.pt", "off"]) == [("a @ d1.pt", "a", "d1.pt"), ("a @ off", "a", False)]


def test_denoise_settings_parse_and_the_choice_is_the_best_mean(monkeypatch):
    denoise = runpy.run_path("benchmarks/denoise.py")
    parse = denoise["parse_setting"]
    assert parse("off/off") == (None, None) and parse("8/12") == (8.0, 12.0) and parse("5/off") == (5.0, None)
    for bad in ("8", "8/12/3", "0/5", "x/5", "-1/off"):
        with pytest.raises(ValueError, match=f"setting '{bad}'"):
            parse(bad)
    with pytest.raises(ValueError, match="'x' is not a number or off"):
        parse("x/5")
    rows = {"off/off": {"mean": 0.41}, "8/off": {"mean": 0.45}, "8/12": {"mean": 0.45}, "5/10": {"mean": 0.44}}
    assert denoise["choose"](rows) == "8/off"  # a tie goes to the setting given first
    import numpy as np

    monkeypatch.syspath_prepend("benchmarks")  # as when the script runs: robustness.py beside it

    images = [np.full((20, 30, 3), 128, np.uint8)] * 2
    kps, masks = np.zeros((2, 14, 2)), np.ones((2, 14))
    assert denoise["noisy_images"](images, kps, masks, 0.0, 0) is images
    noisy = denoise["noisy_images"](images, kps, masks, 20.0, 0)
    assert all(abs(float(n.astype(float).std()) - 20.0) < 2.0 for n in noisy)
    assert all(np.array_equal(a, b) for a, b in zip(noisy, denoise["noisy_images"](images, kps, masks, 20.0, 0)))
    # the draws of robustness.py's medium noise (its loop seeds [seed, level, kind's place + 1]), so the
    # two reports score the same noisy photos
    robustness = runpy.run_path("benchmarks/robustness.py")
    rng = np.random.default_rng([0, 1, 3])
    same = [robustness["corrupt"](im, "noise", 20.0, kp, m, rng) for im, kp, m in zip(images, kps, masks)]
    assert all(np.array_equal(a, b) for a, b in zip(noisy, same))
    costs = denoise["costs"](runs=2)
    assert set(costs) == {"150x200", "640x480", "1920x1080"} and all(v["noise_sigma_ms"] > 0 for v in costs.values())


def test_val_by_set_hits_count_joints_as_pck_does():
    """benchmarks/val_by_set.py's joint hits are PCK@0.2's: correct within 0.2 x the torso (left
    shoulder to right hip), on the boundary included; an unannotated joint, and every joint of an
    image whose torso is not annotated, is not counted."""
    import numpy as np

    from posekit.metrics import pck
    from posekit.skeleton import TORSO_PAIR

    hits = runpy.run_path("benchmarks/val_by_set.py")["hits"]
    gt = np.zeros((2, 14, 2))
    gt[:, TORSO_PAIR[0]], gt[:, TORSO_PAIR[1]] = (0.0, 0.0), (0.0, 50.0)  # torso 50 px: threshold 10 px
    pred = gt.copy()
    pred[0, 0] += (10.0, 0.0)  # on the threshold: correct
    pred[0, 1] += (6.0, 8.01)  # 10.006 px: wrong
    mask = np.ones((2, 14))
    mask[0, 3] = 0  # unannotated: not counted
    mask[1, TORSO_PAIR[1]] = 0  # no torso: the whole image is not counted
    correct, counted = hits({"pred": pred, "gt": gt, "mask": mask})
    assert counted[0].sum() == 13 and not counted[1].any()
    assert correct[0, 0] and not correct[0, 1] and not correct[0, 3] and correct.sum() == 12
    assert correct.sum() / counted.sum() == pytest.approx(pck(pred, gt, mask > 0)[0])
