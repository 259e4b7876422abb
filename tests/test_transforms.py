"""Augmentation keeps keypoints on the same image content; flips swap left and right."""
import warnings

import cv2
import numpy as np
import pytest

from posekit.config import AugmentConfig, load_config
from posekit.data.synthetic import joint_colors
from posekit.data.transforms import (
    PoseTransform,
    apply_affine,
    invert_affine,
    person_box,
    resize_matrix,
    to_image,
    to_tensor,
)
from posekit.skeleton import FLIP_PERM, NUM_JOINTS, idx


def _dots_image(rng, w=120, h=90):
    """Black image with one distinctly coloured dot per joint, dots well apart."""
    img = np.zeros((h, w, 3), np.uint8)
    cols = joint_colors()
    pts = []
    while len(pts) < NUM_JOINTS:
        p = rng.uniform([15, 15], [w - 15, h - 15])
        if all(np.hypot(*(p - q)) > 14 for q in pts):
            pts.append(p)
    kp = np.round(np.array(pts))
    for j, c in enumerate(cols):
        cv2.circle(img, (int(kp[j, 0]), int(kp[j, 1])), 5, tuple(int(v) for v in c), -1)
    return img, kp


def _colour_at(img, p):
    x, y = int(round(p[0])), int(round(p[1]))
    return img[y, x].astype(int)


def _nearest_joint(c):
    return int(np.argmin(np.abs(joint_colors().astype(int) - c).sum(1)))


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_resize_matrix_maps_content_and_inverts(mode):
    rng = np.random.default_rng(0)
    img, kp = _dots_image(rng)
    tf = PoseTransform(96, mode)
    r = tf(img, kp, np.ones(NUM_JOINTS))
    out = to_image(r["image"])
    for j in range(NUM_JOINTS):
        assert _nearest_joint(_colour_at(out, r["keypoints"][j].numpy())) == j
    back = apply_affine(r["keypoints"].numpy(), invert_affine(r["matrix"].numpy()))
    np.testing.assert_allclose(back, kp, atol=1e-4)


def test_pixel_centre_convention():
    # the centre of the first and last pixel land on the first and last output pixel centres
    m = resize_matrix(10, 20, 40, "stretch")
    np.testing.assert_allclose(apply_affine(np.array([[-0.5, -0.5], [9.5, 19.5]]), m), [[-0.5, -0.5], [39.5, 39.5]])
    m = resize_matrix(10, 20, 40, "letterbox")  # 10x20 -> 20x40 centred horizontally
    np.testing.assert_allclose(apply_affine(np.array([[-0.5, -0.5], [9.5, 19.5]]), m), [[9.5, -0.5], [29.5, 39.5]])


def test_random_augmentation_keeps_joints_on_content():
    rng = np.random.default_rng(1)
    aug = AugmentConfig(flip=0.5, rotate=40, scale=(0.7, 1.2), shift=0.1, crop_padding=8, color=0.0)
    tf = PoseTransform(128, "letterbox", train=True, augment=aug)
    n_flipped, checked, lost = 0, 0, 0
    for seed in range(40):
        img, kp = _dots_image(rng)
        r = tf(img, kp, np.ones(NUM_JOINTS), seed=seed)
        out = to_image(r["image"])
        n_flipped += r["flipped"]
        for j in range(NUM_JOINTS):
            p = r["keypoints"][j].numpy()
            if not (3 <= p[0] < 125 and 3 <= p[1] < 125):
                continue  # pushed out of the frame
            c = _colour_at(out, p)
            if c.max() < 20:  # background: the dot left the frame at an intermediate step
                lost += 1
                continue
            src = FLIP_PERM[j] if r["flipped"] else j
            assert _nearest_joint(c) == src, (seed, j)
            checked += 1
    assert lost < 0.05 * (checked + lost)  # a wrong mapping would mostly land on background
    assert 5 < n_flipped < 35  # the flip is random


def test_flip_swaps_left_and_right():
    rng = np.random.default_rng(2)
    img, kp = _dots_image(rng, 96, 96)
    tf = PoseTransform(96, "stretch", train=True, augment=AugmentConfig(flip=1.0))
    r = tf(img, kp, np.arange(NUM_JOINTS) % 2, seed=0)
    assert r["flipped"]
    out = r["keypoints"].numpy()
    lw, rw = idx("left_wrist"), idx("right_wrist")
    # the output's left wrist is where the mirrored right wrist was
    np.testing.assert_allclose(out[lw], [95 - kp[rw, 0], kp[rw, 1]], atol=1e-4)
    np.testing.assert_allclose(out[rw], [95 - kp[lw, 0], kp[lw, 1]], atol=1e-4)
    np.testing.assert_array_equal(r["mask"].numpy(), (np.arange(NUM_JOINTS) % 2)[FLIP_PERM])
    # and the image really is mirrored
    mirrored = PoseTransform(96)(img[:, ::-1].copy(), kp, np.ones(NUM_JOINTS))["image"]
    np.testing.assert_array_equal(to_image(r["image"]), to_image(mirrored))


