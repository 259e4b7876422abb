"""Model registry: the one place that maps model names to constructors."""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a model class/factory to ``MODELS`` under ``name``."""
    def deco(ctor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS and MODELS[name] is not ctor:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = ctor
        return ctor
    return deco


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def model_options(name: str) -> list[str] | None:
    """Sorted keyword options the constructor accepts, or None if it takes **kwargs."""
    params = inspect.signature(MODELS[name]).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return sorted(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def build_model(name: str, **options) -> nn.Module:
    """Construct a registered model; one-line ValueError for unknown names or options."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    valid = model_options(name)
    if valid is not None:
        bad = sorted(k for k in options if k not in valid)
        if bad:
            raise ValueError(f"model {name!r} got unknown option(s) {', '.join(map(repr, bad))}; "
                             f"valid: {', '.join(valid)}")
    return MODELS[name](**options)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_flops(model: nn.Module, input_size: int | None = None) -> float:
    """GFLOPs of one (1,3,S,S) forward pass, counted as 2 x multiply-adds of Conv2d/Linear.

    Bias adds, BN, activations and pooling are not counted. ``input_size`` defaults to
    ``model.input_size``.
    """
    size = input_size or model.input_size
    macs = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out[0].numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        macs += (out[0].numel() // m.out_features) * m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    param = next(model.parameters(), None)
    x = torch.zeros(1, 3, size, size, device=param.device if param is not None else "cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return 2 * macs / 1e9


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in an ``nn.Sequential``
    into that conv (weights scaled, bias added; the BN becomes an identity), in place: the same
    outputs within float rounding, and faster. For inference only (the model must be
    in eval mode: the running statistics are frozen into the weights)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ValueError("fold_batchnorm: the model must be in eval mode")
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                fused = fuse_conv_bn_eval(seq[i], seq[i + 1])
                for q in fused.parameters():  # the new bias trains like the weight
                    q.requires_grad_(seq[i].weight.requires_grad)
                seq[i] = fused
                seq[i + 1] = nn.Identity()
    return model


def inference_ready(model: nn.Module) -> nn.Module:
    """An eval-mode model made faster for inference, in place: BN folded into the convs
    (:func:`fold_batchnorm`) and the weights in channels-last memory order, which the CPU's
    convolutions run faster: together 1.6-1.7x for the shipped network at batch 1 and 3
    (``benchmarks/network_speed.py``). The outputs are the same within float rounding (~1e-6)."""
    return fold_batchnorm(model).to(memory_format=torch.channels_last)


from posekit.models.detector import CenterNetDetector  # noqa: E402
from posekit.models.paper_vgg import PaperVGG  # noqa: E402
from posekit.models.poster_cnn import PosterCNN  # noqa: E402
from posekit.models.resnet_pose import ResNetPose  # noqa: E402

register_model("paper_vgg")(PaperVGG)
register_model("poster_cnn")(PosterCNN)
register_model("resnet_pose")(ResNetPose)
register_model("centernet_detector")(CenterNetDetector)

__all__ = [
    'MODELS',
    'CenterNetDetector',
    'PaperVGG',
    'PosterCNN',
    'build_model',
    'count_parameters',
    'fold_batchnorm',
    'inference_ready',
    'list_models',
    'model_flops',
    'model_options',
    'register_model',
]
