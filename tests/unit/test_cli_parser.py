"""The `everflow` parser: every command of README's "Command line" section parses to the
function that runs it, every command that talks to Kafka takes the connection flags, and
every command's --help says what it does."""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from streams.cli import (
    acls,
    activity,
    audit,
    build_parser,
    codec,
    dev,
    history,
    keys,
    payloads,
    replay,
    schedule,
    topics,
    ui,
    visibility,
    worker,
    workers,
    workflow_control,
    workflow_list,
    workflow_start,
    workflow_view,
)
from streams.cli.common import Action, configure_logging, kafka_config
from streams.kafka.logs import LOGGER as LIBRDKAFKA_LOGGER

README = Path(__file__).parents[2] / "README.md"

# One command line per subcommand, with only its required arguments, and what runs it.
COMMANDS: dict[tuple[str, ...], tuple[list[str], Action]] = {
    ("dev", "broker"): (["dev", "broker"], dev.dev_broker),
    ("dev", "cluster"): (["dev", "cluster"], dev.dev_cluster),
    ("topics", "create"): (["topics", "create", "--task-queue", "q"], topics.topics_create),
    ("acls",): (["acls", "worker", "--principal", "User:w"], acls.acls_command),
    ("worker",): (["worker", "examples.money_transfer", "--task-queue", "q"], worker.run_worker),
    ("visibility",): (["visibility"], visibility.run_projector),
    ("ui",): (["ui"], ui.serve),
    ("workflow", "start"): (
        ["workflow", "start", "--type", "T", "-t", "q"],
        workflow_start.workflow_start,
    ),
    ("workflow", "execute"): (
        ["workflow", "execute", "--type", "T", "-t", "q"],
        workflow_start.workflow_execute,
    ),
    ("workflow", "describe"): (["workflow", "describe", "wf-1"], workflow_view.workflow_describe),
    ("workflow", "result"): (["workflow", "result", "wf-1"], workflow_view.workflow_result),
    ("workflow", "show"): (["workflow", "show", "wf-1"], workflow_view.workflow_show),
    ("workflow", "list"): (["workflow", "list"], workflow_list.workflow_list),
    ("workflow", "count"): (["workflow", "count"], workflow_list.workflow_count),
    ("workflow", "signal"): (
        ["workflow", "signal", "wf-1", "--name", "s"],
        workflow_control.workflow_signal,
    ),
    ("workflow", "query"): (
        ["workflow", "query", "wf-1", "--name", "q"],
        workflow_control.workflow_query,
    ),
    ("workflow", "update"): (
        ["workflow", "update", "wf-1", "--name", "u"],
        workflow_control.workflow_update,
    ),
    ("workflow", "cancel"): (["workflow", "cancel", "wf-1"], workflow_control.workflow_cancel),
    ("workflow", "terminate"): (
        ["workflow", "terminate", "wf-1"],
        workflow_control.workflow_terminate,
    ),
    ("workflow", "stack"): (["workflow", "stack", "wf-1"], workflow_control.workflow_stack),
    ("workflow", "reset"): (
        ["workflow", "reset", "wf-1", "--to-event", "7"],
        workflow_control.workflow_reset,
    ),
    ("workflow", "unblock"): (["workflow", "unblock", "wf-1"], workflow_control.workflow_unblock),
    ("workers",): (["workers", "--json"], workers.workers_show),
    ("history", "export"): (
        ["history", "export", "wf-1", "--format", "avro", "-o", "run.avro"],
        history.history_export,
    ),
    ("audit",): (["audit", "--from", "2026-11-25", "--to", "1764000000000"], audit.audit_run),
    ("replay",): (["replay", "--workflows", "m:W", "--from-kafka"], replay.replay_run),
    ("activity", "retry"): (["activity", "retry", "wf-1", "3"], activity.activity_control),
    ("activity", "pause"): (["activity", "pause", "wf-1", "3"], activity.activity_control),
    ("activity", "unpause"): (["activity", "unpause", "wf-1", "3"], activity.activity_control),
    ("keys", "new"): (["keys", "new"], keys.keys_new),
    ("codec-server",): (["codec-server"], codec.serve),
    ("payloads", "gc"): (["payloads", "gc", "--older-than", "7d"], payloads.payloads_gc),
    ("schedule", "create"): (
        ["schedule", "create", "s", "--workflow", "W", "--task-queue", "q", "--workflow-id", "w"],
        schedule.schedule_create,
    ),
    ("schedule", "list"): (["schedule", "list"], schedule.schedule_list),
    ("schedule", "describe"): (["schedule", "describe", "s"], schedule.schedule_describe),
    ("schedule", "pause"): (["schedule", "pause", "s"], schedule.schedule_pause),
    ("schedule", "unpause"): (["schedule", "unpause", "s"], schedule.schedule_pause),
    ("schedule", "trigger"): (["schedule", "trigger", "s"], schedule.schedule_trigger),
    ("schedule", "update"): (["schedule", "update", "s"], schedule.schedule_update),
    ("schedule", "delete"): (["schedule", "delete", "s"], schedule.schedule_delete),
}
LOCAL = ("dev", "keys", "codec-server")  # commands that never talk to Kafka
CONNECTING = [path for path in COMMANDS if path[0] not in LOCAL]
FLAGS = ["--bootstrap", "k1:9092", "--topic-prefix", "t.", "--partitions", "5"]
FLAGS += ["--replication-factor", "3"]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001  (argparse lists no subparsers publicly)
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every parser under `parser` (groups and the commands in them), by its path."""
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    for name, sub in _subcommands(parser).items():
        found[(*path, name)] = sub
        found.update(_commands(sub, (*path, name)))
    return found


def _readme_commands() -> set[tuple[str, ...]]:
    """The (group, subcommand) paths of README's "Command line" block."""
    section = README.read_text().split("## Command line", 1)[1].split("```")[1]
    groups = _subcommands(build_parser())
    paths: set[tuple[str, ...]] = set()
    for line in section.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        assert words[0] == "everflow" and words[1] in groups, line
        subcommands = _subcommands(groups[words[1]])
        if not subcommands:
            paths.add((words[1],))
            continue
        for name in words[2].split("|"):
            assert name in subcommands, f"{line}: no command {words[1]} {name}"
            paths.add((words[1], name))
    return paths


