"""The fault suite's history checker: judges a finished workload from what Kafka and the ledgers
hold, without the engine's code paths.

It reads the topics with plain confluent-kafka (`read_committed`, and `read_uncommitted` for
I8) from the beginning to their ends, and decodes them with fastavro from the schema files
in `schemas/` (the framing is Avro single-object encoding: `C3 01`, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema, the body), so a bug in `streams.wire` cannot
hide itself. Only I7 uses the engine, on purpose and from outside: one `everflow replay`
process over every history. With the driver's operation log (`tests.faults.driver`) and the
workload's ledgers (`tests.faults.workload`) it checks:

- I1 every acknowledged start closes exactly once on `completions` (an indeterminate one at
  most once), in the run the start acknowledged, and an ID never gets a second run;
- I2 each run's history is gap-free: event IDs 1..n in offset order, none twice;
- I3 at most one outcome per activity attempt, at most one final outcome per activity, and
  each recorded outcome matches an execution in the attempts ledger;
- I4 each acknowledged signal is delivered once, each sender's signals in order, a failed one
  never, nothing the driver did not send; a completed run returns what it received;
- I5 each idempotency key is applied to the bank once, and a closed transfer or saga moved
  no money in total (conservation);
- I6 a timer fires at most once and never before it is due (in history, in the run's result,
  and on the wall clock of the ledger);
- I7 every history replays with the current code (runs that I2, I3, I4 or I6 flagged are
  left out, so that one fault is reported once);
- I8 nothing of an aborted transaction is visible: every committed completion and activity
  task has its cause in committed history (a cause only in records that `read_uncommitted`
  shows is an aborted read); every record on `commands` was consumed (the processors' group
  committed past it) and every request among them answered, or it was dead-lettered.

`check(...)` returns a `Report`; `render(reports)` prints one Markdown table row per fault.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.kafka.config import KafkaConfig
from tests.faults.driver import read_ops
from tests.faults.records import (
    ROOT,
    Event,
    Record,
    Schemas,
    committed_offsets,
    events_of,
    list_topics,
    payload_value,
    read_topic,
)
from tests.faults.workload import LEDGER_ENV, read_lines

INVARIANTS = ("I1", "I2", "I3", "I4", "I5", "I6", "I7", "I8")
EXAMPLES = 5
CLOSES = {
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowCanceled",
    "WorkflowTerminated",
    "WorkflowTimedOut",
    "WorkflowContinuedAsNew",
}
OUTCOMES = {"ActivityCompleted", "ActivityFailed", "ActivityAttemptFailed", "ActivityCanceled"}
FINAL_OUTCOMES = {"ActivityCompleted", "ActivityFailed", "ActivityCanceled"}


# ---- the report ------------------------------------------------------------------------------
@dataclass
class Report:
    """One workload's verdict: runs, closes, violations by invariant, recovery samples (s)."""

    fault: str
    runs: int
    closed: int
    violations: dict[str, list[str]] = field(default_factory=lambda: {i: [] for i in INVARIANTS})
    recovery: list[float] = field(default_factory=list)
    notes: dict[str, int | str] = field(default_factory=dict)

    def count(self, invariant: str) -> int:
        return len(self.violations[invariant])

    def examples(self, invariant: str) -> list[str]:
        return self.violations[invariant][:EXAMPLES]

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def flagged(self) -> list[str]:
        """The invariants with at least one violation."""
        return [i for i in INVARIANTS if self.violations[i]]

    def table_row(self) -> str:
        counts = " | ".join(str(self.count(i)) for i in INVARIANTS)
        if self.recovery:
            p50 = statistics.median(self.recovery)
            rec = f"{p50:.1f} s / {max(self.recovery):.1f} s"
        else:
            rec = "-"
        return f"| {self.fault} | {self.runs} | {self.closed} | {counts} | {rec} |"

    def details(self) -> str:
        """Up to five examples of each violated invariant."""
        lines = []
        for i in self.flagged():
            lines.append(f"{self.fault} {i}: {self.count(i)} violation(s)")
            lines.extend(f"  - {x}" for x in self.examples(i))
        return "\n".join(lines)


def render(reports: Sequence[Report]) -> str:
    """A Markdown table, one row per fault, then the examples of any violation."""
    head = "| fault | runs | closed | " + " | ".join(INVARIANTS) + " | recovery p50 / max |"
    sep = "|" + "---|" * (len(INVARIANTS) + 4)
    body = [r.table_row() for r in reports]
    details = [r.details() for r in reports if not r.ok]
    return "\n".join([head, sep, *body, *(["", *details] if details else [])])


