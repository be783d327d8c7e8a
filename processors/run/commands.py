"""Requests that reach a run through the commands topic: start (with its ID policies and
signal-with-start), signals, queries and updates. Each answers on `replies` when asked to.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import Message

from processors.run.state import Effects, Run
from processors.workflow_code.handlers import find_handler
from processors.workflow_code.registry import Registry
from streams.errors import (
    NonDeterminismError,
    QueryError,
    UnknownHandlerError,
    UnknownWorkflowError,
)
from streams.failures import to_failure
from streams.options import IdConflictPolicy, IdReusePolicy
from streams.wire.commands import (
    CancelWorkflow,
    Command,
    ControlActivity,
    DescribeWorkflow,
    QueryWorkflow,
    ReportChildClosed,
    ReportChildStarted,
    ReportChildStartFailed,
    ResetWorkflow,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    UnblockWorkflow,
    UpdateWorkflow,
)
from streams.wire.events import (
    ActivityScheduled,
    ChildWorkflowClosed,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    HistoryEvent,
    WorkflowReset,
    WorkflowStarted,
)
from streams.wire.records import (
    NotFound,
    QueryResult,
    Rejected,
    Reply,
    ReplyBody,
    RunStatus,
    StartAccepted,
    StartRejected,
    UpdateResult,
)

_FAILED = (RunStatus.FAILED, RunStatus.CANCELED, RunStatus.TERMINATED, RunStatus.TIMED_OUT)


class Runs(Protocol):
    """A partition's runs by workflow ID (a dict, or the processor's cache)."""

    def get(self, workflow_id: str) -> Run | None: ...

    def __setitem__(self, workflow_id: str, run: Run) -> None: ...


@dataclass(slots=True)
class Batch:
    """What one transaction accumulates."""

    fx: dict[int, Effects] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    dirty: dict[int, dict[tuple[str, str], Run]] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    dead: list[tuple[Message, str]] = field(default_factory=list)

    def effects(self, run: Run) -> Effects:
        # keyed by run: a run that continues as new and its successor are both written
        self.dirty.setdefault(run.partition, {})[(run.workflow_id, run.run_id)] = run
        return self.fx.setdefault(run.partition, Effects())

    def reply(self, to: str | None, request_id: str, body: ReplyBody) -> None:
        if to:
            self.replies.append(Reply(to, request_id, body))


def start_run(
    command: Command,
    body: StartWorkflow,
    runs: Runs,
    partition: int,
    now: int,
    registry: Registry,
    batch: Batch,
) -> None:
    """Starts a run, unless a run of the ID exists and the ID policies say otherwise."""
    run = runs.get(command.workflow_id)
    reply: ReplyBody
    if run is not None and run.start_command_id == command.command_id:
        reply = StartAccepted(run.run_id)  # a retried start: same answer, no second run
    elif run is not None and not run.closed:
        if body.id_conflict_policy == IdConflictPolicy.USE_EXISTING:
            reply = StartAccepted(run.run_id)
            if body.start_signal:
                run.signal(
                    body.start_signal, body.start_signal_args, now, registry, batch.effects(run)
                )
        else:
            reply = StartRejected(
                "already_started",
                f"workflow {command.workflow_id!r} is already running (run {run.run_id})",
                run.run_id,
            )
    elif run is not None and (
        body.id_reuse_policy == IdReusePolicy.REJECT_DUPLICATE
        or (
            body.id_reuse_policy == IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
            and run.status not in _FAILED
        )
    ):
        reply = StartRejected(
            "already_started",
            f"workflow {command.workflow_id!r} already "
            f"ran (run {run.run_id}, {run.status.value}) and its ID reuse "
            f"policy is {body.id_reuse_policy}",
            run.run_id,
        )
    else:
        run = Run(command.workflow_id, body.run_id, partition)
        runs[command.workflow_id] = run
        started = WorkflowStarted(
            body.workflow_type,
            body.task_queue,
            body.args,
            command.command_id,
            body.execution_timeout_ms,
            body.run_timeout_ms,
            parent_workflow_id=body.parent_workflow_id,
            parent_run_id=body.parent_run_id,
            parent_seq=body.parent_seq,
        )
        fx = batch.effects(run)
        # the parent hears "started" before anything else of the child, even a close in
        # this same transaction
        _report_to_parent(command, body, StartAccepted(run.run_id), partition, now, batch)
        run.start(started, now, registry, fx)
        if body.start_signal and not run.closed:
            run.signal(body.start_signal, body.start_signal_args, now, registry, fx)
        reply = StartAccepted(run.run_id)
    batch.reply(body.reply_to, command.command_id, reply)
    if not isinstance(reply, StartAccepted) or run is None or run.run_id != body.run_id:
        _report_to_parent(command, body, reply, partition, now, batch)  # not a new run


def _report_to_parent(
    command: Command, body: StartWorkflow, reply: ReplyBody, partition: int, now: int, batch: Batch
) -> None:
    if body.parent_workflow_id is None or body.parent_run_id is None:
        return
    report: ReportChildStarted | ReportChildStartFailed
    if isinstance(reply, StartAccepted):
        report = ReportChildStarted(body.parent_run_id, body.parent_seq, reply.run_id)
    else:
        assert isinstance(reply, StartRejected)
        report = ReportChildStartFailed(body.parent_run_id, body.parent_seq, reply.message)
    out = batch.fx.setdefault(partition, Effects())
    out.commands.append(
        Command(f"{command.command_id}/reported", body.parent_workflow_id, now, report)
    )


def child_report(
    command: Command,
    body: ReportChildStarted | ReportChildStartFailed | ReportChildClosed,
    run: Run | None,
    now: int,
    registry: Registry,
    batch: Batch,
) -> None:
    """A child reports to its parent run (dropped if that run is gone or moved on)."""
    if run is None or run.run_id != body.parent_run_id:
        return
    attrs: ChildWorkflowStarted | ChildWorkflowStartFailed | ChildWorkflowClosed
    if isinstance(body, ReportChildStarted):
        attrs = ChildWorkflowStarted(body.seq, body.child_run_id)
    elif isinstance(body, ReportChildStartFailed):
        attrs = ChildWorkflowStartFailed(body.seq, body.message)
    else:
        attrs = ChildWorkflowClosed(body.seq, body.status, body.result, body.failure)
    run.child_event(attrs, now, registry, batch.effects(run))


def continue_runs(run: Run, runs: Runs, now: int, registry: Registry, batch: Batch) -> None:
    """Starts the next run of a run that continued as new (and of that one, and so on)."""
    while run.next_run is not None and runs.get(run.workflow_id) is run:
        new_run_id, args = run.next_run
        first = run.events[0].attributes
        assert isinstance(first, WorkflowStarted)
        remaining = None
        if first.execution_timeout_ms is not None:  # the execution spans the whole chain
            remaining = max(1, first.execution_timeout_ms - (now - run.start_time))
        started = WorkflowStarted(
            first.workflow_type,
            first.task_queue,
            args,
            f"{run.run_id}/continued",
            remaining,
            first.run_timeout_ms,
            continued_from_run_id=run.run_id,
            parent_workflow_id=first.parent_workflow_id,
            parent_run_id=first.parent_run_id,
            parent_seq=first.parent_seq,
        )
        nxt = Run(run.workflow_id, new_run_id, run.partition)
        runs[run.workflow_id] = nxt
        nxt.start(started, now, registry, batch.effects(nxt))
        run = nxt


def _not_running(run: Run | None, workflow_id: str, what: str) -> ReplyBody | None:
    if run is None:
        return Rejected("not_found", f"no run of workflow {workflow_id!r} is known")
    if run.closed:
        return Rejected(
            "not_running",
            f"cannot {what} workflow {workflow_id!r}: its run "
            f"{run.run_id} already closed ({run.status.value})",
        )
    return None


def signal_run(
    command: Command,
    body: SignalWorkflow,
    run: Run | None,
    now: int,
    registry: Registry,
    batch: Batch,
) -> None:
    refused = _not_running(run, command.workflow_id, f"signal {body.signal_name!r} to")
    if refused is None and run is not None:
        try:
            find_handler(registry.workflow(run.workflow_type), "signal", body.signal_name)
        except (UnknownHandlerError, UnknownWorkflowError) as e:
            refused = Rejected("unknown_signal", str(e))
        else:
            run.signal(body.signal_name, body.args, now, registry, batch.effects(run))
    batch.reply(body.reply_to, command.command_id, refused or run.describe())  # type: ignore[union-attr]


def query_run(
    command: Command, body: QueryWorkflow, run: Run | None, registry: Registry, batch: Batch
) -> None:
    """Answers a query from the run's current (or final) state; records nothing."""
    reply: ReplyBody
    if run is None or (body.run_id is not None and body.run_id != run.run_id):
        reply = Rejected("not_found", f"no run of workflow {command.workflow_id!r} is known")
    else:
        try:
            reply = QueryResult(run.live_instance(registry).query(body.query_name, body.args))
        except (UnknownHandlerError, UnknownWorkflowError) as e:
            reply = Rejected("unknown_query", str(e))
        except (QueryError, NonDeterminismError) as e:
            reply = Rejected("query_failed", str(e))
        except Exception as e:  # the handler's own error goes back to the caller
            reply = Rejected(
                "query_failed", f"query {body.query_name!r} raised {type(e).__name__}: {e}"
            )
    batch.reply(body.reply_to, command.command_id, reply)


