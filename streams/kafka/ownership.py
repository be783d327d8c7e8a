"""Who owns what: the workers' consumer groups, the partitions each member holds, its lag,
and the processors' own reports (run cache, counters, restores) from the `workers` topic.

Read from Kafka itself (group descriptions, committed offsets, partition ends); shared by
`everflow workers` and the Web UI's Workers page. Blocking: call it from a thread in async
code.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupTopicPartitions,
    KafkaError,
    TopicPartition,
)

from streams.errors import BrokerError
from streams.kafka.clients import admin as kafka_admin
from streams.kafka.clients import consumer as kafka_consumer
from streams.kafka.clients import end_offset, read_to_end
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.wire import wire
from streams.wire.records import WorkerStatus

PROCESSOR_CLIENT_PREFIX = "everflow-wp-"
"""The Kafka client ID of a workflow processor is this prefix and its instance ID."""


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
class TaskQueue:
    """A task queue's topic and its backlog: per partition, the tasks its activity runners
    (consumer group `<prefix>activities.<queue>`) have not committed yet."""

    name: str
    topic: str
    runners: int
    backlog: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.backlog.values())


@dataclass
class WorkersView:
    groups: list[Group]
    statuses: list[dict[str, Any]]
    task_queues: list[TaskQueue] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": [asdict(g) for g in self.groups],
            "statuses": self.statuses,
            "task_queues": [{**asdict(q), "total": q.total} for q in self.task_queues],
        }


def workers_view(config: KafkaConfig, timeout: float = 15.0) -> WorkersView:
    topics = Topics(config.topic_prefix)
    admin = kafka_admin(config)
    listed = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
    activity_prefix = f"{config.topic_prefix}activities."
    wanted = {f"{config.topic_prefix}workflow-processor": topics.commands}
    for listing in listed.valid:
        gid = listing.group_id
        if gid.startswith(activity_prefix):
            wanted[gid] = topics.tasks(gid[len(activity_prefix) :])
    groups = []
    reader = kafka_consumer(config)
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
        queues = _task_queues(admin, reader, config.topic_prefix, groups, timeout)
    finally:
        reader.close()
    statuses = _statuses(config, topics.workers)
    return WorkersView(groups, statuses, queues)


def _task_queues(
    admin: Any, reader: Any, prefix: str, groups: list[Group], timeout: float
) -> list[TaskQueue]:
    """Every `tasks.<queue>` topic, with or without runners: a queue nobody serves yet is
    the one whose backlog matters most."""
    by_topic = {g.topic: g for g in groups}
    tasks_prefix = f"{prefix}tasks."
    queues = []
    for topic in sorted(admin.list_topics(timeout=timeout).topics):
        if not topic.startswith(tasks_prefix):
            continue
        name = topic[len(tasks_prefix) :]
        group = by_topic.get(topic)
        if group is not None:
            queues.append(TaskQueue(name, topic, len(group.members), dict(group.lag)))
        else:
            lag = _lag(admin, reader, f"{prefix}activities.{name}", topic, timeout)
            queues.append(TaskQueue(name, topic, 0, lag))
    return queues


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
        high = end_offset(reader, topic, p, timeout)
        done = committed.get(p, -1)
        if done < 0:  # nothing committed yet: everything still there is to do
            done = reader.get_watermark_offsets(TopicPartition(topic, p), timeout, False)[0]
        lag[p] = max(0, high - done)
    return lag


def _statuses(config: KafkaConfig, topic: str) -> list[dict[str, Any]]:
    """The latest report of each processor instance."""
    latest: dict[str, WorkerStatus] = {}
    reader = kafka_consumer(config, settings={"enable.partition.eof": True})
    try:
        assignment = [TopicPartition(topic, 0, OFFSET_BEGINNING)]
        for msg in read_to_end(reader, assignment, time.monotonic() + 15):
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
