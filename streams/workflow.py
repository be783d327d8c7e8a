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

Visibility:

- `workflow.upsert_search_attributes({"Customer": "c-42", "Amount": 12.5})` sets (None
  removes) custom search attributes of the run, recorded in its history as a
  SearchAttributesUpserted event, so the run index can filter on them; their types follow
  from the values (str keyword, `workflow.Text` text, bool, int, float double, aware
  datetime, list of str keyword list). `workflow.info().search_attributes` reads them.
- The events of the activities, timers and children the code starts record where it was
  (`source`: file, line, function of the calling workflow code).
- `await handle.query("__stack_trace")` (no handler needed) returns where each of the run's
  tasks waits right now: `file:line in function` and the source line, one frame a line,
  tasks separated by a blank line. It reads the run and records nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random as _random
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from streams import _runtime
from streams._runtime import ChildOptions, WorkflowInfo
from streams.errors import NotInWorkflowError, TimerDurationError
from streams.options import ActivityCancellationType, ParentClosePolicy, option
from streams.search_attributes import Text
from streams.search_attributes import encode as _encode_search_attributes
from streams.workflow_activities import (  # workflow.execute_activity and the like
    arguments,
    execute_activity,
    execute_activity_method,
    execute_local_activity,
    execute_local_activity_method,
    start_activity,
    start_activity_method,
    start_local_activity,
    start_local_activity_method,
)

__all__ = [
    "ActivityCancellationType",
    "ChildWorkflowHandle",
    "ContinueAsNewError",
    "Handler",
    "NotInWorkflowError",
    "ParentClosePolicy",
    "Text",
    "WorkflowDefinition",
    "WorkflowInfo",
    "continue_as_new",
    "defn",
    "execute_activity",
    "execute_activity_method",
    "execute_child_workflow",
    "execute_local_activity",
    "execute_local_activity_method",
    "info",
    "logger",
    "now",
    "query",
    "random",
    "run",
    "signal",
    "sleep",
    "start_activity",
    "start_activity_method",
    "start_child_workflow",
    "start_local_activity",
    "start_local_activity_method",
    "unsafe",
    "update",
    "upsert_search_attributes",
    "uuid4",
    "wait_condition",
]

C = TypeVar("C", bound=type)


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A workflow class as the engine sees it."""

    name: str
    cls: type
    run_method: str
    arg_types: tuple[Any, ...]
    signals: dict[str, Handler] = field(default_factory=dict)
    queries: dict[str, Handler] = field(default_factory=dict)
    updates: dict[str, Handler] = field(default_factory=dict)
    result_type: Any = None  # the run method's return annotation: how clients decode results

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

    @staticmethod
    def type_and_result(workflow: Any, result_type: Any = None) -> tuple[str, Any]:
        """The workflow type `workflow` names (a type name, a @workflow.defn class or its
        run method) and how to shape its result: `result_type` if given, else the run
        method's return annotation (none for a bare name)."""
        if isinstance(workflow, str):
            return workflow, result_type
        definition = WorkflowDefinition.of(workflow)
        return definition.name, result_type if result_type is not None else definition.result_type


@dataclass(frozen=True, slots=True)
class Handler:
    """A signal, query or update method of a workflow class."""

    name: str
    method: str
    arg_types: tuple[Any, ...]
    is_async: bool
    validator: str | None = None


def _handlers(c: type, marker: str) -> dict[str, Handler]:
    found: dict[str, Handler] = {}
    for attr, member in vars(c).items():
        name = getattr(member, marker, None)
        if name is None:
            continue
        hints = typing.get_type_hints(member)
        params = list(inspect.signature(member).parameters.values())[1:]
        validator = getattr(member, "__everflow_validator__", None)
        found[name] = Handler(
            name,
            attr,
            tuple(hints.get(p.name) for p in params),
            inspect.iscoroutinefunction(member),
            validator.__name__ if validator is not None else None,
        )
    return found


def defn(cls: C | None = None, *, name: str | None = None, sandboxed: bool = True) -> Any:
    """Marks a class as a workflow; exactly one method must carry @workflow.run.

    `sandboxed` is accepted for code ported from temporalio and changes nothing: there is no
    sandbox, and the determinism guard watches every workflow (see `unsafe`)."""
    del sandboxed

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
        queries = _handlers(c, "__everflow_query__")
        for q in queries.values():
            if q.is_async:
                raise TypeError(
                    f"query {c.__name__}.{q.method} must be a plain `def`: "
                    "a query reads state and never waits"
                )
        c.__everflow_workflow__ = WorkflowDefinition(  # type: ignore[attr-defined]
            name or c.__name__,
            c,
            runs[0],
            arg_types,
            _handlers(c, "__everflow_signal__"),
            queries,
            _handlers(c, "__everflow_update__"),
            hints.get("return"),
        )
        return c

    return wrap(cls) if cls is not None else wrap


def signal(fn: F | None = None, *, name: str | None = None) -> Any:
    """Marks a method (sync or async) as a signal handler: an asynchronous message into a
    running run, recorded in its history and delivered once, in order."""

    def wrap(f: F) -> F:
        f.__everflow_signal__ = name or f.__name__  # type: ignore[attr-defined]
        return f

    return wrap(fn) if fn is not None else wrap


