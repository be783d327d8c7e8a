"""History events as plain JSON-able dicts, with payloads decoded, for people and tools."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

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


def record_to_json(record: Any, converter: DataConverter) -> Any:
    """Any wire record (a command, a task, ...) as plain JSON-able data, payloads decoded."""
    return _plain(record, converter)


def _plain(value: Any, converter: DataConverter) -> Any:
    if isinstance(value, Payload):
        try:
            return converter.from_payload(value)
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
