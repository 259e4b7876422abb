"""The choice rules of benchmarks/no_person.py (person threshold), benchmarks/topdown_settings.py
(how the pose model uses the detector's box) and benchmarks/pose_nms.py (pose NMS): what each
picks, and a clear refusal when nothing fits."""
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
