"""The one training loop, for every network posekit trains (pose models, cascade stages, the
person detector): :func:`fit` runs a :class:`Task` (what differs between them: the model, the
data, the loss, the validation metrics) under ``train.*`` of the recipe, every key honoured:
optimiser, learning-rate warm-up and schedule, gradient clipping, bfloat16 autocast, a moving
average of the weights, early stopping, snapshots, DDP (torchrun) and exact resume.

A run folder (:class:`posekit.run_folder.RunFolder`) holds ``config.yaml``, ``split.json``,
``history.json``, ``tb/`` and the checkpoints. Every epoch re-seeds the model's RNG, the batch
order and the augmentation from (``train.seed``, epoch), so a resumed run takes the same steps
as an uninterrupted one. :func:`train` picks the task from the recipe."""
from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from posekit import distributed as ddp
from posekit.checkpoint import load_weights, model_from_config, read_checkpoint
from posekit.config import Recipe, complete_config, dump_config
from posekit.errors import ConfigError, PosekitError
from posekit.models.precision import native_bf16
from posekit.run_folder import RunFolder
from posekit.utils import derive_seed, select_device


class Task(Protocol):
    """What one kind of training brings to :func:`fit`.

    ``model``: the network (built, weights initialised); ``train_set``: a dataset with
    ``set_epoch(epoch)`` whose items the task's ``loss`` reads; ``split``: the ids it was made
    from (saved with the run)."""

    model: torch.nn.Module
    train_set: object
    split: dict

    def loss(self, forward, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(mean loss over the batch, its total weight (for DDP), samples) for one training batch;
        ``forward(x)`` runs the network (under autocast when ``train.amp``), the loss is in fp32."""

    def validate(self, model: torch.nn.Module, device: torch.device) -> dict:
        """``val_loss`` (lower is better) and metrics (None where undefined), ``_images``
        optionally (an RGB grid for TensorBoard); {} without validation data."""

    def describe(self) -> str:
        """One line for the start of the run."""


@dataclass
class TrainState:
    """Where a run stands: the next epoch (0-based), the history (one record per epoch), the best
    epoch so far and the epochs since it improved."""

    epoch: int = 0
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"val_loss": math.inf, "epoch": None})
    bad_epochs: int = 0

    @classmethod
    def from_checkpoint(cls, ck: dict) -> TrainState:
        return cls(ck["epoch"] + 1, list(ck["history"]), dict(ck["best"]), int(ck["bad_epochs"]))

    def update(self, rec: dict) -> bool:
        """Add an epoch's record; returns whether it improved on the best."""
        monitor = rec["val_loss"] if rec.get("val_loss") is not None else rec["train_loss"]
        improved = monitor < self.best["val_loss"]
        if improved:
            self.best = {"val_loss": monitor, "epoch": rec["epoch"], **{k: rec[k] for k in ("pck", "pcp", "mse", "ap")
                                                                          if rec.get(k) is not None}}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        rec["best_epoch"] = self.best["epoch"]
        self.history.append(rec)
        self.epoch += 1
        return improved


# ---------------------------------------------------------------------------- the pieces of train.*

def build_optimizer(cfg: Recipe, model: torch.nn.Module) -> torch.optim.Optimizer:
    """``train.optimizer`` over ``model``'s parameters, with ``lr``, ``weight_decay`` (and for SGD
    ``momentum``, ``nesterov``)."""
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                               nesterov=t.nesterov)
    cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict, cfg: Recipe, where: str) -> None:
    """Restore a checkpoint's optimiser state, then apply the recipe's own weight decay (and
    momentum, Nesterov for SGD), which ``load_state_dict`` would otherwise silently replace with
    the saved values (the learning rate is set at every step)."""
    try:
        opt.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"{where}: its optimiser state does not fit this model ({type(e).__name__})") from None
    t = cfg.train
    for group in opt.param_groups:
        group["weight_decay"] = t.weight_decay
        if t.optimizer == "sgd":
            group["momentum"], group["nesterov"] = t.momentum, t.nesterov


