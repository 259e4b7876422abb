import json

import pytest
import torch
from conftest import tiny_overrides

from posekit.checkpoint import load_model, read_checkpoint
from posekit.config import load_config
from posekit.train import lr_at, train


def _cfg(root, **extra):
    return load_config("configs/poster.yaml", tiny_overrides(root, **extra))


def test_short_training_loss_falls(synth_root, tmp_path):
    cfg = _cfg(synth_root, **{"train.epochs": 8, "augment.flip": 0.0})
    summary = train(cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    h = summary["history"]
    assert len(h) == 8
    assert h[-1]["train_loss"] < 0.5 * h[0]["train_loss"]
    assert min(r["val_loss"] for r in h) < h[0]["val_loss"]
    for name in ("last.pt", "best.pt", "config.yaml", "split.json", "history.json"):
        assert (tmp_path / "run" / name).is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/train", "loss/val", "lr", "speed/images_per_s", "val/pck"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("loss/val")] == list(range(1, 9))
    assert "val/predictions" in tags["images"]
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["split"]["name"] == "lsp-standard" and ck["config"]["model"]["width"] == 4
    assert ck["recipe"] == cfg and ck["recipe"].model.options()["width"] == 4  # the saved recipe, typed
    assert ck["path"] == str(tmp_path / "run" / "last.pt")
    assert set(ck["metrics"]) >= {"train_loss", "val_loss", "pck", "pcp", "mse", "images_per_s", "lr"}
    best = read_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] + 1 == summary["best"]["epoch"]
    model, codec, _ = load_model(tmp_path / "run")
    assert not model.training


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_matches_uninterrupted_run(synth_root, tmp_path, ema):
    extra = {"train.epochs": 3, "augment.flip": 0.5, "augment.rotate": 10, "model.dropout": 0.2,
             **({"train.ema": ema} if ema else {})}
    full = train(_cfg(synth_root, **extra), tmp_path / "full", progress=False, log=lambda *a: None)
    part_cfg = _cfg(synth_root, **{**extra, "train.epochs": 1})
    train(part_cfg, tmp_path / "part", progress=False, log=lambda *a: None)
    resumed = train(_cfg(synth_root, **extra), tmp_path / "part", resume=tmp_path / "part" / "last.pt",
                    progress=False, log=lambda *a: None)
    a = read_checkpoint(tmp_path / "full" / "last.pt")
    b = read_checkpoint(tmp_path / "part" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for part in ("model", "train_model") if ema else ("model",):  # with EMA, the average resumes too
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a.get("ema_updates") == b.get("ema_updates")
    assert [r["train_loss"] for r in full["history"]] == [r["train_loss"] for r in resumed["history"]]
    assert [r["val_loss"] for r in full["history"]] == [r["val_loss"] for r in resumed["history"]]
    assert json.loads((tmp_path / "part" / "history.json").read_text())[-1]["epoch"] == 3


def test_early_stopping(synth_root, tmp_path):
    # lr so small that the val loss cannot improve meaningfully: patience 1 stops early
    cfg = _cfg(synth_root, **{"train.epochs": 10, "train.lr": 1e-12, "train.early_stopping_patience": 1,
                              "train.optimizer": "sgd", "train.momentum": 0.0})
    s = train(cfg, tmp_path / "es", progress=False, log=lambda *a: None)
    assert s["stopped_early"] and s["epochs_done"] < 10
    # resumed as it was, it has nothing left to train and touches nothing ...
    files = {f: (tmp_path / "es" / f).read_bytes() for f in ("last.pt", "best.pt", "history.json")}
    said = []
    again = train(cfg, tmp_path / "es", resume=tmp_path / "es" / "last.pt", progress=False, log=said.append)
    assert again["nothing_to_resume"] and again["epochs_done"] == s["epochs_done"]
    assert "stopped early after" in said[0] and "raise it to train on" in said[0]
    assert {f: (tmp_path / "es" / f).read_bytes() for f in files} == files
    # ... and without early stopping it trains on to train.epochs
    on = load_config("configs/poster.yaml", tiny_overrides(synth_root, **{
        "train.epochs": s["epochs_done"] + 1, "train.lr": 1e-12, "train.early_stopping_patience": "null",
        "train.optimizer": "sgd", "train.momentum": 0.0}))
    more = train(on, tmp_path / "es", resume=tmp_path / "es" / "last.pt", progress=False, log=lambda *a: None)
    assert "nothing_to_resume" not in more and more["epochs_done"] == s["epochs_done"] + 1


def test_limit_val_0_trains_without_validation(synth_root, tmp_path):
    """data.limit_val=0: no validation at all; the best epoch is the one of the lowest train loss."""
    cfg = _cfg(synth_root, **{"train.epochs": 2, "train.max_steps_per_epoch": 2, "data.limit_val": 0})
    s = train(cfg, tmp_path / "nv", progress=False, log=lambda *a: None)
    assert len(s["history"]) == 2
    assert all(r.get("val_loss") is None and r.get("pck") is None for r in s["history"])
    best = min(s["history"], key=lambda r: r["train_loss"])
    assert s["best"]["epoch"] == best["epoch"] and s["best"]["val_loss"] == best["train_loss"]
    assert read_checkpoint(tmp_path / "nv" / "best.pt")["epoch"] + 1 == best["epoch"]


def test_lr_schedules(synth_root):
    cfg = _cfg(synth_root, **{"train.scheduler": "cosine", "train.epochs": 10, "train.lr": 1.0, "train.warmup_epochs": 1})
    assert lr_at(cfg, 0.5) < 1.0 and abs(lr_at(cfg, 1.0) - 1.0) < 1e-9 and lr_at(cfg, 10) < 1e-9
    cfg = _cfg(synth_root, **{"train.scheduler": "step", "train.step_size": 2, "train.gamma": 0.5, "train.lr": 1.0})
    assert lr_at(cfg, 4.5) == 0.25


def test_heatmap_recipe_trains_on_synthetic_data(synth_root, tmp_path):
    over = [o for o in tiny_overrides(synth_root) if not o.startswith("model.")]
    cfg = load_config("configs/release.yaml", over + [
        "data.input_size=64", "model.width=8", "model.depths=[1,1,1,1]", "model.neck=16", "train.epochs=6", "train.lr=0.003",
        "augment.rotate=10", "augment.color=0.0", "train.save_every=3"])
    assert cfg.codec.name == "heatmap" and cfg.data.resize_mode == "letterbox"
    summary = train(cfg, tmp_path / "hm", progress=False, log=lambda *a: None)
    h = summary["history"]
    assert h[-1]["train_loss"] < 0.7 * h[0]["train_loss"]
    # train.save_every keeps snapshots for accuracy-vs-epoch curves; a fresh run clears old ones
    assert sorted(p.name for p in (tmp_path / "hm").glob("epoch_*.pt")) == ["epoch_003.pt", "epoch_006.pt"]
    assert read_checkpoint(tmp_path / "hm" / "epoch_003.pt")["epoch"] == 2
    train(load_config("configs/release.yaml", over + ["data.input_size=64", "model.width=8", "model.depths=[1,1,1,1]",
                                                       "model.neck=16", "train.epochs=1"]),
          tmp_path / "hm", progress=False, log=lambda *a: None)
    assert not list((tmp_path / "hm").glob("epoch_*.pt"))
    model, codec, _ = load_model(tmp_path / "hm")
    assert codec.kind == "heatmap" and codec.stride == 4


def test_deterministic_flag_turns_on_deterministic_kernels(synth_root, tmp_path):
    before = torch.are_deterministic_algorithms_enabled()
    try:
        cfg = _cfg(synth_root, **{"train.epochs": 1, "train.deterministic": True})
        train(cfg, tmp_path / "det", progress=False, log=lambda *a: None)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)


