"""The runs of one owned partition: a bounded cache of loaded runs over an index of every
run the partition knows, plus the bookkeeping of its snapshot checkpoints. A loaded run is
kept as a `StoredRun`: the core's `Run` and what storage knows of it.

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
from dataclasses import dataclass, field
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


@dataclass(slots=True, eq=False)
class StoredRun:
    """A loaded run and its storage bookkeeping: its events as written, where they are in
    the history partition, and which of them the snapshots hold. Written by `Output` as
    the run's events are produced and delivered, and by a restore."""

    run: Run
    encoded: list[bytes] = field(default_factory=list)  # the run's events, as written
    first_offset: int = -1  # of its first event in the history partition
    history_bytes: int = 0  # of its encoded events
    retention_queued: bool = False  # its close is in the partition's retention queue
    chunk_offsets: list[int] = field(default_factory=list)  # snapshot chunks delivered, in order
    chunks_written: int = 0  # snapshot chunks produced
    pending_events: int = 0  # events not in a snapshot yet
    pending_first_offset: int = -1  # history offset of the first of them (once known)
    pending_since: float = 0.0  # monotonic time of the first of them


Loader = Callable[[int, "Where"], "StoredRun | None"]  # (partition, where) -> run


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
        self._cache: OrderedDict[str, StoredRun] = OrderedDict()
        self.index: dict[str, Where] = {}  # workflow ID -> its latest snapshot
        self.garbage: list[str] = []  # chunk keys to tombstone with the next checkpoint
        self.dirty: dict[tuple[str, str], StoredRun] = {}  # events not yet in a snapshot
        self.closed: deque[tuple[int, str, str]] = deque()  # (close time, workflow, run)
        self.history_end = 0  # history records before this offset are committed
        self.marked = -1  # the watermark of the last checkpoint written
        self.records_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.loads = 0  # misses: runs read back from their snapshots
        self.evictions = 0
        self.hits = 0  # lookups served from memory

    # ---- the mapping the command handlers use (`processors.run.commands.Runs`) ------------
    def get(self, workflow_id: str) -> Run | None:
        stored = self._cache.get(workflow_id)
        if stored is not None:
            self._cache.move_to_end(workflow_id)
            self.hits += 1
            return stored.run
        where = self.index.get(workflow_id)
        if where is None:
            return None
        stored = self._loader(self.partition, where)
        if stored is None or stored.run.workflow_id != workflow_id:
            raise LookupError(
                f"snapshot of workflow {workflow_id!r} at offset {where.offset} of partition "
                f"{self.partition} could not be read back"
            )
        self.loads += 1
        self._cache[workflow_id] = stored
        return stored.run

    def __setitem__(self, workflow_id: str, run: Run) -> None:
        """Makes `run` the workflow's current run (a new run: nothing of it is stored yet)."""
        old = self._cache.get(workflow_id)
        if old is not None and old.run is run:
            self._cache.move_to_end(workflow_id)
            return
        self.put(StoredRun(run))

    def history(self, run: Run) -> tuple[list[bytes], int]:
        stored = self.stored(run)
        return stored.encoded, stored.first_offset

    # ---- the shell's view ------------------------------------------------------------------
    def stored(self, run: Run) -> StoredRun:
        """The storage record of a loaded run that is its workflow's current run."""
        stored = self._cache[run.workflow_id]
        assert stored.run is run, f"run {run.run_id} of {run.workflow_id!r} is not current"
        return stored

    def put(self, stored: StoredRun) -> None:
        """Makes a stored run its workflow's current run (a new or a restored one)."""
        workflow_id, run = stored.run.workflow_id, stored.run
        old = self._cache.get(workflow_id)
        if old is not None and old is not stored:
            self.drop_chunks(workflow_id, old.run.run_id, old.chunks_written)
        elif old is None and workflow_id in self.index:
            where = self.index[workflow_id]
            if where.run_id != run.run_id:
                self.drop_chunks(workflow_id, where.run_id, len(where.chunks))
        self._cache[workflow_id] = stored
        self._cache.move_to_end(workflow_id)

    def get_loaded(self, workflow_id: str) -> StoredRun | None:
        """The run if it is in memory, without loading it or touching its recency."""
        return self._cache.get(workflow_id)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._cache or workflow_id in self.index

    def __bool__(self) -> bool:  # a partition is there even with no runs (never O(n))
        return True

    def __len__(self) -> int:
        return len(self._cache.keys() | self.index.keys())

    def loaded(self) -> Iterator[Run]:
        """The runs in memory now (not the evicted ones)."""
        return iter([stored.run for stored in self._cache.values()])

    @property
    def cached(self) -> int:
        return len(self._cache)

    def forget(self, workflow_id: str) -> None:
        stored = self._cache.pop(workflow_id, None)
        where = self.index.pop(workflow_id, None)
        if stored is not None:
            self.drop_chunks(workflow_id, stored.run.run_id, stored.chunks_written)
        elif where is not None:
            self.drop_chunks(workflow_id, where.run_id, len(where.chunks))

    def drop_chunks(self, workflow_id: str, run_id: str, count: int) -> None:
        self.garbage.extend(chunk_key(workflow_id, run_id, n) for n in range(count))

    # ---- checkpoints and eviction ---------------------------------------------------------
    def mark_dirty(self, stored: StoredRun) -> None:
        self.dirty[(stored.run.workflow_id, stored.run.run_id)] = stored

    def ripe(self, stored: StoredRun, now: float) -> bool:
        """Whether a dirty run's snapshot is written at this checkpoint (or deferred)."""
        return (
            stored.run.closed
            or stored.pending_events >= self.settings.defer_events
            or now - stored.pending_since >= self.settings.defer_seconds
            or (stored.run.blocked is not None)
        )

    def watermark(self, deferred: list[StoredRun]) -> int:
        """History before this offset is in snapshots once the ripe runs are written."""
        firsts = [s.pending_first_offset for s in deferred if s.pending_first_offset >= 0]
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

    def checkpointed(self, deferred: list[StoredRun]) -> None:
        self.dirty = {(s.run.workflow_id, s.run.run_id): s for s in deferred}
        self.records_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()

    def snapshot_written(self, stored: StoredRun, offset: int) -> None:
        """A snapshot's delivery report: the run can now be read back from `offset`."""
        run = stored.run
        self.index[run.workflow_id] = Where(offset, run.run_id, tuple(stored.chunk_offsets))

    def trim(self) -> None:
        """Evicts least recently used clean runs until the cache fits its capacity."""
        excess = len(self._cache) - self.capacity
        if excess <= 0:
            return
        kept: list[tuple[str, StoredRun]] = []
        for workflow_id in list(self._cache):
            if excess <= 0:
                break
            stored = self._cache[workflow_id]
            run, where = stored.run, self.index.get(workflow_id)
            pinned = (
                (workflow_id, run.run_id) in self.dirty
                or (run.blocked is not None and not run.closed)
                or where is None
                or where.run_id != run.run_id
                or len(where.chunks) != stored.chunks_written
            )
            del self._cache[workflow_id]
            if pinned:
                kept.append((workflow_id, stored))
            else:
                excess -= 1
                self.evictions += 1
        for workflow_id, stored in reversed(kept):  # back at the cold end, in their order
            self._cache[workflow_id] = stored
            self._cache.move_to_end(workflow_id, last=False)

    def expired(self, now_ms: int, retention_ms: int) -> list[str]:
        """Workflow IDs whose closed run passed its retention (and was not replaced)."""
        out = []
        while self.closed and self.closed[0][0] + retention_ms <= now_ms:
            _, workflow_id, run_id = self.closed.popleft()
            stored = self._cache.get(workflow_id)
            run = stored.run if stored is not None else None
            where = self.index.get(workflow_id)
            current = run.run_id if run is not None else (where.run_id if where else "")
            if current == run_id and (run is None or run.closed):
                out.append(workflow_id)
        return out