def query(fn: F | None = None, *, name: str | None = None) -> Any:
    """Marks a plain method as a query handler: it reads the run's state; it is never
    recorded and must not change anything."""

    def wrap(f: F) -> F:
        f.__everflow_query__ = name or f.__name__  # type: ignore[attr-defined]
        return f

    return wrap(fn) if fn is not None else wrap


def update(fn: F | None = None, *, name: str | None = None) -> Any:
    """Marks a method as an update handler: a request that may change state and returns a
    result to the caller. `@<handler>.validator` adds a read-only check that can reject the
    update before anything is recorded."""

    def wrap(f: F) -> F:
        f.__everflow_update__ = name or f.__name__  # type: ignore[attr-defined]

        def validator(v: Callable[..., Any]) -> Callable[..., Any]:
            f.__everflow_validator__ = v  # type: ignore[attr-defined]
            return v

        f.validator = validator  # type: ignore[attr-defined]
        return f

    return wrap(fn) if fn is not None else wrap


class ChildWorkflowHandle:
    """A started child workflow: its IDs, and its result when awaited."""

    def __init__(self, workflow_id: str, run_id: str, result: asyncio.Future[Any]) -> None:
        self.id = workflow_id
        self.run_id = run_id
        self._result = result

    def __await__(self) -> Any:
        return self._result.__await__()

    async def result(self) -> Any:
        """The child's result; ChildWorkflowError if it failed, was canceled or terminated."""
        return await self._result


async def start_child_workflow(
    workflow: Any,
    *arg: Any,
    id: str,
    args: Sequence[Any] | None = None,
    task_queue: str | None = None,
    parent_close_policy: ParentClosePolicy | str = ParentClosePolicy.TERMINATE,
    result_type: Any = None,
    search_attributes: Mapping[str, Any] | None = None,
) -> ChildWorkflowHandle:
    """Starts a child workflow (any partition, any worker) and returns once it started.

    Arguments go positionally or as `args=[...]`. Raises ChildWorkflowError if it cannot
    start (say its ID is running). When this run closes, a child still running is
    terminated, asked to cancel, or left alone per `parent_close_policy` (a
    ParentClosePolicy or its string; ValueError for another). `result_type` shapes the
    child's result (default: its run method's return annotation when `workflow` is the
    class or its run method). `search_attributes` are the child's at its start (see
    `upsert_search_attributes`; SearchAttributeError for a bad one).
    """
    policy = option(ParentClosePolicy, parent_close_policy, "parent_close_policy")
    call_args = arguments(arg, args, "start_child_workflow")
    name, result_type = WorkflowDefinition.type_and_result(workflow, result_type)
    attributes = _encode_search_attributes(search_attributes or {}, allow_remove=False)
    options = ChildOptions(name, call_args, id, task_queue, policy, result_type, attributes)
    started, result = _runtime.current().start_child(options)
    run_id = await started
    return ChildWorkflowHandle(id, run_id, result)


async def execute_child_workflow(
    workflow: Any,
    *arg: Any,
    id: str,
    args: Sequence[Any] | None = None,
    task_queue: str | None = None,
    parent_close_policy: ParentClosePolicy | str = ParentClosePolicy.TERMINATE,
    result_type: Any = None,
    search_attributes: Mapping[str, Any] | None = None,
) -> Any:
    """Starts a child workflow and waits for its result (see start_child_workflow)."""
    handle = await start_child_workflow(
        workflow,
        *arg,
        id=id,
        args=args,
        task_queue=task_queue,
        parent_close_policy=parent_close_policy,
        result_type=result_type,
        search_attributes=search_attributes,
    )
    return await handle.result()


class ContinueAsNewError(BaseException):
    """Raised by continue_as_new(); the engine closes the run and starts the next one.
    (A BaseException, so `except Exception` in workflow code does not swallow it.)"""

    def __init__(self, args: tuple[Any, ...]) -> None:
        super().__init__("continue as new")
        self.run_args = args


def continue_as_new(*arg: Any, args: Sequence[Any] | None = None) -> NoReturn:
    """Closes this run and starts a new run of the same workflow ID with these arguments
    (positional or `args=[...]`) and a fresh history. Use it when
    `info().is_continue_as_new_suggested()`."""
    _runtime.current()  # only inside workflow code
    raise ContinueAsNewError(arguments(arg, args, "continue_as_new"))


def run(fn: F) -> F:
    """Marks the workflow's entry method (`async def run(self, ...)`)."""
    fn.__everflow_run__ = True  # type: ignore[attr-defined]
    return fn


def now() -> datetime:
    """The current time of the run (UTC, aware): the same on every replay."""
    return _runtime.current().now()


def random() -> _random.Random:
    """A random generator seeded by the run: the same numbers on every replay."""
    return _runtime.current().random()


def uuid4() -> uuid.UUID:
    """A random UUID that is the same on every replay."""
    return uuid.UUID(int=_runtime.current().random().getrandbits(128), version=4)


