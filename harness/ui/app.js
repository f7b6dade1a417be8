// Eventual's web UI: plain JavaScript, no build step, served from the binary.
// Views (hash routes): #/ runs + forms, #/runs/ID run page (#/runs/ID?line=N: at log line N), #/envs
// board, #/sink/KEY?prefix=P keys (paged) and a key's records.
// Live updates come from Server-Sent Events on /api/events (runs, envs); a running log is followed
// with one streamed GET /api/runs/ID/log?follow=true&offset=N.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") n.className = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) n.setAttribute(k, v);
  }
  for (const kid of kids.flat()) n.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return n;
};

// A server started with --token answers 401: ask once, keep the token in a cookie (sent with
// every request, SSE included), and reload so every live stream reconnects with it.
let askedForToken = false;
function askForToken() {
  if (askedForToken) return;
  askedForToken = true;
  const token = window.prompt("This Eventual server needs its access token (the --token it was started with):");
  if (token) {
    document.cookie = `eventual_token=${encodeURIComponent(token)}; path=/; SameSite=Strict`;
    location.reload();
  }
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  if (res.status === 401) askForToken();
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!res.ok) {
    const err = new Error(body && body.error ? body.error.message : `HTTP ${res.status}`);
    err.status = res.status;
    err.code = body && body.error ? body.error.code : "";
    err.fields = body && body.error ? body.error.fields || {} : {};
    throw err;
  }
  return body;
}

// One time convention on every page: local time shown, the UTC ISO string on hover.
function when(iso, style = "datetime") {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const text = style === "time" ? d.toLocaleTimeString() : d.toLocaleString();
  return el("time", { datetime: d.toISOString(), title: d.toISOString() }, text);
}
const seconds = (ms) => (ms != null ? `${(ms / 1000).toFixed(3)}s` : "");
const testHref = (path) => `#/tests/${path.split("/").map(encodeURIComponent).join("/")}`;
const NOT_PASSED = new Set(["failed", "error", "timed_out", "cancelled", "interrupted", "skipped"]);

const badge = (status) => el("span", { class: `badge ${status}` }, status.replace("_", " "));

function duration(run) {
  if (!run.started_at) return "";
  const end = run.finished_at ? Date.parse(run.finished_at) : Date.now();
  const s = Math.max(0, (end - Date.parse(run.started_at)) / 1000);
  return s < 60 ? `${s.toFixed(1)}s` : `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
}

// ---- live connection shared by the views --------------------------------------------------
const listeners = new Set();
let events = null;
function connectEvents() {
  events = new EventSource("/api/events");
  // An event sent before the connection was open is lost to it: on every (re)open the views
  // hear "open" and fetch again what they show.
  events.onopen = () => {
    $("#live").textContent = "live";
    for (const fn of listeners) fn("open", null);
  };
  events.onerror = () => { $("#live").textContent = "reconnecting…"; };
  for (const kind of ["run", "env"]) {
    events.addEventListener(kind, (e) => {
      const data = JSON.parse(e.data);
      for (const fn of listeners) fn(kind, data);
    });
  }
}

// ---- router -----------------------------------------------------------------------------
let cleanup = () => {};
let shownRun = null; // the run page on screen: a link to one of its lines scrolls, it does not reload
let shownSink = null; // the sink view on screen: selecting a key keeps the listed pages of keys
function route() {
  const hash = location.hash || "#/";
  let m = hash.match(/^#\/runs\/(\d+)(?:\?line=(\d+))?/);
  if (m && shownRun && shownRun.id === Number(m[1])) {
    if (m[2]) shownRun.goToLine(Number(m[2]));
    return;
  }
  const sink = hash.startsWith("#/sink") ? sinkHash(hash) : null;
  if (sink && shownSink && shownSink.prefix === sink.prefix) {
    shownSink.select(sink.key);
    return;
  }
  shownRun = null;
  shownSink = null;
  cleanup();
  cleanup = () => {};
  listeners.clear();
  const main = $("#main");
  main.replaceChildren();
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.remove("active");
  if (m) { mark("runs"); shownRun = runPage(main, Number(m[1]), m[2] ? Number(m[2]) : 0); }
  else if (hash.startsWith("#/tests/")) { mark("runs"); testPage(main, decodeURIComponent(hash.slice(8))); }
  else if (hash.startsWith("#/envs")) { mark("envs"); envsPage(main); }
  else if (sink) { mark("sink"); shownSink = sinkPage(main, sink); }
  else { mark("runs"); runsPage(main); }
}
const mark = (name) => $(`[data-nav=${name}]`).classList.add("active");
const view = (id) => document.getElementById(id).content.cloneNode(true);

// ---- runs table, new run form, upload form ------------------------------------------------
function runsPage(main) {
  main.append(view("runs-view"));
  const body = $("#runs-body");
  const rows = new Map();
  // The latest state of each run seen on /api/events. A page fetched from /api/runs may have been
  // read before a change whose event was already applied; every change sends an event, so the
  // event's state is never older than the page's and must not be overwritten by it.
  const live = new Map();
  const filters = { username: "", env_id: "", status: "", test: "" };
  // The filters live in the address (`#/?test=PATH&status=failed`), so a reload or a shared link
  // shows the same list; a test's page links to `#/?test=PATH`.
  const wanted = new URLSearchParams((location.hash.split("?")[1]) || "");
  for (const k of Object.keys(filters)) {
    if (wanted.get(k)) { filters[k] = wanted.get(k); $(`#filters [name=${k}]`).value = filters[k]; }
  }
  let oldest = null;

  const matches = (run) =>
    (!filters.username || run.username === filters.username) &&
    (!filters.env_id || String(run.env_id) === filters.env_id) &&
    (!filters.status || run.status === filters.status) &&
    (!filters.test || run.tests.some((t) => t.path === filters.test));

  function rowFor(run) {
    const tr = el("tr", { "data-run": run.id },
      el("td", {}, el("a", { href: `#/runs/${run.id}` }, `#${run.id}`)),
      el("td", {}, run.username),
      el("td", {}, run.env_id),
      el("td", { class: "tests-cell", title: run.tests.map((t) => t.path).join("\n") }, run.tests.map((t) => t.path).join(", ")),
      el("td", { class: "status" }, badge(run.status)),
      el("td", { class: "duration" }, duration(run)));
    tr.run = run;
    return tr;
  }
  function upsert(run, atTop) {
    const old = rows.get(run.id);
    if (!matches(run)) { if (old) { old.remove(); rows.delete(run.id); } return; }
    const tr = rowFor(run);
    if (old) old.replaceWith(tr);
    else if (atTop) body.prepend(tr);
    else body.append(tr);
    rows.set(run.id, tr);
  }
  async function load(reset) {
    if (reset) { body.replaceChildren(); rows.clear(); oldest = null; }
    const q = new URLSearchParams({ limit: "50" });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (oldest) q.set("before", oldest);
    const { runs } = await api(`/api/runs?${q}`);
    for (const run of runs) upsert(live.get(run.id) || run, false);
    if (runs.length) oldest = runs[runs.length - 1].id;
    $("#more").hidden = runs.length < 50;
  }
  $("#more").addEventListener("click", () => load(false));
  $("#filters").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    for (const k of Object.keys(filters)) filters[k] = String(f.get(k) || "").trim();
    const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    const hash = q.size ? `#/?${q}` : "#/";
    // A new history entry (Back shows the list as it was) without re-rendering the page.
    if (hash !== (location.hash || "#/")) history.pushState(null, "", hash);
    load(true);
  });
  listeners.add((kind, data) => {
    if (kind === "run") { live.set(data.id, data); upsert(data, !rows.has(data.id)); }
    // (Re)connected: events sent meanwhile are lost; what the page shows is read again, and only
    // events from now on count as newer than it.
    if (kind === "open") { live.clear(); load(true).catch(() => {}); }
  });
  const tick = setInterval(() => {
    for (const tr of rows.values()) if (tr.run.status === "running") tr.querySelector(".duration").textContent = duration(tr.run);
  }, 1000);
  cleanup = () => clearInterval(tick);
  load(true);
  newRunForm();
  uploadForm();
}

