// Everflow Web UI: the shared behaviour of every page. Written for this project; no
// library, nothing fetched at run time. Pages work without it; it adds:
// - live parts: an element with data-live="URL" listens to server-sent events there; an
//   event "swap" carries {"id", "html"} (or a list of them) and replaces that element,
//   "append" adds html at the end of the element with that id; inside a replaced element,
//   a non-empty element with data-keep and an id keeps its content; "end" closes the
//   stream (the server has no more to say: no reconnect);
// - countdowns: data-countdown-to="<epoch ms>" reads "in 12 s", then "due";
// - confirmations: a form with data-confirm="question" asks first (a <dialog>); with
//   data-result="ID" it is sent in the background and the answer shown in that element;
// - the CSRF token on every request the scripts make (X-Everflow-CSRF).
"use strict";

const EF = (() => {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  const parse = (html) => {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  };

  // A live swap never wipes what the user is reading: an element marked data-keep (an
  // action's answer, say) keeps its content in the new HTML when an element with its id is
  // there.
  const carry = (old, content) => {
    old.querySelectorAll("[data-keep][id]").forEach((kept) => {
      if (!kept.innerHTML.trim()) return;
      const twin = content.querySelector(`#${CSS.escape(kept.id)}`);
      if (!twin) return;
      twin.innerHTML = kept.innerHTML;
      twin.className = kept.className;
    });
  };

  // Nor does it throw away what the user is typing: while a field inside the element has
  // focus or holds an edit, the swap waits (the newest HTML is kept) until the field is
  // left unedited or its form was sent.
  const busy = (el) => {
    const active = document.activeElement;
    if (active && el.contains(active) && active.matches("input, textarea, select")) return true;
    return Array.from(el.querySelectorAll("input:not([type=hidden]), textarea"))
      .some((field) => field.value !== field.defaultValue);
  };

  const flush = (el, force) => {
    const holder = el && el.closest ? el.closest("[data-pending-swap]") : null;
    if (!holder || (!force && busy(holder))) return;
    const html = holder.efPending;
    holder.removeAttribute("data-pending-swap");
    holder.efPending = null;
    replace(holder.id, html);
  };

  const replace = (id, html) => {
    const old = document.getElementById(id);
    if (!old) return;
    if (busy(old)) {
      old.efPending = html;
      old.setAttribute("data-pending-swap", "");
      return;
    }
    const content = parse(html);
    carry(old, content);
    const fresh = content.firstElementChild;
    old.replaceWith(content);
    if (fresh) enhance(fresh);
    document.dispatchEvent(new CustomEvent("ef:swapped", { detail: { id } }));
  };

  const append = (id, html) => {
    const box = document.getElementById(id);
    if (!box) return;
    const content = parse(html);
    const added = Array.from(content.children);
    box.append(content);
    added.forEach(enhance);
    document.dispatchEvent(new CustomEvent("ef:appended", { detail: { id } }));
  };

  const each = (data, fn) => (Array.isArray(data) ? data : [data]).forEach(fn);

  const live = (url, handlers = {}) => {
    const source = new EventSource(url);
    source.addEventListener("swap", (e) => each(JSON.parse(e.data), (p) => replace(p.id, p.html)));
    source.addEventListener("append", (e) => each(JSON.parse(e.data), (p) => append(p.id, p.html)));
    source.addEventListener("end", () => source.close());
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => fn(JSON.parse(e.data), e));
    }
    source.addEventListener("error", () => document.body.classList.add("offline"));
    source.addEventListener("open", () => document.body.classList.remove("offline"));
    return source;
  };

  const spoken = (ms) => {
    const s = Math.round(Math.abs(ms) / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    const h = Math.floor(m / 60);
    if (h < 24) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  };

  const tick = () => {
    const now = Date.now();
    document.querySelectorAll("[data-countdown-to]").forEach((el) => {
      const left = Number(el.dataset.countdownTo) - now;
      el.textContent = left > 0 ? `in ${spoken(left)}` : (el.dataset.countdownDone || "due now");
    });
  };

  const ask = (question) =>
    new Promise((resolve) => {
      const dialog = document.getElementById("confirm-dialog");
      if (!dialog || !dialog.showModal) {
        resolve(window.confirm(question));
        return;
      }
      dialog.querySelector(".confirm-message").textContent = question;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });

  const post = async (url, body) => {
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: { "X-Everflow-CSRF": csrf(), Accept: "text/html" },
      credentials: "same-origin",
    });
    return { ok: response.ok, html: await response.text() };
  };

  const onSubmit = async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("[data-confirm], [data-result]")) return;
    event.preventDefault();
    if (form.dataset.confirm && !(await ask(form.dataset.confirm))) return;
    if (!form.dataset.result) {
      form.submit();
      return;
    }
    // the answer's element is looked up when the answer is there: a live swap that came
    // first (the change the action made, shown before its answer) replaced the old one
    const target = () => document.getElementById(form.dataset.result);
    const button = form.querySelector("button[type=submit], button:not([type])");
    if (button) button.disabled = true;
    try {
      const { ok, html } = await post(form.action, new FormData(form));
      const out = target();
      if (out) {
        out.innerHTML = html;
        out.classList.toggle("failed", !ok);
      }
      const from = form.isConnected ? form : document;
      from.dispatchEvent(new CustomEvent("ef:done", { bubbles: true, detail: { ok } }));
    } catch (err) {
      const out = target();
      if (out) out.textContent = `The server did not answer: ${err}`;
    } finally {
      if (button) button.disabled = false;
    }
  };

  const enhance = (root) => {
    if (!(root instanceof Element)) return;
    const scope = [root, ...root.querySelectorAll("[data-live]")];
    scope.filter((el) => el.dataset && el.dataset.live && !el.efLive).forEach((el) => {
      el.efLive = live(el.dataset.live);
    });
    tick();
  };

  document.addEventListener("submit", onSubmit);
  document.addEventListener("focusout", (e) => setTimeout(() => flush(e.target, false), 0));
  document.addEventListener("ef:done", (e) => {
    if (e.detail && e.detail.ok) flush(e.target, true);
  });
  document.addEventListener("DOMContentLoaded", () => {
    enhance(document.body);
    setInterval(tick, 1000);
  });

  return { csrf, live, replace, append, enhance, ask, post, spoken, tick };
})();
window.EF = EF;
