"""The work behind each ``posekit`` subcommand: arguments in, the library called, one summary
line out. Bad input raises PosekitError, which :func:`posekit.cli.main` prints as one line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from posekit.errors import PosekitError


def _overrides(args) -> list[str]:
    """``train``'s KEY=VALUE overrides, then those that --epochs and --data stand for. A key given
    twice with different values is refused, as a key twice in a YAML file is."""
    from posekit.config import parse_override

    given = [(o, o) for o in args.overrides or []]
    if args.epochs is not None:
        given.append((f"train.epochs={args.epochs}", f"--epochs {args.epochs}"))
    if args.data is not None:
        given.append((f"data.root={args.data}", f"--data {args.data}"))
    seen: dict = {}
    for o, shown in given:
        path, value = parse_override(o)
        key = ".".join(path)
        if key in seen and seen[key][0] != value:
            raise PosekitError(f"override '{shown}': '{key}' is given twice on the command line (also as "
                               f"'{seen[key][1]}'); give it once")
        seen.setdefault(key, (value, shown))
    return [o for o, _ in given]


def _train_config(args):
    """(recipe, output folder, checkpoint to resume or None) from ``posekit train``'s arguments."""
    from posekit.checkpoint import read_checkpoint
    from posekit.config import complete_config, load_config
    from posekit.utils import check_writable_folder

    overrides = _overrides(args)
    if args.out:
        check_writable_folder(args.out, "--out")  # a file in its place: before anything is read
    if args.resume:
        if args.config:
            raise PosekitError(f"--config {args.config} with --resume {args.resume}: a resumed run keeps its own "
                               "recipe; to train another recipe start a new run (--config FILE --out NEW_FOLDER)")
        run = Path(args.resume)
        stages = sorted(run.glob("stage*/last.pt")) if run.is_dir() and not (run / "last.pt").exists() else []
        if run.is_dir() and not stages and not (run / "last.pt").exists() and (run / "config.yaml").is_file():
            raise PosekitError(f"{run}: this run has no checkpoint yet (it stopped before its first epoch ended); "
                               f"start it again: its train command without --resume, with --out {run} --force")
        if stages:  # a cascade stopped while training a stage: its stage runs continue
            ckpt = read_checkpoint(stages[-1])
            return complete_config(ckpt["config"], str(run)).replace(overrides, f"{run} (+ overrides)"), run, None
        ckpt = read_checkpoint(run / "last.pt" if run.is_dir() else args.resume)
        resume = ckpt["path"]
        cfg = complete_config(ckpt["config"], resume).replace(overrides, f"{resume} (+ overrides)")
        if ckpt.get("cascade"):  # a finished cascade: its stage runs resume inside its folder
            cfg = complete_config(ckpt["cascade"]["recipe"], resume).replace(overrides, f"{resume} (+ overrides)")
            resume = None
        return cfg, Path(args.out) if args.out else Path(ckpt["path"]).parent, resume
    if not args.config:
        raise PosekitError("train needs --config FILE (or --resume RUN)")
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    if (out / "last.pt").exists() and not args.force:
        raise PosekitError(f"{out}: a run already exists here; use --resume {out}, another --out, or --force")
    return cfg, out, None


def cmd_train(args) -> int:
    from posekit import distributed
    from posekit.train import train

    cfg, out, resume = _train_config(args)
    if cfg.cascade.stages and not cfg.cascade.stage1:
        raise PosekitError(f"{args.config}: cascade.stages needs cascade.stage1 (the trained stage-1 checkpoint)")
    if not cfg.cascade.stage1:
        try:  # a bad model name/option, or a model that does not fit its codec, fails here, naming the file or the override
            _buildable(cfg)
        except PosekitError as e:
            raise PosekitError(f"{_blame(args, resume)}: {e}") from None
    summary = train(cfg, out, resume=resume, progress=not args.no_progress, fresh=bool(getattr(args, "force", False)))
    distributed.teardown()  # every process is done before any tears the group down
    if summary.get("nothing_to_resume") or summary.get("rank", 0) != 0:  # train said why / rank 0 reports
        return 0
    if "stages" in summary:
        print(f"done: {summary['stages']} cascade stage(s); checkpoint {out / 'last.pt'}")
        return 0
    best = summary["best"]
    print(f"done: {summary['epochs_done']} epochs, best epoch {best['epoch']} val_loss {best['val_loss']:.5g}"
          f"; checkpoints in {out}")
    return 0


def _buildable(cfg) -> None:
    """Build the recipe's model (and for a pose recipe check it against its codec,
    :func:`posekit.pose_task.check_model_codec`); raises PosekitError, without a source."""
    from posekit.checkpoint import codec_from_config, model_from_config

    model = model_from_config(cfg)
    if cfg.task == "pose":
        from posekit.pose_task import check_model_codec

        check_model_codec(cfg, model, codec_from_config(cfg), "")


