"""Bad records and wire input against a real broker and one real worker process (catalogue
rows 1-10, 15, 17-20, 23-25 of reliability.md §2, and the issue's named cases): poison on
`commands` is dead-lettered with its reason in the transaction that moves the offset past
it, stale activity reports are ignored and logged, records over the Kafka limit are caught
before they are produced. After each kind, a normal run on the same partition completes:
the partition never stalls. One worker and one topic prefix serve the whole module."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition

from streams import (
    Client,
    PayloadTooLargeError,
    RequestRejectedError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
    kafka,
)
from streams.kafka.config import KafkaConfig
from streams.kafka.dead_letters import DeadLetter, read_dead_letters
from streams.kafka.topics import Topics
from streams.payload import Payload, to_payload
from streams.wire import wire
from streams.wire.avro import MAGIC
from streams.wire.commands import (
    Command,
    CompleteActivity,
    FailActivity,
    SignalWorkflow,
    StartWorkflow,
)
from streams.wire.compiled import write_long
from streams.wire.events import ActivityCompleted, WorkflowStarted
from streams.wire.records import Failure
from tests.bad_inputs.records_app import UNSERVED
from tests.bad_inputs.table import Outcome
from tests.helpers import wait_until
from tests.integration.workers import ROOT, WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration

PARTITIONS = 4
BAD = 1  # the partition the bad records go to
FRESH = 3  # a partition with nothing on it until one test writes there
RECORD_LIMIT = 200_000  # the worker's producer limit (message.max.bytes), for cheap big records
QUEUE = "records"
TIMEOUT = timedelta(seconds=60)


@dataclass
class Deployment:
    config: KafkaConfig
    procs: WorkerProcesses

    @property
    def topics(self) -> Topics:
        return Topics(self.config.topic_prefix)

    def logs(self) -> str:
        return self.procs.logs()


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    config = topics_for(kafka_bootstrap, prefix, QUEUE, UNSERVED, partitions=PARTITIONS)
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": kafka_bootstrap,
        "EVERFLOW_TOPIC_PREFIX": prefix,
        "EVERFLOW_PARTITIONS": str(PARTITIONS),
        "PYTHONPATH": str(ROOT),
        # records over this are refused by the worker's producer: the processor must see
        # them coming; payloads may be larger, so that only the record check stops them
        "EVERFLOW_KAFKA_MESSAGE_MAX_BYTES": str(RECORD_LIMIT),
        "EVERFLOW_MAX_PAYLOAD_BYTES": str(2 * RECORD_LIMIT),
    }
    procs = WorkerProcesses(env, tmp_path_factory.mktemp("bad-records"))
    try:
        procs.start("w1", "tests.bad_inputs.records_app", task_queue=QUEUE)
        yield Deployment(config, procs)
    finally:
        procs.stop_all()


def on_partition(stem: str, partition: int = BAD) -> str:
    """A workflow ID that hashes to `partition`."""
    for i in range(1000):
        candidate = f"{stem}-{uuid.uuid4().hex[:6]}-{i}"
        if kafka.partition_for(candidate, PARTITIONS) == partition:
            return candidate
    raise AssertionError("no ID found")


def produce_raw(
    config: KafkaConfig,
    records: list[tuple[bytes | None, bytes | None, int]],
    timestamp: int = 0,
    errors: bool = False,
) -> list[Any]:
    """Produces (key, value, partition) records to `commands` as they are, in order (with
    CreateTime `timestamp` if not 0); their offsets (or, with `errors`, a KafkaError for a
    record the broker refused)."""
    producer = Producer({"bootstrap.servers": config.bootstrap, "enable.idempotence": True})
    offsets: list[Any] = [None] * len(records)
    topic = Topics(config.topic_prefix).commands
    for i, (key, value, partition) in enumerate(records):

        def delivered(err: Any, msg: Any, i: int = i) -> None:
            offsets[i] = err if err is not None else msg.offset()

        producer.produce(topic, value, key, partition=partition, on_delivery=delivered,
                         timestamp=timestamp)  # fmt: skip
    assert producer.flush(30) == 0
    assert errors or all(isinstance(o, int) for o in offsets), offsets
    return offsets


def dead_letters(config: KafkaConfig, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], Any]:
    """The dead letters of `commands` records at (partition, offset), once all are there."""
    commands = Topics(config.topic_prefix).commands

    def found() -> dict[tuple[int, int], DeadLetter] | None:
        letters = read_dead_letters(config, size=10_000).letters
        got = {
            (d.source_partition, d.source_offset): d
            for d in letters
            if d.source_topic == commands and d.source_partition is not None
        }
        return got if wanted <= got.keys() else None  # type: ignore[return-value]

    return wait_until(found, timeout=60, interval=0.5, message=f"dead letters of {wanted}")


def committed(config: KafkaConfig, partition: int) -> int:
    """The processors' committed offset on a `commands` partition."""
    group = f"{config.topic_prefix}workflow-processor"
    consumer = kafka.consumer(config, group)
    try:
        tp = TopicPartition(Topics(config.topic_prefix).commands, partition)
        return int(consumer.committed([tp], 30)[0].offset)
    finally:
        consumer.close()


