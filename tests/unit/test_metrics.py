"""The worker's Prometheus endpoint: what a scrape shows of the engine's counters, in the
text format Prometheus parses, with the names, types and labels the engine promises."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from processors.activity_runner.runner import ActivityRunner, Outcome, RunnerConfig
from processors.metrics import EngineCollector, MetricsServer
from processors.run.effects import Effects
from processors.run.state import Run
from processors.tally import Histogram, consumer_lag
from processors.workflow_code.registry import Registry
from processors.workflow_processor.run_cache import PartitionRuns
from processors.workflow_processor.stats import BatchTally, Counters, ProcessorTally
from processors.workflow_processor.timer_heap import TimerHeap
from streams import workflow
from streams.cli import build_parser
from streams.errors import ConfigError
from streams.kafka.config import KafkaConfig
from streams.settings import CacheSettings, WorkerSettings
from streams.wire.events import WorkflowStarted
from streams.wire.records import Timer, TimerKind

PREFIX = "metrics-test."


@workflow.defn
class Buggy:
    @workflow.run
    async def run(self) -> None:
        raise KeyError("a bug: the run blocks, it does not fail")


def processor_tally() -> ProcessorTally:
    """A processor's figures as a few batches would leave them."""
    partitions = {
        p: PartitionRuns(p, CacheSettings(), 10, lambda partition, where: None) for p in (0, 1)
    }
    timers = TimerHeap()
    for seq in range(3):
        timers.push(0, Timer("wf", "r", TimerKind.USER_TIMER, seq, 1, 10_000 + seq))
    stats = Counters(commands=40, events=90, timers_fired=4, history_bytes=9000)
    tally = ProcessorTally(stats, partitions, timers, f"{PREFIX}commands")
    partitions[0].hits, partitions[0].loads, partitions[1].evictions = 7, 2, 3
    tally.retired_hits = 5  # a partition revoked earlier kept its figures
    batch = BatchTally(commands=12, dead_letters=1, started={"Transfer": 3, "Charge": 1})
    batch.closed += [("Transfer", "completed", 0.4), ("Transfer", "completed", 2.0)]
    batch.closed += [("Charge", "failed", 30.0)]
    tally.committed(batch, commit_seconds=0.004)
    tally.committed(BatchTally(commands=1), commit_seconds=0.02)
    tally.transactions.add("aborted")
    tally.transactions.add("unknown")
    tally.producer_recreations.add("unknown")
    tally.outage_retries.add("restore", 3)
    tally.timers_fired(now_ms=10_500, fire_at=[10_000, 10_490])
    tally.restore_seconds.observe(0.3)
    tally.restore_events = 17
    tally.consumer_lag = {(f"{PREFIX}commands", 0): 5, (f"{PREFIX}commands", 1): 0}
    return tally


def activity_runner() -> ActivityRunner:
    """A runner (not running: no broker) with the figures of three attempts."""
    config = KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix=PREFIX)
    runner = ActivityRunner(config, Registry([], []), RunnerConfig("pay", max_concurrent=8))
    for outcome in (
        Outcome("charge", 0.05, "ConnectionError"),
        Outcome("charge", 0.02, None),
        Outcome("refund", 1.5, None),
    ):
        runner.tally.attempt_done(outcome)
    runner.tally.schedule_to_start.observe("charge", 0.01)
    runner.tally.consumer_lag = {(f"{PREFIX}tasks.pay", 2): 4}
    return runner


@pytest.fixture
def scrape() -> dict[str, Metric]:
    collector = EngineCollector("pay")
    collector.processor = processor_tally()
    collector.runners.append(activity_runner())
    collector.register_lag_source(lambda: {3: (120, 4.5), 0: (0, 0.0)})
    text = generate_latest(MetricsServer(collector).registry).decode()
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), "a family appears twice"
    return {f.name: f for f in families}


def e2e_type(scrape: dict[str, Metric]) -> str:
    return scrape["everflow_workflow_endtoend_latency_seconds"].type


def value(family: Metric, name: str, **labels: str) -> float:
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