def update_run(
    command: Command,
    body: UpdateWorkflow,
    run: Run | None,
    now: int,
    registry: Registry,
    batch: Batch,
) -> None:
    """Validates an update (rejection leaves no trace in history), then runs it."""
    refused = _not_running(run, command.workflow_id, f"update {body.update_name!r} on")
    if refused is not None or run is None:
        batch.reply(body.reply_to, command.command_id, refused or Rejected("not_found", ""))
        return
    if body.update_id in run.updates:
        return  # already accepted; its outcome will be replied
    try:
        run.live_instance(registry).validate_update(body.update_name, body.args)
    except (UnknownHandlerError, UnknownWorkflowError) as e:
        batch.reply(body.reply_to, command.command_id, Rejected("unknown_update", str(e)))
        return
    except (QueryError, NonDeterminismError) as e:
        batch.reply(body.reply_to, command.command_id, Rejected("update_failed", str(e)))
        return
    except Exception as e:  # the validator said no
        failure = to_failure(e, registry.converter)
        batch.reply(body.reply_to, command.command_id, UpdateResult(body.update_id, None, failure))
        return
    run.accept_update(
        body.update_id,
        body.update_name,
        body.args,
        body.reply_to,
        command.command_id,
        now,
        registry,
        batch.effects(run),
    )


