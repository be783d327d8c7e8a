"""The runs page (`/`): every run the index has, filtered, counted per status, sorted, paged.

- `GET /`: a filter box (the list filter language, its names suggested as you type), saved
  views, status chips with counts, the table of runs, keyset pages (First / Previous /
  Next), the batch actions over the current filter. A filter that does not compile is shown
  next to the box with its caret (status 400); the page still renders.
- `GET /live/runs?<same parameters>`: server-sent events; about once a second the page's
  chips and table are re-rendered if the index has moved, and sent as `swap` events.
- `GET /api/runs?<same parameters>`: the same page as JSON (rows, next and previous cursors).

Parameters: `q` (the filter, may hold ORDER BY), `status` (a chip: the filter AND
`ExecutionStatus = '<status>'`), `sort` (a column's filter name, `-` in front for
descending; replaces the filter's ORDER BY), `after` / `before` (a page cursor), `size`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from streams.errors import FilterError, VisibilityUnavailableError
from streams.ui.context import Ui
from streams.visibility.query import BUILTINS, STATUSES, compile_filter
from streams.visibility.records import WorkflowCount, WorkflowExecution
from streams.visibility.store import Cursor, RunPage, Store
from streams.visibility.syntax import parse_filter, tokenize

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
POLL_SECONDS = 1.0
PING_SECONDS = 15.0

COLUMNS = (
    ("ExecutionStatus", "Status"),
    ("WorkflowId", "Workflow ID"),
    ("RunId", "Run ID"),
    ("WorkflowType", "Type"),
    ("StartTime", "Start (UTC)"),
    ("CloseTime", "End (UTC)"),
    ("ExecutionDuration", "Duration"),
    ("HistoryLength", "History"),
    ("TaskQueue", "Task queue"),
    ("ActivityAttempt", "Attempt"),
)
"""The table's columns: the filter name each sorts by, and its heading."""


@dataclass(frozen=True, slots=True)
class RunsView:
    """What the page shows, as its URL says: the filter, a status chip, a sort, a cursor."""

    q: str = ""
    status: str = ""
    sort: str = ""
    after: str = ""
    before: str = ""
    size: int = PAGE_SIZE

    @staticmethod
    def from_params(params: Mapping[str, str]) -> RunsView:
        status = params.get("status", "")
        sort = params.get("sort", "")
        try:
            size = min(MAX_PAGE_SIZE, max(1, int(params.get("size", PAGE_SIZE))))
        except ValueError:
            size = PAGE_SIZE
        return RunsView(
            q=params.get("q", "").strip(),
            status=status if status in STATUSES else "",
            sort=sort if sort.lstrip("-") in dict(COLUMNS) else "",
            after=params.get("after", ""),
            before=params.get("before", ""),
            size=size,
        )

    def params(self, **changes: str) -> str:
        """This view's URL parameters (`?q=...`), with `changes`; empty ones left out."""
        values = {"q": self.q, "status": self.status, "sort": self.sort,
                  "after": self.after, "before": self.before,
                  "size": "" if self.size == PAGE_SIZE else str(self.size)}  # fmt: skip
        values.update(changes)
        kept = {k: v for k, v in values.items() if v}
        return "?" + urlencode(kept) if kept else "?"

    @property
    def condition(self) -> str:
        """The filter's condition with the status chip's, without any ORDER BY."""
        where, _ = split_order(self.q)
        if not self.status:
            return where
        chip = f"ExecutionStatus = '{self.status}'"
        return f"({where}) AND {chip}" if where else chip

    @property
    def query(self) -> str:
        """The whole filter the table lists: the condition, then the sort (or q's ORDER BY)."""
        _, order = split_order(self.q)
        if self.sort:
            name = self.sort.lstrip("-")
            order = f"ORDER BY {name} {'DESC' if self.sort.startswith('-') else 'ASC'}"
        return " ".join(part for part in (self.condition, order) if part)


def split_order(query: str) -> tuple[str, str]:
    """`query` as its condition and its `ORDER BY ...` part (either may be empty)."""
    try:
        tokens = tokenize(query)
    except FilterError:
        return query.strip(), ""  # compiling it reports the error, with its caret
    for token in tokens:
        if token.kind == "keyword" and token.value == "ORDER":
            return query[: token.position].strip(), query[token.position :].strip()
    return query.strip(), ""


def current_sort(view: RunsView) -> tuple[str, bool] | None:
    """The column the rows are sorted by first and whether descending (None: the default)."""
    if view.sort:
        return view.sort.lstrip("-"), view.sort.startswith("-")
    try:
        items = parse_filter(view.q).order_by
    except FilterError:
        return None
    return (items[0].name.name, items[0].descending) if items else None


@dataclass(frozen=True, slots=True)
class Listing:
    """What the index answered for a view."""

    page: RunPage
    counts: WorkflowCount  # of the filter's condition without the status chip
    names: list[str]  # built-in names and the index's custom search attributes

    @property
    def matching(self) -> int:
        return self.counts.count

    def total(self, view: RunsView) -> int:
        """How many runs the view lists (its status chip's count, or all)."""
        return self.counts.groups.get(view.status, 0) if view.status else self.counts.count


