"""Training on several processes (issue 7): torchrun + DDP with Gloo on CPU, on synthetic data."""
import os
import subprocess
import sys

import pytest
import torch
from conftest import tiny_overrides

from posekit.checkpoint import read_checkpoint
from posekit.distributed import GlobalBatchSampler


def test_global_batches_do_not_depend_on_the_process_count():
    one = list(GlobalBatchSampler(50, 8, world=1, rank=0, seed=3, epoch=2))
    two = [list(GlobalBatchSampler(50, 8, world=2, rank=r, seed=3, epoch=2)) for r in range(2)]
    four = [list(GlobalBatchSampler(50, 8, world=4, rank=r, seed=3, epoch=2)) for r in range(4)]
    assert len(one) == 6 and all(len(b) == 8 for b in one)  # 50 // 8 full batches; the rest dropped
    for t, batch in enumerate(one):
        assert two[0][t] + two[1][t] == batch
        assert sum((four[r][t] for r in range(4)), []) == batch
    assert list(GlobalBatchSampler(50, 8, seed=3, epoch=3)) != one  # a new order each epoch
    from posekit.errors import ConfigError

    with pytest.raises(ConfigError, match="must divide"):
        GlobalBatchSampler(50, 9, world=2)


def test_one_process_needs_no_group(monkeypatch):
    """Without torchrun's environment the DDP helpers are the identity and no group is made."""
    import torch.distributed as dist

    from posekit import distributed

    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.dist_info() == (1, 0, 0)
    assert distributed.setup("cpu") == (1, 0, None) and not dist.is_initialized()
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net, torch.device("cpu"), 1, sync_bn=True) is net
    assert distributed.all_sum([1.5, 2.0], "cpu") == [1.5, 2.0]
    assert distributed.broadcast_flag(True, "cpu") is True
    assert distributed.global_loss_scale(torch.tensor(3.0), 1).item() == 1.0
    distributed.teardown()  # a no-op
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert distributed.dist_info() == (2, 1, 0)


def _run(args, nproc=None, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, "-m", "posekit", "train", *args]
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "posekit", "train", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_two_gloo_processes_match_one_process(synth_root, tmp_path):
    """No batch-norm statistics, no dropout, no random augmentation: 2 processes with the same
    global batch and seed end with the weights of 1 process (so gradients are averaged over the
    global batch, not summed or dropped)."""
    over = tiny_overrides(synth_root, **{
        "model.batch_norm": "false", "model.dropout": 0.0, "augment.flip": 0.0, "train.batch_size": 8,
        "train.epochs": 2, "train.optimizer": "sgd", "train.lr": 0.05, "train.momentum": 0.9, "train.log_images": 0,
        "train.channels_last": "false", "train.amp": "false"})
    _run(["--config", "configs/poster.yaml", "--out", str(tmp_path / "one"), "--no-progress", *over])
    r = _run(["--config", "configs/poster.yaml", "--out", str(tmp_path / "two"), "--no-progress", *over], nproc=2)
    assert "2 processes (global batch 8)" in r.stdout + r.stderr
    a = read_checkpoint(tmp_path / "one" / "last.pt")
    b = read_checkpoint(tmp_path / "two" / "last.pt")
    assert a["epoch"] == b["epoch"] == 1
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], atol=2e-5), k
    # the weights really trained (the loss fell), and both runs logged the same global-batch loss
    assert a["history"][-1]["train_loss"] < a["history"][0]["train_loss"]
    assert abs(a["history"][-1]["train_loss"] - b["history"][-1]["train_loss"]) < 1e-5

    # resume under DDP: 2 more epochs from the 2-process run's last.pt equal 4 epochs in one go
    _run(["--resume", str(tmp_path / "two"), "--epochs", "4", "--no-progress"], nproc=2)
    four = [o for o in over if not o.startswith("train.epochs=")] + ["train.epochs=4"]
    _run(["--config", "configs/poster.yaml", "--out", str(tmp_path / "four"), "--no-progress", *four])
    c = read_checkpoint(tmp_path / "two" / "last.pt")
    d = read_checkpoint(tmp_path / "four" / "last.pt")
    assert c["epoch"] == d["epoch"] == 3 and [h["epoch"] for h in c["history"]] == [1, 2, 3, 4]
    for k, v in d["model"].items():
        assert torch.allclose(v, c["model"][k], atol=5e-5), k


_LEAK_CHECK = r"""
import os, sys, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from posekit.distributed import setup, teardown

def rank_main(rank, port):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    assert setup("cpu") == (2, rank, torch.device("cpu"))
    net = DistributedDataParallel(torch.nn.Linear(3, 2))
    net(torch.ones(4, 3)).sum().backward()
    del net  # as train() returns: the wrapper is gone before the group is destroyed
    teardown()  # what `posekit train` does at the end: barrier, then destroy_process_group
    assert not dist.is_initialized()
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    left = [n for n in names if "gloo" in n]
    print(f"rank {rank} threads left: {left}", flush=True)
    sys.exit(3 if left else 0)

if __name__ == "__main__":
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=rank_main, args=(r, port)) for r in range(2)]
    [p.start() for p in procs]
    [p.join(120) for p in procs]
    sys.exit(max(p.exitcode or 0 for p in procs))
"""


def test_destroying_the_group_stops_gloo_threads(tmp_path):
    """The cause of a rare SIGABRT at exit ("terminate called without an active exception"): DDP
    imports torch.distributed.nn.functional after the group exists, whose default arguments then
    keep the group alive, so its Gloo threads ran on into interpreter shutdown. After
    destroy_process_group no Gloo thread may be left."""
    script = tmp_path / "leak.py"
    script.write_text(_LEAK_CHECK)
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
