"""Provenance: what every job saw and made, and the lineage walk from any document to its sources and uses."""

from perovdb.provenance.diff import diff_models
from perovdb.provenance.export import render, to_dot, to_json, to_tree
from perovdb.provenance.lineage import Lineage, kind_of, walk
from perovdb.provenance.record import code_versions, record_flow, record_job

__all__ = [
    "Lineage",
    "code_versions",
    "diff_models",
    "kind_of",
    "record_flow",
    "record_job",
    "render",
    "to_dot",
    "to_json",
    "to_tree",
    "walk",
]