def test_augmentation_is_seeded():
    rng = np.random.default_rng(3)
    img, kp = _dots_image(rng)
    tf = PoseTransform(64, train=True, augment=AugmentConfig(flip=0.5, rotate=30, color=0.3))
    a, b = tf(img, kp, np.ones(14), seed=7), tf(img, kp, np.ones(14), seed=7)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["keypoints"], b["keypoints"])


def test_a_recipes_augment_section_is_the_augment_config():
    """``cfg.augment`` is what PoseTransform takes; its bounds are checked when the recipe loads."""
    from posekit.errors import ConfigError

    cfg = load_config("configs/poster.yaml", ["augment.flip=0.5", "augment.rotate=30", "augment.scale=[0.8,1.2]"])
    assert isinstance(cfg.augment, AugmentConfig) and cfg.augment.geometric
    rng = np.random.default_rng(6)
    img, kp = _dots_image(rng)
    a = PoseTransform(64, train=True, augment=cfg.augment)(img, kp, np.ones(14), seed=3)
    own = AugmentConfig(flip=0.5, rotate=30, scale=(0.8, 1.2), **{k: v for k, v in cfg.augment.model_dump().items()
                                                                   if k not in ("flip", "rotate", "scale")})
    b = PoseTransform(64, train=True, augment=own)(img, kp, np.ones(14), seed=3)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["keypoints"], b["keypoints"])
    assert not AugmentConfig().geometric  # the default: the paper's pipeline, nothing random
    with pytest.raises(ConfigError, match=r"'augment.scale': must be \[low, high\] with 0 < low <= high <= 10"):
        load_config("configs/poster.yaml", ["augment.scale=[1.2,0.8]"])


def test_person_crop_contains_all_joints():
    rng = np.random.default_rng(4)
    img, kp = _dots_image(rng, 200, 150)
    tf = PoseTransform(64, train=True, augment=AugmentConfig(person_crop=0.2))
    r = tf(img, kp, np.ones(NUM_JOINTS), seed=0)
    k = r["keypoints"].numpy()
    assert (k >= 0).all() and (k <= 63).all()
    x0, y0, s, _ = person_box(kp, np.ones(NUM_JOINTS, bool), 0.2)
    assert s == pytest.approx(max(np.ptp(kp[:, 0]), np.ptp(kp[:, 1])) * 1.4)


def test_large_downscale_uses_area_and_stays_exact():
    rng = np.random.default_rng(5)
    img, kp = _dots_image(rng, 120, 90)
    big = cv2.resize(img, (1200, 900), interpolation=cv2.INTER_NEAREST)
    kp_big = (kp + 0.5) * 10 - 0.5
    r = PoseTransform(120, "letterbox")(big, kp_big, np.ones(14))
    back = apply_affine(r["keypoints"].numpy(), invert_affine(r["matrix"].numpy()))
    np.testing.assert_allclose(back, kp_big, atol=1e-3)
    out = to_image(r["image"])
    for j in range(NUM_JOINTS):
        assert _nearest_joint(_colour_at(out, r["keypoints"][j].numpy())) == j


@pytest.mark.parametrize("key", ["low_resolution", "blur", "noise", "occlusion"])
def test_each_degradation_changes_pixels_not_joints(key):
    """An image degradation (probability 1) alters the picture; the joints' positions, mask and
    flip are exactly those of the same seed without it."""
    rng = np.random.default_rng(8)
    img, kp = _dots_image(rng, 160, 120)
    geo = dict(flip=0.5, rotate=20, scale=(0.9, 1.1))
    plain = PoseTransform(96, "letterbox", train=True, augment=AugmentConfig(**geo))
    worse = PoseTransform(96, "letterbox", train=True, augment=AugmentConfig(**geo, **{key: 1.0}))
    changed = 0
    for seed in range(6):
        a, b = plain(img, kp, np.ones(NUM_JOINTS), seed=seed), worse(img, kp, np.ones(NUM_JOINTS), seed=seed)
        np.testing.assert_array_equal(a["keypoints"].numpy(), b["keypoints"].numpy())
        assert a["flipped"] == b["flipped"]
        changed += np.abs(to_image(a["image"]).astype(int) - to_image(b["image"]).astype(int)).mean() > 0.5
    assert changed == 6


def test_degradations_are_off_by_default_and_bounded():
    from posekit.data.transforms import degradations
    from posekit.errors import ConfigError

    assert degradations(AugmentConfig()) == []
    assert [type(t).__name__ for t in degradations(AugmentConfig(low_resolution=0.2, blur=0.1, noise=0.1, occlusion=0.3))] \
        == ["Downscale", "OneOf", "OneOf", "CoarseDropout"]
    with pytest.raises(ConfigError, match="'augment.blur'"):
        load_config("configs/poster.yaml", ["augment.blur=1.5"])


