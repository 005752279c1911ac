// A chat app on another origin uses presence from the browser: the SDK
// import, the WebSocket and the REST API work when the app's origin is in
// PRESENCE_CORS_ORIGINS and fail when it is not; admin routes never answer
// a browser page of another origin.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { after, before, test } from "node:test";

import { Server, launchBrowser, staticServer } from "./harness.js";

// The app page: imports the SDK from the presence server (falling back to a
// copy served by the app itself, so the client can be tried either way),
// connects, and calls the REST API with the SDK and with a raw fetch.
const APP_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>chat app</title></head>
<body><p>a chat app on another origin</p>
<script type="module">
const q = new URL(location.href).searchParams;
const server = q.get("server"), token = q.get("token"), peer = q.get("peer"), adminKey = q.get("admin");
const result = {};
const errorOf = (e) => ({ name: e?.name, message: String(e?.message ?? e), code: e?.code });

let PresenceClient;
try {
  ({ PresenceClient } = await import(server + "/sdk/presence-client.js"));
  result.import = "ok";
} catch (e) {
  result.import = errorOf(e);
  ({ PresenceClient } = await import("/presence-client.js"));
}

const client = new PresenceClient({ url: server, getToken: () => token });
try {
  await client.connect();
  result.ready = client.status(peer) ?? "no status";
} catch (e) {
  result.ready = errorOf(e);
}
client.close();

try {
  result.fetchStatus = await client.fetchStatus([peer]);
} catch (e) {
  result.fetchStatus = errorOf(e);
}

async function raw(path, headers) {
  try {
    const res = await fetch(server + path, { headers });
    return { status: res.status, body: await res.json() };
  } catch (e) {
    return errorOf(e);
  }
}
result.rest = await raw("/api/v1/users/" + peer + "/status", { Authorization: "Bearer " + token });
result.admin = await raw("/api/v1/admin/plugins", { Authorization: "Bearer " + adminKey });
result.metrics = await raw("/metrics", { Authorization: "Bearer " + adminKey });

// A WebSocket without the SDK: open, or refused before it opens.
result.websocket = await new Promise((resolve) => {
  const ws = new WebSocket(server.replace(/^http/, "ws") + "/ws?token=" + encodeURIComponent(token));
  ws.onmessage = (e) => { resolve({ opened: true, first: JSON.parse(e.data).type }); ws.close(1000); };
  ws.onclose = (e) => resolve({ opened: false, code: e.code });
});

window.result = result;
document.body.dataset.done = "1";
</script></body></html>`;

let browser;
let app;

before(async () => {
  const sdk = readFileSync(new URL("../../clients/js/presence-client.js", import.meta.url), "utf8");
  [browser, app] = await Promise.all([
    launchBrowser(),
    staticServer({
      "/app.html": { type: "text/html; charset=utf-8", body: APP_HTML },
      "/presence-client.js": { type: "text/javascript; charset=utf-8", body: sdk },
    }),
  ]);
});

after(async () => {
  await browser?.close();
  await app?.close();
});

/** A presence server with two users who watch each other. */
async function serverWithUsers(corsOrigins) {
  const server = await Server.start({ corsOrigins });
  const [ann, ben] = await Promise.all([server.user("Ann"), server.user("Ben")]);
  await server.admin("PUT", `/users/${ann}/contacts`, { user_ids: [ben] });
  await server.admin("PUT", `/users/${ben}/contacts`, { user_ids: [ann] });
  return { server, ann, ben };
}

/** Opens the app page as `userId` against `server` and returns what it saw. */
async function runApp(server, userId, peerId) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  const url = new URL(`${app.origin}/app.html`);
  url.searchParams.set("server", server.url);
  url.searchParams.set("token", server.token(userId));
  url.searchParams.set("peer", peerId);
  url.searchParams.set("admin", server.adminKey);
  await page.goto(url.href);
  await page.locator("body[data-done]").waitFor({ state: "attached", timeout: 20_000 });
  const result = await page.evaluate(() => window.result);
  await context.close();
  return { result, consoleErrors };
}

/** The HTTP status of a WebSocket upgrade request from `origin` (101 when accepted). */
function upgradeStatus(server, token, origin) {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}/ws?token=${encodeURIComponent(token)}`, {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        Origin: origin,
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on("error", reject);
    req.end();
  });
}

const corsFailure = (r) => r?.name === "TypeError" && /fetch/i.test(r.message);

test("an allowed origin imports the SDK, connects and reads statuses; admin routes stay closed to it", async () => {
  const { server, ann, ben } = await serverWithUsers(`https://chat.example.com,${app.origin}`);
  try {
    const { result } = await runApp(server, ann, ben);
    assert.equal(result.import, "ok");
    assert.equal(result.ready.user_id, ben, `connect() resolved with ben's status: ${JSON.stringify(result.ready)}`);
    assert.equal(result.ready.status, "offline");
    assert.ok(
      Array.isArray(result.fetchStatus),
      `fetchStatus must work (a preflight answered without CORS headers?): ${JSON.stringify(result.fetchStatus)}`,
    );
    assert.equal(result.fetchStatus.length, 1);
    assert.equal(result.fetchStatus[0].user_id, ben);
    assert.equal(result.rest.status, 200);
    assert.equal(result.rest.body.success, true);
    assert.equal(result.rest.body.data.user_id, ben);
    assert.equal(result.rest.body.data.status, "offline");
    assert.deepEqual(result.websocket, { opened: true, first: "ready" });
    assert.ok(corsFailure(result.admin), `admin route must fail CORS: ${JSON.stringify(result.admin)}`);
    assert.ok(corsFailure(result.metrics), `/metrics must fail CORS: ${JSON.stringify(result.metrics)}`);
  } finally {
    await server.stop();
  }
});

test("an origin not allowed can neither import the SDK, nor connect, nor call the REST API", async () => {
  const { server, ann, ben } = await serverWithUsers("https://chat.example.com");
  try {
    const { result } = await runApp(server, ann, ben);
    assert.equal(result.import?.name, "TypeError", `SDK import must fail: ${JSON.stringify(result.import)}`);
    assert.match(result.ready?.message ?? "", /connection failed before ready/, JSON.stringify(result.ready));
    assert.equal(result.fetchStatus?.code, "network_error", JSON.stringify(result.fetchStatus));
    assert.ok(corsFailure(result.rest), `REST must fail CORS: ${JSON.stringify(result.rest)}`);
    assert.ok(corsFailure(result.admin), `admin route must fail CORS: ${JSON.stringify(result.admin)}`);
    assert.equal(result.websocket.opened, false, JSON.stringify(result.websocket));
    assert.equal(result.websocket.code, 1006);
    // What the browser cannot show: the upgrade was refused with 403.
    assert.equal(await upgradeStatus(server, server.token(ann), app.origin), 403);
  } finally {
    await server.stop();
  }
});
