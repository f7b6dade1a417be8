// Services in a run, as the UI shows them: the run page's script table and the environments
// board's services of a busy environment (a server whose catalog is fixtures/services).

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { launchBrowser, startServer } from "./helpers.mjs";

describe("services in the web UI", () => {
  let server, browser;
  const pages = [];

  before(async () => {
    server = await startServer({ envs: 2, sampleTests: "fixtures/services" });
    browser = await launchBrowser(server.url);
  });

  after(async () => {
    const errors = pages.flatMap((p) => p.errors);
    for (const page of pages) await page.close();
    await browser?.close();
    await server?.stop();
    assert.deepEqual(errors, [], "uncaught errors in the page");
  });

  test("the run page lists the scripts with their states and the board shows the running service", async () => {
    const run = await server.api.createRun("sam", 1, ["basic/hang.sh"]);
    const page = await browser.open(`/#/runs/${run.id}`);
    pages.push(page);
    await page.locator('#scripts tr[data-script="sut"] .badge.ready').waitFor();
    await page.locator('#scripts tr[data-script="build"] .badge.passed').waitFor();
    await page.locator('#scripts tr[data-script="tests"] .badge.running').waitFor();

    const board = await browser.open("/#/envs");
    pages.push(board);
    await board.locator('article[data-env="1"] .services', { hasText: "services: sut (ready)" }).waitFor();

    await server.api.post(`/api/runs/${run.id}/cancel`);
    await page.locator("h1 .badge.cancelled").waitFor();
    await page.locator('#scripts tr[data-script="cleanup"] .badge.passed').waitFor();
    await page.locator('#scripts tr[data-script="sut"] .badge.cancelled').waitFor();
    assert.equal(await page.locator('#scripts tr[data-script="notify"] .badge').innerText(), "cancelled");
  });
});
