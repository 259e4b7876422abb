"""``posekit train|evaluate|data ...``: a thin command line over the library.

Bad input (missing data, corrupt image, wrong ``joints.mat``, unknown config key or model) ends
with one line ``posekit: error: ...`` on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from posekit.errors import PosekitError


def _cmd_train(args) -> int:
    from posekit.checkpoint import model_from_config, read_checkpoint
    from posekit.config import apply_overrides, complete_config, load_config, validate
    from posekit.train import train

    overrides = list(args.overrides or [])
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    resume = None
    if args.resume:
        ckpt = read_checkpoint(Path(args.resume) / "last.pt" if Path(args.resume).is_dir() else args.resume)
        if ckpt.get("cascade"):
            raise PosekitError(f"{ckpt['path']}: cascade stages train in minutes and are not resumable; "
                               "rerun the cascade command")
        resume = ckpt["path"]
        cfg = apply_overrides(complete_config(ckpt["config"], resume), overrides)
        validate(cfg, f"{resume} (+ overrides)")
        out = Path(args.out) if args.out else Path(resume).parent
    else:
        if not args.config:
            raise PosekitError("train needs --config FILE (or --resume RUN)")
        cfg = load_config(args.config, overrides)
        out = Path(args.out) if args.out else Path("runs") / cfg["name"]
        if (out / "last.pt").exists() and not args.force:
            raise PosekitError(f"{out}: a run already exists here; use --resume {out}, another --out, or --force")
    if cfg["cascade"]["stages"] and not cfg["cascade"]["stage1"]:
        raise PosekitError(f"{args.config}: cascade.stages needs cascade.stage1 (the trained stage-1 checkpoint)")
    if cfg["cascade"]["stage1"]:  # DeepPose refinement stages on top of a trained stage 1
        from posekit.cascade_train import train_cascade
        from posekit.train import dist_info

        if dist_info()[0] > 1:
            raise PosekitError("cascade stages train on one process (they take minutes); run without torchrun")
        summary = train_cascade(cfg, out, progress=not args.no_progress)
        print(f"done: {summary['stages']} cascade stage(s); checkpoint {out / 'last.pt'}")
        return 0
    model_from_config(cfg, where=args.config or resume)  # a bad model name/option fails here, naming the file
    summary = train(cfg, out, resume=resume, progress=not args.no_progress)
    if summary.get("nothing_to_resume"):  # train said why; nothing was touched
        return 0
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every process is done before any tears the group down
        dist.destroy_process_group()
    if "rank" in summary:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    best = summary["best"]
    print(f"done: {summary['epochs_done']} epochs, best epoch {best['epoch']} val_loss {best['val_loss']:.5g}"
          f"; checkpoints in {out}")
    return 0


RECROP_HELP = ("look again at square crops around the first estimate, one per margin (per side; several: "
               "comma-separated, e.g. 0.05,0.1,0.22, run in one pass and averaged); off: one look "
               "(default: the model's own setting)")


def recrop_arg(text: str) -> float | list[float] | bool:
    """``--recrop``: a margin in [0, 2], comma-separated margins, or off (one look)."""
    if text.strip().lower() in ("off", "none", "no", "false"):
        return False
    from posekit.looks import MAX_CROPS

    try:
        ms = [float(t) for t in text.split(",")]
    except ValueError:
        ms = []
    if not 1 <= len(ms) <= MAX_CROPS or not all(0 <= m <= 2 for m in ms):
        raise argparse.ArgumentTypeError(f"expected a margin in [0, 2], up to {MAX_CROPS} of them comma-separated, "
                                         f"or 'off', got {text!r}")
    return ms[0] if len(ms) == 1 else ms


FUSE_HELP = ("with a second look: blend the first look's heatmaps into the second's at this weight in [0, 1) "
             "(default: the model's own)")


def fuse_arg(text: str) -> float:
    """``--fuse``: a weight in [0, 1)."""
    try:
        w = float(text)
    except ValueError:
        w = -1.0
    if not 0 <= w < 1:
        raise argparse.ArgumentTypeError(f"expected a weight in [0, 1), got {text!r}")
    return w


THRESHOLD_HELP = ("person score in [0, 1] under which the answer is 'no person found' "
                  "(default: the model's own, infer.person_threshold)")


def unit_arg(text: str) -> float:
    """A number in [0, 1]."""
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def _cmd_evaluate(args) -> int:
    from posekit.evaluate import evaluate, markdown_table, write_report

    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise PosekitError("--batch-size and --limit must be >= 1")
    metrics, extras = evaluate(args.model, args.data, args.split, batch_size=args.batch_size,
                               device=args.device, limit=args.limit, flip_test=args.flip_test,
                               per_stage=args.per_stage, recrop=args.recrop, fuse=args.fuse)
    if metrics["train_overlap"]:
        print(f"warning: {metrics['train_overlap']} of the {metrics['n']} {args.split} images are in this "
              "model's training split", file=sys.stderr)
    if args.out:
        for p in write_report(metrics, extras, args.out):
            print(f"wrote {p}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(markdown_table(metrics), end="")
    return 0


def _cmd_predict(args) -> int:
    from posekit.predict import parse_box, run_predict

    if not args.inputs and args.webcam is None:
        raise PosekitError("predict needs INPUT files/folders or --webcam N")
    if args.max_frames is not None and args.max_frames < 1:
        raise PosekitError("--max-frames must be >= 1")
    if args.draw and not args.out:
        raise PosekitError("--draw writes annotated images and videos into --out DIR; give --out too")
    box = parse_box(args.box) if args.box else None
    fmt = "json" if args.json else "csv" if args.csv else "text"
    failures, total = run_predict(args.inputs, args.model, args.out, draw=args.draw, flip_test=args.flip_test, box=box,
                           fmt=fmt, backend=args.backend, webcam=args.webcam, max_frames=args.max_frames,
                           recrop=args.recrop, fuse=args.fuse, threshold=args.person_threshold)
    if failures and total > 1:
        print(f"posekit: error: {failures} of {total} inputs failed (reported above); the others were processed", file=sys.stderr)
    return 0 if failures == 0 else 2


def _cmd_explain(args) -> int:
    from posekit.explain import run_explain
    from posekit.predict import parse_box

    out = run_explain(args.image, args.model, args.joint, args.out, box=parse_box(args.box) if args.box else None)
    print(f"wrote {out} (gradient saliency of {args.joint or 'all joints'})")
    return 0


def _cmd_serve(args) -> int:
    from posekit.serve.app import run

    if not 0 < args.port < 65536:
        raise PosekitError(f"--port {args.port}: expected 1-65535")
    check_port_free(args.host, args.port)
    if args.max_mb <= 0 or args.max_pixels <= 0 or args.workers < 1 or args.queue < 0:
        raise PosekitError("--max-mb and --max-pixels must be positive, --workers >= 1, --queue >= 0")
    run(host=args.host, port=args.port, model=args.model, backend=args.backend, max_bytes=int(args.max_mb * 1024 * 1024),
        max_pixels=args.max_pixels, workers=args.workers, queue_size=args.queue, recrop=args.recrop,
        threshold=args.person_threshold)
    return 0


def check_port_free(host: str, port: int) -> None:
    """Refuse, before the model loads, a host that does not resolve or a port already in use."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise PosekitError(f"--host {host}: not an address of this machine") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(addr)
        except OSError as e:
            raise PosekitError(f"{host}:{port}: cannot listen there ({e.strerror}); "
                               "choose another --port or stop the program using it") from None


