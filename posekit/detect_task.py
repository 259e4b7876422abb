"""Training the person detector (``task: detect``): a :class:`~posekit.train.Task` of the one
training loop. Its people come from the pose datasets: each annotated person's box is its joints'
box with a margin (:func:`posekit.data.scenes.box_from_joints`).

Each training scene is, at random (seeded by epoch and index):

- one photo (an LSP or LSP-extended training image, whose people are at the scale they were
  photographed) shrunk into a canvas up to ``detect.zoom_out`` times larger, so people also come
  small; or
- a composite (``detect.composite`` of the scenes): 1 to 4 training people cut out and pasted on
  a blurred training photo, each ``detect.heights`` of the canvas tall;
- with ``detect.negatives`` > 0, that fraction of scenes has nobody in it (:func:`nobody`):
  background crops, blurred canvases and noise, so that an empty picture is answered with no box;

turned by up to ``augment.rotate`` degrees (on a canvas of the same size, so people keep their scale
and what leaves it is cut; boxes made again from the turned joints, so leaning and upside-down
people get whole upright boxes), mirrored (``augment.flip``),
colour-jittered (``augment.color``), degraded as a camera would (``augment.low_resolution``, ``blur``,
``noise`` with JPEG, ``occlusion``: :func:`posekit.data.transforms.degradations`, pixels only),
letterboxed to the input.
Validation scores the loss and AP@0.5 on fixed composites of the validation images (and, with
``detect.negatives``, on as large a share of fixed empty scenes)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from posekit.checkpoint import codec_from_config, model_from_config
from posekit.config import Recipe
from posekit.data.scenes import (
    Scene,
    background_crop,
    blurred_background,
    box_from_joints,
    compose,
    multi_person_set,
    noise_image,
    rotate_scene,
)
from posekit.data.splits import split_ids
from posekit.data.transforms import PoseTransform, apply_affine, degradations, to_tensor, transform_boxes, warp
from posekit.errors import ConfigError, PosekitError
from posekit.metrics import average_precision
from posekit.pose_task import load_data
from posekit.utils import derive_seed


def _person(cache, sets_index: dict, sid: str):
    """(image as cached, keypoints in its pixels, mask) of one sample."""
    s, i = sets_index[sid]
    image, pre, _ = cache.get(s.image_paths[i])
    return image, apply_affine(s.keypoints[i], pre), s.annotated[i]


def _jitter(image: np.ndarray, strength: float, rng) -> np.ndarray:
    if strength <= 0:
        return image
    x = image.astype(np.float32) * (1 + rng.uniform(-strength, strength)) + rng.uniform(-40, 40) * strength
    return np.clip(x, 0, 255).astype(np.uint8)


def one_photo(image: np.ndarray, kp: np.ndarray, mask: np.ndarray, zoom: float, rng) -> Scene:
    """A photo shrunk by ``zoom`` into a canvas of its own blurred copy, at a random place."""
    h, w = image.shape[:2]
    cw, ch = max(w, int(round(w * zoom))), max(h, int(round(h * zoom)))
    canvas = blurred_background(image, cw, ch, rng) if (cw, ch) != (w, h) else image.copy()
    x, y = int(rng.integers(0, cw - w + 1)), int(rng.integers(0, ch - h + 1))
    canvas[y:y + h, x:x + w] = image
    k = kp + [x, y]
    box = box_from_joints(k, mask, cw, ch)
    if box is None:
        return Scene(canvas)
    return Scene(canvas, np.array([box]), k[None], np.asarray(mask, bool)[None])


def nobody(image: np.ndarray, kp: np.ndarray, mask: np.ndarray, rng) -> Scene:
    """A scene without a person, a third each: a crop of the photo away from its annotated person,
    the photo blurred past recognition (a composite's canvas with nobody pasted), or noise."""
    kind = int(rng.integers(3))
    h, w = int(rng.integers(160, 401)), int(rng.integers(160, 401))
    if kind == 0:
        crop = background_crop(image, kp, mask, rng)
        if crop is not None:
            return Scene(crop)
    if kind <= 1:
        return Scene(blurred_background(image, w, h, rng))
    return Scene(noise_image(w, h, rng))


class SceneDataset(Dataset):
    """Training scenes (see the module docstring), a new draw each epoch (:meth:`set_epoch`).
    Items: ``image`` (3, S, S) and the centre codec's targets (``heat``, ``wh``, ``offset``, ``mask``)."""

    def __init__(self, cfg: Recipe, codec, cache, sets_index: dict, ids: list[str]):
        self.cfg, self.codec, self.cache, self.index, self.ids = cfg, codec, cache, sets_index, ids
        self.tf = PoseTransform(cfg.data.input_size, "letterbox")
        steps = degradations(cfg.augment)
        if steps:
            import albumentations as A

            self.degrade = A.Compose(steps)
        else:
            self.degrade = None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ids)

    def scene(self, idx: int, rng) -> Scene:
        d = self.cfg.detect
        image, kp, mask = _person(self.cache, self.index, self.ids[idx])
        if d.negatives and rng.random() < d.negatives:  # (no draw at all without negatives: older runs replay)
            return nobody(image, kp, mask, rng)
        if rng.random() >= d.composite:
            return one_photo(image, kp, mask, rng.uniform(1.0, d.zoom_out), rng)
        others = [self.ids[int(j)] for j in rng.choice(len(self.ids), size=int(rng.integers(0, 4)) + 1)]
        bg = _person(self.cache, self.index, others[0])[0]
        h, w = int(rng.integers(240, 401)), int(rng.integers(240, 401))  # letterboxed to the input anyway
        people = [(image, kp, mask)] + [_person(self.cache, self.index, o) for o in others[1:]]
        return compose(blurred_background(bg, w, h, rng), people, rng, heights=tuple(d.heights))

    def __getitem__(self, idx: int) -> dict:
        rng = np.random.default_rng(derive_seed(self.cfg.train.seed, "scene", self.epoch, idx))
        sc = self.scene(idx, rng)
        if self.cfg.augment.rotate > 0:  # (no draw without it: older runs replay)
            sc = rotate_scene(sc, rng.uniform(-self.cfg.augment.rotate, self.cfg.augment.rotate), expand=False)
        image = _jitter(sc.image, self.cfg.augment.color, rng)
        if self.degrade is not None:  # pixels only: the boxes do not move (no draw without it: older runs replay)
            self.degrade.set_random_seed(derive_seed(self.cfg.train.seed, "degrade", self.epoch, idx) % (2**32))
            image = self.degrade(image=image)["image"]
        return encode_scene(sc, image, self.tf, self.codec, flip=rng.random() < self.cfg.augment.flip)


