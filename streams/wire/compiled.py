"""Avro binary encoding, compiled once per schema into plain closures.

Each message Everflow writes is small (a history event is ~80 bytes), and fastavro's
per-call overhead (re-reading the parsed schema's named types, matching union branches)
costs several times the encoding itself. The closures here do only the encoding. They read
and write the shapes fastavro uses — records as dicts, a union of several records as a
(name, record) tuple, a record alone in a union as the record, an enum as its symbol — so
either path gives the same bytes and values; tests check that on every schema.

Covered: the types our schemas use (null, boolean, int, long, double, string, bytes, record,
enum, array, map, union). Reading a message written with another schema (evolution) goes
through fastavro's schema resolution instead.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Writer = Callable[[bytearray, Any], None]
Reader = Callable[[bytes, int], tuple[Any, int]]

_DOUBLE = struct.Struct("<d")


class UnsupportedSchemaError(ValueError):
    """A schema uses an Avro type this module does not compile."""


def write_long(out: bytearray, n: int) -> None:
    n = (n << 1) ^ (n >> 63)  # zigzag
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _write_null(out: bytearray, value: Any) -> None:
    if value is not None:
        raise ValueError(f"expected None, got {type(value).__name__}")


def _read_null(data: bytes, pos: int) -> tuple[Any, int]:
    return None, pos


def _write_boolean(out: bytearray, value: Any) -> None:
    out.append(1 if value else 0)


def _read_boolean(data: bytes, pos: int) -> tuple[Any, int]:
    return data[pos] != 0, pos + 1


def _write_double(out: bytearray, value: Any) -> None:
    out += _DOUBLE.pack(value)


def _read_double(data: bytes, pos: int) -> tuple[Any, int]:
    return _DOUBLE.unpack_from(data, pos)[0], pos + 8


def _write_bytes(out: bytearray, value: Any) -> None:
    write_long(out, len(value))
    out += value


def _read_bytes(data: bytes, pos: int) -> tuple[Any, int]:
    size, pos = read_long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError(f"a length of {size} bytes runs past the end of the message")
    return bytes(data[pos:end]), end


def _write_string(out: bytearray, value: Any) -> None:
    raw = value.encode()
    write_long(out, len(raw))
    out += raw


def _read_string(data: bytes, pos: int) -> tuple[Any, int]:
    raw, pos = _read_bytes(data, pos)
    return raw.decode(), pos


_PRIMITIVES: dict[str, tuple[Writer, Reader]] = {
    "null": (_write_null, _read_null),
    "boolean": (_write_boolean, _read_boolean),
    "int": (write_long, read_long),
    "long": (write_long, read_long),
    "double": (_write_double, _read_double),
    "bytes": (_write_bytes, _read_bytes),
    "string": (_write_string, _read_string),
}


def _read_blocks(data: bytes, pos: int, item: Reader) -> tuple[list[Any], int]:
    items: list[Any] = []
    while True:
        count, pos = read_long(data, pos)
        if count == 0:
            return items, pos
        if count < 0:  # a block with its size in bytes (written by some encoders)
            count = -count
            _, pos = read_long(data, pos)
        for _ in range(count):
            value, pos = item(data, pos)
            items.append(value)


class Compiled:
    """A writer and a reader for one parsed schema (and the named types it refers to)."""

    def __init__(self, schema: Any, named: dict[str, Any]) -> None:
        self._named = named
        self._writers: dict[str, Writer] = {}
        self._readers: dict[str, Reader] = {}
        self._records: set[str] = set()
        self.write, self.read = self._compile(schema)

    def encode(self, value: Any) -> bytes:
        out = bytearray()
        self.write(out, value)
        return bytes(out)

    def decode(self, data: bytes, pos: int = 0) -> Any:
        return self.read(data, pos)[0]

    def _compile(self, schema: Any) -> tuple[Writer, Reader]:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            return self._named_type(schema)
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        if kind in ("record", "enum"):
            return self._named_type(schema["name"], schema)
        if kind == "array":
            return self._array(schema["items"])
        if kind == "map":
            return self._map(schema["values"])
        if isinstance(kind, str | list | dict) and not schema.keys() - {"type", "logicalType"}:
            return self._compile(kind)
        raise UnsupportedSchemaError(f"no compiled codec for Avro type {kind!r}")

    def _named_type(self, name: str, schema: Any = None) -> tuple[Writer, Reader]:
        # a named type may refer to itself (Failure.cause): callers get trampolines that
        # look the compiled closure up when first called
        if name not in self._writers:
            self._writers[name] = self._readers[name] = None  # type: ignore[assignment]
            definition = schema if schema is not None else self._named[name]
            if definition["type"] == "record":
                self._records.add(name)
                write, read = self._record(definition)
            else:
                write, read = self._enum(definition)
            self._writers[name], self._readers[name] = write, read
        write, read = self._writers[name], self._readers[name]
        if write is not None:
            return write, read
        writers, readers = self._writers, self._readers
        return (lambda out, v: writers[name](out, v), lambda d, p: readers[name](d, p))

    def _record(self, schema: Any) -> tuple[Writer, Reader]:
        fields = [(f["name"], *self._compile(f["type"])) for f in schema["fields"]]
        plan_w = [(name, w) for name, w, _ in fields]
        plan_r = [(name, r) for name, _, r in fields]

        def write(out: bytearray, value: Any) -> None:
            for name, w in plan_w:
                w(out, value[name])

        def read(data: bytes, pos: int) -> tuple[Any, int]:
            record = {}
            for name, r in plan_r:
                record[name], pos = r(data, pos)
            return record, pos

        return write, read

    def _enum(self, schema: Any) -> tuple[Writer, Reader]:
        symbols: list[str] = list(schema["symbols"])
        index = {s: i for i, s in enumerate(symbols)}

        def write(out: bytearray, value: Any) -> None:
            write_long(out, index[value])

        def read(data: bytes, pos: int) -> tuple[Any, int]:
            i, pos = read_long(data, pos)
            if not 0 <= i < len(symbols):
                raise ValueError(f"enum index {i} of {symbols}")
            return symbols[i], pos

        return write, read

    def _array(self, items: Any) -> tuple[Writer, Reader]:
        item_w, item_r = self._compile(items)

        def write(out: bytearray, value: Any) -> None:
            if value:
                write_long(out, len(value))
                for item in value:
                    item_w(out, item)
            out.append(0)

        def read(data: bytes, pos: int) -> tuple[Any, int]:
            return _read_blocks(data, pos, item_r)

        return write, read

    def _map(self, values: Any) -> tuple[Writer, Reader]:
        value_w, value_r = self._compile(values)

        def read_entry(data: bytes, pos: int) -> tuple[Any, int]:
            key, pos = _read_string(data, pos)
            value, pos = value_r(data, pos)
            return (key, value), pos

        def write(out: bytearray, value: Any) -> None:
            if value:
                write_long(out, len(value))
                for k, v in value.items():
                    _write_string(out, k)
                    value_w(out, v)
            out.append(0)

        def read(data: bytes, pos: int) -> tuple[Any, int]:
            entries, pos = _read_blocks(data, pos, read_entry)
            return dict(entries), pos

        return write, read

    def _union(self, branches: list[Any]) -> tuple[Writer, Reader]:
        compiled = [self._compile(b) for b in branches]
        names = [self._branch_name(b) for b in branches]
        null = names.index("null") if "null" in names else -1
        others = [i for i, n in enumerate(names) if n != "null"]
        records = {i for i in others if names[i] in self._records}
        by_name = {names[i]: (i, compiled[i][0]) for i in others}
        # fastavro's shapes: a (name, record) tuple where several records share the union
        tagged = len(records) > 1
        only = others[0] if len(others) == 1 else -1

        def write(out: bytearray, value: Any) -> None:
            if value is None and null >= 0:
                write_long(out, null)
            elif type(value) is tuple:
                i, w = by_name[value[0]]
                write_long(out, i)
                w(out, value[1])
            elif only >= 0:
                write_long(out, only)
                compiled[only][0](out, value)
            else:
                raise ValueError(f"cannot tell which branch of {names} a {type(value)} is")

        readers = [r for _, r in compiled]

        def read(data: bytes, pos: int) -> tuple[Any, int]:
            i, pos = read_long(data, pos)
            if not 0 <= i < len(readers):
                raise ValueError(f"union branch {i} of {names}")
            value, pos = readers[i](data, pos)
            if tagged and i in records:
                return (names[i], value), pos
            return value, pos

        return write, read

    def _branch_name(self, branch: Any) -> str:
        if isinstance(branch, str):
            return branch
        if isinstance(branch, dict) and branch.get("type") in ("record", "enum"):
            return str(branch["name"])
        return str(branch.get("type")) if isinstance(branch, dict) else "union"