def test_readme_lists_commands_that_parse() -> None:
    listed = _readme_commands()
    assert len(listed) >= 15
    assert listed <= set(COMMANDS)


def test_every_command_of_the_parser_is_checked_here() -> None:
    leaves = {path for path, sub in _commands(build_parser()).items() if not _subcommands(sub)}
    assert leaves == set(COMMANDS)


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_command_parses_to_the_function_that_runs_it(path: tuple[str, ...]) -> None:
    argv, run = COMMANDS[path]
    args = build_parser().parse_args(argv)
    assert args.run is run
    if path[0] == "activity":
        assert (args.action, args.activity_id, args.reason) == (path[1], 3, "")


def test_arguments_and_defaults_as_documented() -> None:
    parser = build_parser()
    export = parser.parse_args(["history", "export", "wf-1"])
    assert (export.workflow_id, export.run_id, export.format, export.output) == (
        "wf-1",
        None,
        "json",
        None,
    )
    replayed = parser.parse_args(["replay", "--workflows", "a", "--workflows", "b", "--file", "f"])
    assert (replayed.workflows, replayed.file, replayed.limit) == (["a", "b"], "f", 100)
    described = parser.parse_args(["workflow", "describe", "wf-1", "--run-id", "r-2"])
    assert (described.workflow_id, described.run_id) == ("wf-1", "r-2")
    reset = parser.parse_args(["workflow", "reset", "wf-1", "--to-event", "7", "--reason", "x"])
    assert (reset.to_event, reset.reason) == (7, "x")
    audited = parser.parse_args(["audit", "--from", "a", "--to", "b", "--workflow-type", "T"])
    assert (audited.since, audited.until, audited.workflow_type) == ("a", "b", "T")
    broker = parser.parse_args(["dev", "broker"])
    assert (broker.port, broker.data_dir) == (9092, None)
    indexing = parser.parse_args(["visibility", "--visibility", "/x.sqlite", "--rebuild"])
    assert (indexing.visibility, indexing.rebuild) == ("/x.sqlite", True)
    plain = parser.parse_args(["visibility"])
    assert (plain.visibility, plain.rebuild) == (None, False)
    unindexed = parser.parse_args(["worker", "m", "--task-queue", "q", "--no-visibility"])
    assert (unindexed.no_visibility, unindexed.visibility) == (True, None)
    ran = parser.parse_args(["worker", "m", "m2:X", "--task-queue", "q", "--no-activities"])
    assert (ran.targets, ran.no_activities, ran.no_workflows, ran.log_level) == (
        ["m", "m2:X"],
        True,
        False,
        "INFO",
    )


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["topics", "create"], "INFO"),
        (["--log-level", "debug", "topics", "create"], "DEBUG"),
        (["--log-level", "Warning", "worker", "m", "--task-queue", "q"], "WARNING"),
        (["worker", "m", "--task-queue", "q", "--log-level", "error"], "ERROR"),
        (["--log-level", "debug", "worker", "m", "--task-queue", "q"], "DEBUG"),
    ],
)
def test_log_level_is_read_before_the_command_or_after_worker(argv: list[str], level: str) -> None:
    assert build_parser().parse_args(argv).log_level == level


