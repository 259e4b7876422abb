"""benchmarks/video_smoothing.py: its lag reads a memoryless estimate as no lag, even when some
joints jump to wrong places, and a delayed estimate as its delay."""
import runpy

import numpy as np
import pytest

vs = runpy.run_path("benchmarks/video_smoothing.py")
FPS = vs["FPS"]


def _clip(n=90, amplitude=6.0):
    t = np.arange(n) / FPS
    motion = lambda tt: np.stack([amplitude * np.sin(2 * np.pi * tt / 3.0),  # noqa: E731
                                  0.6 * amplitude * np.cos(2 * np.pi * tt / 2.0)], -1)
    kp = np.random.default_rng(0).uniform(20, 180, (14, 2))
    kp[9], kp[3] = (60, 40), (90, 160)  # left shoulder, right hip: a torso of about 124 px
    return t, kp, motion


def test_lag_of_a_memoryless_estimate_with_gross_errors_is_zero():
    lags = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        t, kp, motion = _clip()
        truth = kp[None] + motion(t)[:, None]
        pred = truth + rng.normal(0, 1.0, truth.shape)
        pred[18:28] += 60 + rng.normal(0, 25, (10, 14, 2))  # the whole person lost for 10 frames
        jitter, lag = vs["jitter_and_lag"](pred, truth, np.ones(14, bool))
        lags.append(lag)
    assert np.all(np.isnan(lags))  # no joint stayed on its truth: no lag to read
    lags = []
    for seed in range(30):  # half the joints lost for 10 frames: the other half still has no delay
        rng = np.random.default_rng(seed)
        pred = truth + rng.normal(0, 1.0, truth.shape)
        pred[18:28, 7:] += 60 + rng.normal(0, 25, (10, 7, 2))
        jitter, lag = vs["jitter_and_lag"](pred, truth, np.ones(14, bool))
        lags.append(lag)
        assert jitter > 1.0
    assert abs(np.mean(lags)) <= 0.08  # unbiased (a one-sided search read about 0.15 here)


@pytest.mark.parametrize("delay", [0.5, 1.0, 2.0])
def test_lag_of_a_delayed_estimate_is_its_delay(delay):
    rng = np.random.default_rng(2)
    t, kp, motion = _clip()
    truth = kp[None] + motion(t)[:, None]
    pred = kp[None] + motion(t - delay / FPS)[:, None] + rng.normal(0, 0.5, truth.shape)
    assert vs["jitter_and_lag"](pred, truth, np.ones(14, bool))[1] == pytest.approx(delay, abs=0.2)


def test_no_tracked_joint_has_no_lag():
    t, kp, motion = _clip()
    truth = kp[None] + motion(t)[:, None]
    assert np.isnan(vs["jitter_and_lag"](truth + 500.0, truth, np.ones(14, bool))[1])


def test_pan_clip_slides_the_image_and_its_joints_together():
    img = np.zeros((60, 40, 3), np.uint8)
    kp = np.array([[10.0, 20.0], [30.0, 45.0]])
    for x, y in kp.astype(int):
        img[y - 2:y + 3, x - 2:x + 3] = 255  # a white mark on each joint
    frames, truth, times = vs["pan_clip"](img, kp, n=5, quality=95)
    assert len(frames) == len(truth) == len(times) == 5 and frames[0].shape == (72, 72, 3)
    np.testing.assert_allclose(truth[-1] - truth[0], [[32, 0], [32, 0]])  # 0.8 of the width, left to right
    for f, tk in zip(frames, truth):
        for x, y in tk.astype(int):
            assert f[y, x].min() > 200  # the mark is where its joint is said to be
    np.testing.assert_allclose(np.diff(times), 1 / FPS)
