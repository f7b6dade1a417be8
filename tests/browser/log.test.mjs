// The log viewer and the environments board at scale, in headless Chromium against a real
// `eventual serve` whose catalog is fixtures/logs (its own directory, so no other test lists it).
// Times are the page's own (Performance API marks and performance.now()), never sleeps; each
// figure is printed as a `# figure:` line so a run of this file reports them.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { launchBrowser, startServer, waitLive, waitUntil } from "./helpers.mjs";

const figure = (name, value) => console.log(`# figure: ${name}: ${value}`);
const finished = (api, id) => async () => !["queued", "running"].includes((await api.get(`/api/runs/${id}`)).status);

describe("log viewer", () => {
  let server, browser, api;
  let big, small, ansi;
  const pages = [];
  const open = async (path) => {
    const page = await browser.open(path);
    pages.push(page);
    return page;
  };
  const closeAll = async () => { for (const p of pages.splice(0)) { errors.push(...p.errors); await p.close(); } };
  const errors = [];

  before(async () => {
    server = await startServer({ envs: 4, sampleTests: "fixtures/logs" });
    api = server.api;
    browser = await launchBrowser(server.url);
    const t0 = Date.now();
    big = await api.createRun("ann", 1, ["million.sh"]);
    small = await api.createRun("bo", 2, ["short_pass.sh", "short_fail.sh"]);
    ansi = await api.createRun("cy", 3, ["ansi.sh"]);
    for (const run of [big, small, ansi]) await waitUntil(`run ${run.id} to end`, finished(api, run.id), 120_000);
    figure("1M-line run written by the harness (ms)", Date.now() - t0);
  });

  after(async () => {
    await closeAll();
    await browser?.close();
    await server?.stop();
    assert.deepEqual(errors, [], "uncaught errors in the page");
  });

  // The targets (tail < 2 s, a scroll < 250 ms, search < 5 s, follow p95 lag < 2 s) are reported
  // as `figure` lines, not asserted: on a loaded 2-core CI machine a timing target is noise. The
  // bounds below are ten times the targets — they catch the defect these tests exist for
  // (rendering cost that grows with the log: a 10,000-line log used to take 60 s), not a slow day.
  test("a 1,000,000-line log opens with its tail visible and stays responsive", async () => {
    const page = await open(`/#/runs/${big.id}`);
    const log = page.locator("#log");
    await log.locator("div.h", { hasText: `--- run ${big.id} passed` }).waitFor();
    await log.locator(".row", { hasText: "big line 1000000 of 1000000" }).waitFor();
    const tail = await page.evaluate(() => performance.getEntriesByName("log-tail-visible")[0].startTime);
    figure("1M-line log: tail visible after navigation (ms)", tail.toFixed(0));
    assert.ok(tail < 20000, `tail visible after ${tail} ms`);
    // Only what is in view is in the DOM.
    const rows = await log.locator(".row").count();
    assert.ok(rows < 100, `${rows} rows in the DOM`);
    assert.equal(await log.locator('.row[data-line="1000003"]').count(), 1, "the last line is numbered 1000003");

    // Scrolling anywhere draws within a frame or two; the lines arrive by range.
    const scroll = await page.evaluate(async () => {
      const box = document.querySelector("#log");
      const long = [];
      new PerformanceObserver((l) => long.push(...l.getEntries().map((e) => e.duration))).observe({ type: "longtask" });
      const frames = [];
      for (let i = 0; i < 40; i++) {
        const t = performance.now();
        box.scrollTop = (box.scrollHeight - box.clientHeight) * ((i * 37) % 40) / 40;
        await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
        frames.push(performance.now() - t);
      }
      frames.sort((a, b) => a - b);
      return { median: frames[20], worst: frames[39], longTasks: long.length, longest: Math.max(0, ...long) };
    });
    figure("1M-line log: scroll to a random place, two frames (median / worst ms)", `${scroll.median.toFixed(1)} / ${scroll.worst.toFixed(1)}`);
    figure("1M-line log: long tasks while scrolling (count, longest ms)", `${scroll.longTasks}, ${scroll.longest.toFixed(0)}`);
    assert.ok(scroll.worst < 2500, `a scroll took ${scroll.worst} ms`);
    assert.ok(scroll.longest < 2500, `a long task took ${scroll.longest} ms`);
    // The middle of the log shows real lines once its chunk has arrived.
    await page.evaluate(() => { const b = document.querySelector("#log"); b.scrollTop = (b.scrollHeight - b.clientHeight) / 2; });
    await waitUntil("the middle to load", async () => (await log.locator(".row.loading").count()) === 0);
    assert.match(await log.locator(".row").first().innerText(), /big line \d{7} of 1000000/);

    // Search finds the line near the start, highlighted, with a count.
    const t0 = await page.evaluate(() => performance.now());
    await page.getByLabel("Search the log").fill("needle-near-the-start");
    await page.getByLabel("Search the log").press("Enter");
    const hit = log.locator('.row.current[data-line="13"]');
    await hit.locator("mark", { hasText: "needle-near-the-start" }).waitFor();
    const t1 = await page.evaluate(() => performance.now());
    const fetched = await page.evaluate(() => performance.getEntriesByName("log-search").at(-1).duration);
    figure("1M-line log: search to the hit on screen / the search request (ms)", `${(t1 - t0).toFixed(0)} / ${fetched.toFixed(0)}`);
    assert.equal(await page.locator("#search-count").innerText(), "1 / 1");
    assert.ok(t1 - t0 < 50000, `search took ${t1 - t0} ms`);

    // A line link scrolls to its line, from the address and from a click on a line number.
    await page.goto(`${server.url}/#/runs/${big.id}?line=500000`);
    const linked = log.locator('.row.target[data-line="500000"]');
    await linked.locator("text=big line 0499999 of 1000000").waitFor();
    assert.ok(await linked.isVisible());
    await log.locator('.row[data-line="500003"] a.no').click();
    await log.locator('.row.target[data-line="500003"]').waitFor();
    assert.match(page.url(), /\?line=500003$/);
    await closeAll();
  });

  test("sections collapse, show status and duration, and a failed test's lines are marked", async () => {
    const page = await open(`/#/runs/${small.id}`);
    const log = page.locator("#log");
    await log.locator("div.h", { hasText: `--- run ${small.id} failed` }).waitFor();
    const passHead = log.locator(".row.section", { hasText: "start short_pass.sh" });
    const failHead = log.locator(".row.section", { hasText: "start short_fail.sh" });
    await passHead.locator(".badge.passed").waitFor();
    await failHead.locator(".badge.failed").waitFor();
    assert.match(await passHead.innerText(), /passed \d+\.\d{3}s/);
    // The failed test's lines are marked, the passed one's are not.
    assert.equal(await log.locator(".row.fail", { hasText: "fail line 2" }).count(), 1);
    assert.equal(await log.locator(".row.fail", { hasText: "pass line 2" }).count(), 0);

    await passHead.getByRole("button", { name: "Collapse short_pass.sh" }).click();
    await waitUntil("the section's lines to go", async () => (await log.locator(".row", { hasText: "pass line" }).count()) === 0);
    assert.match(await passHead.innerText(), /lines hidden/);
    await log.locator(".row", { hasText: "fail line 1" }).waitFor();
    await passHead.getByRole("button", { name: "Expand short_pass.sh" }).click();
    await log.locator(".row", { hasText: "pass line 3" }).waitFor();
    await closeAll();
  });

  test("search ignores case unless Match case is ticked", async () => {
    const page = await open(`/#/runs/${small.id}`);
    const log = page.locator("#log");
    await log.locator("div.h", { hasText: `--- run ${small.id} failed` }).waitFor();
    const box = page.getByLabel("Search the log");
    await box.fill("PASS LINE");
    await box.press("Enter");
    await page.locator("#search-count", { hasText: "1 / 5" }).waitFor();
    // Highlighted as written in the log.
    await log.locator(".row.current mark", { hasText: /^pass line$/ }).waitFor();
    assert.equal(await log.locator("mark", { hasText: /^pass line$/ }).count(), 5);
    // Ticking Match case searches again, byte for byte.
    await page.getByLabel("Match case").check();
    await page.locator("#search-count", { hasText: "no matches" }).waitFor();
    assert.equal(await log.locator("mark").count(), 0);
    await box.fill("pass line");
    await box.press("Enter");
    await page.locator("#search-count", { hasText: "1 / 5" }).waitFor();
    await page.getByLabel("Match case").uncheck();
    await box.fill("Fail Line");
    await page.getByRole("button", { name: "Next match" }).click();
    await page.locator("#search-count", { hasText: /^1 \/ \d+$/ }).waitFor();
    await log.locator(".row.current mark", { hasText: /^fail line$/ }).waitFor();
    await closeAll();
  });

  test("search goes on in follow mode: new matching lines are counted and highlighted, next and previous reach them", async () => {
    const run = await api.createRun("eve", 2, ["gated.sh"]);
    const page = await open(`/#/runs/${run.id}`);
    const log = page.locator("#log");
    await log.locator(".row", { hasText: "out first Needle" }).waitFor();
    const box = page.getByLabel("Search the log");
    await box.fill("needle");
    await box.press("Enter");
    await page.locator("#search-count", { hasText: "1 / 1" }).waitFor();
    // Back to following, then the test prints the rest.
    await page.locator("#follow").check();
    await api.callback(`run-${run.id}.go`, { go: true });
    await waitUntil(`run ${run.id} to end`, finished(api, run.id));
    await page.locator("#search-count", { hasText: "1 / 3" }).waitFor();
    await log.locator(".row", { hasText: "third NEEDLE" }).locator("mark", { hasText: "NEEDLE" }).waitFor();
    assert.equal(await log.locator(".row", { hasText: "second needle" }).locator("mark").count(), 1);
    assert.equal(await log.locator(".row", { hasText: "no match here" }).locator("mark").count(), 0);
    assert.ok(await page.locator("#follow").isChecked(), "still following");
    // The test's end line came over the stream: its section's header says how it ended.
    await log.locator(".row.section", { hasText: "--- start gated.sh" }).locator(".badge.passed").waitFor();
    await page.getByRole("button", { name: "Next match" }).click();
    await page.locator("#search-count", { hasText: "2 / 3" }).waitFor();
    await log.locator(".row.current", { hasText: "second needle" }).waitFor();
    await page.getByRole("button", { name: "Next match" }).click();
    await log.locator(".row.current", { hasText: "third NEEDLE" }).waitFor();
    await page.getByRole("button", { name: "Previous match" }).click();
    await page.locator("#search-count", { hasText: "2 / 3" }).waitFor();
    await closeAll();
  });

  test("Download log gives the exact file", async () => {
    const page = await open(`/#/runs/${small.id}`);
    await page.locator("#log div.h", { hasText: `--- run ${small.id} failed` }).waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Download log" }).click()]);
    assert.equal(download.suggestedFilename(), `run-${small.id}.log`);
    const got = await readFile(await download.path());
    const want = await readFile(join(server.dir, "data", "runs", String(small.id), "log.txt"));
    assert.ok(got.equals(want), "the download differs from the log file");
    await closeAll();
  });

  test("ANSI colours are shown as colours, not escape codes", async () => {
    const page = await open(`/#/runs/${ansi.id}`);
    const log = page.locator("#log");
    const red = log.locator(".row", { hasText: "assert 1 == 2" }).locator(".ansi-fg-31");
    await red.waitFor();
    assert.equal(await red.innerText(), "E       assert 1 == 2");
    assert.equal(await red.evaluate((e) => getComputedStyle(e).color), "rgb(255, 123, 114)");
    assert.equal(await log.locator(".ansi-bold", { hasText: "test session starts" }).count(), 1);
    assert.doesNotMatch(await log.innerText(), /\x1b|\[3[12]m/);
    await closeAll();
  });

  test("follow mode keeps up with a test printing 20,000 lines a second for 10 s", async () => {
    await api.post("/api/envs/4/pause");
    const run = await api.createRun("dee", 4, ["fast_lines.py"]);
    const page = await open(`/#/runs/${run.id}`);
    await page.locator("h1 .badge.queued").waitFor();
    // The page measures itself: each frame, how old the newest line on screen is.
    await page.evaluate(() => {
      window.lag = [];
      const tick = () => {
        const rows = document.querySelectorAll("#log .row");
        const ts = rows.length && rows[rows.length - 1].querySelector(".ts");
        if (ts && /fast line/.test(rows[rows.length - 1].textContent)) window.lag.push(Date.now() - Date.parse(ts.textContent.trim()));
        if (!window.stopLag) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    await api.post("/api/envs/4/resume");
    await page.locator("#log .row", { hasText: "out fast lines done" }).waitFor({ timeout: 60_000 });
    const done = await page.evaluate(() => {
      window.stopLag = true;
      const rows = [...document.querySelectorAll("#log .row")];
      const last = rows.find((r) => r.textContent.includes("fast lines done"));
      return Date.now() - Date.parse(last.querySelector(".ts").textContent.trim());
    });
    const lag = (await page.evaluate(() => window.lag)).sort((a, b) => a - b);
    const p = (q) => lag[Math.min(lag.length - 1, Math.floor(lag.length * q))];
    figure("follow at 20,000 lines/s: lag of the newest line on screen, median / p95 / max (ms)", `${p(0.5)} / ${p(0.95)} / ${lag.at(-1)}`);
    figure("follow: last line on screen after it was written (ms)", done);
    assert.ok(lag.length > 50, `only ${lag.length} frames sampled`);
    assert.ok(p(0.95) < 20000, `p95 lag ${p(0.95)} ms`);
    // Every line arrived, in order, and the view follows the end.
    await page.locator("h1 .badge.passed").waitFor();
    assert.ok(await page.locator("#follow").isChecked());
    assert.equal(await page.locator('#log .row[data-line="200002"]', { hasText: "fast line 199999" }).count(), 1);
    await closeAll();
  });
});

describe("environments board with 500 environments", () => {
  let server, browser, api;
  before(async () => {
    server = await startServer({ envs: 500, sampleTests: "fixtures/logs" });
    api = server.api;
    browser = await launchBrowser(server.url);
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("renders every environment, busy and paused first, updates live, and filters", async () => {
    await api.post("/api/envs/480/pause");
    const queued = await api.createRun("zed", 480, ["short_pass.sh"]);
    const page = await browser.open("/#/envs");
    await waitLive(page);
    const board = page.locator("#board");
    await page.locator("#board[data-ready]").waitFor();
    const ready = await page.evaluate(() => performance.getEntriesByName("envs-ready")[0].startTime);
    figure("board with 500 environments: rendered after navigation (ms)", ready.toFixed(0));
    assert.equal(await board.locator("article.env").count(), 500);
    // The paused one comes first, with its queue and who waits.
    const first = board.locator("article.env").first();
    assert.equal(await first.getAttribute("data-env"), "480");
    await waitUntil("the queue with its user", async () => (await first.locator(".queue").innerText()) === `queue: 1 — #${queued.id} zed`)
      .catch(async (e) => { throw new Error(`${e.message}: ${await first.innerText()}`); });

    // Live: pausing another moves it up at once.
    const t0 = await page.evaluate(() => performance.now());
    await api.post("/api/envs/7/pause");
    await board.locator("article.env").first().locator(".badge.paused").waitFor();
    await waitUntil("env 7 to move up", async () => (await board.locator("article.env").first().getAttribute("data-env")) === "7");
    const t1 = await page.evaluate(() => performance.now());
    figure("board: a pause shown after the API call (ms)", (t1 - t0).toFixed(0));

    // Filter by user, by number, by state.
    const filter = page.getByLabel("Filter");
    // Waits for exactly these to be shown (the filter applies on the next frame).
    const shown = (ids) => waitUntil(`only envs ${ids} to show`, async () =>
      (await board.locator("article.env:visible").evaluateAll((es) => es.map((e) => e.dataset.env).join(","))) === ids);
    await filter.fill("zed");
    await shown("480");
    await filter.fill("250");
    await shown("250");
    await filter.fill("paused");
    await shown("7,480");
    await filter.fill("");

    // Resumed, the queued run takes the environment, passes, and leaves it free.
    await api.post("/api/envs/480/resume");
    await api.post("/api/envs/7/resume");
    await waitUntil(`run ${queued.id} to finish`, finished(api, queued.id));
    const env480 = board.locator('article.env[data-env="480"]');
    await env480.locator(".badge.free").waitFor();
    await env480.locator(".queue", { hasText: "queue: 0" }).waitFor();
    assert.equal(await board.locator("article.env").first().getAttribute("data-env"), "1");
    assert.deepEqual(page.errors, [], "uncaught errors in the page");
    await page.close();
  });
});