def run_normally(config: KafkaConfig, partition: int = BAD) -> str:
    """A normal run on `partition`, to its result: the partition went on."""
    workflow_id = on_partition("normal", partition)

    async def body(client: Client) -> Any:
        return await client.execute_workflow(
            "Echo", workflow_id, id=workflow_id, task_queue=QUEUE, timeout=TIMEOUT
        )

    result = with_client(config, body)
    assert result == workflow_id
    return str(result)


def log_line(deployment: Deployment, *parts: str) -> str:
    """The first worker log line with all of `parts`, waited for."""

    def find() -> str | None:
        for line in deployment.logs().splitlines():
            if all(p in line for p in parts):
                return line.split(": ", 1)[-1] if ": " in line else line
        return None

    return wait_until(find, timeout=30, interval=0.2, message=f"a log line with {parts}")


def _string(text: bytes) -> bytes:
    out = bytearray()
    write_long(out, len(text))
    return bytes(out) + text


# ---- poison on `commands` ---------------------------------------------------------------------
def test_poison_commands_are_dead_lettered_with_their_reason_and_the_partition_goes_on(
    deployment: Deployment, bad_input: Any
) -> None:
    config, codec = deployment.config, wire().command
    workflow_id = on_partition("poison")
    key = workflow_id.encode()
    now = int(time.time() * 1000)
    valid = codec.encode(Command("c-1", workflow_id, now, SignalWorkflow("s")))
    header = valid[:10]  # magic and the current schema's fingerprint
    length_bomb = bytearray(header)
    write_long(length_bomb, 2**31)  # command_id: a string "of 2 GiB", then 4 bytes
    length_bomb += b"abcd"
    future_type = bytearray(header + _string(b"c-2") + _string(key))
    write_long(future_type, now)
    write_long(future_type, 99)  # the body: a union branch this reader does not know
    not_utf8 = header + _string(b"c-3") + _string(b"\xed\xa0\x80") + b"\x00"
    elsewhere = (BAD + 1) % PARTITIONS
    # (row, kind, key, value, partition, what the reason must say)
    cases: list[tuple[int, str, bytes | None, bytes, int, str]] = [
        (1, "garbage bytes as a command", key, b"\x00not avro at all", BAD,
         "not Avro single-object encoding"),
        (2, "valid framing, unknown writer schema", key,
         MAGIC + bytes.fromhex("0123456789abcdef") + valid[10:], BAD,
         "unknown writer schema fingerprint"),
        (3, "trailing bytes after a valid command", key, valid + b"\x00\x01", BAD,
         "2 trailing bytes"),
        (3, "truncated command", key, valid[:-3], BAD, "corrupt everflow.Command body"),
        (4, "length claiming 2 GiB", key, bytes(length_bomb), BAD, "runs past the end"),
        (5, "null key", None, valid, BAD, "has no key"),
        (6, "key is not the workflow ID", on_partition("other").encode(), valid, BAD,
         "commands must be keyed by their workflow ID"),
        (6, "command on another partition than its key hashes to", key, valid, elsewhere,
         f"belongs on partition {BAD}"),
        (8, "unknown command type (future version)", key, bytes(future_type), BAD,
         "union branch 99"),
        (25, "non-UTF-8 text (a lone surrogate)", key, not_utf8, BAD, "UnicodeDecodeError"),
    ]  # fmt: skip
    records = [(k, v, p) for _, _, k, v, p, _ in cases]
    records.append((key, None, BAD))  # a tombstone
    offsets = produce_raw(config, records)
    tombstone = offsets.pop()
    run_normally(config)

    wanted = {(p, o) for (_, _, _, _, p, _), o in zip(cases, offsets, strict=True)}
    letters = dead_letters(config, wanted)
    for (row, kind, k, value, p, says), offset in zip(cases, offsets, strict=True):
        letter = letters[(p, offset)]
        assert says in letter.reason, (kind, letter.reason)
        assert letter.value == value and letter.key == k  # the record as it was
        assert f"[{p}]@{offset}" in letter.reason or str(offset) in letter.reason
        bad_input(row, kind, Outcome.DEAD_LETTERED, letter.reason)
    # dead letters and the offset past them committed together: nothing is read twice
    assert committed(config, BAD) > max(o for (p, o) in wanted if p == BAD)
    assert (BAD, tombstone) not in dead_letters(config, set())
    ignored = log_line(deployment, "ignoring a tombstone", f"offset={tombstone}")
    bad_input(7, "tombstone (no value)", Outcome.IGNORED, ignored)


