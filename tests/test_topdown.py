"""Top-down pieces: the detector's codec (round trip, NMS), composed scenes, box metrics,
tracking and the One-Euro filter, the detector's training task and Predictor.predict_all."""
import dataclasses

import numpy as np
import pytest
import torch

from posekit.codecs import build_codec
from posekit.data.scenes import box_from_joints, compose, multi_person_set
from posekit.metrics import average_precision, box_iou, match_people, multi_person_pck
from posekit.tracking import OneEuroFilter, Tracker


def _output_for(codec, boxes):
    """The outputs a perfect network would give for ``boxes``."""
    t = codec.encode(np.asarray(boxes))
    out = torch.zeros(1, 5, codec.size, codec.size)
    out[0, 0] = torch.logit(torch.from_numpy(t["heat"][0]).clamp(1e-4, 1 - 1e-4))
    out[0, 1:3] = torch.from_numpy(t["wh"])
    out[0, 3:5] = torch.from_numpy(t["offset"])
    return out


def test_center_codec_round_trip():
    codec = build_codec({"name": "center", "stride": 4}, 256)
    boxes = np.array([[40.3, 60.2, 50.0, 120.0], [150.0, 20.0, 80.0, 200.0], [5.5, 200.1, 20.0, 40.0]])
    (got, scores), = codec.decode(_output_for(codec, boxes))
    assert len(got) == 3 and (scores > 0.99).all()
    order = np.argsort(got[:, 0])
    np.testing.assert_allclose(got[order], boxes[np.argsort(boxes[:, 0])], atol=1e-3)
    t = codec.encode(boxes)
    assert t["mask"].sum() == 3 and t["heat"].max() == 1.0
    target = {k: torch.from_numpy(v)[None] for k, v in t.items()}
    perfect = codec.loss(_output_for(codec, boxes), target)
    worse = codec.loss(torch.zeros(1, 5, codec.size, codec.size), target)
    assert perfect < worse
    with pytest.raises(ValueError, match="unknown option 'strid'"):
        build_codec({"name": "center", "strid": 4}, 256)


def test_center_codec_flip_test_maps_the_mirror_back_and_is_mirror_symmetric():
    codec = build_codec({"name": "center", "stride": 4}, 64)
    box = np.array([[10.3, 6.2, 14.0, 30.0]])
    mirrored = box.copy()
    mirrored[:, 0] = 64 - 1 - box[:, 0] - box[:, 2]  # the same box in the mirrored input (pixel centres at integers)
    fused = codec.flip_average(_output_for(codec, box), _output_for(codec, mirrored))
    (got, scores), = codec.decode(fused)
    assert np.allclose(got, box, atol=1e-4) and scores[0] > 0.99  # the mirror's answer lands on the box itself
    a, b = torch.randn(2, 5, 16, 16), torch.randn(2, 5, 16, 16)  # any outputs: the image's and its mirror's
    assert torch.allclose(codec.unflip(codec.flip_average(b, a)), codec.flip_average(a, b), atol=1e-5)
    assert torch.equal(codec.unflip(codec.unflip(a)), a)


def test_the_detectors_flip_test_answers_a_mirrored_image_with_mirrored_boxes():
    import cv2

    from posekit.detect import PersonDetector
    from posekit.errors import PosekitError
    from posekit.predict import Predictor

    image = cv2.imread("examples/lsp_im1003.jpg")[..., ::-1]
    side = min(image.shape[:2])
    image = np.ascontiguousarray(image[:side, :side])  # square: the letterbox pads nothing, mirroring is exact
    det = PersonDetector("posekit-person", precision="fp32")

    def gap(flip_test):
        det.settings = det.settings.model_copy(update={"flip_test": flip_test})
        (b, s), (bm, sm) = det.detect_batch([image, np.ascontiguousarray(image[:, ::-1])], 0.05)
        assert len(b) and len(b) == len(bm)
        bm[:, 0] = side - bm[:, 0] - bm[:, 2]  # back to the image's frame (pixel edges)
        return np.abs(b - bm).max(), np.abs(s - sm).max()

    on, off = gap(True), gap(False)
    assert on[0] < 1e-2 and on[1] < 1e-4 and off[0] > 10 * on[0]
    # the Predictor's switch, the model's own by default, refused without a detector
    assert Predictor("posekit-lsp").detector_flip_test is False
    p = Predictor("posekit-lsp", detector_flip_test=True)
    assert p.detector_flip_test and p.detector.settings.flip_test
    shared = PersonDetector("posekit-person")  # one detector given to several predictors keeps its own setting
    on, own, off = (Predictor("posekit-lsp", detector=shared, detector_flip_test=v) for v in (True, None, False))
    assert on.detector_flip_test and not own.detector_flip_test and not off.detector_flip_test
    assert not shared.settings.flip_test and own.detector is shared and on.detector is not shared
    assert Predictor("posekit-lsp", detector=False).detector_flip_test is False
    with pytest.raises(PosekitError, match="is the person detector's flip test, and this runs without one"):
        Predictor("posekit-lsp", detector=False, detector_flip_test=True)
    from posekit.cli import main

    assert main(["predict", "examples/lsp_im1011.jpg", "--detector-flip-test", "on", "--json"]) == 0
    assert main(["predict", "examples/lsp_im1011.jpg", "--detector", "off", "--detector-flip-test", "on"]) == 2


def test_center_codec_nms_keeps_one_of_two_overlapping_peaks():
    codec = build_codec({"name": "center"}, 128)
    out = _output_for(codec, [[30, 30, 40, 80]])
    assert out[0, 0].argmax() == 17 * 32 + 12  # the person's centre cell: row 17, column 12
    out[0, 0, 17, 14] = 6.0  # a second strong peak two cells away, the same size: one person found twice
    out[0, 1:5, 17, 14] = out[0, 1:5, 17, 12]
    (boxes, scores), = codec.decode(out, nms_iou=0.5)
    assert len(boxes) == 1
    (boxes, _), = codec.decode(out, nms_iou=0.99)  # without suppression both stay
    assert len(boxes) == 2
    (boxes, _), = codec.decode(out, score_threshold=0.999999)
    assert len(boxes) == 0


def test_group_boxes_hold_two_people_or_more():
    from posekit.metrics import box_cover, group_boxes

    boxes = [[0, 0, 100, 200], [10, 10, 40, 80], [55, 100, 40, 90], [200, 0, 50, 50], [90, 150, 20, 100]]
    np.testing.assert_allclose(box_cover(boxes[:1], boxes)[0], [1.0, 1.0, 1.0, 0.0, 0.5 * 0.5])
    assert group_boxes(boxes, 0.5) == [0] and group_boxes(boxes, 1.0) == [0]
    assert group_boxes(boxes[:2] + boxes[3:], 0.5) == []  # one person inside: an occluder, not a group
    assert group_boxes([[0, 0, 10, 10]], 0.5) == [] and box_cover([[0, 0, 1, 1]], [[0, 0, 0, 0]]).tolist() == [[0.0]]
    near = [[0, 0, 200, 400], [20, 20, 30, 60], [150, 30, 30, 60]]  # two small people far behind a near one
    assert group_boxes(near, 0.5) == [] and group_boxes(near, 0.5, member_area=(0.02, 0.6)) == [0]
    row = [[i * 50, 0, 100, 300] for i in range(5)]  # people of one size in a row never hold each other
    cluster = [[0, 0, 100, 300], [30, 0, 100, 300], [0, 90, 100, 300], [30, 90, 100, 300]]
    assert group_boxes(row, 0.5) == [] and group_boxes(cluster, 0.5) == []


