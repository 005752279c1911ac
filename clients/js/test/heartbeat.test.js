// A server that goes silent (SIGSTOP: the TCP connection stays open, nothing
// arrives) is taken for dead after 2.5 heartbeats, and the client comes back
// when the server does. Uses the quick-status test plugin: 1 s heartbeat.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Server, nextEvent, record, sleep } from "../testing/harness.js";

let server;
before(async () => {
  server = await Server.start({ quickStatus: true });
});
after(async () => {
  await server?.stop();
});

test("a silent server is dropped after 2.5 heartbeats, and rejoined when it wakes", async () => {
  const alice = await server.user("Alice");
  const a = server.client(alice);
  const ready = nextEvent(a, "ready");
  await a.connect();
  const heartbeat = (await ready).heartbeat_interval_ms;
  assert.equal(heartbeat, 1_000, "the quick-status plugin is in force");

  // A quiet but live server: the app-level ping gets a pong, so no drop.
  const states = record(a, "state");
  await sleep(3.5 * heartbeat);
  assert.deepEqual(states, [], "a live connection was dropped");
  assert.ok(a.sent.filter((f) => f.type === "ping").length >= 3, "pings every heartbeat");

  const dropped = nextEvent(a, "state", (s) => s === "disconnected", 10_000);
  const stoppedAt = performance.now();
  await server.signal("SIGSTOP");
  await dropped;
  const silent = performance.now() - stoppedAt;
  // The last pong came at most one heartbeat before the stop.
  assert.ok(
    silent >= 1.4 * heartbeat && silent <= 4 * heartbeat,
    `disconnected ${silent.toFixed(0)} ms after the server went silent`,
  );

  const back = nextEvent(a, "ready", () => true, 20_000);
  await server.signal("SIGCONT");
  await back;
  assert.equal(states.at(-1).payload, "connected");
});
