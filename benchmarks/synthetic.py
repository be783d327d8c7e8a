"""Closed history without a processor: N runs of 10 events each (started, 8 signals,
completed), written straight to the history topic as a processor long ago would have, their
snapshots long expired. For recovery benchmarks and tests: restore must not read them.

Each run's events are encoded once from a template and copied with the workflow ID swapped
(same length, so the Avro bytes stay valid): a million events take seconds, not minutes.
"""

from __future__ import annotations

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.payload import to_payload
from streams.wire import wire
from streams.wire.events import HistoryEvent, SignalReceived, WorkflowCompleted, WorkflowStarted

EVENTS_PER_RUN = 10
_TEMPLATE_ID = "archived-XXXXXXXXXXXX"


def _template() -> list[bytes]:
    run_id = "00000000-0000-4000-8000-000000000000"
    attrs: list = [WorkflowStarted("Archived", "archive", [to_payload(1)], "cmd")]
    attrs += [SignalReceived("add", [to_payload(i)]) for i in range(EVENTS_PER_RUN - 2)]
    attrs.append(WorkflowCompleted(to_payload("done")))
    encode = wire().event.encode
    return [
        encode(HistoryEvent(_TEMPLATE_ID, run_id, i + 1, 1_700_000_000_000 + i, a))
        for i, a in enumerate(attrs)
    ]


def write_closed_history(config: KafkaConfig, runs: int, start: int = 0) -> int:
    """Writes `runs` closed runs (IDs from `start`); returns the number of events."""
    template = _template()
    marker = _TEMPLATE_ID.encode()
    topic = Topics(config.topic_prefix).history
    producer = kafka.producer(config, **{"linger.ms": 20, "batch.size": 1_000_000})
    written = 0
    for n in range(start, start + runs):
        workflow_id = f"archived-{n:012d}".encode()
        partition = kafka.partition_for(workflow_id.decode(), config.partitions)
        for raw in template:
            while True:
                try:
                    producer.produce(
                        topic, raw.replace(marker, workflow_id), workflow_id, partition=partition
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            written += 1
        producer.poll(0)
    producer.flush(120)
    return written