def test_box_metrics():
    a = np.array([[0, 0, 10, 10], [20, 20, 10, 10]])
    np.testing.assert_allclose(box_iou(a, [[5, 0, 10, 10]]), [[50 / 150], [0.0]])
    perfect = average_precision([(a, np.array([0.9, 0.8]))], [a])
    assert perfect["ap"] == pytest.approx(1.0) and perfect["recall"] == 1.0
    half = average_precision([(a[:1], np.array([0.9]))], [a])
    assert half["ap"] == pytest.approx(0.5) and half["recall"] == 0.5
    wrong_first = average_precision([(np.array([[50, 50, 5, 5], [0, 0, 10, 10]]), np.array([0.9, 0.5]))], [a[:1]])
    assert wrong_first["ap"] == pytest.approx(0.5)  # a false positive ranked first halves the precision at recall 1
    assert match_people([[20, 20, 10, 10], [0, 0, 10, 10]], a) == [(0, 1), (1, 0)]


def test_multi_person_pck_counts_an_unmatched_person_as_wrong():
    kp = np.tile(np.linspace(0, 40, 14)[:, None], (1, 2)) + [0, 0]
    kp[:, 0] = np.linspace(0, 30, 14)
    kp2 = kp + 100
    truth = (np.array([[0, 0, 40, 40], [100, 100, 40, 40]]), np.stack([kp, kp2]), np.ones((2, 14), bool))
    both = multi_person_pck([(truth[0], truth[1])], [truth])
    assert both["pck"] == 1.0 and both["matched"] == 2
    one = multi_person_pck([(truth[0][:1], truth[1][:1])], [truth])
    assert one["pck"] == pytest.approx(0.5) and one["matched"] == 1
    assert one["per_person"] == [(14, 14), (0, 14)]  # person by person, in the truth's order


def test_multi_person_pck_by_height_bins_each_person_by_its_size():
    from types import SimpleNamespace

    from posekit.evaluate import _by_height

    scenes = [SimpleNamespace(image=np.zeros((100, 100, 3)), boxes=np.array([[0, 0, 10, 20], [0, 0, 30, 60]])),
              SimpleNamespace(image=np.zeros((200, 100, 3)), boxes=np.array([[0, 0, 10, 40]]))]
    bins = _by_height(scenes, [(7, 14), (14, 14), (0, 14)])  # heights 0.2, 0.6, 0.2
    assert [b["people"] for b in bins] == [2, 0, 1]
    assert bins[0]["pck"] == pytest.approx(7 / 28) and bins[1]["pck"] is None and bins[2]["pck"] == 1.0


def _person_image(rng, h=120, w=80):
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    kp = np.stack([rng.uniform(15, w - 15, 14), np.linspace(10, h - 10, 14)], -1)
    for x, y in kp.astype(int):
        img[y - 2:y + 3, x - 2:x + 3] = (255, 0, 0)  # each joint a red dot
    return img, kp, np.ones(14, bool)


def test_composite_boxes_and_joints_land_on_the_pasted_people():
    rng = np.random.default_rng(3)
    people = [_person_image(rng) for _ in range(3)]
    bg = np.zeros((300, 400, 3), np.uint8)
    sc = compose(bg, people, np.random.default_rng(1), heights=(0.3, 0.5), flip=0.0)
    assert 1 <= len(sc.boxes) <= 3 and sc.keypoints.shape == (len(sc.boxes), 14, 2)
    for box, kp, m in zip(sc.boxes, sc.keypoints, sc.masks):
        for x, y in kp:  # every joint is a red dot of its pasted person, inside that person's box
            r, g, b = sc.image[int(round(y)), int(round(x))].astype(int)
            assert r > 150 and g < 100 and b < 100
            assert box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]
        assert np.allclose(box, box_from_joints(kp, m, 400, 300))
    if len(sc.boxes) > 1:
        assert box_iou(sc.boxes, sc.boxes)[~np.eye(len(sc.boxes), dtype=bool)].max() < 0.3
    again = compose(bg, people, np.random.default_rng(1), heights=(0.3, 0.5), flip=0.0)
    assert np.array_equal(again.image, sc.image)  # seeded: the same scene
    scenes = multi_person_set([p[0] for p in people], np.stack([p[1] for p in people]),
                              np.stack([p[2] for p in people]), n=3, seed=0, people=(1, 2))
    assert [len(s.boxes) >= 1 for s in scenes] == [True] * 3


def test_tracker_keeps_ids_and_starts_new_ones():
    tr = Tracker(min_iou=0.3, max_age=2, smooth=False)
    a, b = [0, 0, 10, 20], [50, 0, 10, 20]
    assert tr.update([a, b], 0) == [0, 1]
    assert tr.update([[52, 1, 10, 20], [1, 0, 10, 20]], 1) == [1, 0]  # matched by overlap, not order
    assert tr.update([[200, 200, 10, 10]], 2) == [2]  # nobody overlaps it: a new person
    assert tr.update([[1, 1, 10, 20]], 3) == [0]  # unseen for 2 frames: still alive
    assert tr.update([[52, 1, 10, 20]], 6) == [3]  # unseen for 5 frames: that track ended
    # a box known to continue a track keeps its id whatever the overlap (a person followed from its joints)
    assert tr.update([[90, 90, 10, 20], [52, 1, 10, 20]], 7, known=[3, None]) == [3, 4]


def test_appearance_signatures_and_distances():
    from posekit.tracking import appearance, appearance_distance

    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = (200, 30, 30)  # red (RGB) on the left, blue on the right
    image[:, 100:] = (30, 30, 200)
    sig = appearance(image, [[10, 10, 50, 50], [120, 10, 50, 50], [20, 0, 30, 90], [300, 300, 10, 10]])
    assert sig.shape == (4, 128) and sig.dtype == np.float32
    np.testing.assert_allclose(sig[:3].sum(1), 1.0, atol=1e-6)
    assert sig[3].sum() == 0  # outside the image: empty
    d = appearance_distance(sig, sig)
    assert d.shape == (4, 4)
    assert d[0, 2] == pytest.approx(0.0, abs=1e-6) and d[0, 1] == pytest.approx(1.0)  # same colours; none shared
    assert d[3, 3] == pytest.approx(1.0)  # an empty signature matches nothing, not even itself
    half = appearance(image, [[75, 10, 50, 50]])  # half red, half blue
    assert 0.2 < appearance_distance(half, sig[:1])[0, 0] < 0.8


