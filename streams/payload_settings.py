"""Payload settings: encryption keys (`PayloadSettings`) and the payload store
(`PayloadStoreSettings`), built from keyword arguments or `EVERFLOW_PAYLOAD_*` variables.

The client, the worker, the CLI and the UI all build their data converter from these (see
`streams.encryption` and `streams.payload_store`), so a payload written by one is read by
the others. Like `streams.settings`, every setting is checked when it is built.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.errors import ConfigError
from streams.settings import _at_least, _seconds, _whole, data_dir

DEFAULT_STORE_THRESHOLD = 256 * 1024  # Temporal's warning size; a quarter of Kafka's limit
DEFAULT_MAX_STORED_BYTES = 1024 * 1024 * 1024
STORE_SCHEMES = ("file", "s3")


@dataclass(frozen=True, slots=True)
class PayloadStoreSettings:
    """Where payloads past `threshold` bytes go (a claim check): `url` is `file:///dir`
    or `s3://bucket/prefix`; None keeps every payload in its message (the default), so
    one too large for `max_payload_bytes` is refused. `max_object_bytes` bounds one
    stored payload; `endpoint` and `region` point `s3://` at an S3-compatible server."""

    url: str | None = None
    threshold: int = DEFAULT_STORE_THRESHOLD
    max_object_bytes: int = DEFAULT_MAX_STORED_BYTES
    endpoint: str | None = None
    region: str | None = None
    # a run blocked because the store lacked or could not give an object is replayed again
    # this often (seconds) by its worker, so it goes on once the object is back
    retry_seconds: float = 30.0
    # a worker removes the objects no run needs (those of runs closed longer ago than the
    # closed-run retention, and orphans) this often, in seconds; 0: only `payloads gc` does
    gc_seconds: float = 3600.0

    def __post_init__(self) -> None:
        _at_least(1, "threshold", "EVERFLOW_PAYLOAD_STORE_THRESHOLD", self.threshold)
        _at_least(0.1, "retry_seconds", "EVERFLOW_PAYLOAD_STORE_RETRY", self.retry_seconds)
        _at_least(0.0, "gc_seconds", "EVERFLOW_PAYLOAD_GC_EVERY", self.gc_seconds)
        _at_least(1, "max_object_bytes", "EVERFLOW_PAYLOAD_STORE_MAX_BYTES", self.max_object_bytes)
        if self.url is not None:
            scheme, sep, rest = self.url.partition("://")
            if not sep or scheme not in STORE_SCHEMES or not rest.strip("/"):
                raise ConfigError(
                    f"EVERFLOW_PAYLOAD_STORE must be file:///absolute/dir, s3://bucket/prefix "
                    f"or 'file' (a folder under the data dir), got {self.url!r}"
                )
            if scheme == "file" and not rest.startswith("/"):
                raise ConfigError(
                    f"EVERFLOW_PAYLOAD_STORE: a file store takes an absolute path "
                    f"(file:///dir), got {self.url!r}"
                )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> PayloadStoreSettings:
        """Off, unless EVERFLOW_PAYLOAD_STORE is set (`file` is `<data dir>/payloads`);
        EVERFLOW_PAYLOAD_STORE_THRESHOLD and _MAX_BYTES (bytes), _ENDPOINT and _REGION
        (for s3://), _RETRY (seconds), EVERFLOW_PAYLOAD_GC_EVERY (seconds); then keyword
        overrides (None leaves one)."""
        env = os.environ if env is None else env
        url = env.get("EVERFLOW_PAYLOAD_STORE", "").strip() or None
        if url in ("off", "none"):
            url = None
        elif url == "file":
            url = (data_dir(env) / "payloads").resolve().as_uri()
        values: dict[str, Any] = {
            "url": url,
            "threshold": _whole(env, "EVERFLOW_PAYLOAD_STORE_THRESHOLD"),
            "max_object_bytes": _whole(env, "EVERFLOW_PAYLOAD_STORE_MAX_BYTES"),
            "endpoint": env.get("EVERFLOW_PAYLOAD_STORE_ENDPOINT") or None,
            "region": env.get("EVERFLOW_PAYLOAD_STORE_REGION") or None,
            "retry_seconds": _seconds(env, "EVERFLOW_PAYLOAD_STORE_RETRY"),
            "gc_seconds": _seconds(env, "EVERFLOW_PAYLOAD_GC_EVERY"),
        }
        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if v is not None})


AES_KEY_SIZES = (16, 24, 32)  # bytes: AES-128, AES-192, AES-256


@dataclass(frozen=True, slots=True)
class PayloadSettings:
    """How this process encrypts and decrypts payloads: one set of settings that the client,
    the worker, the CLI and the UI all build their data converter from
    (`streams.encryption.configured_converter`).

    `keys` maps key IDs to AES keys (16, 24 or 32 bytes); `key_id` names the current key,
    the one new payloads are encrypted with (it may be left out when there is one key).
    Payloads are decrypted with whichever key their metadata names, so a rotation keeps the
    old keys readable. A process without keys but with `codec_endpoint` (a codec server's
    URL, `everflow codec-server`) encodes and decodes through it, sending `codec_token` as
    a bearer token when set. With neither, payloads are not encrypted.
    """

    keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    key_id: str | None = None
    keys_file: str | None = None  # where the keys came from, for messages
    codec_endpoint: str | None = None
    codec_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        source = self.keys_file or "the keys given"
        for kid, key in self.keys.items():
            if not kid or any(c.isspace() or c == "=" for c in kid):
                raise ConfigError(
                    f"payload key ID {kid!r} in {source} (EVERFLOW_PAYLOAD_KEYS) must be "
                    "non-empty, without spaces or '='"
                )
            if len(key) not in AES_KEY_SIZES:
                raise ConfigError(
                    f"payload key {kid!r} in {source} (EVERFLOW_PAYLOAD_KEYS) is {len(key)} "
                    "bytes; an AES key is 16, 24 or 32 bytes (`everflow keys new` makes one)"
                )
        if self.key_id is not None and self.key_id not in self.keys:
            held = ", ".join(sorted(self.keys)) or "none"
            raise ConfigError(
                f"the current payload key {self.key_id!r} (EVERFLOW_PAYLOAD_KEY_ID) is not in "
                f"{source} (EVERFLOW_PAYLOAD_KEYS; keys held: {held})"
            )
        if self.key_id is None and len(self.keys) > 1:
            raise ConfigError(
                f"{source} (EVERFLOW_PAYLOAD_KEYS) holds {len(self.keys)} payload keys: name "
                "the one to encrypt with in EVERFLOW_PAYLOAD_KEY_ID"
            )
        endpoint = self.codec_endpoint
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                f"EVERFLOW_CODEC_ENDPOINT must be an http:// or https:// URL, got {endpoint!r}"
            )

    @property
    def current_key_id(self) -> str | None:
        """The ID of the key new payloads are encrypted with (None: no keys)."""
        if self.key_id is not None:
            return self.key_id
        return next(iter(self.keys), None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> PayloadSettings:
        """Settings from EVERFLOW_PAYLOAD_KEYS (a key file: a JSON object of key ID to base64
        key, or lines `<key ID>=<base64 key>`), EVERFLOW_PAYLOAD_KEY_ID (the current key),
        EVERFLOW_CODEC_ENDPOINT and EVERFLOW_CODEC_TOKEN; then keyword overrides (None
        leaves one). A key file that cannot be read or parsed raises ConfigError naming it."""
        env = os.environ if env is None else env
        keys_file = overrides.pop("keys_file", None) or env.get("EVERFLOW_PAYLOAD_KEYS") or None
        values: dict[str, Any] = {
            "keys_file": keys_file,
            "keys": read_key_file(Path(keys_file)) if keys_file else None,
            "key_id": env.get("EVERFLOW_PAYLOAD_KEY_ID") or None,
            "codec_endpoint": (env.get("EVERFLOW_CODEC_ENDPOINT") or "").rstrip("/") or None,
            "codec_token": env.get("EVERFLOW_CODEC_TOKEN") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})


def read_key_file(path: Path) -> dict[str, bytes]:
    """The payload keys in `path`: a JSON object `{"<key ID>": "<base64 key>"}`, or lines
    `<key ID>=<base64 key>` (blank lines and `#` comments skipped). Raises ConfigError
    naming the file (and the line) when it cannot be read or parsed; never shows a key."""
    try:
        text = path.expanduser().read_text()
    except OSError as e:
        raise ConfigError(
            f"cannot read the payload key file {str(path)!r} (EVERFLOW_PAYLOAD_KEYS): "
            f"{e.strerror or e}"
        ) from None
    if text.lstrip().startswith("{"):
        try:
            pairs = list(json.loads(text).items())
        except (ValueError, AttributeError):
            raise ConfigError(
                f"payload key file {str(path)!r} (EVERFLOW_PAYLOAD_KEYS) is not a JSON object "
                'of key ID to base64 key ({"k1": "..."})'
            ) from None
    else:
        pairs = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            kid, sep, value = line.partition("=")
            if not sep:
                raise ConfigError(
                    f"line {number} of payload key file {str(path)!r} (EVERFLOW_PAYLOAD_KEYS) "
                    "is not <key ID>=<base64 key>"
                )
            pairs.append((kid.strip(), value.strip()))
    keys: dict[str, bytes] = {}
    for kid, value in pairs:
        try:
            keys[str(kid)] = base64.b64decode(str(value), validate=True)
        except (ValueError, binascii.Error):
            raise ConfigError(
                f"payload key {kid!r} in {str(path)!r} (EVERFLOW_PAYLOAD_KEYS) is not base64"
            ) from None
    return keys
