"""Operator commands of the `everflow` CLI: topics, worker, and looking at workflows."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from streams.kafka.config import KafkaConfig

SubParsers = argparse._SubParsersAction


def add_commands(commands: SubParsers) -> None:
    from streams.cli import worker as worker_cli

    worker = commands.add_parser("worker", help="run a worker for workflows and activities")
    worker_cli.add_arguments(worker)
    worker.set_defaults(run=worker_cli.run_worker)

    topics = commands.add_parser("topics", help="Everflow's topics")
    topic_commands = topics.add_subparsers(metavar="COMMAND", required=True)
    create = topic_commands.add_parser(
        "create", help="create the topic set (idempotent); report topics with wrong settings"
    )
    _connection_arguments(create)
    create.add_argument("--task-queue", action="append", default=[], help="also tasks.<queue>")
    create.set_defaults(run=topics_create)

    workers = commands.add_parser(
        "workers", help="which worker owns which partitions, its lag, cache and restores"
    )
    _connection_arguments(workers)
    workers.add_argument("--json", action="store_true", help="machine-readable output")
    workers.set_defaults(run=workers_show)

    audit = commands.add_parser(
        "audit", help="replay the history topic and check its invariants (exit 1 on a violation)"
    )
    _connection_arguments(audit)
    audit.add_argument("--from", dest="since", help="runs started at/after (ISO time or epoch ms)")
    audit.add_argument("--to", dest="until", help="runs started at/before (ISO time or epoch ms)")
    audit.add_argument("--workflow-type", help="only runs of this workflow type")
    audit.set_defaults(run=audit_run)

    history = commands.add_parser("history", help="runs' recorded events")
    history_commands = history.add_subparsers(metavar="COMMAND", required=True)
    export = history_commands.add_parser(
        "export", help="one run's events from Kafka, as JSON lines or an Avro container file"
    )
    _connection_arguments(export)
    export.add_argument("workflow_id")
    export.add_argument("--run-id")
    export.add_argument("--format", choices=("json", "avro"), default="json")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    export.set_defaults(run=history_export)

    replay = commands.add_parser(
        "replay", help="replay recorded histories against current code (exit 1 on a mismatch)"
    )
    _connection_arguments(replay)
    replay.add_argument(
        "--workflows", action="append", required=True, help="module or module:attr (repeatable)"
    )
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("--workflow-id", help="the current run of this workflow")
    source.add_argument("--from-kafka", action="store_true", help="runs on the history topic")
    source.add_argument("--file", help="a file written by `everflow history export`")
    replay.add_argument("--workflow-type", help="with --from-kafka: only this type")
    replay.add_argument("--limit", type=int, default=100, help="with --from-kafka: at most N runs")
    replay.set_defaults(run=replay_run)

    wf = commands.add_parser("workflow", help="look at and repair workflow runs")
    wf_commands = wf.add_subparsers(metavar="COMMAND", required=True)
    for name, run, text in (
        ("describe", workflow_describe, "status, times, result or failure of a run"),
        ("result", workflow_result, "wait for a run's result"),
        ("show", workflow_show, "a run's history events, as JSON lines"),
    ):
        parser = wf_commands.add_parser(name, help=text)
        _connection_arguments(parser)
        parser.add_argument("workflow_id")
        parser.add_argument("--run-id")
        parser.set_defaults(run=run)
    _add_repair_commands(commands, wf_commands)


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (EVERFLOW_BOOTSTRAP)")
    parser.add_argument("--topic-prefix", help="topic prefix (EVERFLOW_TOPIC_PREFIX)")
    parser.add_argument("--partitions", type=int, help="partitions (EVERFLOW_PARTITIONS)")
    parser.add_argument(
        "--replication-factor", type=int, help="replication (EVERFLOW_REPLICATION_FACTOR)"
    )


def _config(args: argparse.Namespace) -> KafkaConfig:
    return KafkaConfig.from_env(
        bootstrap=args.bootstrap,
        topic_prefix=args.topic_prefix,
        partitions=args.partitions,
        replication_factor=getattr(args, "replication_factor", None),
    )


def topics_create(args: argparse.Namespace) -> int:
    from streams import kafka
    from streams.kafka.topics import ensure_topics, topic_specs

    config = _config(args)
    specs = topic_specs(config, args.task_queue)
    created = set(ensure_topics(kafka.admin(config), specs))
    for spec in specs:
        state = "created" if spec.name in created else "exists, settings match"
        print(f"{spec.name:<50} {spec.partitions:>3} partitions  {state}")
    return 0


def _with_handle(args: argparse.Namespace, action: Any) -> int:
    from streams.client import Client

    async def main() -> Any:
        client = await asyncio.to_thread(Client, _config(args))
        try:
            return await action(client.get_workflow_handle(args.workflow_id, args.run_id))
        finally:
            client.close()

    asyncio.run(main())
    return 0


def workflow_describe(args: argparse.Namespace) -> int:
    async def action(handle: Any) -> None:
        d = await handle.describe()
        conv = handle.client.converter
        print(
            json.dumps(
                {
                    "workflow_id": d.workflow_id,
                    "run_id": d.run_id,
                    "type": d.workflow_type,
                    "task_queue": d.task_queue,
                    "status": d.status.value,
                    "blocked": d.blocked.message if d.blocked else None,
                    "start_time": d.start_time,
                    "close_time": d.close_time,
                    "history_length": d.history_length,
                    "result": conv.from_payload(d.result) if d.result else None,
                    "failure": d.failure.message if d.failure else None,
                },
                indent=2,
                default=str,
            )
        )

    return _with_handle(args, action)


def workflow_result(args: argparse.Namespace) -> int:
    async def action(handle: Any) -> None:
        print(json.dumps(await handle.result(), default=str))

    return _with_handle(args, action)


def workflow_show(args: argparse.Namespace) -> int:
    from streams.wire.history_json import event_to_json

    async def action(handle: Any) -> None:
        for event in await handle.fetch_history():
            print(json.dumps(event_to_json(event, handle.client.converter), default=str))

    return _with_handle(args, action)


def workers_show(args: argparse.Namespace) -> int:
    """`everflow workers`: ownership and lag per consumer group, plus processor reports."""
    from streams.cli.workers import render, workers_view

    view = workers_view(_config(args))
    print(json.dumps(view.to_dict(), indent=1) if args.json else render(view))
    return 0


def audit_run(args: argparse.Namespace) -> int:
    """`everflow audit`: the history's invariants, run by run."""
    from streams.cli.audit import main_audit

    return main_audit(_config(args), args.since, args.until, args.workflow_type)


