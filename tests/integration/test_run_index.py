"""The run index against a real broker and real stores (a SQLite file, a PostgreSQL server):
real runs reach it with their statuses and pending activities, search attributes from history
are typed and filterable, a bad record goes to dead letters, and PostgreSQL projectors in one
consumer group share the partitions."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from processors.visibility.projector import Projector
from streams import Client, FilterError, VisibilityUnavailableError, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.payload import Payload
from streams.settings import VisibilitySettings
from streams.visibility.records import WorkflowExecution, from_millis
from streams.visibility.store import open_store
from streams.wire import wire
from streams.wire.events import (
    EventAttributes,
    HistoryEvent,
    SearchAttributesUpserted,
    WorkflowCompleted,
    WorkflowStarted,
)
from streams.wire.records import SearchAttribute, SearchAttributeType
from tests.helpers import wait_until
from tests.integration.workers import WorkerProcesses, topics_for

APP = "tests.integration.apps.indexed"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    return str(request.getfixturevalue("postgres_dsn"))


def listed(client: Client, query: str = "", **kw: Any) -> list[WorkflowExecution]:
    async def collect() -> list[WorkflowExecution]:
        return [e async for e in client.list_workflows(query, **kw)]

    return list(LOOP.run(collect()))


class _Loop:
    """An event loop in a thread, so synchronous waits can call the async client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


LOOP = _Loop()


@pytest.fixture
def client(kafka_bootstrap: str, topic_prefix: str, store_url: str) -> Iterator[Client]:
    config = topics_for(kafka_bootstrap, topic_prefix, "indexed")
    c = LOOP.run(asyncio.to_thread(functools.partial(Client, config, visibility=store_url)))
    try:
        yield c
    finally:
        c.close()


def test_real_runs_reach_the_index_with_their_status_and_pending_activity(
    client: Client, store_url: str, workers: WorkerProcesses
) -> None:
    workers.start("w1", APP, task_queue="indexed", extra_env={"EVERFLOW_VISIBILITY": store_url})

    async def start_runs() -> None:
        for i in range(3):
            await client.execute_workflow("Greet", f"n{i}", id=f"greet-{i}", task_queue="indexed")
        for i in range(2):
            await client.start_workflow(
                "Doomed", "no funds", id=f"doomed-{i}", task_queue="indexed"
            )
        for i in range(2):
            await client.start_workflow("Waiter", id=f"waiter-{i}", task_queue="indexed")
        await client.start_workflow("Flaky", id="flaky", task_queue="indexed")
        await client.start_workflow("Buggy", id="buggy", task_queue="indexed")

    LOOP.run(start_runs())
    expected = {"Blocked": 1, "Completed": 3, "Failed": 2, "Running": 3}
    wait_until(
        lambda: LOOP.run(client.count_workflows(group_by_status=True)).groups == expected,
        timeout=45,
        message="the index shows every run with its status",
    )
    greet = listed(client, "WorkflowType = 'Greet'")
    assert sorted(e.workflow_id for e in greet) == ["greet-0", "greet-1", "greet-2"]
    for e in greet:
        assert e.status == "Completed" and e.task_queue == "indexed"
        assert e.close_time is not None and e.execution_duration is not None
        assert e.close_time - e.start_time == e.execution_duration
        history = LOOP.run(client.get_workflow_handle(e.workflow_id).fetch_history())
        assert e.history_length == len(history) == history[-1].event_id
    running = listed(client, "ExecutionStatus = 'Running' ORDER BY WorkflowId")
    assert [e.workflow_id for e in running] == ["flaky", "waiter-0", "waiter-1"]
    assert all(e.close_time is None for e in running)
    (buggy,) = listed(client, "Blocked = true")
    assert (buggy.workflow_id, buggy.status, buggy.close_time) == ("buggy", "Blocked", None)
    # the default order: open runs first
    everything = listed(client, page_size=2)
    assert len(everything) == 9 and {e.status for e in everything[:4]} == {"Running", "Blocked"}
    assert len(listed(client, limit=5, page_size=2)) == 5

    (flaky,) = [e for e in running if e.workflow_id == "flaky"]

    def retried() -> WorkflowExecution | None:
        described = LOOP.run(client.describe_indexed(flaky.run_id))
        acts = described.pending_activities if described else ()
        return described if acts and acts[0].attempt >= 3 and acts[0].next_retry_time else None

    described = wait_until(retried, timeout=30, message="the failing activity's attempts show")
    assert described is not None
    (pending,) = described.pending_activities
    assert pending.activity_type == "call_gateway"
    assert pending.maximum_attempts == 50
    assert "gateway refused the connection" in (pending.last_failure or "")
    assert pending.next_retry_time is not None and pending.next_retry_time > described.start_time
    assert listed(client, "ActivityAttempt >= 3") and not listed(client, "ActivityAttempt > 50")
    assert LOOP.run(client.count_workflows("PendingActivities = 1")).count == 1
    with pytest.raises(FilterError):
        listed(client, "NoSuchAttribute = 1")
    # the processor writes history in transactions: their markers are not records behind
    wait_until(lambda: LOOP.run(client.visibility_lag()).total == 0, timeout=20)