def test_validation_frames_the_person_like_training(synth_root):
    """With person-centred training crops, validation crops the same way (without the random
    part), so val PCK tracks what the model learns even on LSPe's large scenes."""
    import numpy as np

    from posekit.data.transforms import box_matrix, person_box
    from posekit.pose_task import build_datasets

    cfg = _cfg(synth_root, **{"augment.person_crop": 0.2, "data.resize_mode": "letterbox"})
    _, _, _, val_ds = build_datasets(cfg)
    item = val_ds[0]
    gt, mask = item["gt"].numpy(), item["gt_mask"].numpy() > 0
    w, h = (int(v) for v in item["size"])
    want = box_matrix(person_box(gt, mask, 0.2, w, h), cfg.data.input_size)
    np.testing.assert_allclose(item["matrix"].numpy(), want, atol=1e-6)
    again = val_ds[0]
    assert torch.equal(again["image"], item["image"])  # no random part


def test_repeat_oversamples_a_set(synth_root):
    """data.repeat draws each training image of a named set that many times per epoch (each copy
    augmented on its own); naming a set the recipe does not use, a count that is not a whole number
    from 1 to 100, and a detector or cascade recipe (which would ignore it) are refused."""
    from posekit.errors import ConfigError
    from posekit.pose_task import build_datasets

    _, _, plain, _ = build_datasets(_cfg(synth_root))
    _, _, more, _ = build_datasets(_cfg(synth_root, **{"data.repeat": "{lsp: 3}"}))
    n_lsp = sum(i.startswith("lsp/") for i in plain.ids)
    assert 0 < n_lsp < len(plain)
    assert len(more) == len(plain) + 2 * n_lsp
    assert sorted(set(more.ids)) == sorted(plain.ids)
    k = more.ids.index(next(i for i in more.ids if i.startswith("lsp/")))
    assert more.ids[k] == more.ids[k + 1] and not torch.equal(more[k]["image"], more[k + 1]["image"])
    with pytest.raises(ConfigError, match="lspet, not among data.sets"):
        _cfg(synth_root, **{"data.sets": "[lsp]", "data.repeat": "{lspet: 2}"})
    for bad in ("{lsp: 0}", "{lsp: 101}", "{lsp: '3'}", "{lsp: true}", "{lsp: 2.5}"):
        with pytest.raises(ConfigError, match="data.repeat.lsp"):
            _cfg(synth_root, **{"data.repeat": bad})
    with pytest.raises(ConfigError, match="'data.repeat': a detector recipe"):  # detectors and cascades would ignore it
        load_config("configs/detector.yaml", ["data.repeat={lsp: 2}"])
    with pytest.raises(ConfigError, match="'data.repeat': a cascade"):
        _cfg(synth_root, **{"data.repeat": "{lsp: 2}", "cascade.stage1": "stage1.pt"})


