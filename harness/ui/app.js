// Eventual's web UI: plain JavaScript, no build step, served from the binary.
// Views (hash routes): #/ runs + forms, #/runs/ID run page, #/envs board, #/sink keys and records.
// Live updates come from Server-Sent Events: /api/events (runs, envs) and /api/runs/ID/events.
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
  events.onopen = () => { $("#live").textContent = "live"; };
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
function route() {
  cleanup();
  cleanup = () => {};
  listeners.clear();
  const hash = location.hash || "#/";
  const main = $("#main");
  main.replaceChildren();
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.remove("active");
  let m;
  if ((m = hash.match(/^#\/runs\/(\d+)/))) { mark("runs"); runPage(main, Number(m[1])); }
  else if (hash.startsWith("#/envs")) { mark("envs"); envsPage(main); }
  else if (hash.startsWith("#/sink")) { mark("sink"); sinkPage(main, decodeURIComponent(hash.slice(7))); }
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
  const filters = { username: "", env_id: "", status: "" };
  let oldest = null;

  const matches = (run) =>
    (!filters.username || run.username === filters.username) &&
    (!filters.env_id || String(run.env_id) === filters.env_id) &&
    (!filters.status || run.status === filters.status);

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
    load(true);
  });
  listeners.add((kind, data) => { if (kind === "run") { live.set(data.id, data); upsert(data, !rows.has(data.id)); } });
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
  picker.replaceChildren(...[...byDir.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([dir, { tests, support }]) =>
    el("fieldset", {}, el("legend", {}, dir || "(top level)"),
      tests.map((t) => el("label", { "data-path": t.path },
        el("input", { type: "checkbox", name: "tests", value: t.path, ...(chosen.has(t.path) ? { checked: "" } : {}) }),
        t.path.split("/").pop(),
        t.tags.length ? el("small", { class: "tags" }, ` [${t.tags.join(", ")}]`) : "")),
      support.map((s) => el("span", { class: "support", "data-path": s.path, title: "support file: uploaded beside the tests, never run itself" },
        s.path.split("/").pop(), el("small", { class: "tags" }, " support"))))));
  const dirs = $("#dirs");
  if (dirs) dirs.replaceChildren(...[...byDir.keys()].filter(Boolean).map((d) => el("option", { value: d })));
  filterTests();
}
function filterTests() {
  const q = ($("#nr-search")?.value || "").toLowerCase();
  for (const item of document.querySelectorAll("#nr-tests [data-path]")) item.hidden = !item.dataset.path.toLowerCase().includes(q);
  for (const group of document.querySelectorAll("#nr-tests fieldset")) group.hidden = !group.querySelector("[data-path]:not([hidden])");
}

function newRunForm() {
  const form = $("#new-run");
  api("/api/envs").then((envs) => { $("#nr-env").max = envs.length; $("#nr-env").placeholder = `1–${envs.length}`; });
  $("#nr-search").addEventListener("input", filterTests);
  loadCatalog();
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
function runPage(main, id) {
  main.append(view("run-view"));
  const logPre = $("#log");
  const follow = $("#follow");
  let run = null;
  logPre.addEventListener("scroll", () => {
    // Scrolling up stops following; scrolling back to the bottom resumes it.
    const atBottom = logPre.scrollHeight - logPre.scrollTop - logPre.clientHeight < 24;
    follow.checked = atBottom;
  });
  function render(r) {
    run = r;
    for (const [k, v] of Object.entries({ id: `#${r.id}`, username: r.username, env_id: r.env_id, created_at: r.created_at, duration: duration(r), phase: r.phase || "—" }))
      $(`[data-f=${k}]`).textContent = v;
    const statusBadge = badge(r.status);
    statusBadge.dataset.f = "status";
    $("[data-f=status]").replaceWith(statusBadge);
    $("#tests-body").replaceChildren(...r.tests.map((t, i) => el("tr", {},
      el("td", {}, i + 1), el("td", {}, t.path), el("td", {}, badge(t.status)),
      el("td", {}, t.exit_code ?? ""), el("td", {}, t.duration_ms != null ? `${(t.duration_ms / 1000).toFixed(3)}s` : ""))));
    const sc = $("#scripts");
    sc.replaceChildren();
    if (r.scripts && r.scripts.length) {
      sc.append(el("h2", {}, "Scripts"), el("table", { class: "scripts" },
        el("thead", {}, el("tr", {}, el("th", {}, "Script"), el("th", {}, "State"), el("th", {}, "Exit"), el("th", {}, "Started"), el("th", {}, "Finished"))),
        el("tbody", {}, r.scripts.map((x) => el("tr", { "data-script": x.name },
          el("td", {}, x.name), el("td", {}, badge(x.state)), el("td", {}, x.exit_code ?? ""),
          el("td", {}, x.started_at ? new Date(x.started_at).toLocaleTimeString() : ""),
          el("td", {}, x.finished_at ? new Date(x.finished_at).toLocaleTimeString() : ""))))));
    }
    const aw = $("#awaiting");
    aw.replaceChildren();
    if (r.awaiting && r.awaiting.length) {
      aw.append(el("h2", {}, "Awaited callbacks"), el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "Key"), el("th", {}, "Arrived"), el("th", {}, "Deadline"))),
        el("tbody", {}, r.awaiting.map((a) => el("tr", { "data-key": a.key },
          el("td", {}, el("a", { href: `#/sink/${encodeURIComponent(a.key)}` }, a.key)),
          el("td", {}, `${a.arrived} / ${a.count}`), el("td", {}, a.deadline))))));
    }
    const finished = !["queued", "running"].includes(r.status);
    $("#cancel").disabled = finished;
  }
  function appendLine(line) {
    const m = line.match(/^(\S+) (out|err|---|\S+\/(?:out|err)) (.*)$/);
    const div = m
      ? el("div", { class: m[2] === "---" ? "h" : m[2].endsWith("err") ? "err" : "" }, el("span", { class: "ts" }, `${m[1]} `), `${m[2]} ${m[3]}`)
      : el("div", {}, line);
    logPre.append(div);
    if (follow.checked) logPre.scrollTop = logPre.scrollHeight;
  }
  $("#cancel").addEventListener("click", async () => {
    $("#cancel").disabled = true;
    try { render(await api(`/api/runs/${id}/cancel`, { method: "POST" })); } catch (err) { alert(err.message); }
  });
  $("#rerun").addEventListener("click", async () => {
    try { const r = await api(`/api/runs/${id}/rerun`, { method: "POST" }); location.hash = `#/runs/${r.id}`; } catch (err) { alert(err.message); }
  });
  const source = new EventSource(`/api/runs/${id}/events`);
  source.addEventListener("run", (e) => render(JSON.parse(e.data)));
  source.addEventListener("log", (e) => appendLine(e.data));
  source.onerror = () => { source.close(); if (!run) api(`/api/runs/${id}`).then(render).catch((err) => { logPre.textContent = err.message; }); };
  const tick = setInterval(() => { if (run && run.status === "running") $("[data-f=duration]").textContent = duration(run); }, 1000);
  cleanup = () => { source.close(); clearInterval(tick); };
}

