"""Kafka clients as Everflow uses them: settings in one place, errors made plain.

- producers are idempotent and use the Java-compatible `murmur2_random` partitioner, so any
  Kafka client that publishes commands keyed by workflow ID lands on the same partition;
- the transactional producer has a stable `transactional.id` per worker instance, so a
  restarted instance fences its predecessor and aborts its open transaction at once;
- consumers read committed data only and never auto-commit;
- librdkafka's own log lines go to Python logging (`streams.kafka.logs`), never raw to stderr;
- on a secured cluster, a refusal (TLS, SASL credentials, an ACL) is raised as
  `KafkaAuthenticationError` or `KafkaAuthorizationError` naming the cause (`refusal`), and
  an admin client's metadata call fails with it within a second or two instead of waiting
  out its whole timeout.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streams.errors import (
    BrokerError,
    ConfigError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
)
from streams.kafka.config import KafkaConfig
from streams.kafka.logs import LOGGER, watch_admin
from streams.kafka.statistics import with_statistics

log = logging.getLogger(__name__)
T = TypeVar("T")

_PRODUCER = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 1,
    # most records are small and latency-bound: compressing them costs CPU on both sides and
    # saves little (measured: +20% throughput without); users can pass their own setting
    "compression.type": "none",
}


def producer(config: KafkaConfig, **settings: Any) -> Producer:
    """An idempotent producer (acks=all, murmur2_random)."""
    return _made(Producer, config.client_settings(**with_statistics({**_PRODUCER, **settings})))


def transactional_producer(config: KafkaConfig, transactional_id: str, **settings: Any) -> Producer:
    """A transactional producer; call `init_transactions()` before the first transaction."""
    base = {
        **_PRODUCER,
        "transactional.id": transactional_id,
        "transaction.timeout.ms": 60000,
        "message.timeout.ms": 55000,
        # after a commit the coordinator answers CONCURRENT_TRANSACTIONS until its markers are
        # written; the default 100 ms backoff would cap us at ~10 transactions per second
        "retry.backoff.ms": 2,
        "retry.backoff.max.ms": 20,
    }
    return _made(Producer, config.client_settings(**with_statistics({**base, **settings})))


def consumer(
    config: KafkaConfig, group_id: str | None = None, settings: Mapping[str, Any] | None = None
) -> Consumer:
    """A read_committed consumer that never commits on its own.

    Without `group_id` it is for `assign()` only: librdkafka requires a group ID, so it
    gets `<prefix>reader`, which it never joins or commits to (on a secured cluster the
    role's ACLs let it look the group up: see `streams.kafka.acls`).
    """
    base = {
        "group.id": group_id or reader_group(config),
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # a fetch returns as soon as data arrives; a long wait only spares the broker from
        # answering empty fetches (measured: no latency change between 5 and 100 ms)
        "fetch.wait.max.ms": 100,
    }
    merged = config.client_settings(**with_statistics({**base, **(settings or {})}))
    return _made(Consumer, merged)


def static_member(enabled: bool, instance_id: str) -> dict[str, str]:
    """A consumer's settings for static membership of its group (KIP-345), or none.

    A static member is known to the group by `instance_id`, not by the ID the coordinator
    hands out: a restart within `session.timeout.ms` gets the same partitions back with no
    rebalance, so the other members never stop. The price: a static member does not leave
    the group on close, so a worker stopped for good hands its partitions over only when its
    session runs out. Two running members with one instance ID fence each other: the older
    gets a fatal error (see `fenced_member`)."""
    return {"group.instance.id": instance_id} if enabled and instance_id else {}


def fenced_member(error: KafkaError, instance_id: str) -> KafkaError:
    """A fatal consumer error; when another consumer took over this static member's
    instance ID, the same error with a message that says what to fix."""
    fenced = error.code() == KafkaError.FENCED_INSTANCE_ID or "group.instance.id" in error.str()
    if not fenced:
        return error
    return KafkaError(
        error.code(),
        f"another worker joined the group with instance ID {instance_id!r} and took this "
        "one's partitions over; an instance ID (EVERFLOW_INSTANCE_ID) must be unique among "
        f"running workers ({error.str()})",
        fatal=True,
    )


def reader_group(config: KafkaConfig) -> str:
    """The group ID of consumers that only `assign()` (never join, never commit)."""
    return f"{config.topic_prefix}reader"


def admin(config: KafkaConfig, **settings: Any) -> AdminClient:
    """An admin client whose `list_topics` raises a refusal (bad credentials, untrusted TLS,
    the wrong security protocol) as soon as librdkafka reports it, not at its timeout."""
    made = _made(_Admin, config.client_settings(**{**_ADMIN, **settings}))
    watch_admin(made)  # nobody else polls it: its log lines would wait there
    return made


_ADMIN = {
    # librdkafka lets a producer's metadata request (an admin client is one) create a topic
    # it names on a broker with auto.create.topics.enable (Kafka's default): with the
    # broker's partition count and settings, not Everflow's. Topics are made by
    # `ensure_topics` only.
    "allow.auto.create.topics": False,
}


def _made(kind: Callable[[dict[str, Any]], T], settings: dict[str, Any]) -> T:
    settings.setdefault("logger", LOGGER)  # librdkafka's lines through logging, not stderr
    try:
        return kind(settings)
    except KafkaException as e:  # librdkafka checks its settings when the client is made
        raise ConfigError(
            f"the Kafka client settings were refused: {e.args[0].str()} "
            "(check the EVERFLOW_KAFKA_* variables)"
        ) from e


class _Admin(AdminClient):
    """An AdminClient that watches librdkafka's errors for a refusal (see `refusal`)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._refused: list[BrokerError] = []
        self.principal: str | None = settings.get("sasl.username")
        protocol = str(settings.get("security.protocol", "plaintext")).lower()
        # a client without TLS, whose brokers all seem down, asks once if they speak TLS
        self._probe: list[str] = [] if "ssl" in protocol else [settings["bootstrap.servers"]]
        self._all_down = False
        conf: dict[str, Any] = {**settings, "error_cb": self._on_error}
        super().__init__(conf)

    def _on_error(self, error: KafkaError) -> None:
        found = refusal(error, principal=self.principal)
        if found is not None:
            self._refused.append(found)
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._all_down = True

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        """`AdminClient.list_topics`, asked in short steps: between them, a refusal
        librdkafka reported is raised (the cause, at once) instead of the timeout."""
        timeout = kwargs.pop("timeout", -1)
        forever = timeout is None or timeout < 0
        deadline = time.monotonic() + (0 if forever else timeout)
        step = 0.5
        while True:
            left = step if forever else max(0.0, deadline - time.monotonic())
            try:
                found = super().list_topics(*args, timeout=min(step, left), **kwargs)
                self.poll(0)  # its log lines so far, now: a short-lived client ends unpolled
                return found
            except KafkaException:
                self.poll(0)  # serves error_cb (and log lines)
                if self._all_down and self._probe:
                    self._refused += _tls_listeners(self._probe.pop())
                if self._refused:
                    raise self._refused[-1] from None
                if not forever and time.monotonic() >= deadline:
                    raise
            step = min(step * 2, 5.0)


def _tls_listeners(bootstrap: str) -> list[BrokerError]:
    """A KafkaAuthenticationError if a broker of `bootstrap` completes a TLS handshake: a
    plaintext client there only sees its connections closed (librdkafka logs the hint at
    info level, its error callback hears only "all brokers down")."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # whether it speaks TLS, not whom to trust
    for address in bootstrap.split(",")[:3]:
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2) as raw:
                with context.wrap_socket(raw, server_hostname=host.strip("[]")):
                    pass
        except (OSError, ValueError):
            continue  # refused, closed, not TLS: no diagnosis
        return [
            KafkaAuthenticationError(
                f"the broker at {address.strip()} speaks TLS but this client connects without "
                "it (security.protocol is PLAINTEXT): a secured cluster needs "
                "EVERFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL), and for SASL "
                "EVERFLOW_KAFKA_SASL_MECHANISM, EVERFLOW_KAFKA_SASL_USERNAME and "
                "EVERFLOW_KAFKA_SASL_PASSWORD; EVERFLOW_KAFKA_SSL_CA_LOCATION names its CA"
            )
        ]
    return []


_DENIED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "consumer group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional ID",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster operation",
}


def refusal(error: object, resource: str = "", principal: str | None = None) -> BrokerError | None:
    """The plain error for a KafkaException or KafkaError that says the cluster refused this
    client, or None for any other error.

    `KafkaAuthorizationError` when an ACL denies a topic, group, transactional ID or cluster
    operation (`resource` names it when the caller knows it); `KafkaAuthenticationError` when
    TLS fails, the SASL credentials are refused, or the listener speaks another security
    protocol than the client. `principal` is the SASL user, for the message.
    """
    if isinstance(error, KafkaException):
        error = error.args[0] if error.args else None
    if not isinstance(error, KafkaError):
        return None
    code, text = error.code(), error.str()
    who = f"principal User:{principal}" if principal else "this client's principal"
    kind = _DENIED.get(code)
    if kind is not None:
        named = f" {resource}" if resource else ""
        fix = (
            "run it as an admin (a super user)"
            if code == KafkaError.CLUSTER_AUTHORIZATION_FAILED
            else "grant the role's ACLs: `everflow acls worker|client|ui --principal "
            "User:NAME --apply` (as an admin)"
        )
        return KafkaAuthorizationError(f"the cluster's ACLs deny {who} the {kind}{named}: {fix}")
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return KafkaAuthenticationError(
            f"the cluster refused the SASL credentials of {who} ({text}); check "
            "EVERFLOW_KAFKA_SASL_USERNAME, EVERFLOW_KAFKA_SASL_PASSWORD and "
            "EVERFLOW_KAFKA_SASL_MECHANISM"
        )
    if code == KafkaError._SSL:
        return KafkaAuthenticationError(
            f"TLS with the cluster failed ({text}); check that EVERFLOW_KAFKA_SSL_CA_LOCATION "
            "names the CA that signed the brokers' certificates"
        )
    if code == KafkaError._TRANSPORT and "security.protocol" in text:
        return KafkaAuthenticationError(
            f"the cluster's listener speaks another security protocol than this client "
            f"({text}); a secured cluster needs EVERFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL with "
            "EVERFLOW_KAFKA_SASL_MECHANISM, EVERFLOW_KAFKA_SASL_USERNAME, "
            "EVERFLOW_KAFKA_SASL_PASSWORD and EVERFLOW_KAFKA_SSL_CA_LOCATION"
        )
    return None


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (as the Java client and librdkafka's murmur2 partitioner)."""
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    length = len(data)
    h = (seed ^ length) & 0xFFFFFFFF
    end = length - (length % 4)
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: str, partitions: int) -> int:
    """The partition a key lands on with the murmur2 partitioner."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def where(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message (never None for a fetched one)."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


class Produces(Protocol):
    """A producer, or a wrapper of one with the same `produce`."""

    def produce(self, *args: Any, **kwargs: Any) -> None: ...


def dead_letter(
    producer: Produces,
    topic: str,
    msg: Message,
    reason: str,
    max_bytes: int | None = None,
    **kw: Any,
) -> None:
    """Produces `msg` unchanged to the dead-letter `topic`, with why and where it came from.

    The value, key and headers are kept; `everflow.reason` says why it could not be used and
    `everflow.source` where it was (`topic/partition/offset`). It goes to the same partition
    number, so poison from one partition stays together. A value that would make the dead
    letter larger than `max_bytes` is left out (the reason says so; the original stays in
    its source topic until retention). `kw` passes on (`on_delivery`).
    """
    source_topic, partition, offset = where(msg)
    original = msg.headers() or []
    value, key = msg.value(), msg.key()
    size = len(value or b"") + len(key or b"") + len(reason) + 1024
    if max_bytes is not None and value is not None and size > max_bytes:
        reason = f"{reason} (its {len(value)}-byte value is not kept here: over the record limit)"
        value = None
    headers: list[tuple[str, str | bytes | None]] = [
        ("everflow.reason", reason.encode()),
        ("everflow.source", f"{source_topic}/{partition}/{offset}".encode()),
        *(original.items() if isinstance(original, dict) else original),
    ]
    producer.produce(topic, value, key, partition=partition, headers=headers, **kw)


def consume_batch(consumer: Consumer, max_messages: int, timeout: float) -> list[Any]:
    """Up to `max_messages`, returning as soon as at least one is there (or at timeout).

    librdkafka's `consume(n, timeout)` waits for all n or the whole timeout; here the wait
    ends at the first message, and what else is already fetched comes with it.
    """
    messages = consumer.consume(max_messages, 0)
    if messages or timeout <= 0:
        return messages
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]


def read_to_end(
    consumer: Consumer, assignment: list[TopicPartition], deadline: float | None = None
) -> Iterator[Message]:
    """Assigns `assignment` and yields its messages until every partition reached its end.

    The consumer must have `enable.partition.eof`. Raises BrokerError on a read error, or
    when `deadline` (time.monotonic()) passes first; KafkaAuthorizationError at once when
    an ACL denies a topic (librdkafka would only wait: an assigned partition it may not
    read reports nothing).
    """
    for topic in sorted({tp.topic for tp in assignment}):
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        denied = refusal(metadata.error, topic) if metadata is not None else None
        if denied is not None:
            raise denied
    consumer.assign(assignment)
    pending = {(tp.topic, tp.partition) for tp in assignment}
    while pending:
        if deadline is not None and time.monotonic() > deadline:
            raise BrokerError(f"reading {sorted(pending)} to the end did not finish in time")
        for msg in consumer.consume(5000, 0.05):
            err = msg.error()
            if err is None:
                yield msg
            elif err.code() == KafkaError._PARTITION_EOF:
                pending.discard((msg.topic(), msg.partition()))
            else:
                raise refusal(err, str(msg.topic())) or BrokerError(
                    f"reading {msg.topic()} failed: {err.str()}"
                )


# errors of a cluster that is briefly unreachable or busy: a coordinator, controller or
# leader moving, a node down or cut off
_TRANSIENT = {
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError.NOT_CONTROLLER,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.UNKNOWN_TOPIC_OR_PART,  # a topic just made, not yet known to every broker
}


def transient(error: object) -> bool:
    """Whether a KafkaException (or a KafkaError) says the cluster is briefly unreachable
    or busy, so that asking again later may succeed."""
    if isinstance(error, KafkaException):
        error = error.args[0] if error.args else None
    return isinstance(error, KafkaError) and (error.retriable() or error.code() in _TRANSIENT)


def patiently(call: Callable[[], T], what: str, patience: float = 120.0) -> T:
    """`call()`, asked again while the cluster is briefly unreachable (see `transient`):
    with a warning each time, backing off up to 5 s, for up to `patience` seconds; then,
    or on any other error, the error is raised. For a call that must outlast an outage of
    any length, see `through_outages`."""
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            return call()
        except KafkaException as e:
            if not transient(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; asking again in %.1f s", what, e.args[0].str(), delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


# longest pause between two tries of `through_outages`
OUTAGE_PAUSE_MAX_SECONDS = 30.0


def through_outages(
    call: Callable[[], T],
    what: str,
    stop: threading.Event | None = None,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """`call()`, made again for as long as the cluster cannot be reached or read (a broker
    error: brokers down, this process cut off from them, a request timed out), pausing 1 s,
    doubling up to 30 s, with a warning each time: a worker waits an outage out instead of
    exiting (`patiently` gives up after a while instead). `on_retry` is told of each new
    try (a metric counts them). A refusal (credentials, ACLs) is raised at once; the last
    error is raised once `stop` is set, even in the middle of a pause."""
    pause = 1.0
    while True:
        try:
            return call()
        except (KafkaAuthenticationError, KafkaAuthorizationError):
            raise
        except (BrokerError, KafkaException) as e:
            denied = refusal(e) if isinstance(e, KafkaException) else None
            if denied is not None:
                raise denied from e
            if stop is not None and stop.is_set():
                raise
            log.warning("%s failed, trying again in %.0f s: %s", what, pause, e)
            if stop is None:
                time.sleep(pause)
            elif stop.wait(pause):
                raise
            if on_retry is not None:
                on_retry()
            pause = min(pause * 2, OUTAGE_PAUSE_MAX_SECONDS)


def end_offset(consumer: Consumer, topic: str, partition: int, timeout: float = 30.0) -> int:
    """The partition's current end, retrying while a new topic's leader is not yet known."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            return int(high)
        except KafkaException as e:
            denied = refusal(e, topic)
            if denied is not None:
                raise denied from e
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