def test_init_from_copies_matching_weights(synth_root, tmp_path):
    """train.init_from (transfer learning): matching tensors are copied; a tensor of both with
    another shape (another architecture or width) is refused."""
    base = train(_cfg(synth_root, **{"train.epochs": 1}), tmp_path / "a", progress=False, log=lambda *a: None)
    src = read_checkpoint(tmp_path / "a" / "last.pt")["model"]
    lines = []
    cfg = _cfg(synth_root, **{"train.epochs": 1, "train.lr": 1e-12, "train.init_from": str(tmp_path / "a")})
    train(cfg, tmp_path / "b", progress=False, log=lines.append)
    assert base["epochs_done"] == 1 and any(f"initialised {len(src)} of {len(src)} tensors" in ln for ln in lines)
    got = read_checkpoint(tmp_path / "b" / "last.pt")["model"]
    conv = [k for k in src if k.endswith("weight") and src[k].dim() == 4][0]
    assert torch.allclose(got[conv], src[conv], atol=1e-6)  # lr ~0: still the source's weights
    import pytest

    from posekit.errors import ConfigError

    over = [o for o in tiny_overrides(synth_root) if not o.startswith(("model.", "data.input_size"))]
    bad = load_config("configs/release.yaml", over + ["train.epochs=1", f"train.init_from={tmp_path / 'a'}",
                                                      "data.input_size=64", "model.width=8"])
    with pytest.raises(ConfigError, match=r"tensor head\.1\.weight is \(64, 128\) there but \(14, 64, 1, 1\) in this"):
        train(bad, tmp_path / "c", progress=False, log=lambda *a: None)


