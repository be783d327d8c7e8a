"""Everflow's topics: their names, settings, idempotent creation and verification.

Every workflow-keyed topic has the same partition count, so one workflow's commands,
history, snapshot and timers live in partitions with the same number; a mismatch refuses to
start, because a workflow's partition must never change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, TopicMetadata

from streams.errors import BrokerError, KafkaAuthorizationError, TopicMismatchError
from streams.kafka.clients import admin, consumer, read_to_end, refusal, transient
from streams.kafka.config import KafkaConfig

log = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000
_COMPACTED = {
    "cleanup.policy": "compact",
    # let the cleaner pick up records soon, but keep tombstones long enough for a restore
    # that started before them to see them
    "min.compaction.lag.ms": "0",
    "segment.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(24 * 3600 * 1000),
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic Everflow needs: its name, partitions, and the settings it must have."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    workflow_keyed: bool = True


class Topics:
    """The names of Everflow's topics under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.commands = f"{prefix}commands"
        self.history = f"{prefix}history"
        self.snapshots = f"{prefix}snapshots"
        self.timers = f"{prefix}timers"
        self.completions = f"{prefix}completions"
        self.replies = f"{prefix}replies"
        self.dead_letters = f"{prefix}dead-letters"
        self.workers = f"{prefix}workers"

    def tasks(self, task_queue: str) -> str:
        return f"{self.prefix}tasks.{task_queue}"

    def workflow_state(self) -> tuple[str, str, str]:
        """The topics only a partition's owner writes, from which a new owner restores."""
        return (self.history, self.snapshots, self.timers)


def topic_specs(
    config: KafkaConfig, task_queues: list[str] | tuple[str, ...] = ()
) -> list[TopicSpec]:
    """The topic set of the architecture contract, for this configuration."""
    t = Topics(config.topic_prefix)
    n, rf = config.partitions, config.replication_factor
    delete = {"cleanup.policy": "delete"}
    specs = [
        TopicSpec(t.commands, n, rf, {**delete, "retention.ms": str(WEEK_MS)}),
        TopicSpec(t.history, n, rf, {**delete, "retention.ms": str(365 * 24 * 3600 * 1000)}),
        TopicSpec(t.snapshots, n, rf, dict(_COMPACTED)),
        TopicSpec(t.timers, n, rf, dict(_COMPACTED)),
        TopicSpec(t.completions, n, rf, {**delete, "retention.ms": str(WEEK_MS)}),
        TopicSpec(t.replies, n, rf, {**delete, "retention.ms": str(3600 * 1000)}, False),
        TopicSpec(t.dead_letters, n, rf, {**delete, "retention.ms": str(4 * WEEK_MS)}, False),
        TopicSpec(t.workers, 1, rf, dict(_COMPACTED), False),
    ]
    specs += [
        TopicSpec(t.tasks(q), n, rf, {**delete, "retention.ms": str(WEEK_MS)}, False)
        for q in task_queues
    ]
    return specs


def ensure_topics(
    admin: AdminClient, specs: list[TopicSpec], timeout: float = 30.0, patience: float = 90.0
) -> list[str]:
    """Creates missing topics and verifies existing ones; returns the names it created.

    Raises TopicMismatchError when an existing topic has other settings than required, or
    when the workflow-keyed topics do not all have the same partition count. A cluster that
    cannot be reached at all fails at once (BrokerError or KafkaException, as before); one
    that answered and then times out (a controller moving after a node died) is asked again
    for up to `patience` seconds, with a warning each time.
    """
    admin.list_topics(timeout=timeout)  # unreachable: fail now, not after `patience`
    deadline = time.monotonic() + patience
    asked: set[str] = set()  # names a create was sent for, in this or an earlier attempt
    while True:
        try:
            return _ensure_topics(admin, specs, timeout, asked)
        except (KafkaException, BrokerError) as e:
            cause = e if isinstance(e, KafkaException) else e.__cause__
            if not transient(cause) or time.monotonic() > deadline:
                raise
            log.warning("topics not checked yet, the cluster is busy (%s); asking again", e)
            time.sleep(1)


