"""A worker's Prometheus endpoint: the engine's counters, read when Prometheus scrapes.

Nothing here runs on the processing path. The workflow processor, its run caches and the
activity runner keep plain integers and per-batch aggregates (`processors.tally`,
`ProcessorTally`, `RunnerTally`); `EngineCollector.collect()` turns them into metric
families at scrape time, on the HTTP server's thread. Names follow Prometheus' conventions:
prefix `everflow_`, seconds, `_total` on counters; labels are workflow and activity types,
task queue, status, outcome, topic and partition, never a workflow or run ID.

    collector = EngineCollector(task_queue="transfers")
    collector.processor = processor.tally       # either may be left out
    collector.runners.append(runner)
    collector.register_lag_source(index.lag)   # {partition: (records, seconds)}
    server = MetricsServer(collector, "127.0.0.1", 0)
    port = server.start()                      # GET http://127.0.0.1:<port>/metrics
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from processors.activity_runner.runner import ActivityRunner
from processors.tally import Histogram, Histograms
from processors.workflow_code.deadlock import WATCHDOG
from processors.workflow_code.handlers import DROPPED_SIGNALS
from processors.workflow_processor.stats import ProcessorTally
from streams.errors import ConfigError

log = logging.getLogger(__name__)

# librdkafka statistics (consumer lag) and the blocked-runs gauge are refreshed this often
STATISTICS_INTERVAL_MS = 2000

LagSource = Callable[[], Mapping[int, tuple[int, float]]]
"""A function returning, per partition, how far behind the run index is: (records, seconds)."""


@functools.cache
def version() -> str:
    """The installed distribution's version (read once)."""
    try:
        return metadata.version("everflow")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


class EngineCollector(Collector):
    """The metrics of one worker's processor and runners, built at each scrape."""

    def __init__(self, task_queue: str) -> None:
        self.task_queue = task_queue
        self.processor: ProcessorTally | None = None  # the workflow processor's
        self.runners: list[ActivityRunner] = []
        self._lag_sources: list[LagSource] = []

    def register_lag_source(self, source: LagSource) -> None:
        """Adds a source of `everflow_visibility_lag_records` / `_seconds` by partition,
        called at each scrape (an error it raises fails that scrape, visibly)."""
        self._lag_sources.append(source)

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "everflow_build_info", "Everflow's version (always 1)", labels=["version"]
        )
        info.add_metric([version()], 1)
        yield info
        # families both the processor and the runners add to
        lag = GaugeMetricFamily(
            "everflow_consumer_lag_records",
            "Records behind the end of a consumed partition (librdkafka statistics)",
            labels=["topic", "partition"],
        )
        dead = CounterMetricFamily(
            "everflow_dead_letters", "Messages sent to dead letters", labels=["topic", "reason"]
        )
        renewals = CounterMetricFamily(
            "everflow_consumer_renewals",
            "Consumers closed and made again because a partition of their topic had records "
            "waiting and was not read for EVERFLOW_STALL_SECONDS",
            labels=["topic"],
        )
        if self.processor is not None:
            yield from _processor_metrics(self.processor, lag, dead)
            renewals.add_metric([self.processor.commands_topic], self.processor.consumer_renewals)
        yield from _runner_metrics(self.task_queue, self.runners, lag, dead)
        for runner in self.runners:
            tasks = runner.topics.tasks(self.task_queue)
            renewals.add_metric([tasks], runner.tally.consumer_renewals)
        yield lag
        yield dead
        yield renewals
        yield from self._visibility_lag()

    def _visibility_lag(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "everflow_visibility_lag_records",
            "History records the run index has yet to apply, by history partition",
            labels=["partition"],
        )
        seconds = GaugeMetricFamily(
            "everflow_visibility_lag_seconds",
            "Age of the oldest history record the run index has yet to apply",
            labels=["partition"],
        )
        for source in self._lag_sources:
            for partition, (behind, age) in sorted(source().items()):
                records.add_metric([str(partition)], behind)
                seconds.add_metric([str(partition)], age)
        if self._lag_sources:
            yield records
            yield seconds


