"""The activity API: define activities and learn, inside one, which attempt this is.

Activities do the real-world side effects. They run at least once per attempt; pass
`activity.info().idempotency_key` to external APIs to make their effects exactly once.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from streams import _runtime
from streams.errors import NotInActivityError

__all__ = [
    "ActivityDefinition",
    "ActivityInfo",
    "NotInActivityError",
    "defn",
    "heartbeat",
    "info",
    "is_canceled",
    "is_cancelled",
    "logger",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class ActivityDefinition:
    """An activity function as the engine sees it."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    arg_types: tuple[Any, ...]
    result_type: Any

    @staticmethod
    def of(fn: Callable[..., Any]) -> ActivityDefinition:
        """The definition of an @activity.defn function, or of such a method bound to an
        instance (`BankingActivities(client).withdraw`: the worker calls it bound)."""
        definition = getattr(fn, "__everflow_activity__", None)
        if not isinstance(definition, ActivityDefinition):
            raise TypeError(f"{fn!r} is not an @activity.defn function")
        if inspect.ismethod(fn) and definition.fn is fn.__func__:
            # defined on the class: its first parameter (self) is bound, not sent
            return dataclasses.replace(definition, fn=fn, arg_types=definition.arg_types[1:])
        return definition


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    """Which activity, attempt and run this is."""

    workflow_id: str
    run_id: str
    workflow_type: str
    activity_id: int
    activity_type: str
    attempt: int
    task_queue: str
    idempotency_key: str
    heartbeat_timeout: timedelta | None = None
    heartbeat_details: tuple[Any, ...] = ()
    """what the previous attempt last passed to heartbeat(), to resume from"""

    @property
    def workflow_run_id(self) -> str:
        """`run_id` under temporalio's name for it."""
        return self.run_id


class ActivityContext(Protocol):
    """What the runner gives a running activity (the engine implements it)."""

    info: ActivityInfo

    def heartbeat(self, details: tuple[Any, ...]) -> None: ...

    def is_canceled(self) -> bool: ...


def defn(fn: F | None = None, *, name: str | None = None) -> Any:
    """Marks a function (async, or plain: run in a thread pool) as an activity."""

    def wrap(f: F) -> F:
        hints = typing.get_type_hints(f)
        params = list(inspect.signature(f).parameters.values())
        f.__everflow_activity__ = ActivityDefinition(  # type: ignore[attr-defined]
            name or f.__name__,
            f,
            inspect.iscoroutinefunction(f),
            tuple(hints.get(p.name) for p in params),
            hints.get("return"),
        )
        return f

    return wrap(fn) if fn is not None else wrap


def _context(what: str) -> ActivityContext:
    try:
        return _runtime.ACTIVITY_CONTEXT.get()
    except LookupError:
        raise NotInActivityError(
            f"activity.{what}() works only inside a running activity (the activity function "
            "a worker is running)"
        ) from None


def info() -> ActivityInfo:
    """The running activity's info; NotInActivityError outside an activity."""
    return _context("info").info


def heartbeat(*details: Any) -> None:
    """Reports progress: keeps a heartbeat timeout from firing, and leaves `details` for the
    next attempt (`info().heartbeat_details`) should this one fail.

    Heartbeats are throttled (sent at most every 80% of the heartbeat timeout, 30 s at most);
    the latest details always win. They also deliver cancellation: once the workflow asked
    this activity to stop, heartbeat() raises asyncio.CancelledError (an async activity is
    also canceled where it awaits).
    """
    _context("heartbeat").heartbeat(details)


def is_canceled() -> bool:
    """Whether the workflow asked this activity to stop (learned through heartbeats)."""
    return _context("is_canceled").is_canceled()


def is_cancelled() -> bool:
    """`is_canceled()` under temporalio's spelling, for code ported from it."""
    return _context("is_cancelled").is_canceled()


class _ActivityLogger(logging.LoggerAdapter):
    """Logs with the running activity's IDs and attempt (temporalio's `activity.logger`)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        try:
            i = _runtime.ACTIVITY_CONTEXT.get().info
        except LookupError:  # outside an activity: a plain logger
            return msg, kwargs
        return (
            f"{msg} activity_type={i.activity_type} activity_id={i.activity_id} "
            f"attempt={i.attempt} workflow_id={i.workflow_id} run_id={i.run_id}",
            kwargs,
        )


logger = _ActivityLogger(logging.getLogger("everflow.activity"), {})
