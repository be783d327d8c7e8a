"""Commands that reach a run through the `commands` topic, one `on_<command>` handler per
command type: starts (with their ID policies and signal-with-start), signals, queries,
updates, cancel and terminate, describe, an operator's repairs, the reports of activity
runners and of child runs. `handle_command` dispatches a command to its handler. A handler
advances the run and says what to write (`Outbox.effects`), and answers on `replies` when
asked to (`Outbox.reply`).
"""

from __future__ import annotations

import logging
import uuid
from typing import Protocol, assert_never

from processors.run.effects import Effects
from processors.run.limits import signal_limit_message, updates_in_flight_message
from processors.run.repair import control_activity, reset_refusal, scheduled_before
from processors.run.state import Run
from processors.workflow_code.handlers import find_handler
from processors.workflow_code.registry import Registry
from processors.workflow_code.stack import STACK_TRACE_QUERY
from streams.errors import (
    NonDeterminismError,
    QueryError,
    ReadOnlyContextError,
    UnknownHandlerError,
    UnknownWorkflowError,
)
from streams.failures import to_failure
from streams.options import IdConflictPolicy, IdReusePolicy
from streams.wire.commands import (
    CancelWorkflow,
    Command,
    CompleteActivity,
    ControlActivity,
    DescribeWorkflow,
    FailActivity,
    HeartbeatActivity,
    QueryWorkflow,
    ReportChildClosed,
    ReportChildStarted,
    ReportChildStartFailed,
    ResetWorkflow,
    SignalWorkflow,
    StartActivity,
    StartWorkflow,
    TerminateWorkflow,
    UnblockWorkflow,
    UpdateWorkflow,
)
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCanceled,
    ActivityCompleted,
    ActivityFailed,
    ChildWorkflowClosed,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    HistoryEvent,
    WorkflowReset,
    WorkflowStarted,
)
from streams.wire.records import (
    ActivityCancelRequest,
    NotFound,
    QueryResult,
    Rejected,
    RejectionCode,
    ReplyBody,
    RunDescription,
    RunStatus,
    StartAccepted,
    StartRejected,
    UpdateResult,
)

log = logging.getLogger(__name__)

_FAILED = (RunStatus.FAILED, RunStatus.CANCELED, RunStatus.TERMINATED, RunStatus.TIMED_OUT)


class Runs(Protocol):
    """A partition's runs by workflow ID, and what storage knows of them (the shell's run
    cache)."""

    def get(self, workflow_id: str) -> Run | None: ...

    def __setitem__(self, workflow_id: str, run: Run) -> None: ...

    def history(self, run: Run) -> tuple[list[bytes], int]:
        """The run's events as written (encoded), and the history offset of its first
        event (-1 until known)."""
        ...


class Outbox(Protocol):
    """What a transaction writes (the shell's batch)."""

    def effects(self, run: Run) -> Effects:
        """What to write for `run` (marks the run as touched)."""
        ...

    def partition_effects(self, partition: int) -> Effects:
        """What to write from `partition`, for no run of its own."""
        ...

    def reply(self, to: str | None, request_id: str, body: ReplyBody) -> None:
        """Answers a request (nothing if nobody asked for an answer)."""
        ...