# ---- the check -------------------------------------------------------------------------------
@dataclass
class Ledgers:
    """The workload's files outside Kafka: the seed's bank and the attempts ledger."""

    bank: Path
    attempts: Path

    def env(self) -> dict[str, str]:
        """The environment variables that point a workload worker at these ledgers."""
        return {"EVERFLOW_BANK_LEDGER": str(self.bank), LEDGER_ENV: str(self.attempts)}


@dataclass
class _Data:
    ops: list[dict[str, Any]]
    history: list[Event]
    aborted_history: list[Event]
    completions: list[dict[str, Any]]
    aborted_completions: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    commands: list[tuple[Record, dict[str, Any]]]
    replies: list[dict[str, Any]]
    dead_letter_sources: set[str]
    consumed: dict[int, int]  # commands partition -> the processors' committed offset
    bank: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    runs: dict[tuple[str, str], list[Event]] = field(default_factory=dict)


def check(
    config: KafkaConfig,
    ops_log: Path,
    ledgers: Ledgers,
    *,
    fault: str = "none",
    recovery: Sequence[float] = (),
    replay: bool = True,
    workflows: str = "tests.faults.workload",
) -> Report:
    """Reads everything the workload left and checks I1..I8 over it.

    Call it after the heal-and-drain phase: the driver has returned, and the workers have
    stopped or sit idle (a transaction still open is read as aborted, and a command they
    have not consumed yet is an I8 violation). `ops_log` is the driver's log, `ledgers` the
    workers' files; `recovery` (seconds) is only carried to the table; `replay=False` skips
    I7; `workflows` is the module `everflow replay` loads.
    """
    replaying = _Replay(config, workflows) if replay else None  # runs while the topics are read
    try:
        data = _read(config, ops_log, ledgers)
    except BaseException:
        if replaying is not None:
            replaying.kill()
        raise
    started = {o["workflow_id"] for o in data.ops if o["f"] == "start"}
    report = Report(
        fault,
        runs=len(started),
        closed=len({c["workflow_id"] for c in data.completions if c["workflow_id"] in started}),
        recovery=list(recovery),
    )
    v = report.violations
    v["I1"] = check_closes(data)
    v["I2"], malformed = check_histories(data)
    v["I3"], bad_activities = check_activities(data)
    v["I4"], bad_signals = check_signals(data)
    v["I5"] = check_money(data)
    v["I6"], bad_timers = check_timers(data)
    if replaying is not None:
        skip = malformed | bad_activities | bad_signals | bad_timers
        v["I7"] = replaying.mismatches(skip)
    v["I8"] = check_aborted(data)
    report.notes = {
        "history events": len(data.history),
        "aborted history records": len(data.aborted_history),
        "activity attempts": len(data.attempts),
        "bank entries": len(data.bank),
    }
    return report


def _read(config: KafkaConfig, ops_log: Path, ledgers: Ledgers) -> _Data:
    schemas = Schemas()
    prefix = config.topic_prefix
    names = list_topics(config)

    def both(topic: str) -> tuple[list[Record], list[Record]]:
        committed = read_topic(config, topic)
        everything = read_topic(config, topic, "read_uncommitted")
        seen = {(r.partition, r.offset) for r in committed}
        return committed, [r for r in everything if (r.partition, r.offset) not in seen]

    history, aborted = both(f"{prefix}history")
    completions, aborted_completions = both(f"{prefix}completions")
    decode = schemas.decode
    tasks = [
        decode("ActivityTask", r.value)
        for name in names
        if name.startswith(f"{prefix}tasks.")
        for r in read_topic(config, name)
        if r.value is not None
    ]
    commands = []
    for r in read_topic(config, f"{prefix}commands"):
        try:
            commands.append((r, decode("Command", r.value)))
        except ValueError:
            commands.append((r, {}))  # poison: must be dead-lettered (I8)
    dead = {
        v.decode()
        for r in read_topic(config, f"{prefix}dead-letters")
        for k, v in r.headers
        if k == "everflow.source"
    }
    data = _Data(
        consumed=committed_offsets(config, f"{prefix}workflow-processor", f"{prefix}commands"),
        ops=read_ops(ops_log),
        history=events_of(schemas, history),
        aborted_history=events_of(schemas, aborted),
        completions=[decode("Completion", r.value) for r in completions],
        aborted_completions=[decode("Completion", r.value) for r in aborted_completions],
        tasks=tasks,
        commands=commands,
        replies=[decode("Reply", r.value) for r in read_topic(config, f"{prefix}replies")],
        dead_letter_sources=dead,
        bank=read_lines(ledgers.bank),
        attempts=read_lines(ledgers.attempts),
    )
    for e in data.history:
        data.runs.setdefault((e.workflow_id, e.run_id), []).append(e)
    return data


