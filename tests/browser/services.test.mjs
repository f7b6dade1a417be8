// Services in a run, as the UI shows them: the run page's script table and the environments
// board's services of a busy environment (a server whose catalog is fixtures/services).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { waitUntil, withServerAndBrowser } from "./helpers.mjs";

describe("services in the web UI", () => {
  const ctx = withServerAndBrowser({ envs: 2, sampleTests: "fixtures/services" });

  test("the run page lists the scripts with their states and the board shows the running service", async () => {
    const run = await ctx.server.api.createRun("sam", 1, ["basic/hang.sh"]);
    const page = await ctx.open(`/#/runs/${run.id}`);
    await page.locator('#scripts tr[data-script="sut"] .badge.ready').waitFor();
    await page.locator('#scripts tr[data-script="build"] .badge.passed').waitFor();
    await page.locator('#scripts tr[data-script="tests"] .badge.running').waitFor();
    // The service's log section, noted from the followed lines, is still open.
    const sutHead = page.locator("#log .row.section.script", { hasText: "script sut starts" });
    await sutHead.locator(".badge.running").waitFor();
    const sutLine = await sutHead.getAttribute("data-line");

    const board = await ctx.open("/#/envs");
    await board.locator('article[data-env="1"] .services', { hasText: "services: sut (ready)" }).waitFor();

    await ctx.server.api.post(`/api/runs/${run.id}/cancel`);
    await page.locator("h1 .badge.cancelled").waitFor();
    await page.locator('#scripts tr[data-script="cleanup"] .badge.passed').waitFor();
    await page.locator('#scripts tr[data-script="sut"] .badge.cancelled').waitFor();
    // Its end line came over the stream: the header (scrolled back to) says how it ended.
    await page.goto(`${ctx.server.url}/#/runs/${run.id}?line=${sutLine}`);
    await sutHead.locator(".badge.cancelled").waitFor();
    assert.equal(await page.locator('#scripts tr[data-script="notify"] .badge').innerText(), "cancelled");
  });

  test("each script has its own log section with its state and duration; a service's holds the test's", async () => {
    const run = await ctx.server.api.createRun("sam", 2, ["basic/check_sut.sh"]);
    // From the first line: the build's section is at the top.
    const page = await ctx.open(`/#/runs/${run.id}?line=1`);
    await page.locator("h1 .badge.passed").waitFor({ timeout: 60_000 });
    await page.reload();
    const log = page.locator("#log");
    const build = log.locator(".row.section.script", { hasText: "script build starts" });
    await build.locator(".badge.passed").waitFor();
    assert.match(await build.innerText(), /passed \d+\.\d{3}s/);
    await log.locator(".row", { hasText: "build/out building" }).waitFor();
    await build.getByRole("button", { name: "Collapse script build" }).click();
    await waitUntil("the build's lines to go", async () => (await log.locator(".row", { hasText: "build/out building" }).count()) === 0);
    await build.getByRole("button", { name: "Expand script build" }).click();
    await log.locator(".row", { hasText: "build/out building" }).waitFor();

    // The service runs beside the test: collapsing it hides the test's section too, and a link
    // to a line inside opens it again.
    const sut = log.locator(".row.section.script", { hasText: "script sut starts" });
    await sut.locator(".badge.passed").waitFor();
    const test = log.locator(".row.section", { hasText: "--- start basic/check_sut.sh" });
    await test.locator(".badge.passed").waitFor();
    const line = Number(await test.getAttribute("data-line"));
    await sut.getByRole("button", { name: "Collapse script sut" }).click();
    await waitUntil("the test's section to be hidden", async () => (await test.count()) === 0);
    await page.goto(`${ctx.server.url}/#/runs/${run.id}?line=${line}`);
    await log.locator(`.row.target.section[data-line="${line}"]`).waitFor();
    await sut.getByRole("button", { name: "Collapse script sut" }).waitFor();
  });
});
