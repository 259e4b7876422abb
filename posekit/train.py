"""Training: a thin loop over the data, model, codec and loss modules.

A run folder holds ``config.yaml``, ``split.json``, ``history.json`` (one record per epoch),
``tb/`` (TensorBoard), and ``last.pt`` + ``best.pt`` (written atomically, each with the config,
split, history and metrics inside). ``resume`` continues exactly where ``last.pt`` stopped: every
epoch re-seeds the model's RNG, the shuffling and the augmentation from (seed, epoch), so a
resumed run takes the same steps as an uninterrupted one."""
from __future__ import annotations

import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from posekit.checkpoint import load_weights, model_from_config, read_checkpoint
from posekit.codecs import build_codec
from posekit.config import dump_config
from posekit.data.dataset import ImageCache, PoseLandmarksDataset, verify_images
from posekit.data.lsp import load_sets
from posekit.data.splits import make_split, split_summary
from posekit.data.transforms import AugmentConfig, PoseTransform
from posekit.errors import ConfigError, PosekitError
from posekit.losses import build_loss
from posekit.run_folder import RunFolder
from posekit.utils import seed_everything, select_device


def augment_config(cfg: dict) -> AugmentConfig:
    a = dict(cfg["augment"])
    a["scale"] = tuple(a["scale"])
    return AugmentConfig(**a)


def build_datasets(cfg: dict, split: dict | None = None, progress: bool = False):
    """(sets, split, train dataset, val dataset) for a config. ``split`` reuses a saved split."""
    d = cfg["data"]
    pack_cache = None
    if d["pack"]:  # a packed split (`posekit data pack`): crops, annotations and split in one file
        from posekit.data.pack import load_pack

        sets, pack_cache, pack_split, pack_margin = load_pack(d["pack"], progress=progress)
        crop = cfg["augment"]["person_crop"]
        if crop is None or crop > pack_margin + 1e-9:
            raise ConfigError(f"{d['pack']}: a pack holds person crops with margin {pack_margin}; training from it needs "
                              f"augment.person_crop <= {pack_margin} (got {crop}): the rest of each image is not in it")
        split = split or pack_split
    else:
        sets = load_sets(d["root"], d["sets"])
    if split is None:
        split = make_split(d["split"], sets, seed=d["split_seed"], fractions=tuple(d["fractions"]),
                           val_fraction=d["val_fraction"])
    train_ids = split["train"][: d["limit_train"]] if d["limit_train"] else split["train"]
    val_ids = split["val"][: d["limit_val"]] if d["limit_val"] else split["val"]
    by_id = {s.sample_id(i): s.image_paths[i] for s in sets.values() for i in range(len(s))}
    missing = [i for i in train_ids + val_ids if i not in by_id]
    if missing:
        raise ConfigError(f"{len(missing)} samples of the split (e.g. {missing[0]}) are not in "
                          f"{d['pack'] or 'the data'}: pack the same split")
    paths = sorted({by_id[i] for i in train_ids + val_ids})
    cache = pack_cache  # a pack's crops are already decoded in memory
    if cache is None and d["cache"]:
        cache = ImageCache(paths, max_side=d["cache_max_side"], threads=2, progress=progress)
    elif cache is None:  # read every image once now, so a bad one stops the run before anything is written
        verify_images(paths, progress=progress)
    seed = cfg["train"]["seed"]
    train_tf = PoseTransform(d["input_size"], d["resize_mode"], train=True, augment=augment_config(cfg))
    # validation frames each person the way training does (LSPe images are large scenes with the
    # person ~150 px tall somewhere in them), with no random part; test evaluation is whole-image
    val_aug = AugmentConfig(person_crop=cfg["augment"]["person_crop"])
    eval_tf = PoseTransform(d["input_size"], d["resize_mode"], train=False, augment=val_aug)
    train_ds = PoseLandmarksDataset(sets, train_ids, train_tf, cache=cache, seed=seed)
    val_ds = PoseLandmarksDataset(sets, val_ids, eval_tf, cache=cache, seed=seed)
    return sets, split, train_ds, val_ds