def test_runs_started_and_closed_are_counted_by_workflow_type_and_status(
    scrape: dict[str, Metric],
) -> None:
    started = scrape["everflow_workflow_started"]
    assert value(started, "everflow_workflow_started_total", workflow_type="Transfer") == 3
    assert value(started, "everflow_workflow_started_total", workflow_type="Charge") == 1
    closed = scrape["everflow_workflow_closed"]
    total = "everflow_workflow_closed_total"
    assert value(closed, total, workflow_type="Transfer", status="completed") == 2
    assert value(closed, total, workflow_type="Charge", status="failed") == 1
    assert closed.type == "counter" and e2e_type(scrape) == "histogram"
    e2e = scrape["everflow_workflow_endtoend_latency_seconds"]
    name = "everflow_workflow_endtoend_latency_seconds"
    labels = {"workflow_type": "Transfer", "status": "completed"}
    assert value(e2e, f"{name}_count", **labels) == 2
    assert value(e2e, f"{name}_sum", **labels) == pytest.approx(2.4)
    assert value(e2e, f"{name}_bucket", le="0.5", **labels) == 1
    assert value(e2e, f"{name}_bucket", le="+Inf", **labels) == 2
    # no label ever names a workflow or a run
    for family in scrape.values():
        for sample in family.samples:
            assert not {"workflow_id", "run_id"} & sample.labels.keys()


def test_transactions_timers_restores_and_the_run_cache_are_exposed(
    scrape: dict[str, Metric],
) -> None:
    txns = scrape["everflow_transactions"]
    assert value(txns, "everflow_transactions_total", result="committed") == 2
    assert value(txns, "everflow_transactions_total", result="aborted") == 1
    assert value(txns, "everflow_transactions_total", result="unknown") == 1
    recreations = scrape["everflow_producer_recreations"]
    assert value(recreations, "everflow_producer_recreations_total", reason="unknown") == 1
    assert value(recreations, "everflow_producer_recreations_total", reason="fatal") == 0
    outage = scrape["everflow_outage_retries"]
    assert value(outage, "everflow_outage_retries_total", during="restore") == 3
    assert value(outage, "everflow_outage_retries_total", during="init_transactions") == 0
    commit = scrape["everflow_transaction_commit_latency_seconds"]
    assert value(commit, "everflow_transaction_commit_latency_seconds_count") == 2
    assert value(commit, "everflow_transaction_commit_latency_seconds_bucket", le="0.005") == 1
    size = scrape["everflow_transaction_batch_commands"]
    assert value(size, "everflow_transaction_batch_commands_bucket", le="1.0") == 1
    assert value(size, "everflow_transaction_batch_commands_sum") == 13
    lateness = scrape["everflow_timer_lateness_seconds"]
    assert value(lateness, "everflow_timer_lateness_seconds_sum") == pytest.approx(0.51)
    assert value(lateness, "everflow_timer_lateness_seconds_bucket", le="0.01") == 1
    assert value(scrape["everflow_timers_pending"], "everflow_timers_pending") == 3
    assert value(scrape["everflow_timer_fired"], "everflow_timer_fired_total") == 4
    restore = scrape["everflow_restore_duration_seconds"]
    assert value(restore, "everflow_restore_duration_seconds_count") == 1
    assert value(scrape["everflow_restore_events"], "everflow_restore_events_total") == 17
    assert value(scrape["everflow_run_cache_hits"], "everflow_run_cache_hits_total") == 12
    assert value(scrape["everflow_run_cache_misses"], "everflow_run_cache_misses_total") == 2
    evictions = scrape["everflow_run_cache_evictions"]
    assert value(evictions, "everflow_run_cache_evictions_total") == 3
    assert value(scrape["everflow_run_cache_runs"], "everflow_run_cache_runs") == 0
    assert value(scrape["everflow_partitions_owned"], "everflow_partitions_owned") == 2
    assert value(scrape["everflow_commands"], "everflow_commands_total") == 40
    assert value(scrape["everflow_history_events"], "everflow_history_events_total") == 90


def test_activity_attempts_lag_dead_letters_and_build_info_are_exposed(
    scrape: dict[str, Metric],
) -> None:
    execution = scrape["everflow_activity_execution_latency_seconds"]
    name = "everflow_activity_execution_latency_seconds_count"
    assert value(execution, name, activity_type="charge", task_queue="pay", outcome="failed") == 1
    assert value(execution, name, activity_type="refund", task_queue="pay", outcome="completed")
    failed = scrape["everflow_activity_failed"]
    labels = {"activity_type": "charge", "task_queue": "pay", "error_type": "ConnectionError"}
    assert value(failed, "everflow_activity_failed_total", **labels) == 1
    attempts = scrape["everflow_activity_attempts"]
    labels = {"activity_type": "charge", "task_queue": "pay"}
    assert value(attempts, "everflow_activity_attempts_total", **labels) == 2
    s2s = scrape["everflow_activity_schedule_to_start_latency_seconds"]
    assert value(s2s, "everflow_activity_schedule_to_start_latency_seconds_count", **labels) == 1
    slots = scrape["everflow_activity_slots_available"]
    assert value(slots, "everflow_activity_slots_available", task_queue="pay") == 8
    lag = scrape["everflow_consumer_lag_records"]
    name = "everflow_consumer_lag_records"
    assert value(lag, name, topic=f"{PREFIX}commands", partition="0") == 5
    assert value(lag, name, topic=f"{PREFIX}tasks.pay", partition="2") == 4
    dead = scrape["everflow_dead_letters"]
    reason = "undecodable"
    assert value(dead, "everflow_dead_letters_total", topic=f"{PREFIX}commands", reason=reason) == 1
    visibility = scrape["everflow_visibility_lag_records"]
    assert value(visibility, "everflow_visibility_lag_records", partition="3") == 120
    seconds = scrape["everflow_visibility_lag_seconds"]
    assert value(seconds, "everflow_visibility_lag_seconds", partition="3") == 4.5
    [info] = scrape["everflow_build_info"].samples
    assert info.value == 1 and info.labels["version"]


