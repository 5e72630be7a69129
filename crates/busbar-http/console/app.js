// busbar console: a dependency-free single-page front end over busbar's own HTTP API (the same
// routes and the same credentials as `busbar` and curl). Served from the binary at /ui/.
//
// Safety: every value from the server reaches the page through textContent or attribute setters
// (the `h` helper), never as HTML; the page runs under a Content-Security-Policy without inline
// scripts. Credentials (HTTP Basic or an API token) are kept in sessionStorage for the tab only.
"use strict";

const main = () => document.getElementById("main");

// ---- DOM helper -------------------------------------------------------------------------------

/** Creates an element: attributes (on* become listeners), then children (strings become text). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function render(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

// Each route() starts a new view; a page built for an older one (its fetches outran by a later
// navigation or refresh) is dropped instead of replacing the newer page.
let view = 0;
function renderFor(token, ...nodes) {
  if (token === view) render(...nodes);
}

/** Runs `fn` after `ms` if the page built for view `token` still shows (a timer of an earlier
 *  page must not draw over the current one). */
function later(token, fn, ms) {
  setTimeout(() => { if (token === view) fn(); }, ms);
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 4000);
}

const fmt = new Intl.NumberFormat("en");
function num(n) { return fmt.format(n); }
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
function badge(text, kind) { return h("span", { class: `badge ${kind || ""}` }, text); }
function stateBadge(state) {
  const s = String(state);
  if (s === "running" || s === "Stable" || s === "OK") return badge(s, "ok");
  if (s.startsWith("error") || s.startsWith("unauthorized") || s === "STOP" || s === "STALL" || s === "REWIND") return badge(s, "bad");
  if (s.startsWith("backpressure") || s === "WARN" || s === "paused" || s.startsWith("Preparing")) return badge(s, "warn");
  return badge(s);
}
const enc = encodeURIComponent;

// ---- API --------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
  }
}

function authHeader() {
  const token = sessionStorage.getItem("busbar.token");
  if (token) return `Bearer ${token}`;
  const basic = sessionStorage.getItem("busbar.basic");
  return basic ? `Basic ${basic}` : null;
}

