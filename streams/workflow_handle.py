"""A handle to a workflow run, as `Client` gives it: wait for its result, signal, query,
update, cancel or terminate it, describe it, read its history."""

from __future__ import annotations

import asyncio
import time
import typing
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from streams.errors import (
    ReadOnlyContextError,
    RequestRejectedError,
    SignalLimitError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    WorkflowResultTimeoutError,
)
from streams.failures import from_failure
from streams.payload import Payload, check_size
from streams.wire.commands import (
    CancelWorkflow,
    ControlActivity,
    DescribeWorkflow,
    QueryWorkflow,
    ResetWorkflow,
    SignalWorkflow,
    TerminateWorkflow,
    UnblockWorkflow,
    UpdateWorkflow,
)
from streams.wire.events import HistoryEvent
from streams.wire.records import (
    Completion,
    NotFound,
    QueryResult,
    Rejected,
    RejectionCode,
    ReplyBody,
    RunDescription,
    RunStatus,
    UpdateResult,
)
from streams.workflow import arguments

if TYPE_CHECKING:  # the client makes handles; a handle only calls it
    from streams.client import Client


def handler_name(handler: Any) -> str:
    if isinstance(handler, str):
        return handler
    for marker in ("__everflow_signal__", "__everflow_query__", "__everflow_update__"):
        name = getattr(handler, marker, None)
        if name is not None:
            return str(name)
    raise TypeError(f"{handler!r} is not a signal, query or update handler (or its name)")


def _return_hint(handler: Any) -> Any:
    """The return annotation of a handler method (None for a name): Temporal's default
    result type of a query or update."""
    if isinstance(handler, str):
        return None
    return typing.get_type_hints(handler).get("return")


