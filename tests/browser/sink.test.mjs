// The sink view: a key's records arrive live, bodies shown exactly as sent (numbers and key order
// kept), and the key list's counts follow.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { launchBrowser, startServer } from "./helpers.mjs";

describe("sink view", () => {
  let server, browser;
  const pages = [];

  before(async () => {
    server = await startServer({ envs: 1 });
    browser = await launchBrowser(server.url);
  });

  after(async () => {
    const errors = pages.flatMap((p) => p.errors);
    for (const page of pages) await page.close();
    await browser?.close();
    await server?.stop();
    assert.deepEqual(errors, [], "uncaught errors in the page");
  });

  test("records arrive live with their bodies exactly as sent and the count follows", async () => {
    // Sent as raw text so that the number keeps its trailing zero on the wire.
    const post = (text) => fetch(`${server.url}/callbacks/order-7`, {
      method: "POST", headers: { "content-type": "application/json" }, body: text,
    });
    await post('{"zeta":1,"amount":10.50}');
    const page = await browser.open("/#/sink/order-7");
    pages.push(page);
    const first = page.locator('.record[data-seq="1"] pre');
    await first.waitFor();
    const text = await first.innerText();
    assert.match(text, /"amount": 10\.50/, text);
    assert.ok(text.indexOf('"zeta"') < text.indexOf('"amount"'), `key order kept: ${text}`);
    await post('{"amount":11.00}');
    await page.locator('.record[data-seq="2"] pre', { hasText: "11.00" }).waitFor();
    await page.locator("#keys a", { hasText: "order-7" }).locator("span", { hasText: /^2$/ }).waitFor();
  });
});
