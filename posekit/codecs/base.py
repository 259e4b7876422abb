"""What every codec shares: the pixel-centre frame conversions and option checking.

Legend: N images, K joints (14), S the square input's side in pixels, H x W a heatmap's cells.
Coordinates are 0-based pixel positions with pixel centres at integers; ``to_unit`` maps them to
[0, 1] over a frame of ``size`` pixels (0 = the left/top edge, 1 = the right/bottom edge)."""
from __future__ import annotations

import difflib
import inspect

import torch


def to_unit(xy: torch.Tensor, size: float) -> torch.Tensor:
    """(..., 2) pixel positions in a frame of ``size`` pixels -> [0, 1] over that frame."""
    return (xy + 0.5) / size


def from_unit(uv: torch.Tensor, size: float) -> torch.Tensor:
    """Inverse of :func:`to_unit`."""
    return uv * size - 0.5


def check_options(cls, name: str, options: dict) -> None:
    """Raise a one-line ValueError for an option ``cls`` does not take (with "did you mean")."""
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "input_size")]
    for k in options:
        if k not in valid:
            m = difflib.get_close_matches(k, valid, n=1)
            hint = f" (did you mean '{m[0]}'?)" if m else ""
            raise ValueError(f"codec {name!r} got unknown option {k!r}{hint}; valid: {', '.join(valid) or 'none'}")
