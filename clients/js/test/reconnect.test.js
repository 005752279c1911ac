// Surviving the server: a restart (same port, same SQLite file) and token
// renewal on a long-lived connection.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Server, nextEvent, record, sleep } from "../testing/harness.js";

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server?.stop();
});

test("reconnects after a server restart with a fresh token and catches up on statuses", async () => {
  const alice = await server.user("Alice");
  const bob = await server.user("Bob");
  await server.contacts(alice, [bob]);

  const a = server.client(alice);
  const b = server.client(bob);
  await a.connect();
  const online = nextEvent(a, "status", (s) => s.user_id === bob && s.status === "online");
  await b.connect();
  await online;
  const tokensBefore = a.tokenCalls();
  const states = record(a, "state");

  const dropped = nextEvent(a, "state", (s) => s === "disconnected");
  await server.signal("SIGKILL");
  await dropped;
  // Bob leaves while Alice cannot hear about it.
  b.close();
  assert.equal(a.status(bob).status, "online", "nothing known yet");

  const caughtUp = nextEvent(a, "status", (s) => s.user_id === bob, 20_000);
  const ready = nextEvent(a, "ready", () => true, 20_000);
  await server.spawn();
  await ready;
  const seen = await caughtUp;
  assert.equal(seen.status, "offline");
  assert.equal(seen.is_online, false);
  assert.deepEqual(a.status(bob), seen);

  const p = states.map((s) => s.payload);
  assert.equal(p[0], "disconnected");
  assert.equal(p.at(-1), "connected");
  const attempts = p.filter((s) => s === "connecting").length;
  assert.ok(attempts >= 1);
  assert.equal(a.tokenCalls() - tokensBefore, attempts, "one getToken call per connect attempt");

  // REST agrees with what the client caught up on.
  const [rest] = await a.fetchStatus([bob]);
  assert.equal(rest.status, "offline");
});

test("renews a short-lived token before it expires, and keeps working on a server without renewal", async () => {
  const alice = await server.user("Alice");
  const bob = await server.user("Bob");
  await server.contacts(bob, [alice]);
  let calls = 0;
  let renewed;
  const renewal = new Promise((resolve) => (renewed = resolve));
  // 4 s tokens: renewal is due at 80 % of the lifetime, 3.2 s after `iat`
  // (whole seconds, so 2.2–3.2 s after connecting).
  const a = server.client(alice, {
    getToken: () => {
      if (++calls === 2) renewed(performance.now());
      return server.token(alice, { ttlSecs: 4 });
    },
  });
  const errors = record(a, "error");
  const states = record(a, "state");
  const connectedAt = performance.now();
  await a.connect();

  const at = await renewal;
  assert.ok(at - connectedAt >= 2_000 && at - connectedAt < 4_000, `renewed ${(at - connectedAt).toFixed(0)} ms in`);
  // Past the first token's expiry the connection is still alive and useful.
  await sleep(1_500);
  const b = server.client(bob);
  await b.connect();
  const away = nextEvent(b, "status", (s) => s.user_id === alice && s.status === "away");
  a.setStatus("away");
  await away;

  const auth = a.sent.filter((f) => f.type === "auth");
  assert.ok(auth.length >= 1, "an auth frame was sent");
  assert.equal(auth[0].data.token.split(".").length, 3);
  // An older server answers `bad_request` to `auth`: handled, not surfaced.
  assert.deepEqual(
    errors.map((e) => e.payload),
    [],
  );
  assert.deepEqual(
    states.map((s) => s.payload),
    ["connecting", "connected"],
  );
});
