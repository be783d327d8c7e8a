"""The pure core: commands and timers in, history events and outbound messages out."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from processors.run.state import Effects, Run
from processors.workflow_code.registry import Registry
from streams import (
    ActivityError,
    ApplicationError,
    PayloadTooLargeError,
    RetryPolicy,
    WorkflowFailureError,
    activity,
    workflow,
)
from streams.payload import DataConverter, Payload
from streams.settings import RunLimits
from streams.testing import WorkflowEnvironment
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityFailed,
    ActivityRetried,
    ActivityScheduled,
    TimerFired,
    TimerStarted,
    WorkflowBlocked,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowUnblocked,
)
from streams.wire.records import Failure, RunStatus, Timer, TimerKind

conv = DataConverter()
POLICY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3)


@activity.defn
def step(name: str) -> str:
    return name


@workflow.defn
class TwoSteps:
    @workflow.run
    async def run(self, prefix: str) -> str:
        a = await workflow.execute_activity(
            step, f"{prefix}-a", start_to_close_timeout=timedelta(seconds=5), retry_policy=POLICY
        )
        b = await workflow.execute_activity(
            step, f"{prefix}-b", start_to_close_timeout=timedelta(seconds=5), retry_policy=POLICY
        )
        return f"{a}+{b}"


@workflow.defn
class Compensating:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(
                step, "risky", start_to_close_timeout=timedelta(seconds=5), retry_policy=POLICY
            )
        except ActivityError as e:
            await workflow.execute_activity(
                step, "undo", start_to_close_timeout=timedelta(seconds=5)
            )
            raise ApplicationError(f"compensated: {e.cause}", type="Compensated") from None
        return "ok"


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self) -> str:
        before = workflow.now()
        await workflow.sleep(timedelta(seconds=30))
        return f"{(workflow.now() - before).total_seconds():.0f}"


@workflow.defn
class ReadsClock:
    @workflow.run
    async def run(self) -> float:
        return time.time()


@workflow.defn
class Buggy:
    @workflow.run
    async def run(self) -> str:
        raise KeyError("bug in workflow code")


def new_run(
    cls: type, *args: object, registry: Registry | None = None
) -> tuple[Run, Effects, Registry]:
    registry = registry or Registry([TwoSteps, Compensating, Sleeper, ReadsClock, Buggy], [step])
    run, fx = Run("wf-1", "run-1", 2, registry), Effects()
    name = workflow.WorkflowDefinition.of(cls).name
    run.start(WorkflowStarted(name, "q", conv.to_payloads(list(args)), "cmd-1"), 1000, fx)
    return run, fx, registry


def kinds(fx: Effects) -> list[str]:
    return [type(e.attributes).__name__ for e in fx.events]


def test_start_records_the_start_and_schedules_the_first_activity_on_the_run_partition() -> None:
    run, fx, _ = new_run(TwoSteps, "x")
    assert kinds(fx) == ["WorkflowStarted", "ActivityScheduled"]
    queue, task = fx.tasks[0]
    assert (queue, task.activity_type, task.attempt, task.partition) == ("q", "step", 1, 2)
    assert conv.from_payloads(task.args) == ["x-a"]
    assert task.idempotency_key == "wf-1/run-1/1"
    assert [e.event_id for e in run.events] == [1, 2]


def test_results_drive_the_code_to_completion_with_a_completion_record() -> None:
    run, _, _ = new_run(TwoSteps, "x")
    fx = Effects()
    assert run.complete_activity(1, 1, conv.to_payload("A"), 2000, fx)
    assert kinds(fx) == ["ActivityCompleted", "ActivityScheduled"]
    fx = Effects()
    assert run.complete_activity(2, 1, conv.to_payload("B"), 3000, fx)
    assert kinds(fx) == ["ActivityCompleted", "WorkflowCompleted"]
    assert run.status is RunStatus.COMPLETED and conv.from_payload(run.result) == "A+B"
    (done,) = fx.completions
    assert done.status is RunStatus.COMPLETED and done.history_length == 6


def test_duplicate_and_late_results_are_dropped() -> None:
    run, _, _ = new_run(TwoSteps, "x")
    assert run.complete_activity(1, 1, conv.to_payload("A"), 2000, Effects())
    fx = Effects()
    assert not run.complete_activity(1, 1, conv.to_payload("A again"), 2100, fx)
    assert not run.complete_activity(2, 7, conv.to_payload("wrong attempt"), 2100, fx)
    assert not run.complete_activity(9, 1, conv.to_payload("unknown"), 2100, fx)
    assert fx.events == []


def test_failed_attempt_waits_on_a_durable_backoff_timer_then_retries() -> None:
    run, _, _ = new_run(TwoSteps, "x")
    fx = Effects()
    assert run.fail_activity(1, 1, Failure("down", "ConnectionError"), 2000, fx)
    assert kinds(fx) == ["ActivityAttemptFailed"]
    (timer,) = fx.timers
    assert (timer.kind, timer.attempt, timer.fire_at) == (TimerKind.ACTIVITY_RETRY, 2, 2100)
    # a result for the failed attempt is late now
    assert not run.complete_activity(1, 1, conv.to_payload("late"), 2050, Effects())
    fx = Effects()
    assert run.fire_timer(timer, 2100, fx)
    assert kinds(fx) == ["ActivityRetried"]
    assert fx.tasks[0][1].attempt == 2 and fx.cleared_timers == [timer.key]
    assert not run.fire_timer(timer, 2200, Effects())  # fires once
    assert run.complete_activity(1, 2, conv.to_payload("A"), 2300, Effects())


@activity.defn(name="step")
def step_down_or_closed(name: str) -> str:
    """A double of `step`: "risky" fails as STEP_FAILURE says, the compensation succeeds."""
    if name == "risky":
        raise STEP_FAILURE[0]
    return f"{name}ne"


STEP_FAILURE: list[Exception] = []


def compensate_in_env(failure: Exception) -> tuple[WorkflowFailureError, list[str]]:
    """Runs Compensating in the time-skipping environment with `step` failing as told;
    the run's failure and the kinds of its history events."""
    STEP_FAILURE[:] = [failure]

    async def body() -> tuple[WorkflowFailureError, list[str]]:
        async with await WorkflowEnvironment.start_time_skipping(
            workflows=[Compensating], activities=[step_down_or_closed]
        ) as env:
            handle = await env.client.start_workflow(
                Compensating.run, id="wf-1", task_queue=env.task_queue
            )
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
            history = await handle.fetch_history()
            return failed.value, [type(e.attributes).__name__ for e in history]

    return asyncio.run(body())


