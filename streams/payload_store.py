"""The payload store: payloads past a threshold kept outside Kafka, a reference in the message.

A claim check behind the data converter. `ClaimCheck.encode` writes each payload of
`threshold` bytes or more to an object store and hands back a small reference payload
(encoding `everflow/stored`; metadata: the store's URL, the object's key, its size and its
SHA-256), so the broker's message limit (`max_payload_bytes`) applies to the reference;
`max_object_bytes` bounds what one stored object may hold. `ClaimCheck.decode` fetches
each referenced object and checks its size and SHA-256 before handing it on.

Keys are content-addressed (`sha256/<2 hex>/<64 hex>`): writing the same payload again —
a retried activity, a replayed run, a process that crashed mid-write — writes the same
object, so a write is idempotent and a reference never points at half an object (the file
store writes a temporary file, fsyncs it and renames it into place). The store is written
before the message that refers to it is produced; a message whose transaction aborts leaves
an unreferenced object, which `collect` removes once it is older than the retention.

Stores: `FileStore` (`file:///dir`, a folder every client and worker can reach) and
`S3Store` (`s3://bucket/prefix`, boto3, any S3-compatible endpoint). `converter_from_env`
builds the data converter every component uses from `PayloadStoreSettings`.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import orjson

from streams.errors import (
    ConfigError,
    PayloadChecksumError,
    PayloadDecodeError,
    PayloadNotFoundError,
    PayloadStoreError,
    PayloadTooLargeError,
)
from streams.payload import ENCODING, STORED, DataConverter, Payload, PayloadCodec
from streams.payload_settings import (
    DEFAULT_MAX_STORED_BYTES,
    DEFAULT_STORE_THRESHOLD,
    PayloadStoreSettings,
)

# a stored object: magic, the length of the inner payload's metadata (JSON), the metadata,
# the inner payload's bytes
MAGIC = b"EFP1"
_HEADER = struct.Struct(">I")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object in a store, as listed for garbage collection."""

    key: str
    size: int
    modified_ms: int  # last written (a rewrite of the same payload refreshes it)


class ObjectStore(Protocol):
    """Where stored payloads live: bytes by key. `put` is idempotent for a key."""

    url: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def objects(self) -> Iterator[StoredObject]: ...


def payload_key(digest: str) -> str:
    """The key of an object whose SHA-256 is `digest` (hex)."""
    return f"sha256/{digest[:2]}/{digest}"


def _size(p: Payload) -> int:
    return len(p.data) + sum(len(k) + len(v) for k, v in p.metadata.items())


class ClaimCheck:
    """Moves payloads of `threshold` bytes or more to `store`, and back (a PayloadCodec).

    `encode` raises PayloadTooLargeError for a payload over `max_object_bytes` and
    PayloadStoreError when the store cannot keep it; `decode` raises PayloadNotFoundError
    for a missing object and PayloadChecksumError for one whose size or SHA-256 differs
    from its reference."""

    def __init__(
        self,
        store: ObjectStore,
        threshold: int = DEFAULT_STORE_THRESHOLD,
        max_object_bytes: int = DEFAULT_MAX_STORED_BYTES,
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.max_object_bytes = max_object_bytes

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._offload(p) if _size(p) >= self.threshold else p for p in payloads]

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._retrieve(p) if p.metadata.get(ENCODING) == STORED else p for p in payloads]

    def _offload(self, payload: Payload) -> Payload:
        blob = pack(payload)
        if len(blob) > self.max_object_bytes:
            raise PayloadTooLargeError(
                f"a payload of {len(blob)} bytes is over the payload store's limit of "
                f"{self.max_object_bytes} bytes (max_object_bytes / "
                "EVERFLOW_PAYLOAD_STORE_MAX_BYTES)"
            )
        digest = hashlib.sha256(blob).hexdigest()
        key = payload_key(digest)
        self.store.put(key, blob)
        return Payload(
            b"",
            {
                ENCODING: STORED,
                "store": self.store.url.encode(),
                "key": key.encode(),
                "size": str(len(blob)).encode(),
                "sha256": digest.encode(),
            },
        )

    def _retrieve(self, ref: Payload) -> Payload:
        meta = ref.metadata
        try:
            key, digest = meta["key"].decode(), meta["sha256"].decode()
            size = int(meta["size"])
        except (KeyError, ValueError, UnicodeDecodeError):
            raise PayloadDecodeError(
                f"a stored-payload reference lacks key, size or sha256: {sorted(meta)}"
            ) from None
        if not _SHA256.fullmatch(digest) or key != payload_key(digest):
            # the key names a path or an object name: only the one its hash gives is read
            raise PayloadDecodeError(f"a stored-payload reference has a malformed key {key!r}")
        blob = self.store.get(key)
        if len(blob) != size or hashlib.sha256(blob).hexdigest() != digest:
            raise PayloadChecksumError(
                f"stored payload {key} in {self.store.url} is {len(blob)} bytes with "
                f"SHA-256 {hashlib.sha256(blob).hexdigest()[:16]}…, but its reference says "
                f"{size} bytes with SHA-256 {digest[:16]}…: the object is corrupt or was "
                "replaced; restore it from a backup, then unblock the run"
            )
        return unpack(blob, key)


