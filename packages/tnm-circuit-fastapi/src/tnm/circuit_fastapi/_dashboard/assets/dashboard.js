// tnm-circuit dashboard: re-reads the live part of the page by short polling.
// The page works without this script (the browser reloads it); this only makes it live.
"use strict";
(function () {
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  if (!live || !status) return;
  var every = Number(live.getAttribute("data-refresh-ms")) || 1000;
  var timer = null;

  function show(text, ok) {
    status.textContent = text;
    status.className = "live-status " + (ok ? "ok" : "lost");
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, every);
  }

  function editing() {
    // An operator filling in a policy form: redrawing the table would throw the input away.
    return live.querySelector("details[open]") !== null;
  }

  function refresh() {
    if (document.hidden || editing()) return schedule();
    // The server escapes every name and reason in this fragment.
    fetch("live", { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (editing()) return; // a form was opened while this was on its way: keep it
        live.innerHTML = html;
        show("Live: updated every " + every / 1000 + " s", true);
      })
      .catch(function (error) {
        show("Connection lost (" + error.message + "); retrying", false);
      })
      .then(schedule);
  }

  // Operator buttons (only present when the app allows them): post without leaving the page.
  live.addEventListener("submit", function (event) {
    var form = event.target;
    event.preventDefault();
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    var opened = form.closest("details");
    fetch(form.action, {
      method: "POST",
      headers: { Accept: "application/json" },
      body: new URLSearchParams(new FormData(form)),
    })
      .then(function (response) {
        if (response.ok) {
          if (opened) opened.open = false;
          return;
        }
        return response
          .json()
          .catch(function () { return {}; })
          .then(function (body) {
            show("Refused: " + (body.detail || "HTTP " + response.status), false);
          });
      })
      .catch(function (error) {
        show("Not sent (" + error.message + ")", false);
      })
      .then(refresh);
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
  show("Live: updated every " + every / 1000 + " s", true);
  schedule();
})();