def test_blocked_open_runs_are_counted_by_workflow_type() -> None:
    tally = processor_tally()
    registry = Registry([Buggy], [])
    run = Run("buggy-1", "r1", 0, registry)
    run.start(WorkflowStarted("Buggy", "q", [], "c"), 1000, Effects())
    assert run.blocked is not None
    tally.partitions[0]["buggy-1"] = run
    healthy = Run("other-1", "r1", 1, registry)
    tally.partitions[1]["other-1"] = healthy
    tally.count_blocked()
    assert tally.blocked == {"Buggy": 1}


def test_a_histogram_counts_each_observation_in_its_bucket_and_cumulates_them() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 7.0):
        h.observe(v)
    assert h.cumulative() == ([("0.1", 2), ("1.0", 3), ("+Inf", 4)], pytest.approx(7.65))
    assert h.count == 4


def test_consumer_lag_is_read_from_librdkafka_statistics() -> None:
    unknown = -1001  # librdkafka's "no offset"
    partitions = {
        # read up to offset 7 of 10 committed records; nothing committed by the consumer
        "0": {"app_offset": 7, "committed_offset": unknown, "hi_offset": 12, "ls_offset": 10},
        # nothing read yet since the assignment: from the committed offset
        "1": {"app_offset": unknown, "committed_offset": 4, "hi_offset": 4, "ls_offset": 4},
        # nothing known: left out
        "2": {"app_offset": unknown, "committed_offset": unknown, "hi_offset": 3},
        "-1": {"app_offset": unknown, "committed_offset": unknown, "hi_offset": unknown},
    }
    for p in partitions.values():
        p["consumer_lag"] = -1
    report = {"name": "rdkafka#consumer-1", "topics": {"p.commands": {"partitions": partitions}}}
    assert consumer_lag(json.dumps(report)) == {("p.commands", 0): 3, ("p.commands", 1): 0}


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    collector = EngineCollector("pay")
    collector.processor = processor_tally()
    metrics = MetricsServer(collector, "127.0.0.1", 0)
    try:
        yield metrics
    finally:
        metrics.stop()


def test_the_endpoint_serves_the_metrics_over_http_on_the_port_it_chose(
    server: MetricsServer,
) -> None:
    port = server.start()
    assert port > 0 and server.port == port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    closed = families["everflow_workflow_closed"].samples
    assert sum(s.value for s in closed if s.labels["status"] == "completed") == 2


def test_a_taken_port_is_refused_with_a_clear_error(server: MetricsServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server.port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=r"metrics endpoint cannot listen on 127\.0\.0\.1"):
            server.start()


def test_metrics_settings_come_from_flags_and_the_environment() -> None:
    assert WorkerSettings.from_env({}).metrics_port is None
    env = {"EVERFLOW_METRICS_PORT": "9464", "EVERFLOW_METRICS_HOST": "0.0.0.0"}
    settings = WorkerSettings.from_env(env, instance_id="w")
    assert (settings.metrics_port, settings.metrics_host) == (9464, "0.0.0.0")
    assert WorkerSettings.from_env({}, instance_id="w", metrics_port=0).metrics_port == 0
    with pytest.raises(ConfigError, match=r"metrics_port must be a TCP port.*EVERFLOW_METRICS"):
        WorkerSettings.from_env({"EVERFLOW_METRICS_PORT": "70000"}, instance_id="w")
    with pytest.raises(ConfigError, match="EVERFLOW_METRICS_PORT must be a whole number"):
        WorkerSettings.from_env({"EVERFLOW_METRICS_PORT": "web"}, instance_id="w")
    args = build_parser().parse_args(
        ["worker", "m", "--task-queue", "q", "--metrics-port", "0", "--metrics-host", "::1"]
    )
    assert (args.metrics_port, args.metrics_host) == (0, "::1")