def _cmd_export(args) -> int:
    from posekit.export import export_onnx, quantize_int8

    if args.int8:
        from posekit.data.images import read_image
        from posekit.predict import collect_inputs

        if not args.calib:
            raise PosekitError("--int8 needs --calib: a folder of images like the ones it will see (e.g. LSP training images)")
        if args.calib_count < 1:
            raise PosekitError("--calib-count must be >= 1")
        paths, missing = collect_inputs([args.calib], images_only=True)
        if missing:
            raise PosekitError(missing[0])
        images = []
        for p, _ in paths:
            if len(images) >= args.calib_count:
                break
            try:
                images.append(read_image(p))
            except PosekitError as e:
                print(f"posekit: skipped {e}", file=sys.stderr)
        out = quantize_int8(args.model, args.onnx, images)
        kind = f"int8, calibrated on {len(images)} images"
    else:
        out = export_onnx(args.model, args.onnx)
        kind = "fp32"
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {kind}, dynamic batch; "
          f"run it with --backend onnx --model {out})")
    return 0


def _cmd_data_check(args) -> int:
    from posekit.data.check import check_root
    from posekit.data.lsp import resolve_data_root

    root = resolve_data_root(args.data)
    ok, bad = check_root(root, args.sets, hashes=not args.no_hashes)
    for line in ok:
        print(f"ok: {line}")
    for line in bad:
        print(f"PROBLEM: {line}")
    print(f"{root}: {'intact' if not bad else f'{len(bad)} problem(s) found'}")
    return 0 if not bad else 1


