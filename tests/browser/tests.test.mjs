// A test's page (history, pass rate, duration chart), picking a directory or a tag in the New run
// form, "Rerun failed", and the form's field errors clearing on edit: headless Chromium against a
// real `eventual serve`. Each test uses its own environment so none waits on another's runs.

import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { waitLive, waitUntil, withServerAndBrowser } from "./helpers.mjs";

const ENDED = new Set(["passed", "failed", "error", "timed_out", "cancelled", "interrupted"]);

describe("test pages and the new-run picker", () => {
  const ctx = withServerAndBrowser({ envs: 5 });
  const api = () => ctx.server.api;
  let mine = [];
  const open = async (path) => { const p = await ctx.open(path); mine.push(p); return p; };
  // Every page holds an SSE connection: close them after each test (Chromium's six per host).
  afterEach(async () => { for (const p of mine) await p.close(); mine = []; });

  async function upload(dir, name, text, overwrite = false) {
    const form = new FormData();
    form.set("file", new Blob([text]), name);
    form.set("dir", dir);
    if (overwrite) form.set("overwrite", "true");
    const res = await fetch(`${ctx.server.url}/api/tests`, { method: "POST", body: form });
    assert.ok(res.status === 201 || res.status === 200, `upload ${dir}/${name}: ${res.status} ${await res.text()}`);
  }
  async function runToEnd(envId, tests) {
    const run = await api().createRun("tess", envId, tests);
    return waitUntil(`run ${run.id} to end`, async () => {
      const r = await api().get(`/api/runs/${run.id}`);
      return ENDED.has(r.status) && r;
    }, 30_000);
  }

  test("a test's page shows its history: pass rate, one chart mark per run (the failed one marked), the runs table", async () => {
    await upload("hist", "flip.sh", "#!/usr/bin/env bash\necho ok\n");
    const good = await runToEnd(1, ["hist/flip.sh"]);
    assert.equal(good.status, "passed");
    await upload("hist", "flip.sh", "#!/usr/bin/env bash\necho broken\nexit 4\n", true);
    const bad = await runToEnd(1, ["hist/flip.sh"]);
    assert.equal(bad.status, "failed");

    // Reached from the test's name on a run page.
    const page = await open(`/#/runs/${bad.id}`);
    await page.locator("#tests-body").getByRole("link", { name: "hist/flip.sh" }).click();
    await page.waitForURL(/#\/tests\/hist\/flip\.sh$/);
    await page.locator("#test-chart[data-ready=true]").waitFor();
    await page.locator("#test-rate", { hasText: "50% passed (1 of 2 finished runs)" }).waitFor();

    const marks = page.locator("#test-chart rect.mark");
    assert.equal(await marks.count(), 2, "one mark per run");
    // Oldest left, newest right; the failed run's mark in the failure class.
    const info = await marks.evaluateAll((rs) => rs.map((r) => ({ run: Number(r.dataset.run), cls: r.getAttribute("class"), x: Number(r.getAttribute("x")) })));
    assert.deepEqual(info.map((m) => m.run), [good.id, bad.id]);
    assert.ok(info[0].x < info[1].x, "newest right");
    assert.match(info[0].cls, /\bpass\b/);
    assert.match(info[1].cls, /\bfail\b/);
    // Each mark links to its run, with a tooltip.
    assert.equal(await page.locator(`#test-chart a[href="#/runs/${bad.id}"] title`).textContent().then((t) => t.startsWith(`run #${bad.id}: failed`)), true);

    // The table lists both runs, newest first, linking to them.
    const rows = page.locator("#test-runs tr");
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.run))), [bad.id, good.id]);
    await page.locator(`#test-runs a[href="#/runs/${good.id}"]`).waitFor();
    // Times: local text, the UTC ISO string on hover.
    const title = await page.locator("#test-runs time").first().getAttribute("title");
    assert.match(title, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);

    // "All runs of this test": the runs table filtered by it.
    await page.getByRole("link", { name: "All runs of this test" }).click();
    await page.locator(`#runs-body tr[data-run="${bad.id}"]`).waitFor();
    await page.locator(`#runs-body tr[data-run="${good.id}"]`).waitFor();
    assert.equal(await page.locator("#filters [name=test]").inputValue(), "hist/flip.sh");
    assert.equal(await page.locator("#runs-body tr").count(), 2, "only this test's runs");
  });

  test("the picker links each test to its page", async () => {
    const page = await open("/#/");
    await page.getByRole("link", { name: "history of pass.sh" }).click();
    await page.waitForURL(/#\/tests\/pass\.sh$/);
    await page.locator("#test-chart[data-ready=true]").waitFor();
  });

  test("selecting a whole directory, or a tag, submits a run of those tests", async () => {
    await upload("pick-dir", "a.sh", "#!/usr/bin/env bash\necho a\n");
    await upload("pick-dir", "b.sh", "#!/usr/bin/env bash\n# eventual: tags=pickme\necho b\n");
    const page = await open("/#/");
    await waitLive(page);
    await page.getByLabel("Username", { exact: true }).fill("dora");
    await page.getByLabel("Environment", { exact: true }).fill("2");
    await page.getByRole("checkbox", { name: "whole directory pick-dir", exact: true }).check();
    await page.getByRole("button", { name: "Start run" }).click();
    await page.waitForURL(/#\/runs\/\d+$/);
    const id = Number(page.url().split("/").pop());
    const run = await api().get(`/api/runs/${id}`);
    assert.deepEqual(run.tests.map((t) => t.path).sort(), ["pick-dir/a.sh", "pick-dir/b.sh"]);

    await page.goto(`${ctx.server.url}/#/`);
    await page.getByLabel("Username", { exact: true }).fill("dora");
    await page.getByLabel("Environment", { exact: true }).fill("2");
    await page.getByRole("checkbox", { name: "tag pickme", exact: true }).check();
    await page.getByRole("button", { name: "Start run" }).click();
    await page.waitForURL((u) => /#\/runs\/\d+$/.test(u.hash) && Number(u.hash.split("/").pop()) !== id);
    const tagged = await api().get(`/api/runs/${page.url().split("/").pop()}`);
    assert.deepEqual(tagged.tests.map((t) => t.path), ["pick-dir/b.sh"]);
  });

  test("\"Rerun failed\" starts a run of only the tests that did not pass", async () => {
    const mixed = await runToEnd(3, ["pass.sh", "fail.sh"]);
    assert.equal(mixed.status, "failed");
    const page = await open(`/#/runs/${mixed.id}`);
    await page.getByRole("button", { name: "Rerun failed" }).click();
    await page.waitForURL((u) => /#\/runs\/\d+$/.test(u.hash) && Number(u.hash.split("/").pop()) !== mixed.id);
    const again = await api().get(`/api/runs/${page.url().split("/").pop()}`);
    assert.deepEqual(again.tests.map((t) => t.path), ["fail.sh"]);
    assert.equal(again.env_id, 3);

    // A run whose tests all passed has no such button.
    const clean = await runToEnd(4, ["pass.sh"]);
    const cleanPage = await open(`/#/runs/${clean.id}`);
    await cleanPage.locator("h1 .badge.passed").waitFor();
    assert.equal(await cleanPage.getByRole("button", { name: "Rerun failed" }).isHidden(), true);
  });

  test("the runs list keeps its filters in the address: a reload, a shared link and Back show the same list", async () => {
    const wait = async (run) => waitUntil(`run ${run.id} to end`, async () => ENDED.has((await api().get(`/api/runs/${run.id}`)).status), 30_000);
    const passing = await api().createRun("ulla", 5, ["pass.sh"]);
    const failing = await api().createRun("ulla", 5, ["fail.sh"]);
    await wait(passing);
    await wait(failing);
    const page = await open("/#/");
    await page.locator(`#runs-body tr[data-run="${passing.id}"]`).waitFor();
    await page.locator("#filters [name=username]").fill("ulla");
    await page.locator("#filters [name=test]").fill("fail.sh");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL((u) => u.hash.startsWith("#/?"));
    const wanted = new URLSearchParams(new URL(page.url()).hash.split("?")[1]);
    assert.deepEqual(Object.fromEntries(wanted), { username: "ulla", test: "fail.sh" });
    // Only ulla's run of fail.sh is listed: here, after a reload, and in a page opened from the link.
    const listed = (p) => p.locator("#runs-body tr").evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.run)));
    const showsOnlyTheFailing = async (p) => {
      await p.locator(`#runs-body tr[data-run="${failing.id}"]`).waitFor();
      assert.deepEqual(await listed(p), [failing.id]);
      assert.equal(await p.locator("#filters [name=test]").inputValue(), "fail.sh");
      assert.equal(await p.locator("#filters [name=username]").inputValue(), "ulla");
    };
    await showsOnlyTheFailing(page);
    await page.reload();
    await showsOnlyTheFailing(page);
    const shared = await open(`/${new URL(page.url()).hash}`);
    await showsOnlyTheFailing(shared);
    // Back: the list as it was before filtering.
    await page.goBack();
    await page.waitForURL((u) => u.hash === "#/");
    await page.locator(`#runs-body tr[data-run="${passing.id}"]`).waitFor();
    assert.equal(await page.locator("#filters [name=test]").inputValue(), "");
  });

  test("a field error of the New run form clears when that field is changed", async () => {
    const page = await open("/#/");
    await page.getByLabel("Environment", { exact: true }).fill("5");
    await page.getByRole("checkbox", { name: "pass.sh", exact: true }).check();
    await page.getByRole("button", { name: "Start run" }).click();
    const userError = page.locator('.field-error[data-for="username"]');
    await waitUntil("the username error", async () => (await userError.textContent()) !== "");
    assert.equal(await page.locator("#nr-user").getAttribute("aria-invalid"), "true");
    await page.getByLabel("Username", { exact: true }).fill("e");
    await page.waitForFunction(() => document.querySelector('.field-error[data-for="username"]').textContent === ""
      && !document.querySelector("#nr-user").hasAttribute("aria-invalid"));
  });
});