def history_export(args: argparse.Namespace) -> int:
    """`everflow history export`: one run's events, read from its start offset on."""
    from streams.cli.history import export_main

    return export_main(_config(args), args.workflow_id, args.run_id, args.format, args.output)


def replay_run(args: argparse.Namespace) -> int:
    """`everflow replay`: current code against recorded histories."""
    from streams.cli.history import replay_main

    config = None if args.file else _config(args)
    return replay_main(
        config,
        args.workflows,
        args.workflow_id,
        args.from_kafka,
        args.workflow_type,
        args.limit,
        args.file,
    )


def _add_repair_commands(commands: SubParsers, wf_commands: SubParsers) -> None:
    reset = wf_commands.add_parser("reset", help="a new run from events 1..N of the current one")
    _connection_arguments(reset)
    reset.add_argument("workflow_id")
    reset.add_argument("--to-event", type=int, required=True)
    reset.add_argument("--reason", default="", help="recorded in the new run's history")
    reset.set_defaults(run=workflow_reset)
    unblock = wf_commands.add_parser(
        "unblock", help="replay a blocked run with the code deployed now; resume it if it fits"
    )
    _connection_arguments(unblock)
    unblock.add_argument("workflow_id")
    unblock.add_argument("--reason", default="")
    unblock.set_defaults(run=workflow_unblock)
    activity = commands.add_parser("activity", help="repair one activity of a run")
    activity_commands = activity.add_subparsers(metavar="COMMAND", required=True)
    for action, text in (
        ("retry", "its next attempt now, with a fresh attempt budget (unpaused)"),
        ("pause", "no new attempt starts; a failed one waits for an operator"),
        ("unpause", "attempts go on (a waiting one starts now)"),
    ):
        parser = activity_commands.add_parser(action, help=text)
        _connection_arguments(parser)
        parser.add_argument("workflow_id")
        parser.add_argument("activity_id", type=int)
        parser.add_argument("--reason", default="")
        parser.set_defaults(run=activity_control, action=action)


def workflow_reset(args: argparse.Namespace) -> int:
    async def action(handle: Any) -> None:
        new_run = await handle.reset(args.to_event, args.reason)
        print(f"reset {args.workflow_id} to event {args.to_event}: new run {new_run}")

    args.run_id = None
    return _with_handle(args, action)


def workflow_unblock(args: argparse.Namespace) -> int:
    async def action(handle: Any) -> None:
        d = await handle.unblock(args.reason)
        print(f"unblocked {d.workflow_id} run {d.run_id}: {d.status.value}")

    args.run_id = None
    return _with_handle(args, action)


def activity_control(args: argparse.Namespace) -> int:
    async def action(handle: Any) -> None:
        method = getattr(handle, f"{args.action}_activity")
        await method(args.activity_id, args.reason)
        print(f"{args.action}: activity {args.activity_id} of {args.workflow_id}")

    args.run_id = None
    return _with_handle(args, action)
