"""A run's children and parent: a parent's close applies its parent-close policy to
running children; a child's close is reported to its parent. Both go out as commands to
the other workflow's partition, in the same transaction."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, assert_never

from streams.options import ParentClosePolicy
from streams.payload import Payload
from streams.tracing import workflow_carrier
from streams.wire.commands import (
    CancelWorkflow,
    Command,
    ReportChildClosed,
    StartWorkflow,
    TerminateWorkflow,
)
from streams.wire.events import (
    ChildWorkflowClosed,
    ChildWorkflowInitiated,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    WorkflowStarted,
)
from streams.wire.records import Failure, RunStatus

if TYPE_CHECKING:
    from processors.run.effects import Effects
    from processors.run.log import RunLog
    from processors.workflow_code.decisions import StartChild

ChildEvent = (
    ChildWorkflowInitiated | ChildWorkflowStarted | ChildWorkflowStartFailed | ChildWorkflowClosed
)
ChildReport = ChildWorkflowStarted | ChildWorkflowStartFailed | ChildWorkflowClosed


class Children:
    """The children a run started that have not closed: seq -> (workflow ID, close policy)."""

    __slots__ = ("_log", "open")

    def __init__(self, log: RunLog) -> None:
        self._log = log
        self.open: dict[int, tuple[str, str]] = {}

    def fold(self, a: ChildEvent) -> None:
        match a:
            case ChildWorkflowInitiated():
                self.open[a.seq] = (a.workflow_id, a.parent_close_policy)
            case ChildWorkflowStarted():
                pass
            case ChildWorkflowStartFailed() | ChildWorkflowClosed():
                self.open.pop(a.seq, None)
            case _:
                assert_never(a)

    def start(self, decision: StartChild, task_queue: str, now: int, fx: Effects) -> None:
        """Records the child and sends its start to the child's partition."""
        log, child = self._log, decision.options
        queue = child.task_queue or task_queue
        initiated = ChildWorkflowInitiated(
            decision.seq,
            child.workflow_id,
            child.workflow_type,
            queue,
            decision.args,
            child.parent_close_policy,
            source=decision.source,
            trace=log.trace,
        )
        event = log.append(initiated, now, fx)
        child_run = uuid.uuid5(uuid.NAMESPACE_URL, f"everflow:{log.run_id}:{decision.seq}")
        start = StartWorkflow(
            str(child_run),
            child.workflow_type,
            queue,
            decision.args,
            parent_workflow_id=log.workflow_id,
            parent_run_id=log.run_id,
            parent_seq=decision.seq,
            search_attributes=list(child.search_attributes),
        )
        command_id = f"{log.run_id}/child/{decision.seq}"
        fx.commands.append(Command(command_id, child.workflow_id, now, start))
        if log.trace:  # the child's run joins the trace, under this StartChildWorkflow span
            trace = workflow_carrier(log.trace, log.run_id, event.event_id)
            fx.command_traces[command_id] = trace

    def report(self, attrs: ChildReport, now: int, fx: Effects) -> bool:
        """A child reported in (started, could not start, closed); False if stale."""
        if self._log.closed or attrs.seq not in self.open:
            return False
        self._log.resolve(attrs, now, fx)
        return True

    def close(self, now: int, fx: Effects) -> None:
        """Applies each open child's parent-close policy (the parent closed)."""
        log = self._log
        for seq, (child_id, policy) in self.open.items():
            body: CancelWorkflow | TerminateWorkflow
            if policy == ParentClosePolicy.TERMINATE:
                body = TerminateWorkflow(f"parent {log.workflow_id!r} closed")
            elif policy == ParentClosePolicy.REQUEST_CANCEL:
                body = CancelWorkflow(f"parent {log.workflow_id!r} closed")
            else:
                continue
            fx.commands.append(Command(f"{log.run_id}/close-child/{seq}", child_id, now, body))


def report_to_parent(
    started: WorkflowStarted,
    run_id: str,
    status: RunStatus,
    result: Payload | None,
    failure: Failure | None,
    now: int,
    fx: Effects,
) -> None:
    """A child run closed: tells its parent (not for a continue-as-new: the chain goes on)."""
    if started.parent_workflow_id is None or status is RunStatus.CONTINUED_AS_NEW:
        return
    assert started.parent_run_id is not None
    report = ReportChildClosed(
        started.parent_run_id, started.parent_seq, run_id, status.value, result, failure
    )
    fx.commands.append(Command(f"{run_id}/closed", started.parent_workflow_id, now, report))
