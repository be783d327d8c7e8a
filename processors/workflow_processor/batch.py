"""What one transaction accumulates: the effects of the runs it touched, replies, the
consumed offsets and dead letters. The core's handlers see it as an `Outbox`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import Message

from processors.run.effects import Effects
from processors.run.state import Run
from processors.workflow_processor.run_cache import PartitionRuns, StoredRun
from streams.wire.records import Reply, ReplyBody


@dataclass(slots=True)
class Batch:
    """What one transaction accumulates (see the module doc)."""

    partitions: Mapping[int, PartitionRuns]
    fx: dict[int, Effects] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    # per partition, the runs touched, keyed by run: a run that continues as new and its
    # successor are both written
    dirty: dict[int, dict[tuple[str, str], StoredRun]] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    dead: list[tuple[Message, str]] = field(default_factory=list)

    def writes(self) -> bool:
        """Whether the batch has anything to write besides its consumed offsets."""
        return bool(self.replies or self.dead or any(fx.writes() for fx in self.fx.values()))

    def effects(self, run: Run) -> Effects:
        p = run.partition
        touched = self.dirty.get(p)
        if touched is None:
            touched = self.dirty[p] = {}
        key = (run.workflow_id, run.run_id)
        if key not in touched:
            # a run is first touched while it is its workflow's current run in the cache
            touched[key] = self.partitions[p].stored(run)
        return self.partition_effects(p)

    def partition_effects(self, partition: int) -> Effects:
        fx = self.fx.get(partition)
        if fx is None:
            fx = self.fx[partition] = Effects()
        return fx

    def reply(self, to: str | None, request_id: str, body: ReplyBody) -> None:
        if to:
            self.replies.append(Reply(to, request_id, body))
