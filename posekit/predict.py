"""The Python API: :class:`Predictor` runs a trained pose model on images, as
:mod:`posekit.inference` prepares them and :mod:`posekit.tta` runs the network, and returns
:class:`~posekit.inference.Pose` objects in original-image pixels.

Legend: N images, K joints (14)."""
from __future__ import annotations

import copy
import dataclasses
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from posekit.checkpoint import DEFAULT_MODEL, cascade_stages, load_model
from posekit.config import InferConfig, Recipe, complete_config, config_error
from posekit.data.images import as_rgb
from posekit.data.transforms import denoise
from posekit.errors import PosekitError
from posekit.inference import Pose, Prepared, parse_box, prepare
from posekit.models import inference_ready
from posekit.models.precision import in_precision, resolve_precision
from posekit.tta import TOUCH, FirstPass, Refinement, fuse_crops, refine, refinement_box, region_side, run_network, to_original
from posekit.utils import select_device

BACKENDS = ("torch", "onnx")
DEFAULT_PERSON_THRESHOLD = 0.3  # a model's own infer.person_threshold wins (see reports/no_person.json)
DEFAULT_CROP_BORDER = 10  # pixels; a model's own infer.crop_border wins (see reports/border_crops.json)

__all__ = ["Pose", "Predictor", "default_threads", "parse_box"]


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


