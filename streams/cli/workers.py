"""`everflow workers`: who owns what.

Ownership and lag come from Kafka itself (the consumer groups of the workflow processors
and of each task queue's activity runners, their committed offsets and the partitions'
ends); the processors' own reports on the `workers` topic add their run cache, counters
and restores.
"""

from __future__ import annotations

import argparse
import json

from streams.cli.common import SubParsers, add_connection_arguments, add_subparser, kafka_config
from streams.kafka.ownership import (
    PROCESSOR_CLIENT_PREFIX,
    Group,
    Member,
    WorkersView,
    describe_group,
    workers_view,
)

__all__ = [
    "Group",
    "Member",
    "WorkersView",
    "add_parser",
    "describe_group",
    "render",
    "workers_view",
]


def add_parser(subparsers: SubParsers) -> None:
    """Register `workers`."""
    workers = add_subparser(
        subparsers,
        "workers",
        "show which worker owns which partitions, its lag, cache and restores",
    )
    add_connection_arguments(workers)
    workers.add_argument("--json", action="store_true", help="machine-readable output")
    workers.set_defaults(run=workers_show)


def workers_show(args: argparse.Namespace) -> int:
    """`everflow workers`: ownership and lag per consumer group, plus processor reports."""
    view = workers_view(kafka_config(args))
    print(json.dumps(view.to_dict(), indent=1) if args.json else render(view))
    return 0


def render(view: WorkersView) -> str:
    lines = []
    by_instance = {s["instance_id"]: s for s in view.statuses}
    for group in view.groups:
        total = sum(group.lag.values())
        lines.append(
            f"{group.group_id}  ({group.state}, {len(group.members)} members, "
            f"topic {group.topic}, lag {total})"
        )
        for m in sorted(group.members, key=lambda m: m.client_id):
            extra = ""
            instance = m.client_id.removeprefix(PROCESSOR_CLIENT_PREFIX)
            status = (
                by_instance.get(instance)
                if m.client_id.startswith(PROCESSOR_CLIENT_PREFIX)
                else None
            )
            if status is not None:
                extra = (
                    f"  runs {status['runs_loaded']} loaded / {status['runs_known']} known"
                    f"  report {status['age_s']}s ago"
                )
            lines.append(
                f"  {m.client_id:<28} {m.host:<18} partitions {_ranges(m.partitions):<12} "
                f"lag {m.lag}{extra}"
            )
    for s in view.statuses:
        for r in s["restore_reports"]:
            lines.append(
                f"  restore {s['instance_id']} p{r['partition']}: {r['runs_open']} open runs, "
                f"{r['snapshot_records']} snapshot + {r['tail_records']} history records, "
                f"{r['seconds']:.2f}s"
            )
    return "\n".join(lines) if lines else "no workers: no consumer group has members"


def _ranges(parts: list[int]) -> str:
    if not parts:
        return "-"
    out, start, prev = [], parts[0], parts[0]
    for p in [*parts[1:], None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if p is not None:
            start = prev = p
    return ",".join(out)
