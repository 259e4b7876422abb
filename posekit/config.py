"""Recipe configs: YAML files validated against one typed schema (pydantic).

A recipe is a :class:`Recipe`: sections ``data``, ``augment``, ``train``, ``infer``, ``cascade``
and ``detect`` with forbidden extra keys, choices as literals and bounds on every number, plus
``model`` and ``codec``: a registry name and that model's or codec's own options (checked by
``posekit.models.build_model`` / ``posekit.codecs.build_codec`` when built). An unknown key, a
value of the wrong type or out of bounds is a :class:`~posekit.errors.ConfigError` naming the
file and the key, with "did you mean" for near-misses. YAML files are read with duplicate keys
refused. Validation builds new, frozen objects and never changes its input.

This is the bottom layer: it imports nothing of posekit but :mod:`posekit.errors`."""
from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from posekit.errors import ConfigError

MAX_INPUT_SIZE = 1024  # pixels: larger inputs would need tens of GB per batch
MAX_REFINE_CROPS = 8

Fraction = Annotated[float, Field(ge=0, le=1, strict=True)]  # strict: True or "0.2" are not numbers
Margin = Annotated[float, Field(ge=0, le=2, strict=True)]


class Section(BaseModel):
    """A config section: unknown keys refused, immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Spec(BaseModel):
    """A registry name and free-form options, checked by the registry that builds it."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v):
        return {"name": v} if isinstance(v, str) else v

    def options(self) -> dict:
        """The options without ``name``."""
        return {k: v for k, v in self.model_dump().items() if k != "name"}


class DataConfig(Section):
    root: str | None = None  # dataset root; None = $POSEKIT_DATA
    sets: list[Literal["lsp", "lspet"]] = Field(default=["lsp", "lspet"], min_length=1)
    split: Literal["paper", "lsp-standard"] = "lsp-standard"
    split_seed: int = Field(0, ge=0)
    fractions: tuple[Fraction, Fraction, Fraction] = (0.7, 0.15, 0.15)  # the paper split
    val_fraction: float = Field(0.1, ge=0, lt=1)  # lsp-standard: validation carved from train
    input_size: int = Field(96, ge=8, le=MAX_INPUT_SIZE)
    resize_mode: Literal["stretch", "letterbox"] = "stretch"
    cache: bool = True  # decode every image once into memory
    cache_max_side: int = Field(256, ge=8, le=4096)
    pack: str | None = None  # a file from `posekit data pack`: train from it instead of the dataset folder
    limit_train: int | None = Field(None, ge=1)  # the first N training samples only (quick runs)
    limit_val: int | None = Field(None, ge=0)  # the first N validation samples; 0 = none
    # times each set's training images are drawn per epoch (oversampling, e.g. {lsp: 4}: LSP's
    # careful labels against LSPe's crowd-sourced ones); a set not named is drawn once
    # (pose recipes; applied after limit_train, so a quick run's count includes the copies)
    repeat: dict[Literal["lsp", "lspet"], Annotated[int, Field(ge=1, le=100, strict=True)]] = Field(default_factory=dict)

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, v):
        if abs(sum(v) - 1) > 1e-6:
            raise ValueError("the three fractions must sum to 1")
        return v

    @field_validator("sets")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("a set is listed twice")
        return v

    @field_validator("repeat")
    @classmethod
    def _repeat_of_sets(cls, v, info):
        extra = sorted(set(v) - set(info.data.get("sets") or []))
        if extra:
            raise ValueError(f"names {', '.join(extra)}, not among data.sets {info.data.get('sets')}")
        return v


