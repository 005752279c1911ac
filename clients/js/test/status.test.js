// Statuses: what a user sees of their contacts, over WebSocket and REST,
// and how the client behaves when it is closed or refused.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { PresenceClient } from "../presence-client.js";
import { Server, mintToken, nextEvent, record, sleep } from "../testing/harness.js";

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server?.stop();
});

/** Alice watches Bob; returns their ids and Alice's connected client. */
async function aliceWatchingBob() {
  const alice = await server.user("Alice");
  const bob = await server.user("Bob");
  await server.contacts(alice, [bob]);
  const a = server.client(alice);
  await a.connect();
  return { alice, bob, a };
}

// Each test has its own users, so they share the server and run side by side.
describe("statuses", { concurrency: true }, () => {
  test("connect() resolves on ready with the contacts' statuses", async () => {
    const alice = await server.user("Alice");
    const bob = await server.user("Bob");
    const carol = await server.user("Carol");
    await server.contacts(alice, [bob, carol]);
    const c = server.client(carol);
    await c.connect();

    const a = server.client(alice);
    const states = record(a, "state");
    const ready = nextEvent(a, "ready");
    const statuses = record(a, "status");
    await a.connect();

    assert.equal((await ready).user_id, alice);
    assert.deepEqual(
      states.map((s) => s.payload),
      ["connecting", "connected"],
    );
    assert.deepEqual(a.status(bob), {
      user_id: bob,
      status: "offline",
      is_online: false,
      last_seen: null,
      show_last_seen: true,
    });
    assert.deepEqual(a.status(carol), {
      user_id: carol,
      status: "online",
      is_online: true,
      last_seen: null,
      show_last_seen: true,
    });
    // Users seen for the first time are announced too.
    assert.deepEqual(statuses.map((s) => s.payload.user_id).sort(), [bob, carol].sort());
    assert.equal(a.status(randomUUID()), undefined);
  });

  test("a contact coming online, then offline after the grace period", async () => {
    const { bob, a } = await aliceWatchingBob();

    const online = nextEvent(a, "status", (s) => s.user_id === bob && s.status === "online");
    const b = server.client(bob);
    await b.connect();
    assert.deepEqual(await online, {
      user_id: bob,
      status: "online",
      is_online: true,
      last_seen: null,
      show_last_seen: true,
    });
    assert.equal(a.status(bob).status, "online");

    const offline = nextEvent(a, "status", (s) => s.user_id === bob && s.status === "offline");
    const left = performance.now();
    b.close();
    const seen = await offline;
    // A quick reconnect must not flap: offline only after the 3 s grace.
    assert.ok(performance.now() - left >= 2_500, "offline before the grace period ran out");
    assert.equal(seen.is_online, false);
    assert.match(seen.last_seen, ISO_UTC);
    assert.deepEqual(a.status(bob), seen);
  });

  test("setStatus('away') and back, as a watcher sees it", async () => {
    const { bob, a } = await aliceWatchingBob();
    const b = server.client(bob);
    const online = nextEvent(a, "status", (s) => s.user_id === bob && s.status === "online");
    await b.connect();
    await online;

    const away = nextEvent(a, "status", (s) => s.user_id === bob && s.status === "away");
    b.setStatus("away");
    const seen = await away;
    assert.equal(seen.is_online, false);
    assert.match(seen.last_seen, ISO_UTC, "away shows since when");

    const back = nextEvent(a, "status", (s) => s.user_id === bob && s.status === "online");
    b.setStatus("online");
    assert.equal((await back).last_seen, null);
    assert.equal(b.sent.filter((f) => f.type === "set_status").length, 2);
    assert.throws(() => b.setStatus("offline"), TypeError);
  });

  test("fetchStatus over REST, and its errors", async () => {
    const { alice, bob, a } = await aliceWatchingBob();
    const list = await a.fetchStatus([bob, randomUUID(), alice, bob]);
    assert.deepEqual(
      list.map((s) => [s.user_id, s.status]),
      [
        [bob, "offline"],
        [alice, "online"],
      ],
      "request order, unknown ids left out, duplicates once",
    );
    assert.deepEqual(await a.fetchStatus([]), []);

    const tooMany = Array.from({ length: 101 }, () => randomUUID());
    await assert.rejects(a.fetchStatus(tooMany), (err) => {
      assert.ok(err instanceof Error);
      assert.equal(err.code, "too_many_ids");
      assert.equal(err.status, 400);
      return true;
    });

    const forged = server.client(alice, { getToken: () => mintToken("x".repeat(40), alice) });
    await assert.rejects(forged.fetchStatus([bob]), { code: "unauthorized", status: 401 });

    const unreachable = new PresenceClient({ url: "http://127.0.0.1:1", getToken: () => server.token(alice) });
    await assert.rejects(unreachable.fetchStatus([bob]), { code: "network_error", status: 0 });
  });

  test("close() emits closed and never reconnects", async () => {
    const { bob, a } = await aliceWatchingBob();
    const b = server.client(bob);
    const online = nextEvent(a, "status", (s) => s.user_id === bob && s.status === "online");
    await b.connect();
    await online;

    const states = record(b, "state");
    const offline = nextEvent(a, "status", (s) => s.user_id === bob && s.status === "offline");
    b.close();
    // Had Bob reconnected within the grace period, Alice would see no offline.
    await offline;
    assert.deepEqual(
      states.map((s) => s.payload),
      ["closed"],
    );
    assert.equal(b.tokenCalls(), 1);
    b.keystroke(randomUUID());
    assert.equal(b.sent.filter((f) => f.type.startsWith("typing")).length, 0, "nothing sent once closed");
  });

  test("close() before connect() resolves rejects it", async () => {
    const alice = await server.user("Alice");
    let release;
    const slowToken = new Promise((resolve) => (release = resolve));
    const a = server.client(alice, { getToken: () => slowToken });
    const states = record(a, "state");
    const connecting = a.connect();
    a.close();
    release(server.token(alice));
    await assert.rejects(connecting, /closed/);
    await sleep(700); // longer than the first reconnect delay could be
    assert.deepEqual(
      states.map((s) => s.payload),
      ["connecting", "closed"],
    );
    assert.equal(a.sent.length, 0);
  });

  test("connect() rejects when the token is refused, and does not retry", async () => {
    const alice = await server.user("Alice");
    let calls = 0;
    const a = server.client(alice, {
      getToken: () => {
        calls++;
        return mintToken("not-the-server-secret-but-long-enough-40", alice);
      },
    });
    const states = record(a, "state");
    await assert.rejects(a.connect(), Error);
    await sleep(700);
    assert.deepEqual(
      states.map((s) => s.payload),
      ["connecting", "disconnected"],
    );
    assert.equal(calls, 1);
  });
});
