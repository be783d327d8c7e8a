"""Eager dispatch's pure parts: which tasks a transaction claims (only its runner's queue, no
more than the runner's free slots, each marked on its record), that the claimed tasks start
only once their transaction committed, and where the runner's reports may go."""

from __future__ import annotations

from typing import Any

import pytest

from processors.eager import CLAIM_HEADER, EagerReports, EagerTask, Report
from processors.run.effects import Effects
from processors.workflow_processor.batch import Batch
from processors.workflow_processor.output import AfterCommit, Output
from processors.workflow_processor.stats import Counters, Timing
from processors.workflow_processor.transactions import Transactions
from streams.kafka.topics import Topics
from streams.wire import wire
from streams.wire.commands import CompleteActivity
from streams.wire.records import ActivityTask


def task(activity_id: int, workflow_id: str = "wf-1") -> ActivityTask:
    return ActivityTask(
        workflow_id=workflow_id, run_id="r-1", workflow_type="T", activity_id=activity_id,
        activity_type="charge", attempt=1, args=[], partition=2, scheduled_at=0,
        start_to_close_timeout_ms=1000, idempotency_key=f"{workflow_id}/r-1/{activity_id}",
    )  # fmt: skip


class _Runner:
    task_queue = "payments"
    runner_id = "runner-abc"
    eager_running = 0

    def __init__(self, free: int) -> None:
        self.free = free
        self.started: list[EagerTask] = []

    def free_slots(self) -> int:
        return self.free

    def start_eager(self, tasks: list[EagerTask]) -> None:
        self.started.extend(tasks)


class _Producer:
    """Records what is produced; commits (or fails to) like a transactional producer."""

    def __init__(self, fail_commit: bool = False) -> None:
        self.records: list[tuple[str, Any]] = []
        self.fail_commit = fail_commit

    def produce(self, topic: str, value: Any, key: Any, **kwargs: Any) -> None:
        self.records.append((topic, kwargs.get("headers")))

    def begin_transaction(self) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_commit:
            raise RuntimeError("commit failed")

    def flush(self, timeout: float) -> int:
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def produce(runner: _Runner | None, *tasks: tuple[str, ActivityTask]) -> tuple[_Producer, Any]:
    producer = _Producer()
    topics = Topics("t.")
    output = Output(
        producer,  # type: ignore[arg-type]
        topics,
        wire(),
        topics.tasks,
        4,
        4,
        Counters(),
        lambda callback: callback,
        eager=runner,
    )
    batch = Batch({}, fx={2: Effects(tasks=list(tasks))})
    return producer, output.produce(batch, {}, 0, 0)


def test_a_transaction_claims_its_runners_tasks_up_to_the_free_slots_and_marks_them() -> None:
    runner = _Runner(free=2)
    producer, after = produce(
        runner,
        ("payments", task(1)),
        ("shipping", task(2)),  # another queue: for whoever serves it
        ("payments", task(3)),
        ("payments", task(4)),  # no slot left: through the tasks topic
    )
    assert [e.task.activity_id for e in after.eager] == [1, 3]
    headers = {topic: [] for topic, _ in producer.records}
    for topic, h in producer.records:
        headers[topic].append(dict(h or []).get(CLAIM_HEADER))
    assert headers == {
        "t.tasks.payments": [b"runner-abc", b"runner-abc", None],
        "t.tasks.shipping": [None],
    }
    assert runner.started == []  # nothing starts before the transaction commits


def test_without_an_eager_runner_or_a_free_slot_nothing_is_claimed() -> None:
    for runner in (None, _Runner(free=0)):
        producer, after = produce(runner, ("payments", task(1)))
        assert after.eager == []
        assert producer.records == [("t.tasks.payments", None)]


def _transactions(producer: _Producer, started: list[Any]) -> Transactions[AfterCommit]:
    def committed(after: AfterCommit) -> None:
        started.extend(after.eager)

    return Transactions(producer, Timing(), committed=committed)  # type: ignore[arg-type]