class AugmentConfig(Section):
    """Random training augmentation (all off by default: the paper's pipeline); the one place
    its defaults live (``posekit.data.transforms`` reads it)."""

    flip: Fraction = 0.0  # probability of a horizontal flip (left/right joints swapped)
    rotate: float = Field(0.0, ge=0, le=180)  # max |degrees|
    scale: tuple[float, float] = (1.0, 1.0)  # zoom range
    shift: float = Field(0.0, ge=0, lt=1)  # max translation, a fraction of the input size
    crop_padding: int = Field(0, ge=0, le=512)  # the paper's random crop: pad by this many pixels, crop back
    color: Fraction = 0.0  # colour-jitter strength (brightness/contrast/saturation)
    person_crop: Margin | None = None  # margin of a person-centred crop; None = the whole image
    # image degradations (probabilities), for photos that are not clean: the joints keep their labels
    low_resolution: Fraction = 0.0  # down to 25-75 % of the input side and back up (a small or distant person)
    blur: Fraction = 0.0  # a Gaussian (sigma 0.5-3 px) or motion blur (3-11 px line)
    noise: Fraction = 0.0  # Gaussian sensor noise (sigma 2-20 % of the range) or JPEG quality 10-60
    occlusion: Fraction = 0.0  # 1-3 rectangles of 10-30 % of the side, filled with random pixels
    crowd: Fraction = 0.0  # pasted beside 1-2 other training people on a blurred canvas (crowds; needs person_crop)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v):
        if not 0 < v[0] <= v[1] <= 10:
            raise ValueError("must be [low, high] with 0 < low <= high <= 10")
        return v

    @model_validator(mode="after")
    def _crowd_needs_a_crop(self):
        if self.crowd > 0 and self.person_crop is None:
            raise ValueError("crowd needs person_crop: the network is shown the crop around one person of the scene")
        return self

    @property
    def geometric(self) -> bool:
        return self.rotate > 0 or tuple(self.scale) != (1.0, 1.0) or self.shift > 0


class StageConfig(Section):
    """One DeepPose refinement stage (stage 2, 3, ...)."""

    sigma: float = Field(gt=0, le=20)  # crop side in pose diameters
    input_size: int = Field(64, ge=16, le=512)
    model: Spec = Spec(name="poster_cnn")
    codec: Spec = Spec(name="regression")


class CascadeConfig(Section):
    stage1: str | None = None  # checkpoint / run folder / shipped name; set = `posekit train` trains the stages
    stages: list[StageConfig] = []
    joints_per_image: int = Field(4, ge=1, le=14)  # training crops per image per epoch
    side_jitter: float = Field(0.1, ge=0, lt=1)  # crop side x U(1 - j, 1 + j) while training
    frame_margin: float | None = Field(0.17, ge=0)  # stage-1 estimates on images framed like LSP's
    error_reach: float | None = Field(1.0, gt=0)  # fit the error model within this x the crop's half-side


class InferConfig(Section):
    """How evaluation and prediction run a trained pose model."""

    refine: list[Margin] | None = Field(None, min_length=1, max_length=MAX_REFINE_CROPS)
    # ^ margins of the refinement crops around the first estimate (null: one pass)
    refine_weight: float = Field(0.0, ge=0, lt=1, strict=True)  # weight of the first pass's heatmaps in the fused maps
    crop_border: int | None = Field(None, ge=0, le=10_000, strict=True)  # edge pixels repeated where a crop leaves the image
    crop_touch: Fraction | None = None  # ... on the sides a joint comes this close to (x the pose's size)
    person_threshold: Fraction | None = None  # person score under which no person is reported
    flip_test: bool = False  # average with the mirrored image (SimpleBaselines' flip test; one batch of two)
    # multi-scale test on a detected person: one crop of the detector's box per margin (per side,
    # in place of detect.box_margin), all in the network's one batch, their heatmaps fused in the
    # tightest crop's frame (tta.fuse_crops); null: the one crop at detect.box_margin. A given box
    # (--box) is cropped as given.
    box_margins: list[Margin] | None = Field(None, min_length=1, max_length=MAX_REFINE_CROPS)
    # the networks' arithmetic: auto = bf16 on a CPU that multiplies bfloat16 natively (AVX512-BF16,
    # AMX), else fp32 (posekit.models.precision; reports/precision_cpu.json)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # an image whose estimated noise reaches this many grey levels (data.transforms.noise_sigma,
    # Immerkaer's estimate on the grey image) is median-filtered 3x3 before its pose crops; null: never
    denoise: float | None = Field(None, gt=0, le=255, strict=True)

    @field_validator("refine", "box_margins", mode="before")
    @classmethod
    def _listed(cls, v):
        return [v] if isinstance(v, (int, float)) and not isinstance(v, bool) else v

    @field_validator("refine", "box_margins")
    @classmethod
    def _sorted(cls, v):
        return None if v is None else sorted(v)


