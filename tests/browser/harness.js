// Browser test harness: a real `presence serve` process per server (the
// client's test server, `clients/js/testing/server.js`), a real Chromium
// (Debian's, driven by playwright-core), and polling waits with deadlines
// (never fixed sleeps as synchronisation).

import { existsSync } from "node:fs";
import { createServer } from "node:http";

import { chromium } from "playwright-core";

import { sleep } from "../../clients/js/testing/server.js";

export { BINARY, Server, mintToken, randomUUID, sleep } from "../../clients/js/testing/server.js";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";

/** Headless Chromium for this machine (no network, no sandbox as root). */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_BIN)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * A small static HTTP server on its own port (another origin than the
 * presence server): `routes` maps a path to `{type, body}`.
 */
export async function staticServer(routes) {
  const server = createServer((req, res) => {
    const route = routes[new URL(req.url, "http://x").pathname];
    if (!route) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": route.type, "cache-control": "no-store" }).end(route.body);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/**
 * Polls `probe` until `accept(value)` holds, like Playwright's `expect.poll`;
 * throws with the last value seen after `timeout` ms.
 */
export async function until(probe, accept, { timeout = 10_000, interval = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (accept(last)) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${JSON.stringify(last?.message ?? last)}`);
    }
    await sleep(interval);
  }
}

/** Waits until the locator's text matches `expected` (a string for equality, or a RegExp). */
export function expectText(locator, expected, options = {}) {
  const accept = typeof expected === "string" ? (t) => t === expected : (t) => expected.test(t);
  return until(
    async () => (await locator.textContent({ timeout: 1_000 }))?.trim(),
    accept,
    { what: `${locator} to read ${expected}`, ...options },
  );
}

/** Waits until the locator's attribute equals `expected`. */
export function expectAttribute(locator, name, expected, options = {}) {
  const accept = typeof expected === "string" ? (v) => v === expected : (v) => expected.test(v ?? "");
  return until(() => locator.getAttribute(name, { timeout: 1_000 }), accept, {
    what: `${locator} [${name}] to be ${expected}`,
    ...options,
  });
}

