"""ONNX export and the ONNX Runtime backend.

``export_onnx`` writes the network (image batch -> raw output: heatmaps or coordinates) with a
dynamic batch axis, and stores the posekit config in the file's metadata, so an ``.onnx`` file is
self-contained: :class:`OnnxNetwork` rebuilds the pre-processing and the codec's decoding from it
(the Predictor's ``backend="onnx"``), with onnxruntime as the only runtime."""
from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from posekit.checkpoint import load_model
from posekit.errors import PosekitError
from posekit.utils import atomic_write_bytes

META_KEY = "posekit_config"
OPSET = 17


def _onnx_bytes(model: torch.nn.Module, input_size: int) -> bytes:
    model = model.float().eval()
    x = torch.zeros(1, 3, input_size, input_size)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, not gone, in torch 2.x
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, input_names=["image"], output_names=["output"],
                          dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return buf.getvalue()


def onnx_model_bytes(model: str | os.PathLike) -> tuple[bytes, dict]:
    """(serialized ONNX model with posekit metadata, config) for a checkpoint / shipped model."""
    import onnx

    net, _, ckpt = load_model(model, "cpu")
    if ckpt["recipe"].codec.name == "center":
        raise PosekitError(f"{ckpt['path']}: a person detector; ONNX export is for pose models (posekit runs its "
                           "detector with torch, also for a pose model on --backend onnx)")
    if ckpt.get("cascade"):
        raise PosekitError(f"{ckpt['path']}: a cascade's refinement stages crop the original image per joint and "
                           "are not exported to ONNX; run it with the torch backend")
    cfg = ckpt["config"]
    proto = onnx.load_from_string(_onnx_bytes(net, ckpt["recipe"].data.input_size))
    meta = proto.metadata_props.add()
    meta.key, meta.value = META_KEY, json.dumps(cfg)
    src = proto.metadata_props.add()
    src.key, src.value = "posekit_source", Path(ckpt["path"]).name
    proto.producer_name = "posekit"
    return proto.SerializeToString(), cfg


def export_onnx(model: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write ``model`` (checkpoint, run folder or shipped name) as ONNX with a dynamic batch axis."""
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise PosekitError(f"{out}: the output file must end in .onnx")
    data, _ = onnx_model_bytes(model)
    atomic_write_bytes(out, data)
    return out


class OnnxNetwork:
    """A callable like the torch model: (B, 3, S, S) float tensor -> output tensor, run by
    onnxruntime on the CPU. ``source`` is an ``.onnx`` file written by :func:`export_onnx`, or a
    checkpoint / shipped model name (exported in memory). ``config`` is the model's posekit config."""

    def __init__(self, source: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        p = Path(source)
        if p.suffix.lower() == ".onnx":
            if not p.is_file():
                raise PosekitError(f"{p}: model file not found")
            data = p.read_bytes()
        else:
            data, _ = onnx_model_bytes(source)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise PosekitError(f"{source}: not a readable ONNX model ({type(e).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in meta:
            raise PosekitError(f"{source}: an ONNX file without posekit metadata (export it with `posekit export`)")
        self.config = json.loads(meta[META_KEY])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: arr})[0])


def quantize_int8(model: str | os.PathLike, out: str | os.PathLike, calibration: list[np.ndarray]) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) of ``model`` with onnxruntime, its
    activation ranges calibrated on ``calibration`` (RGB uint8 images, preprocessed the way the
    Predictor does). The posekit metadata travels with the file."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from posekit.data.transforms import PoseTransform
    from posekit.skeleton import NUM_JOINTS

    if not calibration:
        raise PosekitError("int8 quantisation needs calibration images")
    data, cfg = onnx_model_bytes(model)
    from posekit.config import complete_config

    recipe = complete_config(cfg)
    tf = PoseTransform(recipe.data.input_size, recipe.data.resize_mode)
    zeros, ones = np.zeros((NUM_JOINTS, 2)), np.ones(NUM_JOINTS)
    batches = [tf(img, zeros, ones)["image"][None].numpy() for img in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {"image": b}

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise PosekitError(f"{out}: the output file must end in .onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process the model is printed as a root warning
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "fp32.onnx"
            src.write_bytes(data)
            dst = Path(tmp) / "int8.onnx"
            quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            proto = onnx.load(str(dst))
    finally:
        root.setLevel(level)
    keep = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    del proto.metadata_props[:]
    for k, v in keep.items():
        m = proto.metadata_props.add()
        m.key, m.value = k, v
    atomic_write_bytes(out, proto.SerializeToString())
    return out
