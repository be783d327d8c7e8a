"""The history checker on the single session broker: a clean workload passes every invariant,
and a violation of each invariant, planted for real on the broker (or in the ledger the
invariant reads), is reported by that invariant and by no other.

One workload serves both: real worker processes run it, the driver logs it, the workers
stop, the checker judges it; then the plants go in and it judges again.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from tests.faults.checker import INVARIANTS, Ledgers, Report, check, render
from tests.faults.driver import Driver, read_ops
from tests.faults.records import Record, Schemas, read_topic
from tests.faults.workload import QUEUE, append_line, read_lines
from tests.helpers import wait_until
from tests.integration.workers import ROOT, WorkerProcesses

pytestmark = pytest.mark.integration
RUNS = 200


def worker_env(config: KafkaConfig, ledgers: Ledgers) -> dict[str, str]:
    return {
        **os.environ,
        **ledgers.env(),
        "EVERFLOW_BOOTSTRAP": config.bootstrap,
        "EVERFLOW_TOPIC_PREFIX": config.topic_prefix,
        "EVERFLOW_PARTITIONS": str(config.partitions),
        "EVERFLOW_BANK_STEP_TIMEOUT": "5",
        "PYTHONPATH": str(ROOT),
    }


@dataclass
class Workload:
    config: KafkaConfig
    ops: Path
    ledgers: Ledgers
    clean: Report


@pytest.fixture(scope="module")
def workload(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workload]:
    tmp = tmp_path_factory.mktemp("faults")
    prefix = f"t{uuid.uuid4().hex[:10]}."
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=prefix, partitions=4)
    ensure_topics(kafka.admin(config), topic_specs(config, [QUEUE]))
    ledgers = Ledgers(bank=tmp / "bank.jsonl", attempts=tmp / "attempts.jsonl")
    procs = WorkerProcesses(worker_env(config, ledgers), tmp)
    ops = tmp / "ops.jsonl"
    try:
        for i in range(2):
            procs.start(f"faults-{i}", "tests.faults.workload", task_queue=QUEUE)
        driver = Driver(config, ops, timer_seconds=(1.0, 4.0), signal_count=(3, 8))
        thread = threading.Thread(
            target=driver.run, kwargs={"n_runs": RUNS, "deadline": timedelta(seconds=120)}
        )
        thread.start()
        thread.join()
    finally:
        procs.stop_all()
    assert len(driver.closes) == RUNS, procs.logs()[-3000:]
    yield Workload(config, ops, ledgers, check(config, ops, ledgers, fault="none"))


def test_clean_workload_violates_no_invariant(workload: Workload) -> None:
    report = workload.clean
    print(render([report]))
    assert report.runs == RUNS and report.closed == RUNS
    assert report.ok, report.details()
    kinds = {o["value"]["kind"] for o in read_ops(workload.ops) if o["f"] == "start"}
    assert kinds == {"transfer", "saga", "timer", "signals"}
    assert any(a["outcome"] == "error" for a in read_lines(workload.ledgers.attempts))


# ---- plants ----------------------------------------------------------------------------------
class Plants:
    """Produces planted records on the workload's topics, and remembers what it planted."""

    def __init__(self, workload: Workload) -> None:
        self.w = workload
        self.schemas = Schemas()
        self.producer = Producer(workload.config.client_settings(**{"enable.idempotence": True}))
        prefix = workload.config.topic_prefix
        self.history_topic = f"{prefix}history"
        self.completions_topic = f"{prefix}completions"
        records = read_topic(workload.config, self.history_topic)
        self.events: dict[str, list[tuple[Record, dict[str, Any]]]] = {}
        for r in records:
            e = self.schemas.decode("HistoryEvent", r.value)
            self.events.setdefault(e["workflow_id"], []).append((r, e))
        self.completions = {
            c["workflow_id"]: (r, c)
            for r in read_topic(workload.config, self.completions_topic)
            for c in [self.schemas.decode("Completion", r.value)]
        }
        self.planted: dict[str, str] = {}  # invariant -> workflow ID it planted in

    def run_of(self, kind: str, nth: int) -> str:
        ids = sorted(w for w in self.events if w.startswith(f"run-{kind}-"))
        return ids[nth]

    def event(self, wid: str, kind: str) -> tuple[Record, dict[str, Any]]:
        return next(x for x in self.events[wid] if x[1]["attributes"][0].endswith("." + kind))

    def produce_history(
        self, record: Record, event: dict[str, Any], key: str | None = None
    ) -> None:
        raw = self.schemas.encode("HistoryEvent", event)
        self.producer.produce(
            self.history_topic,
            raw,
            (key or event["workflow_id"]).encode(),
            partition=record.partition,
        )

    def append(self, wid: str, kind: str, **changes: Any) -> None:
        """A copy of the run's first `kind` event appended as its next event."""
        record, event = self.event(wid, kind)
        last = self.events[wid][-1][1]["event_id"]
        attrs = event["attributes"]
        new_attrs = (attrs[0], {**attrs[1], **changes.pop("attributes", {})})
        self.produce_history(
            record, {**event, "event_id": last + 1, "attributes": new_attrs, **changes}
        )

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


