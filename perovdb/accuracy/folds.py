"""Compound keys and reproducible k-fold splits grouped by compound (all phases and functionals together)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from perovdb.perovskite import SiteFractions

#: fractions are rounded to this many decimals in keys (0.125 and 0.12 spellings of one compound agree)
KEY_DECIMALS = 2


class HasSites(Protocol):
    """Anything with A/B/X site fractions (``SiteFractions``, ``SiteAssignment``)."""

    a: Mapping[str, float]
    b: Mapping[str, float]
    x: Mapping[str, float]


class Keyed(Protocol):
    """A record with an id and a compound key."""

    record_id: str
    key: str


def _round_site(site: Mapping[str, float]) -> str:
    parts = []
    for species in sorted(site):
        value = round(float(site[species]) + 1e-9, KEY_DECIMALS)  # nudge so x.xx5 spellings round alike
        if value > 0:
            parts.append(f"{species}{value:g}")
    return ",".join(parts)


def compound_key(composition: HasSites | str) -> str:
    """Spelling-independent key of an ABX3 compound: per-site fractions (A, B sum 1; X sums 3) to 0.01.

    Takes site fractions (from ``assign_sites`` of a structure or ``SiteFractions``) or a formula string;
    ``'KSrI3'`` and ``'K1Sr1I3'`` give the same key.
    """
    sites: Any = SiteFractions.from_formula(composition) if isinstance(composition, str) else composition
    return "|".join(_round_site(site) for site in (sites.a, sites.b, sites.x))


def mixing_type(composition: HasSites | str) -> str:
    """'Pure', 'A-site mixed', 'B-site mixed', 'X-site mixed', or 'Multi-site mixed' (more than one site)."""
    sites: Any = SiteFractions.from_formula(composition) if isinstance(composition, str) else composition
    mixed = [name for name, site in zip("ABX", (sites.a, sites.b, sites.x)) if sum(1 for v in site.values() if v > 0) > 1]
    if not mixed:
        return "Pure"
    return f"{mixed[0]}-site mixed" if len(mixed) == 1 else "Multi-site mixed"


def fold_of_keys(keys: Sequence[str], k: int = 5, seed: int = 0) -> dict[str, int]:
    """Fold (0..k-1) of each distinct key: sorted keys shuffled with ``seed``, dealt round-robin."""
    unique = sorted(set(keys))
    if k < 2:
        raise ValueError("k must be at least 2")
    if len(unique) < k:
        raise ValueError(f"{len(unique)} compounds cannot fill {k} folds")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[g]: position % k for position, g in enumerate(order)}


def grouped_folds(records: Sequence[Keyed], k: int = 5, seed: int = 0) -> list[dict[str, list[str]]]:
    """``k`` folds of {"train", "test"} record ids; every compound key lies in exactly one test fold.

    Deterministic for ``seed`` and independent of record order (ids are returned sorted).
    """
    ids = [r.record_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("record ids must be unique")
    fold = fold_of_keys([r.key for r in records], k, seed)
    ordered = sorted(records, key=lambda r: r.record_id)
    return [
        {
            "train": [r.record_id for r in ordered if fold[r.key] != i],
            "test": [r.record_id for r in ordered if fold[r.key] == i],
        }
        for i in range(k)
    ]


def grouped_validation_split(
    records: Sequence[Keyed], fraction: float = 0.1, seed: int = 0
) -> dict[str, list[str]]:
    """Split training records into {"train", "val"} by compound (for early stopping; the test fold is never seen)."""
    unique = sorted({r.key for r in records})
    n_val = max(1, round(fraction * len(unique)))
    if n_val >= len(unique):
        raise ValueError(f"{len(unique)} compounds are too few for a validation split")
    order = np.random.default_rng(seed).permutation(len(unique))
    val_keys = {unique[i] for i in order[:n_val]}
    ordered = sorted(records, key=lambda r: r.record_id)
    return {
        "train": [r.record_id for r in ordered if r.key not in val_keys],
        "val": [r.record_id for r in ordered if r.key in val_keys],
    }
