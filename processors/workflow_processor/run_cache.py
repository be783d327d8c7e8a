"""The runs of one owned partition: a bounded cache of loaded runs over an index of every
run the partition knows, plus the bookkeeping of its snapshot checkpoints.

A run is loaded (state folded from its events, code possibly live) while it is in the
cache. Runs with events not yet in a snapshot ("dirty") and blocked runs stay loaded; a
clean run may be evicted, and is read back from its snapshot (by offset) on its next
command or timer. Every `checkpoint`, the processor writes the snapshots of the dirty runs
and the partition's history watermark in one transaction with the batch, so a restore
reads the snapshots and only the history after the watermark.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import NamedTuple

from processors.run.state import Run
from streams.settings import CacheSettings

# key of a partition's checkpoint record on the snapshots topic (no workflow ID is empty)
CHECKPOINT_KEY = ""
# a long run's snapshot keeps its older events in chunks of this many, each written once
CHUNK_EVENTS = 128


def chunk_key(workflow_id: str, run_id: str, n: int) -> str:
    return f"\x01{workflow_id}\x00{run_id}\x00{n}"


def parse_chunk_key(key: str) -> tuple[str, str, int] | None:
    if not key.startswith("\x01"):
        return None
    workflow_id, run_id, n = key[1:].rsplit("\x00", 2)
    return workflow_id, run_id, int(n)


class Where(NamedTuple):
    """Where an evicted run's snapshot is: its head record and its chunks' records."""

    offset: int
    run_id: str
    chunks: tuple[int, ...] = ()


Loader = Callable[[int, "Where"], "Run | None"]  # (partition, where) -> run


class PartitionRuns:
    """Runs of one partition by workflow ID: the loaded ones in LRU order, the rest by the
    offset of their latest snapshot."""

    def __init__(
        self, partition: int, settings: CacheSettings, capacity: int, loader: Loader
    ) -> None:
        self.partition = partition
        self.settings = settings
        self.capacity = max(1, capacity)
        self._loader = loader
        self._cache: OrderedDict[str, Run] = OrderedDict()
        self.index: dict[str, Where] = {}  # workflow ID -> its latest snapshot
        self.garbage: list[str] = []  # chunk keys to tombstone with the next checkpoint
        self.dirty: dict[tuple[str, str], Run] = {}  # events not yet in a snapshot
        self.closed: deque[tuple[int, str, str]] = deque()  # (close time, workflow, run)
        self.history_end = 0  # history records before this offset are committed
        self.marked = -1  # the watermark of the last checkpoint written
        self.records_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.loads = 0
        self.evictions = 0

    # ---- the mapping the request handlers use --------------------------------------------
    def get(self, workflow_id: str) -> Run | None:
        run = self._cache.get(workflow_id)
        if run is not None:
            self._cache.move_to_end(workflow_id)
            return run
        where = self.index.get(workflow_id)
        if where is None:
            return None
        run = self._loader(self.partition, where)
        if run is None or run.workflow_id != workflow_id:
            raise LookupError(
                f"snapshot of workflow {workflow_id!r} at offset {where.offset} of partition "
                f"{self.partition} could not be read back"
            )
        self.loads += 1
        self._cache[workflow_id] = run
        return run

    def get_loaded(self, workflow_id: str) -> Run | None:
        """The run if it is in memory, without loading it or touching its recency."""
        return self._cache.get(workflow_id)

    def __setitem__(self, workflow_id: str, run: Run) -> None:
        old = self._cache.get(workflow_id)
        if old is not None and old is not run:
            self.drop_chunks(old.workflow_id, old.run_id, old.chunks_written)
        elif old is None and workflow_id in self.index:
            where = self.index[workflow_id]
            if where.run_id != run.run_id:
                self.drop_chunks(workflow_id, where.run_id, len(where.chunks))
        self._cache[workflow_id] = run
        self._cache.move_to_end(workflow_id)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._cache or workflow_id in self.index

    def __bool__(self) -> bool:  # a partition is there even with no runs (never O(n))
        return True

    def __len__(self) -> int:
        return len(self._cache.keys() | self.index.keys())

    def loaded(self) -> Iterator[Run]:
        """The runs in memory now (not the evicted ones)."""
        return iter(list(self._cache.values()))

    @property
    def cached(self) -> int:
        return len(self._cache)

    def forget(self, workflow_id: str) -> None:
        run = self._cache.pop(workflow_id, None)
        where = self.index.pop(workflow_id, None)
        if run is not None:
            self.drop_chunks(workflow_id, run.run_id, run.chunks_written)
        elif where is not None:
            self.drop_chunks(workflow_id, where.run_id, len(where.chunks))

    def drop_chunks(self, workflow_id: str, run_id: str, count: int) -> None:
        self.garbage.extend(chunk_key(workflow_id, run_id, n) for n in range(count))

    # ---- checkpoints and eviction ---------------------------------------------------------
    def mark_dirty(self, run: Run) -> None:
        self.dirty[(run.workflow_id, run.run_id)] = run

    def ripe(self, run: Run, now: float) -> bool:
        """Whether a dirty run's snapshot is written at this checkpoint (or deferred)."""
        return (
            run.closed
            or run.pending_events >= self.settings.defer_events
            or now - run.pending_since >= self.settings.defer_seconds
            or (run.blocked is not None)
        )

    def watermark(self, deferred: list[Run]) -> int:
        """History before this offset is in snapshots once the ripe runs are written."""
        firsts = [r.pending_first_offset for r in deferred if r.pending_first_offset >= 0]
        return min([self.history_end, *firsts])

    def checkpoint_due(self, now: float) -> bool:
        """Once per interval (or after many records): is there a snapshot to write, a
        watermark to move, or a closed run whose retention is over?"""
        if self.dirty and self.records_since_checkpoint >= self.settings.checkpoint_records:
            return True
        if now - self.last_checkpoint < self.settings.checkpoint_interval:
            return False
        deferred = [r for r in self.dirty.values() if not self.ripe(r, now)]
        expiry = self.closed[0][0] + self.settings.closed_retention_ms if self.closed else None
        if (
            len(deferred) < len(self.dirty)
            or self.watermark(deferred) > self.marked
            or (expiry is not None and expiry <= time.time() * 1000)
        ):
            return True
        self.last_checkpoint = now  # nothing to write: look again in an interval
        return False

    def checkpointed(self, deferred: list[Run]) -> None:
        self.dirty = {(r.workflow_id, r.run_id): r for r in deferred}
        self.records_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()

    def snapshot_written(self, run: Run, offset: int) -> None:
        """A snapshot's delivery report: the run can now be read back from `offset`."""
        self.index[run.workflow_id] = Where(offset, run.run_id, tuple(run.chunk_offsets))

    def trim(self) -> None:
        """Evicts least recently used clean runs until the cache fits its capacity."""
        excess = len(self._cache) - self.capacity
        if excess <= 0:
            return
        kept: list[tuple[str, Run]] = []
        for workflow_id in list(self._cache):
            if excess <= 0:
                break
            run = self._cache[workflow_id]
            where = self.index.get(workflow_id)
            pinned = (
                (workflow_id, run.run_id) in self.dirty
                or (run.blocked is not None and not run.closed)
                or where is None
                or where.run_id != run.run_id
                or len(where.chunks) != run.chunks_written
            )
            del self._cache[workflow_id]
            if pinned:
                kept.append((workflow_id, run))
            else:
                excess -= 1
                self.evictions += 1
        for workflow_id, run in reversed(kept):  # back at the cold end, in their order
            self._cache[workflow_id] = run
            self._cache.move_to_end(workflow_id, last=False)

    def expired(self, now_ms: int, retention_ms: int) -> list[str]:
        """Workflow IDs whose closed run passed its retention (and was not replaced)."""
        out = []
        while self.closed and self.closed[0][0] + retention_ms <= now_ms:
            _, workflow_id, run_id = self.closed.popleft()
            run = self._cache.get(workflow_id)
            where = self.index.get(workflow_id)
            current = run.run_id if run is not None else (where.run_id if where else "")
            if current == run_id and (run is None or run.closed):
                out.append(workflow_id)
        return out
