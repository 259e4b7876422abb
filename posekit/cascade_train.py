"""Training DeepPose cascade stages on top of a trained stage-1 checkpoint (``cascade.stage1``).

For each stage in ``cascade.stages``, in order:
1. the current estimates of every training (and validation) image are computed: stage 1 on the
   image framed around its person as LSP frames its test images (``cascade.frame_margin``;
   LSPe's photos are large scenes where a whole-image guess misses by several pose diameters,
   which is not the error a stage meets at test time), then the stages trained so far;
2. their errors against the truth, in units of the pose diameter, are fitted per joint as a 2-D
   Gaussian (:class:`posekit.models.cascade.ErrorModel`): measured, not assumed. Only errors
   the stage can see are fitted: within ``error_reach`` x the crop's half-side (``sigma / 2``);
   the gross misses of a weak stage 1 would otherwise swell the Gaussian until most training
   crops miss their joint;
3. each epoch, every training image gives ``joints_per_image`` random annotated joints; a crop
   is centred on the true joint displaced by a sample of that joint's error distribution, of
   side ``sigma x diam(estimate) x U(1 - side_jitter, 1 + side_jitter)``, with the colour
   jitter of ``augment.color``; the stage network learns the true joint's place in the crop
   (its output row for that joint), with an MSE loss;
4. validation reports PCK@0.2 before and after the stage.

The run folder gets ``config.yaml``, ``history.json`` and ``last.pt``/``best.pt``: one
checkpoint holding stage 1 (its config, split and weights, so evaluation and prediction treat it
like any model) plus every stage's network, input size, sigma and error model."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from posekit.checkpoint import load_model, save_checkpoint
from posekit.codecs import build_codec
from posekit.config import dump_config
from posekit.data.dataset import ImageCache, PoseLandmarksDataset
from posekit.data.lsp import load_sets
from posekit.data.transforms import AugmentConfig, PoseTransform, compose_affine, invert_affine, to_tensor, warp
from posekit.errors import ConfigError, PosekitError
from posekit.evaluate import predict_loader
from posekit.losses import build_loss
from posekit.metrics import pck
from posekit.models import build_model
from posekit.models.cascade import ErrorModel, Stage, crop_matrix, joint_target, pose_diameter
from posekit.skeleton import NUM_JOINTS
from posekit.utils import atomic_write_text, seed_everything, select_device


class CropDataset(Dataset):
    """One epoch's training crops: (image index, joint, centre, side) chosen up front (seeded),
    cut from the decoded-image cache in the loader workers."""

    def __init__(self, cache: ImageCache, paths: list, gt: np.ndarray, plan: np.ndarray, size: int,
                 color: float, seed: int):
        self.cache, self.paths, self.gt, self.plan = cache, paths, gt, plan
        self.size, self.color, self.seed = size, color, seed

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int) -> dict:
        i, j, cx, cy, side = self.plan[k]
        i, j = int(i), int(j)
        image, pre, _ = self.cache.get(self.paths[i])
        centre = np.array([cx, cy])
        m = crop_matrix(centre, side, self.size)
        crop = warp(image, compose_affine(m, invert_affine(pre)), self.size)
        x = to_tensor(crop)
        if self.color > 0:  # brightness / contrast jitter, seeded per crop
            rng = np.random.default_rng(self.seed + k)
            a = 1 + rng.uniform(-self.color, self.color)
            b = rng.uniform(-self.color, self.color) * 0.5
            x = x * a + b
        target = joint_target(self.gt[i, j], centre, side, self.size)
        return {"image": x, "joint": j, "target": torch.tensor(target, dtype=torch.float32)}


def _plan(gt, mask, est, err: ErrorModel, sigma: float, per_image: int, jitter: float, rng) -> np.ndarray:
    """(M, 5) rows of (image, joint, centre x, centre y, side) for one epoch."""
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
    return np.array(rows, np.float64)


def _estimates(model, codec, s1cfg, sets, ids, cache, device, stages, workers,
               frame: float | None = None) -> tuple[np.ndarray, ...]:
    """(gt, mask, [estimates after stage 1, 2, ...]) for ``ids``, in original pixels. Stage 1 sees
    each image framed around its person with margin ``frame`` (None: the whole image)."""
    tf = PoseTransform(s1cfg["data"]["input_size"], s1cfg["data"]["resize_mode"], train=False,
                       augment=AugmentConfig(person_crop=frame))
    ds = PoseLandmarksDataset(sets, ids, tf, cache=cache)
    res = predict_loader(model, codec, DataLoader(ds, batch_size=64, num_workers=workers), device, keep_first=False)
    ests = [res["pred"]]
    if stages:
        got = [cache.get(p) for p in ds.paths()]
        imgs, pres = [g[0] for g in got], [g[1] for g in got]
        for st in stages:
            ests.append(st.refine(imgs, ests[-1], device, pres=pres))
    return res["gt"], res["mask"], ests


def _pck(est, gt, mask) -> float:
    return float(pck(est, gt, mask)[0])


def stage_config_check(cfg: dict, where: str) -> list[dict]:
    stages = cfg["cascade"]["stages"]
    if not stages:
        raise ConfigError(f"{where}: cascade.stages is empty (one mapping per stage: sigma, input_size, model)")
    out = []
    for k, st in enumerate(stages, start=2):
        if not isinstance(st, dict) or set(st) - {"sigma", "input_size", "model", "codec"}:
            raise ConfigError(f"{where}: cascade stage {k} must be a mapping of sigma, input_size, model (and codec)")
        sigma, size, model = st.get("sigma"), st.get("input_size", 64), st.get("model", {"name": "poster_cnn"})
        codec = st.get("codec", "regression")
        if not isinstance(sigma, (int, float)) or sigma <= 0:
            raise ConfigError(f"{where}: cascade stage {k}: sigma must be a positive number")
        if not isinstance(size, int) or size < 16:
            raise ConfigError(f"{where}: cascade stage {k}: input_size must be an integer >= 16")
        if not isinstance(model, dict) or "name" not in model:
            raise ConfigError(f"{where}: cascade stage {k}: model must be a mapping with a name")
        if not (isinstance(codec, str) or (isinstance(codec, dict) and "name" in codec)):
            raise ConfigError(f"{where}: cascade stage {k}: codec must be a codec name or a mapping with a name")
        out.append({"sigma": float(sigma), "input_size": size, "model": dict(model),
                    "codec": codec if isinstance(codec, str) else dict(codec)})
    return out


def build_stage_net(st: dict) -> tuple[torch.nn.Module, object]:
    """The stage's network and codec: a regression model with the regression codec, or a heatmap
    model with the heatmap or integral codec."""
    opts = {k: v for k, v in st["model"].items() if k != "name"}
    try:
        net = build_model(st["model"]["name"], input_size=st["input_size"], **opts)
        codec = build_codec(st["codec"], st["input_size"])
    except (ValueError, TypeError) as e:
        raise ConfigError(f"cascade stage model {st['model']} / codec {st['codec']}: {e}") from None
    kind = getattr(net, "output_kind", None)
    want = "regression" if codec.kind == "regression" else "heatmap"
    if kind != want:
        raise ConfigError(f"cascade stage model {st['model']['name']!r} gives {kind} outputs; "
                          f"the {codec.kind} codec needs a {want} model")
    return net, codec


def train_cascade(cfg: dict, out_dir: str | Path, progress: bool = True, log=print) -> dict:
    c, t, d = cfg["cascade"], cfg["train"], cfg["data"]
    stage_cfgs = stage_config_check(cfg, "config")
    out = Path(out_dir)
    device = select_device(t["device"])
    seed = int(t["seed"])
    seed_everything(seed)
    s1_model, s1_codec, s1 = load_model(c["stage1"], device)
    s1cfg, split = s1["config"], s1["split"]
    built = [build_stage_net(st) for st in stage_cfgs]  # a bad stage model fails before any work
    sets = load_sets(d["root"], list(split.get("sets") or s1cfg["data"]["sets"]))
    train_ids = split["train"][: d["limit_train"]] if d["limit_train"] else split["train"]
    val_ids = split["val"][: d["limit_val"]] if d["limit_val"] is not None else split["val"]
    by_id = {s.sample_id(i): s.image_paths[i] for s in sets.values() for i in range(len(s))}
    cache = ImageCache(sorted({by_id[i] for i in train_ids + val_ids}), max_side=d["cache_max_side"],
                       threads=2, progress=progress)
    train_paths = [by_id[i] for i in train_ids]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    log(f"cascade run {out}: stage 1 {s1['path']} ({s1cfg['model']['name']}), {len(stage_cfgs)} stage(s) to train, "
        f"train {len(train_ids)}, val {len(val_ids)}, on {device}")

    trained: list[Stage] = []
    stage_states, history = [], []
    for k, (st, (net, codec)) in enumerate(zip(stage_cfgs, built), start=2):
        gt, mask, ests = _estimates(s1_model, s1_codec, s1cfg, sets, train_ids, cache, device, trained, t["num_workers"],
                                    c["frame_margin"])
        est = ests[-1]
        reach = None if c["error_reach"] is None else c["error_reach"] * st["sigma"] / 2
        err = ErrorModel.fit(gt, est, mask, reach=reach)
        vgt, vmask, vests = (_estimates(s1_model, s1_codec, s1cfg, sets, val_ids, cache, device, trained, t["num_workers"],
                                           c["frame_margin"])
                             if val_ids else (None, None, None))
        log(f"stage {k}: previous-stage rms errors per joint on train (in pose diameters): "
            + ", ".join(f"{np.sqrt(np.trace(cv)):.2f}" for cv in ErrorModel.fit(gt, est, mask).cov))
        if reach is not None:
            log(f"stage {k}: fitted to the errors within {reach:.2f} diameters (the crop's reach): rms "
                + ", ".join(f"{np.sqrt(np.trace(cv)):.2f}" for cv in err.cov)
                + "; left out per joint: " + ", ".join(f"{x:.0%}" for x in err.excluded))
        if val_ids:  # the training set's errors can be optimistic (stage 1 saw those images): compare
            verr = ErrorModel.fit(vgt, vests[-1], vmask)
            log(f"stage {k}: ... and on val: " + ", ".join(f"{np.sqrt(np.trace(cv)):.2f}" for cv in verr.cov))
        net = net.to(device)
        opt = torch.optim.Adam(net.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
        stage = Stage(net, st["input_size"], st["sigma"], codec)
        loss_fn = build_loss(codec.default_loss)
        for epoch in range(t["epochs"]):
            rng = np.random.default_rng(seed * 1_000_003 + k * 10_007 + epoch)
            plan = _plan(gt, mask, est, err, st["sigma"], c["joints_per_image"], c["side_jitter"], rng)
            ds = CropDataset(cache, train_paths, gt, plan, st["input_size"], cfg["augment"]["color"], seed + epoch * 7919)
            g = torch.Generator().manual_seed(seed + epoch)
            loader = DataLoader(ds, batch_size=t["batch_size"], shuffle=True, num_workers=t["num_workers"], generator=g,
                                drop_last=len(ds) > t["batch_size"])
            steps = len(loader) if not t["max_steps_per_epoch"] else min(len(loader), t["max_steps_per_epoch"])
            lr = t["lr"] * (0.5 * (1 + np.cos(np.pi * epoch / t["epochs"])) if t["scheduler"] == "cosine" else 1.0)
            for gparam in opt.param_groups:
                gparam["lr"] = lr
            net.train()
            total, count, t0 = 0.0, 0, time.perf_counter()
            for step, b in enumerate(loader):
                if step >= steps:
                    break
                x = b["image"].to(device)
                rows = torch.arange(len(x), device=device)
                j = b["joint"].to(device)
                # crop i answers for its joint j only: the target sits in row / map j, the rest weigh 0
                kp = torch.zeros(len(x), NUM_JOINTS, 2, device=device)
                kp[rows, j] = b["target"].to(device) * st["input_size"] - 0.5  # [0, 1] frame -> crop pixels
                onehot = torch.zeros(len(x), NUM_JOINTS, device=device)
                onehot[rows, j] = 1.0
                target, weight = codec.encode(kp, onehot)
                loss = loss_fn(codec.loss_input(net(x).float()), target, weight)
                if not torch.isfinite(loss):
                    raise PosekitError(f"cascade stage {k} diverged at epoch {epoch + 1} (lower train.lr)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(x)
                count += len(x)
            rec = {"stage": k, "epoch": epoch + 1, "train_loss": total / max(count, 1), "lr": lr,
                   "crops_per_s": count / max(time.perf_counter() - t0, 1e-9)}
            if val_ids:
                got = [cache.get(by_id[i]) for i in val_ids]
                refined = stage.refine([g_[0] for g_ in got], vests[-1], device, pres=[g_[1] for g_ in got])
                rec["val_pck_before"] = _pck(vests[-1], vgt, vmask)
                rec["val_pck"] = _pck(refined, vgt, vmask)
            history.append(rec)
            atomic_write_text(out / "history.json", json.dumps(history, indent=1))
            log(" ".join(f"{k_}={v:.4g}" if isinstance(v, float) else f"{k_}={v}" for k_, v in rec.items()))
        trained.append(stage)
        stage_states.append({**st, "state": {n: v.detach().cpu() for n, v in net.state_dict().items()},
                             "error_model": err.state()})
    payload = dict(config=s1cfg, split=split, epoch=s1["epoch"], history=s1.get("history", []),
                   model=s1["model"], best=s1.get("best"), metrics=s1.get("metrics"),
                   cascade={"stages": stage_states, "recipe": cfg, "stage1": s1["path"], "history": history})
    save_checkpoint(out / "last.pt", **payload)
    save_checkpoint(out / "best.pt", **payload)
    return {"out": str(out), "stages": len(stage_states), "history": history}
