"""User values on the wire: `Payload{metadata, data}`, the converter and the codec chain.

The default converter writes JSON with orjson (dataclasses, lists, dicts, numbers, strings,
None; `bytes` as binary). A codec chain (compression, encryption) transforms payloads after
conversion and before they leave the process; users pass their own `PayloadCodec`s. Last,
a payload store (`streams.payload_store`, set by EVERFLOW_PAYLOAD_STORE) may move payloads
past a threshold out of the message, leaving a reference (encoding `everflow/stored`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from streams.errors import (
    PayloadDecodeError,
    PayloadKeyError,
    PayloadStoreError,
    PayloadTooLargeError,
)

ENCODING = "encoding"
JSON = b"json/plain"
BINARY = b"binary/plain"
NULL = b"binary/null"
ENCRYPTED = b"binary/encrypted"  # streams.encryption.AesGcmCodec's payloads
KEY_ID = "encryption-key-id"  # which key encrypted the payload
STORED = b"everflow/stored"  # a reference to a payload kept in the payload store


@dataclass(frozen=True, slots=True)
class Payload:
    """One encoded value: metadata (how it is encoded) and the bytes."""

    data: bytes
    metadata: dict[str, bytes] = field(default_factory=dict)


class PayloadCodec(Protocol):
    """Turns payloads into other payloads and back (compression, encryption)."""

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]: ...

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]: ...


DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024


class ZlibCodec:
    """Compresses payloads larger than `min_bytes` with zlib.

    Decoding stops at `max_decompressed_bytes` of output: a payload that would inflate
    past it (a compression bomb) or is not zlib data raises PayloadDecodeError."""

    def __init__(
        self,
        min_bytes: int = 512,
        level: int = 6,
        max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    ) -> None:
        self.min_bytes = min_bytes
        self.level = level
        self.max_decompressed_bytes = max_decompressed_bytes

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if len(p.data) < self.min_bytes:
                out.append(p)
                continue
            inner = orjson.dumps({k: v.decode("latin-1") for k, v in p.metadata.items()})
            out.append(
                Payload(
                    zlib.compress(p.data, self.level), {ENCODING: b"binary/zlib", "inner": inner}
                )
            )
        return out

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get(ENCODING) != b"binary/zlib":
                out.append(p)
                continue
            inner = orjson.loads(p.metadata["inner"])
            meta = {k: v.encode("latin-1") for k, v in inner.items()}
            out.append(Payload(self._inflate(p.data), meta))
        return out

    def _inflate(self, data: bytes) -> bytes:
        limit = self.max_decompressed_bytes
        inflater = zlib.decompressobj()
        try:
            # one byte past the limit tells "exactly the limit" from "more"
            out = inflater.decompress(data, limit + 1)
            if len(out) > limit or inflater.unconsumed_tail:
                raise PayloadDecodeError(
                    f"zlib payload of {len(data)} bytes inflates past {limit} bytes "
                    "(max_decompressed_bytes); refused as a compression bomb"
                )
            out += inflater.flush()
        except zlib.error as e:
            raise PayloadDecodeError(f"zlib payload is corrupt: {e}") from None
        if not inflater.eof:
            raise PayloadDecodeError(f"zlib payload of {len(data)} bytes is truncated")
        return out


class DataConverter:
    """Converts Python values to payloads and back, through the codec chain.

    `store` (a `streams.payload_store.ClaimCheck`) runs after the codecs on the way out and
    first on the way in: it keeps payloads past its threshold in the payload store (so the
    store holds what the codecs made, ciphertext if one encrypts) and resolves references.
    """

    def __init__(
        self, codecs: Sequence[PayloadCodec] = (), store: PayloadCodec | None = None
    ) -> None:
        self.codecs = list(codecs)
        self.store = store

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        payloads = [to_payload(v) for v in values]
        for codec in self.codecs:
            payloads = codec.encode(payloads)
        if self.store is not None:
            payloads = self.store.encode(payloads)
        return payloads

    def to_payload(self, value: Any) -> Payload:
        return self.to_payloads([value])[0]

    def from_payloads(
        self, payloads: Sequence[Payload], hints: Sequence[Any] | None = None
    ) -> list[Any]:
        decoded = list(payloads) if self.store is None else self.store.decode(payloads)
        for codec in reversed(self.codecs):
            decoded = codec.decode(decoded)
        hints = list(hints or [])
        return [
            from_payload(p, hints[i] if i < len(hints) else None) for i, p in enumerate(decoded)
        ]

    def from_payload(self, payload: Payload, hint: Any = None) -> Any:
        return self.from_payloads([payload], [hint])[0]


def to_payload(value: Any) -> Payload:
    """The default conversion of one value."""
    if value is None:
        return Payload(b"", {ENCODING: NULL})
    if isinstance(value, bytes | bytearray):
        return Payload(bytes(value), {ENCODING: BINARY})
    try:
        data = orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATETIME, default=_json_default)
    except TypeError as e:
        raise TypeError(f"cannot convert {type(value).__name__} to JSON: {e}") from None
    return Payload(data, {ENCODING: JSON})


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


def from_payload(payload: Payload, hint: Any = None) -> Any:
    """The default decoding of one payload, shaped by a type hint when one is given."""
    encoding = payload.metadata.get(ENCODING, JSON)
    if encoding == NULL:
        return None
    if encoding == BINARY:
        return payload.data
    if encoding == ENCRYPTED:
        key_id = payload.metadata.get(KEY_ID, b"?").decode("utf-8", "replace")
        raise PayloadKeyError(
            key_id,
            f"payload is encrypted with key {key_id!r} and this process has no payload keys: "
            "set EVERFLOW_PAYLOAD_KEYS (a key file holding that key) or EVERFLOW_CODEC_ENDPOINT "
            "(a codec server that holds it)",
        )
    if encoding == STORED:
        raise PayloadStoreError(
            f"payload {payload.metadata.get('key', b'?').decode()} is kept in the payload store "
            f"{payload.metadata.get('store', b'?').decode()}, and this process has no payload "
            "store: set EVERFLOW_PAYLOAD_STORE as the writer did"
        )
    if encoding != JSON:
        raise PayloadDecodeError(f"unknown payload encoding {encoding!r} (missing codec?)")
    try:
        value = orjson.loads(payload.data)
    except orjson.JSONDecodeError as e:
        raise PayloadDecodeError(f"payload is not valid JSON: {e}") from None
    return shape(value, hint)


def shape(value: Any, hint: Any) -> Any:
    """Builds dataclasses (also nested, in lists and dicts) from decoded JSON by type hint."""
    if hint is None or hint is Any or value is None:
        return value
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return shape(value, options[0]) if len(options) == 1 else value
    if origin in (list, Sequence, tuple, set, frozenset):
        args = typing.get_args(hint)
        inner = args[0] if args else None
        items = [shape(v, inner) for v in value]
        return items if origin in (list, Sequence) else origin(items)
    if origin is dict:
        args = typing.get_args(hint)
        inner = args[1] if len(args) == 2 else None
        return {k: shape(v, inner) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        hints = typing.get_type_hints(hint)
        kwargs = {
            f.name: shape(value[f.name], hints.get(f.name))
            for f in dataclasses.fields(hint)
            if f.name in value
        }
        return hint(**kwargs)
    return value


# Kafka's default broker limit (message.max.bytes) is about 1 MiB; stay under it with headroom
# for the Avro envelope and headers.
DEFAULT_MAX_PAYLOAD_BYTES = 900 * 1024


def check_size(payloads: Sequence[Payload], limit: int, what: str) -> None:
    """Refuses payloads whose total size exceeds `limit` bytes, naming what was too large."""
    size = sum(len(p.data) + sum(len(k) + len(v) for k, v in p.metadata.items()) for p in payloads)
    if size > limit:
        raise PayloadTooLargeError(
            f"{what} is {size} bytes, over the limit of {limit} bytes "
            "(max_payload_bytes / EVERFLOW_MAX_PAYLOAD_BYTES; the broker's message.max.bytes "
            "bounds it); pass a reference (e.g. an object-store key) instead of the data"
        )
