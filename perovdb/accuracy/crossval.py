"""Grouped k-fold cross-validation of baselines and ALIGNN variants on the group's real data."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from perovdb.accuracy.baselines import mae_rmse, mean_baseline, random_forest
from perovdb.accuracy.data import (
    EvalRecord,
    load_hse_table,
    load_multifidelity,
    subset_by_compound,
)
from perovdb.accuracy.folds import grouped_folds, grouped_validation_split

Task = Literal["hse_gap", "pbe_gap", "decomposition", "table_hse_gap"]
Method = Literal["mean", "rf", "alignn", "alignn_pbe_to_hse"]

TASK_LABELS: dict[str, str] = {
    "hse_gap": "HSE06 band gap, relaxed structures (multi-fidelity CSV, HSE rows)",
    "pbe_gap": "PBE band gap, relaxed structures (multi-fidelity CSV, PBE rows)",
    "decomposition": "PBE decomposition energy (multi-fidelity CSV, PBE rows)",
    "table_hse_gap": "HSE06 band gap, generated pseudo-cubic structures (HSE_data.csv)",
}
TASK_UNITS: dict[str, str] = {"hse_gap": "eV", "pbe_gap": "eV", "decomposition": "eV/f.u.", "table_hse_gap": "eV"}
METHOD_LABELS: dict[str, str] = {
    "mean": "predict the training mean",
    "rf": "random forest on the authors' descriptors",
    "alignn": "ALIGNN trained on the task's target only",
    "alignn_pbe_to_hse": "ALIGNN pretrained on PBE gaps (training compounds), fine-tuned on HSE06",
}


class AccuracySettings(BaseModel):
    """Everything that shapes the accuracy numbers: data subset, folds, tasks, methods, model and training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = "custom"
    folds: int = Field(default=5, ge=2)
    seed: int = 0
    tasks: tuple[Task, ...] = ("hse_gap", "pbe_gap", "decomposition", "table_hse_gap")
    methods: tuple[Method, ...] = ("mean", "rf", "alignn", "alignn_pbe_to_hse")
    alignn_tasks: tuple[Task, ...] = Field(
        default=("hse_gap", "pbe_gap", "decomposition", "table_hse_gap"), description="Tasks ALIGNN is trained on."
    )
    max_compounds: int | None = Field(default=None, ge=2, description="Multi-fidelity compounds used (None = all).")
    max_table_compounds: int | None = Field(default=None, ge=2, description="Composition-table compounds (None = all).")
    rf_estimators: int = Field(default=300, ge=1)
    # model
    alignn_layers: int = 2
    gcn_layers: int = 2
    hidden_features: int = 64
    embedding_features: int = 32
    cutoff: float = 8.0
    max_neighbors: int = 8
    three_body_cutoff: float | None = 4.0
    # training
    epochs: int = Field(default=20, ge=1, description="Epochs of ALIGNN trained from scratch on HSE06 / table data.")
    pretrain_epochs: int = Field(default=15, ge=1, description="Epochs of the PBE-gap (and decomposition) models.")
    finetune_epochs: int = Field(default=12, ge=1)
    batch_size: int = 16
    learning_rate: float = 2e-3
    finetune_learning_rate: float = 1e-3
    patience: int | None = None
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="Training compounds held out for early stopping.")
    threads: int = Field(default=1, ge=1, description="torch threads per training process.")
    workers: int = Field(default=1, ge=1, description="Processes training folds in parallel.")

    @classmethod
    def quick(cls, **overrides: Any) -> AccuracySettings:
        """CI preset: small real subset, tiny model, two epochs, three folds (about a minute)."""
        values: dict[str, Any] = {
            "preset": "quick", "folds": 3, "max_compounds": 36, "max_table_compounds": 30, "rf_estimators": 50,
            "alignn_layers": 1, "gcn_layers": 1, "hidden_features": 16, "embedding_features": 16,
            "epochs": 2, "pretrain_epochs": 2, "finetune_epochs": 2, "batch_size": 16,
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def full(cls, **overrides: Any) -> AccuracySettings:
        """All data, 5 folds, a small ALIGNN sized to finish in about an hour on 2 CPU cores shared with other work.

        Measured: one epoch over ~440 PBE training structures takes ~15 s on one (shared) core with this model
        (~0.03 s per structure, forward + backward), so the epochs are few; more epochs need proportionally
        more time.
        """
        values: dict[str, Any] = {
            "preset": "full", "folds": 5, "workers": 2, "epochs": 14, "pretrain_epochs": 8, "finetune_epochs": 8,
        }
        values.update(overrides)
        return cls(**values)

    def alignn_config(self) -> Any:
        """The ``ALIGNNConfig`` of every ALIGNN trained here."""
        from perovdb.graphs import GraphSettings
        from perovdb.ml import ALIGNNConfig

        graph = GraphSettings(cutoff=self.cutoff, max_neighbors=self.max_neighbors, three_body_cutoff=self.three_body_cutoff)
        return ALIGNNConfig(
            alignn_layers=self.alignn_layers,
            gcn_layers=self.gcn_layers,
            hidden_features=self.hidden_features,
            embedding_features=self.embedding_features,
            graph=graph,
        )

    def train_config(self, epochs: int, seed: int, learning_rate: float | None = None) -> Any:
        """A ``TrainConfig`` for one run (the split is always given explicitly)."""
        from perovdb.ml import TrainConfig

        return TrainConfig(
            epochs=epochs,
            batch_size=self.batch_size,
            learning_rate=learning_rate or self.learning_rate,
            early_stopping_patience=self.patience,
            seed=seed,
            num_threads=self.threads,
            device="cpu",
        )


PRESETS = {"quick": AccuracySettings.quick, "full": AccuracySettings.full}


@dataclass
class MethodResult:
    """One method on one task: predictions per record, metrics and seconds per fold, training histories."""

    predictions: dict[str, float] = field(default_factory=dict)
    fold_mae: list[float] = field(default_factory=list)
    fold_rmse: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    histories: list[list[dict[str, float]]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Mean and (sample) std of the per-fold MAE and RMSE."""
        mae, rmse = np.array(self.fold_mae), np.array(self.fold_rmse)
        ddof = 1 if len(mae) > 1 else 0
        return {
            "mae": float(mae.mean()),
            "mae_std": float(mae.std(ddof=ddof)),
            "rmse": float(rmse.mean()),
            "rmse_std": float(rmse.std(ddof=ddof)),
            "seconds": float(np.sum(self.seconds)),
        }


@dataclass
class TaskResult:
    """A task's rows (targets, mixing types, folds) and the results of each method."""

    task: str
    targets: dict[str, float]
    mixing: dict[str, str]
    folds: list[dict[str, list[str]]]
    methods: dict[str, MethodResult] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # record id → compound key

    @property
    def n(self) -> int:
        """Rows evaluated."""
        return len(self.targets)


@dataclass
class AccuracyResults:
    """Everything a report needs: settings, task results, the PBE/HSE06 twin pairs, runtime, versions."""

    settings: AccuracySettings
    tasks: dict[str, TaskResult]
    twin_pairs: list[dict[str, Any]]
    seconds: float
    versions: dict[str, str]
    notes: list[str] = field(default_factory=list)


def structure_digest(record: EvalRecord) -> str:
    """Graph-cache id of a record: its id plus a short hash of its geometry (regenerated structures get new graphs)."""
    s = record.structure
    payload = np.round(s.lattice.matrix, 6).tobytes() + np.round(s.frac_coords, 6).tobytes()
    payload += ",".join(site.specie.symbol for site in s).encode()
    return f"{record.record_id}-{hashlib.sha256(payload).hexdigest()[:12]}"


def build_record_graphs(
    records: Sequence[EvalRecord], settings: AccuracySettings, cache_dir: Path | None, workers: int = 2
) -> dict[str, Any]:
    """Graphs by record id, built with a ``GraphCache`` on a directory artifact store so reruns reuse them."""
    from perovdb.artifacts import DirectoryArtifactStore, MemoryArtifactStore
    from perovdb.graphs import GraphCache, build_graphs

    store = DirectoryArtifactStore(cache_dir) if cache_dir is not None else MemoryArtifactStore()
    graph_settings = settings.alignn_config().graph
    cache = GraphCache(store, graph_settings)
    ids = {r.record_id: structure_digest(r) for r in records}
    graphs = build_graphs(
        [(ids[r.record_id], r.structure) for r in records], graph_settings, cache, workers=workers, progress=False
    )
    return {record_id: graphs[digest] for record_id, digest in ids.items()}


@dataclass(frozen=True)
class _Row:
    record_id: str
    key: str
    y: float


def _fit_alignn(
    settings: AccuracySettings,
    rows: Sequence[_Row],
    graphs: dict[str, Any],
    epochs: int,
    seed: int,
    *,
    initial: Any = None,
) -> Any:
    """Train (or fine-tune from ``initial``, a ``TrainingResult``) on ``rows`` with a grouped early-stopping split."""
    from perovdb.ml import fine_tune, train_model

    split = grouped_validation_split(rows, settings.val_fraction, seed)
    ids = [r.record_id for r in rows]
    targets = [r.y for r in rows]
    graph_list = [graphs[i] for i in ids]
    model_config = settings.alignn_config()
    if initial is None:
        return train_model(graph_list, targets, ids, model_config, settings.train_config(epochs, seed), split)
    return fine_tune(
        graph_list,
        targets,
        ids,
        initial.state_dict,
        model_config,
        settings.train_config(epochs, seed, settings.finetune_learning_rate),
        split,
        normalizer=initial.normalizer,
        init_from="pbe-gap model of the same fold",
    )


def _predict(result: Any, graphs: dict[str, Any], ids: Sequence[str], settings: AccuracySettings) -> list[float]:
    from perovdb.ml import predict

    if not ids:
        return []
    return predict(result.model(), [graphs[i] for i in ids], settings.batch_size, result.normalizer).tolist()


def _run(settings: AccuracySettings, rows: Sequence[_Row], graphs: dict[str, Any], test: Sequence[str], epochs: int, seed: int, initial: Any = None) -> tuple[dict[str, Any], Any]:
    import torch

    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    result = _fit_alignn(settings, rows, graphs, epochs, seed, initial=initial)
    out = {
        "predictions": dict(zip(test, _predict(result, graphs, test, settings), strict=True)),
        "history": result.history,
        "seconds": time.perf_counter() - started,
    }
    return out, result


def _gap_fold_job(
    settings: AccuracySettings,
    fold: int,
    pbe_train: list[_Row],
    pbe_test: list[str],
    hse_train: list[_Row],
    hse_test: list[str],
    graphs: dict[str, Any],
) -> dict[tuple[str, str], dict[str, Any]]:
    """One fold of the gap tasks: the PBE model (→ PBE-gap predictions and pretraining), HSE06-only, PBE→HSE06."""
    seed = settings.seed + fold
    out: dict[tuple[str, str], dict[str, Any]] = {}
    pbe_result = None
    if pbe_train:
        out[("pbe_gap", "alignn")], pbe_result = _run(settings, pbe_train, graphs, pbe_test, settings.pretrain_epochs, seed)
    if hse_train and "hse_gap" in settings.alignn_tasks:
        if "alignn" in settings.methods:
            out[("hse_gap", "alignn")], _ = _run(settings, hse_train, graphs, hse_test, settings.epochs, seed)
        if "alignn_pbe_to_hse" in settings.methods and pbe_result is not None:
            out[("hse_gap", "alignn_pbe_to_hse")], _ = _run(
                settings, hse_train, graphs, hse_test, settings.finetune_epochs, seed, initial=pbe_result
            )
    return out


def _single_job(
    settings: AccuracySettings, task: str, fold: int, train: list[_Row], test: list[str], graphs: dict[str, Any], epochs: int
) -> dict[tuple[str, str], dict[str, Any]]:
    """One fold of one task, ALIGNN trained on that task's target alone."""
    result, _ = _run(settings, train, graphs, test, epochs, settings.seed + fold)
    return {(task, "alignn"): result}


def _task_rows(task: str, mf: Sequence[EvalRecord], table: Sequence[EvalRecord]) -> list[EvalRecord]:
    if task == "hse_gap":
        return [r for r in mf if r.level == "HSE06"]
    if task in ("pbe_gap", "decomposition"):
        return [r for r in mf if r.level == "PBE"]
    return list(table)


def _target(task: str, record: EvalRecord) -> float:
    value = record.decomposition_energy if task == "decomposition" else record.band_gap
    assert value is not None
    return float(value)


def run_crossval(
    settings: AccuracySettings,
    cache_dir: Path | None = None,
    *,
    multifidelity: Sequence[EvalRecord] | None = None,
    table: Sequence[EvalRecord] | None = None,
    log: Any = print,
) -> AccuracyResults:
    """Run every task × method of ``settings`` on the same grouped folds; return predictions and metrics.

    The multi-fidelity folds are made once over all its rows (so the PBE, HSE06 and decomposition tasks
    share them and a test compound's PBE twin is never trained on); the composition table has its own.
    """
    from perovdb.ml.train import library_versions

    started = time.perf_counter()
    needs_mf = any(t != "table_hse_gap" for t in settings.tasks)
    mf = subset_by_compound(
        multifidelity if multifidelity is not None else (load_multifidelity() if needs_mf else []),
        settings.max_compounds,
        settings.seed,
    )
    tab = subset_by_compound(
        table if table is not None else (load_hse_table() if "table_hse_gap" in settings.tasks else []),
        settings.max_table_compounds,
        settings.seed,
    )
    mf_folds = grouped_folds(mf, settings.folds, settings.seed) if mf else []
    table_folds = grouped_folds(tab, settings.folds, settings.seed) if tab else []
    log(f"{len(mf)} multi-fidelity rows ({len({r.key for r in mf})} compounds), {len(tab)} table rows; {settings.folds} folds")

    by_id = {r.record_id: r for r in (*mf, *tab)}
    tasks: dict[str, TaskResult] = {}
    for task in settings.tasks:
        rows = _task_rows(task, mf, tab)
        ids = {r.record_id for r in rows}
        base_folds = table_folds if task == "table_hse_gap" else mf_folds
        folds = [{part: [i for i in fold[part] if i in ids] for part in ("train", "test")} for fold in base_folds]
        tasks[task] = TaskResult(
            task=task,
            targets={r.record_id: _target(task, r) for r in rows},
            mixing={r.record_id: r.mixing for r in rows},
            folds=folds,
            keys={r.record_id: r.key for r in rows},
        )

    # baselines
    for task, result in tasks.items():
        for method in ("mean", "rf"):
            if method not in settings.methods:
                continue
            outcome = result.methods.setdefault(method, MethodResult())
            for fold_index, fold in enumerate(result.folds):
                t0 = time.perf_counter()
                y_train = np.array([result.targets[i] for i in fold["train"]])
                if method == "mean":
                    predicted = mean_baseline(y_train, len(fold["test"]))
                else:
                    x_train = np.stack([by_id[i].features for i in fold["train"]])
                    x_test = np.stack([by_id[i].features for i in fold["test"]])
                    predicted = random_forest(
                        x_train, y_train, x_test, seed=settings.seed + fold_index, n_estimators=settings.rf_estimators
                    )
                outcome.predictions.update(zip(fold["test"], predicted.tolist(), strict=True))
                outcome.seconds.append(time.perf_counter() - t0)
            log(f"  {task:<14} {method:<18} done")

    # ALIGNN
    alignn_wanted = any(m.startswith("alignn") for m in settings.methods) and settings.alignn_tasks
    jobs: list[tuple[Any, tuple]] = []
    if alignn_wanted:
        needed = [by_id[i] for task in tasks.values() if task.task in settings.alignn_tasks for i in task.targets]
        if {"hse_gap", "pbe_gap"} & set(settings.tasks):
            needed += [r for r in mf if r.level == "PBE"] if "alignn_pbe_to_hse" in settings.methods else []
        needed = list({r.record_id: r for r in needed}.values())
        t0 = time.perf_counter()
        graphs = build_record_graphs(needed, settings, cache_dir, workers=max(settings.workers, 2))
        log(f"  graphs of {len(graphs)} structures ready in {time.perf_counter() - t0:.0f} s")

        def rows(task: str, part: list[str]) -> list[_Row]:
            return [_Row(i, by_id[i].key, _target(task, by_id[i])) for i in part]

        def subset(*parts: Sequence[_Row] | Sequence[str]) -> dict[str, Any]:
            chosen = {getattr(x, "record_id", x) for part in parts for x in part}
            return {i: graphs[i] for i in chosen}

        gap_tasks = {"hse_gap", "pbe_gap"} & set(settings.tasks) & set(settings.alignn_tasks)
        for fold_index, fold in enumerate(mf_folds if gap_tasks else []):
            train_ids, test_ids = fold["train"], fold["test"]
            wants_pbe_model = "pbe_gap" in gap_tasks or ("hse_gap" in gap_tasks and "alignn_pbe_to_hse" in settings.methods)
            pbe_train = rows("pbe_gap", [i for i in train_ids if by_id[i].level == "PBE"]) if wants_pbe_model else []
            pbe_test = [i for i in test_ids if by_id[i].level == "PBE"] if "pbe_gap" in gap_tasks else []
            hse_train = rows("hse_gap", [i for i in train_ids if by_id[i].level == "HSE06"]) if "hse_gap" in gap_tasks else []
            hse_test = [i for i in test_ids if by_id[i].level == "HSE06"] if "hse_gap" in gap_tasks else []
            graph_part = subset(pbe_train, pbe_test, hse_train, hse_test)
            jobs.append((_gap_fold_job, (settings, fold_index, pbe_train, pbe_test, hse_train, hse_test, graph_part)))
        for task in ("decomposition", "table_hse_gap"):
            if task not in settings.tasks or task not in settings.alignn_tasks or "alignn" not in settings.methods:
                continue
            epochs = settings.pretrain_epochs if task == "decomposition" else settings.epochs
            for fold_index, fold in enumerate(tasks[task].folds):
                train = rows(task, fold["train"])
                jobs.append((_single_job, (settings, task, fold_index, train, fold["test"], subset(train, fold["test"]), epochs)))

    outputs = _execute(jobs, settings.workers, log)
    for output in outputs:
        for (task, method), out in output.items():
            if task not in tasks:
                continue
            outcome = tasks[task].methods.setdefault(method, MethodResult())
            outcome.predictions.update(out["predictions"])
            outcome.histories.append(out["history"])
            outcome.seconds.append(out["seconds"])

    # per-fold metrics, on exactly the test ids of each fold
    for result in tasks.values():
        for outcome in result.methods.values():
            for fold in result.folds:
                test = [i for i in fold["test"] if i in outcome.predictions]
                if not test:
                    continue
                mae, rmse = mae_rmse(
                    np.array([outcome.predictions[i] for i in test]), np.array([result.targets[i] for i in test])
                )
                outcome.fold_mae.append(mae)
                outcome.fold_rmse.append(rmse)

    twin_pairs = [
        {
            "hse_id": r.record_id,
            "pbe_id": r.twin,
            "name": r.name,
            "mixing": r.mixing,
            "phase": r.phase,
            "hse_gap": r.band_gap,
            "pbe_gap": by_id[r.twin].band_gap,
        }
        for r in mf
        if r.level == "HSE06" and r.twin is not None and r.twin in by_id
    ]
    versions = library_versions()
    import sklearn

    versions["scikit-learn"] = sklearn.__version__
    return AccuracyResults(
        settings=settings, tasks=tasks, twin_pairs=twin_pairs, seconds=time.perf_counter() - started, versions=versions
    )


def _execute(jobs: list[tuple[Any, tuple]], workers: int, log: Any) -> list[dict]:
    """Run ALIGNN fold jobs inline (``workers == 1``) or in forked processes; results in job order."""
    if not jobs:
        return []
    outputs: list[dict] = []
    if workers <= 1:
        for index, (function, args) in enumerate(jobs, start=1):
            t0 = time.perf_counter()
            outputs.append(function(*args))
            log(f"  ALIGNN job {index}/{len(jobs)} ({function.__name__}) {time.perf_counter() - t0:.0f} s")
        return outputs
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(function, *args) for function, args in jobs]
        for index, future in enumerate(futures, start=1):
            outputs.append(future.result())
            log(f"  ALIGNN job {index}/{len(jobs)} done")
    return outputs
