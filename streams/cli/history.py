"""`everflow history export`: one run's events read from Kafka; and the readers of recorded
histories (an export file, the history topic) that `everflow replay` uses.

Export asks the run's processor where the run starts in its history partition (the offset
its snapshot keeps) and reads from there, so it does not scan the topic. JSON lines carry
each event readable (IDs, types, times, decoded payloads) plus its exact record (`raw`,
base64) so the file can be replayed; `--format avro` writes an Avro object container file
with the HistoryEvent schema that any Avro library reads.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streams import kafka
from streams.cli.common import (
    SubParsers,
    add_connection_arguments,
    add_group,
    add_subparser,
    kafka_config,
)
from streams.cli.progress import Progress
from streams.client import Client
from streams.encryption import configured_converter
from streams.errors import EverflowError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, partition_count, read_whole
from streams.payload import DataConverter
from streams.wire import wire
from streams.wire.events import HistoryEvent, WorkflowStarted
from streams.wire.history_json import event_to_json

AVRO_MAGIC = b"Obj\x01"


def add_parser(subparsers: SubParsers) -> None:
    """Register `history export`."""
    history_commands = add_group(subparsers, "history", "export runs' recorded events")
    export = add_subparser(
        history_commands,
        "export",
        "write one run's events from Kafka, as JSON lines or an Avro container file",
    )
    add_connection_arguments(export)
    export.add_argument("workflow_id")
    export.add_argument("--run-id")
    export.add_argument("--format", choices=("json", "avro"), default="json")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    export.set_defaults(run=history_export)


def history_export(args: argparse.Namespace) -> int:
    """`everflow history export`: one run's events, read from its start offset on."""
    records = read_run(kafka_config(args), args.workflow_id, args.run_id)
    target: BinaryIO = open(args.output, "wb") if args.output else sys.stdout.buffer
    try:
        if args.format == "avro":
            write_avro(records, target)
        else:
            write_json(records, target, configured_converter())
    finally:
        if args.output:
            target.close()
        else:
            target.flush()
    return 0


def read_run(
    config: KafkaConfig, workflow_id: str, run_id: str | None = None, timeout: float = 30.0
) -> list[tuple[int, bytes]]:
    """The run's history records as (offset, raw), in order, from its first event on."""

    async def describe() -> Any:
        client = await asyncio.to_thread(Client, config, create_topics=False)  # it reads
        try:
            return await client.get_workflow_handle(workflow_id, run_id).describe()
        finally:
            client.close()

    desc = asyncio.run(describe())
    topic = Topics(config.topic_prefix).history
    partition = kafka.partition_for(workflow_id, partition_count(kafka.admin(config), topic))
    start = desc.first_offset if desc.first_offset >= 0 else OFFSET_BEGINNING
    out: list[tuple[int, bytes]] = []
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        end = kafka.end_offset(consumer, topic, partition)
        consumer.assign([TopicPartition(topic, partition, start)])
        key, decode = workflow_id.encode(), wire().event.decode
        done, deadline = False, time.monotonic() + timeout
        while not done and len(out) < desc.history_length:
            if time.monotonic() > deadline:
                raise EverflowError(f"reading the history of {workflow_id!r} timed out")
            for msg in consumer.consume(5000, 0.2):
                err = msg.error()
                if err is not None:
                    done = done or err.code() == KafkaError._PARTITION_EOF
                    continue
                if msg.key() != key:
                    continue
                raw, offset = msg.value() or b"", msg.offset() or 0
                if decode(raw).run_id == desc.run_id:
                    out.append((offset, raw))
                done = done or offset >= end - 1
    finally:
        consumer.close()
    return out[: desc.history_length]


def write_json(records: list[tuple[int, bytes]], out: BinaryIO, converter: DataConverter) -> None:
    decode = wire().event.decode
    for offset, raw in records:
        row = event_to_json(decode(raw), converter)
        row["offset"] = offset
        row["raw"] = base64.b64encode(raw).decode()
        out.write(orjson.dumps(row, default=str) + b"\n")


def write_avro(records: list[tuple[int, bytes]], out: BinaryIO) -> None:
    codec = wire().event
    rows = [codec.to_record(codec.decode(raw)) for _, raw in records]
    fastavro.writer(out, codec.schema, rows)


def read_history_file(path: Path) -> Iterator[list[HistoryEvent]]:
    """Histories (one list per run) from an export: JSON lines or Avro container."""
    data = path.read_bytes()
    codec = wire().event
    events: list[HistoryEvent]
    if data.startswith(AVRO_MAGIC):
        reader = fastavro.reader(
            io.BytesIO(data), return_record_name=True, return_record_name_override=True
        )
        events = [codec.from_record(r) for r in reader]
    else:
        events = []
        for line in data.splitlines():
            if line.strip():
                row = orjson.loads(line)
                if "raw" not in row:
                    raise EverflowError(
                        f"{path}: a line without its record ('raw'); write the file with "
                        "`everflow history export`"
                    )
                events.append(codec.decode(base64.b64decode(row["raw"])))
    by_run: dict[tuple[str, str], list[HistoryEvent]] = {}
    for e in events:
        by_run.setdefault((e.workflow_id, e.run_id), []).append(e)
    yield from by_run.values()


def histories_from_kafka(
    config: KafkaConfig,
    workflow_type: str | None,
    limit: int,
    progress: Progress | None = None,
) -> list[list[HistoryEvent]]:
    """Up to `limit` runs (of `workflow_type`) whose start is on the history topic; the
    whole topic is read, with news of how far for `progress` (`streams.cli.progress`)."""
    topic = Topics(config.topic_prefix).history
    runs: dict[tuple[str, str], list[HistoryEvent]] = {}
    decode = wire().event.decode
    for read, msg in enumerate(read_whole(config, topic), 1):
        if progress is not None and progress.due():
            progress(f"replay: {read:,} history events read, {len(runs):,} runs kept")
        event = decode(msg.value())
        key = (event.workflow_id, event.run_id)
        if key in runs:
            runs[key].append(event)
        elif isinstance(event.attributes, WorkflowStarted) and len(runs) < limit:
            if workflow_type in (None, event.attributes.workflow_type):
                runs[key] = [event]
    return list(runs.values())