class StatusCounts:
    """The chips' counts per filter, kept while the index has not moved.

    Counting a filter's runs per status reads every match (some 200 ms at a million runs),
    while a page reads 50 rows from an index: so counts are reused until the index moves
    (its change mark), and while it keeps moving, for at most `fresh_for` seconds.
    Requests count from several threads at once: the kept counts are read and changed under
    a lock (counting itself runs outside it)."""

    def __init__(self, fresh_for: float = 5.0, size: int = 64) -> None:
        self.fresh_for = fresh_for
        self.size = size
        self._kept: dict[tuple[str, str], tuple[int, float, WorkflowCount]] = {}
        self._lock = threading.Lock()

    def count(self, store: Store, where: str, params: tuple[object, ...]) -> WorkflowCount:
        mark, now = store.change_mark(), time.monotonic()
        key = (where, repr(params))  # a parameter may be a list (PostgreSQL's ?| operand)
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None and (kept[0] == mark or now - kept[1] < self.fresh_for):
            return kept[2]
        counts = store.count_runs(where, params, group_by_status=True)
        with self._lock:
            self._kept.pop(key, None)
            while len(self._kept) >= self.size:
                self._kept.pop(next(iter(self._kept)))
            self._kept[key] = (mark, now, counts)
        return counts


def read_listing(store: Store, view: RunsView, counts: StatusCounts | None = None) -> Listing:
    """The view's page, counts and names, from the index (blocking: call in a thread).

    Raises FilterError for a filter that does not compile, ValueError for a bad cursor."""
    types = store.refresh_attribute_types()
    listed = compile_filter(view.query, dialect=store.dialect, attribute_types=types)
    where, _ = split_order(view.q)
    counted = compile_filter(where, dialect=store.dialect, attribute_types=types)
    after = Cursor.decode(view.after) if view.after else None
    before = Cursor.decode(view.before) if view.before and not after else None
    page = store.page_runs(
        listed.where, listed.params, listed.order, limit=view.size, after=after, before=before
    )
    if counts is None:
        found = store.count_runs(counted.where, counted.params, group_by_status=True)
    else:
        found = counts.count(store, counted.where, counted.params)
    return Listing(page, found, [*BUILTINS, *sorted(types)])


