"""A downstream consumer of closed runs, with plain confluent-kafka and fastavro only.

Everflow writes one record per closed run to `<prefix>completions`, keyed by workflow ID, in
Avro single-object encoding: bytes C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of
the writer schema, then the Avro body. The schemas are the files in `schemas/`.

    python -m examples.completions_consumer --bootstrap localhost:9092 --prefix everflow.
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
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from examples.kafka_settings import check, passthrough

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def completion_reader() -> tuple[int, Any]:
    schema = load_schema(str(SCHEMAS / "everflow.Completion.avsc"))
    fp = int(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"), 16)
    return fp, schema


def decode(value: bytes, fp: int, schema: Any) -> dict[str, Any]:
    if value[:2] != b"\xc3\x01" or int.from_bytes(value[2:10], "little") != fp:
        raise ValueError("not a Completion in the schema this consumer knows")
    record: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema)
    return record


def completions(
    bootstrap: str, prefix: str, group: str, from_start: bool
) -> Iterator[dict[str, Any]]:
    fp, schema = completion_reader()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",  # only runs whose close was committed
            "auto.offset.reset": "earliest" if from_start else "latest",
            **passthrough(),  # EVERFLOW_KAFKA_*: TLS, SASL… as for Everflow's own clients
        }
    )
    consumer.subscribe([f"{prefix}completions"])
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None or not check(msg):
                continue
            yield decode(msg.value(), fp, schema)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--prefix", default="everflow.")
    parser.add_argument("--group", default="completions-printer")
    parser.add_argument("--from-start", action="store_true")
    args = parser.parse_args()
    for record in completions(args.bootstrap, args.prefix, args.group, args.from_start):
        result = record["result"]
        if result is not None and result["metadata"].get("encoding") == b"json/plain":
            record["result"] = json.loads(result["data"])
        failure = record["failure"]
        record["failure"] = failure["message"] if failure else None
        print(json.dumps(record, default=str), flush=True)


if __name__ == "__main__":
    main()
