"""A processor's report about itself on the compacted `workers` topic, read by
`everflow workers`: owned partitions, run cache, counters, and its restores."""

from __future__ import annotations

import os
import socket
import time

from confluent_kafka import Producer

from processors.workflow_processor.run_cache import PartitionRuns
from processors.workflow_processor.stats import Counters
from streams.kafka.topics import Topics
from streams.wire import Wire
from streams.wire.records import RestoreReport, WorkerStatus

EVERY = 5.0  # seconds between reports


class StatusReporter:
    def __init__(self, producer: Producer, topics: Topics, wire: Wire, instance_id: str) -> None:
        self.producer = producer
        self.topic = topics.workers
        self.wire = wire
        self.instance_id = instance_id
        self.host = socket.gethostname()
        self._last = 0.0

    def report(
        self,
        partitions: dict[int, PartitionRuns],
        stats: Counters,
        restores: dict[int, RestoreReport],
        force: bool = False,
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last < EVERY:
            return
        self._last = now
        counters = stats.report(
            cache_loads=sum(s.loads for s in partitions.values()),
            cache_evictions=sum(s.evictions for s in partitions.values()),
        )
        status = WorkerStatus(
            instance_id=self.instance_id,
            host=self.host,
            pid=os.getpid(),
            time=int(time.time() * 1000),
            partitions=sorted(partitions),
            runs_loaded=sum(s.cached for s in partitions.values()),
            runs_known=sum(len(s) for s in partitions.values()),
            counters=counters,
            restore_reports=[restores[p] for p in sorted(restores)],
        )
        raw = self.wire.worker_status.encode(status)
        self.producer.produce(self.topic, raw, self.instance_id.encode(), partition=0)
        self.producer.poll(0)
