"""The seam between the workflow API users call and the engine that runs workflow code.

`streams.workflow` functions delegate to the current run's `WorkflowRuntime`, which the
engine (processors/) implements; the user API never imports the engine.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from streams.errors import NotInWorkflowError
from streams.options import ActivityCancellationType, ParentClosePolicy
from streams.retry import RetryPolicy
from streams.wire.records import SearchAttribute

if TYPE_CHECKING:
    from streams.activity import ActivityContext

ACTIVITY_CONTEXT: contextvars.ContextVar[ActivityContext] = contextvars.ContextVar(
    "everflow_activity"
)
"""The running activity's context: set by the activity runner, read by `streams.activity`."""


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """What a run knows about itself."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    start_time: datetime
    history_length: int
    continue_as_new_suggested: bool = False
    continued_from_run_id: str | None = None
    # name -> Python value (`streams.search_attributes` says which types); a copy
    search_attributes: dict[str, Any] = field(default_factory=dict)

    def is_continue_as_new_suggested(self) -> bool:
        """True once the history is long enough that the run should continue_as_new()."""
        return self.continue_as_new_suggested


@dataclass(frozen=True, slots=True)
class ActivityOptions:
    """How one activity call is scheduled."""

    activity_type: str
    args: Sequence[Any]
    task_queue: str | None
    start_to_close_timeout: timedelta | None
    schedule_to_close_timeout: timedelta | None
    retry_policy: RetryPolicy | None
    result_type: Any
    schedule_to_start_timeout: timedelta | None = None
    heartbeat_timeout: timedelta | None = None
    cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL
    local_retry_threshold: timedelta | None = None  # set: a local activity


@dataclass(frozen=True, slots=True)
class ChildOptions:
    """How one child workflow is started."""

    workflow_type: str
    args: Sequence[Any]
    workflow_id: str
    task_queue: str | None
    parent_close_policy: ParentClosePolicy
    result_type: Any
    search_attributes: Sequence[SearchAttribute] = ()


class WorkflowRuntime(ABC):
    """What workflow code can ask of the engine running it."""

    @abstractmethod
    def info(self) -> WorkflowInfo: ...

    @abstractmethod
    def now(self) -> datetime: ...

    @abstractmethod
    def random(self) -> random.Random: ...

    @abstractmethod
    def is_replaying(self) -> bool: ...

    @abstractmethod
    def logger(self) -> logging.LoggerAdapter[logging.Logger]: ...

    def trace_ids(self) -> tuple[str, str] | None:
        """(trace ID, span ID) in hex of the run's RunWorkflow span, for log records; None
        when the run is not traced."""
        return None

    @abstractmethod
    def patched(self, patch_id: str) -> bool: ...

    @abstractmethod
    def deprecate_patch(self, patch_id: str) -> None: ...

    @abstractmethod
    def upsert_search_attributes(self, values: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def schedule_activity(self, options: ActivityOptions) -> asyncio.Future[Any]: ...

    @abstractmethod
    def cancel_activity(self, fut: asyncio.Future[Any]) -> None: ...

    @abstractmethod
    def start_child(
        self, options: ChildOptions
    ) -> tuple[asyncio.Future[str], asyncio.Future[Any]]: ...

    @abstractmethod
    def start_timer(self, delay: timedelta) -> asyncio.Future[None]: ...

    @abstractmethod
    async def wait_condition(
        self, predicate: Callable[[], bool], timeout: timedelta | None
    ) -> None: ...


_RUNTIME_ATTR = "_everflow_runtime"


def current() -> WorkflowRuntime:
    """The runtime of the run whose code is executing; NotInWorkflowError elsewhere."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    runtime = getattr(loop, _RUNTIME_ATTR, None)
    if runtime is None:
        raise NotInWorkflowError(
            "this function works only inside workflow code (a @workflow.run method or a "
            "handler), while a worker runs the workflow"
        )
    return runtime


def in_workflow() -> bool:
    try:
        return hasattr(asyncio.get_running_loop(), _RUNTIME_ATTR)
    except RuntimeError:
        return False
