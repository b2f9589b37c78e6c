// The Operations page: while a training run is in progress (or was just started), its
// progress is polled every second and shown; when a run has ended, the page reloads to show
// it in the history and the new knowledge.
"use strict";
(function () {
  const box = document.getElementById("training");
  if (!box || box.dataset.watch !== "true") return;
  const state = document.getElementById("training-state");
  const url = "/api/admin/clients/" + encodeURIComponent(box.dataset.uid) + "/training";
  const last = box.dataset.last;
  const until = Date.now() + 120000;
  const poll = async () => {
    try {
      const r = await fetch(url, { credentials: "same-origin" });
      const t = await r.json();
      if (t.status && t.status.running) {
        state.textContent = "Running since " + t.status.startedAt + ": page " + t.status.pages + ", " + t.status.entries + " entries so far.";
      } else if (t.runs && t.runs.length && t.runs[0].finishedAt !== last) {
        window.location.replace(window.location.pathname);
        return;
      }
    } catch (_) { /* the next poll tries again */ }
    if (Date.now() < until) setTimeout(poll, 1000);
  };
  setTimeout(poll, 300);
})();
