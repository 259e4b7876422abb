"""Recipe configs: YAML files validated against one schema of defaults.

Every key a recipe may set is in :data:`DEFAULTS`; an unknown key (in a file or a command-line
override ``section.key=value``) is an error naming the file and the key, so a typo never turns
into a silently ignored setting. ``model`` holds the registry name plus the model's own options,
which the registry validates."""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path

import yaml

from posekit.errors import ConfigError, PosekitError

DEFAULTS: dict = {
    "name": "run",
    "model": {"name": "poster_cnn"},  # + model options, checked by the registry
    "codec": {"name": "regression"},  # + codec options (heatmap: stride, sigma; integral: stride, beta)
    "loss": "auto",  # auto = the codec's own (mse for regression/heatmap, l1 for integral) | mse | l1
    "data": {
        "root": None,  # dataset root; None = $POSEKIT_DATA
        "sets": ["lsp", "lspet"],
        "split": "lsp-standard",  # paper | lsp-standard
        "split_seed": 0,
        "fractions": [0.7, 0.15, 0.15],  # paper split
        "val_fraction": 0.1,  # lsp-standard: validation carved from train
        "input_size": 96,
        "resize_mode": "stretch",  # stretch | letterbox (whole image, both invertible)
        "cache": True,  # decode every image once into memory
        "cache_max_side": 256,
        "pack": None,  # a file from `posekit data pack`: train from it instead of the dataset folder
        "limit_train": None,  # use only the first N training samples (quick runs)
        "limit_val": None,
    },
    "augment": {
        "flip": 0.0,
        "rotate": 0.0,
        "scale": [1.0, 1.0],
        "shift": 0.0,
        "crop_padding": 0,
        "color": 0.0,
        "person_crop": None,
    },
    "cascade": {  # DeepPose refinement stages, trained on top of a trained stage-1 checkpoint
        "stage1": None,  # checkpoint / run folder / shipped name; set = `posekit train` trains the stages
        "stages": [],  # one mapping per stage 2, 3, ...: {sigma, input_size, model: {name, options}}
        "joints_per_image": 4,  # training crops per image per epoch (random annotated joints)
        "side_jitter": 0.1,  # crop side x U(1 - j, 1 + j) while training
        "frame_margin": 0.17,  # stage-1 estimates on training images framed like LSP's (null: whole image)
        "error_reach": 1.0,  # fit the error model to errors within this x the crop's half-side (null: all)
    },
    "infer": {  # how evaluate and predict run the trained model
        "recrop": None,  # margin(s) of second looks at square crops around the first estimate (null: one pass)
        "fuse": 0.0,  # weight of the first pass's heatmaps blended into the second's (no extra network cost)
        "person_threshold": None,  # person score below which no person is reported (null: the default)
        "crop_border": None,  # pixels of the image's edge repeated where a second look's crop leaves the image
    },
    "train": {
        "epochs": 30,
        "batch_size": 32,
        "optimizer": "sgd",  # sgd | adam | adamw
        "lr": 0.01,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0,
        "scheduler": "none",  # none | cosine | step
        "step_size": 10,
        "gamma": 0.1,
        "warmup_epochs": 0,
        "early_stopping_patience": None,  # epochs without val-loss improvement; None = off
        "num_workers": 2,
        "seed": 0,
        "amp": True,  # bfloat16 autocast on CUDA and on CPUs with native bf16 (else fp32)
        "device": "auto",
        "log_images": 8,  # sample predictions drawn to TensorBoard per epoch
        "grad_clip": None,
        "max_steps_per_epoch": None,  # cap steps per epoch (quick runs)
        "deterministic": False,
        "ema": None,  # decay of a moving average of the weights (e.g. 0.999): validated, saved and shipped
        "init_from": None,  # transfer learning: start from this checkpoint / shipped model's weights
        "save_every": None,  # also keep epoch_NNN.pt every N epochs (accuracy-vs-epoch curves)
        "channels_last": True,  # NHWC activations: ~25% faster conv training on CPU (oneDNN)
        "sync_bn": False,  # DDP (torchrun): batch-norm statistics over the global batch
    },
}


def _suggest(key: str, options) -> str:
    m = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean '{m[0]}'?)" if m else ""