def lr_at(cfg: Recipe, epoch: float) -> float:
    """The learning rate at a (fractional) epoch: linear warm-up over ``warmup_epochs``, then
    ``scheduler``: none, step (x ``gamma`` every ``step_size`` epochs) or cosine to 0 at ``epochs``."""
    t = cfg.train
    base, warm = t.lr, t.warmup_epochs
    if warm and epoch < warm:
        return base * (epoch + 1e-3) / warm
    if t.scheduler == "step":
        return base * t.gamma ** int(epoch // t.step_size)
    if t.scheduler == "cosine":
        span = max(1e-9, t.epochs - warm)
        return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (epoch - warm) / span)))
    return base


def amp_enabled(device: torch.device, amp: bool, log=None) -> bool:
    """Whether ``train.amp`` turns on bfloat16 autocast on ``device``: always on CUDA, on a CPU
    only with native bf16 (else fp32, and ``log`` says why)."""
    if not amp:
        return False
    if device.type == "cuda" or (device.type == "cpu" and native_bf16()):
        return True
    if log is not None:
        log(f"train.amp: bfloat16 off on this {device.type} (no native bf16 support); training in fp32")
    return False


def autocast(device: torch.device, amp: bool):
    """bfloat16 autocast for the forward pass when ``amp``; losses are computed in fp32 outside it."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


def make_ema(model: torch.nn.Module, decay: float | None, saved: dict | None):
    """``train.ema``: an exponential moving average of the weights and BN statistics
    (torch.optim.swa_utils), updated after every step; None when off. On resume it continues
    from the checkpoint's average (``saved``)."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)
    if saved is not None:
        ema.module.load_state_dict(saved["model"])
        ema.n_averaged.fill_(int(saved["ema_updates"]))
    else:
        ema.update_parameters(model)  # the average starts at the initial weights
    return ema


