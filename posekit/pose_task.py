"""Training a pose model: the :class:`~posekit.train.Task` of a recipe's model, codec and data.

The training set is the split's training images through the augmenting transform (person crop,
flip, rotation, scale, colour); validation frames each person the way training does, with no
random part. Validation reports the loss (encoded space) and PCK@0.2 / PCP@0.5 / MSE in
original-image pixels."""
from __future__ import annotations

import torch

from posekit.checkpoint import codec_from_config, model_from_config
from posekit.config import AugmentConfig, Recipe
from posekit.data.dataset import ImageCache, PoseLandmarksDataset, verify_images
from posekit.data.lsp import load_sets
from posekit.data.splits import make_split, split_ids, split_summary
from posekit.data.transforms import PoseTransform
from posekit.errors import ConfigError, PosekitError
from posekit.inference import predict_loader
from posekit.losses import build_loss
from posekit.skeleton import NUM_JOINTS


def check_pack_split(d, pack: dict) -> None:
    """Refuse (one line naming the pack) a pack whose split is not the recipe's ``data`` split:
    another split name, seed or sets, or other fractions (a pack stores no fractions: they are
    read back from its part sizes)."""
    diff = []
    for key, theirs, ours in (("split", pack.get("name"), d.split), ("split_seed", pack.get("seed"), d.split_seed),
                              ("sets", pack.get("sets"), list(d.sets))):
        if theirs != ours:
            diff.append(f"{key} {theirs} (recipe {ours})")
    n_train, n_val = len(pack.get("train", [])), len(pack.get("val", []))
    if d.split == pack.get("name") == "lsp-standard" and n_train + n_val:
        if n_val != int(round(d.val_fraction * (n_train + n_val))):
            diff.append(f"val_fraction {n_val / (n_train + n_val):.3g} (recipe {d.val_fraction})")
    elif d.split == pack.get("name") == "paper" and n_train + n_val:
        f_train, f_val = d.fractions[0], d.fractions[1]
        n_test = len(pack.get("test") or [])
        totals = [n_train + n_val + n_test] if n_test else \
            range(n_train + n_val, int((n_train + n_val) / max(f_train + f_val, 1e-9)) + 3)
        if not any(int(round(f_train * n)) == n_train and int(round(f_val * n)) == n_val for n in totals):
            diff.append(f"fractions with train {n_train} / val {n_val} images (recipe {tuple(d.fractions)})")
    if diff:
        raise ConfigError(f"{d.pack}: the pack holds another split than the recipe's: {'; '.join(diff)}; "
                          "pack the recipe's split, or set data.* to the pack's")


def check_model_codec(cfg: Recipe, model: torch.nn.Module, codec, where: str = "config") -> None:
    """Refuse (one line naming model.name, codec.name and the shapes) a model whose output on one
    input of the recipe's size is not what the codec trains on, and a detector codec; the message
    starts with ``where`` (the recipe's source) unless it is empty."""
    pair = f"{where}: " * bool(where) + f"model.name {cfg.model.name} with codec.name {cfg.codec.name}"
    if not hasattr(codec, "loss_input"):
        raise ConfigError(f"{pair}: the {codec.kind} codec is the person detector's (task: detect), "
                          "not a pose codec")
    size = cfg.data.input_size
    target, _ = codec.encode(torch.zeros(1, NUM_JOINTS, 2), torch.ones(1, NUM_JOINTS))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, size, size))
    finally:
        model.train(was_training)
    got = None
    try:
        got = tuple(codec.loss_input(out.float()).shape)
    except (RuntimeError, IndexError, ValueError):
        pass
    if got != tuple(target.shape):
        raise ConfigError(f"{pair} do not fit: the model gives {tuple(out.shape)} for a {size} px input, "
                          f"the codec trains on {tuple(target.shape)}")


def load_data(cfg: Recipe, split: dict | None = None, progress: bool = False):
    """(sets, split, image cache or None) for a recipe: from ``data.pack`` or the dataset root;
    ``split`` reuses a saved split. Every image is decoded once here (into the cache, or to check
    it), so a bad image stops the run before anything is written."""
    d = cfg.data
    cache = None
    if d.pack:  # a packed split (`posekit data pack`): crops, annotations and split in one file
        from posekit.data.pack import load_pack

        sets, cache, pack_split, pack_margin = load_pack(d.pack, progress=progress)
        crop = cfg.augment.person_crop
        if pack_margin is not None and (crop is None or crop > pack_margin + 1e-9):
            raise ConfigError(f"{d.pack}: a pack holds person crops with margin {pack_margin}; training from it needs "
                              f"augment.person_crop <= {pack_margin} (got {crop}): the rest of each image is not in it")
        check_pack_split(d, pack_split)
        split = split or pack_split
    else:
        sets = load_sets(d.root, d.sets)
    if split is None:
        split = make_split(d.split, sets, seed=d.split_seed, fractions=tuple(d.fractions), val_fraction=d.val_fraction)
    train_ids, val_ids = split_ids(split, d.limit_train, d.limit_val)
    by_id = {s.sample_id(i): s.image_paths[i] for s in sets.values() for i in range(len(s))}
    missing = [i for i in train_ids + val_ids if i not in by_id]
    if missing:
        raise ConfigError(f"{len(missing)} samples of the split (e.g. {missing[0]}) are not in "
                          f"{d.pack or 'the data'}: pack the same split")
    if cache is None:
        paths = sorted({by_id[i] for i in train_ids + val_ids})
        if d.cache:
            cache = ImageCache(paths, max_side=d.cache_max_side, threads=2, progress=progress)
        else:
            verify_images(paths, progress=progress)
    return sets, split, cache