/** A call of the API; `body` is JSON-encoded, unless it is a string (sent as it is: JSON text). */
async function api(method, path, body) {
  const headers = { "x-busbar-console": "1" };
  const auth = authHeader();
  if (auth) headers.authorization = auth;
  if (body !== undefined) headers["content-type"] = "application/json";
  const sent = body === undefined || typeof body === "string" ? body : JSON.stringify(body);
  const r = await fetch(path, { method, headers, body: sent });
  if (r.status === 401) {
    signedOut(auth);
    throw new ApiError(401, null);
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}
const get = (p) => api("GET", p);
const post = (p, b) => api("POST", p, b === undefined ? {} : b);

/** /metrics parsed into [{name, labels, value}] (text format 0.0.4). */
async function metrics() {
  const headers = { "x-busbar-console": "1" };
  const auth = authHeader();
  if (auth) headers.authorization = auth;
  const r = await fetch("/metrics", { headers });
  if (r.status === 401) { signedOut(auth); throw new ApiError(401, null); }
  if (!r.ok) throw new ApiError(r.status, null);
  const out = [];
  for (const line of (await r.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}
function sum(samples, name, where) {
  return samples.filter((s) => s.name === name && Object.entries(where || {}).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

// ---- Login ------------------------------------------------------------------------------------

function forget() {
  for (const k of ["busbar.token", "busbar.basic", "busbar.user"]) sessionStorage.removeItem(k);
}

/** A 401: credentials that were sent are refused (and forgotten); none were sent: sign in. */
function signedOut(sent) {
  forget();
  showLogin(sent ? "Those credentials were refused (or the token expired). Sign in again." : undefined);
}

function showLogin(message) {
  const user = h("input", { name: "user", autocomplete: "username" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password" });
  const token = h("input", { name: "token", placeholder: "bb_…" });
  render(h("div", { class: "login" },
    h("h1", {}, "Sign in"),
    h("p", { class: message ? "error" : "muted", id: "login-message" }, message || "This busbar requires authentication: the same users and API tokens as its HTTP API."),
    h("form", {
      onsubmit: (e) => {
        e.preventDefault();
        sessionStorage.removeItem("busbar.token");
        sessionStorage.removeItem("busbar.basic");
        if (token.value) sessionStorage.setItem("busbar.token", token.value);
        else sessionStorage.setItem("busbar.basic", btoa(unescape(encodeURIComponent(`${user.value}:${password.value}`))));
        sessionStorage.setItem("busbar.user", token.value ? "token" : user.value);
        route();
      },
    },
    h("label", {}, "User", user), h("label", {}, "Password", password),
    h("label", {}, "or API token", token), h("button", { type: "submit" }, "Sign in"))));
}

// ---- Overview ---------------------------------------------------------------------------------

async function overview() {
  const token = view;
  const first = await metrics();
  const [topics, groups, subs] = await Promise.all([get("/topics"), get("/groups"), get("/subscriptions")]);
  const card = (label, value, id) => h("div", { class: "card" }, h("div", { class: "label" }, label),
    h("div", { class: "value", "data-metric": id }, value));
  const failing = subs.subscriptions.filter((s) => s.state !== "running");
  const lagging = first.filter((s) => s.name === "busbar_consumer_group_status" && s.value === 1 && s.labels.status !== "OK");
  const rate = h("div", { class: "value", "data-metric": "rate" }, "…");
  renderFor(token,
    h("h1", {}, "Overview"),
    h("div", { class: "cards" },
      card("Topics", num(topics.topics.length), "topics"),
      card("Storage", bytes(sum(first, "busbar_storage_bytes")), "storage"),
      card("Disk free", bytes(sum(first, "busbar_disk_free_bytes")), "disk"),
      h("div", { class: "card" }, h("div", { class: "label" }, "Events in / s"), rate),
      card("Events produced", num(sum(first, "busbar_produce_events_total")), "events"),
      card("Consumer group lag", num(sum(first, "busbar_consumer_group_lag")), "lag"),
      card("Subscriptions", `${subs.subscriptions.length} (${failing.length} not running)`, "subs"),
      card("Dead letters", num(sum(first, "busbar_dead_letters_total")), "dlq"),
      card("Delivery errors", num(sum(first, "busbar_delivery_errors_total")), "errors"),
      card("Offline partitions", num(sum(first, "busbar_partition_offline")), "offline")),
    h("h2", {}, "Subscriptions not running"),
    failing.length ? table(["Subscription", "State", "Dead letters"], failing.map((s) => [
      h("a", { href: `#/subscriptions/${enc(s.name)}` }, s.name), stateBadge(s.state), num(s.counters.dead_lettered)]))
      : h("p", { class: "muted" }, "All running."),
    h("h2", {}, "Consumer groups behind"),
    lagging.length ? table(["Group", "Status"], lagging.map((s) => [
      h("a", { href: `#/groups/${enc(s.labels.group)}` }, s.labels.group), stateBadge(s.labels.status)]))
      : h("p", { class: "muted" }, `${groups.groups.length} groups, none behind.`));
  const t0 = Date.now();
  setTimeout(async () => {
    if (!rate.isConnected) return;
    const second = await metrics();
    const per = (sum(second, "busbar_produce_events_total") - sum(first, "busbar_produce_events_total")) / ((Date.now() - t0) / 1000);
    rate.textContent = per.toFixed(1);
  }, 2000);
}

function table(heads, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, heads.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", typeof c === "number" ? { class: "num" } : {}, c))))));
}

// ---- Topics -----------------------------------------------------------------------------------

async function topics() {
  const token = view;
  const list = await get("/topics");
  // The first sample's time is taken when it is asked for (not after the topics' answers).
  let t0 = 0;
  const sampled = () => { t0 = Date.now(); return metrics().catch(() => null); };
  const [details, first] = await Promise.all([Promise.all(list.topics.map((t) => get(`/topics/${enc(t.name)}`))), sampled()]);
  const rates = details.map((d) => h("span", { "data-rate": d.name }, "…"));
  const bytesIn = details.map((d) => h("span", { "data-bytes-rate": d.name }, "…"));
  const name = h("input", { name: "name", required: true, placeholder: "orders" });
  const parts = h("input", { name: "partitions", type: "number", min: 1, value: 1 });
  renderFor(token,
    h("h1", {}, "Topics"),
    h("form", {
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await post("/topics", { name: name.value, partitions: Number(parts.value) });
          toast(`Created ${name.value}`);
          route();
        } catch (err) { toast(`Not created: ${err.message}`); }
      },
    }, h("label", {}, "Name", name), h("label", {}, "Partitions", parts), h("button", { type: "submit" }, "Create topic")),
    table(["Topic", "Partitions", "Events (high watermark)", "Size", "Events in / s", "Bytes in / s"], details.map((d, i) => [
      h("a", { href: `#/topics/${enc(d.name)}` }, d.name), d.partitions.length,
      d.partitions.reduce((a, p) => a + p.high_watermark - p.log_start_offset, 0),
      bytes(d.partitions.reduce((a, p) => a + p.size_bytes, 0)), rates[i], bytesIn[i]]), { id: "topics" }));
  // Rates from two samples of the produce counters, two seconds apart (per topic, Kafka and HTTP).
  if (!first) return;
  setTimeout(async () => {
    if (!rates.length || !rates[0].isConnected) return;
    const second = await metrics().catch(() => null);
    if (!second) return;
    const secs = (Date.now() - t0) / 1000;
    details.forEach((d, i) => {
      // A counter that went down (a restart, a topic made again) counts from zero.
      const per = (name) => {
        const [a, b] = [sum(first, name, { topic: d.name }), sum(second, name, { topic: d.name })];
        return (b >= a ? b - a : b) / secs;
      };
      rates[i].textContent = per("busbar_produce_events_total").toFixed(1);
      bytesIn[i].textContent = `${bytes(Math.round(per("busbar_produce_bytes_total")))}`;
    });
  }, 2000);
}

/** An event's key or value as busbar answered it: JSON (`value`), or bytes (`value_base64`). */
function field(ev, name) {
  if (ev[`${name}_base64`] !== undefined) return { b64: ev[`${name}_base64`] };
  return { json: ev[name] === undefined ? null : ev[name] };
}

function b64bytes(b64) {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** Renders a key or value as JSON, text or hex (hex pages are read as bytes: `encoding=base64`). */
function showValue(f, as) {
  if (f.b64 !== undefined) {
    const bytes = b64bytes(f.b64);
    if (as === "hex" || !isText(bytes)) {
      const hex = Array.from(bytes).map((b) => b.toString(16).padStart(2, "0")).join(" ");
      return h("pre", { title: `${bytes.length} bytes` }, hex);
    }
    return h("pre", {}, new TextDecoder().decode(bytes));
  }
  const v = f.json;
  if (v === null) return h("span", { class: "muted" }, "null");
  if (as === "json" && typeof v !== "string") return h("pre", {}, JSON.stringify(v, null, 2));
  return h("pre", {}, typeof v === "string" ? v : JSON.stringify(v));
}

function isText(bytes) {
  try { new TextDecoder("utf-8", { fatal: true }).decode(bytes); return true; } catch (e) { return false; }
}

function download(name, type, text) {
  const a = h("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

/** A CSV cell: quoted, and a text a spreadsheet would run as a formula starts with a quote. */
function cell(s) {
  let t = String(s);
  if (/^[=+\-@\t\r]/.test(t)) t = `'${t}`;
  return `"${t.replace(/"/g, "\"\"")}"`;
}

function csv(events) {
  const text = (f) => (f.b64 !== undefined ? `base64:${f.b64}` : f.json === null ? "" : typeof f.json === "string" ? f.json : JSON.stringify(f.json));
  const rows = [["partition", "offset", "time", "key", "value", "headers"]];
  for (const e of events) {
    rows.push([e.partition, e.offset, e.time, text(field(e, "key")), text(field(e, "value")), JSON.stringify(e.headers)]);
  }
  return rows.map((r) => r.map(cell).join(",")).join("\n") + "\n";
}

/** Produces an exact copy of a stored event (its bytes, headers in order) to `topic`. */
async function reproduce(topic, ev) {
  const q = new URLSearchParams({ offset: String(ev.offset), limit: "1", encoding: "base64" });
  const page = await get(`/topics/${enc(topic)}/partitions/${ev.partition}/events?${q}`);
  const e = page.events[0];
  if (!e || e.offset !== ev.offset) throw new Error(`offset ${ev.offset} is no longer stored`);
  if (e.headers.some((x) => x.value === undefined)) throw new Error("a header value is not text: the HTTP API cannot produce it");
  const copy = { headers: e.headers.map((x) => ({ key: x.key, value: x.value })) };
  if (e.key_base64 !== undefined) copy.key_base64 = e.key_base64;
  if (e.value_base64 !== undefined) copy.value_base64 = e.value_base64;
  return post(`/topics/${enc(topic)}/events`, copy);
}

async function topic(name) {
  const token = view;
  const d = await get(`/topics/${enc(name)}`);
  const browser = h("div", { id: "browser" });
  const produceKey = h("input", { name: "key", placeholder: "key (optional)" });
  const produceValue = h("textarea", { name: "value", placeholder: "{\"hello\": \"world\"} or any text" });
  const produceHeaders = h("input", { name: "headers", placeholder: "{\"h\": \"v\"}" });
  const confirmName = h("input", { name: "confirm", placeholder: `type ${name} to delete` });
  const produce = async (e) => {
    e.preventDefault();
    try {
      // JSON text is stored exactly as typed (numbers past 2^53 included); other text as its bytes.
      let value;
      try { JSON.parse(produceValue.value); value = produceValue.value; } catch (err) { value = null; }
      const parts = [];
      if (value !== null) parts.push(`"value":${value}`);
      else parts.push(`"value_base64":${JSON.stringify(btoa(unescape(encodeURIComponent(produceValue.value))))}`);
      if (produceKey.value) parts.push(`"key":${JSON.stringify(produceKey.value)}`);
      if (produceHeaders.value) parts.push(`"headers":${JSON.stringify(JSON.parse(produceHeaders.value))}`);
      const r = await post(`/topics/${enc(name)}/events`, `{${parts.join(",")}}`);
      toast(`Produced at partition ${r.offsets[0].partition}, offset ${r.offsets[0].offset}`);
    } catch (err) { toast(`Not produced: ${err.message}`); }
  };
  const again = async (ev) => {
    if (!confirm(`Produce a copy of partition ${ev.partition} offset ${ev.offset} to ${name}?`)) return;
    try {
      const r = await reproduce(name, ev);
      toast(`Re-produced at partition ${r.offsets[0].partition}, offset ${r.offsets[0].offset}`);
    } catch (err) { toast(`Not re-produced: ${err.message}`); }
  };
  renderFor(token,
    h("h1", {}, `Topic ${name}`),
    table(["Partition", "Log start", "High watermark", "Size", "Damaged ranges"], d.partitions.map((p) => [
      p.partition, p.log_start_offset, p.high_watermark, bytes(p.size_bytes), p.damaged_ranges])),
    h("h2", {}, "Messages"),
    browser,
    h("h2", {}, "Produce"),
    h("form", { id: "produce", onsubmit: produce },
      h("label", {}, "Key", produceKey), h("label", {}, "Value (JSON, or text)", produceValue),
      h("label", {}, "Headers (JSON object)", produceHeaders), h("button", { type: "submit" }, "Produce")),
    h("h2", {}, "Configs"),
    configEditor(name, d),
    h("h2", {}, "Delete"),
    h("form", {
      onsubmit: async (e) => {
        e.preventDefault();
        if (confirmName.value !== name) { toast(`Type ${name} to confirm`); return; }
        try {
          await api("DELETE", `/topics/${enc(name)}`);
          toast(`Deleted ${name}`);
          location.hash = "#/topics";
        } catch (err) { toast(`Not deleted: ${err.message}`); }
      },
    }, h("label", {}, "Confirm", confirmName), h("button", { type: "submit", class: "danger" }, "Delete topic")));
  messageBrowser(browser, name, d, again);
}

/** The topic's configs, each editable; a changed value is saved with PATCH, a set one may go back
 *  to its default (null); a config not listed may be added by name. */
function configEditor(name, d) {
  const inputs = Object.entries(d.configs).map(([k, v]) => [k, String(v), h("input", { name: `config-${k}`, value: String(v) })]);
  const extraName = h("input", { name: "config-new-name", placeholder: "config name" });
  const extraValue = h("input", { name: "config-new-value", placeholder: "value" });
  // Changes that can delete stored events are confirmed first.
  const risky = (configs) => Object.keys(configs).some((k) => k.startsWith("retention.") || k === "cleanup.policy" || k.startsWith("delete."));
  const send = async (configs, what, confirmed) => {
    if (!confirmed && risky(configs)
        && !confirm(`Return ${Object.keys(configs).join(", ")} of ${name} to the default? It may delete stored events at once.`)) return;
    try {
      await api("PATCH", `/topics/${enc(name)}`, { configs });
      toast(what);
      route();
    } catch (err) { toast(`Not changed: ${err.message}`); }
  };
  const save = (e) => {
    e.preventDefault();
    const configs = {};
    for (const [k, was, input] of inputs) if (input.value !== was) configs[k] = input.value;
    if (extraName.value) configs[extraName.value] = extraValue.value;
    if (!Object.keys(configs).length) { toast("Nothing changed"); return; }
    if (risky(configs) && !confirm(`Change ${Object.keys(configs).join(", ")} of ${name}? A shorter retention or a new cleanup policy may delete stored events at once.`)) return;
    send(configs, `Saved ${Object.keys(configs).join(", ")}`, true);
  };
  return h("form", { id: "configs", onsubmit: save },
    table(["Config", "Value", ""], inputs.map(([k, , input]) => [k, input, k in d.overrides
      ? h("span", {}, badge("set"), " ", h("button", { type: "button", class: "secondary", onclick: () => send({ [k]: null }, `${k} back to its default`) }, "Default"))
      : ""])),
    h("div", { class: "bar" }, h("label", {}, "Add", extraName), h("label", {}, "Value", extraValue),
      h("button", { type: "submit" }, "Save configs")));
}

function messageBrowser(root, name, d, again) {
  const partition = h("select", { name: "partition" }, d.partitions.map((p) => h("option", { value: p.partition }, `partition ${p.partition}`)));
  const from = h("select", { name: "from" }, h("option", { value: "newest" }, "newest first"),
    h("option", { value: "offset" }, "from offset"), h("option", { value: "time" }, "from time"));
  const at = h("input", { name: "at", placeholder: "offset or 2026-12-03T10:00:00Z" });
  const limit = h("input", { name: "limit", type: "number", min: 1, max: 1000, value: 50 });
  const as = h("select", { name: "as" }, ["json", "text", "hex"].map((f) => h("option", { value: f }, f)));
  const pattern = h("textarea", { name: "pattern", placeholder: "{\"data\": {\"level\": [\"error\"]}} (EventBridge pattern, evaluated by busbar)" });
  const out = h("div", { id: "messages" });
  let shown = [];
  let next = null;
  const load = async (e, offset) => {
    if (e) e.preventDefault();
    const p = Number(partition.value);
    const n = Number(limit.value) || 50;
    const q = new URLSearchParams({ limit: String(n) });
    try {
      if (offset !== undefined) q.set("offset", String(offset));
      else if (from.value === "newest") {
        // The partition's offsets now, not when the page was drawn.
        const info = (await get(`/topics/${enc(name)}`)).partitions.find((x) => x.partition === p);
        q.set("offset", String(Math.max(info.log_start_offset, info.high_watermark - n)));
      } else if (from.value === "offset") q.set("offset", at.value || "0");
      else q.set("timestamp", at.value);
      if (pattern.value.trim()) q.set("pattern", pattern.value.trim());
      if (as.value === "hex") q.set("encoding", "base64");
      else q.set("decode", "schema");
      const page = await get(`/topics/${enc(name)}/partitions/${p}/events?${q}`);
      const newest = from.value === "newest" && offset === undefined;
      shown = newest ? page.events.slice().reverse() : page.events;
      next = page.next_offset < page.high_watermark ? page.next_offset : null;
      const note = page.scanned === undefined ? "" : ` (${page.scanned} scanned)`;
      out.replaceChildren(
        h("p", { class: "muted" }, `${shown.length} events${note}; high watermark ${page.high_watermark}`),
        table(["Offset", "Time", "Key", "Value", "Headers", ""], shown.map((ev) => [
          ev.offset, ev.time, showValue(field(ev, "key"), "text"), showValue(field(ev, "value"), as.value),
          h("pre", {}, ev.headers.map((x) => `${x.key}: ${x.value !== undefined ? x.value : `(bytes) ${x.value_base64}`}`).join("\n")),
          h("button", { class: "secondary", type: "button", onclick: () => again(ev) }, "Re-produce")]), { id: "events" }),
        next !== null && !newest ? h("button", { type: "button", class: "secondary", id: "next-page", onclick: () => load(null, next) }, `Next page from offset ${next}`) : "");
    } catch (err) {
      out.replaceChildren(h("p", { class: "error" }, err.message));
    }
  };
  root.replaceChildren(
    h("form", { id: "browse", onsubmit: load },
      h("label", {}, "Partition", partition), h("label", {}, "Start", from), h("label", {}, "Offset or time", at),
      h("label", {}, "Limit", limit), h("label", {}, "Show as", as), h("label", {}, "Filter", pattern),
      h("button", { type: "submit" }, "Load"),
      h("button", { type: "button", class: "secondary", onclick: () => download(`${name}.json`, "application/json", JSON.stringify(shown, null, 2)) }, "Export JSON"),
      h("button", { type: "button", class: "secondary", onclick: () => download(`${name}.csv`, "text/csv", csv(shown)) }, "Export CSV")),
    out);
  load();
}

// ---- Consumer groups --------------------------------------------------------------------------

async function groups() {
  const token = view;
  const [list, m] = await Promise.all([get("/groups"), metrics()]);
  const status = (g) => {
    const s = m.find((x) => x.name === "busbar_consumer_group_status" && x.labels.group === g && x.value === 1);
    return s ? stateBadge(s.labels.status) : "";
  };
  const details = await Promise.all(list.groups.map((g) => get(`/groups/${enc(g.group)}`).catch(() => null)));
  renderFor(token, h("h1", {}, "Consumer groups"),
    list.groups.length ? table(["Group", "State", "Members", "Lag", "Status"], list.groups.map((g, i) => [
      h("a", { href: `#/groups/${enc(g.group)}` }, g.group), stateBadge(g.state),
      details[i] ? details[i].members.length : "", details[i] ? details[i].lag : "", status(g.group)]), { id: "groups" })
      : h("p", { class: "muted" }, "No consumer groups yet."));
}

async function group(name) {
  const token = view;
  const [d, m] = await Promise.all([get(`/groups/${enc(name)}`), metrics()]);
  const secs = (t, p) => {
    const s = m.find((x) => x.name === "busbar_consumer_group_lag_seconds" && x.labels.group === name && x.labels.topic === t && x.labels.partition === String(p));
    return s ? `${s.value.toFixed(1)} s` : "";
  };
  const st = m.find((x) => x.name === "busbar_consumer_group_status" && x.labels.group === name && x.value === 1);
  const topicsOf = [...new Set(d.offsets.map((o) => o.topic))];
  const topicSel = h("select", { name: "topic" }, topicsOf.map((t) => h("option", { value: t }, t)));
  const to = h("select", { name: "to" }, ["earliest", "latest", "offset", "timestamp"].map((x) => h("option", { value: x }, x)));
  const arg = h("input", { name: "arg", placeholder: "offset or time (RFC 3339)" });
  const preview = h("div", { id: "preview" });
  const body = (dry) => {
    let target = to.value;
    if (to.value === "offset") target = { offset: Number(arg.value) };
    if (to.value === "timestamp") target = { timestamp: arg.value };
    return { topic: topicSel.value, to: target, dry_run: dry };
  };
  // Apply sends exactly the previewed request; changing the form drops the preview.
  let previewed = null;
  for (const el of [topicSel, to, arg]) {
    for (const kind of ["input", "change"]) el.addEventListener(kind, () => { previewed = null; preview.replaceChildren(); });
  }
  const reset = async (dry) => {
    try {
      const req = dry ? body(true) : { ...previewed, dry_run: false };
      if (dry) previewed = req;
      const r = await post(`/groups/${enc(name)}/offsets/reset`, req);
      const now = Object.fromEntries(d.offsets.filter((o) => o.topic === req.topic).map((o) => [o.partition, o.committed_offset]));
      preview.replaceChildren(h("p", {}, dry ? "Preview (nothing changed yet):" : "Moved:"),
        table(["Partition", "Committed now", dry ? "Would move to" : "Moved to"], r.offsets.map((o) => [
          o.partition, now[o.partition] === undefined ? "none" : now[o.partition], o.offset])),
        dry ? h("button", { type: "button", class: "danger", onclick: () => reset(false) }, "Apply reset") : "");
      if (!dry) { toast("Offsets reset"); later(token, route, 800); }
    } catch (err) { preview.replaceChildren(h("p", { class: "error" }, err.message)); }
  };
  renderFor(token, h("h1", {}, `Consumer group ${name} `, stateBadge(d.state), " ", st ? stateBadge(st.labels.status) : ""),
    h("h2", {}, "Members"),
    d.members.length ? table(["Member", "Client", "Host", "Assignment"], d.members.map((x) => [x.member_id, x.client_id, x.client_host,
      x.assignment.map((a) => `${a.topic}: ${a.partitions.join(", ")}`).join("; ")]))
      : h("p", { class: "muted" }, "No members."),
    h("h2", {}, "Offsets and lag"),
    table(["Topic", "Partition", "Committed", "High watermark", "Lag", "Lag (time)"], d.offsets.map((o) => [
      o.topic, o.partition, o.committed_offset, o.high_watermark, o.lag, secs(o.topic, o.partition)]), { id: "offsets" }),
    h("h2", {}, "Reset offsets"),
    h("p", { class: "muted" }, "Allowed while the group has no members. Preview first; nothing moves until you apply."),
    h("form", { id: "reset", onsubmit: (e) => { e.preventDefault(); reset(true); } },
      h("label", {}, "Topic", topicSel), h("label", {}, "To", to), h("label", {}, "Offset or time", arg),
      h("button", { type: "submit" }, "Preview")),
    preview);
}

// ---- Subscriptions ----------------------------------------------------------------------------

function target(s) { return s.target.url || (s.target.topic ? `topic ${s.target.topic}` : JSON.stringify(s.target)); }

/** Runs `pattern` (JSON text) on the server against the latest events of `src` (up to 200 per
 *  partition) and shows what matches in `out`. */
async function testPattern(src, pattern, out) {
  try {
    if (!src) throw new Error("give a source topic");
    // A blank pattern matches every event (as a subscription without one).
    const q = new URLSearchParams({ limit: "20" });
    if (pattern.trim()) q.set("pattern", pattern);
    const d = await get(`/topics/${enc(src)}`);
    const pages = await Promise.all(d.partitions.map((p) => {
      const q2 = new URLSearchParams(q);
      q2.set("offset", String(Math.max(p.log_start_offset, p.high_watermark - 200)));
      return get(`/topics/${enc(src)}/partitions/${p.partition}/events?${q2}`);
    }));
    const hits = pages.flatMap((p) => p.events);
    out.replaceChildren(h("p", {}, `${hits.length} of the recent events of ${src} match (the latest 200 of each partition searched, at most 20 shown each).`),
      table(["Partition", "Offset", "Value"], hits.map((ev) => [ev.partition, ev.offset, showValue(field(ev, "value"), "text")])));
  } catch (err) { out.replaceChildren(h("p", { class: "error" }, err.message)); }
}

/** The create form: the common fields; a target is a URL or `topic:NAME`. */
function createSubscription() {
  const name = h("input", { name: "name", required: true, placeholder: "orders-to-billing" });
  const sources = h("input", { name: "sources", required: true, placeholder: "orders, returns" });
  const start = h("select", { name: "start" }, h("option", { value: "latest" }, "latest"), h("option", { value: "earliest" }, "earliest"));
  const pattern = h("textarea", { name: "pattern", placeholder: "{\"data\": {\"level\": [\"error\"]}} (empty: every event)" });
  const target = h("input", { name: "target", required: true, placeholder: "https://hooks.example/x or topic:audit" });
  const dlq = h("input", { name: "dead_letter_topic", placeholder: "orders-dlq (optional)" });
  const tested = h("div", { id: "create-tested" });
  const list = () => sources.value.split(",").map((x) => x.trim()).filter(Boolean);
  const create = async (e) => {
    e.preventDefault();
    try {
      const spec = { name: name.value, sources: list(), start: start.value,
        target: target.value.startsWith("topic:") ? { topic: target.value.slice(6) } : { url: target.value } };
      if (pattern.value.trim()) spec.pattern = JSON.parse(pattern.value);
      if (dlq.value) spec.dead_letter_topic = dlq.value;
      await post("/subscriptions", spec);
      toast(`Created ${name.value}`);
      location.hash = `#/subscriptions/${enc(name.value)}`;
    } catch (err) { toast(`Not created: ${err.message}`); }
  };
  return h("form", { id: "create-subscription", onsubmit: create },
    h("label", {}, "Name", name), h("label", {}, "Sources", sources), h("label", {}, "Start", start),
    h("label", {}, "Pattern (JSON)", pattern), h("label", {}, "Target", target), h("label", {}, "Dead-letter topic", dlq),
    h("div", { class: "bar" },
      h("button", { type: "button", class: "secondary", onclick: () => testPattern(list()[0], pattern.value, tested) }, "Test pattern"),
      h("button", { type: "submit" }, "Create subscription")),
    tested);
}

async function subscriptions() {
  const token = view;
  const list = await get("/subscriptions");
  const act = (s) => {
    const paused = String(s.state).startsWith("paused");
    return h("button", { class: "secondary", type: "button", onclick: async () => {
      try { await post(`/subscriptions/${enc(s.name)}/${paused ? "resume" : "pause"}`); toast(`${paused ? "Resumed" : "Paused"} ${s.name}`); route(); }
      catch (err) { toast(err.message); }
    } }, paused ? "Resume" : "Pause");
  };
  renderFor(token, h("h1", {}, "Subscriptions"),
    list.subscriptions.length ? table(["Subscription", "State", "Target", "Delivery", "Matched", "Delivered", "Dead letters", "Lag", ""],
      list.subscriptions.map((s) => [h("a", { href: `#/subscriptions/${enc(s.name)}` }, s.name), stateBadge(s.state), target(s),
        s.guarantee.replace(/_/g, "-"), s.counters.matched, s.counters.delivered, s.counters.dead_lettered, s.lag, act(s)]), { id: "subscriptions" })
      : h("p", { class: "muted" }, "No subscriptions yet."),
    h("h2", {}, "Create"), createSubscription());
}

async function subscription(name) {
  const token = view;
  const [s, replays] = await Promise.all([get(`/subscriptions/${enc(name)}`), get(`/subscriptions/${enc(name)}/replays`)]);
  const from = h("input", { name: "from", placeholder: "2026-12-03T00:00:00Z" });
  const to = h("input", { name: "to", placeholder: "now" });
  const rate = h("input", { name: "rate", type: "number", min: 1, value: 100 });
  const pattern = h("textarea", { name: "pattern" }, s.pattern ? JSON.stringify(s.pattern, null, 1) : "");
  const tested = h("div", { id: "tested" });
  const test = (e) => { e.preventDefault(); testPattern(s.sources[0], pattern.value, tested); };
  // Replay runs with their progress, redrawn alone (not the page: a form being filled stays) every
  // two seconds while one runs.
  const replaysBox = h("div", { id: "replays-box" });
  const showReplays = (list) => {
    replaysBox.replaceChildren(list.replays.length ? table(["Replay", "State", "From", "To", "Matched", "Delivered", "Last replayed"],
      list.replays.map((r) => [r.name, stateBadge(r.state), r.from, r.to, r.matched, r.delivered, r.last_replayed_time || ""]),
      { id: "replays" }) : "");
    if (list.replays.some((r) => r.state === "RUNNING")) later(token, refreshReplays, 2000);
  };
  const refreshReplays = async () => {
    try { showReplays(await get(`/subscriptions/${enc(name)}/replays`)); } catch (err) { /* shown at the next page load */ }
  };
  const editable = {};
  for (const k of ["sources", "start", "pattern", "transform", "target", "delivery", "dead_letter_topic"]) {
    if (s[k] !== undefined && s[k] !== null) editable[k] = s[k];
  }
  const specText = h("textarea", { name: "spec", class: "spec" }, JSON.stringify(editable, null, 2));
  const save = async (e) => {
    e.preventDefault();
    try {
      // PUT replaces the spec; positions and retry state stay. Header values shown as *** keep
      // their stored value.
      await api("PUT", `/subscriptions/${enc(name)}`, JSON.parse(specText.value));
      toast(`Saved ${name}`);
      route();
    } catch (err) { toast(`Not saved: ${err.message}`); }
  };
  const remove = async () => {
    if (!confirm(`Delete subscription ${name}? Its positions and retry state go; dead letters stay.`)) return;
    try {
      await api("DELETE", `/subscriptions/${enc(name)}`);
      toast(`Deleted ${name}`);
      location.hash = "#/subscriptions";
    } catch (err) { toast(`Not deleted: ${err.message}`); }
  };
  const paused = String(s.state).startsWith("paused");
  renderFor(token, h("h1", {}, `Subscription ${name} `, stateBadge(s.state)),
    h("div", { class: "bar" },
      h("button", { type: "button", onclick: async () => {
        try { await post(`/subscriptions/${enc(name)}/${paused ? "resume" : "pause"}`); route(); } catch (err) { toast(err.message); }
      } }, paused ? "Resume" : "Pause"),
      h("a", { href: `#/dead-letters/${enc(s.dead_letter_topic || "")}?subscription=${enc(name)}` }, s.dead_letter_topic ? "Dead letters" : "")),
    h("div", { class: "cards" }, Object.entries(s.counters).filter(([, v]) => typeof v === "number" && !String(v).includes(".")).filter(([k]) => k !== "latency_sum_ms")
      .map(([k, v]) => h("div", { class: "card" }, h("div", { class: "label" }, k.replace(/_/g, " ")), h("div", { class: "value" }, num(v))))),
    h("h2", {}, "Pattern tester"),
    h("p", { class: "muted" }, "Runs a pattern against the latest events of the first source, on the server."),
    h("form", { id: "pattern-test", onsubmit: test }, h("label", {}, "Pattern", pattern), h("button", { type: "submit" }, "Test")),
    tested,
    h("h2", {}, "Replay"),
    h("form", {
      id: "replay",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          // A replay covers stored events: `to` defaults to now.
          const until = to.value || new Date().toISOString();
          await post(`/subscriptions/${enc(name)}/replays`, { name: `console-${Date.now()}`, from: from.value, to: until, rate: Number(rate.value) });
          toast("Replay started");
          refreshReplays();
        } catch (err) { toast(`Not started: ${err.message}`); }
      },
    }, h("label", {}, "From", from), h("label", {}, "To", to), h("label", {}, "Events / s", rate), h("button", { type: "submit" }, "Start replay")),
    replaysBox,
    h("h2", {}, "Specification"),
    s.owner === "config" ? h("p", { class: "muted" }, `Declared in ${s.config_file || "the configuration file"}, which owns it: edit it there.`) : "",
    s.owner === "config" ? h("pre", {}, specText.value) : h("form", { id: "edit-subscription", onsubmit: save }, h("label", {}, "Spec (JSON)", specText),
      h("div", { class: "bar" }, h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", class: "danger", onclick: remove }, "Delete subscription"))));
  showReplays(replays);
}

// ---- Dead letters -----------------------------------------------------------------------------

async function deadLetters(topicName, params) {
  const token = view;
  const subs = await get("/subscriptions");
  const topicsWithLetters = [...new Set(subs.subscriptions.map((s) => s.dead_letter_topic).filter(Boolean))];
  const topicSel = h("select", { name: "topic" }, topicsWithLetters.map((t) => h("option", { value: t, selected: t === topicName }, t)));
  const sub = h("input", { name: "subscription", value: params.get("subscription") || "" });
  const reason = h("input", { name: "reason", value: params.get("reason") || "", placeholder: "http_status, timeout, …" });
  const out = h("div", { id: "letters" });
  const filter = () => {
    const f = {};
    if (sub.value) f.subscription = sub.value;
    if (reason.value) f.reason = reason.value;
    return f;
  };
  // Sends `body` (the letters to redrive), after `question` is confirmed when there is one. One
  // letter: exactly it (to_offset is exclusive), as its subscription, unconfirmed; what the filter
  // selects, or every letter of the topic, after a confirmation.
  const redrive = async (body, what, question) => {
    if (question && !confirm(question)) return;
    try {
      const r = await post(`/dead-letters/${enc(topicSel.value)}/redrive`, body);
      const orphans = r.no_subscription ? `; ${r.no_subscription} of deleted subscriptions left alone` : "";
      toast(`Redrove ${r.redriven} ${what} (${r.skipped} redriven before, skipped${orphans})`);
      load();
    } catch (err) { toast(`Not redriven: ${err.message}`); }
  };
  const load = async (e) => {
    if (e) e.preventDefault();
    if (!topicSel.value) { out.replaceChildren(h("p", { class: "muted" }, "No subscription has a dead-letter topic.")); return; }
    const q = new URLSearchParams({ limit: "100", ...filter() });
    try {
      const r = await get(`/dead-letters/${enc(topicSel.value)}?${q}`);
      out.replaceChildren(h("p", { class: "muted" }, `${r.dead_letters.length} dead letters`),
        table(["Offset", "Subscription", "Reason", "Error", "Attempts", "Source", "Event", ""], r.dead_letters.map((l) => [
          `${l.partition}-${l.offset}`, l.subscription, badge(l.reason, "bad"), l.error, l.attempts,
          `${l.source_topic} ${l.source_partition}-${l.source_offset}`, showValue(field(l.event, "value"), "text"),
          h("button", { type: "button", class: "secondary", onclick: () => redrive({ subscription: l.subscription, partition: l.partition, from_offset: l.offset, to_offset: l.offset + 1 }, "1 letter") }, "Redrive")]),
        { id: "dead-letters" }));
    } catch (err) { out.replaceChildren(h("p", { class: "error" }, err.message)); }
  };
  renderFor(token, h("h1", {}, "Dead letters"),
    h("form", { id: "letters-filter", onsubmit: load },
      h("label", {}, "Dead-letter topic", topicSel), h("label", {}, "Subscription", sub), h("label", {}, "Reason", reason),
      h("button", { type: "submit" }, "Show"),
      h("button", { type: "button", class: "secondary", onclick: () => redrive(filter(), "letters matching the filter",
        `Redrive every dead letter of ${topicSel.value} the filter selects (not only those shown)?`) }, "Redrive all shown by the filter"),
      h("button", { type: "button", class: "secondary", id: "redrive-all", onclick: () => redrive({}, "letters",
        `Redrive every dead letter of ${topicSel.value}, of every subscription?`) }, "Redrive all")),
    out);
  load();
}

// ---- Schemas, users, ACLs and tokens (read-only) ------------------------------------------------

const registry = (path) => get(`/schema-registry${path}`);

async function schemas(subject) {
  const token = view;
  const [subjects, config] = await Promise.all([registry("/subjects"), registry("/config").catch(() => null)]);
  const level = config ? config.compatibilityLevel : "";
  if (!subject) {
    const latest = await Promise.all(subjects.map((s) => registry(`/subjects/${enc(s)}/versions/latest`)));
    renderFor(token, h("h1", {}, "Schemas"),
      h("p", { class: "muted" }, `Compatibility (global): ${level}. Register and change schemas with \`busbar schema\` or any Confluent client.`),
      subjects.length ? table(["Subject", "Latest version", "Id", "Type"], latest.map((v) => [
        h("a", { href: `#/schemas/${enc(v.subject)}` }, v.subject), v.version, v.id, v.schemaType || "AVRO"]), { id: "subjects" })
        : h("p", { class: "muted" }, "No subjects yet."));
    return;
  }
  const versions = await registry(`/subjects/${enc(subject)}/versions`);
  const all = await Promise.all(versions.map((n) => registry(`/subjects/${enc(subject)}/versions/${n}`)));
  const own = await registry(`/config/${enc(subject)}?defaultToGlobal=true`).catch(() => null);
  renderFor(token, h("h1", {}, `Subject ${subject}`),
    h("p", { class: "muted" }, `Compatibility: ${own ? own.compatibilityLevel : level}`),
    table(["Version", "Id", "Type", "Schema"], all.reverse().map((v) => {
      let text = v.schema;
      try { text = JSON.stringify(JSON.parse(v.schema), null, 2); } catch (e) { /* Protobuf text */ }
      return [v.version, v.id, v.schemaType || "AVRO", h("pre", {}, text)];
    }), { id: "versions" }));
}

async function security() {
  const token = view;
  const section = async (title, load, heads, row, id) => {
    try {
      const rows = await load();
      return [h("h2", {}, title), rows.length ? table(heads, rows.map(row), { id }) : h("p", { class: "muted" }, "None.")];
    } catch (err) {
      return [h("h2", {}, title), h("p", { class: "error" }, err.message)];
    }
  };
  const parts = await Promise.all([
    section("Users", async () => (await get("/users")).users, ["User", "SCRAM mechanisms"],
      (u) => [u.name, u.mechanisms.map((m) => `${m.mechanism} (${m.iterations} iterations)`).join(", ")], "users"),
    section("ACLs", async () => (await get("/acls")).acls, ["Principal", "Host", "Operation", "Permission", "Resource", "Pattern"],
      (a) => [a.principal, a.host, a.operation, badge(a.permission, a.permission === "ALLOW" ? "ok" : "bad"),
        `${a.resource_type} ${a.resource_name}`, a.pattern_type], "acls"),
    section("API tokens", async () => (await get("/tokens")).tokens, ["Token", "User", "Created", "Expires"],
      (t) => [t.name, t.user, t.created, t.expires || "never"], "tokens"),
  ]);
  renderFor(token, h("h1", {}, "Users and ACLs"),
    h("p", { class: "muted" }, "Read-only. Manage them with `busbar user`, `busbar acl` and `POST /tokens`; token values are shown once, when created, never here."),
    ...parts.flat());
}

// ---- Router -----------------------------------------------------------------------------------

async function route() {
  view += 1;
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  let parts;
  try {
    parts = (path || "/").split("/").filter(Boolean).map(decodeURIComponent);
  } catch (err) {
    render(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Overview")));
    return;
  }
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === (parts[0] || "overview"));
  const who = sessionStorage.getItem("busbar.user");
  document.getElementById("who").replaceChildren(...(who ? [`signed in as ${who} `,
    h("button", { type: "button", class: "secondary", id: "sign-out", onclick: () => { forget(); location.hash = "#/"; route(); } }, "Sign out")] : []));
  try {
    switch (parts[0]) {
      case undefined: await overview(); break;
      case "topics": await (parts[1] ? topic(parts[1]) : topics()); break;
      case "groups": await (parts[1] ? group(parts[1]) : groups()); break;
      case "subscriptions": await (parts[1] ? subscription(parts[1]) : subscriptions()); break;
      case "dead-letters": await deadLetters(parts[1], params); break;
      case "schemas": await schemas(parts[1]); break;
      case "security": await security(); break;
      default: render(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Overview")));
    }
  } catch (err) {
    if (err.status !== 401) render(h("h1", {}, "Error"), h("p", { class: "error" }, err.message));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
