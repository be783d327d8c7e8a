"""History for run-index benchmarks: runs of three types ending in varied ways, with custom
search attributes, written straight to the history topic as processors would have.

As in `benchmarks.synthetic`, each kind of run is encoded once and copied with its workflow
and run IDs swapped for same-length ones, so millions of events take seconds to write.
"""

from __future__ import annotations

import orjson

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.payload import to_payload
from streams.retry import RetryPolicy
from streams.wire import wire
from streams.wire.events import (
    ActivityAttemptFailed,
    ActivityCompleted,
    ActivityRetried,
    ActivityScheduled,
    ActivityStarted,
    EventAttributes,
    HistoryEvent,
    SearchAttributesUpserted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowTerminated,
)
from streams.wire.records import Failure, SearchAttribute, SearchAttributeType

_WF = "wf-XXXXXXXXXXXX"
_RUN = "run-YYYYYYYYYYYY"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TYPES = ("Transfer", "Onboarding", "Report")
CUSTOMERS = 50


def _sa(name: str, kind: SearchAttributeType, value: object) -> SearchAttribute:
    return SearchAttribute(name, kind, orjson.dumps(value).decode())


def _kinds(n: int) -> list[EventAttributes]:
    """Kind `n` of run (0..59): its type, customer, amount and ending depend on n."""
    workflow_type = TYPES[n % 3]
    customer = f"c-{n % CUSTOMERS:03d}"
    amount = float((n * 37) % 1000)
    policy = RetryPolicy(maximum_attempts=5)
    attrs: list[EventAttributes] = [
        WorkflowStarted(
            workflow_type, f"q{n % 2}", [to_payload(n)], "cmd",
            search_attributes=[
                _sa("CustomerId", SearchAttributeType.KEYWORD, customer),
                _sa("Amount", SearchAttributeType.DOUBLE, amount),
            ],
        ),
        ActivityScheduled(1, "charge", f"q{n % 2}", [to_payload(n)], 10_000, None, policy),
        ActivityStarted(1, 1),
    ]
    ending = n % 4
    if ending == 0:  # completed
        attrs += [ActivityCompleted(1, 1, to_payload("ok")),
                  SearchAttributesUpserted([_sa("Stage", SearchAttributeType.KEYWORD, "done")]),
                  WorkflowCompleted(to_payload("ok"))]
    elif ending == 1:  # failed after a retry
        boom = Failure("card declined", "Declined")
        attrs += [ActivityAttemptFailed(1, 1, boom, T0 + 5_000), ActivityRetried(1, 2),
                  ActivityStarted(1, 2), WorkflowFailed(boom)]
    elif ending == 2:  # still running, retrying
        attrs += [ActivityAttemptFailed(1, 1, Failure("timeout", "Timeout"), T0 + 9_000)]
    else:  # terminated
        attrs += [WorkflowTerminated("operator")]
    return attrs


def _templates() -> list[list[bytes]]:
    encode = wire().event.encode
    out = []
    for n in range(60):
        out.append([
            encode(HistoryEvent(_WF, _RUN, i + 1, T0 + n * 60_000 + i * 100, a))
            for i, a in enumerate(_kinds(n))
        ])
    return out


def write_history(config: KafkaConfig, runs: int) -> int:
    """Writes `runs` runs (kind = run number mod 60); returns the number of events."""
    templates = _templates()
    wf_marker, run_marker = _WF.encode(), _RUN.encode()
    topic = Topics(config.topic_prefix).history
    producer = kafka.producer(config, **{"linger.ms": 20, "batch.size": 1_000_000})
    written = 0
    for n in range(runs):
        workflow_id = f"wf-{n:012d}".encode()
        run_id = f"run-{n:012d}".encode()
        partition = kafka.partition_for(workflow_id.decode(), config.partitions)
        for raw in templates[n % 60]:
            value = raw.replace(wf_marker, workflow_id).replace(run_marker, run_id)
            while True:
                try:
                    producer.produce(topic, value, workflow_id, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
            written += 1
        producer.poll(0)
    producer.flush(300)
    return written