def handle_command(
    command: Command,
    runs: Runs,
    partition: int,
    now: int,
    registry: Registry,
    out: Outbox,
    trace: dict[str, str] | None = None,
) -> None:
    """Hands `command` to the handler of its type. `trace` is the trace context its record
    carried: the event a start, signal or update causes keeps it."""
    run = runs.get(command.workflow_id)
    body = command.body
    match body:
        case StartWorkflow():
            on_start_workflow(command, body, runs, partition, now, registry, out, trace)
        case SignalWorkflow():
            on_signal_workflow(command, body, run, runs, now, out, trace)
        case QueryWorkflow():
            on_query_workflow(command, body, run, out)
        case UpdateWorkflow():
            on_update_workflow(command, body, run, runs, now, out, trace)
        case ReportChildStarted():
            on_report_child_started(body, run, now, out)
        case ReportChildStartFailed():
            on_report_child_start_failed(body, run, now, out)
        case ReportChildClosed():
            on_report_child_closed(body, run, now, out)
        case CompleteActivity():
            on_complete_activity(body, run, now, out)
        case FailActivity():
            on_fail_activity(body, run, now, out)
        case StartActivity():
            on_start_activity(body, run, now, out)
        case HeartbeatActivity():
            on_heartbeat_activity(command, body, run, now, out)
        case DescribeWorkflow():
            on_describe_workflow(command, body, run, runs, out)
        case ResetWorkflow():
            on_reset_workflow(command, body, run, runs, now, out)
        case ControlActivity():
            on_control_activity(command, body, run, runs, now, out)
        case UnblockWorkflow():
            on_unblock_workflow(command, body, run, runs, now, out)
        case CancelWorkflow():
            on_cancel_workflow(command, body, run, runs, now, out)
        case TerminateWorkflow():
            on_terminate_workflow(command, body, run, runs, now, out)
        case _:
            assert_never(body)


def not_found(workflow_id: str) -> NotFound:
    """The answer to a request for a workflow this partition knows no run of."""
    return NotFound(f"no run of workflow {workflow_id!r} is known")


def _describe(run: Run, runs: Runs, with_history: bool = False) -> RunDescription:
    encoded, first_offset = runs.history(run)
    return run.describe(encoded if with_history else None, first_offset)


# ---- starting runs ------------------------------------------------------------------------
def on_start_workflow(
    command: Command,
    body: StartWorkflow,
    runs: Runs,
    partition: int,
    now: int,
    registry: Registry,
    out: Outbox,
    trace: dict[str, str] | None = None,
) -> None:
    """Starts a run, unless a run of the ID exists and the ID policies say otherwise."""
    run = runs.get(command.workflow_id)
    reply: ReplyBody
    if run is not None and run.start_command_id == command.command_id:
        reply = StartAccepted(run.run_id)  # a retried start: same answer, no second run
    elif run is not None and not run.closed:
        full = signal_limit_message(
            run.workflow_id, run.run_id, run.signals, run.registry.max_signals
        )
        if body.id_conflict_policy == IdConflictPolicy.USE_EXISTING and body.start_signal and full:
            reply = Rejected(RejectionCode.SIGNAL_LIMIT, full)  # signal-with-start: no room
        elif body.id_conflict_policy == IdConflictPolicy.USE_EXISTING:
            reply = StartAccepted(run.run_id)
            if body.start_signal:
                signal_args = body.start_signal_args
                run.signal(body.start_signal, signal_args, now, out.effects(run), trace)
        else:
            reply = StartRejected(
                RejectionCode.ALREADY_STARTED,
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
            RejectionCode.ALREADY_STARTED,
            f"workflow {command.workflow_id!r} already "
            f"ran (run {run.run_id}, {run.status.value}) and its ID reuse "
            f"policy is {body.id_reuse_policy}",
            run.run_id,
        )
    else:
        run = Run(command.workflow_id, body.run_id, partition, registry)
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
            search_attributes=body.search_attributes,
            trace=trace or {},
        )
        fx = out.effects(run)
        # the parent hears "started" before anything else of the child, even a close in
        # this same transaction
        _report_to_parent(command, body, StartAccepted(run.run_id), partition, now, out)
        run.start(started, now, fx)
        if body.start_signal and not run.closed:
            run.signal(body.start_signal, body.start_signal_args, now, fx, trace)
        reply = StartAccepted(run.run_id)
    out.reply(body.reply_to, command.command_id, reply)
    if not isinstance(reply, StartAccepted) or run is None or run.run_id != body.run_id:
        _report_to_parent(command, body, reply, partition, now, out)  # not a new run


