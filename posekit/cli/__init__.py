"""``posekit train|evaluate|predict|explain|serve|export|data ...``: a thin command line over the
library (the work of each subcommand is in :mod:`posekit.cli.commands`).

Bad input (missing data, a corrupt image, a wrong ``joints.mat``, an unknown config key or model)
ends with one line ``posekit: error: ...`` on stderr and exit code 2."""
from __future__ import annotations

import argparse
import os
import sys

from posekit.cli import commands
from posekit.errors import PosekitError

REFINE_HELP = ("after the first pass, run refinement crops around its estimate, one per margin (per side; "
               "several: comma-separated, e.g. 0.05,0.13,0.22, their heatmaps fused); off: one pass "
               "(default: the model's own infer.refine)")
BOX_MARGINS_HELP = ("multi-scale test: crop each detected person box once per margin (per side, comma-separated, "
                    "e.g. 0.05,0.2), the crops in one batch and their heatmaps fused; off: one crop at the "
                    "model's detect.box_margin (default: the model's own infer.box_margins)")
REFINE_WEIGHT_HELP = "the first pass's weight in [0, 1) in the fused heatmaps (default: the model's own)"
THRESHOLD_HELP = ("person score in [0, 1] under which the answer is 'no person found' "
                  "(default: the model's own infer.person_threshold)")