def test_librdkafka_lines_are_logged_at_debug_only() -> None:
    root = logging.getLogger()
    before = (root.level, LIBRDKAFKA_LOGGER.level)
    try:
        configure_logging("INFO")
        assert root.isEnabledFor(logging.INFO) and not root.isEnabledFor(logging.DEBUG)
        assert not LIBRDKAFKA_LOGGER.isEnabledFor(logging.ERROR)  # a refused connection
        configure_logging("DEBUG")  # again in one process: the level follows
        assert root.isEnabledFor(logging.DEBUG)
        assert LIBRDKAFKA_LOGGER.isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(before[0])
        LIBRDKAFKA_LOGGER.setLevel(before[1])


def test_an_unknown_log_level_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--log-level", "loud", "topics", "create"])
    assert exited.value.code == 2


@pytest.mark.parametrize("argv", [["replay", "--workflows", "m"], ["workflow", "reset", "wf-1"]])
def test_missing_required_argument_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2


@pytest.mark.parametrize("path", CONNECTING, ids=" ".join)
def test_connecting_command_takes_the_four_connection_flags(path: tuple[str, ...]) -> None:
    argv, _ = COMMANDS[path]
    config = kafka_config(build_parser().parse_args([*argv, *FLAGS]))
    assert (config.bootstrap, config.topic_prefix, config.partitions) == ("k1:9092", "t.", 5)
    assert config.replication_factor == 3


def test_connection_flags_left_out_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVERFLOW_BOOTSTRAP", "env:9092")
    monkeypatch.setenv("EVERFLOW_PARTITIONS", "7")
    args = build_parser().parse_args(["workers", "--topic-prefix", "p."])
    config = kafka_config(args)
    assert (config.bootstrap, config.topic_prefix, config.partitions) == ("env:9092", "p.", 7)


def test_every_group_and_command_says_what_it_does() -> None:
    for path, parser in _commands(build_parser()).items():
        description = parser.description or ""
        assert re.fullmatch(r"[A-Z].{15,}\.", description, re.DOTALL), (path, description)