def test_ema_weights_are_the_average(synth_root, tmp_path):
    """train.ema: "model" (what evaluate/predict/shipping load) holds the moving average of the
    trained weights, "train_model" the weights themselves. A decay near 1 keeps the average at the
    initial weights; a decay near 0 makes it follow the trained ones."""
    from posekit.checkpoint import model_from_config
    from posekit.utils import seed_everything

    extra = {"train.epochs": 1, "train.max_steps_per_epoch": 6}
    seed_everything(0)
    init = model_from_config(_cfg(synth_root, **extra)).state_dict()
    runs = {}
    for decay in (1 - 1e-9, 1e-9):
        s = train(_cfg(synth_root, **extra, **{"train.ema": decay}), tmp_path / str(decay), progress=False,
                  log=lambda *a: None)
        runs[decay] = ck = read_checkpoint(tmp_path / str(decay) / "last.pt")
        assert ck["ema_updates"] == 1 + 6 and s["history"][0]["val_loss"] > 0
    slow, fast = runs[1 - 1e-9], runs[1e-9]
    conv = [k for k in init if init[k].dim() == 4]
    for k in conv:
        assert torch.allclose(slow["model"][k], init[k], atol=1e-6), k  # still the initial weights
        assert torch.allclose(fast["model"][k], fast["train_model"][k], atol=1e-6), k
    assert any(not torch.allclose(slow["train_model"][k], init[k], atol=1e-4) for k in conv)  # it did train
    model, _, _ = load_model(tmp_path / str(1 - 1e-9) / "last.pt")
    assert torch.allclose(model.state_dict()[conv[0]], init[conv[0]], atol=1e-6)
    from posekit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'train.ema': Input should be less than 1, got 1.5"):
        _cfg(synth_root, **{"train.ema": 1.5})


def test_resume_refuses_a_different_ema_setting(synth_root, tmp_path):
    """A run is resumed with its own train.ema: the checkpoint's "model" means the average or the
    weights, and switching would mix the two. Refused in one line before any data is loaded."""
    from posekit.errors import ConfigError

    extra = {"train.epochs": 1, "train.max_steps_per_epoch": 2}
    train(_cfg(synth_root, **extra), tmp_path / "plain", progress=False, log=lambda *a: None)
    train(_cfg(synth_root, **extra, **{"train.ema": 0.9}), tmp_path / "avg", progress=False, log=lambda *a: None)
    more = {"train.epochs": 2, "train.max_steps_per_epoch": 2}
    with pytest.raises(ConfigError, match="trained without train.ema, resumed with it"):
        train(_cfg(synth_root, **more, **{"train.ema": 0.9}), tmp_path / "plain", resume=tmp_path / "plain" / "last.pt",
              progress=False, log=lambda *a: None)
    with pytest.raises(ConfigError, match="trained with train.ema, resumed without it"):
        train(_cfg(synth_root, **more), tmp_path / "avg", resume=tmp_path / "avg" / "last.pt",
              progress=False, log=lambda *a: None)


def test_integers_in_exponent_notation_read_as_numbers():
    """YAML reads 1e1 as a string: an integer key takes it as the number it spells."""
    cfg = load_config("configs/poster.yaml", ["train.epochs=1e1", "train.save_every=2.0"])
    assert cfg.train.epochs == 10 and cfg.train.save_every == 2