def test_tracker_reidentifies_a_person_hidden_behind_another():
    """Two people cross; the one behind is hidden for 40 frames (past max_age) and comes out further
    along: with appearance it keeps its id, without it (or reid_age 0) it gets a new one; a person
    of other colours, or one beyond reid_reach, is not given the hidden person's id."""
    red, blue, green = np.eye(3)[[0, 2, 1]]  # one-bin stand-in signatures: the tracker only compares them

    def run(features: bool, reid_age: int = 90, comer=blue, comer_x=160.0):
        tr = Tracker(min_iou=0.3, max_age=10, smooth=False, reid_age=reid_age, reid_distance=0.4, reid_reach=1.5)
        ids = []
        for k in range(70):
            boxes, sigs = [[10.0 + 2 * k, 0, 40, 100]], [red]  # the front person walks right
            if k < 20:  # the back person walks left...
                boxes, sigs = boxes + [[150.0 - k, 0, 40, 100]], sigs + [blue]
            elif k >= 60:  # ...and is seen again
                boxes, sigs = boxes + [[comer_x - (k - 60), 0, 40, 100]], sigs + [comer]
            ids.append(tr.update(boxes, k, features=np.array(sigs) if features else None))
        return ids

    ids = run(True)
    assert {i[0] for i in ids} == {0} and ids[0][1] == 1
    assert [i[1] for i in ids[60:]] == [1] * 10  # re-identified 40 frames later, far from its last box's overlap
    assert [i[1] for i in run(False)[60:]] == [2] * 10  # IoU only: a new id
    assert [i[1] for i in run(True, reid_age=0)[60:]] == [2] * 10
    assert [i[1] for i in run(True, comer=green)[60:]] == [2] * 10  # other colours: another person
    assert [i[1] for i in run(True, comer_x=400.0)[60:]] == [2] * 10  # 250 px away, reach 150 px: another person
    tr = Tracker(max_age=2, smooth=False, reid_age=5)
    tr.update([[0, 0, 10, 20]], 0, features=np.array([red]))
    assert tr.update([[5, 0, 10, 20]], 9, features=np.array([red])) == [1]  # unseen past reid_age: forgotten
    tr = Tracker(max_age=2, smooth=False, reid_age=50)
    tr.update([[0, 0, 10, 20]], 0)
    assert tr.update([[0, 0, 10, 20]], 3) == [1]  # the same place, unseen past max_age, no colours: a new person
    tr = Tracker(max_age=10, smooth=False, reid_age=3)
    tr.update([[0, 0, 10, 20]], 0, features=np.array([red]))
    assert tr.update([[30, 0, 10, 20]], 5, features=np.array([red])) == [1]  # reid_age under max_age: reid_age holds
    tr = Tracker(max_age=2, smooth=True, reid_age=50, one_euro={"min_cutoff": 0.1, "beta": 0.0})
    kp = np.zeros((14, 2))
    for k in range(5):
        tr.update([[0, 0, 10, 20]], k, features=np.array([red]))
        tr.smoothed(0, kp, k / 30)
    assert tr.update([[30, 0, 10, 20]], 20, features=np.array([red])) == [0]
    np.testing.assert_allclose(tr.smoothed(0, kp + 30, 20 / 30), kp + 30)  # re-identified: the filter starts afresh


def test_box_smoother_steadies_a_wobbling_box_and_restarts_on_a_jump():
    from posekit.tracking import BoxSmoother

    rng = np.random.default_rng(0)
    sm = BoxSmoother(1.0, 0.05, restart_iou=0.3)
    truth = np.array([100.0, 50.0, 80.0, 200.0])
    out = np.stack([sm(truth + rng.normal(0, 2.0, 4), k / 30) for k in range(60)])
    assert np.abs(np.diff(out[30:], axis=0)).mean() < 0.5 * 2.0  # far steadier than the raw wobble
    np.testing.assert_allclose(out[-10:].mean(0), truth, atol=1.5)  # and centred on the box
    far = np.array([400.0, 60.0, 80.0, 200.0])  # another person: no overlap, the filter restarts
    np.testing.assert_allclose(sm(far, 2.0), far)


def test_one_euro_filter_smooths_noise_and_follows_motion():
    rng = np.random.default_rng(0)
    t = np.arange(300) / 30
    still = 5 + rng.normal(0, 1, (300, 1))
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    out = np.array([f(x, ti) for x, ti in zip(still, t)])
    assert np.diff(out[:, 0]).std() < 0.35 * np.diff(still[:, 0]).std()  # jitter cut by much more than half
    ramp = (100 * t)[:, None]
    g = OneEuroFilter(min_cutoff=1.0, beta=0.5)
    follow = np.array([g(x, ti) for x, ti in zip(ramp, t)])
    assert abs(follow[-1, 0] - ramp[-1, 0]) < 5  # fast motion: the cutoff rises, little lag
    slow = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    lagging = np.array([slow(x, ti) for x, ti in zip(ramp, t)])
    assert abs(lagging[-1, 0] - ramp[-1, 0]) > 10
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0)


def test_one_euro_speeds_read_per_object_size_so_resolution_does_not_change_the_smoothing():
    from posekit.tracking import BoxSmoother, object_scale

    rng = np.random.default_rng(1)
    t = np.arange(60) / 30
    kp = rng.uniform(0, 100, (14, 2))
    path = kp[None] + (np.stack([40 * t, 10 * np.sin(3 * t)], -1)[:, None] + rng.normal(0, 1.5, (60, 14, 2)))
    assert object_scale(kp) == pytest.approx(float((kp.max(0) - kp.min(0)).mean()))
    assert np.isnan(object_scale(kp[:1])) and np.isnan(object_scale(np.full((14, 2), np.nan)))
    runs = []
    for zoom in (1.0, 3.0):  # the same clip filmed at three times the resolution
        tr = Tracker(smooth=True, one_euro={"min_cutoff": 2.0, "beta": 30.0})
        tr.update([[0, 0, 10, 10]], 0)
        runs.append(np.stack([tr.smoothed(0, zoom * p, k) for p, k in zip(path, t)]))
    np.testing.assert_allclose(runs[1], 3.0 * runs[0], rtol=1e-9, atol=1e-9)
    assert np.abs(runs[0] - path).max() > 0.1  # it does smooth
    boxes = np.array([50.0, 40.0, 60.0, 120.0]) + np.stack([60 * t, 0 * t, 0 * t, 0 * t], -1) + rng.normal(0, 1, (60, 4))
    out = [np.stack([sm(z * b, k) for b, k in zip(boxes, t)]) for z, sm in ((1.0, BoxSmoother(1.0, 5.0)),
                                                                           (3.0, BoxSmoother(1.0, 5.0)))]
    np.testing.assert_allclose(out[1], 3.0 * out[0], rtol=1e-9, atol=1e-9)
    # a scale that cannot be measured (a pose collapsed to a point) keeps the last valid one; before
    # any, speed does not raise the cutoff (a 1 px scale would let the frame through unsmoothed)
    f, twin, still = (OneEuroFilter(min_cutoff=1.0, beta=10.0) for _ in range(3))
    for k in range(3):
        f(np.full(2, 5.0 * k), k / 30, scale=50.0)
        twin(np.full(2, 5.0 * k), k / 30, scale=50.0)
    np.testing.assert_allclose(f(np.full(2, 20.0), 3 / 30, scale=float("nan")), twin(np.full(2, 20.0), 3 / 30, scale=50.0))
    slow = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    for k in range(3):
        out, ref = still(np.full(2, 5.0 * k), k / 30, scale=0.0), slow(np.full(2, 5.0 * k), k / 30)
    np.testing.assert_allclose(out, ref)  # no valid scale yet: min_cutoff alone
    assert abs(out[0] - 10.0) > 1.0  # and it does smooth