def init_weights(model: torch.nn.Module, source: str) -> str:
    """Transfer learning (``train.init_from``): copy every tensor of ``source`` (a checkpoint, run
    folder or shipped model) whose name and shape match ``model``; the rest keep their fresh
    initialisation (e.g. a new head). Returns a line saying what was taken."""
    ck = read_checkpoint(source, need_config=False)
    own = model.state_dict()
    take = {k: v.to(own[k].dtype) for k, v in ck["model"].items() if k in own and own[k].shape == v.shape}
    if not take:
        raise ConfigError(f"train.init_from {source}: no tensor matches this model (a different architecture?)")
    model.load_state_dict(take, strict=False)
    return (f"initialised {len(take)} of {len(own)} tensors from {ck['path']}"
            f"{f' ({len(own) - len(take)} keep their fresh init)' if len(take) < len(own) else ''}")


def _make_ema(model: torch.nn.Module, decay: float | None, state: dict | None):
    """``train.ema``: an exponential moving average of the weights and BN statistics
    (torch.optim.swa_utils), updated after every step; None when off. On resume it continues
    from the checkpoint's average."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(float(decay)), use_buffers=True)
    if state is not None:  # train() has checked that the checkpoint holds an average
        ema.module.load_state_dict(state["model"])
        ema.n_averaged.fill_(int(state["ema_updates"]))
    else:
        ema.update_parameters(model)  # the average starts at the initial weights (not after step 1)
    return ema


def build_optimizer(cfg: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg["train"]
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t["lr"], momentum=t["momentum"],
                               weight_decay=t["weight_decay"], nesterov=t["nesterov"])
    if t["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    return torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])


def load_optimizer_state(opt: torch.optim.Optimizer, saved: dict, cfg: dict, where: str) -> None:
    """Restore a checkpoint's optimiser state, then apply the config's own weight decay (and
    momentum, Nesterov for SGD), which ``load_state_dict`` would otherwise silently replace with
    the saved values (the learning rate is set at every step)."""
    try:
        opt.load_state_dict(saved)
    except (ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"{where}: its optimiser state does not fit this model ({type(e).__name__})") from None
    t = cfg["train"]
    for group in opt.param_groups:
        group["weight_decay"] = t["weight_decay"]
        if t["optimizer"] == "sgd":
            group["momentum"], group["nesterov"] = t["momentum"], t["nesterov"]


def lr_at(cfg: dict, epoch: float) -> float:
    """Learning rate at a (fractional) epoch: optional linear warm-up, then none/step/cosine."""
    t = cfg["train"]
    base, warm = t["lr"], t["warmup_epochs"]
    if warm and epoch < warm:
        return base * (epoch + 1e-3) / warm
    if t["scheduler"] == "step":
        return base * t["gamma"] ** int(epoch // t["step_size"])
    if t["scheduler"] == "cosine":
        span = max(1e-9, t["epochs"] - warm)
        return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (epoch - warm) / span)))
    return base


def make_deterministic() -> None:
    """Deterministic kernels (``train.deterministic``): exact resume on CUDA too, at some speed."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def cpu_has_bf16() -> bool:
    """Does this CPU run bfloat16 natively (AVX512-BF16 or AMX, as oneDNN reports)?"""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_enabled(device: torch.device, amp: bool, log=None) -> bool:
    """Whether ``train.amp`` turns on bfloat16 autocast on ``device``: always on CUDA, on a CPU
    only with native bf16 (else fp32, and ``log`` says why)."""
    if not amp:
        return False
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()):
        return True
    if log is not None:
        log(f"train.amp: bfloat16 off on this {device.type} (no native bf16 support); training in fp32")
    return False


def _autocast(device: torch.device, amp: bool):
    """bfloat16 autocast for the forward pass when ``amp`` (see :func:`amp_enabled`); the loss is
    computed in fp32 outside it."""
    if amp:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


