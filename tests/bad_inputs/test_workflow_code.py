"""Bad workflow code and bad messages to a run, on a real broker and a real worker process.

One worker serves the whole module, on two partitions, with a 1 s deadlock timeout, a limit
of 5 signals, 3 open activities and 60 history events per run. Each test asserts what became of
the bad input, that the partition it landed on goes on serving other runs, and then reports
the row of the bad-input table with the reason text it saw.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from streams import (
    Client,
    ReadOnlyContextError,
    RequestRejectedError,
    SignalLimitError,
    WorkflowFailureError,
    WorkflowIdError,
    kafka,
)
from streams.kafka.clients import partition_for
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.payload import DataConverter, Payload
from streams.wire.records import Failure, RunDescription, RunStatus
from tests.bad_inputs.clients import blocked
from tests.bad_inputs.conftest import Report
from tests.bad_inputs.table import Outcome
from tests.helpers import wait_until
from tests.integration.workers import ROOT, WorkerProcesses, topics_for
from tests.integration.workers import with_client as run

pytestmark = pytest.mark.integration

QUEUE = "bad-code"
PARTITIONS = 2
WORKER_ENV = {
    "EVERFLOW_PARTITIONS": str(PARTITIONS),
    "EVERFLOW_DEADLOCK_TIMEOUT": "1",
    "EVERFLOW_MAX_SIGNALS": "5",
    "EVERFLOW_MAX_HISTORY_EVENTS": "60",
    "EVERFLOW_MAX_PENDING": "3",
}
WAIT = timedelta(seconds=60)


@pytest.fixture(scope="module")
def config(kafka_bootstrap: str) -> KafkaConfig:
    prefix = f"t-{uuid.uuid4().hex[:8]}."
    return topics_for(kafka_bootstrap, prefix, QUEUE, partitions=PARTITIONS)


@pytest.fixture(scope="module")
def worker(
    config: KafkaConfig, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcesses]:
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": kafka_bootstrap,
        "EVERFLOW_TOPIC_PREFIX": config.topic_prefix,
        "PYTHONPATH": str(ROOT),
        **WORKER_ENV,
    }
    procs = WorkerProcesses(env, tmp_path_factory.mktemp("bad-code-worker"))
    try:
        procs.start("bad-code", "tests.bad_inputs.apps", task_queue=QUEUE)
        yield procs
    finally:
        procs.stop_all()


def neighbour(workflow_id: str) -> str:
    """Another workflow ID on the same partition as `workflow_id`."""
    target = partition_for(workflow_id, PARTITIONS)
    for i in range(100):
        candidate = f"{workflow_id}-neighbour-{i}"
        if partition_for(candidate, PARTITIONS) == target:
            return candidate
    raise AssertionError("no neighbour found")


async def neighbour_completes(client: Client, workflow_id: str) -> None:
    """A run on the same partition as `workflow_id` starts and completes."""
    other = neighbour(workflow_id)
    result = await client.execute_workflow("Quick", other, id=other, task_queue=QUEUE, timeout=WAIT)
    assert result == other


# ---- code that misbehaves ----------------------------------------------------------------------
def test_code_that_never_yields_is_blocked_as_a_deadlock_and_the_partition_goes_on(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> tuple[Failure, RunDescription]:
        await client.start_workflow("Busy", id="busy", task_queue=QUEUE)
        reason = await blocked(client, "busy")
        await neighbour_completes(client, "busy")
        return reason, await client.get_workflow_handle("busy").describe()

    reason, described = run(config, body)

    assert reason.type == "DeadlockError"
    assert "did not yield within 1 s: potential deadlock at" in reason.message
    assert "tests/bad_inputs/apps.py:" in reason.message
    assert described.status is RunStatus.RUNNING  # blocked, not failed: a fix resumes it
    assert "workflow code did not yield within 1 s" in worker.logs()
    bad_input(31, "workflow code blocks the loop (while True)", Outcome.RUN_BLOCKED, reason.message)


def test_new_code_resumes_a_deadlocked_run_and_blocks_a_run_it_no_longer_replays(
    kafka_bootstrap: str, tmp_path: Path, bad_input: Report
) -> None:
    """On topics of its own: the module's worker must not meet the other code."""
    config = topics_for(kafka_bootstrap, f"t-{uuid.uuid4().hex[:8]}.", QUEUE, partitions=1)
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": kafka_bootstrap,
        "EVERFLOW_TOPIC_PREFIX": config.topic_prefix,
        "PYTHONPATH": str(ROOT),
        **WORKER_ENV,
        "EVERFLOW_PARTITIONS": "1",
    }
    procs = WorkerProcesses(env, tmp_path)
    try:
        buggy = procs.start("fix-1", "tests.bad_inputs.apps", task_queue=QUEUE)

        async def block(client: Client) -> Failure:
            await client.start_workflow("Busy", id="busy-then-fixed", task_queue=QUEUE)
            return await blocked(client, "busy-then-fixed")

        async def sleep_after_a_step(client: Client) -> None:
            handle = await client.start_workflow("Steps", id="steps", task_queue=QUEUE)
            for _ in range(600):
                history = await handle.fetch_history()
                if any(type(e.attributes).__name__ == "TimerStarted" for e in history):
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("the run never reached its timer")

        reason = run(config, block)
        run(config, sleep_after_a_step)
        procs.kill(buggy)
        procs.start("fix-1", "tests.bad_inputs.apps_fixed", task_queue=QUEUE)

        async def resume(client: Client) -> tuple[str, list[str], Failure]:
            handle = client.get_workflow_handle("busy-then-fixed")
            result = await handle.result(timeout=WAIT)
            kinds = [type(e.attributes).__name__ for e in await handle.fetch_history()]
            return result, kinds, await blocked(client, "steps")

        result, kinds, diverged = run(config, resume)
    finally:
        procs.stop_all()

    assert reason.type == "DeadlockError"
    assert result == "fixed"
    assert kinds.count("WorkflowBlocked") == 1 and kinds.count("WorkflowUnblocked") == 1
    assert diverged.type == "NonDeterminismError"
    assert "ActivityScheduled('echo')" in diverged.message and "apps_fixed.py:" in diverged.message
    bad_input(33, "changed code diverges on replay", Outcome.RUN_BLOCKED, diverged.message)