# ---- activity reports that must change nothing ------------------------------------------------
def _waiting_task(config: KafkaConfig, workflow_id: str) -> Any:
    """The task of the run's activity on the unserved queue (what a runner would get)."""
    topic = Topics(config.topic_prefix).tasks(UNSERVED)
    reader = kafka.consumer(config, f"reader-{uuid.uuid4().hex[:6]}")
    reader.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = reader.poll(0.5)
            if msg is not None and msg.error() is None:
                task = wire().task.decode(msg.value())
                if task.workflow_id == workflow_id:
                    return task
        raise AssertionError(f"no task of {workflow_id}")
    finally:
        reader.close()


def test_activity_reports_for_unknown_runs_wrong_attempts_and_closed_runs_are_ignored(
    deployment: Deployment, bad_input: Any
) -> None:
    config, codec = deployment.config, wire().command
    workflow_id, ghost = on_partition("awaits"), on_partition("ghost")

    async def start(client: Client) -> str:
        handle = await client.start_workflow("AwaitsReport", id=workflow_id, task_queue=QUEUE)
        return str(handle.run_id)

    run_id = with_client(config, start)
    task = _waiting_task(config, workflow_id)
    aid, attempt = task.activity_id, task.attempt
    now = int(time.time() * 1000)

    def report(wid: str, body: Any) -> tuple[bytes, bytes, int]:
        command = Command(uuid.uuid4().hex, wid, now, body)
        return (wid.encode(), codec.encode(command), BAD)

    right = report(workflow_id, CompleteActivity(run_id, aid, attempt, to_payload("right")))
    failure = Failure("late", "RuntimeError", "application")
    produce_raw(config, [
        report(ghost, CompleteActivity(str(uuid.uuid4()), 1, 1, to_payload("ghost"))),
        report(workflow_id, CompleteActivity(run_id, aid, attempt + 4, to_payload("wrong"))),
        right,
        right,  # the same report again (a retried send)
        report(workflow_id, FailActivity(run_id, aid, attempt + 1, failure)),  # run closed
    ])  # fmt: skip

    async def outcome(client: Client) -> tuple[Any, list[Any], Any]:
        handle = client.get_workflow_handle(workflow_id)
        result = await handle.result(timeout=TIMEOUT)
        history = await handle.fetch_history()
        try:
            await client.get_workflow_handle(ghost).describe()
            ghost_seen: Any = "described"
        except WorkflowNotFoundError as e:
            ghost_seen = e
        return result, history, ghost_seen

    result, history, ghost_seen = with_client(config, outcome)
    assert result == "right"
    completed = [e for e in history if isinstance(e.attributes, ActivityCompleted)]
    assert len(completed) == 1 and completed[0].attributes.attempt == attempt
    assert isinstance(ghost_seen, WorkflowNotFoundError)  # nothing was made for the ghost
    unknown = log_line(deployment, "ignoring the result", "no run of its workflow is known")
    wrong = log_line(deployment, "ignoring the result", f"attempt {attempt + 4} of")
    closed = log_line(deployment, "ignoring the failure", run_id, "already closed")
    assert "never made that attempt" in wrong
    run_normally(config)
    bad_input(17, "activity result for an unknown run", Outcome.IGNORED, unknown)
    bad_input(17, "activity result for a wrong attempt", Outcome.IGNORED, wrong)
    bad_input(17, "activity failure for a closed run", Outcome.IGNORED, closed)
    bad_input(
        18,
        "duplicate activity completion",
        Outcome.IGNORED,
        f"{len(completed)} ActivityCompleted in history after the result was sent twice",
    )


