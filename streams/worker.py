"""The worker: one process runs a workflow processor, an activity runner and the run index's
projector.

A composition root: with `streams.replayer` and `streams.cli`, the only user-side modules
that import `processors`.

worker = Worker(client, task_queue="transfers", workflows=[...], activities=[...])
await worker.run()          # until worker.shutdown() or SIGTERM/SIGINT (run_until_signal)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from confluent_kafka import KafkaException

from processors.activity_runner.runner import ActivityRunner, RunnerConfig
from processors.metrics import STATISTICS_INTERVAL_MS, EngineCollector, MetricsServer
from processors.visibility.projector import Projector
from processors.workflow_code.registry import Registry
from processors.workflow_processor.processor import ProcessorConfig, WorkflowProcessor
from streams import kafka
from streams.client import Client
from streams.errors import (
    BrokerError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    VisibilityUnavailableError,
)
from streams.kafka.statistics import RequestTally, observe_statistics
from streams.kafka.topics import ensure_topics, topic_specs
from streams.payload_gc import PayloadCollector
from streams.payload_settings import PayloadStoreSettings
from streams.schedules.scheduler import ScheduleWorkflow
from streams.settings import RunLimits, WorkerSettings, inflight_path

log = logging.getLogger(__name__)


def _gc_collections() -> dict[str, Any]:
    return {"gc_collections": [generation["collections"] for generation in gc.get_stats()]}


class Worker:
    """Runs workflows and/or activities of one task queue.

    `instance_id` must be stable across restarts of the same worker (it names the Kafka
    transactional ID, so a restarted worker fences its crashed predecessor at once) and
    unique among running workers. Default: `EVERFLOW_INSTANCE_ID`, else the host name.

    A worker that runs workflows also runs schedules (the built-in `everflow.Schedule`
    workflow; see `streams.schedules`).

    A run fails when its history reaches `max_history_events` or `max_history_bytes`
    (default 50,000 events / 50 MiB, or EVERFLOW_MAX_HISTORY_EVENTS / _BYTES). These and
    the rest (the processor's run cache and snapshot cadence, profiling, fault hooks) are
    `settings`, by default `WorkerSettings.from_env()`; the keyword arguments given win
    over them. Raises ConfigError naming a setting that is invalid.

    The worker also runs the run index's projector (`run_visibility`, default
    `settings.visibility.enabled`), writing to `visibility` (a store URL; default
    EVERFLOW_VISIBILITY, else a SQLite file per topic prefix in the data directory). With
    SQLite one worker's projector indexes at a time; with PostgreSQL the workers' projectors
    share the partitions of `history`.

    `tracing` (default: EVERFLOW_TRACING) makes OpenTelemetry spans of runs, activities,
    signals and updates with the global tracer provider; install
    `streams.tracing.WorkflowIdGenerator` on it (see `streams.tracing`). Needs the `otel`
    extra.

    With `metrics_port` (or EVERFLOW_METRICS_PORT) the worker serves Prometheus metrics on
    http://`metrics_host`:port/metrics while it runs (host default 127.0.0.1; port 0 picks
    a free one, then `metrics_port` is the port chosen). `metrics` is the collector: its
    `register_lag_source()` adds the run index's lag to it.

    A worker that runs both workflows and activities dispatches eagerly
    (`settings.eager_activities`, EVERFLOW_EAGER_ACTIVITIES; on by default): an activity task
    its processor schedules on this task queue goes to its own runner as soon as the
    transaction that schedules it commits, and the result comes straight back, instead of
    waiting for a round trip through `tasks.<queue>` and `commands` (a copy of the result
    still goes to `commands`, for durability). The task is still written to the
    tasks topic, marked as claimed, and no other runner runs it; if this worker dies, the
    attempt's start-to-close timeout schedules the next one, as for any attempt lost with
    its runner.

    A process that is a worker calls `tune_gc()` once the worker is built (the `everflow
    worker` command does): the cyclic GC then skips the start-up objects and runs far less
    often (`settings.gc_tuning`, `settings.gc_threshold`).
    """

    def __init__(
        self,
        client: Client,
        *,
        task_queue: str,
        workflows: Sequence[type] = (),
        activities: Sequence[Callable[..., Any]] = (),
        instance_id: str | None = None,
        max_concurrent_activities: int = 64,
        run_workflows: bool = True,
        run_activities: bool = True,
        determinism_guard: bool = True,
        suggest_continue_as_new_after: int = 10_000,
        max_history_events: int | None = None,
        max_history_bytes: int | None = None,
        tracing: bool | None = None,
        settings: WorkerSettings | None = None,
        run_visibility: bool | None = None,
        visibility: str | None = None,
        metrics_port: int | None = None,
        metrics_host: str | None = None,
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        overrides: dict[str, Any] = {
            "instance_id": instance_id,
            "max_history_events": max_history_events,
            "max_history_bytes": max_history_bytes,
            "tracing": tracing,
            "metrics_port": metrics_port,
            "metrics_host": metrics_host,
        }
        self.settings = (
            WorkerSettings.from_env(**overrides)
            if settings is None
            else settings.with_overrides(**overrides)
        )
        # the determinism guard is a profile hook: under cProfile (profile_dir) it is off
        guard = determinism_guard and self.settings.profile_dir is None
        limits = RunLimits(
            determinism_guard=guard,
            max_payload_bytes=client.config.max_payload_bytes,
            suggest_continue_as_new_after=suggest_continue_as_new_after,
            max_history_events=self.settings.max_history_events,
            max_history_bytes=self.settings.max_history_bytes,
            deadlock_timeout=self.settings.deadlock_timeout,
            max_signals=self.settings.max_signals,
            max_pending=self.settings.max_pending,
        )
        # every worker that runs workflows hosts the schedules (`streams.schedules`)
        hosted = [*workflows, ScheduleWorkflow] if workflows else []
        self.registry = Registry(hosted, activities, client.converter, limits)
        self.instance_id = self.settings.instance_id
        self.max_concurrent_activities = max_concurrent_activities
        self.run_workflows = run_workflows and bool(workflows)
        self.run_activities = run_activities and bool(activities)
        # whether this worker's processor hands its own queue's tasks to its runner
        self.eager_dispatch = (
            self.run_workflows and self.run_activities and self.settings.eager_activities
        )
        self.visibility = replace(
            self.settings.visibility,
            enabled=self.settings.visibility.enabled if run_visibility is None else run_visibility,
            url=visibility or self.settings.visibility.url,
        )
        # the run index's projector once run() started it (its lag() is a metrics source)
        self.projector: Projector | None = None
        # removes stored payloads past their run's retention, when a payload store is set
        self.payload_collector: PayloadCollector | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self.metrics = EngineCollector(task_queue)
        self.metrics_port = self.settings.metrics_port

    async def run(self) -> None:
        """Runs until shutdown(); raises if a component failed for good."""
        config = self.client.config
        if self.settings.kafka_statistics:
            observe_statistics(RequestTally(self.settings.kafka_statistics, _gc_collections))
        admin = kafka.admin(config)
        await asyncio.to_thread(ensure_topics, admin, topic_specs(config, [self.task_queue]))
        server = None
        if self.metrics_port is not None:
            server = MetricsServer(self.metrics, self.settings.metrics_host, self.metrics_port)
            self.metrics_port = server.start()
        statistics = 0 if server is None else STATISTICS_INTERVAL_MS
        store = PayloadStoreSettings.from_env()
        processor = runner = None
        if self.run_workflows:
            processor = WorkflowProcessor(
                config,
                self.registry,
                ProcessorConfig(
                    instance_id=self.instance_id,
                    cache=self.settings.cache,
                    faults=self.settings.faults,
                    tracing=self.settings.tracing,
                    statistics_interval_ms=statistics,
                    local_activity_wait=self.settings.local_activity_wait,
                    inflight_path=inflight_path(config.topic_prefix, self.instance_id),
                    stall_seconds=self.settings.stall_seconds,
                    static_membership=self.settings.static_membership,
                    store_retry_seconds=store.retry_seconds,
                ),
            )
            self.metrics.processor = processor.tally
        if self.run_activities:
            runner = ActivityRunner(
                config,
                self.registry,
                RunnerConfig(
                    self.task_queue,
                    max_concurrent=self.max_concurrent_activities,
                    instance_id=self.instance_id,
                    tracing=self.settings.tracing,
                    statistics_interval_ms=statistics,
                    stall_seconds=self.settings.stall_seconds,
                    stall_tasks_after=self.settings.faults.stall_tasks_after,
                    static_membership=self.settings.static_membership,
                ),
            )
            self.metrics.runners.append(runner)
        if processor is not None and runner is not None and self.eager_dispatch:
            # eager dispatch: the tasks the processor schedules on this queue go straight to
            # this runner, and its reports straight back (see `processors.eager`)
            processor.eager = runner
            runner.eager_reports = processor.eager_reports
        if processor is not None:
            self._spawn("workflow-processor", processor.run)
        if runner is not None:
            self._spawn("activity-runner", runner.run)
        if store.url is not None and store.gc_seconds > 0:
            # stored payloads go after their run's retention: one worker at a time collects
            retention = self.settings.cache.closed_retention_ms
            self.payload_collector = PayloadCollector(config, store, retention, store.gc_seconds)
            self._spawn("payload-collector", self.payload_collector.run)
        if self.visibility.enabled:
            self.projector = Projector(config, self.visibility)
            self.metrics.register_lag_source(self.projector.lag)
            self._spawn("visibility-projector", self._project)
        try:
            while not self._stop.is_set() and all(t.is_alive() for t in self._threads):
                await asyncio.sleep(0.1)
            self._stop.set()
            for t in self._threads:
                await asyncio.to_thread(t.join, 60)
        finally:
            if server is not None:
                server.stop()
        if self._errors:
            raise self._errors[0]

    def _project(self, stop: threading.Event) -> None:
        assert self.projector is not None
        project_through_outages(self.projector, stop)

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        def main() -> None:
            try:
                profile_dir = self.settings.profile_dir
                if profile_dir:  # cProfile of this component's thread, dumped when it stops
                    import cProfile

                    profiler = cProfile.Profile()
                    try:
                        profiler.runcall(target, self._stop)
                    finally:
                        path = f"{profile_dir}/{self.instance_id}-{name}-{os.getpid()}.prof"
                        profiler.dump_stats(path)
                    return
                target(self._stop)
            except BaseException as e:
                log.exception("%s stopped with an error", name)
                self._errors.append(e)
                self._stop.set()

        thread = threading.Thread(target=main, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def tune_gc(self) -> None:
        """Readies the cyclic GC for thousands of cached runs (if `settings.gc_tuning`):
        collects once, freezes what is alive (modules, the registry: objects a worker keeps
        for good) so no collection walks it again, and sets `settings.gc_threshold`.

        For a process that is this worker (the `everflow worker` command calls it after
        building the worker): frozen objects stay for the life of the process.
        """
        if not self.settings.gc_tuning:
            return
        gc.collect()
        gc.freeze()
        gc.set_threshold(*self.settings.gc_threshold)
        log.debug(
            "GC: %d start-up objects frozen, thresholds %s",
            gc.get_freeze_count(),
            self.settings.gc_threshold,
        )

    def shutdown(self) -> None:
        """Asks the worker to stop: running activities finish, open transactions end."""
        self._stop.set()

    async def run_until_signal(self) -> None:
        """run(), stopping gracefully on SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.shutdown)
        await self.run()


def project_through_outages(projector: Projector, stop: threading.Event) -> None:
    """Runs the run index projector until `stop`. The index is a view: a store, or a cluster,
    that cannot be reached is tried again every 5 s and never stops the workflows and
    activities this worker runs; a refusal (credentials, ACLs) still does."""
    while not stop.is_set():
        try:
            projector.run(stop)
            return
        except (KafkaAuthenticationError, KafkaAuthorizationError):
            raise
        except (VisibilityUnavailableError, BrokerError, KafkaException) as e:
            log.error("run index projector: %s; retrying in 5 s", e)
            stop.wait(5.0)
