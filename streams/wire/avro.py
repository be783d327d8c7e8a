"""Avro single-object encoding of every Everflow message, with schema resolution.

A message is `C3 01` + the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
schema's canonical form + the Avro body. Readers look the fingerprint up among the current
schemas in `schemas/` and the archived ones in `schemas/archive/`, and resolve an older
writer schema to the current reader schema by Avro's rules. A renamed record keeps its old
full name in the schema's `aliases` (and its old writer schema stays in the archive), so
what the old name wrote decodes to the renamed class.

Records travel as frozen dataclasses registered with `@avro("<full name>")`; the converters
between dataclasses and fastavro's dicts are built once per class from its type hints. A
class of the user API that travels as a record (`RetryPolicy`, `Payload`) is registered with
`avro_record()` instead, with explicit conversion functions when its fields are not the
record's: the wire layer never adds attributes to a user's class.
"""

from __future__ import annotations

import enum
import io
import json
import struct
import types
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

import fastavro
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from schemas import ARCHIVE_DIR, SCHEMA_DIR
from streams.errors import PayloadDecodeError
from streams.wire.compiled import Compiled, UnsupportedSchemaError

MAGIC = b"\xc3\x01"
_HEADER = struct.Struct("<2sQ")
T = TypeVar("T")

_CLASSES: dict[str, type] = {}
_NAMES: dict[type, str] = {}
# dataclass <-> fastavro dict converters per class: given at registration, or built on first use
_TO: dict[type, Callable[[Any], Any]] = {}
_FROM: dict[type, Callable[[Any], Any]] = {}


def avro(name: str) -> Callable[[type[T]], type[T]]:
    """Registers a dataclass as the Python form of the Avro record `name`."""

    def register(cls: type[T]) -> type[T]:
        avro_record(name, cls)
        return cls

    return register


def avro_record(
    name: str,
    cls: type[T],
    to_avro: Callable[[T], dict[str, Any]] | None = None,
    from_avro: Callable[[dict[str, Any]], T] | None = None,
) -> None:
    """Registers `cls` as the Python form of the Avro record `name`, leaving `cls` as it is.

    Without `to_avro`/`from_avro`, its dataclass fields are the record's fields; with them,
    they convert between `cls` and fastavro's dict (both or neither).
    """
    if (to_avro is None) != (from_avro is None):
        raise TypeError(f"avro_record({name!r}) needs both to_avro and from_avro, or neither")
    _CLASSES[name] = cls
    _NAMES[cls] = name
    if to_avro is not None and from_avro is not None:
        _TO[cls] = to_avro
        _FROM[cls] = from_avro


def avro_name(cls: type) -> str:
    """The full name of the Avro record a registered class stands for."""
    return _NAMES[cls]