def encode_scene(sc: Scene, image: np.ndarray, tf: PoseTransform, codec, flip: bool = False) -> dict:
    """A scene letterboxed to the detector's input, with the codec's targets of its boxes."""
    h, w = image.shape[:2]
    m = tf.base_matrix(w, h)
    x = warp(image, m, tf.size)
    boxes = transform_boxes(sc.boxes, m)
    if flip:
        x = np.ascontiguousarray(x[:, ::-1])
        boxes = boxes.copy()
        boxes[:, 0] = tf.size - 1 - boxes[:, 0] - boxes[:, 2]
    targets = codec.encode(boxes)
    return {"image": to_tensor(x), **{k: torch.from_numpy(v) for k, v in targets.items()},
            "matrix": torch.from_numpy(m)}


class DetectTask:
    """The person detector on its recipe's data (see the module docstring)."""

    def __init__(self, cfg: Recipe, split: dict | None = None, progress: bool = False, where: str = "config",
                 model: torch.nn.Module | None = None):
        if cfg.codec.name != "center":
            raise ConfigError(f"{where}: a detector recipe (task: detect) needs codec: center, got {cfg.codec.name!r}")
        self.cfg = cfg
        self.model = model if model is not None else model_from_config(cfg, where)
        if getattr(self.model, "output_kind", None) != "center":
            raise ConfigError(f"{where}: model {cfg.model.name!r} is not a detector (use centernet_detector)")
        self.codec = codec_from_config(cfg, where)
        if self.codec.stride != 4:
            raise ConfigError(f"{where}: codec.stride must be 4 for {cfg.model.name} (its maps are at stride 4), "
                              f"got {self.codec.stride}")
        sets, self.split, self.cache = load_data(cfg, split, progress)
        if self.cache is None:
            raise ConfigError(f"{where}: a detector recipe needs data.cache: true (scenes are cut from the image cache)")
        index = {s.sample_id(i): (s, i) for s in sets.values() for i in range(len(s))}
        train_ids, val_ids = split_ids(self.split, cfg.data.limit_train, cfg.data.limit_val)
        usable = [i for i in train_ids if index[i][0].annotated[index[i][1]].sum() >= 2]
        if not usable:
            raise PosekitError("the training split has no image with two or more annotated joints")
        self.train_set = SceneDataset(cfg, self.codec, self.cache, index, usable)
        self.val = self._val_scenes(index, val_ids)

    def _val_scenes(self, index: dict, val_ids: list[str]) -> list[Scene]:
        ids = [i for i in val_ids if index[i][0].annotated[index[i][1]].sum() >= 2]
        if not ids or not self.cfg.detect.val_scenes:
            return []
        people = [_person(self.cache, index, i) for i in ids]
        d = self.cfg.detect
        scenes = multi_person_set([p[0] for p in people], np.stack([p[1] for p in people]),
                                  np.stack([p[2] for p in people]), n=d.val_scenes,
                                  seed=derive_seed(self.cfg.train.seed, "val-scenes"))
        if d.negatives:  # as many empty scenes as training has, so AP counts boxes on nobody
            rng = np.random.default_rng(derive_seed(self.cfg.train.seed, "val-nobody"))
            k = int(round(d.val_scenes * d.negatives / (1 - d.negatives))) if d.negatives < 1 else d.val_scenes
            scenes += [nobody(*people[int(rng.integers(len(people)))], rng) for _ in range(k)]
        return scenes

    def describe(self) -> str:
        return (f"{self.cfg.model.name} person detector at {self.cfg.data.input_size}px, {len(self.train_set)} "
                f"training photos, {len(self.val)} validation scenes")

    def loss(self, forward, batch: dict, device):
        out = forward(batch["image"].to(device))
        target = {k: batch[k].to(device) for k in ("heat", "wh", "offset", "mask")}
        return self.codec.loss(out, target), batch["mask"].sum().to(device), len(batch["image"])

    def validate(self, model, device) -> dict:
        # (one pass per scene: detect.flip_test is how a trained detector runs, not how it trains)
        if not self.val:
            return {}
        tf = PoseTransform(self.cfg.data.input_size, "letterbox")
        items = [encode_scene(sc, sc.image, tf, self.codec) for sc in self.val]
        total, dets = 0.0, []
        for b in DataLoader(items, batch_size=self.cfg.train.batch_size):
            out = model(b["image"].to(device)).float()
            total += self.codec.loss(out, {k: b[k].to(device) for k in ("heat", "wh", "offset", "mask")}).item() \
                * len(b["image"])
            d = self.cfg.detect
            dets += self.codec.decode(out, d.max_people, 0.05, d.nms_iou)
        in_input = [transform_boxes(sc.boxes, it["matrix"].numpy()) for sc, it in zip(self.val, items)]
        ap = average_precision(dets, in_input, 0.5)
        return {"val_loss": total / len(items), "ap": ap["ap"], "recall": ap["recall"]}