def test_building_the_parser_does_not_load_the_engine() -> None:
    code = (
        "import sys, streams.cli; streams.cli.build_parser()\n"
        "engine = ('streams.worker', 'processors.workflow_processor',"
        " 'processors.activity_runner')\n"
        "print(sorted(m for m in sys.modules if m.startswith(engine)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


WORKFLOW_COMMANDS = [path for path in COMMANDS if path[0] == "workflow"]


@pytest.mark.parametrize("path", WORKFLOW_COMMANDS, ids=" ".join)
def test_every_workflow_command_takes_the_output_flags_and_documents_exit_codes(
    path: tuple[str, ...],
) -> None:
    argv, _ = COMMANDS[path]
    defaults = build_parser().parse_args(argv)
    assert (defaults.output, defaults.time_format, defaults.color) == ("text", "relative", "auto")
    flags = ["-o", "jsonl", "--time-format", "iso", "--color", "never"]
    args = build_parser().parse_args([*argv, *flags])
    assert (args.output, args.time_format, args.color) == ("jsonl", "iso", "never")
    epilog = _commands(build_parser())[path].epilog or ""
    assert f"everflow workflow {path[1]} " in epilog.split("exit codes:")[0]
    for code in ("0", "1", "2", "3", "4"):
        assert re.search(rf"^  {code}  \w", epilog, re.M), (path, code)


def test_address_and_namespace_are_aliases_of_bootstrap_and_topic_prefix() -> None:
    args = build_parser().parse_args(["workflow", "list", "--address", "k:1", "-n", "prod."])
    assert (kafka_config(args).bootstrap, kafka_config(args).topic_prefix) == ("k:1", "prod.")
    args = build_parser().parse_args(["workers", "--namespace", "p."])
    assert args.topic_prefix == "p."


@pytest.mark.parametrize(
    "argv",
    [
        ["workflow", "describe", "-w", "wf-1", "-r", "r-2"],
        ["workflow", "describe", "-r", "r-2", "wf-1"],
        ["workflow", "describe", "--workflow-id", "wf-1", "--run-id", "r-2"],
    ],
)
def test_a_run_is_named_by_its_id_or_by_w(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.workflow_id, args.run_id) == ("wf-1", "r-2")


@pytest.mark.parametrize(
    "argv",
    [
        ["workflow", "describe"],  # no run named
        ["workflow", "describe", "wf-1", "-w", "wf-2"],  # named twice
        ["workflow", "terminate", "-w", "wf-1", "-q", "WorkflowType = 'T'"],  # one run or a query
        ["workflow", "signal", "wf-1"],  # no --name
        ["workflow", "start", "--type", "T", "-t", "q", "-i", "not json"],
        ["workflow", "start", "--type", "T", "-t", "q", "--execution-timeout", "soon"],
        ["workflow", "start", "--type", "T", "-t", "q", "--id-reuse-policy", "Sometimes"],
        ["workflow", "start", "--type", "T", "-t", "q", "--search-attribute", "novalue"],
        ["workflow", "start", "--type", "T", "-t", "q", "-i", "1", "--input-file", "f.json"],
        ["workflow", "list", "-o", "yaml"],
    ],
)
def test_a_usage_error_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2


def test_start_flags_parse_like_temporals(tmp_path: Path) -> None:
    order = tmp_path / "order.json"
    order.write_text('{"amount": 3}')
    argv = ["workflow", "start", "--type", "Charge", "-t", "payments", "-w", "o-1"]
    argv += ["--input-file", str(order), "--input-file", str(order)]
    argv += ["--execution-timeout", "2h", "--run-timeout", "90s"]
    argv += ["--search-attribute", "CustomerId=c-7", "--search-attribute", 'Tags=["a","b"]']
    argv += ["--search-attribute", "Amount=12.5"]
    argv += [
        "--id-reuse-policy",
        "AllowDuplicateFailedOnly",
        "--id-conflict-policy",
        "use_existing",
    ]
    args = build_parser().parse_args(argv)
    assert (args.type, args.task_queue, args.workflow_id) == ("Charge", "payments", "o-1")
    assert args.input_file == [{"amount": 3}, {"amount": 3}] and args.input == []
    assert (args.execution_timeout, args.run_timeout) == (timedelta(hours=2), timedelta(seconds=90))
    assert dict(args.search_attribute) == {"CustomerId": "c-7", "Tags": ["a", "b"], "Amount": 12.5}
    assert (args.id_reuse_policy, args.id_conflict_policy) == (
        "allow_duplicate_failed_only",
        "use_existing",
    )
    inputs = build_parser().parse_args(
        ["workflow", "execute", "--type", "T", "-t", "q", "-i", '"a"', "-i", "3", "-i", "[1]"]
    )
    assert inputs.input == ["a", 3, [1]]
    assert build_parser().parse_args(
        ["workflow", "start", "--type", "T", "-t", "q", "--run-timeout", "250ms"]
    ).run_timeout == timedelta(milliseconds=250)


def test_batch_flags_and_the_other_workflow_flags() -> None:
    parser = build_parser()
    batch = parser.parse_args(["workflow", "terminate", "-q", "WorkflowType = 'T'", "--yes"])
    assert (batch.query, batch.yes, batch.workflow_id, batch.reason) == (
        "WorkflowType = 'T'",
        True,
        None,
        "",
    )
    signal = parser.parse_args(["workflow", "signal", "-q", "x", "--name", "go", "-i", "1"])
    assert (signal.query, signal.yes, signal.name, signal.input) == ("x", False, "go", [1])
    update = parser.parse_args(
        ["workflow", "update", "-w", "w", "--name", "u", "--update-id", "u1"]
    )
    assert (update.name, update.update_id) == ("u", "u1")
    listed = parser.parse_args(["workflow", "list", "-q", "x", "--limit", "5", "--page-size", "9"])
    assert (listed.query, listed.limit, listed.page_size) == ("x", 5, 9)
    assert parser.parse_args(["workflow", "count"]).query == ""
    assert parser.parse_args(["workflow", "show", "w", "-f"]).follow
    reset = parser.parse_args(["workflow", "reset", "-w", "w", "-e", "4"])
    assert (reset.workflow_id, reset.to_event) == ("w", 4)