def test_claimed_tasks_start_once_their_transaction_committed_and_never_after_a_failure() -> None:
    claimed = [EagerTask(task(1), None)]
    after = AfterCommit([], {}, None, [], claimed)  # type: ignore[arg-type]
    started: list[EagerTask] = []
    txns = _transactions(_Producer(), started)
    try:
        txns.begin()
        txns.hand_off([], None, after)
        assert txns.settle() is after
        assert started == claimed
    finally:
        txns.close()
    started.clear()
    txns = _transactions(_Producer(fail_commit=True), started)
    try:
        txns.begin()
        txns.hand_off([], None, after)
        with pytest.raises(RuntimeError):
            txns.settle()
        assert started == []
    finally:
        txns.close()


def test_reports_go_to_the_processor_only_for_partitions_it_owns_and_until_it_closes() -> None:
    owned = {2}
    reports = EagerReports(lambda p: p in owned)
    body = CompleteActivity("r-1", 1, 1, None)  # type: ignore[arg-type]
    mine, moved = Report(2, "wf-1", body), Report(3, "wf-2", body)
    assert reports.offer(mine) is True
    assert reports.offer(moved) is False  # the runner sends it through `commands`
    assert reports.take() == [mine] and reports.take() == []
    assert reports.offer(mine) is True
    assert reports.close() == [mine]  # the processor forwards what it did not record
    assert reports.offer(mine) is False


def test_a_batch_that_only_touched_runs_writes_nothing_and_one_with_output_does() -> None:
    """A duplicate report touches its run (its effects exist, empty): the batch has only
    offsets to commit, which the processor defers to the next transaction."""
    batch = Batch({}, fx={2: Effects(), 3: Effects(task_traces={("r", 1, 1): {"a": "b"}})})
    batch.offsets[2] = 10
    assert not batch.writes()
    for fx in (
        Effects(tasks=[("payments", task(1))]),
        Effects(local_tasks=[task(2)]),
        Effects(timer_ops=[("k", None)]),
    ):
        assert Batch({}, fx={2: fx}).writes()
    assert Batch({}, dead=[(None, "bad")]).writes()  # type: ignore[list-item]


def test_the_runner_starts_claimed_tasks_reports_in_process_and_fails_one_that_cannot_start() -> (
    None
):
    """An eager task whose arguments do not decode fails at once (the slot is freed, the
    failure reported); the others run and report, in process and with a copy for
    `commands`."""
    import asyncio
    import concurrent.futures
    import dataclasses
    import threading
    import time

    from processors.activity_runner.runner import ActivityRunner, RunnerConfig
    from processors.workflow_code.registry import Registry
    from streams import activity
    from streams.kafka.config import KafkaConfig
    from streams.payload import DataConverter, Payload
    from streams.wire.commands import FailActivity

    @activity.defn(name="charge")
    def charge(amount: int) -> str:
        return f"charged {amount}"

    converter = DataConverter()
    runner = ActivityRunner(
        KafkaConfig(bootstrap="127.0.0.1:1"), Registry([], [charge]), RunnerConfig("payments")
    )
    copies = _Producer()
    runner.producer = copies  # type: ignore[assignment]
    reports = EagerReports(lambda p: True)
    runner.eager_reports = reports
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    runner.open_for_eager(pool, loop)
    good = dataclasses.replace(task(1), args=converter.to_payloads([5]))
    bad = dataclasses.replace(task(2), args=[Payload(b"{not json")])
    try:
        runner.start_eager([EagerTask(good, None), EagerTask(bad, None)])
        got: list[Report] = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            got += reports.take()
            time.sleep(0.01)
    finally:
        runner.close_for_eager()
        pool.shutdown()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    by_id = {r.body.activity_id: r.body for r in got}  # type: ignore[union-attr]
    assert isinstance(by_id[1], CompleteActivity)
    assert converter.from_payload(by_id[1].result) == "charged 5"
    assert isinstance(by_id[2], FailActivity)
    assert runner.eager_running == 0
    assert [topic for topic, _ in copies.records] == ["everflow.commands"] * 2
