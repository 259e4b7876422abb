"""Shipped models: fp16 weights selected by name; the default model name resolves to them."""
import json
import subprocess
import sys

import pytest
import torch

import posekit.checkpoint as ck
from posekit.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, synth_root):
    from conftest import tiny_overrides

    out = tmp_path_factory.mktemp("w") / "run"
    assert main(["train", "--config", "configs/poster.yaml", "--out", str(out), "--epochs", "1", "--no-progress",
                 *tiny_overrides(synth_root)]) == 0
    return out


def test_ship_and_load_by_name(run_dir, synth_root, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    metrics = tmp_path / "m.json"
    r = subprocess.run([sys.executable, "-m", "posekit", "evaluate", "--model", str(run_dir), "--data", str(synth_root),
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    metrics.write_text(r.stdout)
    code = ("import sys, posekit.checkpoint as c, pathlib; c.WEIGHTS_DIR = pathlib.Path(sys.argv[1]); "
            "sys.argv = [sys.argv[0]] + sys.argv[2:]; import runpy; "
            "runpy.run_path('scripts/ship_weights.py', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code, str(weights), "--run", str(run_dir), "--name", "tiny",
                        "--metrics", str(metrics), "--command", "posekit train ..."], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (weights / "tiny.pt").is_file() and "PCK@0.2" in (weights / "tiny.md").read_text()
    monkeypatch.setattr(ck, "WEIGHTS_DIR", weights)
    assert ck.shipped_models() == ["tiny"]
    shipped = ck.read_checkpoint("tiny")
    assert all(v.dtype == torch.float16 for v in shipped["model"].values() if v.is_floating_point())
    m16, codec, _ = ck.load_model("tiny")
    m32, _, _ = ck.load_model(run_dir)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert next(m16.parameters()).dtype == torch.float32
        assert torch.allclose(m16(x), m32(x), atol=2e-2)

    # shipping with refinement needs metrics scored with that very refinement
    ship = [sys.executable, "-c", code, str(weights), "--run", str(run_dir), "--name", "tiny2",
            "--command", "posekit train ...", "--infer", "refine=0.1"]
    r = subprocess.run(ship + ["--metrics", str(metrics)], capture_output=True, text=True)
    assert r.returncode != 0 and "scored with refine=None, but the model ships with [0.1]" in r.stderr
    assert not (weights / "tiny2.pt").exists()
    r = subprocess.run([sys.executable, "-m", "posekit", "evaluate", "--model", str(run_dir), "--data", str(synth_root),
                        "--json", "--refine", "0.1"], capture_output=True, text=True)
    metrics.write_text(r.stdout)
    r = subprocess.run(ship + ["--metrics", str(metrics)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    tiny2 = ck.read_checkpoint("tiny2")
    assert tiny2["config"]["infer"]["refine"] == [0.1] and tiny2["recipe"].infer.refine == [0.1]
    assert "margin(s) 0.1 per side" in (weights / "tiny2.md").read_text()
    assert "(`infer.precision` auto)" in (weights / "tiny2.md").read_text()  # the card says how the networks compute
    # ... and with the same noise filter (metrics scored without it do not ship a model that has it)
    r = subprocess.run(ship + ["denoise=10", "--metrics", str(metrics)], capture_output=True, text=True)
    assert r.returncode != 0 and "scored with denoise=None, but the model ships with 10.0" in r.stderr
    older = json.loads(metrics.read_text())  # metrics from before the filter existed: scored without it
    assert older.pop("denoise") is None and older.pop("detector_denoise") is None
    keyless = tmp_path / "older.json"
    keyless.write_text(json.dumps(older))
    r = subprocess.run(ship + ["denoise=10", "--metrics", str(keyless)], capture_output=True, text=True)
    assert r.returncode != 0 and "scored with denoise=None, but the model ships with 10.0" in r.stderr
    # ... and with the same first-pass weight
    r = subprocess.run(ship + ["refine_weight=0.3", "--metrics", str(metrics)], capture_output=True, text=True)
    assert r.returncode != 0 and "scored with refine_weight=0.0, but the model ships with 0.3" in r.stderr
    # several crops: given in any order, compared and stored sorted
    r = subprocess.run([sys.executable, "-m", "posekit", "evaluate", "--model", str(run_dir), "--data", str(synth_root),
                        "--json", "--refine", "0.2,0.05"], capture_output=True, text=True)
    metrics.write_text(r.stdout)
    assert json.loads(r.stdout)["refine"] == [0.05, 0.2]
    r = subprocess.run(ship[:-1] + ["refine=[0.2,0.05]", "--metrics", str(metrics)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert ck.read_checkpoint("tiny2")["config"]["infer"]["refine"] == [0.05, 0.2]
    assert "3 passes fused: the person box (or the whole image), then 2 square refinement crop(s)" \
        in (weights / "tiny2.md").read_text()
    # repeated --infer add up (a card's command reads as it ran); video settings ship too
    r = subprocess.run(ship[:-1] + ["refine=[0.2,0.05]", "--metrics", str(metrics), "--infer", "person_threshold=0.4",
                                    "--video", "min_cutoff=6.0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = ck.read_checkpoint("tiny2")["recipe"]
    assert cfg.infer.refine == [0.05, 0.2] and cfg.infer.person_threshold == 0.4 and cfg.video.min_cutoff == 6.0
    from posekit.errors import PosekitError
    from posekit.ship import ship as ship_fn

    with pytest.raises(PosekitError, match="ship: 'train' settings cannot be changed after training"):
        ship_fn(str(run_dir), "tiny3", {}, ["x"], {"train": {"lr": 1.0}})
    assert not (weights / "tiny3.pt").exists()
    from posekit.ship import _select_line

    assert "(the default)" in _select_line("posekit-lsp", cfg) and "(the default)" not in _select_line("tiny2", cfg)
    from posekit.ship import _inference_line  # a model card names how detected boxes are cropped

    top_down = cfg.model_copy(update={"detect": cfg.detect.model_copy(update={"model": "posekit-person"})})
    assert "enlarged by 0.1 per side (`detect.box_margin`" in _inference_line(top_down)
    multi = top_down.model_copy(update={"infer": cfg.infer.model_copy(update={"box_margins": [0.05, 0.15]})})
    assert "cropped once per margin 0.05, 0.15 per side" in _inference_line(multi)


def test_default_model_missing_is_a_clear_error(tmp_path, monkeypatch, capsys, synth_root):
    monkeypatch.setattr(ck, "WEIGHTS_DIR", tmp_path)
    assert main(["evaluate", "--data", str(synth_root)]) == 2
    err = capsys.readouterr().err
    assert "posekit-lsp: no such model file, run folder or shipped model" in err and err.count("\n") == 1


def test_shipped_default_model_loads():
    if "posekit-lsp" not in ck.shipped_models():
        pytest.skip("no posekit-lsp weights shipped in this checkout yet")
    model, codec, meta = ck.load_model("posekit-lsp")
    size = meta["recipe"].data.input_size
    assert size == meta["config"]["data"]["input_size"] and meta["path"] == str(ck.WEIGHTS_DIR / "posekit-lsp.pt")
    assert meta["recipe"].infer.crop_border == 20  # shipped with the edge repeated in its refinement crops
    with torch.no_grad():
        kp, score = codec.decode(model(torch.zeros(1, 3, size, size)))
    assert kp.shape == (1, 14, 2) and torch.isfinite(kp).all()
    assert (ck.WEIGHTS_DIR / "posekit-lsp.pt").stat().st_size <= 10_000_000
    assert (ck.WEIGHTS_DIR / "posekit-lsp.md").is_file()


def test_weights_with_nan_or_inf_are_refused(run_dir, tmp_path):
    """A checkpoint whose weights hold NaN or inf (a diverged run's last.pt) is refused in one line,
    naming the first such tensor, instead of being evaluated, predicted or exported."""
    for value in (float("nan"), float("inf")):
        ckpt = torch.load(run_dir / "last.pt", weights_only=True)
        name = [k for k, v in ckpt["model"].items() if v.is_floating_point()][1]
        ckpt["model"][name].view(-1)[0] = value
        bad = tmp_path / "bad.pt"
        torch.save(ckpt, bad)
        with pytest.raises(ck.PosekitError, match=rf"bad\.pt: weights hold NaN or infinite values \({name}\)$"):
            ck.load_model(bad)


class _Evil:
    def __reduce__(self):
        return (print, ("never printed",))


def test_a_pickle_with_code_is_refused_without_warnings(tmp_path):
    """The refusal of a plain pickle holding code is the only thing said: torch's pickle-protocol
    warning is not shown."""
    import pickle
    import warnings

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": ck.FORMAT, "x": _Evil()}, protocol=4))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ck.PosekitError, match="refused: the file holds Python objects"):
            ck.read_checkpoint(evil)
    assert [str(w.message) for w in seen] == []


def test_with_settings_lays_run_settings_over_a_config_and_leaves_training_alone():
    """checkpoint.with_settings (used by ship and benchmarks/val_by_set.py): the keys given replace
    the config's, the others stay, the input is not changed, and a training section is refused."""
    from posekit.checkpoint import with_settings
    from posekit.errors import PosekitError

    raw = {"infer": {"flip_test": False, "person_threshold": 0.3}, "train": {"lr": 0.1}}
    out = with_settings(raw, {"infer": {"flip_test": True}, "video": {"beta": 30.0}})
    assert out["infer"] == {"flip_test": True, "person_threshold": 0.3} and out["video"] == {"beta": 30.0}
    assert out["train"] == {"lr": 0.1} and raw["infer"]["flip_test"] is False
    with pytest.raises(PosekitError, match="^run.pt: 'data' settings cannot be changed after training"):
        with_settings(raw, {"data": {"input_size": 192}}, "run.pt")
