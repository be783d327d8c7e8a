"""A processor's status report: typed counters and restore reports on the wire, an older
report still readable, and `everflow workers` rendering it."""

from __future__ import annotations

from dataclasses import asdict

from processors.workflow_processor.stats import Counters
from streams.cli.workers import Group, Member, WorkersView, render
from streams.wire import Wire
from streams.wire.records import ProcessorStats, RestoreReport, WorkerStatus

OLD_WRITER = 0x58149E6B81001C3F  # schemas/archive/everflow.WorkerStatus.58149e6b81001c3f.avsc

REPORT = RestoreReport(
    partition=3,
    runs_open=10,
    runs_indexed=12,
    snapshot_records=40,
    snapshot_bytes=4096,
    tail_records=7,
    tail_bytes=700,
    timers=2,
    waited_s=0.25,
    seconds=1.5,
)


def _status(**changes: object) -> WorkerStatus:
    fields: dict[str, object] = {
        "instance_id": "w1",
        "host": "h",
        "pid": 42,
        "time": 1_700_000_000_000,
        "partitions": [0, 3],
        "runs_loaded": 5,
        "runs_known": 9,
        "counters": Counters(transactions=4, commands=11, events=30).report(6, 2),
        "restore_reports": [REPORT],
    }
    fields.update(changes)
    return WorkerStatus(**fields)  # type: ignore[arg-type]


def test_a_status_with_counters_and_restore_reports_round_trips() -> None:
    wire = Wire()
    status = _status()
    decoded = wire.worker_status.decode(wire.worker_status.encode(status))
    assert decoded == status
    assert decoded.counters.cache_loads == 6 and decoded.counters.commands == 11
    assert decoded.restore_reports[0].tail_records == 7


def test_counters_report_every_field_the_processor_counts() -> None:
    counters = Counters(1, 2, 3, 4, 5, 6, 7, 8)
    assert counters.report(cache_loads=9, cache_evictions=10) == ProcessorStats(
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    )


def test_a_status_written_with_the_earlier_schema_still_reads() -> None:
    wire = Wire()
    assert OLD_WRITER in wire.registry.writers  # the archived writer schema is known
    raw = wire.worker_status.encode_with(
        OLD_WRITER,
        {
            "instance_id": "w0",
            "host": "old-host",
            "pid": 7,
            "time": 1_600_000_000_000,
            "partitions": [1, 2],
            "runs_loaded": 3,
            "runs_known": 4,
            "stats": {"transactions": 5, "cache_loads": 1},
            "restores": [{"partition": 1.0, "runs_open": 2.0, "seconds": 0.5}],
        },
    )
    status = wire.worker_status.decode(raw)
    assert (status.instance_id, status.host, status.pid, status.partitions) == (
        "w0",
        "old-host",
        7,
        [1, 2],
    )
    assert (status.runs_loaded, status.runs_known) == (3, 4)
    # the old untyped counters and restores do not carry over: zeros until the next report
    assert status.counters == ProcessorStats() and status.restore_reports == []


def test_workers_view_renders_a_processors_report() -> None:
    status = {**asdict(_status()), "age_s": 1.0}
    group = Group(
        "p.workflow-processor", "p.commands", "stable", [Member("everflow-wp-w1", "h", [0, 3])]
    )
    text = render(WorkersView([group], [status]))
    assert "runs 5 loaded / 9 known" in text
    assert "restore w1 p3: 10 open runs, 40 snapshot + 7 history records, 1.50s" in text
