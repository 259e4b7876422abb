"""The network alone, as trained against as ``Predictor`` runs it (``inference_ready``: batch norm
folded into the convolutions, channels-last weights), at the batch sizes inference uses (1: the
first pass; 3: the shipped model's three refinement crops).

    python benchmarks/network_speed.py --model posekit-lsp --batch 1 3 --json reports/network_speed_cpu.json

Both are timed in the same run, alternating, and the largest output difference is reported."""
from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from posekit.checkpoint import load_model
from posekit.models import inference_ready


def median_ms(model, x: torch.Tensor, runs: int) -> float:
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="posekit-lsp")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    plain, _, ck = load_model(a.model)
    ready = inference_ready(copy.deepcopy(plain))
    s = ck["recipe"].data.input_size
    rows = []
    for b in a.batch:
        x = torch.randn(b, 3, s, s, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            diff = float((plain(x) - ready(x)).abs().max())
        t_plain, t_ready = [], []
        for _ in range(3):  # alternate, so both see the same machine load
            t_plain.append(median_ms(plain, x, a.runs))
            t_ready.append(median_ms(ready, x, a.runs))
        row = {"batch": b, "as_trained_ms": min(t_plain), "inference_ready_ms": min(t_ready),
               "speedup": round(min(t_plain) / min(t_ready), 2), "max_abs_diff": diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "input_size": s, "torch_threads": torch.get_num_threads(), "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
