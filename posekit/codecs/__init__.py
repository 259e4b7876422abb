"""Codecs: keypoints in input pixels <-> what a model's head is trained on and outputs.

Legend: N images, K joints (14), S input side in pixels, H x W heatmap cells.

Every codec has ``kind``; ``is_heatmap`` (outputs are (N, K, H, W) maps, which can be averaged
and resampled before decoding); ``encode(keypoints (N, K, 2), mask (N, K)) -> (target, weight
(N, K))``; ``loss_input(output)`` (the output shaped like the target); ``decode(output) ->
(keypoints (N, K, 2) input pixels, scores (N, K))``; ``unflip(output)`` (the output of the
mirrored input mapped back, left/right swapped: flip test); and a ``default_loss``. The person
detector's codec (``center``, :mod:`posekit.codecs.center`) maps person boxes instead."""
from __future__ import annotations

from posekit.codecs.base import check_options, from_unit, to_unit
from posekit.codecs.center import CenterCodec
from posekit.codecs.heatmap import HeatmapCodec, IntegralCodec
from posekit.codecs.regression import RegressionCodec

CODECS = {"regression": RegressionCodec, "heatmap": HeatmapCodec, "integral": IntegralCodec, "center": CenterCodec}


def build_codec(spec, input_size: int):
    """A codec from a name, a mapping ``{"name": ..., options}`` or a config ``Spec``, for a
    ``input_size`` input. Raises ValueError (one line) for an unknown name or option."""
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump()
    opts = dict(spec) if isinstance(spec, dict) else {"name": spec}
    name = opts.pop("name", None)
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    check_options(CODECS[name], name, opts)
    return CODECS[name](input_size, **opts)


__all__ = ["CODECS", "CenterCodec", "HeatmapCodec", "IntegralCodec", "RegressionCodec", "build_codec", "from_unit", "to_unit"]
