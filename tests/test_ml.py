"""ALIGNN models: upstream checkpoint parity, training determinism, serialisation, splits, registry."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from perovdb import connect
from perovdb.config import Settings
from perovdb.graphs import GraphSettings, build_graph, collate
from perovdb.ml import (
    ALIGNNConfig,
    TrainConfig,
    fine_tune,
    import_checkpoint,
    kfold,
    model_from_bytes,
    model_outputs,
    model_to_bytes,
    predict,
    split_ids,
    train_model,
)
from perovdb.ml.registry import import_upstream, load_model, register_model
from perovdb.switches import torch_threads

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "upstream_alignn"
JARVIS = Path(__file__).resolve().parent.parent / "data" / "jarvis_alignn_sample"
TINY = dict(alignn_layers=1, gcn_layers=1, embedding_features=16, hidden_features=32)


def reference(name: str) -> list[dict[str, str]]:
    with open(FIXTURES / f"{name}_reference.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def dataset() -> tuple[list, list[float], list[str]]:
    """40 JARVIS structures with their OptB88vdW band gaps (id_prop.csv), as pure-top-k graphs."""
    with open(JARVIS / "id_prop.csv") as handle:
        rows = [line.strip().split(",") for line in handle if line.strip()][:40]
    settings = GraphSettings()
    graphs = [build_graph(Structure.from_file(JARVIS / name), settings) for name, _ in rows]
    return graphs, [float(value) for _, value in rows], [name for name, _ in rows]


@pytest.mark.parametrize("name", ["alignn2_pure_tiny", "alignn_classic_tiny"])
def test_upstream_prediction_parity(name: str) -> None:
    model, config = import_checkpoint(FIXTURES / f"{name}.zip")
    expected_architecture = "alignn" if "classic" in name else "alignn_atomwise_pure"
    assert config.architecture == expected_architecture
    assert config.graph.neighbor_strategy == ("k-nearest" if "classic" in name else "pure-top-k")
    rows = reference(name)
    graphs = [build_graph(Structure.from_file(JARVIS / row["file"]), config.graph) for row in rows]
    upstream = np.array([float(row["upstream_prediction"]) for row in rows])
    with torch.no_grad(), torch_threads(1):  # small tensors: one thread is fastest on a busy CPU
        batched = predict(model, graphs, batch_size=16)
        one_by_one = np.array([float(model_outputs(model, collate([g]))) for g in graphs])
    assert np.max(np.abs(batched - upstream)) < 1e-4
    assert np.max(np.abs(one_by_one - upstream)) < 1e-4


def test_classic_checkpoint_folder_layout(tmp_path: Path) -> None:
    import zipfile

    zipfile.ZipFile(FIXTURES / "alignn_classic_tiny.zip").extractall(tmp_path)
    model, config = import_checkpoint(tmp_path / "alignn_classic_tiny")
    assert config.architecture == "alignn" and config.hidden_features == 64
    state = torch.load(tmp_path / "alignn_classic_tiny" / "checkpoint_15.pt", weights_only=True)["model"]
    assert list(model.state_dict()) == list(state)  # identical keys, identical order


def test_model_bytes_round_trip() -> None:
    model, config = import_checkpoint(FIXTURES / "alignn2_pure_tiny.zip")
    again, config_again, normalizer = model_from_bytes(model_to_bytes(model, config, {"mean": 1.0, "std": 2.0}))
    assert config_again == config and normalizer == {"mean": 1.0, "std": 2.0}
    graph = build_graph(Structure.from_file(JARVIS / "POSCAR-JVASP-10.vasp"), config.graph)
    assert np.allclose(predict(model, [graph]), predict(again, [graph]))


def tiny_training(dataset, seed: int = 7, **overrides) -> object:
    graphs, targets, ids = dataset
    train = TrainConfig(epochs=3, batch_size=8, learning_rate=3e-3, seed=seed, num_threads=1, scheduler="cosine", **overrides)
    return train_model(graphs, targets, ids, ALIGNNConfig(**TINY), train)


def test_training_is_deterministic_and_learns(dataset) -> None:
    first = tiny_training(dataset)
    second = tiny_training(dataset)
    strip = lambda history: [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in history]  # noqa: E731
    assert strip(first.history) == strip(second.history)
    assert first.state_dict == second.state_dict
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert set(first.history[0]) == {"epoch", "train_loss", "val_mae", "lr", "train_seconds", "seconds"}
    assert 0 < first.history[0]["train_seconds"] < first.history[0]["seconds"]
    assert {"val_mae", "val_rmse", "test_mae", "test_rmse", "test_r2"} <= set(first.metrics)
    assert 1 <= first.best_epoch <= 3
    assert sorted(sum(first.split.values(), [])) == sorted(dataset[2])
    assert first.versions["torch"] == torch.__version__


def test_predict_returns_target_units(dataset) -> None:
    graphs, targets, _ = dataset
    result = tiny_training(dataset)
    model = result.model()
    scaled = predict(model, graphs[:5])
    in_units = predict(model, graphs[:5], normalizer=result.normalizer)
    np.testing.assert_allclose(in_units, scaled * result.normalizer["std"] + result.normalizer["mean"])
    assert result.normalizer["mean"] == pytest.approx(np.mean([targets[dataset[2].index(i)] for i in result.split["train"]]))
    # the metrics were computed in target units: the val MAE is of the order of the gaps, not of z-scores
    val_idx = [dataset[2].index(i) for i in result.split["val"]]
    val_pred = predict(model, [graphs[i] for i in val_idx], normalizer=result.normalizer)
    assert result.metrics["val_mae"] == pytest.approx(np.mean(np.abs(val_pred - np.array(targets)[val_idx])), rel=1e-5)


def test_fine_tune_starts_from_given_weights(dataset) -> None:
    graphs, targets, ids = dataset
    base = tiny_training(dataset)
    shifted = [t + 1.0 for t in targets]  # a "higher level of theory"
    train = TrainConfig(epochs=1, batch_size=8, learning_rate=1e-12, seed=1, num_threads=1, scheduler="none")
    tuned = fine_tune(graphs, shifted, ids, base.state_dict, base.model_config, train, split=base.split, normalizer=base.normalizer, init_from="base")
    # with a vanishing learning rate the fine-tuned model is still the base model
    np.testing.assert_allclose(predict(tuned.model(), graphs[:4]), predict(base.model(), graphs[:4]), atol=1e-5)
    assert tuned.init_from == "base"


def test_graph_settings_must_match(dataset) -> None:
    graphs, targets, ids = dataset
    config = ALIGNNConfig(**TINY, graph=GraphSettings(neighbor_strategy="k-nearest"))
    with pytest.raises(ValueError, match="settings"):
        train_model(graphs, targets, ids, config, TrainConfig(epochs=1))


def test_splits() -> None:
    ids = [f"s{i}" for i in range(50)]
    split = split_ids(ids, (0.8, 0.1, 0.1), seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [40, 5, 5]
    assert split == split_ids(ids, (0.8, 0.1, 0.1), seed=3) and split != split_ids(ids, (0.8, 0.1, 0.1), seed=4)
    groups = [f"g{i // 5}" for i in range(50)]
    folds = kfold(ids, k=5, seed=0, groups=groups)
    assert sorted(sum((f["test"] for f in folds), [])) == sorted(ids)
    for fold in folds:
        test_groups = {groups[ids.index(i)] for i in fold["test"]}
        train_groups = {groups[ids.index(i)] for i in fold["train"]}
        assert not test_groups & train_groups


def test_register_and_load_round_trip(dataset) -> None:
    graphs, _, _ = dataset
    db = connect("memory://", settings=Settings(uri="memory://"))
    result = tiny_training(dataset)
    doc = register_model(db, result, "gap-tiny", "band_gap", "OptB88vdW")
    assert doc.weights_key == f"models/{doc.model_id}/weights.pt" and db.artifacts.exists(doc.weights_key)
    assert doc.graph_settings["settings_hash"] == GraphSettings().settings_hash and doc.unit == "eV"
    loaded = load_model(db, doc.model_id)
    np.testing.assert_allclose(loaded.predict(graphs[:5]), predict(result.model(), graphs[:5], normalizer=result.normalizer))
    assert register_model(db, result, "gap-tiny", "band_gap").version == 2

    imported = import_upstream(db, FIXTURES / "alignn_classic_tiny.zip", "classic-tiny", "band_gap", "OptB88vdW")
    assert imported.origin == "imported" and imported.architecture == "alignn" and imported.normalizer is None
    again = load_model(db, imported.model_id)
    assert again.config.graph.neighbor_strategy == "k-nearest"
    row = reference("alignn_classic_tiny")[0]
    graph = build_graph(Structure.from_file(JARVIS / row["file"]), again.config.graph)
    assert abs(float(again.predict([graph])[0]) - float(row["upstream_prediction"])) < 1e-4
    db.close()