// ---- environments board -----------------------------------------------------------------
function envsPage(main) {
  main.append(view("envs-view"));
  const board = $("#board");
  const cards = new Map();
  function card(env) {
    const state = env.state;
    const c = el("article", { class: `env ${state}`, "data-env": env.id, "aria-label": `Environment ${env.id}: ${state}` },
      el("h3", {}, `Env ${env.id}`, badge(state)),
      env.run_id ? el("p", {}, "run ", el("a", { href: `#/runs/${env.run_id}` }, `#${env.run_id}`), env.username ? ` by ${env.username}` : "") : el("p", {}, "\u00a0"),
      env.since ? el("p", {}, `since ${new Date(env.since).toLocaleTimeString()}`) : el("p", {}, "\u00a0"),
      el("p", { class: "queue" }, `queue: ${env.queued.length}`),
      env.run_id ? el("p", { class: "services", "data-run": env.run_id }) : "",
      el("button", { type: "button", onclick: async () => {
        const updated = await api(`/api/envs/${env.id}/${state === "paused" ? "resume" : "pause"}`, { method: "POST" });
        put(updated);
      } }, state === "paused" ? "Resume" : "Pause"));
    return c;
  }
  // A busy environment shows the services its run has up (scripts running or ready).
  function showServices(run) {
    const p = board.querySelector(`.services[data-run="${run.id}"]`);
    if (!p) return;
    const up = (run.scripts || []).filter((x) => x.name !== "tests" && (x.state === "running" || x.state === "ready"));
    p.textContent = up.length ? `services: ${up.map((x) => `${x.name} (${x.state})`).join(", ")}` : "";
  }
  function put(env) {
    const c = card(env);
    const old = cards.get(env.id);
    if (old) old.replaceWith(c); else board.append(c);
    cards.set(env.id, c);
    if (env.run_id) api(`/api/runs/${env.run_id}`).then(showServices).catch(() => {});
  }
  // As in the runs table: an environment's state from /api/events wins over the fetched list.
  const live = new Map();
  api("/api/envs").then((envs) => envs.forEach((env) => put(live.get(env.id) || env)));
  listeners.add((kind, data) => {
    if (kind === "env") { live.set(data.id, data); put(data); }
    if (kind === "run") showServices(data);
  });
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

function sinkPage(main, selected) {
  main.append(view("sink-view"));
  const form = $("#sink-filter");
  let source = null;
  let prefix = "";
  async function list(p) {
    prefix = p;
    const { keys } = await api(`/callbacks?prefix=${encodeURIComponent(p)}&limit=500`);
    $("#keys").replaceChildren(...(keys.length ? keys.map((k) => el("li", {},
      el("a", { href: `#/sink/${encodeURIComponent(k.key)}`, class: k.key === selected ? "active" : "" }, el("span", {}, k.key), el("span", {}, k.count)))) : [el("li", { class: "empty" }, "no keys")]));
  }
  function show(key) {
    $("#key-title").textContent = key;
    const box = $("#records");
    box.replaceChildren();
    source = new EventSource(`/callbacks/${encodeURIComponent(key)}/events`);
    source.addEventListener("callback", (e) => {
      const r = JSON.parse(e.data);
      box.append(el("div", { class: "record", "data-seq": r.seq },
        el("header", {}, `seq ${r.seq} · ${r.method} · ${r.received_at} · ${r.content_type || "no content type"} · ${r.size} bytes`),
        el("pre", {}, bodyText(e.data, r))));
      // Keep the key list's counts current.
      list(prefix).catch(() => {});
    });
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); list(String(new FormData(form).get("prefix") || "")); });
  list("");
  if (selected) show(selected);
  cleanup = () => { if (source) source.close(); };
}

window.addEventListener("hashchange", route);
connectEvents();
route();
