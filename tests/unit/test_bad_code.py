"""Bad workflow code and bad messages, on the pure core: code that never yields, timers of
absurd durations, signals that do not decode or come too many, queries that schedule work."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from processors.metrics import EngineCollector, MetricsServer
from processors.run.commands import handle_command
from processors.run.effects import Effects
from processors.run.limits import signal_limit_message
from processors.run.state import Run, replay_history
from processors.workflow_code.deadlock import WATCHDOG
from processors.workflow_code.handlers import DROPPED_SIGNALS
from processors.workflow_code.registry import Registry
from streams import (
    ApplicationError,
    DeadlockError,
    ReadOnlyContextError,
    TimerDurationError,
    WorkflowIdError,
    workflow,
)
from streams.client import check_workflow_id
from streams.options import IdConflictPolicy
from streams.payload import DataConverter, Payload, ZlibCodec
from streams.settings import RunLimits, WorkerSettings
from streams.wire.commands import (
    Command,
    CommandBody,
    QueryWorkflow,
    SignalWorkflow,
    StartWorkflow,
    UpdateWorkflow,
)
from streams.wire.events import WorkflowStarted
from streams.wire.records import Rejected, RejectionCode, Reply, ReplyBody, RunStatus
from tests.unit.test_metrics import processor_tally

conv = DataConverter()


@workflow.defn
class Inbox:
    def __init__(self) -> None:
        self.items: list[int] = []
        self.done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done)
        return sum(self.items)

    @workflow.signal
    def add(self, n: int) -> None:
        self.items.append(n)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.signal
    def spin(self) -> None:
        while True:  # never yields
            pass

    @workflow.signal
    def spin_stubbornly(self) -> None:
        try:
            while True:
                pass
        except BaseException:  # what the detector must get past
            pass
        while True:
            pass

    @workflow.signal
    def refuse(self) -> None:
        raise ApplicationError("refused on purpose")

    @workflow.signal
    def stumble(self) -> None:
        self.items.append({}["missing"])

    @workflow.query
    def count(self) -> int:
        return len(self.items)

    @workflow.query
    def stuck(self) -> int:
        while True:
            pass

    @workflow.query
    def nap_in_query(self) -> int:
        asyncio.ensure_future(workflow.sleep(5))  # noqa: RUF006 - a timer at the next step
        return 0

    @workflow.query
    def charge_in_query(self) -> int:
        asyncio.ensure_future(  # noqa: RUF006
            workflow.execute_activity("charge", 1, start_to_close_timeout=timedelta(seconds=5))
        )
        return 0


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(seconds)
        return "woke"


@workflow.defn
class CarefulSleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        try:
            await workflow.sleep(seconds)
        except TimerDurationError as e:
            return f"refused: {type(e).__name__}"
        return "woke"


@workflow.defn
class AsyncioSleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "woke"


def registry(**limits: float) -> Registry:
    return Registry([Inbox, Sleeper, CarefulSleeper, AsyncioSleeper], [], conv, RunLimits(**limits))  # type: ignore[arg-type]


def start(reg: Registry, cls: type, *args: object, workflow_id: str = "w-1") -> Run:
    run = Run(workflow_id, f"r-{workflow_id}", 0, reg)
    name = workflow.WorkflowDefinition.of(cls).name
    run.start(WorkflowStarted(name, "q", conv.to_payloads(list(args)), "c"), 1000, Effects())
    return run


class Outbox:
    def __init__(self) -> None:
        self.fx = Effects()
        self.replies: list[Reply] = []

    def effects(self, run: Run) -> Effects:
        return self.fx

    def partition_effects(self, partition: int) -> Effects:
        return self.fx

    def reply(self, to: str | None, request_id: str, body: ReplyBody) -> None:
        if to:
            self.replies.append(Reply(to, request_id, body))


class Runs(dict[str, Run]):
    def history(self, run: Run) -> tuple[list[bytes], int]:
        return [b"event"] * len(run.events), 0


def send(runs: Runs, reg: Registry, body: CommandBody, now: int = 2000) -> ReplyBody:
    out = Outbox()
    handle_command(Command(f"cmd-{now}", "w-1", now, body), runs, 0, now, reg, out)
    [reply] = out.replies
    return reply.body


# ---- code that never yields --------------------------------------------------------------------
def test_code_that_never_yields_blocks_its_run_with_a_deadlock_error_naming_the_line() -> None:
    reg = registry(deadlock_timeout=0.2)
    run = start(reg, Inbox)
    interrupts = WATCHDOG.interrupts

    run.signal("spin", [], 2000, Effects())

    assert run.blocked is not None and run.blocked.type == "DeadlockError"
    assert "did not yield within 0.2 s: potential deadlock at" in run.blocked.message
    assert f"{__file__}:" in run.blocked.message  # the busy loop's file and line
    assert run.instance is None  # evicted: its state is not to be trusted
    assert WATCHDOG.interrupts == interrupts + 1
    # the thread goes on: other runs' code runs, and no interrupt is left pending for it
    other = start(reg, Inbox, workflow_id="w-2")
    other.signal("add", conv.to_payloads([2]), 2100, Effects())
    other.signal("finish", [], 2200, Effects())
    assert other.status is RunStatus.COMPLETED and conv.from_payload(other.result) == 2


def test_code_that_catches_the_interrupt_is_interrupted_again() -> None:
    run = start(registry(deadlock_timeout=0.1), Inbox)
    run.signal("spin_stubbornly", [], 2000, Effects())
    assert run.blocked is not None and run.blocked.type == "DeadlockError"


def test_a_query_that_never_returns_gets_a_deadlock_error_and_the_run_is_unaffected() -> None:
    run = start(registry(deadlock_timeout=0.1), Inbox)
    run.signal("add", conv.to_payloads([5]), 2000, Effects())
    with pytest.raises(DeadlockError, match=r"query 'stuck' of workflow 'w-1' did not return"):
        run.live_instance().handlers.query("stuck", [])
    assert conv.from_payload(run.live_instance().handlers.query("count", [])) == 1
    assert run.blocked is None


def test_the_detector_is_off_with_a_zero_timeout_and_on_by_default() -> None:
    assert RunLimits().deadlock_timeout == 2.0
    assert WorkerSettings.from_env({"EVERFLOW_DEADLOCK_TIMEOUT": "0"}).deadlock_timeout == 0
    assert WATCHDOG.begin(0) is None


# ---- timers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "why"),
    [(-5.0, "is negative"), (200 * 365 * 86400.0, "is longer than 100 years")],
)
def test_a_timer_of_a_negative_or_absurd_duration_blocks_the_run_by_name(
    seconds: float, why: str
) -> None:
    run = start(registry(), Sleeper, seconds)
    assert run.blocked is not None and run.blocked.type == "TimerDurationError"
    assert why in run.blocked.message and "test_bad_code.py" in run.blocked.message
    assert run.timers.pending == {}  # nothing was scheduled, nothing fires at once


def test_a_duration_beyond_timedelta_is_refused_by_name_not_overflowed() -> None:
    run = start(registry(), Sleeper, 1e20)
    assert run.blocked is not None and run.blocked.type == "TimerDurationError"
    asyncio_run = start(registry(), AsyncioSleeper, 1e20, workflow_id="w-2")
    assert asyncio_run.blocked is not None
    assert asyncio_run.blocked.type == "TimerDurationError"


def test_the_code_may_catch_a_timer_duration_error_as_a_value_error() -> None:
    run = start(registry(), CarefulSleeper, -1.0)
    assert run.status is RunStatus.COMPLETED
    assert conv.from_payload(run.result) == "refused: TimerDurationError"
    assert issubclass(TimerDurationError, ValueError)


def test_asyncio_sleep_of_a_negative_duration_just_yields_as_asyncio_does() -> None:
    run = start(registry(), AsyncioSleeper, -1.0)
    assert run.status is RunStatus.COMPLETED


# ---- signals -----------------------------------------------------------------------------------
def test_a_signal_whose_arguments_do_not_decode_is_dropped_and_the_run_goes_on() -> None:
    run = start(registry(), Inbox)
    dropped = DROPPED_SIGNALS.get("Inbox")
    fx = Effects()
    run.signal("add", [Payload(b"{not json", {"encoding": b"json/plain"})], 2000, fx)
    assert run.blocked is None
    assert DROPPED_SIGNALS.get("Inbox") == dropped + 1
    run.signal("add", conv.to_payloads([3]), 2100, Effects())
    run.signal("finish", [], 2200, Effects())
    assert run.status is RunStatus.COMPLETED and conv.from_payload(run.result) == 3


def test_a_run_takes_the_default_10000_signals_and_refuses_the_next_with_a_limit_error() -> None:
    reg = registry()
    assert reg.max_signals == 10_000
    runs = Runs()
    runs["w-1"] = start(reg, Inbox)
    for i in range(10_000):
        body = SignalWorkflow("add", conv.to_payloads([1]), reply_to="c")
        reply = send(runs, reg, body, 2000 + i)
        assert not isinstance(reply, Rejected)
    events = len(runs["w-1"].events)

    refused = send(runs, reg, SignalWorkflow("add", conv.to_payloads([1]), reply_to="c"), 99_000)

    assert isinstance(refused, Rejected) and refused.code == RejectionCode.SIGNAL_LIMIT
    assert "has received the maximum of 10000 signals" in refused.message
    assert "continue as new" in refused.message
    assert len(runs["w-1"].events) == events  # nothing recorded
    assert len(runs["w-1"].instance.handlers._obj.items) == 10_000  # type: ignore[union-attr]  # noqa: SLF001


def test_the_signal_count_survives_a_restore() -> None:
    reg = registry(max_signals=2)
    runs = Runs()
    runs["w-1"] = start(reg, Inbox)
    for now in (2000, 2001):
        send(runs, reg, SignalWorkflow("add", conv.to_payloads([1]), reply_to="c"), now)
    restored = Run("w-1", "r-w-1", 0, reg)
    for event in runs["w-1"].events:
        restored.apply(event)
    runs["w-1"] = restored
    refused = send(runs, reg, SignalWorkflow("add", conv.to_payloads([1]), reply_to="c"), 3000)
    assert isinstance(refused, Rejected) and refused.code == RejectionCode.SIGNAL_LIMIT
    assert signal_limit_message("w", "r", 1, 2) == ""


def test_signal_with_start_to_a_full_run_is_refused_and_records_nothing() -> None:
    reg = registry(max_signals=1)
    runs = Runs()
    runs["w-1"] = start(reg, Inbox)
    send(runs, reg, SignalWorkflow("add", conv.to_payloads([1]), reply_to="c"))
    events = len(runs["w-1"].events)
    body = StartWorkflow(
        "r-2",
        "Inbox",
        "q",
        reply_to="c",
        start_signal="add",
        start_signal_args=conv.to_payloads([1]),
        id_conflict_policy=IdConflictPolicy.USE_EXISTING,
    )

    refused = send(runs, reg, body, 3000)

    assert isinstance(refused, Rejected) and refused.code == RejectionCode.SIGNAL_LIMIT
    assert len(runs["w-1"].events) == events


# ---- queries -----------------------------------------------------------------------------------
def test_a_query_that_schedules_a_timer_is_refused_with_a_read_only_error() -> None:
    reg = registry()
    runs = Runs()
    runs["w-1"] = start(reg, Inbox)
    events = len(runs["w-1"].events)
    with pytest.raises(ReadOnlyContextError, match="tried to schedule work"):
        runs["w-1"].live_instance().handlers.query("nap_in_query", [])

    reply = send(runs, reg, QueryWorkflow("nap_in_query", [], None, "c"))

    assert isinstance(reply, Rejected) and reply.code == RejectionCode.READ_ONLY
    assert len(runs["w-1"].events) == events and runs["w-1"].blocked is None


def test_a_query_that_starts_an_activity_leaves_nothing_for_the_next_step() -> None:
    reg = registry()
    runs = Runs()
    runs["w-1"] = start(reg, Inbox)
    reply = send(runs, reg, QueryWorkflow("charge_in_query", [], None, "c"))
    assert isinstance(reply, Rejected) and reply.code == RejectionCode.READ_ONLY
    fx = Effects()
    runs["w-1"].signal("add", conv.to_payloads([1]), 3000, fx)
    assert [type(e.attributes).__name__ for e in fx.events] == ["SignalReceived"]


# ---- handlers that raise -----------------------------------------------------------------------
def test_an_application_error_in_a_sync_signal_handler_fails_the_run() -> None:
    reg = registry()
    run = start(reg, Inbox)
    run.signal("refuse", [], 2000, Effects())
    assert run.status is RunStatus.FAILED and run.failure is not None
    assert run.failure.message == "refused on purpose"
    # and its history replays cleanly
    assert replay_history(run.events, reg).error is None


def test_a_plain_error_in_a_signal_handler_blocks_the_run() -> None:
    run = start(registry(), Inbox)
    run.signal("stumble", [], 2000, Effects())
    assert run.status is RunStatus.RUNNING
    assert run.blocked is not None and run.blocked.type == "KeyError"


# ---- codecs ------------------------------------------------------------------------------------
def test_a_payload_the_codec_cannot_decode_blocks_the_run_and_never_falls_back() -> None:
    zlib = DataConverter([ZlibCodec(min_bytes=0)])
    reg = Registry([Sleeper], [], zlib)
    run = Run("w-1", "r-w-1", 0, reg)
    (good,) = zlib.to_payloads([1.0])
    corrupt = Payload(b"not zlib at all", good.metadata)
    run.start(WorkflowStarted("Sleeper", "q", [corrupt], "c"), 1000, Effects())
    assert run.status is RunStatus.RUNNING
    assert run.blocked is not None and run.blocked.type == "PayloadDecodeError"
    assert "incorrect header check" in run.blocked.message


def test_deadlocks_and_dropped_signals_are_counted_on_the_metrics_endpoint() -> None:
    run = start(registry(deadlock_timeout=0.1), Inbox)
    run.signal("add", [Payload(b"{not json", {"encoding": b"json/plain"})], 2000, Effects())
    run.signal("spin", [], 2100, Effects())

    collector = EngineCollector("q")
    collector.processor = processor_tally()
    text = generate_latest(MetricsServer(collector).registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    [dropped] = [s for s in families["everflow_signals_dropped"].samples if s.labels]
    assert dropped.labels == {"workflow_type": "Inbox"} and dropped.value >= 1
    assert families["everflow_workflow_deadlocks"].samples[0].value >= 1


# ---- pending activities ------------------------------------------------------------------------
@workflow.defn
class FanOut:
    @workflow.run
    async def run(self, n: int) -> int:
        pending = [
            asyncio.ensure_future(
                workflow.execute_activity("work", i, start_to_close_timeout=timedelta(seconds=5))
            )
            for i in range(n)
        ]
        return len(await asyncio.gather(*pending))


def test_code_that_opens_more_activities_than_the_limit_blocks_by_name() -> None:
    assert RunLimits().max_pending == 2_000
    reg = Registry([FanOut], [], conv, RunLimits(max_pending=3))
    within = Run("w-1", "r-1", 0, reg)
    within.start(WorkflowStarted("FanOut", "q", conv.to_payloads([3]), "c"), 1000, Effects())
    assert within.blocked is None and len(within.activities.open) == 3

    over = Run("w-2", "r-2", 0, reg)
    over.start(WorkflowStarted("FanOut", "q", conv.to_payloads([4]), "c"), 1000, Effects())

    assert over.blocked is not None and over.blocked.type == "PendingLimitError"
    assert "has 3 activities open, the maximum (EVERFLOW_MAX_PENDING)" in over.blocked.message


# ---- updates and IDs ---------------------------------------------------------------------------
@workflow.defn
class Gate:
    def __init__(self) -> None:
        self.open = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update
    async def wait_open(self) -> str:
        await workflow.wait_condition(lambda: self.open)
        return "in"


def test_a_run_refuses_an_update_past_ten_in_flight() -> None:
    reg = Registry([Gate], [], conv)
    runs = Runs()
    runs["w-1"] = Run("w-1", "r-1", 0, reg)
    runs["w-1"].start(WorkflowStarted("Gate", "q", [], "c"), 1000, Effects())
    for i in range(10):
        out = Outbox()
        body = UpdateWorkflow("wait_open", [], f"u-{i}", "c")
        handle_command(Command(f"cmd-{i}", "w-1", 2000 + i, body), runs, 0, 2000 + i, reg, out)
        assert out.replies == []  # accepted: the outcome comes when the handler finishes

    refused = send(runs, reg, UpdateWorkflow("wait_open", [], "u-10", "c"), 3000)

    assert isinstance(refused, Rejected) and refused.code == RejectionCode.UPDATE_LIMIT
    assert "has 10 updates in flight, the maximum (10)" in refused.message


def test_the_client_refuses_an_empty_or_over_long_workflow_id_before_sending() -> None:
    check_workflow_id("x" * 1000)
    with pytest.raises(WorkflowIdError, match="is 1001 characters, over the limit of 1000"):
        check_workflow_id("x" * 1001)
    with pytest.raises(WorkflowIdError, match="empty"):
        check_workflow_id("")