let catalog = [];
async function loadCatalog() {
  const listing = await api("/api/tests");
  catalog = listing.tests;
  const picker = $("#nr-tests");
  if (!picker) return;
  const chosen = new Set([...picker.querySelectorAll("input:checked")].map((i) => i.value));
  const byDir = new Map();
  const group = (dir) => { if (!byDir.has(dir)) byDir.set(dir, { tests: [], support: [] }); return byDir.get(dir); };
  for (const t of catalog) group(t.dir).tests.push(t);
  // Support files are listed beside the tests they serve, without a checkbox: they never run.
  for (const s of listing.support || []) group(s.dir).support.push(s);
  const box = (value, text, extra = {}) =>
    el("input", { type: "checkbox", name: "tests", value, ...(chosen.has(value) ? { checked: "" } : {}), ...extra });
  // A whole directory ("dir/") or a tag ("tag:NAME") is resolved by the server when the run is made.
  const tags = [...new Set(catalog.flatMap((t) => t.tags))].sort();
  const tagGroup = tags.length ? [el("fieldset", { class: "tag-group" }, el("legend", {}, "Tags"),
    el("div", { class: "chips" }, tags.map((tag) => el("label", { class: "chip", "data-tag": tag },
      box(`tag:${tag}`, tag, { "aria-label": `tag ${tag}` }), tag))))] : [];
  picker.replaceChildren(...tagGroup, ...[...byDir.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([dir, { tests, support }]) =>
    el("fieldset", {}, el("legend", {}, dir || "(top level)"),
      dir ? el("label", { class: "dir-pick", "data-path": `${dir}/` },
        box(`${dir}/`, dir, { "aria-label": `whole directory ${dir}` }), el("small", {}, "whole directory")) : "",
      tests.map((t) => el("div", { class: "pick", "data-path": t.path },
        el("label", {},
          box(t.path),
          t.path.split("/").pop(),
          t.tags.length ? el("small", { class: "tags", title: t.tags.join(", ") }, ` [${t.tags.join(", ")}]`) : ""),
        el("a", { class: "history", href: testHref(t.path), "aria-label": `history of ${t.path}`, title: "this test's history" }, "history"))),
      support.map((s) => el("span", { class: "support", "data-path": s.path, title: "support file: uploaded beside the tests, never run itself" },
        s.path.split("/").pop(), el("small", { class: "tags" }, " support"))))));
  const dirs = $("#dirs");
  if (dirs) dirs.replaceChildren(...[...byDir.keys()].filter(Boolean).map((d) => el("option", { value: d })));
  filterTests();
}
function filterTests() {
  const q = ($("#nr-search")?.value || "").toLowerCase();
  for (const item of document.querySelectorAll("#nr-tests fieldset:not(.tag-group) [data-path]")) item.hidden = !item.dataset.path.toLowerCase().includes(q);
  for (const group of document.querySelectorAll("#nr-tests fieldset:not(.tag-group)")) group.hidden = !group.querySelector("[data-path]:not([hidden])");
}

function newRunForm() {
  const form = $("#new-run");
  api("/api/envs").then((envs) => { $("#nr-env").max = envs.length; $("#nr-env").placeholder = `1–${envs.length}`; });
  $("#nr-search").addEventListener("input", filterTests);
  loadCatalog();
  // A field's error goes away as soon as that field is changed.
  const clearField = (e) => {
    const name = e.target.name;
    if (!name) return;
    const p = form.querySelector(`.field-error[data-for="${name}"]`);
    if (p) p.textContent = "";
    e.target.removeAttribute("aria-invalid");
  };
  form.addEventListener("input", clearField);
  form.addEventListener("change", clearField);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const p of form.querySelectorAll(".field-error, .form-error")) p.textContent = "";
    for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    const f = new FormData(form);
    const envText = String(f.get("env_id") || "");
    const body = { username: String(f.get("username") || ""), env_id: envText === "" ? undefined : Number(envText), tests: f.getAll("tests") };
    try {
      const run = await api("/api/runs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
      location.hash = `#/runs/${run.id}`;
    } catch (err) {
      let placed = false;
      for (const [field, msg] of Object.entries(err.fields || {})) {
        const p = form.querySelector(`.field-error[data-for="${field}"]`);
        if (p) {
          p.textContent = msg;
          placed = true;
          const input = form.querySelector(`[name="${field}"]`);
          if (input && field !== "tests") input.setAttribute("aria-invalid", "true");
        }
      }
      if (!placed) form.querySelector(".form-error").textContent = err.message;
    }
  });
}

function uploadForm() {
  const form = $("#upload");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const errorP = form.querySelector(".form-error"), okP = form.querySelector(".form-ok");
    errorP.textContent = ""; okP.textContent = "";
    const data = new FormData(form);
    if (!data.get("overwrite")) data.delete("overwrite");
    try {
      const { path } = await api("/api/tests", { method: "POST", body: data });
      okP.textContent = `Uploaded ${path}.`;
      await loadCatalog();
    } catch (err) {
      const what = { 409: "Already exists", 413: "Too large", 415: "Not a supported kind", 422: "Not accepted" }[err.status];
      errorP.textContent = what ? `${what}: ${err.message}` : err.message;
    }
  });
}