def test_exhausted_attempts_raise_activity_error_which_the_workflow_can_catch() -> None:
    failed, history = compensate_in_env(ConnectionError("down"))
    assert history.count("ActivityAttemptFailed") == 2 and history.count("ActivityRetried") == 2
    assert history[-4:] == [
        "ActivityFailed",
        "ActivityScheduled",  # the compensation
        "ActivityCompleted",
        "WorkflowFailed",
    ]
    assert isinstance(failed.cause, ApplicationError) and failed.cause.type == "Compensated"
    assert "down" in str(failed.cause)
    assert failed.status == RunStatus.FAILED.value


def test_non_retryable_failure_fails_the_activity_at_once() -> None:
    closed = ApplicationError("closed", type="AccountClosed", non_retryable=True)
    _, history = compensate_in_env(closed)
    assert history == [
        "WorkflowStarted",
        "ActivityScheduled",
        "ActivityFailed",
        "ActivityScheduled",
        "ActivityCompleted",
        "WorkflowFailed",
    ]  # no attempt failed on a timer: it failed at once


def test_durable_sleep_records_a_timer_and_resumes_with_recorded_time() -> None:
    async def body() -> tuple[str, list[Any]]:
        async with await WorkflowEnvironment.start_time_skipping(workflows=[Sleeper]) as env:
            handle = await env.client.start_workflow(
                Sleeper.run, id="wf-1", task_queue=env.task_queue
            )
            return await handle.result(), await handle.fetch_history()

    result, history = asyncio.run(body())
    assert [type(e.attributes).__name__ for e in history] == [
        "WorkflowStarted",
        "TimerStarted",
        "TimerFired",
        "WorkflowCompleted",
    ]
    started = history[1].attributes
    assert isinstance(started, TimerStarted) and started.fire_at == history[0].time + 30000
    assert result == "30"


def test_replay_of_recorded_history_issues_the_same_commands() -> None:
    run, _, reg = new_run(TwoSteps, "x")
    run.complete_activity(1, 1, conv.to_payload("A"), 2000, Effects())
    restored = Run("wf-1", "run-1", 2, reg)
    for e in run.events:
        restored.apply(e)
    fx = Effects()
    restored.complete_activity(2, 1, conv.to_payload("B"), 3000, fx)
    assert kinds(fx) == ["ActivityCompleted", "WorkflowCompleted"]
    assert conv.from_payload(restored.result) == "A+B"


@workflow.defn(name="TwoSteps")
class TwoStepsReordered:
    @workflow.run
    async def run(self, prefix: str) -> str:
        await workflow.sleep(timedelta(seconds=1))  # changed code: a timer first
        return "changed"


