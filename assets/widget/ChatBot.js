/* aia-chat widget: launcher + chat panel in a shadow root. Protocol: docs/protocol.md (v1). */
(function () {
  "use strict";
  if (window.AiaChat) return; // included twice
  const D = document;
  const warn = (code, msg) => console.warn("[aia-chat] " + code + ": " + msg);
  const dec = (s) => { try { return decodeURIComponent(s); } catch (e) { return s; } };

  // Colors in the connect code hold a raw "#", so parse the src attribute ourselves.
  let me = D.currentScript;
  if (!me || !/ChatBot\.js/.test(me.getAttribute("src"))) {
    const all = D.querySelectorAll('script[src*="ChatBot.js"]');
    me = all[all.length - 1];
  }
  const P = {}, src = (me && me.getAttribute("src")) || "", q = src.indexOf("?");
  if (q >= 0) src.slice(q + 1).split("&").forEach((p) => {
    const i = p.indexOf("=");
    if (i > 0) P[dec(p.slice(0, i))] = dec(p.slice(i + 1));
  });
  const base = me ? me.src : location.href, uid = P.clientUid;

  let ui = null, wantOpen = false;
  window.AiaChat = {
    open() { if (ui) ui.open(); else wantOpen = true; },
    close() { if (ui) ui.close(); else wantOpen = false; },
  };
  if (!uid) return warn("client_required", "the connect code has no clientUid");

  const isHex = (c) => /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(c);
  const isPos = (p) => ["bottom-right", "bottom-left", "top-right", "top-left"].indexOf(p) >= 0;
  const pick = (ok, a, b, d) => (ok(a) ? a : ok(b) ? b : d);
  // White ink when it reaches 3:1 contrast (WCAG minimum for icons/large text), else black.
  function ink(hex) {
    const h = hex.length === 4 ? hex.replace(/\w/g, "$&$&") : hex;
    const [r, g, b] = [1, 3, 5].map((i) => {
      const v = parseInt(h.substr(i, 2), 16) / 255;
      return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    const L = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    return 1.05 / (L + 0.05) >= 3 ? "#fff" : "#000";
  }
  // http(s)://h[/p] -> ws(s)://h[/p]/ws; a ws(s) URL keeps a non-root path.
  function wsUrl(raw) {
    const m = /^(https?|wss?):\/\/([^/?#]+)([^?#]*)(\?[^#]*)?/i.exec(raw || "");
    if (!m) return "";
    let s = m[1].toLowerCase(), path = m[3];
    if (s[0] === "h") { s = s === "https" ? "wss" : "ws"; path = path.replace(/\/$/, "") + "/ws"; }
    else if (path.length < 2) path = "/ws";
    return s + "://" + m[2] + path + (m[4] || "");
  }
  const KEY = "aia-chat:session:" + uid;
  const load = () => { try { return localStorage.getItem(KEY); } catch (e) { return null; } };
  const save = (v) => { try { localStorage.setItem(KEY, v); } catch (e) { /* blocked */ } };
  // Elements are built with the DOM API: text always goes in as text nodes.
  function h(tag, attrs, kids, ns) {
    const e = ns ? D.createElementNS("http://www.w3.org/2000/svg", tag) : D.createElement(tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (kids) e.append(...kids);
    return e;
  }
  const svg = (d, size, more) => h("svg", Object.assign({ viewBox: "0 0 24 24", width: size, height: size, "aria-hidden": "true", fill: "currentColor" }, more), [h("path", { d }, 0, 1)], 1);

  // Only validated colors and whitelisted positions reach the stylesheet.
  function css(btn, bg, pos) {
    const [v, side] = pos.split("-"), bi = ink(btn), C = `background:${btn};color:${bi}`, G = "rgba(127,127,127,";
    return `:host{all:initial!important;display:block!important;position:fixed!important;z-index:2147483000!important;${v}:20px!important;${side}:20px!important;font:14px/1.45 system-ui,sans-serif!important}
*{box-sizing:border-box}button,textarea{font:inherit;color:inherit;margin:0}button{cursor:pointer;border:0}
:focus-visible{outline:2px solid #4d90fe;outline-offset:2px}
.aia-launcher{width:56px;height:56px;border-radius:50%;display:grid;place-items:center;${C};box-shadow:0 4px 14px #0004}
.aia-panel{position:absolute;${v}:72px;${side}:0;width:360px;height:520px;max-width:calc(100vw - 40px);max-height:calc(100vh - 112px);display:flex;flex-direction:column;overflow:hidden;border-radius:14px;background:${bg};color:${ink(bg)};box-shadow:0 10px 40px #0005}
.aia-panel[hidden]{display:none}
.aia-header{display:flex;align-items:center;padding:10px 10px 10px 16px;${C}}
.aia-title{flex:1;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.aia-close{width:32px;height:32px;border-radius:8px;background:none;display:grid;place-items:center}
.aia-messages{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:14px;display:flex;flex-direction:column;gap:8px}
.aia-msg{max-width:85%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere}
.aia-msg-visitor{align-self:flex-end;${C}}
.aia-msg-assistant,.aia-msg-operator,.aia-typing{align-self:flex-start;background:${G}.16)}
.aia-msg-operator::before{content:"Operator";display:block;font-size:11px;font-weight:600;opacity:.7}
.aia-msg-system,.aia-notice{align-self:center;font-size:12px;opacity:.75;text-align:center}
.aia-pending,.aia-failed{opacity:.6}.aia-failed{text-decoration:line-through}
.aia-typing{display:flex;gap:4px;padding:12px 14px;border-radius:14px}
.aia-typing span{width:6px;height:6px;border-radius:50%;background:currentColor;animation:aia-dot 1.2s infinite}
.aia-typing span+span{animation-delay:.2s}.aia-typing span+span+span{animation-delay:.4s}
@keyframes aia-dot{0%,60%,100%{opacity:.25}30%{opacity:.9}}
.aia-form{display:flex;gap:8px;align-items:flex-end;padding:10px;border-top:1px solid ${G}.25)}
.aia-input{flex:1;resize:none;max-height:120px;padding:8px 10px;border:1px solid ${G}.5);border-radius:10px;background:none}
.aia-send{border-radius:10px;padding:9px 14px;font-weight:600;${C}}
@media (max-width:479.98px){.aia-panel{position:fixed;top:0;right:0;bottom:0;left:0;width:auto;height:auto;max-width:none;max-height:none;border-radius:0}}
@media (prefers-reduced-motion:reduce){.aia-typing span{animation:none;opacity:.6}}`;
  }

  function paint(cfg) {
    if (D.getElementById("aia-chat-root")) return;
    const btn = pick(isHex, cfg.buttonColor, P.buttonColor, "#1a73e8");
    const bg = pick(isHex, cfg.bgColor, P.bgColor, "#ffffff");
    const pos = pick(isPos, cfg.position, P.position, "bottom-right");
    const name = typeof cfg.botName === "string" && cfg.botName.trim() ? cfg.botName : "Chat";
    const max = cfg.maxMessageChars > 0 ? cfg.maxMessageChars | 0 : 4000;
    let url = wsUrl(P.socketUrl) || wsUrl(cfg.socketUrl) || wsUrl(new URL(base).origin);
    url += (url.indexOf("?") < 0 ? "?" : "&") + "clientUid=" + encodeURIComponent(uid);

    const host = h("div", { id: "aia-chat-root" }), root = host.attachShadow({ mode: "open" });
    const launcher = h("button", { type: "button", class: "aia-launcher", "aria-label": "Open chat", "aria-expanded": "false", "aria-controls": "aia-panel" },
      [svg("M6 4h12a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2h-8l-4 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z", 26)]);
    const closeBtn = h("button", { type: "button", class: "aia-close", "aria-label": "Close chat" },
      [svg("M6 6l12 12M18 6L6 18", 20, { fill: "none", stroke: "currentColor", "stroke-width": 2 })]);
    const list = h("div", { class: "aia-messages", role: "log", "aria-live": "polite" });
    // maxlength counts UTF-16 units; the real limit (scalar values) is checked on send.
    const input = h("textarea", { class: "aia-input", "aria-label": "Message", rows: 1, maxlength: max * 2, placeholder: "Type your message…" });
    const form = h("form", { class: "aia-form" }, [input, h("button", { type: "submit", class: "aia-send" }, ["Send"])]);
    const panel = h("div", { class: "aia-panel", id: "aia-panel", role: "dialog", "aria-label": name, hidden: "" },
      [h("div", { class: "aia-header" }, [h("div", { class: "aia-title" }, [name]), closeBtn]), list, form]);
    if (typeof cfg.language === "string") panel.lang = cfg.language;
    const typing = h("div", { class: "aia-typing", "aria-hidden": "true" }, [h("span"), h("span"), h("span")]);
    root.append(h("style", {}, [css(btn, bg, pos)]), launcher, panel);

    const bySeq = new Map(), byId = new Map(); // rendered messages by seq; own bubbles by client id
    let outbox = [], greet = null, offline = null, ws = null, ready = false, stopped = false, convId = null;
    let attempts = 0, retryTimer = 0, pinger = 0, typingTimer = 0, lastSeq = 0;
    const streams = new Map(); // replyTo -> bubble of an answer being written

    const scrollDown = () => { list.scrollTop = list.scrollHeight; };
    const append = (e) => list.insertBefore(e, typing.parentNode && typing);
    const notice = (text) => { const e = h("div", { class: "aia-notice" }, [text]); append(e); scrollDown(); return e; };
    const typingOff = () => { clearTimeout(typingTimer); typing.remove(); };
    const typingOn = () => { append(typing); clearTimeout(typingTimer); typingTimer = setTimeout(typingOff, 45e3); };
    const unqueue = (id) => { outbox = outbox.filter((m) => m.id !== id); };
    const bubble = (role, text, cls) => h("div", { class: `aia-msg aia-msg-${role} ${cls || ""}`.trim() }, [text]);
    const greeting = (text) => { greet = bubble("assistant", text, "aia-greeting"); list.prepend(greet); };
    if (typeof cfg.greeting === "string" && cfg.greeting) greeting(cfg.greeting);

    // Insert in seq order; bubbles still waiting for an ack stay last.
    function place(e, seq) {
      let k = list.firstElementChild;
      for (; k && k !== typing; k = k.nextElementSibling) {
        const s = k.getAttribute("data-seq");
        if (s ? +s > seq : k.classList.contains("aia-pending")) break;
      }
      list.insertBefore(e, k);
    }
    function setSeq(e, seq) {
      const old = bySeq.get(seq);
      if (old && old !== e) old.remove();
      e.setAttribute("data-seq", seq);
      bySeq.set(seq, e);
    }
    // Own message `id` stored as `seq` (from its ack or its echoed message frame).
    function stored(id, seq) {
      const e = byId.get(id);
      if (!e || !(seq > 0)) return;
      e.classList.remove("aia-pending");
      if (!e.hasAttribute("data-seq")) setSeq(e, seq);
      lastSeq = Math.max(lastSeq, seq);
      unqueue(id);
    }
    // A model answer being written to visitor message `replyTo`: one growing bubble, which
    // the stored answer replaces.
    function delta(f) {
      if (!Number.isInteger(f.replyTo) || typeof f.text !== "string") return;
      let e = streams.get(f.replyTo);
      if (!e) { e = bubble("assistant", "", "aia-streaming"); streams.set(f.replyTo, e); place(e, f.replyTo + 0.5); typingOff(); }
      e.textContent += f.text;
      scrollDown();
    }
    function addMessage(m, live) {
      if (m && streams.has(m.replyTo)) { streams.get(m.replyTo).remove(); streams.delete(m.replyTo); }
      if (!m || !Number.isInteger(m.seq) || m.seq < 1 || typeof m.text !== "string" || bySeq.has(m.seq)) return;
      if (m.role === "visitor" && byId.has(m.clientId)) return stored(m.clientId, m.seq);
      const role = ["visitor", "assistant", "operator", "system"].indexOf(m.role) >= 0 ? m.role : "system";
      const e = bubble(role, m.text);
      setSeq(e, m.seq);
      place(e, m.seq);
      if ((role === "assistant" || role === "operator") && !outbox.length && m.seq > lastSeq) typingOff();
      if (live) scrollDown();
    }
    // Another conversation (the session was unknown): keep only the greeting and unsent bubbles.
    function reset() {
      const keep = new Set(outbox.map((m) => byId.get(m.id)));
      [...list.children].forEach((e) => { if (e !== greet && !keep.has(e)) e.remove(); });
      byId.forEach((e, id) => { if (!keep.has(e)) byId.delete(id); });
      bySeq.clear();
      streams.forEach((e) => e.remove()); streams.clear();
      lastSeq = 0;
      if (outbox.length) typingOn();
    }

    const transmit = (m) => { if (ready) ws.send(JSON.stringify({ type: "message", id: m.id, text: m.text })); };
    function connect() {
      if (ws || stopped || retryTimer) return;
      let s;
      try { s = ws = new WebSocket(url); } catch (e) { stopped = true; return notice("The chat is unavailable right now."); }
      s.onopen = () => {
        const t = load(), hello = { type: "hello", v: 1, page: { url: location.origin + location.pathname,
          title: document.title.slice(0, 200), lang: document.documentElement.lang || navigator.language || "" } };
        if (t && t.length <= 128) hello.session = t;
        s.send(JSON.stringify(hello));
      };
      s.onmessage = (ev) => {
        let f;
        try { f = JSON.parse(ev.data); } catch (e) { return; }
        if (ws === s && f) onFrame(f);
      };
      s.onclose = () => { if (ws === s) { lost(); retry(); } };
    }
    function lost() {
      ws = null; ready = false;
      clearInterval(pinger);
      if (!offline && !stopped) offline = notice("Connection problem — reconnecting…");
    }
    // Backoff 1s, 2s, 4s… 30s with ±25% jitter, or an explicit delay.
    function retry(ms) {
      if (stopped || retryTimer) return;
      if (ms == null) ms = Math.min(30e3, 1e3 * 2 ** Math.min(attempts++, 5) * (0.75 + Math.random() / 2));
      retryTimer = setTimeout(() => { retryTimer = 0; connect(); }, ms);
    }

    function onFrame(f) {
      if (f.type === "welcome") {
        ready = true; attempts = 0;
        if (typeof f.session === "string") save(f.session);
        if (offline) { offline.remove(); offline = null; }
        if (convId && f.conversationId !== convId) reset();
        convId = f.conversationId;
        if (!greet && f.bot && f.bot.greeting) greeting(String(f.bot.greeting));
        (f.history || []).forEach((m) => addMessage(m));
        outbox.forEach(transmit); // same ids: the server deduplicates
        clearInterval(pinger);
        pinger = setInterval(() => ready && ws.send('{"type":"ping"}'), 25e3);
        scrollDown();
      } else if (f.type === "ack") stored(f.id, f.seq);
      else if (f.type === "message") addMessage(f.message, true);
      else if (f.type === "delta") delta(f);
      else if (f.type === "error") {
        const e = f.id && byId.get(f.id);
        if (e && e.classList.contains("aia-pending")) { // refused, not stored: offer the text again
          e.classList.replace("aia-pending", "aia-failed");
          byId.delete(f.id); unqueue(f.id);
          if (!input.value) input.value = e.textContent;
        }
        if (!outbox.length) typingOff();
        if (f.code === "unsupported_version") stopped = true;
        if (!ready && ws) { const s = ws; lost(); s.close(); retry(); } // hello refused
        notice(f.code === "rate_limited" ? "You're sending messages a little too fast. Please wait a moment and try again."
          : "Sorry, something went wrong" + (f.code ? " (" + f.code + ")" : "") + ". Please try again.");
      } else if (f.type === "reconnect") { // server going away
        const s = ws;
        lost(); s.close();
        retry(Math.max(0, +f.afterMs || 0) + Math.random() * 1e3);
      }
    }

    function submit() {
      const text = input.value.replace(/\r\n?/g, "\n")
        .replace(/[\0-\x08\x0b-\x1f\x7f-\x9f]/g, "").trim(); // the server refuses control characters
      if (!text) return;
      const n = [...text].length;
      if (n > max) return notice(`Your message is too long (${n} characters; the limit is ${max}).`);
      const m = { id: "m-" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10), text };
      const e = bubble("visitor", text, "aia-pending");
      byId.set(m.id, e); outbox.push(m);
      append(e); typingOn(); scrollDown();
      input.value = ""; grow();
      transmit(m); // else queued until the next welcome
      connect();
    }
    function grow() { input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight + 2, 120) + "px"; }

    function open() {
      if (!panel.hidden) return;
      panel.hidden = false;
      launcher.setAttribute("aria-expanded", "true");
      connect(); // the first open connects
      scrollDown();
      input.focus();
    }
    function close() {
      if (panel.hidden) return;
      panel.hidden = true;
      launcher.setAttribute("aria-expanded", "false");
      launcher.focus();
    }
    launcher.onclick = () => (panel.hidden ? open() : close());
    closeBtn.onclick = close;
    root.addEventListener("keydown", (e) => { if (e.key === "Escape" && !panel.hidden) { e.preventDefault(); close(); } });
    input.onkeydown = (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    };
    input.oninput = grow;
    form.onsubmit = (e) => { e.preventDefault(); submit(); input.focus(); };

    D.body.appendChild(host);
    ui = { open, close };
    if (wantOpen) open();
  }

  // Public config first: nothing is shown unless it answers OK.
  let api;
  try { api = new URL(P.apiPoint || "/api/data/ai_chat_bot", base).href; } catch (e) { return warn("bad_api_point", "invalid apiPoint"); }
  fetch(api + (api.indexOf("?") < 0 ? "?" : "&") + "clientUid=" + encodeURIComponent(uid), { mode: "cors", credentials: "omit" })
    .then((r) => r.json().catch(() => null).then((b) => {
      if (r.ok && b && !b.error) return b;
      const e = (b && b.error) || {};
      throw { code: e.code || "http_" + r.status, message: e.message || "could not load the chat configuration" };
    }))
    .then((cfg) => {
      if (D.body) paint(cfg);
      else D.addEventListener("DOMContentLoaded", () => paint(cfg));
    }, (e) => warn(e.code || "network_error", e.message || e));
})();
