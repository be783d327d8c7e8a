"""What a workflow processor counts about itself: `Counters`, kept by the processor and its
`Output` and reported in its `WorkerStatus`; `Timing`, the seconds its transactions take,
logged when it stops; `ProcessorTally`, the aggregates its metrics endpoint reads."""

from __future__ import annotations

from collections.abc import Mapping, Sized
from dataclasses import asdict, dataclass, field

from processors.tally import (
    BATCH_BUCKETS,
    LATENCY_BUCKETS,
    RUN_BUCKETS,
    Counts,
    Histogram,
    Histograms,
)
from processors.workflow_processor.run_cache import PartitionRuns
from streams.wire.records import ProcessorStats


@dataclass(slots=True)
class Counters:
    """Counters since the processor started (see `ProcessorStats` for what each means)."""

    transactions: int = 0
    commands: int = 0
    events: int = 0
    timers_fired: int = 0
    history_bytes: int = 0
    snapshot_bytes: int = 0
    checkpoints: int = 0
    runs_expired: int = 0

    def report(self, cache_loads: int, cache_evictions: int) -> ProcessorStats:
        """The counters as reported, with the run caches' figures."""
        return ProcessorStats(
            transactions=self.transactions,
            commands=self.commands,
            events=self.events,
            timers_fired=self.timers_fired,
            history_bytes=self.history_bytes,
            snapshot_bytes=self.snapshot_bytes,
            checkpoints=self.checkpoints,
            runs_expired=self.runs_expired,
            cache_loads=cache_loads,
            cache_evictions=cache_evictions,
        )


@dataclass(slots=True)
class Timing:
    """Seconds spent producing transactions, committing them (on the commit thread), and
    waiting for them to settle."""

    produce: float = 0.0
    commit: float = 0.0
    settle: float = 0.0

    def rounded(self) -> dict[str, float]:
        """Each figure to the millisecond, for the log."""
        return {name: round(seconds, 3) for name, seconds in asdict(self).items()}


@dataclass(slots=True)
class BatchTally:
    """What one transaction adds to the processor's metrics, counted as `Output` writes it
    (per started or closed run, never per event) and applied once the transaction
    committed, so an aborted batch run again is counted once."""

    commands: int = 0  # commands and due timers the batch ran
    dead_letters: int = 0
    started: dict[str, int] = field(default_factory=dict)  # workflow type -> runs started
    closed: list[tuple[str, str, float]] = field(default_factory=list)  # (type, status, s)


class ProcessorTally:
    """What the processor's metrics read at scrape time: its aggregates (see
    `processors.tally`), updated on the processor's thread once per batch, restore or close,
    with its counters, its owned partitions' run caches and its timers."""

    def __init__(
        self,
        stats: Counters,
        partitions: Mapping[int, PartitionRuns],
        timers: Sized,
        commands_topic: str,
    ) -> None:
        self.stats = stats
        self.partitions = partitions  # the processor's own dict: owned partitions, live
        self.timers = timers
        self.commands_topic = commands_topic
        self.started: Counts[str] = Counts()
        self.closed: Counts[tuple[str, str]] = Counts()  # (workflow type, status)
        self.endtoend: Histograms[tuple[str, str]] = Histograms(RUN_BUCKETS)
        self.commit_latency = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.transactions: Counts[str] = Counts()  # committed | aborted | unknown | fatal
        # transactional producers replaced, by why: unknown (a commit's outcome) | fatal
        self.producer_recreations: Counts[str] = Counts()
        # calls made again while the cluster could not be reached, by what was waiting:
        # restore (a partition's state read at assignment) | init_transactions
        self.outage_retries: Counts[str] = Counts()
        # consumers of commands made again because a partition stalled (see `reader`)
        self.consumer_renewals = 0
        self.timer_lateness = Histogram(LATENCY_BUCKETS)
        self.restore_seconds = Histogram(LATENCY_BUCKETS)
        self.restore_events = 0
        self.dead_letters = 0
        self.ignored: Counts[str] = Counts()  # records ignored by design, by kind
        self.blocked: dict[str, int] = {}  # workflow type -> blocked open runs (a gauge)
        # run cache figures of partitions no longer owned: the counters stay monotonic
        self.retired_hits = 0
        self.retired_loads = 0
        self.retired_evictions = 0
        self.local_attempts = 0  # local-activity attempts started (the processor counts them)
        self.eager_reports = 0  # eager attempts' reports taken in process (some forwarded)
        # consumer lag of the commands topic per (topic, partition), from librdkafka stats
        self.consumer_lag: dict[tuple[str, int], int] = {}

    def committed(self, batch: BatchTally, commit_seconds: float) -> None:
        self.transactions.add("committed")
        self.commit_latency.observe(commit_seconds)
        self.batch_size.observe(batch.commands)
        self.dead_letters += batch.dead_letters
        for workflow_type, n in batch.started.items():
            self.started.add(workflow_type, n)
        for workflow_type, status, seconds in batch.closed:
            self.closed.add((workflow_type, status))
            self.endtoend.observe((workflow_type, status), seconds)

    def timers_fired(self, now_ms: int, fire_at: list[int]) -> None:
        """How late the timers a batch fired were: now - due, in seconds."""
        for due in fire_at:
            self.timer_lateness.observe(max(0, now_ms - due) / 1000.0)

    def count_blocked(self) -> None:
        """Counts the blocked open runs by workflow type (the gauge): a blocked run stays
        loaded (it is never evicted), so the loaded runs have them all. O(loaded runs):
        the processor calls it once per statistics interval, not per batch."""
        blocked: dict[str, int] = {}
        for state in self.partitions.values():
            for run in state.loaded():
                if run.blocked is not None and not run.closed:
                    blocked[run.workflow_type] = blocked.get(run.workflow_type, 0) + 1
        self.blocked = blocked
