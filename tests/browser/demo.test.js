// The demo page (`presence serve --demo`) in a real browser: two people,
// each in their own browser context, see each other come online, type, stop,
// switch language and leave.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Server, expectAttribute, expectText, launchBrowser } from "./harness.js";

let server;
let browser;

before(async () => {
  [server, browser] = await Promise.all([Server.start({ demo: true }), launchBrowser()]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A person with their own browser context (cookies, storage, connection) on the demo page. */
async function signIn(user, { viewport = { width: 1100, height: 700 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (err) => console.error(`[${user}] page error:`, err));
  await page.goto(`${server.url}/demo?user=${user}`);
  await expectAttribute(page.getByTestId("connection"), "data-state", "connected");
  return { context, page };
}

test("without ?user= the page offers the three demo users", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.url}/demo`);
  await page.getByTestId("chooser").waitFor({ state: "visible" });
  for (const name of ["alice", "bob", "carol"]) {
    const link = page.getByRole("link", { name: new RegExp(name, "i") });
    assert.match(await link.getAttribute("href"), new RegExp(`\\?user=${name}$`));
  }
  assert.equal(await page.getByTestId("chat").isVisible(), false);
  await context.close();
});

test("alice and bob see each other online, typing, stopping, in Thai, and leaving", async () => {
  const alice = await signIn("alice");
  const bob = await signIn("bob");
  const a = alice.page;
  const b = bob.page;

  // Each sees the other online: the dot and the words.
  await expectText(a.getByTestId("status-bob"), "online");
  await expectAttribute(a.getByTestId("dot-bob"), "data-status", "online");
  await expectAttribute(a.getByTestId("dot-bob"), "aria-label", /online/);
  await expectText(b.getByTestId("status-alice"), "online");
  await expectAttribute(b.getByTestId("dot-alice"), "data-status", "online");
  // Carol never came: offline, and never seen, so no "last seen".
  await expectText(b.getByTestId("status-carol"), "offline");
  await expectAttribute(b.getByTestId("dot-carol"), "data-status", "offline");
  assert.equal(await b.getByTestId("typing").getAttribute("aria-live"), "polite");

  // Alice types: bob reads the server's wording.
  const message = a.getByLabel("Message", { exact: true });
  await message.pressSequentially("hello bob", { delay: 20 });
  await expectText(b.getByTestId("typing"), "Alice is typing…");
  assert.equal(await a.getByTestId("typing").textContent(), "", "the typer does not see herself typing");

  // Enter sends (locally) and stops typing.
  await message.press("Enter");
  await expectText(b.getByTestId("typing"), "");
  assert.equal(await message.inputValue(), "");
  await expectText(a.getByTestId("messages").getByTestId("message-item").first(), /^hello bob/);

  // Typing again, then leaving the field, stops it too.
  await message.pressSequentially("one more", { delay: 20 });
  await expectText(b.getByTestId("typing"), "Alice is typing…");
  await message.blur();
  await expectText(b.getByTestId("typing"), "");

  // Bob switches to Thai: the page and the server's wording follow.
  await b.getByTestId("lang-th").click();
  await expectAttribute(b.getByTestId("lang-th"), "aria-pressed", "true");
  await expectAttribute(b.getByTestId("connection"), "data-state", "connected");
  await expectText(b.getByTestId("status-alice"), "ออนไลน์");
  await expectText(b.getByTestId("status-carol"), "ออฟไลน์");
  await message.pressSequentially("สวัสดี", { delay: 20 });
  await expectText(b.getByTestId("typing"), "Alice กำลังพิมพ์...");
  await message.press("Enter");
  await expectText(b.getByTestId("typing"), "");
  // Bob's reconnect (for the new locale) was within the grace period: alice saw no flap.
  assert.equal(await a.getByTestId("status-bob").textContent(), "online");

  // And back to English.
  await b.getByTestId("lang-en").click();
  await expectAttribute(b.getByTestId("connection"), "data-state", "connected");
  await expectText(b.getByTestId("status-alice"), "online");
  assert.equal(await b.getByLabel("Message", { exact: true }).count(), 1);

  // Alice closes her page: after the 3 s grace bob sees her offline, last seen just now.
  const closedAt = Date.now();
  await alice.context.close();
  await expectText(b.getByTestId("status-alice"), /^last seen (just now|\d+ seconds? ago)$/, { timeout: 8_000 });
  const tookMs = Date.now() - closedAt;
  await expectAttribute(b.getByTestId("dot-alice"), "data-status", "offline");
  await expectAttribute(b.getByTestId("dot-alice"), "aria-label", /offline/);
  assert.ok(tookMs >= 2_500, `alice went offline after ${tookMs} ms, before the 3 s grace period`);

  await bob.context.close();
});

test("two people typing at once are worded together", async () => {
  const [alice, bob, carol] = await Promise.all(["alice", "bob", "carol"].map((u) => signIn(u)));
  const b = bob.page;
  await expectText(b.getByTestId("status-carol"), "online");
  const aliceMessage = alice.page.getByLabel("Message", { exact: true });
  const carolMessage = carol.page.getByLabel("Message", { exact: true });
  await aliceMessage.pressSequentially("hi", { delay: 20 });
  await carolMessage.pressSequentially("hey", { delay: 20 });
  await expectText(b.getByTestId("typing"), "Alice and Carol are typing…");
  await carolMessage.press("Enter");
  await expectText(b.getByTestId("typing"), "Alice is typing…");
  await aliceMessage.press("Enter");
  await expectText(b.getByTestId("typing"), "");
  await Promise.all([alice, bob, carol].map((p) => p.context.close()));
});
