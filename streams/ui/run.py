"""The run page: one run's summary, what it waits on, where its code stands, its history.

    GET /runs/{workflow_id}                   303 to the workflow's latest run
    GET /runs/{workflow_id}/{run_id}          the page (?view=table|compact|timeline, ?from=N)
    GET /api/runs/{wf}/{run}/history          a page of events as JSON (?from=N&size=M)
    GET /runs/{wf}/{run}/history.jsonl|.avro  the whole history, streamed
    GET /live/runs/{wf}/{run}                 server-sent events: new events, status swaps,
                                              `end` once the run is closed and caught up

The history is read in pages (see `streams.ui.history_pages`), never whole, so a run of
50,000 events opens as fast as a short one; the table is a virtual list over those pages.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import fastavro
import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from streams.errors import EverflowError, RPCTimeoutError
from streams.ui.context import Ui
from streams.ui.history import (
    Frame,
    RecordedLocation,
    SourceLine,
    awaits,
    compact,
    event_rows,
    parse_stack,
    recorded_location,
    source_lines,
    timeline,
)
from streams.ui.run_model import PAGE_SIZE, RunFacts, RunLoader, RunView, build_view
from streams.wire import wire
from streams.wire.history_json import event_to_json

STACK_QUERY = "__stack_trace"
STACK_TIMEOUT = timedelta(seconds=3)
VIEWS = ("table", "compact", "timeline")
LIVE_POLL = 1.0  # seconds between looks at the run's history while a page listens
LIVE_PING = 15.0
MAX_PAGE = 1000


def routes(ui: Ui) -> list[BaseRoute]:
    pages = RunPages(ui)
    ui.on_close(pages.loader.reader.close)
    return [
        Route("/runs/{workflow_id:segment}", pages.latest),
        Route("/runs/{workflow_id:segment}/{run_id:segment}", pages.run_page),
        Route("/runs/{workflow_id:segment}/{run_id:segment}/history.jsonl", pages.download_json),
        Route("/runs/{workflow_id:segment}/{run_id:segment}/history.avro", pages.download_avro),
        Route("/api/runs/{workflow_id:segment}/{run_id:segment}/history", pages.history_api),
        Route("/live/runs/{workflow_id:segment}/{run_id:segment}", pages.live),
    ]


def run_path(workflow_id: str, run_id: str) -> str:
    return f"/runs/{quote(workflow_id, safe='')}/{quote(run_id, safe='')}"


class CurrentLine:
    """Where the code stands: the stack query's frames (a worker answered) or the location
    recorded with the latest command; with the source around it when this host has it."""

    def __init__(
        self,
        stack: list[list[Frame]] | None,
        recorded: RecordedLocation | None,
        error: str,
    ) -> None:
        self.stack = stack
        self.recorded = recorded
        self.error = error
        self.awaits = awaits(stack) if stack else []
        where = None
        if stack:
            inner = stack[0][-1]
            where = (inner.file, inner.line)
        elif recorded is not None:
            where = (recorded.source.file, recorded.source.line)
        self.source: list[SourceLine] = source_lines(*where) if where else []


class RunPages:
    """The run page's handlers, sharing one loader (and its Kafka consumers)."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.loader = RunLoader(ui)

    async def _facts(self, request: Request) -> RunFacts:
        wf, run = request.path_params["workflow_id"], request.path_params["run_id"]
        facts = await self.loader.facts(wf, run)
        if facts is None:
            raise HTTPException(
                404,
                f"no run {run} of workflow {wf}: neither the run index nor a worker knows it"
                " (a wrong ID, a run of another topic prefix, or its history is gone)",
            )
        return facts

    # ---- pages --------------------------------------------------------------------------------
    async def latest(self, request: Request) -> Response:
        wf = request.path_params["workflow_id"]
        run_id = await self.loader.latest_run(wf)
        if run_id is None:
            raise HTTPException(404, f"no run of workflow {wf} in the run index or on a worker")
        return RedirectResponse(run_path(wf, run_id), status_code=303)

    async def run_page(self, request: Request) -> Response:
        first = _query_int(request, "from", 1)
        facts = await self._facts(request)
        view_name = request.query_params.get("view", "table")
        view_name = view_name if view_name in VIEWS else "table"
        first = min(max(1, first), max(1, facts.history_length))
        first -= (first - 1) % PAGE_SIZE
        # asked at once, beside the reads: a run with no worker up costs the query's timeout
        asked = None
        if facts.status in ("Running", "Blocked"):
            asked = asyncio.create_task(self.ask_stack(facts))
        read = asyncio.gather(
            self.loader.view(facts),
            self.loader.events(facts, first, PAGE_SIZE),
        )
        children = await self.loader.children(facts)
        history_error = ""
        try:
            view, table = await read
        except EverflowError as e:  # no start found, a read timed out, the broker is down
            history_error = f"history unavailable: {e}"
            view = await asyncio.to_thread(build_view, facts, [], False, self.ui.converter)
            table = []
        current = await self.current_line(view, asked)
        now = int(time.time() * 1000)
        rows = await asyncio.to_thread(event_rows, table, self.ui.converter)
        context = {
            **self.run_context(view, current),
            "page": "run",
            "view_name": view_name,
            "children": children,
            "history_error": history_error,
            "rows": rows,
            "first": first,
            "page_size": PAGE_SIZE,
            "compact": compact(view.events) if view_name == "compact" else [],
            "timeline": timeline(view.events, now) if view_name == "timeline" else None,
            "done": request.query_params.get("done", ""),
            "error": request.query_params.get("error", ""),
        }
        return self.ui.page(request, "run.html", context)

    def run_context(self, view: RunView, current: CurrentLine | None) -> dict[str, Any]:
        """What run.html and its parts (and actions_run.html) read."""
        f = view.facts
        return {
            "run": view,
            "facts": f,
            "workflow_id": f.workflow_id,
            "run_id": f.run_id,
            "status": view.status,
            "pending_activities": view.activities,
            "paused_activities": view.paused,
            "history_length": view.history_length,
            "query_names": [],
            "current": current,
            "run_path": run_path(f.workflow_id, f.run_id),
            "duration": _duration(f.start_time, f.close_time),
        }

    async def ask_stack(self, facts: RunFacts) -> tuple[str, str]:
        """The stack query's answer, or "" and why there is none (short timeout)."""
        handle = self.ui.client.get_workflow_handle(facts.workflow_id, facts.run_id)
        try:
            text = await handle.query(STACK_QUERY, timeout=STACK_TIMEOUT)
        except RPCTimeoutError:
            return "", "no worker answered the stack query"
        except EverflowError as e:  # QueryError, WorkflowNotFoundError, a rejection
            return "", str(e)
        return (text if isinstance(text, str) else ""), ""

    async def current_line(
        self, view: RunView, asked: asyncio.Task[tuple[str, str]] | None
    ) -> CurrentLine:
        """The stack query's frames when the run is open and a worker answers, else the
        location recorded with the run's latest command."""
        recorded = recorded_location(view.events)
        if not view.open:
            if asked is not None:
                asked.cancel()
            return CurrentLine(None, recorded, "")
        text, error = await (asked if asked is not None else self.ask_stack(view.facts))
        stack = parse_stack(text)
        if not stack:
            return CurrentLine(None, recorded, error or "the code waits nowhere")
        return CurrentLine(stack, recorded, "")

    # ---- history --------------------------------------------------------------------------------
    async def history_api(self, request: Request) -> Response:
        """`{"history_length", "events": [{event_id, time, type, details, failed, json}]}`;
        past the run's length, no events (nothing is read)."""
        first = max(1, _query_int(request, "from", 1))
        size = min(max(1, _query_int(request, "size", PAGE_SIZE)), MAX_PAGE)
        facts = await self._facts(request)
        events: list[Any] = []
        if first <= facts.history_length:
            try:
                events = await self.loader.events(facts, first, size)
            except EverflowError as e:
                return JSONResponse({"error": f"history unavailable: {e}"}, status_code=503)
        length = max(facts.history_length, events[-1].event_id if events else 0)
        return JSONResponse(await self.history_message(events, length))

    async def _all_records(self, facts: RunFacts) -> AsyncIterator[list[tuple[int, bytes]]]:
        """The run's records in chunks. The first chunk is read before this returns (before
        a response's headers go out), so a history that cannot be read is a clear 503, not a
        cut-off file sent with 200."""
        try:
            records = await self.loader.records(facts, 1, 2000)
        except EverflowError as e:
            raise HTTPException(503, f"history unavailable: {e}") from e

        async def chunks() -> AsyncIterator[list[tuple[int, bytes]]]:
            nonlocal records
            first = 1
            while records:
                yield records
                first += len(records)
                records = await self.loader.records(facts, first, 2000)

        return chunks()

    async def download_json(self, request: Request) -> Response:
        """JSON lines as `everflow history export` writes them (readable + `raw`)."""
        facts = await self._facts(request)
        decode, converter = wire().event.decode, self.ui.converter

        def encoded(records: list[tuple[int, bytes]]) -> bytes:
            chunk = []
            for offset, raw in records:
                row = event_to_json(decode(raw), converter)
                row["offset"] = offset
                row["raw"] = base64.b64encode(raw).decode()
                chunk.append(orjson.dumps(row, default=str) + b"\n")
            return b"".join(chunk)

        chunks = await self._all_records(facts)

        async def lines() -> AsyncIterator[bytes]:
            async for records in chunks:
                yield await asyncio.to_thread(encoded, records)

        return StreamingResponse(
            lines(), media_type="application/x-ndjson", headers=_attachment(facts, "jsonl")
        )

    async def download_avro(self, request: Request) -> Response:
        """An Avro object container file with the HistoryEvent schema, written in blocks."""
        facts = await self._facts(request)
        codec = wire().event
        buffer = io.BytesIO()
        writer = fastavro.write.Writer(buffer, codec.schema)

        def block(records: list[tuple[int, bytes]]) -> bytes:
            for _, raw in records:
                writer.write(codec.to_record(codec.decode(raw)))
            writer.flush()
            data = buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            return data

        chunks = await self._all_records(facts)

        async def blocks() -> AsyncIterator[bytes]:
            async for records in chunks:
                yield await asyncio.to_thread(block, records)
            yield await asyncio.to_thread(block, [])

        return StreamingResponse(
            blocks(), media_type="application/avro", headers=_attachment(facts, "avro")
        )

    # ---- live ---------------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        """New events (`history`: the new length and rows) and swaps of the status badge and
        the cards when the run changes. Whenever the run has events past `seen` (the page's
        length) they are read first, so a run that closed before the stream connected (or
        before a reconnect) still shows its last events and its close; once the run is closed
        and caught up, an `end` event ends the stream (no connection held for a closed run)."""
        seen = _query_int(request, "seen", -1)
        facts = await self._facts(request)
        seen = facts.history_length if seen < 0 else min(seen, facts.history_length)

        async def stream() -> AsyncIterator[str]:
            nonlocal seen
            pinged = time.monotonic()
            yield ": listening\n\n"
            while not await request.is_disconnected():
                events: list[Any] = []
                try:
                    length = await self.loader.length_now(facts)  # (a close it sees, too)
                    closed = facts.status not in ("Running", "Blocked")
                    if length > seen:
                        size = min(length - seen, MAX_PAGE)
                        events = await self.loader.events(facts, seen + 1, size, length)
                    if events:
                        seen = events[-1].event_id
                        facts.history_length = max(facts.history_length, seen)
                        yield _message("history", await self.history_message(events, seen))
                        view = await self.loader.view(facts)
                        facts.status = view.status
                        closed = not view.open
                        children = await self.loader.children(facts)
                        yield _message("swap", self.swaps(request, view, children))
                        pinged = time.monotonic()
                        if seen < length:
                            continue  # more to catch up: at once
                except EverflowError:  # the broker or the index is away: look again shortly
                    closed = False
                if closed:  # caught up (or nothing more can be read): the run says no more
                    yield _message("end", {"status": facts.status})
                    return
                if time.monotonic() - pinged > LIVE_PING:
                    yield ": ping\n\n"
                    pinged = time.monotonic()
                await asyncio.sleep(LIVE_POLL)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def history_message(self, events: list[Any], length: int) -> dict[str, Any]:
        rows = await asyncio.to_thread(event_rows, events, self.ui.converter)
        return {"history_length": length, "events": [dataclasses.asdict(r) for r in rows]}

    def swaps(self, request: Request, view: RunView, children: list[Any]) -> list[dict[str, str]]:
        context = {**self.run_context(view, None), "children": children}
        parts = [
            ("run-status", "run_status.html"),
            ("run-summary", "run_summary.html"),
            ("run-pending", "run_pending.html"),
            ("run-waits", "run_waits.html"),
            ("run-actions", "run_actions.html"),
        ]
        if not view.open:
            context["current"] = CurrentLine(None, recorded_location(view.events), "")
            parts.append(("run-current", "run_current.html"))
        return [{"id": i, "html": self.ui.fragment(request, t, context)} for i, t in parts]


def _message(name: str, data: object) -> str:
    return f"event: {name}\ndata: {orjson.dumps(data, default=str).decode()}\n\n"


def _query_int(request: Request, name: str, default: int) -> int:
    """A query parameter of ASCII digits (at most 18: it fits SQL's BIGINT), else 400."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdecimal() and len(value) <= 18):
        raise HTTPException(400, f"{name}={value!r} is not a whole number of at most 18 digits")
    return int(value)


def _duration(start: int, close: int | None) -> float:
    end = close if close is not None else int(time.time() * 1000)
    return max(0.0, (end - start) / 1000)


def _attachment(facts: RunFacts, ext: str) -> dict[str, str]:
    name = quote(f"{facts.workflow_id}-{facts.run_id}.{ext}", safe="")
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{name}"}
