"""What one transaction must write for the runs it touched: the pure core's output."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.wire.commands import Command
from streams.wire.events import HistoryEvent
from streams.wire.records import ActivityTask, Completion, Reply, Timer


@dataclass(slots=True)
class Effects:
    """Everything one transaction must write for the runs it touched."""

    events: list[HistoryEvent] = field(default_factory=list)
    tasks: list[tuple[str, ActivityTask]] = field(default_factory=list)
    # attempts of local activities: handed to the hosting worker's executor by the
    # processor (never written to a topic)
    local_tasks: list[ActivityTask] = field(default_factory=list)
    timer_ops: list[tuple[str, Timer | None]] = field(default_factory=list)
    derived_timers: list[Timer] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)  # to other workflows' partitions
    # the trace context the record headers carry, of a task by (run ID, activity ID,
    # attempt), of a command (a child's start) by command ID; none for what is not traced
    task_traces: dict[tuple[str, int, int], dict[str, str]] = field(default_factory=dict)
    command_traces: dict[str, dict[str, str]] = field(default_factory=dict)

    def writes(self) -> bool:
        """Whether there is anything to write or hand on (trace maps alone are not)."""
        return bool(
            self.events
            or self.tasks
            or self.local_tasks
            or self.timer_ops
            or self.derived_timers
            or self.completions
            or self.replies
            or self.commands
        )

    @property
    def timers(self) -> list[Timer]:
        """Timers set, in order."""
        return [t for _, t in self.timer_ops if t is not None]

    @property
    def cleared_timers(self) -> list[str]:
        """Keys of timers tombstoned, in order."""
        return [k for k, t in self.timer_ops if t is None]