// ---- run page ---------------------------------------------------------------------------
function runPage(main, id, line) {
  main.append(view("run-view"));
  let run = null;
  let eventSeen = false;
  const log = logViewer($("#log"), id, {
    follow: $("#follow"), search: $("#log-search"), count: $("#search-count"),
    prev: $("#search-prev"), next: $("#search-next"), matchCase: $("#search-case"),
  });
  $("#download").href = `/api/runs/${id}/log?download=true`;
  function render(r) {
    run = r;
    for (const [k, v] of Object.entries({ id: `#${r.id}`, username: r.username, env_id: r.env_id, created_at: "", duration: duration(r), phase: r.phase || "—" }))
      $(`[data-f=${k}]`).textContent = v;
    $("[data-f=created_at]").replaceChildren(when(r.created_at));
    // Cluster mode: which node executes it.
    $("[data-f=node]").textContent = r.node || "";
    for (const e of document.querySelectorAll("[data-cluster]")) e.hidden = !r.node;
    const statusBadge = badge(r.status);
    statusBadge.dataset.f = "status";
    $("[data-f=status]").replaceWith(statusBadge);
    $("#tests-body").replaceChildren(...r.tests.map((t, i) => el("tr", {},
      el("td", {}, i + 1), el("td", {}, el("a", { href: testHref(t.path), title: "this test's history" }, t.path)), el("td", {}, badge(t.status)),
      el("td", {}, t.exit_code ?? ""), el("td", {}, seconds(t.duration_ms)))));
    const sc = $("#scripts");
    sc.replaceChildren();
    if (r.scripts && r.scripts.length) {
      sc.append(el("h2", {}, "Scripts"), el("table", { class: "scripts" },
        el("thead", {}, el("tr", {}, el("th", {}, "Script"), el("th", {}, "State"), el("th", {}, "Exit"), el("th", {}, "Started"), el("th", {}, "Finished"))),
        el("tbody", {}, r.scripts.map((x) => el("tr", { "data-script": x.name },
          el("td", {}, x.name), el("td", {}, badge(x.state)), el("td", {}, x.exit_code ?? ""),
          el("td", {}, when(x.started_at, "time")),
          el("td", {}, when(x.finished_at, "time")))))));
    }
    const aw = $("#awaiting");
    aw.replaceChildren();
    if (r.awaiting && r.awaiting.length) {
      aw.append(el("h2", {}, "Awaited callbacks"), el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "Key"), el("th", {}, "Arrived"), el("th", {}, "Deadline"))),
        el("tbody", {}, r.awaiting.map((a) => el("tr", { "data-key": a.key },
          el("td", {}, el("a", { href: `#/sink/${encodeURIComponent(a.key)}` }, a.key)),
          el("td", {}, `${a.arrived} / ${a.count}`), el("td", {}, when(a.deadline)))))));
    }
    const finished = !["queued", "running"].includes(r.status);
    $("#cancel").disabled = finished;
    $("#rerun-failed").hidden = !finished || !r.tests.some((t) => t.status !== "passed");
  }
  $("#cancel").addEventListener("click", async () => {
    $("#cancel").disabled = true;
    try { render(await api(`/api/runs/${id}/cancel`, { method: "POST" })); } catch (err) { alert(err.message); }
  });
  $("#rerun").addEventListener("click", async () => {
    try { const r = await api(`/api/runs/${id}/rerun`, { method: "POST" }); location.hash = `#/runs/${r.id}`; } catch (err) { alert(err.message); }
  });
  $("#rerun-failed").addEventListener("click", async () => {
    try {
      const r = await api(`/api/runs/${id}/rerun`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ only: "failed" }) });
      location.hash = `#/runs/${r.id}`;
    } catch (err) { alert(err.message); }
  });
  // Changes come over the page's one /api/events connection (the per-run stream would send the
  // whole log again, line by line). As on the runs page, an event's state wins over the fetched one.
  // A fetch renders only if no event came while it was on its way (the event is newer).
  let fetches = 0;
  const refresh = () => {
    const mine = ++fetches;
    eventSeen = false;
    return api(`/api/runs/${id}`).then((r) => {
      if (mine === fetches && !eventSeen) render(r);
      return r;
    });
  };
  listeners.add((kind, data) => {
    if (kind === "run" && data.id === id) { eventSeen = true; render(data); }
    if (kind === "open" && run) refresh().catch(() => {});
  });
  refresh().then((r) => {
    log.open(!["queued", "running"].includes(r.status), line);
  }).catch((err) => log.fail(err.message));
  const tick = setInterval(() => { if (run && run.status === "running") $("[data-f=duration]").textContent = duration(run); }, 1000);
  cleanup = () => { log.close(); clearInterval(tick); };
  return { id, goToLine: (n) => log.goToLine(n) };
}

// ---- the log viewer ---------------------------------------------------------------------
// Renders only the rows in view (fixed-height lines in a tall spacer), so its cost does not grow
// with the log. Lines are fetched by range (`?offset=&limit=`): the tail first, the rest in chunks
// as they scroll into view; a running log is followed with one streamed `?follow=true&offset=`.
// Test and script sections come from /log/sections (and from followed lines), search from
// /log/search (in any case unless "Match case" is ticked); followed lines are searched as they come.

const LINE_PX = 18;          // the row height: .log .row in style.css
const CHUNK = 1000;          // lines per range request
const MAX_PX = 15_000_000;   // past this the spacer is scaled (browsers cap element heights)
const KEEP_CHUNKS = 400;     // loaded chunks kept in memory (the farthest are dropped)
const FAILED = new Set(["failed", "error", "timed_out"]);

// SGR colour codes → classes (`ansi-fg-31`, `ansi-bg-42`, `ansi-bold`…); other escapes dropped.
function ansiSegments(text) {
  if (!text.includes("\x1b")) return [[text, ""]];
  const out = [];
  let fg = "", bg = "", bold = false, faint = false, italic = false, under = false, last = 0;
  const cls = () => [fg, bg, bold && "ansi-bold", faint && "ansi-faint", italic && "ansi-italic", under && "ansi-under"].filter(Boolean).join(" ");
  const re = /\x1b\[([0-9;?]*)([A-Za-z])/g;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) out.push([text.slice(last, m.index), cls()]);
    last = re.lastIndex;
    if (m[2] !== "m") continue;
    const codes = m[1] === "" ? [0] : m[1].split(";").map(Number);
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) { fg = bg = ""; bold = faint = italic = under = false; }
      else if (c === 1) bold = true;
      else if (c === 2) faint = true;
      else if (c === 3) italic = true;
      else if (c === 4) under = true;
      else if (c === 22) bold = faint = false;
      else if (c === 23) italic = false;
      else if (c === 24) under = false;
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) fg = `ansi-fg-${c}`;
      else if (c === 39) fg = "";
      else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) bg = `ansi-bg-${c}`;
      else if (c === 49) bg = "";
      else if (c === 38 || c === 48) {
        // 256-colour and RGB: the 16 basic ones map to classes, the rest to an inline colour.
        const key = c === 38 ? "fg" : "bg";
        if (codes[i + 1] === 5) {
          const n = codes[i + 2];
          const v = n < 8 ? `ansi-${key}-${(key === "fg" ? 30 : 40) + n}` : n < 16 ? `ansi-${key}-${(key === "fg" ? 90 : 100) + n - 8}` : "";
          if (key === "fg") fg = v; else bg = v;
          i += 2;
        } else if (codes[i + 1] === 2) i += 4;
      }
    }
  }
  if (last < text.length) out.push([text.slice(last), cls()]);
  return out;
}

