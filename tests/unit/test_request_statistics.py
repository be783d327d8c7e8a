"""Counting a process's Kafka requests: real librdkafka clients report their statistics to
the tally, which keeps the sum in its file; a client's own statistics callback still runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from streams import kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.statistics import RequestTally, observe_statistics


def test_clients_report_to_the_tally_and_to_their_own_callback(tmp_path: Path) -> None:
    # nothing listens on port 1: the clients' statistics still come, with their attempts
    config = KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix="t.")
    path = tmp_path / "requests.json"
    own: list[str] = []
    observe_statistics(RequestTally(path))
    try:
        consumer = kafka.consumer(
            config, settings={"statistics.interval.ms": 100, "stats_cb": own.append}
        )
        producer = kafka.producer(config)
    finally:
        observe_statistics(None)
    unobserved = kafka.producer(config)  # made after the tally stopped observing
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (own and path.exists()):
            consumer.poll(0.1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and json.loads(path.read_text())["clients"] < 2:
            producer.poll(0.1)
            unobserved.poll(0.1)
        assert own and "brokers" in json.loads(own[-1])  # its own callback kept
        report = json.loads(path.read_text())
        assert report["clients"] == 2  # the consumer and the first producer only
        assert report["requests"] == 0 and report["by_type"] == {}  # nothing was reachable
    finally:
        consumer.close()
        producer.flush(0)
        unobserved.flush(0)


def test_the_tally_sums_every_broker_connection_of_every_client(tmp_path: Path) -> None:
    tally = RequestTally(tmp_path / "requests.json")

    def report(**brokers: dict[str, object]) -> str:
        return json.dumps({"brokers": brokers})

    tally.record(1, report(b1={"tx": 5, "req": {"Produce": 3, "EndTxn": 2, "Fetch": 0}}))
    tally.record(
        2, report(b1={"tx": 2, "req": {"Fetch": 2}}, coord={"tx": 1, "req": {"Heartbeat": 1}})
    )
    tally.record(1, report(b1={"tx": 7, "req": {"Produce": 4, "EndTxn": 3}}))  # replaces 1's
    written = json.loads((tmp_path / "requests.json").read_text())
    assert written == tally.totals()
    assert written["requests"] == 10 and written["clients"] == 2
    assert written["by_type"] == {"Produce": 4, "EndTxn": 3, "Fetch": 2, "Heartbeat": 1}