def _ops_by_workflow(ops: list[dict[str, Any]], f: str) -> dict[str, list[dict[str, Any]]]:
    """The completed operations `f` by workflow ID; an invoke that never completed (the
    driver stopped or was canceled) counts as indeterminate (`info`), as in Jepsen."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    open_: dict[tuple[str, bytes], dict[str, Any]] = {}
    for o in ops:
        if o["f"] != f:
            continue
        key = (o["workflow_id"], _op_key(o))
        if o["type"] == "invoke":
            open_[key] = o
        else:
            open_.pop(key, None)
            out[o["workflow_id"]].append(o)
    for o in open_.values():
        out[o["workflow_id"]].append({**o, "type": "info"})
    return out


def _op_key(op: dict[str, Any]) -> bytes:
    # what pairs an invoke with its completion: a signal's (sender, seq); else the function
    value = op["value"] or {}
    if op["f"] == "signal":
        return orjson.dumps([value["sender"], value["seq"]])
    return b""


def _closed(data: _Data) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["workflow_id"], c["run_id"]): c for c in data.completions}


def check_closes(data: _Data) -> list[str]:
    """I1: acked starts close exactly once, in the acked run; indeterminate ones at most once."""
    out = []
    starts = _ops_by_workflow(data.ops, "start")
    closes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in data.completions:
        if c["status"] != "CONTINUED_AS_NEW":
            closes[c["workflow_id"]].append(c)
    runs_of: dict[str, set[str]] = defaultdict(set)
    for wid, rid in data.runs:
        runs_of[wid].add(rid)
    for wid, ops in sorted(starts.items()):
        acked = {o["value"]["run_id"] for o in ops if o["type"] == "ok"}
        got = closes.get(wid, [])
        if acked and len(got) != 1:
            out.append(f"{wid}: acked start closed {len(got)} times on completions")
        elif not acked and len(got) > 1:
            out.append(f"{wid}: indeterminate start closed {len(got)} times")
        if len(acked) > 1 or len(runs_of[wid]) > 1:
            out.append(f"{wid}: more than one run (acked {sorted(acked)}, history {runs_of[wid]})")
        for c in got:
            if acked and c["run_id"] not in acked:
                out.append(f"{wid}: closed run {c['run_id']} is not the acked run {acked}")
    return out


def check_histories(data: _Data) -> tuple[list[str], set[tuple[str, str]]]:
    """I2: each run's event IDs are 1..n in offset order, each once, on one partition."""
    out, bad = [], set()
    for run, events in sorted(data.runs.items()):
        ids = [e.event_id for e in events]
        problems = []
        if ids != list(range(1, len(ids) + 1)):
            dup = sorted(i for i, n in Counter(ids).items() if n > 1)
            problems.append(f"event ids {_short(ids)}" + (f", duplicated {dup}" if dup else ""))
        if len({e.partition for e in events}) > 1:
            problems.append("events on several partitions")
        if problems:
            out.append(f"{run[0]}/{run[1]}: " + "; ".join(problems))
            bad.add(run)
    return out, bad


def _short(ids: list[int]) -> str:
    return str(ids) if len(ids) <= 12 else f"{ids[:6]}...{ids[-6:]}"


