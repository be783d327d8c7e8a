"""`everflow codec-server`: decode (and encode) payloads over HTTP for those without keys.

everflow codec-server                                   # http://127.0.0.1:8081
everflow codec-server --listen 0.0.0.0:8081 --token "$(cat codec-token)"
"""

from __future__ import annotations

import argparse

from streams.cli.common import SubParsers, add_subparser, wait_for_signal
from streams.codec_server import CODEC_PORT, CodecServer
from streams.encryption import configured_codecs
from streams.errors import ConfigError
from streams.payload_settings import PayloadSettings
from streams.settings import parse_listen

DESCRIPTION = f"""\
Serve POST /decode and POST /encode with the payload keys of EVERFLOW_PAYLOAD_KEYS (and
EVERFLOW_PAYLOAD_KEY_ID), in Temporal's remote codec shape: {{"payloads": [{{"metadata":
{{...}}, "data": "<base64>"}}]}}. The CLI and the UI of people who hold no keys decode
through it: set EVERFLOW_CODEC_ENDPOINT=http://host:port (and EVERFLOW_CODEC_TOKEN) there.

It listens on 127.0.0.1:{CODEC_PORT} by default. To listen beyond this machine give it a
token (--token or EVERFLOW_CODEC_TOKEN); without one it refuses to start."""


def add_parser(subparsers: SubParsers) -> None:
    """Register `codec-server`."""
    parser = add_subparser(
        subparsers, "codec-server", "serve payload decoding over HTTP", description=DESCRIPTION
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help=f"where to listen (default 127.0.0.1:{CODEC_PORT})"
    )
    parser.add_argument("--token", help="the bearer token callers must send (EVERFLOW_CODEC_TOKEN)")
    parser.set_defaults(run=serve)


def serve(args: argparse.Namespace) -> int:
    """`everflow codec-server`: serve until SIGINT/SIGTERM."""
    host, port = parse_listen(args.listen) if args.listen else ("127.0.0.1", CODEC_PORT)
    settings = PayloadSettings.from_env(codec_token=args.token)
    if settings.current_key_id is None:
        raise ConfigError(
            "the codec server decodes with the payload keys: set EVERFLOW_PAYLOAD_KEYS to the "
            "key file (`everflow keys new --file ...` makes one)"
        )
    codecs = configured_codecs(settings)
    server = CodecServer(codecs, host, port, settings.codec_token)
    address = server.start()
    held = ", ".join(sorted(settings.keys))
    print(f"Everflow codec server on {address}/decode (keys {held}; Ctrl-C to stop)", flush=True)
    try:
        return 0 if wait_for_signal(alive=lambda: True) else 1
    finally:
        server.stop()
