"""DeepPose cascade (Toshev & Szegedy, CVPR 2014), the refinement the paper names.

Stage 1 is any holistic regressor: a pose for the whole image. Each later stage ``s`` looks, for
every joint ``j``, at a square crop of the *original* image centred on the previous estimate of
``j``, of side ``sigma_s x diam(previous pose)``, resized to the stage network's input. The network
(any registry regression model: 14 x (x, y) outputs) regresses, in its output row ``j``, where the
joint lies in the crop's normalised frame ([0, 1]^2, 0.5 = the crop centre), i.e. the displacement
from the crop centre. A stage may instead use a fully convolutional heatmap model with the
heatmap or integral codec; map ``j``, decoded, gives the same place. The estimate moves there,
mapped back to image pixels, and the next stage starts from it.

``diam`` is DeepPose's pose diameter: the distance between opposing torso joints (left shoulder
to right hip, and right shoulder to left hip; the larger), floored at a quarter of the pose's
extent so that a collapsed first guess still gets a usable crop.

Training a stage (``posekit.cascade_task``) centres crops on the true joint displaced by noise
drawn from :class:`ErrorModel`: a per-joint 2-D Gaussian of the previous stage's errors on the
training set, in units of the pose diameter (DeepPose's "simulated predictions").

Pure compute: numpy images in, numpy keypoints out; no file I/O."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from posekit.codecs import build_codec, from_unit, to_unit
from posekit.data.transforms import apply_affine, box_matrix, compose_affine, invert_affine, to_tensor, warp
from posekit.skeleton import JOINT_INDEX, NUM_JOINTS

_OPPOSING = ((JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_hip"]),
             (JOINT_INDEX["right_shoulder"], JOINT_INDEX["left_hip"]))


def pose_diameter(kp: np.ndarray, min_extent_frac: float = 0.25) -> np.ndarray:
    """(..., 14, 2) poses -> (...,) diameters in the same pixels (see the module docstring)."""
    kp = np.asarray(kp, np.float64)
    d = np.maximum(*(np.linalg.norm(kp[..., a, :] - kp[..., b, :], axis=-1) for a, b in _OPPOSING))
    extent = np.max(kp.max(axis=-2) - kp.min(axis=-2), axis=-1)
    return np.maximum(d, min_extent_frac * extent).clip(min=1.0)


def crop_matrix(centre: np.ndarray, side: float, size: int) -> np.ndarray:
    """Affine: original pixels -> a size x size crop of ``side`` pixels centred on ``centre``."""
    cx, cy = float(centre[0]), float(centre[1])
    # box_matrix takes boxes in pixel-centre terms: pixels x0 .. x0 + side - 1, centred on x0 + (side - 1) / 2
    return box_matrix((cx - (side - 1) / 2, cy - (side - 1) / 2, side, side), size)


def joint_target(gt: np.ndarray, centre: np.ndarray, side: float, size: int) -> np.ndarray:
    """Where ``gt`` (2,) lies in the normalised frame of the crop (0.5, 0.5 = the centre)."""
    return to_unit(apply_affine(gt, crop_matrix(centre, side, size)), size)


def joint_from_output(out_norm: np.ndarray, centre: np.ndarray, side: float, size: int) -> np.ndarray:
    """Inverse of :func:`joint_target`: a normalised crop position -> image pixels."""
    return apply_affine(from_unit(out_norm, size), invert_affine(crop_matrix(centre, side, size)))


class ErrorModel:
    """Per-joint 2-D Gaussian of a stage's errors (truth - estimate) / diameter, fitted on the
    training set; :meth:`sample` draws displacements for simulated estimates."""

    def __init__(self, mean: np.ndarray, cov: np.ndarray, counts: np.ndarray | None = None):
        self.mean = np.asarray(mean, np.float64).reshape(NUM_JOINTS, 2)
        self.cov = np.asarray(cov, np.float64).reshape(NUM_JOINTS, 2, 2)
        self.counts = None if counts is None else np.asarray(counts)
        self.excluded = np.zeros(NUM_JOINTS)  # fraction of errors beyond ``reach`` in :meth:`fit`
        # Cholesky factors (a tiny ridge keeps a degenerate covariance usable)
        self._chol = np.linalg.cholesky(self.cov + 1e-9 * np.eye(2))

    @classmethod
    def fit(cls, gt: np.ndarray, est: np.ndarray, mask: np.ndarray, reach: float | None = None) -> ErrorModel:
        """From (N, 14, 2) truths, (N, 14, 2) estimates and (N, 14) annotation masks.

        ``reach`` (in pose diameters): only errors whose x and y both lie within it are fitted.
        A stage whose crop has half-side ``reach`` cannot see a joint further away, and a weak
        stage 1's few gross misses (tens of diameters) would otherwise swell the Gaussian until
        most simulated estimates put the joint outside the crop. ``excluded`` keeps, per joint,
        the fraction left out."""
        err = (np.asarray(gt, np.float64) - np.asarray(est, np.float64)) / pose_diameter(est)[:, None, None]
        mask = np.asarray(mask, bool)
        annotated = mask.sum(0)
        if reach is not None:
            mask = mask & (np.abs(err) <= reach).all(-1)
        mean, cov, counts = np.zeros((NUM_JOINTS, 2)), np.zeros((NUM_JOINTS, 2, 2)), mask.sum(0)
        for j in range(NUM_JOINTS):
            e = err[mask[:, j], j]
            if len(e) >= 3:
                mean[j], cov[j] = e.mean(0), np.cov(e, rowvar=False)
            else:
                cov[j] = np.eye(2) * 0.01
        model = cls(mean, cov, counts)
        model.excluded = 1 - counts / np.maximum(annotated, 1)
        return model

    def sample(self, joints: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n,) joint indices -> (n, 2) displacements in units of the pose diameter."""
        joints = np.asarray(joints, np.int64)
        z = rng.standard_normal((len(joints), 2))
        return self.mean[joints] + np.einsum("nij,nj->ni", self._chol[joints], z)

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist(),
                "counts": None if self.counts is None else self.counts.tolist()}

    @classmethod
    def from_state(cls, s: dict) -> ErrorModel:
        return cls(np.array(s["mean"]), np.array(s["cov"]), None if s.get("counts") is None else np.array(s["counts"]))


