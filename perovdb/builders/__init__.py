"""maggma builders that keep the derived collections (materials, predictions, evaluations) in sync."""

from perovdb.builders.base import BuildPlan, IncrementalBuilder
from perovdb.builders.runner import (
    BUILD_ORDER,
    BuildReport,
    export_builders,
    last_runs,
    make_builder,
    run_builder,
    run_builders,
)

__all__ = [
    "BUILD_ORDER",
    "BuildPlan",
    "BuildReport",
    "IncrementalBuilder",
    "export_builders",
    "last_runs",
    "make_builder",
    "run_builder",
    "run_builders",
]