def test_turned_scene_keeps_every_joint_on_its_person_and_boxes_them_upright():
    from posekit.data.scenes import Scene, rotate_scene

    rng = np.random.default_rng(3)
    people = [_person_image(rng) for _ in range(2)]
    sc = compose(np.zeros((300, 400, 3), np.uint8), people, np.random.default_rng(1), heights=(0.3, 0.5), flip=0.0)
    assert len(sc.boxes) == 2
    for degrees in (90.0, -30.0, 180.0):
        turned = rotate_scene(sc, degrees)
        h, w = turned.image.shape[:2]
        if degrees == 90.0:
            assert (h, w) == (400, 300)  # the canvas grows to hold the whole turned image
        assert h >= 300 and w >= 300 and len(turned.boxes) == 2
        for box, kp, m in zip(turned.boxes, turned.keypoints, turned.masks):
            for x, y in kp:  # each joint is still a red dot of its person
                r, g, b = turned.image[int(round(y)), int(round(x))].astype(int)
                assert r > 120 and g < 120 and b < 120, (degrees, x, y)
            assert np.allclose(box, box_from_joints(kp, m, w, h))  # upright, around the turned joints
    # a quarter turn moves a joint at the top-left corner to the bottom-left (counter-clockwise)
    one = Scene(np.zeros((20, 40, 3), np.uint8), np.array([[0.0, 0.0, 2.0, 2.0]]), np.zeros((1, 14, 2)),
                np.ones((1, 14), bool))
    one.keypoints[0, 1:] = (10.0, 10.0)
    q = rotate_scene(one, 90.0)
    assert q.image.shape[:2] == (40, 20)
    assert np.allclose(q.keypoints[0, 0], (0.0, 39.0), atol=1e-6) and np.allclose(q.keypoints[0, 1], (10.0, 29.0), atol=1e-6)
    assert len(rotate_scene(Scene(np.zeros((10, 10, 3), np.uint8)), 45.0).boxes) == 0  # nobody stays nobody
    edge = Scene(np.zeros((100, 400, 3), np.uint8), np.array([[2.0, 30.0, 18.0, 40.0]]),
                 np.stack([np.linspace(2, 20, 14), np.linspace(30, 70, 14)], -1)[None], np.ones((1, 14), bool))
    for degrees in (30.0, 90.0):  # a person turned off a canvas that keeps its size is dropped, not boxed upside down
        gone = rotate_scene(edge, degrees, expand=False)
        assert len(gone.boxes) == 0 or (gone.boxes[:, 2:] >= 4).all() and (gone.masks.sum(1) >= 2).all()
    assert len(rotate_scene(edge, 90.0, expand=False).boxes) == 0
    same = rotate_scene(sc, -20.0, expand=False)  # the canvas keeps its size (and its people their scale)
    assert same.image.shape == sc.image.shape and len(same.boxes) >= 1
    for kp in same.keypoints:
        for x, y in kp:
            if 0 <= x <= 399 and 0 <= y <= 299:
                assert same.image[int(round(y)), int(round(x)), 0] > 120


def test_a_recipe_refuses_the_keys_only_the_other_task_reads():
    from posekit.config import load_config
    from posekit.errors import ConfigError

    assert load_config("configs/detector.yaml", ["augment.rotate=20"]).augment.rotate == 20
    assert load_config("configs/detector.yaml", ["augment.blur=0.2"]).augment.blur == 0.2  # degradations: pixels only
    for key, value in (("augment.scale", "[0.5,1.5]"), ("augment.shift", "0.2"), ("augment.person_crop", "0.2"),
                       ("distill.teacher", "t.npz"), ("cascade.stage1", "posekit-lsp")):
        with pytest.raises(ConfigError, match=rf"'{key}': a detector recipe \(task: detect\) does not use it"):
            load_config("configs/detector.yaml", [f"{key}={value}"])
    # and a pose recipe does not make scenes: the detector's training keys are refused there
    assert load_config("configs/release.yaml", ["detect.box_margin=0.2"]).detect.box_margin == 0.2
    with pytest.raises(ConfigError, match=r"'detect.negatives': only a detector recipe \(task: detect\) trains on scenes"):
        load_config("configs/release.yaml", ["detect.negatives=0.2"])


@pytest.mark.slow
def test_detector_trains_and_predict_all_finds_people(synth_root, tmp_path):
    from conftest import tiny_overrides

    from posekit.config import load_config
    from posekit.detect import PersonDetector
    from posekit.predict import Predictor
    from posekit.train import train

    over = [o for o in tiny_overrides(synth_root) if not o.startswith(("model.", "data.input_size"))]
    cfg = load_config("configs/detector.yaml", over + [
        "data.input_size=64", "model.width=8", "model.neck=16", "train.epochs=2", "detect.val_scenes=6",
        "train.log_images=0", "data.cache_max_side=64", "detect.negatives=0.25", "augment.rotate=20"])
    summary = train(cfg, tmp_path / "det", progress=False, log=lambda *a: None)
    assert [h["epoch"] for h in summary["history"]] == [1, 2] and "ap" in summary["history"][-1]
    det = PersonDetector(tmp_path / "det")
    boxes, scores = det.detect(np.zeros((80, 64, 3), np.uint8))
    assert boxes.shape[1:] == (4,) and scores.ndim == 1
    pose_run = tmp_path / "pose"
    train(load_config("configs/poster.yaml", tiny_overrides(synth_root, **{"train.epochs": 1})), pose_run,
          progress=False, log=lambda *a: None)
    pred = Predictor(pose_run, detector=det)
    got = pred.predict_all(np.zeros((80, 64, 3), np.uint8))
    assert all(p.box is not None and p.box_score is not None for p in got)
    one = pred.predict(np.zeros((80, 64, 3), np.uint8))
    assert one.found == bool(len(boxes)) or not one.found
    assert Predictor(pose_run, detector=False).detector is None
    # a detector is not a pose model: refused in one line, with what to do instead
    from posekit.cli import main
    from posekit.errors import PosekitError
    from posekit.evaluate import evaluate

    with pytest.raises(PosekitError, match="a person detector, not a pose model; give it as the detector"):
        Predictor(tmp_path / "det")
    # the multi-person split scores the detector's own boxes and the poses on them
    m, _ = evaluate(str(pose_run), str(synth_root), "lsp-multi", limit=4, detector=str(tmp_path / "det"))
    assert {"ap50", "recall", "multi_pck", "people"} <= set(m) and m["n"] == 4 and m["detector"] == str(tmp_path / "det")
    assert sum(b["people"] for b in m["multi_pck_by_height"]) == m["people"]
    _, extras = evaluate(str(pose_run), str(synth_root), "lsp-multi", limit=4, detector=str(tmp_path / "det"))
    returned = sum(len(b) for b, _ in extras["preds"])  # what predict_all answered, and how much of it is right
    assert m["poses_returned"] == returned and (returned == 0 or 0 <= m["pose_precision"] <= 1)
    v, _ = evaluate(str(pose_run), str(synth_root), "val-multi", limit=3, detector=str(tmp_path / "det"))
    assert v["split"] == "val-multi" and v["n"] == 3  # the same scenes made from the validation images
    # the CLI: every person, one record each, with its index
    img = str(sorted((synth_root / "lsp" / "images").iterdir())[0])
    assert main(["predict", img, "--model", str(pose_run), "--detector", str(tmp_path / "det"), "--people", "all",
                 "--json"]) == 0


def _stub_detector(boxes, scores, input_size=64):
    """A PersonDetector whose network outputs what a perfect one would for ``boxes`` given in the
    letterboxed input's pixels (keypoint convention), on every image."""
    from posekit.config import DetectConfig
    from posekit.data.transforms import PoseTransform
    from posekit.detect import PersonDetector

    det = PersonDetector.__new__(PersonDetector)
    codec = build_codec({"name": "center", "stride": 4}, input_size)
    out = _output_for(codec, boxes)
    heat = np.max([codec.encode(np.asarray([b]))["heat"][0] * s for b, s in zip(boxes, scores)], axis=0)
    out[0, 0] = torch.logit(torch.from_numpy(heat).float().clamp(1e-4, 1 - 1e-4))  # each peak at its own score
    det.device, det.codec, det.name, det.settings = torch.device("cpu"), codec, "stub", DetectConfig()
    det.network = det.model = lambda x: out.expand(len(x), -1, -1, -1)
    det.transform = PoseTransform(input_size, "letterbox")
    return det


