"""What a workflow processor counts about itself: `Counters`, kept by the processor and its
`Output` and reported in its `WorkerStatus`, and `Timing`, the seconds its transactions
take, logged when it stops."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
