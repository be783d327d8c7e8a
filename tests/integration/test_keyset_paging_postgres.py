"""Keyset paging of the run list on a real PostgreSQL: every order walked page by page, both
ways, gives exactly the rows of one ORDER BY query (the same checks as on SQLite), and the
lists people open most read their first page from an index in the default order."""

from __future__ import annotations

import pytest

from streams.visibility.query import compile_filter
from streams.visibility.store import open_store
from tests.run_pages import ORDERS, assert_pages_walk_like_one_query, fill_varied

pytestmark = pytest.mark.integration


def test_walking_all_pages_by_keyset_on_postgresql_yields_the_rows_of_one_query(
    postgres_dsn: str,
) -> None:
    store = open_store(postgres_dsn)
    try:
        fill_varied(store)
        for query in ORDERS:
            assert_pages_walk_like_one_query(store, query)
        assert_pages_walk_like_one_query(store, "ORDER BY CloseTime DESC", size=1)
    finally:
        store.close()


def test_the_running_list_on_postgresql_reads_its_index_in_order(postgres_dsn: str) -> None:
    store = open_store(postgres_dsn)
    try:
        fill_varied(store, 2000)
        f = compile_filter("ExecutionStatus = 'Running'", dialect="postgresql", attribute_types={})
        with store.transaction() as conn:
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_sort = off")
            plan = store.explain_page(f.where, f.params, f.order)
        assert "runs_listed_status" in plan and "Sort" not in plan, plan
    finally:
        store.close()
