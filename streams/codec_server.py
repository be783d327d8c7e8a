"""A codec server, and the codec that calls one: decode payloads where the keys are not.

`CodecServer` serves `POST /decode` and `POST /encode` over HTTP with the codecs it is given
(`everflow codec-server` gives it the AES-GCM codec of the keys it holds). The body is
Temporal's remote codec shape, `{"payloads": [{"metadata": {"<name>": "<base64>"}, "data":
"<base64>"}]}`, both ways. With a token set it answers only requests carrying
`Authorization: Bearer <token>`; it refuses to listen beyond loopback without one. A
payload it cannot decode gets 400 with `{"error": ..., "type": ..., "key_id": ...}`.

`RemoteCodec` is the client side: the CLI and the UI (any process with
EVERFLOW_CODEC_ENDPOINT and no keys) encode and decode through it, so people can read runs
without holding the keys. Workers should hold the keys themselves.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streams.errors import ConfigError, EverflowError, PayloadDecodeError, PayloadKeyError
from streams.payload import BINARY, ENCODING, JSON, NULL, Payload, PayloadCodec
from streams.settings import LOOPBACK_HOSTS

log = logging.getLogger(__name__)

CODEC_PORT = 8081  # the port Temporal's codec server samples use
MAX_BODY_BYTES = 128 * 1024 * 1024


class CodecServerError(EverflowError):
    """The codec server (EVERFLOW_CODEC_ENDPOINT) could not be reached or refused to encode;
    the message says which server and why. Check that `everflow codec-server` runs there
    and that EVERFLOW_CODEC_TOKEN matches its token."""


def payloads_to_json(payloads: Sequence[Payload]) -> dict[str, Any]:
    """`{"payloads": [...]}` with metadata values and data in base64 (proto3 JSON)."""
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def payloads_from_json(body: Any) -> list[Payload]:
    """The payloads of a `{"payloads": [...]}` body; ValueError saying what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("payloads"), list):
        raise ValueError('the body must be a JSON object {"payloads": [...]}')
    out = []
    for item in body["payloads"]:
        if not isinstance(item, dict):
            raise ValueError("each payload must be an object with metadata and data")
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError("a payload's metadata must be an object of base64 strings")
        try:
            out.append(
                Payload(
                    base64.b64decode(item.get("data") or "", validate=True),
                    {str(k): base64.b64decode(v, validate=True) for k, v in metadata.items()},
                )
            )
        except (ValueError, TypeError) as e:
            raise ValueError(f"a payload is not valid base64: {e}") from None
    return out


class CodecServer:
    """Serves /encode and /decode with `codecs` on http://`host`:`port` (0: any free port).

    `start()` returns the address and serves on a thread until `stop()`."""

    def __init__(
        self,
        codecs: Sequence[PayloadCodec],
        host: str = "127.0.0.1",
        port: int = CODEC_PORT,
        token: str | None = None,
    ) -> None:
        if host not in LOOPBACK_HOSTS and not token:
            raise ConfigError(
                f"the codec server would decrypt payloads for anyone who reaches {host}: set "
                "EVERFLOW_CODEC_TOKEN (or --token), or listen on 127.0.0.1"
            )
        self.codecs = list(codecs)
        self.token = token
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """http://host:port it listens on (the port chosen, when 0 was asked)."""
        host, port = self._httpd.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}"

    def start(self) -> str:
        """Serves on a daemon thread; returns the address."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="codec-server", daemon=True
        )
        self._thread.start()
        return self.address

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def encode(self, payloads: list[Payload]) -> list[Payload]:
        """The payloads through the codecs, in order."""
        for codec in self.codecs:
            payloads = codec.encode(payloads)
        return payloads

    def decode(self, payloads: list[Payload]) -> list[Payload]:
        """The payloads back through the codecs, in reverse order; PayloadDecodeError (or
        PayloadKeyError) when one cannot be decoded."""
        for codec in reversed(self.codecs):
            payloads = codec.decode(payloads)
        return payloads

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header value carries the token (always, without one)."""
        if not self.token:
            return True
        return hmac.compare_digest((header or "").encode(), f"Bearer {self.token}".encode())


def _handler(server: CodecServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.rstrip("/") not in ("/encode", "/decode"):
                self._answer(
                    404, {"error": f"no such endpoint {self.path}; POST /encode or /decode"}
                )
                return
            if not server.authorized(self.headers.get("Authorization")):
                self._answer(401, {"error": "missing or wrong Authorization: Bearer token"})
                return
            size = int(self.headers.get("Content-Length") or 0)
            if size > MAX_BODY_BYTES:
                self._answer(413, {"error": f"body of {size} bytes is over {MAX_BODY_BYTES}"})
                return
            try:
                payloads = payloads_from_json(json.loads(self.rfile.read(size) or b"null"))
            except ValueError as e:
                self._answer(400, {"error": str(e), "type": "ValueError"})
                return
            try:
                if self.path.rstrip("/") == "/encode":
                    done = server.encode(payloads)
                else:
                    done = server.decode(payloads)
            except PayloadDecodeError as e:
                key_id = e.key_id if isinstance(e, PayloadKeyError) else None
                error = {"error": e.reason, "type": type(e).__name__, "key_id": key_id}
                self._answer(400, error)
                return
            self._answer(200, payloads_to_json(done))

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("codec server: " + format, *args)

    return Handler


class RemoteCodec:
    """A payload codec that asks a codec server (`endpoint`, e.g. http://127.0.0.1:8081)
    to encode and decode, sending `token` as a bearer token when given.

    Decoding sends only the payloads the default conversion cannot read; one the server
    cannot decrypt raises PayloadKeyError naming its key, an unreachable server
    PayloadDecodeError (CodecServerError when encoding)."""

    def __init__(self, endpoint: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.timeout = timeout

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if not payloads:
            return []
        try:
            return self._call("/encode", payloads)
        except PayloadDecodeError as e:
            raise CodecServerError(e.reason) from None

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = list(payloads)
        plain = (JSON, BINARY, NULL)
        todo = [i for i, p in enumerate(out) if p.metadata.get(ENCODING, JSON) not in plain]
        if todo:
            decoded = self._call("/decode", [out[i] for i in todo])
            if len(decoded) != len(todo):
                raise PayloadDecodeError(
                    f"codec server {self.endpoint} answered {len(decoded)} payloads for {len(todo)}"
                )
            for i, payload in zip(todo, decoded, strict=True):
                out[i] = payload
        return out

    def _call(self, path: str, payloads: Sequence[Payload]) -> list[Payload]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.endpoint + path,
            data=json.dumps(payloads_to_json(payloads)).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return payloads_from_json(json.loads(response.read()))
        except urllib.error.HTTPError as e:
            raise self._refused(e) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise PayloadDecodeError(
                f"codec server {self.endpoint} (EVERFLOW_CODEC_ENDPOINT) cannot be used: {reason}"
            ) from None

    def _refused(self, e: urllib.error.HTTPError) -> PayloadDecodeError:
        try:
            body = json.loads(e.read())
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        message = f"codec server {self.endpoint} refused ({e.code}): {error or e.reason}"
        if isinstance(body, dict) and body.get("type") == "PayloadKeyError":
            return PayloadKeyError(str(body.get("key_id")), message)
        return PayloadDecodeError(message)