def test_detected_boxes_map_back_through_the_letterbox():
    """A wide image letterboxed to the detector's input: boxes come back in original pixels, in
    the pixel-edge convention of a user's box, and a detection in the letterbox padding is
    dropped instead of failing the image."""
    from posekit.data.transforms import transform_boxes
    from posekit.detect import inside_image, to_edges

    w, h = 200, 50
    truth = np.array([[30.2, 5.3, 40.0, 38.0]])  # keypoint coordinates (pixel centres at integers)
    m = _stub_detector([[0, 0, 1, 1]], [0.9]).transform.base_matrix(w, h)
    in_input = transform_boxes(truth, m)
    padding = [[20.0, 54.0, 12.0, 8.0]]  # below the picture: inside the letterbox's padding only
    det = _stub_detector(np.concatenate([in_input, padding]), [0.9, 0.8])
    boxes, scores = det.detect(np.full((h, w, 3), 128, np.uint8))
    assert len(boxes) == 1 and scores[0] == pytest.approx(0.9, abs=1e-3)
    np.testing.assert_allclose(boxes[0], to_edges(truth)[0], atol=1e-3)
    # clipping: what lies outside the image is cut off; what is left too small is dropped
    got, s = inside_image(np.array([[-10.0, 5.0, 40.0, 30.0], [195.0, 0.0, 10.0, 12.0]]), np.array([0.9, 0.5]), w, h)
    np.testing.assert_allclose(got, [[0.0, 5.0, 30.0, 30.0]])
    assert s.tolist() == [0.9]