def infer_settings(cfg: Recipe, overrides: dict, cascade: bool = False) -> InferConfig:
    """The model's ``infer`` settings with ``overrides`` (keys of
    :class:`~posekit.config.InferConfig`; None values keep the model's own; ``refine=False`` turns
    refinement off), validated like a recipe. A cascade refines with its own stages (fitted to
    first-pass estimates) and takes no refinement crops. Raises PosekitError (one line)."""
    bad = sorted(set(overrides) - set(InferConfig.model_fields))
    if bad:
        raise PosekitError(f"unknown Predictor option(s) {', '.join(bad)}; valid: {', '.join(InferConfig.model_fields)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in ("refine", "box_margins", "denoise"):  # False: off
        if given.get(key) is False:
            given[key] = None
    if cascade and given.get("refine"):
        raise PosekitError("a cascade checkpoint refines with its own stages; refinement crops do not apply to it")
    try:
        infer = InferConfig.model_validate({**cfg.infer.model_dump(), **given})
    except ValidationError as e:
        raise PosekitError(str(config_error(e, "Predictor"))) from None
    if "refine_weight" in given and cascade:  # it would change nothing
        raise PosekitError("a cascade checkpoint refines with its own stages; refine_weight does not apply to it")
    if "refine_weight" in given and not infer.refine:
        raise PosekitError("refine_weight (--refine-weight) weighs the first pass against refinement crops, and "
                           "this runs without them: give refine (--refine M[,M...]) too")
    return infer.model_copy(update={"refine": None}) if cascade else infer


def _best(detections) -> tuple:
    """(best box or None, its score) of an image's detections (boxes, scores) best first; (None,
    None) for an image that was not run through the detector (None)."""
    if detections is None:
        return None, None
    boxes, scores = detections
    return (boxes[0], float(scores[0])) if len(scores) else (None, 0.0)


def drop_duplicate_poses(people: list[Pose], threshold: float) -> list[Pose]:
    """Pose NMS over one image's people (each with its ``box``): :func:`posekit.metrics.pose_nms`
    taking the poses in descending pose score (a mix of two people scores lower than either), at
    each pose's box area. Returns the people kept, in their given order, ``person`` renumbered."""
    from posekit.metrics import pose_nms

    if len(people) < 2:
        return people
    order = sorted(range(len(people)), key=lambda i: -people[i].score)
    keep = pose_nms(np.stack([people[i].keypoints for i in order]),
                    [people[i].box[2] * people[i].box[3] for i in order], threshold)
    kept = [people[i] for i in sorted(order[k] for k in keep)]
    for i, p in enumerate(kept):
        p.person = i
    return kept


def _drop_group_boxes(people: list[Pose], settings) -> list[Pose]:
    """``people`` without the weak detections (under ``detect.score_threshold``, posed only
    because somebody else was found) whose box is a group's (:func:`posekit.metrics.group_boxes`
    at ``detect.group_cover``): a figure made of several people. A strong detection is left to
    pose NMS. The members are kept, so the list never empties."""
    from posekit.metrics import group_boxes

    groups = set(group_boxes([p.box for p in people], settings.group_cover))
    drop = {k for k in groups if people[k].box_score < settings.score_threshold}
    return [p for k, p in enumerate(people) if k not in drop]


class Predictor:
    """A pose model ready to run on images.

    ``Predictor(model="posekit-lsp" | checkpoint | run folder | .onnx file, device=None,
    backend="torch" | "onnx", flip_test=None, threads=None, **infer)``. Images are paths, encoded
    bytes, PIL images or uint8 arrays (RGB, or BGR with ``color="BGR"``), each through
    :func:`posekit.data.images.as_rgb`; a person box is (x, y, w, h) pixels, or None for the
    whole image.

    ``infer`` overrides the model's own settings (``infer.*`` of its recipe,
    :class:`~posekit.config.InferConfig`): ``refine`` margins of the refinement crops around the
    first estimate (False: one pass), ``refine_weight`` the first pass's weight in the fused
    heatmaps, ``crop_border`` edge pixels repeated where a crop leaves the image,
    ``person_threshold`` the person score under which ``Pose.found`` is False, ``denoise`` the
    noise level (grey levels) from which an image is median-filtered before its pose crops
    (the detector's own is ``detect.denoise``; False: neither network filters), ``box_margins``
    the margins of the crops of a detected box for the multi-scale test (one batch, heatmaps fused;
    None: one crop at ``detect.box_margin``), ``precision``
    the networks' arithmetic (``auto``: bfloat16 on a CPU that has it natively, else float32;
    :mod:`posekit.models.precision`; a :class:`~posekit.detect.PersonDetector` given as
    ``detector`` keeps its own); ``flip_test``
    (None: the model's own ``infer.flip_test``) averages with the mirrored image. ``threads``: torch
    intra-op threads (default :func:`default_threads`). The ``onnx`` backend runs the network with
    onnxruntime on the CPU.

    Top-down: ``detector`` (a name, checkpoint or :class:`~posekit.detect.PersonDetector`; None:
    the model's own ``detect.model``; False: none) finds the people first, with its flip test
    when ``detector_flip_test`` (None: the model's own ``detect.flip_test``, or a given
    PersonDetector's own; a given one asked otherwise is copied, not changed). :meth:`predict` then
    poses the best person, :meth:`predict_all` every person found; without a detector the whole
    image is the person's box. A caller's box always wins.

    Raises PosekitError (one line) for a bad model, backend, setting, image or box."""

    def __init__(self, model: str | os.PathLike = DEFAULT_MODEL, device: str | None = None, backend: str = "torch",
                 flip_test: bool | None = None, threads: int | None = None, detector=None,
                 detector_flip_test: bool | None = None, **infer):
        if backend not in BACKENDS:
            raise PosekitError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise PosekitError(f"threads must be a positive integer or None, got {threads!r}")
        model = DEFAULT_MODEL if model is None else model
        if not isinstance(model, (str, os.PathLike)):
            raise PosekitError(f"model must be a shipped name or a path (checkpoint, run folder, .onnx); "
                               f"got a {type(model).__name__}")
        self.backend, self.name, self.threads = backend, str(model), threads
        self._pixels: dict = {}
        self._load(model, device, threads)
        if self.codec.kind == "center":
            raise PosekitError(f"{model}: a person detector, not a pose model; give it as the detector "
                               "(--detector, Predictor(detector=...))")
        cfg = self.config
        self.infer = infer_settings(cfg, {**infer, "flip_test": flip_test}, cascade=bool(self.stages))
        self.flip_test = self.infer.flip_test
        self.refine = self.infer.refine
        self.refine_weight = self.infer.refine_weight if self.refine else 0.0
        self.crop_border = DEFAULT_CROP_BORDER if self.infer.crop_border is None else self.infer.crop_border
        self.crop_touch = TOUCH if self.infer.crop_touch is None else self.infer.crop_touch
        default = 0.0 if cfg.codec.name == "regression" else DEFAULT_PERSON_THRESHOLD
        self.threshold = default if self.infer.person_threshold is None else self.infer.person_threshold
        self.input_size, self.resize_mode = cfg.data.input_size, cfg.data.resize_mode
        self.precision = self._cast_networks(asked=infer.get("precision"))
        self.detector = self._detector(detector, device)
        self.box_margin = cfg.detect.box_margin
        if infer.get("box_margins") and self.detector is None:
            raise PosekitError("box_margins (--box-margins) crops the boxes a person detector finds, and this runs "
                               "without one: give a detector (--detector) or drop box_margins")
        self.box_margins = self.infer.box_margins if self.detector is not None else None
        if infer.get("denoise") is False and self.detector is not None and self.detector.settings.denoise is not None:
            self.detector = copy.copy(self.detector)  # denoise=False: every image read as it is, by both networks
            self.detector.settings = self.detector.settings.model_copy(update={"denoise": None})
        if detector_flip_test is not None and not isinstance(detector_flip_test, bool):
            raise PosekitError(f"detector_flip_test must be True, False or None, got {detector_flip_test!r}")
        if detector_flip_test and self.detector is None:
            raise PosekitError("detector_flip_test (--detector-flip-test) is the person detector's flip test, and this "
                               "runs without one: give a detector (--detector) or drop it")
        if detector_flip_test is not None and self.detector is not None \
                and detector_flip_test != self.detector.settings.flip_test:
            self.detector = copy.copy(self.detector)  # (a given detector, perhaps shared, keeps its own setting)
            self.detector.settings = self.detector.settings.model_copy(update={"flip_test": detector_flip_test})

    @property
    def detector_flip_test(self) -> bool:
        """Whether the person detector runs its flip test (False without a detector)."""
        return bool(self.detector is not None and self.detector.settings.flip_test)

    def _cast_networks(self, asked: str | None) -> str:
        """Cast the pose network and a cascade's stages to the arithmetic in force, and return it
        (``fp32`` or ``bf16``). The onnx backend runs its exported network as it is: a
        caller's ``bf16`` (``asked``) is refused there, a model's own setting does not apply."""
        if self.backend == "onnx":
            if asked == "bf16":
                raise PosekitError("precision bf16 runs on the torch backend; the onnx backend runs the "
                                   "exported float32 (or int8) network: use --precision auto or fp32")
            return "fp32"
        precision = resolve_precision(self.infer.precision, self.device)
        self.network = in_precision(self.network, precision)
        self.stages = [dataclasses.replace(st, net=in_precision(st.net, precision)) for st in self.stages]
        return precision

    def _detector(self, detector, device):
        """The person detector in force (None: the whole image is the person's box)."""
        from posekit.detect import PersonDetector

        if detector is False or detector is None and self.config.detect.model is None:
            return None
        if isinstance(detector, PersonDetector):
            return detector
        if not (detector is None or isinstance(detector, (str, os.PathLike))):
            raise PosekitError(f"detector must be a shipped name, a checkpoint path, a PersonDetector, None or False; "
                               f"got a {type(detector).__name__}")
        return PersonDetector(detector or self.config.detect.model, device, settings=self.config.detect,
                              precision=self.precision)

    @property
    def refinement(self) -> Refinement | None:
        """The refinement crops this predictor runs (None: one pass)."""
        if not self.refine:
            return None
        return Refinement(self.refine, self.refine_weight, self.crop_border, self.flip_test, self.crop_touch)

    def _load(self, model, device, threads) -> None:
        """The network (torch or onnxruntime), its codec, recipe and cascade stages."""
        if self.backend == "onnx":
            from posekit.export import OnnxNetwork

            if device not in (None, "cpu"):
                raise PosekitError(f"the onnx backend runs on the CPU; got device {device!r}")
            self.device, self.model, self.stages, self.checkpoint = torch.device("cpu"), None, [], None
            self.network = OnnxNetwork(model, threads=threads)
            self.config = complete_config(self.network.config, str(model))
            from posekit.checkpoint import codec_from_config

            self.codec = codec_from_config(self.config, str(model))
            return
        if Path(str(model)).suffix.lower() == ".onnx":
            raise PosekitError(f"{model}: an ONNX file needs backend='onnx' (--backend onnx)")
        self.device = select_device(device)
        self.model, self.codec, ckpt = load_model(model, self.device)
        self.checkpoint = ckpt
        self.network = inference_ready(self.model)  # BN folded, channels-last: the same outputs, faster
        self.config = ckpt["recipe"]
        self.stages = cascade_stages(ckpt, self.device)  # DeepPose refinement, for a cascade

    def pose_pixels(self, rgb: np.ndarray) -> np.ndarray:
        """The pixels the pose network reads of an RGB image: the image median-filtered when its
        estimated noise reaches ``infer.denoise`` (:func:`~posekit.data.transforms.denoise`), else
        the image itself. The last two images' answers are kept (by identity, holding at most two
        frames of a video), so the people of one image, posed in two batches (strong, then weak
        detections), cost one estimate."""
        if self.infer.denoise is None:
            return rgb
        cache = self._pixels  # {id: (image, its pixels)}; holding the image keeps its id unique
        hit = cache.get(id(rgb))
        if hit is not None and hit[0] is rgb:
            return hit[1]
        out = denoise(rgb, self.infer.denoise)
        if len(cache) >= 2:
            cache.clear()
        cache[id(rgb)] = (rgb, out)
        return out

    def prepare(self, image, box=None, color: str = "RGB") -> Prepared:
        """The first step, public: one image (and person box) as the network's input, the image
        median-filtered first when it is noisy (:meth:`pose_pixels`)."""
        return prepare(self.pose_pixels(as_rgb(image, color)), box, self.input_size, self.resize_mode)

    def predict(self, image, box=None, color: str = "RGB") -> Pose:
        """The pose of the person in ``box``; None: the one person answer of top-down: the first
        person :meth:`predict_all` finds (so "one" and "all" always agree on whether anybody is
        there, and the answer is never a pose that "all" drops); the whole image without a
        detector. When nobody is found: the best candidate's pose with ``found`` False (the best
        detection down to ``detect.region_threshold``; the whole image when there is none)."""
        return self.predict_batch([image], [box], color)[0]

    def predict_batch(self, images: list, boxes: list | None = None, color: str = "RGB") -> list[Pose]:
        """One pose per image (and box, as :meth:`predict`), run as one batch. ``images`` and
        ``boxes``: any iterables (lists, tuples, generators)."""
        images = list(images)
        if len(images) == 0:
            return []
        boxes = [None] * len(images) if boxes is None else [parse_box(b) for b in boxes]
        if len(boxes) != len(images):
            raise PosekitError(f"{len(images)} images but {len(boxes)} boxes")
        rgbs = [as_rgb(im, color) for im in images]
        detections = self._detections(rgbs, boxes)
        todo = [i for i, d in enumerate(detections) if d is not None]  # top-down: no box, a detector
        answers = {i: one for i, (_, one) in zip(todo, self._top_down([rgbs[i] for i in todo],
                                                                      [detections[i] for i in todo]))} if todo else {}
        rest = [i for i in range(len(rgbs)) if i not in answers]
        if rest:
            answers.update(zip(rest, self.estimate([self.prepare(rgbs[i], boxes[i], "RGB") for i in rest])))
        return [answers[i] for i in range(len(rgbs))]

    def detect(self, rgbs: list, score_threshold: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """The person detector on RGB images, on this predictor's threads: (boxes (M, 4), scores
        (M,)) each, scoring at least ``score_threshold`` (None: ``detect.score_threshold``)."""
        with torch_threads(self.threads or default_threads(len(rgbs))):
            return self.detector.detect_batch(rgbs, score_threshold)

    def _detections(self, rgbs: list, boxes: list | None = None) -> list:
        """For each image without a box (and with a detector): (boxes (M, 4), scores (M,)) of its
        detections down to the lower of the two thresholds, best first; else None."""
        out = [None] * len(rgbs)
        boxes = [None] * len(rgbs) if boxes is None else boxes
        todo = [i for i, b in enumerate(boxes) if b is None] if self.detector is not None else []
        if todo:
            settings = self.detector.settings
            for i, d in zip(todo, self.detect([rgbs[i] for i in todo], min(settings.region_threshold,
                                                                            settings.score_threshold))):
                out[i] = d
        return out

    def best_people(self, rgbs: list, boxes: list | None = None) -> list[tuple]:
        """For each image without a box: (the detector's best box or None, its score); else (None,
        None). One person is wanted, so the best detection counts down to ``detect.region_threshold``
        (whether it is a person is then the pose's score)."""
        return [_best(d) for d in self._detections(rgbs, boxes)]

    def detected_region(self, box) -> tuple[float, float, float, float]:
        """The region a detected box (x, y, w, h) is posed in: the box with ``detect.box_margin``,
        or under the multi-scale test its tightest crop (the frame its crops are fused in)."""
        from posekit.detect import pose_box

        return pose_box(box, (self.box_margins or [self.box_margin])[0])

    def predict_all(self, image, color: str = "RGB") -> list[Pose]:
        """Every person the detector finds whose pose reaches the person threshold, in the
        detector's order (highest detection score first), each with its box, ``box_score`` and
        ``person`` index; [] when nobody is there. Without a detector: the whole image's pose, if
        found.

        Two detection thresholds (hysteresis, as Canny's edges and ByteTrack's boxes): people are
        detections scoring at least ``detect.score_threshold``; once one of them is a person (its
        pose found), weaker detections down to ``detect.region_threshold`` are posed too (a person
        partly hidden by another scores low), each kept when its own pose is found. Whether
        anybody is there is decided by the strong detections alone. A pose too like one already
        kept (object keypoint similarity above ``detect.pose_nms``: one person posed from two
        boxes, or a box across two people posed as a mix of both) is dropped, the poses taken
        in descending score (:func:`drop_duplicate_poses`)."""
        return self.predict_people(image, color)[0]

    def predict_people(self, image, color: str = "RGB") -> tuple[list[Pose], Pose]:
        """Both answers from one run of the detector and the network: (every person found, as
        :meth:`predict_all`; the one-person answer, as :meth:`predict`)."""
        rgb = as_rgb(image, color)
        if self.detector is None:
            pose = self.predict(rgb)
            return ([pose] if pose.found else []), pose
        return self._top_down([rgb], self._detections([rgb]))[0]

    def _top_down(self, rgbs: list, detections: list) -> list[tuple[list[Pose], Pose]]:
        """For each RGB image and its detections (boxes (M, 4), scores (M,), best first): (every
        person found, as :meth:`predict_all`; the one-person answer, as :meth:`predict`: the first
        of them, else the best candidate with ``found`` False). Two batched passes of the network:
        the strong detections of every image (or its best candidate when none is strong), then
        the weak detections of the images where somebody was found."""
        settings = self.detector.settings
        strong = [scores >= settings.score_threshold for _, scores in detections]
        first = [np.flatnonzero(s) if s.any() else np.arange(min(1, len(s))) for s in strong]
        posed = self._pose_detections(rgbs, detections, first)
        second = [np.flatnonzero(~s) if any(posed[i][j].found for j in np.flatnonzero(s)) else np.arange(0)
                  for i, s in enumerate(strong)]
        more = self._pose_detections(rgbs, detections, second)
        out = []
        for i, s in enumerate(strong):
            people = [p for j, p in sorted({**posed[i], **more[i]}.items()) if p.found and (s[j] or j in more[i])]
            if settings.pose_nms is not None:
                people = drop_duplicate_poses(people, settings.pose_nms)
            if settings.group_cover is not None and len(people) > 2:
                people = _drop_group_boxes(people, settings)
            for k, p in enumerate(people):
                p.person = k
            out.append((people, people[0] if people else self._nobody(rgbs[i], detections[i], posed[i])))
        return out

    def _pose_detections(self, rgbs: list, detections: list, picks: list) -> list[dict[int, Pose]]:
        """The poses of the picked detections (``picks[i]``: indices into image i's detections),
        as one batch: for each image {index: Pose with ``box`` and ``box_score``}."""
        pairs = [(i, int(j)) for i, js in enumerate(picks) for j in js]
        poses = self.estimate_detected([(rgbs[i], detections[i][0][j]) for i, j in pairs])
        out: list[dict[int, Pose]] = [{} for _ in rgbs]
        for (i, j), p in zip(pairs, poses):
            p.box, p.box_score = tuple(float(v) for v in detections[i][0][j]), float(detections[i][1][j])
            out[i][j] = p
        return out

    def _nobody(self, rgb: np.ndarray, detections: tuple, posed: dict[int, Pose]) -> Pose:
        """The answer when nobody is found: the best detection's pose (posed already), else the
        whole image's, ``found`` False (``box`` None and ``box_score`` 0.0 when nothing was
        detected)."""
        if 0 in posed:
            pose = posed[0]
        else:
            pose = self.estimate([self.prepare(rgb, None, "RGB")])[0]
            pose.box, pose.box_score = None, 0.0
        pose.found = False
        return pose

    def estimate_detected(self, found: list[tuple], refined: bool = True) -> list[Pose]:
        """The poses of detected people, ``found``: (RGB image, detected box (x, y, w, h)) pairs,
        as one batch. Each box is cropped with ``detect.box_margin``, or once per ``box_margins``
        (the multi-scale test: the crops in the same batch, their heatmaps fused);
        ``refined`` as :meth:`estimate`."""
        from posekit.detect import pose_box

        margins = self.box_margins or [self.box_margin]
        prepared = [prepare(self.pose_pixels(rgb), pose_box(box, m), self.input_size, self.resize_mode)
                    for rgb, box in found for m in margins]
        return self.estimate(prepared, refined, crops=len(margins)) if prepared else []

    def estimate(self, prepared: list[Prepared], refined: bool = True, crops: int = 1) -> list[Pose]:
        """Network, decoding and original pixels for prepared inputs, on this predictor's
        threads; ``refined=False`` stops after the first pass (no refinement crops or cascade
        stages). ``crops`` > 1: the inputs come in groups of that many crops of one person (the
        multi-scale test, :func:`posekit.tta.fuse_crops`), one pose per group."""
        if crops < 1 or len(prepared) % crops:
            raise PosekitError(f"{len(prepared)} inputs do not make groups of {crops} crops")
        with torch_threads(self.threads or default_threads(len(prepared) // crops)):
            return self._estimate(prepared, refined, crops)

    @torch.inference_mode()
    def _estimate(self, prepared: list[Prepared], refined: bool, crops: int = 1) -> list[Pose]:
        x = torch.stack([p.input for p in prepared]).to(self.device)
        m = torch.stack([p.matrix for p in prepared])
        first = fuse_crops(self.codec, run_network(self.network, self.codec, x, self.flip_test), m.numpy(), crops,
                           self.input_size)
        prepared, m = prepared[::crops], m[::crops]
        kp = to_original(first.keypoints.cpu(), m).numpy()
        if not np.isfinite(kp).all():
            raise PosekitError("the prediction is not finite (a box of absurd size?)")
        sc = first.scores.float().cpu().numpy()
        images = [p.image for p in prepared]
        if self.refine and refined:
            kp, sc = refine(self.network, self.codec, images, FirstPass(kp, first.maps, m.numpy()), self.refinement,
                            self.input_size, self.device)
        if self.stages and refined:
            from posekit.models.cascade import run_cascade

            kp = run_cascade(self.stages, images, kp, self.device)[-1]
        poses = []
        for i, p in enumerate(prepared):
            score = float(np.mean(sc[i]))
            poses.append(Pose(kp[i], sc[i], p.width, p.height, score=score, found=score >= self.threshold, box=p.box))
        return poses

    def refinement_box(self, image, box=None, color: str = "RGB", detected=None):
        """The region of the pass that made the pose (for explaining that pass): without
        refinement the person box (``box``; else the detected box ``detected`` (x, y, w, h), by
        default the detector's best, with its margin, or under the multi-scale test its tightest
        crop, :meth:`detected_region`; None: the whole image), else the first refinement crop's
        square around the first estimate (for a detected box, the estimate of its fused crops)."""
        rgb = as_rgb(image, color)
        if box is None and detected is None:
            detected = self.best_people([rgb])[0][0]
        region = box if box is not None else None if detected is None else self.detected_region(detected)
        if not self.refine:
            return region
        prepared = self.prepare(rgb, region)
        if box is None and detected is not None:  # posed as estimate_detected poses it
            first = self.estimate_detected([(rgb, detected)], refined=False)[0]
        else:
            first = self.estimate([prepared], refined=False)[0]
        region = region_side(prepared.matrix.numpy()[None], self.input_size, 1)[0]
        return refinement_box(first.keypoints, self.refine[0], first.width, first.height, region)
