"""Messages into a running workflow: signals, queries and updates.

Signals and accepted updates are history events, delivered to their handlers in order like
any other event; an update's outcome becomes an UpdateCompleted event and a reply. Queries
and update validators run against the current state outside any step and record nothing.
The built-in `__stack_trace` query needs no handler: it reads where the run's tasks wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from processors.tally import Counts
from processors.workflow_code.loop import WorkflowEventLoop
from processors.workflow_code.stack import STACK_TRACE_QUERY, stack_trace
from streams.errors import PayloadKeyError, QueryError, UnknownHandlerError
from streams.failures import to_failure
from streams.payload import DataConverter, Payload
from streams.wire.records import Failure
from streams.workflow import Handler, WorkflowDefinition

log = logging.getLogger(__name__)

# signals dropped because their arguments did not decode, by workflow type (process-wide:
# the metrics endpoint reads it); counted and logged when first delivered, not on replay
DROPPED_SIGNALS: Counts[str] = Counts()


@dataclass(frozen=True, slots=True)
class CompleteUpdate:
    update_id: str
    result: Payload | None
    failure: Failure | None
    location: str = ""


def find_handler(definition: WorkflowDefinition, kind: str, name: str) -> Handler:
    """The handler for a signal/query/update name; UnknownHandlerError lists the known ones."""
    tables = {
        "signal": definition.signals,
        "query": definition.queries,
        "update": definition.updates,
    }
    table = tables[kind]
    handler = table.get(name)
    if handler is None:
        known = ", ".join(sorted(table)) or "none"
        raise UnknownHandlerError(
            f"workflow {definition.name!r} has no {kind} {name!r} (known: {known})"
        )
    return handler


# calls the function against the run's state; returns what it returns, or raises
# QueryError naming `what` if the call issued decisions (which are discarded)
ReadOnlyCall = Callable[[str, Callable[[], Any]], Any]


class MessageHandlers:
    """One run's signal, query and update handlers, called on its workflow object.

    `record` takes an update's outcome as the run's next decision; `read_only` runs a query
    or validator so that it records nothing. Before `bind()` no code has started: queries
    are refused and validators skipped.
    """

    def __init__(
        self,
        definition: WorkflowDefinition,
        converter: DataConverter,
        loop: WorkflowEventLoop,
        record: Callable[[CompleteUpdate], None],
        read_only: ReadOnlyCall,
    ) -> None:
        self._definition = definition
        self._converter = converter
        self._loop = loop
        self._record = record
        self._read_only = read_only
        self._obj: Any = None
        # the first error an async signal handler raised, for the instance to take
        self.failure: BaseException | None = None
        self.replaying = False  # set by the instance for each event it delivers

    def bind(self, obj: Any) -> None:
        """Sets the workflow object whose methods handle messages (its run has started)."""
        self._obj = obj

    def deliver_signal(self, name: str, args: list[Payload]) -> None:
        """Runs the signal's handler (an async one as a task on the run's loop)."""
        handler = self._definition.signals.get(name)
        if handler is None:  # checked when the signal was sent; a code change removed it
            log.warning("workflow %s has no signal %r; dropped", self._definition.name, name)
            return
        try:
            values = self._converter.from_payloads(args, handler.arg_types)
        except PayloadKeyError:
            raise  # readable once the key is deployed: the run blocks until then, loses nothing
        except Exception as e:  # Temporal's rule: a signal that cannot be read is dropped
            if self.replaying:
                return
            DROPPED_SIGNALS.add(self._definition.name)
            log.warning(
                "workflow %s: the arguments of signal %r do not decode (%s: %s); the signal "
                "is dropped and the run goes on",
                self._definition.name,
                name,
                type(e).__name__,
                e,
            )
            return
        outcome = getattr(self._obj, handler.method)(*values)
        if handler.is_async:
            task = self._loop.create_task(outcome, name=f"signal-{name}")
            task.add_done_callback(self._on_handler_done)

    def _on_handler_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()

    def accept_update(self, update_id: str, name: str, args: list[Payload]) -> None:
        """Starts the update's handler; its outcome is recorded when it finishes."""
        handler = find_handler(self._definition, "update", name)
        values = self._converter.from_payloads(args, handler.arg_types)

        async def run_handler() -> Any:
            outcome = getattr(self._obj, handler.method)(*values)
            return await outcome if handler.is_async else outcome

        task = self._loop.create_task(run_handler(), name=f"update-{update_id}")
        task.add_done_callback(lambda t: self._on_update_done(update_id, t))

    def _on_update_done(self, update_id: str, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            failure = Failure("the update was canceled", "CancelledError", kind="canceled")
            self._record(CompleteUpdate(update_id, None, failure))
            return
        error = task.exception()
        if error is None:
            result = self._converter.to_payload(task.result())
            self._record(CompleteUpdate(update_id, result, None))
        else:
            self._record(CompleteUpdate(update_id, None, to_failure(error, self._converter)))

    def _call(
        self, kind: str, name: str, method: str, args: list[Payload], arg_types: tuple[Any, ...]
    ) -> Any:
        values = self._converter.from_payloads(args, arg_types)
        obj = self._obj
        return self._read_only(f"{kind} {name!r}", lambda: getattr(obj, method)(*values))

    def query(self, name: str, args: list[Payload]) -> Payload:
        """Runs a query handler; raises UnknownHandlerError, QueryError or its own error.
        `__stack_trace` answers where the run's tasks wait (text; empty before the code
        started), whatever handlers the workflow has."""
        if name == STACK_TRACE_QUERY:
            return self._converter.to_payload(stack_trace(self._loop.pending_tasks()))
        handler = find_handler(self._definition, "query", name)
        if self._obj is None:
            raise QueryError(f"query {name!r}: the run has not started its code yet")
        result = self._call("query", name, handler.method, args, handler.arg_types)
        return self._converter.to_payload(result)

    def validate_update(self, name: str, args: list[Payload]) -> None:
        """Runs the update's validator, if any; raises what it raises to reject the update."""
        handler = find_handler(self._definition, "update", name)
        if handler.validator is not None and self._obj is not None:
            self._call("validator", name, handler.validator, args, handler.arg_types)
