"""Codec round trips (encode then decode returns the keypoints), flip-test symmetry, heads."""
import numpy as np
import pytest
import torch

from posekit.codecs import build_codec, from_unit, to_unit
from posekit.config import Spec
from posekit.models import build_model
from posekit.skeleton import FLIP_PERM, NUM_JOINTS
from posekit.tta import run_network


def flip_test_predict(model, codec, x):
    """(keypoints in input pixels, scores) of the flip test."""
    p = run_network(model, codec, x, flip_test=True)
    return p.keypoints, p.scores


def _kp(n=3, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, NUM_JOINTS, 2, generator=g) * (size - 16) + 8


@pytest.mark.parametrize("stride,sigma", [(4, 2.0), (4, 1.5), (8, 1.0)])
def test_heatmap_round_trip_sub_pixel(stride, sigma):
    c = build_codec({"name": "heatmap", "stride": stride, "sigma": sigma}, 128)
    kp = _kp()
    target, weight = c.encode(kp, torch.ones(kp.shape[:2]))
    assert target.shape == (3, NUM_JOINTS, (128 // stride) ** 2) and weight.eq(1).all()
    dec, score = c.decode(target.reshape(3, NUM_JOINTS, 128 // stride, 128 // stride))
    err = (dec - kp).norm(dim=-1)
    assert err.max() < 0.1 * stride, err.max()  # far below the grid step: sub-pixel decoding works
    assert (score > 0.6).all()


def test_heatmap_masks_unannotated_and_outside_joints():
    c = build_codec("heatmap", 64)
    kp = _kp(1, 64)
    kp[0, 3] = torch.tensor([-20.0, 10.0])
    mask = torch.ones(1, NUM_JOINTS)
    mask[0, 5] = 0
    _, w = c.encode(kp, mask)
    assert w[0, 3] == 0 and w[0, 5] == 0 and w[0].sum() == NUM_JOINTS - 2


def test_integral_round_trip():
    c = build_codec({"name": "integral", "stride": 4, "beta": 1.0}, 64)
    kp = _kp(2, 64)
    # logits = log of a Gaussian at each joint: the softmax expectation is the joint
    hm, _ = build_codec({"name": "heatmap", "sigma": 1.0}, 64).encode(kp, torch.ones(2, NUM_JOINTS))
    logits = torch.log(hm.reshape(2, NUM_JOINTS, 16, 16) + 1e-30)
    dec, _ = c.decode(logits)
    assert (dec - kp).norm(dim=-1).max() < 0.5
    target, _ = c.encode(kp, torch.ones(2, NUM_JOINTS))
    assert torch.allclose(c.loss_input(logits), target, atol=1.0 / 64)


def test_regression_round_trip():
    c = build_codec("regression", 96)
    kp = _kp(2, 96)
    t, _ = c.encode(kp, torch.ones(2, NUM_JOINTS))
    dec, _ = c.decode(t.reshape(2, -1))
    assert torch.allclose(dec, kp, atol=1e-5)


def test_resnet_pose_shapes():
    m = build_model("resnet_pose", input_size=64, width=8, depths=[1, 1, 1, 1], neck=16).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64)).shape == (2, NUM_JOINTS, 16, 16)
    m8 = build_model("resnet_pose", input_size=64, width=8, depths=[1, 1, 1, 1], neck=16, out_stride=8).eval()
    with torch.no_grad():
        assert m8(torch.randn(1, 3, 64, 64)).shape == (1, NUM_JOINTS, 8, 8)
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model("resnet_pose", input_size=50)


class _Mirror(torch.nn.Module):
    """A 'model' that outputs heatmaps of fixed keypoints drawn from its input's left half
    brightness, so flipping the image changes its answer in a known way."""

    def __init__(self, codec, kp):
        super().__init__()
        self.codec, self.kp = codec, kp

    def forward(self, x):
        flipped = x[:, 0, 0, 0] < 0  # the test marks flipped inputs by the top-left pixel
        kp = self.kp.expand(len(x), -1, -1).clone()
        w = self.codec.input_size
        mirrored = kp.clone()
        mirrored[..., 0] = w - 1 - mirrored[..., 0]
        mirrored = mirrored[:, FLIP_PERM]
        kp = torch.where(flipped[:, None, None], mirrored, kp)
        hm, _ = self.codec.encode(kp, torch.ones(kp.shape[:2]))
        s = self.codec.size
        return hm.reshape(len(x), -1, s, s)


def test_flip_test_is_symmetric():
    c = build_codec("heatmap", 64)
    kp = _kp(1, 64)
    model = _Mirror(c, kp)
    x = torch.zeros(1, 3, 64, 64)
    x[..., :, 32:] = -1.0  # right half negative: the flipped image has a negative top-left pixel
    pred, _ = flip_test_predict(model, c, x)
    # a model that is exactly equivariant gives the same answer with and without flip-test
    assert torch.allclose(pred, kp, atol=0.05 * c.stride)
    # and flip-test of a flipped image is the flip of flip-test of the image
    xf = torch.flip(x, dims=[3])
    pf, _ = flip_test_predict(model, c, xf)
    mirrored = pred.clone()
    mirrored[..., 0] = 63 - mirrored[..., 0]
    assert torch.allclose(pf, mirrored[:, FLIP_PERM], atol=1e-4)
    np.testing.assert_array_equal(FLIP_PERM[FLIP_PERM], np.arange(NUM_JOINTS))
    calls = []  # the image and its mirror run as one batch: one network call, not two
    p = run_network(lambda t: calls.append(len(t)) or model(t), c, x, flip_test=True)
    assert calls == [2] and torch.allclose(p.keypoints, pred, atol=1e-5)


def test_flip_test_averages_heatmaps_not_coordinates():
    """Where the two passes disagree (say a left/right mix-up), flip-test keeps the stronger mode
    rather than returning the midpoint between two answers that are both wrong for it."""
    c = build_codec("heatmap", 64)
    a, b = _kp(1, 64), _kp(1, 64)
    b[..., 0] = 63 - b[..., 0]  # a different place for every joint

    class TwoMinds(torch.nn.Module):
        def forward(self, x):
            flipped = x[:, 0, 0, 0] < 0
            kp = b.clone()  # what the mirror pass says, in its own (mirrored) frame
            kp[..., 0] = 63 - kp[..., 0]
            kp = kp[:, FLIP_PERM]
            hm_a, _ = c.encode(a, torch.ones(1, NUM_JOINTS))
            hm_b, _ = c.encode(kp, torch.ones(1, NUM_JOINTS))
            hm = torch.where(flipped[:, None, None], 0.6 * hm_b, hm_a)
            return hm.reshape(len(x), NUM_JOINTS, c.size, c.size)

    x = torch.zeros(1, 3, 64, 64)
    x[..., :, 32:] = -1.0  # the mirror image has a negative top-left pixel
    pred, score = flip_test_predict(TwoMinds(), c, x)
    far = (a - b).norm(dim=-1) > 4 * c.sigma * c.stride  # modes that do not overlap
    assert far.any()
    assert torch.allclose(pred[far], a[far], atol=0.5 * c.stride)
    assert torch.allclose(score[far], torch.full_like(score[far], 0.5), atol=0.05)


def _mirror(kp, size):
    """Keypoints of the horizontally mirrored input: x -> S - 1 - x, left/right joints swapped."""
    m = kp.clone()
    m[..., 0] = size - 1 - m[..., 0]
    return m[:, FLIP_PERM]


@pytest.mark.parametrize("spec", ["regression", {"name": "heatmap", "stride": 4, "sigma": 1.5},
                                  {"name": "integral", "stride": 4}])
def test_unflip_maps_the_mirrored_output_back(spec):
    """What a codec encodes for the mirrored input, unflipped, is what it encodes for the input."""
    c = build_codec(spec, 64)
    kp = _kp(2, 64)
    ones = torch.ones(2, NUM_JOINTS)
    if c.is_heatmap:
        assert c.kind in ("heatmap", "integral")
        hm = build_codec({"name": "heatmap", "stride": c.stride, "sigma": 1.5}, 64)
        maps = lambda k: hm.encode(k, ones)[0].reshape(2, NUM_JOINTS, hm.size, hm.size)  # noqa: E731
        assert torch.allclose(c.unflip(maps(_mirror(kp, 64))), maps(kp), atol=1e-6)
    else:
        assert c.kind == "regression"
        out = lambda k: c.encode(k, ones)[0].reshape(2, -1)  # noqa: E731
        assert torch.allclose(c.unflip(out(_mirror(kp, 64))), out(kp), atol=1e-6)
        # flip test of a coordinate codec: the two passes' coordinates are averaged
        def model(x):  # the true joints of each of the 2 images, mirrored where the input is (batch of 2 or 4)
            k = kp.repeat(len(x) // 2, 1, 1)
            return c.encode(torch.where((x[:, 0, 0, 0] < 0)[:, None, None], _mirror(k, 64), k),
                            torch.ones(len(x), NUM_JOINTS))[0].reshape(len(x), -1)

        x = torch.zeros(2, 3, 64, 64)
        x[..., :, 32:] = -1.0
        p = run_network(model, c, x, flip_test=True)
        assert p.maps is None and torch.allclose(p.keypoints, kp, atol=1e-4)


def test_build_codec_checks_options_and_takes_a_spec():
    with pytest.raises(ValueError, match=r"codec 'heatmap' got unknown option 'sigam' \(did you mean 'sigma'\?\)"):
        build_codec({"name": "heatmap", "sigam": 2.0}, 64)
    with pytest.raises(ValueError, match="unknown codec 'nope'"):
        build_codec("nope", 64)
    c = build_codec(Spec(name="heatmap", stride=8, sigma=1.0), 64)
    assert (c.kind, c.stride, c.sigma, c.size, c.is_heatmap) == ("heatmap", 8, 1.0, 8, True)
    assert build_codec(Spec(name="regression"), 64).is_heatmap is False


def test_unit_frame_conversions():
    xy = torch.tensor([[-0.5, -0.5], [63.5, 63.5], [31.5, 0.0]])
    np.testing.assert_allclose(to_unit(xy, 64), [[0, 0], [1, 1], [0.5, 0.5 / 64]])  # pixel edges at 0 and 1
    assert torch.allclose(from_unit(to_unit(xy, 64), 64), xy)
