"""The schedule workflow (`everflow.Schedule`): one run per schedule, on every worker.

A schedule is a workflow run, so it is as durable as any: its clock is `workflow.now()`, its
waits are durable timers, and each run it starts is a child workflow (left running when the
schedule closes), whose start is recorded once in the schedule's history. A due time starts
the child `<action id>-<due time>`: a crash at any point replays the same decisions, so a due
time starts at most one run, and the timer of a due time missed while the workers were down
fires on restore, catching up on the due times within the catch-up window, in order.

The loop: take every due time in (cursor, now] (skipped while paused; older than the
catch-up window: missed; else offered to the overlap policy), start what the policy says,
then wait for the next due time or a message (pause, unpause, trigger, update, a run that
closed). Every `ACTIONS_PER_RUN` actions, at a moment when nothing it started is running
(or always, under ALLOW_ALL), it continues as new with its state, so its history stays
short; while a run it started keeps it from doing so, it arms no timer per due time (those
due times are judged when that run closes), so a run that hangs cannot grow the schedule's
history to its limit. A long catch-up takes `DUE_TIMES_PER_WAKE` due times an activation
and the rest in the next ones, so no activation runs long. `describe` is a query; the rest
are updates, answered once recorded.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, assert_never

from streams import workflow
from streams.errors import ChildWorkflowError, PendingLimitError
from streams.options import ParentClosePolicy
from streams.schedules.model import (
    SCHEDULE_WORKFLOW,
    Schedule,
    ScheduleOverlapPolicy,
    ScheduleState,
    schedule_from_json,
    schedule_to_json,
)
from streams.schedules.spec import due_times, next_due

ACTIONS_PER_RUN = 50
DUE_TIMES_PER_WAKE = 100
RECENT_ACTIONS = 10
NEXT_TIMES = 5


class Verdict(enum.Enum):
    START = "start"
    BUFFER = "buffer"
    SKIP = "skip"


def overlap_verdict(policy: ScheduleOverlapPolicy, running: int, buffered: int) -> Verdict:
    """What a due time does, given the runs of the schedule still running and those
    waiting in its buffer."""
    busy = running > 0 or buffered > 0
    match policy:
        case ScheduleOverlapPolicy.ALLOW_ALL:
            return Verdict.START
        case ScheduleOverlapPolicy.SKIP:
            return Verdict.SKIP if busy else Verdict.START
        case ScheduleOverlapPolicy.BUFFER_ONE:
            if not busy:
                return Verdict.START
            return Verdict.BUFFER if buffered == 0 else Verdict.SKIP
        case ScheduleOverlapPolicy.BUFFER_ALL:
            return Verdict.BUFFER if busy else Verdict.START
    raise ValueError(f"unknown overlap policy {policy!r}")


def within_catchup(due: datetime, now: datetime, window: timedelta) -> bool:
    """Whether a due time found at `now` is still taken (else it is missed)."""
    return now - due <= window


def action_workflow_id(action_id: str, due: datetime, triggered: bool = False) -> str:
    """`<action id>-<due time>`: ISO 8601 UTC to the second (to the millisecond for a
    triggered run, or a due time off the whole second)."""
    if triggered or due.microsecond:
        stamp = due.strftime("%Y-%m-%dT%H:%M:%S.") + f"{due.microsecond // 1000:03d}Z"
    else:
        stamp = due.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{action_id}-{stamp}"


@workflow.defn(name=SCHEDULE_WORKFLOW)
class ScheduleWorkflow:
    """Runs one schedule (see the module's docstring)."""

    def __init__(self) -> None:
        self.schedule: Schedule | None = None
        self.cursor = datetime.min
        self.created_at = datetime.min
        self.running: dict[str, datetime] = {}
        self.buffer: list[tuple[datetime, str]] = []
        self.triggers: list[tuple[datetime, ScheduleOverlapPolicy]] = []
        self.recent: list[dict[str, Any]] = []
        self.action_count = 0
        self.missed = 0
        self.skipped = 0
        self.actions_this_run = 0
        self.wake = False
        self.dozing = False  # waiting without a timer for a running run to close
        self.backlog = False  # due times up to now left for the next activation
        self.tasks: set[asyncio.Future[None]] = set()

    @workflow.run
    async def run(self, schedule: dict[str, Any], carried: dict[str, Any] | None = None) -> None:
        self.schedule = schedule_from_json(schedule)
        self._restore(carried)
        while True:
            now = workflow.now()
            self._take_due(now)
            if self._should_continue_as_new():
                workflow.continue_as_new(schedule_to_json(self.schedule), self._carry())
            # history long, but a run it started still runs: no timer per due time until that
            # run closes (the due times meanwhile are judged then), so a run that hangs cannot
            # grow the schedule's history to its limit
            if not self.backlog:  # a long catch-up keeps judging as it began
                self.dozing = self._long() and not self._idle()
            quiet = self.schedule.state.paused or self.dozing
            wake_at = None if quiet else next_due(self.schedule.spec, now)
            if self.backlog:  # the rest of a long catch-up in a fresh activation
                wake_at = now + timedelta(milliseconds=1)
            self.wake = False
            try:
                await workflow.wait_condition(
                    lambda: self.wake, timeout=None if wake_at is None else wake_at - now
                )
            except TimeoutError:
                pass

    # ---- state across continue-as-new ----------------------------------------------------
    def _restore(self, carried: dict[str, Any] | None) -> None:
        # the client's `create_schedule` sends the time it was asked (`created_carry`): due
        # times from then on are taken, even if no worker started this run until later
        if carried is None:
            self.cursor = self.created_at = workflow.info().start_time
            return
        self.cursor = datetime.fromisoformat(carried["cursor"])
        self.created_at = datetime.fromisoformat(carried["created_at"])
        self.recent = carried["recent"]
        self.action_count = carried["action_count"]
        self.missed = carried["missed"]
        self.skipped = carried["skipped"]

    def _carry(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor.isoformat(),
            "created_at": self.created_at.isoformat(),
            "recent": self.recent,
            "action_count": self.action_count,
            "missed": self.missed,
            "skipped": self.skipped,
        }

    def _should_continue_as_new(self) -> bool:
        return self._long() and self._idle()

    def _long(self) -> bool:
        # a run that took no action yet never counts as long: with a suggestion threshold
        # under a fresh run's length, each new run would continue as new at once, forever
        return self.actions_this_run >= ACTIONS_PER_RUN or (
            self.actions_this_run > 0 and workflow.info().is_continue_as_new_suggested()
        )

    def _idle(self) -> bool:
        """Nothing to hand over: no buffered or triggered action, no due times left from a
        long catch-up, and no run running (under ALLOW_ALL running ones are not waited for:
        they are no longer tracked)."""
        assert self.schedule is not None
        allow_all = self.schedule.policy.overlap is ScheduleOverlapPolicy.ALLOW_ALL
        quiet = not self.buffer and not self.triggers and not self.backlog
        return quiet and (allow_all or not self.running)

    # ---- taking due times ----------------------------------------------------------------
    def _take_due(self, now: datetime) -> None:
        schedule = self.schedule
        assert schedule is not None
        self._start_buffered()
        triggers, self.triggers = self.triggers, []
        for at, overlap in triggers:
            self._offer(at, action_workflow_id(schedule.action.id, at, True), overlap)
        self.backlog = False
        if not schedule.state.paused:
            self._take_due_times(schedule, now)
        if not self.backlog:
            self.cursor = max(self.cursor, now)
            self.dozing = False
        self._start_buffered()

    def _take_due_times(self, schedule: Schedule, now: datetime) -> None:
        window, taken = schedule.policy.catchup_window, 0
        for due in due_times(schedule.spec, self.cursor, now):
            if taken == DUE_TIMES_PER_WAKE:
                # a long catch-up goes on in the next activation: one activation of workflow
                # code must stay short (the deadlock watchdog), its transaction small
                self.backlog = True
                return
            if self.dozing:  # due while a run was running: judged as found on time
                self._offer(due, action_workflow_id(schedule.action.id, due), None, True)
            elif within_catchup(due, now, window):
                self._offer(due, action_workflow_id(schedule.action.id, due), None)
            else:
                self.missed += 1
                workflow.logger.warning(
                    "schedule missed %s: found at %s, past its catch-up window %s",
                    due.isoformat(),
                    now.isoformat(),
                    window,
                )
            self.cursor, taken = due, taken + 1

    def _offer(
        self,
        due: datetime,
        workflow_id: str,
        overlap: ScheduleOverlapPolicy | None,
        busy: bool = False,
    ) -> None:
        assert self.schedule is not None
        policy = overlap or self.schedule.policy.overlap
        running = max(len(self.running), 1 if busy else 0)
        verdict = overlap_verdict(policy, running, len(self.buffer))
        match verdict:
            case Verdict.START:
                self._start(due, workflow_id)
            case Verdict.BUFFER:
                self.buffer.append((due, workflow_id))
            case Verdict.SKIP:
                self.skipped += 1
            case _:
                assert_never(verdict)

    def _start_buffered(self) -> None:
        while self.buffer and not self.running:
            self._start(*self.buffer.pop(0))

    def _start(self, due: datetime, workflow_id: str) -> None:
        self.running[workflow_id] = due
        self.action_count += 1
        self.actions_this_run += 1
        record = {
            "scheduled_at": due.isoformat(),
            "started_at": workflow.now().isoformat(),
            "workflow_id": workflow_id,
            "status": "running",
        }
        self.recent = [*self.recent, record][-RECENT_ACTIONS:]
        task = asyncio.ensure_future(self._run_action(workflow_id, record))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_action(self, workflow_id: str, record: dict[str, Any]) -> None:
        assert self.schedule is not None
        action = self.schedule.action
        try:
            child = await workflow.start_child_workflow(
                action.workflow,
                *action.args,
                id=workflow_id,
                task_queue=action.task_queue,
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
            await child
            record["status"] = "completed"
        except ChildWorkflowError as e:
            record["status"] = e.status or "failed"
        except PendingLimitError as e:  # too many of its runs still running (ALLOW_ALL)
            workflow.logger.warning("schedule could not start %s: %s", workflow_id, e)
            record["status"] = "start_failed"
        self.running.pop(workflow_id, None)
        failed = record["status"] in ("failed", "timed_out", "start_failed")
        if failed and self.schedule.policy.pause_on_failure:
            note = f"paused: {workflow_id} {record['status'].replace('_', ' ')}"
            self._set_state(ScheduleState(True, note))
        self.wake = True

    def _set_state(self, state: ScheduleState) -> None:
        assert self.schedule is not None
        self.schedule = replace(self.schedule, state=state)

    # ---- messages ------------------------------------------------------------------------
    @workflow.update
    def pause(self, note: str) -> None:
        self._set_state(ScheduleState(True, note))
        self.wake = True

    @workflow.update
    def unpause(self, note: str) -> None:
        # due times while paused are not made up for: the schedule goes on from now
        self.cursor = max(self.cursor, workflow.now())
        self._set_state(ScheduleState(False, note))
        self.wake = True

    @workflow.update
    def trigger(self, overlap: str | None) -> None:
        policy = None if overlap is None else ScheduleOverlapPolicy(overlap)
        assert self.schedule is not None
        self.triggers.append((workflow.now(), policy or self.schedule.policy.overlap))
        self.wake = True

    @workflow.update
    def update(self, schedule: dict[str, Any]) -> None:
        # due times from now on follow the new spec; past ones are not taken again
        self.schedule = schedule_from_json(schedule)
        self.cursor = max(self.cursor, workflow.now())
        self.wake = True

    @workflow.query
    def describe(self) -> dict[str, Any]:
        assert self.schedule is not None
        upcoming: list[str] = []
        at: datetime | None = self.cursor
        while at is not None and len(upcoming) < NEXT_TIMES:
            at = next_due(self.schedule.spec, at)
            if at is not None:
                upcoming.append(at.isoformat())
        return {
            "schedule": schedule_to_json(self.schedule),
            "recent_actions": self.recent,
            "running_workflow_ids": list(self.running),
            "next_action_times": upcoming,
            "action_count": self.action_count,
            "missed_catchup_window": self.missed,
            "overlap_skipped": self.skipped,
            "buffered": len(self.buffer),
            "created_at": self.created_at.isoformat(),
        }