def test_predict_all_poses_each_detected_box(tmp_path, synth_root):
    """Every detected person is posed on its own box (with the model's margin), best first, as a
    caller's box would be; predict() takes the best one, down to detect.region_threshold; a
    caller's box wins over the detector."""
    from conftest import tiny_overrides

    from posekit.cli import main
    from posekit.detect import pose_box
    from posekit.errors import PosekitError
    from posekit.predict import Predictor

    run = tmp_path / "pose"
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(run), "--epochs", "1", "--no-progress",
                 *tiny_overrides(synth_root, **{"data.resize_mode": "letterbox"})]) == 0
    image = np.random.default_rng(0).integers(0, 255, (100, 160, 3), dtype=np.uint8)
    det = _stub_detector([[4.0, 20.0, 20.0, 30.0], [40.0, 22.0, 16.0, 24.0]], [0.6, 0.9])  # input pixels
    pred = Predictor(str(run), detector=det)
    people = pred.predict_all(image)
    boxes, scores = det.detect(image)
    assert [p.person for p in people] == [0, 1] and [p.box_score for p in people] == pytest.approx(scores.tolist())
    assert scores[0] > scores[1]  # best first
    plain = Predictor(str(run), detector=False)
    for p, b in zip(people, boxes):
        assert p.box == pytest.approx(tuple(b))
        np.testing.assert_allclose(p.keypoints, plain.predict(image, pose_box(b, pred.box_margin)).keypoints, atol=1e-4)
    best = pred.predict(image)
    np.testing.assert_allclose(best.keypoints, people[0].keypoints, atol=1e-4)
    assert best.box == pytest.approx(tuple(boxes[0])) and best.box_score == pytest.approx(scores[0])
    from posekit.video import FramePoser  # video, one person: posed on the detected box smoothed over time

    poser = FramePoser(pred, "one")
    first, second = poser(image, 0.0, 0)[0], poser(image, 1 / 30, 1)[0]
    assert first.box == pytest.approx(tuple(boxes[0])) and second.person == first.person == 0
    np.testing.assert_allclose(first.keypoints, best.keypoints, atol=1e-4)
    mine = pred.predict(image, box=(10, 10, 60, 80))
    assert mine.box == (10, 10, 60, 80) and mine.box_score is None
    nobody = Predictor(str(run), detector=_stub_detector([[4.0, 20.0, 20.0, 30.0]], [0.01]))
    assert nobody.predict_all(image) == [] and not nobody.predict(image).found
    for p in (pred, nobody):  # both answers from one run of the detector
        runs, detect = [], p.detect
        p.detect = lambda *a, **k: runs.append(1) or detect(*a, **k)
        everyone, one = p.predict_people(image)
        assert len(runs) == 1
        assert [q.box for q in everyone] == [q.box for q in p.predict_all(image)]
        alone = p.predict(image)
        np.testing.assert_allclose(one.keypoints, alone.keypoints, atol=1e-4)
        assert (one.box, one.box_score, one.found) == (alone.box, alone.box_score, alone.found)
        p.detect = detect
    alone = FramePoser(nobody, "one")(image, 0.0, 0)[0]  # a video frame with nobody: the whole frame, not found
    assert not alone.found and alone.box is None and alone.box_score == 0.0
    np.testing.assert_allclose(alone.keypoints, nobody.predict(image).keypoints, atol=1e-4)
    # a weak detection (under detect.score_threshold, over region_threshold) is nobody to
    # predict_all, and so to predict(): "one" and "all" agree; its pose is the best candidate's
    weak = Predictor(str(run), detector=_stub_detector([[4.0, 20.0, 20.0, 30.0]], [0.2]))
    assert weak.predict_all(image) == []
    (wb,), (ws,) = weak.detector.detect(image, 0.1)
    one = weak.predict(image)
    assert not one.found, "predict() found a person where predict_all finds nobody"
    assert not FramePoser(weak, "one")(image, 0.0, 0)[0].found  # nor a video frame, one person followed
    assert one.box == pytest.approx(tuple(wb)) and one.box_score == pytest.approx(ws)
    np.testing.assert_allclose(one.keypoints, plain.predict(image, pose_box(wb, pred.box_margin)).keypoints, atol=1e-4)
    # hysteresis: beside a person found, a weak detection (a person half hidden by another scores
    # low) is posed too, best first; one under region_threshold is not
    pair = Predictor(str(run), detector=_stub_detector([[4.0, 20.0, 20.0, 30.0], [40.0, 22.0, 16.0, 24.0]], [0.6, 0.2]))
    two = pair.predict_all(image)
    assert [p.box_score for p in two] == pytest.approx([0.6, 0.2], abs=1e-3) and [p.person for p in two] == [0, 1]
    for p, b in zip(two, pair.detector.detect(image, 0.1)[0]):
        np.testing.assert_allclose(p.keypoints, plain.predict(image, pose_box(b, pred.box_margin)).keypoints, atol=1e-4)
    faint = Predictor(str(run), detector=_stub_detector([[4.0, 20.0, 20.0, 30.0], [40.0, 22.0, 16.0, 24.0]], [0.6, 0.05]))
    assert [p.box_score for p in faint.predict_all(image)] == pytest.approx([0.6], abs=1e-3)
    # the strong detection is no person (its pose under the threshold): the weak one is not even posed
    calls = []

    def nobody_found(prepared, *a, **k):
        calls.append(len(prepared))
        return [dataclasses.replace(p, found=False) for p in plain_estimate(prepared, *a, **k)]

    plain_estimate, pair.estimate = pair.estimate, nobody_found
    assert pair.predict_all(image) == [] and calls == [1]

    def same_joints(prepared, *a, **k):  # every box posed as the same person (two boxes on one person)
        poses = plain_estimate(prepared, *a, **k)
        return [dataclasses.replace(p, keypoints=poses[0].keypoints + 0.5 * i) for i, p in enumerate(poses)]

    twice = Predictor(str(run), detector=_stub_detector([[4.0, 20.0, 20.0, 30.0], [40.0, 22.0, 16.0, 24.0]], [0.6, 0.5]))
    plain_estimate, twice.estimate = twice.estimate, same_joints
    assert len(twice.predict_all(image)) == 1  # pose NMS (detect.pose_nms): the second is a duplicate
    twice.detector.settings = twice.detector.settings.model_copy(update={"pose_nms": None})
    assert [p.person for p in twice.predict_all(image)] == [0, 1]  # off: both

    def second_twice(prepared, *a, **k):  # the second box poses the first person again, the third another
        poses = plain_estimate(prepared, *a, **k)
        return [dataclasses.replace(p, keypoints=poses[0].keypoints + 0.5, score=poses[0].score + lift)
                if i == 1 else p for i, p in enumerate(poses)]

    three = Predictor(str(run), detector=_stub_detector([[4.0, 20.0, 20.0, 30.0], [40.0, 22.0, 16.0, 24.0],
                                                         [25.0, 14.0, 12.0, 14.0]], [0.7, 0.6, 0.5]))
    plain_estimate, three.estimate = three.estimate, second_twice
    for lift, kept_scores in ((-0.01, [0.7, 0.5]), (0.01, [0.6, 0.5])):  # the better pose of the two stays
        kept = three.predict_all(image)
        assert [p.box_score for p in kept] == pytest.approx(kept_scores, abs=1e-3) and [p.person for p in kept] == [0, 1]

    # predict(): the best box is nobody but another detection is a person: that person, as "all" answers
    fallback = Predictor(str(run), detector=_stub_detector([[4.0, 20.0, 20.0, 30.0], [40.0, 22.0, 16.0, 24.0]], [0.9, 0.6]))
    plain_estimate = fallback.estimate
    first_box = pose_box(fallback.detector.detect(image)[0][0], fallback.box_margin)
    fallback.estimate = lambda prepared, *a, **k: [dataclasses.replace(p, found=not np.allclose(q.box, first_box))
                                                   for p, q in zip(plain_estimate(prepared, *a, **k), prepared)]
    one = fallback.predict(image)
    (_, second_box), (_, second_score) = fallback.detector.detect(image)
    assert one.found and one.box == pytest.approx(tuple(second_box)) and one.box_score == pytest.approx(second_score)
    assert [p.box for p in fallback.predict_all(image)] == [one.box]
    framed = FramePoser(fallback, "one")(image, 0.0, 0)[0]  # a video frame answers the same person
    assert framed.found and framed.box == pytest.approx(one.box) and framed.box_score == pytest.approx(second_score)
    # a strong box across two people, posed as a mix of the two, the people themselves weak boxes:
    # "all" drops the mix (pose NMS), so "one" must not answer it either
    across = Predictor(str(run), detector=_stub_detector([[4.0, 18.0, 52.0, 32.0], [4.0, 20.0, 20.0, 30.0],
                                                          [40.0, 22.0, 16.0, 24.0]], [0.6, 0.2, 0.2]))
    (b_mix, b_left, _), _ = across.detector.detect(image, 0.1)
    left = plain.predict(image, pose_box(b_left, across.box_margin))
    plain_estimate = across.estimate

    def mixed(prepared, *a, **k):
        return [dataclasses.replace(p, keypoints=left.keypoints + 0.5, score=left.score - 0.01)
                if np.allclose(q.box, pose_box(b_mix, across.box_margin)) else p
                for p, q in zip(plain_estimate(prepared, *a, **k), prepared)]

    across.estimate = mixed
    everyone, one = across.predict_all(image), across.predict(image)
    assert b_mix.tolist() not in [list(p.box) for p in everyone] and len(everyone) == 2
    assert one.box == everyone[0].box, "predict() answered a pose that predict_all drops"
    # a weak box around two people found (a group: people stacked one above the other), posed only
    # because they were found: its "person", a figure made of both, is dropped whatever its pose looks
    # like; a strong box is left to pose NMS
    def grouped(group_score):
        pred = Predictor(str(run), detector=_stub_detector([[4.0, 20.0, 20.0, 30.0], [40.0, 22.0, 16.0, 24.0],
                                                            [4.0, 10.0, 56.0, 40.0]], [0.5, 0.45, group_score]))
        plain_estimate = pred.estimate
        pred.estimate = lambda prepared, *a, **k: [dataclasses.replace(p, found=True)
                                                   for p in plain_estimate(prepared, *a, **k)]
        pred.detector.settings = pred.detector.settings.model_copy(update={"pose_nms": None})
        return pred

    group = grouped(0.2)
    found = group.predict_all(image)
    assert [p.box_score for p in found] == pytest.approx([0.5, 0.45], abs=1e-3) and [p.person for p in found] == [0, 1]
    assert group.predict(image).box == found[0].box
    assert len(grouped(0.6).predict_all(image)) == 3  # strong: not this rule's
    group.detector.settings = group.detector.settings.model_copy(update={"group_cover": None})
    assert len(group.predict_all(image)) == 3  # off: the group's box is posed as a person too
    with pytest.raises(PosekitError, match="needs a person detector"):
        from posekit.evaluate import evaluate

        evaluate(str(run), str(synth_root), "lsp-multi", detector=False)


def test_scenes_with_nobody_have_no_box_and_avoid_the_person():
    """Negative training scenes: nothing to find in them, and a background crop never reaches the
    annotated person (their joints' box enlarged by a quarter)."""
    from posekit.data.scenes import background_crop
    from posekit.detect_task import nobody

    rng = np.random.default_rng(0)
    image = np.zeros((300, 400, 3), np.uint8)
    kp = np.tile([[300.0, 150.0]], (14, 1)) + rng.normal(0, 20, (14, 2))
    (x0, y0), (x1, y1) = np.floor(kp.min(0)).astype(int), np.ceil(kp.max(0)).astype(int)
    image[y0:y1 + 1, x0:x1 + 1] = 255  # the "person" (their joints' box): white, the rest black
    mask = np.ones(14, bool)
    for _ in range(30):
        crop = background_crop(image, kp, mask, rng)
        assert crop is not None and crop.max() == 0  # never any of the person's pixels
        sc = nobody(image, kp, mask, rng)
        assert len(sc.boxes) == 0 and sc.image.ndim == 3 and min(sc.image.shape[:2]) >= 48
    assert background_crop(image[:40, :40], kp, mask, rng) is None  # too small to leave room


