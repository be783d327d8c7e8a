"""The codecs of every message type, built once per process."""

from __future__ import annotations

from functools import cache

from streams import commands, events, records  # noqa: F401  (registers the record classes)
from streams.codec import Codec, SchemaRegistry


class Wire:
    """One codec per top-level message type."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry or SchemaRegistry()
        self.command = Codec("everflow.Command", self.registry)
        self.event = Codec("everflow.HistoryEvent", self.registry)
        self.task = Codec("everflow.ActivityTask", self.registry)
        self.timer = Codec("everflow.Timer", self.registry)
        self.snapshot = Codec("everflow.Snapshot", self.registry)
        self.completion = Codec("everflow.Completion", self.registry)
        self.reply = Codec("everflow.Reply", self.registry)
        self.worker_status = Codec("everflow.WorkerStatus", self.registry)


@cache
def wire() -> Wire:
    """The process-wide codecs over the schemas shipped in `schemas/`."""
    return Wire()
