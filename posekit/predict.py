"""Inference: the same preprocessing as evaluation (the whole image, or a given person box,
resized to the model's input), the codec's decoding, and a mapping back to original pixels.

:class:`Predictor` is the Python API; :func:`run_predict` is ``posekit predict`` (images,
folders, videos, a webcam; JSON, CSV or a readable line per image on stdout; annotated images,
videos and JSON files in ``--out``)."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from posekit.checkpoint import DEFAULT_MODEL, cascade_stages, load_model
from posekit.codecs import build_codec
from posekit.data.images import MIN_SIDE, as_rgb, read_image
from posekit.data.transforms import PoseTransform, box_matrix, to_tensor, warp
from posekit.errors import PosekitError
from posekit.looks import crop_border as crop_border_setting
from posekit.looks import fuse_weight, look, margins_of, recrop_box, recrop_margin, recrop_predict, to_original
from posekit.models import inference_ready
from posekit.skeleton import JOINT_NAMES, NUM_JOINTS
from posekit.utils import atomic_write_text, check_writable_folder, select_device

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
BACKENDS = ("torch", "onnx")


DEFAULT_PERSON_THRESHOLD = 0.3  # a model's own infer.person_threshold wins (see reports/no_person.json)


@dataclass
class Pose:
    """One person's 14 joints in original-image pixels.

    ``keypoints`` (14, 2) x, y; ``scores`` (14,) a confidence per joint (a heatmap's peak; 1 for
    regression models, which have none); ``score`` the person's overall confidence (the mean
    joint score); ``found`` whether ``score`` reaches the model's person threshold (below it the
    pose is the network's best guess at a person who is probably not there: nothing is drawn);
    ``box`` (x, y, w, h) the region the pose was estimated in (None: the whole image);
    ``in_image`` (14,) bool, False for a joint placed outside the image."""

    keypoints: np.ndarray
    scores: np.ndarray
    width: int
    height: int
    score: float = 1.0
    found: bool = True
    box: tuple[float, float, float, float] | None = None
    names: tuple[str, ...] = JOINT_NAMES

    @property
    def in_image(self) -> np.ndarray:
        x, y = self.keypoints[:, 0], self.keypoints[:, 1]
        return (x >= -0.5) & (x <= self.width - 0.5) & (y >= -0.5) & (y <= self.height - 0.5)

    def to_dict(self) -> dict:
        inside = self.in_image
        return {"width": self.width, "height": self.height, "found": bool(self.found),
                "score": round(float(self.score), 4),
                "box": None if self.box is None else [round(float(v), 2) for v in self.box],
                "joints": [{"name": n, "x": round(float(x), 2), "y": round(float(y), 2), "score": round(float(s), 4),
                            "in_image": bool(i)}
                           for n, (x, y), s, i in zip(self.names, self.keypoints, self.scores, inside)]}


def person_threshold(cfg: dict, threshold: float | None = None) -> float:
    """The person-score threshold in force: ``threshold`` if given, else the model's own
    (config ``infer.person_threshold``), else :data:`DEFAULT_PERSON_THRESHOLD` for models with
    joint scores and 0 for regression models (their scores are all 1). Raises PosekitError for a
    value outside [0, 1]."""
    if threshold is None:
        threshold = (cfg.get("infer") or {}).get("person_threshold")
    if threshold is None:
        codec = cfg.get("codec") or {}
        codec = codec.get("name", "regression") if isinstance(codec, dict) else codec
        threshold = 0.0 if codec == "regression" else DEFAULT_PERSON_THRESHOLD
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise PosekitError(f"the person threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def default_threads(batch: int) -> int:
    """posekit's torch intra-op thread count for a batch of ``batch`` images: one thread for a
    single image (two threads that wait on each other lose badly when other programs keep the
    cores busy; see reports/latency_busy_cpu.json), every core for larger batches."""
    return 1 if batch <= 1 else max(1, os.cpu_count() or 1)


@contextmanager
def torch_threads(n: int):
    """Run the ``with`` block with ``n`` torch intra-op threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parse_box(box) -> tuple[float, float, float, float] | None:
    """(x, y, w, h) from a 4-sequence or an 'x,y,w,h' string. Raises PosekitError for anything
    else, and for a box whose longer side is under :data:`posekit.data.images.MIN_SIDE` pixels
    (too small to hold a person)."""
    if box is None:
        return None
    try:
        vals = tuple(float(v) for v in (box.split(",") if isinstance(box, str) else box))
    except (TypeError, ValueError):
        raise PosekitError(f"box {box!r}: expected x,y,w,h numbers") from None
    if len(vals) != 4 or not all(np.isfinite(vals)):
        raise PosekitError(f"box {box!r}: expected 4 finite numbers x,y,w,h")
    if vals[2] <= 0 or vals[3] <= 0:
        raise PosekitError(f"box {box!r}: width and height must be positive")
    if max(vals[2], vals[3]) < MIN_SIDE:
        raise PosekitError(f"box {box!r}: {vals[2]:g}x{vals[3]:g} pixels is too small to hold a person "
                           f"(the minimum is {MIN_SIDE} pixels on its longer side)")
    return vals


