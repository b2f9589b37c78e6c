// aia-chat admin panel: small progressive enhancements. Every form works without it.
"use strict";
(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // Client list: paint each swatch with its launcher color (no inline styles under the CSP).
  $$(".swatch[data-color]").forEach((s) => { s.style.background = s.dataset.color; });

  // Color fields: the picker and the hex text follow each other.
  const isHex = (v) => /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(v);
  const long = (v) => (v.length === 4 ? "#" + v.slice(1).split("").map((c) => c + c).join("") : v);
  $$("input[type=color][data-color-for]").forEach((picker) => {
    const text = document.getElementById(picker.dataset.colorFor);
    picker.addEventListener("input", () => {
      text.value = picker.value;
      text.dispatchEvent(new Event("input", { bubbles: true }));
    });
    text.addEventListener("input", () => { if (isHex(text.value.trim())) picker.value = long(text.value.trim()).toLowerCase(); });
  });

  // Dynamic lists: add and remove entries; focus follows.
  function removable(li) {
    $(".remove", li).addEventListener("click", () => {
      const list = li.parentElement;
      const next = li.nextElementSibling || li.previousElementSibling;
      li.remove();
      list.dispatchEvent(new Event("input", { bubbles: true }));
      (next ? $("input", next) : $(".add", list.parentElement)).focus();
    });
  }
  $$(".list-field li").forEach(removable);
  $$(".list-field .add").forEach((add) => {
    add.addEventListener("click", () => {
      const li = document.createElement("li");
      const input = document.createElement("input");
      input.name = add.dataset.name;
      input.setAttribute("aria-label", add.dataset.label);
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "btn small light remove";
      remove.textContent = "Remove";
      li.append(input, remove);
      $(".rows", add.parentElement).append(li);
      removable(li);
      input.focus();
    });
    // Enter in a list entry adds the next one instead of submitting the whole form.
    add.parentElement.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.target.matches("input")) { e.preventDefault(); add.click(); }
    });
  });

  // The connect code follows the colors, position and socket URL as they change. Same format
  // as the server's `clients::connect_code`.
  const code = $("#connect-code");
  const form = $("#settings");
  if (code && form) {
    const value = (key) => { const el = form.elements["s:" + key]; return el ? el.value.trim() : ""; };
    const render = () => {
      const base = code.dataset.base;
      const socket = value("socket_url") || base;
      const color = (key) => (isHex(value(key)) ? value(key).toLowerCase() : null);
      const button = color("button_color");
      const bg = color("bg_color");
      if (!button || !bg) return;
      code.textContent = '<script src="' + base + "/js/ChatBot.js?clientUid=" + code.dataset.uid +
        "&apiPoint=" + base + "/api/data/ai_chat_bot&buttonColor=" + button + "&bgColor=" + bg +
        "&position=" + value("position") + "&socketUrl=" + socket + '"></script>';
    };
    form.addEventListener("input", render);
    form.addEventListener("change", render);
    // Unsaved changes are said out loud, and leaving asks first.
    let dirty = false;
    const mark = () => { dirty = true; $(".dirty").textContent = "Unsaved changes"; };
    form.addEventListener("input", mark);
    form.addEventListener("change", mark);
    form.addEventListener("submit", () => { dirty = false; });
    window.addEventListener("beforeunload", (e) => { if (dirty) { e.preventDefault(); e.returnValue = ""; } });
  }

  // Copy buttons.
  $$("[data-copy]").forEach((btn) => {
    btn.addEventListener("click", async () => {
      const text = document.getElementById(btn.dataset.copy).textContent;
      const status = $(".copy-status") || btn;
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(btn.dataset.copy));
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        document.execCommand("copy");
      }
      const was = btn.textContent;
      btn.textContent = "Copied";
      if (status !== btn) status.textContent = "Copied to the clipboard.";
      setTimeout(() => { btn.textContent = was; }, 1500);
    });
  });

  // Test buttons: try an integration with the saved settings and show the diagnosis.
  $$("[data-check]").forEach((btn) => {
    btn.addEventListener("click", async () => {
      const name = btn.dataset.check;
      const out = document.getElementById("check-" + name);
      const line = (cls, text) => { const p = document.createElement("p"); p.className = cls; p.textContent = text; return p; };
      out.replaceChildren(line("pending", "Testing…"));
      btn.disabled = true;
      const query = name === "catalog" ? ($("#check-query") || {}).value || "" : "";
      try {
        const r = await fetch("/api/admin/clients/" + encodeURIComponent(btn.dataset.uid) + "/checks/" + name, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": form.elements._csrf.value },
          body: JSON.stringify(query ? { query } : {}),
        });
        const report = await r.json();
        if (!r.ok) throw new Error((report.error && report.error.message) || "HTTP " + r.status);
        const parts = [line(report.ok ? "ok" : "bad", (report.ok ? "✓ " : "✗ ") + report.summary)];
        if (report.problem) {
          parts.push(line("detail", "Where: " + report.problem.where));
          parts.push(line("detail", "What: " + report.problem.what));
          parts.push(line("detail", "Change: " + report.problem.fix));
        }
        const d = report.details || {};
        if (d.lists) parts.push(line("detail", "Lists: " + d.lists.map((l) => l.name + " (" + l.id + ")").join(", ")));
        if (d.labels && d.labels.length) parts.push(line("detail", "Labels: " + d.labels.map((l) => (l.name || l.color) + " (" + l.id + ")").join(", ")));
        if (d.products) parts.push(line("detail", "Found: " + (d.products.map((p) => p.name).join(", ") || "nothing")));
        if (d.reply) parts.push(line("detail", "Reply: " + d.reply));
        if (d.fields) {
          const f = d.fields;
          parts.push(line("detail", (f.mapped ? "Mapping (graphql_fields): " : "Mapping found: ") + "question ← " + f.question +
            ", answer ← " + f.answer + ", id ← " + f.id));
        }
        if (d.paging) parts.push(line("detail", "Paging: " + d.paging));
        if (d.preview) {
          d.preview.forEach((e, i) => parts.push(line("detail", (i + 1) + ". " + e.question + " — " + e.answer)));
        }
        if (d.warnings && d.warnings.length) parts.push(line("detail", "Warnings: " + d.warnings.join("; ")));
        if (d.data) parts.push(line("detail", "The page's fields: " + d.data));
        if (d.inbox) {
          parts.push(line("detail", "Account: " + d.account_id + " (" + d.account_from + ")"));
          parts.push(line("detail", "Inbox: " + (d.inbox.name || "unnamed") + " (" + d.inbox.id + "), " + d.inbox.channel_type));
          if (d.webhook_secret) parts.push(line("detail", "Webhook secret: " + d.webhook_secret));
          parts.push(line("detail", "Agent bot token: " + (d.bot_token ? "set" : "not set")));
          if (d.webhook_url) parts.push(line("detail", "Webhook URL for the inbox: " + d.webhook_url));
        }
        parts.push(line("detail", "Took " + report.elapsed_ms + " ms."));
        out.replaceChildren(...parts);
      } catch (e) {
        out.replaceChildren(line("bad", "✗ The test could not run: " + e.message));
      } finally {
        btn.disabled = false;
      }
    });
  });

  // After a refused save, go to the field that needs attention.
  const bad = $('.field.invalid [id^="f-"]');
  if (bad) (bad.matches("input, select, textarea") ? bad : $("input:not([type=hidden]), button", bad)).focus();
})();
