/* aia-chat panel: the conversation, loaded by ChatBot.js on first open. Protocol: docs/protocol.md.
   No HTML parsing sinks: every text reaches the page as a text node, every link is http(s)/mailto. */

const T = {
  en: { close: "Close chat", msg: "Message", ph: "Type your message…", send: "Send", unavailable: "The chat is unavailable right now.",
    reconnecting: "Connection problem — reconnecting…", fast: "You're sending messages a little too fast. Please wait a moment and try again.",
    wrong: "Sorry, something went wrong. Please try again.", long: "Your message is too long ({n} characters; the limit is {max}).",
    human: "Talk to a human", person: "A person is answering", operator: "Operator", up: "Helpful", down: "Not helpful",
    task: "Task created", inStock: "In stock", outStock: "Out of stock", typing: "Typing…", chat: "Chat", privacy: "How we handle your data" },
  de: { close: "Chat schließen", msg: "Nachricht", ph: "Nachricht eingeben…", send: "Senden", unavailable: "Der Chat ist gerade nicht verfügbar.",
    reconnecting: "Verbindungsproblem — neuer Versuch…", fast: "Sie senden etwas zu schnell. Bitte warten Sie einen Moment.",
    wrong: "Leider ist etwas schiefgelaufen. Bitte versuchen Sie es erneut.", long: "Ihre Nachricht ist zu lang ({n} Zeichen; erlaubt sind {max}).",
    human: "Mit einem Menschen sprechen", person: "Ein Mensch antwortet", operator: "Mitarbeiter", up: "Hilfreich", down: "Nicht hilfreich",
    task: "Aufgabe erstellt", inStock: "Auf Lager", outStock: "Nicht auf Lager", typing: "Schreibt…", chat: "Chat", privacy: "Wie wir Ihre Daten verarbeiten" },
  fr: { close: "Fermer le chat", msg: "Message", ph: "Écrivez votre message…", send: "Envoyer", unavailable: "Le chat est indisponible pour le moment.",
    reconnecting: "Problème de connexion — reconnexion…", fast: "Vous envoyez des messages un peu trop vite. Patientez un instant.",
    wrong: "Désolé, une erreur s'est produite. Veuillez réessayer.", long: "Votre message est trop long ({n} caractères ; maximum {max}).",
    human: "Parler à une personne", person: "Une personne vous répond", operator: "Conseiller", up: "Utile", down: "Pas utile",
    task: "Tâche créée", inStock: "En stock", outStock: "Rupture de stock", typing: "Écrit…", chat: "Chat", privacy: "Comment nous traitons vos données" },
  es: { close: "Cerrar el chat", msg: "Mensaje", ph: "Escribe tu mensaje…", send: "Enviar", unavailable: "El chat no está disponible ahora.",
    reconnecting: "Problema de conexión — reconectando…", fast: "Estás enviando mensajes demasiado rápido. Espera un momento.",
    wrong: "Lo sentimos, algo salió mal. Inténtalo de nuevo.", long: "Tu mensaje es demasiado largo ({n} caracteres; el límite es {max}).",
    human: "Hablar con una persona", person: "Una persona te está respondiendo", operator: "Agente", up: "Útil", down: "No útil",
    task: "Tarea creada", inStock: "En stock", outStock: "Agotado", typing: "Escribiendo…", chat: "Chat", privacy: "Cómo tratamos tus datos" },
  uk: { close: "Закрити чат", msg: "Повідомлення", ph: "Напишіть повідомлення…", send: "Надіслати", unavailable: "Чат зараз недоступний.",
    reconnecting: "Проблема зі з'єднанням — перепідключення…", fast: "Ви надсилаєте повідомлення занадто швидко. Зачекайте трохи.",
    wrong: "Вибачте, щось пішло не так. Спробуйте ще раз.", long: "Повідомлення задовге ({n} символів; максимум {max}).",
    human: "Поговорити з людиною", person: "Вам відповідає людина", operator: "Оператор", up: "Корисно", down: "Некорисно",
    task: "Завдання створено", inStock: "В наявності", outStock: "Немає в наявності", typing: "Друкує…", chat: "Чат", privacy: "Як ми обробляємо ваші дані" },
};

