"""Custom search attributes (typed from Python values, validated, recorded and replayed),
the source location recorded on the events of the code's commands, and the built-in
`__stack_trace` query — all on the pure core, without a broker."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from processors.run.commands import continue_runs, handle_command
from processors.run.state import Effects, Run
from processors.workflow_code.registry import Registry
from streams import Replayer, SearchAttributeError, activity, workflow
from streams.search_attributes import decode, encode
from streams.wire.commands import Command, CommandBody, QueryWorkflow, StartWorkflow
from streams.wire.events import (
    ActivityScheduled,
    ChildWorkflowInitiated,
    SearchAttributesUpserted,
    TimerStarted,
    WorkflowBlocked,
    WorkflowStarted,
)
from streams.wire.records import (
    QueryResult,
    Rejected,
    RunStatus,
    SearchAttribute,
    SearchAttributeType,
    Timer,
    TimerKind,
)
from tests.unit.test_commands import Outbox, Runs
from tests.unit.test_run_core import conv

K = SearchAttributeType
T = timedelta(seconds=5)


def send(runs: Runs, registry: Registry, body: CommandBody, now: int, workflow_id: str) -> Outbox:
    out = Outbox()
    handle_command(Command(f"cmd-{now}", workflow_id, now, body), runs, 0, now, registry, out)
    return out


# ---- inference and validation -----------------------------------------------------------------
def test_types_are_inferred_from_python_values() -> None:
    due = datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    records = encode(
        {
            "Customer": "c-42",
            "Notes": workflow.Text("late delivery"),
            "Vip": True,
            "Items": 3,
            "Amount": 12.5,
            "Due": due,
            "Tags": ["a", "b"],
            "Pair": ("x",),
            "Gone": None,
        }
    )
    assert records == [
        SearchAttribute("Customer", K.KEYWORD, '"c-42"'),
        SearchAttribute("Notes", K.TEXT, '"late delivery"'),
        SearchAttribute("Vip", K.BOOL, "true"),
        SearchAttribute("Items", K.INT, "3"),
        SearchAttribute("Amount", K.DOUBLE, "12.5"),
        SearchAttribute("Due", K.DATETIME, "1767268800250"),
        SearchAttribute("Tags", K.KEYWORD_LIST, '["a","b"]'),
        SearchAttribute("Pair", K.KEYWORD_LIST, '["x"]'),
        SearchAttribute("Gone", K.KEYWORD, "null"),
    ]
    values = decode(records)
    assert values == {
        "Customer": "c-42",
        "Notes": "late delivery",
        "Vip": True,
        "Items": 3,
        "Amount": 12.5,
        "Due": due,
        "Tags": ["a", "b"],
        "Pair": ["x"],
    }
    assert isinstance(values["Notes"], workflow.Text) and isinstance(values["Amount"], float)
    assert values["Vip"] is True and type(values["Items"]) is int
    # an aware datetime in another zone is the same instant
    plus_two = datetime(2026, 1, 1, 14, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=2)))
    assert encode({"Due": plus_two})[0].value == "1767268800250"
    # a removal keeps the type the run gave the name
    assert encode({"Items": None}, {"Items": K.INT}) == [SearchAttribute("Items", K.INT, "null")]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"1st": "x"}, "not valid"),
        ({"has-dash": "x"}, "not valid"),
        ({"": "x"}, "not valid"),
        ({"WorkflowId": "x"}, "built-in"),
        ({"ExecutionStatus": "x"}, "built-in"),
        ({"Blocked": True}, "built-in"),
        ({"Blob": b"x"}, "a bytes is not a search attribute value"),
        ({"Map": {"a": 1}}, "a dict is not a search attribute value"),
        ({"Mixed": ["a", 1]}, "only str"),
        ({"Naive": datetime(2026, 1, 1)}, "naive"),
        ({"Huge": 2**63}, "64 bits"),
        ({"Nan": float("nan")}, "finite"),
        ({"Inf": float("inf")}, "finite"),
    ],
)
def test_bad_names_and_values_are_refused_with_a_clear_error(
    values: dict[str, Any], says: str
) -> None:
    with pytest.raises(SearchAttributeError, match=says):
        encode(values)


def test_a_name_keeps_its_type_and_start_attributes_cannot_be_none() -> None:
    with pytest.raises(SearchAttributeError, match="is int in this run; it cannot become keyword"):
        encode({"Items": "three"}, {"Items": K.INT})
    with pytest.raises(SearchAttributeError, match="nothing to remove"):
        encode({"Gone": None}, allow_remove=False)
    with pytest.raises(SearchAttributeError, match="a mapping"):
        encode([("a", 1)])  # type: ignore[arg-type]


# ---- in workflow code ----------------------------------------------------------------------------
@activity.defn
def ship(order: str) -> str:
    return f"shipped {order}"


@workflow.defn
class Order:
    @workflow.run
    async def run(self, order: str) -> dict[str, Any]:
        seen = [dict(workflow.info().search_attributes)]
        workflow.upsert_search_attributes({"Stage": "shipping", "Items": 2})
        seen.append(dict(workflow.info().search_attributes))
        await workflow.execute_activity(ship, order, start_to_close_timeout=T)
        workflow.upsert_search_attributes({"Stage": "done", "Customer": None, "Late": False})
        seen.append(dict(workflow.info().search_attributes))
        workflow.upsert_search_attributes({})  # records nothing
        return {"seen": seen}


@workflow.defn(name="Order")
class OrderChangedValue:
    @workflow.run
    async def run(self, order: str) -> None:
        workflow.upsert_search_attributes({"Stage": "packing", "Items": 2})
        await workflow.execute_activity(ship, order, start_to_close_timeout=T)


@workflow.defn(name="Order")
class OrderWithoutUpsert:
    @workflow.run
    async def run(self, order: str) -> None:
        await workflow.execute_activity(ship, order, start_to_close_timeout=T)


START_ATTRIBUTES = [SearchAttribute("Customer", K.KEYWORD, '"c-1"')]


def start_order(cls: type = Order) -> Run:
    run = Run("o-1", "r-1", 0, Registry([cls], [ship]))
    started = WorkflowStarted(
        "Order", "q", conv.to_payloads(["o-1"]), "c", search_attributes=START_ATTRIBUTES
    )
    run.start(started, 1000, Effects())
    return run


def test_upserts_are_recorded_in_history_and_read_back_by_the_code() -> None:
    run = start_order()
    run.complete_activity(1, 1, conv.to_payload("shipped"), 2000, Effects())
    upserts = [
        e.attributes for e in run.events if isinstance(e.attributes, SearchAttributesUpserted)
    ]
    assert upserts == [
        SearchAttributesUpserted(
            [
                SearchAttribute("Stage", K.KEYWORD, '"shipping"'),
                SearchAttribute("Items", K.INT, "2"),
            ]
        ),
        SearchAttributesUpserted(
            [
                SearchAttribute("Stage", K.KEYWORD, '"done"'),
                SearchAttribute("Customer", K.KEYWORD, "null"),
                SearchAttribute("Late", K.BOOL, "false"),
            ]
        ),
    ]
    kinds = [type(e.attributes).__name__ for e in run.events]
    assert kinds == [
        "WorkflowStarted",
        "SearchAttributesUpserted",
        "ActivityScheduled",
        "ActivityCompleted",
        "SearchAttributesUpserted",
        "WorkflowCompleted",
    ]
    assert conv.from_payload(run.result)["seen"] == [
        {"Customer": "c-1"},
        {"Customer": "c-1", "Stage": "shipping", "Items": 2},
        {"Stage": "done", "Items": 2, "Late": False},
    ]
    # the run's state folds the same values (what a snapshot rebuilds, and describe reads)
    assert decode(run.search_attributes) == {"Stage": "done", "Items": 2, "Late": False}


def test_a_history_with_upserts_replays_and_the_replayed_code_sees_the_same_values() -> None:
    run = start_order()
    run.complete_activity(1, 1, conv.to_payload("shipped"), 2000, Effects())
    assert Replayer([Order]).replay(list(run.events)).ok
    # a run restored mid-way (its events replayed) goes on with the values it had
    restored = Run("o-1", "r-1", 0, Registry([Order], [ship]))
    for event in run.events[:3]:
        restored.apply(event)
    restored.complete_activity(1, 1, conv.to_payload("shipped"), 2000, Effects())
    assert conv.from_payload(restored.result) == conv.from_payload(run.result)
    assert [e.attributes for e in restored.events] == [e.attributes for e in run.events]


def test_a_changed_or_missing_upsert_on_replay_is_non_determinism() -> None:
    history = list(start_order().events)
    changed = Replayer([OrderChangedValue]).replay(history)
    assert not changed.ok and changed.error is not None
    assert 'history has SearchAttributesUpserted(Stage="shipping", Items=2)' in changed.error
    assert 'the code issued SearchAttributesUpserted(Stage="packing", Items=2)' in changed.error
    assert "test_search_attributes.py:" in changed.error  # the line that upserted
    missing = Replayer([OrderWithoutUpsert]).replay(history)
    assert not missing.ok and "SearchAttributesUpserted" in (missing.error or "")
    # a live run meeting the changed code blocks instead of going on
    restored = Run("o-1", "r-1", 0, Registry([OrderChangedValue], [ship]))
    for event in history:
        restored.apply(event)
    fx = Effects()
    restored.complete_activity(1, 1, conv.to_payload("shipped"), 2000, fx)
    blocked = fx.events[0].attributes
    assert isinstance(blocked, WorkflowBlocked) and blocked.reason == "non_determinism"


@workflow.defn
class Retyped:
    @workflow.run
    async def run(self) -> str:
        workflow.upsert_search_attributes({"Customer": None})
        try:
            workflow.upsert_search_attributes({"Customer": 7})
        except SearchAttributeError as e:
            return str(e)
        return "accepted"


def test_a_name_cannot_change_type_within_a_run_even_after_its_removal() -> None:
    run = Run("o-1", "r-1", 0, Registry([Retyped], []))
    started = WorkflowStarted("Retyped", "q", [], "c", search_attributes=START_ATTRIBUTES)
    run.start(started, 1000, Effects())
    message = conv.from_payload(run.result)
    assert "'Customer' is keyword in this run; it cannot become int" in message
    upserts = [e for e in run.events if isinstance(e.attributes, SearchAttributesUpserted)]
    assert len(upserts) == 1  # the refused upsert recorded nothing


@workflow.defn
class Idle:
    def __init__(self) -> None:
        self.go = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.go)
        workflow.continue_as_new()

    @workflow.query
    def sneaky(self) -> str:
        workflow.upsert_search_attributes({"Stage": "queried"})
        return "x"

    @workflow.signal
    def finish(self) -> None:
        workflow.upsert_search_attributes({"Stage": "last"})
        self.go = True


def test_a_query_cannot_upsert_and_continue_as_new_carries_the_attributes() -> None:
    runs = Runs()
    start = StartWorkflow(
        "r-1",
        "Idle",
        "q",
        reply_to="c",
        search_attributes=encode({"Customer": "c-9", "Stage": "new"}),
    )
    registry = Registry([Idle], [])
    send(runs, registry, start, 1000, "i-1")
    out = send(runs, registry, QueryWorkflow("sneaky", [], None, "c"), 1500, "i-1")
    [reply] = [r.body for r in out.replies]
    assert isinstance(reply, Rejected) and "may only read state" in reply.message
    run = runs["i-1"]
    assert run.instance is not None
    assert run.instance.info().search_attributes == {"Customer": "c-9", "Stage": "new"}
    run.signal("finish", [], 2000, Effects())
    assert run.status is RunStatus.CONTINUED_AS_NEW
    continue_runs(run, runs, 2000, Outbox())
    nxt = runs["i-1"]
    first = nxt.events[0].attributes
    assert nxt.run_id != "r-1" and isinstance(first, WorkflowStarted)
    assert decode(first.search_attributes) == {"Customer": "c-9", "Stage": "last"}
    assert nxt.instance is not None
    assert nxt.instance.info().search_attributes == {"Customer": "c-9", "Stage": "last"}


# ---- source locations ---------------------------------------------------------------------------
@workflow.defn
class Child:
    @workflow.run
    async def run(self) -> None:
        return None


def line_of(fn: Any, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


@workflow.defn
class Places:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(ship, "a", start_to_close_timeout=T)
        await workflow.sleep(timedelta(seconds=1))
        await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=2))

    @workflow.signal
    async def spawn(self) -> None:
        await workflow.start_child_workflow(Child.run, id="child-1", search_attributes={"X": 1})


def test_the_events_of_the_codes_commands_record_where_the_code_issued_them() -> None:
    registry = Registry([Places, Child], [ship])
    run = Run("p-1", "r-1", 0, registry)
    run.start(WorkflowStarted("Places", "q", [], "c"), 1000, Effects())
    fx = Effects()
    run.signal("spawn", [], 1500, fx)
    run.complete_activity(1, 1, conv.to_payload("ok"), 2000, Effects())
    scheduled = next(
        e.attributes for e in run.events if isinstance(e.attributes, ActivityScheduled)
    )
    file = inspect.getsourcefile(Places)
    assert scheduled.source is not None
    assert (scheduled.source.file, scheduled.source.function) == (file, "run")
    assert scheduled.source.line == line_of(Places.run, "execute_activity(")
    child = next(
        e.attributes for e in run.events if isinstance(e.attributes, ChildWorkflowInitiated)
    )
    assert child.source is not None and child.source.function == "spawn"
    assert child.source.line == line_of(Places.spawn, "start_child_workflow(")
    [(_, start_child)] = [(c.workflow_id, c.body) for c in fx.commands]
    assert isinstance(start_child, StartWorkflow)
    assert start_child.search_attributes == [SearchAttribute("X", K.INT, "1")]
    [timer] = [e.attributes for e in run.events if isinstance(e.attributes, TimerStarted)]
    assert timer.source is not None and timer.source.line == line_of(Places.run, "sleep(")
    # wait_condition's timeout timer is set inside asyncio: the line recorded is the user's
    [(_, record)] = [op for op in fx_timers(run)]
    run.fire_timer(record, 3000, Effects())
    timers = [e.attributes for e in run.events if isinstance(e.attributes, TimerStarted)]
    assert len(timers) == 2 and timers[1].source is not None
    assert timers[1].source.line == line_of(Places.run, "wait_condition(")
    assert timers[1].source.function == "run"


def fx_timers(run: Run) -> list[tuple[int, Timer]]:
    """The run's pending user timers as the records the processor would fire."""
    return [
        (timer_id, Timer(run.workflow_id, run.run_id, TimerKind.USER_TIMER, timer_id, 0, at))
        for timer_id, at in run.timers.pending.items()
    ]


