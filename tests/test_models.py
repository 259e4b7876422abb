import math

import pytest
import torch
from torch import nn

from posekit.models import (
    MODELS,
    PaperVGG,
    PosterCNN,
    build_model,
    count_parameters,
    list_models,
    model_flops,
    register_model,
)
from posekit.skeleton import NUM_JOINTS

PAPER_LAYER_PARAMS = [
    1_792, 128, 36_928, 128, 73_856, 256, 147_584, 256, 295_168, 512, 590_080, 512, 590_080, 512,
    1_180_160, 1_024, 2_359_808, 1_024, 2_359_808, 1_024, 2_359_808, 1_024, 2_359_808, 1_024,
    2_359_808, 1_024, 12_845_568, 14_364,
]


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return PaperVGG().eval()


def weight_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]


def test_paper_vgg_param_count(vgg):
    assert count_parameters(vgg) == 27_583_068
    assert count_parameters(vgg, trainable_only=True) == 27_583_068
    assert sum(PAPER_LAYER_PARAMS) == 27_583_068


def test_paper_vgg_per_layer_params(vgg):
    counts = [sum(p.numel() for p in m.parameters()) for m in weight_layers(vgg)]
    assert counts == PAPER_LAYER_PARAMS


def test_paper_vgg_shapes(vgg):
    assert len(vgg.features) == 5
    assert all(isinstance(b[-1], nn.MaxPool2d) for b in vgg.features)
    expected = [(1, 64, 112, 112), (1, 128, 56, 56), (1, 256, 28, 28), (1, 512, 14, 14), (1, 512, 7, 7)]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for block, shape in zip(vgg.features, expected):
            x = block(x)
            assert tuple(x.shape) == shape
        assert tuple(vgg.head(x).shape) == (1, NUM_JOINTS * 2)
    assert vgg.input_size == PaperVGG.default_input_size == 224
    assert vgg.output_kind == "regression"
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in vgg.modules())


def test_paper_vgg_fc_follows_input_size():
    m = PaperVGG(input_size=64, num_joints=3, dropout=0.1)
    fc1 = [l for l in m.head if isinstance(l, nn.Linear)][0]
    assert fc1.in_features == 512 * 2 * 2
    assert [d.p for d in m.head if isinstance(d, nn.Dropout)] == [0.1]
    with torch.no_grad():
        assert m.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 6)
    with pytest.raises(ValueError, match="multiple of 32"):
        PaperVGG(input_size=100)


