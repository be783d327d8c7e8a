"""The fault suite: the workload (transfers, sagas, timers, signals) runs on a three-broker
cluster while one fault, or a mix, is injected; then the history checker judges everything
the run left in Kafka and the ledgers. A table per fault is printed at the end of the session
and written to tests/reports/faults.md.

CI mode (the default): one round of `FAULT_RUNS` (1,000) runs per fault, all started at
once, the fault injected once. Long mode (`make soak`, EVERFLOW_SOAK=1): `SOAK_ROUNDS` rounds
per fault, each a sustained workload of `FAULT_RUNS` runs open at a time, a new one started
as one closes for `SOAK_SECONDS` (300), with the fault injected again and again until the
round's runs are done, `SOAK_QUIET_SECONDS` (30) after each heal.
A fault test that cannot set up its network or cgroups fails with the reason; it never
passes by skipping.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from tests.faults.checker import Ledgers, Report, check
from tests.faults.driver import Driver
from tests.faults.harness import (
    SCENARIOS,
    WORKER_ENV,
    FaultLab,
    ScenarioContext,
    Timeline,
    history_progress,
    wait_quiet,
)
from tests.faults.workload import LEDGER_ENV, QUEUE

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.fault_scenarios]

SOAK = os.environ.get("EVERFLOW_SOAK", "") not in ("", "0")
FAULT_RUNS = int(os.environ.get("EVERFLOW_FAULT_RUNS", "1000"))
SOAK_ROUNDS = 5
SOAK_SECONDS = float(os.environ.get("EVERFLOW_SOAK_SECONDS", "300"))
SOAK_PLAN = 100_000  # more runs than a round can start: the round's time ends it
# seconds between a repeated fault's heal and its next inject: the cluster and the workers
# recover in between (a 20 s cut repeated 3 s after each heal left nothing time to recover)
SOAK_QUIET_SECONDS = 30.0
WORKERS = ["w1", "w2"]
PARTITIONS = 6

REPORTS: list[Report] = []


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLab]:
    with FaultLab(tmp_path_factory.mktemp("fault-lab")) as lab:
        yield lab


def _round(lab: FaultLab, fault: str, folder: Path, runs: int, repeat: bool) -> Report:
    """One workload under one fault scenario; the checker's report."""
    prefix = f"f-{uuid.uuid4().hex[:6]}."
    config = KafkaConfig(
        bootstrap=lab.bootstrap, topic_prefix=prefix, partitions=PARTITIONS, replication_factor=3
    )
    lab.wait_healthy()
    try:
        ensure_topics(kafka.admin(config), topic_specs(config, [QUEUE]))
    except Exception as e:
        raise AssertionError(f"topics not made before {fault}\n{lab.health()}") from e
    ledgers = Ledgers(bank=folder / "bank.jsonl", attempts=folder / "attempts.jsonl")
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": lab.bootstrap,
        "EVERFLOW_TOPIC_PREFIX": prefix,
        "EVERFLOW_PARTITIONS": str(PARTITIONS),
        "EVERFLOW_REPLICATION_FACTOR": "3",
        "EVERFLOW_BANK_LEDGER": str(ledgers.bank),
        "EVERFLOW_BANK_STEP_TIMEOUT": "5",
        LEDGER_ENV: str(ledgers.attempts),
        **WORKER_ENV.get(fault, {}),
    }

    def start(name: str) -> None:
        lab.start_worker(name, env, "tests.faults.workload", "--task-queue", QUEUE)

    for name in WORKERS:
        start(name)
    for name in WORKERS:  # faults begin in a steady state
        lab.wait_ready(name)
    ops = folder / "ops.jsonl"
    driver = Driver(config, ops)
    done = threading.Event()
    outcome: dict[str, BaseException] = {}

    def drive() -> None:
        try:
            if repeat:  # sustained: FAULT_RUNS open at a time, new runs for SOAK_SECONDS
                result = driver.run(
                    SOAK_PLAN,
                    deadline=timedelta(seconds=SOAK_SECONDS + 600),
                    open_at_once=runs,
                    start_for=timedelta(seconds=SOAK_SECONDS),
                )
            else:
                result = driver.run(runs, deadline=timedelta(minutes=4))
            if result.closed < runs:  # where the workers wait, in their logs (SIGUSR1)
                lab.dump_stacks()
        except BaseException as e:
            outcome["error"] = e
        finally:
            done.set()

    timeline = Timeline()
    began = time.monotonic()
    thread = threading.Thread(target=drive, name=f"driver-{fault}", daemon=True)
    thread.start()
    ctx = ScenarioContext(f"{prefix}commands", start, WORKERS)
    under_way = time.monotonic() + 60
    while len(driver.closes) < 20 and not done.is_set() and time.monotonic() < under_way:
        time.sleep(0.1)  # the fault hits a busy workload, not one still connecting
    try:
        # on this thread: nodes restarted here must outlive it (their JVMs die with it)
        SCENARIOS[fault](lab, timeline, done, ctx)
        while repeat and not done.wait(SOAK_QUIET_SECONDS):  # time to recover in between
            SCENARIOS[fault](lab, timeline, done, ctx)
    finally:
        lab.network.heal_all()
    thread.join(timeout=360)
    drained = time.monotonic()
    # the workers stop once they consumed what there is: a late result of an attempt that
    # outlived the fault is read before the last owner of its partition stops
    quiet = wait_quiet(lab.bootstrap, f"{prefix}workflow-processor", f"{prefix}commands")
    # every worker rode the fault out (the kill scenarios start theirs again)
    died = [name for name in WORKERS if lab.workers[name].poll() is not None]
    logs = lab.worker_logs()
    for name in WORKERS:
        lab.stop_worker(name)
    assert not died, f"worker(s) {died} exited under {fault}\n{logs[-6000:]}"
    if "error" in outcome:
        raise AssertionError(f"the driver failed under {fault}") from outcome["error"]
    recovery = timeline.recoveries(history_progress(lab.bootstrap, f"{prefix}history"))
    report = check(
        config, ops, ledgers, fault=fault, recovery=[r for r in recovery if r is not None]
    )
    report.notes["fault events"] = len(timeline.events)
    for event, seconds in recoveries_by_event(timeline, recovery).items():
        report.notes[f"recovery after {event}"] = seconds
    report.notes["workload seconds"] = round(drained - began)
    report.notes["quiet after seconds"] = round(quiet)
    report.notes["check seconds"] = round(time.monotonic() - drained)
    return report


