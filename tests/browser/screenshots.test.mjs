// Screenshots of every view with realistic data, as a test: each view must reach the state shown
// (rows, log, busy environment, sink records) before it is captured.
//
// They go to a temporary directory unless SCREENSHOT_DIR says where (relative to the repository
// root); the README's pictures are made with
//     SCREENSHOT_DIR=docs/screenshots node --test screenshots.test.mjs     (in tests/browser)

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";

import { launchBrowser, repoRoot, startServer, waitLive, waitUntil } from "./helpers.mjs";

let server, browser, api, outDir, tempOut;

before(async () => {
  server = await startServer({ envs: 12 });
  api = server.api;
  browser = await launchBrowser(server.url);
  if (process.env.SCREENSHOT_DIR) {
    outDir = resolve(repoRoot, process.env.SCREENSHOT_DIR);
  } else {
    outDir = tempOut = await mkdtemp(join(tmpdir(), "eventual-screenshots-"));
  }
  await mkdir(outDir, { recursive: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (tempOut) await rm(tempOut, { recursive: true, force: true });
});

/** Captures the header and the view's content (not the empty page below it). */
async function shoot(page, name) {
  const height = await page.evaluate(() => Math.ceil(document.querySelector("main").getBoundingClientRect().bottom));
  const path = join(outDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true, clip: { x: 0, y: 0, width: 1280, height: Math.max(height, 200) } });
  assert.ok((await stat(path)).size > 10_000, `${path} is suspiciously small`);
}

const finished = (id) => async () => !["queued", "running"].includes((await api.get(`/api/runs/${id}`)).status);

test("screenshots of the runs page, a run page, the environments board, the sink view and a test's page", async () => {
  // A morning on a shared runner: finished runs, one running with another queued behind it.
  const runs = [
    await api.createRun("ann", 1, ["pass.sh", "env.sh"]),
    await api.createRun("ben", 2, ["pass.sh", "fail.sh"]),
    await api.createRun("cy", 4, ["slow_lines.sh", "pass.sh", "fail.sh"]),
    await api.createRun("ann", 1, ["env.sh", "leak.sh"]),
  ];
  for (const run of runs) await waitUntil(`run ${run.id} to finish`, finished(run.id));
  const hang = await api.createRun("dee", 7, ["hang.sh"]);
  const queued = await api.createRun("eve", 7, ["pass.sh", "slow_lines.sh"]);
  await api.post("/api/envs/11/pause");
  const upload = new FormData();
  upload.set("file", new Blob(["#!/usr/bin/env bash\necho checkout ok\n"]), "checkout.sh");
  upload.set("dir", "team-a/smoke");
  const uploaded = await fetch(`${server.url}/api/tests`, { method: "POST", body: upload });
  assert.equal(uploaded.status, 201, await uploaded.text());
  // The sink: job-42's receiver failed the first attempt (a stub answers 503, then 200), and a
  // verifier checks the GitHub signature of every job-* callback (the second one is forged).
  const putJson = async (path, body) => {
    const res = await fetch(server.url + path, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    assert.ok(res.ok, `PUT ${path}: ${res.status} ${await res.text()}`);
  };
  await putJson("/stubs/job-42-retry", { key: "job-42", responses: [{ status: 503 }, { status: 200 }] });
  await putJson("/verifiers/github", { prefix: "job-", scheme: "github", secret: "screenshot-secret" });
  const signed = async (key, body, secret = "screenshot-secret") => {
    const text = JSON.stringify(body);
    const sig = `sha256=${createHmac("sha256", secret).update(text).digest("hex")}`;
    await fetch(`${server.url}/callbacks/${key}`, {
      method: "POST", body: text,
      headers: { "content-type": "application/json", "x-hub-signature-256": sig, "user-agent": "demo-sut/1.4", "x-request-id": key },
    });
  };
  await signed("job-42", { status: "done", request_id: "job-42", total: 10.5, items: [{ sku: "A-1", qty: 2 }] });
  await signed("job-42", { status: "done", request_id: "job-42", total: 10.5, items: [{ sku: "A-1", qty: 2 }] });
  await signed("job-43", { status: "failed", reason: "card declined" }, "a guessed secret");

  const page = await browser.open("/#/");
  await waitLive(page);
  await page.locator(`tr[data-run="${hang.id}"] .badge.running`).waitFor();
  await page.locator(`tr[data-run="${queued.id}"] .badge.queued`).waitFor();
  await page.locator(`tr[data-run="${runs[2].id}"] .badge.failed`).waitFor();
  // The New run form half filled in, scrolled to the uploaded test's group.
  await page.getByLabel("Username", { exact: true }).fill("fay");
  await page.getByLabel("Environment", { exact: true }).fill("3");
  await page.getByRole("checkbox", { name: "slow_lines.sh" }).check();
  await page.getByRole("checkbox", { name: "checkout.sh" }).check();
  await shoot(page, "runs");

  await page.goto(`${server.url}/#/runs/${runs[2].id}`);
  await page.locator("#log div.h", { hasText: `--- run ${runs[2].id} failed` }).waitFor();
  await shoot(page, "run");

  await page.goto(`${server.url}/#/envs`);
  await page.locator('.env[data-env="7"] .badge.busy').waitFor();
  await page.locator('.env[data-env="7"] .queue', { hasText: "queue: 1" }).waitFor();
  await page.locator('.env[data-env="11"] .badge.paused').waitFor();
  await shoot(page, "environments");

  await page.goto(`${server.url}/#/sink/job-42`);
  await page.locator("#records .record").nth(1).waitFor();
  await page.locator("#keys li", { hasText: "job-43" }).waitFor();
  await page.locator('#records .record[data-seq="2"] details.headers summary').click();
  await shoot(page, "sink");

  // A test's page: a history with a failure in it (the test was broken for a while, then fixed).
  const put = async (text) => {
    const f = new FormData();
    f.set("file", new Blob([text]), "checkout.sh");
    f.set("dir", "team-a/smoke");
    f.set("overwrite", "true");
    const res = await fetch(`${server.url}/api/tests`, { method: "POST", body: f });
    assert.ok(res.ok, await res.text());
  };
  const ok = "#!/usr/bin/env bash\necho checkout ok\n";
  for (const text of [ok, "#!/usr/bin/env bash\nsleep 0.3\necho checkout ok\n", "#!/usr/bin/env bash\necho 'payment step failed' >&2\nexit 1\n", ok]) {
    await put(text);
    const r = await api.createRun("ann", 5, ["team-a/smoke/checkout.sh"]);
    await waitUntil(`run ${r.id} to finish`, finished(r.id));
  }
  await page.goto(`${server.url}/#/tests/team-a/smoke/checkout.sh`);
  await page.locator("#test-chart[data-ready=true]").waitFor();
  await page.locator("#test-runs tr").nth(3).waitFor();
  await shoot(page, "test");

  assert.deepEqual(page.errors, [], "uncaught errors in the page");
  await page.close();
  await api.post(`/api/runs/${hang.id}/cancel`);
  await waitUntil(`run ${queued.id} to finish`, finished(queued.id));
});
