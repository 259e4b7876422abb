"""Training DeepPose cascade stages (Toshev & Szegedy, CVPR 2014) on top of a trained stage-1
checkpoint (``cascade.stage1``), each stage a :class:`~posekit.train.Task` of the one training
loop, so every ``train.*`` key applies to it.

For each stage in ``cascade.stages``, in order:

1. the current estimates of every training and validation image are computed: stage 1 on the
   image framed around its person as LSP frames its test images (``cascade.frame_margin``), then
   the stages trained so far;
2. their errors against the truth, in pose diameters, are fitted per joint as a 2-D Gaussian
   (:class:`posekit.models.cascade.ErrorModel`), within ``error_reach`` x the crop's half-side;
3. each epoch, every training image gives ``joints_per_image`` random annotated joints; a crop
   is centred on the true joint displaced by a draw of that joint's error model, of side
   ``sigma x diam(estimate) x U(1 - side_jitter, 1 + side_jitter)``, with the colour jitter of
   ``augment.color``; the stage network learns the joint's place in the crop;
4. validation reports the loss on a fixed draw of validation crops and PCK@0.2 before and after
   the stage, on the validation images.

Each stage trains in its own run folder (``<out>/stage2``, ...), resumable; the cascade
checkpoint ``<out>/last.pt`` (= ``best.pt``) holds stage 1 (its config, split and weights, so
evaluation and prediction treat it like any model) plus every stage's best network, input size,
sigma and error model."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from posekit import distributed as ddp
from posekit.checkpoint import build_stage, load_model, load_weights, read_checkpoint, resolve_checkpoint_path, save_checkpoint
from posekit.config import AugmentConfig, CascadeConfig, Recipe, StageConfig
from posekit.data.dataset import ImageCache, PoseLandmarksDataset
from posekit.data.lsp import load_sets
from posekit.data.splits import split_ids
from posekit.data.transforms import PoseTransform, compose_affine, invert_affine, to_tensor, warp
from posekit.errors import ConfigError, PosekitError
from posekit.inference import predict_loader
from posekit.losses import build_loss
from posekit.metrics import pck
from posekit.models.cascade import ErrorModel, Stage, crop_matrix, joint_target, pose_diameter
from posekit.skeleton import NUM_JOINTS
from posekit.train import finished_reason, fit
from posekit.utils import derive_seed


def crop_plan(gt, mask, est, err: ErrorModel, sigma: float, per_image: int, jitter: float, rng) -> np.ndarray:
    """(M, 5) rows of (image, joint, centre x, centre y, side) for one epoch's training crops."""
    rows = []
    diam = pose_diameter(est)
    for i in range(len(gt)):
        js = np.flatnonzero(mask[i])
        if len(js) == 0:
            continue
        js = rng.choice(js, size=min(per_image, len(js)), replace=False)
        d = err.sample(js, rng) * diam[i]
        side = sigma * diam[i] * rng.uniform(1 - jitter, 1 + jitter, size=len(js))
        for j, dj, sd in zip(js, d, side):
            c = gt[i, j] - dj  # a simulated estimate: truth minus a sampled error (error = truth - estimate)
            rows.append((i, j, c[0], c[1], sd))
    return np.array(rows, np.float64).reshape(-1, 5)


class CropDataset(Dataset):
    """The crops of one stage: a new seeded plan each epoch (:meth:`set_epoch`), cut from the
    decoded-image cache. Items: ``image`` (3, S, S), ``joint``, ``target`` (2,) the joint's
    place in the crop's [0, 1] frame."""

    def __init__(self, cache: ImageCache, part: dict, err: ErrorModel, st: StageConfig, cascade: CascadeConfig,
                 color: float, seed: int, fixed: bool = False):
        self.cache, self.paths, self.gt, self.mask, self.est = cache, part["paths"], part["gt"], part["mask"], part["est"]
        self.err, self.st, self.per_image, self.jitter = err, st, cascade.joints_per_image, cascade.side_jitter
        self.color, self.seed = color, seed
        self.fixed = fixed  # validation: one plan, no colour jitter
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng(derive_seed(self.seed, "cascade-plan", 0 if self.fixed else epoch))
        self.epoch = epoch
        self.plan = crop_plan(self.gt, self.mask, self.est, self.err, self.st.sigma, self.per_image, self.jitter, rng)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int) -> dict:
        i, j, cx, cy, side = self.plan[k]
        i, j, size = int(i), int(j), self.st.input_size
        image, pre, _ = self.cache.get(self.paths[i])
        centre = np.array([cx, cy])
        x = to_tensor(warp(image, compose_affine(crop_matrix(centre, side, size), invert_affine(pre)), size))
        if self.color > 0 and not self.fixed:  # brightness / contrast jitter, seeded per crop
            rng = np.random.default_rng(derive_seed(self.seed, "cascade-colour", self.epoch, k))
            x = x * (1 + rng.uniform(-self.color, self.color)) + rng.uniform(-self.color, self.color) * 0.5
        target = joint_target(self.gt[i, j], centre, side, size)
        return {"image": x, "joint": j, "target": torch.tensor(target, dtype=torch.float32)}