@dataclass
class Stage:
    """One refinement stage: a network over ``input_size`` crops of side ``sigma x diam``, read
    by ``codec`` (default: holistic regression, 14 x (x, y) in the crop's [0, 1] frame; a heatmap
    or integral codec reads a fully convolutional net's maps): row / map ``j`` of crop ``j``
    places joint ``j``."""

    net: nn.Module
    input_size: int
    sigma: float
    codec: object = None

    def __post_init__(self):
        if self.codec is None:
            self.codec = build_codec("regression", self.input_size)

    def crops(self, image: np.ndarray, kp: np.ndarray, pre: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """(14, 3, S, S) crops of ``image`` around each joint of ``kp`` (original pixels), and the
        crop side. ``pre`` maps original pixels onto ``image`` when it is a rescaled copy."""
        side = self.sigma * float(pose_diameter(kp))
        out = []
        for j in range(NUM_JOINTS):
            m = crop_matrix(kp[j], side, self.input_size)
            if pre is not None:
                m = compose_affine(m, invert_affine(pre))
            out.append(to_tensor(warp(image, m, self.input_size)))
        return torch.stack(out), np.full(NUM_JOINTS, side)

    @torch.no_grad()
    def refine(self, images: list[np.ndarray], kps: np.ndarray, device="cpu", batch_images: int = 16,
               pres: list[np.ndarray] | None = None) -> np.ndarray:
        """New (N, 14, 2) estimates for N images from their (N, 14, 2) current estimates (original
        pixels; ``pres`` as in :meth:`crops` when the images are rescaled copies)."""
        self.net.eval()
        kps = np.asarray(kps, np.float64)
        out = kps.copy()
        for b0 in range(0, len(images), batch_images):
            chunk = range(b0, min(len(images), b0 + batch_images))
            xs, sides = zip(*(self.crops(images[i], kps[i], None if pres is None else pres[i]) for i in chunk))
            kp_in, _ = self.codec.decode(self.net(torch.cat(xs).to(device)).float())
            pred = to_unit(kp_in.cpu().double().numpy(), self.input_size).reshape(-1, NUM_JOINTS, NUM_JOINTS, 2)
            for k, i in enumerate(chunk):
                for j in range(NUM_JOINTS):  # crop j answers for joint j (its own output row)
                    out[i, j] = joint_from_output(pred[k, j, j], kps[i, j], sides[k][j], self.input_size)
        return out


def run_cascade(stages: list[Stage], images: list[np.ndarray], kp1: np.ndarray, device="cpu",
                pres: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Stage 1's (N, 14, 2) estimates refined by each stage in turn: one array per stage, stage 1
    first, all in original-image pixels."""
    out = [np.asarray(kp1, np.float64)]
    for st in stages:
        out.append(st.refine(images, out[-1], device, pres=pres))
    return out