def cancel_run(
    command: Command,
    body: CancelWorkflow | TerminateWorkflow,
    run: Run | None,
    now: int,
    registry: Registry,
    batch: Batch,
) -> None:
    reply: ReplyBody
    if run is None:
        reply = NotFound(f"no run of workflow {command.workflow_id!r} is known")
    elif run.closed:
        verb = "cancel" if isinstance(body, CancelWorkflow) else "terminate"
        reply = Rejected(
            "not_running",
            f"cannot {verb} workflow {run.workflow_id!r}: its "
            f"run {run.run_id} already closed ({run.status.value})",
        )
    else:
        fx = batch.effects(run)
        if isinstance(body, CancelWorkflow):
            run.cancel(body.reason, now, registry, fx)
        else:
            run.terminate(body.reason, now, fx)
        reply = run.describe()
    if body.reply_to:
        batch.replies.append(Reply(body.reply_to, command.command_id, reply))


def describe_run(command: Command, body: DescribeWorkflow, run: Run | None, batch: Batch) -> None:
    reply: ReplyBody
    if run is None or (body.run_id is not None and body.run_id != run.run_id):
        reply = NotFound(f"no run of workflow {command.workflow_id!r} is known")
    else:
        reply = run.describe(run.encoded if body.include_history else None)
    batch.replies.append(Reply(body.reply_to, command.command_id, reply))


