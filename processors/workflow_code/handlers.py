"""Messages into a running workflow: signals, queries and updates (a WorkflowInstance mixin).

Signals and accepted updates are history events, delivered to their handlers in order like
any other event; an update's outcome becomes an UpdateCompleted event and a reply. Queries
and update validators run against the current state outside any step and record nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from streams.errors import QueryError, UnknownHandlerError
from streams.failures import to_failure
from streams.payload import DataConverter, Payload
from streams.wire.records import Failure
from streams.workflow import Handler, WorkflowDefinition

log = logging.getLogger(__name__)


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


class MessageHandlers:
    """Signal, query and update delivery for WorkflowInstance."""

    definition: WorkflowDefinition
    converter: DataConverter
    loop: Any  # the instance's WorkflowEventLoop
    _obj: Any
    _decisions: list[Any]
    _handler_failure: BaseException | None

    def _deliver_signal(self, name: str, args: list[Payload]) -> None:
        handler = self.definition.signals.get(name)
        if handler is None:  # checked when the signal was sent; a code change removed it
            log.warning("workflow %s has no signal %r; dropped", self.definition.name, name)
            return
        values = self.converter.from_payloads(args, handler.arg_types)
        outcome = getattr(self._obj, handler.method)(*values)
        if handler.is_async:
            task = self.loop.create_task(outcome, name=f"signal-{name}")
            task.add_done_callback(self._on_handler_done)

    def _on_handler_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None and self._handler_failure is None:
            self._handler_failure = task.exception()

    def _accept_update(self, update_id: str, name: str, args: list[Payload]) -> None:
        handler = find_handler(self.definition, "update", name)
        values = self.converter.from_payloads(args, handler.arg_types)

        async def run_handler() -> Any:
            outcome = getattr(self._obj, handler.method)(*values)
            return await outcome if handler.is_async else outcome

        task = self.loop.create_task(run_handler(), name=f"update-{update_id}")
        task.add_done_callback(lambda t: self._on_update_done(update_id, t))

    def _on_update_done(self, update_id: str, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            failure = Failure("the update was canceled", "CancelledError", kind="canceled")
            self._decisions.append(CompleteUpdate(update_id, None, failure))
            return
        error = task.exception()
        if error is None:
            result = self.converter.to_payload(task.result())
            self._decisions.append(CompleteUpdate(update_id, result, None))
        else:
            self._decisions.append(
                CompleteUpdate(update_id, None, to_failure(error, self.converter))
            )

    def _read_only(
        self, kind: str, name: str, method: str, args: list[Payload], arg_types: tuple[Any, ...]
    ) -> Any:
        """Calls a query or validator against the current state, recording nothing."""
        values = self.converter.from_payloads(args, arg_types)
        before = len(self._decisions)
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self.loop)
        try:
            with self._guarded():  # type: ignore[attr-defined]
                result = getattr(self._obj, method)(*values)
        finally:
            asyncio.events._set_running_loop(previous)
        if len(self._decisions) != before:
            del self._decisions[before:]
            raise QueryError(f"{kind} {name!r} tried to schedule work; it may only read state")
        return result

    def query(self, name: str, args: list[Payload]) -> Payload:
        """Runs a query handler; raises UnknownHandlerError, QueryError or its own error."""
        handler = find_handler(self.definition, "query", name)
        if self._obj is None:
            raise QueryError(f"query {name!r}: the run has not started its code yet")
        result = self._read_only("query", name, handler.method, args, handler.arg_types)
        return self.converter.to_payload(result)

    def validate_update(self, name: str, args: list[Payload]) -> None:
        """Runs the update's validator, if any; raises what it raises to reject the update."""
        handler = find_handler(self.definition, "update", name)
        if handler.validator is not None and self._obj is not None:
            self._read_only("validator", name, handler.validator, args, handler.arg_types)