def _merge(base: dict, new: dict, where: str, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in (new or {}).items():
        full = f"{prefix}{k}"
        if prefix == "" and k in ("model", "codec"):  # free-form options, checked when built
            if isinstance(v, str) and k == "codec":
                v = {"name": v}
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: '{k}' must be a mapping with a 'name'")
            out[k] = {**out[k], **v} if v.get("name", out[k].get("name")) == out[k].get("name") else dict(v)
            continue
        if k not in base:
            raise ConfigError(f"{where}: unknown config key '{full}'{_suggest(k, base)}")
        if isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: '{full}' must be a mapping")
            out[k] = _merge(base[k], v, where, full + ".")
        else:
            out[k] = _coerce(base[k], v)
    return out


def _coerce(default, v):
    """YAML reads '1e-3' as a string; take it as the number the default's type implies."""
    if isinstance(v, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            v = float(v)
        except ValueError:
            return v
    if isinstance(v, float) and type(default) is int and v.is_integer():  # epochs=1e3
        return int(v)
    return v


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    key, val = text.split("=", 1)
    try:
        value = yaml.safe_load(val) if val != "" else None
    except yaml.YAMLError:
        value = val
    return key.strip().split("."), value


def complete_config(cfg: dict, where: str = "checkpoint") -> dict:
    """A config saved by an earlier posekit (a checkpoint's), with keys added since then set to
    their defaults, so an old run can still be resumed."""
    return _merge(DEFAULTS, cfg, where)


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides (values parsed as YAML)."""
    for o in overrides:
        path, value = parse_override(o)
        nested: dict = {}
        cur = nested
        for p in path[:-1]:
            cur = cur.setdefault(p, {})
        cur[path[-1]] = value
        cfg = _merge(cfg, nested, f"override '{o}'")
    return cfg


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key '{key}' is given twice in one mapping "
                              f"(first at line {seen[key] + 1})")
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from a file, refusing (one line naming the file) a missing file, bytes that
    are not UTF-8 text, invalid YAML, a key given twice and anything but a mapping at the top."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not a text file (byte {e.start} is not UTF-8)") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"{p}: invalid YAML{at}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: a config must be a YAML mapping")
    return raw


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict:
    """Load a YAML recipe over :data:`DEFAULTS`, then apply ``section.key=value`` overrides."""
    raw: dict = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        raw = read_yaml(path)
    cfg = _merge(DEFAULTS, raw, where)
    cfg = apply_overrides(cfg, overrides or [])
    validate(cfg, where)
    return cfg


# Types of the keys whose default is None (the others take their default's type).
_NULLABLE = {
    "data.root": str, "data.pack": str, "data.limit_train": int, "data.limit_val": int, "augment.person_crop": float,
    "train.early_stopping_patience": int, "train.grad_clip": float, "train.max_steps_per_epoch": int,
    "train.save_every": int, "train.ema": float, "train.init_from": str, "cascade.stage1": str, "cascade.frame_margin": float,
    "cascade.error_reach": float, "infer.person_threshold": float, "infer.crop_border": int,
}  # infer.recrop (a number or a list of numbers) is checked in validate
MAX_INPUT_SIZE = 1024  # pixels: larger inputs would need tens of GB per batch
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", list: "a list"}


def _type_ok(value, want: type) -> bool:
    if want is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, want)


def _check_types(cfg: dict, defaults: dict, where: str, prefix: str = "") -> None:
    for k, default in defaults.items():
        key = f"{prefix}{k}"
        if key in ("model", "codec"):
            continue
        v = cfg[k]
        if isinstance(default, dict):
            _check_types(v, default, where, key + ".")
            continue
        want = _NULLABLE.get(key) if default is None else type(default)
        if v is None and (default is None or key in _NULLABLE):
            continue
        if default is None and want in (int, float) and isinstance(v, (str, float)):  # YAML reads '1e-3' as a string
            v = cfg[k] = _coerce(want(0), v)
        if want is not None and not _type_ok(v, want):
            raise ConfigError(f"{where}: '{key}' must be {_TYPE_NAMES.get(want, want.__name__)}, got {v!r}")


def _recrop_ok(cfg: dict) -> bool:
    """Is ``infer.recrop`` null, a margin or a list of margins? Normalises it in place (numbers
    YAML read as strings, such as 1e-1, become numbers; a list is sorted)."""
    from posekit.looks import recrop_margin

    value = cfg["infer"]["recrop"]
    if value is None:
        return True
    items = value if isinstance(value, list) else [value]
    if any(isinstance(m, str) for m in items):
        try:
            items = [float(m) if isinstance(m, str) else m for m in items]
        except ValueError:
            return False
        value = items if isinstance(value, list) else items[0]
    try:
        norm = recrop_margin({}, value)  # False (off on the command line) is not a config value
    except PosekitError:
        return False
    cfg["infer"]["recrop"] = norm
    return norm is not None


def validate(cfg: dict, where: str = "config") -> None:
    """Type and value checks of every key (the model's own options are checked by the registry)."""
    from posekit.codecs import CODECS
    from posekit.data.lsp import KNOWN_SETS
    from posekit.data.splits import SPLITS
    from posekit.data.transforms import RESIZE_MODES
    from posekit.looks import MAX_CROPS
    from posekit.losses import LOSSES
    from posekit.models import MODELS

    _check_types(cfg, DEFAULTS, where)
    d, a, t = cfg["data"], cfg["augment"], cfg["train"]
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    checks = [
        (isinstance(cfg["model"].get("name"), str), "model.name must be a string"),
        (cfg["model"].get("name") in MODELS,
         f"unknown model {cfg['model'].get('name')!r}; known models: {', '.join(sorted(MODELS))}"),
        (cfg["name"] and "/" not in cfg["name"], "name must be a non-empty string without '/'"),
        (cfg["codec"].get("name") in CODECS, f"unknown codec {cfg['codec'].get('name')!r}; known: {', '.join(CODECS)}"),
        (cfg["loss"] == "auto" or cfg["loss"] in LOSSES, f"unknown loss {cfg['loss']!r}; known: auto, {', '.join(LOSSES)}"),
        (d["split"] in SPLITS, f"data.split must be one of {', '.join(SPLITS)}, got {d['split']!r}"),
        (d["resize_mode"] in RESIZE_MODES, f"data.resize_mode must be one of {', '.join(RESIZE_MODES)}"),
        (8 <= d["input_size"] <= MAX_INPUT_SIZE, f"data.input_size must be an integer in [8, {MAX_INPUT_SIZE}]"),
        (d["sets"] and all(x in KNOWN_SETS for x in d["sets"]), f"data.sets must list some of {', '.join(KNOWN_SETS)}"),
        (len(d["fractions"]) == 3 and all(num(x) and x >= 0 for x in d["fractions"])
         and abs(sum(d["fractions"]) - 1) < 1e-6, "data.fractions must be 3 non-negative numbers summing to 1"),
        (0 <= d["val_fraction"] < 1, "data.val_fraction must be in [0, 1)"),
        (8 <= d["cache_max_side"] <= 4096, "data.cache_max_side must be in [8, 4096]"),
        (d["limit_train"] is None or d["limit_train"] >= 1, "data.limit_train must be >= 1 or null"),
        (d["limit_val"] is None or d["limit_val"] >= 0, "data.limit_val must be >= 0 or null"),
        (0 <= a["flip"] <= 1, "augment.flip is a probability in [0, 1]"),
        (0 <= a["rotate"] <= 180, "augment.rotate must be in [0, 180] degrees"),
        (len(a["scale"]) == 2 and all(num(x) and x > 0 for x in a["scale"]) and a["scale"][0] <= a["scale"][1],
         "augment.scale must be [low, high] with 0 < low <= high"),
        (0 <= a["shift"] < 1, "augment.shift must be in [0, 1)"),
        (a["crop_padding"] >= 0, "augment.crop_padding must be >= 0"),
        (0 <= a["color"] <= 1, "augment.color must be in [0, 1]"),
        (a["person_crop"] is None or a["person_crop"] >= 0, "augment.person_crop must be >= 0 or null"),
        (t["optimizer"] in ("sgd", "adam", "adamw"), f"train.optimizer must be sgd, adam or adamw, got {t['optimizer']!r}"),
        (t["scheduler"] in ("none", "cosine", "step"), f"train.scheduler must be none, cosine or step, got {t['scheduler']!r}"),
        (1 <= t["epochs"] <= 100_000, "train.epochs must be in [1, 100000]"),
        (1 <= t["batch_size"] <= 4096, "train.batch_size must be in [1, 4096]"),
        (t["lr"] > 0, "train.lr must be positive"),
        (t["momentum"] >= 0 and t["weight_decay"] >= 0, "train.momentum and train.weight_decay must be >= 0"),
        (t["step_size"] >= 1 and t["gamma"] > 0 and t["warmup_epochs"] >= 0, "train.step_size/gamma/warmup_epochs out of range"),
        (t["early_stopping_patience"] is None or t["early_stopping_patience"] >= 1,
         "train.early_stopping_patience must be >= 1 or null"),
        (0 <= t["num_workers"] <= 64, "train.num_workers must be in [0, 64]"),
        (t["device"] in ("auto", "cpu", "cuda") or str(t["device"]).startswith("cuda:"),
         f"train.device must be auto, cpu, cuda or cuda:N, got {t['device']!r}"),
        (t["grad_clip"] is None or t["grad_clip"] > 0, "train.grad_clip must be positive or null"),
        (t["save_every"] is None or t["save_every"] >= 1, "train.save_every must be >= 1 or null"),
        (t["ema"] is None or 0 < t["ema"] < 1, "train.ema must be a decay in (0, 1) or null"),
        (cfg["cascade"]["joints_per_image"] >= 1, "cascade.joints_per_image must be >= 1"),
        (0 <= cfg["cascade"]["side_jitter"] < 1, "cascade.side_jitter must be in [0, 1)"),
        (cfg["cascade"]["error_reach"] is None or cfg["cascade"]["error_reach"] > 0,
         "cascade.error_reach must be positive or null"),
        (_recrop_ok(cfg),
         f"infer.recrop must be a margin in [0, 2], a list of 1 to {MAX_CROPS} margins, or null"),
        (0 <= cfg["infer"]["fuse"] < 1, "infer.fuse must be in [0, 1)"),
        (cfg["infer"]["crop_border"] is None or 0 <= cfg["infer"]["crop_border"] <= 10_000,
         "infer.crop_border must be an integer in [0, 10000] or null"),
        (cfg["infer"]["person_threshold"] is None or 0 <= cfg["infer"]["person_threshold"] <= 1,
         "infer.person_threshold must be in [0, 1] or null"),
        (t["max_steps_per_epoch"] is None or t["max_steps_per_epoch"] >= 1, "train.max_steps_per_epoch must be >= 1 or null"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"{where}: {msg}")


def dump_config(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
