// Phased runs as the run page shows them: the awaited callbacks table follows every arrival
// (a server whose catalog is fixtures/phased; its start_pair.sh announces a key with count=2).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { withServerAndBrowser } from "./helpers.mjs";

describe("phased runs in the web UI", () => {
  const ctx = withServerAndBrowser({ envs: 2, sampleTests: "fixtures/phased" });

  test("the run page counts each awaited callback as it arrives, then runs validation", async () => {
    const run = await ctx.server.api.createRun("pia", 1, ["preparation/start_pair.sh", "validation/check.sh"]);
    const key = `run-${run.id}.pair`;
    const page = await ctx.open(`/#/runs/${run.id}`);
    const row = page.locator(`#awaiting tr[data-key="${key}"]`);
    await row.locator("td", { hasText: /^0 \/ 2$/ }).waitFor();

    await ctx.server.api.callback(key, { n: 1 });
    await row.locator("td", { hasText: /^1 \/ 2$/ }).waitFor();
    assert.equal(await page.locator("h1 .badge.running").count(), 1, "still waiting for the second");

    await ctx.server.api.callback(key, { n: 2 });
    await page.locator("h1 .badge.passed").waitFor();
    await row.locator("td", { hasText: /^2 \/ 2$/ }).waitFor();
  });
});