def _ensure_topics(
    admin: AdminClient, specs: list[TopicSpec], timeout: float, asked: set[str]
) -> list[str]:
    existing = admin.list_topics(timeout=timeout).topics
    missing = [s for s in specs if s.name not in existing]
    # a topic asked for in an attempt whose answer never came, and there now, is ours
    earlier = set(asked)
    created = [s.name for s in specs if s.name in earlier and s.name in existing]
    if missing:
        asked.update(s.name for s in missing)
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=s.config)
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                _answer(future, timeout, f"the creation of topic {name}")
                created.append(name)
            except KafkaException as e:
                if e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    if name in earlier:
                        created.append(name)
                    continue
                if isinstance(refusal(e), KafkaAuthorizationError):
                    raise creation_denied(name, getattr(admin, "principal", None)) from e
                raise BrokerError(f"cannot create topic {name}: {e.args[0].str()}") from e
        log.info("created topics count=%d names=%s", len(created), ",".join(created))
    # checked against the answer that showed them all: another broker may still be behind
    # (one that just came back after a cut), and would answer that they are missing
    seen = _wait_for_metadata(admin, [s.name for s in specs], timeout)
    verify_topics(admin, specs, timeout, seen)
    return created


def _answer(future: Future[Any], timeout: float, what: str) -> Any:
    """The result of an admin request's future. The client times the request out itself
    after `timeout`; a future still unanswered a while later (the controller moving) is
    raised as a timeout, which `ensure_topics` asks again."""
    try:
        return future.result(timeout=timeout + 5)
    except TimeoutError as e:
        reason = f"no answer to {what} within {timeout + 5:g} s"
        raise KafkaException(KafkaError(KafkaError._TIMED_OUT, reason)) from e


def _wait_for_metadata(
    admin: AdminClient, names: list[str], timeout: float
) -> Mapping[str, TopicMetadata]:
    """Waits until every topic of `names` is in the metadata with its leaders known (a
    created topic shows only then), and returns that metadata's topics. Not there after
    `timeout`: a busy cluster (a node restarting, a loaded machine), raised as a timeout,
    which `ensure_topics` asks again."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        waiting = [
            n
            for n in names
            if n not in topics or any(p.leader < 0 for p in topics[n].partitions.values())
        ]
        if not waiting:
            return topics
        if time.monotonic() > deadline:
            reason = f"topics not in the metadata with leaders yet: {', '.join(waiting)}"
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, reason))
        time.sleep(0.05)


def verify_topics(
    admin: AdminClient,
    specs: list[TopicSpec],
    timeout: float = 30.0,
    metadata: Mapping[str, TopicMetadata] | None = None,
) -> None:
    """Raises TopicMismatchError naming every difference between the topics and `specs`:
    those of `metadata` (topics by name, from `list_topics`), else of a new request."""
    if metadata is None:
        metadata = admin.list_topics(timeout=timeout).topics
    problems: list[str] = []
    keyed_counts: dict[str, int] = {}
    for s in specs:
        topic = metadata.get(s.name)
        if topic is None:
            problems.append(f"{s.name}: missing")
            continue
        count = len(topic.partitions)
        if s.workflow_keyed:
            keyed_counts[s.name] = count
        elif count != s.partitions:
            log.warning("topic=%s has %d partitions, configured %d", s.name, count, s.partitions)
    if len(set(keyed_counts.values())) > 1:
        listing = ", ".join(f"{k}={v}" for k, v in sorted(keyed_counts.items()))
        problems.append(
            "workflow-keyed topics must have the same partition count (a workflow's partition "
            f"must never change): {listing}"
        )
    resources = [ConfigResource("topic", s.name) for s in specs if s.name in metadata]
    if resources:
        described = admin.describe_configs(resources, request_timeout=timeout)
        wanted = {s.name: s.config for s in specs}
        for resource, future in described.items():
            entries: dict[str, Any] = _answer(future, timeout, f"the settings of {resource.name}")
            for key, value in wanted[resource.name].items():
                actual = entries[key].value if key in entries else None
                if actual != value:
                    problems.append(f"{resource.name}: {key}={actual}, expected {value}")
    if problems:
        raise TopicMismatchError(
            "topics do not match what Everflow needs (fix them or use another topic prefix):\n  "
            + "\n  ".join(problems)
        )


def creation_denied(topic: str, principal: str | None) -> KafkaAuthorizationError:
    """The error of a missing topic the cluster's ACLs do not let this principal create."""
    who = f"principal User:{principal}" if principal else "this client's principal"
    return KafkaAuthorizationError(
        f"topic {topic} does not exist, and the cluster's ACLs deny {who} creating it; run "
        "`everflow topics create` (as an admin)"
    )


