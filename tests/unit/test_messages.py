"""The pure core for signals, queries, updates and continue-as-new."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from processors.run.commands import continue_runs
from processors.run.state import Effects, Run, replay_history
from processors.workflow_code.registry import Registry
from processors.workflow_processor.batch import Batch
from processors.workflow_processor.run_cache import CacheSettings, PartitionRuns
from streams import ApplicationError, QueryError, UnknownHandlerError, activity, workflow
from streams.payload import DataConverter
from streams.settings import RunLimits
from streams.wire.events import TimerStarted, WorkflowStarted
from streams.wire.records import RunStatus

conv = DataConverter()


@activity.defn
def charge(amount: int) -> str:
    return f"charged {amount}"


@workflow.defn
class Subscription:
    def __init__(self) -> None:
        self.status = "active"
        self.events: list[str] = []
        self.canceled = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.canceled)
        await workflow.execute_activity(charge, 0, start_to_close_timeout=timedelta(seconds=5))
        return self.events

    @workflow.signal
    def note(self, text: str) -> None:
        self.events.append(text)

    @workflow.signal(name="cancel_subscription")
    async def cancel(self) -> None:
        self.status = "cancelling"
        self.canceled = True

    @workflow.query
    def current_status(self) -> str:
        return self.status

    @workflow.update
    def set_plan(self, plan: str) -> str:
        self.events.append(f"plan={plan}")
        return f"now on {plan}"

    @set_plan.validator
    def check_plan(self, plan: str) -> None:
        if plan not in ("basic", "pro"):
            raise ApplicationError(f"no such plan {plan!r}")


@workflow.defn
class Counter:
    @workflow.run
    async def run(self, n: int) -> int:
        if n < 3:
            workflow.continue_as_new(n + 1)
        return n


REG = Registry([Subscription, Counter], [charge])


def start(cls: type, *args: object) -> Run:
    run = Run("sub-1", "r1", 0, REG)
    name = workflow.WorkflowDefinition.of(cls).name
    run.start(WorkflowStarted(name, "q", conv.to_payloads(list(args)), "c"), 1000, Effects())
    return run


def kinds(fx: Effects) -> list[str]:
    return [type(e.attributes).__name__ for e in fx.events]


def test_signals_are_recorded_and_change_the_course_of_the_run() -> None:
    run = start(Subscription)
    fx = Effects()
    run.signal("note", conv.to_payloads(["hello"]), 2000, fx)
    assert kinds(fx) == ["SignalReceived"]
    fx = Effects()
    run.signal("cancel_subscription", [], 3000, fx)
    assert kinds(fx) == ["SignalReceived", "ActivityScheduled"]
    run.complete_activity(1, 1, conv.to_payload("ok"), 4000, Effects())
    assert conv.from_payload(run.result) == ["hello"]


def test_queries_read_state_without_recording_and_work_after_a_restore() -> None:
    run = start(Subscription)
    run.signal("cancel_subscription", [], 3000, Effects())
    events_before = len(run.events)
    status = run.live_instance().handlers.query("current_status", [])
    assert conv.from_payload(status) == "cancelling"
    assert len(run.events) == events_before
    restored = Run("sub-1", "r1", 0, REG)
    for e in run.events:
        restored.apply(e)
    status = restored.live_instance().handlers.query("current_status", [])
    assert conv.from_payload(status) == "cancelling"


def test_unknown_query_lists_the_known_ones() -> None:
    run = start(Subscription)
    with pytest.raises(UnknownHandlerError, match=r"no query 'nope' \(known: current_status\)"):
        run.live_instance().handlers.query("nope", [])


def test_update_validator_rejects_without_trace_and_accepted_update_replies() -> None:
    run = start(Subscription)
    with pytest.raises(ApplicationError, match="no such plan"):
        run.live_instance().handlers.validate_update("set_plan", conv.to_payloads(["gold"]))
    fx = Effects()
    run.accept_update("u1", "set_plan", conv.to_payloads(["pro"]), "client-1", "req-1", 2000, fx)
    assert kinds(fx) == ["UpdateAccepted", "UpdateCompleted"]
    (reply,) = fx.replies
    assert (reply.client_id, reply.request_id) == ("client-1", "req-1")
    assert conv.from_payload(reply.body.result) == "now on pro"  # type: ignore[union-attr]


@workflow.defn
class Gate:
    def __init__(self) -> None:
        self.opened = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.opened)
        return "open"

    @workflow.signal
    def poke(self) -> None:
        pass

    @workflow.signal
    async def jam(self, why: str) -> None:
        if why == "on purpose":
            raise ApplicationError("jammed on purpose")
        raise ValueError("jammed by a bug")

    @workflow.query
    def peek(self) -> bool:
        asyncio.get_running_loop().call_later(5, lambda: None)  # a durable timer: not allowed
        return self.opened


GATE = Registry([Gate], [])


def start_gate() -> Run:
    run = Run("gate-1", "r1", 0, GATE)
    run.start(WorkflowStarted("Gate", "q", [], "c"), 1000, Effects())
    return run


def test_a_query_that_schedules_work_is_refused_and_the_run_goes_on() -> None:
    run = start_gate()
    events_before = len(run.events)
    with pytest.raises(QueryError, match=r"query 'peek' tried to schedule work; it may only read"):
        run.live_instance().handlers.query("peek", [])
    assert len(run.events) == events_before
    fx = Effects()
    run.signal("poke", [], 2000, fx)
    assert kinds(fx) == ["SignalReceived"]  # the run goes on


@workflow.defn
class Nap:
    def __init__(self) -> None:
        self.awake = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.awake)
        if workflow.patched("nap-v2"):
            await workflow.sleep(timedelta(seconds=5))
        return "rested"

    @workflow.signal
    def wake(self) -> None:
        self.awake = True

    @workflow.query
    def meddle(self) -> bool:
        workflow.patched("nap-v2")  # a marker and a timer: refused, and given back
        asyncio.get_running_loop().call_later(5, lambda: None)
        return self.awake


def test_a_refused_query_takes_no_timer_id_or_patch_answer_from_the_code() -> None:
    registry = Registry([Nap], [])
    run = Run("nap-1", "r1", 0, registry)
    run.start(WorkflowStarted("Nap", "q", [], "c"), 1000, Effects())
    with pytest.raises(QueryError, match="tried to schedule work"):
        run.live_instance().handlers.query("meddle", [])
    fx = Effects()
    run.signal("wake", [], 2000, fx)
    # the live code records its own marker and its timer gets the first ID, as on replay
    assert kinds(fx) == ["SignalReceived", "MarkerRecorded", "TimerStarted"]
    started = fx.events[-1].attributes
    assert isinstance(started, TimerStarted) and started.timer_id == 1
    assert replay_history(run.events, registry).error is None


def test_an_async_signal_handler_failing_on_purpose_fails_the_run() -> None:
    run = start_gate()
    fx = Effects()
    run.signal("jam", conv.to_payloads(["on purpose"]), 2000, fx)
    assert kinds(fx) == ["SignalReceived", "WorkflowFailed"]
    assert run.status is RunStatus.FAILED


def test_an_async_signal_handler_with_a_bug_blocks_the_run() -> None:
    run = start_gate()
    fx = Effects()
    run.signal("jam", conv.to_payloads(["by accident"]), 2000, fx)
    assert kinds(fx) == ["SignalReceived", "WorkflowBlocked"]
    assert run.status is RunStatus.RUNNING
    assert "jammed by a bug" in run.blocked.message  # type: ignore[union-attr]


def test_continue_as_new_closes_the_run_and_starts_the_next_with_fresh_history() -> None:
    runs = PartitionRuns(0, CacheSettings(), 100, lambda partition, where: None)
    run = Run("counter", "r0", 0, REG)
    runs["counter"] = run
    batch = Batch({0: runs})
    run.start(WorkflowStarted("Counter", "q", conv.to_payloads([0]), "c"), 1000, batch.effects(run))
    assert run.status is RunStatus.CONTINUED_AS_NEW and run.next_run is not None
    continue_runs(run, runs, 1000, batch)
    last = runs.get("counter")
    assert last is not None
    assert last.status is RunStatus.COMPLETED and conv.from_payload(last.result) == 3
    chain = [s.run for by_run in batch.dirty.values() for s in by_run.values()]
    assert len(chain) == 4 and all(len(r.events) <= 3 for r in chain)
    assert [c.status for fx in batch.fx.values() for c in fx.completions] == [
        RunStatus.CONTINUED_AS_NEW
    ] * 3 + [RunStatus.COMPLETED]
    started = last.events[0].attributes
    assert isinstance(started, WorkflowStarted) and started.continued_from_run_id is not None


@workflow.defn
class LongLived:
    @workflow.run
    async def run(self, seen: int) -> str:
        while not workflow.info().is_continue_as_new_suggested():
            await workflow.sleep(timedelta(seconds=1))
        return f"suggested at {workflow.info().history_length} events"


def test_continue_as_new_is_suggested_after_a_configurable_history_length() -> None:
    registry = Registry([LongLived], [], limits=RunLimits(suggest_continue_as_new_after=7))
    run = Run("ll", "r", 0, registry)
    fx = Effects()
    run.start(WorkflowStarted("LongLived", "q", conv.to_payloads([0]), "c"), 1000, fx)
    now = 1000
    while not run.closed:
        timer = next(t for t in fx.timers)
        now += 1000
        fx = Effects()
        run.fire_timer(timer, now, fx)
    assert conv.from_payload(run.result) == "suggested at 7 events"
