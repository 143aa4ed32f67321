// The txhyco inspector page: a live list of relayed exchanges, one in detail, replay.
// Captured text is untrusted: it only ever reaches the page through textContent.
"use strict";

const state = { rows: new Map(), limit: 500, selected: null, filter: "", detail: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  const type = response.headers.get("content-type") || "";
  const body = type.startsWith("application/json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.error) || response.status + " " + response.statusText);
  return body;
}

// -- formatting --------------------------------------------------------------------

function size(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1024 / 1024).toFixed(1) + " MiB";
}

function clock(seconds) {
  const d = new Date(seconds * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function duration(ms) {
  if (ms === null || ms === undefined) return "…";
  return ms < 1000 ? ms.toFixed(1) + " ms" : (ms / 1000).toFixed(2) + " s";
}

function statusText(s) {
  if (s.status === null || s.status === undefined) return s.state === "failed" ? "failed" : "…";
  return String(s.status);
}

function statusClass(s) {
  if (s.state === "failed") return "failed";
  return s.status ? "s" + String(s.status)[0] : "";
}

// -- the list ------------------------------------------------------------------------

function matches(s, filter) {
  for (const token of filter.split(/\s+/).filter(Boolean)) {
    const t = token.toLowerCase();
    const status = String(s.status || "");
    const statusMatch = /^[1-5]xx$/.test(t) ? status[0] === t[0] : /^[0-9]{1,3}$/.test(t) && status.startsWith(t);
    const methodMatch = (s.method || "").toLowerCase() === t || (t === "ws" && s.kind === "websocket");
    const pathMatch = (s.path || "").toLowerCase().includes(t);
    if (!statusMatch && !methodMatch && !pathMatch) return false;
  }
  return true;
}

function renderList() {
  const tbody = document.querySelector("#requests tbody");
  const ids = [...state.rows.keys()].sort((a, b) => b - a);
  while (ids.length > state.limit) state.rows.delete(ids.pop());
  const shown = ids.map((id) => state.rows.get(id)).filter((s) => matches(s, state.filter));
  tbody.replaceChildren(...shown.map(row));
  document.getElementById("empty").hidden = ids.length > 0;
  document.getElementById("count").textContent =
    shown.length === ids.length ? ids.length + " kept" : shown.length + " of " + ids.length + " shown";
}

function row(s) {
  const method = s.kind === "websocket" ? "WS" : s.method;
  const tr = el("tr", { "data-id": String(s.id), "data-kind": s.kind, onclick: () => select(s.id) },
    el("td", { text: clock(s.time) }),
    el("td", { text: method }),
    el("td", { class: "path", text: s.path, title: s.path }),
    el("td", { class: "status " + statusClass(s), text: statusText(s) }),
    el("td", { text: duration(s.durationMs) }),
    el("td", { text: size(s.requestSize) }),
    el("td", { text: size(s.responseSize) }),
    el("td", { text: s.sender || "" }));
  if (s.id === state.selected) tr.classList.add("selected");
  return tr;
}

async function loadList() {
  const listing = await api("/api/requests");
  state.limit = listing.limit;
  state.rows.clear();
  for (const s of listing.requests) state.rows.set(s.id, s);
  renderList();
}

function connectEvents() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => {
    live.dataset.state = "live";
    live.textContent = "live";
    loadList().catch(() => {});
  });
  events.addEventListener("error", () => {
    live.dataset.state = "reconnecting";
    live.textContent = "reconnecting";
  });
  events.addEventListener("summaries", (event) => {
    let refresh = false;
    for (const s of JSON.parse(event.data)) {
      state.rows.set(s.id, s);
      if (s.id === state.selected) refresh = true;
    }
    renderList();
    if (refresh && !document.getElementById("editor")) select(state.selected, true);
  });
}

// -- bodies ---------------------------------------------------------------------------

