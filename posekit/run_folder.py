"""A training run's folder: ``config.yaml``, ``split.json``, ``history.json``, ``tb/`` and the
checkpoints ``last.pt``, ``best.pt`` and ``epoch_NNN.pt`` (every one written atomically).

At the end of an epoch ``last.pt`` is written first, then ``best.pt`` when the epoch improved. A
kill between the two leaves ``best.pt`` behind; :meth:`RunFolder.repair` (run before a resume
trains) and :func:`posekit.checkpoint.best_in_run` (used by evaluation) both know it, so
``best.pt`` always ends up holding the best epoch of the history."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from posekit.utils import atomic_write_bytes, atomic_write_text, remove_stale_temps


class RunFolder:
    """The files of one run. Nothing is created until :meth:`start`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.last, self.best, self.history = self.path / "last.pt", self.path / "best.pt", self.path / "history.json"

    def start(self, config_text: str, split: dict, fresh: bool) -> None:
        """Create the folder, drop what a killed write left, and write ``config.yaml`` and
        ``split.json``. A ``fresh`` run (not a resume) first removes an earlier run's
        checkpoints, history and TensorBoard logs."""
        self.path.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)
        if fresh:
            for p in [self.last, self.best, self.history, *self.path.glob("epoch_*.pt")]:
                p.unlink(missing_ok=True)
            shutil.rmtree(self.path / "tb", ignore_errors=True)
        atomic_write_text(self.path / "config.yaml", config_text)
        atomic_write_text(self.path / "split.json", json.dumps(split))

    def repair(self) -> bool:
        """Copy ``last.pt`` over ``best.pt`` when a kill between the end-of-epoch writes left
        ``best.pt`` holding an older epoch than the best of the history. Returns whether it did."""
        from posekit.checkpoint import stale_best

        if not self.last.is_file() or not stale_best(self.path):
            return False
        atomic_write_bytes(self.best, self.last.read_bytes())
        return True

    def save_epoch(self, payload: dict, epoch: int, improved: bool, save_every: int | None, history: list) -> None:
        """End-of-epoch files, in this order: ``last.pt``, ``best.pt`` (when ``improved``), an
        ``epoch_NNN.pt`` snapshot every ``save_every`` epochs (``epoch`` counts from 1), then
        ``history.json``."""
        from posekit.checkpoint import save_checkpoint

        save_checkpoint(self.last, **payload)
        if improved:
            save_checkpoint(self.best, **payload)
        if save_every and epoch % int(save_every) == 0:
            save_checkpoint(self.path / f"epoch_{epoch:03d}.pt", **payload)
        atomic_write_text(self.history, json.dumps(history, indent=1))