class DetectConfig(Section):
    """The person detector: which one a pose model runs first (``model``), how its detections are
    read, and how a detector recipe (``task: detect``) makes its training scenes."""

    model: str | None = None  # detector checkpoint / shipped name; None = the whole image (or --box) is the person
    score_threshold: Fraction = 0.3  # a person: a detection at least this strong (whether anybody is there)
    # the floor of a detection that can still be a person, its pose deciding: once one person
    # clears score_threshold, detections down to it are posed too (hysteresis: a person partly
    # hidden by another scores low); with nobody found, the best one down to it is the candidate posed
    region_threshold: Fraction = 0.1
    nms_iou: Fraction = 0.5  # non-maximum suppression overlap
    # predict_all: a pose whose object keypoint similarity (OKS) with a person already kept is above
    # this is the same person posed twice (two boxes on one person, or a box across two): dropped; null: off
    pose_nms: Fraction | None = 0.3  # chosen on val-multi (benchmarks/pose_nms.py)
    # predict_all: a weak detection whose box holds two or more people found (each at least this
    # much inside it, and 15-60 % of its area: metrics.group_boxes) is a group's box, posed as a
    # figure made of several people: dropped; null: off
    group_cover: Fraction | None = 0.5
    max_people: int = Field(20, ge=1, le=100)
    box_margin: float = Field(0.1, ge=0, le=1)  # context added around a detected box (per side) for the pose crop
    # the detector's flip test: the image and its mirror in one batch, their outputs averaged
    # (CenterCodec.flip_average); a pose model's flip test is infer.flip_test
    flip_test: bool = False
    input_size: int | None = Field(None, ge=64, le=1024, multiple_of=32)  # the detector's input side; None: its own
    # an image whose estimated noise reaches this many grey levels is median-filtered 3x3 before the
    # detector letterboxes it (as infer.denoise, for the detector); null: never
    denoise: float | None = Field(None, gt=0, le=255, strict=True)
    composite: Fraction = 0.5  # training: the fraction of scenes composed of 1-4 pasted people (the rest: one photo)
    negatives: Fraction = 0.0  # training: the fraction of scenes with nobody (background crops, blurred canvases, noise)
    heights: tuple[Fraction, Fraction] = (0.08, 0.8)  # training: person heights in composites, of the canvas
    zoom_out: float = Field(2.5, ge=1, le=10)  # training: one-photo scenes shrunk into a canvas up to this much larger
    val_scenes: int = Field(200, ge=0, le=5000)  # validation composites (from the validation images)


class DistillConfig(Section):
    """Knowledge distillation: a teacher's joints (a cache from ``posekit data teacher``) mixed
    into the training targets (``posekit.codecs.heatmap.HeatmapCodec.encode``)."""

    teacher: str | None = None  # the teacher cache (.npz); None = labels only
    weight: Fraction = 0.5  # the teacher's share of a joint's target (and the weight of teacher-only joints)
    min_score: Fraction = 0.3  # teacher joints scored below are not used


