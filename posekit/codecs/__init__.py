"""Codecs: keypoints in input pixels <-> what a model's head is trained on / outputs."""
from __future__ import annotations

from posekit.codecs.regression import RegressionCodec

CODECS = {"regression": RegressionCodec}


def build_codec(kind: str, input_size: int):
    try:
        return CODECS[kind](input_size)
    except KeyError:
        raise ValueError(f"unknown codec {kind!r}; known: {', '.join(CODECS)}") from None
