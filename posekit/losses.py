"""Losses on encoded targets. Unannotated joints (mask 0) do not count."""
from __future__ import annotations

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the annotated joints' coordinates.

    pred, target: (B, J, D); mask: (B, J) with 1 = annotated. With every joint annotated this is
    exactly ``torch.nn.MSELoss()(pred, target)``."""
    m = mask.to(pred.dtype).unsqueeze(-1)
    se = (pred.float() - target.float()) ** 2 * m
    denom = (m.sum() * pred.shape[-1]).clamp_min(1.0)
    return se.sum() / denom


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the annotated joints' coordinates (integral regression)."""
    m = mask.to(pred.dtype).unsqueeze(-1)
    ae = (pred.float() - target.float()).abs() * m
    return ae.sum() / (m.sum() * pred.shape[-1]).clamp_min(1.0)


LOSSES = {"mse": masked_mse, "l1": masked_l1}


def build_loss(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None
