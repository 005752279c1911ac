// Close codes as a browser sees them: the server's close reply echoes the
// code the page closed with, so `CloseEvent.code` is that code (not 1005,
// "no status received").

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";

import { Server, launchBrowser } from "./harness.js";

let server;
let browser;
let page;
let token;

before(async () => {
  [server, browser] = await Promise.all([Server.start(), launchBrowser()]);
  const id = await server.user("Closer");
  token = server.token(id);
  page = await browser.newPage();
  await page.goto(`${server.url}/healthz`); // any page of the server's origin
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Opens /ws from the page, waits for `ready`, closes with `code`, and returns the page's CloseEvent. */
function closeFromPage(code, reason) {
  return page.evaluate(
    ({ url, code, reason }) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url);
        ws.onmessage = (e) => {
          if (JSON.parse(e.data).type === "ready") ws.close(code, reason);
        };
        ws.onclose = (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean });
        setTimeout(() => reject(new Error("no close within 10 s")), 10_000);
      }),
    { url: `${server.url.replace("http", "ws")}/ws?token=${encodeURIComponent(token)}`, code, reason },
  );
}

test("ws.close(1000) is seen as 1000, cleanly", async () => {
  const ev = await closeFromPage(1000);
  assert.equal(ev.code, 1000);
  assert.equal(ev.wasClean, true);
});

test("ws.close(4000) is seen as 4000, cleanly", async () => {
  const ev = await closeFromPage(4000, "bye " + randomUUID().slice(0, 8));
  assert.equal(ev.code, 4000);
  assert.equal(ev.wasClean, true);
});

test("ws.close(3000) is seen as 3000", async () => {
  const ev = await closeFromPage(3000);
  assert.equal(ev.code, 3000);
});