class _FollowPred:
    """A stand-in Predictor for FramePoser: a detector that finds one box, a network whose
    joints sit on a fixed pattern and whose pose is lost on the calls listed in ``lost``."""

    def __init__(self, roi_margin, lost=()):
        from types import SimpleNamespace

        from posekit.config import DetectConfig, VideoConfig

        self.config = type("C", (), {"video": VideoConfig(roi_margin=roi_margin, min_cutoff=6.0, beta=0.0)})()
        self.detector, self.box_margin, self.lost = SimpleNamespace(settings=DetectConfig()), 0.1, set(lost)
        self.detections, self.regions, self.calls = 0, [], 0

    def _pose(self, found):
        from posekit.inference import Pose

        kp = np.array([[40.0 + 3 * (j % 4), 20.0 + 6 * j] for j in range(14)]) + 0.5 * self.calls
        self.calls += 1
        return Pose(kp, np.full(14, 0.9), 200, 160, score=0.9 if found else 0.1, found=found)

    def best_people(self, frames):
        self.detections += 1
        return [((30.0, 10.0, 30.0, 100.0), 0.8)]

    def predict_people(self, frame):  # the detector's one person (not counted as a network call)
        from posekit.inference import Pose

        self.detections += 1
        kp = np.array([[40.0 + 3 * (j % 4), 20.0 + 6 * j] for j in range(14)])
        one = Pose(kp, np.full(14, 0.9), 200, 160, score=0.9, found=True, box=(30.0, 10.0, 30.0, 100.0), box_score=0.8)
        return [one], one

    def predict(self, frame, box=None):
        return self._pose(True)

    def estimate_detected(self, found):  # detected boxes posed, as predict() poses a given one
        return [self._pose(True) for _ in found]

    def prepare(self, frame, box=None):
        self.regions.append(box)
        return box

    def estimate(self, prepared, refined=True):
        assert refined == bool(getattr(self, "stages", None))  # one pass; a cascade runs its stages
        return [self._pose(self.calls not in self.lost)]


def test_video_follows_one_person_from_the_last_joints_and_detects_again_when_lost():
    """After a found pose, the next frame is posed in the square around its smoothed joints (the
    margin ``video.roi_margin``), without the detector; a pose lost there sends that same frame
    back to the detector; ``roi_margin`` null detects on every frame."""
    from posekit.tta import refinement_box
    from posekit.video import FramePoser

    frame = np.zeros((160, 200, 3), np.uint8)
    pred = _FollowPred(0.13, lost={2})
    poser = FramePoser(pred, "one")
    first = poser(frame, 0.0, 0)[0]
    assert pred.detections == 1 and first.box_score == 0.8
    second = poser(frame, 1 / 30, 1)[0]
    assert pred.detections == 1  # followed: no detection
    want = refinement_box(first.keypoints, 0.13, 200, 160)
    assert pred.regions == [want] and second.box == pytest.approx(want) and second.box_score == 0.8
    assert second.found and second.person == first.person
    third = poser(frame, 2 / 30, 2)[0]  # the third network call is lost: detected again, same frame
    assert pred.detections == 2 and third.found and len(pred.regions) == 2
    for roi, follow, detections in ((None, None, 3), (0.13, False, 3), (None, True, 1)):  # --follow wins
        every = _FollowPred(roi)
        poser = FramePoser(every, "one", follow=follow)
        for k in range(3):
            poser(frame, k / 30, k)
        assert every.detections == detections and len(every.regions) == 3 - detections
    cascade = _FollowPred(0.13)
    cascade.stages = ["a DeepPose stage"]
    poser = FramePoser(cascade, "one")
    assert [poser(frame, k / 30, k)[0].found for k in range(2)] == [True, True]  # estimate(refined=True) asserted


def test_crowd_scene_puts_the_person_first_beside_others():
    from posekit.data.scenes import crowd_scene

    rng = np.random.default_rng(5)
    person, *others = [_person_image(rng) for _ in range(3)]
    bg = np.zeros((100, 100, 3), np.uint8)
    for seed in range(5):
        sc = crowd_scene(person, others, bg, np.random.default_rng(seed), height=200)
        assert sc.image.shape[0] == 200 and 250 <= sc.image.shape[1] <= 400 and len(sc.boxes) >= 1
        kp = sc.keypoints[0]
        # row 0 is the person: its joints keep their order down the body and their spacing
        assert np.all(np.diff(kp[:, 1]) > 0)
        np.testing.assert_allclose(np.diff(kp[:, 1]), np.diff(kp[:, 1]).mean(), rtol=1e-6)
        assert 0.35 * 200 <= sc.boxes[0][3] <= 0.7 * 200 + 1
        red = [sc.image[int(round(y)), int(round(x))] for x, y in kp]  # a later paste may cover a few
        assert sum(r > 150 and g < 100 and b < 100 for r, g, b in np.array(red, int)) >= 10
    assert crowd_scene((person[0], person[1], np.zeros(14, bool)), others, bg, rng) is None
    with pytest.raises(ValueError, match="too small"):
        crowd_scene(person, others, bg, rng, height=10)


@pytest.mark.parametrize("recipe", ["poster", "release"])
def test_multi_scale_test_fuses_each_detected_boxs_crops(recipe, tmp_path, synth_root):
    """``infer.box_margins``: each detected box cropped once per margin, the crops of every person
    in one batch, fused person by person. One margin is that crop alone; the same crop twice is
    that crop's pose; each person's pose is theirs alone (the groups do not mix people);
    coordinates are the crops' mean; predict, predict_all and a video's one person agree; a
    caller's box is cropped as given."""
    from conftest import tiny_overrides

    from posekit.cli import main
    from posekit.errors import PosekitError
    from posekit.predict import Predictor
    from posekit.video import FramePoser

    run = tmp_path / "pose"
    over = tiny_overrides(synth_root, **{"data.resize_mode": "letterbox"})
    if recipe == "release":  # a heatmap model
        over = [o for o in over if not o.startswith("model.")] + ["model.width=8", "model.depths=[1,1,1,1]",
                                                                  "model.neck=16"]
    assert main(["train", "--config", f"configs/{recipe}.yaml", "--out", str(run), "--epochs", "1", "--no-progress",
                 *over]) == 0
    image = np.random.default_rng(0).integers(0, 255, (100, 160, 3), dtype=np.uint8)
    det = _stub_detector([[4.0, 20.0, 20.0, 30.0], [40.0, 22.0, 16.0, 24.0]], [0.9, 0.6])

    def pred(**infer):
        return Predictor(str(run), detector=det, precision="fp32", person_threshold=0.0, **infer)

    def joints(people):
        return np.stack([p.keypoints for p in people])

    base = pred().predict_all(image)
    assert len(base) == 2
    np.testing.assert_allclose(joints(pred(box_margins=0.1).predict_all(image)), joints(base), atol=1e-4)
    np.testing.assert_allclose(joints(pred(box_margins=[0.1, 0.1]).predict_all(image)), joints(base), atol=1e-3)
    multi = pred(box_margins=[0.2, 0.05])
    assert multi.box_margins == [0.05, 0.2] and pred(box_margins=False).box_margins is None  # False: off
    people = multi.predict_all(image)
    assert [p.box for p in people] == [p.box for p in base]
    for p in people:  # each person alone gives the same pose
        np.testing.assert_allclose(p.keypoints, multi.estimate_detected([(image, p.box)])[0].keypoints, atol=1e-4)
    if recipe == "poster":  # coordinates: the mean of the two crops' poses
        tight, wide = (joints(pred(box_margins=m).predict_all(image)) for m in (0.05, 0.2))
        np.testing.assert_allclose(joints(people), (tight + wide) / 2, atol=1e-4)
    np.testing.assert_allclose(multi.predict(image).keypoints, people[0].keypoints, atol=1e-4)
    first = FramePoser(multi, "one")(image, 0.0, 0)[0]
    np.testing.assert_allclose(first.keypoints, people[0].keypoints, atol=1e-4)
    np.testing.assert_allclose(multi.predict(image, box=(10, 10, 60, 80)).keypoints,
                               pred().predict(image, box=(10, 10, 60, 80)).keypoints, atol=1e-4)
    calls, network = [], multi.network  # every person's crops in one network call
    multi.network = lambda x: calls.append(len(x)) or network(x)
    multi.predict_all(image)
    assert calls == [2 * 2 * (2 if multi.flip_test else 1)]
    multi.network = network
    # refinement crops start from the fused crops' estimate
    from posekit.tta import FirstPass, refine

    both = pred(box_margins=[0.05, 0.2], refine=[0.1])
    for p, f in zip(both.predict_all(image), people):
        m0 = both.prepare(image, both.detected_region(f.box)).matrix.numpy()[None]
        kp, _ = refine(both.network, both.codec, [image], FirstPass(f.keypoints[None], None, m0), both.refinement,
                       both.input_size, both.device)
        np.testing.assert_allclose(p.keypoints, kp[0], atol=1e-3)
    square = both.refinement_box(image, detected=people[0].box)  # explain's region: around the fused estimate
    m0 = both.prepare(image, both.detected_region(people[0].box)).matrix.numpy()[None]
    from posekit.tta import refinement_box, region_side

    assert square == pytest.approx(refinement_box(people[0].keypoints, 0.1, 160, 100,
                                                  region_side(m0, both.input_size, 1)[0]))
    with pytest.raises(PosekitError, match="box_margins"):
        pred(box_margins=[-0.1])
    with pytest.raises(PosekitError, match="without one"):  # nothing to crop without a detector
        Predictor(str(run), detector=False, box_margins=[0.05, 0.2])
    assert Predictor(str(run), detector=False).box_margins is None
    with pytest.raises(PosekitError, match="groups of 2"):
        multi.estimate([multi.prepare(image)] * 3, crops=2)


