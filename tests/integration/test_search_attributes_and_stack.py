"""Search attributes, recorded call sites and the `__stack_trace` query on a real broker,
with a real worker process."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams import Client, Replayer
from streams.kafka.config import KafkaConfig
from streams.search_attributes import decode
from streams.wire.events import (
    ActivityScheduled,
    HistoryEvent,
    SearchAttributesUpserted,
    TimerStarted,
    WorkflowContinuedAsNew,
    WorkflowStarted,
)
from streams.wire.records import SearchAttribute, SearchAttributeType
from tests.integration.apps import visibility
from tests.integration.history_check import history_runs
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.visibility"
Q = "visibility"
MINUTE = timedelta(seconds=60)
K = SearchAttributeType
APP_FILE = str(Path(visibility.__file__).resolve())


def app_line(text: str) -> int:
    """The line of the app's source that contains `text` (exactly one does)."""
    lines = Path(APP_FILE).read_text().splitlines()
    found = [n for n, line in enumerate(lines, 1) if text in line]
    assert len(found) == 1, (text, found)
    return found[0]


@pytest.fixture
def config(kafka_bootstrap: str, topic_prefix: str) -> KafkaConfig:
    return topics_for(kafka_bootstrap, topic_prefix, Q)


def test_search_attributes_are_recorded_typed_and_carried_across_continue_as_new(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)

    async def body(client: Client) -> tuple[Any, list[HistoryEvent]]:
        handle = await client.start_workflow(
            "Shipment",
            "order-7",
            2,
            id="ship-1",
            task_queue=Q,
            search_attributes={"Customer": "c-42", "Region": "eu"},
        )
        result = await handle.result(timeout=MINUTE)
        latest = await client.get_workflow_handle("ship-1").fetch_history()
        return result, latest

    result, latest = with_client(config, body)
    runs = [events for (wid, _), events in history_runs(config).items() if wid == "ship-1"]
    first, second = sorted(runs, key=lambda events: events[0].time)
    assert [e.event_id for e in second] == [e.event_id for e in latest]  # the client's fetch

    started = first[0].attributes
    assert isinstance(started, WorkflowStarted)
    assert started.search_attributes == [
        SearchAttribute("Customer", K.KEYWORD, '"c-42"'),
        SearchAttribute("Region", K.KEYWORD, '"eu"'),
    ]
    upserts = [e.attributes for e in first if isinstance(e.attributes, SearchAttributesUpserted)]
    assert upserts == [
        SearchAttributesUpserted(
            [
                SearchAttribute("Stage", K.KEYWORD, '"packing"'),
                SearchAttribute("Items", K.INT, "3"),
                SearchAttribute("Amount", K.DOUBLE, "12.5"),
                SearchAttribute("Vip", K.BOOL, "true"),
                SearchAttribute("Due", K.DATETIME, str(int(visibility.DUE.timestamp() * 1000))),
                SearchAttribute("Tags", K.KEYWORD_LIST, '["fragile","eu"]'),
                SearchAttribute("Notes", K.TEXT, '"leave at the door"'),
            ]
        ),
        SearchAttributesUpserted(
            [
                SearchAttribute("Stage", K.KEYWORD, '"shipped"'),
                SearchAttribute("Vip", K.BOOL, "null"),
            ]
        ),
    ]
    assert isinstance(first[-1].attributes, WorkflowContinuedAsNew)

    # the next run starts with the values the first one left (Vip removed)
    carried = second[0].attributes
    assert isinstance(carried, WorkflowStarted) and carried.continued_from_run_id
    expected = {
        "Customer": "c-42",
        "Region": "eu",
        "Stage": "shipped",
        "Items": 3,
        "Amount": 12.5,
        "Due": visibility.DUE,
        "Tags": ["fragile", "eu"],
        "Notes": "leave at the door",
    }
    assert decode(carried.search_attributes) == expected
    assert result["seen"] == {k: str(v) for k, v in expected.items()}  # what the code read

    # the activity's event names the line of the execute_activity call in the app
    scheduled = [e.attributes for e in first if isinstance(e.attributes, ActivityScheduled)]
    assert len(scheduled) == 1 and scheduled[0].source is not None
    source = scheduled[0].source
    assert (source.file, source.line, source.function) == (
        APP_FILE,
        app_line("await workflow.execute_activity("),
        "run",
    )

    # both recorded runs replay against the code, new fields and all
    replayer = Replayer([visibility.Shipment, visibility.Napper])
    for events in (first, second):
        outcome = replayer.replay(events)
        assert outcome.ok, outcome.error


def test_stack_trace_of_a_sleeping_run_names_the_line_of_its_sleep(
    config: KafkaConfig, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue=Q)
    sleep_line = app_line("await workflow.sleep(")

    async def body(client: Client) -> tuple[str, list[HistoryEvent], str]:
        handle = await client.start_workflow("Napper", id="nap-1", task_queue=Q)
        deadline = time.monotonic() + 60
        while True:  # until the run's code waits on its timer
            history = await handle.fetch_history(timeout=MINUTE)
            if any(isinstance(e.attributes, TimerStarted) for e in history):
                break
            assert time.monotonic() < deadline, "the run never started its timer"
            await asyncio.sleep(0.2)
        stack = await handle.query("__stack_trace", timeout=MINUTE)
        again = await handle.fetch_history(timeout=MINUTE)
        assert len(again) == len(history)  # the query recorded nothing
        await handle.terminate("test over")
        closed = await handle.query("__stack_trace", timeout=MINUTE)
        return stack, history, closed

    stack, history, closed = with_client(config, body)
    assert isinstance(stack, str)
    assert f"{APP_FILE}:{sleep_line} in run\n    await workflow.sleep(timedelta(hours=1))" in stack
    assert "streams/" not in stack and "asyncio" not in stack  # only the user's frames
    [timer] = [e.attributes for e in history if isinstance(e.attributes, TimerStarted)]
    assert timer.source is not None and (timer.source.file, timer.source.line) == (
        APP_FILE,
        sleep_line,
    )
    assert "is closed (TERMINATED): no code is waiting" in closed