def reset_run(
    command: Command,
    body: ResetWorkflow,
    run: Run | None,
    runs: Runs,
    now: int,
    registry: Registry,
    batch: Batch,
) -> None:
    """A new run from the current run's events 1..to_event; the current one, if open, is
    terminated. The reset point must leave no activity, timer or child in flight."""
    reply: ReplyBody
    if run is None:
        reply = NotFound(f"no run of workflow {command.workflow_id!r} is known")
    else:
        reason = _reset_refusal(run, body.to_event)
        if reason is not None:
            reply = Rejected("invalid_argument", reason)
        else:
            reply = _reset(run, body, runs, now, registry, batch)
    batch.reply(body.reply_to, command.command_id, reply)


def _reset_refusal(run: Run, n: int) -> str | None:
    wf = run.workflow_id
    if not 1 <= n <= len(run.events):
        return f"workflow {wf!r} run {run.run_id} has events 1..{len(run.events)}, not {n}"
    probe = Run(wf, run.run_id, run.partition)
    for event in run.events[:n]:
        probe.apply(event)
    if probe.closed:
        return f"event {n} of workflow {wf!r} closes the run; reset to an earlier event"
    busy = (
        [f"activity {i}" for i in sorted(probe.activities)]
        + [f"timer {i}" for i in sorted(probe.timers)]
        + [f"child {i}" for i in sorted(probe.children)]
    )
    if busy:
        return (
            f"at event {n} of workflow {wf!r} {', '.join(busy)} would be in flight; reset to "
            "an event where nothing is (before it was scheduled, or after its outcome)"
        )
    return None


def _reset(
    run: Run, body: ResetWorkflow, runs: Runs, now: int, registry: Registry, batch: Batch
) -> ReplyBody:
    why = f"reset to event {body.to_event}" + (f": {body.reason}" if body.reason else "")
    if not run.closed:
        run.terminate(why, now, batch.effects(run))
    new = Run(run.workflow_id, body.new_run_id, run.partition)
    fx = batch.effects(new)
    for old in run.events[: body.to_event]:
        event = HistoryEvent(new.workflow_id, new.run_id, old.event_id, old.time, old.attributes)
        new.apply(event)
        fx.events.append(event)
    runs[new.workflow_id] = new
    new._append(WorkflowReset(run.run_id, body.to_event, body.reason), now, fx)
    new.resume(registry, now, fx)
    for timer in new.derived_timers():
        fx.derived_timers.append(timer)
    return new.describe()


def repair_run(
    command: Command,
    body: ControlActivity | UnblockWorkflow,
    run: Run | None,
    runs: Runs,
    now: int,
    registry: Registry,
    batch: Batch,
) -> None:
    """An operator's activity retry/pause/unpause, or unblock. Retrying an activity whose
    failure already reached the code (its attempts were exhausted) resets the run to just
    before the activity was scheduled: it runs again, and the code goes on from there."""
    reply: ReplyBody
    if run is None:
        reply = NotFound(f"no run of workflow {command.workflow_id!r} is known")
    elif (
        isinstance(body, ControlActivity)
        and body.action == "retry"
        and (body.activity_id not in run.activities)
    ):
        point = _scheduled_before(run, body.activity_id)
        if point is None:
            reply = Rejected(
                "not_found", f"run {run.run_id} never scheduled activity {body.activity_id}"
            )
        else:
            new_run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"everflow:{command.command_id}"))
            why = body.reason or f"retry of activity {body.activity_id}"
            reset = ResetWorkflow(point, new_run_id, why, body.reply_to)
            reset_run(command, reset, run, runs, now, registry, batch)
            return
    elif isinstance(body, UnblockWorkflow):
        reply = run.unblock(registry, now, batch.effects(run))
    else:
        fx = batch.effects(run)
        reply = run.control_activity(body.activity_id, body.action, body.reason, now, fx)
    batch.reply(body.reply_to, command.command_id, reply)


def _scheduled_before(run: Run, activity_id: int) -> int | None:
    """The event just before the activity was scheduled (a reset point)."""
    for event in run.events:
        a = event.attributes
        if isinstance(a, ActivityScheduled) and a.activity_id == activity_id:
            return event.event_id - 1
    return None