class WorkflowHandle:
    """A run you can wait on, describe and read the history of."""

    def __init__(
        self,
        client: Client,
        workflow_id: str,
        run_id: str | None,
        completion: asyncio.Future[Completion] | None,
        *,
        result_type: Any = None,
    ) -> None:
        self.client = client
        self.id = workflow_id
        self.run_id = run_id
        self.result_type = result_type  # how result() shapes the result when not told
        self._completion = completion

    async def result(self, timeout: timedelta | None = None, result_type: Any = None) -> Any:
        """The run's result; WorkflowFailureError if it closed without one,
        WorkflowResultTimeoutError if it did not close within `timeout`. `result_type` (a
        dataclass, `list[Order]`…) shapes the decoded value; default: the handle's."""
        result_type = result_type if result_type is not None else self.result_type
        deadline = None if timeout is None else time.monotonic() + timeout.total_seconds()
        if self._completion is None:
            self._completion = self.client.watch_completion(self.id)
            # the run may have closed before we watched: ask the processor once
            desc = await self.describe()
            if desc.status is not RunStatus.RUNNING:
                self.client.unwatch_completion(self.id, self._completion)
                self._completion = None  # unwatched: a later result() asks again
                return self._outcome(desc.status, desc.result, desc.failure, result_type)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            completion = await asyncio.wait_for(asyncio.shield(self._completion), remaining)
        except TimeoutError:
            raise WorkflowResultTimeoutError(
                f"workflow {self.id!r} did not close within {timeout}; it is still running: "
                "wait again, or cancel it"
            ) from None
        return self._outcome(completion.status, completion.result, completion.failure, result_type)

    def _outcome(self, status: RunStatus, result: Any, failure: Any, result_type: Any) -> Any:
        conv = self.client.converter
        if status is RunStatus.COMPLETED:
            return conv.from_payload(result, result_type)
        cause = from_failure(failure, conv) if failure is not None else None
        raise WorkflowFailureError(self.id, status.value, cause)

    async def signal(
        self,
        signal: Any,
        *arg: Any,
        args: Sequence[Any] | None = None,
        timeout: timedelta = timedelta(seconds=30),
    ) -> None:
        """Sends a signal (arguments positionally or as `args=[...]`) and waits until it is
        recorded in the run's history. WorkflowNotRunningError if the run closed;
        ValueError for an unknown signal; PayloadTooLargeError, nothing sent, if its
        arguments are over max_payload_bytes; SignalLimitError once the run has received
        the maximum number of signals."""
        name = handler_name(signal)
        args = arguments(arg, args, "signal")
        payloads = self._sized(args, f"the arguments of signal {name!r} to workflow {self.id!r}")
        body = SignalWorkflow(name, payloads, None, self.client.client_id)
        self._check(await self.client.request(self.id, body, timeout))

    async def query(
        self,
        query: Any,
        *arg: Any,
        args: Sequence[Any] | None = None,
        result_type: Any = None,
        timeout: timedelta = timedelta(seconds=30),
    ) -> Any:
        """Asks the run's state (also of a closed run); never recorded in its history.
        Arguments go positionally or as `args=[...]`; `result_type` shapes the answer.
        ReadOnlyContextError if the query handler tried to schedule work."""
        name = handler_name(query)
        args = arguments(arg, args, "query")
        result_type = result_type if result_type is not None else _return_hint(query)
        payloads = self._sized(args, f"the arguments of query {name!r} to workflow {self.id!r}")
        body = QueryWorkflow(name, payloads, self.run_id, self.client.client_id)
        reply = self._check(await self.client.request(self.id, body, timeout))
        assert isinstance(reply, QueryResult)
        return self.client.converter.from_payload(reply.result, result_type)

    async def execute_update(
        self,
        update: Any,
        *arg: Any,
        args: Sequence[Any] | None = None,
        result_type: Any = None,
        timeout: timedelta = timedelta(seconds=30),
        update_id: str | None = None,
    ) -> Any:
        """Runs an update handler and returns its result; its validator may reject it
        (nothing is recorded then) — the rejection or the handler's failure is raised.
        Arguments go positionally or as `args=[...]`; `result_type` shapes the result.
        `update_id` names the update in the history (default: a new one)."""
        name = handler_name(update)
        args = arguments(arg, args, "execute_update")
        result_type = result_type if result_type is not None else _return_hint(update)
        payloads = self._sized(args, f"the arguments of update {name!r} to workflow {self.id!r}")
        update_id = update_id or uuid.uuid4().hex
        body = UpdateWorkflow(name, payloads, update_id, self.client.client_id)
        reply = self._check(await self.client.request(self.id, body, timeout))
        assert isinstance(reply, UpdateResult)
        conv = self.client.converter
        if reply.failure is not None:
            raise from_failure(reply.failure, conv)
        return conv.from_payload(reply.result, result_type) if reply.result else None

    def _sized(self, args: Sequence[Any], what: str) -> list[Payload]:
        """`args` as payloads; PayloadTooLargeError (nothing sent) over the limit."""
        payloads = self.client.converter.to_payloads(list(args))
        check_size(payloads, self.client.config.max_payload_bytes, what)
        return payloads

    def _check(self, reply: ReplyBody) -> ReplyBody:
        if isinstance(reply, NotFound):
            raise WorkflowNotFoundError(reply.message)
        if isinstance(reply, Rejected):
            if reply.code == RejectionCode.NOT_RUNNING:
                raise WorkflowNotRunningError(reply.message)
            if reply.code == RejectionCode.NOT_FOUND:
                raise WorkflowNotFoundError(reply.message)
            if reply.code == RejectionCode.SIGNAL_LIMIT:
                raise SignalLimitError(reply.message)
            if reply.code == RejectionCode.READ_ONLY:
                raise ReadOnlyContextError(reply.message)
            raise RequestRejectedError(reply.message)
        return reply

    async def cancel(self, reason: str = "", timeout: timedelta = timedelta(seconds=30)) -> None:
        """Asks the run to stop: asyncio.CancelledError is raised in its code, which may clean
        up (run compensations) before it ends as CANCELED. WorkflowNotRunningError if closed."""
        await self._control(CancelWorkflow(reason, self.client.client_id), timeout)

    async def terminate(self, reason: str = "", timeout: timedelta = timedelta(seconds=30)) -> None:
        """Ends the run at once as TERMINATED; none of its code runs."""
        await self._control(TerminateWorkflow(reason, self.client.client_id), timeout)

    async def _control(self, body: CancelWorkflow | TerminateWorkflow, timeout: timedelta) -> None:
        self._check(await self.client.request(self.id, body, timeout))

    # ---- repair (human in the loop) ---------------------------------------------------------
    async def reset(self, to_event: int, reason: str = "") -> str:
        """A new run from this run's events 1..to_event (this one, if open, is terminated);
        its code goes on live from there. Returns the new run's ID."""
        body = ResetWorkflow(to_event, str(uuid.uuid4()), reason, self.client.client_id)
        reply = self._check(await self.client.request(self.id, body, timedelta(seconds=30)))
        assert isinstance(reply, RunDescription)
        return reply.run_id

    async def unblock(self, reason: str = "") -> RunDescription:
        """Replays a run blocked by non-determinism with the code deployed now, and resumes it
        if it fits (RequestRejectedError says why not)."""
        return await self._repair(UnblockWorkflow(reason, self.client.client_id))

    async def retry_activity(self, activity_id: int, reason: str = "") -> RunDescription:
        """The activity's next attempt now, with a fresh attempt budget (and unpaused)."""
        return await self._activity(activity_id, "retry", reason)

    async def pause_activity(self, activity_id: int, reason: str = "") -> RunDescription:
        """No new attempt of the activity starts; a failed one waits for an operator."""
        return await self._activity(activity_id, "pause", reason)

    async def unpause_activity(self, activity_id: int, reason: str = "") -> RunDescription:
        return await self._activity(activity_id, "unpause", reason)

    async def _activity(self, activity_id: int, action: str, reason: str) -> RunDescription:
        body = ControlActivity(activity_id, action, reason, self.client.client_id)
        return await self._repair(body)

    async def _repair(self, body: ControlActivity | UnblockWorkflow) -> RunDescription:
        reply = self._check(await self.client.request(self.id, body, timedelta(seconds=30)))
        assert isinstance(reply, RunDescription)
        return reply

    async def describe(self, timeout: timedelta = timedelta(seconds=30)) -> RunDescription:
        """The run's status, times, result or failure, and why it is blocked if it is."""
        return await self._describe(False, timeout)

    async def fetch_history(self, timeout: timedelta = timedelta(seconds=30)) -> list[HistoryEvent]:
        """The run's history events, in order."""
        desc = await self._describe(True, timeout)
        return [self.client.wire.event.decode(raw) for raw in desc.history]

    async def _describe(self, history: bool, timeout: timedelta) -> RunDescription:
        body = DescribeWorkflow(self.client.client_id, self.run_id, history)
        reply = self._check(await self.client.request(self.id, body, timeout))
        assert isinstance(reply, RunDescription)
        return reply
