"""Honest accuracy of the models on the group's real data: grouped folds, baselines, cross-validation, report."""

from perovdb.accuracy.baselines import mae_rmse, mean_baseline, random_forest
from perovdb.accuracy.crossval import (
    PRESETS,
    AccuracyResults,
    AccuracySettings,
    run_crossval,
)
from perovdb.accuracy.data import EvalRecord, load_hse_table, load_multifidelity
from perovdb.accuracy.folds import compound_key, grouped_folds, mixing_type

__all__ = [
    "PRESETS",
    "AccuracyResults",
    "AccuracySettings",
    "EvalRecord",
    "compound_key",
    "grouped_folds",
    "load_hse_table",
    "load_multifidelity",
    "mae_rmse",
    "mean_baseline",
    "mixing_type",
    "random_forest",
    "run_crossval",
]