def check_activities(data: _Data) -> tuple[list[str], set[tuple[str, str]]]:
    """I3: one outcome per attempt, one final outcome per activity, each matching the ledger."""
    out, bad = [], set()
    driven = {o["workflow_id"] for o in data.ops}
    executions: dict[tuple[str, str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for a in data.attempts:
        executions[(a["workflow_id"], a["run_id"], a["activity_id"], a["attempt"])].append(a)
    for run, events in sorted(data.runs.items()):
        per_attempt: Counter[tuple[int, int]] = Counter()
        finals: Counter[int] = Counter()
        for e in events:
            if e.kind not in OUTCOMES:
                continue
            aid, attempt = e.attrs["activity_id"], e.attrs.get("attempt", 0)
            per_attempt[(aid, attempt)] += 1
            finals[aid] += e.kind in FINAL_OUTCOMES
            if run[0] in driven and not _matches(e, executions[(*run, aid, attempt)]):
                out.append(
                    f"{run[0]}/{run[1]}: {e.kind} of activity {aid} attempt {attempt} "
                    "matches no execution in the attempts ledger"
                )
                bad.add(run)
        for (aid, attempt), n in sorted(per_attempt.items()):
            if n > 1:
                out.append(f"{run[0]}/{run[1]}: activity {aid} attempt {attempt}: {n} outcomes")
                bad.add(run)
        for aid, n in sorted(finals.items()):
            if n > 1:
                out.append(f"{run[0]}/{run[1]}: activity {aid}: {n} final outcomes")
                bad.add(run)
    return out, bad


def _matches(e: Event, executions: list[dict[str, Any]]) -> bool:
    if e.kind == "ActivityCompleted":
        value = payload_value(e.attrs["result"])
        return any(x["outcome"] == "ok" and x["result"] == value for x in executions)
    if e.kind == "ActivityCanceled":
        return True
    failure = e.attrs["failure"]
    if failure is None or failure["kind"] != "application":
        return True  # a timeout or cancellation has no execution to show for it
    return any(x["outcome"] == "error" for x in executions)


def check_signals(data: _Data) -> tuple[list[str], set[tuple[str, str]]]:
    """I4: acked signals delivered once, per-sender order, failed ones never, no strangers."""
    out: list[str] = []
    bad: set[tuple[str, str]] = set()
    closed = {c["workflow_id"]: c for c in data.completions}
    for wid, ops in sorted(_ops_by_workflow(data.ops, "signal").items()):
        delivered = [
            payload_value(e.attrs["args"][0]) if e.attrs["args"] else None
            for (w, _), events in data.runs.items()
            if w == wid
            for e in events
            if e.kind == "SignalReceived"
        ]
        counts = Counter(orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in delivered)
        sent: dict[bytes, str] = {}
        for o in ops:
            key = orjson.dumps(
                {"sender": o["value"]["sender"], "seq": o["value"]["seq"]},
                option=orjson.OPT_SORT_KEYS,
            )
            sent[key] = o["type"]
            n = counts.get(key, 0)
            if o["type"] == "ok" and n != 1:
                out.append(f"{wid}: acked signal {key.decode()} delivered {n} times")
            elif o["type"] == "info" and n > 1:
                out.append(f"{wid}: indeterminate signal {key.decode()} delivered {n} times")
            elif o["type"] == "fail" and n:
                out.append(f"{wid}: failed signal {key.decode()} delivered {n} times")
        last: dict[str, int] = {}
        for d in delivered:
            key = orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
            if key not in sent or not isinstance(d, dict):
                out.append(f"{wid}: delivered signal {key.decode()} was never sent")
                continue
            sender, seq = d["sender"], d["seq"]
            if seq <= last.get(sender, 0):
                out.append(f"{wid}: sender {sender} seq {seq} delivered after seq {last[sender]}")
            last[sender] = max(seq, last.get(sender, 0))
        c = closed.get(wid)
        if c is not None and c["status"] == "COMPLETED":
            if payload_value(c["result"]) != delivered:
                out.append(f"{wid}: result {payload_value(c['result'])} != delivered {delivered}")
        if out and out[-1].startswith(f"{wid}: "):
            bad |= {run for run in data.runs if run[0] == wid}
    return out, bad


def check_money(data: _Data) -> list[str]:
    """I5: each key applied once; a closed transfer or saga moved no money in total."""
    out = []
    for key, n in sorted(Counter(e["key"] for e in data.bank).items()):
        if n > 1:
            out.append(f"idempotency key {key} applied {n} times")
    net: Counter[str] = Counter()
    for e in data.bank:
        net[str(e["key"]).split("/", 1)[0]] += int(e["delta"])
    closed = {c["workflow_id"] for c in data.completions}
    transfers = {
        o["workflow_id"]
        for o in data.ops
        if o["f"] == "start" and o["value"]["kind"] in ("transfer", "saga")
    }
    for wid in sorted(transfers & closed):
        if net[wid]:
            out.append(f"{wid}: closed with money not conserved (net {net[wid]:+d})")
    total = sum(net[w] for w in transfers & closed)
    if total:
        out.append(f"sum of balances changed by {total:+d} over the closed transfers")
    return out


def check_timers(data: _Data) -> tuple[list[str], set[tuple[str, str]]]:
    """I6: each timer fires at most once and never before due (history, result, wall clock)."""
    out, bad = [], set()
    for run, events in sorted(data.runs.items()):
        due = {e.attrs["timer_id"]: e.attrs["fire_at"] for e in events if e.kind == "TimerStarted"}
        fired: Counter[int] = Counter()
        for e in events:
            if e.kind != "TimerFired":
                continue
            tid = e.attrs["timer_id"]
            fired[tid] += 1
            if tid in due and e.time < due[tid]:
                out.append(f"{run[0]}/{run[1]}: timer {tid} fired {due[tid] - e.time} ms early")
                bad.add(run)
        for tid, n in sorted(fired.items()):
            if n > 1:
                out.append(f"{run[0]}/{run[1]}: timer {tid} fired {n} times")
                bad.add(run)
    for c in data.completions:
        if c["workflow_type"] == "TimerRun" and c["status"] == "COMPLETED":
            r = payload_value(c["result"])
            if r["fired_ms"] < r["due_ms"]:
                out.append(f"{c['workflow_id']}: woke at {r['fired_ms']}, due {r['due_ms']}")
    for a in data.attempts:
        if a["activity"] == "note_fire" and a["outcome"] == "ok":
            r = a["result"]
            if r["fired_at_ms"] < r["due_ms"]:
                out.append(
                    f"{a['workflow_id']}: wall clock {r['fired_at_ms']} before due {r['due_ms']}"
                )
    return out, bad


class _Replay:
    """I7: one `everflow replay --from-kafka` over every history, started at once so that it
    runs while the checker reads the topics; `mismatches(skip)` waits for it. Its output goes
    to temporary files, not pipes, so a long report never blocks it."""

    def __init__(self, config: KafkaConfig, workflows: str) -> None:
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "replay",
                "--bootstrap",
                config.bootstrap,
                "--topic-prefix",
                config.topic_prefix,
                "--workflows",
                workflows,
                "--from-kafka",
                "--limit",
                "1000000",
            ],
            cwd=ROOT,
            stdout=self.out,
            stderr=self.err,
            text=True,
        )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.out.close()
        self.err.close()

    def mismatches(self, skip: set[tuple[str, str]]) -> list[str]:
        try:
            code = self.proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.kill()
            return ["everflow replay did not finish within 600 s"]
        self.out.seek(0)
        self.err.seek(0)
        lines = self.out.read().splitlines()
        stderr = self.err.read()
        self.out.close()
        self.err.close()
        out = []
        for line in lines:
            head, _, state = line.partition(" events): ")
            run = tuple(head.split(" ", 1)[0].split("/", 1))
            if state and state != "ok" and run not in skip:
                out.append(line)
        if code not in (0, 1) or not any(x.startswith("replayed ") for x in lines):
            out.append(f"everflow replay exited {code}: {stderr.strip()[-500:]}")
        return out