def schema_fingerprint(schema: Any) -> int:
    """The CRC-64-AVRO fingerprint of a parsed schema, as an unsigned integer."""
    return int(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"), 16)


class SchemaRegistry:
    """The known schemas: current ones by name, every known writer schema by fingerprint."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR, archive_dir: Path = ARCHIVE_DIR) -> None:
        self.schema_dir = schema_dir
        self.current: dict[str, Any] = {}
        self.writers: dict[int, tuple[str, Any]] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            name = path.stem
            schema = load_schema(str(path))
            self.current[name] = schema
            self.writers[schema_fingerprint(schema)] = (name, schema)
        if archive_dir.is_dir():
            for path in sorted(archive_dir.glob("*.avsc")):
                # archive files are self-contained: <full name>.<fingerprint>.avsc
                self.register(path.name.rsplit(".", 2)[0], json.loads(path.read_text()))

    def register(self, name: str, schema: Any) -> int:
        """Makes an extra writer schema known (an older version, or a test's); returns its id."""
        parsed = parse_schema(schema)
        fp = schema_fingerprint(parsed)
        self.writers[fp] = (name, parsed)
        return fp

    def schema(self, name: str) -> Any:
        try:
            return self.current[name]
        except KeyError:
            raise KeyError(f"no schema {name!r} in {self.schema_dir}") from None


class AvroCodec:
    """Encodes and decodes one message type (one top-level schema) to and from bytes."""

    def __init__(self, name: str, registry: SchemaRegistry) -> None:
        self.name = name
        self.registry = registry
        self.schema = registry.schema(name)
        self.fingerprint = schema_fingerprint(self.schema)
        self._header = _HEADER.pack(MAGIC, self.fingerprint)
        self._cls = _CLASSES[name]
        self._to = _to_avro(self._cls)
        self._from = _from_avro(self._cls)
        # fastavro remains the path for other writer schemas (resolution) and the reference
        # the compiled codec is tested against
        try:
            self._compiled: Compiled | None = Compiled(
                self.schema, self.schema.get("__named_schemas", {})
            )
        except UnsupportedSchemaError:
            self._compiled = None

    def to_record(self, message: Any) -> dict[str, Any]:
        """The message as the plain record an Avro library writes (`fastavro.writer`)."""
        return self._to(message)

    def from_record(self, record: Any) -> Any:
        """The message from a plain record an Avro library read (with record names)."""
        return self._from(record)

    def encode(self, message: Any) -> bytes:
        if self._compiled is not None:
            out = bytearray(self._header)
            self._compiled.write(out, self._to(message))
            return bytes(out)
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self.schema, self._to(message))
        return buf.getvalue()

    def encode_with(self, schema_id: int, record: dict[str, Any]) -> bytes:
        """Encodes a raw record with another registered writer schema (tests of evolution)."""
        _, schema = self.registry.writers[schema_id]
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, schema_id))
        fastavro.schemaless_writer(buf, schema, record)
        return buf.getvalue()

    def decode(self, data: bytes | None) -> Any:
        """The message in `data`; raises PayloadDecodeError saying why it cannot be read."""
        if data is None:
            raise PayloadDecodeError(f"expected a {self.name}, got no value (tombstone)")
        if len(data) < _HEADER.size:
            raise PayloadDecodeError(f"{len(data)} bytes is too short for a {self.name}")
        magic, fp = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise PayloadDecodeError(
                f"not Avro single-object encoding (starts with {data[:2].hex()}, expected c301)"
            )
        writer = self.registry.writers.get(fp)
        if writer is None:
            raise PayloadDecodeError(
                f"unknown writer schema fingerprint {fp:016x} for {self.name}; "
                "the message was written by a newer Everflow, or is not ours"
            )
        writer_name, writer_schema = writer
        if writer_name != self.name:
            raise PayloadDecodeError(f"expected a {self.name}, got a {writer_name}")
        try:
            if fp == self.fingerprint and self._compiled is not None:
                record, end = self._compiled.read(data, _HEADER.size)
            else:
                buf = io.BytesIO(data)
                buf.seek(_HEADER.size)
                record = fastavro.schemaless_reader(
                    buf,
                    writer_schema,
                    None if fp == self.fingerprint else self.schema,
                    return_record_name=True,
                    return_record_name_override=True,
                )
                end = buf.tell()
            message = self._from(record)
        except Exception as e:  # fastavro raises many types on corrupt input
            raise PayloadDecodeError(f"corrupt {self.name} body: {type(e).__name__}: {e}") from e
        if end != len(data):
            # Avro is not self-describing: bytes left over mean the record is not what the
            # schema says (another schema, two messages run together, a tampered record)
            raise PayloadDecodeError(
                f"{len(data) - end} trailing bytes after a {self.name} of {end} bytes; "
                "the record is not one message"
            )
        return message


# ---- dataclass <-> fastavro record conversion, built once per class -------------------------

_Conv = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _field_converters(hint: Any) -> tuple[_Conv, _Conv]:
    """(to_avro, from_avro) for one field type."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(options) < len(typing.get_args(hint))
        if len(options) == 1:
            to_one, from_one = _field_converters(options[0])
            if not nullable:
                return to_one, from_one
            return (
                lambda v: None if v is None else to_one(v),
                lambda v: None if v is None else from_one(v),
            )
        # a union of several records: fastavro's (name, record) tuple notation
        return _union_to, _union_from
    if origin is list:
        (inner,) = typing.get_args(hint)
        to_inner, from_inner = _field_converters(inner)
        if to_inner is _identity:
            return list, list
        return (lambda v: [to_inner(x) for x in v], lambda v: [from_inner(x) for x in v])
    if origin is dict:
        return dict, dict
    if isinstance(hint, type) and hint in _NAMES:
        # looked up at call time: records may nest themselves (Failure.cause)
        record_cls = hint
        return (lambda v: _to_avro(record_cls)(v), lambda v: _from_avro(record_cls)(v))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_cls = hint
        return (lambda v: v.value, lambda v: enum_cls(v))
    return _identity, _identity


def _union_to(value: Any) -> Any:
    return (_NAMES[type(value)], _to_avro(type(value))(value))


def _union_from(value: Any) -> Any:
    name, record = value
    cls = _CLASSES[name]
    return _from_avro(cls)(record)


def _to_avro(cls: type) -> _Conv:
    conv = _TO.get(cls)
    if conv is None:
        hints = typing.get_type_hints(cls)
        plan = [(f.name, _field_converters(hints[f.name])[0]) for f in fields(cls)]

        def conv(obj: Any, plan: list[tuple[str, _Conv]] = plan) -> dict[str, Any]:
            return {name: to(getattr(obj, name)) for name, to in plan}

        _TO[cls] = conv
    return conv


def _from_avro(cls: type) -> _Conv:
    conv = _FROM.get(cls)
    if conv is None:
        hints = typing.get_type_hints(cls)
        plan = [(f.name, _field_converters(hints[f.name])[1]) for f in fields(cls)]

        def conv(record: dict[str, Any], plan: list[tuple[str, _Conv]] = plan) -> Any:
            return cls(**{name: fr(record[name]) for name, fr in plan})

        _FROM[cls] = conv
    return conv
