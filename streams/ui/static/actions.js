// Actions on runs: JSON argument boxes say at once when what was typed is not JSON, and the
// form is not sent until it is (the server checks again). Written for this project.
"use strict";

(() => {
  if (window.EFActions) return; // included by more than one part of a page
  window.EFActions = true;

  const check = (box) => {
    const text = box.value.trim();
    let message = "";
    if (text) {
      try {
        JSON.parse(text);
      } catch (err) {
        message = `Not valid JSON (${err.message}). Quote text: "alice"; several arguments: ["alice", 3]`;
      }
    }
    box.setCustomValidity(message);
    let note = box.parentElement.querySelector(".json-error");
    if (message && !note) {
      note = document.createElement("p");
      note.className = "json-error";
      note.setAttribute("role", "alert");
      box.insertAdjacentElement("afterend", note);
    }
    if (note) note.textContent = message;
  };

  document.addEventListener("input", (event) => {
    if (event.target instanceof HTMLTextAreaElement && event.target.matches("textarea[data-json]")) {
      check(event.target);
    }
  });
})();
