"""`everflow workers`: who owns what.

Ownership and lag come from Kafka itself (the consumer groups of the workflow processors
and of each task queue's activity runners, their committed offsets and the partitions'
ends); the processors' own reports on the `workers` topic add their run cache, counters
and restores.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupTopicPartitions,
    KafkaError,
    TopicPartition,
)

from streams import kafka
from streams.cli.common import SubParsers, add_connection_arguments, add_subparser, kafka_config
from streams.errors import BrokerError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.wire import wire
from streams.wire.records import WorkerStatus

PROCESSOR_CLIENT_PREFIX = "everflow-wp-"


def add_parser(subparsers: SubParsers) -> None:
    """Register `workers`."""
    workers = add_subparser(
        subparsers,
        "workers",
        "show which worker owns which partitions, its lag, cache and restores",
    )
    add_connection_arguments(workers)
    workers.add_argument("--json", action="store_true", help="machine-readable output")
    workers.set_defaults(run=workers_show)


def workers_show(args: argparse.Namespace) -> int:
    """`everflow workers`: ownership and lag per consumer group, plus processor reports."""
    view = workers_view(kafka_config(args))
    print(json.dumps(view.to_dict(), indent=1) if args.json else render(view))
    return 0


@dataclass
class Member:
    client_id: str
    host: str
    partitions: list[int]
    lag: int = 0


@dataclass
class Group:
    group_id: str
    topic: str
    state: str
    members: list[Member] = field(default_factory=list)
    lag: dict[int, int] = field(default_factory=dict)  # partition -> records not processed


@dataclass
class WorkersView:
    groups: list[Group]
    statuses: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"groups": [asdict(g) for g in self.groups], "statuses": self.statuses}


def workers_view(config: KafkaConfig, timeout: float = 15.0) -> WorkersView:
    topics = Topics(config.topic_prefix)
    admin = kafka.admin(config)
    listed = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
    activity_prefix = f"{config.topic_prefix}activities."
    wanted = {f"{config.topic_prefix}workflow-processor": topics.commands}
    for listing in listed.valid:
        gid = listing.group_id
        if gid.startswith(activity_prefix):
            wanted[gid] = topics.tasks(gid[len(activity_prefix) :])
    groups = []
    reader = kafka.consumer(config)
    try:
        for gid in wanted:
            desc = describe_group(admin, gid, timeout)
            if desc is None:  # a group that does not exist (yet)
                continue
            group = Group(gid, wanted[gid], str(desc.state.name).lower())
            for m in desc.members:
                parts = sorted(
                    tp.partition
                    for tp in (m.assignment.topic_partitions or [])
                    if tp.topic == group.topic
                )
                group.members.append(Member(m.client_id, m.host, parts))
            group.lag = _lag(admin, reader, gid, group.topic, timeout)
            for member in group.members:
                member.lag = sum(group.lag.get(p, 0) for p in member.partitions)
            groups.append(group)
    finally:
        reader.close()
    statuses = _statuses(config, topics.workers)
    return WorkersView(groups, statuses)


# a coordinator that is loading, moving or not elected yet (a fresh or restarted broker)
_TRANSIENT = {
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
}


def describe_group(admin: Any, group_id: str, timeout: float) -> Any:
    """The group's description; None if it does not exist. Asks again while its coordinator
    is transiently unavailable, up to `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.5, deadline - time.monotonic())
        future = admin.describe_consumer_groups([group_id], request_timeout=remaining)[group_id]
        try:
            return future.result(remaining)
        except Exception as e:
            err = e.args[0] if e.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code == KafkaError.GROUP_ID_NOT_FOUND:
                return None
            if code not in _TRANSIENT or time.monotonic() >= deadline:
                raise BrokerError(f"cannot describe consumer group {group_id}: {e}") from e
            time.sleep(0.2)


def _lag(admin: Any, reader: Any, group_id: str, topic: str, timeout: float) -> dict[int, int]:
    meta = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}
    request = ConsumerGroupTopicPartitions(
        group_id, [TopicPartition(topic, p) for p in meta.partitions]
    )
    offsets = admin.list_consumer_group_offsets([request], request_timeout=timeout)
    committed = {
        tp.partition: tp.offset for tp in offsets[group_id].result(timeout).topic_partitions
    }
    lag = {}
    for p in sorted(meta.partitions):
        high = kafka.end_offset(reader, topic, p, timeout)
        done = committed.get(p, -1)
        if done < 0:  # nothing committed yet: everything still there is to do
            done = reader.get_watermark_offsets(TopicPartition(topic, p), timeout, False)[0]
        lag[p] = max(0, high - done)
    return lag


def _statuses(config: KafkaConfig, topic: str) -> list[dict[str, Any]]:
    """The latest report of each processor instance."""
    latest: dict[str, WorkerStatus] = {}
    reader = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        assignment = [TopicPartition(topic, 0, OFFSET_BEGINNING)]
        for msg in kafka.read_to_end(reader, assignment, time.monotonic() + 15):
            if msg.value() is not None:
                status = wire().worker_status.decode(msg.value())
                latest[status.instance_id] = status
    finally:
        reader.close()
    now = int(time.time() * 1000)
    return [
        {**asdict(s), "age_s": round((now - s.time) / 1000, 1)}
        for s in sorted(latest.values(), key=lambda s: s.instance_id)
    ]


def render(view: WorkersView) -> str:
    lines = []
    by_instance = {s["instance_id"]: s for s in view.statuses}
    for group in view.groups:
        total = sum(group.lag.values())
        lines.append(
            f"{group.group_id}  ({group.state}, {len(group.members)} members, "
            f"topic {group.topic}, lag {total})"
        )
        for m in sorted(group.members, key=lambda m: m.client_id):
            extra = ""
            instance = m.client_id.removeprefix(PROCESSOR_CLIENT_PREFIX)
            status = (
                by_instance.get(instance)
                if m.client_id.startswith(PROCESSOR_CLIENT_PREFIX)
                else None
            )
            if status is not None:
                extra = (
                    f"  runs {status['runs_loaded']} loaded / {status['runs_known']} known"
                    f"  report {status['age_s']}s ago"
                )
            lines.append(
                f"  {m.client_id:<28} {m.host:<18} partitions {_ranges(m.partitions):<12} "
                f"lag {m.lag}{extra}"
            )
    for s in view.statuses:
        for r in s["restore_reports"]:
            lines.append(
                f"  restore {s['instance_id']} p{r['partition']}: {r['runs_open']} open runs, "
                f"{r['snapshot_records']} snapshot + {r['tail_records']} history records, "
                f"{r['seconds']:.2f}s"
            )
    return "\n".join(lines) if lines else "no workers: no consumer group has members"


def _ranges(parts: list[int]) -> str:
    if not parts:
        return "-"
    out, start, prev = [], parts[0], parts[0]
    for p in [*parts[1:], None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if p is not None:
            start = prev = p
    return ",".join(out)
