import os
from pathlib import Path

import pytest

from posekit.data.synthetic import make_synthetic_root

# Real LSP data, when $POSEKIT_DATA names it (.ci/run sets it when ../shared/data exists).
REAL_DATA = Path(os.environ.get("POSEKIT_DATA") or "/nonexistent-posekit-data")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic data root: lsp/ (40 images, LSP layout) and lspet/ (40, LSPe layout)."""
    return make_synthetic_root(tmp_path_factory.mktemp("synth"), n_lsp=40, n_lspet=40)


@pytest.fixture
def real_root() -> Path:
    if not (REAL_DATA / "lsp" / "joints.mat").is_file():
        pytest.skip("real LSP data not found (set POSEKIT_DATA to a folder holding lsp/ and lspet/)")
    return REAL_DATA


def tiny_overrides(root, **extra) -> list[str]:
    """Config overrides for a fast CPU run on synthetic data."""
    o = {
        "data.root": str(root), "data.input_size": 32, "data.cache_max_side": 64,
        "model.name": "poster_cnn", "model.width": 4, "model.dropout": 0.0,
        "train.batch_size": 8, "train.num_workers": 0, "train.optimizer": "adam", "train.lr": 0.003,
        "train.log_images": 4,
    }
    o.update(extra)
    return [f"{k}={v}" for k, v in o.items()]
