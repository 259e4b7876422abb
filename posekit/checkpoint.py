"""Checkpoints: everything a run needs to resume or to be evaluated, in one file; and the
models posekit ships (``posekit/weights/``).

A checkpoint is a dict saved with ``torch.save`` and read with ``weights_only=True`` (tensors,
numbers, strings, lists and dicts only): ``format``, ``config`` (the recipe as plain data),
``model`` (the weights), and for a training run ``split``, ``epoch`` (0-based), ``history``,
``best``, ``bad_epochs``, ``optimizer`` and ``metrics``."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from pydantic import ValidationError

from posekit.codecs import build_codec
from posekit.config import Recipe, Spec, StageConfig, complete_config
from posekit.errors import PosekitError
from posekit.models import MODELS, build_model, list_models, model_options
from posekit.utils import atomic_torch_save

FORMAT = "posekit-checkpoint-v1"


def model_kwargs(spec: Spec, input_size: int) -> dict:
    """A model spec's options, with ``input_size`` filled in when the model takes one.

    Raises PosekitError for an unknown model name."""
    if spec.name not in MODELS:
        raise PosekitError(f"unknown model {spec.name!r}; known models: {', '.join(list_models())}")
    opts = spec.options()
    valid = model_options(spec.name)
    if (valid is None or "input_size" in valid) and "input_size" not in opts:
        opts["input_size"] = input_size
    return opts


def build_from_spec(spec: Spec, input_size: int, where: str | None = None) -> torch.nn.Module:
    """The model a spec (registry name + options) describes; a bad name or option is a one-line
    PosekitError (prefixed by ``where``, e.g. the config's file)."""
    try:
        return build_model(spec.name, **model_kwargs(spec, input_size))
    except PosekitError as e:
        raise PosekitError(f"{where}: {e}" if where else str(e)) from None
    except ValueError as e:
        raise PosekitError(f"{where}: {e}" if where else str(e)) from None
    except TypeError as e:  # an option of the wrong type
        opts = ", ".join(f"{k}={v!r}" for k, v in spec.options().items())
        msg = f"model {spec.name!r} cannot be built with {opts} ({e})"
        raise PosekitError(f"{where}: {msg}" if where else msg) from None


def model_from_config(cfg: Recipe, where: str | None = None) -> torch.nn.Module:
    """The recipe's model (``model`` at ``data.input_size``), see :func:`build_from_spec`."""
    return build_from_spec(cfg.model, cfg.data.input_size, where)


def codec_from_config(cfg: Recipe, where: str | None = None):
    """The recipe's codec; a bad name or option is a one-line PosekitError."""
    try:
        return build_codec(cfg.codec, cfg.data.input_size)
    except (ValueError, TypeError) as e:
        raise PosekitError(f"{where}: {e}" if where else str(e)) from None


def plain(obj):
    """``obj`` with NumPy scalars and arrays turned into Python numbers and lists (tensors kept),
    so a checkpoint holds only what ``torch.load(weights_only=True)`` reads."""
    import numpy as np

    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    return obj


def save_checkpoint(path: str | os.PathLike, **payload) -> None:
    """Write a checkpoint atomically (see :func:`posekit.utils.atomic_write_bytes`)."""
    atomic_torch_save({"format": FORMAT, **plain(payload)}, path)


def with_settings(config: dict, settings: dict | None, where: str = "settings") -> dict:
    """A copy of a checkpoint's raw ``config`` with ``settings`` ({section: {key: value}}) laid over
    its ``infer``, ``detect`` and ``video`` sections: how the trained network is run, never what
    was trained. Raises PosekitError for any other section."""
    out = dict(config)
    for section, values in (settings or {}).items():
        if section not in ("infer", "detect", "video"):
            raise PosekitError(f"{where}: {section!r} settings cannot be changed after training (infer, detect, video)")
        out[section] = {**out.get(section, {}), **values}
    return out


DEFAULT_MODEL = "posekit-lsp"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_models() -> list[str]:
    """Names of the models shipped in ``posekit/weights/`` (``<name>.pt``)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def resolve_checkpoint_path(path: str | os.PathLike | None) -> Path:
    """A checkpoint file, a run folder (its best checkpoint, see :func:`best_in_run`) or a
    shipped model's name. Raises PosekitError naming the path when there is none, and listing
    the shipped models for an unknown name."""
    if path is None or str(path) == "":
        path = DEFAULT_MODEL
    p = Path(path)
    if not p.exists() and p.suffix == "" and len(p.parts) == 1:
        shipped = WEIGHTS_DIR / f"{p.name}.pt"
        if shipped.is_file():
            return shipped
        names = ", ".join(shipped_models()) or "none in this install"
        raise PosekitError(f"{p}: no such model file, run folder or shipped model (shipped: {names})")
    if p.is_dir():
        return best_in_run(p)
    if not p.is_file():
        raise PosekitError(f"{p}: model file not found (shipped models: {', '.join(shipped_models()) or 'none'})")
    return p


def best_in_run(folder: Path) -> Path:
    """The best checkpoint of a run folder: ``best.pt``, unless a kill between the end-of-epoch
    writes left it behind ``last.pt`` (``last.pt`` is written first; when its own epoch is the
    best of its history and ``best.pt`` holds another epoch, ``last.pt`` is the best); ``last.pt``
    when there is no ``best.pt``."""
    best, last = folder / "best.pt", folder / "last.pt"
    if not best.is_file() and not last.is_file():
        raise PosekitError(f"{folder}: no best.pt or last.pt in this run folder")
    if not last.is_file():
        return best
    return last if stale_best(folder) else best


def stale_best(folder: Path) -> bool:
    """Is ``best.pt`` in a run folder missing or holding another epoch than the best of
    ``last.pt``'s history, while that best epoch is ``last.pt``'s own (a kill between the two
    end-of-epoch writes)?"""
    try:
        last = _load(folder / "last.pt", mmap=True)
    except PosekitError:
        return False
    if (last.get("best") or {}).get("epoch") != last.get("epoch", -2) + 1:
        return False
    if not (folder / "best.pt").is_file():
        return True
    try:
        return _load(folder / "best.pt", mmap=True).get("epoch") != last.get("epoch")
    except PosekitError:
        return True


def _numpy_scalar_globals() -> list:
    """What pickled NumPy scalars need: the scalar constructor and the numeric dtypes (no code)."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import scalar
    kinds = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
             np.float16, np.float32, np.float64]
    return [scalar, np.dtype, *(type(np.dtype(k)) for k in kinds)]


