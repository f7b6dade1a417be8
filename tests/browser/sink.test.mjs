// The sink view: a key's records arrive live, bodies shown exactly as sent (numbers and key order
// kept), and the key list's counts follow; each attempt shows how a stub answered it and the
// signature verdict of a verifier; headers collapse, the raw body is a link; long keys are cut with
// the whole key as the tooltip; thousands of keys are paged; the prefix filter is in the address.
// Keys, headers and bodies come from the SUT: HTML in them must be shown as text.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { afterEach, describe, test } from "node:test";

import { withServerAndBrowser } from "./helpers.mjs";

describe("sink view", () => {
  const ctx = withServerAndBrowser({ envs: 1 });
  let mine = [];
  const open = async (path) => { const p = await ctx.open(path); mine.push(p); return p; };
  // Every page holds two SSE connections (the UI's and the key's): close them after each test
  // (Chromium's six per host).
  afterEach(async () => { for (const p of mine) await p.close(); mine = []; });
  const send = (key, body, headers = {}) => fetch(`${ctx.server.url}/callbacks/${encodeURIComponent(key)}`, {
    method: "POST", headers: { "content-type": "application/json", ...headers }, body,
  });
  const put = async (path, body) => {
    const res = await fetch(ctx.server.url + path, {
      method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    assert.ok(res.ok, `PUT ${path} answered ${res.status}: ${await res.text()}`);
  };
  const sinkUrl = (key, prefix) =>
    `/#/sink/${encodeURIComponent(key)}${prefix ? `?${new URLSearchParams({ prefix })}` : ""}`;

  test("records arrive live with their bodies exactly as sent and the count follows", async () => {
    // Sent as raw text so that the number keeps its trailing zero on the wire.
    const post = (text) => send("order-7", text);
    await post('{"zeta":1,"amount":10.50}');
    const page = await open("/#/sink/order-7");
    const first = page.locator('.record[data-seq="1"] pre');
    await first.waitFor();
    const text = await first.innerText();
    assert.match(text, /"amount": 10\.50/, text);
    assert.ok(text.indexOf('"zeta"') < text.indexOf('"amount"'), `key order kept: ${text}`);
    await post('{"amount":11.00}');
    await page.locator('.record[data-seq="2"] pre', { hasText: "11.00" }).waitFor();
    await page.locator("#keys a", { hasText: "order-7" }).locator("span", { hasText: /^2$/ }).waitFor();
  });

  test("a key shown before its first callback joins the key list when the callback arrives", async () => {
    await send("late-b", '{"n":1}');
    const page = await open(sinkUrl("late-a", "late-"));
    await page.locator("#keys-count", { hasText: /^1 key$/ }).waitFor();
    await send("late-a", '{"n":2}');
    await page.locator('.record[data-seq="1"]').waitFor();
    await page.locator("#keys-count", { hasText: /^2 keys$/ }).waitFor();
    assert.deepEqual(await page.locator("#keys a[data-key]").evaluateAll((as) => as.map((a) => a.dataset.key)), ["late-a", "late-b"]);
    assert.equal(await page.locator("#keys a.active").getAttribute("data-key"), "late-a");
    await send("late-a", '{"n":3}');
    await page.locator('#keys a[data-key="late-a"] .count', { hasText: /^2$/ }).waitFor();
  });

  test("each attempt shows the status its stub answered; headers collapse; the raw body is a link; HTML is text", async () => {
    const key = "att-<b>k</b>&amp;";
    await put("/stubs/retry", { key, responses: [{ status: 503 }, { status: 200 }, { drop: true }] });
    const body = '{"note":"<img src=x onerror=\\"window.pwned=1\\">","n":1}';
    const headers = { "x-note": "<script>window.pwned=2</script>", "x-attempt": "first" };
    assert.equal((await send(key, body, headers)).status, 503);
    const page = await open(sinkUrl(key));
    await page.locator('.record[data-seq="1"]').waitFor();
    // The second attempt arrives live.
    assert.equal((await send(key, body, { ...headers, "x-attempt": "second" })).status, 200);
    await page.locator('.record[data-seq="2"]').waitFor();
    // The third is dropped: the connection closes without an answer.
    await assert.rejects(send(key, body, headers));
    await page.locator('.record[data-seq="3"]').waitFor();

    const status = (seq) => page.locator(`.record[data-seq="${seq}"] .answer`).getAttribute("data-status");
    assert.equal(await status(1), "503");
    assert.equal(await status(2), "200");
    assert.equal(await page.locator('.record[data-seq="1"] .answer').innerText(), "503");
    assert.equal(await status(3), "dropped");
    assert.deepEqual(await page.locator("#attempts li").allInnerTexts(), ["seq 1 503", "seq 2 200", "seq 3 dropped"]);
    assert.match(await page.locator('.record[data-seq="1"] .answer').getAttribute("title"), /stub retry/);

    // Headers: collapsed until opened, with the keyboard.
    const details = page.locator('.record[data-seq="1"] details.headers');
    const noteRow = details.locator("tr", { has: page.locator("th", { hasText: /^x-note$/ }) });
    assert.equal(await noteRow.isVisible(), false, "headers start collapsed");
    await details.locator("summary").focus();
    await page.keyboard.press("Enter");
    await noteRow.waitFor();
    assert.equal(await noteRow.locator("td").innerText(), headers["x-note"]);
    assert.equal(await page.locator('.record[data-seq="2"] details.headers tr', { hasText: "x-attempt" }).locator("td").textContent(), "second");

    // The raw link gives the exact bytes of that attempt.
    const href = await page.locator('.record[data-seq="1"] a.raw').getAttribute("href");
    const raw = await page.evaluate(async (h) => (await fetch(h)).text(), href);
    assert.equal(raw, body);

    // Everything the SUT chose is text: no element was made from it, no script of it ran.
    assert.equal(await page.locator("#key-title").textContent(), key);
    assert.equal(await page.locator("#keys a[data-key] .key").filter({ hasText: "att-" }).textContent(), key);
    assert.match(await page.locator('.record[data-seq="1"] pre').innerText(), /<img src=x/);
    assert.equal(await page.locator("#main img, #main script, #main b").count(), 0);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
  });

  test("a verifier's verdict shows on each record: a good and a bad signature", async () => {
    const secret = "s3cret-for-the-ui";
    await put("/verifiers/gh", { prefix: "signed-", scheme: "github", secret });
    const body = '{"action":"completed","id":7}';
    const good = `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
    const bad = `sha256=${createHmac("sha256", "another secret").update(body).digest("hex")}`;
    assert.equal((await send("signed-1", body, { "x-hub-signature-256": good })).status, 200);
    assert.equal((await send("signed-1", body, { "x-hub-signature-256": bad })).status, 200);
    const page = await open(sinkUrl("signed-1", "signed-"));
    await page.locator('.record[data-seq="2"]').waitFor();
    const verdict = (seq) => page.locator(`.record[data-seq="${seq}"] .signature`);
    assert.equal(await verdict(1).getAttribute("data-valid"), "true");
    assert.equal(await verdict(1).innerText(), "✓ signature valid");
    assert.match(await verdict(1).getAttribute("title"), /verifier gh \(github\)/);
    assert.equal(await verdict(2).getAttribute("data-valid"), "false");
    assert.match(await verdict(2).innerText(), /^✗ signature invalid: .*mismatch/);
    // No stub answered: 200, unless the verifier rejects (this one does not; the record cannot say).
    assert.equal(await page.locator('.record[data-seq="1"] .answer').innerText(), "200");
    assert.equal(await page.locator('.record[data-seq="2"] .answer').innerText(), "no stub");
    // The secret is never on the page.
    assert.ok(!(await page.content()).includes(secret));
    // A key no verifier covers shows no verdict.
    await send("unsigned-1", body);
    await page.goto(`${ctx.server.url}${sinkUrl("unsigned-1")}`);
    await page.locator('.record[data-seq="1"]').waitFor();
    assert.equal(await page.locator(".record .signature").count(), 0);
  });

  test("a 300-character key does not overflow the page and its tooltip is the whole key", async () => {
    const key = `long-${"x".repeat(140)}-${"y".repeat(154)}`;
    assert.equal(key.length, 300);
    await send(key, '{"ok":true}');
    const page = await open(sinkUrl(key, "long-"));
    await page.locator('.record[data-seq="1"]').waitFor();
    const link = page.locator(`#keys a[data-key="${key}"]`);
    assert.equal(await link.getAttribute("title"), key);
    assert.equal(await page.locator("#key-title").textContent(), key);
    const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
    assert.ok(widths.scroll <= widths.client, `the page scrolls sideways: ${JSON.stringify(widths)}`);
    const panel = await page.locator("#keys").boundingBox();
    const box = await link.boundingBox();
    assert.ok(box.x + box.width <= panel.x + panel.width + 1, `the key's link overflows its list: ${JSON.stringify({ box, panel })}`);
  });

  test("2,500 keys under a prefix are paged; the filter survives selecting a key and a reload", async () => {
    const N = 2500;
    const keys = Array.from({ length: N }, (_, i) => `many-${String(i).padStart(4, "0")}`);
    for (let i = 0; i < N; i += 50) {
      const answers = await Promise.all(keys.slice(i, i + 50).map((k) => send(k, `{"i":"${k}"}`)));
      for (const a of answers) assert.equal(a.status, 200);
    }
    await send("other-1", '{"not":"listed"}');
    const page = await open("/#/sink?prefix=many-");
    assert.equal(await page.locator("#sink-filter input[name=prefix]").inputValue(), "many-");
    const listed = page.locator("#keys a[data-key]");
    await page.locator("#keys-count", { hasText: /^200 keys shown, more/ }).waitFor();
    assert.equal(await listed.count(), 200);
    // "More keys" until the sink has no more; only the prefix's keys, in order, each once.
    const more = page.locator("#keys-more");
    while (await more.isVisible()) {
      const before = await listed.count();
      await more.click();
      await page.waitForFunction((n) => document.querySelectorAll("#keys a[data-key]").length > n || document.querySelector("#keys-more").hidden, before);
    }
    await page.locator("#keys-count", { hasText: /^2500 keys$/ }).waitFor();
    const shown = await page.locator("#keys a[data-key]").evaluateAll((as) => as.map((a) => a.dataset.key));
    assert.deepEqual(shown, keys);

    // Selecting a key far down keeps the prefix and the listed pages.
    const deep = page.locator('#keys a[data-key="many-2400"]');
    await deep.scrollIntoViewIfNeeded();
    await deep.click();
    await page.locator("#key-title", { hasText: "many-2400" }).waitFor();
    await page.locator('.record[data-seq="1"] pre', { hasText: "many-2400" }).waitFor();
    assert.equal(await page.evaluate(() => location.hash), "#/sink/many-2400?prefix=many-");
    assert.equal(await listed.count(), N);
    assert.equal(await page.locator("#sink-filter input[name=prefix]").inputValue(), "many-");
    assert.equal(await page.locator("#keys a.active").getAttribute("data-key"), "many-2400");

    // Live: a new attempt on the selected key shows and its count follows, the pages stay.
    await send("many-2400", '{"again":true}');
    await page.locator('.record[data-seq="2"]').waitFor();
    await deep.locator(".count", { hasText: /^2$/ }).waitFor();
    assert.equal(await listed.count(), N);

    // A reload keeps the key and the prefix.
    await page.reload();
    await page.locator("#key-title", { hasText: "many-2400" }).waitFor();
    await page.locator('.record[data-seq="2"]').waitFor();
    await page.locator("#keys-count", { hasText: /^200 keys shown/ }).waitFor();
    assert.equal(await page.locator("#sink-filter input[name=prefix]").inputValue(), "many-");
    assert.equal(await listed.first().getAttribute("data-key"), "many-0000");

    // A new prefix from the form keeps the selected key and filters the list.
    await page.locator("#sink-filter input[name=prefix]").fill("other-");
    await page.locator("#sink-filter input[name=prefix]").press("Enter");
    await page.locator("#keys-count", { hasText: /^1 key$/ }).waitFor();
    assert.deepEqual(await listed.evaluateAll((as) => as.map((a) => a.dataset.key)), ["other-1"]);
    assert.equal(await page.evaluate(() => location.hash), "#/sink/many-2400?prefix=other-");
  });
});