def _report_to_parent(
    command: Command, body: StartWorkflow, reply: ReplyBody, partition: int, now: int, out: Outbox
) -> None:
    if body.parent_workflow_id is None or body.parent_run_id is None:
        return
    report: ReportChildStarted | ReportChildStartFailed
    if isinstance(reply, StartAccepted):
        report = ReportChildStarted(body.parent_run_id, body.parent_seq, reply.run_id)
    else:
        assert isinstance(reply, StartRejected)
        report = ReportChildStartFailed(body.parent_run_id, body.parent_seq, reply.message)
    out.partition_effects(partition).commands.append(
        Command(f"{command.command_id}/reported", body.parent_workflow_id, now, report)
    )


def continue_runs(run: Run, runs: Runs, now: int, out: Outbox) -> None:
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
            # the attributes as the closing run left them, as Temporal carries them
            search_attributes=list(run.search_attributes.values()),
            trace=first.trace,  # the chain stays in the trace of its first start
        )
        nxt = Run(run.workflow_id, new_run_id, run.partition, run.registry)
        runs[run.workflow_id] = nxt
        nxt.start(started, now, out.effects(nxt))
        run = nxt


# ---- messages into a run --------------------------------------------------------------------
def _not_running(run: Run | None, workflow_id: str, what: str) -> ReplyBody | None:
    if run is None:
        return not_found(workflow_id)
    if run.closed:
        return Rejected(
            RejectionCode.NOT_RUNNING,
            f"cannot {what} workflow {workflow_id!r}: its run "
            f"{run.run_id} already closed ({run.status.value})",
        )
    return None


def on_signal_workflow(
    command: Command,
    body: SignalWorkflow,
    run: Run | None,
    runs: Runs,
    now: int,
    out: Outbox,
    trace: dict[str, str] | None = None,
) -> None:
    refused = _not_running(run, command.workflow_id, f"signal {body.signal_name!r} to")
    if refused is not None or run is None:
        out.reply(body.reply_to, command.command_id, refused or not_found(command.workflow_id))
        return
    try:
        find_handler(run.registry.workflow(run.workflow_type), "signal", body.signal_name)
    except (UnknownHandlerError, UnknownWorkflowError) as e:
        out.reply(body.reply_to, command.command_id, Rejected(RejectionCode.UNKNOWN_SIGNAL, str(e)))
        return
    full = signal_limit_message(run.workflow_id, run.run_id, run.signals, run.registry.max_signals)
    if full:
        out.reply(body.reply_to, command.command_id, Rejected(RejectionCode.SIGNAL_LIMIT, full))
        return
    run.signal(body.signal_name, body.args, now, out.effects(run), trace)
    out.reply(body.reply_to, command.command_id, _describe(run, runs))


def on_query_workflow(command: Command, body: QueryWorkflow, run: Run | None, out: Outbox) -> None:
    """Answers a query from the run's current (or final) state; records nothing."""
    reply: ReplyBody
    if run is None or (body.run_id is not None and body.run_id != run.run_id):
        reply = not_found(command.workflow_id)
    elif run.closed and body.query_name == STACK_TRACE_QUERY:  # no code waits: say so
        closed = (
            f"run {run.run_id} of workflow {command.workflow_id!r} is closed "
            f"({run.status.value}): no code is waiting"
        )
        reply = QueryResult(run.registry.converter.to_payload(closed))
    else:
        try:
            reply = QueryResult(run.live_instance().handlers.query(body.query_name, body.args))
        except (UnknownHandlerError, UnknownWorkflowError) as e:
            reply = Rejected(RejectionCode.UNKNOWN_QUERY, str(e))
        except ReadOnlyContextError as e:
            reply = Rejected(RejectionCode.READ_ONLY, str(e))
        except (QueryError, NonDeterminismError) as e:
            reply = Rejected(RejectionCode.QUERY_FAILED, str(e))
        except Exception as e:  # the handler's own error goes back to the caller
            reply = Rejected(
                RejectionCode.QUERY_FAILED,
                f"query {body.query_name!r} raised {type(e).__name__}: {e}",
            )
    out.reply(body.reply_to, command.command_id, reply)