# ---- records over the Kafka limit -------------------------------------------------------------
def test_records_over_the_limit_are_refused_before_they_are_produced(
    deployment: Deployment, bad_input: Any
) -> None:
    config = deployment.config
    commands = deployment.topics.commands
    big_output, big_start, awaiting = (on_partition(s) for s in ("output", "start", "query"))
    size = RECORD_LIMIT + 50_000  # over the worker's record limit, within its payload limit

    consumer = kafka.consumer(config)
    before = [kafka.end_offset(consumer, commands, p) for p in range(PARTITIONS)]

    async def client_side(client: Client) -> PayloadTooLargeError:
        with pytest.raises(PayloadTooLargeError) as caught:
            await client.get_workflow_handle(awaiting).signal("s", "x" * 1_000_000)
        return caught.value

    refused = with_client(config, client_side)
    after = [kafka.end_offset(consumer, commands, p) for p in range(PARTITIONS)]
    consumer.close()
    assert after == before  # nothing was sent
    assert "the arguments of signal 's'" in str(refused)
    bad_input(9, "oversized signal arguments at the client", Outcome.CLIENT_ERROR, str(refused))

    async def in_transaction(client: Client) -> tuple[Exception, Exception, Exception]:
        with pytest.raises(WorkflowFailureError) as failed:
            await client.execute_workflow(
                "BigOutput", size, id=big_output, task_queue=QUEUE, timeout=TIMEOUT
            )
        # a start whose first event would be too large: its run does not exist after the
        # batch is dropped, so the start is dead-lettered when read again, and refused
        with pytest.raises(RequestRejectedError) as start_refused:
            await client.start_workflow("Echo", "s" * size, id=big_start, task_queue=QUEUE)
        handle = await client.start_workflow("AwaitsReport", id=awaiting, task_queue=QUEUE)
        with pytest.raises(RequestRejectedError) as rejected:
            await handle.query("big", size)
        await handle.terminate("done")
        return failed.value, start_refused.value, rejected.value

    # the same as the first record of a partition nothing was ever committed on: the batch
    # is read again from the partition's start
    fresh_id = on_partition("fresh", FRESH)
    big_args = [to_payload("s" * size)]
    raw_start = Command(uuid.uuid4().hex, fresh_id, int(time.time() * 1000),
                        StartWorkflow(str(uuid.uuid4()), "Echo", QUEUE, big_args))  # fmt: skip
    (fresh_offset,) = produce_raw(
        config, [(fresh_id.encode(), wire().command.encode(raw_start), FRESH)]
    )

    failed, start_refused, rejected = with_client(config, in_transaction)
    assert "over the record limit of 200000 bytes" in str(failed)
    assert "WorkflowCompleted" in str(failed)
    assert "over the record limit" in str(rejected) and "QueryResult" in str(rejected)
    assert "WorkflowStarted" in str(start_refused)
    (letter,) = [
        d for d in read_dead_letters(config, size=10_000).letters if d.key == big_start.encode()
    ]
    assert letter.reason.startswith(str(start_refused))
    fresh = dead_letters(config, {(FRESH, fresh_offset)})[(FRESH, fresh_offset)]
    assert "WorkflowStarted" in fresh.reason and "over the record limit" in fresh.reason
    run_normally(config, FRESH)
    assert "value is not kept here" in letter.reason and letter.value is None
    run_normally(config)
    bad_input(10, "workflow result over the record limit", Outcome.RUN_FAILED, str(failed))
    bad_input(0, "query result over the record limit", Outcome.REJECTED, str(rejected))
    bad_input(
        0, "start whose first event is over the record limit", Outcome.DEAD_LETTERED, letter.reason
    )


