// Services in a run, as the UI shows them: the run page's script table and the environments
// board's services of a busy environment (a server whose catalog is fixtures/services).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { withServerAndBrowser } from "./helpers.mjs";

describe("services in the web UI", () => {
  const ctx = withServerAndBrowser({ envs: 2, sampleTests: "fixtures/services" });

  test("the run page lists the scripts with their states and the board shows the running service", async () => {
    const run = await ctx.server.api.createRun("sam", 1, ["basic/hang.sh"]);
    const page = await ctx.open(`/#/runs/${run.id}`);
    await page.locator('#scripts tr[data-script="sut"] .badge.ready').waitFor();
    await page.locator('#scripts tr[data-script="build"] .badge.passed').waitFor();
    await page.locator('#scripts tr[data-script="tests"] .badge.running').waitFor();

    const board = await ctx.open("/#/envs");
    await board.locator('article[data-env="1"] .services', { hasText: "services: sut (ready)" }).waitFor();

    await ctx.server.api.post(`/api/runs/${run.id}/cancel`);
    await page.locator("h1 .badge.cancelled").waitFor();
    await page.locator('#scripts tr[data-script="cleanup"] .badge.passed').waitFor();
    await page.locator('#scripts tr[data-script="sut"] .badge.cancelled').waitFor();
    assert.equal(await page.locator('#scripts tr[data-script="notify"] .badge').innerText(), "cancelled");
  });
});