def history_event(
    workflow_id: str, run_id: str, event_id: int, body: EventAttributes, time_ms: int
) -> HistoryEvent:
    return HistoryEvent(workflow_id, run_id, event_id, time_ms, body)


def attr(name: str, type_: SearchAttributeType, value: object) -> SearchAttribute:
    return SearchAttribute(name, type_, json.dumps(value))


def write_history(
    config: KafkaConfig,
    events: list[HistoryEvent],
    raw: bytes | None = None,
    transactional: bool = False,
) -> None:
    """Writes events to `history` keyed by workflow ID; `transactional`: one Kafka transaction
    per event, as the processor writes (each leaves a marker after it)."""
    if transactional:
        producer = kafka.transactional_producer(config, f"{config.topic_prefix}test-writer")
        producer.init_transactions()
    else:
        producer = kafka.producer(config)
    topic = Topics(config.topic_prefix).history
    for e in events:
        partition = kafka.partition_for(e.workflow_id, config.partitions)
        if transactional:
            producer.begin_transaction()
        producer.produce(topic, wire().event.encode(e), e.workflow_id.encode(), partition=partition)
        if transactional:
            producer.commit_transaction()
    if raw is not None:
        producer.produce(topic, raw, b"poison", partition=0)
    assert producer.flush(30) == 0


def synthetic_runs(count: int, wave: int = 0) -> list[HistoryEvent]:
    """`count` runs with search attributes at start and upserted later; odd ones complete."""
    events = []
    for i in range(count):
        wid, rid = f"order-{i}", f"run-{i}"
        if wave == 0:
            started = WorkflowStarted(
                "Order",
                "orders",
                [],
                f"c{i}",
                search_attributes=[
                    attr("Customer", SearchAttributeType.KEYWORD, f"cust-{i % 3}"),
                    attr("Amount", SearchAttributeType.INT, i * 10),
                    attr("Placed", SearchAttributeType.DATETIME, 1_780_000_000_000 + i),
                ],
            )
            upsert = SearchAttributesUpserted(
                [
                    attr("Tags", SearchAttributeType.KEYWORD_LIST, ["vip"] if i % 4 == 0 else []),
                    attr("Express", SearchAttributeType.BOOL, i % 2 == 0),
                ]
            )
            events += [history_event(wid, rid, 1, started, 1_000 + i)]
            events += [history_event(wid, rid, 2, upsert, 2_000 + i)]
        elif i % 2:
            done = WorkflowCompleted(Payload(metadata={}, data=b"null"))
            events += [history_event(wid, rid, 3, done, 3_000 + i)]
    return events


def run_projector(
    config: KafkaConfig, url: str
) -> tuple[Projector, threading.Event, threading.Thread]:
    projector = Projector(config, VisibilitySettings(url=url))
    stop = threading.Event()
    thread = threading.Thread(target=projector.run, args=(stop,), daemon=True)
    thread.start()
    return projector, stop, thread


