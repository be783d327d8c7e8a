"""`make demo`: the seed's money transfer and saga, end to end, on a real broker.

Provisions a broker (EVERFLOW_BOOTSTRAP, Docker, or a local Apache Kafka), starts a worker
process, runs transfers and a saga, SIGKILLs the worker in the middle of a transfer, starts a
new one, and prints the completions and one run's history as it was recorded in Kafka.
The Web UI runs beside it (its address is printed first: open it and watch the runs move);
in a terminal, the demo then keeps the broker, a worker and the UI up until Enter.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from examples.money_transfer import Bank, MoneyTransferSaga, MoneyTransferWorkflow, TransferOrder
from streams import Client, WorkflowFailureError, kafka
from streams.dev.broker import provision_broker
from streams.errors import EverflowError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from streams.settings import UI_PORT, UiSettings
from streams.ui import UiServer

QUEUE = "transfers"
ROOT = Path(__file__).resolve().parent.parent


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "examples.money_transfer",
            "--task-queue",
            QUEUE,
            "--instance-id",
            "demo-worker",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def start_ui(config: KafkaConfig) -> UiServer:
    """The Web UI on 127.0.0.1:8233, or any free port if that one is taken."""
    for port in (UI_PORT, 0):
        server = UiServer(config, UiSettings(port=port))
        try:
            server.start()
            return server
        except (OSError, SystemExit, EverflowError):
            continue
    raise EverflowError("the demo could not start the Web UI on 127.0.0.1")


async def demo(
    config: KafkaConfig, env: dict[str, str], ledger: Path, log: Path, ui: str
) -> None:
    client = await asyncio.to_thread(Client, config)
    bank = Bank(ledger)
    worker = start_worker({**env, "EVERFLOW_BANK_DEPOSIT_DELAY": "3"}, log)
    try:
        print("1. starting 5 transfers of 10 from alice to bob (the bank fails 1 call in 3)")
        handles = [
            await client.start_workflow(
                MoneyTransferWorkflow,
                TransferOrder("alice", "bob", 10, f"transfer-{i}"),
                id=f"transfer-{i}",
                task_queue=QUEUE,
            )
            for i in range(5)
        ]
        while not any(e["delta"] == -10 for e in bank.entries()):
            await asyncio.sleep(0.05)
        print(
            f"2. a withdrawal is in the ledger; SIGKILL the worker (pid {worker.pid}) "
            "while deposits are running"
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        print(f"   ledger now: {len(bank.entries())} entries; starting a new worker")
        worker = start_worker(env, log)
        for h in handles:
            print(f"   {h.id}: {await h.result(timeout=timedelta(seconds=120))}")
        print(
            f"3. balances: alice {bank.balance('alice')}, bob {bank.balance('bob')} "
            f"({len(bank.entries())} ledger entries: each effect applied once)"
        )
        print("4. saga: deposit into a closed account fails for good; the refund compensates")
        try:
            await client.execute_workflow(
                MoneyTransferSaga,
                TransferOrder("carol", "closed-dave", 30, "saga-1"),
                id="saga-1",
                task_queue=QUEUE,
            )
        except WorkflowFailureError as e:
            print(f"   saga-1 failed as designed: {e.cause}")
        print(f"   carol's balance: {bank.balance('carol')}")
        print("5. history of transfer-0, as recorded on the history topic:")
        for event in await client.get_workflow_handle("transfer-0").fetch_history():
            when = time.strftime("%H:%M:%S", time.localtime(event.time / 1000))
            print(f"   {event.event_id:>3} {when} {type(event.attributes).__name__}")
        if sys.stdin.isatty():
            print(
                f"6. the broker, a worker and the Web UI stay up: open {ui}/ and look around"
                f" (transfer-0: {ui}/runs/transfer-0). Press Enter to stop."
            )
            await asyncio.to_thread(sys.stdin.readline)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        client.close()


def main() -> None:
    started = time.monotonic()
    with provision_broker() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        print(f"broker: {bootstrap} (ready in {time.monotonic() - started:.1f} s)")
        # EVERFLOW_KAFKA_* pass through (a secured cluster's settings), as in the workers
        config = KafkaConfig.from_env(
            bootstrap=bootstrap, topic_prefix=f"demo-{uuid.uuid4().hex[:6]}.", partitions=4
        )
        ensure_topics(kafka.admin(config), topic_specs(config, [QUEUE]))
        ledger, log = Path(tmp) / "bank.jsonl", Path(tmp) / "worker.log"
        env = {
            **os.environ,
            "EVERFLOW_BOOTSTRAP": bootstrap,
            "EVERFLOW_TOPIC_PREFIX": config.topic_prefix,
            "EVERFLOW_PARTITIONS": "4",
            "EVERFLOW_BANK_LEDGER": str(ledger),
            # an attempt lost with the killed worker is retried after 5 s
            "EVERFLOW_BANK_STEP_TIMEOUT": "5",
            "PYTHONPATH": str(ROOT),
        }
        print(f"topics: {config.topic_prefix}* created")
        ui = start_ui(config)
        print(f"Web UI: {ui.address}/  (open it now: the runs appear as the demo starts them)")
        try:
            asyncio.run(demo(config, env, ledger, log, ui.address))
        finally:
            ui.stop()
    print(f"demo done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
