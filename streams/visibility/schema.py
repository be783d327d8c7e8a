"""The run index's tables, as DDL for SQLite and PostgreSQL.

`ddl(dialect)` returns the statements that create them (idempotently: IF NOT EXISTS), in
order. Both dialects get the same columns; instants and durations are epoch milliseconds
(BIGINT), custom search attributes a JSON object (TEXT in SQLite, JSONB in PostgreSQL).

- `runs`: one row per run, the columns the filter language reads (see `query.BUILTINS`).
- `search_attribute_types`: each custom search attribute's `SearchAttributeType`.
- `pending_activities`: each run's activities scheduled and not yet closed.
- `history_pages`: where each page of a run's history starts in the `history` topic (one
  row per `PAGE_EVENTS` events: the page's first event ID, partition and offset), so a page
  of a long history is read by seeking there, never by reading the whole run.
- `offsets`: the next history offset to fold, per partition, written in the same
  transaction as the rows it produced.
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

PAGE_EVENTS = 200
"""Events per row of `history_pages`: events 1, 201, 401, … of a run each start a page."""

_RUNS = """CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    workflow_type TEXT NOT NULL,
    task_queue TEXT NOT NULL,
    status TEXT NOT NULL,
    start_time BIGINT NOT NULL,
    close_time BIGINT,
    execution_duration BIGINT,
    history_length BIGINT NOT NULL,
    last_event_id BIGINT NOT NULL,
    parent_workflow_id TEXT,
    parent_run_id TEXT,
    pending_activities INTEGER NOT NULL DEFAULT 0,
    max_attempt INTEGER NOT NULL DEFAULT 0,
    search_attributes {json} NOT NULL DEFAULT '{{}}'
)"""

_TABLES = (
    """CREATE TABLE IF NOT EXISTS search_attribute_types (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS pending_activities (
    run_id TEXT NOT NULL,
    activity_id BIGINT NOT NULL,
    activity_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    maximum_attempts INTEGER NOT NULL DEFAULT 0,
    last_failure TEXT,
    next_retry_time BIGINT,
    PRIMARY KEY (run_id, activity_id)
)""",
    """CREATE TABLE IF NOT EXISTS history_pages (
    run_id TEXT NOT NULL,
    first_event_id BIGINT NOT NULL,
    partition INTEGER NOT NULL,
    record_offset BIGINT NOT NULL,
    PRIMARY KEY (run_id, first_event_id)
)""",
    """CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, partition)
)""",
)

# The lookups people make most: by workflow ID, by status (Running, Blocked), by type, and the
# default order (open runs first, latest first); children by their parent.
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS runs_workflow_id ON runs (workflow_id)",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs (status, start_time)",
    "CREATE INDEX IF NOT EXISTS runs_workflow_type ON runs (workflow_type, start_time)",
    "CREATE INDEX IF NOT EXISTS runs_start_time ON runs (start_time)",
    "CREATE INDEX IF NOT EXISTS runs_close_time ON runs (close_time, start_time)",
    "CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_workflow_id)",
)


def ddl(dialect: Dialect) -> list[str]:
    """The statements that create the run index's tables and indexes for `dialect`, in order.

    Each is idempotent (IF NOT EXISTS); run them one by one (sqlite3 executes one statement
    per call)."""
    if dialect == "sqlite":
        json = "TEXT"
    elif dialect == "postgresql":
        json = "JSONB"
    else:
        raise ValueError(f"unknown SQL dialect {dialect!r}: use 'sqlite' or 'postgresql'")
    return [_RUNS.format(json=json), *_TABLES, *_INDEXES]
