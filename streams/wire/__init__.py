"""The wire format: every record that travels on Everflow's topics, and its Avro codecs.

Mirrors `schemas/`: a Python record class has the name of its Avro record.
- `commands`: what is sent on `commands` (`Command` and its bodies);
- `events`: what is written on `history` (`HistoryEvent` and its attributes);
- `records`: tasks, timers, snapshots, completions, replies and worker status;
- `avro`: `@avro` record classes, the schema registry and `AvroCodec`;
- `compiled`: Avro encoders and decoders compiled to closures per schema;
- `history_json`: a history as JSON lines (export, `workflow show`).
`Wire` (here) holds one `AvroCodec` per top-level message type.

May import: `streams.payload`, `streams.retry`, `streams.errors`, `fastavro`, `orjson`.
Never Kafka I/O, the client, or `processors`.
"""

from __future__ import annotations

from functools import cache

from streams.wire import commands, events, records
from streams.wire.avro import AvroCodec, SchemaRegistry

# the record classes of these modules are registered with their schemas when defined
RECORD_MODULES = (commands, events, records)


class Wire:
    """One `AvroCodec` per top-level message type."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or SchemaRegistry()
        self.command = AvroCodec("everflow.Command", self.registry)
        self.event = AvroCodec("everflow.HistoryEvent", self.registry)
        self.task = AvroCodec("everflow.ActivityTask", self.registry)
        self.timer = AvroCodec("everflow.Timer", self.registry)
        self.snapshot = AvroCodec("everflow.Snapshot", self.registry)
        self.completion = AvroCodec("everflow.Completion", self.registry)
        self.reply = AvroCodec("everflow.Reply", self.registry)
        self.worker_status = AvroCodec("everflow.WorkerStatus", self.registry)


@cache
def wire() -> Wire:
    """The process-wide codecs over the schemas shipped in `schemas/`."""
    return Wire()