/** A safe URL for href/src: http, https (and mailto for links), else null. */
export function safeUrl(raw, mail) {
  try {
    const u = new URL(String(raw), location.href);
    return u.protocol === "http:" || u.protocol === "https:" || (mail && u.protocol === "mailto:") ? u.href : null;
  } catch (e) { return null; }
}

// Inline Markdown: **bold**, *italics*/_italics_, `code`, [text](url), bare http(s) URLs.
const INLINE = /(\*\*[^*\n]+\*\*|`[^`\n]+`|\[[^\]\n]+\]\([^)\s]+\)|https?:\/\/[^\s<>"]*[^\s<>".,;:!?)'\]]|(?<![\w*])\*[^*\s][^*\n]*\*(?![\w*])|(?<!\w)_[^_\s][^_\n]*_(?!\w))/;
function inline(D, s, into) {
  s.split(INLINE).forEach((p, i) => {
    if (!p) return;
    if (i % 2 === 0) return into.append(p);
    let e, m;
    if (p.startsWith("**")) inline(D, p.slice(2, -2), (e = D.createElement("strong")));
    else if (p[0] === "`") (e = D.createElement("code")).textContent = p.slice(1, -1);
    else if ((m = /^\[([^\]]+)\]\(([^)]+)\)$/.exec(p))) e = link(D, m[2], m[1]);
    else if (p[0] === "*" || p[0] === "_") inline(D, p.slice(1, -1), (e = D.createElement("em")));
    else e = link(D, p, p);
    into.append(e);
  });
}
function link(D, url, text) {
  const href = safeUrl(url, true);
  if (!href) return D.createTextNode(text);
  const a = D.createElement("a");
  a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer nofollow";
  a.textContent = text;
  return a;
}
/** The safe Markdown subset as DOM nodes: paragraphs, line breaks, bullet and numbered lists. */
export function markdown(D, text) {
  const out = D.createDocumentFragment(), LI = /^\s*(?:([-*•])|(\d{1,3})[.)])\s+(.*)$/;
  let block = null, kind = "";
  String(text).split("\n").forEach((line) => {
    const m = LI.exec(line);
    const want = !line.trim() ? "" : m ? (m[1] ? "ul" : "ol") : "p";
    if (want !== kind || !want) {
      block = want ? D.createElement(want) : null;
      if (block) out.append(block);
      kind = want;
    } else if (want === "p") block.append(D.createElement("br"));
    if (want === "p") inline(D, line, block);
    else if (want) { const li = D.createElement("li"); inline(D, m[3], li); block.append(li); }
  });
  return out;
}