class GlobalBatchSampler(Sampler):
    """Training batches that do not depend on the number of processes: each epoch a seeded
    permutation of the data is cut into global batches of ``global_batch`` (a last partial batch
    is dropped: a batch of one breaks batch norm), and process ``rank`` of ``world`` takes its
    contiguous share of each. One process sees exactly the union of what N processes see."""

    def __init__(self, n: int, global_batch: int, world: int = 1, rank: int = 0, seed: int = 0, epoch: int = 0):
        if global_batch % world:
            raise ConfigError(f"train.batch_size {global_batch} (the global batch) must divide by the {world} processes")
        self.n, self.batch, self.world, self.rank, self.seed, self.epoch = n, global_batch, world, rank, seed, epoch
        self.steps = n // global_batch if n > global_batch else (1 if n else 0)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 7919 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        share = min(self.batch, self.n) // self.world
        for t in range(self.steps):
            gb = perm[t * self.batch:(t + 1) * self.batch]
            yield gb[self.rank * share:(self.rank + 1) * share]


def dist_info() -> tuple[int, int, int]:
    """(world size, rank, local rank) from torchrun's environment; (1, 0, 0) without it."""
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


def _setup_distributed(t: dict) -> tuple[int, int, torch.device | None]:
    """Join torchrun's process group (NCCL on CUDA, Gloo on CPU). Returns (world, rank, device)."""
    import torch.distributed as dist

    world, rank, local = dist_info()
    if world == 1:
        return 1, 0, None
    use_cuda = torch.cuda.is_available() and t["device"] != "cpu"
    if not dist.is_initialized():
        # Import this before the group exists: its functions take ``group=group.WORLD`` as a default
        # argument, bound at import. DDP imports it lazily (via torch.distributed._shard); imported
        # after init_process_group, those defaults hold the live group forever, so
        # destroy_process_group cannot free it, and Gloo's C++ threads live on into interpreter
        # shutdown, where one that touches a Python object aborts the process ("terminate called
        # without an active exception"). Bound to None here, the group is freed (its threads
        # joined) in destroy_process_group, while the interpreter is still whole.
        from torch.distributed.nn import functional as _bind_defaults_before_init  # noqa: F401

        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return world, rank, torch.device("cuda", local)
    return world, rank, torch.device("cpu")


def _train_loader(ds, t: dict, world: int, rank: int, seed: int, epoch: int) -> DataLoader:
    sampler = GlobalBatchSampler(len(ds), t["batch_size"], world, rank, seed, epoch)
    return DataLoader(ds, batch_sampler=sampler, num_workers=t["num_workers"], persistent_workers=False, pin_memory=False)


def _loader(ds, batch_size: int, shuffle: bool, workers: int, seed: int, epoch: int) -> DataLoader:
    g = torch.Generator()
    g.manual_seed(seed * 7919 + epoch)
    # training drops a last partial batch (a batch of one breaks batch norm); evaluation keeps all
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers, generator=g,
                      drop_last=shuffle and len(ds) > batch_size, persistent_workers=False, pin_memory=False)


@torch.no_grad()
def validate(model, codec, loss_fn, loader, device, amp: bool) -> dict:
    """Validation loss (encoded space) and metrics in original-image pixels."""
    from posekit.evaluate import predict_loader
    from posekit.metrics import evaluate_keypoints

    model.eval()
    res = predict_loader(model, codec, loader, device, amp, loss_fn=loss_fn)
    metrics = evaluate_keypoints(res["pred"], res["gt"], res["sizes"], res["mask"])
    return {"val_loss": res["loss"], **{k: metrics[k] for k in ("pck", "pcp", "mse", "mean_px_error")},
            "_first": res.get("first")}


def _log_images(writer, first: dict | None, epoch: int, n: int) -> None:
    if writer is None or not first or n <= 0:
        return
    from posekit.data.transforms import to_image
    from posekit.viz import draw_comparison, make_grid

    ims = [draw_comparison(to_image(first["image"][i]), first["pred"][i], first["keypoints"][i], first["mask"][i] > 0)
           for i in range(min(n, len(first["image"])))]
    writer.add_image("val/predictions", make_grid(ims, ncols=4, cell=160), epoch, dataformats="HWC")


def nothing_left(state: dict, cfg: dict) -> str | None:
    """Why the run saved in checkpoint ``state`` has nothing left to train under ``cfg`` (the config
    it is resumed with, overrides included); None when it has epochs left."""
    t, done = cfg["train"], state["epoch"] + 1
    if done >= t["epochs"]:
        return f"{done} epochs trained (train.epochs is {t['epochs']}); raise --epochs to train on"
    patience = t["early_stopping_patience"]
    if patience and state["bad_epochs"] >= patience:
        return (f"stopped early after {done} epochs (no val-loss improvement for {state['bad_epochs']}, "
                f"train.early_stopping_patience is {patience}); raise it to train on")
    return None