def _cmd_data_pack(args) -> int:
    from posekit.data.pack import pack_split

    r = pack_split(args.data, args.split, args.sets, args.out, size=args.size, margin=args.margin, quality=args.quality,
                   split_seed=args.split_seed, val_fraction=args.val_fraction, progress=not args.no_progress)
    print(f"wrote {r['path']}: {r['images']} person-centred {r['size']}x{r['size']} crops (margin {r['margin']}, "
          f"JPEG quality {r['quality']}) of the {r['split']} train+val split, {r['bytes'] / 2**20:.1f} MiB; "
          f"train from it with data.pack={r['path']}")
    if args.json:
        from posekit.utils import atomic_write_text

        atomic_write_text(args.json, json.dumps({**r, "mib": round(r["bytes"] / 2**20, 1)}, indent=1) + "\n")
    return 0


def _cmd_data_show(args) -> int:
    from posekit.data.images import read_image
    from posekit.data.lsp import load_sets
    from posekit.data.transforms import PoseTransform, to_image
    from posekit.viz import draw_pose, make_grid, save_rgb

    s = load_sets(args.data, [args.set])[args.set]
    i = args.index
    if not 0 <= i < len(s):
        raise PosekitError(f"--index {i} out of range: {args.set} has images 0..{len(s) - 1}")
    image = read_image(s.image_paths[i])
    tiles = [draw_pose(image, s.keypoints[i], s.annotated[i])]
    if args.size:
        r = PoseTransform(args.size, args.resize_mode)(image, s.keypoints[i], s.annotated[i])
        tiles.append(draw_pose(to_image(r["image"]), r["keypoints"].numpy(), r["mask"].numpy() > 0))
    out = Path(args.out or f"{args.set}_{i:05d}.png")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise PosekitError(f"{out}: --out must end in .png, .jpg or .jpeg")
    save_rgb(out, make_grid(tiles, ncols=len(tiles), cell=320))
    print(f"wrote {out} ({s.sample_id(i)}, {int(s.annotated[i].sum())} annotated / "
          f"{int(s.visible[i].sum())} visible joints)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from posekit import __version__

    p = argparse.ArgumentParser(prog="posekit", description="Human pose estimation (14 Leeds Sports Pose joints): "
                                "train, evaluate and run models.")
    p.add_argument("--version", action="version", version=f"posekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a recipe", description="Train a recipe. Any config key can be "
                       "overridden as section.key=value, e.g. train.lr=0.001 data.input_size=128.")
    t.add_argument("--config", help="recipe YAML (configs/*.yaml)")
    t.add_argument("--resume", help="run folder or last.pt to continue")
    t.add_argument("--data", help=f"dataset root (default ${'POSEKIT_DATA'})")
    t.add_argument("--out", help="run folder (default runs/<name>)")
    t.add_argument("--epochs", type=int, help="total epochs (overrides train.epochs)")
    t.add_argument("--force", action="store_true", help="train into a folder that already holds a run")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint on a split")
    e.add_argument("--model", default="posekit-lsp",
                   help="checkpoint file, run folder or shipped model name (default: posekit-lsp)")
    e.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    e.add_argument("--split", default="lsp-test", choices=["lsp-test", "lsp-train", "paper-test", "val"],
                   help="lsp-test: LSP 1001-2000 (the benchmark); lsp-train: LSP 1-1000, for the train/test gap")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--out", help="also write metrics.md, predictions.png and loss_curve.png here")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    e.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    e.add_argument("--flip-test", action="store_true", help="average with the mirrored image (left/right swapped)")
    e.add_argument("--per-stage", action="store_true", help="cascade checkpoints: metrics after every stage")
    e.add_argument("--recrop", type=recrop_arg, metavar="MARGIN[,MARGIN...]|off", help=RECROP_HELP)
    e.add_argument("--fuse", type=fuse_arg, metavar="W", help=FUSE_HELP)
    e.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser("predict", help="joints for images, folders, videos or a webcam",
                        description="Joints for image files, folders (recursively), video files and a webcam. "
                        "stdout gets one line per image or frame: readable text, --json or --csv.")
    pr.add_argument("inputs", nargs="*", metavar="INPUT", help="image or video files, or folders (searched recursively)")
    pr.add_argument("--model", default="posekit-lsp", help="shipped model name, checkpoint, run folder or .onnx file")
    pr.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="inference runtime (default: torch)")
    pr.add_argument("--out", help="write <name>.json per image and <name>.jsonl per video here")
    fmt = pr.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="stdout: one JSON object per image/frame")
    fmt.add_argument("--csv", action="store_true", help="stdout: CSV, a header then one row per image/frame")
    pr.add_argument("--draw", action="store_true", help="also write annotated <name>_pose.png / <name>_pose.mp4 into --out")
    pr.add_argument("--box", help="person box x,y,w,h in pixels (default: the whole image; a negative x: --box=-5,...)")
    pr.add_argument("--flip-test", action="store_true", help="average with the mirrored image")
    pr.add_argument("--recrop", type=recrop_arg, metavar="MARGIN[,MARGIN...]|off", help=RECROP_HELP)
    pr.add_argument("--fuse", type=fuse_arg, metavar="W", help=FUSE_HELP)
    pr.add_argument("--person-threshold", type=unit_arg, metavar="T", help=THRESHOLD_HELP)
    pr.add_argument("--webcam", type=int, metavar="N", help="read camera N (0, 1, ...) until Ctrl-C (or --max-frames)")
    pr.add_argument("--max-frames", type=int, help="stop each video/webcam after this many frames")
    pr.set_defaults(func=_cmd_predict)

    xp = sub.add_parser("explain", help="saliency map: which pixels a joint's prediction depends on",
                        description="Gradient saliency (Simonyan et al. 2014) of one joint's prediction, or of "
                        "all joints, drawn over the image with the predicted skeleton.")
    xp.add_argument("image", help="image file")
    xp.add_argument("--joint", help="joint name, e.g. head_top, left_wrist (default: all joints)")
    xp.add_argument("--out", required=True, help="output .png/.jpg")
    xp.add_argument("--model", default="posekit-lsp", help="shipped model name, checkpoint or run folder")
    xp.add_argument("--box", help="person box x,y,w,h in pixels (default: the whole image)")
    xp.set_defaults(func=_cmd_explain)

    sv = sub.add_parser("serve", help="HTTP API + web page (FastAPI, uvicorn)",
                        description="POST /v1/pose, GET /healthz, GET /v1/models, OpenAPI at /docs, a page at /.")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    sv.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default 8000)")
    sv.add_argument("--model", default="posekit-lsp", help="shipped model name, checkpoint, run folder or .onnx file")
    sv.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    sv.add_argument("--max-mb", type=float, default=10.0, help="largest upload in MiB (413 above)")
    sv.add_argument("--max-pixels", type=int, default=50_000_000, help="largest declared image size (413 above)")
    sv.add_argument("--workers", type=int, default=1, help="inference threads")
    sv.add_argument("--queue", type=int, default=8, help="requests that may wait for a worker (503 beyond)")
    sv.add_argument("--recrop", type=recrop_arg, metavar="MARGIN[,MARGIN...]|off", help=RECROP_HELP)
    sv.add_argument("--person-threshold", type=unit_arg, metavar="T", help=THRESHOLD_HELP)
    sv.set_defaults(func=_cmd_serve)

    ex = sub.add_parser("export", help="export a model to ONNX (dynamic batch)")
    ex.add_argument("--model", default="posekit-lsp", help="shipped model name, checkpoint or run folder")
    ex.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    ex.add_argument("--int8", action="store_true", help="static int8 quantisation (QDQ), calibrated on --calib")
    ex.add_argument("--calib", metavar="DIR", help="folder of calibration images for --int8")
    ex.add_argument("--calib-count", type=int, default=200, help="use at most this many calibration images")
    ex.set_defaults(func=_cmd_export)

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="verify a dataset copy (counts, visible joints, checksums)")
    c.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    c.add_argument("--sets", nargs="*", choices=["lsp", "lspet"])
    c.add_argument("--no-hashes", action="store_true", help="skip per-image checksums")
    c.set_defaults(func=_cmd_data_check)
    pk = dsub.add_parser("pack", help="write a compact, self-contained copy of a split (person-centred crops)")
    pk.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    pk.add_argument("--split", default="lsp-standard", choices=["lsp-standard", "paper"])
    pk.add_argument("--sets", nargs="+", default=["lsp", "lspet"], choices=["lsp", "lspet"])
    pk.add_argument("--split-seed", type=int, default=0)
    pk.add_argument("--val-fraction", type=float, default=0.05, help="lsp-standard: validation carved from train")
    pk.add_argument("--size", type=int, default=144, help="side of each stored crop in pixels")
    pk.add_argument("--margin", type=float, default=0.4, help="context around the joints' box, as a fraction of its side")
    pk.add_argument("--quality", type=int, default=75, help="JPEG quality (75 at 144 px: the LSP + LSPe train+val split in about 52 MiB)")
    pk.add_argument("--out", required=True, help="output .npz")
    pk.add_argument("--no-progress", action="store_true")
    pk.add_argument("--json", help="also write the summary (images, bytes) here")
    pk.set_defaults(func=_cmd_data_pack)
    s = dsub.add_parser("show", help="draw a sample with its joints")
    s.add_argument("--data", help="dataset root (default $POSEKIT_DATA)")
    s.add_argument("--set", default="lsp", choices=["lsp", "lspet"])
    s.add_argument("--index", type=int, required=True, help="0-based image index")
    s.add_argument("--size", type=int, default=224, help="also show the preprocessed input at this size (0: off)")
    s.add_argument("--resize-mode", default="stretch", choices=["stretch", "letterbox"])
    s.add_argument("--out", help="output PNG")
    s.set_defaults(func=_cmd_data_show)
    return p


def _one_line(msg: str) -> str:
    """The message itself, also when a DataLoader worker wrapped it in a traceback text."""
    lines = [ln for ln in str(msg).strip().splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else "unknown error"
    last = lines[-1]
    for prefix in ("posekit.errors.DataError:", "posekit.errors.ConfigError:", "posekit.errors.PosekitError:"):
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