class StageTask:
    """One refinement stage: its network learns where the crop's joint lies (see the module
    docstring). ``data`` holds the cache, the paths and the current estimates of train and val."""

    def __init__(self, cfg: Recipe, k: int, st: StageConfig, data: dict, split: dict):
        self.cfg, self.k, self.st, self.data, self.split = cfg, k, st, data, split
        self.model, self.codec = build_stage(st)
        self.loss_fn = build_loss(self.codec.default_loss)
        c = cfg.cascade
        reach = None if c.error_reach is None else c.error_reach * st.sigma / 2
        tr, va = data["train"], data["val"]
        self.err = ErrorModel.fit(tr["gt"], tr["est"], tr["mask"], reach=reach)
        self.train_set = CropDataset(data["cache"], tr, self.err, st, c, cfg.augment.color, cfg.train.seed)
        self.val_crops = None if va is None else CropDataset(data["cache"], va, self.err, st, c, 0.0, cfg.train.seed,
                                                             fixed=True)

    def describe(self) -> str:
        rms = ", ".join(f"{np.sqrt(np.trace(cv)):.2f}" for cv in self.err.cov)
        return (f"cascade stage {self.k} ({self.st.model.name}, {self.st.input_size}px crops of {self.st.sigma} "
                f"pose diameters, {len(self.train_set)} crops per epoch; error model rms per joint {rms}; left out "
                "beyond the crop's reach: " + ", ".join(f"{x:.0%}" for x in self.err.excluded) + ")")

    def _encode(self, batch: dict, device):
        """Crop i answers for its joint j only: the target sits in row / map j, the others weigh 0."""
        n = len(batch["image"])
        rows, j = torch.arange(n, device=device), batch["joint"].to(device)
        kp = torch.zeros(n, NUM_JOINTS, 2, device=device)
        kp[rows, j] = batch["target"].to(device) * self.st.input_size - 0.5  # [0, 1] frame -> crop pixels
        onehot = torch.zeros(n, NUM_JOINTS, device=device)
        onehot[rows, j] = 1.0
        return self.codec.encode(kp, onehot)

    def loss(self, forward, batch: dict, device):
        target, weight = self._encode(batch, device)
        out = forward(batch["image"].to(device))
        return self.loss_fn(self.codec.loss_input(out.float()), target, weight), weight.sum(), len(batch["image"])

    def validate(self, model, device) -> dict:
        va = self.data["val"]
        if va is None:
            return {}
        total, count = 0.0, 0
        for b in DataLoader(self.val_crops, batch_size=self.cfg.train.batch_size):
            target, weight = self._encode(b, device)
            total += self.loss_fn(self.codec.loss_input(model(b["image"].to(device)).float()), target, weight).item() \
                * len(b["image"])
            count += len(b["image"])
        stage = Stage(model, self.st.input_size, self.st.sigma, self.codec)
        refined = stage.refine(va["images"], va["est"], device, pres=va["pres"])
        return {"val_loss": total / max(count, 1), "val_pck_before": float(pck(va["est"], va["gt"], va["mask"])[0]),
                "val_pck": float(pck(refined, va["gt"], va["mask"])[0])}


def _estimates(s1, data: dict, ids: list[str], stages: list[Stage], device, frame: float | None) -> dict:
    """Truth and current estimates (stage 1 on the framed image, then each trained stage) for
    ``ids``, in original pixels, with the cached images they are cut from."""
    model, codec, cfg = s1
    tf = PoseTransform(cfg.data.input_size, cfg.data.resize_mode, train=False, augment=AugmentConfig(person_crop=frame))
    ds = PoseLandmarksDataset(data["sets"], ids, tf, cache=data["cache"])
    res = predict_loader(model, codec, DataLoader(ds, batch_size=64, num_workers=cfg.train.num_workers), device,
                         keep_first=False)
    got = [data["cache"].get(p) for p in ds.paths()]
    images, pres = [g[0] for g in got], [g[1] for g in got]
    est = res["pred"]
    for st in stages:
        est = st.refine(images, est, device, pres=pres)
    return {"paths": ds.paths(), "gt": res["gt"], "mask": res["mask"], "est": est, "images": images, "pres": pres}


def _stage_state(run: Path, cfg: Recipe, spec: dict) -> tuple[dict | None, bool]:
    """(the stage run's last checkpoint or None, whether it is finished). Raises ConfigError for
    a stage run made with other settings (``spec``: the stage's own, and stage 1)."""
    if not (run / "last.pt").is_file():
        return None, False
    ck = read_checkpoint(run / "last.pt")
    if ck.get("cascade_stage") != spec:
        raise ConfigError(f"{run}: this stage was trained with other settings (stage 1 or the stage's sigma, "
                          "input size, model or codec); train into another --out, or add --force to start again")
    return ck, finished_reason(ck, cfg) is not None


