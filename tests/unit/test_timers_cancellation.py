"""The pure core for timers, timeouts, heartbeats, cancellation and termination."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from processors.run.state import Effects, Run
from processors.workflow_code.registry import Registry
from streams import ActivityError, ActivityTimeoutError, RetryPolicy, activity, workflow
from streams.payload import DataConverter
from streams.testing import WorkflowEnvironment
from streams.wire.events import HistoryEvent, TimerFired, TimerStarted, WorkflowStarted
from streams.wire.records import Failure, RunStatus, Timer, TimerKind

conv = DataConverter()
ONCE = RetryPolicy(maximum_attempts=1)
TWICE = RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=2)


@activity.defn
def work(x: str) -> str:
    return x


@workflow.defn
class WaitForWork:
    @workflow.run
    async def run(self, timeout_s: float) -> str:
        self.done = False

        async def background() -> None:
            await workflow.execute_activity(work, "x", start_to_close_timeout=timedelta(seconds=9))
            self.done = True

        task = asyncio.ensure_future(background())
        try:
            await workflow.wait_condition(lambda: self.done, timeout=timedelta(seconds=timeout_s))
            return "done"
        except TimeoutError:
            task.cancel()
            return "timed out"


@workflow.defn
class Sleepy:
    @workflow.run
    async def run(self) -> str:
        await asyncio.sleep(60)  # plain asyncio: a durable timer too
        return "woke"


@workflow.defn
class Transfer:
    @workflow.run
    async def run(self) -> str:
        await workflow.execute_activity(
            work, "withdraw", start_to_close_timeout=timedelta(seconds=9)
        )
        try:
            await workflow.execute_activity(
                work,
                "deposit",
                start_to_close_timeout=timedelta(seconds=9),
                heartbeat_timeout=timedelta(seconds=2),
            )
        except asyncio.CancelledError:
            # cleanup runs even though the run was canceled
            await workflow.execute_activity(
                work, "refund", start_to_close_timeout=timedelta(seconds=9)
            )
            raise
        return "ok"


@workflow.defn
class Timeouts:
    @workflow.run
    async def run(self, kind: str) -> str:
        options = {
            "start_to_close": {
                "start_to_close_timeout": timedelta(seconds=5),
                "retry_policy": TWICE,
            },
            "schedule_to_start": {
                "start_to_close_timeout": timedelta(seconds=5),
                "schedule_to_start_timeout": timedelta(seconds=1),
                "retry_policy": ONCE,
            },
            "heartbeat": {
                "start_to_close_timeout": timedelta(seconds=60),
                "heartbeat_timeout": timedelta(seconds=2),
                "retry_policy": ONCE,
            },
            "schedule_to_close": {"schedule_to_close_timeout": timedelta(seconds=3)},
        }[kind]
        try:
            await workflow.execute_activity(work, "w", **options)  # type: ignore[arg-type]
        except ActivityError as e:
            assert isinstance(e.cause, ActivityTimeoutError)
            return f"timeout:{e.cause.timeout_type}"
        return "finished"


REGISTRY = Registry([WaitForWork, Sleepy, Transfer, Timeouts], [work])


def start(cls: type, *args: object, run_timeout_ms: int | None = None) -> tuple[Run, Effects]:
    run, fx = Run("wf", "r1", 0, REGISTRY), Effects()
    name = workflow.WorkflowDefinition.of(cls).name
    started = WorkflowStarted(name, "q", conv.to_payloads(list(args)), "c", None, run_timeout_ms)
    run.start(started, 1000, fx)
    return run, fx


def kinds(fx: Effects) -> list[str]:
    return [type(e.attributes).__name__ for e in fx.events]


def replays_cleanly(run: Run) -> None:
    copy = Run(run.workflow_id, run.run_id, 0, REGISTRY)
    for e in run.events:
        copy.apply(e)
    copy.status = RunStatus.RUNNING
    copy.replay()  # raises NonDeterminismError on any mismatch


def test_wait_condition_met_in_time_cancels_its_timeout_timer() -> None:
    run, fx = start(WaitForWork, 10.0)
    assert kinds(fx) == ["WorkflowStarted", "TimerStarted", "ActivityScheduled"]
    fx = Effects()
    run.complete_activity(1, 1, conv.to_payload("x"), 2000, fx)
    assert kinds(fx) == ["ActivityCompleted", "TimerCanceled", "WorkflowCompleted"]
    assert conv.from_payload(run.result) == "done"
    assert fx.cleared_timers and run.timers.pending == {}
    replays_cleanly(run)


def test_wait_condition_timing_out_raises_timeout_error_in_the_workflow() -> None:
    run, fx = start(WaitForWork, 10.0)
    timer = next(t for t in fx.timers if t.kind is TimerKind.USER_TIMER)
    fx = Effects()
    assert run.fire_timer(timer, 11000, fx)
    # the background job is canceled in the step that closes the run: asked to stop first
    assert kinds(fx) == ["TimerFired", "ActivityCancelRequested", "WorkflowCompleted"]
    assert conv.from_payload(run.result) == "timed out"
    replays_cleanly(run)


def test_asyncio_sleep_is_a_durable_timer() -> None:
    async def body() -> tuple[str, list[HistoryEvent]]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Sleepy]) as env:
            handle = await env.client.start_workflow(Sleepy.run, id="wf", task_queue="q")
            return await handle.result(), await handle.fetch_history()

    result, history = asyncio.run(body())
    (timer,) = [e.attributes for e in history if isinstance(e.attributes, TimerStarted)]
    assert timer.fire_at == history[0].time + 60000  # a user timer, as workflow.sleep's
    assert any(isinstance(e.attributes, TimerFired) for e in history)
    assert result == "woke"


def test_cancel_during_sleep_cancels_the_timer_and_closes_canceled() -> None:
    run, fx = start(Sleepy)
    timer = fx.timers[0]
    fx = Effects()
    assert run.cancel("user asked", 2000, fx)
    assert kinds(fx) == ["WorkflowCancelRequested", "TimerCanceled", "WorkflowCanceled"]
    assert run.status is RunStatus.CANCELED and fx.completions[0].status is RunStatus.CANCELED
    assert timer.key in fx.cleared_timers
    assert not run.fire_timer(timer, 61000, Effects())  # the old timer is stale
    replays_cleanly(run)


def test_cancel_during_an_activity_requests_it_to_stop_and_compensation_still_runs() -> None:
    run, _ = start(Transfer)
    run.complete_activity(1, 1, conv.to_payload("w"), 1500, Effects())
    fx = Effects()
    run.cancel("", 2000, fx)
    assert kinds(fx) == ["WorkflowCancelRequested", "ActivityScheduled", "ActivityCancelRequested"]
    assert fx.tasks[0][1].activity_type == "work" and run.status is RunStatus.RUNNING
    # the deposit learns it on its next heartbeat
    assert run.heartbeat_activity(2, 1, [], 2100, Effects())
    fx = Effects()
    run.complete_activity(3, 1, conv.to_payload("refunded"), 3000, fx)
    assert kinds(fx) == ["ActivityCompleted", "WorkflowCanceled"]
    assert run.status is RunStatus.CANCELED
    # the deposit's late outcome is dropped
    assert not run.complete_activity(2, 1, conv.to_payload("late"), 3100, Effects())
    replays_cleanly(run)


def test_cancel_of_a_closed_run_does_nothing() -> None:
    run, fx = start(Sleepy)
    run.fire_timer(fx.timers[0], 61000, Effects())
    assert not run.cancel("", 70000, Effects())


def test_terminate_ends_the_run_at_once_without_running_code() -> None:
    run, fx = start(Sleepy)
    fx = Effects()
    assert run.terminate("operator", 2000, fx)
    assert kinds(fx) == ["WorkflowTerminated"]
    assert run.status is RunStatus.TERMINATED and run.failure is not None
    assert fx.completions[0].status is RunStatus.TERMINATED
    assert any(k.endswith("t1") for k in fx.cleared_timers)


def test_run_timeout_ends_the_run_timed_out() -> None:
    run, fx = start(Sleepy, run_timeout_ms=5000)
    deadline = next(t for t in fx.derived_timers if t.kind is TimerKind.WORKFLOW_RUN_TIMEOUT)
    assert deadline.fire_at == 6000
    fx = Effects()
    assert run.fire_timer(deadline, 6000, fx)
    assert kinds(fx) == ["WorkflowTimedOut"] and run.status is RunStatus.TIMED_OUT
    assert fx.completions[0].failure.timeout_type == "run"  # type: ignore[union-attr]


def fire_derived(run: Run, fx: Effects, kind: TimerKind, now: int | None = None) -> Effects:
    timer = next(t for t in fx.derived_timers if t.kind is kind)
    out = Effects()
    assert run.fire_timer(timer, now or timer.fire_at, out)
    return out


def test_start_to_close_timeout_retries_then_surfaces_as_activity_error() -> None:
    run, fx = start(Timeouts, "start_to_close")
    out = fire_derived(run, fx, TimerKind.ACTIVITY_START_TO_CLOSE)
    assert kinds(out) == ["ActivityAttemptFailed"]
    retry = out.timers[0]
    out = Effects()
    run.fire_timer(retry, retry.fire_at, out)
    assert kinds(out) == ["ActivityRetried"] and out.tasks[0][1].attempt == 2
    # the timed-out attempt's late result is dropped
    assert not run.complete_activity(1, 1, conv.to_payload("late"), 9000, Effects())
    out = fire_derived(run, out, TimerKind.ACTIVITY_START_TO_CLOSE)
    assert kinds(out) == ["ActivityFailed", "WorkflowCompleted"]
    assert conv.from_payload(run.result) == "timeout:start_to_close"
    replays_cleanly(run)


def test_schedule_to_start_timeout_fires_when_no_runner_picks_the_task_up() -> None:
    run, fx = start(Timeouts, "schedule_to_start")
    assert fx.tasks[0][1].report_start
    kinds_armed = {t.kind for t in fx.derived_timers}
    assert TimerKind.ACTIVITY_START_TO_CLOSE not in kinds_armed  # clocks from the start
    out = fire_derived(run, fx, TimerKind.ACTIVITY_SCHEDULE_TO_START)
    assert conv.from_payload(run.result) == "timeout:schedule_to_start"
    assert kinds(out)[0] == "ActivityFailed"


def test_a_started_attempt_is_timed_from_its_start() -> None:
    run, fx = start(Timeouts, "schedule_to_start")
    out = Effects()
    assert run.start_activity(1, 1, 1500, out)
    assert kinds(out) == ["ActivityStarted"]
    stc = next(t for t in out.derived_timers if t.kind is TimerKind.ACTIVITY_START_TO_CLOSE)
    assert stc.fire_at == 6500
    stale = next(t for t in fx.derived_timers if t.kind is TimerKind.ACTIVITY_SCHEDULE_TO_START)
    assert not run.fire_timer(stale, stale.fire_at, Effects())


def test_heartbeats_push_the_heartbeat_deadline_and_a_silent_attempt_times_out() -> None:
    run, fx = start(Timeouts, "heartbeat")
    first = next(t for t in fx.derived_timers if t.kind is TimerKind.ACTIVITY_HEARTBEAT)
    assert first.fire_at == 3000
    out = Effects()
    assert not run.heartbeat_activity(1, 1, conv.to_payloads([{"page": 7}]), 2500, out)
    assert kinds(out) == ["ActivityHeartbeatRecorded"]
    assert not run.fire_timer(first, 3000, Effects())  # stale: a newer heartbeat
    out2 = fire_derived(run, out, TimerKind.ACTIVITY_HEARTBEAT)  # 4500, nothing since
    assert conv.from_payload(run.result) == "timeout:heartbeat"
    assert kinds(out2)[0] == "ActivityFailed"


def test_heartbeat_details_go_to_the_next_attempt() -> None:
    run, _fx = start(Timeouts, "start_to_close")
    run.heartbeat_activity(1, 1, conv.to_payloads([{"page": 7}]), 1500, Effects())
    out = Effects()
    run.fail_activity(1, 1, Failure("worker died", "ConnectionError"), 1600, out)
    retry = Effects()
    run.fire_timer(out.timers[0], out.timers[0].fire_at, retry)
    task = retry.tasks[0][1]
    assert task.attempt == 2 and conv.from_payloads(task.heartbeat_details) == [{"page": 7}]


def test_schedule_to_close_covers_every_attempt() -> None:
    run, fx = start(Timeouts, "schedule_to_close")
    out = fire_derived(run, fx, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE)
    assert kinds(out) == ["ActivityFailed", "WorkflowCompleted"]
    assert conv.from_payload(run.result) == "timeout:schedule_to_close"


def test_derived_timers_are_recomputed_after_a_restore() -> None:
    run, _ = start(Timeouts, "heartbeat")
    run.heartbeat_activity(1, 1, [], 2500, Effects())
    restored = Run("wf", "r1", 0, REGISTRY)
    for e in run.events:
        restored.apply(e)
    deadlines = {t.kind: t.fire_at for t in restored.derived_timers()}
    assert deadlines[TimerKind.ACTIVITY_HEARTBEAT] == 4500
    assert deadlines[TimerKind.ACTIVITY_START_TO_CLOSE] == 61000


def test_a_timer_of_another_run_is_stale() -> None:
    run, _ = start(Sleepy)
    other = Timer("wf", "r0", TimerKind.USER_TIMER, 1, 0, 5)
    assert not run.fire_timer(other, 61000, Effects())


@workflow.defn
class CancelTypes:
    @workflow.run
    async def run(self, how: str) -> str:
        kind = workflow.ActivityCancellationType(how)
        try:
            await workflow.execute_activity(
                work, "job", start_to_close_timeout=timedelta(seconds=9), cancellation_type=kind
            )
        except asyncio.CancelledError:
            return f"stopped waiting ({how})"
        return "finished"


CANCEL_TYPES = Registry([CancelTypes], [work])


def start_types(how: str) -> Run:
    run, fx = Run("wf", "r1", 0, CANCEL_TYPES), Effects()
    started = WorkflowStarted("CancelTypes", "q", conv.to_payloads([how]), "c")
    run.start(started, 1000, fx)
    return run


def test_abandon_stops_waiting_without_asking_the_activity_to_stop() -> None:
    run = start_types("abandon")
    fx = Effects()
    run.cancel("", 2000, fx)
    assert kinds(fx) == ["WorkflowCancelRequested", "WorkflowCompleted"]
    assert conv.from_payload(run.result) == "stopped waiting (abandon)"


# "cancelled": the kind a runner wrote before the wire settled on one spelling
@pytest.mark.parametrize("kind", ["canceled", "cancelled"])
def test_wait_cancellation_completed_waits_until_the_activity_stopped(kind: str) -> None:
    run = start_types("wait_cancellation_completed")
    fx = Effects()
    run.cancel("", 2000, fx)
    assert kinds(fx) == ["WorkflowCancelRequested", "ActivityCancelRequested"]
    assert run.status is RunStatus.RUNNING  # still waiting for the activity
    fx = Effects()
    canceled = Failure("stopped", "CancelledError", kind=kind, non_retryable=True)
    assert run.fail_activity(1, 1, canceled, 3000, fx)
    assert kinds(fx) == ["ActivityCanceled", "WorkflowCompleted"]
    assert conv.from_payload(run.result) == "stopped waiting (wait_cancellation_completed)"
    copy = Run("wf", "r1", 0, CANCEL_TYPES)
    for e in run.events:
        copy.apply(e)
    copy.status = RunStatus.RUNNING
    copy.replay()


def test_try_cancel_stops_waiting_at_once_and_asks_the_activity_to_stop() -> None:
    run = start_types("try_cancel")
    fx = Effects()
    run.cancel("", 2000, fx)
    assert kinds(fx) == ["WorkflowCancelRequested", "ActivityCancelRequested", "WorkflowCompleted"]
