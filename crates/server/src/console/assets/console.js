// missive console: the only script. It adds conveniences; every page works without it.
// - A segment being typed is checked and counted as you type (the "Check and count" button
//   does the same without JavaScript).
"use strict";
(function () {
  const editor = document.querySelector("textarea[data-live-check]");
  if (!editor) return;
  const form = editor.form;
  const panel = document.getElementById("check-result");
  if (!form || !panel) return;
  let timer = null;
  let inFlight = null;
  editor.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 600);
  });
  function check() {
    if (inFlight) inFlight.abort();
    inFlight = new AbortController();
    const body = new URLSearchParams(new FormData(form));
    body.set("fragment", "1");
    panel.setAttribute("aria-busy", "true");
    fetch(editor.dataset.liveCheck, { method: "POST", body: body, signal: inFlight.signal, credentials: "same-origin" })
      .then(function (r) { return r.ok || r.status === 422 ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        // The server renders the fragment with every value escaped.
        panel.innerHTML = html;
        panel.removeAttribute("aria-busy");
      })
      .catch(function () { panel.removeAttribute("aria-busy"); });
  }
})();
