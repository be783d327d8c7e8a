"""Reading the fault workload's topics without the engine: plain confluent-kafka consumers
from the beginning to today's end, and Avro single-object records decoded with fastavro from
the schema files in `schemas/` (`C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of
the writer schema, the body). The history checker (`checker.py`) is built on this."""

from __future__ import annotations

import io
import json
import struct
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from streams.kafka.config import KafkaConfig

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
_HEADER = struct.Struct("<2sQ")
_MAGIC = b"\xc3\x01"


# ---- decoding --------------------------------------------------------------------------------
class Schemas:
    """The writer schemas of `schemas/` (current and archived), by fingerprint."""

    def __init__(self, folder: Path = SCHEMAS) -> None:
        self.current: dict[str, Any] = {}
        self.writers: dict[int, tuple[str, Any]] = {}
        for path in sorted(folder.glob("*.avsc")):
            schema = load_schema(str(path))
            name = path.stem.rsplit(".", 1)[-1]  # everflow.<Name>.avsc
            self.current[name] = schema
            self.writers[_fingerprint(schema)] = (name, schema)
        for path in sorted((folder / "archive").glob("*.avsc")):
            schema = parse_schema(json.loads(path.read_text()))
            # everflow.<Name>.<fingerprint>.avsc
            self.writers[_fingerprint(schema)] = (path.name.split(".")[1], schema)

    def decode(self, name: str, raw: bytes | None) -> dict[str, Any]:
        """The record in `raw`, which must be a `name` (ValueError says why it is not)."""
        if raw is None or len(raw) < _HEADER.size:
            raise ValueError(f"not a {name}: {len(raw or b'')} bytes")
        magic, fp = _HEADER.unpack_from(raw)
        if magic != _MAGIC or fp not in self.writers:
            raise ValueError(f"not a {name}: header {raw[:10].hex()}")
        writer_name, writer = self.writers[fp]
        if writer_name != name:
            raise ValueError(f"expected a {name}, got a {writer_name}")
        buf = io.BytesIO(raw)
        buf.seek(_HEADER.size)
        reader = self.current[name]
        record: Any = fastavro.schemaless_reader(
            buf,
            writer,
            None if reader is writer else reader,
            return_record_name=True,
            return_record_name_override=True,
        )
        if buf.tell() != len(raw):
            raise ValueError(f"{len(raw) - buf.tell()} trailing bytes after a {name}")
        if not isinstance(record, dict):
            raise ValueError(f"a {name} that is not a record")
        return record

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """`record` (as `decode` returns it) written with the current schema of `name`."""
        schema = self.current[name]
        buf = io.BytesIO()
        buf.write(_HEADER.pack(_MAGIC, _fingerprint(schema)))
        fastavro.schemaless_writer(buf, schema, record)
        return buf.getvalue()


def _fingerprint(schema: Any) -> int:
    return int(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"), 16)


def payload_value(payload: dict[str, Any] | None) -> Any:
    """A user value from its Payload record (JSON by default)."""
    if payload is None:
        return None
    encoding = payload["metadata"].get("encoding", b"json/plain")
    if encoding == b"binary/null":
        return None
    if encoding != b"json/plain":
        return payload["data"]
    return orjson.loads(payload["data"])


# ---- reading the topics ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def read_topic(
    config: KafkaConfig, topic: str, isolation: str = "read_committed", timeout: float = 120.0
) -> list[Record]:
    """Every record of `topic` from the beginning to today's end, in partition/offset order."""
    consumer = Consumer(
        config.client_settings(
            **{
                "group.id": f"everflow-checker-{uuid.uuid4().hex[:8]}",
                "isolation.level": isolation,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )
    )
    try:
        meta = consumer.list_topics(topic, timeout=30)
        partitions = sorted(meta.topics[topic].partitions)
        pending = set()
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                pending.add(p)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} ({isolation}) did not reach its end")
            for msg in consumer.consume(5000, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}: {err.str()}")
                    pending.discard(msg.partition() or 0)
                    continue
                pairs: Any = msg.headers() or []
                headers = tuple(
                    (k, v.encode() if isinstance(v, str) else v or b"") for k, v in pairs
                )
                out.append(
                    Record(
                        topic,
                        msg.partition() or 0,
                        msg.offset() or 0,
                        msg.key(),
                        msg.value(),
                        headers,
                    )
                )
    finally:
        consumer.close()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


def list_topics(config: KafkaConfig) -> list[str]:
    admin = AdminClient(config.client_settings())
    return sorted(admin.list_topics(timeout=30).topics)


_COORDINATOR_BUSY = {
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def committed_offsets(config: KafkaConfig, group: str, topic: str) -> dict[int, int]:
    """The offsets `group` committed on `topic`, by partition (absent: none committed)."""
    admin = AdminClient(config.client_settings())
    partitions = admin.list_topics(topic, timeout=30).topics[topic].partitions
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    deadline = time.monotonic() + 90
    while True:  # a coordinator still loading after a fault answers so for a while
        try:
            result = admin.list_consumer_group_offsets([request], request_timeout=30)[group]
            offsets = result.result(30).topic_partitions
            return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}
        except KafkaException as e:
            error = e.args[0]
            busy = error.retriable() or error.code() in _COORDINATOR_BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(1)


@dataclass
class Event:
    """One history event, flattened: its attributes' record name and fields."""

    workflow_id: str
    run_id: str
    event_id: int
    time: int
    kind: str
    attrs: dict[str, Any]
    partition: int
    offset: int


def events_of(schemas: Schemas, records: Iterable[Record]) -> list[Event]:
    out = []
    for r in records:
        e = schemas.decode("HistoryEvent", r.value)
        kind, attrs = e["attributes"]
        out.append(
            Event(
                e["workflow_id"],
                e["run_id"],
                e["event_id"],
                e["time"],
                kind.rsplit(".", 1)[-1],
                attrs,
                r.partition,
                r.offset,
            )
        )
    return out