MODEL_HELP = "shipped model name, checkpoint file, run folder or (with --backend onnx) .onnx file"


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser whose options may come between its positional arguments
    (``posekit predict a.png --json b.png``): argparse's intermixed parsing, which the top-level
    parser cannot do itself (it has subcommands). A parser with subcommands of its own
    (``data``) parses as usual."""

    def parse_known_args(self, args=None, namespace=None):
        if self._subparsers is not None or getattr(self, "_intermixing", False):
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls parse_known_args twice
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def refine_arg(text: str) -> list[float] | bool:
    """``--refine`` and ``--box-margins``: a margin in [0, 2], comma-separated margins (at most 8),
    or off."""
    if text.strip().lower() in ("off", "none", "no", "false"):
        return False
    from posekit.config import MAX_REFINE_CROPS

    try:
        ms = [float(t) for t in text.split(",")]
    except ValueError:
        ms = []
    if not 1 <= len(ms) <= MAX_REFINE_CROPS or not all(0 <= m <= 2 for m in ms):
        raise argparse.ArgumentTypeError(f"expected a margin in [0, 2], up to {MAX_REFINE_CROPS} of them "
                                         f"comma-separated, or 'off', got {text!r}")
    return ms


def _fraction(text: str, upper_open: bool) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (0 <= v < 1 if upper_open else 0 <= v <= 1):
        raise argparse.ArgumentTypeError(f"expected a number in [0, {'1)' if upper_open else '1]'}, got {text!r}")
    return v


def weight_arg(text: str) -> float:
    """A weight in [0, 1)."""
    return _fraction(text, True)


def unit_arg(text: str) -> float:
    """A number in [0, 1]."""
    return _fraction(text, False)


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train a recipe", description="Train a recipe. Any config key can be "
                       "overridden as section.key=value, e.g. train.lr=0.001 data.input_size=128.")
    t.add_argument("--config", help="recipe YAML (configs/*.yaml)")
    t.add_argument("--resume", help="run folder or last.pt to continue")
    t.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    t.add_argument("--out", help="run folder (default runs/<name>)")
    t.add_argument("--epochs", type=int, help="total epochs (overrides train.epochs)")
    t.add_argument("--force", action="store_true", help="train into a folder that already holds a run")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    t.set_defaults(func=commands.cmd_train)


def _add_detector_flip_test(p) -> None:
    p.add_argument("--detector-flip-test", choices=["on", "off"], help="the person detector's flip test: the image "
                   "and its mirror in one batch, their outputs averaged (default: the model's own detect.flip_test)")


def _add_refinement(p, box_margins: bool = True, crop_border: bool = True) -> None:
    if box_margins:
        p.add_argument("--box-margins", type=refine_arg, metavar="MARGIN[,MARGIN...]|off", help=BOX_MARGINS_HELP)
    p.add_argument("--refine", type=refine_arg, metavar="MARGIN[,MARGIN...]|off", help=REFINE_HELP)
    p.add_argument("--refine-weight", type=weight_arg, metavar="W", help=REFINE_WEIGHT_HELP)
    if crop_border:
        p.add_argument("--crop-border", type=int, metavar="PX", help="edge pixels repeated where a refinement crop "
                       "leaves the image (default: the model's own)")


def _add_denoise(p) -> None:
    p.add_argument("--no-denoise", dest="denoise", action="store_false", default=None,
                   help="read every image as it is: no median filter for noisy images before the detector or the "
                   "pose network (default: the model's own detect.denoise and infer.denoise)")


def _add_precision(p) -> None:
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="the networks' arithmetic (default: the model's own infer.precision, auto: bf16 on a CPU "
                   "that computes bfloat16 natively, AVX512-BF16 or AMX, else fp32)")


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a split")
    e.add_argument("--model", default="posekit-lsp", help="checkpoint file, run folder or shipped model name "
                   "(default: posekit-lsp)")
    e.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    e.add_argument("--split", default="lsp-test",
                   choices=["lsp-test", "lsp-train", "paper-test", "val", "lsp-multi", "val-multi"],
                   help="lsp-test: LSP 1001-2000 (the benchmark); lsp-train: LSP 1-1000, for the train/test gap; "
                   "lsp-multi: scenes of 1-4 people made from LSP 1001-2000 (detection AP, multi-person PCK); "
                   "val-multi: the same from the model's validation images (to tune on)")
    e.add_argument("--detector", metavar="MODEL|off", help="person detector to run first (default: the model's own)")
    _add_detector_flip_test(e)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--out", help="also write metrics.md, predictions.png and loss_curve.png here")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    e.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    e.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the mirrored image (left/right swapped; default: the model's own infer.flip_test)")
    e.add_argument("--per-stage", action="store_true", help="cascade checkpoints: metrics after every stage")
    _add_precision(e)
    _add_denoise(e)
    _add_refinement(e)
    e.set_defaults(func=commands.cmd_evaluate)


def _add_predict(sub) -> None:
    pr = sub.add_parser("predict", help="joints for images, folders, videos or a webcam",
                        description="Joints for image files, folders (recursively), video files and a webcam. "
                        "stdout gets one record per image or frame (--people all: per person found; nobody: one "
                        "record, found false): a readable line, --json or --csv.")
    pr.add_argument("inputs", nargs="*", metavar="INPUT", help="image or video files, or folders (searched recursively)")
    pr.add_argument("--model", default="posekit-lsp", help=MODEL_HELP)
    pr.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="inference runtime (default: torch)")
    pr.add_argument("--out", help="write <name>.json per image and <name>.jsonl per video here")
    fmt = pr.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="stdout: one JSON object per record (per image or frame; "
                     "--people all: per person)")
    fmt.add_argument("--csv", action="store_true", help="stdout: CSV, a header then one row per record (per image "
                     "or frame; --people all: per person)")
    pr.add_argument("--draw", action="store_true", help="also write annotated <name>_pose.png / <name>_pose.mp4 into --out")
    pr.add_argument("--box", help="person box x,y,w,h in pixels (default: the detector's best person; without a "
                    "detector, the whole image; a negative x: --box=-5,...)")
    pr.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                    help="average with the mirrored image (default: the model's own infer.flip_test)")
    _add_refinement(pr)
    _add_precision(pr)
    _add_denoise(pr)
    pr.add_argument("--person-threshold", type=unit_arg, metavar="T", help=THRESHOLD_HELP)
    pr.add_argument("--people", choices=["one", "all"], default="one",
                    help="one: the best person (or --box) per image or frame; all: every person found, one record "
                    "each with its person index (video: a stable id across frames)")
    pr.add_argument("--detector", metavar="MODEL|off", help="person detector to run first (default: the model's own; "
                    "off: the whole image is the person's box)")
    _add_detector_flip_test(pr)
    pr.add_argument("--smooth", choices=["on", "off"], help="videos: One-Euro smoothing of every joint over time "
                    "(default: the model's own video.smooth)")
    pr.add_argument("--follow", choices=["on", "off"], help="videos, one person: pose each frame in the region of "
                    "the last frame's joints and run the detector only when the person is lost (default: the "
                    "model's own video.roi_margin); off: detect on every frame")
    pr.add_argument("--webcam", type=int, metavar="N", help="read camera N (0, 1, ...) until Ctrl-C (or --max-frames)")
    pr.add_argument("--max-frames", type=int, help="stop each video/webcam after this many frames")
    pr.set_defaults(func=commands.cmd_predict)


def _add_explain(sub) -> None:
    xp = sub.add_parser("explain", help="saliency map: which pixels a joint's prediction depends on",
                        description="Gradient saliency (Simonyan et al. 2014) of one joint's prediction, or of "
                        "all joints, drawn over the image with the predicted skeleton.")
    xp.add_argument("image", help="image file")
    xp.add_argument("--joint", help="joint name, e.g. head_top, left_wrist (default: all joints)")
    xp.add_argument("--out", required=True, help="output .png/.jpg")
    xp.add_argument("--model", default="posekit-lsp", help="shipped model name, checkpoint or run folder")
    xp.add_argument("--box", help="person box x,y,w,h in pixels (default: the detector's best person; without a "
                    "detector, the whole image)")
    _add_denoise(xp)
    xp.set_defaults(func=commands.cmd_explain)


def _add_serve(sub) -> None:
    sv = sub.add_parser("serve", help="HTTP API + web page (FastAPI, uvicorn)",
                        description="POST /v1/pose, GET /healthz, GET /v1/models, GET /v1/skeleton, OpenAPI at /docs "
                        "(its schema at GET /openapi.json), a page at /.")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    sv.add_argument("--port", type=int, default=8000,
                    help="TCP port to listen on (default 8000; 0: any free port, the one chosen is printed)")
    sv.add_argument("--model", default="posekit-lsp", help=MODEL_HELP)
    sv.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    sv.add_argument("--max-mb", type=float, default=10.0, help="largest upload in MiB (413 above)")
    sv.add_argument("--max-pixels", type=int, default=50_000_000, help="largest declared image size (413 above)")
    sv.add_argument("--workers", type=int, default=1, help="inference threads (at most the CPU cores)")
    sv.add_argument("--queue", type=int, default=8, help="requests that may wait for a worker (503 beyond)")
    _add_refinement(sv)
    _add_precision(sv)
    _add_denoise(sv)
    sv.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                    help="average with the mirrored image (default: the model's own infer.flip_test)")
    sv.add_argument("--person-threshold", type=unit_arg, metavar="T", help=THRESHOLD_HELP)
    sv.add_argument("--detector", metavar="MODEL|off", help="person detector to run first (default: the model's own)")
    _add_detector_flip_test(sv)
    sv.set_defaults(func=commands.cmd_serve)


def _add_export(sub) -> None:
    ex = sub.add_parser("export", help="export a model to ONNX (dynamic batch)")
    ex.add_argument("--model", default="posekit-lsp", help="shipped model name, checkpoint or run folder")
    ex.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    ex.add_argument("--int8", action="store_true", help="static int8 quantisation (QDQ), calibrated on --calib")
    ex.add_argument("--calib", metavar="DIR", help="folder of calibration images for --int8")
    ex.add_argument("--calib-count", type=int, default=200, help="use at most this many calibration images")
    ex.set_defaults(func=commands.cmd_export)


def _add_data(sub) -> None:
    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="verify a dataset copy (counts, visible joints, checksums)")
    c.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    c.add_argument("--sets", nargs="*", choices=["lsp", "lspet"])
    c.add_argument("--no-hashes", action="store_true", help="skip per-image checksums")
    c.set_defaults(func=commands.cmd_data_check)
    pk = dsub.add_parser("pack", help="write a compact, self-contained copy of a split (person-centred crops)")
    pk.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    pk.add_argument("--split", default="lsp-standard", choices=["lsp-standard", "paper"])
    pk.add_argument("--sets", nargs="+", default=["lsp", "lspet"], choices=["lsp", "lspet"])
    pk.add_argument("--split-seed", type=int, default=0)
    pk.add_argument("--val-fraction", type=float, default=0.05, help="lsp-standard: validation carved from train")
    pk.add_argument("--size", type=int, default=144, help="side of each stored crop in pixels")
    pk.add_argument("--margin", type=float, default=0.4, help="context around the joints' box, as a fraction of its side")
    pk.add_argument("--whole", action="store_true", help="store whole images (stretched to --size) instead of person "
                    "crops, for recipes that see the whole image (the paper's)")
    pk.add_argument("--parts", nargs="+", default=["train", "val"], choices=["train", "val", "test"],
                    help="the parts of the split to store (default: train val)")
    pk.add_argument("--quality", type=int, default=75,
                    help="JPEG quality (75 at 144 px: the LSP + LSPe train+val split in about 52 MiB)")
    pk.add_argument("--out", required=True, help="output .npz")
    pk.add_argument("--no-progress", action="store_true")
    pk.add_argument("--json", help="also write the summary (images, bytes) here")
    pk.set_defaults(func=commands.cmd_data_pack)
    te = dsub.add_parser("teacher", help="run a teacher model over the training images, for distillation",
                         description="Cache a model's joints and scores on every training and validation image "
                         "(distill.teacher of a student recipe).")
    te.add_argument("--model", default="posekit-lsp", help="the teacher (shipped name, checkpoint or run folder)")
    te.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    te.add_argument("--out", required=True, help="output .npz")
    te.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                    help="the teacher also looks at the mirrored image (default: the teacher's own infer.flip_test)")
    _add_refinement(te, box_margins=False, crop_border=False)
    _add_precision(te)
    _add_denoise(te)
    te.add_argument("--no-progress", action="store_true")
    te.set_defaults(func=commands.cmd_data_teacher)
    s = dsub.add_parser("show", help="draw a sample with its joints")
    s.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    s.add_argument("--set", default="lsp", choices=["lsp", "lspet"])
    s.add_argument("--index", type=int, required=True, help="0-based image index")
    s.add_argument("--size", type=int, default=224, help="also show the preprocessed input at this size (0: off)")
    s.add_argument("--resize-mode", default="stretch", choices=["stretch", "letterbox"])
    s.add_argument("--out", help="output PNG")
    s.set_defaults(func=commands.cmd_data_show)


def build_parser() -> argparse.ArgumentParser:
    from posekit import __version__

    p = argparse.ArgumentParser(prog="posekit", description="Human pose estimation (14 Leeds Sports Pose joints): "
                                "train, evaluate and run models.")
    p.add_argument("--version", action="version", version=f"posekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=SubcommandParser)
    for add in (_add_train, _add_evaluate, _add_predict, _add_explain, _add_serve, _add_export, _add_data):
        add(sub)
    return p


def _one_line(msg: str) -> str:
    """The message itself, also when a DataLoader worker wrapped it in a traceback text."""
    lines = [ln for ln in str(msg).strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else "unknown error"
    last = lines[-1]
    for prefix in ("posekit.errors.DataError:", "posekit.errors.ConfigError:", "posekit.errors.PosekitError:",
                   "posekit.data.images.ImageError:"):
        if last.startswith(prefix):
            return last[len(prefix):].strip()
    return last


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PosekitError as e:
        print(f"posekit: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # writing outputs: a read-only folder, a path that is a file, a full disk
        if isinstance(e, BrokenPipeError):  # `posekit predict ... | head`: the reader left, stop quietly
            sys.stdout = open(os.devnull, "w")
            return 0
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"posekit: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("posekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
