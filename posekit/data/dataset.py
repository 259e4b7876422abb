"""``PoseLandmarksDataset`` (the paper's name) and an in-memory decoded-image cache."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from posekit.data.images import read_image
from posekit.data.lsp import PoseSet
from posekit.data.scenes import crowd_scene
from posekit.data.transforms import PoseTransform, apply_affine, scale_matrix
from posekit.errors import DataError
from posekit.utils import derive_seed


def _run_threaded(fn, items, threads: int, progress: bool, desc: str) -> None:
    """``fn`` over ``items`` on a thread pool (OpenCV releases the GIL); the first error is raised."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
        it = ex.map(fn, items)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(items), desc=desc, unit="img", leave=False)
        for _ in it:
            pass


def verify_images(paths: list[Path], threads: int = 2, progress: bool = False) -> None:
    """Decode every image once (and drop it): raises DataError for the first bad one."""
    _run_threaded(lambda p: read_image(p).shape, paths, threads, progress, "checking images")


class ImageCache:
    """Decodes every image once (threads; OpenCV releases the GIL) and keeps a copy whose longer
    side is at most ``max_side`` pixels, with the affine that maps original pixels onto it. The
    JPEG decoding then happens once per run rather than once per sample per epoch."""

    def __init__(self, paths: list[Path], max_side: int = 256, threads: int = 2, progress: bool = False):
        self.max_side = int(max_side)
        self.images: list[np.ndarray] = [None] * len(paths)  # type: ignore[list-item]
        self.pre = np.zeros((len(paths), 2, 3), np.float64)
        self.sizes = np.zeros((len(paths), 2), np.int64)
        self.index = {str(p): i for i, p in enumerate(paths)}

        def load(i: int) -> None:
            im = read_image(paths[i])
            h, w = im.shape[:2]
            f = min(1.0, self.max_side / max(w, h))
            if f < 1.0:
                sw, sh = max(1, round(w * f)), max(1, round(h * f))
                im = cv2.resize(im, (sw, sh), interpolation=cv2.INTER_AREA)
            self.images[i] = im
            self.pre[i] = scale_matrix(im.shape[1] / w, im.shape[0] / h)
            self.sizes[i] = (w, h)

        _run_threaded(load, list(range(len(paths))), threads, progress, "decoding images")

    def get(self, path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        i = self.index[str(path)]
        w, h = self.sizes[i]
        return self.images[i], self.pre[i], (int(w), int(h))


class PoseLandmarksDataset(Dataset):
    """Samples of one or more :class:`PoseSet` selected by sample ids, after a transform.

    Each item is a dict: ``image`` (3, S, S), ``keypoints`` (14, 2) in input pixels, ``mask`` (14,)
    annotated joints, ``matrix`` (2, 3) original -> input affine, ``gt`` (14, 2) and ``gt_mask`` in
    original pixels, ``size`` (w, h) of the original image, ``index``.

    With ``teacher`` (sample id -> (keypoints (14, 2) original pixels, scores (14,)), a teacher
    model's estimates: :mod:`posekit.distill`) items also hold ``teacher`` (14, 2) in input pixels
    and ``teacher_mask`` (14,): the joints the teacher scored at least ``teacher_min_score``.

    With ``crowd`` > 0 (training only), that fraction of items is the person pasted beside one or
    two other people of ``ids`` on a blurred canvas (:func:`posekit.data.scenes.crowd_scene`);
    such an item's ``gt``, ``size`` and ``matrix`` are in the canvas's pixels and its teacher
    joints are left out (``teacher_mask`` all zero): the teacher saw the original photo.

    Augmentation is seeded from (``seed``, epoch, index), so a run is reproducible whatever the
    number of loader workers; call :meth:`set_epoch` at each epoch."""

    def __init__(self, sets: dict[str, PoseSet], ids: list[str], transform: PoseTransform,
                 cache: ImageCache | None = None, seed: int = 0, teacher: dict | None = None,
                 teacher_min_score: float = 0.0, crowd: float = 0.0):
        self.crowd = float(crowd) if transform.train else 0.0
        self.teacher, self.teacher_min_score = teacher, float(teacher_min_score)
        self.transform = transform
        self.cache = cache
        self.seed = int(seed)
        self.epoch = 0
        lookup = {}
        for s in sets.values():
            for i in range(len(s)):
                lookup[s.sample_id(i)] = (s, i)
        missing = [sid for sid in ids if sid not in lookup]
        if missing:
            raise DataError(f"sample {missing[0]!r} (and {len(missing) - 1} more) not in the loaded data sets")
        self.ids = list(ids)
        self.items = [lookup[sid] for sid in ids]

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def paths(self) -> list[Path]:
        return [s.image_paths[i] for s, i in self.items]

    def _sample(self, idx: int) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int], np.ndarray, np.ndarray]:
        """(image, affine original -> image pixels or None, original (w, h), keypoints, mask)."""
        s, i = self.items[idx]
        if self.cache is not None:
            image, pre, size = self.cache.get(s.image_paths[i])
            return image, pre, size, s.keypoints[i], s.annotated[i]
        image = read_image(s.image_paths[i])
        return image, None, (image.shape[1], image.shape[0]), s.keypoints[i], s.annotated[i]

    def _crowd(self, idx: int):
        """A crowd scene around item ``idx`` (see the class docstring), or None for a plain item."""
        rng = np.random.default_rng(derive_seed(self.seed, "crowd", self.epoch, idx))
        if rng.random() >= self.crowd or len(self) < 2:
            return None
        picks = rng.choice(len(self), size=int(rng.integers(1, 3)) + 1)  # a background, then 1-2 people

        def person(j):
            image, pre, _, kp, mask = self._sample(int(j))
            return image, (kp if pre is None else apply_affine(kp, pre)), mask

        return crowd_scene(person(idx), [person(j) for j in picks[1:]], self._sample(int(picks[0]))[0], rng)

    def __getitem__(self, idx: int) -> dict:
        seed = derive_seed(self.seed, "augment", self.epoch, idx) if self.transform.train else None
        scene = self._crowd(idx) if self.crowd > 0 else None
        image, pre, (w, h), kp, mask = self._sample(idx)
        extra = {}
        if self.teacher is not None:
            t_kp, t_sc = self.teacher.get(self.ids[idx], (np.zeros_like(kp), np.zeros(len(kp))))
            extra = {"teacher": np.asarray(t_kp, np.float64),
                     "teacher_mask": np.asarray(t_sc) >= max(self.teacher_min_score, 1e-9)}
        if scene is not None:  # the person on a canvas with others; the teacher saw the photo
            image, pre, kp, mask = scene.image, None, scene.keypoints[0], scene.masks[0]
            h, w = image.shape[:2]
            if extra:
                extra = {"teacher": np.zeros_like(kp), "teacher_mask": np.zeros(len(kp), bool)}
        if pre is not None:
            out = self.transform(image, kp, mask, seed=seed, orig_size=(w, h), pre=pre, **extra)
        else:
            out = self.transform(image, kp, mask, seed=seed, **extra)
        out.update(
            gt=torch.from_numpy(kp.astype(np.float32)),
            gt_mask=torch.from_numpy(mask.astype(np.float32)),
            size=torch.tensor([w, h], dtype=torch.float32),
            index=idx,
        )
        return out
