// The run page: the history table as a virtual list (only the rows in view exist; pages of
// events are fetched as they come into view), and live updates of the run (new events,
// status and cards swapped) over server-sent events. Without this script the page reads
// the same with plain pagination links.
"use strict";

(() => {
  const ROW = 28; // px: every row of the virtual list has this height
  const OVERSCAN = 20; // rows rendered above and below the visible ones

  const page = document.getElementById("run-page");
  if (!page) return;
  const api = page.dataset.historyApi;
  let length = Number(page.dataset.historyLength) || 0;

  const rows = new Map(); // event ID -> {event_id, time, type, details, failed, json}
  const loading = new Set(); // first event IDs of pages being fetched
  const fetched = new Map(); // first event ID of a page -> when it may be fetched again (ms)
  const RETRY = 5000; // ms before a page that came back short (or failed) is asked again
  let pageSize = 200;
  let list = null;

  const time = (ms) => new Date(ms).toISOString().replace("T", " ").replace("Z", "");

  // A page is asked once; one that came back short or failed is asked again only after
  // RETRY (a render never fetches it again at once, in a loop).
  const fetchPage = async (first) => {
    if (loading.has(first) || (fetched.get(first) || 0) > Date.now()) return;
    loading.add(first);
    fetched.set(first, Date.now() + RETRY);
    try {
      const response = await fetch(`${api}?from=${first}&size=${pageSize}`, { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      data.events.forEach((e) => rows.set(e.event_id, e));
      if (data.history_length > length) setLength(data.history_length);
      render();
    } finally {
      loading.delete(first);
      const last = Math.min(length, first + pageSize - 1);
      for (let id = first; id <= last; id += 1) {
        if (!rows.has(id)) { setTimeout(render, RETRY + 100); break; } // short: look later
      }
    }
  };

  const rowElement = (id) => {
    const e = rows.get(id);
    const div = document.createElement("div");
    div.className = "vrow" + (e && e.failed ? " failed" : "");
    div.style.top = `${(id - 1) * ROW}px`;
    div.dataset.eventId = String(id);
    const cells = e ? [String(id), time(e.time), e.type, e.details] : [String(id), "", "loading…", ""];
    cells.forEach((text, i) => {
      const span = document.createElement("span");
      span.className = ["c-id mono", "c-time mono", "c-type", "c-details"][i];
      span.textContent = text;
      div.append(span);
    });
    if (e) div.tabIndex = 0;
    return div;
  };

  const render = () => {
    if (!list) return;
    const { viewport, canvas } = list;
    const top = viewport.scrollTop;
    const first = Math.max(1, Math.floor(top / ROW) + 1 - OVERSCAN);
    const last = Math.min(length, Math.ceil((top + viewport.clientHeight) / ROW) + OVERSCAN);
    const want = new Set();
    for (let id = first; id <= last; id += 1) {
      want.add(id);
      if (!rows.has(id)) {
        const pageFirst = id - ((id - 1) % pageSize);
        fetchPage(pageFirst);
      }
    }
    canvas.querySelectorAll(".vrow").forEach((el) => {
      const id = Number(el.dataset.eventId);
      const stale = el.dataset.loaded !== "1" && rows.has(id);
      if (!want.has(id) || stale) el.remove();
      else want.delete(id);
    });
    want.forEach((id) => {
      const el = rowElement(id);
      if (rows.has(id)) el.dataset.loaded = "1";
      canvas.append(el);
    });
  };

  const atEnd = () => list && list.viewport.scrollTop + list.viewport.clientHeight >= list.viewport.scrollHeight - 2 * ROW;

  const setLength = (n) => {
    const follow = atEnd();
    length = n;
    if (list) {
      list.canvas.style.height = `${length * ROW}px`;
      list.viewport.style.height = `${Math.min(length * ROW + 2, Math.round(window.innerHeight * 0.6))}px`;
    }
    const count = document.getElementById("history-count");
    if (count) count.textContent = String(length);
    if (list) list.summary.textContent = `${length} events`;
    if (follow && list) list.viewport.scrollTop = list.viewport.scrollHeight;
  };

  const showDetail = (id) => {
    const e = rows.get(id);
    if (!e || !list) return;
    list.detail.hidden = false;
    list.detailTitle.textContent = `Event ${id}: ${e.type}`;
    list.detailBody.textContent = e.json;
  };

  const build = () => {
    const box = document.getElementById("history-table");
    if (!box) return;
    pageSize = Number(box.dataset.pageSize) || 200;
    box.querySelectorAll("tbody tr").forEach((tr) => {
      const cells = tr.querySelectorAll("td");
      const id = Number(cells[0].textContent);
      const pre = tr.querySelector("pre");
      rows.set(id, {
        event_id: id, time: Date.parse(cells[1].textContent.replace(" ", "T") + "Z"),
        type: cells[2].textContent, details: tr.querySelector("summary").textContent,
        failed: tr.classList.contains("failed"), json: pre ? pre.textContent : "",
      });
    });
    box.innerHTML = "";
    box.classList.add("virtual");
    const head = document.createElement("div");
    head.className = "vhead";
    ["ID", "Time (UTC)", "Type", "Details"].forEach((t) => {
      const span = document.createElement("span");
      span.textContent = t;
      head.append(span);
    });
    const summary = document.createElement("span");
    summary.className = "muted vsummary";
    const viewport = document.createElement("div");
    viewport.className = "vviewport";
    viewport.tabIndex = 0;
    viewport.setAttribute("aria-label", "history events");
    const canvas = document.createElement("div");
    canvas.className = "vcanvas";
    viewport.append(canvas);
    const detail = document.createElement("div");
    detail.className = "vdetail";
    detail.hidden = true;
    const detailTitle = document.createElement("h3");
    const detailBody = document.createElement("pre");
    detail.append(detailTitle, detailBody);
    box.append(summary, head, viewport, detail);
    list = { viewport, canvas, summary, detail, detailTitle, detailBody };
    setLength(length);
    const firstShown = Number(box.dataset.first) || 1;
    viewport.scrollTop = (firstShown - 1) * ROW;
    let queued = false;
    viewport.addEventListener("scroll", () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; render(); });
    });
    canvas.addEventListener("click", (ev) => {
      const row = ev.target.closest(".vrow");
      if (row) showDetail(Number(row.dataset.eventId));
    });
    canvas.addEventListener("keydown", (ev) => {
      const row = ev.target.closest(".vrow");
      if (row && ev.key === "Enter") showDetail(Number(row.dataset.eventId));
    });
    render();
  };

  const onHistory = (data) => {
    data.events.forEach((e) => rows.set(e.event_id, e));
    if (data.history_length > length) setLength(data.history_length);
    render();
  };

  document.addEventListener("DOMContentLoaded", () => {
    build();
    if (page.dataset.liveUrl) page.efLive = EF.live(page.dataset.liveUrl, { history: onHistory });
  });
})();
