"""Checkpoints: everything a run needs to resume or to be evaluated, in one file."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from posekit.codecs import build_codec
from posekit.errors import PosekitError
from posekit.models import MODELS, build_model, list_models, model_options
from posekit.utils import atomic_torch_save

FORMAT = "posekit-checkpoint-v1"


def model_kwargs(cfg: dict) -> dict:
    """Model options from a config: ``model`` minus ``name``, with the input size filled in
    from ``data.input_size`` when the model takes one."""
    name = cfg["model"]["name"]
    if name not in MODELS:
        raise PosekitError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    opts = {k: v for k, v in cfg["model"].items() if k != "name"}
    valid = model_options(name)
    if (valid is None or "input_size" in valid) and "input_size" not in opts:
        opts["input_size"] = cfg["data"]["input_size"]
    return opts


def model_from_config(cfg: dict, where: str | None = None) -> torch.nn.Module:
    """Build the config's model; a bad name or option is a one-line error (prefixed by ``where``,
    the config's file, when given)."""
    try:
        return build_model(cfg["model"]["name"], **model_kwargs(cfg))
    except ValueError as e:
        raise PosekitError(f"{where}: {e}" if where else str(e)) from None
    except TypeError as e:  # an option of the wrong type
        opts = ", ".join(f"{k}={v!r}" for k, v in cfg["model"].items() if k != "name")
        msg = f"model {cfg['model']['name']!r} cannot be built with {opts} ({e})"
        raise PosekitError(f"{where}: {msg}" if where else msg) from None


def save_checkpoint(path: str | os.PathLike, **payload) -> None:
    atomic_torch_save({"format": FORMAT, **payload}, path)


DEFAULT_MODEL = "posekit-lsp"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_models() -> list[str]:
    """Names of the models shipped in ``posekit/weights/`` (``<name>.pt``)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def resolve_checkpoint_path(path: str | os.PathLike | None) -> Path:
    """A checkpoint file, a run folder (its best.pt, else last.pt) or a shipped model's name."""
    if path is None or str(path) == "":
        path = DEFAULT_MODEL
    p = Path(path)
    if not p.exists() and p.suffix == "" and len(p.parts) == 1:
        shipped = WEIGHTS_DIR / f"{p.name}.pt"
        if shipped.is_file():
            return shipped
        if p.name == DEFAULT_MODEL:
            raise PosekitError(f"no shipped model {DEFAULT_MODEL!r} in this install ({WEIGHTS_DIR}); "
                               "pass a checkpoint file or run folder with --model")
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise PosekitError(f"{p}: no best.pt or last.pt in this run folder")
    if not p.is_file():
        raise PosekitError(f"{p}: model file not found")
    return p


def read_checkpoint(path: str | os.PathLike) -> dict:
    p = resolve_checkpoint_path(path)
    try:
        ckpt = torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as e:
        raise PosekitError(f"{p}: cannot read checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PosekitError(f"{p}: not a posekit checkpoint")
    ckpt["path"] = str(p)
    return ckpt


def flush_denormals(state: dict) -> dict:
    """The state with subnormal floats set to 0. Weights that Adam's weight decay drove towards
    zero end up subnormal, and CPU convolutions on subnormal weights run several times slower
    (a trained cascade stage: 64 ms instead of 9 ms per image); as weights they are zero to
    every digit that float32 keeps."""
    out = {}
    for k, v in state.items():
        if torch.is_tensor(v) and v.is_floating_point():
            v = torch.where(v.abs() < torch.finfo(v.dtype).tiny, torch.zeros_like(v), v)
        out[k] = v
    return out


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model in eval mode, codec, checkpoint dict) from a checkpoint file or run folder."""
    ckpt = read_checkpoint(path)
    cfg = ckpt["config"]
    model = model_from_config(cfg)
    model.load_state_dict(flush_denormals(ckpt["model"]))
    model.to(device).eval()
    codec = build_codec(cfg["codec"], cfg["data"]["input_size"])
    return model, codec, ckpt


def cascade_stages(ckpt: dict, device: str | torch.device = "cpu") -> list:
    """The refinement stages of a cascade checkpoint (``posekit train`` with ``cascade.stage1``),
    as :class:`posekit.models.cascade.Stage` in eval mode; [] for any other checkpoint."""
    from posekit.models import build_model
    from posekit.models.cascade import Stage

    out = []
    for k, st in enumerate((ckpt.get("cascade") or {}).get("stages", []), start=2):
        opts = {n: v for n, v in st["model"].items() if n != "name"}
        try:
            net = build_model(st["model"]["name"], input_size=st["input_size"], **opts)
            net.load_state_dict(flush_denormals(st["state"]))
            codec = build_codec(st.get("codec", "regression"), int(st["input_size"]))
        except (ValueError, TypeError, RuntimeError, KeyError) as e:
            where = ckpt.get("path", "checkpoint")
            raise PosekitError(f"{where}: cascade stage {k} cannot be rebuilt ({type(e).__name__})") from None
        out.append(Stage(net.float().to(device).eval(), int(st["input_size"]), float(st["sigma"]), codec))
    return out