def test_detector_scenes_are_degraded_in_pixels_only_and_reproducibly():
    """``augment.noise`` (and the other degradations) in a detector recipe change the scene's pixels,
    not its targets, and draw the same degradation again for the same (seed, epoch, index)."""
    from posekit.checkpoint import codec_from_config
    from posekit.config import load_config
    from posekit.data.scenes import Scene
    from posekit.detect_task import SceneDataset

    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (120, 100, 3), dtype=np.uint8)
    kp = np.stack([np.linspace(30, 70, 14), np.linspace(20, 100, 14)], 1)
    scene = Scene(image, np.array([[25.0, 15.0, 50.0, 90.0]]), kp[None], np.ones((1, 14), bool))

    def items(over):
        cfg = load_config("configs/detector.yaml", ["data.input_size=64", "augment.flip=0", "augment.color=0"] + over)
        ds = SceneDataset(cfg, codec_from_config(cfg), None, {}, ["a", "b"])
        ds.scene = lambda idx, rng: scene
        return ds[1], ds[1]

    every = ["augment.noise=1.0", "augment.blur=1.0", "augment.low_resolution=1.0", "augment.occlusion=1.0"]
    (plain, _), (noisy, again) = items([]), items(every)
    assert not torch.equal(plain["image"], noisy["image"])  # the pixels changed
    assert torch.equal(noisy["image"], again["image"])  # the same draw for the same item
    for key in ("heat", "wh", "offset", "mask"):
        assert torch.equal(plain[key], noisy[key])  # the boxes did not move


def test_no_denoise_on_the_command_line_reads_the_photo_as_it_is(tmp_path, capsys):
    import json

    import cv2

    from posekit.cli import main
    from posekit.predict import Predictor

    image = cv2.imread("examples/lsp_im1003.jpg")
    noisy = np.clip(image + np.random.default_rng(3).normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "noisy.png"  # lossless: the pixels the predictor gets are these
    cv2.imwrite(str(path), noisy)
    rgb = np.ascontiguousarray(noisy[..., ::-1])

    def cli(*flags):
        capsys.readouterr()
        assert main(["predict", str(path), "--json", *flags]) == 0
        return np.array([[j["x"], j["y"]] for j in json.loads(capsys.readouterr().out)["joints"]])

    off, on = cli("--no-denoise"), cli()
    assert np.allclose(off, Predictor("posekit-lsp", denoise=False).predict(rgb).keypoints, atol=0.01)
    assert np.allclose(on, Predictor("posekit-lsp").predict(rgb).keypoints, atol=0.01)
    assert not np.allclose(on, off, atol=0.5)


def test_a_noisy_image_is_median_filtered_before_each_network_from_its_own_threshold():
    import cv2

    from posekit.detect import PersonDetector
    from posekit.errors import PosekitError
    from posekit.predict import Predictor

    image = np.ascontiguousarray(cv2.imread("examples/lsp_im1003.jpg")[..., ::-1])  # noise estimate under 1 grey level
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    filtered = cv2.medianBlur(noisy, 3)
    det = PersonDetector("posekit-person", precision="fp32")

    def found(im, denoise):
        det.settings = det.settings.model_copy(update={"denoise": denoise})
        return det.detect(im, 0.05)

    on, off, reference = found(noisy, 5.0), found(noisy, None), found(filtered, None)
    assert np.array_equal(on[0], reference[0]) and not np.array_equal(on[0], off[0])
    assert np.array_equal(found(image, 5.0)[0], found(image, None)[0])  # a clean photo is read as it is
    box = (60.0, 20.0, 120.0, 160.0)
    pose = Predictor("posekit-lsp", detector=False, precision="fp32", denoise=10.0)
    plain = Predictor("posekit-lsp", detector=False, precision="fp32", denoise=False)
    assert pose.infer.denoise == 10.0 and plain.infer.denoise is None
    assert torch.equal(pose.prepare(noisy, box).input, plain.prepare(filtered, box).input)
    assert torch.equal(pose.prepare(image, box).input, plain.prepare(image, box).input)
    # a detected person's crops (predict_all, video) read the same filtered pixels
    a, b = pose.estimate_detected([(noisy, box)])[0], plain.estimate_detected([(filtered, box)])[0]
    assert np.array_equal(a.keypoints, b.keypoints)
    with pytest.raises(PosekitError, match="denoise"):
        Predictor("posekit-lsp", detector=False, denoise=-3)
    # False (--no-denoise): neither network filters; a detector given, perhaps shared, keeps its own setting
    det.settings = det.settings.model_copy(update={"denoise": 5.0})
    off = Predictor("posekit-lsp", detector=det, denoise=False)
    assert off.infer.denoise is None and off.detector.settings.denoise is None and det.settings.denoise == 5.0
    assert Predictor("posekit-lsp", detector=det).detector is det
    shipped = Predictor("posekit-lsp")  # the shipped model filters noisy images before both networks
    assert shipped.infer.denoise == 5.0 and shipped.detector.settings.denoise == 5.0
    with pytest.raises(PosekitError, match="denoise"):
        Predictor("posekit-lsp", denoise=True)  # not a noise level

    # the people of one image, posed in several batches, cost one estimate
    import posekit.predict as predict_module

    calls = []
    real = predict_module.denoise
    predict_module.denoise = lambda im, t: calls.append(1) or real(im, t)
    fresh = noisy.copy()  # not seen before
    try:
        pose.estimate_detected([(fresh, box), (fresh, (10.0, 10.0, 90.0, 150.0))])
        pose.estimate_detected([(fresh, box)])
    finally:
        predict_module.denoise = real
    assert len(calls) == 1
