"""Graph settings: every choice that changes a crystal graph, hashed so cached graphs are keyed by them."""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NeighborStrategy = Literal["k-nearest", "pure-top-k"]


class GraphSettings(BaseModel):
    """How a structure becomes an ALIGNN graph; saved with every model trained on such graphs.

    - ``pure-top-k``: upstream ``alignn.torch_graph_builder.build_pure_torch_graph`` (ALIGNN 2.0): all
      neighbours within ``cutoff``, then the ``max_neighbors`` closest per atom.
    - ``k-nearest``: classic ALIGNN ``nearest_neighbor_edges`` + ``build_undirected_edgedata``: every
      neighbour up to the ``max_neighbors``-th neighbour distance (ties included), symmetrised.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cutoff: float = Field(default=8.0, gt=0, description="Neighbour search radius (Å).")
    max_neighbors: int = Field(default=12, ge=1, description="Neighbours kept per atom.")
    neighbor_strategy: NeighborStrategy = Field(default="pure-top-k", description="Neighbour-list algorithm.")
    use_canonize: bool = Field(default=True, description="k-nearest: canonical (sorted-id) periodic images.")
    three_body_cutoff: float | None = Field(
        default=None, gt=0, description="Only bonds this short (Å) join line-graph triplets; None = all bonds."
    )
    atom_features: str = Field(default="cgcnn", description="jarvis-tools node attribute set.")

    @model_validator(mode="after")
    def _check_three_body(self) -> GraphSettings:
        if self.three_body_cutoff is not None and self.three_body_cutoff > self.cutoff:
            raise ValueError(f"three_body_cutoff ({self.three_body_cutoff}) must be <= cutoff ({self.cutoff})")
        return self

    def canonical_json(self) -> str:
        """Sorted, compact JSON of every setting (what the hash covers)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @cached_property
    def settings_hash(self) -> str:
        """Short sha256 of the canonical JSON: equal hashes mean identical graphs (computed once: frozen)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @classmethod
    def from_upstream_config(cls, config: dict) -> GraphSettings:
        """Graph settings of an upstream ALIGNN ``config.json`` (``neighbor_strategy``, ``cutoff``, …)."""
        strategy = config.get("neighbor_strategy", "k-nearest")
        mapping = {"k-nearest": "k-nearest", "pure_torch": "pure-top-k", "pure-top-k": "pure-top-k"}
        if strategy not in mapping:
            raise ValueError(f"unsupported upstream neighbor_strategy {strategy!r}; supported: {sorted(mapping)}")
        three_body = config.get("three_body_cutoff") if mapping[strategy] == "pure-top-k" else None
        return cls(
            cutoff=float(config.get("cutoff", 8.0)),
            max_neighbors=int(config.get("max_neighbors", 12)),
            neighbor_strategy=mapping[strategy],  # type: ignore[arg-type]
            use_canonize=bool(config.get("use_canonize", True)),
            three_body_cutoff=three_body,
            atom_features=config.get("atom_features", "cgcnn"),
        )
