// The sink view: a key's records arrive live, bodies shown exactly as sent (numbers and key order
// kept), and the key list's counts follow.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { withServerAndBrowser } from "./helpers.mjs";

describe("sink view", () => {
  const ctx = withServerAndBrowser({ envs: 1 });

  test("records arrive live with their bodies exactly as sent and the count follows", async () => {
    // Sent as raw text so that the number keeps its trailing zero on the wire.
    const post = (text) => fetch(`${ctx.server.url}/callbacks/order-7`, {
      method: "POST", headers: { "content-type": "application/json" }, body: text,
    });
    await post('{"zeta":1,"amount":10.50}');
    const page = await ctx.open("/#/sink/order-7");
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
