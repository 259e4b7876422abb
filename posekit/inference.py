"""Running a pose network on images, as plain steps: preparation (:func:`prepare`: the image or a
person box warped to the network's input), the network and its decoding (:mod:`posekit.tta`),
and the mapping back to original pixels, into a :class:`Pose`. Also :func:`predict_loader`,
the same steps over a dataset (evaluation and training's validation).

Legend: N images, K joints (14), S the network's input side in pixels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from posekit.data.images import MIN_SIDE
from posekit.data.transforms import PoseTransform, box_matrix, to_tensor, warp
from posekit.errors import PosekitError
from posekit.skeleton import JOINT_NAMES, NUM_JOINTS
from posekit.tta import run_network, to_original


@dataclass
class Pose:
    """One person's K joints in original-image pixels.

    ``keypoints`` (K, 2) x, y; ``scores`` (K,) a confidence per joint (a heatmap's peak; 1 for
    regression models, which have none); ``score`` the person's overall confidence (the mean
    joint score); ``found`` whether a person is there: ``score`` reaches the model's person
    threshold (and, with a detector, the detector found the person; below either the pose is the
    network's best guess at a person who is probably not there: nothing is drawn); ``box`` (x, y,
    w, h) the person's box: the detector's or the caller's (None: the whole image);
    ``box_score`` the detector's confidence in it (None: no detector ran, or the caller gave the
    box; 0.0: the detector ran and found nobody, ``box`` None); ``person`` the person's index in
    the image, in the detector's order (or its track id in a video), None while ``found`` is
    False (nobody to number, as the record's null); ``in_image`` (K,) False for a joint placed
    outside the image."""

    keypoints: np.ndarray
    scores: np.ndarray
    width: int
    height: int
    score: float = 1.0
    found: bool = True
    box: tuple[float, float, float, float] | None = None
    box_score: float | None = None
    person: int | None = 0  # read as None while not found (the property below)
    names: tuple[str, ...] = JOINT_NAMES

    @property
    def in_image(self) -> np.ndarray:
        x, y = self.keypoints[:, 0], self.keypoints[:, 1]
        return (x >= -0.5) & (x <= self.width - 0.5) & (y >= -0.5) & (y <= self.height - 0.5)

    def to_dict(self) -> dict:
        """JSON-ready: width, height, person (None when not ``found``: nobody to number), found,
        score, box, box_score and the K joints (name, x, y, score, in_image), numbers rounded."""
        inside = self.in_image
        return {"width": self.width, "height": self.height, "person": None if self.person is None else int(self.person),
                "found": bool(self.found),
                "score": round(float(self.score), 4),
                "box": None if self.box is None else [round(float(v), 2) for v in self.box],
                "box_score": None if self.box_score is None else round(float(self.box_score), 4),
                "joints": [{"name": n, "x": round(float(x), 2), "y": round(float(y), 2), "score": round(float(s), 4),
                            "in_image": bool(i)}
                           for n, (x, y), s, i in zip(self.names, self.keypoints, self.scores, inside)]}


def _get_person(pose: Pose) -> int | None:
    return pose._person if pose.found else None


def _set_person(pose: Pose, value: int | None) -> None:
    pose._person = value


# ``person`` as the record has it: None while the pose is not found, whatever number it was given
# (a pose is often marked not found after it is made); the number comes back if it is found again.
# Set after the dataclass is made, so the field (and its default, 0) stays a constructor argument.
Pose.person = property(_get_person, _set_person, doc="the person's index or track id; None when not found")


def reported_poses(pred, image: np.ndarray, people: str = "one", box=None) -> list[Pose]:
    """The poses an answer reports for one RGB uint8 image (H, W, 3), by ``pred`` (a
    :class:`posekit.predict.Predictor`): ``people`` "all" without a ``box``: every person found
    (``pred.predict_people``, as ``predict_all``: in the detector's order, highest detection
    score first); "one", or a ``box`` given: the one person (``pred.predict``, found or not).

    Never empty. With nobody found it is the one-person answer with ``found`` False: the best
    candidate posed (the detector's best box down to ``detect.region_threshold``; the whole image
    when the detector finds nobody, then ``box_score`` is 0.0, or without a detector). So an
    answer about nobody carries the score of a pose that was estimated, the same in every mode
    and interface (CLI, video, HTTP)."""
    if people == "all" and box is None and getattr(pred, "detector", None) is not None:
        found, one = pred.predict_people(image)  # one run of the detector for both
        return found or [one]
    return [pred.predict(image, box)]


def pose_records(poses: list[Pose], **where) -> list[dict]:
    """The records of ``poses`` (one each, as ``--json`` writes them): ``where`` first (e.g.
    image, frame, time, model), then :meth:`Pose.to_dict`. The one place records are built, so
    that every record has the same fields, found or not, image or video frame."""
    return [{**where, **p.to_dict()} for p in poses]


def parse_box(box) -> tuple[float, float, float, float] | None:
    """(x, y, w, h) pixels from a 4-sequence or an 'x,y,w,h' string (None stays None).

    Raises PosekitError for anything else, and for a box whose longer side is under
    :data:`posekit.data.images.MIN_SIDE` pixels (too small to hold a person)."""
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


@dataclass
class Prepared:
    """One image ready for the network: ``image`` RGB uint8 (H, W, 3) as given, ``input`` (3, S, S)
    normalised tensor, ``matrix`` (2, 3) float64 affine original -> input pixels, ``box`` the
    person box it frames (None: the whole image), ``width``, ``height``."""

    image: np.ndarray
    input: torch.Tensor
    matrix: torch.Tensor
    box: tuple[float, float, float, float] | None
    width: int
    height: int


def prepare(image: np.ndarray, box, input_size: int, resize_mode: str) -> Prepared:
    """The first step: an RGB image (H, W, 3) and a person box (x, y, w, h) or None (the whole
    image, resized as the model was trained: ``resize_mode``) -> a :class:`Prepared` input.
    A box is framed as the square around its centre with its longer side.

    Raises PosekitError for a box outside the image or more than 10 times its size."""
    h, w = image.shape[:2]
    box = parse_box(box)
    if box is None:
        item = PoseTransform(input_size, resize_mode)(image, np.zeros((NUM_JOINTS, 2)), np.ones(NUM_JOINTS))
        return Prepared(image, item["image"], item["matrix"], None, w, h)
    x, y, bw, bh = box
    if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
        raise PosekitError(f"box {box} lies outside the {w}x{h} image")
    if max(bw, bh) > 10 * max(w, h):
        raise PosekitError(f"box {box} is more than 10 times larger than the {w}x{h} image")
    side = max(bw, bh)
    m = box_matrix((x + bw / 2 - side / 2, y + bh / 2 - side / 2, side, side), input_size)
    return Prepared(image, to_tensor(warp(image, m, input_size)), torch.from_numpy(m), box, w, h)


@torch.no_grad()
def predict_loader(model, codec, loader, device, loss_fn=None, keep_first: bool = True, flip_test: bool = False,
                   keep_maps: bool = False) -> dict:
    """Run a pose network over a dataset's loader (items of
    :class:`posekit.data.dataset.PoseLandmarksDataset`). Returns numpy ``pred``/``gt`` (N, K, 2)
    in original pixels, ``mask`` (N, K), ``sizes`` (N, 2), ``scores`` (N, K), the mean ``loss``
    when ``loss_fn`` is given, and ``first``: the first batch's input-frame tensors (for
    drawing). ``keep_maps`` adds ``maps`` (the decoded heatmaps (N, K, H, W), None for coordinate
    codecs) and their input ``matrices`` (N, 2, 3)."""
    model.eval()
    preds, gts, masks, sizes, scores, maps, matrices = [], [], [], [], [], [], []
    total, count, first = 0.0, 0, None
    for batch in loader:
        x = batch["image"].to(device)
        out = model(x)
        p = run_network(model, codec, x, flip_test, out)
        if keep_maps:
            maps.append(None if p.maps is None else p.maps.cpu())
            matrices.append(batch["matrix"].numpy())
        if loss_fn is not None:
            target, weight = codec.encode(batch["keypoints"].to(device), batch["mask"].to(device))
            total += loss_fn(codec.loss_input(out.float()), target, weight).item() * len(x)
            count += len(x)
        kp = p.keypoints.cpu()
        if keep_first and first is None:
            first = {"image": batch["image"][:16], "pred": kp[:16].numpy(),
                     "keypoints": batch["keypoints"][:16].numpy(), "mask": batch["mask"][:16].numpy()}
        preds.append(to_original(kp, batch["matrix"]).numpy())
        gts.append(batch["gt"].numpy())
        masks.append(batch["gt_mask"].numpy() > 0)
        sizes.append(batch["size"].numpy())
        scores.append(p.scores.cpu().numpy())
    res = {"pred": np.concatenate(preds), "gt": np.concatenate(gts).astype(np.float64),
           "mask": np.concatenate(masks), "sizes": np.concatenate(sizes), "scores": np.concatenate(scores),
           "first": first}
    if keep_maps:
        res["maps"] = None if not maps or maps[0] is None else torch.cat(maps)
        res["matrices"] = np.concatenate(matrices) if matrices else np.zeros((0, 2, 3))
    if loss_fn is not None:
        res["loss"] = total / max(count, 1)
    return res