def patched(patch_id: str) -> bool:
    """Versioning: True where a run meets this call live (it records a marker there), and
    on replay only if the run's history has the marker. Guard a change with it so runs
    started on the old code keep the old branch:

        if workflow.patched("fee-v2"):
            await workflow.execute_activity(charge_fee_v2, ...)
        else:
            await workflow.execute_activity(charge_fee, ...)
    """
    return _runtime.current().patched(patch_id)


def deprecate_patch(patch_id: str) -> None:
    """Once no run without the `patch_id` marker is left: keep only the new branch and call
    this instead of `patched()`; histories with or without the marker replay."""
    _runtime.current().deprecate_patch(patch_id)


def info() -> WorkflowInfo:
    """What the run knows about itself (IDs, type, task queue, start time, search
    attributes)."""
    return _runtime.current().info()


def upsert_search_attributes(values: Mapping[str, Any]) -> None:
    """Sets custom search attributes of this run (None removes one), so that the run index
    can find it: `workflow.upsert_search_attributes({"Customer": "c-42", "Amount": 12.5})`.

    Recorded in the history as one SearchAttributesUpserted event, a command of the run
    like an activity: a replay must issue the same upsert (same names, types and values, in
    the same order), or the run blocks with a NonDeterminismError — guard a change with
    `workflow.patched()`. Types follow from the values: str is a keyword, `workflow.Text`
    full text, bool, int (64-bit), float (a double), an aware datetime, a list of str (a
    keyword list). Raises SearchAttributeError (before anything is recorded) for a name
    that is not an identifier or is built in (WorkflowId, ExecutionStatus…), a value of
    another type or a naive datetime, or a name whose type changes within the run. An empty
    mapping records nothing. `workflow.info().search_attributes` shows the values since.
    """
    _runtime.current().upsert_search_attributes(values)


async def sleep(duration: timedelta | float) -> None:
    """Waits on a durable timer: it survives crashes and restarts of every process.

    Raises TimerDurationError (a ValueError) for a negative duration or one over 100
    years; uncaught, it blocks the run until fixed code is deployed."""
    if not isinstance(duration, timedelta):
        try:
            duration = timedelta(seconds=duration)
        except (OverflowError, ValueError) as e:  # 1e20, nan
            raise TimerDurationError(
                f"workflow.sleep({duration!r}): not a timer duration ({e}); "
                "a timer's duration must be 0 to 100 years"
            ) from None
    await _runtime.current().start_timer(duration)


async def wait_condition(
    predicate: Callable[[], bool], *, timeout: timedelta | float | None = None
) -> None:
    """Waits until `predicate()` is true; raises asyncio.TimeoutError after `timeout` (a
    timedelta, or seconds as temporalio also takes)."""
    if timeout is not None and not isinstance(timeout, timedelta):
        timeout = timedelta(seconds=timeout)
    await _runtime.current().wait_condition(predicate, timeout)


class unsafe:  # a namespace, lower case as temporalio spells it: workflow.unsafe.x()
    """Temporal's escape hatches from its workflow sandbox, for code ported from it.

    Everflow has no sandbox: workflow modules are imported once, like any module, and a
    determinism guard watches what workflow code calls while it runs (the clock, `random`,
    `uuid4`, `open`…), stopping those calls with an error naming the replacement. So the
    sandbox's context managers change nothing here, and the guard stays on inside them:
    those calls give another answer on replay wherever they are made.
    """

    @staticmethod
    @contextlib.contextmanager
    def imports_passed_through() -> Iterator[None]:
        """`with workflow.unsafe.imports_passed_through(): import ...` — a no-op: every
        import is a plain import already (there is no sandbox to pass it through)."""
        yield

    @staticmethod
    @contextlib.contextmanager
    def sandbox_unrestricted() -> Iterator[None]:
        """A no-op: there is no sandbox to lift. The determinism guard still stops
        non-deterministic calls inside (use an activity or the workflow.* helpers)."""
        yield

    @staticmethod
    def in_sandbox() -> bool:
        """Always False: workflow code never runs in a sandbox."""
        return False

    @staticmethod
    def is_replaying() -> bool:
        """Whether the run's code is replaying history (True) or making new progress;
        NotInWorkflowError outside workflow code."""
        return _runtime.current().is_replaying()


class _WorkflowLogger(logging.LoggerAdapter):
    """Logs with the run's IDs, and stays silent while the run replays history."""

    def isEnabledFor(self, level: int) -> bool:
        if _runtime.in_workflow() and _runtime.current().is_replaying():
            return False
        return self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        if _runtime.in_workflow():
            runtime = _runtime.current()
            i = runtime.info()
            msg = f"{msg} workflow_id={i.workflow_id} run_id={i.run_id}"
            ids = runtime.trace_ids()
            if ids is not None:  # the record joins the run's trace in log pipelines
                extra = kwargs.get("extra") or {}
                kwargs["extra"] = {**extra, "trace_id": ids[0], "span_id": ids[1]}
        return msg, kwargs


logger = _WorkflowLogger(logging.getLogger("everflow.workflow"), {})
