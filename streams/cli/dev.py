"""`everflow dev broker|cluster`: Kafka on this machine, in the foreground until Ctrl-C.

`dev broker` can start the rest of a development setup beside it: `--worker MODULE` runs a
worker process for the module's workflows and activities, `--ui` serves the Web UI; both
stop with the broker."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from streams import kafka as kafka_io
from streams.cli.common import (
    SubParsers,
    add_group,
    add_subparser,
    caught_signals,
    wait_for_signal,
)
from streams.dev.broker import KAFKA_VERSION, LocalKafka, ensure_kafka_libs
from streams.dev.cluster import NODES, LocalCluster
from streams.dev.secure import SecureMaterial
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from streams.settings import UI_PORT, UiSettings, parse_listen
from streams.ui import UiServer

T = TypeVar("T")


def add_parser(subparsers: SubParsers) -> None:
    """Register `dev broker` and `dev cluster`."""
    dev_commands = add_group(
        subparsers,
        "dev",
        "run Kafka on this machine for development",
        "Run Kafka on this machine (no Docker needed: the "
        "broker jars are fetched once from Maven Central).",
    )

    broker = add_subparser(dev_commands, "broker", "run a single-node Kafka broker until Ctrl-C")
    broker.add_argument(
        "--data-dir",
        type=Path,
        help="keep the broker's data here (reused if it exists); "
        "default: a temporary dir deleted on exit",
    )
    broker.add_argument(
        "--port",
        type=int,
        default=9092,
        help="client port on 127.0.0.1, 0 for any free one (default: %(default)s)",
    )
    broker.add_argument(
        "--secure",
        action="store_true",
        help="serve clients on SASL_SSL (SCRAM-SHA-512) with a generated CA, users admin,"
        " worker, client and ui (passwords in <data dir>/secure/credentials.json) and ACLs"
        " enforced, nothing allowed but to admin until `everflow acls ... --apply`",
    )
    broker.add_argument(
        "--worker",
        metavar="MODULE",
        help="also run a worker for this module's workflows and activities (e.g."
        " examples.money_transfer), with the topics it needs",
    )
    broker.add_argument(
        "-t",
        "--task-queue",
        default="default",
        help="the worker's task queue (default: %(default)s)",
    )
    broker.add_argument(
        "--ui",
        nargs="?",
        const=f"127.0.0.1:{UI_PORT}",
        metavar="HOST:PORT",
        help=f"also serve the Web UI (default address 127.0.0.1:{UI_PORT})",
    )
    broker.set_defaults(run=dev_broker)

    cluster = add_subparser(dev_commands, "cluster", "run a three-node Kafka cluster until Ctrl-C")
    cluster.add_argument(
        "--data-dir",
        type=Path,
        help="keep the nodes' data here (reused if it exists); "
        "default: a temporary dir deleted on exit",
    )
    cluster.add_argument(
        "--secure",
        action="store_true",
        help="SASL_SSL with ACLs enforced, as `dev broker --secure`",
    )
    cluster.set_defaults(run=dev_cluster)


def dev_broker(args: argparse.Namespace) -> int:
    """`everflow dev broker`: run a LocalKafka in the foreground."""
    libs, provisioned_s = _timed(ensure_kafka_libs)
    kafka = LocalKafka(args.data_dir, port=args.port, secure=args.secure)
    try:
        _, started_s = _timed(kafka.start)
        print(
            f"Kafka {KAFKA_VERSION} broker ready\n"
            f"  bootstrap  {kafka.bootstrap}   (export EVERFLOW_BOOTSTRAP={kafka.bootstrap})\n"
            f"  libs       {libs}   (provisioned in {provisioned_s:.1f} s)\n"
            f"  data       {kafka.data_dir}{_kept(args.data_dir)}\n"
            f"  log        {kafka.log_path}   (JVM pid {kafka.pid})\n"
            f"{_security(kafka.material, kafka.bootstrap)}"
            f"  started in {started_s:.1f} s; Ctrl-C to stop",
            flush=True,
        )
        with caught_signals() as stop, _beside(kafka, args) as beside:
            for line in beside:
                print(line, flush=True)
            if not wait_for_signal(alive=lambda: kafka.pid is not None, stop=stop):
                print(f"everflow: the broker exited; see {kafka.log_path}", file=sys.stderr)
                return 1
            print("stopping…", flush=True)
    finally:
        kafka.close()  # stops the JVM; deletes the data only if it is a temporary dir
    return 0


def _security(material: SecureMaterial | None, bootstrap: str) -> str:
    """The lines of `dev broker|cluster --secure` saying how to connect (none without)."""
    if material is None:
        return ""
    files = material.write_env_files(bootstrap)
    return (
        "  security   SASL_SSL, SCRAM-SHA-512, ACLs enforced (what no ACL allows is denied)\n"
        f"  CA         {material.ca_path}   (EVERFLOW_KAFKA_SSL_CA_LOCATION)\n"
        f"  users      {', '.join(material.passwords)} (admin: super user); passwords in\n"
        f"             {material.credentials_path}\n"
        f"  connect    source {files['worker'].parent}/<user>.env   (EVERFLOW_BOOTSTRAP and"
        " EVERFLOW_KAFKA_* of that user)\n"
        "  grant      source admin.env; everflow acls worker --principal User:worker --apply"
        "   (and client, ui)\n"
    )


@contextmanager
def _beside(kafka: LocalKafka, args: argparse.Namespace) -> Iterator[list[str]]:
    """The worker and UI `dev broker` was asked for, started on `kafka` (a secure broker's
    as its admin); yields the lines that say where they are, and stops them on the way
    out."""
    if not (args.worker or args.ui):
        yield []
        return
    bootstrap = kafka.bootstrap
    config = KafkaConfig.from_env(bootstrap=bootstrap, kafka=kafka.client_settings())
    ensure_topics(kafka_io.admin(config), topic_specs(config, [args.task_queue]))
    lines = [f"  topics     {config.topic_prefix}* (task queue {args.task_queue})"]
    worker: subprocess.Popen[bytes] | None = None
    ui: UiServer | None = None
    try:
        if args.worker:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streams.cli",
                    "worker",
                    args.worker,
                    "--task-queue",
                    args.task_queue,
                    "--bootstrap",
                    bootstrap,
                ],
                env=kafka.child_environment(),
            )
            lines.append(f"  worker     {args.worker} on {args.task_queue} (pid {worker.pid})")
        if args.ui:
            host, port = parse_listen(args.ui, "--ui")
            ui = UiServer(config, UiSettings.from_env(host=host, port=port))
            lines.append(f"  web UI     {ui.start()}/")
        yield lines
    finally:
        if ui is not None:
            ui.stop()
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()


def dev_cluster(args: argparse.Namespace) -> int:
    """`everflow dev cluster`: run a three-node LocalCluster in the foreground."""
    libs, provisioned_s = _timed(ensure_kafka_libs)
    cluster = LocalCluster(args.data_dir, secure=args.secure)
    try:
        _, started_s = _timed(cluster.start)
        pids = ", ".join(f"node {i} pid {cluster.pid(i)}" for i in range(NODES))
        print(
            f"Kafka {KAFKA_VERSION} cluster of {NODES} nodes ready\n"
            f"  bootstrap  {cluster.bootstrap}\n"
            f"  libs       {libs}   (provisioned in {provisioned_s:.1f} s)\n"
            f"  data       {cluster.base_dir}{_kept(args.data_dir)}\n"
            f"  logs       {cluster.base_dir}/node<i>/kafka.log ({pids})\n"
            f"{_security(cluster.material, cluster.bootstrap)}"
            f"  started in {started_s:.1f} s; Ctrl-C to stop",
            flush=True,
        )
        if not wait_for_signal(alive=lambda: any(cluster.pid(i) for i in range(NODES))):
            print("everflow: every node exited; see their logs", file=sys.stderr)
            return 1
        print("stopping the cluster…", flush=True)
    finally:
        cluster.close()  # stops the JVMs; deletes the data only if it is a temporary dir
    return 0


def _timed(function: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    result = function()
    return result, time.monotonic() - started


def _kept(data_dir: Path | None) -> str:
    return "   (temporary: deleted on exit; --data-dir keeps it)" if data_dir is None else ""