def test_search_attributes_from_history_are_typed_filterable_and_poison_is_dead_lettered(
    kafka_bootstrap: str, topic_prefix: str, store_url: str
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix)
    client = Client(config, visibility=store_url)
    try:
        with pytest.raises(VisibilityUnavailableError, match="everflow visibility"):
            LOOP.run(client.count_workflows())
        write_history(config, synthetic_runs(20), raw=b"\x00not avro")
        write_history(config, synthetic_runs(20, wave=1))
        projector, stop, thread = run_projector(config, store_url)
        try:
            check_attributes(client, projector)
        finally:
            stop.set()
            thread.join(30)
        # with the projector stopped, what history gains is lag
        late = synthetic_runs(20, wave=1)[0]
        write_history(config, [replace(late, event_id=4)])
        behind = LOOP.run(client.visibility_lag())
        partition = kafka.partition_for(late.workflow_id, config.partitions)
        assert behind.records == {p: int(p == partition) for p in range(config.partitions)}
        assert behind.total == 1
    finally:
        client.close()
    store = open_store(store_url, create=False)
    try:
        types = store.attribute_types()
    finally:
        store.close()
    assert types == {
        "Customer": SearchAttributeType.KEYWORD,
        "Amount": SearchAttributeType.INT,
        "Placed": SearchAttributeType.DATETIME,
        "Tags": SearchAttributeType.KEYWORD_LIST,
        "Express": SearchAttributeType.BOOL,
    }
    reader = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        dead_letters = TopicPartition(Topics(topic_prefix).dead_letters, 0, 0)
        dead = [
            (m.value(), dict(m.headers() or [])) for m in kafka.read_to_end(reader, [dead_letters])
        ]
    finally:
        reader.close()
    assert [value for value, _ in dead] == [b"\x00not avro"]
    reason = dead[0][1]["everflow.reason"]
    assert isinstance(reason, bytes) and b"undecodable" in reason


def check_attributes(client: Client, projector: Projector) -> None:
    def count(query: str) -> int:
        return int(LOOP.run(client.count_workflows(query)).count)

    def indexed() -> bool:
        try:
            return count("") == 20 and count("ExecutionStatus = 'Completed'") == 10
        except VisibilityUnavailableError:  # the projector has not created the tables yet
            return False

    wait_until(
        indexed,
        timeout=40,
        message="the projector indexes every run",
    )
    assert count("Customer = 'cust-1'") == 7
    assert count("Amount >= 100 AND Amount < 150") == 5
    assert count("Tags = 'vip'") == 5
    assert count("Express = true") == 10
    assert count("Placed > '2026-05-28T20:26:40.005Z'") == 14
    (one,) = listed(client, "WorkflowId = 'order-4'")
    assert one.search_attributes == {
        "Customer": "cust-1",
        "Amount": 40,
        "Placed": from_millis(1_780_000_000_004),
        "Tags": ["vip"],
        "Express": True,
    }
    assert (one.history_length, one.status, one.workflow_type) == (2, "Running", "Order")
    wait_until(
        lambda: all(records == 0 for records, _ in projector.lag().values()),
        timeout=20,
        message="the projector's lag comes down to 0",
    )
    lag = LOOP.run(client.visibility_lag())
    assert lag.total == 0 and lag.seconds == 0


def test_two_projectors_in_one_group_share_the_partitions_and_index_everything(
    kafka_bootstrap: str, topic_prefix: str, postgres_dsn: str
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix)
    write_history(config, synthetic_runs(40))
    first = run_projector(config, postgres_dsn)
    second = run_projector(config, postgres_dsn)
    try:
        wait_until(
            lambda: first[0].lag() and second[0].lag(),
            timeout=40,
            message="both projectors own partitions",
        )
        mine, theirs = set(first[0].lag()), set(second[0].lag())
        assert not mine & theirs and mine | theirs == {0, 1, 2, 3}
        write_history(config, synthetic_runs(40, wave=1), transactional=True)
        written = time.monotonic()
        store = open_store(postgres_dsn, create=False)
        try:
            wait_until(
                lambda: (
                    store.count_runs(group_by_status=True).groups
                    == {"Completed": 20, "Running": 20}
                ),
                timeout=30,
            )
            rows = store.load_rows([f"run-{i}" for i in range(40)])
            assert [rows[f"run-{i}"].last_event_id for i in range(40)] == [2, 3] * 20
            assert store.offsets(Topics(topic_prefix).history).keys() == {0, 1, 2, 3}
            for projector in (first[0], second[0]):
                wait_until(lambda p=projector: p.ends_read_at > written, timeout=10)  # type: ignore[misc]
                assert all(n == 0 for n, _ in projector.lag().values()), projector.lag()
        finally:
            store.close()
    finally:
        for _, stop, _thread in (first, second):
            stop.set()
        for _, _, thread in (first, second):
            thread.join(30)
