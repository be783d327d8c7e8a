"""`everflow workflow list|count` and the batch form of `cancel|terminate|signal -q QUERY`:
runs found through the run index by a list filter (`ExecutionStatus = 'Running' AND
WorkflowType = 'Charge'`; see `everflow workflow list --help`)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Protocol, cast

from streams.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    SubParsers,
    connected,
)
from streams.cli.output import Output
from streams.cli.workflow_args import add_command
from streams.client import WorkflowHandle
from streams.errors import EverflowError, WorkflowNotRunningError
from streams.visibility.records import WorkflowCount, WorkflowExecution

FILTER_HELP = (
    "a list filter: WorkflowId, WorkflowType, ExecutionStatus, TaskQueue, StartTime, "
    "CloseTime, HistoryLength, ... and search attributes with = != < > <= >= AND OR () "
    "BETWEEN IN STARTS_WITH IS NULL ORDER BY (empty: every run)"
)
INDEX_HELP = (
    "Reads the run index that `everflow worker` (or `everflow visibility`) keeps: the store "
    "EVERFLOW_VISIBILITY names (sqlite:///path or postgresql://...), else the SQLite file of "
    "this topic prefix in the data directory. A run shows up once the index has read its "
    "events (usually within a second)."
)
LIST_HEADERS = ("STATUS", "WORKFLOW ID", "TYPE", "START TIME", "CLOSE TIME")
BATCH_CONCURRENCY = 32


class RunIndex(Protocol):
    """What the list, count and batch commands use of `Client` (the run index's reads)."""

    def list_workflows(
        self, query: str = "", *, page_size: int = 100, limit: int | None = None
    ) -> AsyncIterator[WorkflowExecution]: ...

    async def count_workflows(
        self, query: str = "", *, group_by_status: bool = False
    ) -> WorkflowCount: ...


def add_parsers(commands: SubParsers) -> None:
    """Register `list` and `count`."""
    listed = add_command(
        commands,
        "list",
        "list the runs a filter matches, from the run index",
        workflow_list,
        "everflow workflow list -q \"ExecutionStatus = 'Running' AND WorkflowType = 'Charge'\"\n"
        "  everflow workflow list -q \"StartTime > '2026-12-01'\" --limit 20 -o jsonl",
        f"List the runs a filter matches, the running first, then the latest closed. {INDEX_HELP}",
    )
    listed.add_argument("-q", "--query", default="", help=FILTER_HELP)
    listed.add_argument("--limit", type=int, help="print at most this many runs")
    listed.add_argument("--page-size", type=int, default=100, help="runs read per page")
    counted = add_command(
        commands,
        "count",
        "count the runs a filter matches, in all and per status",
        workflow_count,
        "everflow workflow count -q \"WorkflowType = 'Charge'\"",
        f"Count the runs a filter matches, in all and per status. {INDEX_HELP}",
    )
    counted.add_argument("-q", "--query", default="", help=FILTER_HELP)


def index(client: object) -> RunIndex:
    return cast(RunIndex, client)


def workflow_list(args: argparse.Namespace) -> int:
    """`everflow workflow list`: the matching runs, a table (text), an array (json) or one
    object per line as they are read (jsonl)."""
    out = Output.of(args)

    async def list_runs() -> None:
        async with connected(args) as client:
            runs = index(client).list_workflows(
                args.query, page_size=args.page_size, limit=args.limit
            )
            if out.format == "jsonl":
                async for run in runs:
                    out.json(execution_json(run))
                return
            found = [run async for run in runs]
        if out.format == "json":
            out.json([execution_json(r) for r in found])
        else:
            print_executions(out, found)

    asyncio.run(list_runs())
    return EXIT_OK


def print_executions(out: Output, runs: list[WorkflowExecution]) -> None:
    """Runs as an aligned table: status, workflow ID, type, start and close time."""
    out.table(
        LIST_HEADERS,
        [
            [
                out.status(r.status),
                r.workflow_id,
                r.workflow_type,
                out.time(r.start_time),
                out.time(r.close_time),
            ]
            for r in runs
        ],
    )


def execution_json(run: WorkflowExecution) -> dict[str, object]:
    """A listed run as JSON fields (times ISO 8601, duration in seconds)."""
    return asdict(run)


def workflow_count(args: argparse.Namespace) -> int:
    """`everflow workflow count`: how many runs match, and how many per status."""
    out = Output.of(args)

    async def count() -> WorkflowCount:
        async with connected(args) as client:
            return await index(client).count_workflows(args.query, group_by_status=True)

    print_count(out, asyncio.run(count()))
    return EXIT_OK


def print_count(out: Output, counted: WorkflowCount) -> None:
    """The total, then a table of statuses, the most frequent first (text); or one object."""
    if not out.text:
        out.json({"count": counted.count, "groups": counted.groups})
        return
    out.line(f"Total: {counted.count}")
    by_status = sorted(counted.groups.items(), key=lambda kv: (-kv[1], kv[0]))
    if by_status:
        out.table(("STATUS", "COUNT"), [[out.status(s), str(n)] for s, n in by_status])


@dataclass(frozen=True, slots=True)
class BatchResult:
    """How a batch went: runs acted on, skipped because already closed, and failed."""

    done: int
    skipped: int
    failures: tuple[tuple[str, str], ...]  # (workflow ID, what went wrong)


def run_batch(
    args: argparse.Namespace,
    verb: str,
    act: Callable[[WorkflowHandle], Awaitable[None]],
) -> int:
    """Applies `act` to every run `args.query` matches. Without `--yes` only counts them
    (exit 2); with it, prints a summary (exit 1 if any failed)."""
    out = Output.of(args)

    async def batch() -> int:
        async with connected(args) as client:
            if not args.yes:
                counted = await index(client).count_workflows(args.query)
                report_dry_run(out, verb, args.query, counted.count)
                return EXIT_USAGE
            runs = [r async for r in index(client).list_workflows(args.query)]
            result = await act_on(
                runs, lambda r: act(client.get_workflow_handle(r.workflow_id, r.run_id))
            )
        report_batch(out, verb, len(runs), result)
        return EXIT_FAILED if result.failures else EXIT_OK

    return asyncio.run(batch())


async def act_on(
    runs: list[WorkflowExecution], act: Callable[[WorkflowExecution], Awaitable[None]]
) -> BatchResult:
    """`act` on each run, a few at a time; closed runs are skipped, errors collected."""
    gate = asyncio.Semaphore(BATCH_CONCURRENCY)
    done = skipped = 0
    failures: list[tuple[str, str]] = []

    async def one(run: WorkflowExecution) -> None:
        nonlocal done, skipped
        async with gate:
            try:
                await act(run)
                done += 1
            except WorkflowNotRunningError:
                skipped += 1
            except EverflowError as e:
                failures.append((run.workflow_id, str(e)))

    await asyncio.gather(*(one(r) for r in runs))
    return BatchResult(done, skipped, tuple(failures))


def report_dry_run(out: Output, verb: str, query: str, count: int) -> None:
    if out.text:
        out.line(f"{count} runs match {query!r}; nothing done: add --yes to {verb} them")
    else:
        out.json({"matched": count, "done": 0, "dry_run": True})


def report_batch(out: Output, verb: str, matched: int, result: BatchResult) -> None:
    """One summary line (text) or object (json); each failure on its own line (text)."""
    if not out.text:
        failures = [{"workflow_id": w, "error": e} for w, e in result.failures]
        out.json({"matched": matched, "done": result.done, "skipped": result.skipped,
                  "failed": len(result.failures), "failures": failures})  # fmt: skip
        return
    for wid, error in result.failures:
        out.line(f"failed: {wid}: {error}")
    out.line(
        f"{verb}: {matched} matched, {result.done} done, {result.skipped} skipped "
        f"(already closed), {len(result.failures)} failed"
    )
