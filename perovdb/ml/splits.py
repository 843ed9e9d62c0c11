"""Reproducible data splits: train/val/test by fractions, and (grouped) k-fold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_ids(
    ids: Sequence[str],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """Shuffle ``ids`` with ``seed`` and cut into {"train", "val", "test"} by ``fractions``.

    With ``groups`` (one key per id, e.g. the compound), whole groups are shuffled and cut, so no group
    is on two sides. Val and test get at least one id (group) each when their fraction is positive and
    there are enough to spare.
    """
    unique = list(dict.fromkeys(ids))
    if len(unique) != len(ids):
        raise ValueError("ids must be unique")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions {fractions} do not sum to 1")
    if groups is not None:
        if len(groups) != len(ids):
            raise ValueError("groups must have one entry per id")
        members: dict[str, list[str]] = {}
        for structure_id, group in zip(ids, groups, strict=True):
            members.setdefault(group, []).append(structure_id)
        cut = split_ids(sorted(members), fractions, seed)
        return {part: [i for g in cut[part] for i in members[g]] for part in ("train", "val", "test")}
    order = np.random.default_rng(seed).permutation(len(unique))
    shuffled = [unique[i] for i in order]
    n = len(shuffled)
    n_val = max(int(round(fractions[1] * n)), 1 if fractions[1] > 0 and n >= 3 else 0)
    n_test = max(int(round(fractions[2] * n)), 1 if fractions[2] > 0 and n >= 3 else 0)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} ids are too few for fractions {fractions}")
    return {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }


def kfold(ids: Sequence[str], k: int = 5, seed: int = 0, groups: Sequence[str] | None = None) -> list[dict[str, list[str]]]:
    """``k`` folds of {"train", "test"}; with ``groups``, all ids of one group land in the same test fold."""
    ids = list(ids)
    if k < 2:
        raise ValueError("k must be at least 2")
    keys = list(groups) if groups is not None else ids
    if len(keys) != len(ids):
        raise ValueError("groups must have one entry per id")
    unique = list(dict.fromkeys(keys))
    if len(unique) < k:
        raise ValueError(f"{len(unique)} groups cannot fill {k} folds")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_group = {unique[g]: position % k for position, g in enumerate(order)}
    folds = []
    for fold in range(k):
        test = [i for i, key in zip(ids, keys) if fold_of_group[key] == fold]
        train = [i for i, key in zip(ids, keys) if fold_of_group[key] != fold]
        folds.append({"train": train, "test": test})
    return folds
