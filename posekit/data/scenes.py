"""Scenes with several people, for the person detector and the multi-person evaluation: person
boxes from annotated joints, composites (person images pasted on one canvas) and the
deterministic multi-person test set ``lsp-multi`` built from LSP's test images only.

Boxes are (x, y, w, h) in pixels; keypoints (P, K, 2) 0-based pixels; masks (P, K) annotated."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from posekit.data.transforms import apply_affine
from posekit.skeleton import NUM_JOINTS

#: context around the annotated joints' box that makes a person box: (sides, top, bottom), each a
#: fraction of the joints' box width (sides) or height (top, bottom); the head top is a joint, the
#: feet reach past the ankles
BOX_MARGIN = (0.12, 0.05, 0.07)


def box_from_joints(keypoints: np.ndarray, mask: np.ndarray, width: int | None = None, height: int | None = None,
                    margin: tuple[float, float, float] = BOX_MARGIN) -> tuple[float, float, float, float] | None:
    """The person box around annotated joints (K, 2) with ``margin``, clipped to the image when
    its size is given; None with fewer than two annotated joints."""
    pts = np.asarray(keypoints, np.float64)[np.asarray(mask, bool)]
    if len(pts) < 2:
        return None
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    x0, x1 = x0 - margin[0] * bw, x1 + margin[0] * bw
    y0, y1 = y0 - margin[1] * bh, y1 + margin[2] * bh
    if width is not None and height is not None:
        x0, y0, x1, y1 = max(x0, -0.5), max(y0, -0.5), min(x1, width - 0.5), min(y1, height - 0.5)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


@dataclass
class Scene:
    """An RGB image (H, W, 3) with its people: ``boxes`` (P, 4), ``keypoints`` (P, K, 2), ``masks`` (P, K)."""

    image: np.ndarray
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_JOINTS, 2)))
    masks: np.ndarray = field(default_factory=lambda: np.zeros((0, NUM_JOINTS), bool))


def _boxable(box) -> bool:
    """A person box (or None) large enough to train and score a detector on: 4 pixels each way."""
    return box is not None and box[2] >= 4 and box[3] >= 4


def _with_people(image: np.ndarray, boxes: list, kps: list, masks: list) -> Scene:
    """A scene of ``image`` and the people kept (lists of boxes, keypoints (K, 2), masks (K,))."""
    if not boxes:
        return Scene(image)
    return Scene(image, np.array(boxes), np.stack(kps), np.stack(masks))


def rotate_scene(scene: Scene, degrees: float, expand: bool = True, fill: tuple[int, int, int] = (0, 0, 0)) -> Scene:
    """``scene`` turned ``degrees`` counter-clockwise about its centre, corners ``fill``ed: on a
    canvas grown to hold the whole turned image (``expand``, nobody is cut), or on one of the same
    size (people keep their scale; what leaves the canvas is cut). Joints turn with it and each box
    is made again from its person's turned joints (:func:`box_from_joints`, clipped to the canvas):
    an upright box around a leaning or upside-down person, as a detector should give. A person with
    fewer than two annotated joints left on the canvas, or a box under 4 pixels, is dropped; the
    masks keep the joints still on it."""
    h, w = scene.image.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(degrees), 1.0)
    nw, nh = w, h
    if expand:
        c, s = abs(m[0, 0]), abs(m[0, 1])
        nw, nh = int(np.ceil(w * c + h * s - 1e-6)), int(np.ceil(w * s + h * c - 1e-6))  # (cos 90 degrees is 6e-17)
        m[0, 2] += (nw - w) / 2.0
        m[1, 2] += (nh - h) / 2.0
    image = cv2.warpAffine(scene.image, m, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=tuple(int(v) for v in fill))
    if not len(scene.boxes):
        return Scene(image)
    boxes, kps, masks = [], [], []
    for k, mask in zip(scene.keypoints, scene.masks):
        kk = apply_affine(k, m)
        on = np.asarray(mask, bool) & (kk[:, 0] >= -0.5) & (kk[:, 0] <= nw - 0.5) & (kk[:, 1] >= -0.5) & (kk[:, 1] <= nh - 0.5)
        box = box_from_joints(kk, mask, nw, nh) if on.sum() >= 2 else None  # a person mostly turned off the canvas: gone
        if _boxable(box):
            boxes.append(box)
            kps.append(kk)
            masks.append(on)  # the joints still on the canvas
    return _with_people(image, boxes, kps, masks)


def blurred_background(image: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A canvas from ``image`` with no recognisable person: stretched to width x height, blurred
    hard, its colours shifted, a little noise added."""
    small = cv2.resize(image, (max(2, width // 16), max(2, height // 16)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small.astype(np.float32), (0, 0), sigmaX=max(width, height) / 320)
    bg = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)  # a blur of about 1/20 of the side
    bg = bg * rng.uniform(0.6, 1.2) + rng.uniform(-40, 40, size=3).astype(np.float32)
    grain = rng.integers(-8, 9, size=(height, width, 1), dtype=np.int16).astype(np.float32)  # film-grain noise
    return np.clip(bg + grain, 0, 255).astype(np.uint8)


def noise_image(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB image with no person in it: one flat colour, white or Gaussian noise, or smooth
    colour noise (random colours at 1/16 of the size, upscaled), a third each."""
    kind = int(rng.integers(3))
    if kind == 0:
        img = np.empty((height, width, 3), np.uint8)
        img[:] = rng.integers(0, 256, size=3)
        return img
    if kind == 1:
        noise = (rng.normal(128, rng.uniform(10, 80), (height, width, 3)) if rng.random() < 0.5
                 else rng.uniform(0, 255, (height, width, 3)))
        return np.clip(noise, 0, 255).astype(np.uint8)
    small = rng.uniform(0, 255, (max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def background_crop(image: np.ndarray, keypoints: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                    min_side: int = 48, tries: int = 20) -> np.ndarray | None:
    """A square crop of ``image`` (at least ``min_side`` pixels, at most half its shorter side)
    that does not touch the annotated person's joints' box enlarged by a quarter of its longer
    side; None when no try fits. Other, unannotated people may still be in it."""
    pts = np.asarray(keypoints, np.float64)[np.asarray(mask, bool)]
    if len(pts) < 2:
        return None
    h, w = image.shape[:2]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    pad = 0.25 * max(x1 - x0, y1 - y0)
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    for _ in range(tries):
        side = int(rng.integers(min_side, max(min_side + 1, min(w, h) // 2 + 1)))
        if side > min(w, h):
            return None
        cx, cy = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        if cx + side < x0 or cx > x1 or cy + side < y0 or cy > y1:
            return np.ascontiguousarray(image[cy:cy + side, cx:cx + side])
    return None


def _feathered_paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int, feather: int) -> None:
    """Paste ``patch`` at (x, y) (clipped to the canvas), its edges blended over ``feather`` pixels."""
    h, w = patch.shape[:2]
    ch, cw = canvas.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(cw, x + w), min(ch, y + h)
    if x1 <= x0 or y1 <= y0:
        return
    alpha = np.ones((h, w), np.float32)
    if feather > 0:  # 0 at the patch's edge, 1 from ``feather`` pixels inside
        yy = np.minimum(np.arange(h), np.arange(h)[::-1])[:, None]
        xx = np.minimum(np.arange(w), np.arange(w)[::-1])[None, :]
        alpha = np.clip(np.minimum(yy, xx) / feather, 0, 1).astype(np.float32)
    a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    canvas[y0:y1, x0:x1] = (a * patch[y0 - y:y1 - y, x0 - x:x1 - x] + (1 - a) * region).astype(np.uint8)


def person_patch(image, kp, mask, target_h: float, flip: bool, context: float = 0.15):
    """The person's box (plus ``context`` of its size on each side) cut from ``image`` and scaled
    so the person's box is ``target_h`` pixels tall (and mirrored): (patch, keypoints, mask)."""
    h, w = image.shape[:2]
    bx, by, bw, bh = box_from_joints(kp, mask, w, h)
    x0, y0 = int(max(0, np.floor(bx - context * bw))), int(max(0, np.floor(by - context * bh)))
    x1, y1 = int(min(w, np.ceil(bx + bw * (1 + context)))), int(min(h, np.ceil(by + bh * (1 + context))))
    crop = image[y0:y1, x0:x1]
    f = target_h / max(bh, 1.0)
    ph, pw = crop.shape[:2]
    sw, sh = max(1, round(pw * f)), max(1, round(ph * f))
    patch = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    m = np.array([[sw / pw, 0, 0.5 * sw / pw - 0.5], [0, sh / ph, 0.5 * sh / ph - 0.5]])
    k = apply_affine(np.asarray(kp, np.float64) - [x0, y0], m)
    mask = np.asarray(mask, bool)
    if flip:
        from posekit.skeleton import FLIP_PERM

        patch = np.ascontiguousarray(patch[:, ::-1])
        k = k.copy()
        k[:, 0] = sw - 1 - k[:, 0]
        k, mask = k[FLIP_PERM], mask[FLIP_PERM]
    return patch, k, mask


def _overlap(a, b) -> float:
    """Intersection of boxes a and b (x, y, w, h) over the smaller one's area."""
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return iw * ih / max(1e-9, min(a[2] * a[3], b[2] * b[3]))


def compose(background: np.ndarray, people: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rng: np.random.Generator,
            heights: tuple[float, float] = (0.15, 0.8), max_overlap: float = 0.1, feather: int = 6,
            flip: float = 0.5) -> Scene:
    """A canvas (``background``, RGB) with each of ``people`` ((image, keypoints (K, 2), mask (K,))
    of one annotated person) cut out with some context and pasted at a random place, its person
    ``heights`` (a fraction of the canvas height, drawn uniformly) tall; a paste may cover at most
    ``max_overlap`` of an earlier one (so every person stays visible), else after 30 tries the
    person is left out. Boxes and joints follow the pastes."""
    canvas = background.copy()
    ch, cw = canvas.shape[:2]
    rects, boxes, kps, masks = [], [], [], []
    for image, kp, mask in people:
        patch, k, m = person_patch(image, kp, mask, rng.uniform(*heights) * ch, rng.random() < flip)
        ph, pw = patch.shape[:2]
        for _ in range(30):
            x = int(rng.integers(min(0, cw - pw), max(1, cw - pw + 1)))
            y = int(rng.integers(min(0, ch - ph), max(1, ch - ph + 1)))
            if all(_overlap((x, y, pw, ph), r) <= max_overlap for r in rects):
                break
        else:
            continue
        _feathered_paste(canvas, patch, x, y, feather)
        kk = k + [x, y]
        box = box_from_joints(kk, m, cw, ch)
        if not _boxable(box):
            continue
        rects.append((x, y, pw, ph))
        boxes.append(box)
        kps.append(kk)
        masks.append(m)
    return _with_people(canvas, boxes, kps, masks)


def crowd_scene(person: tuple[np.ndarray, np.ndarray, np.ndarray], others: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                background: np.ndarray, rng: np.random.Generator, height: int = 320,
                heights: tuple[float, float] = (0.35, 0.7), max_overlap: float = 0.25) -> Scene | None:
    """A training scene for a top-down pose model: ``person`` ((image, keypoints (K, 2), mask (K,)))
    pasted with ``others`` (the same) close beside it on ``background`` blurred past recognition
    (a canvas ``height`` pixels tall and 1.25-2 times as wide), each person ``heights`` of the
    canvas tall, a paste covering at most ``max_overlap`` of an earlier one: the crop around the
    person then holds parts of other people, as in a crowded photo or a composite. The person is
    ``Scene`` row 0; None when it has fewer than two annotated joints.

    Raises:
        ValueError: people under 8 pixels tall (``min(heights) * height``)."""
    if min(heights) * height < 8:
        raise ValueError(f"people {min(heights)} x {height} pixels tall are too small to pose")
    if box_from_joints(person[1], person[2]) is None:
        return None
    w = int(round(height * rng.uniform(1.25, 2.0)))
    sc = compose(blurred_background(background, w, height, rng), [person, *others], rng, heights=heights,
                 max_overlap=max_overlap, flip=0.0)
    return sc  # the first paste has nothing to overlap: it is always placed, as row 0


def multi_person_set(images: list[np.ndarray], keypoints: np.ndarray, masks: np.ndarray, n: int = 300,
                     seed: int = 0, people: tuple[int, int] = (1, 4)) -> list[Scene]:
    """``n`` deterministic scenes of ``people`` persons each (uniformly 1 to 4), from one-person
    images (``images`` with their ``keypoints`` (N, K, 2) and ``masks`` (N, K)): canvases of
    480-800 x 360-600 pixels whose background is another of the images blurred past recognition,
    each person pasted at 15-80 % of the canvas height. ``lsp-multi`` is this over LSP's test
    images with seed 0."""
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(n):
        w, h = int(rng.integers(480, 801)), int(rng.integers(360, 601))
        k = int(rng.integers(people[0], people[1] + 1))
        pick = rng.choice(len(images), size=k + 1, replace=len(images) < k + 1)  # (few images: some twice)
        bg = blurred_background(images[pick[0]], w, h, rng)
        scenes.append(compose(bg, [(images[i], keypoints[i], masks[i]) for i in pick[1:]], rng))
    return scenes