// The search term as a RegExp (`g`: for highlighting with matchAll): literal text, in any case
// unless `matchCase` (Unicode case folding, as the server's `ignore_case=true` search does).
const searchRegExp = (needle, matchCase) =>
  new RegExp(needle.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), matchCase ? "gu" : "giu");

// Appends `text` to `parent`, with the search term (a `g` RegExp, or null) in <mark>.
function appendMarked(parent, text, cls, re) {
  const target = cls ? parent.appendChild(el("span", { class: cls })) : parent;
  if (!re) { target.append(text); return; }
  let at = 0;
  for (const m of text.matchAll(re)) {
    if (!m[0]) break;
    if (m.index > at) target.append(text.slice(at, m.index));
    target.append(el("mark", {}, m[0]));
    at = m.index + m[0].length;
  }
  if (at < text.length) target.append(text.slice(at));
}

function logViewer(box, runId, ui) {
  box.replaceChildren();
  const space = box.appendChild(el("span", { class: "log-space" }));
  const rowsEl = space.appendChild(el("span", { class: "log-rows" }));
  let total = 0;              // lines known to exist
  const chunks = new Map();   // chunk number → array of lines (holes: not loaded yet)
  const pending = new Set();  // chunk numbers being fetched
  const sections = new Map(); // start line → {kind, path, start, end, status, duration_s, collapsed}
  let hidden = [];            // collapsed line ranges [from, to], sorted, not overlapping
  let target = -1;
  // The search on screen: the text, its case mode and RegExp; the matching lines listed (sorted)
  // and counted; lines before `searchedTo` were searched (by the server, then as they arrived).
  let needle = "", needleCase = false, needleRe = null;
  let matches = [], count = 0, truncated = false, current = -1, searchedTo = 0;
  let stream = null, closed = false, following = false, frame = 0;
  const status = (text) => { ui.count.textContent = text; };

  const getLine = (n) => chunks.get(Math.floor(n / CHUNK))?.[n % CHUNK];
  function setLine(n, text) {
    const c = Math.floor(n / CHUNK);
    let arr = chunks.get(c);
    if (!arr) { arr = []; chunks.set(c, arr); }
    arr[n % CHUNK] = text;
  }
  // The harness's own lines mark the sections: `TS --- start PATH (i/n)`, `TS --- end PATH STATUS
  // exit=N in Xs` for a test, `TS --- script NAME starts: CMD`, `TS --- script NAME STATE exit=N in
  // Xs` for a script (a service's section holds the tests' sections: sections nest).
  function openSection(kind, path, n) {
    if (!sections.has(n)) sections.set(n, { kind, path, start: n, end: null, status: null, duration_s: null, collapsed: false });
  }
  function closeSection(kind, path, n, status, secs) {
    const open = [...sections.values()].reverse().find((s) => s.kind === kind && s.path === path && (s.end === null || s.end === n));
    if (open) Object.assign(open, { end: n, status, duration_s: Number(secs) });
  }
  // The tag starts after the timestamp (24 characters) and a space.
  const TAG_AT = 25;
  function noteSection(n, text) {
    if (text.startsWith("--- start ", TAG_AT)) {
      openSection("test", text.slice(TAG_AT + 10).replace(/ \(\d+\/\d+\)$/, ""), n);
    } else if (text.startsWith("--- end ", TAG_AT)) {
      const m = text.slice(TAG_AT + 8).match(/^(.*) (\S+) exit=(\S+) in ([\d.]+)s$/);
      if (m) closeSection("test", m[1], n, m[2], m[4]);
    } else if (text.startsWith("--- script ", TAG_AT)) {
      const rest = text.slice(TAG_AT + 11);
      const start = rest.match(/^(\S+) starts: /);
      if (start) { openSection("script", start[1], n); return; }
      const m = rest.match(/^(\S+) (\S+) exit=(\S+) in ([\d.]+)s$/);
      if (m) closeSection("script", m[1], n, m[2], m[4]);
    }
  }
  const contains = (s, n) => s.start <= n && (s.end === null ? n < total : n <= s.end);
  // The innermost section holding line `n` (the one that started last).
  const sectionOf = (n) => {
    let found = null;
    for (const s of sections.values()) if (contains(s, n) && (!found || s.start > found.start)) found = s;
    return found;
  };
  function rebuildHidden() {
    const ranges = [...sections.values()].filter((s) => s.collapsed)
      .map((s) => [s.start + 1, s.end === null ? Math.max(s.start, total - 1) : s.end])
      .filter(([a, b]) => b >= a).sort((a, b) => a[0] - b[0]);
    // Nested and overlapping sections (a service beside the tests) hide one merged range.
    hidden = [];
    for (const [a, b] of ranges) {
      const last = hidden[hidden.length - 1];
      if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
      else hidden.push([a, b]);
    }
  }
  const hiddenCount = () => hidden.reduce((n, [a, b]) => n + b - a + 1, 0);
  const rowCount = () => total - hiddenCount();
  function rowToLine(r) {
    let n = r;
    for (const [a, b] of hidden) { if (a <= n) n += b - a + 1; else break; }
    return n;
  }
  function lineToRow(n) {
    let r = n;
    for (const [a, b] of hidden) {
      if (n > b) r -= b - a + 1;
      else if (n >= a) return lineToRow(a - 1);
    }
    return r;
  }
  // Scroll geometry: one row is LINE_PX until the spacer would pass MAX_PX, then rows are scaled.
  const spaceHeight = () => Math.min(rowCount() * LINE_PX, MAX_PX);
  function firstRow() {
    const rows = rowCount(), inView = Math.ceil(box.clientHeight / LINE_PX);
    const maxScroll = Math.max(1, spaceHeight() - box.clientHeight);
    if (rows * LINE_PX <= MAX_PX) return Math.floor(box.scrollTop / LINE_PX);
    return Math.round(Math.min(1, box.scrollTop / maxScroll) * Math.max(0, rows - inView));
  }
  function scrollToRow(r, where = "center") {
    const rows = rowCount(), inView = Math.ceil(box.clientHeight / LINE_PX);
    const lead = where === "center" ? Math.floor(inView / 2) : 0;
    const top = Math.max(0, r - lead);
    if (rows * LINE_PX <= MAX_PX) box.scrollTop = top * LINE_PX;
    else box.scrollTop = (top / Math.max(1, rows - inView)) * Math.max(1, spaceHeight() - box.clientHeight);
    draw();
  }
  const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight < LINE_PX;
  const toBottom = () => { box.scrollTop = box.scrollHeight; };

  function row(n) {
    const text = getLine(n);
    const section = sections.get(n);
    const inside = sectionOf(n);
    const classes = ["row"];
    if (n === target) classes.push("target");
    if (matches.length && matches[current] === n) classes.push("current");
    const div = el("div", { "data-line": n + 1 });
    div.append(el("a", { class: "no", href: `#/runs/${runId}?line=${n + 1}`, tabindex: "-1" }, n + 1));
    if (text === undefined) {
      classes.push("loading");
      div.append("…");
    } else {
      const m = text.match(/^(\S+) (out|err|---|\S+\/(?:out|err)) (.*)$/);
      if (m) {
        if (m[2] === "---") classes.push("h");
        else if (m[2].endsWith("err")) classes.push("err");
        if (section) {
          const what = section.kind === "script" ? `script ${section.path}` : section.path;
          div.append(el("button", { type: "button", class: "toggle", "aria-expanded": String(!section.collapsed), "aria-label": `${section.collapsed ? "Expand" : "Collapse"} ${what}`, onclick: () => toggle(section) }, section.collapsed ? "▸" : "▾"));
        }
        div.append(el("span", { class: "ts" }, `${m[1]} `));
        appendMarked(div, `${m[2]} `, "", needleRe);
        for (const [seg, cls] of ansiSegments(m[3])) appendMarked(div, seg, cls, needleRe);
        if (section) {
          classes.push("section");
          if (section.kind === "script") classes.push("script");
          div.append(" ", el("span", { class: "summary" }, section.status ? badge(section.status) : badge("running"),
            section.duration_s != null ? ` ${section.duration_s.toFixed(3)}s` : "",
            section.collapsed && section.end !== null ? ` · ${section.end - section.start} lines hidden` : ""));
        }
      } else {
        for (const [seg, cls] of ansiSegments(text)) appendMarked(div, seg, cls, needleRe);
      }
      if (inside && FAILED.has(inside.status)) classes.push("fail");
    }
    div.className = classes.join(" ");
    return div;
  }

  function draw() {
    frame = 0;
    space.style.height = `${spaceHeight()}px`;
    const first = firstRow(), inView = Math.ceil(box.clientHeight / LINE_PX) + 2;
    const rows = rowCount(), last = Math.min(rows, first + inView);
    const top = rows * LINE_PX <= MAX_PX ? first * LINE_PX : box.scrollTop;
    rowsEl.style.transform = `translateY(${top}px)`;
    const nodes = [], wanted = new Set();
    for (let r = first; r < last; r++) {
      const n = rowToLine(r);
      if (getLine(n) === undefined) wanted.add(Math.floor(n / CHUNK));
      nodes.push(row(n));
    }
    rowsEl.replaceChildren(...nodes);
    for (const c of wanted) fetchChunk(c);
    evict(Math.floor(rowToLine(first) / CHUNK));
  }
  const redraw = () => { if (!frame) frame = requestAnimationFrame(draw); };

  function evict(near) {
    if (chunks.size <= KEEP_CHUNKS) return;
    const far = [...chunks.keys()].sort((a, b) => Math.abs(b - near) - Math.abs(a - near));
    for (const c of far.slice(0, chunks.size - KEEP_CHUNKS)) chunks.delete(c);
  }

  async function fetchRange(offset, limit) {
    const res = await fetch(`/api/runs/${runId}/log?offset=${offset}&limit=${limit}`);
    if (res.status === 401) askForToken();
    if (!res.ok) throw new Error(`the log answered ${res.status}`);
    const first = Number(res.headers.get("x-log-offset"));
    const lines = Number(res.headers.get("x-log-lines"));
    const text = await res.text();
    const list = text ? text.slice(0, -1).split("\n") : [];
    list.forEach((t, i) => setLine(first + i, t));
    if (!following) total = Math.max(total, lines);
    return { first, lines, list };
  }
  function fetchChunk(c) {
    if (pending.has(c) || pending.size >= 2 || closed) return;
    pending.add(c);
    fetchRange(c * CHUNK, CHUNK).then(() => { pending.delete(c); redraw(); }, () => pending.delete(c));
  }

  async function followFrom(offset) {
    following = true;
    try {
      const res = await fetch(`/api/runs/${runId}/log?follow=true&offset=${offset}`);
      if (res.status === 401) askForToken();
      if (!res.ok || !res.body) return;
      let n = Number(res.headers.get("x-log-offset"));
      total = Math.max(total, n);
      stream = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let partial = "";
      for (;;) {
        const { value, done } = await stream.read();
        if (done || closed) break;
        const parts = (partial + value).split("\n");
        partial = parts.pop();
        const counted = count;
        for (const t of parts) {
          setLine(n, t);
          noteSection(n, t);
          if (needle && n >= searchedTo) { noteMatch(n, t); searchedTo = n + 1; }
          n++;
        }
        total = Math.max(total, n);
        if (count !== counted) showCount();
        if (hidden.length) rebuildHidden();
        if (ui.follow.checked) { space.style.height = `${spaceHeight()}px`; toBottom(); }
        redraw();
      }
    } catch (err) {
      if (!closed) status(`log stream: ${err.message}`);
    } finally {
      following = false;
    }
  }

  function toggle(section) {
    const before = lineToRow(section.start) - firstRow();
    section.collapsed = !section.collapsed;
    rebuildHidden();
    space.style.height = `${spaceHeight()}px`;
    // Keep the section's header where it was on the screen.
    scrollToRow(Math.max(0, lineToRow(section.start) - before), "top");
  }

  function goToLine(n1) {
    const n = Math.max(0, Math.min(total - 1, n1 - 1));
    target = n;
    // Every collapsed section that hides it opens (an outer one too).
    let opened = false;
    for (const s of sections.values()) if (s.collapsed && n !== s.start && contains(s, n)) { s.collapsed = false; opened = true; }
    if (opened) rebuildHidden();
    ui.follow.checked = false;
    space.style.height = `${spaceHeight()}px`;
    scrollToRow(lineToRow(n));
  }

  // A followed line (past what the server searched) that matches is counted and listed.
  function noteMatch(n, text) {
    if (!needleRe) return;
    needleRe.lastIndex = 0;
    if (!needleRe.test(text)) return;
    count++;
    if (!truncated) matches.push(n);
  }
  function showCount() {
    if (!needle) return status("");
    if (!count) return status("no matches");
    const more = truncated ? ` (first ${matches.length} listed)` : "";
    status(current === -1 ? `${count} ${count === 1 ? "match" : "matches"}${more}` : `${current + 1} / ${count}${more}`);
  }
  const searchIsShown = () => ui.search.value === needle && ui.matchCase.checked === needleCase;
  let searches = 0;
  async function search() {
    const q = ui.search.value, matchCase = ui.matchCase.checked;
    const mine = ++searches;
    if (!q) { needle = ""; needleRe = null; matches = []; count = 0; current = -1; status(""); redraw(); return; }
    if (searchIsShown() && count) return step(1);
    status("searching…");
    const t0 = performance.now();
    const res = await api(`/api/runs/${runId}/log/search?q=${encodeURIComponent(q)}&limit=10000${matchCase ? "" : "&ignore_case=true"}`);
    performance.measure("log-search", { start: t0, end: performance.now() });
    if (mine !== searches) return; // a newer search is on its way
    needle = q; needleCase = matchCase; needleRe = searchRegExp(q, matchCase);
    matches = res.matches; count = res.count; truncated = res.truncated; current = -1;
    // Lines followed while the search was on its way, past those the server searched.
    searchedTo = res.lines;
    for (; searchedTo < total; searchedTo++) {
      const t = getLine(searchedTo);
      if (t !== undefined) noteMatch(searchedTo, t);
    }
    // Drawn at once, not on the next frame: "no matches" never shows beside the old highlights.
    if (!count) { draw(); showCount(); return; }
    step(1);
  }
  function step(dir) {
    if (!matches.length) return;
    // The first step goes to the first match at or after the view (forward) or before it.
    if (current === -1) {
      const here = rowToLine(firstRow());
      current = dir > 0 ? Math.max(0, matches.findIndex((m) => m >= here)) : matches.length - 1;
    } else current = (current + dir + matches.length) % matches.length;
    showCount();
    goToLine(matches[current] + 1);
  }
  ui.search.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); if (e.shiftKey && searchIsShown()) step(-1); else search(); } });
  ui.search.addEventListener("search", () => { if (!ui.search.value) search(); });
  ui.next.addEventListener("click", () => (searchIsShown() ? step(1) : search()));
  ui.prev.addEventListener("click", () => (searchIsShown() ? step(-1) : search()));
  // Toggling the case mode searches again (when there is a search).
  ui.matchCase.addEventListener("change", () => { if (ui.search.value) search(); });

  box.addEventListener("scroll", () => {
    // Scrolling up stops following; scrolling back to the bottom resumes it.
    ui.follow.checked = atBottom();
    redraw();
  });
  ui.follow.addEventListener("change", () => { if (ui.follow.checked) { toBottom(); redraw(); } });
  new ResizeObserver(redraw).observe(box);

  return {
    /** Loads the tail (or the linked line's part), the sections, and follows a running log. */
    async open(finished, line) {
      const t0 = performance.now();
      try {
        const [{ lines }, outline] = await Promise.all([
          fetchRange(line ? Math.max(0, line - 1 - CHUNK / 2) : -2 * CHUNK, 2 * CHUNK),
          api(`/api/runs/${runId}/log/sections`).catch(() => ({ sections: [] })),
        ]);
        total = Math.max(total, lines);
        for (const s of outline.sections) if (!sections.has(s.start)) sections.set(s.start, { ...s, collapsed: false });
        draw();
        if (line) goToLine(line); else toBottom();
        draw();
        // How long the tail took to be on screen, for the browser tests: since this view
        // opened (`log-open`) and since the page's navigation began (the mark's startTime).
        performance.measure("log-open", { start: t0, end: performance.now() });
        performance.mark("log-tail-visible");
        box.dataset.ready = "true";
      } catch (err) {
        status(err.message);
      }
      if (!finished && !closed) followFrom(total);
    },
    goToLine,
    fail(message) { rowsEl.replaceChildren(el("div", { class: "row" }, message)); },
    close() { closed = true; if (stream) stream.cancel().catch(() => {}); },
  };
}

