"""The schedule workflow on the pure run core: a timer fired late catches up the due times
within the catch-up window, in order, each as its own child; older ones are counted as
missed; the overlap policy decides among those caught up; a long catch-up goes on across
activations; a long history waits for a running run without a timer per due time; a run
restored from its history starts no due time again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from processors.run.state import Effects, Run
from processors.workflow_code.registry import Registry
from streams.payload import DataConverter
from streams.schedules import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from streams.schedules.model import SCHEDULE_WORKFLOW, created_carry, schedule_to_json
from streams.schedules.scheduler import ScheduleWorkflow
from streams.settings import RunLimits
from streams.wire.events import (
    ChildWorkflowClosed,
    ChildWorkflowInitiated,
    ChildWorkflowStarted,
    WorkflowContinuedAsNew,
    WorkflowStarted,
)
from streams.wire.records import Failure

conv = DataConverter()
T0 = 1_796_000_000_000  # ms, on a whole second
REGISTRY = Registry([ScheduleWorkflow])


def every_second(overlap: ScheduleOverlapPolicy) -> Schedule:
    return Schedule(
        ScheduleActionStartWorkflow("Tick", "x", id="tick", task_queue="q"),
        ScheduleSpec(intervals=[ScheduleIntervalSpec(timedelta(seconds=1))]),
        SchedulePolicy(overlap, catchup_window=timedelta(seconds=5)),
    )


def started(schedule: Schedule) -> tuple[Run, Effects]:
    run, fx = Run("everflow-schedule:s", "run-1", 0, REGISTRY), Effects()
    args = conv.to_payloads([schedule_to_json(schedule), None])
    run.start(WorkflowStarted(SCHEDULE_WORKFLOW, "q", args, "cmd-1"), T0, fx)
    return run, fx


def children(fx: Effects) -> list[str]:
    return [
        e.attributes.workflow_id
        for e in fx.events
        if isinstance(e.attributes, ChildWorkflowInitiated)
    ]


def tick(ms: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return "tick-" + at.strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(run: Run) -> dict[str, Any]:
    doc = conv.from_payload(run.live_instance().handlers.query("describe", []))
    assert isinstance(doc, dict)
    return doc


def test_a_late_wake_catches_up_due_times_in_the_window_in_order_and_misses_older_ones() -> None:
    run, fx = started(every_second(ScheduleOverlapPolicy.ALLOW_ALL))
    (timer,) = fx.timers
    assert timer.fire_at == T0 + 1000  # the first due time
    fx = Effects()
    # the workers were down: the timer fires 10.5 s after the start
    assert run.fire_timer(timer, T0 + 10_500, fx)
    assert children(fx) == [tick(T0 + s * 1000) for s in range(6, 11)]
    doc = describe(run)
    assert (doc["action_count"], doc["missed_catchup_window"], doc["overlap_skipped"]) == (5, 5, 0)
    assert len(doc["running_workflow_ids"]) == 5
    (nxt,) = fx.timers
    assert nxt.fire_at == T0 + 11_000


def test_skip_takes_the_first_caught_up_due_time_and_skips_the_rest() -> None:
    run, fx = started(every_second(ScheduleOverlapPolicy.SKIP))
    fx2 = Effects()
    run.fire_timer(fx.timers[0], T0 + 10_500, fx2)
    assert children(fx2) == [tick(T0 + 6000)]
    doc = describe(run)
    assert (doc["action_count"], doc["missed_catchup_window"], doc["overlap_skipped"]) == (1, 5, 4)


def test_a_restored_schedule_starts_no_due_time_twice() -> None:
    run, fx = started(every_second(ScheduleOverlapPolicy.ALLOW_ALL))
    first = Effects()
    run.fire_timer(fx.timers[0], T0 + 1000, first)
    assert children(first) == [tick(T0 + 1000)]
    # a worker restores the run from its history: replay issues the same start, sends nothing
    restored = Run("everflow-schedule:s", "run-1", 0, REGISTRY)
    for event in run.events:
        restored.apply(event)
    stale = Effects()
    assert not restored.fire_timer(fx.timers[0], T0 + 1500, stale)  # fired once already
    assert children(stale) == []
    (pending,) = first.timers  # the timer record written with the first start
    assert pending.fire_at == T0 + 2000
    fx = Effects()
    assert restored.fire_timer(pending, T0 + 2000, fx)
    assert children(fx) == [tick(T0 + 2000)]  # only the next due time
    assert describe(restored)["action_count"] == 2


def test_a_failed_run_pauses_a_schedule_with_pause_on_failure_and_a_completed_one_does_not() -> (
    None
):
    base = every_second(ScheduleOverlapPolicy.SKIP)
    schedule = Schedule(
        base.action, base.spec, SchedulePolicy(ScheduleOverlapPolicy.SKIP, pause_on_failure=True)
    )
    run, fx = started(schedule)
    run.fire_timer(fx.timers[0], T0 + 1000, fx)
    run.child_reported(ChildWorkflowStarted(1, "child-run-1"), T0 + 1100, fx)
    run.child_reported(ChildWorkflowClosed(1, "COMPLETED", conv.to_payload("ok")), T0 + 1200, fx)
    doc = describe(run)
    assert doc["recent_actions"][0]["status"] == "completed"
    assert doc["schedule"]["state"]["paused"] is False
    assert run.fire_timer(fx.timers[-1], T0 + 2000, fx)  # the wait re-armed after the close
    run.child_reported(ChildWorkflowStarted(2, "child-run-2"), T0 + 2100, fx)
    failure = Failure("it broke", "ApplicationError", "workflow")
    run.child_reported(ChildWorkflowClosed(2, "FAILED", None, failure), T0 + 2200, fx)
    doc = describe(run)
    assert [a["status"] for a in doc["recent_actions"]] == ["completed", "failed"]
    assert doc["schedule"]["state"] == {"paused": True, "note": f"paused: {tick(T0 + 2000)} failed"}


def test_a_long_history_with_a_run_still_running_arms_no_timer_until_it_closes() -> None:
    # continue-as-new is suggested from the start, but the first run keeps the schedule
    # from it: it must not wake per due time (a hung run would grow its history without end)
    short = Registry([ScheduleWorkflow], limits=RunLimits(suggest_continue_as_new_after=1))
    run, fx = Run("everflow-schedule:s", "run-1", 0, short), Effects()
    args = conv.to_payloads([schedule_to_json(every_second(ScheduleOverlapPolicy.SKIP)), None])
    run.start(WorkflowStarted(SCHEDULE_WORKFLOW, "q", args, "cmd-1"), T0, fx)
    # a run that took no action yet does not continue as new (it would, at once, forever)
    assert not any(isinstance(e.attributes, WorkflowContinuedAsNew) for e in fx.events)
    fired = Effects()
    run.fire_timer(fx.timers[0], T0 + 1000, fired)
    assert children(fired) == [tick(T0 + 1000)]
    assert fired.timers == []  # dozing: no timer while the run it started runs
    run.child_reported(ChildWorkflowStarted(1, "child-run-1"), T0 + 1100, Effects())
    closed = Effects()
    # the run closes an hour later, far past the catch-up window: the due times meanwhile
    # were skipped by the overlap policy, not missed, and the schedule continues as new
    now = T0 + 3_600_500
    run.child_reported(ChildWorkflowClosed(1, "COMPLETED", None), now, closed)
    # 3,599 due times to judge: 100 an activation, each next one on a 1 ms timer
    for _ in range(50):
        if run.closed:
            break
        now += 1
        assert run.fire_timer(closed.timers[-1], now, closed)
    (continued,) = [
        e.attributes for e in closed.events if isinstance(e.attributes, WorkflowContinuedAsNew)
    ]
    assert len(closed.timers) == 35
    _, carried = conv.from_payloads(continued.args)
    assert (carried["action_count"], carried["skipped"], carried["missed"]) == (1, 3599, 0)
    assert carried["cursor"] == datetime.fromtimestamp(now / 1000, UTC).isoformat()


def test_a_long_catch_up_starts_every_due_time_once_in_order_a_hundred_an_activation() -> None:
    base = every_second(ScheduleOverlapPolicy.ALLOW_ALL)
    policy = SchedulePolicy(ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=timedelta(days=1))
    run, fx = started(Schedule(base.action, base.spec, policy))
    now, woke = T0 + 1_200_500, Effects()  # 20 minutes down: 1,200 due times
    assert run.fire_timer(fx.timers[0], now, woke)
    per_activation = [len(children(woke))]
    while len(woke.timers) and woke.timers[-1].fire_at == now + 1:  # the backlog's timer
        now += 1
        more = Effects()
        assert run.fire_timer(woke.timers[-1], now, more)
        per_activation.append(len(children(more)))
        woke = more
    assert per_activation == [100] * 12
    started_ids = [
        e.attributes.workflow_id
        for e in run.events
        if isinstance(e.attributes, ChildWorkflowInitiated)
    ]
    assert started_ids == [tick(T0 + s * 1000) for s in range(1, 1201)]
    assert describe(run)["missed_catchup_window"] == 0


def test_due_times_since_the_client_asked_are_taken_though_the_run_started_later() -> None:
    # no worker was up when the schedule was created; its run starts 3 s later
    asked = datetime.fromtimestamp((T0 - 3000) / 1000, UTC)
    schedule = schedule_to_json(every_second(ScheduleOverlapPolicy.ALLOW_ALL))
    run, fx = Run("everflow-schedule:s", "run-1", 0, REGISTRY), Effects()
    args = conv.to_payloads([schedule, created_carry(asked)])
    run.start(WorkflowStarted(SCHEDULE_WORKFLOW, "q", args, "cmd-1"), T0, fx)
    assert children(fx) == [tick(T0 - 2000), tick(T0 - 1000), tick(T0)]
    assert describe(run)["created_at"] == asked.isoformat()
