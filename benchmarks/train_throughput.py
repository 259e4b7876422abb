"""Training throughput of a recipe: images/s of the data pipeline alone (cache or pack -> augment
-> batches, no model) and of full training steps (pipeline + forward + loss + backward +
optimiser step, as ``posekit.train.train_epoch`` takes them), on the training loop's own pieces
(``PoseTask``, ``GlobalBatchSampler``, ``build_optimizer``, ``lr_at``, ``Loop``).

    python benchmarks/train_throughput.py --config configs/release.yaml --data $POSEKIT_DATA \
        --json reports/train_throughput_cpu.json
    python benchmarks/train_throughput.py --config configs/release.yaml data.pack=packs/lsp-standard-144.npz \
        --json reports/train_throughput_pack_cpu.json
    python benchmarks/train_throughput.py --config configs/release.yaml --data $POSEKIT_DATA --amp

Training steps run in fp32 (whatever ``train.amp`` says). ``--amp`` also times them under
bfloat16 autocast (``posekit.train.autocast``), forced on even where ``train.amp`` would leave it
off (``bf16_native`` says whether this device runs bf16 natively): the same model, optimiser and
batches, fp32 and bf16 steps alternating one by one in this process, so both see the same load.

The pipeline should deliver well over what training consumes (the issue asks for >= 2x), or the
model waits for data."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from posekit.config import load_config
from posekit.distributed import GlobalBatchSampler
from posekit.pose_task import PoseTask
from posekit.train import Loop, amp_enabled, build_optimizer, lr_at


def batches(cfg, dataset, epoch: int):
    """One epoch of training batches, drawn as ``train_epoch`` draws them (one process)."""
    t = cfg.train
    dataset.set_epoch(epoch)
    sampler = GlobalBatchSampler(len(dataset), t.batch_size, 1, 0, t.seed, epoch)
    return iter(DataLoader(dataset, batch_sampler=sampler, num_workers=t.num_workers))


def step(loop: Loop, batch: dict) -> None:
    """One training step, as ``train_epoch`` takes it."""
    for group in loop.opt.param_groups:
        group["lr"] = lr_at(loop.cfg, 1.0)
    loss, _, _ = loop.task.loss(loop.forward, batch, loop.device)
    loop.opt.zero_grad(set_to_none=True)
    loss.backward()
    if loop.cfg.train.grad_clip:
        torch.nn.utils.clip_grad_norm_(loop.model.parameters(), loop.cfg.train.grad_clip)
    loop.opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default=None, help="dataset root (default $POSEKIT_DATA)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=40, help="timed batches per measurement")
    ap.add_argument("--warmup", type=int, default=5, help="untimed batches before each measurement")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: the recipe's)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--amp", action="store_true", help="also time the steps under bfloat16 autocast, beside fp32")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    a = ap.parse_args()
    over = list(a.overrides) + ([f"data.root={a.data}"] if a.data else []) + [f"train.device={a.device}"]
    if a.workers is not None:
        over.append(f"train.num_workers={a.workers}")
    if a.channels_last is not None:
        over.append(f"train.channels_last={str(a.channels_last).lower()}")
    cfg = load_config(a.config, over)
    t, device = cfg.train, torch.device(a.device)
    modes = ("fp32", "bf16") if a.amp else ("fp32",)
    torch.manual_seed(t.seed)
    t0 = time.perf_counter()
    task = PoseTask(cfg)  # the model, codec, loss and datasets, as `posekit train` builds them
    setup_s = time.perf_counter() - t0
    per_epoch = len(task.train_set) // t.batch_size
    if per_epoch < len(modes) * (a.warmup + a.batches):
        raise SystemExit(f"only {len(task.train_set)} training images ({per_epoch} batches): lower --batches")

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    # the data pipeline alone
    it = batches(cfg, task.train_set, 0)
    for _ in range(a.warmup):
        next(it)
    t1, n = time.perf_counter(), 0
    for _ in range(a.batches):
        n += len(next(it)["image"])
    pipe = n / (time.perf_counter() - t1)
    del it

    # full training steps: one model and optimiser; fp32 and bf16 steps alternate on one stream of batches
    model = task.model.to(device).to(memory_format=torch.channels_last if t.channels_last else torch.contiguous_format)
    net = torch.compile(model) if a.compile else model
    fp32 = Loop(cfg, task, net, build_optimizer(cfg, model), device, world=1, rank=0, amp=False)
    loops = {"fp32": fp32, "bf16": dataclasses.replace(fp32, amp=True)}
    net.train()
    it = batches(cfg, task.train_set, 1)
    seconds, images = dict.fromkeys(modes, 0.0), dict.fromkeys(modes, 0)
    for i in range(a.warmup + a.batches):
        for mode in modes:
            sync()
            t1 = time.perf_counter()
            b = next(it)
            step(loops[mode], b)
            sync()
            if i >= a.warmup:
                seconds[mode] += time.perf_counter() - t1
                images[mode] += len(b["image"])
    speed = {m: images[m] / seconds[m] for m in modes}

    res = {"config": a.config, "model": cfg.model.name, "input_size": cfg.data.input_size,
           "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
           "batch_size": t.batch_size, "workers": t.num_workers, "channels_last": t.channels_last,
           "amp": a.amp, "compile": a.compile, "pack": cfg.data.pack, "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "setup_s": round(setup_s, 1), "batches": a.batches,
           "pipeline_images_per_s": round(pipe, 1), "train_images_per_s": round(speed["fp32"], 1),
           "pipeline_over_train": round(pipe / speed["fp32"], 2)}
    if a.amp:
        res.update(bf16_native=amp_enabled(device, True),  # would train.amp turn bf16 on here?
                   train_bf16_images_per_s=round(speed["bf16"], 1),
                   bf16_over_fp32=round(speed["bf16"] / speed["fp32"], 2),
                   pipeline_over_train_bf16=round(pipe / speed["bf16"], 2))
    print(json.dumps(res))
    print(f"data pipeline alone: {pipe:.0f} images/s; full training steps, fp32: {speed['fp32']:.1f} images/s "
          f"(pipeline {pipe / speed['fp32']:.1f}x)"
          + (f"; bf16 autocast: {speed['bf16']:.1f} images/s (bf16/fp32 {speed['bf16'] / speed['fp32']:.2f}x)"
             if a.amp else ""))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