#: settings a resumed run must keep: its weights, optimiser state and split depend on them
RESUME_FIXED = ("model", "codec", "data.input_size", "data.resize_mode", "data.sets", "data.split", "data.split_seed",
                "data.fractions", "data.val_fraction", "train.optimizer")
RESUMABLE_KEYS = ("split", "epoch", "history", "best", "bad_epochs", "optimizer")


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def check_resume(state: dict, cfg: dict) -> None:
    """Refuse, in one line and before anything is written, to resume checkpoint ``state`` under a
    ``cfg`` that changes what its weights, optimiser state or split were made with
    (:data:`RESUME_FIXED`, and whether ``train.ema`` is on), or a checkpoint that cannot resume
    (a shipped model: no optimiser state)."""
    from posekit.config import complete_config

    where = state["path"]
    missing = [k for k in RESUMABLE_KEYS if k not in state]
    if missing:
        raise ConfigError(f"{where}: not a resumable training checkpoint (no {', '.join(missing)}); "
                          "start a new run, e.g. with train.init_from")
    saved = complete_config(state["config"], where)
    for key in RESUME_FIXED:
        a, b = _get(saved, key), _get(cfg, key)
        if a != b:
            raise ConfigError(f"{where}: cannot resume with {key}={b!r}: the run was trained with {a!r} "
                              "(start a new run with --out, or train.init_from to reuse its weights)")
    if bool(cfg["train"]["ema"]) != ("train_model" in state):
        raise ConfigError(f"{where}: trained {'with' if 'train_model' in state else 'without'} "
                          f"train.ema, resumed {'with' if cfg['train']['ema'] else 'without'} it; resume with the "
                          "checkpoint's own train.ema")