// ---- a test's page: pass rate, durations over time, recent runs ----------------------------
function testPage(main, path) {
  main.append(view("test-view"));
  $("#test-path").textContent = path;
  $("#test-all-runs").href = `#/?${new URLSearchParams({ test: path })}`;
  const segs = path.split("/").map(encodeURIComponent).join("/");
  async function load() {
    const h = await api(`/api/tests/${segs}/history`);
    const runs = [...h.runs].sort((a, b) => a.run_id - b.run_id); // oldest left, newest right
    $("#test-rate").textContent = h.ended
      ? `${Math.round(h.pass_rate * 100)}% passed (${h.passed} of ${h.ended} finished runs)`
      : "no finished runs yet";
    $("#test-chart").replaceChildren(chart(runs));
    $("#test-runs").replaceChildren(...[...runs].reverse().map((r) => el("tr", { "data-run": r.run_id },
      el("td", {}, el("a", { href: `#/runs/${r.run_id}` }, `#${r.run_id}`)),
      el("td", {}, badge(r.status)), el("td", {}, r.exit_code ?? ""), el("td", {}, seconds(r.duration_ms)),
      el("td", {}, r.env_id), el("td", {}, r.username), el("td", {}, when(r.created_at)))));
    $("#test-chart").dataset.ready = "true";
  }
  listeners.add((kind, data) => {
    if (kind === "open" || (kind === "run" && data.tests.some((t) => t.path === path))) load().catch((err) => { $("#test-rate").textContent = err.message; });
  });
  load().catch((err) => { $("#test-rate").textContent = err.message; });
}

