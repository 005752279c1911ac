// Regenerates docs/demo.png: the demo page as alice while bob is online and
// typing. Usage: PRESENCE_BIN=… node screenshot.js [out.png] [en|th]

import { fileURLToPath } from "node:url";

import { Server, expectAttribute, expectText, launchBrowser } from "./harness.js";

const out = process.argv[2] ?? fileURLToPath(new URL("../../docs/demo.png", import.meta.url));
const lang = process.argv[3] === "th" ? "th" : "en";
const viewport = { width: 1100, height: 700 };

const server = await Server.start({ demo: true });
const browser = await launchBrowser();
try {
  const alice = await (await browser.newContext({ viewport, deviceScaleFactor: 1 })).newPage();
  const bob = await (await browser.newContext({ viewport })).newPage();
  await alice.goto(`${server.url}/demo?user=alice${lang === "th" ? "&lang=th" : ""}`);
  await bob.goto(`${server.url}/demo?user=bob`);
  await expectText(alice.getByTestId("status-bob"), lang === "th" ? "ออนไลน์" : "online");

  // A little conversation on alice's side, then bob types.
  const message = alice.getByTestId("message");
  for (const line of ["Hi Bob! Are you around?", "The build is green again"]) {
    await message.fill(line);
    await message.press("Enter");
  }
  await message.blur();
  await bob.getByTestId("message").pressSequentially("Yes, just a sec", { delay: 15 });
  await expectText(alice.getByTestId("typing"), /Bob/);
  await expectAttribute(alice.getByTestId("connection"), "data-state", "connected");
  await alice.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