_NUMPY_SCALARS = _numpy_scalar_globals()


def _load(p: Path, mmap: bool = False) -> dict:
    """``torch.load`` with ``weights_only=True``: tensors, numbers, strings and containers only,
    so a file that pickles code is refused instead of run."""
    import pickle

    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise PosekitError(f"{p}: cannot read checkpoint ({e.strerror})") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # a PyTorch file is a zip or a pickle
        onnx = " (an ONNX file: a pose model exported by posekit runs with --backend onnx)" \
            if p.suffix.lower() == ".onnx" else ""
        raise PosekitError(f"{p}: not a posekit checkpoint{onnx}")
    try:  # torch warns about the pickle protocol of a file it then refuses: the refusal below says it all
        with torch.serialization.safe_globals(_NUMPY_SCALARS), warnings.catch_warnings():  # plain numbers in older checkpoints
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(str(p), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise PosekitError(f"{p}: refused: the file holds Python objects that a posekit checkpoint never "
                           "contains (only tensors, numbers, strings, lists and dicts are loaded)") from None
    except Exception as e:
        raise PosekitError(f"{p}: cannot read checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PosekitError(f"{p}: not a posekit checkpoint")
    return ckpt


def read_checkpoint(path: str | os.PathLike, need_config: bool = True) -> dict:
    """The checkpoint dict of a file, run folder or shipped model name, with ``path`` added.

    Raises PosekitError (one line, naming the file) for a missing file, a file that is not a
    posekit checkpoint or holds pickled code, and one without weights or (``need_config``)
    without a usable config."""
    p = resolve_checkpoint_path(path)
    ckpt = _load(p)
    cfg = ckpt.get("config")
    usable = (isinstance(cfg, dict) and isinstance(cfg.get("model"), dict) and "name" in cfg["model"]
              and isinstance(cfg.get("data"), dict) and "input_size" in cfg["data"])
    if need_config and not usable:
        raise PosekitError(f"{p}: the checkpoint has no usable config (model name, data.input_size)")
    if usable:
        ckpt["recipe"] = complete_config(cfg, str(p))
    weights = ckpt.get("model")
    if not isinstance(weights, dict) or not weights or not all(torch.is_tensor(v) for v in weights.values()):
        raise PosekitError(f"{p}: the checkpoint holds no model weights")
    bad = next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise PosekitError(f"{p}: weights hold NaN or infinite values ({bad})")
    ckpt["path"] = str(p)
    return ckpt


def load_weights(model: torch.nn.Module, state: dict, where: str) -> None:
    """``model.load_state_dict(state)``, with a one-line PosekitError naming ``where`` when tensors
    are missing, unexpected or of another shape."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", extra), ("of another shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} tensor(s) {label} (e.g. {keys[0]})")
        raise PosekitError(f"{where}: the weights do not fit the model its config describes: {'; '.join(parts)}")
    model.load_state_dict(state)


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
    cfg = ckpt["recipe"]
    model = model_from_config(cfg, where=ckpt["path"])
    load_weights(model, flush_denormals(ckpt["model"]), ckpt["path"])
    model.to(device).eval()
    return model, codec_from_config(cfg, ckpt["path"]), ckpt


def build_stage(st: StageConfig, where: str = "config") -> tuple[torch.nn.Module, object]:
    """A cascade stage's network and codec: a regression model with the regression codec, or a
    heatmap model with the heatmap or integral codec. Raises PosekitError (one line) otherwise."""
    net = build_from_spec(st.model, st.input_size, where)
    try:
        codec = build_codec(st.codec, st.input_size)
    except (ValueError, TypeError) as e:
        raise PosekitError(f"{where}: cascade stage codec {st.codec.name!r}: {e}") from None
    kind = getattr(net, "output_kind", None)
    want = "heatmap" if codec.is_heatmap else "regression"
    if kind != want:
        raise PosekitError(f"{where}: cascade stage model {st.model.name!r} gives {kind} outputs; "
                           f"the {codec.kind} codec needs a {want} model")
    return net, codec


def cascade_stages(ckpt: dict, device: str | torch.device = "cpu") -> list:
    """The refinement stages of a cascade checkpoint (``posekit train`` with ``cascade.stage1``),
    as :class:`posekit.models.cascade.Stage` in eval mode; [] for any other checkpoint."""
    from posekit.models.cascade import Stage

    out = []
    where = ckpt.get("path", "checkpoint")
    for k, st in enumerate((ckpt.get("cascade") or {}).get("stages", []), start=2):
        try:
            spec = StageConfig.model_validate({n: st[n] for n in ("sigma", "input_size", "model", "codec") if n in st})
            net, codec = build_stage(spec, where)
            load_weights(net, flush_denormals(st["state"]), f"{where} (cascade stage {k})")
        except (ValidationError, KeyError, TypeError) as e:
            raise PosekitError(f"{where}: cascade stage {k} cannot be rebuilt ({type(e).__name__})") from None
        out.append(Stage(net.float().to(device).eval(), spec.input_size, spec.sigma, codec))
    return out