def _blame(args, resume) -> str:
    """What made the recipe's model unbuildable: the first override after which it fails to build
    (``KEY=VALUE (command line)``), else the recipe file (or the checkpoint resumed)."""
    from posekit.config import load_config

    if not args.config:
        return str(resume)
    overrides = _overrides(args)
    for k in range(len(overrides) + 1):
        try:
            cfg = load_config(args.config, overrides[:k])
        except PosekitError:  # a later override completes this one (e.g. train.optimizer=sgd)
            continue
        try:
            _buildable(cfg)
        except PosekitError:
            return f"{overrides[k - 1]} (command line)" if k else str(args.config)
    return str(args.config)


def cmd_evaluate(args) -> int:
    from posekit.evaluate import evaluate
    from posekit.report import markdown_table, write_report

    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise PosekitError("--batch-size and --limit must be >= 1")
    if args.out:
        from posekit.utils import check_writable_folder

        check_writable_folder(args.out, "--out")  # before the model runs
    metrics, extras = evaluate(args.model, args.data, args.split, limit=args.limit, batch_size=args.batch_size,
                               per_stage=args.per_stage, device=args.device, flip_test=args.flip_test,
                               refine=args.refine, refine_weight=args.refine_weight, crop_border=args.crop_border,
                               box_margins=args.box_margins, detector_flip_test=on_off(args.detector_flip_test),
                               detector={"off": False}.get(args.detector, args.detector), precision=args.precision,
                               denoise=args.denoise)
    if metrics.get("train_overlap"):
        print(f"warning: {metrics['train_overlap']} of the {metrics['n']} {args.split} images are in this "
              "model's training split", file=sys.stderr)
    if args.out:
        for p in write_report(metrics, extras, args.out):
            print(f"wrote {p}", file=sys.stderr)
    print(json.dumps(metrics) if args.json else markdown_table(metrics), end="\n" if args.json else "")
    return 0


def on_off(value: str | None) -> bool | None:
    """An ``on|off`` option: True, False, or None (not given: the model's own)."""
    return {"on": True, "off": False}.get(value)


def predictor_args(args) -> dict:
    """The :class:`posekit.Predictor` settings of ``predict`` / ``serve``."""
    return {"model": args.model, "backend": args.backend, "refine": args.refine,
            "refine_weight": getattr(args, "refine_weight", None), "crop_border": getattr(args, "crop_border", None),
            "person_threshold": args.person_threshold,
            "box_margins": getattr(args, "box_margins", None),
            "flip_test": getattr(args, "flip_test", None),
            "detector_flip_test": on_off(getattr(args, "detector_flip_test", None)),
            "precision": getattr(args, "precision", None), "denoise": getattr(args, "denoise", None),
            "detector": {"off": False, None: None}.get(getattr(args, "detector", None), getattr(args, "detector", None))}


def cmd_predict(args) -> int:
    from posekit.cli.predict import run_predict
    from posekit.inference import parse_box

    if not args.inputs and args.webcam is None:
        raise PosekitError("predict needs INPUT files/folders or --webcam N")
    if args.max_frames is not None and args.max_frames < 1:
        raise PosekitError("--max-frames must be >= 1")
    if args.draw and not args.out:
        raise PosekitError("--draw writes annotated images and videos into --out DIR; give --out too")
    if args.follow == "on" and (args.people == "all" or args.box):
        raise PosekitError("--follow on follows one person found by the detector: not with --people all or --box")
    box = parse_box(args.box) if args.box else None
    fmt = "json" if args.json else "csv" if args.csv else "text"
    job = {"box": box, "people": args.people, "smooth": on_off(args.smooth), "follow": on_off(args.follow), "out": args.out,
           "draw": args.draw, "max_frames": args.max_frames}
    failures, total = run_predict(args.inputs, predictor_args(args), job, fmt=fmt, webcam=args.webcam)
    if failures and total > 1:
        rest = "; the others were processed" if failures < total else ""
        print(f"posekit: error: {failures} of {total} inputs failed (reported above){rest}", file=sys.stderr)
    return 0 if failures == 0 else 2


def cmd_explain(args) -> int:
    from posekit.explain import run_explain
    from posekit.inference import parse_box

    done = run_explain(args.image, args.model, args.joint, args.out, box=parse_box(args.box) if args.box else None,
                       denoise=args.denoise)
    pose = done["pose"]
    nobody = "" if pose.found else f"; no person found (score {pose.score:.2f}): no skeleton drawn"
    print(f"wrote {done['out']} (gradient saliency of {args.joint or 'all joints'}{nobody})")
    return 0