def train(cfg: dict, out_dir: str | Path, resume: str | Path | None = None, progress: bool = True,
          log=print) -> dict:
    """Train a recipe; returns the final summary (also in ``last.pt``)."""
    out = Path(out_dir)
    t = cfg["train"]
    start_epoch, history, best, bad_epochs = 0, [], {"val_loss": math.inf, "epoch": None}, 0
    state = None
    split = None
    if resume is not None:
        state = read_checkpoint(resume)
        check_resume(state, cfg)
        split = state["split"]
        start_epoch = state["epoch"] + 1
        history = state["history"]
        best = state["best"]
        bad_epochs = state["bad_epochs"]
        why = nothing_left(state, cfg)
        if why:  # a finished run is left untouched: no data loading, no files rewritten
            if dist_info()[1] == 0:
                log(f"{state['path']}: finished, {why}; nothing to resume")
            return {"out": str(out), "epochs_done": start_epoch, "best": best, "history": history,
                    "stopped_early": bool(state.get("stopped_early")), "nothing_to_resume": True}

    world, rank, ddp_device = _setup_distributed(t)
    main = rank == 0  # under torchrun only rank 0 logs, draws progress and writes files
    if not main:
        log, progress = (lambda *a, **k: None), False
    device = ddp_device or select_device(t["device"])
    if t["deterministic"]:
        make_deterministic()
    seed_everything(int(t["seed"]))  # the initial weights depend on the seed alone
    model = model_from_config(cfg, where="config").to(device)
    fmt = torch.channels_last if t["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if state is not None:  # with train.ema, "model" holds the average and "train_model" the weights trained
        load_weights(model, state.get("train_model", state["model"]), state["path"])
    sets, split, train_ds, val_ds = build_datasets(cfg, split=split, progress=progress)
    if len(train_ds) == 0:
        raise PosekitError("the training split is empty")
    try:
        codec = build_codec(cfg["codec"], cfg["data"]["input_size"])
        loss_fn = build_loss(codec.default_loss if cfg["loss"] == "auto" else cfg["loss"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if state is None and t["init_from"]:
        log(init_weights(model, t["init_from"]))
    net = model  # what the training steps call: the model, or its DDP wrapper
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        if t["sync_bn"]:
            if device.type != "cuda":
                raise ConfigError("train.sync_bn needs CUDA (SyncBatchNorm has no CPU/Gloo implementation)")
            model = net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = build_optimizer(cfg, model)
    if state is not None:
        load_optimizer_state(opt, state["optimizer"], cfg, state["path"])
    ema = _make_ema(model, t["ema"], state) if main else None  # DDP: every process holds the same weights
    if not main:
        return _follow(cfg, net, model, opt, codec, loss_fn, train_ds, device, world, rank, start_epoch)

    # Only now, with data and model known to be good, touch the output folder.
    run = RunFolder(out)
    run.start(dump_config(cfg), split, fresh=resume is None)
    if resume is not None and run.repair():
        log(f"{run.best}: restored from last.pt (an earlier run was stopped between writing the two)")
    writer = None
    try:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch + 1 if start_epoch else None)
    except Exception as e:  # tensorboard missing: train anyway, say so
        log(f"warning: TensorBoard logging off ({type(e).__name__}: {e})")

    counts = split_summary(split)
    log(f"run {out}: {cfg['model']['name']} on {device}, split {split['name']} "
        f"(train {len(train_ds)}, val {len(val_ds)}, test {counts['test']}), epochs {start_epoch + 1}..{t['epochs']}"
        + (f", {world} processes (global batch {t['batch_size']})" if world > 1 else ""))
    amp = amp_enabled(device, bool(t["amp"]), log)
    seed = int(t["seed"])
    epoch = start_epoch - 1
    stopped_early = False
    for epoch in range(start_epoch, t["epochs"]):
        total, count, seen, lr, train_time = _train_epoch(cfg, net, model, opt, codec, loss_fn, train_ds, device,
                                                          world, rank, epoch, progress, ema)
        rec = {"epoch": epoch + 1, "train_loss": total / max(count, 1), "lr": lr,
               "images_per_s": seen / max(train_time, 1e-9), "train_time_s": train_time}
        if len(val_ds):
            vl = _loader(val_ds, t["batch_size"], False, t["num_workers"], seed, 0)
            v = validate(model if ema is None else ema.module, codec, loss_fn, vl, device, amp and device.type == "cuda")
            first = v.pop("_first")
            rec.update({k: None if val is None else float(val) for k, val in v.items()})
            _log_images(writer, first, epoch + 1, t["log_images"])
        monitor = rec.get("val_loss", rec["train_loss"])
        improved = monitor < best["val_loss"]
        if improved:
            best = {"val_loss": monitor, "epoch": epoch + 1, **{k: rec[k] for k in ("pck", "pcp", "mse") if k in rec}}
            bad_epochs = 0
        else:
            bad_epochs += 1
        rec["best_epoch"] = best["epoch"]
        history.append(rec)
        if writer is not None:
            writer.add_scalar("loss/train", rec["train_loss"], epoch + 1)
            if "val_loss" in rec:
                writer.add_scalar("loss/val", rec["val_loss"], epoch + 1)
                for k in ("pck", "pcp", "mse", "mean_px_error"):
                    if rec.get(k) is not None:
                        writer.add_scalar(f"val/{k}", rec[k], epoch + 1)
            writer.add_scalar("lr", lr, epoch + 1)
            writer.add_scalar("speed/images_per_s", rec["images_per_s"], epoch + 1)
            writer.flush()
        patience = t["early_stopping_patience"]
        stopped_early = bool(patience) and bad_epochs >= patience
        payload = dict(config=cfg, split=split, epoch=epoch, history=history, best=best, bad_epochs=bad_epochs,
                       model=model.state_dict(), optimizer=opt.state_dict(), metrics=rec,
                       stopped_early=stopped_early)
        if ema is not None:  # "model" (what evaluate, predict and shipping read) is the average
            payload.update(model=ema.module.state_dict(), train_model=model.state_dict(),
                           ema_updates=int(ema.n_averaged))
        run.save_epoch(payload, epoch + 1, improved, t["save_every"], history)
        msg = " ".join(f"{k}={rec[k]:.4g}" for k in ("train_loss", "val_loss", "pck", "pcp", "images_per_s")
                       if rec.get(k) is not None)
        log(f"epoch {epoch + 1}/{t['epochs']} {msg}{' *' if improved else ''}")
        if world > 1:  # the other processes follow rank 0's decision
            _broadcast_flag(stopped_early, device)
        if stopped_early:
            log(f"early stopping: no val-loss improvement for {patience} epochs (best epoch {best['epoch']})")
            break
    if writer is not None:
        writer.close()
    return {"out": str(out), "epochs_done": epoch + 1, "best": best, "stopped_early": stopped_early,
            "history": history}


def _step(net, codec, loss_fn, batch, device, fmt, amp: bool, world: int) -> tuple[torch.Tensor, int]:
    """Forward one (per-process) batch; returns (loss to back-propagate, samples). Under DDP the
    loss is rescaled so that DDP's gradient average equals the gradient of the loss over the
    global batch, also when processes hold different numbers of annotated joints."""
    x = batch["image"].to(device, non_blocking=True).contiguous(memory_format=fmt)
    target, weight = codec.encode(batch["keypoints"].to(device), batch["mask"].to(device))
    with _autocast(device, amp):
        outp = net(x)
    loss = loss_fn(codec.loss_input(outp.float()), target, weight)
    if world > 1:
        import torch.distributed as dist

        w_local = weight.float().sum()
        w_all = w_local.detach().clone()
        dist.all_reduce(w_all)
        loss = loss * (w_local.clamp_min(1.0) / w_all.clamp_min(1.0)) * world if w_local > 0 else loss * 0
    return loss, len(x)


def _all_sum(total: float, count: int, device) -> tuple[float, int]:
    import torch.distributed as dist

    v = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(v)
    return float(v[0]), int(v[1])


def _broadcast_flag(flag: bool, device) -> bool:
    import torch.distributed as dist

    v = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(v, 0)
    return bool(v.item())


def _train_epoch(cfg, net, model, opt, codec, loss_fn, train_ds, device, world: int, rank: int, epoch: int,
                 progress: bool = False, ema=None) -> tuple[float, int, int, float, float]:
    """One epoch of training steps on this process. Returns (loss sum, samples, images seen by
    all processes, last learning rate, seconds); under DDP the loss sum and samples are global."""
    t = cfg["train"]
    seed = int(t["seed"])
    fmt = torch.channels_last if t["channels_last"] else torch.contiguous_format
    amp = amp_enabled(device, bool(t["amp"]))
    torch.manual_seed(seed * 1_000_003 + epoch)
    np.random.seed((seed * 1_000_003 + epoch) % 2**32)
    train_ds.set_epoch(epoch)
    loader = _train_loader(train_ds, t, world, rank, seed, epoch)
    steps = len(loader) if not t["max_steps_per_epoch"] else min(len(loader), t["max_steps_per_epoch"])
    net.train()
    total, count, seen, lr = 0.0, 0, 0, lr_at(cfg, epoch)
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{t['epochs']}", unit="batch", leave=False)
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        lr = lr_at(cfg, epoch + step / steps)
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        loss, n = _step(net, codec, loss_fn, batch, device, fmt, amp, world)
        if not torch.isfinite(loss):
            raise PosekitError(f"training diverged: loss is {loss.item()} at epoch {epoch + 1} step {step + 1} "
                               "(lower train.lr)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        opt.step()
        if ema is not None:
            ema.update_parameters(model)
        total += loss.item() * n
        count += n
        seen += n * world
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / count:.5f}", lr=f"{lr:.2e}")
    if bar is not None:
        bar.close()
    train_time = time.perf_counter() - t0
    if world > 1:  # the mean loss over the global batch, as one process would report it
        total, count = _all_sum(total, count, device)
    return total, count, seen, lr, train_time


def _follow(cfg, net, model, opt, codec, loss_fn, train_ds, device, world, rank, start_epoch) -> dict:
    """The training loop of a process other than rank 0: the same steps (DDP averages the
    gradients), no logging, validation or files; it stops when rank 0 does."""
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg["train"]["epochs"]):
        _train_epoch(cfg, net, model, opt, codec, loss_fn, train_ds, device, world, rank, epoch)
        if _broadcast_flag(False, device):
            break
    return {"rank": rank, "epochs_done": epoch + 1}