/** Mounts the panel into the loader's shadow root; returns the host API's implementation. */
export function mount(ctx) {
  const D = document, { cfg, h, color: C, root, launcher, store } = ctx;
  const t = (k, vars) => (T[ctx.lang] || T.en)[k].replace(/\{(\w+)\}/g, (_, v) => vars[v]);
  const hex = (c, d) => (/^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(c) ? c : d);
  // Every text color is computed against the surface it sits on: >= 4.5:1 for any colors.
  const btn = C.rgb(hex(cfg.buttonColor, hex(ctx.P.buttonColor, "#1a73e8")));
  const bg = C.rgb(hex(cfg.bgColor, hex(ctx.P.bgColor, "#ffffff")));
  const ink = C.best(bg), soft = C.mix(bg, ink, 0.07), softInk = C.best(soft);
  const muted = (on, fg) => { let t2 = 0.6; while (t2 > 0 && C.ratio(C.mix(fg, on, t2), on) < 4.6) t2 -= 0.05; return C.css(C.mix(fg, on, Math.max(t2, 0))); };
  const [v, side] = ctx.pos.split("-"), S = C.css, B = `background:${S(btn)};color:${S(C.best(btn))}`;
  ctx.sheet(root, `.aia-panel{position:absolute;${v}:72px;${side}:0;width:370px;height:560px;max-width:calc(100vw - 40px);max-height:calc(100vh - 112px);display:flex;flex-direction:column;overflow:hidden;border-radius:14px;background:${S(bg)};color:${S(ink)};box-shadow:0 10px 40px #0005}
.aia-panel[hidden]{display:none}textarea{font:inherit;margin:0}
.aia-header{display:flex;align-items:center;gap:8px;padding:10px 10px 10px 16px;${B}}
.aia-head{flex:1;min-width:0}.aia-title{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.aia-status{font-size:12px}.aia-status:empty{display:none}
.aia-icon{width:32px;height:32px;border-radius:8px;background:none;display:grid;place-items:center}
.aia-messages{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:14px;display:flex;flex-direction:column;gap:8px}
.aia-msg{max-width:85%;padding:8px 12px;border-radius:14px;overflow-wrap:anywhere}
.aia-msg p,.aia-msg ul,.aia-msg ol{margin:0}.aia-msg p+*,.aia-msg ul+*,.aia-msg ol+*{margin-top:6px}.aia-msg ul,.aia-msg ol{padding-left:20px}
.aia-msg a{color:inherit;text-decoration:underline}.aia-msg code{font:12px ui-monospace,monospace;padding:1px 4px;border-radius:4px;background:${S(C.mix(soft, softInk, 0.1))};color:${S(C.best(C.mix(soft, softInk, 0.1)))}}
.aia-msg-visitor{align-self:flex-end;white-space:pre-wrap;${B}}
.aia-msg-assistant,.aia-msg-operator,.aia-typing{align-self:flex-start;background:${S(soft)};color:${S(softInk)}}
.aia-who{display:flex;align-items:center;gap:6px;font-size:12px;font-weight:600;margin-bottom:2px}.aia-who img{width:20px;height:20px;border-radius:50%;object-fit:cover}
.aia-msg-system,.aia-notice{align-self:center;font-size:12px;text-align:center;color:${muted(bg, ink)}}
.aia-task{align-self:center;max-width:90%;padding:8px 12px;border-radius:10px;border:1px solid ${muted(bg, ink)};text-align:center}.aia-task b{display:block}
.aia-pending{color:${muted(btn, C.best(btn))}}.aia-failed{text-decoration:line-through}
.aia-actions{display:flex;gap:2px;margin-top:4px}.aia-actions button{width:26px;height:24px;border-radius:6px;background:none;display:grid;place-items:center;color:inherit}
.aia-actions button[aria-pressed=true]{background:${S(C.mix(soft, softInk, 0.15))};color:${S(C.best(C.mix(soft, softInk, 0.15)))}}
.aia-products{display:flex;gap:8px;overflow-x:auto;margin-top:8px;padding-bottom:2px}
.aia-product{flex:0 0 140px;display:flex;flex-direction:column;gap:2px;padding:6px;border-radius:10px;background:${S(bg)};color:${S(ink)};text-decoration:none}
.aia-product img{width:100%;height:90px;object-fit:cover;border-radius:6px}.aia-product b{font-weight:600;overflow-wrap:anywhere}.aia-product small{color:${muted(bg, ink)}}
.aia-files{margin:6px 0 0;padding-left:18px}
.aia-typing{display:flex;gap:4px;padding:12px 14px;border-radius:14px}
.aia-typing span{width:6px;height:6px;border-radius:50%;background:currentColor;animation:aia-dot 1.2s infinite}
.aia-typing span+span{animation-delay:.2s}.aia-typing span+span+span{animation-delay:.4s}
@keyframes aia-dot{0%,60%,100%{opacity:.25}30%{opacity:.9}}
.aia-human{align-self:center;padding:6px 12px;border-radius:16px;font-size:13px;border:1px solid ${S(ink)};background:${S(bg)};color:${S(ink)}}.aia-human[hidden]{display:none}
.aia-form{display:flex;gap:8px;align-items:flex-end;padding:10px;border-top:1px solid ${muted(bg, ink)}}
.aia-input{flex:1;resize:none;max-height:120px;padding:8px 10px;border:1px solid ${muted(bg, ink)};border-radius:10px;background:${S(bg)};color:${S(ink)}}
.aia-input::placeholder{color:${muted(bg, ink)};opacity:1}
.aia-send{border-radius:10px;padding:9px 14px;font-weight:600;${B}}
.aia-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}
@media (max-width:479.98px){.aia-panel{position:fixed;top:0;left:0;right:0;bottom:auto;width:100%;height:var(--aia-vh,100dvh);max-width:none;max-height:none;border-radius:0}.aia-input{font-size:16px}}
@media (prefers-reduced-motion:reduce){.aia-typing span{animation:none;opacity:.6}}`);

  const svg = (d, more) => h("svg", Object.assign({ viewBox: "0 0 24 24", width: 18, height: 18, "aria-hidden": "true", fill: "none", stroke: "currentColor", "stroke-width": 2, "stroke-linecap": "round" }, more), [h("path", { d }, 0, 1)], 1);
  const name = typeof cfg.botName === "string" && cfg.botName.trim() ? cfg.botName : t("chat");
  const max = cfg.maxMessageChars > 0 ? cfg.maxMessageChars | 0 : 4000;
  const wsUrl = (raw) => { // http(s)://h[/p] -> ws(s)://h[/p]/ws; a ws(s) URL keeps a non-root path
    const m = /^(https?|wss?):\/\/([^/?#]+)([^?#]*)(\?[^#]*)?/i.exec(raw || "");
    if (!m) return "";
    let s = m[1].toLowerCase(), path = m[3];
    if (s[0] === "h") { s = s === "https" ? "wss" : "ws"; path = path.replace(/\/$/, "") + "/ws"; } else if (path.length < 2) path = "/ws";
    return s + "://" + m[2] + path + (m[4] || "");
  };
  let url = wsUrl(ctx.P.socketUrl) || wsUrl(cfg.socketUrl) || wsUrl(new URL(ctx.base).origin);
  url += (url.indexOf("?") < 0 ? "?" : "&") + "clientUid=" + encodeURIComponent(ctx.uid);

  const closeBtn = h("button", { type: "button", class: "aia-icon", "aria-label": t("close") }, [svg("M6 6l12 12M18 6L6 18")]);
  const status = h("div", { class: "aia-status", role: "status" });
  const list = h("div", { class: "aia-messages", role: "log", "aria-live": "polite", "aria-relevant": "additions" });
  // maxlength counts UTF-16 units; the real limit (scalar values) is checked on send.
  const input = h("textarea", { class: "aia-input", "aria-label": t("msg"), rows: 1, maxlength: max * 2, placeholder: t("ph"), enterkeyhint: "send" });
  const human = h("button", { type: "button", class: "aia-human", hidden: "" }, [t("human")]);
  const form = h("form", { class: "aia-form" }, [input, h("button", { type: "submit", class: "aia-send" }, [t("send")])]);
  const panel = h("div", { class: "aia-panel", id: "aia-panel", role: "dialog", "aria-label": name, hidden: "" },
    [h("div", { class: "aia-header" }, [h("div", { class: "aia-head" }, [h("div", { class: "aia-title" }, [name]), status]), closeBtn]), list, form]);
  panel.lang = ctx.lang;
  const typing = h("div", { class: "aia-typing", role: "img", "aria-label": t("typing") }, [h("span"), h("span"), h("span")]);
  root.append(panel);

  const bySeq = new Map(), byId = new Map(), streams = new Map(); // seq -> bubble; own id -> bubble; replyTo -> {e, text}
  let outbox = [], greet = null, offline = null, ws = null, ready = false, stopped = false, convId = null, who = null;
  let attempts = 0, retryTimer = 0, pinger = 0, typingTimer = 0, lastSeq = 0, unread = 0, operator = false, typedAt = 0, idleTimer = 0;

  const scrollDown = () => { list.scrollTop = list.scrollHeight; };
  const tail = () => (typing.parentNode ? typing : human.parentNode ? human : null);
  const append = (e) => list.insertBefore(e, tail());
  const notice = (text) => { const e = h("div", { class: "aia-notice" }, [text]); append(e); scrollDown(); return e; };
  const typingOff = () => { clearTimeout(typingTimer); typing.remove(); };
  const typingOn = () => { list.insertBefore(typing, human.parentNode ? human : null); clearTimeout(typingTimer); typingTimer = setTimeout(typingOff, 45e3); scrollDown(); };
  const unqueue = (id) => { outbox = outbox.filter((m) => m.id !== id); };
  const send = (f) => { if (ready) ws.send(JSON.stringify(f)); return ready; };
  const page = () => ({ url: location.origin + location.pathname, title: D.title.slice(0, 200), lang: D.documentElement.lang || navigator.language || "" });
  function bubble(role, text, cls) {
    const body = h("div", { class: "aia-body" });
    if (role === "visitor") body.textContent = text; else body.append(markdown(D, text));
    return h("div", { class: `aia-msg aia-msg-${role} ${cls || ""}`.trim() }, [body]);
  }
  // The shop's privacy page (http/https only), always first in the conversation.
  const privacyUrl = typeof cfg.privacyUrl === "string" && safeUrl(cfg.privacyUrl);
  const privacy = privacyUrl ? h("div", { class: "aia-notice aia-privacy" }, [link(D, privacyUrl, t("privacy"))]) : null;
  const greeting = (text) => { greet = bubble("assistant", text, "aia-greeting"); list.prepend(greet); if (privacy) list.prepend(privacy); };
  if (privacy) list.prepend(privacy);
  if (typeof cfg.greeting === "string" && cfg.greeting) greeting(cfg.greeting);
  if (cfg.operator === true) list.append(human);
  function setOperator(on) {
    operator = on;
    status.textContent = on ? t("person") : "";
    human.hidden = on;
  }

  // Insert in seq order; bubbles still waiting for an ack stay last.
  function place(e, seq) {
    let k = list.firstElementChild;
    for (; k && k !== typing && k !== human; k = k.nextElementSibling) {
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
  // A model answer being written to visitor message `replyTo`: one growing bubble (rendered as
  // Markdown as it grows), which the stored answer replaces.
  function delta(f) {
    if (!Number.isInteger(f.replyTo) || typeof f.text !== "string") return;
    let s = streams.get(f.replyTo);
    if (!s) {
      s = { e: bubble("assistant", "", "aia-streaming"), text: "" };
      s.e.setAttribute("aria-busy", "true");
      streams.set(f.replyTo, s);
      place(s.e, f.replyTo + 0.5);
      typingOff();
    }
    s.text += f.text;
    s.e.firstChild.replaceChildren(markdown(D, s.text));
    scrollDown();
  }
  function feedbackRow(m) {
    const row = h("div", { class: "aia-actions" });
    [["up", "M7 11v9H4v-9h3zm0 0l4-8a2 2 0 0 1 2 2v4h5a2 2 0 0 1 2 2.3l-1.3 7A2 2 0 0 1 18.7 20H7"],
      ["down", "M17 13V4h3v9h-3zm0 0l-4 8a2 2 0 0 1-2-2v-4H6a2 2 0 0 1-2-2.3l1.3-7A2 2 0 0 1 7.3 4H17"]].forEach(([val, d]) => {
      const b = h("button", { type: "button", class: "aia-fb-" + val, "aria-label": t(val), "aria-pressed": String(m.feedback === val) }, [svg(d)]);
      b.onclick = () => send({ type: "feedback", seq: m.seq, value: b.getAttribute("aria-pressed") === "true" ? null : val });
      row.append(b);
    });
    return row;
  }
  function showFeedback(seq, value) {
    const e = bySeq.get(seq);
    if (e) e.querySelectorAll(".aia-actions button").forEach((b) => b.setAttribute("aria-pressed", String(b.className === "aia-fb-" + value)));
  }
  /** One stored message as DOM: every kind of docs/protocol.md. */
  function render(m, role) {
    if (role === "system" && m.task && typeof m.task.title === "string") {
      const e = h("div", { class: "aia-task aia-msg-task", role: "note" }, [h("b", {}, [t("task")]), m.task.title]);
      const href = m.task.url && safeUrl(m.task.url);
      if (href) { const a = link(D, href, href); a.className = "aia-task-link"; e.append(h("br"), a); }
      return e;
    }
    const e = bubble(role, m.text);
    if (role === "operator") {
      const op = m.operator || {}, src = op.avatarUrl && safeUrl(op.avatarUrl);
      const head = h("div", { class: "aia-who" }, [typeof op.name === "string" && op.name ? op.name : t("operator")]);
      if (src) head.prepend(h("img", { src, alt: "", referrerpolicy: "no-referrer" }));
      e.prepend(head);
    }
    if (role === "assistant" && Array.isArray(m.products) && m.products.length) {
      const row = h("div", { class: "aia-products" });
      m.products.slice(0, 10).forEach((p) => {
        if (!p || typeof p.name !== "string") return;
        const href = safeUrl(p.url), img = p.imageUrl && safeUrl(p.imageUrl);
        const card = h(href ? "a" : "div", { class: "aia-product" });
        if (href) { card.href = href; card.target = "_blank"; card.rel = "noopener noreferrer"; }
        if (img) card.append(h("img", { src: img, alt: "", loading: "lazy", referrerpolicy: "no-referrer" }));
        card.append(h("b", {}, [p.name]));
        if (p.price != null && p.price !== "") {
          let price = String(p.price);
          try { if (p.currency) price = new Intl.NumberFormat(ctx.lang, { style: "currency", currency: p.currency }).format(+p.price); } catch (x) { /* unknown currency: as given */ }
          card.append(h("span", { class: "aia-price" }, [price]));
        }
        if (typeof p.inStock === "boolean") card.append(h("small", {}, [t(p.inStock ? "inStock" : "outStock")]));
        row.append(card);
      });
      e.append(row);
    }
    if (Array.isArray(m.attachments) && m.attachments.length) {
      const ul = h("ul", { class: "aia-files" });
      m.attachments.forEach((a) => { if (a && a.url) ul.append(h("li", {}, [link(D, a.url, typeof a.name === "string" && a.name ? a.name : a.url)])); });
      e.append(ul);
    }
    if (role === "assistant" && cfg.feedback !== false) e.append(feedbackRow(m));
    return e;
  }
  function addMessage(m, live) {
    if (m && streams.has(m.replyTo)) { streams.get(m.replyTo).e.remove(); streams.delete(m.replyTo); }
    if (!m || !Number.isInteger(m.seq) || m.seq < 1 || typeof m.text !== "string" || bySeq.has(m.seq)) return;
    if (m.role === "visitor" && byId.has(m.clientId)) return stored(m.clientId, m.seq);
    const role = ["visitor", "assistant", "operator", "system"].indexOf(m.role) >= 0 ? m.role : "system";
    const e = render(m, role);
    setSeq(e, m.seq);
    place(e, m.seq);
    if (role !== "visitor" && m.seq > lastSeq) setOperator(role === "operator" || (role === "system" && operator));
    if ((role === "assistant" || role === "operator") && !outbox.length && m.seq > lastSeq) typingOff();
    if (live && role !== "visitor" && panel.hidden) ctx.badge(++unread);
    lastSeq = Math.max(lastSeq, m.seq);
    if (live) scrollDown();
  }
  // Another conversation (the session was unknown, or reset): keep only the greeting and unsent bubbles.
  function clear() {
    const keep = new Set(outbox.map((m) => byId.get(m.id)));
    [...list.children].forEach((e) => { if (e !== greet && e !== human && e !== privacy && !keep.has(e)) e.remove(); });
    byId.forEach((e, id) => { if (!keep.has(e)) byId.delete(id); });
    bySeq.clear();
    streams.forEach((s) => s.e.remove()); streams.clear();
    lastSeq = 0; setOperator(false);
    if (outbox.length) typingOn();
  }

  const transmit = (m) => send({ type: "message", id: m.id, text: m.text, page: page() });
  function connect() {
    if (ws || stopped || retryTimer) return;
    let s;
    try { s = ws = new WebSocket(url); } catch (e) { stopped = true; return notice(t("unavailable")); }
    s.onopen = () => {
      const tok = store.get(), hello = { type: "hello", v: 1, page: page() };
      if (tok && tok.length <= 128) hello.session = tok;
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
    if (!offline && !stopped) offline = notice(t("reconnecting"));
  }
  // Backoff 1s, 2s, 4s… 30s with ±25% jitter, or an explicit delay.
  function retry(ms) {
    if (stopped || retryTimer) return;
    if (ms == null) ms = Math.min(30e3, 1e3 * 2 ** Math.min(attempts++, 5) * (0.75 + Math.random() / 2));
    retryTimer = setTimeout(() => { retryTimer = 0; connect(); }, ms);
  }
  // Back online: try now instead of waiting out the backoff.
  addEventListener("online", () => { if (!ws && retryTimer) { clearTimeout(retryTimer); retryTimer = 0; connect(); } });

  function onFrame(f) {
    if (f.type === "welcome") {
      ready = true; attempts = 0;
      if (typeof f.session === "string") store.set(f.session);
      if (offline) { offline.remove(); offline = null; }
      if (convId && f.conversationId !== convId) clear();
      convId = f.conversationId;
      if (!greet && f.bot && f.bot.greeting) greeting(String(f.bot.greeting));
      (f.history || []).forEach((m) => addMessage(m));
      outbox.forEach(transmit); // same ids: the server deduplicates
      if (who) send({ type: "identify", name: who.name, email: who.email });
      clearInterval(pinger);
      pinger = setInterval(() => send({ type: "ping" }), 25e3);
      scrollDown();
    } else if (f.type === "ack") stored(f.id, f.seq);
    else if (f.type === "message") addMessage(f.message, true);
    else if (f.type === "delta") delta(f);
    else if (f.type === "typing") { if (f.on) { if (!streams.has(f.replyTo)) typingOn(); } else typingOff(); }
    else if (f.type === "feedback") showFeedback(f.seq, f.value);
    else if (f.type === "identified") who = null;
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
      notice(f.code === "rate_limited" ? t("fast") : t("wrong") + (f.code ? " (" + f.code + ")" : ""));
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
    if (n > max) return notice(t("long", { n, max }));
    const m = { id: "m-" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10), text };
    const e = bubble("visitor", text, "aia-pending");
    byId.set(m.id, e); outbox.push(m);
    append(e); typingOn(); scrollDown();
    input.value = ""; grow();
    if (typedAt) { typedAt = 0; clearTimeout(idleTimer); }
    transmit(m); // else queued until the next welcome
    connect();
  }
  function grow() { input.style.height = "auto"; input.style.height = Math.min(input.scrollHeight + 2, 120) + "px"; }
  // The visitor's typing goes to a human operator only (at most every 3 s; "stopped" after 4 s).
  function typed() {
    grow();
    if (!operator) return;
    if (Date.now() - typedAt > 3e3) { typedAt = Date.now(); send({ type: "typing", on: true }); }
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => { typedAt = 0; send({ type: "typing", on: false }); }, 4e3);
  }
  // Full screen on phones: follow the visual viewport so the on-screen keyboard never covers the input.
  const vv = window.visualViewport;
  const fit = () => { if (vv) ctx.host.style.setProperty("--aia-vh", vv.height + "px"); };
  if (vv) vv.addEventListener("resize", fit);

  function open() {
    if (!panel.hidden) return;
    panel.hidden = false; fit();
    launcher.setAttribute("aria-expanded", "true");
    unread = 0; ctx.badge(0);
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
  closeBtn.onclick = close;
  human.onclick = () => send({ type: "handoff" });
  root.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !panel.hidden) { e.preventDefault(); close(); }
    // Full screen (phones), the panel is modal: Tab cycles inside it.
    if (e.key === "Tab" && !panel.hidden && innerWidth < 480) {
      const f = [...panel.querySelectorAll("button:not([hidden]),textarea,a[href]")], first = f[0], last = f[f.length - 1];
      if (e.shiftKey && root.activeElement === first) { e.preventDefault(); last.focus(); } else if (!e.shiftKey && root.activeElement === last) { e.preventDefault(); first.focus(); }
    }
  });
  input.onkeydown = (e) => { if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); } };
  input.oninput = typed;
  form.onsubmit = (e) => { e.preventDefault(); submit(); input.focus(); };
  if (store.get()) connect(); // a returning visitor: live at once, new replies badge the launcher

  return {
    open, close,
    toggle() { if (panel.hidden) open(); else close(); },
    // Forget this conversation: the next connection starts a new session.
    reset() {
      store.set(null); outbox = []; convId = null; byId.clear(); clear();
      if (ws) { const s = ws; ws = null; ready = false; clearInterval(pinger); s.close(); }
      if (!panel.hidden) connect();
    },
    // Unverified by nature: any script on the host page can call it (docs/protocol.md).
    identify(w) { who = w; send({ type: "identify", name: w.name, email: w.email }); },
  };
}
