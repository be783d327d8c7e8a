"""The compiled Avro codec against fastavro, on every schema we ship: same bytes written,
same values read, and corrupt input refused with an error rather than a wrong value."""

from __future__ import annotations

import io
import random
import struct
from typing import Any

import fastavro
import pytest

from streams.wire.avro import SchemaRegistry
from streams.wire.compiled import Compiled, read_long, write_long

REGISTRY = SchemaRegistry()
NAMES = sorted(REGISTRY.current)


def _value(schema: Any, named: dict[str, Any], rng: random.Random, depth: int) -> Any:
    """A random value of `schema` in fastavro's shapes (what our AvroCodec hands it)."""
    if isinstance(schema, list):
        others = [b for b in schema if b != "null"]
        if "null" in schema and (depth > 4 or rng.random() < 0.3):
            return None
        branch = rng.choice(others)
        value = _value(branch, named, rng, depth + 1)
        records = [b for b in others if _is_record(b, named)]
        if len(records) > 1:
            return (_name(branch), value)
        return value
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 63, -64, 64, 2**31 - 1, -(2**31)])
    if kind == "long":
        return rng.choice([0, -1, 127, 128, 1_700_000_000_000, 2**63 - 1, -(2**63)])
    if kind == "double":
        return rng.uniform(-1e9, 1e9)
    if kind == "string":
        return "".join(rng.choice("aé€😀z-") for _ in range(rng.randrange(0, 200)))
    if kind == "bytes":
        return rng.randbytes(rng.randrange(0, 300))
    if kind == "record":
        return {f["name"]: _value(f["type"], named, rng, depth + 1) for f in schema["fields"]}
    if kind == "enum":
        return rng.choice(schema["symbols"])
    if kind == "array":
        n = 0 if depth > 4 else rng.randrange(0, 4)
        return [_value(schema["items"], named, rng, depth + 1) for _ in range(n)]
    if kind == "map":
        n = 0 if depth > 4 else rng.randrange(0, 4)
        return {f"k{i}": _value(schema["values"], named, rng, depth + 1) for i in range(n)}
    if isinstance(kind, str | list | dict):
        return _value(kind, named, rng, depth)
    raise AssertionError(f"schema type {kind!r} not covered by the test")


def _name(schema: Any) -> str:
    return schema if isinstance(schema, str) else str(schema["name"])


def _is_record(schema: Any, named: dict[str, Any]) -> bool:
    definition = named.get(schema) if isinstance(schema, str) else schema
    return isinstance(definition, dict) and definition.get("type") == "record"


def _fastavro_bytes(schema: Any, value: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, value)
    return buf.getvalue()


def _fastavro_value(schema: Any, data: bytes) -> Any:
    return fastavro.schemaless_reader(
        io.BytesIO(data),
        schema,
        None,
        return_record_name=True,
        return_record_name_override=True,
    )


@pytest.mark.parametrize("name", NAMES)
def test_compiled_codec_writes_and_reads_what_fastavro_does(name: str) -> None:
    schema = REGISTRY.schema(name)
    named = schema.get("__named_schemas", {})
    compiled = Compiled(schema, named)
    rng = random.Random(name)
    for _ in range(300):
        value = _value(schema, named, rng, 0)
        expected = _fastavro_bytes(schema, value)
        assert compiled.encode(value) == expected
        assert compiled.decode(expected) == _fastavro_value(schema, expected)


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, -65, 2**31, 2**63 - 1, -(2**63)])
def test_longs_round_trip_in_zigzag_varint(n: int) -> None:
    out = bytearray()
    write_long(out, n)
    assert read_long(bytes(out), 0) == (n, len(out))
    assert bytes(out) == _fastavro_bytes("long", n)


def test_blocks_with_negative_counts_are_read() -> None:
    # another encoder may write an array block as (-count, size in bytes, items...)
    compiled = Compiled({"type": "array", "items": "long"}, {})
    data = bytearray()
    write_long(data, -2)
    write_long(data, 2)
    write_long(data, 5)
    write_long(data, 6)
    data.append(0)
    assert compiled.decode(bytes(data)) == [5, 6]


@pytest.mark.parametrize("name", NAMES)
def test_truncated_or_corrupt_input_raises_instead_of_reading_garbage(name: str) -> None:
    schema = REGISTRY.schema(name)
    compiled = Compiled(schema, schema.get("__named_schemas", {}))
    rng = random.Random(f"corrupt-{name}")
    value = _value(schema, schema.get("__named_schemas", {}), rng, 0)
    data = compiled.encode(value)
    for cut in range(len(data)):
        try:
            compiled.decode(data[:cut])
        except (IndexError, ValueError, KeyError, OverflowError, struct.error):
            continue
        # a prefix that happens to be a whole message of its own is no corruption
        assert compiled.encode(compiled.decode(data[:cut])) == data[:cut]
