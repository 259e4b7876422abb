"""Choose the noise levels from which posekit median-filters an image before its person detector
(``detect.denoise``) and before its pose crops (``infer.denoise``).

    python benchmarks/denoise.py --model posekit-lsp posekit-lsp-fast --data $POSEKIT_DATA \
        --settings off/off 0.01/off 5/off 8/off 5/5 5/10 8/12 --json reports/denoise_val.json
    python benchmarks/denoise.py ... --split lsp-test --settings off/off 5/5 --json reports/denoise_lsp_test.json

Each setting is ``DETECTOR/POSE``: a threshold in grey levels of
:func:`posekit.data.transforms.noise_sigma` (Immerkaer's estimate on the grey image, which reads
about 0.67x the per-channel noise sigma; 0.01: every image) or ``off``. Each model is scored (PCK@0.2, its own
settings otherwise, the whole image through its detector) on the clean images and on the same
images with Gaussian noise added to every channel at each ``--levels`` sigma (grey levels,
seeded as benchmarks/robustness.py's noise). The choice is the setting with the best mean over
the levels and the models, on the validation images (``--split val``: the first model's); the
report also lists each setting's clean PCK, the figure a setting must not give away, the noise
estimates of the clean images (percentiles) and what the estimate and the filter cost on images
of three sizes (median of 20 runs, milliseconds, on this machine)."""
from __future__ import annotations

import argparse
import os

import numpy as np


def parse_setting(text: str) -> tuple[float | None, float | None]:
    """``"DET/POSE"`` -> (detector threshold, pose threshold), each a positive number or None
    for ``off``. Raises ValueError for anything else."""
    parts = text.split("/")
    if len(parts) != 2:
        raise ValueError(f"setting {text!r}: expected DETECTOR/POSE, e.g. 8/12 or off/off")

    def one(p: str) -> float | None:
        if p == "off":
            return None
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"setting {text!r}: {p!r} is not a number or off") from None
        if not v > 0:
            raise ValueError(f"setting {text!r}: a threshold must be positive or off")
        return v

    return one(parts[0]), one(parts[1])


def choose(rows: dict[str, dict]) -> str:
    """The setting (key of ``rows``) with the highest ``mean``; ties: the first given."""
    return max(rows, key=lambda k: rows[k]["mean"])


def noisy_images(images: list[np.ndarray], kps, masks, sigma: float, seed: int) -> list[np.ndarray]:
    """``images`` with Gaussian noise of ``sigma`` grey levels per channel (robustness.py's
    corruption, its seed for that severity); sigma 0: the images themselves."""
    if sigma == 0:
        return images
    from robustness import SEVERITIES, corrupt, corruption_rng

    levels = SEVERITIES["noise"]
    if sigma in levels:
        rng = corruption_rng(seed, "noise", levels.index(sigma))
    else:
        rng = np.random.default_rng([seed, int(sigma * 1000), list(SEVERITIES).index("noise") + 1])
    return [corrupt(im, "noise", sigma, kp, m, rng) for im, kp, m in zip(images, kps, masks)]


def costs(runs: int = 20) -> dict[str, dict[str, float]]:
    """Median milliseconds of the noise estimate and of the 3x3 median filter on random RGB
    images of an LSP photo's size, 640x480 and 1920x1080."""
    import time

    import cv2

    from posekit.data.transforms import noise_sigma

    out = {}
    rng = np.random.default_rng(0)
    for w, h in ((150, 200), (640, 480), (1920, 1080)):
        im = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        row = {}
        for name, f in (("noise_sigma_ms", noise_sigma), ("median_ms", lambda x: cv2.medianBlur(x, 3))):
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                f(im)
                times.append((time.perf_counter() - t) * 1e3)
            row[name] = round(float(np.median(times)), 3)
        out[f"{w}x{h}"] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=["posekit-lsp"])
    ap.add_argument("--data", default=os.environ.get("POSEKIT_DATA"))
    ap.add_argument("--split", choices=["val", "lsp-test"], default="val")
    ap.add_argument("--limit", type=int, default=None, help="first N images of the split (quick runs)")
    ap.add_argument("--settings", nargs="+", default=["off/off", "5/5"], help="DETECTOR/POSE thresholds or off")
    ap.add_argument("--levels", type=float, nargs="+", default=[0.0, 10.0, 20.0, 40.0],
                    help="noise sigmas per channel, grey levels (0: clean)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    try:
        settings = {s: parse_setting(s) for s in a.settings}
    except ValueError as e:
        ap.error(str(e))

    from robustness import score, split_samples

    from posekit.predict import Predictor
    from posekit.utils import write_json

    images, kps, masks, _ = split_samples(a.data, a.split, a.model[0], a.limit)
    inputs = {sigma: noisy_images(images, kps, masks, sigma, a.seed) for sigma in a.levels}
    from posekit.data.transforms import noise_sigma

    estimates = [noise_sigma(im) for im in images]
    rows = {}
    for key, (det, pose) in settings.items():
        per_model = {}
        for model in a.model:
            pred = Predictor(model, denoise=False if pose is None else pose)  # (None would be the model's own)
            if pred.detector is not None:
                pred.detector.settings = pred.detector.settings.model_copy(update={"denoise": det})
            per_model[model] = {f"{sigma:g}": score(pred, inputs[sigma], kps, masks) for sigma in a.levels}
            print(f"{key} {model}: " + ", ".join(f"noise {k} {v:.3f}" for k, v in per_model[model].items()), flush=True)
        rows[key] = {"detect.denoise": det, "infer.denoise": pose, "pck": per_model,
                     "clean": float(np.mean([m.get("0", np.nan) for m in per_model.values()])),
                     "mean": float(np.mean([v for m in per_model.values() for v in m.values()]))}
    best = choose(rows)
    print(f"best mean over levels and models: {best} ({rows[best]['mean']:.4f}; off/off "
          f"{rows['off/off']['mean']:.4f})" if "off/off" in rows else f"best: {best}")
    write_json(a.json, {"split": a.split, "images": len(images), "levels": a.levels, "seed": a.seed,
                        "models": a.model, "chosen_on": "mean PCK@0.2 over the levels and the models",
                        "chosen": best, "settings": rows,
                        "clean_noise_sigma_percentiles": {str(q): round(float(np.percentile(estimates, q)), 2)
                                                          for q in (5, 25, 50, 75, 95, 99)},
                        "costs": costs(),
                        "command": "python benchmarks/denoise.py " + " ".join(argv if argv is not None else
                                                                              __import__("sys").argv[1:])})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