def test_a_moved_call_is_not_non_determinism() -> None:
    run = Run("p-1", "r-1", 0, Registry([Places, Child], [ship]))
    run.start(WorkflowStarted("Places", "q", [], "c"), 1000, Effects())
    history = list(run.events)
    moved = history[-1]
    assert isinstance(moved.attributes, ActivityScheduled)
    src = moved.attributes.source
    assert src is not None
    other = dataclasses.replace(src, file="/elsewhere.py", line=src.line + 40)
    history[-1] = dataclasses.replace(
        moved, attributes=dataclasses.replace(moved.attributes, source=other)
    )
    assert Replayer([Places, Child]).replay(history).ok


# ---- __stack_trace -------------------------------------------------------------------------------
def test_stack_trace_names_the_lines_each_task_waits_on_and_changes_nothing() -> None:
    runs, registry = Runs(), Registry([Places, Child], [ship])

    def stack(now: int) -> str:
        out = send(runs, registry, QueryWorkflow("__stack_trace", [], None, "c"), now, "p-1")
        [reply] = [r.body for r in out.replies]
        assert isinstance(reply, QueryResult) and out.fx.events == []  # records nothing
        text = conv.from_payload(reply.result)
        assert isinstance(text, str)
        return text

    send(runs, registry, StartWorkflow("r-1", "Places", "q", reply_to="c"), 1000, "p-1")
    run = runs["p-1"]
    run.signal("spawn", [], 1200, Effects())  # a second task, waiting for its child to start
    events = list(run.events)
    file = inspect.getsourcefile(Places)
    main, spawn = stack(1500).split("\n\n")
    assert main == (
        f"{file}:{line_of(Places.run, 'execute_activity(')} in run\n"
        '    await workflow.execute_activity(ship, "a", start_to_close_timeout=T)'
    )
    assert spawn.startswith(f"{file}:{line_of(Places.spawn, 'start_child_workflow(')} in spawn")
    assert run.events == events
    # the code is unchanged by the query: it goes on to its timer
    run.complete_activity(1, 1, conv.to_payload("ok"), 2000, Effects())
    assert f"{file}:{line_of(Places.run, 'sleep(')} in run" in stack(2500)
    # a run evicted from memory answers too (its code is rebuilt, nothing recorded)
    run.instance = None
    assert f"{file}:{line_of(Places.run, 'sleep(')} in run" in stack(2600)
    assert run.events == events[:] + run.events[len(events) :] and len(run.events) == 6
    run.terminate("done", 3000, Effects())
    assert "is closed (TERMINATED): no code is waiting" in stack(3500)
