"""librdkafka's own log lines, through Python logging instead of raw on stderr.

Left alone, every librdkafka client prints its log lines to stderr as they come
(`%4|1796317727.273|GETPID|rdkafka#producer-6| [thrd:main]: Failed to acquire ...`), into
whatever terminal runs the program. Every client `streams.kafka` makes hands them to the
logger `streams.kafka.librdkafka` instead (`LOGGER`), as `FACILITY [client] message`, at the
level of their syslog severity: 0-2 CRITICAL, 3 ERROR, 4 WARNING, 5-6 INFO, 7 DEBUG. They are
librdkafka's account of its connections and retries, which it handles itself; what a caller
must act on reaches it as an error. So a program that configured no logging shows none of
them (the logger has a `NullHandler`, which keeps Python's last-resort handler from printing
its warnings bare), and the CLI shows them at `--log-level debug` only
(`streams.cli.common.configure_logging`).

librdkafka hands a client's log lines over in its `poll()`. Producers and consumers are
polled by their owners all along; admin clients are not (their answers come on futures), so
their lines would wait, and pile up for as long as the client lives: `watch_admin` has one
daemon thread poll every live admin client once a second.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

LOGGER = logging.getLogger("streams.kafka.librdkafka")
LOGGER.addHandler(logging.NullHandler())

POLL_INTERVAL = 1.0  # seconds between two polls of the admin clients


class _AdminPoller:
    """Polls the admin clients it watches, from one daemon thread, while they live."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._thread: threading.Thread | None = None

    def watch(self, client: Any) -> None:
        with self._lock:
            self._clients.add(client)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="everflow-admin-logs", daemon=True
                )
                self._thread.start()

    def _serve(self) -> None:
        while True:
            time.sleep(POLL_INTERVAL)
            self._poll_all()

    def _poll_all(self) -> None:
        # strong references only for the polls: a client no one else refers to ends after
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.poll(0)  # serves its log lines (and its error callback); never blocks


_poller = _AdminPoller()


def watch_admin(client: Any) -> None:
    """Has `client` (an AdminClient made with `logger=LOGGER`) polled once a second while it
    lives, so its log lines reach `LOGGER` (it is only referred to weakly)."""
    _poller.watch(client)
