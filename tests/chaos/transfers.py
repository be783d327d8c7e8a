"""What the chaos tests built on the seed's money transfer share: running a batch of
transfers through a real client, finding a worker's metrics, and checking that every
transfer happened exactly once (history, completions, the bank's ledger)."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

from prometheus_client import Metric

from examples.money_transfer import Bank, MoneyTransferWorkflow, TransferOrder
from streams import Client
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from tests.helpers import wait_until
from tests.integration.history_check import history_problems, history_runs
from tests.integration.test_metrics import scrape
from tests.integration.test_money_transfer import read_all
from tests.integration.workers import with_client


def orders(tag: str, count: int) -> list[TransferOrder]:
    return [TransferOrder(f"{tag}-a", f"{tag}-b", 1, f"{tag}-{i}") for i in range(count)]


def run_transfers(config: KafkaConfig, batch: list[TransferOrder]) -> list[str]:
    """Starts every transfer at once (workflow ID: its reference) and waits for them all."""

    async def main(client: Client) -> list[str]:
        runs = [
            client.execute_workflow(
                MoneyTransferWorkflow,
                o,
                id=o.reference,
                task_queue="transfers",
                timeout=timedelta(seconds=90),
            )
            for o in batch
        ]
        return list(await asyncio.gather(*runs))

    results: list[str] = with_client(config, main)
    return results


def worker_metrics(log: str) -> dict[str, Metric]:
    """The metric families a worker serves, found from the port its log names."""
    port = int(
        wait_until(
            lambda: re.search(r"metrics served at http://127\.0\.0\.1:(\d+)/metrics", log),
            timeout=5,
            message="the worker logs its metrics port",
        ).group(1)
    )
    return scrape(port)


def assert_each_transfer_once(config: KafkaConfig, ledger: Path, count: int) -> None:
    """Each run's history has every event once, each run closed once, and each transfer
    moved its money once (two ledger entries that sum to zero per transfer)."""
    committed = history_runs(config)
    assert len(committed) == count and history_problems(committed) == []
    assert len(read_all(config, Topics(config.topic_prefix).completions)) == count
    entries = Bank(ledger).entries()
    assert len(entries) == 2 * count
    assert sum(int(e["delta"]) for e in entries) == 0  # type: ignore[call-overload]