def test_paper_vgg_flops(vgg):
    macs, cin, res = 0, 3, 224
    for widths in [(64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3]:
        for cout in widths:
            macs += res * res * cout * cin * 9
            cin = cout
        res //= 2
    macs += 512 * 7 * 7 * 512 + 512 * NUM_JOINTS * 2
    assert model_flops(vgg, 224) == pytest.approx(2 * macs / 1e9, rel=1e-9)
    assert model_flops(vgg, 224) == pytest.approx(31.0, rel=0.05)  # ~15.5 GMACs x 2
    assert not vgg.training


def test_poster_cnn_shape_and_layers():
    torch.manual_seed(0)
    m = PosterCNN().eval()
    with torch.no_grad():
        out = m(torch.randn(2, 3, 96, 96))
    assert out.shape == (2, NUM_JOINTS * 2)
    assert m.input_size == PosterCNN.default_input_size == 96 and m.output_kind == "regression"
    convs = [l for l in m.modules() if isinstance(l, nn.Conv2d)]
    linears = [l for l in m.modules() if isinstance(l, nn.Linear)]
    assert (len(convs), len(linears)) == (8, 3)
    assert sum(isinstance(l, nn.BatchNorm2d) for l in m.modules()) == 8
    assert linears[0].in_features == 256 * 6 * 6
    assert [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.3, 0.3]


def test_poster_cnn_xavier_init():
    torch.manual_seed(0)
    m = PosterCNN()
    out_layer = m.head[-1]
    for layer in m.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
            expected = math.sqrt(2.0 / (fan_in + fan_out))
            if layer is out_layer:  # Xavier x 0.1, bias at the frame centre (init_regression_output)
                assert layer.weight.std().item() == pytest.approx(0.1 * expected, rel=0.15)
                assert torch.all(layer.bias == 0.5)
                continue
            assert layer.weight.std().item() == pytest.approx(expected, rel=0.15)
            assert torch.all(layer.bias == 0)
        elif isinstance(layer, nn.BatchNorm2d):
            assert torch.all(layer.weight == 1) and torch.all(layer.bias == 0)


def test_poster_cnn_backward_tiny():
    torch.manual_seed(0)
    m = PosterCNN(width=8, input_size=32)
    x = torch.randn(4, 3, 32, 32)
    loss = (m(x) - torch.rand(4, NUM_JOINTS * 2)).pow(2).mean()
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_registry_build_and_list():
    assert {"paper_vgg", "poster_cnn"} <= set(MODELS)
    assert list_models() == sorted(MODELS)
    m = build_model("poster_cnn", width=4, dropout=0.0)
    assert isinstance(m, PosterCNN)
    assert isinstance(build_model("paper_vgg", input_size=32), PaperVGG)


def test_registry_unknown_name():
    with pytest.raises(ValueError, match="unknown model 'foo'; known models: .*paper_vgg.*poster_cnn") as e:
        build_model("foo")
    assert "\n" not in str(e.value)


def test_registry_unknown_option():
    msg = "model 'paper_vgg' got unknown option(s) 'bar'; valid: dropout, input_size, num_joints"
    with pytest.raises(ValueError) as e:
        build_model("paper_vgg", bar=1)
    assert str(e.value) == msg
    with pytest.raises(ValueError, match="'width'"):
        build_model("paper_vgg", width=8)


def test_register_model_decorator():
    @register_model("_test_dummy")
    class Dummy(nn.Module):
        def __init__(self, k: int = 1):
            super().__init__()
            self.k = k

    try:
        assert build_model("_test_dummy", k=3).k == 3
        with pytest.raises(ValueError, match="already registered"):
            register_model("_test_dummy")(PosterCNN)
    finally:
        MODELS.pop("_test_dummy")


def test_regression_heads_start_at_frame_centre():
    torch.manual_seed(0)
    for name, size in (("poster_cnn", 96), ("paper_vgg", 64)):
        m = build_model(name, input_size=size).eval()
        with torch.no_grad():
            out = m(torch.randn(2, 3, size, size))
        assert (out - 0.5).abs().max() < 0.5, name  # inside the frame from the first step


def test_grown_resnet_pose_starts_as_its_source(tmp_path):
    """zero_init_residual + train.init_from grow a trained model deeper without changing its output:
    the blocks the checkpoint has take its weights, the added ones begin as the identity."""
    from posekit.checkpoint import save_checkpoint
    from posekit.train import init_weights

    torch.manual_seed(0)
    small = build_model("resnet_pose", input_size=64, width=8, depths=[1, 1, 1, 1], neck=16)
    with torch.no_grad():  # a "trained" model: no BN scale at zero, non-trivial running statistics
        for m in small.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(tmp_path / "small.pt", model=small.state_dict(), config={})
    big = build_model("resnet_pose", input_size=64, width=8, depths=[1, 2, 3, 2], neck=16, zero_init_residual=True)
    line = init_weights(big, str(tmp_path / "small.pt"))
    assert "keep their fresh init" in line
    x = torch.randn(2, 3, 64, 64)
    small.eval(), big.eval()
    with torch.no_grad():
        assert torch.allclose(big(x), small(x), atol=1e-6)
    plain = build_model("resnet_pose", input_size=64, width=8, depths=[1, 2, 3, 2], neck=16)
    init_weights(plain, str(tmp_path / "small.pt"))
    with torch.no_grad():  # without it the added blocks change the output
        assert not torch.allclose(plain.eval()(x), small(x), atol=1e-3)
    big.train()
    big(x).square().mean().backward()  # the added blocks' zeroed scales still get a gradient
    assert big.stages[1][1].body[-1][1].weight.grad.abs().sum() > 0


def test_init_from_a_model_of_another_width_is_refused(tmp_path):
    """train.init_from with tensors of the same names but other shapes (another width or neck) is
    refused in one line naming the first and both shapes, instead of copying the few that fit."""
    from posekit.checkpoint import save_checkpoint
    from posekit.errors import ConfigError
    from posekit.train import init_weights

    src = build_model("centernet_detector", input_size=64, width=24, neck=48)
    save_checkpoint(tmp_path / "det.pt", model=src.state_dict(), config={})
    narrow = build_model("centernet_detector", input_size=64, width=16, neck=32)
    first = next(k for k, v in src.state_dict().items() if v.shape != narrow.state_dict()[k].shape)
    with pytest.raises(ConfigError, match=rf"det\.pt: tensor {first} is \({src.state_dict()[first].shape[0]}, .* there "
                                          rf"but \({narrow.state_dict()[first].shape[0]}, .* in this model"):
        init_weights(narrow, str(tmp_path / "det.pt"))
    assert "initialised" in init_weights(build_model("centernet_detector", input_size=64, width=24, neck=48),
                                         str(tmp_path / "det.pt"))


@pytest.mark.parametrize("name,opts,size", [
    ("resnet_pose", {"width": 8, "depths": [1, 2, 1, 1], "neck": 16}, 64),
    ("poster_cnn", {}, 96),
])
def test_inference_ready_folds_batchnorm_and_keeps_outputs(name, opts, size):
    """BN folded into the preceding convs and channels-last weights: no BatchNorm left, the same
    outputs (with non-trivial running statistics), gradients still reach the input; a model in
    training mode is refused (its batch statistics cannot be frozen)."""
    import copy

    from posekit.models import build_model, fold_batchnorm, inference_ready

    torch.manual_seed(0)
    net = build_model(name, input_size=size, **opts)
    for m in net.modules():  # running statistics and affine terms away from their defaults
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(copy.deepcopy(net))
    net.eval()
    ready = inference_ready(copy.deepcopy(net))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in ready.modules())
    x = torch.randn(2, 3, size, size, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(ready(x), net(x), atol=1e-4, rtol=1e-4)
    ready(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.requires_grad for p in ready.parameters())


def test_models_from_a_recipe_and_cascade_stages():
    """``model_from_config`` builds the recipe's model at ``data.input_size``; ``build_stage`` a
    cascade stage's (network, codec), refusing a codec that does not read the network's output."""
    from posekit.checkpoint import build_stage, codec_from_config, model_from_config
    from posekit.config import Spec, StageConfig, load_config
    from posekit.errors import PosekitError

    cfg = load_config("configs/poster.yaml", ["data.input_size=64", "model.width=4"])
    m = model_from_config(cfg)
    assert isinstance(m, PosterCNN) and m.input_size == 64
    assert codec_from_config(cfg).kind == cfg.codec.name
    with pytest.raises(PosekitError, match="unknown model 'nope'"):
        model_from_config(cfg.replace(["model.name=nope"]))
    net, codec = build_stage(StageConfig(sigma=1.5, input_size=32, model=Spec(name="poster_cnn", width=4)))
    assert isinstance(net, PosterCNN) and net.input_size == 32 and codec.kind == "regression"
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, NUM_JOINTS * 2)
    net, codec = build_stage(StageConfig(sigma=1.0, input_size=32, codec=Spec(name="heatmap", stride=4, sigma=1.0),
                                         model=Spec(name="resnet_pose", width=8, depths=[1, 1, 1, 1], neck=16)))
    assert codec.is_heatmap and net.output_kind == "heatmap"
    with pytest.raises(PosekitError, match="the heatmap codec needs a heatmap model"):
        build_stage(StageConfig(sigma=1.0, codec=Spec(name="heatmap"), model=Spec(name="poster_cnn", width=4)))