// Bars of each run's duration, newest right; a failed run's bar in the failure colour; each bar a
// link to its run with the details as its tooltip.
function chart(runs) {
  const NS = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs = {}, ...kids) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    n.append(...kids);
    return n;
  };
  if (!runs.length) return el("p", { class: "small" }, "no runs of this test yet");
  const W = 600, H = 120, PAD = 4;
  const max = Math.max(1, ...runs.map((r) => r.duration_ms || 0));
  const step = (W - 2 * PAD) / Math.max(runs.length, 10);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H + 16}`, class: "chart", role: "group",
    "aria-label": `Durations of the last ${runs.length} runs, newest right; failed runs in red` });
  svg.append(svgEl("line", { x1: 0, y1: H, x2: W, y2: H, class: "axis" }));
  svg.append(svgEl("text", { x: W - PAD, y: H + 13, "text-anchor": "end", class: "axis-label" }, `max ${seconds(max)}`));
  runs.forEach((r, i) => {
    const h = Math.max(4, ((r.duration_ms || 0) / max) * (H - PAD));
    const x = W - PAD - (runs.length - i) * step;
    const cls = NOT_PASSED.has(r.status) ? "fail" : r.status === "passed" ? "pass" : "other";
    const title = `run #${r.run_id}: ${r.status}${r.duration_ms != null ? `, ${seconds(r.duration_ms)}` : ""}, ${r.created_at}`;
    svg.append(svgEl("a", { href: `#/runs/${r.run_id}`, "aria-label": title },
      svgEl("rect", { x: x + step * 0.15, y: H - h, width: step * 0.7, height: h, class: `mark ${cls}`, "data-run": r.run_id, "data-status": r.status },
        svgEl("title", {}, title))));
  });
  return svg;
}