class VideoConfig(Section):
    """Videos and webcams: people followed across frames (box IoU matching) and each joint
    smoothed over time by a One-Euro filter (``posekit.tracking``)."""

    smooth: bool = True
    box_min_cutoff: float = Field(1.0, gt=0, le=100)  # Hz: One-Euro smoothing of the detected person box (one person)
    box_beta: float = Field(20.0, ge=0, le=1000)  # the box filter's speed coefficient (per box size per second)
    min_cutoff: float = Field(4.0, gt=0, le=100)  # Hz: the filter's cutoff at rest (lower: smoother, more lag)
    beta: float = Field(10.0, ge=0, le=1000)  # how fast the cutoff rises with speed (per person size per second)
    d_cutoff: float = Field(1.0, gt=0, le=100)  # Hz: the cutoff of the speed estimate
    track_iou: Fraction = 0.3  # a box continues a track when it overlaps its last box at least this much
    max_age: int = Field(10, ge=0, le=1000)  # frames a track survives unseen
    # re-identification: a person unseen for up to reid_age frames (0: off) takes its id back when
    # the colours in its box are within reid_distance (Bhattacharyya) of the track's and its box
    # centre within reid_reach box heights of the track's last (posekit.tracking.Tracker)
    reid_age: int = Field(90, ge=0, le=10_000)
    reid_distance: Fraction = 0.4
    reid_reach: float = Field(1.5, gt=0, le=100)
    # one person: after a found pose, the next frame is posed in the square around its (smoothed)
    # joints enlarged by this margin per side, in one pass and without the detector, until the
    # pose is lost (MediaPipe's region of interest from the previous frame); null: detect every frame
    roi_margin: Margin | None = 0.13


class TrainConfig(Section):
    epochs: int = Field(30, ge=1, le=100_000)
    batch_size: int = Field(32, ge=1, le=4096)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = Field(0.0, ge=0, le=1)
    scheduler: Literal["none", "cosine", "step"] = "none"
    step_size: int = Field(10, ge=1)  # step scheduler
    gamma: float = Field(0.1, gt=0, le=1)  # step scheduler
    warmup_epochs: float = Field(0, ge=0)
    early_stopping_patience: int | None = Field(None, ge=1)  # epochs without val-loss improvement; None = off
    num_workers: int = Field(2, ge=0, le=64)
    seed: int = Field(0, ge=0)
    amp: bool = True  # bfloat16 autocast on CUDA and on CPUs with native bf16 (else fp32)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    log_images: int = Field(8, ge=0, le=64)  # sample predictions drawn to TensorBoard per epoch
    grad_clip: float | None = Field(None, gt=0)
    max_steps_per_epoch: int | None = Field(None, ge=1)  # cap steps per epoch (quick runs)
    deterministic: bool = False
    ema: float | None = Field(None, gt=0, lt=1)  # decay of a moving average of the weights
    init_from: str | None = None  # transfer learning: start from this checkpoint's matching weights
    save_every: int | None = Field(None, ge=1)  # also keep epoch_NNN.pt every N epochs
    channels_last: bool = True  # NHWC activations (faster convolutions on CPU)
    sync_bn: bool = False  # DDP (torchrun): batch-norm statistics over the global batch


#: the augmentations a detector recipe (``task: detect``) applies to its training scenes
DETECT_AUGMENTS = ("flip", "color", "rotate", "low_resolution", "blur", "noise", "occlusion")
#: the detect keys only a detector recipe reads (how its training scenes are made)
DETECT_TRAINING = ("composite", "negatives", "heights", "zoom_out", "val_scenes")


def _changed(section: BaseModel, key: str) -> bool:
    """Whether ``section.key`` differs from its default."""
    field = type(section).model_fields[key]
    default = field.default_factory() if field.default_factory is not None else field.default
    return getattr(section, key) != default


