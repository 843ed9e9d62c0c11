"""Accuracy evaluation: grouped folds (reproducible, leakage-free), baselines on real data, the report."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from perovdb.accuracy import (
    AccuracySettings,
    compound_key,
    grouped_folds,
    load_hse_table,
    load_multifidelity,
    mixing_type,
    run_crossval,
)
from perovdb.accuracy.folds import grouped_validation_split
from perovdb.accuracy.report import write_report


@pytest.fixture(scope="module")
def multifidelity() -> list:
    """All 983 rows of the multi-fidelity CSV as evaluation records."""
    return load_multifidelity()


@pytest.fixture(scope="module")
def table() -> list:
    """The 298 rows of the HSE06 composition table with generated structures."""
    return load_hse_table()


def test_compound_key_ignores_spelling() -> None:
    assert compound_key("KSrI3") == compound_key("K1Sr1I3") == compound_key("K_1Sr_1I_3")
    assert compound_key("CsPbBr1.5I1.5") == compound_key("CsPbI1.5Br1.5")
    assert compound_key("CsPbI3") != compound_key("CsPbBr3")
    assert mixing_type("CsPbI3") == "Pure"
    assert mixing_type("Cs0.5Rb0.5PbI3") == "A-site mixed"
    assert mixing_type("CsSn0.5Pb0.5I3") == "B-site mixed"
    assert mixing_type("CsPbBr1.5I1.5") == "X-site mixed"
    assert mixing_type("CsSn0.5Pb0.5Br1.5I1.5") == "Multi-site mixed"


def test_records_of_the_real_data(multifidelity: list, table: list) -> None:
    assert len(multifidelity) == 983 and len(table) == 298
    assert sum(r.level == "PBE" for r in multifidelity) == 613
    assert sum(r.level == "HSE06" for r in multifidelity) == 370
    twins = [r for r in multifidelity if r.twin is not None]
    assert len(twins) >= 362  # HSE06 rows computed on exactly a PBE row's geometry
    by_id = {r.record_id: r for r in multifidelity}
    assert all(by_id[r.twin].level == "PBE" and by_id[r.twin].key == r.key for r in twins)
    # one compound, two spellings: the structure-derived key joins them
    spelled = {r.name: r.key for r in multifidelity if r.name in {"MA1Ca0.12Sn0.75Pb0.12I3", "MACa0.125Sn0.75Pb0.125I3"}}
    assert len(spelled) == 2 and len(set(spelled.values())) == 1
    assert {r.key for r in multifidelity if r.name in {"KSrI3", "K1Sr1I3"}}.__len__() == 1


def test_folds_reproducible_and_leakage_free(multifidelity: list) -> None:
    folds = grouped_folds(multifidelity, k=5, seed=0)
    shuffled = list(multifidelity)
    random.Random(1).shuffle(shuffled)
    assert grouped_folds(shuffled, k=5, seed=0) == folds  # independent of row order
    assert grouped_folds(multifidelity, k=5, seed=1) != folds
    by_id = {r.record_id: r for r in multifidelity}
    fold_of = {i: f for f, fold in enumerate(folds) for i in fold["test"]}
    assert sorted(fold_of) == sorted(by_id)  # every row tested exactly once
    keys_in = [{by_id[i].key for i in fold["test"]} for fold in folds]
    assert all(keys_in[a].isdisjoint(keys_in[b]) for a in range(5) for b in range(a + 1, 5))
    for fold in folds:
        assert set(fold["train"]).isdisjoint(fold["test"])
        assert {by_id[i].key for i in fold["train"]}.isdisjoint({by_id[i].key for i in fold["test"]})
    for record in multifidelity:
        if record.twin is not None:
            assert fold_of[record.twin] == fold_of[record.record_id]
    sizes = [len(fold["test"]) for fold in folds]
    assert max(sizes) - min(sizes) < 0.2 * len(multifidelity) / 5
    train = [by_id[i] for i in folds[0]["train"]]
    inner = grouped_validation_split(train, 0.1, seed=0)
    assert {by_id[i].key for i in inner["train"]}.isdisjoint({by_id[i].key for i in inner["val"]})
    assert inner == grouped_validation_split(list(reversed(train)), 0.1, seed=0)


def test_baselines_on_real_subset(multifidelity: list, table: list) -> None:
    settings = AccuracySettings(
        folds=5, tasks=("pbe_gap", "hse_gap"), methods=("mean", "rf"), max_compounds=200, rf_estimators=40
    )
    results = run_crossval(settings, multifidelity=multifidelity, table=table, log=lambda message: None)
    for task in results.tasks.values():
        for outcome in task.methods.values():
            assert len(outcome.fold_mae) == 5
            assert all(math.isfinite(v) for v in (*outcome.fold_mae, *outcome.fold_rmse))
            assert set(outcome.predictions) == set(task.targets)
    pbe = results.tasks["pbe_gap"].methods
    assert pbe["rf"].summary()["mae"] < 0.7 * pbe["mean"].summary()["mae"]
    assert pbe["rf"].summary()["rmse"] < pbe["mean"].summary()["rmse"]


@pytest.mark.slow  # ~25 s alone on 2 cores (graphs + tiny ALIGNN training); longer on a busy machine
def test_quick_run_writes_report(multifidelity: list, table: list, tmp_path: Path) -> None:
    settings = AccuracySettings.quick(max_compounds=24, max_table_compounds=15, rf_estimators=20)
    results = run_crossval(settings, tmp_path / "graphs", multifidelity=multifidelity, table=table, log=lambda message: None)
    hse = results.tasks["hse_gap"]
    assert set(hse.methods) == {"mean", "rf", "alignn", "alignn_pbe_to_hse"}
    assert all(np.isfinite(list(o.predictions.values())).all() for o in hse.methods.values())
    assert len(hse.methods["alignn"].histories) == settings.folds
    path = write_report(results, tmp_path / "reports", command="pytest")
    text = path.read_text()
    assert "| alignn_pbe_to_hse |" in text and "## Verdict" in text and "random forest" in text
    for name in ("accuracy_parity_hse.png", "accuracy_pbe_vs_hse.png", "accuracy_learning_curves.png"):
        assert (tmp_path / "reports" / name).stat().st_size > 1000
        assert f"]({name})" in text
    assert any((tmp_path / "graphs").rglob("*"))  # graphs cached on disk for reruns