class Predictor:
    """``Predictor(model="posekit-lsp" | checkpoint | run folder | .onnx file, device=None,
    backend="torch" | "onnx", flip_test=False, recrop=None)``.

    ``predict(image, box=None, color="RGB")`` takes a path, a PIL image or a uint8 array (RGB, or
    BGR with ``color="BGR"``) and an optional person box (x, y, w, h) in pixels; without a box the
    whole image is the person's box. It returns a :class:`Pose`: the 14 joints in original image
    pixels, a confidence per joint and the joint names. ``predict_batch`` does a list at once.
    The ``onnx`` backend runs the network with onnxruntime on the CPU (an ``.onnx`` file from
    ``posekit export``, or a checkpoint exported in memory). A model with a re-crop margin (config
    ``infer.recrop``, the shipped model's) looks again after the first look at the whole image (or
    box): at square crops around its own first estimate, one per margin, all in one network pass;
    ``recrop=False`` keeps the first look only, a number or a list of numbers sets the margins.
    ``fuse`` (config ``infer.fuse``) blends the first look's heatmaps into the crops' at that
    weight, at no extra network cost."""

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, device: str | None = None, backend: str = "torch",
                 flip_test: bool = False, threads: int | None = None, recrop: float | list[float] | bool | None = None,
                 fuse: float | None = None, threshold: float | None = None, crop_border: int | None = None):
        if backend not in BACKENDS:
            raise PosekitError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        model = DEFAULT_MODEL if model is None else model
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise PosekitError(f"threads must be a positive integer or None, got {threads!r}")
        self.backend, self.name, self.flip_test, self.threads = backend, str(model), flip_test, threads
        is_onnx_file = Path(str(model)).suffix.lower() == ".onnx"
        if backend == "onnx":
            from posekit.export import OnnxNetwork

            if device not in (None, "cpu"):
                raise PosekitError(f"the onnx backend runs on the CPU; got device {device!r}")
            self.device = torch.device("cpu")
            self.network = OnnxNetwork(model, threads=threads)
            cfg = self.network.config
            self.codec = build_codec(cfg["codec"], cfg["data"]["input_size"])
            self.model = None
            self.stages = []
        else:
            if is_onnx_file:
                raise PosekitError(f"{model}: an ONNX file needs backend='onnx' (--backend onnx)")
            self.device = select_device(device)
            self.model, self.codec, ckpt = load_model(model, self.device)
            inference_ready(self.model)  # BN folded, channels-last: the same outputs, faster
            self.network = self.model
            cfg = ckpt["config"]
            self.stages = cascade_stages(ckpt, self.device)  # DeepPose refinement, when a cascade
        self.config = cfg
        self.recrop = recrop_margin(cfg, recrop, cascade=bool(self.stages))
        self.fuse = fuse_weight(cfg, fuse) if self.recrop is not None else 0.0
        self.crop_border = crop_border_setting(cfg, crop_border)
        self.input_size = cfg["data"]["input_size"]
        self.threshold = person_threshold(cfg, threshold)
        self.transform = PoseTransform(self.input_size, cfg["data"]["resize_mode"])

    def _prepare(self, image, box, color: str = "RGB") -> tuple[torch.Tensor, torch.Tensor, int, int]:
        return self._prepare_rgb(as_rgb(image, color), box)[:4]

    def _prepare_rgb(self, img: np.ndarray, box) -> tuple:
        h, w = img.shape[:2]
        box = parse_box(box)
        if box is None:
            zeros, ones = np.zeros((NUM_JOINTS, 2)), np.ones(NUM_JOINTS)
            item = self.transform(img, zeros, ones)
            return item["image"], item["matrix"], w, h, img, None
        x, y, bw, bh = box
        if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
            raise PosekitError(f"box {box} lies outside the {w}x{h} image")
        if max(bw, bh) > 10 * max(w, h):
            raise PosekitError(f"box {box} is more than 10 times larger than the {w}x{h} image")
        side = max(bw, bh)
        m = box_matrix((x + bw / 2 - side / 2, y + bh / 2 - side / 2, side, side), self.input_size)
        return to_tensor(warp(img, m, self.input_size)), torch.from_numpy(m), w, h, img, box

    @torch.inference_mode()
    def predict_batch(self, images: list, boxes: list | None = None, color: str = "RGB") -> list[Pose]:
        if len(images) == 0:
            return []
        boxes = [None] * len(images) if boxes is None else list(boxes)
        if len(boxes) != len(images):
            raise PosekitError(f"{len(images)} images but {len(boxes)} boxes")
        return self._run([self._prepare_rgb(as_rgb(im, color), b) for im, b in zip(images, boxes)])

    def last_look_box(self, image, box=None, color: str = "RGB"):
        """The box the network's last look uses for this image: ``box`` itself with one look, the
        square around the first estimate with a re-crop (for explaining the pass that made the pose)."""
        if self.recrop is None:
            return box
        prepared = [self._prepare_rgb(as_rgb(image, color), box)]
        first = self._run(prepared, second_look=False)[0]
        return recrop_box(first.keypoints, margins_of(self.recrop)[0], first.width, first.height)

    def _run(self, prepared: list, second_look: bool = True) -> list[Pose]:
        threads = self.threads or default_threads(len(prepared))
        with torch_threads(threads):
            return self._run_network(prepared, second_look)

    @torch.inference_mode()
    def _run_network(self, prepared: list, second_look: bool = True) -> list[Pose]:
        x = torch.stack([p[0] for p in prepared]).to(self.device)
        m = torch.stack([p[1] for p in prepared])
        maps, kp, sc = look(self.network, self.codec, x, self.flip_test)
        orig = to_original(kp.cpu(), m).numpy()
        if not np.isfinite(orig).all():
            raise PosekitError("the prediction is not finite (a box of absurd size?)")
        sc = sc.float().cpu().numpy()
        if self.recrop is not None and second_look:  # a second look, around the first estimate
            orig, sc = recrop_predict(self.network, self.codec, [p[4] for p in prepared], orig, self.recrop,
                                      self.input_size, self.device, flip_test=self.flip_test, fuse=self.fuse,
                                      first_maps=maps, first_matrices=m.numpy(), border=self.crop_border)
        if self.stages:
            from posekit.models.cascade import run_cascade

            orig = run_cascade(self.stages, [p[4] for p in prepared], orig, self.device)[-1]
        out = []
        for i, p in enumerate(prepared):
            score = float(np.mean(sc[i]))
            out.append(Pose(orig[i], sc[i], p[2], p[3], score=score, found=score >= self.threshold, box=p[5]))
        return out

    def predict(self, image, box=None, color: str = "RGB") -> Pose:
        return self.predict_batch([image], [box], color)[0]