def pack(payload: Payload) -> bytes:
    """A payload (metadata and bytes) as one stored object."""
    meta = orjson.dumps({k: v.decode("latin-1") for k, v in payload.metadata.items()})
    return b"".join((MAGIC, _HEADER.pack(len(meta)), meta, payload.data))


def unpack(blob: bytes, key: str = "?") -> Payload:
    """The payload `pack` stored."""
    start = len(MAGIC) + _HEADER.size
    if blob[: len(MAGIC)] != MAGIC or len(blob) < start:
        raise PayloadDecodeError(f"stored payload {key} is not an Everflow payload object")
    (length,) = _HEADER.unpack_from(blob, len(MAGIC))
    try:
        meta = orjson.loads(blob[start : start + length])
    except orjson.JSONDecodeError as e:
        raise PayloadDecodeError(f"stored payload {key} has unreadable metadata: {e}") from None
    return Payload(blob[start + length :], {k: v.encode("latin-1") for k, v in meta.items()})


# ---- the filesystem store ---------------------------------------------------------------------
class FileStore:
    """Objects as files under `root` (`file:///root`): written to a temporary file,
    fsynced, renamed into place and the folder fsynced, so a crash leaves either the whole
    object or none. Writing a key that exists refreshes its time (see `collect`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            if path.is_file() and path.stat().st_size == len(data):
                os.utime(path)  # the same content (the key is its hash): keep it young
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
            try:
                with open(temporary, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, path)
            finally:
                temporary.unlink(missing_ok=True)
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as e:
            raise PayloadStoreError(
                f"cannot write payload {key} to the payload store {self.url}: {e}"
            ) from None

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise PayloadNotFoundError(
                f"stored payload {key} is not in the payload store {self.url} "
                f"(no file {self._path(key)}): it was removed, or this process points at "
                "another store than its writer (EVERFLOW_PAYLOAD_STORE); put it back, then "
                "unblock the run"
            ) from None
        except OSError as e:
            raise PayloadStoreError(
                f"cannot read payload {key} from the payload store {self.url}: {e}"
            ) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def objects(self) -> Iterator[StoredObject]:
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for folder in sorted(base.iterdir()):
            for path in sorted(folder.iterdir()) if folder.is_dir() else ():
                if path.name.startswith("."):
                    continue  # a write in progress
                st = path.stat()
                key = f"sha256/{folder.name}/{path.name}"
                yield StoredObject(key, st.st_size, int(st.st_mtime * 1000))


# ---- the S3-compatible store ------------------------------------------------------------------
class S3Store:
    """Objects in an S3 bucket under `prefix` (`s3://bucket/prefix`), through boto3 (the
    `s3` extra); `endpoint` points it at any S3-compatible server. Credentials come from
    boto3's usual chain (AWS_ACCESS_KEY_ID…, ~/.aws). A key that exists is not written
    again (its content is its name); objects are listed with their last-modified time."""

    def __init__(
        self, bucket: str, prefix: str = "", endpoint: str | None = None, region: str | None = None
    ) -> None:
        try:
            import boto3  # an optional extra, imported only by a process that uses S3
            import botocore.exceptions
        except ImportError:
            raise ConfigError(
                "EVERFLOW_PAYLOAD_STORE=s3://… needs boto3: pip install 'everflow[s3]'"
            ) from None
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self._client = boto3.client("s3", endpoint_url=endpoint, region_name=region)
        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)

    def _code(self, error: Exception) -> str:
        response = getattr(error, "response", None) or {}
        return str(response.get("Error", {}).get("Code", ""))

    def put(self, key: str, data: bytes) -> None:
        name = self.prefix + key
        try:
            try:
                head = self._client.head_object(Bucket=self.bucket, Key=name)
                if head.get("ContentLength") == len(data):
                    # refresh its time for `collect`: copy it onto itself
                    self._client.copy_object(
                        Bucket=self.bucket,
                        Key=name,
                        CopySource={"Bucket": self.bucket, "Key": name},
                        MetadataDirective="REPLACE",
                    )
                    return
            except self._errors as e:
                if self._code(e) not in ("404", "NoSuchKey", "NotFound"):
                    raise
            self._client.put_object(Bucket=self.bucket, Key=name, Body=data)
        except self._errors as e:
            raise PayloadStoreError(
                f"cannot write payload {key} to the payload store {self.url}: {e}"
            ) from None

    def get(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return bytes(response["Body"].read())
        except self._errors as e:
            if self._code(e) in ("404", "NoSuchKey", "NotFound"):
                raise PayloadNotFoundError(
                    f"stored payload {key} is not in the payload store {self.url}: it was "
                    "removed, or this process points at another store than its writer "
                    "(EVERFLOW_PAYLOAD_STORE); put it back, then unblock the run"
                ) from None
            raise PayloadStoreError(
                f"cannot read payload {key} from the payload store {self.url}: {e}"
            ) from None

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def objects(self) -> Iterator[StoredObject]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + "sha256/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix) :]
                modified = int(item["LastModified"].timestamp() * 1000)
                yield StoredObject(key, int(item["Size"]), modified)


# ---- building it from the settings ------------------------------------------------------------
def open_store(settings: PayloadStoreSettings) -> ObjectStore | None:
    """The object store `settings.url` names, or None when the store is off."""
    if settings.url is None:
        return None
    parts = urlsplit(settings.url)
    if parts.scheme == "file":
        return FileStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return S3Store(
            parts.netloc, parts.path.strip("/"), endpoint=settings.endpoint, region=settings.region
        )
    raise ConfigError(f"EVERFLOW_PAYLOAD_STORE: unknown store {settings.url!r}")


def claim_check(settings: PayloadStoreSettings) -> ClaimCheck | None:
    """The claim check `settings` describe, or None when the store is off."""
    store = open_store(settings)
    if store is None:
        return None
    return ClaimCheck(store, settings.threshold, settings.max_object_bytes)


def converter_from_env(
    codecs: Sequence[PayloadCodec] = (), env: Mapping[str, str] | None = None
) -> DataConverter:
    """The data converter a client, worker, CLI or UI uses unless given one: `codecs`,
    then the payload store of EVERFLOW_PAYLOAD_STORE (none if unset)."""
    return DataConverter(codecs, store=claim_check(PayloadStoreSettings.from_env(env)))


# ---- garbage collection -----------------------------------------------------------------------
def stored_keys(value: Any) -> Iterator[str]:
    """The keys of the stored payloads `value` (a record, an event, a list…) refers to."""
    if isinstance(value, Payload):
        if value.metadata.get(ENCODING) == STORED and "key" in value.metadata:
            yield value.metadata["key"].decode()
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            yield from stored_keys(getattr(value, f.name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from stored_keys(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from stored_keys(item)


@dataclass(frozen=True, slots=True)
class Collected:
    """What `collect` did."""

    removed: list[str]
    kept_referenced: int
    kept_young: int


def collect(
    store: ObjectStore,
    referenced: Iterable[str],
    older_than_ms: int,
    now_ms: int | None = None,
    dry_run: bool = False,
) -> Collected:
    """Removes the objects older than `older_than_ms` that no key in `referenced` names.

    `referenced` must hold every key a run still needs (open runs, and closed ones still
    within their retention); the age spares objects whose message is on its way (written,
    not yet in history) and those of aborted transactions until they are surely orphans."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    keep = set(referenced)
    removed: list[str] = []
    kept_referenced = kept_young = 0
    for obj in list(store.objects()):
        if obj.key in keep:
            kept_referenced += 1
        elif now_ms - obj.modified_ms < older_than_ms:
            kept_young += 1
        else:
            if not dry_run:
                store.delete(obj.key)
            removed.append(obj.key)
    return Collected(removed, kept_referenced, kept_young)
