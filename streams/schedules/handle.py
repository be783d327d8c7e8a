"""Schedules from the client's side: create one, get a handle on one, list them.

`Client.create_schedule`, `Client.get_schedule_handle` and `Client.list_schedules` call
these; a `ScheduleHandle` sends the schedule's run its messages (updates: recorded before
they are answered) and asks it to describe itself (a query).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from streams.errors import ScheduleAlreadyRunningError, WorkflowAlreadyStartedError
from streams.options import IdReusePolicy
from streams.schedules.model import (
    SCHEDULE_WORKFLOW,
    WORKFLOW_ID_PREFIX,
    Schedule,
    ScheduleDescription,
    ScheduleListEntry,
    ScheduleOverlapPolicy,
    check_schedule,
    created_carry,
    description_from_json,
    schedule_id_of,
    schedule_to_json,
)

if TYPE_CHECKING:
    from streams.client import Client, WorkflowHandle

REQUEST_TIMEOUT = timedelta(seconds=30)


async def create_schedule(client: Client, schedule_id: str, schedule: Schedule) -> ScheduleHandle:
    """See `Client.create_schedule`."""
    check_schedule(schedule)
    workflow_id = WORKFLOW_ID_PREFIX + schedule_id
    try:
        await client.start_workflow(
            SCHEDULE_WORKFLOW,
            schedule_to_json(schedule),
            # due times from now on, though no worker may start the run for a while
            created_carry(client.now()),
            id=workflow_id,
            task_queue=schedule.action.task_queue,
            id_reuse_policy=IdReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        raise ScheduleAlreadyRunningError(
            f"schedule {schedule_id!r} exists (workflow {workflow_id!r} is running); delete it "
            "first (`everflow schedule delete`) or pick another ID"
        ) from None
    return ScheduleHandle(client, schedule_id)


class ScheduleIterator:
    """The schedules in the run index, by ID: `async for s in client.list_schedules()`, or
    Temporal's spelling, `async for s in await client.list_schedules()`."""

    def __init__(self, client: Client) -> None:
        self._entries = _list_schedules(client)

    def __aiter__(self) -> ScheduleIterator:
        return self

    async def __anext__(self) -> ScheduleListEntry:
        return await anext(self._entries)

    def __await__(self) -> Generator[Any, None, ScheduleIterator]:
        return self._itself().__await__()

    async def _itself(self) -> ScheduleIterator:
        return self


async def _list_schedules(client: Client) -> AsyncIterator[ScheduleListEntry]:
    query = f"WorkflowType = '{SCHEDULE_WORKFLOW}' AND ExecutionStatus = 'Running'"
    async for run in client.list_workflows(query + " ORDER BY WorkflowId"):
        if run.workflow_id.startswith(WORKFLOW_ID_PREFIX):
            yield ScheduleListEntry(
                schedule_id_of(run.workflow_id), run.workflow_id, run.task_queue, run.start_time
            )


def list_schedules(client: Client) -> ScheduleIterator:
    """See `Client.list_schedules`."""
    return ScheduleIterator(client)


class ScheduleHandle:
    """A schedule: describe, pause, unpause, trigger, update or delete it.

    Each call goes to the schedule's run; WorkflowNotFoundError if there is no such
    schedule, WorkflowNotRunningError if it was deleted, RPCTimeoutError if no worker
    answered within `timeout`.
    """

    def __init__(self, client: Client, schedule_id: str) -> None:
        self.client = client
        self.id = schedule_id
        self.workflow_id = WORKFLOW_ID_PREFIX + schedule_id

    def _run(self) -> WorkflowHandle:
        return self.client.get_workflow_handle(self.workflow_id)

    async def describe(self, timeout: timedelta = REQUEST_TIMEOUT) -> ScheduleDescription:
        """The schedule, its recent and running actions, its next due times and counts."""
        doc = await self._run().query("describe", timeout=timeout)
        return description_from_json(self.id, doc)

    async def pause(self, note: str = "paused", timeout: timedelta = REQUEST_TIMEOUT) -> None:
        """No due time starts a run until `unpause` (due times meanwhile are not made up
        for); triggers still do."""
        await self._run().execute_update("pause", note, timeout=timeout)

    async def unpause(self, note: str = "unpaused", timeout: timedelta = REQUEST_TIMEOUT) -> None:
        """Due times from now on start runs again."""
        await self._run().execute_update("unpause", note, timeout=timeout)

    async def trigger(
        self,
        overlap: ScheduleOverlapPolicy | None = None,
        timeout: timedelta = REQUEST_TIMEOUT,
    ) -> None:
        """Starts the action now (ID `<action id>-<now to the millisecond>`), under
        `overlap` (default: the schedule's policy); also while paused."""
        value = None if overlap is None else str(ScheduleOverlapPolicy(overlap))
        await self._run().execute_update("trigger", value, timeout=timeout)

    async def update(
        self,
        updater: Callable[[ScheduleDescription], Schedule | None] | Schedule,
        timeout: timedelta = REQUEST_TIMEOUT,
    ) -> None:
        """Replaces the schedule: with `updater(description)` (None: no change) or the
        Schedule given. Due times from now on follow the new spec. ScheduleSpecError for a
        schedule that cannot run (nothing is sent). Two updates at once: the later wins."""
        if isinstance(updater, Schedule):
            new: Schedule | None = updater
        else:
            new = updater(await self.describe(timeout))
        if new is None:
            return
        check_schedule(new)
        await self._run().execute_update("update", schedule_to_json(new), timeout=timeout)

    async def delete(self, timeout: timedelta = REQUEST_TIMEOUT) -> None:
        """Ends the schedule (its run is terminated); runs it started go on."""
        await self._run().terminate("schedule deleted", timeout=timeout)