def test_changed_code_is_detected_on_replay_and_blocks_the_run_without_failing_it() -> None:
    run, _, _ = new_run(TwoSteps, "x")
    changed = Registry([TwoStepsReordered], [step])
    restored = Run("wf-1", "run-1", 2, changed)
    for e in run.events:
        restored.apply(e)
    fx = Effects()
    restored.complete_activity(1, 1, conv.to_payload("A"), 2000, fx)
    assert kinds(fx) == ["WorkflowBlocked", "ActivityCompleted"]
    blocked = fx.events[0].attributes
    assert isinstance(blocked, WorkflowBlocked) and blocked.reason == "non_determinism"
    msg = blocked.failure.message
    assert "event 2" in msg and "ActivityScheduled('step')" in msg and "TimerStarted" in msg
    assert "test_run_core.py:" in msg  # the file:line of the divergent command
    assert restored.status is RunStatus.RUNNING and restored.blocked is not None
    # the original code deployed again: the run replays cleanly and resumes
    fx = Effects()
    original = Registry([TwoSteps], [step])
    assert restored.try_unblock(3000, fx, code=original)
    assert kinds(fx) == ["WorkflowUnblocked", "ActivityScheduled"]


def test_clock_call_in_workflow_code_blocks_the_run_naming_the_replacement() -> None:
    run, fx, _ = new_run(ReadsClock)
    assert kinds(fx) == ["WorkflowStarted", "WorkflowBlocked"]
    failure = run.blocked
    assert failure is not None and "time.time()" in failure.message
    assert "workflow.now()" in failure.message


def test_a_bug_in_workflow_code_blocks_the_run_instead_of_failing_it() -> None:
    run, fx, _ = new_run(Buggy)
    assert kinds(fx)[-1] == "WorkflowBlocked"
    assert run.status is RunStatus.RUNNING and "bug in workflow code" in run.blocked.message  # type: ignore[union-attr]


def test_unknown_workflow_type_blocks_with_a_clear_message() -> None:
    run, fx, _ = new_run(TwoSteps, "x", registry=Registry([Sleeper], [step]))
    assert kinds(fx) == ["WorkflowStarted", "WorkflowBlocked"]
    assert "not registered on this worker" in run.blocked.message  # type: ignore[union-attr]


def test_stale_timer_of_a_closed_run_does_nothing() -> None:
    run, fx, _ = new_run(Sleeper)
    run.fire_timer(fx.timers[0], 31000, Effects())
    assert not run.fire_timer(fx.timers[0], 32000, Effects())
    other = Timer("wf-1", "another-run", TimerKind.USER_TIMER, 1, 0, 1)
    assert not run.fire_timer(other, 32000, Effects())


def test_every_event_type_folds_into_state() -> None:
    run = Run("wf", "r", 0, Registry([TwoSteps], [step]))
    from streams.wire.events import HistoryEvent

    seq = [
        WorkflowStarted("T", "q", [], "c"),
        ActivityScheduled(1, "a", "q", [], 1, None, POLICY),
        ActivityAttemptFailed(1, 1, Failure("x", "E"), 5),
        ActivityRetried(1, 2),
        ActivityCompleted(1, 2, conv.to_payload(1)),
        ActivityScheduled(2, "a", "q", [], 1, None, POLICY),
        ActivityFailed(2, 1, Failure("x", "E")),
        TimerStarted(1, 50),
        TimerFired(1),
        WorkflowBlocked("workflow_error", Failure("x", "E")),
        WorkflowUnblocked(),
        WorkflowFailed(Failure("bye", "E")),
    ]
    for i, attrs in enumerate(seq, 1):
        run.apply(HistoryEvent("wf", "r", i, i, attrs))  # type: ignore[arg-type]
        if isinstance(attrs, ActivityAttemptFailed):
            assert run.activities.open[1].backoff
        if isinstance(attrs, ActivityRetried):
            assert run.activities.open[1].attempt == 2 and not run.activities.open[1].backoff
        if isinstance(attrs, TimerStarted):
            assert run.timers.pending == {1: 50}
        if isinstance(attrs, WorkflowBlocked):
            assert run.blocked is not None
    assert run.activities.open == {} and run.timers.pending == {} and run.blocked is None
    assert run.status is RunStatus.FAILED and run.close_time == 12
    run2 = Run("wf", "r", 0, run.registry)
    run2.apply(HistoryEvent("wf", "r", 1, 1, WorkflowStarted("T", "q", [], "c")))
    run2.apply(HistoryEvent("wf", "r", 2, 9, WorkflowCompleted(conv.to_payload("z"))))
    assert run2.status is RunStatus.COMPLETED


