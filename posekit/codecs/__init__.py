"""Codecs: keypoints in input pixels <-> what a model's head is trained on / outputs.

Every codec has ``encode(keypoints, mask) -> (target, weight)``, ``loss_input(output)`` (the head
output shaped like the target), ``decode(output) -> (keypoints in input pixels, scores)`` and a
``default_loss``."""
from __future__ import annotations

from posekit.codecs.heatmap import HeatmapCodec, IntegralCodec
from posekit.codecs.regression import RegressionCodec

CODECS = {"regression": RegressionCodec, "heatmap": HeatmapCodec, "integral": IntegralCodec}


def build_codec(kind: str | dict, input_size: int):
    """``kind`` is a codec name or a mapping ``{"name": ..., options}`` (e.g. stride, sigma)."""
    opts = dict(kind) if isinstance(kind, dict) else {"name": kind}
    name = opts.pop("name", None)
    try:
        cls = CODECS[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None
    return cls(input_size, **opts)
