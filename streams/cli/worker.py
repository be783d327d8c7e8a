"""`everflow worker`: run a worker for the workflows and activities of a module.

    everflow worker examples.money_transfer --task-queue transfers
    everflow worker examples.money_transfer:WORKFLOWS --task-queue transfers

A module target takes every @workflow.defn class and @activity.defn function in it; a
`module:attr` target takes that object (a class, a function, or a list of them).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib
import signal
import sys
from collections.abc import Callable
from typing import Any

from streams import kafka
from streams.cli.common import (
    SubParsers,
    add_connection_arguments,
    add_log_level_argument,
    add_subparser,
    add_visibility_argument,
    kafka_config,
)
from streams.client import Client
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from streams.settings import WorkerSettings


def collect(targets: list[str]) -> tuple[list[type], list[Callable[..., Any]]]:
    """The workflows and activities named by `module` or `module:attr` targets."""
    workflows: list[type] = []
    activities: list[Callable[..., Any]] = []
    for target in targets:
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        objects = [getattr(module, attr)] if attr else list(vars(module).values())
        flat: list[Any] = []
        for obj in objects:
            flat.extend(obj if isinstance(obj, list | tuple) else [obj])
        for obj in flat:
            if hasattr(obj, "__everflow_workflow__") and obj not in workflows:
                workflows.append(obj)
            elif hasattr(obj, "__everflow_activity__") and obj not in activities:
                activities.append(obj)
    if not workflows and not activities:
        raise SystemExit(f"no @workflow.defn or @activity.defn found in {', '.join(targets)}")
    return workflows, activities


def add_parser(subparsers: SubParsers) -> None:
    """Register `worker`."""
    worker = add_subparser(
        subparsers,
        "worker",
        "run a worker for workflows and activities",
        "Run a worker for workflows and activities until SIGTERM or SIGINT (a graceful stop: "
        "running activities finish, open transactions end). SIGUSR1 prints every thread's "
        "stack to stderr, to see where a worker that seems stuck waits.",
    )
    worker.add_argument("targets", nargs="+", help="module or module:attr")
    worker.add_argument("--task-queue", required=True)
    add_connection_arguments(worker)
    worker.add_argument("--instance-id", help="stable, unique worker ID (EVERFLOW_INSTANCE_ID)")
    worker.add_argument("--no-workflows", action="store_true", help="run activities only")
    worker.add_argument("--no-activities", action="store_true", help="run workflows only")
    worker.add_argument(
        "--no-eager-activities",
        action="store_true",
        help="send every activity task through the tasks topic, even when this worker runs "
        "both halves (EVERFLOW_EAGER_ACTIVITIES=off; by default such a worker starts the "
        "tasks it schedules on its own queue itself, as soon as they are committed)",
    )
    worker.add_argument(
        "--static-membership",
        action="store_true",
        help="join the consumer groups as a static member named by the instance ID "
        "(EVERFLOW_STATIC_MEMBERSHIP=on): a worker restarted within the 10 s group session "
        "gets its partitions back with no rebalance, and the other workers never stop. A "
        "worker stopped for good hands its partitions over only when its session runs out. "
        "Give each worker a stable, unique --instance-id (a StatefulSet pod name, say)",
    )
    worker.add_argument(
        "--no-visibility",
        action="store_true",
        help="do not run the run index's projector in this worker",
    )
    add_visibility_argument(worker)
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port, 0 for a free one (EVERFLOW_METRICS_PORT)",
    )
    worker.add_argument(
        "--metrics-host",
        help="address the metrics endpoint listens on (EVERFLOW_METRICS_HOST; 127.0.0.1)",
    )
    add_log_level_argument(worker, None)
    worker.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    """`everflow worker`: run the targets' workflows and activities until SIGINT/SIGTERM."""
    from streams.worker import Worker  # the engine: loaded only to run it, not for --help

    workflows, activities = collect(args.targets)
    # The processor thread blocks in librdkafka several times per transaction; each return
    # must win the GIL back from the runner threads. Python's default 5 ms switch interval
    # would add up to 5 ms per call; a short one keeps the transaction loop tight.
    settings = WorkerSettings.from_env(
        instance_id=args.instance_id,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        eager_activities=False if args.no_eager_activities else None,
        static_membership=True if args.static_membership else None,
    )
    sys.setswitchinterval(settings.switch_interval)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: where a stuck worker waits
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    config = kafka_config(args)

    async def main() -> None:
        client = await asyncio.to_thread(_client_with_topics, config, args.task_queue)
        worker = Worker(
            client,
            task_queue=args.task_queue,
            workflows=workflows,
            activities=activities,
            settings=settings,
            run_workflows=not args.no_workflows,
            run_activities=not args.no_activities,
            run_visibility=False if args.no_visibility else None,
            visibility=args.visibility,
        )
        worker.tune_gc()  # after the imports and the registry: they stay for good
        print(
            f"worker {worker.instance_id} running task queue {args.task_queue!r}: "
            f"{len(workflows)} workflows, {len(activities)} activities"
            + (", eager dispatch" if worker.eager_dispatch else ""),
            flush=True,
        )
        try:
            await worker.run_until_signal()
        finally:
            client.close()

    asyncio.run(main())
    return 0


def _client_with_topics(config: KafkaConfig, task_queue: str) -> Client:
    ensure_topics(kafka.admin(config), topic_specs(config, [task_queue]))
    return Client(config)