def check_aborted(data: _Data) -> list[str]:
    """I8: committed effects have committed causes; requests answered or dead-lettered."""
    out = []
    committed_close = {(e.workflow_id, e.run_id) for e in data.history if e.kind in CLOSES}
    aborted_close = {(e.workflow_id, e.run_id) for e in data.aborted_history if e.kind in CLOSES}
    for c in data.completions:
        run = (c["workflow_id"], c["run_id"])
        if run not in committed_close:
            cause = "an aborted transaction's" if run in aborted_close else "no"
            out.append(f"{run[0]}/{run[1]}: completion {c['status']} with {cause} close event")
    scheduled = {
        (e.workflow_id, e.run_id, e.attrs["activity_id"])
        for e in data.history
        if e.kind == "ActivityScheduled"
    }
    for t in data.tasks:
        if (t["workflow_id"], t["run_id"], t["activity_id"]) not in scheduled:
            out.append(
                f"{t['workflow_id']}/{t['run_id']}: task for activity {t['activity_id']} "
                f"attempt {t['attempt']} was never scheduled in committed history"
            )
    answered = {r["request_id"] for r in data.replies}
    started_by = {e.attrs["start_command_id"] for e in data.history if e.kind == "WorkflowStarted"}
    for r, c in data.commands:
        source = f"{r.topic}/{r.partition}/{r.offset}"
        if source in data.dead_letter_sources:
            continue
        if r.offset >= data.consumed.get(r.partition, 0):
            out.append(
                f"{c.get('workflow_id', '?')}: command at {source} never consumed by the "
                f"workflow processors (their offset: {data.consumed.get(r.partition)})"
            )
        if not c:
            out.append(f"{source}: an undecodable command neither processed nor dead-lettered")
            continue
        kind, body = c["body"]
        if body.get("reply_to") and c["command_id"] not in answered | started_by:
            out.append(
                f"{c['workflow_id']}: {kind.rsplit('.', 1)[-1]} {c['command_id']} "
                "neither answered nor dead-lettered"
            )
    return out