def saved_views(now: datetime) -> list[tuple[str, str]]:
    """The built-in views: (label, filter)."""
    day_ago = (now - timedelta(days=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:00Z")
    today = now.astimezone(UTC).strftime("%Y-%m-%dT00:00:00Z")
    return [
        ("All", ""),
        ("Running", "ExecutionStatus = 'Running'"),
        ("Blocked", "Blocked = true"),
        ("Retrying", "ActivityAttempt >= 2"),
        ("Failed (24 h)", f"ExecutionStatus = 'Failed' AND CloseTime > '{day_ago}'"),
        ("Today (UTC)", f"StartTime >= '{today}'"),
    ]


def run_link(run: WorkflowExecution) -> str:
    return f"/runs/{quote(run.workflow_id, safe='')}/{quote(run.run_id, safe='')}"


def render_context(view: RunsView, listing: Listing | None, error: str = "") -> dict[str, Any]:
    """What the page's templates need (the whole page and the swapped parts alike)."""
    page = listing.page if listing is not None else RunPage([], None, None)
    paged = bool(view.after or view.before)
    previous, after = page.previous, page.next
    return {
        "view": view,
        "error": error,
        "runs": page.runs,
        "headings": headings(view),
        "chips": chips(view, listing),
        "first_href": view.params(after="", before="") if paged else "",
        "previous_href": view.params(after="", before=previous.encode()) if previous else "",
        "next_href": view.params(before="", after=after.encode()) if after else "",
        "run_link": run_link,
        "query": view.condition,
        "total": listing.total(view) if listing is not None else 0,
        "names": listing.names if listing is not None else list(BUILTINS),
        "statuses": STATUSES,
        "live_url": "/live/runs" + view.params(),
        "views": [
            {
                "label": label,
                "href": RunsView(q=q).params(),
                "current": (view.q, view.status, view.sort) == (q, "", ""),
            }
            for label, q in saved_views(datetime.now(UTC))
        ],
    }


def headings(view: RunsView) -> list[dict[str, str]]:
    """Each column's heading: its link sorts by it (descending first, then ascending)."""
    sorted_by = current_sort(view)
    out = []
    for name, label in COLUMNS:
        descending, ascending = sorted_by == (name, True), sorted_by == (name, False)
        aria = "descending" if descending else "ascending" if ascending else "none"
        href = view.params(sort=name if descending else f"-{name}", after="", before="")
        out.append({"name": name, "label": label, "href": href, "sort": aria})
    return out


def chips(view: RunsView, listing: Listing | None) -> list[dict[str, Any]]:
    """ "All" and one chip per status, with the filter's counts; the view's is current."""
    if listing is None:
        return []
    found = [{"label": "All", "count": listing.matching, "current": not view.status,
              "status": "", "href": view.params(status="", after="", before="")}]  # fmt: skip
    for status in STATUSES:
        found.append({
            "label": status,
            "count": listing.counts.groups.get(status, 0),
            "current": view.status == status,
            "status": status,
            "href": view.params(status=status, after="", before=""),
        })  # fmt: skip
    return found


def routes(ui: Ui) -> list[BaseRoute]:
    """The runs page, its live stream and its JSON twin."""
    counts = StatusCounts()

    async def listing_of(view: RunsView) -> tuple[Listing | None, str]:
        try:
            # opening the index may wait on the database: in the thread too, never on the loop
            return await asyncio.to_thread(lambda: read_listing(ui.store(), view, counts)), ""
        except FilterError as e:
            return None, str(e)
        except ValueError as e:  # a cursor that is not one (or of another order)
            return None, str(e)

    async def runs_page(request: Request) -> Response:
        view = RunsView.from_params(request.query_params)
        listing, error = await listing_of(view)
        context = render_context(view, listing, error)
        return ui.page(request, "runs.html", {"page": "runs", **context}, 400 if error else 200)

    async def runs_api(request: Request) -> Response:
        params = dict(request.query_params)
        if "cursor" in params:
            params.setdefault("after", params["cursor"])
        view = RunsView.from_params(params)
        try:
            listing, error = await listing_of(view)
        except VisibilityUnavailableError as e:
            return JSONResponse({"error": str(e), "query": view.query}, status_code=503)
        if listing is None:
            return JSONResponse({"error": error, "query": view.query}, status_code=400)
        page = listing.page
        return JSONResponse({
            "query": view.query,
            "runs": [run_json(r) for r in page.runs],
            "next": page.next.encode() if page.next else None,
            "previous": page.previous.encode() if page.previous else None,
            "total": listing.total(view),
            "counts": listing.counts.groups,
        })  # fmt: skip

    async def runs_live(request: Request) -> Response:
        view = RunsView.from_params(request.query_params)
        return StreamingResponse(
            live_updates(ui, request, view, counts),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return [
        Route("/", runs_page),
        Route("/api/runs", runs_api),
        Route("/live/runs", runs_live),
    ]


async def live_updates(
    ui: Ui, request: Request, view: RunsView, counts: StatusCounts
) -> AsyncIterator[str]:
    """The page's chips and table, re-rendered and sent (`swap`) when the index moved; at
    most one update a second, a ping comment every 15 s, until the page goes away. Without
    an index: one `end` event saying so, and the stream ends (rather than the browser
    reconnecting every few seconds)."""
    try:
        store = await asyncio.to_thread(ui.store)
    except VisibilityUnavailableError as e:
        yield f"event: end\ndata: {json.dumps({'message': str(e)})}\n\n"
        return
    mark = -1  # render once at the start: the index may have moved since the page was made
    sent: dict[str, str] = {}
    pinged = settling = time.monotonic()
    yield ": live\n\n"
    while not await request.is_disconnected():
        await asyncio.sleep(POLL_SECONDS)
        now = await asyncio.to_thread(store.change_mark)
        if now != mark:
            # counts may be reused for a few seconds: render again until they are current
            mark, settling = now, time.monotonic() + counts.fresh_for + POLL_SECONDS
        if time.monotonic() <= settling:
            listing, error = await asyncio.to_thread(_listing_or_error, store, view, counts)
            context = render_context(view, listing, error)
            parts = []
            for element, template in (("runs-chips", "runs_chips.html"),
                                      ("runs-list", "runs_table.html")):  # fmt: skip
                html = ui.fragment(request, template, context)
                if sent.get(element) != html:
                    sent[element] = html
                    parts.append({"id": element, "html": html})
            if parts:
                yield f"event: swap\ndata: {json.dumps(parts)}\n\n"
                pinged = time.monotonic()
        if time.monotonic() - pinged > PING_SECONDS:
            pinged = time.monotonic()
            yield ": ping\n\n"


def _listing_or_error(
    store: Store, view: RunsView, counts: StatusCounts
) -> tuple[Listing | None, str]:
    try:
        return read_listing(store, view, counts), ""
    except (FilterError, ValueError) as e:
        return None, str(e)


def run_json(run: WorkflowExecution) -> dict[str, object]:
    """A listed run as JSON (instants ISO 8601 UTC, the duration in milliseconds)."""
    duration = run.execution_duration
    return {
        "workflow_id": run.workflow_id,
        "run_id": run.run_id,
        "workflow_type": run.workflow_type,
        "task_queue": run.task_queue,
        "status": run.status,
        "start_time": run.start_time.isoformat(),
        "close_time": run.close_time.isoformat() if run.close_time else None,
        "execution_duration_ms": duration // timedelta(milliseconds=1) if duration else None,
        "history_length": run.history_length,
        "pending_activities": run.pending_activity_count,
        "max_attempt": run.max_attempt,
        "parent_workflow_id": run.parent_workflow_id,
        "parent_run_id": run.parent_run_id,
        "search_attributes": {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in run.search_attributes.items()
        },
        "url": run_link(run),
    }
