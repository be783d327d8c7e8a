"""Custom search attributes: Python values in, typed wire records out, and back.

A run's search attributes are set at start (`client.start_workflow(...,
search_attributes={...})`) and by its code (`workflow.upsert_search_attributes({...})`);
they are recorded in its history, so every replay and every rebuild of the run index sees
the same values. The type of each attribute follows from its Python value:

| Python value                         | type           | on the wire (JSON text)   |
|--------------------------------------|----------------|---------------------------|
| `str`                                | `keyword`      | `"gold"`                  |
| `Text("...")` (a str marked as prose)| `text`         | `"late delivery"`         |
| `bool`                               | `bool`         | `true`                    |
| `int` (64-bit)                       | `int`          | `42`                      |
| `float` (finite)                     | `double`       | `12.5`                    |
| aware `datetime`                     | `datetime`     | epoch milliseconds        |
| `list` / `tuple` of `str`            | `keyword_list` | `["a","b"]`               |
| `None` (upsert only)                 | removes it     | `null`                    |

Anything else, a naive datetime, a name that is not an identifier or that is one of the
built-in names raises `SearchAttributeError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from streams.errors import SearchAttributeError
from streams.wire.records import SearchAttribute, SearchAttributeType

__all__ = ["BUILT_IN_NAMES", "Text", "decode", "encode"]

BUILT_IN_NAMES = frozenset(
    {
        "WorkflowId",
        "RunId",
        "WorkflowType",
        "TaskQueue",
        "ExecutionStatus",
        "StartTime",
        "CloseTime",
        "ExecutionDuration",
        "HistoryLength",
        "ParentWorkflowId",
        "ParentRunId",
        "PendingActivities",
        "ActivityAttempt",
        "Blocked",
    }
)
"""The run index's own fields: a custom search attribute may not take one of these names."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT64 = (-(2**63), 2**63 - 1)
_TYPES = "str, workflow.Text, bool, int, float, an aware datetime or a list of str"


class Text(str):
    """A string searched by its words (type `text`), not as one exact value (`keyword`):
    `workflow.upsert_search_attributes({"Notes": workflow.Text("late delivery")})`."""

    __slots__ = ()


def check_name(name: object) -> str:
    """`name` if it can name a custom search attribute; SearchAttributeError otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise SearchAttributeError(
            f"search attribute name {name!r} is not valid: use letters, digits and '_', "
            "not starting with a digit (like 'CustomerId')"
        )
    if name in BUILT_IN_NAMES:
        raise SearchAttributeError(
            f"search attribute name {name!r} is a built-in field of the run index; "
            "choose another name (like 'Custom" + name + "')"
        )
    return name


def encode_value(name: str, value: Any) -> tuple[SearchAttributeType, str]:
    """The type and JSON text of one (non-None) value; SearchAttributeError for a value of
    another type, a naive datetime, an int beyond 64 bits or a float that is not finite."""
    # bool before int (a bool is an int), Text before str (a Text is a str)
    if isinstance(value, bool):
        return SearchAttributeType.BOOL, "true" if value else "false"
    if isinstance(value, Text):
        return SearchAttributeType.TEXT, json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, str):
        return SearchAttributeType.KEYWORD, json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise SearchAttributeError(
                f"search attribute {name!r}: {value} does not fit in 64 bits; use a float or a str"
            )
        return SearchAttributeType.INT, str(int(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SearchAttributeError(f"search attribute {name!r}: {value} is not a finite number")
        return SearchAttributeType.DOUBLE, json.dumps(value)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise SearchAttributeError(
                f"search attribute {name!r}: the datetime {value.isoformat()} is naive; "
                "give it a time zone (datetime(..., tzinfo=UTC) or workflow.now())"
            )
        return SearchAttributeType.DATETIME, str(_epoch_ms(value))
    if isinstance(value, list | tuple):
        if not all(isinstance(v, str) for v in value):
            raise SearchAttributeError(
                f"search attribute {name!r}: a list must hold only str (a keyword list), "
                f"got {[type(v).__name__ for v in value]}"
            )
        return SearchAttributeType.KEYWORD_LIST, json.dumps(
            [str(v) for v in value], ensure_ascii=False, separators=(",", ":")
        )
    raise SearchAttributeError(
        f"search attribute {name!r}: a {type(value).__name__} is not a search attribute "
        f"value; use {_TYPES} (or None to remove it)"
    )


def encode(
    values: Mapping[str, Any],
    known: Mapping[str, SearchAttributeType] | None = None,
    allow_remove: bool = True,
) -> list[SearchAttribute]:
    """Typed records for `values` (name -> Python value), in the mapping's order.

    None removes an attribute (refused when `allow_remove` is False: at start there is
    nothing to remove); it keeps the type `known` gives the name (keyword if unknown).
    Raises SearchAttributeError for a bad name or value, or for a name whose type differs
    from the one in `known`.
    """
    if not isinstance(values, Mapping):
        raise SearchAttributeError(
            f"search attributes are a mapping of name to value, not a {type(values).__name__}"
        )
    known = known or {}
    out: list[SearchAttribute] = []
    for name, value in values.items():
        check_name(name)
        if value is None:
            if not allow_remove:
                raise SearchAttributeError(
                    f"search attribute {name!r} is None: at start there is nothing to "
                    "remove; leave it out"
                )
            kind = known.get(name, SearchAttributeType.KEYWORD)
            out.append(SearchAttribute(name, kind, "null"))
            continue
        kind, text = encode_value(name, value)
        before = known.get(name)
        if before is not None and before is not kind:
            raise SearchAttributeError(
                f"search attribute {name!r} is {before.value} in this run; it cannot become "
                f"{kind.value} (a {type(value).__name__}). Keep its type, or use a new name"
            )
        out.append(SearchAttribute(name, kind, text))
    return out


def decode_value(attribute: SearchAttribute) -> Any:
    """The Python value of one record (None for a removal)."""
    raw = json.loads(attribute.value)
    if raw is None:
        return None
    match attribute.type:
        case SearchAttributeType.DATETIME:
            return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
        case SearchAttributeType.TEXT:
            return Text(raw)
        case SearchAttributeType.DOUBLE:
            return float(raw)
        case SearchAttributeType.KEYWORD_LIST:
            return list(raw)
        case SearchAttributeType.KEYWORD | SearchAttributeType.INT | SearchAttributeType.BOOL:
            return raw
        case _:
            raise SearchAttributeError(
                f"search attribute {attribute.name!r} has unknown type {attribute.type!r}"
            )


def decode(attributes: Mapping[str, SearchAttribute] | list[SearchAttribute]) -> dict[str, Any]:
    """name -> Python value of the records (later records win; removals drop the name)."""
    records = attributes.values() if isinstance(attributes, Mapping) else attributes
    out: dict[str, Any] = {}
    for attribute in records:
        value = decode_value(attribute)
        if value is None:
            out.pop(attribute.name, None)
        else:
            out[attribute.name] = value
    return out


def _epoch_ms(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