// ---- environments board -----------------------------------------------------------------
// One compact row per environment, busy and paused first; a filter; each busy one with its run,
// user, since, services, and its queue with the users waiting. Rows are re-sorted once a frame,
// however many changes arrive; usernames of queued runs come from one /api/runs?status=queued
// fetch and then from the run events.
const STATE_ORDER = { busy: 0, paused: 1, free: 2 };
function envsPage(main) {
  main.append(view("envs-view"));
  const board = $("#board");
  const filterInput = $("#env-filter");
  const rows = new Map();   // env id → {env, node}
  const runs = new Map();   // run id → run (queued and running ones, for users and services)
  const live = new Map();   // as in the runs table: state from /api/events wins over the fetched list
  let frame = 0;

  const who = (runId) => runs.get(runId)?.username;
  function services(env) {
    const run = env.run_id && runs.get(env.run_id);
    const up = run ? (run.scripts || []).filter((x) => x.name !== "tests" && (x.state === "running" || x.state === "ready")) : [];
    return up.length ? `services: ${up.map((x) => `${x.name} (${x.state})`).join(", ")}` : "";
  }
  function rowFor(env) {
    const state = env.state;
    const queue = env.queued.map((q, i) => [i ? ", " : " — ", el("a", { href: `#/runs/${q}` }, `#${q}`), who(q) ? ` ${who(q)}` : ""]);
    return el("article", { class: `env ${state}`, "data-env": env.id, "aria-label": `Environment ${env.id}: ${state}` },
      el("h3", {}, `Env ${env.id}`), badge(state),
      el("p", { class: "holder" }, env.run_id ? ["run ", el("a", { href: `#/runs/${env.run_id}` }, `#${env.run_id}`), env.username ? ` by ${env.username}` : "", env.node ? ` on node ${env.node}` : ""] : ""),
      el("p", { class: "since" }, env.since ? ["since ", when(env.since, "time")] : ""),
      el("p", { class: "queue" }, `queue: ${env.queued.length}`, queue.flat()),
      el("p", { class: "services", "data-run": env.run_id ?? "" }, services(env)),
      el("button", { type: "button", onclick: async () => {
        const updated = await api(`/api/envs/${env.id}/${state === "paused" ? "resume" : "pause"}`, { method: "POST" });
        put(updated);
      } }, state === "paused" ? "Resume" : "Pause"));
  }
  // What the filter box matches: `7` an environment (or run) number, other text the state, the
  // holder and the users in the queue.
  function matches(env, q) {
    if (!q) return true;
    if (/^#?\d+$/.test(q)) {
      const n = Number(q.replace("#", ""));
      return q.startsWith("#") ? env.run_id === n || env.queued.includes(n) : env.id === n;
    }
    const text = [env.state, env.username || "", ...env.queued.map((r) => who(r) || "")].join(" ").toLowerCase();
    return q.toLowerCase().split(/\s+/).every((word) => text.includes(word));
  }
  function layout() {
    frame = 0;
    const q = filterInput.value.trim();
    const sorted = [...rows.values()].sort((a, b) => (STATE_ORDER[a.env.state] - STATE_ORDER[b.env.state]) || a.env.id - b.env.id);
    let shown = 0;
    const counts = { busy: 0, paused: 0, free: 0 };
    let waiting = 0;
    for (const { env, node } of sorted) {
      counts[env.state] = (counts[env.state] || 0) + 1;
      waiting += env.queued.length;
      node.hidden = !matches(env, q);
      if (!node.hidden) shown++;
    }
    // Moves only what is out of place, so a change that keeps the order moves nothing.
    let prev = null;
    for (const { node } of sorted) {
      const want = prev ? prev.nextSibling : board.firstChild;
      if (want !== node) board.insertBefore(node, want);
      prev = node;
    }
    $("#env-summary").textContent = `${counts.busy} busy · ${counts.paused} paused · ${counts.free} free · ${waiting} queued` + (q ? ` · ${shown} shown` : "");
  }
  const relayout = () => { if (!frame) frame = requestAnimationFrame(layout); };
  function put(env) {
    const node = rowFor(env);
    const old = rows.get(env.id);
    if (old) old.node.replaceWith(node); else board.append(node);
    rows.set(env.id, { env, node });
    relayout();
  }
  filterInput.addEventListener("input", relayout);
  listeners.add((kind, data) => {
    if (kind === "env") { live.set(data.id, data); put(data); }
    if (kind === "run") {
      const known = runs.has(data.id);
      if (data.status === "queued" || data.status === "running") runs.set(data.id, data); else runs.delete(data.id);
      // A new user name, or services that changed: redraw the environment that shows this run.
      for (const { env } of rows.values()) if (env.run_id === data.id || (!known && env.queued.includes(data.id))) put(env);
    }
    // (Re)connected: events sent meanwhile are lost, so the board is read again.
    if (kind === "open") { live.clear(); loadAll(); }
  });
  function loadAll() {
    return Promise.all([
      api("/api/runs?status=queued&limit=1000").catch(() => ({ runs: [] })),
      api("/api/runs?status=running&limit=1000").catch(() => ({ runs: [] })),
    ]).then(([q, r]) => {
      for (const run of [...q.runs, ...r.runs]) if (!runs.has(run.id)) runs.set(run.id, run);
      return api("/api/envs");
    }).then((envs) => {
      envs.forEach((env) => put(live.get(env.id) || env));
      layout();
      performance.mark("envs-ready");
      board.dataset.ready = "true";
    }).catch(() => {});
  }
  loadAll();
  cleanup = () => { if (frame) cancelAnimationFrame(frame); };
}

// ---- sink view --------------------------------------------------------------------------

// Indents JSON text without parsing it, so numbers and key order stay exactly as the SUT sent
// them (JSON.parse would turn 10.50 into 10.5).
function prettyJson(text) {
  let out = "", depth = 0, inString = false, escaped = false;
  const nl = () => "\n" + "  ".repeat(depth);
  for (const ch of text) {
    if (inString) {
      out += ch;
      if (escaped) escaped = false;
      else if (ch === "\\") escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') { inString = true; out += ch; }
    else if (ch === "{" || ch === "[") { depth++; out += ch + nl(); }
    else if (ch === "}" || ch === "]") { depth--; out += nl() + ch; }
    else if (ch === ",") out += ch + nl();
    else if (ch === ":") out += ": ";
    else if (!/\s/.test(ch)) out += ch;
  }
  return out.replace(/([\[{])\n\s*([\]}])/g, "$1$2");
}

// The body as sent: a JSON body is the record's last field, verbatim, `size` bytes long.
function bodyText(recordText, r) {
  if (r.body_base64 !== undefined) return `base64: ${r.body_base64}`;
  if (r.body === undefined) return "(empty)";
  if (typeof r.body === "string") return r.body;
  const bytes = new TextEncoder().encode(recordText);
  const start = bytes.length - 1 - r.size;
  const raw = new TextDecoder().decode(bytes.slice(start, bytes.length - 1));
  return prettyJson(raw);
}

// The sink view's address: `#/sink/KEY?prefix=P` (the key URL-encoded, so a `?` in it stays in
// the key). The prefix filter lives in the hash, so it survives selecting a key and a reload.
function sinkHash(hash) {
  const rest = hash.slice("#/sink".length);
  const q = rest.indexOf("?");
  const path = q < 0 ? rest : rest.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : rest.slice(q + 1));
  let key = "";
  try { key = path.startsWith("/") ? decodeURIComponent(path.slice(1)) : ""; } catch { key = path.slice(1); }
  return { key, prefix: params.get("prefix") || "" };
}
const sinkHref = (key, prefix) =>
  `#/sink${key ? `/${encodeURIComponent(key)}` : ""}${prefix ? `?${new URLSearchParams({ prefix })}` : ""}`;