class Recipe(Section):
    """A whole recipe. ``model``/``codec``: registry name + options."""

    name: str = Field("run", min_length=1, pattern=r"^[^/]+$")
    task: Literal["pose", "detect"] = "pose"
    model: Spec = Spec(name="poster_cnn")
    codec: Spec = Spec(name="regression")
    loss: Literal["auto", "mse", "l1"] = "auto"  # auto = the codec's own
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    cascade: CascadeConfig = CascadeConfig()
    infer: InferConfig = InferConfig()
    detect: DetectConfig = DetectConfig()
    video: VideoConfig = VideoConfig()
    distill: DistillConfig = DistillConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _keys_of_the_other_task(self):
        # a key that this recipe's task never reads would be silently ignored: refused instead
        if self.task == "detect":  # scenes turned, mirrored, colour-jittered, degraded (posekit.detect_task)
            unused = [f"augment.{k}" for k in AugmentConfig.model_fields
                      if k not in DETECT_AUGMENTS and _changed(self.augment, k)]
            unused += [f"{section}.{k}" for section in ("distill", "cascade")
                       for k in type(getattr(self, section)).model_fields if _changed(getattr(self, section), k)]
            unused += ["data.repeat"] if self.data.repeat else []
            if unused:
                scenes = ", ".join("augment." + k for k in DETECT_AUGMENTS)
                raise ValueError(f"'{unused[0]}': a detector recipe (task: detect) does not use it"
                                 + (f"; its scenes take {scenes}" if unused[0].startswith("augment.") else ""))
        else:
            if self.data.repeat and (self.cascade.stage1 or self.cascade.stages):
                raise ValueError("'data.repeat': a cascade's stages train on stage 1's estimates of each image once; "
                                 "oversampling is for pose recipes")
            unused = [f"detect.{k}" for k in DETECT_TRAINING if _changed(self.detect, k)]
            if unused:
                raise ValueError(f"'{unused[0]}': only a detector recipe (task: detect) trains on scenes; a pose "
                                 f"recipe's detect section says which detector runs first and how")
        return self

    def to_dict(self) -> dict:
        """Plain data (lists, not tuples): what checkpoints and ``config.yaml`` hold."""
        return self.model_dump(mode="json")

    def replace(self, overrides: list[str], where: str = "override") -> Recipe:
        """A new recipe with ``section.key=value`` overrides applied (see :func:`apply_overrides`)."""
        return apply_overrides(self, overrides, where)


# ---------------------------------------------------------------------------- reading and errors

#: keys renamed since older checkpoints were written (old dotted key -> new)
RENAMED = {"infer.recrop": "infer.refine", "infer.fuse": "infer.refine_weight"}
#: train keys that only the SGD optimiser reads
SGD_ONLY = ("momentum", "nesterov")


def _section_fields(loc: tuple) -> list[str]:
    """The valid keys of the section at ``loc`` (for "did you mean")."""
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            break
        ann = field.annotation
        inner = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not inner:
            break
        model = inner[0]
    return list(getattr(model, "model_fields", {}))