def test_numbers_in_overrides_read_as_numbers():
    """YAML reads 1e-3 / 1e-1 as strings: a number key takes them as the numbers they spell."""
    assert load_config("configs/poster.yaml", ["train.save_every=2.0"]).train.save_every == 2
    assert load_config("configs/poster.yaml", ["train.lr=1e-3"]).train.lr == 0.001
    # infer.refine: a margin or a list of them, always held as a sorted list
    assert load_config("configs/poster.yaml", ["infer.refine=1e-1"]).infer.refine == [0.1]
    assert load_config("configs/poster.yaml", ["infer.refine=[0.2,5e-2]"]).infer.refine == [0.05, 0.2]
    assert load_config("configs/poster.yaml", ["infer.refine=[0.1]"]).infer.refine == [0.1]


def test_a_rerun_is_bit_identical_and_the_check_says_so(synth_root, tmp_path):
    """The same command twice gives the same weights and history, and benchmarks/rerun_check.py
    reports it; a changed tensor is reported as different."""
    import runpy

    check = runpy.run_path("benchmarks/rerun_check.py")["compare"]
    cfg = _cfg(synth_root, **{"train.epochs": 2, "train.save_every": 1})
    for name in ("a", "b"):
        train(cfg, tmp_path / name, progress=False, log=lambda *a: None)
    r = check(tmp_path / "a", tmp_path / "b")
    assert r["all_identical"] and len(r["snapshots"]) == 2 and len(r["epochs"]) == 2
    ck = torch.load(tmp_path / "b" / "epoch_002.pt", weights_only=False)
    k = next(iter(ck["model"]))
    ck["model"][k] = ck["model"][k] + 1e-3
    torch.save(ck, tmp_path / "b" / "epoch_002.pt")
    r = check(tmp_path / "a", tmp_path / "b")
    assert not r["all_identical"] and r["snapshots"][1]["max_abs_diff"] == pytest.approx(1e-3, rel=1e-2)


def test_pck_vs_hours_reads_hours_from_histories_and_chains_runs():
    """Curves without hours take them from the run's history (cumulative train_time_s); a chained
    run starts where the previous one ended; a curve's own train_hours win."""
    import runpy

    curve_hours = runpy.run_path("benchmarks/pck_vs_hours.py")["curve_hours"]
    history = [{"epoch": e, "train_time_s": 1800.0} for e in (1, 2, 3, 4)]
    xs, end = curve_hours([{"epoch": 2}, {"epoch": 4}], history)
    assert xs == [1.0, 2.0] and end == 2.0
    xs, end2 = curve_hours([{"epoch": 1, "train_hours": 0.25}], None, offset=end)
    assert xs == [2.25] and end2 == 2.25