# ---------------------------------------------------------------------------------- the CLI's work

def collect_inputs(inputs: list[str], images_only: bool = False) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, output name) for the image and video files given directly or found in folders
    (recursively, in a stable order), and a problem line for each input that does not exist.
    Output names keep a folder's sub-paths; a name that would repeat (``a/x.jpg`` and
    ``b/x.jpg`` given directly, or ``x.jpg`` beside ``x.png``) gets its extension, then a number."""
    exts = IMAGE_EXTS if images_only else IMAGE_EXTS + VIDEO_EXTS
    found: list[tuple[Path, str]] = []
    missing: list[str] = []
    for s in inputs:
        p = Path(s)
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.suffix.lower() in exts and q.is_file())
            found += [(q, q.relative_to(p).with_suffix("").as_posix()) for q in files]
        elif p.exists():
            found.append((p, p.stem))
        else:
            missing.append(f"{p}: input not found")
    if not found and not missing:
        raise PosekitError(f"no {'images' if images_only else 'images or videos'} found in {', '.join(inputs)}")
    out, used = [], set()
    for p, name in found:
        if name in used:
            name = f"{name}_{p.suffix.lstrip('.').lower()}"
            k = 2
            while name in used:
                name, k = f"{name.rsplit('~', 1)[0]}~{k}", k + 1
        used.add(name)
        out.append((p, name))
    return out, missing


def csv_header() -> list[str]:
    cols = ["image", "frame", "time", "person", "width", "height", "found", "score"]
    for n in JOINT_NAMES:
        cols += [f"{n}_x", f"{n}_y", f"{n}_score", f"{n}_in_image"]
    return cols


def csv_row(rec: dict) -> list:
    row = [rec["image"], rec.get("frame", ""), rec.get("time", ""), rec.get("person", 0), rec["width"], rec["height"],
           int(rec["found"]), rec["score"]]
    for j in rec["joints"]:
        row += [j["x"], j["y"], j["score"], int(j["in_image"])]
    return row


def text_line(rec: dict, threshold: float) -> str:
    """The readable line of a record: the joints as name=x,y (``(outside)`` for a joint placed
    outside the image), or "no person found" with the score that fell short."""
    where = rec["image"] + (f" frame {rec['frame']}" if "frame" in rec else "")
    if not rec["found"]:
        return f"{where}: no person found (score {rec['score']:.2f}, threshold {threshold:.2f})"
    joints = " ".join(f"{j['name']}={j['x']:.0f},{j['y']:.0f}{'' if j['in_image'] else '(outside)'}"
                      for j in rec["joints"])
    return f"{where}: person score {rec['score']:.2f}  {joints}"


class _Emitter:
    """Writes the stdout format: ``json`` (one object per line), ``csv`` (a header, then a row
    per image or frame) or ``text`` (one readable line)."""

    def __init__(self, fmt: str, write=print, threshold: float = 0.0):
        self.fmt, self.write, self.header_done, self.threshold = fmt, write, False, threshold

    def __call__(self, rec: dict) -> None:
        if self.fmt == "json":
            self.write(json.dumps(rec))
        elif self.fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="")
            if not self.header_done:
                w.writerow(csv_header())
                self.write(buf.getvalue())
                buf.seek(0)
                buf.truncate()
                self.header_done = True
            w.writerow(csv_row(rec))
            self.write(buf.getvalue())
        else:
            self.write(text_line(rec, self.threshold))


def _predict_image(pred: Predictor, path: Path, name: str, box, out_dir: Path | None, draw: bool, emit) -> None:
    from posekit.viz import draw_poses, save_rgb

    img = read_image(path)
    pose = pred.predict(img, box)
    rec = {"image": str(path), "model": pred.name, **pose.to_dict()}
    emit(rec)
    if out_dir is not None:
        base = out_dir / name
        base.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(base.with_name(base.name + ".json"), json.dumps(rec, indent=1))
        if draw:
            save_rgb(base.with_name(base.name + "_pose.png"), draw_poses(img, [pose]))


def run_predict(inputs: list[str], model: str, out_dir: str | None, draw: bool, flip_test: bool,
                box=None, fmt: str = "text", backend: str = "torch", webcam: int | None = None,
                max_frames: int | None = None, write=print, recrop: float | list[float] | bool | None = None,
                fuse: float | None = None, threshold: float | None = None) -> int:
    """The CLI's work. Records go to stdout in ``fmt``; ``out_dir`` gets ``<name>.json`` per image
    and ``<name>.jsonl`` (a record per frame) per video or webcam, and with ``draw`` the annotated
    ``<name>_pose.png`` / ``<name>_pose.mp4``. A bad input is reported (one line naming it) and
    skipped, the rest still processed. Returns (inputs that failed, inputs in all); a run of a
    single input reports its failure as the error itself."""
    from tqdm import tqdm

    from posekit.video import predict_stream

    box = parse_box(box)
    out = Path(out_dir) if out_dir else None
    if out is not None:  # refused before the model runs
        check_writable_folder(out, "--out")
    items, missing = collect_inputs(inputs) if inputs else ([], [])
    pred = Predictor(model, flip_test=flip_test, backend=backend, recrop=recrop, fuse=fuse, threshold=threshold)
    emit = _Emitter(fmt, write, pred.threshold)
    total = len(items) + len(missing) + (webcam is not None)
    bar = tqdm(total=len(items), unit="file", file=sys.stderr, disable=None if len(items) > 1 else True, leave=False)

    def report(msg: str) -> None:
        tqdm.write(f"posekit: {'error' if total == 1 else 'skipped'}: {msg}", file=sys.stderr)

    for msg in missing:
        report(msg)
    failures = len(missing)
    sources: list = ([webcam] if webcam is not None else []) + items
    for src in sources:
        path, name = (None, f"webcam{src}") if isinstance(src, int) else src
        try:
            if path is None:
                predict_stream(pred, src, name, out, draw, emit, box=box, max_frames=max_frames)
            elif path.suffix.lower() in VIDEO_EXTS:
                predict_stream(pred, path, name, out, draw, emit, box=box, max_frames=max_frames)
            else:
                _predict_image(pred, path, name, box, out, draw, emit)
        except PosekitError as e:
            failures += 1
            label = f"webcam {src}" if path is None else str(path)
            msg = str(e)
            report(msg if msg.startswith(label) else f"{label}: {msg}")
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise
            failures += 1
            report(f"{e.filename or path}: {e.strerror or e}")
        if path is not None:
            bar.update(1)
    bar.close()
    return failures, total