def make_deterministic() -> None:
    """``train.deterministic``: deterministic kernels (exact resume on CUDA too, at some speed)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def init_weights(model: torch.nn.Module, source: str) -> str:
    """``train.init_from`` (transfer learning): copy every tensor of checkpoint ``source`` whose
    name matches ``model``; the rest (a grown network's new tensors) keep their fresh
    initialisation. Returns a line saying what was taken; raises ConfigError when nothing matches
    or a tensor of both has another shape (another width: the copy would be silently partial)."""
    ck = read_checkpoint(source, need_config=False)
    own = model.state_dict()
    other = next((k for k, v in ck["model"].items() if k in own and own[k].shape != v.shape), None)
    if other is not None:
        raise ConfigError(f"train.init_from {source}: tensor {other} is {tuple(ck['model'][other].shape)} there but "
                          f"{tuple(own[other].shape)} in this model (another width or size?)")
    take = {k: v.to(own[k].dtype) for k, v in ck["model"].items() if k in own and own[k].shape == v.shape}
    if not take:
        raise ConfigError(f"train.init_from {source}: no tensor matches this model (a different architecture?)")
    model.load_state_dict(take, strict=False)
    rest = len(own) - len(take)
    return f"initialised {len(take)} of {len(own)} tensors from {ck['path']}" + (
        f" ({rest} keep their fresh init)" if rest else "")


# ---------------------------------------------------------------------------- resume checks

#: settings a resumed run must keep: its weights, optimiser state and split depend on them
RESUME_FIXED = ("task", "model", "codec", "data.input_size", "data.resize_mode", "data.sets", "data.split",
                "data.split_seed", "data.fractions", "data.val_fraction", "train.optimizer")
RESUMABLE_KEYS = ("split", "epoch", "history", "best", "bad_epochs", "optimizer")


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def check_resume(ck: dict, cfg: Recipe) -> None:
    """Refuse, in one line and before anything is written, to resume checkpoint ``ck`` under a
    ``cfg`` that changes what its weights, optimiser state or split were made with
    (:data:`RESUME_FIXED`, whether ``train.ema`` is on), or a checkpoint that cannot resume (a
    shipped model: no optimiser state)."""
    where = ck["path"]
    missing = [k for k in RESUMABLE_KEYS if k not in ck]
    if missing:
        raise ConfigError(f"{where}: not a resumable training checkpoint (no {', '.join(missing)}); "
                          "start a new run, e.g. with train.init_from")
    saved, new = complete_config(ck["config"], where).to_dict(), cfg.to_dict()
    for key in RESUME_FIXED:
        a, b = _get(saved, key), _get(new, key)
        if a != b:
            raise ConfigError(f"{where}: cannot resume with {key}={b!r}: the run was trained with {a!r} "
                              "(start a new run with --out, or train.init_from to reuse its weights)")
    if bool(cfg.train.ema) != ("train_model" in ck):
        raise ConfigError(f"{where}: trained {'with' if 'train_model' in ck else 'without'} "
                          f"train.ema, resumed {'with' if cfg.train.ema else 'without'} it; resume with the "
                          "checkpoint's own train.ema")


def finished_reason(ck: dict, cfg: Recipe) -> str | None:
    """Why the run saved in ``ck`` has nothing left to train under ``cfg`` (the recipe it is
    resumed with); None when it has epochs left."""
    t, done = cfg.train, ck["epoch"] + 1
    if t.early_stopping_patience and ck["bad_epochs"] >= t.early_stopping_patience:  # first: raising --epochs alone
        also = f" (and --epochs: train.epochs is {t.epochs})" if done >= t.epochs else ""  # would not train on
        return (f"stopped early after {done} epochs (no val-loss improvement for {ck['bad_epochs']}, "
                f"train.early_stopping_patience is {t.early_stopping_patience}); raise it{also} to train on")
    if done >= t.epochs:
        return f"{done} epochs trained (train.epochs is {t.epochs}); raise --epochs to train on"
    return None


# ---------------------------------------------------------------------------- the loop

@dataclass
class Loop:
    """Everything one process needs to run epochs."""

    cfg: Recipe
    task: Task
    net: torch.nn.Module  # what the steps call: the model or its DDP wrapper
    opt: torch.optim.Optimizer
    device: torch.device
    world: int
    rank: int
    amp: bool
    ema: object | None = None
    progress: bool = False

    @property
    def model(self) -> torch.nn.Module:
        return self.task.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a training batch, under bfloat16 autocast when ``amp``."""
        with autocast(self.device, self.amp):
            return self.net(x)

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.model if self.ema is None else self.ema.module


def train_epoch(loop: Loop, epoch: int) -> dict:
    """One epoch of steps on this process. Returns the record's training part (train_loss, lr,
    images_per_s, train_time_s), the loss averaged over the global batch under DDP."""
    t = loop.cfg.train
    seed = t.seed
    torch.manual_seed(derive_seed(seed, "model", epoch))
    np.random.seed(derive_seed(seed, "numpy", epoch))
    loop.task.train_set.set_epoch(epoch)
    sampler = ddp.GlobalBatchSampler(len(loop.task.train_set), t.batch_size, loop.world, loop.rank, seed, epoch)
    loader = DataLoader(loop.task.train_set, batch_sampler=sampler, num_workers=t.num_workers)
    steps = min(len(loader), t.max_steps_per_epoch or len(loader))
    loop.net.train()
    total, count, lr = 0.0, 0, lr_at(loop.cfg, epoch)
    bar = _bar(loop.progress, steps, f"epoch {epoch + 1}/{t.epochs}")
    t0 = time.perf_counter()
    for step, batch in zip(range(steps), loader):
        lr = lr_at(loop.cfg, epoch + step / steps)
        for group in loop.opt.param_groups:
            group["lr"] = lr
        loss, weight, n = loop.task.loss(loop.forward, batch, loop.device)
        if not torch.isfinite(loss):
            raise PosekitError(f"training diverged: loss is {loss.item()} at epoch {epoch + 1} step {step + 1} "
                               "(lower train.lr)")
        loop.opt.zero_grad(set_to_none=True)
        loss = loss * ddp.global_loss_scale(weight, loop.world)  # DDP's average = the global batch's loss
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(loop.model.parameters(), t.grad_clip)
        loop.opt.step()
        if loop.ema is not None:
            loop.ema.update_parameters(loop.model)
        total, count = total + loss.item() * n, count + n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / max(count, 1):.5f}", lr=f"{lr:.2e}")
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    total, count = ddp.all_sum([total, count], loop.device)
    return {"train_loss": total / max(count, 1), "lr": lr, "images_per_s": count / max(seconds, 1e-9),
            "train_time_s": seconds}


