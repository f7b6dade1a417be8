// Shared by the browser tests: start the real `eventual serve` on a free port with its own data
// directory, launch Debian's headless Chromium through playwright-core, and talk to the HTTP API.
//
// Waiting is always on a condition with a deadline (playwright's auto-waiting locators or
// `waitUntil` below), never a fixed sleep.

import { spawn } from "node:child_process";
import { existsSync, openSync, closeSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import assert from "node:assert/strict";
import { after, before } from "node:test";

import { chromium } from "playwright-core";

/** The repository root; relative paths (EVENTUAL_BIN, fixtures) are taken from here. */
export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** How long one UI condition may take before the test fails. */
export const WAIT_MS = 15_000;

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Starts `eventual serve` (EVENTUAL_BIN, default target/debug/eventual) on 127.0.0.1:0 with a fresh
 * data directory, the fixture tests as its catalog and `envs` environments. Resolves once it has
 * printed `listening on http://…`.
 */
export async function startServer({ envs = 5, sampleTests = "fixtures/tests" } = {}) {
  const bin = resolve(repoRoot, process.env.EVENTUAL_BIN || "target/debug/eventual");
  if (!existsSync(bin)) {
    throw new Error(`no eventual binary at ${bin}: run \`cargo build\` first, or set EVENTUAL_BIN`);
  }
  const dir = await mkdtemp(join(tmpdir(), "eventual-browser-"));
  const logPath = join(dir, "server.log");
  const logFd = openSync(logPath, "w");
  // The server must not pick up a developer's settings (a token would lock the UI out).
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("EVENTUAL_") || k === "EVENTUAL_LOG"),
  );
  const args = [
    "serve",
    "--bind", "127.0.0.1:0",
    "--data-dir", join(dir, "data"),
    "--sample-tests", join(repoRoot, sampleTests),
    "--envs", String(envs),
  ];
  const child = spawn(bin, args, { cwd: dir, env, stdio: ["ignore", "pipe", logFd] });
  closeSync(logFd);
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise((done) => child.once("exit", (code, signal) => done({ code, signal })));

  const serverLog = () => {
    try { return readFileSync(logPath, "utf8").split("\n").slice(-30).join("\n"); } catch { return ""; }
  };
  const url = await new Promise((ok, fail) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => fail(new Error(`eventual serve printed no address within 30 s:\n${serverLog()}`)), 30_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      const m = line.match(/^listening on (http:\/\/\S+)$/);
      if (m) ok(m[1]);
      else fail(new Error(`unexpected first line from eventual serve: ${line}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      fail(new Error(`eventual serve exited (${code ?? signal}) before listening:\n${serverLog()}`));
    });
  });
  // Keep reading stdout so the server never blocks on a full pipe.
  child.stdout.resume();

  return {
    url,
    dir,
    serverLog,
    api: apiClient(url),
    /** SIGTERM (graceful), SIGKILL if it is not gone within 10 s; then removes the data directory. */
    async stop() {
      process.removeListener("exit", killOnExit);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A small client for the HTTP API; every method throws on a non-2xx answer. */
export function apiClient(base) {
  async function call(method, path, body) {
    const init = { method, headers: {} };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(base + path, init);
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  }
  return {
    get: (path) => call("GET", path),
    post: (path, body) => call("POST", path, body),
    createRun: (username, envId, tests) => call("POST", "/api/runs", { username, env_id: envId, tests }),
    callback: (key, body) => call("POST", `/callbacks/${encodeURIComponent(key)}`, body),
  };
}

/**
 * Launches headless Chromium (CHROMIUM, default /usr/bin/chromium) with a fresh profile and a
 * laptop-sized window. `open(path)` gives a page that records uncaught script errors in
 * `page.errors`.
 */
export async function launchBrowser(baseUrl) {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(executablePath)) {
    throw new Error(`no Chromium at ${executablePath}: apt-get install chromium (scripts/test.sh does), or set CHROMIUM`);
  }
  const profile = await mkdtemp(join(tmpdir(), "eventual-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    timezoneId: "UTC",
    locale: "en-GB",
  });
  context.setDefaultTimeout(WAIT_MS);
  // A persistent context opens with one blank page; the tests open their own.
  for (const page of context.pages()) await page.close();
  return {
    context,
    async open(path = "/") {
      const page = await context.newPage();
      page.errors = [];
      page.on("pageerror", (err) => page.errors.push(err.message));
      await page.goto(baseUrl + path);
      return page;
    },
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until the page's connection to /api/events is open (the header says "live"). */
export async function waitLive(page) {
  await page.locator("#live", { hasText: /^live$/ }).waitFor();
}

/** Polls `check` (async, truthy when done) until it holds or `ms` pass. */
export async function waitUntil(what, check, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * For a `describe` block: starts a server (`startServer(options)`) and a browser before its tests,
 * and after them closes every page opened with `open`, the browser and the server, failing if a
 * page had an uncaught script error. Returns `{ server, browser, open }`, filled in once `before`
 * has run.
 */
export function withServerAndBrowser(options) {
  const ctx = { server: null, browser: null, pages: [] };
  ctx.open = async (path) => {
    const page = await ctx.browser.open(path);
    ctx.pages.push(page);
    return page;
  };
  before(async () => {
    ctx.server = await startServer(options);
    ctx.browser = await launchBrowser(ctx.server.url);
  });
  after(async () => {
    const errors = ctx.pages.flatMap((p) => p.errors);
    for (const page of ctx.pages) await page.close();
    await ctx.browser?.close();
    await ctx.server?.stop();
    assert.deepEqual(errors, [], "uncaught errors in the page");
  });
  return ctx;
}
