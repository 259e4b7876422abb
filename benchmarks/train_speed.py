"""Training-step speed of a recipe's model on this machine (model compute only: forward,
backward and optimiser step on random inputs of the recipe's size), in images/s.

    python benchmarks/train_speed.py --config configs/paper.yaml --batch 32 --steps 3 --json reports/x.json

Prints one line per config and, with --json, writes the figures (with the machine's thread count)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from posekit.checkpoint import model_from_config
from posekit.config import load_config
from posekit.models import count_parameters, model_flops
from posekit.train import build_optimizer


def measure(config: str, batch: int, steps: int, warmup: int = 1) -> dict:
    cfg = load_config(config)
    model = model_from_config(cfg)
    opt = build_optimizer(cfg, model)
    s = cfg.data.input_size
    x = torch.randn(batch, 3, s, s)
    y = torch.rand(batch, *model(x[:1]).shape[1:])  # coordinates or heatmaps, as the model outputs
    model.train()
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    per_step = sorted(times)[len(times) // 2]
    return {"config": config, "model": cfg.model.name, "input_size": s, "batch": batch,
            "params": count_parameters(model), "gflops_per_image": round(model_flops(model, s), 3),
            "step_s_median": round(per_step, 4), "images_per_s": round(batch / per_step, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", default=["configs/paper.yaml", "configs/poster.yaml"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    rows = [measure(c, a.batch, a.steps) for c in a.config]
    for r in rows:
        print(f"{r['config']}: {r['model']} {r['input_size']}px batch {r['batch']}: {r['images_per_s']} images/s "
              f"({r['step_s_median']} s/step, {r['gflops_per_image']} GFLOPs/image fwd, {r['params']:,} params)")
    if a.json:
        out = {"device": "cpu", "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "machine": platform.machine(), "torch": torch.__version__, "results": rows}
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