def repeated(ids: list[str], repeat: dict[str, int]) -> list[str]:
    """Sample ids ``<set>/<file>`` with each one of a set named in ``repeat`` listed that many
    times in a row (``data.repeat``: oversampling per set; each copy is augmented on its own,
    augmentation being seeded per index)."""
    return [sid for sid in ids for _ in range(repeat.get(sid.split("/", 1)[0], 1))]


def build_datasets(cfg: Recipe, split: dict | None = None, progress: bool = False):
    """(sets, split, train dataset, validation dataset) of a pose recipe."""
    sets, split, cache = load_data(cfg, split, progress)
    d = cfg.data
    train_ids, val_ids = split_ids(split, d.limit_train, d.limit_val)
    train_ids = repeated(train_ids, d.repeat)
    teacher = None
    if cfg.distill.teacher:
        from posekit.distill import load_teacher

        teacher = load_teacher(cfg.distill.teacher)
    train_tf = PoseTransform(d.input_size, d.resize_mode, train=True, augment=cfg.augment)
    # validation frames each person the way training does (LSPe images are large scenes with the
    # person ~150 px tall somewhere in them), with no random part; test evaluation is whole-image
    val_tf = PoseTransform(d.input_size, d.resize_mode, train=False, augment=AugmentConfig(person_crop=cfg.augment.person_crop))
    train_ds = PoseLandmarksDataset(sets, train_ids, train_tf, cache=cache, seed=cfg.train.seed, teacher=teacher,
                                    teacher_min_score=cfg.distill.min_score, crowd=cfg.augment.crowd)
    val_ds = PoseLandmarksDataset(sets, val_ids, val_tf, cache=cache, seed=cfg.train.seed)
    return sets, split, train_ds, val_ds


def sample_grid(first: dict | None, n: int):
    """Up to ``n`` validation inputs with the prediction (red) over the truth (green), as one RGB
    grid for TensorBoard; None without images."""
    if not first or n <= 0:
        return None
    from posekit.data.transforms import to_image
    from posekit.viz import draw_comparison, make_grid

    ims = [draw_comparison(to_image(first["image"][i]), first["pred"][i], first["keypoints"][i], first["mask"][i] > 0)
           for i in range(min(n, len(first["image"])))]
    return make_grid(ims, ncols=4, cell=160)


class PoseTask:
    """A pose model on its recipe's data (see the module docstring)."""

    def __init__(self, cfg: Recipe, split: dict | None = None, progress: bool = False, where: str = "config",
                 model: torch.nn.Module | None = None):
        self.cfg = cfg
        self.model = model if model is not None else model_from_config(cfg, where)
        self.codec = codec_from_config(cfg, where)
        check_model_codec(cfg, self.model, self.codec, where)
        if cfg.distill.teacher and self.codec.kind != "heatmap":
            raise ConfigError(f"{where}: distillation (distill.teacher) needs the heatmap codec, not {self.codec.kind}")
        try:
            self.loss_fn = build_loss(self.codec.default_loss if cfg.loss == "auto" else cfg.loss)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        _, self.split, self.train_set, self.val_set = build_datasets(cfg, split, progress)
        if len(self.train_set) == 0:
            raise PosekitError("the training split is empty")

    def describe(self) -> str:
        counts = split_summary(self.split)
        return (f"{self.cfg.model.name} ({self.cfg.codec.name}), split {self.split['name']} (train "
                f"{len(self.train_set)}, val {len(self.val_set)}, test {counts['test']})")

    def loss(self, forward, batch: dict, device) -> tuple[torch.Tensor, torch.Tensor, int]:
        fmt = torch.channels_last if self.cfg.train.channels_last else torch.contiguous_format
        x = batch["image"].to(device, non_blocking=True).contiguous(memory_format=fmt)
        if "teacher" in batch:
            target, weight = self.codec.encode(batch["keypoints"].to(device), batch["mask"].to(device),
                                               batch["teacher"].to(device), batch["teacher_mask"].to(device),
                                               self.cfg.distill.weight)
        else:
            target, weight = self.codec.encode(batch["keypoints"].to(device), batch["mask"].to(device))
        out = forward(x)
        return self.loss_fn(self.codec.loss_input(out.float()), target, weight), weight.float().sum(), len(x)

    def validate(self, model, device) -> dict:
        from torch.utils.data import DataLoader

        from posekit.metrics import evaluate_keypoints

        if len(self.val_set) == 0:
            return {}
        t = self.cfg.train
        loader = DataLoader(self.val_set, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers)
        res = predict_loader(model, self.codec, loader, device, loss_fn=self.loss_fn)
        m = evaluate_keypoints(res["pred"], res["gt"], res["sizes"], res["mask"])
        return {"val_loss": res["loss"], **{k: m[k] for k in ("pck", "pcp", "mse", "mean_px_error")},
                "_images": sample_grid(res.get("first"), self.cfg.train.log_images)}
