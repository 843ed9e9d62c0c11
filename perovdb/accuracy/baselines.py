"""Baselines on the authors' own descriptors: predict-the-mean and a random forest."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestRegressor


def mean_baseline(y_train: np.ndarray, n_test: int) -> np.ndarray:
    """The training mean for every test row."""
    return np.full(n_test, float(np.mean(y_train)))


def random_forest(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int = 0,
    n_estimators: int = 300,
    n_jobs: int = 1,
) -> np.ndarray:
    """Random-forest predictions (scikit-learn defaults otherwise, fixed ``random_state``)."""
    model = RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
    model.fit(np.asarray(x_train, dtype=float), np.asarray(y_train, dtype=float))
    return model.predict(np.asarray(x_test, dtype=float))


def mae_rmse(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(MAE, RMSE)."""
    error = np.asarray(predicted, dtype=float) - np.asarray(actual, dtype=float)
    return float(np.mean(np.abs(error))), float(np.sqrt(np.mean(error**2)))