def _bar(on: bool, steps: int, desc: str):
    if not on:
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc=desc, unit="batch", leave=False)


def _validate(loop: Loop) -> dict:
    with torch.no_grad(), autocast(loop.device, loop.amp and loop.device.type == "cuda"):
        v = loop.task.validate(loop.eval_model, loop.device)
    return {k: (None if val is None else (val if k == "_images" else float(val))) for k, val in v.items()}


def _payload(loop: Loop, state: TrainState, rec: dict, extra: dict) -> dict:
    """What a checkpoint holds. With ``train.ema``, ``model`` (what evaluation, prediction and
    shipping read) is the average and ``train_model`` the weights trained."""
    p = dict(config=loop.cfg.to_dict(), split=loop.task.split, epoch=state.epoch - 1, history=state.history,
             best=state.best, bad_epochs=state.bad_epochs, model=loop.model.state_dict(),
             optimizer=loop.opt.state_dict(), metrics=rec, **extra)
    if loop.ema is not None:
        p.update(model=loop.ema.module.state_dict(), train_model=loop.model.state_dict(),
                 ema_updates=int(loop.ema.n_averaged))
    return p


class _Logger:
    """TensorBoard scalars and sample images (rank 0 only; off without TensorBoard)."""

    def __init__(self, folder: Path, start_epoch: int, log):
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder / "tb"), purge_step=start_epoch + 1 if start_epoch else None)
        except Exception as e:  # tensorboard missing: train anyway, say so
            log(f"warning: TensorBoard logging off ({type(e).__name__}: {e})")

    TAGS = {"train_loss": "loss/train", "val_loss": "loss/val", "lr": "lr", "images_per_s": "speed/images_per_s"}

    def epoch(self, rec: dict, images) -> None:
        if self.writer is None:
            return
        for k, v in rec.items():
            if isinstance(v, float) and k not in ("epoch", "best_epoch", "train_time_s"):
                self.writer.add_scalar(self.TAGS.get(k, f"val/{k}"), v, rec["epoch"])
        if images is not None:
            self.writer.add_image("val/predictions", images, rec["epoch"], dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _epoch_line(rec: dict, epochs: int, improved: bool) -> str:
    keys = ("train_loss", "val_loss", "pck", "pcp", "ap", "images_per_s")
    msg = " ".join(f"{k}={rec[k]:.4g}" for k in keys if rec.get(k) is not None)
    return f"epoch {rec['epoch']}/{epochs} {msg}{' *' if improved else ''}"


def fit(task: Task, cfg: Recipe, out: str | Path, resume: dict | None = None, progress: bool = True, log=print,
        extra_payload=None) -> dict:
    """Train ``task`` under ``cfg.train`` into the run folder ``out``, from scratch or from the
    checkpoint dict ``resume``. Returns the summary: out, epochs_done, best, history,
    stopped_early. Under torchrun every process runs this; only rank 0 logs, validates and writes.
    ``extra_payload()`` adds entries to every checkpoint."""
    t = cfg.train
    world, rank, ddp_device = ddp.setup(t.device)
    main = rank == 0
    if not main:
        log, progress = (lambda *a, **k: None), False
    device = ddp_device or select_device(t.device)
    model = task.model.to(device).to(memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
    state = TrainState() if resume is None else TrainState.from_checkpoint(resume)
    opt = build_optimizer(cfg, model)
    if resume is not None:
        load_optimizer_state(opt, resume["optimizer"], cfg, resume["path"])
    loop = Loop(cfg, task, ddp.wrap(model, device, world, t.sync_bn), opt, device, world, rank,
                amp_enabled(device, t.amp, log), make_ema(model, t.ema, resume if resume and t.ema else None) if main
                else None, progress)
    run = RunFolder(out)
    logger = None
    if main:  # only now, with data and model known to be good, touch the output folder
        run.start(dump_config(cfg), task.split, fresh=resume is None)
        if resume is not None and run.repair():
            log(f"{run.best}: restored from last.pt (the run was stopped between writing the two)")
        logger = _Logger(run.path, state.epoch, log)
        log(f"run {run.path}: {task.describe()} on {device}, epochs {state.epoch + 1}..{t.epochs}"
            + (f", {world} processes (global batch {t.batch_size})" if world > 1 else ""))
    stopped_early = False
    while state.epoch < t.epochs and not stopped_early:
        rec = {"epoch": state.epoch + 1, **train_epoch(loop, state.epoch)}
        if main:
            rec.update(_validate(loop))
            images = rec.pop("_images", None)
            improved = state.update(rec)
            stopped_early = bool(t.early_stopping_patience) and state.bad_epochs >= t.early_stopping_patience
            payload = _payload(loop, state, rec, extra_payload() if extra_payload else {})
            run.save_epoch(dict(payload, stopped_early=stopped_early), state.epoch, improved, t.save_every,
                           state.history)
            logger.epoch(rec, images)
            log(_epoch_line(rec, t.epochs, improved))
        else:
            state.epoch += 1
        stopped_early = ddp.broadcast_flag(stopped_early, device)  # every process follows rank 0
    if main:
        logger.close()
        if stopped_early:
            log(f"early stopping: no val-loss improvement for {t.early_stopping_patience} epochs "
                f"(best epoch {state.best['epoch']})")
    return {"out": str(run.path), "epochs_done": state.epoch, "best": state.best, "stopped_early": stopped_early,
            "history": state.history, "rank": rank}


# ---------------------------------------------------------------------------- the entry point

def train(cfg: Recipe, out_dir: str | Path, resume: str | Path | None = None, progress: bool = True,
          log=print, fresh: bool = False) -> dict:
    """Train a recipe into ``out_dir`` (from scratch, or continuing checkpoint ``resume``): a
    cascade (``cascade.stage1`` set; its stage runs in ``out_dir`` continue unless ``fresh``), a
    person detector (``task: detect``) or a pose model. Returns the summary of :func:`fit`;
    ``nothing_to_resume`` when a resumed run was finished (then nothing is loaded or written)."""
    if cfg.cascade.stage1 or cfg.cascade.stages:
        from posekit.cascade_task import train_cascade

        return train_cascade(cfg, out_dir, progress=progress, log=log, fresh=fresh)
    ck = None
    if resume is not None:
        ck = read_checkpoint(resume)
        check_resume(ck, cfg)
        why = finished_reason(ck, cfg)
        if why:  # a finished run is left untouched
            if ddp.dist_info()[1] == 0:
                log(f"{ck['path']}: finished, {why}; nothing to resume")
            return {"out": str(out_dir), "epochs_done": ck["epoch"] + 1, "best": ck["best"],
                    "history": ck["history"], "stopped_early": bool(ck.get("stopped_early")), "nothing_to_resume": True}
    if cfg.train.deterministic:
        make_deterministic()
    torch.manual_seed(cfg.train.seed)  # the initial weights depend on the seed alone
    model = model_from_config(cfg)  # weights first: a bad checkpoint fails before any image is decoded
    if ck is not None:  # with train.ema, "model" holds the average and "train_model" the weights trained
        load_weights(model, ck.get("train_model", ck["model"]), ck["path"])
    elif cfg.train.init_from:
        log(init_weights(model, cfg.train.init_from))
    return fit(_task(cfg, ck, progress, model), cfg, out_dir, ck, progress, log)


def _task(cfg: Recipe, ck: dict | None, progress: bool, model: torch.nn.Module) -> Task:
    split = None if ck is None else ck["split"]
    if cfg.task == "detect":
        from posekit.detect_task import DetectTask

        return DetectTask(cfg, split=split, progress=progress, model=model)
    from posekit.pose_task import PoseTask

    return PoseTask(cfg, split=split, progress=progress, model=model)