def recoveries_by_event(timeline: Timeline, recovery: list[float | None]) -> dict[str, str]:
    """Each kind of fault event with its recovery time; an event repeated (a kill loop, a
    soak round) gets how often it came, the median and the longest. '-': no partition that
    was busy wrote again after it (the round ended first)."""
    seen: dict[str, list[float | None]] = {}
    for (_, kind, what), seconds in zip(timeline.events, recovery, strict=True):
        seen.setdefault(f"{kind} '{what}'", []).append(seconds)
    out = {}
    for event, values in seen.items():
        known = sorted(v for v in values if v is not None)
        if len(values) == 1:
            out[event] = "-" if not known else f"{known[0]:.1f} s"
            continue
        summary = f"{len(values)}x"
        if known:
            median = known[(len(known) - 1) // 2]
            summary += f" p50 {median:.1f} s max {known[-1]:.1f} s"
        if len(known) < len(values):
            summary += f" ({len(values) - len(known)} -)"
        out[event] = summary
    return out


@pytest.mark.timeout(3600 if SOAK else 420)
@pytest.mark.parametrize("fault", list(SCENARIOS))
def test_no_invariant_is_violated_under(lab: FaultLab, fault: str, tmp_path: Path) -> None:
    rounds = SOAK_ROUNDS if SOAK else 1
    for n in range(rounds):
        folder = tmp_path / f"round{n}"
        folder.mkdir()
        started = time.monotonic()
        report = _round(lab, fault, folder, FAULT_RUNS, repeat=SOAK)
        REPORTS.append(report)
        elapsed = time.monotonic() - started
        assert report.runs > 0, f"{fault}: the driver started no run"
        assert report.closed == report.runs, (
            f"{fault}: {report.runs - report.closed} of {report.runs} runs never closed "
            f"({elapsed:.0f} s)\n{lab.worker_logs()[-6000:]}"
        )
        assert report.ok, f"{fault}: invariants violated\n{report.details()}"