# ---- requests for runs that are not there, duplicates, odd timestamps -------------------------
def test_requests_for_unknown_or_closed_runs_are_rejected(
    deployment: Deployment, bad_input: Any
) -> None:
    config = deployment.config
    closed_id, unknown_id = on_partition("closed"), on_partition("unknown")

    async def body(client: Client) -> tuple[Exception, Exception]:
        await client.execute_workflow("Echo", "x", id=closed_id, task_queue=QUEUE, timeout=TIMEOUT)
        with pytest.raises(WorkflowNotFoundError) as unknown:
            await client.get_workflow_handle(unknown_id).signal("s")
        with pytest.raises(WorkflowNotRunningError) as closed:
            await client.get_workflow_handle(closed_id).cancel()
        return unknown.value, closed.value

    unknown, closed = with_client(config, body)
    assert unknown_id in str(unknown) and "already closed" in str(closed)
    bad_input(15, "signal to an unknown run", Outcome.REJECTED, str(unknown))
    bad_input(15, "cancel of a closed run", Outcome.REJECTED, str(closed))


def test_duplicate_starts_make_one_run_and_old_timestamps_change_nothing(
    deployment: Deployment, bad_input: Any
) -> None:
    config = deployment.config
    workflow_id = on_partition("dup")
    # sent_at (and, below, the record's CreateTime) of 1970
    start = Command(
        uuid.uuid4().hex,
        workflow_id,
        1,
        StartWorkflow(str(uuid.uuid4()), "Echo", QUEUE, [to_payload("once")]),
    )
    raw = wire().command.encode(start)
    records = [(workflow_id.encode(), raw, BAD), (workflow_id.encode(), raw, BAD)]
    produce_raw(config, records, timestamp=1)

    async def body(client: Client) -> tuple[Any, list[Any], Exception]:
        handle = client.get_workflow_handle(workflow_id)
        result = await handle.result(timeout=TIMEOUT)
        history = await handle.fetch_history()
        with pytest.raises(WorkflowAlreadyStartedError) as again:
            await client.start_workflow(
                "Echo",
                "twice",
                id=workflow_id,
                task_queue=QUEUE,
                id_reuse_policy="reject_duplicate",
            )
        return result, history, again.value

    result, history, again = with_client(config, body)
    assert result == "once"
    starts = [e for e in history if isinstance(e.attributes, WorkflowStarted)]
    assert len(starts) == 1 and starts[0].attributes.start_command_id == start.command_id
    bad_input(
        20,
        "duplicate command record (same command ID)",
        Outcome.IGNORED,
        f"{len(starts)} WorkflowStarted for 2 records of command {start.command_id}",
    )
    bad_input(19, "second start of a workflow ID", Outcome.REJECTED, str(again))
    # a CreateTime far in the future: the broker refuses it (log.message.timestamp.after.max.ms)
    future = Command(uuid.uuid4().hex, workflow_id, 1, SignalWorkflow("s"))
    year_2100 = 4_102_444_800_000
    (refused,) = produce_raw(config, [(workflow_id.encode(), wire().command.encode(future), BAD)],
                             timestamp=year_2100, errors=True)  # fmt: skip
    assert not isinstance(refused, int) and "timestamp" in refused.str().lower()
    bad_input(23, "record CreateTime in the year 2100", Outcome.REJECTED,
              f"the broker refused it: {refused.str()}")  # fmt: skip
    bad_input(
        23,
        "record CreateTime of 1970",
        Outcome.IGNORED,
        f"run completed with {result!r}; the processor's clock, not CreateTime, is used",
    )