def client_topics(
    admin: AdminClient, config: KafkaConfig, create: bool = True, timeout: float = 10.0
) -> dict[str, int]:
    """The partition counts of the topics a client uses: `commands`, `replies` and
    `completions`, by name.

    When all three exist that is all: one metadata request each (`timeout` seconds). When
    one is missing and `create`, the whole topic set (`topic_specs(config)`, task queues
    aside) is made and checked as a worker does (`ensure_topics`): TopicMismatchError when
    an existing topic differs, KafkaAuthorizationError naming `everflow topics create` when
    the cluster's ACLs deny this principal creating topics. Without `create`, a missing
    topic raises BrokerError naming the same command.
    """
    t = Topics(config.topic_prefix)
    names = (t.commands, t.replies, t.completions)
    try:
        counts = _partition_counts(admin, names, timeout)
    except KafkaException as e:
        if e.args[0].code() not in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT):
            raise
        raise BrokerError(
            f"cannot reach a Kafka broker at {config.bootstrap} ({e.args[0].str()}): is one "
            "running there? Everflow talks to Kafka's bootstrap servers (EVERFLOW_BOOTSTRAP, "
            "e.g. localhost:9092), not to a Temporal frontend"
        ) from e
    missing = [n for n in names if n not in counts]
    if not missing:
        return counts
    if not create:
        raise BrokerError(f"topic {missing[0]} does not exist; run `everflow topics create`")
    try:
        ensure_topics(admin, topic_specs(config))
    except KafkaAuthorizationError as e:  # named for the topic the client looked for
        raise creation_denied(missing[0], getattr(admin, "principal", None)) from e
    return _partition_counts(admin, names, timeout)


def _partition_counts(admin: AdminClient, names: tuple[str, ...], timeout: float) -> dict[str, int]:
    """The partition count of each topic of `names` that exists; KafkaAuthorizationError when
    the cluster's ACLs deny this principal describing one (it may exist: no way to tell)."""
    counts: dict[str, int] = {}
    for name in names:
        meta = admin.list_topics(name, timeout=timeout).topics.get(name)
        if meta is None:
            continue
        if meta.error is not None:
            denied = refusal(meta.error, name, getattr(admin, "principal", None))
            if denied is not None:
                raise denied
            continue  # unknown topic
        counts[name] = len(meta.partitions)
    return counts


def partition_count(admin: AdminClient, topic: str, timeout: float = 10.0) -> int:
    """How many partitions `topic` has; raises BrokerError if it does not exist,
    KafkaAuthorizationError if an ACL keeps this client from describing it."""
    topics = admin.list_topics(topic, timeout=timeout).topics
    meta = topics.get(topic)
    denied = refusal(meta.error, topic) if meta is not None else None
    if denied is not None:  # a topic hidden by the ACLs is not a missing one
        raise denied
    if meta is None or meta.error is not None:
        raise BrokerError(f"topic {topic} does not exist; run `everflow topics create`")
    return len(meta.partitions)


def read_whole(
    config: KafkaConfig, topic: str, settings: Mapping[str, Any] | None = None
) -> Iterator[Message]:
    """Every record of `topic`, from the start of each partition to its end (read_committed;
    `settings` go to the consumer), by a consumer closed when the reading ends."""
    reader = consumer(config, settings={"enable.partition.eof": True, **(settings or {})})
    try:
        n = partition_count(admin(config), topic)
        yield from read_to_end(
            reader, [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n)]
        )
    finally:
        reader.close()
