// A real `presence serve` process for tests: its own port, SQLite file and
// secrets; users registered through the admin API; tokens minted with its
// secret. No dependencies, so the browser tests (`tests/browser`) share it.

import { spawn } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
export const BINARY = process.env.PRESENCE_BIN ?? join(REPO, "target/release/presence");

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

export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** One `presence serve` process with its own port, SQLite file and secrets. */
export class Server {
  /**
   * @param {object} [options]
   * @param {boolean} [options.quickStatus] the quick-status plugin (second-scale heartbeat and grace)
   * @param {boolean} [options.demo] `serve --demo`
   * @param {string} [options.corsOrigins] PRESENCE_CORS_ORIGINS
   */
  static async start({ quickStatus = false, demo = false, corsOrigins } = {}) {
    if (!existsSync(BINARY)) {
      throw new Error(`${BINARY} not found: run \`cargo build --release -p presence\` in the repository, or set PRESENCE_BIN`);
    }
    const dir = mkdtempSync(join(tmpdir(), "presence-test-"));
    const env = {
      ...process.env,
      PRESENCE_DATABASE_URL: `sqlite://${join(dir, "presence.db")}`,
      PRESENCE_DATA_DIR: join(dir, "data"),
      PRESENCE_JWT_SECRET: randomBytes(32).toString("hex"),
      PRESENCE_ADMIN_KEY: randomBytes(16).toString("hex"),
      RUST_LOG: "warn",
    };
    delete env.PRESENCE_CORS_ORIGINS;
    if (corsOrigins !== undefined) env.PRESENCE_CORS_ORIGINS = corsOrigins;
    if (quickStatus) {
      const plugins = join(dir, "plugins");
      mkdirSync(plugins);
      copyFileSync(quickStatusWasm(), join(plugins, "status.wasm"));
      env.PRESENCE_PLUGIN_DIR = plugins;
    }
    const server = new this(dir, env, await freePort(), demo ? ["--demo"] : []);
    await server.spawn();
    return server;
  }

  constructor(dir, env, port, flags = []) {
    this.dir = dir;
    this.env = env;
    this.port = port;
    this.flags = flags;
    this.url = `http://127.0.0.1:${port}`;
    this.adminKey = env.PRESENCE_ADMIN_KEY;
    this.proc = null;
    this.log = "";
  }

  /** Starts the process (again, on the same port and database) and waits for /healthz. */
  async spawn() {
    const args = ["serve", "--listen", `127.0.0.1:${this.port}`, ...this.flags];
    const proc = spawn(BINARY, args, { env: this.env, stdio: ["ignore", "ignore", "pipe"] });
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
      await sleep(50); // polling interval, not synchronisation
    }
    throw new Error(`presence did not become healthy on ${this.url}:\n${this.log}`);
  }

  /** Sends a signal; for SIGKILL/SIGTERM waits for the process to be gone. */
  async signal(sig) {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(sig);
    if (sig === "SIGKILL" || sig === "SIGTERM") await this.exited;
  }

  /** Stops the process and removes its files. */
  async stop() {
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
      headers: { Authorization: `Bearer ${this.adminKey}`, "content-type": "application/json" },
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
}

/** An HS256 JWT as the chat backend would issue it. */
export function mintToken(secret, sub, { name, ttlSecs = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const part = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const unsigned = `${part({ alg: "HS256", typ: "JWT" })}.${part({ sub, name, iat: now, exp: now + ttlSecs })}`;
  const sig = createHmac("sha256", secret).update(unsigned).digest("base64url");
  return `${unsigned}.${sig}`;
}

export { randomUUID };