class MetricsServer:
    """Serves a collector on http://host:port/metrics from a daemon thread, with a registry
    of its own (so several workers in one process do not clash). Port 0 picks a free one."""

    def __init__(self, collector: Collector, host: str = "127.0.0.1", port: int = 0) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.host = host
        self.port = port
        self._server: WSGIServer | None = None

    def start(self) -> int:
        """Starts serving; returns the port (the one chosen, when asked for 0). Raises
        ConfigError when it cannot listen there."""
        try:
            server, _ = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as e:
            raise ConfigError(
                f"the metrics endpoint cannot listen on {self.host}:{self.port}: {e}; choose "
                "another metrics port (0 picks a free one) or host"
            ) from e
        self._server = server
        self.port = server.server_port
        log.info("metrics served at http://%s:%d/metrics", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# ---- the workflow processor ------------------------------------------------------------------
def _processor_metrics(
    tally: ProcessorTally, lag: GaugeMetricFamily, dead: CounterMetricFamily
) -> Iterator[Metric]:
    stats = tally.stats
    yield from _run_metrics(tally)
    for name, doc, value in (
        ("everflow_commands", "Commands read from the commands topic", stats.commands),
        ("everflow_history_events", "History events written", stats.events),
        ("everflow_history_bytes", "Bytes of history events written", stats.history_bytes),
        ("everflow_snapshot_bytes", "Bytes of snapshots written", stats.snapshot_bytes),
        ("everflow_timer_fired", "Timers fired", stats.timers_fired),
        ("everflow_checkpoints", "Partition checkpoints written", stats.checkpoints),
        ("everflow_runs_expired", "Closed runs dropped after their retention", stats.runs_expired),
        ("everflow_restore_events", "History records replayed by restores", tally.restore_events),
        (
            "everflow_activity_reports_in_process",
            "Reports of eager attempts the processor took from its own runner, not from commands",
            tally.eager_reports,
        ),
        (
            "everflow_local_activity_attempts",
            "Local-activity attempts started in this worker",
            tally.local_attempts,
        ),
    ):
        yield _counter(name, doc, value)
    yield _histogram(
        "everflow_timer_lateness_seconds",
        "How late timers fire: fire time minus due time",
        tally.timer_lateness,
    )
    yield _gauge(
        "everflow_timers_pending",
        "Timers in memory waiting to fire (a stale one stays until its time)",
        len(tally.timers),
    )
    yield _histogram(
        "everflow_restore_duration_seconds",
        "Time to restore a partition (snapshots, timers, history tail)",
        tally.restore_seconds,
    )
    transactions = CounterMetricFamily(
        "everflow_transactions", "Transactions by result", labels=["result"]
    )
    for result in ("committed", "aborted", "unknown", "fatal", "timed_out"):
        transactions.add_metric([result], tally.transactions.get(result))
    yield transactions
    ignored = CounterMetricFamily(
        "everflow_ignored_records",
        "Records of commands ignored by design (a tombstone), by kind",
        labels=["kind"],
    )
    for kind, count in sorted(tally.ignored.by_key.items()):
        ignored.add_metric([kind], count)
    yield ignored
    recreations = CounterMetricFamily(
        "everflow_producer_recreations",
        "Transactional producers re-created (same transactional.id, epoch bumped), by reason: "
        "unknown (a transaction's outcome), fatal (the producer's error) or fenced (the "
        "coordinator aborted a transaction that outlived its timeout)",
        labels=["reason"],
    )
    for reason in ("unknown", "fatal", "fenced"):
        recreations.add_metric([reason], tally.producer_recreations.get(reason))
    yield recreations
    outage = CounterMetricFamily(
        "everflow_outage_retries",
        "Calls made again because the cluster could not be reached, by what waited: restore "
        "(reading an assigned partition's state) or init_transactions (a new producer); "
        "rising means the worker is waiting an outage out",
        labels=["during"],
    )
    for during in ("restore", "init_transactions"):
        outage.add_metric([during], tally.outage_retries.get(during))
    yield outage
    yield _histogram(
        "everflow_transaction_commit_latency_seconds",
        "Time to commit a transaction (offsets, then EndTxn)",
        tally.commit_latency,
    )
    yield _histogram(
        "everflow_transaction_batch_commands",
        "Commands and due timers one transaction carries",
        tally.batch_size,
    )
    yield from _cache_metrics(tally)
    partitions = dict(tally.partitions)
    yield _gauge("everflow_partitions_owned", "Command partitions owned", len(partitions))
    _add_lag(lag, tally.consumer_lag)
    dead.add_metric([tally.commands_topic, "undecodable"], tally.dead_letters)
    yield from _bad_code_metrics()


def _bad_code_metrics() -> Iterator[Metric]:
    yield _counter(
        "everflow_workflow_deadlocks",
        "Activations of workflow code interrupted for not yielding within the deadlock timeout",
        WATCHDOG.interrupts,
    )
    dropped = CounterMetricFamily(
        "everflow_signals_dropped",
        "Signals dropped because their arguments did not decode, by workflow type",
        labels=["workflow_type"],
    )
    for workflow_type, n in DROPPED_SIGNALS.items():
        dropped.add_metric([workflow_type], n)
    yield dropped


def _run_metrics(tally: ProcessorTally) -> Iterator[Metric]:
    started = CounterMetricFamily(
        "everflow_workflow_started", "Runs started, by workflow type", labels=["workflow_type"]
    )
    for workflow_type, n in sorted(tally.started.items()):
        started.add_metric([workflow_type], n)
    yield started
    closed = CounterMetricFamily(
        "everflow_workflow_closed",
        "Runs closed, by workflow type and status (completed, failed, canceled, terminated, "
        "timed_out, continued_as_new)",
        labels=["workflow_type", "status"],
    )
    for (workflow_type, status), n in sorted(tally.closed.items()):
        closed.add_metric([workflow_type, status], n)
    yield closed
    yield _histograms(
        "everflow_workflow_endtoend_latency_seconds",
        "A run's life: close time minus start time",
        ["workflow_type", "status"],
        tally.endtoend,
    )
    blocked = GaugeMetricFamily(
        "everflow_workflow_blocked",
        "Open runs blocked (their code raised or turned non-deterministic)",
        labels=["workflow_type"],
    )
    for workflow_type, n in sorted(dict(tally.blocked).items()):
        blocked.add_metric([workflow_type], n)
    yield blocked


def _cache_metrics(tally: ProcessorTally) -> Iterator[Metric]:
    caches = list(dict(tally.partitions).values())
    yield _gauge("everflow_run_cache_runs", "Runs loaded in memory", sum(s.cached for s in caches))
    yield _counter(
        "everflow_run_cache_hits",
        "Run lookups served from memory",
        tally.retired_hits + sum(s.hits for s in caches),
    )
    yield _counter(
        "everflow_run_cache_misses",
        "Runs read back from their snapshots",
        tally.retired_loads + sum(s.loads for s in caches),
    )
    yield _counter(
        "everflow_run_cache_evictions",
        "Runs evicted from memory",
        tally.retired_evictions + sum(s.evictions for s in caches),
    )


# ---- the activity runners --------------------------------------------------------------------
def _runner_metrics(
    task_queue: str,
    runners: list[ActivityRunner],
    lag: GaugeMetricFamily,
    dead: CounterMetricFamily,
) -> Iterator[Metric]:
    if not runners:
        return
    q = task_queue
    schedule = HistogramMetricFamily(
        "everflow_activity_schedule_to_start_latency_seconds",
        "From an attempt's dispatch to a runner starting it",
        labels=["activity_type", "task_queue"],
    )
    execution = HistogramMetricFamily(
        "everflow_activity_execution_latency_seconds",
        "An attempt's run time, by outcome (completed, failed)",
        labels=["activity_type", "task_queue", "outcome"],
    )
    attempts = CounterMetricFamily(
        "everflow_activity_attempts",
        "Activity attempts run",
        labels=["activity_type", "task_queue"],
    )
    failed = CounterMetricFamily(
        "everflow_activity_failed",
        "Activity attempts failed, by error type",
        labels=["activity_type", "task_queue", "error_type"],
    )
    eager = CounterMetricFamily(
        "everflow_activity_eager_attempts",
        "Activity attempts handed to this worker's runner by its own processor (eager dispatch)",
        labels=["activity_type", "task_queue"],
    )
    slots = GaugeMetricFamily(
        "everflow_activity_slots_used", "Activities running now", labels=["task_queue"]
    )
    free = GaugeMetricFamily(
        "everflow_activity_slots_available",
        "Activities that could start now",
        labels=["task_queue"],
    )
    for runner in runners:
        tally = runner.tally
        for kind, histogram in sorted(tally.schedule_to_start.items()):
            _add_histogram(schedule, [kind, q], histogram)
        for (kind, outcome), histogram in sorted(tally.execution.items()):
            _add_histogram(execution, [kind, q, outcome], histogram)
        for kind, n in sorted(tally.attempts.items()):
            attempts.add_metric([kind, q], n)
        for (kind, error), n in sorted(tally.failed.items()):
            failed.add_metric([kind, q, error], n)
        for kind, n in sorted(tally.eager.items()):
            eager.add_metric([kind, q], n)
        running = runner.running
        slots.add_metric([q], running)
        free.add_metric([q], max(0, runner.settings.max_concurrent - running))
        dead.add_metric([runner.topics.tasks(q), "undecodable"], tally.dead_letters)
        _add_lag(lag, tally.consumer_lag)
    yield from (schedule, execution, attempts, failed, eager, slots, free)


# ---- helpers ---------------------------------------------------------------------------------
def _add_lag(family: GaugeMetricFamily, lag: dict[tuple[str, int], int]) -> None:
    for (topic, partition), behind in sorted(dict(lag).items()):
        family.add_metric([topic, str(partition)], behind)


def _counter(name: str, doc: str, value: float) -> Metric:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, histogram: Histogram) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[])
    _add_histogram(family, [], histogram)
    return family


def _histograms(name: str, doc: str, labels: list[str], by_key: Histograms[Any]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, histogram in sorted(by_key.items()):
        _add_histogram(family, list(key), histogram)
    return family


def _add_histogram(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    buckets, total = h.cumulative()
    family.add_metric(labels, buckets, total)
