"""End-to-end CPU latency at batch 1: JPEG decode, resize/letterbox, normalise, network, decode,
map back to original pixels — what a user of `predict` waits for, per image.

    python benchmarks/latency.py --model posekit-lsp paper_vgg poster_cnn --image path.jpg --json reports/latency_cpu.json
    python benchmarks/latency.py --model posekit-lsp --image x.jpg --busy 2 --threads 0 1 2 --json reports/latency_busy_cpu.json

``--busy N`` measures each model twice in one run: on the idle machine, then with N CPU-bound
processes running beside it (a busy loop each, as a browser and a build on a user's laptop; they
stop when the measurement ends, and after ``--busy-seconds`` at the latest), and reports the busy
p50 over the idle p50. ``--threads`` lists torch intra-op thread counts to compare (0: posekit's
own policy, :func:`posekit.predict.default_threads`).

A --model is a shipped model name, a checkpoint/run folder, or a registry name (random weights, with
the input size and codec of configs/paper.yaml / poster.yaml / release.yaml). A checkpoint runs
through ``Predictor.predict`` exactly as ``posekit predict`` does, so a model with refinement crops
(``infer.refine``) is timed with all of them (``looks`` in the JSON: network inputs per image, the
first pass's (one, or one per ``infer.box_margins``) plus one per crop; ``passes``: network calls,
the crops running as one batch), on ``Predictor(threads=...)``. Registry models run as ``Predictor``
runs a network (BN folded, channels-last: ``posekit.models.inference_ready``); parameters and GFLOPs
are counted on the model as trained (``gflops_per_image`` adds every pass and the person detector).

A checkpoint's settings can be changed per entry as ``NAME:key=value,...``, so several ways of
running one model are timed side by side in one run: ``detector=off`` (the whole image) or a
detector name, ``refine=off`` or margins ``refine=0.05;0.13`` (``refine_weight=0.1``), the multi-scale test
``box_margins=0.05;0.2``, ``flip_test=on``, ``backend=onnx``
(NAME an .onnx file), ``precision=fp32`` or ``bf16`` (default: the model's own, auto).
``--image`` takes several images, run in turn:

    python benchmarks/latency.py --model posekit-lsp:detector=off posekit-lsp posekit-lsp:refine=off \
        --image $POSEKIT_DATA/lsp/images/im1[0-9][0-9][0-9].jpg --runs 200 --json reports/latency_topdown_cpu.json"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from posekit.checkpoint import codec_from_config, load_model, model_from_config
from posekit.config import load_config
from posekit.data.images import read_image
from posekit.inference import prepare
from posekit.models import MODELS, count_parameters, inference_ready, model_flops
from posekit.predict import Predictor, default_threads
from posekit.tta import run_network, to_original

RECIPES = {"paper_vgg": "configs/paper.yaml", "poster_cnn": "configs/poster.yaml", "resnet_pose": "configs/release.yaml"}


def _load(spec: str):
    if spec in MODELS:
        cfg = load_config(RECIPES[spec])
        model = model_from_config(cfg).eval()
        return model, codec_from_config(cfg), cfg
    model, codec, ck = load_model(spec)
    return model, codec, ck["recipe"]


def _first_pass(model, codec, cfg):
    """What ``Predictor.predict`` does for a model without refinement: prepare, network, decode,
    original pixels."""
    s, mode = cfg.data.input_size, cfg.data.resize_mode

    def run(image: Path) -> None:
        p = prepare(read_image(image), None, s, mode)
        to_original(run_network(model, codec, p.input[None]).keypoints, p.matrix[None])
    return run


def parse_spec(spec: str) -> tuple[str, dict]:
    """``NAME[:key=value,...]`` -> (model, Predictor options): ``detector=off|NAME``,
    ``refine=off|M[;M...]``, ``refine_weight=W``, ``box_margins=off|M[;M...]``, ``flip_test=on|off``,
    ``detector_flip_test=on|off``, ``backend=torch|onnx``, ``precision=auto|fp32|bf16``,
    ``denoise=off|LEVEL`` (off: no noise filter before either network)."""
    name, _, opts = spec.partition(":")
    out = {}
    for kv in filter(None, opts.split(",")):
        k, _, v = kv.partition("=")
        if k == "detector":
            out[k] = False if v == "off" else v
        elif k in ("refine", "box_margins"):
            out[k] = False if v == "off" else [float(m) for m in v.split(";")]
        elif k in ("flip_test", "detector_flip_test"):
            out[k] = v == "on"
        elif k in ("backend", "precision"):
            out[k] = v
        elif k == "refine_weight":
            out[k] = float(v)
        elif k == "denoise":
            out[k] = False if v == "off" else float(v)
        else:
            raise SystemExit(f"latency.py: unknown option {k!r} in {spec!r}")
    return name, out


def measure(spec: str, images: list[Path], runs: int, threads: int = 0, warmup: int = 5) -> dict:
    """Latency of one model on ``threads`` torch threads (0: posekit's policy, ``default_threads(1)``),
    cycling through ``images``."""
    n_threads = threads or default_threads(1)
    name, opts = parse_spec(spec)
    model, codec, cfg = _load(name) if opts.get("backend", "torch") == "torch" else (None, None, None)
    detector, precision = None, "fp32"
    if name in MODELS:
        s = cfg.data.input_size
        params, gflops = count_parameters(model), model_flops(model, s)  # as trained (before BN folding)
        torch.set_num_threads(n_threads)
        run, looks, passes = _first_pass(inference_ready(model), codec, cfg), 1, 1
        flip = False  # a registry network runs its first pass alone
    else:  # the predictor sets its own threads around every call
        pred = Predictor(name, device="cpu", threads=threads or None, **opts)
        cfg, s = pred.config, pred.input_size
        m = model_from_config(cfg).eval()
        params, gflops = count_parameters(m), model_flops(m, s)
        crops = len(pred.refine or [])
        first = len(pred.box_margins) if pred.box_margins else 1  # the multi-scale test's crops
        run, looks, passes = (lambda path: pred.predict(str(path))), first + crops, 1 + (crops > 0)
        flip, precision = pred.flip_test, pred.precision  # the model's own, or the entry's
        if pred.detector is not None:
            d = pred.detector
            detector = {"name": d.name, "input_size": d.input_size, "flip_test": d.settings.flip_test,
                        "gflops": round(model_flops(d.model, d.input_size), 3)}
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            run(images[i % len(images)])
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    return {"model": spec, "arch": cfg.model.name, "input_size": s, "params": params,
            "gflops": round(gflops, 3), "looks": looks, "passes": passes, "precision": precision,
            "gflops_per_image": round(gflops * looks * (2 if flip else 1)
                                      + (detector["gflops"] * (1 + detector["flip_test"]) if detector else 0), 3),
            "detector": detector,
            "p50_ms": round(float(np.median(ms)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2), "runs": runs,
            "threads": _threads_label(threads), "torch_threads": n_threads}


def _spin(stop_at: float) -> None:
    """A CPU-bound busy loop until ``stop_at`` (time.time())."""
    x = 0
    while time.time() < stop_at:
        x += 1


class Busy:
    """``n`` CPU-bound processes while the ``with`` block runs (and ``seconds`` at most)."""

    def __init__(self, n: int, seconds: float):
        self.n, self.seconds, self.procs = n, seconds, []

    def __enter__(self):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.procs = [ctx.Process(target=_spin, args=(time.time() + self.seconds,), daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        time.sleep(1.0)  # let them reach full speed
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
            p.join()


def _threads_label(n: int) -> str:
    return "policy" if n == 0 else str(n)


def _run_set(models, images, runs, threads_list) -> list[dict]:
    return [measure(m, images, runs if m != "paper_vgg" else max(5, runs // 5), n) for m in models for n in threads_list]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["posekit-lsp", "paper_vgg", "poster_cnn"])
    ap.add_argument("--image", nargs="+", required=True, help="JPEGs to run on, in turn (e.g. LSP test images)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="torch intra-op threads to compare (0: posekit's policy, the default)")
    ap.add_argument("--busy", type=int, default=0, help="also measure with N CPU-bound processes beside it")
    ap.add_argument("--busy-seconds", type=float, default=600, help="the busy processes stop after this at the latest")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    images = [Path(p) for p in a.image]
    rows = _run_set(a.model, images, a.runs, a.threads)
    busy_rows = []
    if a.busy:
        with Busy(a.busy, a.busy_seconds):
            busy_rows = _run_set(a.model, images, a.runs, a.threads)
        for r, b in zip(rows, busy_rows):
            b["busy_over_idle_p50"] = round(b["p50_ms"] / r["p50_ms"], 2)
    for label, rs in (("idle", rows), (f"{a.busy} busy", busy_rows)):
        for r in rs:
            print(f"{label:<7} {r['model']:<32} {r['arch']:<12} {r['input_size']}px {r['params']:>11,} params "
                  f"{r['gflops']:>7} GFLOPs x {r['looks']} look(s)  threads {r['threads']:<6} "
                  f"p50 {r['p50_ms']:>8} ms  p90 {r['p90_ms']:>8} ms"
                  + (f"  busy/idle {r['busy_over_idle_p50']}" if "busy_over_idle_p50" in r else ""))
    if a.json:
        from posekit.utils import write_json

        out = {"device": "cpu", "cpu_count": os.cpu_count(), "images": [str(p) for p in images], "results": rows}
        if a.busy:
            out.update(busy_processes=a.busy, busy_results=busy_rows)
        write_json(a.json, out)


if __name__ == "__main__":
    main()
