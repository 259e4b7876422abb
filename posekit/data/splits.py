"""Deterministic train/val/test splits. A split is a dict ``{"name", "seed", "train", "val",
"test"}`` whose lists hold sample ids (``"lsp/im0001.jpg"``); every run saves its split.

- ``paper``: a seeded random 70/15/15 split over the chosen sets (the paper's protocol).
- ``lsp-standard``: train = LSP images 1-1000 + all of LSP-extended, test = LSP 1001-2000 (the
  usual benchmark), validation carved at random (seeded) from train.
"""
from __future__ import annotations

import json
import os

import numpy as np

from posekit.data.lsp import PoseSet
from posekit.errors import DataError

SPLITS = ("paper", "lsp-standard")
LSP_TRAIN_COUNT = 1000  # LSP: first 1000 train, last 1000 test


def lsp_train_count(n: int) -> int:
    """Images of LSP used for training: 1000 of the real 2000; half of a smaller copy."""
    return min(LSP_TRAIN_COUNT, n // 2)


def all_ids(sets: dict[str, PoseSet]) -> list[str]:
    return [s.sample_id(i) for s in sets.values() for i in range(len(s))]


def lsp_test_ids(sets: dict[str, PoseSet]) -> list[str]:
    """LSP images 1001-2000, the standard test set (the second half of a smaller copy)."""
    if "lsp" not in sets:
        raise DataError("the lsp-test split needs the 'lsp' set (lsp/ under the data root)")
    s = sets["lsp"]
    ids = sorted(s.sample_id(i) for i in range(len(s)))  # by image number (a pack holds them in its own order)
    return ids[lsp_train_count(len(ids)):]


def make_split(name: str, sets: dict[str, PoseSet], seed: int = 0,
               fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), val_fraction: float = 0.1) -> dict:
    rng = np.random.default_rng(seed)
    if name == "paper":
        ids = all_ids(sets)
        order = rng.permutation(len(ids))
        n_train = int(round(fractions[0] * len(ids)))
        n_val = int(round(fractions[1] * len(ids)))
        pick = lambda a: [ids[i] for i in sorted(a)]  # noqa: E731
        train, val, test = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
        split = {"train": pick(train), "val": pick(val), "test": pick(test)}
    elif name == "lsp-standard":
        test = lsp_test_ids(sets)
        s = sets["lsp"]
        train = [s.sample_id(i) for i in range(lsp_train_count(len(s)))]
        for other in sets.values():
            if other.name != "lsp":
                train += all_ids({other.name: other})
        order = rng.permutation(len(train))
        n_val = int(round(val_fraction * len(train)))
        val_idx = set(order[:n_val].tolist())
        split = {"train": [t for i, t in enumerate(train) if i not in val_idx],
                 "val": [t for i, t in enumerate(train) if i in val_idx], "test": test}
    else:
        raise DataError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
    split.update(name=name, seed=int(seed), sets=list(sets))
    return split


def split_ids(split: dict, limit_train: int | None = None, limit_val: int | None = None) -> tuple[list[str], list[str]]:
    """(train ids, validation ids) of a split, cut to their first ``limit_train`` /
    ``limit_val`` (``data.limit_train`` / ``data.limit_val``; None: all; a ``limit_val`` of 0: no
    validation)."""
    train = list(split["train"][:limit_train] if limit_train else split["train"])
    val = list(split["val"] if limit_val is None else split["val"][:limit_val])
    return train, val


def split_summary(split: dict) -> dict:
    return {k: len(split[k]) for k in ("train", "val", "test")}


def save_split(split: dict, path: str | os.PathLike) -> None:
    from posekit.utils import atomic_write_text

    atomic_write_text(path, json.dumps(split))
