"""Keyset paging of the run list on SQLite: every order the filter language can write, walked
page by page, gives the rows of one ORDER BY query; cursors are opaque and checked."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from streams.visibility.query import compile_filter, keyset_condition
from streams.visibility.schema import ddl
from streams.visibility.store import Cursor, open_store
from tests.run_pages import ORDERS, TYPES, assert_pages_walk_like_one_query, fill_varied


@pytest.mark.parametrize("query", ORDERS)
def test_walking_all_pages_by_keyset_yields_the_rows_of_one_query(
    tmp_path: Path, query: str
) -> None:
    store = open_store(str(tmp_path / "ix.sqlite"))
    fill_varied(store)
    assert_pages_walk_like_one_query(store, query)
    assert_pages_walk_like_one_query(store, query, size=1)


def test_a_cursor_round_trips_and_a_bad_one_is_refused() -> None:
    cursor = Cursor((None, 1.5, 4611686018427387904, "r-1/é"))
    assert Cursor.decode(cursor.encode()) == cursor
    assert "=" not in cursor.encode() and "/" not in cursor.encode()
    for bad in ("", "nope!", Cursor(()).encode(), "eyJhIjoxfQ"):
        with pytest.raises(ValueError, match="not a cursor of the run list"):
            Cursor.decode(bad)


def test_a_cursor_of_another_order_is_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ix.sqlite"))
    fill_varied(store)
    f = compile_filter("ORDER BY StartTime, CloseTime", dialect="sqlite", attribute_types={})
    with pytest.raises(ValueError, match="3 terms"):
        store.page_runs(f.where, f.params, f.order, after=Cursor((1, "r-1")))
    with pytest.raises(ValueError, match="2 terms"):
        keyset_condition(f.order[:2], (1,), dialect="sqlite")


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("", "runs_listed"),
        ("ExecutionStatus = 'Running'", "runs_listed_status"),
        ("WorkflowType = 'Order'", "runs_listed_type"),
        ("WorkflowType = 'Order' AND ExecutionStatus = 'Failed'", "runs_listed_type_status"),
    ],
)
def test_the_lists_people_open_most_read_an_index_in_the_default_order(
    tmp_path: Path, query: str, index: str
) -> None:
    store = open_store(str(tmp_path / "ix.sqlite"))
    fill_varied(store)
    f = compile_filter(query, dialect="sqlite", attribute_types={})
    first = store.page_runs(f.where, f.params, f.order, limit=5)
    for cursor in (None, first.next):
        plan = store.explain_page(f.where, f.params, f.order, after=cursor)
        assert re.search(rf"USING INDEX {index}\b", plan) and "TEMP B-TREE" not in plan, plan


def test_an_index_file_of_an_older_version_gains_the_list_indexes_when_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in ddl("sqlite"):  # the tables and indexes older versions created
        conn.execute(statement)
    conn.execute(
        "INSERT INTO runs (run_id, workflow_id, workflow_type, task_queue, status, start_time,"
        " history_length, last_event_id) VALUES ('r1', 'wf', 'Order', 'q', 'Running', 5, 2, 2)"
    )
    conn.commit()
    conn.close()
    store = open_store(str(path))  # how the projector opens it
    f = compile_filter("ExecutionStatus = 'Running'", dialect="sqlite", attribute_types={})
    assert "USING INDEX runs_listed_status (" in store.explain_page(f.where, f.params, f.order)
    assert [r.run_id for r in store.page_runs(f.where, f.params, f.order).runs] == ["r1"]


def test_a_cursor_at_an_offset_starts_the_page_after_that_row(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ix.sqlite"))
    fill_varied(store)
    f = compile_filter("ORDER BY Amount DESC", dialect="sqlite", attribute_types=TYPES)
    everything = [r.run_id for r in store.list_runs(f.where, f.params, f.order_by, limit=1000)]
    cursor = store.cursor_at(f.where, f.params, f.order, offset=100)
    assert cursor is not None and cursor.values[-1] == everything[100]
    page = store.page_runs(f.where, f.params, f.order, limit=10, after=cursor)
    assert [r.run_id for r in page.runs] == everything[101:111]
    assert store.cursor_at(f.where, f.params, f.order, offset=len(everything)) is None
