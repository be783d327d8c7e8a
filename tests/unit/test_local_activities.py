"""Local activities in the pure core: attempts go to the hosting worker's executor (not to a
tasks topic), outcomes are recorded like a runner's, short retries wait in the worker and
long ones on a durable timer, a restored run runs an unrecorded attempt again, and the
wire keeps the flag (and reads histories written before it)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from processors.run.state import Effects, Run, replay_history
from processors.workflow_code.registry import Registry
from streams import RetryPolicy, activity, workflow
from streams.payload import DataConverter
from streams.wire import wire
from streams.wire.events import ActivityScheduled, HistoryEvent, WorkflowStarted
from streams.wire.records import Failure, RunStatus, TimerKind

conv = DataConverter()
SHORT = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)
LONG = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3)


@activity.defn
def debit(account: str) -> str:
    return f"debited {account}"


@workflow.defn
class LocalTransfer:
    @workflow.run
    async def run(self, policy: str) -> str:
        retry = SHORT if policy == "short" else LONG
        a = await workflow.execute_local_activity(
            debit, "alice", start_to_close_timeout=timedelta(seconds=2), retry_policy=retry
        )
        b = await workflow.execute_local_activity(
            debit, "bob", start_to_close_timeout=timedelta(seconds=2), retry_policy=retry
        )
        return f"{a}, {b}"


def registry() -> Registry:
    return Registry([LocalTransfer], [debit])


def start(policy: str = "short") -> tuple[Run, Effects]:
    run, fx = Run("wf-1", "run-1", 3, registry()), Effects()
    run.start(WorkflowStarted("LocalTransfer", "q", conv.to_payloads([policy]), "c-1"), 1000, fx)
    return run, fx


def kinds(fx: Effects) -> list[str]:
    return [type(e.attributes).__name__ for e in fx.events]


def test_a_local_attempt_goes_to_the_executor_not_to_a_tasks_topic() -> None:
    _, fx = start()
    assert kinds(fx) == ["WorkflowStarted", "ActivityScheduled"]
    scheduled = fx.events[1].attributes
    assert isinstance(scheduled, ActivityScheduled) and scheduled.local
    assert scheduled.local_retry_threshold_ms == 1000  # the documented default: 1 s
    assert fx.tasks == []
    (task,) = fx.local_tasks
    assert (task.activity_type, task.attempt, task.partition) == ("debit", 1, 3)
    assert task.idempotency_key == "wf-1/run-1/1" and task.scheduled_at == 1000
    assert conv.from_payloads(task.args) == ["alice"]


def test_outcomes_are_recorded_with_what_the_code_does_next() -> None:
    run, _ = start()
    fx = Effects()
    assert run.complete_activity(1, 1, conv.to_payload("A"), 1010, fx)
    assert kinds(fx) == ["ActivityCompleted", "ActivityScheduled"]
    assert [t.activity_id for t in fx.local_tasks] == [2]
    fx = Effects()
    assert not run.complete_activity(1, 1, conv.to_payload("again"), 1015, fx)  # fenced
    assert run.complete_activity(2, 1, conv.to_payload("B"), 1020, fx)
    assert kinds(fx) == ["ActivityCompleted", "WorkflowCompleted"]
    assert run.status is RunStatus.COMPLETED and conv.from_payload(run.result) == "A, B"


def test_a_short_backoff_is_recorded_at_once_and_waits_in_the_worker() -> None:
    run, _ = start("short")
    fx = Effects()
    assert run.fail_activity(1, 1, Failure("locked", "Busy"), 2000, fx)
    assert kinds(fx) == ["ActivityAttemptFailed", "ActivityRetried"]
    assert fx.timers == []  # no durable timer for a short backoff
    (task,) = fx.local_tasks
    assert (task.attempt, task.scheduled_at) == (2, 2200)  # it may start when the backoff ends
    assert task.idempotency_key == "wf-1/run-1/1"  # the same key on every attempt
    # the new attempt's start-to-close clock starts at the end of its backoff
    (deadline,) = [t for t in fx.derived_timers if t.kind is TimerKind.ACTIVITY_START_TO_CLOSE]
    assert (deadline.attempt, deadline.fire_at) == (2, 4200)
    assert not run.complete_activity(1, 1, conv.to_payload("late"), 2100, Effects())
    assert run.complete_activity(1, 2, conv.to_payload("A"), 2300, Effects())


def test_a_long_backoff_waits_on_a_durable_timer() -> None:
    run, _ = start("long")
    fx = Effects()
    assert run.fail_activity(1, 1, Failure("down", "ConnectionError"), 2000, fx)
    assert kinds(fx) == ["ActivityAttemptFailed"]
    assert fx.local_tasks == []
    (timer,) = fx.timers
    assert (timer.kind, timer.attempt, timer.fire_at) == (TimerKind.ACTIVITY_RETRY, 2, 7000)
    fx = Effects()
    assert run.fire_timer(timer, 7000, fx)
    assert kinds(fx) == ["ActivityRetried"] and fx.tasks == []
    assert [(t.attempt, t.scheduled_at) for t in fx.local_tasks] == [(2, 7000)]


def test_an_attempt_that_times_out_is_retried_and_its_late_outcome_dropped() -> None:
    run, fx = start("short")
    (deadline,) = [t for t in fx.derived_timers if t.kind is TimerKind.ACTIVITY_START_TO_CLOSE]
    fx = Effects()
    assert run.fire_timer(deadline, deadline.fire_at, fx)
    assert kinds(fx) == ["ActivityAttemptFailed", "ActivityRetried"]
    assert [t.attempt for t in fx.local_tasks] == [2]
    assert not run.complete_activity(1, 1, conv.to_payload("too late"), 3500, Effects())


def test_a_restored_run_runs_an_unrecorded_attempt_again_under_the_same_key() -> None:
    run, _ = start("short")
    run.fail_activity(1, 1, Failure("locked", "Busy"), 2000, Effects())
    restored = Run("wf-1", "run-1", 3, registry())
    for event in run.events:
        restored.apply(event)
    (task,) = restored.activities.local_attempts()
    assert (task.activity_id, task.attempt, task.scheduled_at) == (1, 2, 2200)
    assert task.idempotency_key == "wf-1/run-1/1"
    fx = Effects()
    assert restored.complete_activity(1, 2, conv.to_payload("A"), 2300, fx)  # replays the code
    assert kinds(fx) == ["ActivityCompleted", "ActivityScheduled"]
    # a closed run has nothing to run again
    restored.complete_activity(2, 1, conv.to_payload("B"), 2400, Effects())
    assert restored.activities.local_attempts() == []


def test_a_recorded_history_with_local_activities_replays() -> None:
    run, _ = start("short")
    run.fail_activity(1, 1, Failure("locked", "Busy"), 2000, Effects())
    run.complete_activity(1, 2, conv.to_payload("A"), 2300, Effects())
    run.complete_activity(2, 1, conv.to_payload("B"), 2400, Effects())
    outcome = replay_history(run.events, registry())
    assert outcome.error is None and outcome.workflow_type == "LocalTransfer"
    # the same code with a regular activity where the history has a local one diverges
    outcome = replay_history(run.events, Registry([RegularTransfer], [debit]))
    assert outcome.error is not None
    assert "ActivityScheduled('debit', local)" in outcome.error


@workflow.defn(name="LocalTransfer")
class RegularTransfer:
    @workflow.run
    async def run(self, policy: str) -> str:
        a = await workflow.execute_activity(
            debit, "alice", start_to_close_timeout=timedelta(seconds=2)
        )
        return a


def test_the_local_flag_travels_on_the_wire() -> None:
    run, _ = start()
    event = run.events[1]
    w = wire()
    decoded = w.event.decode(w.event.encode(event))
    assert isinstance(decoded, HistoryEvent) and decoded == event
    assert isinstance(decoded.attributes, ActivityScheduled) and decoded.attributes.local


def test_execute_local_activity_needs_a_timeout() -> None:
    with pytest.raises(ValueError, match="start_to_close_timeout or schedule_to_close_timeout"):
        import asyncio

        asyncio.run(workflow.execute_local_activity(debit, "x"))


def test_events_written_before_local_activities_read_as_regular_ones() -> None:
    """The history schema before local activities (archived as everflow.HistoryEvent.
    083c0a3bfe5e215e) still reads: its activities are regular."""
    from streams.wire import Wire
    from streams.wire.avro import SchemaRegistry

    registry = SchemaRegistry()
    old_id = 0x083C0A3BFE5E215E
    assert old_id in registry.writers
    w = Wire(registry)
    scheduled = {
        "activity_id": 1, "activity_type": "withdraw", "task_queue": "q", "args": [],
        "start_to_close_timeout_ms": 1000, "schedule_to_close_timeout_ms": None,
        "retry_policy": {
            "initial_interval_ms": 1000, "backoff_coefficient": 2.0,
            "maximum_interval_ms": None, "maximum_attempts": 0,
            "non_retryable_error_types": [],
        },
        "schedule_to_start_timeout_ms": None, "heartbeat_timeout_ms": None,
        "cancellation_type": "try_cancel", "source": None, "trace": {},
    }  # fmt: skip
    raw = w.event.encode_with(
        old_id,
        {
            "workflow_id": "wf",
            "run_id": "r",
            "event_id": 2,
            "time": 5,
            "attributes": ("everflow.history.ActivityScheduled", scheduled),
        },
    )
    event = w.event.decode(raw)
    assert isinstance(event.attributes, ActivityScheduled)
    assert event.attributes.local_retry_threshold_ms is None and not event.attributes.local


def test_the_local_wait_is_a_setting_read_once_and_checked() -> None:
    from streams.errors import ConfigError
    from streams.settings import WorkerSettings

    assert WorkerSettings(instance_id="w").local_activity_wait == 0.005
    env = {"EVERFLOW_INSTANCE_ID": "w", "EVERFLOW_LOCAL_ACTIVITY_WAIT": "0.25"}
    assert WorkerSettings.from_env(env).local_activity_wait == 0.25
    with pytest.raises(ConfigError, match="local_activity_wait must be >= 0"):
        WorkerSettings.from_env({**env, "EVERFLOW_LOCAL_ACTIVITY_WAIT": "-1"})


@activity.defn
def keyed(account: str) -> str:
    info = activity.info()
    if account == "broken":
        raise ConnectionError(f"down for {info.idempotency_key}")
    return f"{account} {info.idempotency_key} attempt {info.attempt}"


@activity.defn
async def keyed_async(account: str) -> str:
    return f"async {account} {activity.info().idempotency_key}"


def test_the_executor_runs_attempts_off_the_caller_thread_and_queues_their_outcomes() -> None:
    from processors.workflow_processor.local_activities import LocalActivities
    from streams.wire.commands import CompleteActivity, FailActivity
    from streams.wire.records import ActivityTask

    def task(activity_type: str, account: str, activity_id: int) -> ActivityTask:
        return ActivityTask(
            workflow_id="wf-9", run_id="r-9", workflow_type="T", activity_id=activity_id,
            activity_type=activity_type, attempt=2, args=conv.to_payloads([account]),
            partition=5, scheduled_at=0, start_to_close_timeout_ms=1000,
            idempotency_key=f"wf-9/r-9/{activity_id}",
        )  # fmt: skip

    local = LocalActivities(Registry([], [keyed, keyed_async]), threads=2)
    try:
        local.submit(5, task("keyed", "alice", 1))
        local.submit(5, task("keyed", "broken", 2))
        local.submit(5, task("keyed_async", "bob", 3))
        local.submit(5, task("unregistered", "x", 4))
        outcomes = []
        while len(outcomes) < 4:
            got = local.wait(30)
            assert got, "an outcome never came"
            outcomes.extend(got)
        assert local.running == 0
        by_id = {body.activity_id: (p, wf, body) for p, wf, body in outcomes}
        p, wf, ok = by_id[1]
        assert (p, wf) == (5, "wf-9") and isinstance(ok, CompleteActivity)
        assert conv.from_payload(ok.result) == "alice wf-9/r-9/1 attempt 2"
        failed = by_id[2][2]
        assert isinstance(failed, FailActivity) and failed.failure.type == "ConnectionError"
        assert "wf-9/r-9/2" in failed.failure.message and failed.attempt == 2
        done_async = by_id[3][2]
        assert isinstance(done_async, CompleteActivity)
        assert conv.from_payload(done_async.result) == "async bob wf-9/r-9/3"
        unknown = by_id[4][2]
        assert isinstance(unknown, FailActivity) and "unregistered" in unknown.failure.message
    finally:
        local.close()


def test_audit_and_the_ui_history_views_understand_local_activities() -> None:
    from processors.audit import Auditor
    from streams.ui.history import compact, timeline

    run, _ = start("short")
    run.fail_activity(1, 1, Failure("locked", "Busy"), 2000, Effects())
    run.complete_activity(1, 2, conv.to_payload("A"), 2300, Effects())
    run.complete_activity(2, 1, conv.to_payload("B"), 2400, Effects())
    auditor = Auditor()
    for event in run.events:
        auditor.feed(event, "history/3/0")
    assert auditor.violations == [] and auditor.events == len(run.events)
    rows = compact(run.events)
    debit_1 = rows[0]
    assert debit_1.steps == ["scheduled locally", "failed #1", "retried #2", "completed"]
    assert debit_1.state == "completed" and debit_1.attempts == 2
    assert "debit #1 (local)" in timeline(run.events, 2500).lanes


def test_an_operator_retry_of_a_long_local_backoff_starts_the_attempt_now() -> None:
    run, _ = start("long")
    run.fail_activity(1, 1, Failure("down", "ConnectionError"), 2000, Effects())
    fx = Effects()
    run.activities.retry(run.activities.open[1], "fixed the bank", 3000, fx)
    assert kinds(fx) == ["ActivityReset", "ActivityRetried"]
    assert [(t.attempt, t.scheduled_at) for t in fx.local_tasks] == [(2, 3000)]
