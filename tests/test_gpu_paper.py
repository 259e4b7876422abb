"""scripts/gpu_paper.sh end to end on the CPU with a tiny limit: pack the paper split's whole
images, train configs/paper.yaml from the pack, evaluate on its test split and on LSP test, and
write the reports."""
import json
import os
import subprocess
import sys

import pytest

from posekit.cli import main


@pytest.mark.slow
def test_gpu_paper_script_end_to_end_on_cpu(synth_root, tmp_path):
    pack = tmp_path / "paper.npz"
    assert main(["data", "pack", "--data", str(synth_root), "--split", "paper", "--whole", "--size", "64",
                 "--parts", "train", "val", "test", "--out", str(pack), "--no-progress"]) == 0
    env = {**os.environ, "POSEKIT": f"{sys.executable} -m posekit", "OUT": str(tmp_path / "run"),
           "REPORTS": str(tmp_path / "reports"), "LIMIT": "8", "EPOCHS": "1", "DEVICE": "cpu", "WORKERS": "0",
           "OMP_NUM_THREADS": "2"}
    r = subprocess.run(["bash", "scripts/gpu_paper.sh", str(pack)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "reports" / "paper_gpu.json").read_text())
    assert summary["epochs"] == 1 and len(summary["loss_curve"]) == 1
    for part in ("paper_test", "lsp_test"):
        assert summary[part]["n"] >= 1 and summary[part]["mse"] is not None and 0 <= summary[part]["pck"] <= 1
    assert (tmp_path / "reports" / "paper_gpu_eval" / "loss_curve.png").is_file()
    assert "paper recipe: 1 epochs" in r.stdout
