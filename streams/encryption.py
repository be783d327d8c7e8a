"""Payload encryption: an AES-GCM payload codec with key rotation, and the data converter
the settings call for.

`AesGcmCodec` encrypts each whole payload (its data and its metadata, so not even the
encoding shows) with the current key and a random 96-bit nonce. The encrypted payload's
metadata says `encoding: binary/encrypted` and names the key (`encryption-key-id`); the
metadata is the cipher's associated data, so changing the named key or the marker fails
authentication like changing the ciphertext does. Decoding takes the key the metadata
names from every key held, which is what makes rotation work: encrypt with the new key,
keep the old ones to read what they encrypted. A payload whose key is not held, or that does
not authenticate, raises PayloadKeyError naming the key; in a worker that blocks the run
(resumable once the key is deployed) instead of failing it.

`configured_converter()` is how the client, the worker, the CLI and the UI all get the same
converter from the same settings (`streams.payload_settings.PayloadSettings`, read from
EVERFLOW_PAYLOAD_KEYS, EVERFLOW_PAYLOAD_KEY_ID and EVERFLOW_CODEC_ENDPOINT).

With random nonces a key should encrypt fewer than 2**32 payloads (NIST SP 800-38D):
rotate long before that.
"""

from __future__ import annotations

import base64
import os
import struct
import time
from collections.abc import Mapping, Sequence

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.codec_server import RemoteCodec
from streams.errors import ConfigError, PayloadDecodeError, PayloadKeyError
from streams.payload import ENCODING, ENCRYPTED, KEY_ID, DataConverter, Payload, PayloadCodec
from streams.payload_settings import PayloadSettings
from streams.payload_store import converter_from_env

NONCE_BYTES = 12  # 96 bits: GCM's native nonce size
_AAD_PREFIX = b"everflow/aes-gcm/v1"


class AesGcmCodec:
    """Encrypts payloads with AES-GCM under the current key; decrypts with any held key.

    `keys` maps key IDs to AES keys (16, 24 or 32 bytes); `current` is the ID new payloads
    are encrypted with. Payloads not encrypted pass through decoding unchanged, so data
    written before encryption was turned on stays readable.
    """

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ConfigError(f"the current payload key {current!r} is not among the keys given")
        self.current = current
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}

    @property
    def key_ids(self) -> list[str]:
        """The IDs of the keys held (never the keys)."""
        return sorted(self._ciphers)

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self.current]
        metadata = {ENCODING: ENCRYPTED, KEY_ID: self.current.encode()}
        aad = _associated_data(metadata)
        out = []
        for p in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, _pack(p), aad)
            out.append(Payload(nonce + sealed, dict(metadata)))
        return out

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) if p.metadata.get(ENCODING) == ENCRYPTED else p for p in payloads]

    def _decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                key_id,
                f"payload is encrypted with key {key_id!r}, which this process does not hold "
                f"(it holds {', '.join(self.key_ids)}): add that key to EVERFLOW_PAYLOAD_KEYS "
                "and restart; a run blocked on it resumes",
            )
        data = payload.data
        try:
            plain = cipher.decrypt(
                data[:NONCE_BYTES], data[NONCE_BYTES:], _associated_data(payload.metadata)
            )
        except InvalidTag:
            raise PayloadKeyError(
                key_id,
                f"payload encrypted with key {key_id!r} does not authenticate: the key held "
                f"here as {key_id!r} is not the one that encrypted it, or the payload was "
                "altered; deploy the right key under that ID",
            ) from None
        return _unpack(plain)


def _associated_data(metadata: Mapping[str, bytes]) -> bytes:
    """The metadata, length-prefixed in key order: what the tag binds besides the data."""
    parts = [_AAD_PREFIX]
    for key in sorted(metadata):
        name = key.encode()
        value = metadata[key]
        parts += [struct.pack(">I", len(name)), name, struct.pack(">I", len(value)), value]
    return b"".join(parts)


def _pack(payload: Payload) -> bytes:
    """The inner payload as bytes: its metadata as JSON (length-prefixed), then its data."""
    meta = orjson.dumps({k: base64.b64encode(v).decode() for k, v in payload.metadata.items()})
    return struct.pack(">I", len(meta)) + meta + payload.data


def _unpack(plain: bytes) -> Payload:
    try:
        (size,) = struct.unpack_from(">I", plain)
        meta = orjson.loads(plain[4 : 4 + size])
        metadata = {str(k): base64.b64decode(v) for k, v in meta.items()}
    except (struct.error, orjson.JSONDecodeError, ValueError, AttributeError) as e:
        # authenticated, so written by a codec that packs differently (not by an attacker)
        raise PayloadDecodeError(f"decrypted payload has no readable metadata: {e}") from None
    return Payload(plain[4 + size :], metadata)


def generate_key() -> bytes:
    """A new random 256-bit AES key."""
    return AESGCM.generate_key(bit_length=256)


def new_key_id() -> str:
    """An ID for a new key: `k` and the UTC time to the second (IDs sort by age)."""
    return "k" + time.strftime("%Y%m%d%H%M%S", time.gmtime())


def configured_codecs(settings: PayloadSettings | None = None) -> list[PayloadCodec]:
    """The codec chain `settings` (by default read from the environment) call for: the AES-GCM
    codec with the keys held; else a codec server's; else none."""
    settings = PayloadSettings.from_env() if settings is None else settings
    current = settings.current_key_id
    if current is not None:
        return [AesGcmCodec(settings.keys, current)]
    if settings.codec_endpoint is not None:
        return [RemoteCodec(settings.codec_endpoint, settings.codec_token)]
    return []


def configured_converter(settings: PayloadSettings | None = None) -> DataConverter:
    """The data converter of a client, a worker, the CLI and the UI: the default conversion
    through `configured_codecs(settings)`, then the payload store of EVERFLOW_PAYLOAD_STORE
    (if set: what it keeps is ciphertext when keys are set). Settings are read from the
    environment when not given (EVERFLOW_PAYLOAD_KEYS, EVERFLOW_PAYLOAD_KEY_ID,
    EVERFLOW_CODEC_ENDPOINT, EVERFLOW_CODEC_TOKEN); a bad one raises ConfigError."""
    return converter_from_env(configured_codecs(settings))