def test_a_signal_handler_that_raises_a_plain_error_blocks_the_run(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> Failure:
        handle = await client.start_workflow("Mailbox", id="stumbles", task_queue=QUEUE)
        await handle.signal("stumble")
        reason = await blocked(client, "stumbles")
        await neighbour_completes(client, "stumbles")
        return reason

    reason = run(config, body)

    assert reason.type == "KeyError" and "missing" in reason.message
    seen = f"{reason.type}: {reason.message}"
    bad_input(30, "KeyError in a signal handler", Outcome.RUN_BLOCKED, seen)


def test_a_signal_handler_that_raises_an_application_error_fails_the_run(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> WorkflowFailureError:
        handle = await client.start_workflow("Mailbox", id="refuses", task_queue=QUEUE)
        await handle.signal("refuse")
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result(timeout=WAIT)
        return failed.value

    error = run(config, body)

    assert "the mailbox refuses on purpose" in str(error.__cause__)
    bad_input(29, "ApplicationError in a signal handler", Outcome.RUN_FAILED, str(error))


def test_a_query_that_schedules_work_gets_a_read_only_error_and_the_run_is_unaffected(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> tuple[ReadOnlyContextError, int]:
        handle = await client.start_workflow("Mailbox", id="queried", task_queue=QUEUE)
        await handle.signal("add", 4)
        with pytest.raises(ReadOnlyContextError) as refused:
            await handle.query("charge_now")
        count = await handle.query("count")
        await handle.signal("finish")
        assert await handle.result(timeout=WAIT) == 4  # no activity ran for the query
        return refused.value, count

    error, count = run(config, body)

    assert "query 'charge_now' tried to schedule work; it may only read state" in str(error)
    assert count == 1
    bad_input(32, "query handler schedules an activity", Outcome.REJECTED, str(error))


@pytest.mark.parametrize(
    ("seconds", "kind", "why"),
    [
        (-5.0, "timer of a negative duration", "is negative"),
        (200 * 365 * 86400.0, "timer of 200 years", "is longer than 100 years"),
        (1e20, "timer beyond int64 milliseconds", "not a timer duration"),
    ],
)
def test_a_timer_of_an_absurd_duration_blocks_the_run_by_name(
    config: KafkaConfig,
    worker: WorkerProcesses,
    bad_input: Report,
    seconds: float,
    kind: str,
    why: str,
) -> None:
    workflow_id = f"sleeper-{kind.split()[-1]}"

    async def body(client: Client) -> Failure:
        await client.start_workflow("Sleeper", seconds, id=workflow_id, task_queue=QUEUE)
        reason = await blocked(client, workflow_id)
        await neighbour_completes(client, workflow_id)
        return reason

    reason = run(config, body)

    assert reason.type == "TimerDurationError" and why in reason.message
    bad_input(21, kind, Outcome.RUN_BLOCKED, reason.message)


def test_an_unknown_activity_fails_its_attempts_by_the_retry_policy(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> tuple[WorkflowFailureError, list[str]]:
        handle = await client.start_workflow(
            "CallsUnknownActivity", id="unknown-activity", task_queue=QUEUE
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result(timeout=WAIT)
        history = await handle.fetch_history()
        return failed.value, [type(e.attributes).__name__ for e in history]

    error, kinds = run(config, body)

    cause = str(error.__cause__)
    assert "'no_such_activity' is not registered on this worker" in cause
    assert kinds.count("ActivityAttemptFailed") + kinds.count("ActivityFailed") == 2  # 2 attempts
    bad_input(12, "unknown activity type", Outcome.RUN_FAILED, cause)


def test_an_unknown_workflow_type_blocks_its_run(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> Failure:
        await client.start_workflow("NoSuchWorkflow", id="unknown-type", task_queue=QUEUE)
        reason = await blocked(client, "unknown-type")
        await neighbour_completes(client, "unknown-type")
        return reason

    reason = run(config, body)

    assert "'NoSuchWorkflow' is not registered on this worker" in reason.message
    bad_input(11, "unknown workflow type", Outcome.RUN_BLOCKED, reason.message)


def test_a_history_that_grows_past_the_limit_fails_the_run(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> WorkflowFailureError:
        handle = await client.start_workflow("Chatty", id="chatty", task_queue=QUEUE)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result(timeout=WAIT)
        return failed.value

    error = run(config, body)

    assert "history reached" in str(error.__cause__) and "continue_as_new" in str(error.__cause__)
    bad_input(35, "history grows without bound", Outcome.RUN_FAILED, str(error.__cause__))


def test_code_that_opens_more_activities_than_the_limit_blocks_its_run(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> tuple[int, Failure]:
        within = await client.execute_workflow(
            "FanOut", 3, id="fan-out-3", task_queue=QUEUE, timeout=WAIT
        )
        await client.start_workflow("FanOut", 4, id="fan-out-4", task_queue=QUEUE)
        reason = await blocked(client, "fan-out-4")
        await neighbour_completes(client, "fan-out-4")
        return within, reason

    within, reason = run(config, body)

    assert within == 3
    assert reason.type == "PendingLimitError" and "has 3 activities open" in reason.message
    bad_input(34, "too many pending activities (limit + 1)", Outcome.RUN_BLOCKED, reason.message)


# ---- messages that misbehave -------------------------------------------------------------------
class Garbled:
    """A codec that turns every payload into bytes no JSON decoder takes."""

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [Payload(b"\xff{not json", {"encoding": b"json/plain"}) for _ in payloads]

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


def test_a_signal_whose_arguments_do_not_decode_is_dropped_and_the_run_goes_on(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def send_garbled(client: Client) -> None:
        await client.get_workflow_handle("garbled").signal("add", 1)

    async def start(client: Client) -> None:
        await client.start_workflow("Mailbox", id="garbled", task_queue=QUEUE)

    async def finish(client: Client) -> tuple[int, RunDescription]:
        handle = client.get_workflow_handle("garbled")
        await handle.signal("add", 2)
        await handle.signal("finish")
        return await handle.result(timeout=WAIT), await handle.describe()

    run(config, start)
    run(config, send_garbled, DataConverter([Garbled()]))
    total, described = run(config, finish)

    assert total == 2  # the garbled signal was dropped, the next ones counted
    assert described.blocked is None
    logs = wait_until(lambda: "do not decode" in worker.logs() and worker.logs())
    [line] = [line for line in logs.splitlines() if "signal 'add' do not decode" in line]
    seen = line.split("handlers: ", 1)[-1]  # the log line, without its time and logger
    bad_input(14, "signal arguments that do not decode", Outcome.IGNORED, seen)


def test_start_arguments_that_do_not_decode_block_the_run(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> Failure:
        await client.start_workflow("Sleeper", 1.0, id="garbled-start", task_queue=QUEUE)
        return await blocked(client, "garbled-start")

    reason = run(config, body, DataConverter([Garbled()]))
    run(config, lambda client: neighbour_completes(client, "garbled-start"))

    assert reason.type == "PayloadDecodeError" and "not valid JSON" in reason.message
    kind = "start arguments the converter cannot decode"
    bad_input(26, kind, Outcome.RUN_BLOCKED, reason.message)


def test_signals_past_the_limit_are_refused_with_a_limit_error_and_none_below_it_lost(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> tuple[list[SignalLimitError], int]:
        handle = await client.start_workflow("Mailbox", id="flooded", task_queue=QUEUE)
        refused = []
        for n in range(1, 8):  # the limit is 5: the last two are refused
            try:
                await handle.signal("add", n)
            except SignalLimitError as e:
                refused.append(e)
        return refused, await handle.query("count")

    refused, count = run(config, body)

    assert len(refused) == 2 and count == 5
    assert "has received the maximum of 5 signals" in str(refused[0])
    bad_input(16, "signal flood (limit + 2)", Outcome.REJECTED, str(refused[0]))


def test_an_unknown_signal_name_is_refused_to_the_sender(
    config: KafkaConfig, worker: WorkerProcesses, bad_input: Report
) -> None:
    async def body(client: Client) -> tuple[RequestRejectedError, int]:
        handle = await client.start_workflow("Mailbox", id="unknown-signal", task_queue=QUEUE)
        with pytest.raises(RequestRejectedError) as refused:
            await handle.signal("no_such_signal", 1)
        await handle.signal("add", 1)
        return refused.value, await handle.query("count")

    error, count = run(config, body)

    assert "has no signal 'no_such_signal'" in str(error) and count == 1
    bad_input(13, "unknown signal name", Outcome.REJECTED, str(error))


def test_an_over_long_workflow_id_is_refused_at_the_client_and_nothing_is_sent(
    config: KafkaConfig, bad_input: Report
) -> None:
    def commands_written() -> int:
        consumer = kafka.consumer(config)
        try:
            commands = Topics(config.topic_prefix).commands
            return sum(kafka.end_offset(consumer, commands, p) for p in range(PARTITIONS))
        finally:
            consumer.close()

    before = commands_written()

    async def body(client: Client) -> WorkflowIdError:
        with pytest.raises(WorkflowIdError) as refused:
            await client.start_workflow("Quick", "x", id="x" * 1001, task_queue=QUEUE)
        with pytest.raises(WorkflowIdError):
            await client.get_workflow_handle("y" * 5000).signal("add", 1)
        return refused.value

    error = run(config, body)

    assert "is 1001 characters, over the limit of 1000" in str(error)
    assert commands_written() == before
    bad_input(36, "workflow ID over 1,000 characters", Outcome.CLIENT_ERROR, str(error))