def test_deeply_nested_json_arguments_block_the_run_and_the_partition_goes_on(
    deployment: Deployment, bad_input: Any
) -> None:
    config, workflow_id = deployment.config, on_partition("deep")
    levels = 90_000  # as deep as fits the module's record limit
    deep = Payload(b"[" * levels + b"]" * levels, {"encoding": b"json/plain"})
    start = Command(uuid.uuid4().hex, workflow_id, int(time.time() * 1000),
                    StartWorkflow(str(uuid.uuid4()), "Echo", QUEUE, [deep]))  # fmt: skip
    produce_raw(config, [(workflow_id.encode(), wire().command.encode(start), BAD)])

    async def described(client: Client) -> Any:
        handle = client.get_workflow_handle(workflow_id)
        return await handle.describe(timeout=TIMEOUT)

    def blocked() -> Any:
        try:
            found = with_client(config, described)
        except WorkflowNotFoundError:
            return None
        return found if found.blocked is not None else None

    found = wait_until(blocked, timeout=60, interval=0.5, message="the run blocked")
    assert found.status.value == "RUNNING" and "JSON" in found.blocked.message
    run_normally(config)
    bad_input(24, f"deeply nested JSON ({levels} levels) as an argument", Outcome.RUN_BLOCKED,
              found.blocked.message)  # fmt: skip


def test_a_run_whose_snapshot_would_be_over_the_limit_is_restored_from_its_history(
    deployment: Deployment, bad_input: Any
) -> None:
    """Its snapshot is never written (its events fit a record each, not all together): the
    run's events stay in the history tail, and a restarted worker rebuilds it from there.
    (Last in the module: it restarts the worker.)"""
    config, workflow_id = deployment.config, on_partition("snapshot")
    note = "n" * (RECORD_LIMIT * 3 // 4)  # fits a record; two of them do not

    async def snapshot_over(client: Client) -> Any:
        handle = await client.start_workflow("AwaitsReport", id=workflow_id, task_queue=QUEUE)
        for _ in range(2):
            await handle.signal("note", note)
        await handle.terminate("closed, so its snapshot is due at once")
        return await handle.describe()

    before = with_client(config, snapshot_over)
    assert before.status.value == "TERMINATED"
    log_line(deployment, "snapshot of", f"workflow_id={workflow_id}", "not written")
    deployment.procs.stop_all()
    deployment.procs.start("w1", "tests.bad_inputs.records_app", task_queue=QUEUE)

    async def restored(client: Client) -> tuple[Any, Exception]:
        handle = client.get_workflow_handle(workflow_id)
        described = await handle.describe(timeout=TIMEOUT)
        with pytest.raises(RequestRejectedError) as whole:  # its history is too big to reply
            await handle.fetch_history(TIMEOUT)
        return described, whole.value

    described, whole = with_client(config, restored)
    assert described.status.value == "TERMINATED" and described.run_id == before.run_id
    assert described.history_length == before.history_length >= 4
    assert "RunDescription" in str(whole) and "over the record limit" in str(whole)
    run_normally(config)
    bad_input(0, "history export (describe) over the record limit", Outcome.REJECTED, str(whole))
