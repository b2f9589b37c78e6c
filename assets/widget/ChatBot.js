/* aia-chat loader: the launcher only. The panel (chat-panel.<hash>.js) loads on first open, or at
   once for a visitor with a conversation so new replies can badge the launcher. Protocol:
   docs/protocol.md. Builds DOM with DOM APIs only; styles are constructable stylesheets, so a
   strict CSP host page (docs/widget.md) needs no 'unsafe-inline'. */
(function () {
  "use strict";
  if (window.AIAChat) return; // included twice
  const D = document, PANEL = "__AIA_PANEL__";
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
  const base = me ? me.src : location.href, uid = P.clientUid, KEY = "aia-chat:session:" + uid;
  const store = {
    get() { try { return localStorage.getItem(KEY); } catch (e) { return null; } },
    set(v) { try { if (v) localStorage.setItem(KEY, v); else localStorage.removeItem(KEY); } catch (e) { /* blocked */ } },
  };

  // The host page's API. Calls made before the panel is loaded wait for it.
  let panel = null, painted = null, loading = null;
  const later = [];
  const call = (name, arg) => {
    if (panel) return panel[name](arg);
    if (name === "reset") store.set(null);
    else later.push([name, arg]);
    if (name === "open" && painted) painted.load();
  };
  window.AIAChat = {
    open() { call("open"); },
    close() { if (panel) panel.close(); else for (let i = later.length; i--;) if (later[i][0] === "open") later.splice(i, 1); },
    reset() { call("reset"); },
    identify(who) { if (who && typeof who === "object") call("identify", { name: who.name, email: who.email }); },
  };
  if (!uid) return warn("client_required", "the connect code has no clientUid");

  // Color math shared with the panel: text is black or white, whichever contrasts more (at
  // least 4.58:1 on any color), so every bgColor/buttonColor stays readable (WCAG AA).
  const rgb = (hex) => {
    const h = hex.length === 4 ? hex.replace(/\w/g, "$&$&") : hex;
    return [1, 3, 5].map((i) => parseInt(h.substr(i, 2), 16));
  };
  const lum = (c) => c.map((v) => (v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
  const best = (c) => (ratio(c, [0, 0, 0]) >= ratio(c, [255, 255, 255]) ? [0, 0, 0] : [255, 255, 255]);
  const mix = (a, b, t) => a.map((v, i) => Math.round(v + (b[i] - v) * t));
  const css = (c) => "#" + c.map((v) => (256 | v).toString(16).slice(1)).join("");
  const color = { rgb, ratio, best, mix, css };

  const isHex = (c) => /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(c);
  const isPos = (p) => ["bottom-right", "bottom-left", "top-right", "top-left"].indexOf(p) >= 0;
  const pick = (ok, a, b, d) => (ok(a) ? a : ok(b) ? b : d);
  const LABELS = { en: ["Open chat", "new"], de: ["Chat öffnen", "neu"], fr: ["Ouvrir le chat", "nouveau"],
    es: ["Abrir el chat", "nuevo"], uk: ["Відкрити чат", "нове"] };
  // The client's language wins over the browser's when the widget speaks it.
  const langOf = (cfg) => [cfg.language, navigator.language, "en"].map((l) => String(l || "").slice(0, 2).toLowerCase())
    .find((l) => LABELS[l]);

  // Elements are built with the DOM API: text always goes in as text nodes.
  function h(tag, attrs, kids, svg) {
    const e = svg ? D.createElementNS("http://www.w3.org/2000/svg", tag) : D.createElement(tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (kids) e.append(...kids);
    return e;
  }
  function sheet(root, text) {
    if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      const s = new CSSStyleSheet();
      s.replaceSync(text);
      root.adoptedStyleSheets = root.adoptedStyleSheets.concat(s);
    } else root.append(h("style", {}, [text])); // old browsers; a strict CSP page needs the above
  }

  function paint(cfg) {
    if (D.getElementById("aia-chat-root")) return;
    const btn = rgb(pick(isHex, cfg.buttonColor, P.buttonColor, "#1a73e8"));
    const pos = pick(isPos, cfg.position, P.position, "bottom-right"), [v, side] = pos.split("-");
    const lang = langOf(cfg), L = LABELS[lang];
    const host = h("div", { id: "aia-chat-root" }), root = host.attachShadow({ mode: "open" });
    sheet(root, `:host{all:initial!important;display:block!important;position:fixed!important;z-index:2147483000!important;${v}:20px!important;${side}:20px!important;font:14px/1.45 system-ui,sans-serif!important}
*{box-sizing:border-box}button{font:inherit;color:inherit;margin:0;cursor:pointer;border:0}
:focus-visible{outline:2px solid ${css(best(rgb(pick(isHex, cfg.bgColor, P.bgColor, "#ffffff"))))};outline-offset:2px}
.aia-launcher{position:relative;width:56px;height:56px;border-radius:50%;display:grid;place-items:center;background:${css(btn)};color:${css(best(btn))};box-shadow:0 4px 14px #0004}
.aia-badge{position:absolute;top:-4px;${side === "left" ? "left" : "right"}:-4px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#c5221f;color:#fff;font-size:12px;font-weight:700;line-height:20px;text-align:center}
.aia-badge[hidden]{display:none}`);
    const badge = h("span", { class: "aia-badge", hidden: "" });
    const launcher = h("button", { type: "button", class: "aia-launcher", "aria-label": L[0], "aria-expanded": "false", "aria-controls": "aia-panel" },
      [h("svg", { viewBox: "0 0 24 24", width: 26, height: 26, "aria-hidden": "true", fill: "currentColor" },
        [h("path", { d: "M6 4h12a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2h-8l-4 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z" }, 0, 1)], 1), badge]);
    root.append(launcher);
    D.body.appendChild(host);

    const ctx = {
      cfg, P, uid, base, lang, pos, root, host, launcher, store, color, h, sheet, warn,
      badge(n) {
        badge.hidden = !n;
        badge.textContent = n > 9 ? "9+" : String(n);
        launcher.setAttribute("aria-label", n ? `${L[0]} (${n} ${L[1]})` : L[0]);
      },
    };
    const load = () => loading || (loading = import(new URL(PANEL, base).href).then((m) => {
      panel = m.mount(ctx);
      later.splice(0).forEach(([name, arg]) => panel[name](arg));
      return panel;
    }, (e) => { loading = null; warn("panel_unavailable", (e && e.message) || e); }));
    painted = { load };
    launcher.onclick = () => load().then((p) => p && p.toggle());
    // A visitor with a conversation, or a host page that asked, gets the panel (and its live
    // connection) right away; everyone else downloads it on first open.
    if (store.get() || later.length) load();
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