// How a stub answered an attempt (the record's `response`). Without a stub the sink answered 200,
// unless a verifier with `reject` refused an invalid signature (401): the record cannot tell which.
function answerOf(r) {
  const x = r.response;
  if (x && x.dropped) {
    return el("span", { class: "answer dropped", "data-status": "dropped", title: `connection dropped by stub ${x.stub}` }, "dropped");
  }
  if (x) {
    const cls = x.status >= 500 ? "s5" : x.status >= 400 ? "s4" : "s2";
    const held = x.delay_ms ? ` after ${x.delay_ms} ms` : "";
    return el("span", { class: `answer ${cls}`, "data-status": x.status, title: `answered ${x.status} by stub ${x.stub}${held}` },
      `${x.status}${x.delay_ms ? ` · ${x.delay_ms} ms` : ""}`);
  }
  if (r.signature && !r.signature.valid) {
    return el("span", { class: "answer default", "data-status": "default", title: "no stub: answered 200, or 401 if its verifier rejects invalid signatures" }, "no stub");
  }
  return el("span", { class: "answer s2 default", "data-status": "200", title: "no stub: the default answer" }, "200");
}

// The signature verdict of the verifier covering the key (the record's `signature`), if one does.
function signatureOf(r) {
  const s = r.signature;
  if (!s) return "";
  const who = `verifier ${s.verifier} (${s.scheme})`;
  return s.valid
    ? el("span", { class: "signature valid", "data-valid": "true", title: who }, "✓ signature valid")
    : el("span", { class: "signature invalid", "data-valid": "false", title: who }, `✗ signature invalid: ${s.reason || "invalid"}`);
}

function recordView(key, text, r) {
  const names = Object.keys(r.headers || {});
  return el("article", { class: "record", "data-seq": r.seq, "aria-label": `seq ${r.seq}` },
    el("header", {},
      el("strong", {}, `seq ${r.seq}`), answerOf(r), signatureOf(r),
      el("span", {}, r.method), when(r.received_at), el("span", {}, r.content_type || "no content type"),
      el("span", {}, `${r.size} bytes`),
      el("a", { class: "raw", href: `/callbacks/${encodeURIComponent(key)}/raw?seq=${r.seq}`, title: "the exact bytes received, with their content type" }, "raw body")),
    el("details", { class: "headers" }, el("summary", {}, `Headers (${names.length})`),
      el("table", {}, el("tbody", {}, names.map((n) => el("tr", {}, el("th", { scope: "row" }, n), el("td", {}, r.headers[n])))))),
    el("pre", { tabindex: "0", "aria-label": `body of seq ${r.seq}` }, bodyText(text, r)));
}

// Keys by prefix, a page at a time (`limit` + `after`, "More keys" while the sink says there are
// more); a key's records live from its SSE stream, each attempt with how it was answered.
const KEYS_PAGE = 200;
function sinkPage(main, { key: initialKey, prefix }) {
  main.append(view("sink-view"));
  const form = $("#sink-filter");
  const keysEl = $("#keys"), more = $("#keys-more"), countEl = $("#keys-count");
  const records = $("#records"), attempts = $("#attempts");
  form.elements.prefix.value = prefix;
  const items = new Map(); // key → {link, count}
  let next = null;
  let selected = "";
  let source = null;
  let seen = new Set();

  function item(k) {
    const count = el("span", { class: "count" }, k.count);
    const link = el("a", { href: sinkHref(k.key, prefix), title: k.key, "data-key": k.key },
      el("span", { class: "key" }, k.key), count);
    items.set(k.key, { link, count });
    markSelected(link);
    return el("li", {}, link);
  }
  function markSelected(link) {
    const on = link.dataset.key === selected;
    link.classList.toggle("active", on);
    if (on) link.setAttribute("aria-current", "true"); else link.removeAttribute("aria-current");
  }
  async function page(reset) {
    const q = new URLSearchParams({ prefix, limit: String(KEYS_PAGE) });
    if (!reset && next) q.set("after", next);
    more.disabled = true;
    try {
      const res = await api(`/callbacks?${q}`);
      if (reset) { keysEl.replaceChildren(); items.clear(); }
      keysEl.append(...res.keys.filter((k) => !items.has(k.key)).map(item));
      next = res.keys.length ? res.next_after || null : null;
      // A listing read before the shown key's first record arrived does not have it yet.
      if (selected && seen.size && !items.has(selected) && selected.startsWith(prefix)) placeNew(selected, seen.size);
    } finally {
      more.disabled = false;
    }
    more.hidden = !next;
    if (!items.size) keysEl.replaceChildren(el("li", { class: "empty" }, "no keys"));
    showCount();
    keysEl.dataset.ready = "true";
  }
  // A key that got its first record while it was on screen joins the list in its sorted place,
  // when that place is within the pages listed (past them, "More keys" will bring it).
  function placeNew(key, count) {
    if (next !== null && key > next) return;
    const li = item({ key, count });
    const listed = [...keysEl.querySelectorAll("a[data-key]")];
    if (!listed.length) keysEl.replaceChildren(); // the "no keys" line
    const after = listed.find((a) => a.dataset.key > key);
    if (after) keysEl.insertBefore(li, after.parentNode); else keysEl.append(li);
    showCount();
  }
  function showCount() {
    countEl.textContent = `${items.size} ${items.size === 1 ? "key" : "keys"}${next ? " shown, more under this prefix" : ""}`;
  }
  function select(key) {
    selected = key;
    for (const { link } of items.values()) markSelected(link);
    if (source) source.close();
    source = null;
    seen = new Set();
    const title = $("#key-title");
    title.textContent = key || "Select a key";
    if (key) title.title = key; else title.removeAttribute("title");
    records.replaceChildren();
    attempts.replaceChildren();
    attempts.hidden = true;
    if (!key) return;
    source = new EventSource(`/callbacks/${encodeURIComponent(key)}/events`);
    source.addEventListener("callback", (e) => {
      const r = JSON.parse(e.data);
      if (seen.has(r.seq)) return; // a reconnect resumes after the last id; never show one twice
      seen.add(r.seq);
      records.append(recordView(key, e.data, r));
      attempts.hidden = false;
      attempts.append(el("li", { "data-seq": r.seq }, `seq ${r.seq} `, answerOf(r), " ", signatureOf(r)));
      // The key list's count follows the records (in place: the pages listed stay).
      const listed = items.get(key);
      if (listed) listed.count.textContent = seen.size;
      else if (key.startsWith(prefix)) placeNew(key, seen.size);
    });
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const p = String(new FormData(form).get("prefix") || "");
    const target = sinkHref(selected, p);
    if (location.hash === target) page(true).catch((err) => { countEl.textContent = err.message; });
    else location.hash = target;
  });
  more.addEventListener("click", () => page(false).catch((err) => { countEl.textContent = err.message; }));
  page(true).catch((err) => { countEl.textContent = err.message; });
  select(initialKey);
  cleanup = () => { if (source) source.close(); };
  return { prefix, select };
}

window.addEventListener("hashchange", route);
connectEvents();
route();
