"""Keyset paging checks shared by the SQLite (unit) and PostgreSQL (integration) tests: an
index of runs with ties, open runs (no close time) and missing attributes, and a walk over
all its pages, forwards and backwards, compared with one ORDER BY query."""

from __future__ import annotations

from streams.visibility.query import compile_filter
from streams.visibility.records import ActivityRow, RunRow
from streams.visibility.store import Store
from streams.wire.records import SearchAttributeType

ORDERS = (
    "",  # the default order: open runs first, then the latest closed, then the latest started
    "ExecutionStatus = 'Running'",
    "WorkflowType = 'Order' AND ExecutionStatus = 'Failed'",
    "ORDER BY StartTime",
    "ORDER BY StartTime DESC",
    "ORDER BY CloseTime",  # NULL for open runs: they come last
    "ORDER BY CloseTime DESC, WorkflowId",
    "ExecutionStatus != 'Running' ORDER BY ExecutionDuration DESC",
    "ORDER BY WorkflowType, HistoryLength DESC",
    "ORDER BY Amount DESC",  # a custom attribute some runs lack
    "ORDER BY Customer, RunId DESC",
    "ORDER BY ActivityAttempt DESC",
)
TYPES = {"Amount": SearchAttributeType.DOUBLE, "Customer": SearchAttributeType.KEYWORD}


def fill_varied(store: Store, runs: int = 157) -> None:
    """`runs` rows whose sort values repeat a lot (equal start and close times, equal types,
    statuses and amounts) so that every order has ties for the run ID to break."""
    rows = []
    for n in range(runs):
        status = ("Running", "Completed", "Failed", "Blocked", "Terminated")[n % 5]
        closed = status not in ("Running", "Blocked")
        attributes: dict[str, object] = {}
        if n % 3:
            attributes["Amount"] = float(n % 7) * 1.5
        if n % 4:
            attributes["Customer"] = f"c-{n % 5}"
        activities = (ActivityRow(1, "charge", 1 + n % 4, 5),) if n % 2 else ()
        rows.append(
            RunRow(
                run_id=f"r-{(n * 7919) % 1009:04d}",
                workflow_id=f"wf-{n % 40:02d}",
                workflow_type=("Order", "Refund", "Report")[n % 3],
                task_queue="q",
                status=status,
                start_time=1_000_000 + (n // 4) * 1000,
                last_event_id=1 + n % 9,
                close_time=2_000_000 + (n // 6) * 500 if closed else None,
                search_attributes=attributes,
                activities=activities,
            )
        )
    store.write_batch(rows, TYPES, {})


def assert_pages_walk_like_one_query(store: Store, query: str, size: int = 7) -> None:
    """Walking every page forwards by keyset, then back again, meets exactly the rows of one
    ORDER BY query, each once, in the same order."""
    f = compile_filter(query, dialect=store.dialect, attribute_types=store.attribute_types())
    everything = [r.run_id for r in store.list_runs(f.where, f.params, f.order_by, limit=10_000)]
    assert everything, f"no run matches {query!r}: the check would prove nothing"
    pages = [store.page_runs(f.where, f.params, f.order, limit=size)]
    while pages[-1].next is not None:
        pages.append(store.page_runs(f.where, f.params, f.order, limit=size, after=pages[-1].next))
    walked = [r.run_id for page in pages for r in page.runs]
    assert walked == everything, query
    assert all(len(page.runs) == size for page in pages[:-1])
    assert pages[0].previous is None and all(page.previous for page in pages[1:])
    page = pages[-1]
    while page.previous is not None:
        start = everything.index(page.runs[0].run_id)
        page = store.page_runs(f.where, f.params, f.order, limit=size, before=page.previous)
        expected = everything[start - size : start] if start > size else everything[:size]
        assert [r.run_id for r in page.runs] == expected, query
        assert page.next is not None
