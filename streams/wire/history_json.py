"""History events as plain JSON-able dicts, with payloads decoded, for people and tools."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection
from typing import Any

import orjson

from streams.errors import PayloadKeyError
from streams.payload import DataConverter, Payload
from streams.wire.events import HistoryEvent


def event_to_json(event: HistoryEvent, converter: DataConverter) -> dict[str, Any]:
    """{"event_id", "time", "type", ...attributes} with payloads decoded by `converter`."""
    attrs = _plain(event.attributes, converter)
    return {
        "workflow_id": event.workflow_id,
        "run_id": event.run_id,
        "event_id": event.event_id,
        "time": event.time,
        "type": type(event.attributes).__name__,
        **attrs,
    }


SUMMARY_QUIET = frozenset(
    {"workflow_id", "run_id", "event_id", "time", "type", "start_command_id"}
    | {"retry_policy", "reply_to", "request_id", "cancellation_type", "parent_seq"}
)
"""Fields a one-line summary leaves out: the event's own columns and plumbing."""


def event_summary(
    data: dict[str, Any],
    *,
    instant: Callable[[int], str],
    limit: int,
    quiet: Collection[str] = SUMMARY_QUIET,
) -> str:
    """An event's attributes (`event_to_json`) on one line: `name=value`, the `quiet` fields
    and empty ones left out, a failure by its message, instants (`*_at`) through `instant`,
    cut at `limit` characters."""
    parts = []
    for name, value in data.items():
        if name in quiet or value in (None, "", [], {}):
            continue
        if isinstance(value, dict) and "message" in value:
            value = value["message"]
        elif name.endswith("_at") and isinstance(value, int):
            value = instant(value)
        if not isinstance(value, str):
            value = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        parts.append(f"{name}={value}")
    line = " ".join(parts)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def record_to_json(record: Any, converter: DataConverter) -> Any:
    """Any wire record (a command, a task, ...) as plain JSON-able data, payloads decoded."""
    return _plain(record, converter)


def _plain(value: Any, converter: DataConverter) -> Any:
    if isinstance(value, Payload):
        try:
            return converter.from_payload(value)
        except PayloadKeyError as e:  # ciphertext in hex would tell nobody anything
            return {"encrypted_payload": {"key_id": e.key_id, "bytes": len(value.data)}}
        except Exception:  # an undecodable payload is shown raw, not hidden
            return {"undecodable_payload": value.data.hex()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name), converter) for f in dataclasses.fields(value)
        }
    if isinstance(value, list):
        return [_plain(v, converter) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex()
    return value