def test_to_tensor_normalises_channel_first_and_inverts():
    """(pixel / 255 - mean) / std per channel, (3, H, W) contiguous float32, and to_image undoes it."""
    from posekit.data.transforms import MEAN, STD

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    x = to_tensor(img)
    assert x.shape == (3, 7, 5) and x.dtype.is_floating_point and x.is_contiguous()
    want = (img.astype(np.float64) / 255 - MEAN) / STD
    np.testing.assert_allclose(x.numpy(), want.transpose(2, 0, 1), atol=1e-5)
    assert np.array_equal(to_image(x), img)
    assert np.array_equal(to_tensor(img[:, ::-1]).numpy(), x.numpy()[:, :, ::-1])  # a strided view is read as it looks
    floats = img.astype(np.float32)
    before = floats.copy()
    assert np.allclose(to_tensor(floats).numpy(), x.numpy(), atol=1e-5) and np.array_equal(floats, before)  # not in place
    img.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a read-only array (a decoded file's buffer) without torch's warning
        assert np.array_equal(to_tensor(img).numpy(), x.numpy())


@pytest.mark.parametrize("angle", [0, 20])
def test_warp_border_repeats_the_edge_only_within_the_strip(angle):
    """Outside the image the output repeats the edge pixels within ``border`` original pixels of
    each side and is black beyond, for axis-aligned crops (the per-row/column path) and rotated
    ones, against a per-pixel reference."""
    from posekit.data.transforms import box_matrix, warp

    rng = np.random.default_rng(1)
    img = rng.integers(1, 255, (90, 60, 3), dtype=np.uint8)
    for _ in range(20):
        x, y = rng.uniform(-40, 30, 2)
        m = box_matrix((x, y, 80.0, 80.0), 48)  # a scale of 0.6: no area pre-shrink
        if angle:
            r = cv2.getRotationMatrix2D((24, 24), angle, 1.0)
            m = np.vstack([r, [0, 0, 1]]) @ np.vstack([m, [0, 0, 1]])
            m = m[:2]
        border = tuple(int(v) for v in rng.integers(0, 12, 4))
        out = warp(img, m, 48, border)
        src = apply_affine(np.stack(np.meshgrid(np.arange(48), np.arange(48)), -1).astype(np.float64), invert_affine(m))
        left, top, right, bottom = border
        far = ((src[..., 0] < -0.5 - left) | (src[..., 0] > 59.5 + right) | (src[..., 1] < -0.5 - top)
               | (src[..., 1] > 89.5 + bottom))
        assert (out[far] == 0).all()
        replicated = cv2.warpAffine(img, m, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        assert np.array_equal(out[~far], replicated[~far])


def _smooth_image(shape=(120, 160)):
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    return np.clip(40 + 0.6 * x + 0.4 * y, 0, 255)


@pytest.mark.parametrize("sigma", [5.0, 10.0, 20.0])
def test_noise_sigma_reads_the_noise_added_to_a_smooth_image(sigma):
    from posekit.data.transforms import noise_sigma

    rng = np.random.default_rng(0)
    grey = np.clip(_smooth_image() + rng.normal(0, sigma, (120, 160)), 0, 255).astype(np.uint8)
    assert abs(noise_sigma(grey) - sigma) < 0.06 * sigma
    rgb = np.clip(_smooth_image()[..., None] + rng.normal(0, sigma, (120, 160, 3)), 0, 255).astype(np.uint8)
    assert abs(noise_sigma(rgb) - 0.668 * sigma) < 0.06 * sigma  # the grey image averages independent channels
    assert noise_sigma(_smooth_image().astype(np.uint8)) < 1.0  # a ramp: only rounding
    assert noise_sigma(np.zeros((2, 9, 3), np.uint8)) == 0.0


def test_denoise_filters_only_images_at_least_as_noisy_as_its_threshold():
    import cv2

    from posekit.data.transforms import denoise

    rng = np.random.default_rng(1)
    noisy = np.clip(_smooth_image()[..., None] + rng.normal(0, 20, (120, 160, 3)), 0, 255).astype(np.uint8)
    clean = np.repeat(_smooth_image()[..., None], 3, axis=2).astype(np.uint8)
    out = denoise(noisy, 5.0)
    assert np.array_equal(out, cv2.medianBlur(noisy, 3)) and not np.array_equal(out, noisy)
    assert denoise(noisy, 30.0) is noisy and denoise(noisy, None) is noisy and denoise(clean, 5.0) is clean
    truth = np.repeat(_smooth_image()[..., None], 3, axis=2)
    assert np.abs(out - truth).std() < 0.6 * np.abs(noisy - truth).std()  # the noise, not the picture, goes