def on_update_workflow(
    command: Command,
    body: UpdateWorkflow,
    run: Run | None,
    runs: Runs,
    now: int,
    out: Outbox,
    trace: dict[str, str] | None = None,
) -> None:
    """Validates an update (rejection leaves no trace in history), then runs it."""
    refused = _not_running(run, command.workflow_id, f"update {body.update_name!r} on")
    if refused is not None or run is None:
        out.reply(body.reply_to, command.command_id, refused or not_found(command.workflow_id))
        return
    if body.update_id in run.updates:
        return  # already accepted; its outcome will be replied
    full = updates_in_flight_message(run.workflow_id, run.run_id, len(run.updates))
    if full:
        out.reply(body.reply_to, command.command_id, Rejected(RejectionCode.UPDATE_LIMIT, full))
        return
    try:
        run.live_instance().handlers.validate_update(body.update_name, body.args)
    except (UnknownHandlerError, UnknownWorkflowError) as e:
        out.reply(body.reply_to, command.command_id, Rejected(RejectionCode.UNKNOWN_UPDATE, str(e)))
        return
    except (QueryError, NonDeterminismError) as e:
        out.reply(body.reply_to, command.command_id, Rejected(RejectionCode.UPDATE_FAILED, str(e)))
        return
    except Exception as e:  # the validator said no
        failure = to_failure(e, run.registry.converter)
        out.reply(body.reply_to, command.command_id, UpdateResult(body.update_id, None, failure))
        return
    run.accept_update(
        body.update_id,
        body.update_name,
        body.args,
        body.reply_to,
        command.command_id,
        now,
        out.effects(run),
        trace,
    )


# ---- reports of child runs (dropped if the parent run is gone or moved on) ------------------
def _parent(run: Run | None, parent_run_id: str) -> Run | None:
    return run if run is not None and run.run_id == parent_run_id else None


def on_report_child_started(
    body: ReportChildStarted, run: Run | None, now: int, out: Outbox
) -> None:
    parent = _parent(run, body.parent_run_id)
    if parent is not None:
        attrs = ChildWorkflowStarted(body.seq, body.child_run_id)
        parent.child_reported(attrs, now, out.effects(parent))


def on_report_child_start_failed(
    body: ReportChildStartFailed, run: Run | None, now: int, out: Outbox
) -> None:
    parent = _parent(run, body.parent_run_id)
    if parent is not None:
        attrs = ChildWorkflowStartFailed(body.seq, body.message)
        parent.child_reported(attrs, now, out.effects(parent))


def on_report_child_closed(body: ReportChildClosed, run: Run | None, now: int, out: Outbox) -> None:
    parent = _parent(run, body.parent_run_id)
    if parent is not None:
        attrs = ChildWorkflowClosed(body.seq, body.status, body.result, body.failure)
        parent.child_reported(attrs, now, out.effects(parent))


# ---- reports of activity runners (dropped if their run is gone or moved on) -----------------
def on_complete_activity(body: CompleteActivity, run: Run | None, now: int, out: Outbox) -> None:
    if run is not None and run.run_id == body.run_id:
        fx = out.effects(run)
        if run.complete_activity(body.activity_id, body.attempt, body.result, now, fx):
            return
    report_ignored("result", body, run)


def on_fail_activity(body: FailActivity, run: Run | None, now: int, out: Outbox) -> None:
    if run is not None and run.run_id == body.run_id:
        fx = out.effects(run)
        if run.fail_activity(body.activity_id, body.attempt, body.failure, now, fx):
            return
    report_ignored("failure", body, run)


