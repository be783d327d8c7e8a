"""How many requests a process's Kafka clients sent, from librdkafka statistics.

Off unless a worker asks for it (`WorkerSettings.kafka_statistics`): `observe_statistics()`
makes every client `streams.kafka` builds from then on report librdkafka's statistics
(`statistics.interval.ms`) to a `RequestTally`, which keeps each client's latest totals and
rewrites a small JSON file with their sum after every report. A benchmark reads the file
before and after its runs to tell broker requests per run.

The file: {"requests": n, "by_type": {"Produce": n, "EndTxn": n, ...}, "clients": n}, the
requests sent to every broker connection (bootstrap and coordinator ones included) by every
client since it started; a client that closed keeps its last report. A worker adds
"gc_collections": the cyclic GC's collections so far, per generation.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATISTICS_INTERVAL_MS = 500


class RequestTally:
    """The requests sent by the observed clients, kept in `path` (see the module doc)."""

    def __init__(self, path: str | Path, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.path = Path(path)
        self.extra = extra  # more figures of the process for the file, read at each write
        self._lock = threading.Lock()
        self._clients: dict[int, tuple[int, Counter[str]]] = {}

    def record(self, client: int, statistics: str) -> None:
        """One client's statistics report (JSON from librdkafka's `stats_cb`)."""
        report = json.loads(statistics)
        sent = 0
        by_type: Counter[str] = Counter()
        for broker in report.get("brokers", {}).values():
            sent += int(broker.get("tx", 0))
            by_type.update({k: int(v) for k, v in broker.get("req", {}).items() if v})
        with self._lock:
            self._clients[client] = (sent, by_type)
            self._write()

    def totals(self) -> dict[str, Any]:
        with self._lock:
            return self._totals()

    def _totals(self) -> dict[str, Any]:
        by_type: Counter[str] = Counter()
        for _, types in self._clients.values():
            by_type.update(types)
        return {
            "requests": sum(sent for sent, _ in self._clients.values()),
            "by_type": dict(by_type.most_common()),
            "clients": len(self._clients),
            **(self.extra() if self.extra else {}),
        }

    def _write(self) -> None:
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.write_text(json.dumps(self._totals()))
        os.replace(partial, self.path)  # a reader never sees half a file


_tally: RequestTally | None = None
_next_client = iter(range(1, 1 << 62))


def observe_statistics(tally: RequestTally | None) -> None:
    """Every client made from now on reports its statistics to `tally` (None: stop)."""
    global _tally
    _tally = tally


def with_statistics(settings: dict[str, Any]) -> dict[str, Any]:
    """Client settings that also report to the observing tally, if there is one: keeps a
    client's own `stats_cb` (it gets every report too) and its interval, if it set one."""
    tally = _tally
    if tally is None:
        return settings
    client = next(_next_client)
    own: Callable[[str], None] | None = settings.get("stats_cb")

    def on_statistics(statistics: str) -> None:
        tally.record(client, statistics)
        if own is not None:
            own(statistics)

    interval = settings.get("statistics.interval.ms") or STATISTICS_INTERVAL_MS
    return {**settings, "statistics.interval.ms": interval, "stats_cb": on_statistics}