function base64Bytes(data) {
  const text = atob(data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function hexDump(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const chunk = bytes.slice(i, i + 16);
    const hex = [...chunk].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = [...chunk].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(i.toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + "  " + ascii);
  }
  return lines.join("\n");
}

function renderBody(body, id) {
  const box = el("div", { class: "body", id: id || null });
  if (!body || body.size === 0) {
    box.append(el("p", { class: "note", text: "no body" }));
    return box;
  }
  const type = (body.contentType || "").toLowerCase();
  if (body.encoding === "base64" && type.startsWith("image/") && !body.truncated) {
    box.append(el("img", { src: "data:" + type.split(";")[0] + ";base64," + body.data, alt: "image body" }));
  } else if (body.encoding === "base64") {
    box.append(el("pre", { class: "hex", text: hexDump(base64Bytes(body.data)) }));
  } else {
    let text = body.data;
    if (type.includes("json") || /^\s*[{[]/.test(text)) {
      try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as it is */ }
    }
    box.append(el("pre", { class: "text", text: text }));
  }
  if (body.truncated) box.append(el("p", { class: "note", text: "showing the first " + body.kept + " of " + body.size + " bytes" }));
  else box.append(el("p", { class: "note", text: size(body.size) + (body.contentType ? ", " + body.contentType : "") }));
  return box;
}

function headerTable(headers) {
  if (!headers.length) return el("p", { class: "note", text: "none" });
  return el("table", { class: "headers" }, ...headers.map(([n, v]) => el("tr", {}, el("td", { text: n }), el("td", { text: v }))));
}

function responseBlock(title, response, id) {
  const block = el("div", { class: "response", id: id || null }, el("h3", { text: title }));
  if (!response) return block;
  block.append(el("div", { class: "status " + statusClass({ status: response.status }), text: response.status + " " + (response.reason || "") }));
  block.append(headerTable(response.headers));
  block.append(renderBody(response.body));
  return block;
}

// -- the detail -------------------------------------------------------------------------

async function select(id, quiet) {
  state.selected = id;
  for (const tr of document.querySelectorAll("#requests tbody tr")) tr.classList.toggle("selected", tr.dataset.id === String(id));
  let detail;
  try {
    detail = await api("/api/requests/" + id);
  } catch (e) {
    if (!quiet) showError(e.message);
    return;
  }
  if (state.selected !== id) return;
  state.detail = detail;
  renderDetail(detail);
}

function showError(text) {
  const pane = document.getElementById("detail");
  pane.hidden = false;
  pane.replaceChildren(el("p", { class: "failed", text: text }));
}

function renderDetail(d) {
  const pane = document.getElementById("detail");
  pane.hidden = false;
  const title = (d.kind === "websocket" ? "WebSocket " : d.method + " ") + d.path;
  const parts = [el("h2", { text: title })];
  parts.push(el("p", { class: "note", text: [clock(d.time), d.sender && "from " + d.sender, "#" + d.id,
    d.durationMs !== null ? duration(d.durationMs) : "pending", d.error].filter(Boolean).join(" · ") }));
  if (d.kind === "http") {
    parts.push(el("div", { class: "actions" },
      el("button", { id: "replay-button", text: "Replay", onclick: () => doReplay({}) }),
      el("button", { id: "edit-toggle", text: "Edit and replay", onclick: () => toggleEditor(d) }),
      el("a", { id: "curl-link", href: "/api/requests/" + d.id + "/curl", target: "_blank", text: "curl" }),
      el("a", { id: "har-link", href: "/api/requests/" + d.id + "/har", download: "exchange-" + d.id + ".har", text: "HAR" })));
    parts.push(el("div", { id: "editor-slot" }));
    parts.push(el("div", { id: "replay-slot" }));
  }
  parts.push(el("h3", { text: "Request headers" }), headerTable(d.request.headers));
  if (d.kind === "http") {
    parts.push(el("h3", { text: "Request body" }), renderBody(d.request.body, "request-body"));
    parts.push(el("h3", { text: "Response " + (d.status !== null ? d.status + " " + (d.reason || "") : "(none yet)") }));
    parts.push(headerTable(d.response.headers));
    parts.push(el("h3", { text: "Response body" }), renderBody(d.response.body, "response-body"));
  } else {
    parts.push(el("h3", { text: "Messages (" + d.messageCount + ", first " + d.messages.length + " kept)" }));
    if (d.unreadable) parts.push(el("p", { class: "note", text: d.unreadable }));
    parts.push(el("table", { class: "messages", id: "messages" }, ...d.messages.map((m) => el("tr", {},
      el("td", { text: clock(m.time) }),
      el("td", { text: m.direction === "in" ? "→ app" : "← app" }),
      el("td", { text: m.kind }),
      el("td", { text: size(m.size) }),
      el("td", { class: "payload", text: m.encoding === "utf-8" ? m.data : hexDump(base64Bytes(m.data)) })))));
  }
  pane.replaceChildren(...parts);
  if (d.kind === "http" && d.replays.length) showReplay(d, d.replays[d.replays.length - 1]);
}

function toggleEditor(d) {
  const slot = document.getElementById("editor-slot");
  if (document.getElementById("editor")) {
    slot.replaceChildren();
    return;
  }
  const body = d.request.body;
  const editor = el("div", { id: "editor" },
    el("label", { text: "method", for: "edit-method" }), el("input", { id: "edit-method", value: d.method }),
    el("label", { text: "path", for: "edit-path" }), el("input", { id: "edit-path", value: d.path }),
    el("label", { text: "headers", for: "edit-headers" }), el("textarea", { id: "edit-headers" }),
    el("label", { text: "body", for: "edit-body" }), el("textarea", { id: "edit-body" }),
    el("span"), el("button", { id: "edit-send", text: "Send", onclick: sendEdited }));
  slot.replaceChildren(editor);
  document.getElementById("edit-headers").value = d.request.headers.map(([n, v]) => n + ": " + v).join("\n");
  document.getElementById("edit-body").value = body && body.encoding === "utf-8" ? body.data : "";
}

function sendEdited() {
  const headers = document.getElementById("edit-headers").value.split("\n")
    .map((line) => line.trim()).filter(Boolean)
    .map((line) => { const i = line.indexOf(":"); return i < 0 ? [line, ""] : [line.slice(0, i).trim(), line.slice(i + 1).trim()]; });
  doReplay({
    method: document.getElementById("edit-method").value.trim(),
    path: document.getElementById("edit-path").value.trim(),
    headers: headers,
    body: document.getElementById("edit-body").value,
  });
}

async function doReplay(edits) {
  const slot = document.getElementById("replay-slot");
  const id = state.selected;
  slot.replaceChildren(el("p", { class: "note", text: "replaying…" }));
  try {
    const record = await api("/api/requests/" + id + "/replay", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(edits),
    });
    if (state.detail && state.detail.id === id) showReplay(state.detail, record);
  } catch (e) {
    slot.replaceChildren(el("p", { class: "failed", id: "replay-error", text: "replay failed: " + e.message }));
  }
}

function showReplay(d, record) {
  const slot = document.getElementById("replay-slot");
  if (!slot) return;
  const original = { status: d.status, reason: d.reason, headers: d.response.headers, body: d.response.body };
  const replayed = el("div", { id: "replay-result" });
  replayed.append(responseBlock("Replay (" + duration(record.durationMs) + ")", record.response));
  if (record.error) replayed.append(el("p", { class: "failed", text: record.error }));
  if (record.request.dropped.length) {
    replayed.append(el("p", { class: "note", text: "not sent (masked when captured): " + record.request.dropped.join(", ") }));
  }
  slot.replaceChildren(el("div", { class: "side" }, el("div", {}, responseBlock("Original", original)), replayed));
}

// -- start -----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", (event) => {
    state.filter = event.target.value;
    renderList();
  });
  loadList().catch((e) => showError("cannot load the list: " + e.message));
  connectEvents();
});
