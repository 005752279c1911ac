// Typing indicators: what the other members of a conversation see of
// keystroke() and stopTyping(), and what typing() says.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { Server, nextEvent, record, sleep } from "../testing/harness.js";

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server?.stop();
});

/** A conversation with the named members, each with a connected client. */
async function conversation(names, { locales = {} } = {}) {
  const conv = randomUUID();
  const users = {};
  for (const name of names) users[name] = await server.user(name);
  await server.members(conv, Object.values(users));
  const clients = {};
  for (const name of names) {
    clients[name] = server.client(users[name], { locale: locales[name] });
    await clients[name].connect();
  }
  return { conv, users, clients };
}

const typingFrames = (client, conv) =>
  client.sent.filter((f) => f.type.startsWith("typing_") && f.data.conversation_id === conv);

describe("typing", { concurrency: true }, () => {
  test("keystrokes within a second send one typing_start; 3 s of silence stops it", async () => {
    const { conv, users, clients } = await conversation(["Alice", "Bob"]);
    const { Alice: a, Bob: b } = clients;
    const seen = record(b, "typing");
    const started = nextEvent(b, "typing", (t) => t.conversation_id === conv && t.is_typing);

    // A burst of typing well inside one second.
    const first = performance.now();
    let lastKey = first;
    while (performance.now() - first < 500) {
      a.keystroke(conv);
      lastKey = performance.now();
      await sleep(50);
    }
    const start = await started;
    assert.deepEqual(start, {
      conversation_id: conv,
      user_ids: [users.Alice],
      text: "Alice is typing…",
      user_id: users.Alice,
      is_typing: true,
    });
    assert.deepEqual(b.typing(conv), { user_ids: [users.Alice], text: "Alice is typing…" });

    const stop = await nextEvent(b, "typing", (t) => t.conversation_id === conv && !t.is_typing);
    const quiet = performance.now() - lastKey;
    assert.ok(quiet >= 2_900, `typing_stop came ${quiet.toFixed(0)} ms after the last keystroke`);
    assert.ok(quiet < 4_900, "the stop came from the client, not from the server's 5 s lease");
    assert.deepEqual(stop.user_ids, []);
    assert.equal(stop.text, "");
    assert.deepEqual(b.typing(conv), { user_ids: [], text: "" });

    assert.deepEqual(
      typingFrames(a, conv).map((f) => f.type),
      ["typing_start", "typing_stop"],
    );
    // The server takes the user from the token: frames carry no user id.
    for (const f of typingFrames(a, conv)) assert.deepEqual(Object.keys(f.data), ["conversation_id"]);
    assert.deepEqual(
      seen.filter((s) => s.payload.conversation_id === conv).map((s) => s.payload.is_typing),
      [true, false],
    );
    // The sender never hears its own typing.
    assert.deepEqual(a.typing(conv), { user_ids: [], text: "" });
  });

  test("stopTyping() stops at once, and only once", async () => {
    const { conv, users, clients } = await conversation(["Alice", "Bob"]);
    const { Alice: a, Bob: b } = clients;

    const started = nextEvent(b, "typing", (t) => t.conversation_id === conv && t.is_typing);
    a.keystroke(conv);
    await started;

    const stopped = nextEvent(b, "typing", (t) => t.conversation_id === conv && !t.is_typing);
    const at = performance.now();
    a.stopTyping(conv);
    a.stopTyping(conv);
    const stop = await stopped;
    // The server may hold it for its one-second rate window, no longer.
    assert.ok(performance.now() - at < 2_000, "stop arrived late");
    assert.equal(stop.user_id, users.Alice);
    assert.deepEqual(
      typingFrames(a, conv).map((f) => f.type),
      ["typing_start", "typing_stop"],
    );

    // A fresh keystroke after sending starts again straight away.
    const again = nextEvent(b, "typing", (t) => t.conversation_id === conv && t.is_typing);
    a.keystroke(conv);
    await again;
    a.stopTyping(conv);
  });

  test("keystrokes while disconnected send nothing", async () => {
    const alice = await server.user("Alice");
    const conv = randomUUID();
    await server.members(conv, [alice]);
    const a = server.client(alice);
    a.keystroke(conv);
    a.stopTyping(conv);
    await a.connect();
    assert.equal(typingFrames(a, conv).length, 0, "nothing queued from before the connection");
  });

  test("group wording in the recipient's locale, and the ready snapshot", async () => {
    const { conv, users, clients } = await conversation(["Alice", "Bob", "Carol"], {
      locales: { Carol: "th" },
    });
    const { Alice: a, Bob: b, Carol: c } = clients;

    const one = nextEvent(c, "typing", (t) => t.conversation_id === conv && t.user_ids.length === 1);
    a.keystroke(conv);
    await one;
    const two = nextEvent(c, "typing", (t) => t.conversation_id === conv && t.user_ids.length === 2);
    b.keystroke(conv);
    const both = await two;
    assert.equal(both.text, "Alice และ Bob กำลังพิมพ์...");
    assert.deepEqual(c.typing(conv).user_ids, [users.Alice, users.Bob]);

    // A member connecting now learns who types from `ready`.
    const dave = await server.user("Dave");
    await server.members(conv, [...Object.values(users), dave]);
    const d = server.client(dave);
    const snapshot = nextEvent(d, "typing", (t) => t.conversation_id === conv);
    await d.connect();
    assert.deepEqual(new Set(d.typing(conv).user_ids), new Set([users.Alice, users.Bob]));
    const t = await snapshot;
    assert.equal(t.user_id, null);
    assert.equal(t.is_typing, true);

    a.stopTyping(conv);
    b.stopTyping(conv);
  });
});
