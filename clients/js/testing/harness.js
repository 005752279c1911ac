// Test harness: a real `presence` process per test file, users registered
// through the admin API, tokens minted with the server's secret, and waits on
// client events (never fixed sleeps as synchronisation).

import { spawn } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

import { PresenceClient } from "../presence-client.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const BINARY = process.env.PRESENCE_BIN ?? join(REPO, "target/release/presence");

/** The quick-status test plugin (heartbeat 1 s, grace 0.5 s), built by the Rust test build. */
function quickStatusWasm() {
  const candidates = [
    process.env.PRESENCE_TEST_QUICK_STATUS_WASM,
    join(REPO, "target/wasm-plugins/wasm32-wasip2/release/presence_quick_status_policy.wasm"),
    join(REPO, "target/wasm32-wasip2/release/presence_quick_status_policy.wasm"),
  ];
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) {
    throw new Error(
      "quick-status plugin not built: run `cargo build --release --target wasm32-wasip2 -p presence-quick-status-policy` in the repository",
    );
  }
  return found;
}

async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One `presence serve` process with its own port, SQLite file and secrets. */
export class Server {
  static async start({ quickStatus = false } = {}) {
    if (!existsSync(BINARY)) {
      throw new Error(`${BINARY} not found: run \`cargo build --release -p presence\` in the repository`);
    }
    const dir = mkdtempSync(join(tmpdir(), "presence-js-"));
    const env = {
      ...process.env,
      PRESENCE_DATABASE_URL: `sqlite://${join(dir, "presence.db")}`,
      PRESENCE_DATA_DIR: join(dir, "data"),
      PRESENCE_JWT_SECRET: randomBytes(32).toString("hex"),
      PRESENCE_ADMIN_KEY: randomBytes(16).toString("hex"),
      RUST_LOG: "warn",
    };
    if (quickStatus) {
      const plugins = join(dir, "plugins");
      mkdirSync(plugins);
      copyFileSync(quickStatusWasm(), join(plugins, "status.wasm"));
      env.PRESENCE_PLUGIN_DIR = plugins;
    }
    const server = new Server(dir, env, await freePort());
    await server.spawn();
    return server;
  }

  constructor(dir, env, port) {
    this.dir = dir;
    this.env = env;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.clients = [];
    this.proc = null;
    this.log = "";
  }

  /** Starts the process (again, on the same port and database) and waits for /healthz. */
  async spawn() {
    const proc = spawn(BINARY, ["serve", "--listen", `127.0.0.1:${this.port}`], {
      env: this.env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    proc.stderr.on("data", (chunk) => {
      this.log = (this.log + chunk).slice(-20_000);
    });
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once("exit", resolve));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`presence exited at start (${proc.exitCode ?? proc.signalCode}):\n${this.log}`);
      }
      try {
        const res = await fetch(`${this.url}/healthz`);
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(50);
    }
    throw new Error(`presence did not become healthy on ${this.url}:\n${this.log}`);
  }

  /** Sends a signal; for SIGKILL/SIGTERM waits for the process to be gone. */
  async signal(sig) {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(sig);
    if (sig === "SIGKILL" || sig === "SIGTERM") await this.exited;
  }

  /** Closes every client made by `client()`, stops the process, removes its files. */
  async stop() {
    for (const c of this.clients) c.close();
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGCONT"); // in case a test left it stopped
      await this.signal("SIGKILL");
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  token(userId, { name, ttlSecs = 3600 } = {}) {
    return mintToken(this.env.PRESENCE_JWT_SECRET, userId, { name, ttlSecs });
  }

  async admin(method, path, body) {
    const res = await fetch(`${this.url}/api/v1/admin${path}`, {
      method,
      headers: { Authorization: `Bearer ${this.env.PRESENCE_ADMIN_KEY}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`admin ${method} ${path}: ${res.status} ${await res.text()}`);
  }

  /** Registers a user profile; returns its id. */
  async user(name) {
    const id = randomUUID();
    await this.admin("PUT", `/users/${id}`, { username: name.toLowerCase(), display_name: name });
    return id;
  }

  async members(conversationId, userIds) {
    await this.admin("PUT", `/conversations/${conversationId}/members`, { user_ids: userIds });
  }

  /** `userId` watches `contactIds`. */
  async contacts(userId, contactIds) {
    await this.admin("PUT", `/users/${userId}/contacts`, { user_ids: contactIds });
  }

  /**
   * A PresenceClient for `userId` on this server, closed by `stop()`.
   * `tokenCalls()` counts getToken calls; `sent` holds the frames it sent.
   */
  client(userId, { name, locale, ttlSecs, getToken } = {}) {
    const sent = [];
    class RecordingWebSocket extends WebSocket {
      send(data, ...rest) {
        sent.push(JSON.parse(data));
        return super.send(data, ...rest);
      }
    }
    let calls = 0;
    const client = new PresenceClient({
      url: this.url,
      locale,
      WebSocket: RecordingWebSocket,
      getToken:
        getToken ??
        (async () => {
          calls++;
          return this.token(userId, { name, ttlSecs });
        }),
    });
    client.sent = sent;
    client.tokenCalls = () => calls;
    this.clients.push(client);
    return client;
  }
}

/** An HS256 JWT as the chat backend would issue it. */
export function mintToken(secret, sub, { name, ttlSecs = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, name, iat: now, exp: now + ttlSecs })}`;
  const sig = createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${sig}`;
}

/**
 * Resolves with the next `event` payload matching `predicate`; rejects after
 * `timeoutMs`. Set it up before causing the event.
 */
export function nextEvent(client, event, predicate = () => true, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const handler = (payload) => {
      if (!predicate(payload)) return;
      clearTimeout(timer);
      client.off(event, handler);
      resolve(payload);
    };
    const timer = setTimeout(() => {
      client.off(event, handler);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${event}`));
    }, timeoutMs);
    client.on(event, handler);
  });
}

/** Every payload of `event` the client emits from now on. */
export function record(client, event) {
  const seen = [];
  client.on(event, (payload) => seen.push({ at: performance.now(), payload }));
  return seen;
}

export { sleep };
