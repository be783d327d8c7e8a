"""A downstream reader of every run's history, with plain confluent-kafka and fastavro only:
an audit trail, a search index, a data lake… `<prefix>history` holds one record per event,
keyed by workflow ID, in Avro single-object encoding (C3 01, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema, the body). Records written with an older
schema carry its fingerprint: keep the schema files of `schemas/archive/` next to the
current ones and resolve old writers to the current reader, as this does.

    python -m examples.history_consumer --bootstrap localhost:9092 --prefix everflow.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Consumer
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from examples.kafka_settings import check, passthrough

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def _fp(schema: Any) -> int:
    return int(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"), 16)


def history_schemas() -> tuple[Any, dict[int, Any]]:
    """The current HistoryEvent schema, and every known writer schema by fingerprint."""
    current = load_schema(str(SCHEMAS / "everflow.HistoryEvent.avsc"))
    writers = {_fp(current): current}
    for path in (SCHEMAS / "archive").glob("everflow.HistoryEvent.*.avsc"):
        old = parse_schema(json.loads(path.read_text()))
        writers[_fp(old)] = old
    return current, writers


def decode(value: bytes, reader: Any, writers: dict[int, Any]) -> dict[str, Any]:
    if value[:2] != b"\xc3\x01":
        raise ValueError("not an Avro single-object record")
    writer = writers.get(int.from_bytes(value[2:10], "little"))
    if writer is None:
        raise ValueError("written with a schema this reader does not have (update schemas/)")
    record: dict[str, Any] = fastavro.schemaless_reader(
        io.BytesIO(value[10:]), writer, reader, return_record_name=True
    )
    kind, attributes = record.pop("attributes")  # the event type is the union branch
    record["type"] = kind.rsplit(".", 1)[-1]
    record["attributes"] = attributes
    return record


def history(
    bootstrap: str, prefix: str, group: str, from_start: bool, idle_timeout: float | None = None
) -> Iterator[dict[str, Any]]:
    """Every event, in order per workflow; stops after `idle_timeout` s without one."""
    reader, writers = history_schemas()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",  # never an event of an aborted transaction
            "auto.offset.reset": "earliest" if from_start else "latest",
            **passthrough(),  # EVERFLOW_KAFKA_*: TLS, SASL… as for Everflow's own clients
        }
    )
    consumer.subscribe([f"{prefix}history"])
    try:
        idle = 0.0
        while idle_timeout is None or idle < idle_timeout:
            msg = consumer.poll(0.5)
            if msg is None or not check(msg):
                idle += 0.5
                continue
            idle = 0.0
            yield decode(msg.value(), reader, writers)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--prefix", default="everflow.")
    parser.add_argument("--group", default="history-printer")
    parser.add_argument("--from-start", action="store_true")
    args = parser.parse_args()
    for e in history(args.bootstrap, args.prefix, args.group, args.from_start):
        print(f"{e['workflow_id']}/{e['run_id']} #{e['event_id']} {e['type']}", flush=True)


if __name__ == "__main__":
    main()