def test_execute_activity_needs_a_timeout() -> None:
    @workflow.defn(name="NoTimeout")
    class NoTimeout:
        @workflow.run
        async def run(self) -> None:
            await workflow.execute_activity(step, "x")

    run, _fx, _ = new_run(NoTimeout, registry=Registry([NoTimeout], [step]))
    assert "start_to_close_timeout or schedule_to_close_timeout" in run.blocked.message  # type: ignore[union-attr]


def test_workflow_helpers_outside_a_workflow_raise_a_named_error() -> None:
    with pytest.raises(workflow.NotInWorkflowError, match="only inside workflow code"):
        workflow.now()


@workflow.defn(name="BigArgs")
class BigArgs:
    @workflow.run
    async def run(self) -> str:
        try:
            await workflow.execute_activity(step, "z" * 5000, start_to_close_timeout=timedelta(1))
        except PayloadTooLargeError as e:
            return f"caught: {e}"
        return "sent"


def test_activity_arguments_over_the_limit_raise_in_workflow_code() -> None:
    registry = Registry([BigArgs], [step], limits=RunLimits(max_payload_bytes=1024))
    run, fx, _ = new_run(BigArgs, registry=registry)
    assert kinds(fx) == ["WorkflowStarted", "WorkflowCompleted"]  # nothing was scheduled
    assert "over the limit of 1024 bytes" in conv.from_payload(run.result)


def test_workflow_result_over_the_limit_fails_the_run_clearly() -> None:
    @workflow.defn(name="BigResultWf")
    class BigResultWf:
        @workflow.run
        async def run(self) -> str:
            return "r" * 5000

    run, fx, _ = new_run(
        BigResultWf,
        registry=Registry([BigResultWf], [step], limits=RunLimits(max_payload_bytes=1024)),
    )
    assert kinds(fx) == ["WorkflowStarted", "WorkflowFailed"]
    assert run.failure is not None and "the workflow's result is" in run.failure.message


def _calls_datetime_now() -> object:
    import datetime

    return datetime.datetime.now()


def _calls_random() -> object:
    import random

    return random.randint(1, 6)


def _calls_random_c_method() -> object:
    import random

    return random.random()


def _calls_time_ns() -> object:
    import time

    return time.time_ns()


def _calls_urandom() -> object:
    import os

    return os.urandom(4)


def _calls_uuid4() -> object:
    import uuid

    return uuid.uuid4()


def _calls_open() -> object:
    with open(__file__) as f:
        return f.read(1)


@pytest.mark.parametrize(
    ("call", "named", "replacement"),
    [
        (_calls_datetime_now, "now()", "workflow.now()"),
        (_calls_random, "random", "workflow.random()"),
        (_calls_random_c_method, "random()", "workflow.random()"),
        (_calls_time_ns, "time_ns()", "workflow.now()"),
        (_calls_uuid4, "uuid4()", "workflow.uuid4()"),
        (_calls_urandom, "urandom()", "workflow.random()"),
        (_calls_open, "open()", "an activity"),
    ],
)
def test_non_deterministic_calls_are_stopped_naming_the_replacement(
    call: object, named: str, replacement: str
) -> None:
    @workflow.defn(name="Misuse")
    class Misuse:
        @workflow.run
        async def run(self) -> object:
            try:
                return call()  # type: ignore[operator]
            except Exception:  # swallowing it does not help: the step is still refused
                return "swallowed"

    run, fx, _ = new_run(Misuse, registry=Registry([Misuse], [step]))
    assert kinds(fx) == ["WorkflowStarted", "WorkflowBlocked"]
    message = run.blocked.message  # type: ignore[union-attr]
    assert named in message and replacement in message and "test_run_core.py:" in message


class _NonceCodec:
    """A payload codec that draws a random nonce per payload, as encryption does."""

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [Payload(os.urandom(4) + p.data, {**p.metadata, "nonce": b"4"}) for p in payloads]

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(p.data[4:], {k: v for k, v in p.metadata.items() if k != "nonce"})
            for p in payloads
        ]


def test_a_payload_codec_may_draw_random_nonces_though_workflow_code_may_not() -> None:
    converter = DataConverter([_NonceCodec()])
    registry = Registry([TwoSteps], [step], converter=converter)
    run, fx = Run("wf-1", "run-1", 2, registry), Effects()
    name = workflow.WorkflowDefinition.of(TwoSteps).name
    started = WorkflowStarted(name, "q", converter.to_payloads(["x"]), "cmd-1")
    run.start(started, 1000, fx)
    assert kinds(fx) == ["WorkflowStarted", "ActivityScheduled"]
    assert converter.from_payloads(fx.tasks[0][1].args) == ["x-a"]
