"""`everflow audit`: replay the history topic (every partition, read_committed) through the
invariant checks of `processors.audit`, print a report, exit 1 on a violation.

Reads `completions` first (to know which closed runs reported), then each history
partition from its start (or from `--from`, by timestamp) to the end it had when the audit
began. Progress goes to stderr (`streams.cli.progress`): on a terminal, a line rewritten
once a second; elsewhere, a line every few seconds.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from processors.audit import Auditor, Violation, fingerprint
from streams import kafka
from streams.cli.common import SubParsers, add_connection_arguments, add_subparser, kafka_config
from streams.cli.progress import Progress
from streams.errors import PayloadDecodeError
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics, partition_count
from streams.wire import wire
from streams.wire.events import HistoryEvent, WorkflowStarted


def add_parser(subparsers: SubParsers) -> None:
    """Register `audit`."""
    audit = add_subparser(
        subparsers,
        "audit",
        "replay the history topic and check its invariants (exit 1 on a violation)",
    )
    add_connection_arguments(audit)
    audit.add_argument("--from", dest="since", help="runs started at/after (ISO time or epoch ms)")
    audit.add_argument("--to", dest="until", help="runs started at/before (ISO time or epoch ms)")
    audit.add_argument("--workflow-type", help="only runs of this workflow type")
    audit.set_defaults(run=audit_run)


def audit_run(args: argparse.Namespace) -> int:
    """`everflow audit`: the history's invariants, run by run; exit 1 on a violation."""
    with Progress() as progress:
        report = run_audit(
            kafka_config(args),
            _parse_time(args.since),
            _parse_time(args.until),
            args.workflow_type,
            progress=progress,
        )
    print(report.render())
    return 0 if report.ok else 1


@dataclass
class AuditReport:
    runs: int = 0
    events: int = 0
    open_runs: int = 0
    skipped_events: int = 0
    undecodable: int = 0
    seconds: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    violation_count: int = 0

    @property
    def ok(self) -> bool:
        return self.violation_count == 0

    def render(self) -> str:
        rate = self.events / self.seconds if self.seconds else 0.0
        lines = [
            f"audited {self.runs} runs, {self.events} events in {self.seconds:.1f}s "
            f"({rate:,.0f} events/s); {self.open_runs} runs still open",
        ]
        if self.skipped_events:
            lines.append(f"skipped {self.skipped_events} events (outside the filters)")
        if self.ok:
            lines.append("no violations")
            return "\n".join(lines)
        rules = Counter(v.rule for v in self.violations)
        lines.append(
            f"{self.violation_count} violations: "
            + ", ".join(f"{rule} x{n}" for rule, n in rules.most_common())
        )
        lines += [f"  {v}" for v in self.violations]
        if self.violation_count > len(self.violations):
            lines.append(f"  … and {self.violation_count - len(self.violations)} more")
        return "\n".join(lines)


def run_audit(
    config: KafkaConfig,
    since_ms: int | None = None,
    until_ms: int | None = None,
    workflow_type: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AuditReport:
    started = time.monotonic()
    topics = Topics(config.topic_prefix)
    completions, oldest = _completions(config, topics.completions)
    auditor = Auditor(workflow_type, completions, oldest)
    report = AuditReport()
    history = topics.history
    consumer = kafka.consumer(
        config, settings={"enable.partition.eof": True, "fetch.max.bytes": 16 << 20}
    )
    try:
        n = partition_count(kafka.admin(config), history)
        starts = [TopicPartition(history, p, OFFSET_BEGINNING) for p in range(n)]
        if since_ms is not None:
            starts = consumer.offsets_for_times(
                [TopicPartition(history, p, since_ms) for p in range(n)], 30
            )
        ends = {p: kafka.end_offset(consumer, history, p) for p in range(n)}
        pending = {tp.partition for tp in starts if ends[tp.partition] > max(tp.offset, 0)}
        consumer.assign([tp for tp in starts if tp.partition in pending])
        decode = wire().event.decode
        while pending:
            for msg in consumer.consume(10_000, 0.5):
                err = msg.error()
                p, offset = msg.partition() or 0, msg.offset() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                    continue
                if offset >= ends[p] - 1:
                    pending.discard(p)
                if offset >= ends[p]:
                    continue
                where = f"{history}/{p}/{offset}"
                try:
                    event = decode(msg.value())
                except PayloadDecodeError as e:
                    report.undecodable += 1
                    auditor.violation_count += 1
                    auditor.violations.append(
                        Violation("?", "?", "undecodable record", str(e), where)
                    )
                    continue
                if _outside(auditor, event, since_ms, until_ms):
                    report.skipped_events += 1
                    continue
                auditor.feed(event, where)
            if progress is not None:
                elapsed = max(time.monotonic() - started, 1e-3)
                progress(
                    f"audit: {auditor.events:,} events, {auditor.runs:,} runs "
                    f"({auditor.runs / elapsed:,.0f} runs/s), "
                    f"{n - len(pending)}/{n} partitions done"
                )
    finally:
        consumer.close()
    report.runs, report.events = auditor.runs, auditor.events
    report.open_runs = len(auditor.open)
    report.violations, report.violation_count = auditor.violations, auditor.violation_count
    report.seconds = time.monotonic() - started
    return report


def _outside(
    auditor: Auditor, event: HistoryEvent, since_ms: int | None, until_ms: int | None
) -> bool:
    """With a time window, runs that started outside it are not audited (their earlier
    events are not read, so they would look like unknown runs)."""
    if since_ms is None and until_ms is None:
        return False
    key = (event.workflow_id, event.run_id)
    if key in auditor.open:
        return False
    fp = fingerprint(*key)
    if fp in auditor.closed:
        return False
    if not isinstance(event.attributes, WorkflowStarted):
        return True
    t = event.time
    return (since_ms is not None and t < since_ms) or (until_ms is not None and t > until_ms)


def _completions(config: KafkaConfig, topic: str) -> tuple[set[int], int]:
    """Fingerprints of every run on `completions`, and the oldest record's timestamp."""
    out: set[int] = set()
    oldest = 0
    consumer = kafka.consumer(config, settings={"enable.partition.eof": True})
    try:
        n = partition_count(kafka.admin(config), topic)
        ends = {p: kafka.end_offset(consumer, topic, p) for p in range(n)}
        assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(n) if ends[p]]
        first = True
        decode = wire().completion.decode
        for msg in kafka.read_to_end(consumer, assignment):
            try:
                c = decode(msg.value())
            except PayloadDecodeError:
                continue
            out.add(fingerprint(c.workflow_id, c.run_id))
            stamp = msg.timestamp()[1]
            oldest = stamp if first else min(oldest, stamp)
            first = False
    finally:
        consumer.close()
    if first:  # no completions at all (none kept, or none written yet): nothing to ask for
        oldest = 2**63 - 1
    return out, oldest


def _parse_time(text: str | None) -> int | None:
    """ISO 8601 (`2026-11-25T10:00:00+00:00`, `2026-11-25`) or epoch milliseconds."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    from datetime import UTC, datetime

    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