def _finished_cascade(cfg: Recipe, out: Path) -> bool:
    """Does ``out`` hold a cascade checkpoint of ``cfg``'s stages whose stage runs are all finished
    and are the ones it was written from (nothing to train, nothing to write)?"""
    c = cfg.cascade
    if not (out / "last.pt").is_file():
        return False
    try:
        ck = read_checkpoint(out / "last.pt")
    except PosekitError:
        return False
    cas, stage1 = ck.get("cascade") or {}, str(resolve_checkpoint_path(c.stage1))
    if cas.get("stage1") != stage1 or len(cas.get("stages", [])) != len(c.stages):
        return False
    for k, (st, saved) in enumerate(zip(c.stages, cas["stages"]), start=2):
        run = out / f"stage{k}"
        spec = {"stage": k, "settings": st.model_dump(mode="json"), "stage1": stage1}
        finished = _stage_state(run, cfg, spec)[1]
        if not finished or not (run / "best.pt").is_file() or read_checkpoint(run / "best.pt")["epoch"] != saved.get("epoch"):
            return False
    return True


def train_cascade(cfg: Recipe, out_dir: str | Path, progress: bool = True, log=print, fresh: bool = False) -> dict:
    """Train every stage of ``cascade.stages`` (continuing the stage runs already in ``out_dir``
    that were made with the same settings; ``fresh``: starting them all again), then write the
    cascade checkpoint. Returns a summary with the stages' histories."""
    c, d = cfg.cascade, cfg.data
    if not c.stage1 or not c.stages:
        raise ConfigError("config: a cascade needs cascade.stage1 (the trained stage-1 checkpoint) and cascade.stages")
    if ddp.dist_info()[0] > 1:
        raise PosekitError("cascade stages train on one process (they take minutes); run without torchrun")
    for st in c.stages:  # a bad stage model fails before any work
        build_stage(st)
    out = Path(out_dir)
    if fresh:
        for old in out.glob("stage*"):
            shutil.rmtree(old, ignore_errors=True)
    elif _finished_cascade(cfg, out):  # a finished cascade is left untouched
        done = read_checkpoint(out / "last.pt")["cascade"]["history"]
        log(f"{out / 'last.pt'}: finished, every stage's run trained (raise --epochs to train on); nothing to resume")
        return {"out": str(out), "stages": len(done), "history": done, "nothing_to_resume": True}
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu")
    s1_model, s1_codec, s1 = load_model(c.stage1, device)
    s1cfg, split = s1["recipe"], s1["split"]
    sets = load_sets(d.root, list(split.get("sets") or s1cfg.data.sets))
    train_ids, val_ids = split_ids(split, d.limit_train, d.limit_val)
    by_id = {s.sample_id(i): s.image_paths[i] for s in sets.values() for i in range(len(s))}
    cache = ImageCache(sorted({by_id[i] for i in train_ids + val_ids}), max_side=d.cache_max_side, threads=2,
                       progress=progress)
    data = {"sets": sets, "cache": cache}
    trained, stage_states, histories = [], [], []
    for k, st in enumerate(c.stages, start=2):
        s1_parts = (s1_model, s1_codec, s1cfg)
        data["train"] = _estimates(s1_parts, data, train_ids, trained, device, c.frame_margin)
        data["val"] = _estimates(s1_parts, data, val_ids, trained, device, c.frame_margin) if val_ids else None
        task = StageTask(cfg, k, st, data, split)
        run = out / f"stage{k}"
        spec = {"stage": k, "settings": st.model_dump(mode="json"), "stage1": s1["path"]}
        ck, finished = _stage_state(run, cfg, spec)
        if not finished:
            if ck is not None:
                load_weights(task.model, ck.get("train_model", ck["model"]), ck["path"])
            fit(task, cfg, run, resume=ck, progress=progress, log=log, extra_payload=lambda: {"cascade_stage": spec})
        best = read_checkpoint(run / "best.pt")
        load_weights(task.model, best["model"], best["path"])
        task.model.eval()
        trained.append(Stage(task.model.to(device), st.input_size, st.sigma, task.codec))
        stage_states.append({**st.model_dump(mode="json"), "state": {n: v.detach().cpu() for n, v in
                                                                    task.model.state_dict().items()},
                             "error_model": task.err.state(), "epoch": best["epoch"]})
        histories.append({"stage": k, "history": best["history"]})
    payload = dict(config=s1["config"], split=split, epoch=s1["epoch"], history=s1.get("history", []),
                   model=s1["model"], best=s1.get("best"), metrics=s1.get("metrics"),
                   cascade={"stages": stage_states, "recipe": cfg.to_dict(), "stage1": s1["path"], "history": histories})
    save_checkpoint(out / "last.pt", **payload)
    save_checkpoint(out / "best.pt", **payload)
    return {"out": str(out), "stages": len(stage_states), "history": histories}
