"""Gradient saliency maps: which input pixels a joint's prediction is most sensitive to.

The poster shows "saliency maps" of its pose CNN; this is the vanilla gradient method of
Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps" (ICLR workshop 2014, https://arxiv.org/abs/1312.6034):

* a differentiable scalar stands for the joint's prediction: for heatmap-like outputs
  (B, J, H, W), the value of the joint's map at its arg-max cell (summed over joints when no
  joint is chosen); for coordinate outputs (regression), the predicted x and y themselves;
* its gradient with respect to the input pixels is taken by back-propagation, and each pixel's
  saliency is the largest |gradient| over the 3 colour channels (for coordinates, the length of
  the (dx, dy) gradient pair, summed over the chosen joints);
* the input-frame map is warped back into original image pixels through the inverse of the
  preprocessing affine, lightly blurred (Gaussian, ``smooth`` input pixels), divided by its 99th
  percentile and clipped to [0, 1].

Used by ``posekit explain IMAGE [--joint NAME] --out FILE.png`` (``run_explain``).
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from posekit.data.images import read_image
from posekit.errors import PosekitError
from posekit.skeleton import JOINT_INDEX, JOINT_NAMES


def joint_indices(joint: str | None) -> list[int]:
    """All 14 joints for ``None``, else the one named; an unknown name is a PosekitError."""
    if joint is None:
        return list(range(len(JOINT_NAMES)))
    if joint not in JOINT_INDEX:
        raise PosekitError(f"unknown joint {joint!r}; expected one of {', '.join(JOINT_NAMES)}")
    return [JOINT_INDEX[joint]]


def _input_saliency(model, codec, x: torch.Tensor, joints: list[int]) -> np.ndarray:
    """(S, S) float32 gradient magnitude for one (1, 3, S, S) input ``x`` that requires grad."""
    out = model(x).float()
    if codec.is_heatmap:  # the peak value of each chosen joint's map
        flat = out[0, joints].flatten(1)
        peak = flat.gather(1, flat.argmax(1, keepdim=True)).sum()
        (g,) = torch.autograd.grad(peak, x)
        sal = g[0].abs().amax(0)
    else:  # coordinates: |d(x, y) / d pixel| per joint, summed over joints
        kp, _ = codec.decode(out)
        sal = torch.zeros(x.shape[2:], device=x.device)
        for j in joints:
            gx, gy = (torch.autograd.grad(kp[0, j, c], x, retain_graph=True)[0][0] for c in (0, 1))
            sal = sal + (gx**2 + gy**2).sqrt().amax(0)
    return sal.detach().cpu().numpy().astype(np.float32)


def saliency(predictor, image, joint: str | None = None, box=None, smooth: float = 2.0) -> dict:
    """Vanilla gradient saliency of ``predictor`` (a :class:`posekit.predict.Predictor`) on one
    image (path or RGB uint8 array), for one joint by name or all joints (``None``), on the
    whole image or a person ``box`` (x, y, w, h) as in ``predict``. The map explains one plain
    forward pass (no flip test, even when the predictor uses one for ``pose``): the pass that made
    the pose, on the person box (given, or the detected box of the person ``pose`` answers, with
    its margin; under the multi-scale test its tightest crop, the frame the crops are fused in), or
    with refinement crops on the first crop around the first estimate
    (:meth:`posekit.Predictor.refinement_box`).

    Returns ``{"image": RGB uint8 (H, W, 3), "saliency": float32 (H, W) in [0, 1],
    "pose": the Pose from predictor.predict, "joints": tuple of the joint names explained}``."""
    joints = joint_indices(joint)
    if getattr(predictor, "model", None) is None:
        raise PosekitError("saliency needs the torch backend (gradients); an ONNX model cannot be explained")
    img = read_image(image) if isinstance(image, (str, os.PathLike)) else np.asarray(image)
    pose = predictor.predict(img, box)  # validates the image and box
    if box is None and pose.box is not None:  # the person answered (maybe not the detector's best): their box
        region = predictor.refinement_box(img, detected=pose.box)
    else:
        region = predictor.refinement_box(img, box)
    prepared = predictor.prepare(img, region)
    x0, matrix, w, h = prepared.input, prepared.matrix, prepared.width, prepared.height
    model = predictor.model
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    try:
        model.eval()
        for p in model.parameters():  # only the input's gradient is needed
            p.requires_grad_(False)
        with torch.inference_mode(False), torch.enable_grad():
            x = x0.clone()[None].to(predictor.device).requires_grad_(True)
            sal_in = _input_saliency(model, predictor.codec, x, joints)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)

    m = matrix.double().numpy()
    sal = cv2.warpAffine(sal_in, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # input pixels per original pixel
    sigma = max(0.5, smooth / scale)
    sal = cv2.GaussianBlur(sal, (0, 0), sigmaX=sigma, sigmaY=sigma)
    hi = float(np.percentile(sal, 99))
    hi = hi if hi > 0 else float(sal.max())
    sal = np.clip(sal / hi, 0, 1) if hi > 0 else np.zeros_like(sal)
    return {"image": img, "saliency": np.nan_to_num(sal).astype(np.float32), "pose": pose,
            "joints": tuple(JOINT_NAMES[j] for j in joints)}


def render(result: dict, alpha: float = 0.5, draw_skeleton: bool = True) -> np.ndarray:
    """RGB uint8: the saliency as a colour overlay on the image, the predicted skeleton on top,
    and a white ring around the explained joint when there is only one. With no person found
    (``pose.found`` False) neither is drawn, as ``posekit predict --draw`` draws nothing then."""
    from posekit.viz import draw_pose, saliency_overlay

    out = saliency_overlay(result["image"], result["saliency"], alpha)
    kp = result["pose"].keypoints
    if not result["pose"].found:
        return out
    if draw_skeleton:
        out = draw_pose(out, kp)
    if len(result["joints"]) == 1:
        x, y = kp[JOINT_INDEX[result["joints"][0]]]
        if np.isfinite([x, y]).all():
            r = max(4, round(max(out.shape[:2]) / 30))
            cv2.circle(out, (int(round(x)), int(round(y))), r, (255, 255, 255), max(1, r // 4), cv2.LINE_AA)
    return out


def run_explain(image_path, model, joint: str | None, out_path, box=None, denoise: bool | None = None) -> dict:
    """The CLI's work: saliency of ``model`` (shipped name, checkpoint or run folder) on one
    image, rendered and saved to ``out_path`` (.png/.jpg); ``denoise`` False: the image as it is
    (no noise filter, :class:`~posekit.predict.Predictor`'s ``denoise``). Returns :func:`saliency`'s result with
    ``"out"``, the path written."""
    from posekit.predict import Predictor
    from posekit.utils import check_writable_folder
    from posekit.viz import save_rgb

    joint_indices(joint)  # fail on a bad name or output type before loading anything
    if os.path.splitext(os.fspath(out_path))[1].lower() not in (".png", ".jpg", ".jpeg"):
        raise PosekitError(f"{out_path}: the output must be a .png, .jpg or .jpeg file")
    check_writable_folder(os.path.dirname(os.fspath(out_path)) or ".", "the output's folder")
    image = read_image(image_path)
    if str(model).lower().endswith(".onnx"):
        raise PosekitError(f"{model}: saliency needs gradients, so a torch checkpoint or shipped model, not an ONNX file")
    pred = Predictor(model, denoise=denoise)
    try:
        result = saliency(pred, image, joint, box)
    except PosekitError as e:  # about this image (a box outside it): named, as predict names it
        label, msg = os.fspath(image_path), str(e)
        raise PosekitError(msg if msg.startswith(label) else f"{label}: {msg}") from None
    save_rgb(out_path, render(result))
    return {**result, "out": str(out_path)}