def _key(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def config_error(e: ValidationError, where: str) -> ConfigError:
    """One line for a pydantic error: the file, the key, what is wrong."""
    err = e.errors()[0]
    loc = tuple(p for p in err["loc"] if p not in ("function-after[_sorted(), nullable[list[float]]]",))
    loc = tuple(p for p in loc if not (isinstance(p, str) and (p.startswith("function-") or p in (
        "list[constrained-float]", "nullable[list[constrained-float]]", "constrained-float", "literal['lsp','lspet']"))))
    key = _key(loc)
    if err["type"] == "extra_forbidden":
        if key in RENAMED:
            return ConfigError(f"{where}: config key '{key}' was renamed to '{RENAMED[key]}'")
        options = _section_fields(loc[:-1])
        m = difflib.get_close_matches(str(loc[-1]), options, n=1)
        hint = f" (did you mean '{m[0]}'?)" if m else f" (known: {', '.join(options)})"
        return ConfigError(f"{where}: unknown config key '{key}'{hint}")
    msg = err["msg"].replace("Value error, ", "")
    if not key:  # a check across sections: its message names the key
        return ConfigError(f"{where}: {msg}")
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f", got {got!r}"
    return ConfigError(f"{where}: '{key}': {msg}{shown}")


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
# YAML 1.1 reads 1e-3 (no dot) as a string; read it as the number it is (as YAML 1.2 does)
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


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


def _merge(base: dict, new: dict) -> dict:
    """``new`` merged into a copy of ``base``, section by section. ``model``/``codec`` options
    merge while the name stays; a new name starts from that name's own defaults."""
    out = copy.deepcopy(base)
    for k, v in (new or {}).items():
        if k in ("model", "codec") and k in out:
            old = out[k] if isinstance(out[k], dict) else {"name": out[k]}
            v = {"name": v} if isinstance(v, str) else v
            if isinstance(v, dict) and v.get("name", old.get("name")) == old.get("name"):
                out[k] = {**old, **v}
            else:
                out[k] = copy.deepcopy(v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> tuple[list[str], object]:
    """``section.key=value`` -> (["section", "key"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    key, val = text.split("=", 1)
    try:
        value = yaml.load(val, Loader=_UniqueKeyLoader) if val != "" else None
    except (yaml.YAMLError, ConfigError):
        value = val
    return key.strip().split("."), value


def _nested(path: list[str], value) -> dict:
    out: dict = {}
    cur = out
    for p in path[:-1]:
        cur = cur.setdefault(p, {})
    cur[path[-1]] = value
    return out


def _validate(raw: dict, where: str) -> Recipe:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a config must be a mapping")
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        raise config_error(e, where) from None


def _check_optimizer_keys(given: set[str], cfg: Recipe, where: str) -> None:
    """Refuse an SGD-only ``train`` key the user gave for another optimiser: it would be ignored."""
    for k in SGD_ONLY:
        if k in given and cfg.train.optimizer != "sgd":
            raise ConfigError(f"{where}: 'train.{k}' applies to train.optimizer=sgd only "
                              f"(this recipe uses {cfg.train.optimizer})")


def apply_overrides(cfg: Recipe, overrides: list[str], where: str = "override") -> Recipe:
    """A new recipe: ``cfg`` with ``section.key=value`` overrides (values parsed as YAML)."""
    raw = cfg.to_dict()
    for o in overrides:
        path, value = parse_override(o)
        raw = _merge(raw, _nested(path, value))
        _validate(raw, f"{where} '{o}'")  # name the override that broke it
    return _validate(raw, where)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Recipe:
    """A YAML recipe (defaults for every key it leaves out), then ``section.key=value`` overrides."""
    where = str(path) if path is not None else "defaults"
    raw = read_yaml(path) if path is not None else {}
    cfg = apply_overrides(_validate(raw, where), list(overrides or []))
    _check_optimizer_keys(set((raw.get("train") or {}) if isinstance(raw.get("train"), dict) else {}), cfg, where)
    for o in overrides or []:
        path = parse_override(o)[0]
        if path[:1] == ["train"] and len(path) > 1:
            _check_optimizer_keys({path[1]}, cfg, f"override '{o}'")
    return cfg


def upgrade(saved: dict) -> dict:
    """A config saved by an earlier posekit with renamed keys moved to their new names."""
    raw = copy.deepcopy(saved)
    for old, new in RENAMED.items():
        sec, k = old.split(".")
        if isinstance(raw.get(sec), dict) and k in raw[sec]:
            value = raw[sec].pop(k)
            raw.setdefault(new.split(".")[0], {}).setdefault(new.split(".")[1], value)
    return raw


def complete_config(saved: dict, where: str = "checkpoint") -> Recipe:
    """The recipe of a checkpoint's saved config (old key names accepted; keys added since then
    take their defaults), so an old run can still be resumed, evaluated and run."""
    return _validate(upgrade(saved), where)


def dump_config(cfg: Recipe) -> str:
    """The recipe as YAML text (``config.yaml`` of a run folder)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
