"""The workflow API: define workflows, call activities, and use the deterministic helpers.

    @workflow.defn
    class Transfer:
        @workflow.run
        async def run(self, order: Order) -> str:
            await workflow.execute_activity(withdraw, order, start_to_close_timeout=timedelta(s=5))
            ...

Workflow code is replayed from history after a crash, so it must be deterministic: use
`workflow.now()`, `workflow.random()`, `workflow.uuid4()` and `workflow.sleep()` instead of
the clock, `random`, `uuid` and `asyncio.sleep` — the latter are caught with a clear error.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import random as _random
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from streams import _runtime
from streams._runtime import ActivityOptions, NotInWorkflowError, WorkflowInfo
from streams.retry import RetryPolicy

__all__ = [
    "ActivityCancellationType",
    "NotInWorkflowError",
    "WorkflowDefinition",
    "WorkflowInfo",
    "defn",
    "execute_activity",
    "info",
    "logger",
    "now",
    "random",
    "run",
    "sleep",
    "uuid4",
    "wait_condition",
]

C = TypeVar("C", bound=type)


class ActivityCancellationType(enum.Enum):
    """What cancelling a workflow's wait on an activity does to the activity."""

    TRY_CANCEL = "try_cancel"
    """ask the activity to stop (delivered on its next heartbeat); stop waiting at once"""
    WAIT_CANCELLATION_COMPLETED = "wait_cancellation_completed"
    """ask it to stop, and wait until it stopped or finished"""
    ABANDON = "abandon"
    """stop waiting; let the activity run on"""


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A workflow class as the engine sees it."""

    name: str
    cls: type
    run_method: str
    arg_types: tuple[Any, ...]

    @staticmethod
    def of(cls_or_method: Any) -> WorkflowDefinition:
        """The definition of a @workflow.defn class (or of its run method)."""
        target = cls_or_method
        if not isinstance(target, type):
            qual = getattr(target, "__qualname__", "")
            owner = inspect.getmodule(target)
            target = getattr(owner, qual.split(".")[0], None) if owner else None
        definition = getattr(target, "__everflow_workflow__", None)
        if not isinstance(definition, WorkflowDefinition):
            raise TypeError(f"{cls_or_method!r} is not a @workflow.defn class or its run method")
        return definition


def defn(cls: C | None = None, *, name: str | None = None) -> Any:
    """Marks a class as a workflow; exactly one method must carry @workflow.run."""

    def wrap(c: C) -> C:
        runs = [n for n, m in vars(c).items() if getattr(m, "__everflow_run__", False)]
        if len(runs) != 1:
            raise TypeError(
                f"workflow {c.__name__} needs exactly one @workflow.run method, found {len(runs)}"
            )
        method = getattr(c, runs[0])
        if not inspect.iscoroutinefunction(method):
            raise TypeError(f"{c.__name__}.{runs[0]} must be `async def`")
        hints = typing.get_type_hints(method)
        params = list(inspect.signature(method).parameters.values())[1:]
        arg_types = tuple(hints.get(p.name) for p in params)
        c.__everflow_workflow__ = WorkflowDefinition(  # type: ignore[attr-defined]
            name or c.__name__, c, runs[0], arg_types
        )
        return c

    return wrap(cls) if cls is not None else wrap


def run(fn: F) -> F:
    """Marks the workflow's entry method (`async def run(self, ...)`)."""
    fn.__everflow_run__ = True  # type: ignore[attr-defined]
    return fn


async def execute_activity(
    activity: Callable[..., Any] | str,
    *args: Any,
    start_to_close_timeout: timedelta | None = None,
    schedule_to_close_timeout: timedelta | None = None,
    retry_policy: RetryPolicy | None = None,
    task_queue: str | None = None,
    result_type: Any = None,
    schedule_to_start_timeout: timedelta | None = None,
    heartbeat_timeout: timedelta | None = None,
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
) -> Any:
    """Schedules an activity and waits for its result.

    The activity runs at least once per attempt, on a worker of `task_queue` (default: the
    workflow's). Failed attempts are retried per `retry_policy` (default: unlimited, with
    exponential backoff from 1 s). When it fails for good, `ActivityError` is raised here with
    the activity's error as its cause (`ActivityTimeoutError` for a timeout). At least one of
    start_to_close_timeout / schedule_to_close_timeout is required. `heartbeat_timeout` fails
    an attempt that stops heartbeating; `schedule_to_start_timeout` one that no runner picks up.
    """
    if start_to_close_timeout is None and schedule_to_close_timeout is None:
        raise ValueError(
            "execute_activity needs start_to_close_timeout or schedule_to_close_timeout"
        )
    activity_type, hint = _activity_name(activity)
    options = ActivityOptions(
        activity_type=activity_type,
        args=args,
        task_queue=task_queue,
        start_to_close_timeout=start_to_close_timeout,
        schedule_to_close_timeout=schedule_to_close_timeout,
        retry_policy=retry_policy,
        result_type=result_type if result_type is not None else hint,
        schedule_to_start_timeout=schedule_to_start_timeout,
        heartbeat_timeout=heartbeat_timeout,
        cancellation_type=cancellation_type.value,
    )
    runtime = _runtime.current()
    fut = runtime.schedule_activity(options)
    if cancellation_type is not ActivityCancellationType.WAIT_CANCELLATION_COMPLETED:
        return await fut
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        runtime.cancel_activity(fut)
        try:
            await fut  # until the activity stopped or finished
        except Exception:  # its outcome no longer matters: the caller was cancelled
            pass
        raise


def _activity_name(activity: Callable[..., Any] | str) -> tuple[str, Any]:
    if isinstance(activity, str):
        return activity, None
    definition = getattr(activity, "__everflow_activity__", None)
    if definition is None:
        raise TypeError(f"{activity!r} is not an @activity.defn function")
    return definition.name, definition.result_type


def now() -> datetime:
    """The current time of the run (UTC, aware): the same on every replay."""
    return _runtime.current().now()


def random() -> _random.Random:
    """A random generator seeded by the run: the same numbers on every replay."""
    return _runtime.current().random()


def uuid4() -> uuid.UUID:
    """A random UUID that is the same on every replay."""
    return uuid.UUID(int=_runtime.current().random().getrandbits(128), version=4)


def info() -> WorkflowInfo:
    """What the run knows about itself (IDs, type, task queue, start time)."""
    return _runtime.current().info()


async def sleep(duration: timedelta | float) -> None:
    """Waits on a durable timer: it survives crashes and restarts of every process."""
    if not isinstance(duration, timedelta):
        duration = timedelta(seconds=duration)
    await _runtime.current().start_timer(duration)


async def wait_condition(
    predicate: Callable[[], bool], *, timeout: timedelta | None = None
) -> None:
    """Waits until `predicate()` is true; raises asyncio.TimeoutError after `timeout`."""
    await _runtime.current().wait_condition(predicate, timeout)


class _WorkflowLogger(logging.LoggerAdapter):
    """Logs with the run's IDs, and stays silent while the run replays history."""

    def isEnabledFor(self, level: int) -> bool:
        if _runtime.in_workflow() and _runtime.current().is_replaying():
            return False
        return self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        if _runtime.in_workflow():
            i = _runtime.current().info()
            msg = f"{msg} workflow_id={i.workflow_id} run_id={i.run_id}"
        return msg, kwargs


logger = _WorkflowLogger(logging.getLogger("everflow.workflow"), {})
