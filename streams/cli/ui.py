"""`everflow ui`: serve the Web UI.

everflow ui                                  # http://127.0.0.1:8233
everflow ui --listen 0.0.0.0:8233 --token "$(cat ui-token)"
"""

from __future__ import annotations

import argparse

from streams.cli.common import (
    SubParsers,
    add_connection_arguments,
    add_subparser,
    add_visibility_argument,
    kafka_config,
    wait_for_signal,
)
from streams.settings import UI_PORT, UiSettings, parse_listen
from streams.ui import UiServer

DESCRIPTION = f"""\
Serve the Web UI: the runs (filtered with the list filter, live), each run's history, what
it waits on and the line it runs, the actions that repair a run, the workers and the dead
letters. It reads the run index (run a worker or `everflow visibility` to fill it) and the
topics, and sends every action as a command on `commands`, like any client.

It listens on 127.0.0.1:{UI_PORT} by default. To listen beyond this machine, give it a
sign-in: --token (or EVERFLOW_UI_TOKEN; the browser asks for it once) or --basic-auth
user:password (EVERFLOW_UI_BASIC_AUTH); without one it refuses to start."""


def add_parser(subparsers: SubParsers) -> None:
    """Register `ui`."""
    parser = add_subparser(subparsers, "ui", "serve the Web UI", description=DESCRIPTION)
    add_connection_arguments(parser)
    add_visibility_argument(parser)
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"where to listen (EVERFLOW_UI_LISTEN; default 127.0.0.1:{UI_PORT})",
    )
    parser.add_argument(
        "--token", help="the access token the browser must give (EVERFLOW_UI_TOKEN)"
    )
    parser.add_argument(
        "--basic-auth",
        metavar="USER:PASSWORD",
        help="HTTP basic authentication instead of a token (EVERFLOW_UI_BASIC_AUTH)",
    )
    parser.set_defaults(run=serve)


def serve(args: argparse.Namespace) -> int:
    """`everflow ui`: serve until SIGINT/SIGTERM."""
    host, port = parse_listen(args.listen) if args.listen else (None, None)
    settings = UiSettings.from_env(
        host=host,
        port=port,
        token=args.token,
        basic_auth=args.basic_auth,
        visibility=args.visibility,
    )
    config = kafka_config(args)
    server = UiServer(config, settings)
    address = server.start()
    print(f"Everflow UI for {config.topic_prefix}* on {address}/  (Ctrl-C to stop)", flush=True)
    try:
        return 0 if wait_for_signal(alive=lambda: server.running) else 1
    finally:
        server.stop()