def test_a_pack_with_another_split_is_refused(synth_root, tmp_path):
    """data.pack: a pack whose split (name, seed, sets, fractions) is not the recipe's is refused
    in one line, before a run folder is written; one that agrees trains."""
    from posekit.data.pack import pack_split
    from posekit.errors import ConfigError

    pk = tmp_path / "pk.npz"
    pack_split(synth_root, pk, {"sets": ["lsp"], "seed": 7, "val_fraction": 0.2}, size=32)
    base = {"data.pack": str(pk), "augment.person_crop": 0.2, "train.epochs": 1}
    cases = [({"data.sets": "[lsp]"}, "split_seed 7 (recipe 0); val_fraction 0.2 (recipe 0.1)"),
             ({"data.split_seed": 7, "data.val_fraction": 0.2}, "sets ['lsp'] (recipe ['lsp', 'lspet'])"),
             ({"data.sets": "[lsp]", "data.split_seed": 7, "data.val_fraction": 0.2, "data.split": "paper"},
              "split lsp-standard (recipe paper)")]
    for extra, msg in cases:
        with pytest.raises(ConfigError, match=r"pk\.npz: the pack holds another split") as e:
            train(_cfg(synth_root, **base, **extra), tmp_path / "r", progress=False, log=lambda *a: None)
        assert msg in str(e.value) and "\n" not in str(e.value)
        assert not (tmp_path / "r").exists()
    paper = tmp_path / "paper.npz"
    pack_split(synth_root, paper, {"name": "paper", "sets": ["lsp"]}, size=32)
    with pytest.raises(ConfigError, match="fractions"):
        train(_cfg(synth_root, **{**base, "data.pack": str(paper), "data.sets": "[lsp]", "data.split": "paper",
                                          "data.fractions": "[0.5,0.25,0.25]"}), tmp_path / "r", progress=False,
              log=lambda *a: None)
    ok = _cfg(synth_root, **base, **{"data.sets": "[lsp]", "data.split_seed": 7, "data.val_fraction": 0.2})
    assert train(ok, tmp_path / "ok", progress=False, log=lambda *a: None)["epochs_done"] == 1
    ok = _cfg(synth_root, **{**base, "data.pack": str(paper), "data.sets": "[lsp]", "data.split": "paper"})
    assert train(ok, tmp_path / "ok2", progress=False, log=lambda *a: None)["epochs_done"] == 1


@pytest.mark.parametrize("extra, shapes", [
    ({"codec.name": "heatmap"}, "poster_cnn with codec.name heatmap"),  # a regression model, a heatmap codec
    ({"model.name": "resnet_pose"}, "resnet_pose with codec.name regression"),
    ({"model.name": "centernet_detector", "codec.name": "heatmap"}, "centernet_detector with codec.name heatmap"),
])
def test_a_model_that_does_not_fit_its_codec_is_refused(synth_root, tmp_path, extra, shapes):
    """A model whose output is not what the codec trains on is refused when the task is built,
    in one line naming both and the shapes, before a run folder is written."""
    from posekit.errors import ConfigError

    cfg = load_config("configs/poster.yaml", [o for o in tiny_overrides(synth_root, **{"train.epochs": 1})
                                              if not o.startswith("model.") or "model.name" not in extra]
                      + [f"{k}={v}" for k, v in extra.items()])
    with pytest.raises(ConfigError, match=f"model.name {shapes} do not fit: the model gives") as e:
        train(cfg, tmp_path / "r", progress=False, log=lambda *a: None)
    assert "the codec trains on" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "r").exists()


def test_the_detector_codec_in_a_pose_task_is_refused(synth_root, tmp_path):
    from posekit.errors import ConfigError

    with pytest.raises(ConfigError, match="model.name poster_cnn with codec.name center: the center codec is the "
                                          "person detector's"):
        train(_cfg(synth_root, **{"codec.name": "center", "train.epochs": 1}), tmp_path / "r", progress=False,
              log=lambda *a: None)
    assert not (tmp_path / "r").exists()


def test_a_run_out_of_patience_on_its_last_epoch_says_it_stopped_early(synth_root, tmp_path):
    """A run whose last planned epoch also used up its patience is reported as stopped early (raise
    the patience and --epochs), not as finished (raise --epochs), which a resume would then refuse."""
    cfg = _cfg(synth_root, **{"train.epochs": 2, "train.lr": 1e-12, "train.early_stopping_patience": 1,
                              "train.optimizer": "sgd", "train.momentum": 0.0, "data.limit_train": 16,
                              "data.limit_val": 8})
    s = train(cfg, tmp_path / "es", progress=False, log=lambda *a: None)
    assert s["epochs_done"] == 2
    said = []
    assert train(cfg, tmp_path / "es", resume=tmp_path / "es" / "last.pt", progress=False,
                 log=said.append)["nothing_to_resume"]
    assert "stopped early after 2 epochs" in said[0] and "raise it (and --epochs: train.epochs is 2)" in said[0]
