// The runs page: names suggested as you type a filter, and views saved in this browser.
// The page works without it (a <datalist> and a help line name the fields; views are links).
"use strict";

(() => {
  const WORD = /[A-Za-z0-9_]/;

  // ---- suggestions: complete the name at the caret ------------------------------------------
  const setUpSuggestions = (input, list) => {
    const names = (input.dataset.names || "").split(" ").filter(Boolean);
    input.removeAttribute("list"); // this list replaces the browser's datalist
    let active = -1;
    let shown = [];

    const tokenAtCaret = () => {
      const text = input.value;
      const caret = input.selectionStart ?? text.length;
      let start = caret;
      while (start > 0 && WORD.test(text[start - 1])) start -= 1;
      let end = caret;
      while (end < text.length && WORD.test(text[end])) end += 1;
      const quotes = (text.slice(0, start).match(/['"]/g) || []).length;
      return { start, end, prefix: text.slice(start, caret), inString: quotes % 2 === 1 };
    };

    const hide = () => {
      list.hidden = true;
      list.replaceChildren();
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
      shown = [];
    };

    const mark = () => {
      Array.from(list.children).forEach((li, i) => li.setAttribute("aria-selected", String(i === active)));
      if (active >= 0) input.setAttribute("aria-activedescendant", list.children[active].id);
    };

    const update = () => {
      const { prefix, inString } = tokenAtCaret();
      const lower = prefix.toLowerCase();
      shown = !prefix || inString || /^\d/.test(prefix) ? [] :
        names.filter((n) => n.toLowerCase().startsWith(lower) && n !== prefix).slice(0, 8);
      if (!shown.length) return hide();
      list.replaceChildren(...shown.map((name, i) => {
        const li = document.createElement("li");
        li.id = `runs-suggestion-${i}`;
        li.setAttribute("role", "option");
        li.textContent = name;
        li.addEventListener("mousedown", (e) => { e.preventDefault(); complete(name); });
        return li;
      }));
      active = 0;
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      mark();
    };

    const complete = (name) => {
      const { start, end } = tokenAtCaret();
      const text = input.value;
      const after = text.slice(end);
      const space = after.startsWith(" ") ? "" : " ";
      input.value = text.slice(0, start) + name + space + after;
      const caret = start + name.length + space.length;
      input.setSelectionRange(caret, caret);
      hide();
      input.focus();
    };

    input.addEventListener("input", update);
    input.addEventListener("click", update);
    input.addEventListener("blur", () => setTimeout(hide, 100));
    input.addEventListener("keydown", (e) => {
      if (list.hidden) return;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        const step = e.key === "ArrowDown" ? 1 : -1;
        active = (active + step + shown.length) % shown.length;
        mark();
      } else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) {
        e.preventDefault();
        complete(shown[active]);
      } else if (e.key === "Escape") {
        e.preventDefault();
        hide();
      }
    });
  };

  // ---- saved views: named filters kept in localStorage ----------------------------------------
  const setUpSavedViews = (page, form, box) => {
    const key = `everflow.views.${page.dataset.prefix || ""}`;
    const load = () => {
      try { return JSON.parse(localStorage.getItem(key) || "[]"); } catch { return []; }
    };
    const store = (views) => localStorage.setItem(key, JSON.stringify(views));
    const render = () => {
      box.replaceChildren(...load().map((view) => {
        const wrap = document.createElement("span");
        wrap.className = "chip view saved";
        const link = document.createElement("a");
        link.href = `/${view.search}`;
        link.textContent = view.name;
        if (view.search === currentSearch()) link.setAttribute("aria-current", "true");
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "delete";
        remove.textContent = "×";
        remove.title = `Delete the view ${view.name}`;
        remove.setAttribute("aria-label", `Delete the view ${view.name}`);
        remove.addEventListener("click", () => {
          store(load().filter((v) => v.name !== view.name));
          render();
        });
        wrap.append(link, remove);
        return wrap;
      }));
    };
    const currentSearch = () => {
      const params = new URLSearchParams(location.search);
      params.delete("after");
      params.delete("before");
      const text = params.toString();
      return text ? `?${text}` : "";
    };
    form.hidden = false;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const name = form.elements.name.value.trim();
      if (!name) return;
      store([...load().filter((v) => v.name !== name), { name, search: currentSearch() }]);
      form.reset();
      render();
    });
    render();
  };

  document.addEventListener("DOMContentLoaded", () => {
    const input = document.getElementById("runs-q");
    const list = document.getElementById("runs-suggestions");
    if (input && list) setUpSuggestions(input, list);
    const page = document.getElementById("runs-page");
    const form = document.getElementById("save-view");
    const box = document.getElementById("saved-views");
    if (page && form && box && window.localStorage) setUpSavedViews(page, form, box);
  });
})();
