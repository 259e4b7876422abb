"""Training throughput: images/s of the data pipeline alone (decode cache/pack -> augment ->
batches, no model) and of full training steps (pipeline + forward + backward + optimizer), for a
recipe, with channels_last / AMP / torch.compile switches.

    python benchmarks/train_throughput.py --config configs/release.yaml --data $POSEKIT_DATA \
        --json reports/train_throughput_cpu.json
    python benchmarks/train_throughput.py --config configs/release.yaml data.pack=packs/lsp-standard-160.npz --device cuda --amp

The pipeline should deliver well over what training consumes (the issue asks for >= 2x), or the
model waits for data."""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from posekit.checkpoint import model_from_config
from posekit.codecs import build_codec
from posekit.config import load_config
from posekit.losses import build_loss
from posekit.train import _step, _train_loader, build_datasets, build_optimizer, lr_at


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=40, help="timed batches per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: the recipe's)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--json")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    over = list(a.overrides) + ([f"data.root={a.data}"] if a.data else []) + [f"train.device={a.device}"]
    if a.workers is not None:
        over.append(f"train.num_workers={a.workers}")
    if a.channels_last is not None:
        over.append(f"train.channels_last={str(a.channels_last).lower()}")
    cfg = load_config(a.config, over)
    t = cfg["train"]
    device = torch.device(a.device)
    t0 = time.perf_counter()
    _, _, train_ds, _ = build_datasets(cfg, progress=False)
    setup_s = time.perf_counter() - t0
    train_ds.set_epoch(0)
    n_batches = a.warmup + a.batches

    def timed(loader, fn) -> float:
        it = iter(loader)
        for _ in range(a.warmup):
            fn(next(it))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1, n = time.perf_counter(), 0
        for _ in range(a.batches):
            b = next(it)
            fn(b)
            n += len(b["image"])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t1)

    if len(train_ds) < n_batches * t["batch_size"]:
        raise SystemExit(f"only {len(train_ds)} training images: lower --batches")
    pipe = timed(_train_loader(train_ds, t, 1, 0, int(t["seed"]), 0), lambda b: b["image"].shape)

    model = model_from_config(cfg).to(device)
    fmt = torch.channels_last if t["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=fmt)
    net = torch.compile(model) if a.compile else model
    codec = build_codec(cfg["codec"], cfg["data"]["input_size"])
    loss_fn = build_loss(codec.default_loss if cfg["loss"] == "auto" else cfg["loss"])
    opt = build_optimizer(cfg, model)
    net.train()

    def step(b):
        for gparam in opt.param_groups:
            gparam["lr"] = lr_at(cfg, 1.0)
        loss, _ = _step(net, codec, loss_fn, b, device, fmt, a.amp and device.type == "cuda", 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train = timed(_train_loader(train_ds, t, 1, 0, int(t["seed"]), 1), step)
    res = {"config": a.config, "model": cfg["model"]["name"], "input_size": cfg["data"]["input_size"],
           "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
           "batch_size": t["batch_size"], "workers": t["num_workers"], "channels_last": t["channels_last"],
           "amp": a.amp, "compile": a.compile, "pack": cfg["data"]["pack"], "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "setup_s": round(setup_s, 1),
           "pipeline_images_per_s": round(pipe, 1), "train_images_per_s": round(train, 1),
           "pipeline_over_train": round(pipe / train, 2)}
    print(json.dumps(res))
    print(f"data pipeline alone: {pipe:.0f} images/s; full training steps: {train:.0f} images/s; "
          f"ratio {pipe / train:.1f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
