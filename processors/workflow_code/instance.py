"""A live workflow run: user code on a deterministic loop, driven by history events.

The instance turns each event that resolves something the code waits on (start, activity
result, timer fired) into the code's next decisions (schedule an activity, start a timer,
complete, fail). First execution and replay go through the same path: replay is just the
recorded events fed again, and `processors.run.state` checks the decisions match the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import sys
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, assert_never

from processors.workflow_code.deadlock import WATCHDOG, Interrupted, Watch
from processors.workflow_code.decisions import (
    CancelRun,
    CancelTimer,
    CompleteRun,
    ContinueAsNewRun,
    Decision,
    FailRun,
    RequestCancelActivity,
    ScheduleActivity,
    StartChild,
    StartTimer,
    Step,
    UpsertSearchAttributes,
)
from processors.workflow_code.determinism import (
    DeterminismGuard,
    UnguardedConverter,
    is_user_frame,
)
from processors.workflow_code.handlers import MessageHandlers
from processors.workflow_code.loop import WorkflowEventLoop
from processors.workflow_code.patches import Patches
from streams._runtime import ActivityOptions, ChildOptions, WorkflowInfo, WorkflowRuntime
from streams.errors import (
    ActivityCanceledError,
    ActivityError,
    ChildWorkflowError,
    DeadlockError,
    FailureError,
    PayloadStoreError,
    PayloadTooLargeError,
    PendingLimitError,
    ReadOnlyContextError,
    TimerDurationError,
)
from streams.failures import from_failure, to_failure
from streams.options import ActivityCancellationType
from streams.payload import DEFAULT_MAX_PAYLOAD_BYTES, DataConverter, Payload, check_size
from streams.search_attributes import decode as decode_search_attributes
from streams.search_attributes import encode as encode_search_attributes
from streams.settings import DEFAULT_MAX_PENDING
from streams.tracing import trace_ids
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCanceled,
    ActivityCancelRequested,
    ActivityCompleted,
    ActivityFailed,
    ActivityHeartbeatRecorded,
    ActivityPaused,
    ActivityReset,
    ActivityRetried,
    ActivityScheduled,
    ActivityStarted,
    ActivityUnpaused,
    ChildWorkflowClosed,
    ChildWorkflowInitiated,
    ChildWorkflowStarted,
    ChildWorkflowStartFailed,
    EventAttributes,
    HistoryEvent,
    MarkerRecorded,
    SearchAttributesUpserted,
    SignalReceived,
    TimerCanceled,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
    WorkflowBlocked,
    WorkflowCanceled,
    WorkflowCancelRequested,
    WorkflowCompleted,
    WorkflowContinuedAsNew,
    WorkflowFailed,
    WorkflowReset,
    WorkflowStarted,
    WorkflowTerminated,
    WorkflowTimedOut,
    WorkflowUnblocked,
)
from streams.wire.records import Failure, SearchAttribute, SearchAttributeType, SourceLocation
from streams.workflow import ContinueAsNewError, WorkflowDefinition

log = logging.getLogger(__name__)

# the longest timer the code may start: beyond it a duration is a bug (a unit mix-up), and
# far beyond it the fire time would overflow the timer record's int64 milliseconds
MAX_TIMER = timedelta(days=36_525)


class WorkflowInstance(WorkflowRuntime):
    """One run's code and everything it waits on.

    `handlers` delivers the run's signals and updates and answers its queries; `patches`
    answers `workflow.patched()`. Both record their decisions through the instance.
    """

    def __init__(
        self,
        definition: WorkflowDefinition,
        workflow_id: str,
        run_id: str,
        started: WorkflowStarted,
        start_time_ms: int,
        converter: DataConverter,
        guard: bool = True,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        recorded_patches: Collection[str] = (),
        deadlock_timeout: float = 0.0,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.definition = definition
        # converting payloads is engine work: outside the determinism guard (a no-op when
        # it is off) and off the deadlock deadline (a payload store's I/O may take a while)
        self.converter = UnguardedConverter(converter, WATCHDOG.paused)
        self.max_payload_bytes = max_payload_bytes
        self.deadlock_timeout = deadlock_timeout  # seconds; 0: the detector is off
        self.max_pending = max_pending  # open activities, and apart open children
        self._info = WorkflowInfo(
            workflow_id=workflow_id,
            run_id=run_id,
            workflow_type=started.workflow_type,
            task_queue=started.task_queue,
            start_time=_dt(start_time_ms),
            history_length=1,
            continued_from_run_id=started.continued_from_run_id,
        )
        self._started = started
        self._time_ms = start_time_ms
        self._random: random.Random | None = None
        self._activities: dict[int, tuple[asyncio.Future[Any], ActivityOptions]] = {}
        self._timers: dict[int, asyncio.Future[None]] = {}
        self._conditions: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._next_activity = 1
        self._next_timer = 1
        self._canceled_timers: set[int] = set()
        self._children: dict[
            int, tuple[asyncio.Future[str], asyncio.Future[Any], ChildOptions]
        ] = {}
        self._next_child = 1
        # the run's custom search attributes as its code has set them, and the type each
        # name took in this run (kept after a removal: a name keeps its type)
        self._search_attributes: dict[str, SearchAttribute] = {}
        self._search_types: dict[str, SearchAttributeType] = {}
        self._search_values: dict[str, Any] | None = None  # decoded, until the next upsert
        self._set_search_attributes(started.search_attributes)
        self.history_length = 1
        self.suggest_continue_as_new_after = 10_000
        self._given_up: set[int] = set()
        self._decisions: list[Decision] = []
        self._replaying = False
        self.patches = Patches(recorded_patches, self._record, lambda: _call_site()[0])
        self._guard = DeterminismGuard() if guard else None
        self._logger = logging.LoggerAdapter(logging.getLogger("everflow.workflow"), {})
        self.loop = WorkflowEventLoop(self, self)  # type: ignore[abstract]
        self.handlers = MessageHandlers(
            definition, self.converter, self.loop, self._record, self._call_read_only
        )
        self._main: asyncio.Task[Any] | None = None
        self._store_error: PayloadStoreError | None = None
        self.closed = False

    # ---- driving --------------------------------------------------------------------------
    def activate(self, event: HistoryEvent, replaying: bool = False) -> Step:
        """Delivers one resolving event to the code and runs it until it waits again. Code
        that runs `deadlock_timeout` seconds without yielding is interrupted: the step is
        blocked with a DeadlockError (what the code decided is dropped)."""
        watch = WATCHDOG.begin(self.deadlock_timeout)
        if watch is None:
            return self._activate(event, replaying)
        step: Step | None = None
        try:
            step = self._activate(event, replaying)
        except Interrupted:
            pass
        finally:
            while True:  # inline: an interrupt that came as the code ended may land at a call
                try:
                    interrupted = WATCHDOG.end(watch)
                    break
                except Interrupted:
                    continue
        if interrupted or step is None:
            return Step(blocked=self._deadlock(watch))
        return step

    def _deadlock(self, watch: Watch) -> Failure:
        message = (
            f"workflow {self._info.workflow_id!r} run {self._info.run_id} did not yield "
            f"within {watch.timeout:g} s: potential deadlock at {watch.location or '?'}; "
            "workflow code must wait with await (workflow.sleep(), an activity for slow "
            "work), never block the thread"
        )
        return to_failure(DeadlockError(message), self.converter, kind="workflow")

    def _activate(self, event: HistoryEvent, replaying: bool) -> Step:
        self._time_ms = event.time
        self.history_length = event.event_id
        self._replaying = self.handlers.replaying = replaying
        self._decisions = []
        attrs = event.attributes
        step = Step()
        try:
            with self._guarded() as guard:
                self._deliver_on_loop(attrs)
                self._run_until_idle()
            if guard is not None and guard.violation is not None:
                raise guard.violation
        except FailureError as e:  # a (sync) signal handler failing on purpose fails the run
            step.decisions = [*self._decisions, FailRun(to_failure(e, self.converter))]
            self.closed = True
            return step
        except Exception as e:  # the code's bug or misuse: the run blocks, the engine goes on
            step.blocked = to_failure(e, self.converter, kind="workflow")
            return step
        step.decisions = self._decisions
        handlers = self.handlers
        if handlers.failure is not None and not self.closed:
            error, handlers.failure = handlers.failure, None
            if isinstance(error, FailureError):  # a handler failing on purpose fails the run
                step.decisions.append(FailRun(to_failure(error, self.converter)))
                self.closed = True
            else:
                step.blocked = to_failure(error, self.converter, kind="workflow")
                return step
        blocked = self._main_outcome_blocked()
        if blocked is not None:
            step.blocked = blocked
        return step

    def _deliver_on_loop(self, attrs: EventAttributes) -> None:
        # a plain (sync) signal handler runs here, not in a task: it too may call the
        # workflow API (`workflow.upsert_search_attributes`, `workflow.now()`), which
        # finds the run through the running loop
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self.loop)
        try:
            self._deliver(attrs)
        finally:
            asyncio.events._set_running_loop(previous)

    def _deliver(self, attrs: EventAttributes) -> None:
        match attrs:
            case WorkflowStarted():
                self._start_main()
            case ActivityCompleted():
                self._resolve_activity(attrs.activity_id, attrs.result, None)
            case ActivityFailed():
                self._resolve_activity(attrs.activity_id, None, attrs.failure)
            case TimerFired():
                self._fire_timer(attrs.timer_id)
            case ActivityCanceled():
                self._resolve_activity(attrs.activity_id, None, None, canceled=True)
            case SignalReceived():
                self.handlers.deliver_signal(attrs.signal_name, attrs.args)
            case UpdateAccepted():
                self.handlers.accept_update(attrs.update_id, attrs.update_name, attrs.args)
            case ChildWorkflowStarted():
                self._child_started(attrs.seq, attrs.run_id)
            case ChildWorkflowStartFailed():
                failure = Failure(attrs.message, "ChildWorkflowError", "workflow")
                self._child_closed(attrs.seq, None, failure, "START_FAILED")
            case ChildWorkflowClosed():
                self._child_closed(attrs.seq, attrs.result, attrs.failure, attrs.status)
            case WorkflowCancelRequested():
                if self._main is not None and not self._main.done():
                    self._main.cancel(attrs.reason or "cancel requested")
            case (
                ActivityScheduled()
                | ActivityAttemptFailed()
                | ActivityRetried()
                | ActivityStarted()
                | ActivityHeartbeatRecorded()
                | ActivityCancelRequested()
                | ActivityPaused()
                | ActivityUnpaused()
                | ActivityReset()
                | TimerStarted()
                | TimerCanceled()
                | WorkflowCompleted()
                | WorkflowFailed()
                | WorkflowCanceled()
                | WorkflowTerminated()
                | WorkflowTimedOut()
                | WorkflowContinuedAsNew()
                | WorkflowBlocked()
                | WorkflowUnblocked()
                | WorkflowReset()
                | UpdateCompleted()
                | ChildWorkflowInitiated()
                | MarkerRecorded()
                | SearchAttributesUpserted()
            ):
                raise TypeError(f"{type(attrs).__name__} does not resolve anything")
            case _:
                assert_never(attrs)

    def _guarded(self) -> Any:
        if self._guard is None:
            return contextlib.nullcontext(None)
        return self._guard

    def _record(self, decision: Decision) -> None:
        self._decisions.append(decision)

    def _call_read_only(self, what: str, call: Callable[[], Any]) -> Any:
        """Calls a query or validator against the current state, recording nothing."""
        mark = (len(self._decisions), self._next_activity, self._next_timer, self._next_child)
        patches = self.patches.mark()
        attributes = (dict(self._search_attributes), dict(self._search_types))
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self.loop)
        watch = WATCHDOG.begin(self.deadlock_timeout)
        self.loop.begin_read_only()
        error: BaseException | None = None
        try:
            with self._guarded():
                result = call()
        except Interrupted:
            pass  # told by the watch below
        except BaseException as e:
            error = e
        finally:
            interrupted = False
            while watch is not None:  # inline, as in activate()
                try:
                    interrupted = WATCHDOG.end(watch)
                    break
                except Interrupted:
                    continue
        asyncio.events._set_running_loop(previous)
        scheduled = self.loop.end_read_only()
        issued = len(self._decisions) != mark[0] or scheduled
        if interrupted or error is not None or issued:
            self._roll_back(mark, patches, attributes)
        if interrupted:
            assert watch is not None
            raise DeadlockError(
                f"{what} of workflow {self._info.workflow_id!r} did not return within "
                f"{watch.timeout:g} s: potential deadlock at {watch.location}; it may "
                "only read state"
            )
        if error is not None:
            raise error
        if issued:
            raise ReadOnlyContextError(
                f"{what} tried to schedule work; it may only read state (what it issued, "
                "an activity, a timer, a child or a signal, was discarded): do the work in "
                "a signal or update handler"
            )
        return result

    def _roll_back(
        self,
        mark: tuple[int, int, int, int],
        patches: int,
        attributes: tuple[dict[str, SearchAttribute], dict[str, SearchAttributeType]],
    ) -> None:
        """Drops what a read-only call issued and hands back the IDs and patch answers it
        took, so the code's next activity, timer, child and patch get what a replay of the
        history will give them (and the search attributes an upsert it made changed)."""
        before, self._next_activity, self._next_timer, self._next_child = mark
        del self._decisions[before:]
        self.patches.rollback(patches)
        self._search_attributes, self._search_types = attributes
        self._search_values = None

    def _run_until_idle(self) -> None:
        while True:
            self.loop.run_until_idle()
            if not self._check_conditions():
                return

    def _check_conditions(self) -> bool:
        woke = False
        for predicate, fut in list(self._conditions):
            if fut.done():
                self._conditions.remove((predicate, fut))
            elif predicate():
                fut.set_result(None)
                self._conditions.remove((predicate, fut))
                woke = True
        return woke

    def _start_main(self) -> None:
        args = self.converter.from_payloads(self._started.args, self.definition.arg_types)
        obj = self.definition.cls()
        self.handlers.bind(obj)
        method = getattr(obj, self.definition.run_method)
        self._main = self.loop.create_task(method(*args), name="workflow-main")
        self._main.add_done_callback(self._on_main_done)

    def _on_main_done(self, task: asyncio.Task[Any]) -> None:
        self.closed = True
        if task.cancelled():
            self._decisions.append(CancelRun())
            return
        error = task.exception()
        try:
            if isinstance(error, ContinueAsNewError):
                args = self.converter.to_payloads(list(error.run_args))
                self._decisions.append(ContinueAsNewRun(args))
                return
            if error is None:
                result = self.converter.to_payload(task.result())
                check_size([result], self.max_payload_bytes, "the workflow's result")
                self._decisions.append(CompleteRun(result))
        except PayloadTooLargeError as e:
            self._decisions.append(FailRun(to_failure(e, self.converter)))
            return
        except PayloadStoreError as e:
            # the payload store cannot keep the result now: the run waits, blocked, and a
            # replay once the store answers closes it (an error raised in a done callback
            # would only reach the loop's exception handler)
            self.closed = False
            self._store_error = e
            return
        if isinstance(error, FailureError):
            self._decisions.append(FailRun(to_failure(error, self.converter)))

    def _main_outcome_blocked(self) -> Failure | None:
        if self._store_error is not None:
            return to_failure(self._store_error, self.converter, kind="workflow")
        main = self._main
        if main is None or not main.done() or main.cancelled():
            return None
        error = main.exception()
        if error is None or isinstance(error, FailureError | ContinueAsNewError):
            return None
        return to_failure(error, self.converter, kind="workflow")

    def _resolve_activity(
        self,
        activity_id: int,
        result: Payload | None,
        failure: Failure | None,
        canceled: bool = False,
    ) -> None:
        entry = self._activities.pop(activity_id, None)
        if entry is None:
            if activity_id in self._given_up:
                return  # the code stopped waiting for it (canceled, abandoned)
            raise KeyError(
                f"history resolves activity {activity_id}, which the code never scheduled"
            )
        fut, options = entry
        if fut.done():
            return
        if canceled:
            fut.set_exception(
                ActivityError(
                    f"activity {options.activity_type!r} (id {activity_id}) was canceled",
                    activity_type=options.activity_type,
                    activity_id=activity_id,
                    attempt=0,
                    cause=ActivityCanceledError("canceled on request"),
                )
            )
        elif failure is None:
            assert result is not None
            fut.set_result(self.converter.from_payload(result, options.result_type))
        else:
            cause = from_failure(failure, self.converter)
            fut.set_exception(
                ActivityError(
                    f"activity {options.activity_type!r} (id {activity_id}) failed: "
                    f"{failure.message}",
                    activity_type=options.activity_type,
                    activity_id=activity_id,
                    attempt=0,
                    cause=cause,
                )
            )

    def _fire_timer(self, timer_id: int) -> None:
        fut = self._timers.pop(timer_id, None)
        if fut is None and timer_id in self._canceled_timers:
            return
        if fut is None:
            raise KeyError(f"history fires timer {timer_id}, which the code never started")
        if not fut.done():
            fut.set_result(None)

    # ---- WorkflowRuntime ------------------------------------------------------------------
    def info(self) -> WorkflowInfo:
        return dataclasses.replace(
            self._info,
            history_length=self.history_length,
            continue_as_new_suggested=self.history_length >= self.suggest_continue_as_new_after,
            search_attributes=dict(self._decoded_search_attributes()),
        )

    def _decoded_search_attributes(self) -> dict[str, Any]:
        if self._search_values is None:  # info() is called often (each workflow log line)
            self._search_values = decode_search_attributes(self._search_attributes)
        return self._search_values

    def now(self) -> datetime:
        return _dt(self._time_ms)

    def loop_time(self) -> float:
        return self._time_ms / 1000.0

    def random(self) -> random.Random:
        if self._random is None:  # seeded on first use: seeding hashes the run ID
            self._random = random.Random(self._info.run_id)
        return self._random

    def is_replaying(self) -> bool:
        return self._replaying

    def patched(self, patch_id: str) -> bool:
        return self.patches.patched(patch_id, self._replaying)

    def deprecate_patch(self, patch_id: str) -> None:
        self.patches.deprecate_patch(patch_id, self._replaying)

    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._logger

    def upsert_search_attributes(self, values: Mapping[str, Any]) -> None:
        attributes = encode_search_attributes(values, self._search_types)
        if not attributes:
            return
        self._set_search_attributes(attributes)
        self._decisions.append(UpsertSearchAttributes(attributes, _call_site()[0]))

    def _set_search_attributes(self, attributes: list[SearchAttribute]) -> None:
        self._search_values = None
        for attribute in attributes:
            self._search_types[attribute.name] = attribute.type
            if attribute.value == "null":
                self._search_attributes.pop(attribute.name, None)
            else:
                self._search_attributes[attribute.name] = attribute

    def trace_ids(self) -> tuple[str, str] | None:
        return trace_ids(self._started.trace, self._info.run_id) if self._started.trace else None

    def schedule_activity(self, options: ActivityOptions) -> asyncio.Future[Any]:
        self._check_pending(len(self._activities), "activities", options.activity_type)
        activity_id = self._next_activity
        self._next_activity += 1
        fut: asyncio.Future[Any] = self.loop.create_future()
        self._activities[activity_id] = (fut, options)
        fut.add_done_callback(lambda f: self._on_activity_done(activity_id, f))
        args = self.converter.to_payloads(list(options.args))
        check_size(
            args, self.max_payload_bytes, f"the arguments of activity {options.activity_type!r}"
        )
        self._decisions.append(ScheduleActivity(activity_id, options, args, *_call_site()))
        return fut

    def start_timer(self, delay: timedelta) -> asyncio.Future[None]:
        if not timedelta(0) <= delay <= MAX_TIMER:
            why = "is negative" if delay < timedelta(0) else "is longer than 100 years"
            raise TimerDurationError(
                f"workflow {self._info.workflow_id!r} asked for a timer of {delay} at "
                f"{_call_site()[0]}, which {why}; a timer's duration must be 0 to 100 years"
            )
        timer_id = self._next_timer
        self._next_timer += 1
        fut: asyncio.Future[None] = self.loop.create_future()
        self._timers[timer_id] = fut
        self._decisions.append(StartTimer(timer_id, delay, *_call_site()))
        fut.add_done_callback(lambda f: self._on_timer_done(timer_id, f))
        return fut

    def _check_pending(self, pending: int, what: str, name: str) -> None:
        if pending >= self.max_pending:
            where = _call_site()[0]  # '?' in a task of its own: the caller is gone
            at = f" at {where}" if where != "?" else ""
            raise PendingLimitError(
                f"workflow {self._info.workflow_id!r} has {pending} {what} open, the maximum "
                f"(EVERFLOW_MAX_PENDING), and asked for one more ({name!r}){at}; wait for "
                "some to finish before starting more"
            )

    def start_child(self, options: ChildOptions) -> tuple[asyncio.Future[str], asyncio.Future[Any]]:
        self._check_pending(len(self._children), "child workflows", options.workflow_id)
        seq = self._next_child
        self._next_child += 1
        started: asyncio.Future[str] = self.loop.create_future()
        result: asyncio.Future[Any] = self.loop.create_future()
        self._children[seq] = (started, result, options)
        args = self.converter.to_payloads(list(options.args))
        check_size(
            args, self.max_payload_bytes, f"the arguments of child workflow {options.workflow_id!r}"
        )
        self._decisions.append(StartChild(seq, options, args, *_call_site()))
        return started, result

    def _child_started(self, seq: int, run_id: str) -> None:
        started, _, _ = self._children[seq]
        if not started.done():
            started.set_result(run_id)

    def _child_closed(
        self, seq: int, result: Payload | None, failure: Failure | None, status: str
    ) -> None:
        started, done, options = self._children.pop(seq)
        if status == "COMPLETED":
            if not done.done():
                done.set_result(
                    self.converter.from_payload(result, options.result_type)
                    if result is not None
                    else None
                )
            return
        cause = from_failure(failure, self.converter) if failure is not None else None
        error = ChildWorkflowError(
            f"child workflow {options.workflow_id!r} "
            + ("could not start" if status == "START_FAILED" else f"closed {status.lower()}")
            + (f": {failure.message}" if failure is not None else ""),
            status.lower(),
        )
        error.__cause__ = cause
        if not started.done():
            started.set_exception(error)
        if not done.done():
            done.set_exception(error)
            if status == "START_FAILED":
                done.exception()  # nobody will await it: mark its error as seen

    def _on_timer_done(self, timer_id: int, fut: asyncio.Future[None]) -> None:
        # canceled by the code (wait_for finished first, the run was canceled...)
        if fut.cancelled() and self._timers.pop(timer_id, None) is not None:
            self._canceled_timers.add(timer_id)
            self._decisions.append(CancelTimer(timer_id))

    def _on_activity_done(self, activity_id: int, fut: asyncio.Future[Any]) -> None:
        if not fut.cancelled() or activity_id not in self._activities:
            return
        _, options = self._activities.pop(activity_id)
        self._given_up.add(activity_id)
        if options.cancellation_type != ActivityCancellationType.ABANDON:
            self._decisions.append(RequestCancelActivity(activity_id))

    def cancel_activity(self, fut: asyncio.Future[Any]) -> None:
        for activity_id, (candidate, options) in self._activities.items():
            if candidate is fut:
                if options.cancellation_type != ActivityCancellationType.ABANDON:
                    self._decisions.append(RequestCancelActivity(activity_id))
                return

    async def wait_condition(
        self, predicate: Callable[[], bool], timeout: timedelta | None
    ) -> None:
        if predicate():
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._conditions.append((predicate, fut))
        if timeout is None:
            await fut
        else:
            await asyncio.wait_for(fut, timeout.total_seconds())


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def _call_site() -> tuple[str, SourceLocation | None]:
    """Where the workflow code that made the current decision is: `file:line` (for error
    messages) and the location recorded on the event. The first frame outside Everflow and
    the standard library (`asyncio.sleep` is the line that awaited it), found by walking
    the frames (a few pointer hops; no `inspect`, which reads source files)."""
    frame = sys._getframe(1)
    while frame is not None and not is_user_frame(frame):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "?", None
    code = frame.f_code
    line = frame.f_lineno or 0
    return f"{code.co_filename}:{line}", SourceLocation(code.co_filename, line, code.co_name)