@pytest.fixture(scope="module")
def planted(workload: Workload) -> tuple[Report, dict[str, str]]:
    p = Plants(workload)

    # I1: a run closes twice on completions
    wid = p.run_of("transfer", 0)
    record, _ = p.completions[wid]
    p.producer.produce(p.completions_topic, record.value, record.key, partition=record.partition)
    p.planted["I1"] = wid

    # I2: a duplicate history record, the same event ID again
    wid = p.run_of("transfer", 1)
    record, event = p.events[wid][1]
    p.produce_history(record, event)
    p.planted["I2"] = wid

    # I3: a second outcome for one activity attempt
    wid = p.run_of("transfer", 2)
    p.append(wid, "ActivityCompleted")
    p.planted["I3"] = wid

    # I3 again: an outcome in history that no execution in the attempts ledger produced
    wid = p.run_of("transfer", 5)
    kept = [a for a in read_lines(workload.ledgers.attempts) if a["workflow_id"] != wid]
    workload.ledgers.attempts.write_bytes(b"".join(orjson.dumps(a) + b"\n" for a in kept))
    p.planted["I3 ledger"] = wid

    # I4: an acknowledged signal delivered a second time
    wid = p.run_of("signals", 0)
    p.append(wid, "SignalReceived")
    p.planted["I4"] = wid

    # I5: one idempotency key's effect applied twice in the bank
    wid = p.run_of("transfer", 3)
    entry = next(e for e in read_lines(workload.ledgers.bank) if e["key"].startswith(wid + "/"))
    append_line(workload.ledgers.bank, entry)
    p.planted["I5"] = wid

    # I6: a timer fired before it was due (and a second time)
    wid = p.run_of("timer", 0)
    _, started = p.event(wid, "TimerStarted")
    p.append(wid, "TimerFired", time=started["attributes"][1]["fire_at"] - 500)
    p.planted["I6"] = wid

    # I7: a history the code cannot have written (an activity where it sleeps first)
    source = p.run_of("timer", 1)
    nde, run_id = "planted-nondeterministic", str(uuid.uuid4())
    for event_id, kind in ((1, "WorkflowStarted"), (2, "ActivityScheduled")):
        record, event = p.event(source, kind)
        p.produce_history(
            record, {**event, "workflow_id": nde, "run_id": run_id, "event_id": event_id}
        )
    p.planted["I7"] = nde

    # I8: a run closed only in an aborted transaction, and its completion committed anyway
    source = p.run_of("transfer", 4)
    aborted, run_id = "planted-aborted", str(uuid.uuid4())
    txn = Producer(
        workload.config.client_settings(**{"transactional.id": f"plant-{uuid.uuid4().hex}"})
    )
    txn.init_transactions(30)
    txn.begin_transaction()
    for event_id, kind in ((1, "WorkflowStarted"), (2, "WorkflowCompleted")):
        record, event = p.event(source, kind)
        raw = p.schemas.encode(
            "HistoryEvent",
            {**event, "workflow_id": aborted, "run_id": run_id, "event_id": event_id},
        )
        txn.produce(p.history_topic, raw, aborted.encode(), partition=record.partition)
    txn.flush(30)
    txn.abort_transaction(30)
    record, completion = p.completions[source]
    raw = p.schemas.encode("Completion", {**completion, "workflow_id": aborted, "run_id": run_id})
    p.producer.produce(p.completions_topic, raw, aborted.encode(), partition=record.partition)
    p.planted["I8"] = aborted

    # I8 again: a request the processors never consumed nor answered (sent after they stopped)
    unconsumed = "planted-unconsumed"
    record, command = next(
        (r, c)
        for r in read_topic(workload.config, f"{workload.config.topic_prefix}commands")
        for c in [p.schemas.decode("Command", r.value)]
        if c["body"][0].endswith(".StartWorkflow")
    )
    raw = p.schemas.encode(
        "Command", {**command, "command_id": uuid.uuid4().hex, "workflow_id": unconsumed}
    )
    p.producer.produce(record.topic, raw, unconsumed.encode(), partition=record.partition)
    p.planted["I8 unconsumed"] = unconsumed

    p.flush()
    return check(workload.config, workload.ops, workload.ledgers, fault="planted"), p.planted


