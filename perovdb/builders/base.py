"""What perovdb's maggma builders share: a plan of what changed, then get_items / process_item / update_targets.

``plan()`` compares sources and targets and lists the keys to (re)build and the targets to remove; it
is what ``--dry-run`` shows. ``get_items()`` yields only the planned items, so maggma's own runners
(``mrun``, serial or multiprocessing) and perovdb's runner do the same incremental work.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from maggma.core import Builder

from perovdb.documents import PerovdbDocument

#: fields that never count as a change of content
BOOKKEEPING = frozenset({"created_at", "last_updated", "inputs_last_updated", "inputs_digest", "job_uuid"})


def keep_timestamps(new: dict[str, Any], old: dict[str, Any] | None, model: type[PerovdbDocument]) -> bool:
    """Carry ``created_at`` (and ``last_updated`` when the content is the same) from ``old`` to ``new``.

    Returns whether the content changed (a new document counts as changed).
    """
    if old is None:
        return True
    old = {k: v for k, v in old.items() if k != "_id"}
    previous, current = model.model_validate(old), model.model_validate(new)
    new["created_at"] = previous.created_at
    # equal JSON-mode dumps mean equal content (without serialising and hashing both; unlike the hashes,
    # 1 and 1.0 compare equal and a NaN, which ingest rejects, compares unequal: the document is rewritten)
    same = previous.model_dump(mode="json", exclude=set(BOOKKEEPING)) == current.model_dump(
        mode="json", exclude=set(BOOKKEEPING)
    )
    if same:
        new["last_updated"] = previous.last_updated
        if old.get("job_uuid") and not new.get("job_uuid"):
            new["job_uuid"] = old["job_uuid"]  # the job that first computed it stays on record
    return not same


@dataclass
class BuildPlan:
    """Keys of the target documents to (re)build, and of those to remove or mark stale."""

    total: int
    build: list[Any] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    #: items to build in ``total``'s unit, when a ``build`` entry holds several (a batch of structures)
    items: int | None = None

    @property
    def planned(self) -> int:
        """Items to build, in the unit of ``total``."""
        return len(self.build) if self.items is None else self.items


class IncrementalBuilder(Builder):
    """A maggma Builder that processes only what changed since its targets were written."""

    name: ClassVar[str]
    version: ClassVar[str]

    def __init__(self, sources: list, targets: list, full: bool = False, **kwargs: Any) -> None:
        self.full = full
        #: documents stamped before this were seen by a completed earlier run (set by perovdb's runner;
        #: None, as under maggma's ``mrun``: compare everything)
        self.since: datetime | None = None
        self.changed = 0  # targets whose content changed (set by update_targets)
        self._plan: BuildPlan | None = None
        super().__init__(sources=sources, targets=targets, **kwargs)

    @abstractmethod
    def plan(self) -> BuildPlan:
        """What a run would do now (reads sources and targets, writes nothing)."""

    @abstractmethod
    def items_for(self, keys: list[Any]) -> Iterator[Any]:
        """The items of the planned keys, one per target document (or group of them)."""

    def get_items(self) -> Iterator[Any]:
        """Plan, then yield the planned items (maggma's entry point)."""
        self._plan = self.plan()
        self.total = len(self._plan.build)
        yield from self.items_for(self._plan.build)

    def remove_targets(self, keys: list[str]) -> int:
        """Remove (or retire) targets whose inputs are gone; return how many. Default: none."""
        return 0

    def finalize(self) -> None:
        """Apply the plan's removals, then let maggma close the stores."""
        if self._plan is not None and self._plan.remove:
            self.removed = self.remove_targets(self._plan.remove)
        super().finalize()
