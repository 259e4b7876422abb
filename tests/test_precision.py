"""Inference precision (posekit.models.precision): auto picks bfloat16 only on a CPU that has it,
the bfloat16 network leaves the float32 model alone, and the answers agree with float32."""
import numpy as np
import pytest
import torch
from torch import nn

from posekit.errors import PosekitError
from posekit.models import precision as prec
from posekit.models.precision import Bf16Network, in_precision, resolve_precision

EXAMPLES = ["examples/lsp_im1003.jpg", "examples/lsp_im1042.jpg"]


@pytest.mark.parametrize("native, device, expected", [
    (True, "cpu", "bf16"), (False, "cpu", "fp32"), (True, "cuda", "fp32"), (False, "cuda", "fp32")])
def test_auto_is_bf16_only_on_a_cpu_that_has_it(monkeypatch, native, device, expected):
    monkeypatch.setattr(prec, "native_bf16", lambda: native)
    assert resolve_precision("auto", device) == expected
    assert resolve_precision("fp32", device) == "fp32" and resolve_precision("bf16", device) == "bf16"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16")
    with pytest.raises(ValueError, match="resolve 'auto' first"):
        in_precision(nn.Identity(), "auto")


def test_a_torch_without_the_cpu_queries_is_not_native(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert prec.native_bf16() is False


def test_bf16_network_casts_a_copy_and_answers_in_float32():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = model(x)
        got = in_precision(model, "bf16")(x)
    assert isinstance(in_precision(model, "bf16"), Bf16Network) and in_precision(model, "fp32") is model
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the float32 model is untouched
    assert torch.allclose(got, want, atol=0.05, rtol=0.05) and not torch.equal(got, want)


def test_predictor_precision_settings(monkeypatch):
    from posekit.predict import Predictor

    fp32 = Predictor("posekit-lsp", precision="fp32")
    bf16 = Predictor("posekit-lsp", precision="bf16")
    assert (fp32.precision, fp32.detector.precision) == ("fp32", "fp32")
    assert (bf16.precision, bf16.detector.precision) == ("bf16", "bf16")
    assert isinstance(bf16.network, Bf16Network) and isinstance(bf16.detector.network, Bf16Network)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # explain's gradients stay float32
    for a, b in zip(fp32.predict_batch(EXAMPLES), bf16.predict_batch(EXAMPLES)):
        err = np.linalg.norm(a.keypoints - b.keypoints, axis=-1)
        assert np.median(err) < 2.0 and abs(a.score - b.score) < 0.1 and a.box == pytest.approx(b.box, abs=4)
    monkeypatch.setattr(prec, "native_bf16", lambda: False)
    assert Predictor("posekit-lsp").precision == "fp32"  # auto, on a CPU without bfloat16
    monkeypatch.setattr(prec, "native_bf16", lambda: True)
    assert Predictor("posekit-lsp").precision == "bf16"


def test_bad_precision_is_one_line(capsys):
    from posekit.cli import main
    from posekit.detect import PersonDetector
    from posekit.predict import Predictor

    with pytest.raises(PosekitError, match="precision"):
        Predictor("posekit-lsp", precision="fp16")
    with pytest.raises(PosekitError, match="unknown precision 'half'"):
        PersonDetector("posekit-person", precision="half")
    with pytest.raises(PosekitError, match="precision bf16 runs on the torch backend"):
        Predictor("posekit-lsp", backend="onnx", precision="bf16")
    with pytest.raises(SystemExit) as e:
        main(["predict", EXAMPLES[0], "--precision", "fp16"])
    assert e.value.code == 2 and "invalid choice: 'fp16'" in capsys.readouterr().err


def test_precision_reaches_the_cli_and_the_server(capsys):
    import json

    from posekit.cli import main
    from posekit.serve.app import create_app

    joints = {}
    for p in ("fp32", "bf16"):
        assert main(["predict", EXAMPLES[0], "--precision", p, "--json"]) == 0
        joints[p] = np.array([[j["x"], j["y"]] for j in json.loads(capsys.readouterr().out)["joints"]])
    err = np.linalg.norm(joints["fp32"] - joints["bf16"], axis=-1)
    assert 0 < err.max() and np.median(err) < 2.0  # two arithmetics, one answer
    assert create_app(precision="fp32").state.predictor.precision == "fp32"
    assert create_app(precision="bf16").state.predictor.precision == "bf16"


def test_onnx_backend_ignores_a_models_own_bf16(tmp_path):
    """A recipe whose infer.precision is bf16 still runs exported to ONNX (float32): only a
    caller's bf16 is refused there."""
    from posekit.checkpoint import read_checkpoint, save_checkpoint
    from posekit.export import export_onnx
    from posekit.predict import Predictor

    ck = read_checkpoint("posekit-lsp")
    cfg = ck["config"]
    cfg["infer"] = {**cfg.get("infer", {}), "precision": "bf16"}
    path = tmp_path / "bf16.pt"
    save_checkpoint(path, config=cfg, split=ck["split"], epoch=ck["epoch"], history=ck["history"], model=ck["model"])
    assert Predictor(str(path), detector=False).precision == "bf16"
    onnx = export_onnx(str(path), tmp_path / "m.onnx")
    p = Predictor(str(onnx), backend="onnx", detector=False)
    assert p.precision == "fp32" and p.predict(EXAMPLES[0]).keypoints.shape == (14, 2)
    with pytest.raises(PosekitError, match="use --precision auto or fp32"):
        Predictor(str(onnx), backend="onnx", detector=False, precision="bf16")


def test_a_given_detector_keeps_its_own_precision():
    from posekit.detect import PersonDetector
    from posekit.predict import Predictor

    det = PersonDetector("posekit-person", precision="fp32")
    p = Predictor("posekit-lsp", precision="bf16", detector=det)
    assert p.detector is det and det.precision == "fp32" and p.precision == "bf16"


@pytest.mark.parametrize("onednn", [True, False])
def test_off_x86_native_bf16_is_onednns_answer(monkeypatch, onednn):
    monkeypatch.setattr(prec.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(prec.torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn, raising=False)
    assert prec.native_bf16() is onednn