def cmd_serve(args) -> int:
    from posekit.serve.app import run

    if not 0 <= args.port < 65536:
        raise PosekitError(f"--port {args.port}: expected 1-65535, or 0 for any free port")
    if args.max_mb <= 0 or args.max_pixels <= 0 or args.workers < 1 or args.queue < 0:
        raise PosekitError("--max-mb and --max-pixels must be positive, --workers >= 1, --queue >= 0")
    check_port_free(args.host, args.port)
    p = predictor_args(args)
    run(host=args.host, port=args.port, model=p["model"], backend=p["backend"], max_bytes=int(args.max_mb * 1024 * 1024),
        max_pixels=args.max_pixels, workers=args.workers, queue_size=args.queue, refine=p["refine"],
        refine_weight=p["refine_weight"], crop_border=p["crop_border"],
        person_threshold=p["person_threshold"], detector=p["detector"], flip_test=p["flip_test"],
        precision=p["precision"], box_margins=p["box_margins"], detector_flip_test=p["detector_flip_test"],
        denoise=p["denoise"])
    return 0


def check_port_free(host: str, port: int) -> None:
    """Refuse, before the model loads, a host that does not resolve or a port already in use."""
    from posekit.serve.app import bind_socket

    bind_socket(host, port).close()


def cmd_export(args) -> int:
    from posekit.export import export_onnx, quantize_int8
    from posekit.utils import check_output_file

    check_output_file(args.onnx, "--onnx")
    if args.calib and not args.int8:
        raise PosekitError("--calib calibrates --int8 quantisation: give --int8 too, or leave --calib out")

    if args.int8:
        from posekit.cli.predict import collect_inputs
        from posekit.data.images import read_image

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


def cmd_data_check(args) -> int:
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


def cmd_data_pack(args) -> int:
    from posekit.data.pack import pack_split

    check_new_file(args.out, "--out", ".npz")  # before the packing
    if args.json:
        check_new_file(args.json, "--json")

    split = {"name": args.split, "sets": args.sets, "seed": args.split_seed, "val_fraction": args.val_fraction,
             "parts": args.parts}
    r = pack_split(args.data, args.out, split, size=args.size, margin=None if args.whole else args.margin,
                   quality=args.quality, progress=not args.no_progress)
    what = "whole images" if args.whole else f"person-centred crops (margin {r['margin']})"
    print(f"wrote {r['path']}: {r['images']} {r['size']}x{r['size']} {what}, JPEG quality {r['quality']}, of the "
          f"{r['split']} split ({'+'.join(args.parts)}), {r['bytes'] / 2**20:.1f} MiB; train from it with "
          f"data.pack={r['path']}")
    if args.json:
        from posekit.utils import atomic_write_text

        atomic_write_text(args.json, json.dumps({**r, "mib": round(r["bytes"] / 2**20, 1)}, indent=1) + "\n")
    return 0


def check_new_file(path, what: str, suffix: str | None = None) -> None:
    """Refuse, before any long work, an output file that cannot be written: a folder in its place
    or for it that cannot be made (:func:`posekit.utils.check_output_file`), another suffix than
    ``suffix``, or a folder that takes no new file (a trial file is created there and removed)."""
    import os

    from posekit.utils import check_output_file, temp_path

    check_output_file(path, what)
    if suffix and Path(path).suffix != suffix:
        raise PosekitError(f"{path}: {what} must end in {suffix}")
    if Path(path).parent.is_dir():
        trial = temp_path(path)
        try:
            os.close(os.open(trial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(trial)
        except OSError as e:
            raise PosekitError(f"{path}: {what} cannot be written there ({e.strerror})") from None


def cmd_data_show(args) -> int:
    from posekit.data.images import read_image
    from posekit.data.lsp import load_sets
    from posekit.data.transforms import PoseTransform, to_image
    from posekit.viz import draw_pose, make_grid, save_rgb

    if args.size and not 16 <= args.size <= 1024:
        raise PosekitError(f"--size {args.size}: expected 16-1024 pixels, or 0 for no preprocessed tile")
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




def cmd_data_teacher(args) -> int:
    from posekit.distill import teacher_cache
    from posekit.predict import Predictor

    check_new_file(args.out, "--out", ".npz")  # before the teacher's pass over every image
    pred = Predictor(args.model, flip_test=args.flip_test, detector=False, refine=args.refine,
                     refine_weight=args.refine_weight, precision=args.precision,
                     denoise=args.denoise)  # the framed image is the person's box
    r = teacher_cache(pred, args.data, args.out, progress=not args.no_progress)
    print(f"wrote {r['path']}: the joints of {r['images']} training and validation images by {r['model']}"
          f"{' with the flip test' if r['flip_test'] else ''}, in {r['precision']}")
    return 0
