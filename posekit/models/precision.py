"""Inference precision: float32, or bfloat16 where the processor multiplies it natively.

bfloat16 keeps float32's 8-bit exponent with an 8-bit mantissa (Kalamkar et al. 2019, "A Study of
BFLOAT16 for Deep Learning Training"). On CPUs with AVX512-BF16 or AMX, oneDNN runs bfloat16
convolutions in hardware, so a network cast to it runs faster at the same accuracy; elsewhere they
are emulated and slower than float32. ``auto`` therefore picks bfloat16 only where the CPU has
it, as OpenVINO's CPU plugin does by default. Speed and accuracy: reports/precision_cpu.json."""
from __future__ import annotations

import copy
import platform

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware and torch's oneDNN convolutions can use it:
    AVX512-BF16 or AMX tiles on x86; elsewhere (e.g. Arm) as oneDNN reports it."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without these queries: assume not
        return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """``auto`` -> ``bf16`` on a CPU device with native bfloat16 (:func:`native_bf16`), else
    ``fp32``; ``fp32`` and ``bf16`` as given. Raises ValueError for another name."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cpu" and native_bf16() else "fp32"


class Bf16Network(nn.Module):
    """A network run in bfloat16: a copy of ``model`` with its weights cast once (``model`` itself
    is left in float32), inputs cast on the way in and outputs back to float32 on the way out.

    forward: x (N, C, H, W) float32 -> the model's output tensor, float32."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.body = copy.deepcopy(model).to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.to(torch.bfloat16)).float()


def in_precision(model: nn.Module, precision: str) -> nn.Module:
    """``model`` to run at ``precision`` (``fp32`` or ``bf16``, as resolved by
    :func:`resolve_precision`): the model itself, or a :class:`Bf16Network` around a copy."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"in_precision takes fp32 or bf16, got {precision!r} (resolve 'auto' first)")
    return Bf16Network(model) if precision == "bf16" else model
