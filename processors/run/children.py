"""A run's children and parent (a `processors.run.state.Run` mixin): a parent's close applies its
parent-close policy to running children; a child's close is reported to its parent. Both go
out as commands to the other workflow's partition, in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from streams.options import ParentClosePolicy
from streams.payload import Payload
from streams.wire.commands import CancelWorkflow, Command, ReportChildClosed, TerminateWorkflow
from streams.wire.events import EventAttributes, HistoryEvent, WorkflowStarted
from streams.wire.records import Failure, RunStatus

if TYPE_CHECKING:
    from processors.run.effects import Effects
    from processors.workflow_code.registry import Registry


class ChildLifecycle:
    """Parent/child bookkeeping for Run."""

    workflow_id: str
    run_id: str
    events: list[HistoryEvent]
    status: RunStatus
    result: Payload | None
    failure: Failure | None
    children: dict[int, tuple[str, str]]
    _registry: Registry | None
    _resolve: Callable[[EventAttributes, int, Effects], None]

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def _close_children(self, now: int, fx: Effects) -> None:
        for seq, (child_id, policy) in self.children.items():
            body: CancelWorkflow | TerminateWorkflow
            if policy == ParentClosePolicy.TERMINATE:
                body = TerminateWorkflow(f"parent {self.workflow_id!r} closed")
            elif policy == ParentClosePolicy.REQUEST_CANCEL:
                body = CancelWorkflow(f"parent {self.workflow_id!r} closed")
            else:
                continue
            fx.commands.append(Command(f"{self.run_id}/close-child/{seq}", child_id, now, body))

    def _notify_parent(self, now: int, fx: Effects) -> None:
        started = self.events[0].attributes
        assert isinstance(started, WorkflowStarted)
        if started.parent_workflow_id is None or self.status is RunStatus.CONTINUED_AS_NEW:
            return
        assert started.parent_run_id is not None
        report = ReportChildClosed(
            started.parent_run_id,
            started.parent_seq,
            self.run_id,
            self.status.value,
            self.result,
            self.failure,
        )
        fx.commands.append(
            Command(f"{self.run_id}/closed", started.parent_workflow_id, now, report)
        )

    def child_event(
        self, attrs: EventAttributes, now: int, registry: Registry, fx: Effects
    ) -> bool:
        """A child reported in (started, could not start, closed); False if stale."""
        seq = getattr(attrs, "seq", None)
        if self.closed or seq not in self.children:
            return False
        self._registry = registry
        self._resolve(attrs, now, fx)
        return True