def report_ignored(what: str, body: CompleteActivity | FailActivity, run: Run | None) -> str:
    """Says why an activity report changes nothing, and logs it: for no known run, another
    run, a closed run, or an attempt never made at INFO; a repeat of an attempt already
    recorded (a retried send, the `commands` copy of an eager report) only at DEBUG, as
    it is routine. Returns the reason."""
    attempt = f"attempt {body.attempt} of activity {body.activity_id} of run {body.run_id}"
    level = logging.INFO
    if run is None:
        why = "no run of its workflow is known here"
    elif run.run_id != body.run_id:
        why = f"its workflow's current run is {run.run_id}"
    elif _outcome_recorded(run, body.activity_id, body.attempt):
        why = "that attempt's outcome is recorded already (a repeat)"
        level = logging.DEBUG
    elif run.closed:
        why = f"the run already closed ({run.status.value})"
    else:
        state = run.activities.open.get(body.activity_id)
        if state is not None and body.attempt > state.attempt:
            why = f"the run never made that attempt (the activity is at attempt {state.attempt})"
        else:
            why = "that attempt is no longer awaited (recorded already, or timed out)"
            level = logging.DEBUG
    reason = f"ignoring the {what} of {attempt}: {why}"
    log.log(level, "%s", reason)
    return reason


_OUTCOMES = (ActivityCompleted, ActivityAttemptFailed, ActivityFailed, ActivityCanceled)


def _outcome_recorded(run: Run, activity_id: int, attempt: int) -> bool:
    """Whether the run's history holds an outcome of that attempt (only asked for a report
    that changed nothing, so the scan is off the common path)."""
    return any(
        isinstance(e.attributes, _OUTCOMES)
        and e.attributes.activity_id == activity_id
        and e.attributes.attempt == attempt
        for e in reversed(run.events)
    )


def on_start_activity(body: StartActivity, run: Run | None, now: int, out: Outbox) -> None:
    if run is not None and run.run_id == body.run_id:
        run.start_activity(body.activity_id, body.attempt, now, out.effects(run))


def on_heartbeat_activity(
    command: Command, body: HeartbeatActivity, run: Run | None, now: int, out: Outbox
) -> None:
    """Records a heartbeat; tells the runner to stop the attempt if nothing waits for it."""
    stop = True  # an attempt of a run nobody knows: nothing waits for it
    if run is not None and run.run_id == body.run_id:
        fx = out.effects(run)
        stop = run.heartbeat_activity(body.activity_id, body.attempt, body.details, now, fx)
    if stop:
        request = ActivityCancelRequest(
            command.workflow_id, body.run_id, body.activity_id, body.attempt
        )
        out.reply(body.reply_to, command.command_id, request)


# ---- cancel, terminate, describe --------------------------------------------------------------
def on_cancel_workflow(
    command: Command, body: CancelWorkflow, run: Run | None, runs: Runs, now: int, out: Outbox
) -> None:
    """Asks the run's code to stop (it may clean up first)."""
    reply = _not_running(run, command.workflow_id, "cancel")
    if reply is None:
        assert run is not None  # _not_running answers for a missing run
        run.cancel(body.reason, now, out.effects(run))
        reply = _describe(run, runs)
    out.reply(body.reply_to, command.command_id, reply)


def on_terminate_workflow(
    command: Command, body: TerminateWorkflow, run: Run | None, runs: Runs, now: int, out: Outbox
) -> None:
    """Ends the run at once; none of its code runs."""
    reply = _not_running(run, command.workflow_id, "terminate")
    if reply is None:
        assert run is not None  # _not_running answers for a missing run
        run.terminate(body.reason, now, out.effects(run))
        reply = _describe(run, runs)
    out.reply(body.reply_to, command.command_id, reply)