@pytest.mark.parametrize("plant", [*INVARIANTS, "I3 ledger", "I8 unconsumed"])
def test_planted_violation_is_reported_by_its_invariant_only(
    planted: tuple[Report, dict[str, str]], plant: str
) -> None:
    report, plants = planted
    invariant, wid = plant[:2], plants[plant]
    assert report.violations[invariant], report.details()
    others = [i for i in INVARIANTS if any(names(v, wid) for v in report.violations[i])]
    assert others == [invariant], report.details()
    # every violation of this invariant is one of its plants' (a total names no run)
    ours = [w for k, w in plants.items() if k[:2] == invariant]
    strays = [
        v
        for v in report.violations[invariant]
        if not any(names(v, w) for w in ours) and not v.startswith("sum ")
    ]
    assert strays == [], report.details()


def names(violation: str, workflow_id: str) -> bool:
    """Whether a violation is about this workflow ID (not one it is a prefix of)."""
    return re.search(rf"(^|\s){re.escape(workflow_id)}[/:]", violation) is not None


def test_driver_retries_starts_through_an_outage_and_the_checker_accepts_them(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    # no worker answers at first: every start times out (indeterminate) and is retried,
    # and the commands of the timed-out attempts still wait on the topic
    config = KafkaConfig(bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, partitions=4)
    ensure_topics(kafka.admin(config), topic_specs(config, [QUEUE]))
    ledgers = Ledgers(bank=tmp_path / "bank.jsonl", attempts=tmp_path / "attempts.jsonl")
    ops = tmp_path / "ops.jsonl"
    driver = Driver(
        config,
        ops,
        timer_seconds=(1.0, 2.0),
        signal_count=(2, 3),
        request_timeout=timedelta(seconds=1),
    )
    thread = threading.Thread(
        target=driver.run, kwargs={"n_runs": 10, "deadline": timedelta(seconds=60)}
    )
    procs = WorkerProcesses(worker_env(config, ledgers), tmp_path)
    thread.start()
    try:
        wait_until(
            lambda: sum(o["type"] == "info" for o in read_ops(ops)) >= 10,
            timeout=30,
            message="no start timed out",
        )
        procs.start("faults-late", "tests.faults.workload", task_queue=QUEUE)
        thread.join(90)
    finally:
        driver.stop()
        thread.join(30)
        procs.stop_all()
    assert len(driver.closes) == 10, procs.logs()[-3000:]
    log = read_ops(ops)
    retried = {o["workflow_id"] for o in log if o["f"] == "start" and o["type"] == "info"}
    acked = {o["workflow_id"] for o in log if o["f"] == "start" and o["type"] == "ok"}
    assert retried & acked  # the same runs: timed out first, acknowledged on a retry
    report = check(config, ops, ledgers, fault="late worker")
    assert report.ok, report.details()
    assert report.closed == 10


def test_render_prints_a_row_per_fault(planted: tuple[Report, dict[str, str]]) -> None:
    report, _ = planted
    report.recovery = [1.0, 2.0, 7.5]
    table = render([report])
    row = table.splitlines()[2]
    assert row.startswith(f"| planted | {RUNS} | ")
    assert row.endswith("| 2.0 s / 7.5 s |")
    assert "I8:" in table  # the examples follow the table
