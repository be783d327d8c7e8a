"""Activities called from workflow code: `workflow.execute_activity`, `start_activity`,
their local variants and temporalio's `*_method` names, and `arguments` (one call's
positional arguments, or temporalio's `args=[...]`). Re-exported by `streams.workflow`,
where users call them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from streams import _runtime
from streams._runtime import ActivityOptions
from streams.options import ActivityCancellationType, option
from streams.retry import RetryPolicy


def arguments(positional: Sequence[Any], args: Sequence[Any] | None, call: str) -> tuple[Any, ...]:
    """The arguments of a call given either positionally or as `args=[...]` (Temporal's
    spelling); TypeError naming `call` when both are given."""
    if args is None:
        return tuple(positional)
    if positional:
        raise TypeError(
            f"{call} got arguments both positionally and as args=[...]; pass them one way"
        )
    if isinstance(args, str | bytes):  # args="alice" would be five arguments of one letter
        raise TypeError(f"{call}: args= takes a list of arguments, got {type(args).__name__}")
    return tuple(args)


async def execute_activity(
    activity: Callable[..., Any] | str,
    *arg: Any,
    args: Sequence[Any] | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    task_queue: str | None = None,
    result_type: Any = None,
    schedule_to_start_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    cancellation_type: ActivityCancellationType | str = ActivityCancellationType.TRY_CANCEL,
) -> Any:
    """Schedules an activity and waits for its result.

    Arguments go positionally or as `args=[...]`. The activity runs at least once per
    attempt, on a worker of `task_queue` (default: the workflow's). Failed attempts are
    retried per `retry_policy` (default: unlimited, with exponential backoff from 1 s). When
    it fails for good, `ActivityError` is raised here with the activity's error as its cause
    (`ActivityTimeoutError` for a timeout). At least one of start_to_close_timeout /
    schedule_to_close_timeout is required. `heartbeat_timeout` fails an attempt that stops
    heartbeating; `schedule_to_start_timeout` one that no runner picks up.
    `cancellation_type` is an ActivityCancellationType or its string (ValueError for
    another). `result_type` shapes the result (default: the activity's return annotation).
    """
    options = _activity_options(
        "execute_activity",
        activity,
        arguments(arg, args, "execute_activity"),
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        retry_policy=retry_policy,
        task_queue=task_queue,
        result_type=result_type,
        schedule_to_start_timeout=schedule_to_start_timeout,
        heartbeat_timeout=heartbeat_timeout,
        cancellation_type=cancellation_type,
    )
    runtime = _runtime.current()
    return await _activity_outcome(runtime, runtime.schedule_activity(options), options)


def start_activity(
    activity: Callable[..., Any] | str,
    *arg: Any,
    args: Sequence[Any] | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    task_queue: str | None = None,
    result_type: Any = None,
    schedule_to_start_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    cancellation_type: ActivityCancellationType | str = ActivityCancellationType.TRY_CANCEL,
) -> asyncio.Task[Any]:
    """Schedules an activity now and returns without waiting: an asyncio.Task whose result
    is the activity's (await it; `cancel()` cancels the activity per `cancellation_type`).

    The same options and guarantees as `execute_activity`. The activity is scheduled in
    the order of the calls, so starting several and gathering them is deterministic.
    """
    options = _activity_options(
        "start_activity",
        activity,
        arguments(arg, args, "start_activity"),
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        retry_policy=retry_policy,
        task_queue=task_queue,
        result_type=result_type,
        schedule_to_start_timeout=schedule_to_start_timeout,
        heartbeat_timeout=heartbeat_timeout,
        cancellation_type=cancellation_type,
    )
    return _start(options)


def _start(options: ActivityOptions) -> asyncio.Task[Any]:
    # scheduled here, in the caller's step, not when the task first runs: the activity's ID
    # and its place in the history follow the order of the calls
    runtime = _runtime.current()
    fut = runtime.schedule_activity(options)
    return asyncio.get_running_loop().create_task(_activity_outcome(runtime, fut, options))


def _activity_options(
    call: str,
    activity: Callable[..., Any] | str,
    args: tuple[Any, ...],
    *,
    start_to_close_timeout: timedelta | None,
    schedule_to_close_timeout: timedelta | None,
    retry_policy: RetryPolicy | None,
    task_queue: str | None,
    result_type: Any,
    cancellation_type: ActivityCancellationType | str,
    schedule_to_start_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    local_retry_threshold: timedelta | None = None,
) -> ActivityOptions:
    if start_to_close_timeout is None and schedule_to_close_timeout is None:
        raise ValueError(f"{call} needs start_to_close_timeout or schedule_to_close_timeout")
    if local_retry_threshold is not None and local_retry_threshold < timedelta(0):
        raise ValueError("local_retry_threshold must not be negative")
    cancellation = option(ActivityCancellationType, cancellation_type, "cancellation_type")
    activity_type, hint = _activity_name(activity)
    return ActivityOptions(
        activity_type=activity_type,
        args=args,
        task_queue=task_queue,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        retry_policy=retry_policy,
        result_type=result_type if result_type is not None else hint,
        schedule_to_start_timeout=schedule_to_start_timeout,
        heartbeat_timeout=heartbeat_timeout,
        cancellation_type=cancellation,
        local_retry_threshold=local_retry_threshold,
    )


async def _activity_outcome(
    runtime: _runtime.WorkflowRuntime, fut: asyncio.Future[Any], options: ActivityOptions
) -> Any:
    if options.cancellation_type is not ActivityCancellationType.WAIT_CANCELLATION_COMPLETED:
        return await fut
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        runtime.cancel_activity(fut)
        try:
            await fut  # until the activity stopped or finished
        except Exception:  # its outcome no longer matters: the caller was canceled
            pass
        raise


# temporalio's names for calls of activities defined as methods (`@activity.defn` on a
# method of a class whose bound instance methods the worker registers): the same calls here
execute_activity_method = execute_activity
start_activity_method = start_activity

LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)


async def execute_local_activity(
    activity: Callable[..., Any] | str,
    *arg: Any,
    args: Sequence[Any] | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    local_retry_threshold: timedelta = LOCAL_RETRY_THRESHOLD,
    result_type: Any = None,
    cancellation_type: ActivityCancellationType | str = ActivityCancellationType.TRY_CANCEL,
) -> Any:
    """Runs a short activity in the worker that hosts the run, and waits for its result.

    For steps of milliseconds (a ledger write, a lookup) where a task on a topic and a
    runner's report cost more than the step: the attempt runs on a thread of the hosting
    worker (off its processor thread) as soon as the code asks for it, and its outcome is
    recorded together with what the code does next — in the same transaction when it comes
    within the worker's `local_activity_wait` (5 ms by default; a run whose steps are all
    local and quick commits from start to close in one transaction), else in the run's
    next one. No task record, no runner, no report through the `commands` topic. The
    function must be registered on the worker that runs the workflow
    (`Worker(activities=...)`); the history records it with the events of a regular
    activity (ActivityScheduled, flagged local, then ActivityCompleted or ActivityFailed),
    so replay, audit, export and the UI show it like one. An attempt may start before the
    transaction that schedules it commits: if that transaction aborts, the attempt runs
    again for the restored run.

    Semantics follow `execute_activity`: at least once per attempt — an attempt whose
    outcome was not recorded when the worker died runs again on the worker that restores
    the run, with the same `activity.info().idempotency_key` (stable across attempts and
    crashes). Failed attempts are retried per `retry_policy` (default: unlimited, with
    exponential backoff from 1 s): a backoff of at most `local_retry_threshold` (default
    1 s) waits in the worker, a longer one on a durable timer. At least one of
    start_to_close_timeout / schedule_to_close_timeout is required; an attempt that
    overruns start_to_close is failed (and retried) although its thread cannot be stopped.
    Arguments go positionally or as `args=[...]`. Local activities do not heartbeat and
    have no task queue.
    """
    options = _local_activity_options(
        "execute_local_activity",
        activity,
        arguments(arg, args, "execute_local_activity"),
        start_to_close_timeout,
        schedule_to_close_timeout,
        retry_policy,
        local_retry_threshold,
        result_type,
        cancellation_type,
    )
    runtime = _runtime.current()
    return await _activity_outcome(runtime, runtime.schedule_activity(options), options)


def start_local_activity(
    activity: Callable[..., Any] | str,
    *arg: Any,
    args: Sequence[Any] | None = None,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    local_retry_threshold: timedelta = LOCAL_RETRY_THRESHOLD,
    result_type: Any = None,
    cancellation_type: ActivityCancellationType | str = ActivityCancellationType.TRY_CANCEL,
) -> asyncio.Task[Any]:
    """Starts a local activity now and returns without waiting: an asyncio.Task whose
    result is the activity's. The same options and guarantees as `execute_local_activity`."""
    options = _local_activity_options(
        "start_local_activity",
        activity,
        arguments(arg, args, "start_local_activity"),
        start_to_close_timeout,
        schedule_to_close_timeout,
        retry_policy,
        local_retry_threshold,
        result_type,
        cancellation_type,
    )
    return _start(options)


execute_local_activity_method = execute_local_activity
start_local_activity_method = start_local_activity


def _local_activity_options(
    call: str,
    activity: Callable[..., Any] | str,
    args: tuple[Any, ...],
    start_to_close_timeout: timedelta | None,
    schedule_to_close_timeout: timedelta | None,
    retry_policy: RetryPolicy | None,
    local_retry_threshold: timedelta,
    result_type: Any,
    cancellation_type: ActivityCancellationType | str,
) -> ActivityOptions:
    return _activity_options(
        call,
        activity,
        args,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        retry_policy=retry_policy,
        task_queue=None,  # a local activity runs where its run is hosted
        result_type=result_type,
        cancellation_type=cancellation_type,
        local_retry_threshold=local_retry_threshold,
    )


def _activity_name(activity: Callable[..., Any] | str) -> tuple[str, Any]:
    if isinstance(activity, str):
        return activity, None
    definition = getattr(activity, "__everflow_activity__", None)
    if definition is None:
        raise TypeError(f"{activity!r} is not an @activity.defn function")
    return definition.name, definition.result_type
