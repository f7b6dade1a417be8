// The web UI in a real browser: headless Chromium against a real `eventual serve`.
// Each test uses its own environment so that none waits on another's runs, and closes its pages:
// every page holds an SSE connection, and Chromium opens at most six HTTP/1.1 connections to one
// host, so a seventh open page would wait forever.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";

import { launchBrowser, startServer, waitLive, waitUntil } from "./helpers.mjs";

describe("web UI", () => {
  let server, browser, api;
  let pages = [];
  const errors = [];
  const open = async (path) => {
    const page = await browser.open(path);
    pages.push(page);
    return page;
  };

  before(async () => {
    server = await startServer({ envs: 5 });
    api = server.api;
    browser = await launchBrowser(server.url);
  });

  afterEach(async () => {
    for (const page of pages) {
      errors.push(...page.errors);
      await page.close();
    }
    pages = [];
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    // No view may have thrown: an uncaught error in app.js fails the suite even if the checks passed.
    assert.deepEqual(errors, [], "uncaught errors in the page");
  });

  test("a run started from the New run form shows up in another tab's runs table and goes queued → running → passed live", async () => {
    const watcher = await open("/#/");
    await waitLive(watcher);
    await watcher.evaluate(() => { window.notReloaded = true; });
    // Environment 1 is paused so that the run waits in its queue until we let it go.
    await api.post("/api/envs/1/pause");

    const form = await open("/#/");
    await form.getByLabel("Username", { exact: true }).fill("ann");
    await form.getByLabel("Environment", { exact: true }).fill("1");
    await form.getByRole("checkbox", { name: "pass.sh", exact: true }).check();
    await form.getByRole("checkbox", { name: "slow_lines.sh", exact: true }).check();
    await form.getByRole("button", { name: "Start run" }).click();
    // The submitter is taken to the new run's page.
    await form.waitForURL(/#\/runs\/\d+$/);
    const id = Number(form.url().split("/").pop());
    await form.locator("h1 .badge.queued").waitFor();

    const row = watcher.locator(`#runs-body tr[data-run="${id}"]`);
    await row.locator(".badge.queued").waitFor();
    assert.deepEqual(
      await row.locator("td").allInnerTexts(),
      [`#${id}`, "ann", "1", "pass.sh, slow_lines.sh", "queued", ""],
    );

    await api.post("/api/envs/1/resume");
    await row.locator(".badge.running").waitFor();
    await row.locator(".badge.passed").waitFor();
    assert.match(await row.locator("td.duration").innerText(), /^\d+\.\ds$/);
    assert.equal(await watcher.evaluate(() => window.notReloaded), true, "the runs page was reloaded");
  });

  test("the run page shows log lines as they are printed, while the run is still running", async () => {
    await api.post("/api/envs/2/pause");
    const run = await api.createRun("bo", 2, ["slow_lines.sh"]);
    const page = await open(`/#/runs/${run.id}`);
    await page.locator("h1 .badge.queued").waitFor();
    const facts = page.locator("dl.facts");
    assert.match(await facts.innerText(), /User\s+bo\s+Environment\s+2/);
    await api.post("/api/envs/2/resume");

    const log = page.locator("#log");
    await log.locator("div", { hasText: "out slow line 1 of 3" }).waitFor();
    // slow_lines.sh pauses a second between lines: the first is here, the run is not over.
    assert.equal(await page.locator("h1 .badge").innerText(), "running");
    assert.equal(await log.locator("div", { hasText: "slow line 3 of 3" }).count(), 0);
    await page.locator("#tests-body .badge.running").waitFor();

    await page.locator("h1 .badge.passed").waitFor();
    await log.locator("div", { hasText: "out slow line 3 of 3" }).waitFor();
    await log.locator("div.h", { hasText: `--- run ${run.id} passed` }).waitFor();
    // stderr lines are told apart from stdout.
    await log.locator("div.err", { hasText: "err slow line 2 of 3" }).waitFor();
    assert.deepEqual(
      (await page.locator("#tests-body tr td").allInnerTexts()).slice(0, 4),
      ["1", "slow_lines.sh", "passed", "0"],
    );
    assert.equal(await page.getByRole("button", { name: "Cancel" }).isDisabled(), true);
  });

  test("a test uploaded into a new nested directory appears in the New run picker and runs", async () => {
    const page = await open("/#/");
    const upload = page.locator("#upload");
    const file = {
      name: "uploaded_check.sh",
      mimeType: "text/x-sh",
      buffer: Buffer.from('#!/usr/bin/env bash\necho "uploaded test ran"\n'),
    };
    await page.getByLabel("File (a test or a support file)").setInputFiles(file);
    await page.getByLabel(/^Directory/).fill("team-a/smoke/nightly");
    await upload.getByRole("button", { name: "Upload" }).click();
    await upload.locator(".form-ok", { hasText: "Uploaded team-a/smoke/nightly/uploaded_check.sh." }).waitFor();

    const picker = page.locator("#nr-tests");
    const group = picker.locator("fieldset", { has: page.locator("legend", { hasText: /^team-a\/smoke\/nightly$/ }) });
    await group.getByRole("checkbox", { name: "uploaded_check.sh" }).waitFor();
    // The picker's search narrows the list to it.
    await page.getByPlaceholder("filter tests…").fill("nightly");
    await waitUntil("pass.sh to be filtered out", () => picker.locator('.pick[data-path="pass.sh"]').isHidden());
    assert.equal(await picker.locator('.pick[data-path="team-a/smoke/nightly/uploaded_check.sh"]').isVisible(), true);

    // The same upload again is refused with a message saying why.
    await page.getByLabel("File (a test or a support file)").setInputFiles(file);
    await upload.getByRole("button", { name: "Upload" }).click();
    await upload.locator(".form-error", { hasText: /^Already exists: / }).waitFor();
    // So is a file that is not a test.
    await page.getByLabel("File (a test or a support file)").setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("hi\n") });
    await upload.getByRole("button", { name: "Upload" }).click();
    await upload.locator(".form-error", { hasText: /^Not a supported kind: / }).waitFor();

    // A support file beside it is listed in its directory, without a checkbox.
    await page.getByLabel("File (a test or a support file)").setInputFiles({ name: "_helpers.py", mimeType: "text/x-python", buffer: Buffer.from("ANSWER = 42\n") });
    await upload.getByRole("button", { name: "Upload" }).click();
    await upload.locator(".form-ok", { hasText: "Uploaded team-a/smoke/nightly/_helpers.py." }).waitFor();
    const support = group.locator('.support[data-path="team-a/smoke/nightly/_helpers.py"]');
    await support.waitFor();
    assert.equal(await support.locator("input").count(), 0, "a support file cannot be picked as a test");
    assert.match(await page.locator("#up-kinds").innerText(), /starts with _/);

    // And it runs.
    await page.getByLabel("Username", { exact: true }).fill("dee");
    await page.getByLabel("Environment", { exact: true }).fill("4");
    await group.getByRole("checkbox", { name: "uploaded_check.sh" }).check();
    await page.getByRole("button", { name: "Start run" }).click();
    await page.waitForURL(/#\/runs\/\d+$/);
    await page.locator("h1 .badge.passed").waitFor();
    await page.locator("#log div", { hasText: "out uploaded test ran" }).waitFor();
  });

  test("an empty username and environment 0 get the API's 422 messages beside those fields", async () => {
    const before = (await api.get("/api/runs?limit=1000")).runs.length;
    const page = await open("/#/");
    await page.getByLabel("Environment", { exact: true }).fill("0");
    await page.getByRole("checkbox", { name: "pass.sh", exact: true }).check();
    await page.getByRole("button", { name: "Start run" }).click();

    const user = page.getByLabel("Username", { exact: true });
    const env = page.getByLabel("Environment", { exact: true });
    await page.locator("#nr-user + .field-error", { hasText: "must not be empty" }).waitFor();
    await page.locator("#nr-env + .field-error", { hasText: "must be a whole number from 1 to 5" }).waitFor();
    // Tied to their inputs for screen readers, and nothing else is wrong.
    assert.equal(await user.getAttribute("aria-invalid"), "true");
    assert.equal(await env.getAttribute("aria-invalid"), "true");
    assert.equal(await page.locator('.field-error[data-for="tests"]').innerText(), "");
    assert.equal(await page.locator("#new-run .form-error").innerText(), "");
    assert.match(page.url(), /#\/$/);

    // An empty environment is "required", not a type error.
    await env.fill("");
    await user.fill("eve");
    await page.getByRole("button", { name: "Start run" }).click();
    await page.locator("#nr-env + .field-error", { hasText: "is required (1 to 5)" }).waitFor();
    assert.equal(await page.locator("#nr-user + .field-error").innerText(), "");
    assert.equal(await user.getAttribute("aria-invalid"), null);
    assert.equal((await api.get("/api/runs?limit=1000")).runs.length, before, "a run was created");
  });

  test("the environments board shows an environment busy with its run while hang.sh holds it, then free after Cancel", async () => {
    const board = await open("/#/envs");
    await waitLive(board);
    const card = board.locator('.env[data-env="3"]');
    await card.locator(".badge.free").waitFor();

    const hang = await api.createRun("fay", 3, ["hang.sh"]);
    await card.locator(".badge.busy").waitFor();
    await card.getByRole("link", { name: `#${hang.id}` }).waitFor();
    assert.match(await card.innerText(), /by fay/);
    // A second run waits in the environment's queue.
    const next = await api.createRun("gus", 3, ["pass.sh"]);
    await card.locator(".queue", { hasText: "queue: 1" }).waitFor();

    const runPage = await open(`/#/runs/${hang.id}`);
    await runPage.locator("#log div", { hasText: "out ready" }).waitFor();
    await runPage.getByRole("button", { name: "Cancel" }).click();
    await runPage.locator("h1 .badge.cancelled").waitFor();

    // The queued run takes the environment, passes, and leaves it free.
    await waitUntil(`run ${next.id} to pass`, async () => (await api.get(`/api/runs/${next.id}`)).status === "passed");
    await card.locator(".badge.free").waitFor();
    await card.locator(".queue", { hasText: "queue: 0" }).waitFor();
    assert.equal(await card.getByRole("link").count(), 0);
  });
});