def on_describe_workflow(
    command: Command, body: DescribeWorkflow, run: Run | None, runs: Runs, out: Outbox
) -> None:
    reply: ReplyBody
    if run is None or (body.run_id is not None and body.run_id != run.run_id):
        reply = not_found(command.workflow_id)
    else:
        reply = _describe(run, runs, body.include_history)
    out.reply(body.reply_to, command.command_id, reply)


# ---- an operator's repairs ------------------------------------------------------------------
def on_reset_workflow(
    command: Command, body: ResetWorkflow, run: Run | None, runs: Runs, now: int, out: Outbox
) -> None:
    """A new run from the current run's events 1..to_event; the current one, if open, is
    terminated. The reset point must leave no activity, timer or child in flight."""
    reply: ReplyBody
    if run is None:
        reply = not_found(command.workflow_id)
    else:
        reason = reset_refusal(run, body.to_event)
        if reason is not None:
            reply = Rejected(RejectionCode.INVALID_ARGUMENT, reason)
        else:
            reply = _describe(_reset(run, body, runs, now, out), runs)
    out.reply(body.reply_to, command.command_id, reply)


def _reset(run: Run, body: ResetWorkflow, runs: Runs, now: int, out: Outbox) -> Run:
    why = f"reset to event {body.to_event}" + (f": {body.reason}" if body.reason else "")
    if not run.closed:
        run.terminate(why, now, out.effects(run))
    new = Run(run.workflow_id, body.new_run_id, run.partition, run.registry)
    runs[new.workflow_id] = new
    fx = out.effects(new)
    for old in run.events[: body.to_event]:
        event = HistoryEvent(new.workflow_id, new.run_id, old.event_id, old.time, old.attributes)
        new.apply(event)
        fx.events.append(event)
    new.append(WorkflowReset(run.run_id, body.to_event, body.reason), now, fx)
    new.resume(now, fx)
    fx.derived_timers.extend(new.derived_timers())
    return new


def on_control_activity(
    command: Command, body: ControlActivity, run: Run | None, runs: Runs, now: int, out: Outbox
) -> None:
    """An operator's activity retry/pause/unpause. Retrying an activity whose failure
    already reached the code (its attempts were exhausted) resets the run to just before
    the activity was scheduled: it runs again, and the code goes on from there."""
    reply: ReplyBody
    if run is None:
        reply = not_found(command.workflow_id)
    elif body.action == "retry" and body.activity_id not in run.activities.open:
        point = scheduled_before(run, body.activity_id)
        if point is None:
            reply = Rejected(
                RejectionCode.NOT_FOUND,
                f"run {run.run_id} never scheduled activity {body.activity_id}",
            )
        else:
            new_run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"everflow:{command.command_id}"))
            why = body.reason or f"retry of activity {body.activity_id}"
            reset = ResetWorkflow(point, new_run_id, why, body.reply_to)
            on_reset_workflow(command, reset, run, runs, now, out)
            return
    else:
        fx = out.effects(run)
        refused = control_activity(run, body.activity_id, body.action, body.reason, now, fx)
        reply = refused or _describe(run, runs)
    out.reply(body.reply_to, command.command_id, reply)


def on_unblock_workflow(
    command: Command, body: UnblockWorkflow, run: Run | None, runs: Runs, now: int, out: Outbox
) -> None:
    """Replays a blocked run with the code deployed now, and resumes it if it fits."""
    reply: ReplyBody
    if run is None:
        reply = not_found(command.workflow_id)
    elif run.blocked is None or run.closed:
        reply = Rejected(RejectionCode.NOT_BLOCKED, f"workflow {run.workflow_id!r} is not blocked")
    elif not run.try_unblock(now, out.effects(run)):
        reply = Rejected(
            RejectionCode.STILL_BLOCKED,
            f"workflow {run.workflow_id!r} still does not replay with the code deployed "
            f"now: {run.blocked.message if run.blocked else ''}",
        )
    else:
        reply = _describe(run, runs)
    out.reply(body.reply_to, command.command_id, reply)
