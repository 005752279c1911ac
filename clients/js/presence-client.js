// @presence/client — the browser and Node client of the presence service.
//
// One ES module, no dependencies, no build step: the server serves this very
// file at /sdk/presence-client.js. The wire protocol is the server's README
// ("Protocol"); the TypeScript declarations are in presence-client.d.ts.

const EVENTS = ["ready", "status", "typing", "state", "error"];

// Reconnect backoff: random(0, min(cap, base × 2^attempt)) — "full jitter",
// so a server restart is not met by every client at the same instant.
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 20_000;

// Outgoing typing: the server's lease (5 s by default) outlives one renewal
// per second, and 3 s without a keystroke reads as "stopped typing".
const TYPING_RENEW_MS = 1_000;
const TYPING_IDLE_MS = 3_000;

// The server drops a peer silent for 2.5 heartbeats; we judge it the same way.
const SILENCE_HEARTBEATS = 2.5;
const DEFAULT_HEARTBEAT_MS = 20_000;
// A server that accepts TCP but never answers the upgrade (hung, stopped)
// would otherwise keep a browser socket "connecting" for minutes.
const HANDSHAKE_TIMEOUT_MS = 15_000;

// Token renewal: ~60 s before expiry, or at 80 % of the lifetime for short
// tokens; never more often than once a second.
const RENEW_LEAD_MS = 60_000;
const RENEW_AT_LIFETIME = 0.8;
const RENEW_MIN_DELAY_MS = 1_000;
const RENEW_RETRY_MS = 10_000;

const CLOSE_TOKEN_EXPIRED = 4001;
// Our own close codes (browsers only let clients use 1000 and 3000–4999).
const CLOSE_NORMAL = 1000;
const CLOSE_DEAD = 4000;

// setTimeout overflows past 2^31 - 1 ms (~24.8 days) and fires at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

const OPEN = 1; // WebSocket.OPEN, without relying on the implementation's statics

/**
 * A connection to a presence server: statuses of the users you watch, who is
 * typing where, and your own typing and away state.
 */
export class PresenceClient {
  #httpBase;
  #wsBase;
  #getToken;
  #locale;
  #WebSocket;
  #fetch;

  #handlers = new Map(EVENTS.map((e) => [e, new Set()]));
  #statuses = new Map(); // user_id → status object
  #typers = new Map(); // conversation_id → { user_ids, text }, only while someone types
  #outgoing = new Map(); // conversation_id → { sentAt, timer } while we are typing there

  #state = null;
  #ws = null; // the current socket, opening or open
  #token = null; // the token the current socket is authenticated with
  #ready = false; // the current socket has received `ready`
  #generation = 0; // bumped by close() and every open, so stale awaits give up
  #stopped = true; // no connect() in force: nothing may reconnect
  #everReady = false; // this connect() has been ready once, so drops reconnect
  #attempt = 0;
  #waiters = []; // pending connect() promises
  #manualStatus = "online";
  #lastSocketError = "";

  #heartbeatMs = DEFAULT_HEARTBEAT_MS;
  #lastHeard = 0;
  #reconnectTimer = null;
  #handshakeTimer = null;
  #pingTimer = null;
  #silenceTimer = null;
  #renewTimer = null;
  #renewable = true;
  #pendingToken = null;

  /**
   * @param {object} options
   * @param {string} options.url Base URL of the server (http:// or https://, optionally with a path prefix).
   * @param {() => string | Promise<string>} options.getToken Returns a current JWT; called before every connect, renewal and REST call.
   * @param {string} [options.locale] Locale for typing texts (`th`, `en`, …); the server defaults to `en`.
   * @param {typeof WebSocket} [options.WebSocket] WebSocket constructor; defaults to `globalThis.WebSocket` (pass `ws` in Node 20).
   * @param {typeof fetch} [options.fetch] fetch implementation; defaults to `globalThis.fetch`.
   */
  constructor({ url, getToken, locale, WebSocket, fetch } = {}) {
    if (typeof getToken !== "function") throw new TypeError("PresenceClient: getToken must be a function");
    const base = new URL(url, globalThis.location?.href);
    const secure = base.protocol === "https:" || base.protocol === "wss:";
    const path = base.pathname.replace(/\/+$/, "");
    this.#httpBase = `${secure ? "https:" : "http:"}//${base.host}${path}`;
    this.#wsBase = `${secure ? "wss:" : "ws:"}//${base.host}${path}`;
    this.#getToken = getToken;
    this.#locale = locale;
    this.#WebSocket = WebSocket ?? globalThis.WebSocket;
    // Browsers' fetch throws "Illegal invocation" unless called on the global.
    this.#fetch = fetch ?? ((...args) => globalThis.fetch(...args));
  }

  /**
   * Adds an event handler. Events: `ready` (the server's ready data), `status`
   * (a status object), `typing` (a typing change), `state` (`connecting`,
   * `connected`, `disconnected`, `closed`) and `error` (`{code, message, ref_type}`).
   * @returns {this}
   */
  on(event, handler) {
    this.#handlersOf(event).add(handler);
    return this;
  }

  /**
   * Removes a handler added with `on`.
   * @returns {this}
   */
  off(event, handler) {
    this.#handlersOf(event).delete(handler);
    return this;
  }

  /**
   * Connects, and keeps reconnecting after drops until `close()`.
   * Resolves on the server's `ready`. Rejects if the first connection fails
   * (refused token, unreachable server) or `close()` comes first; after a
   * failed first attempt nothing retries until `connect()` is called again.
   * @returns {Promise<void>}
   */
  connect() {
    if (this.#ready) return Promise.resolve();
    const ready = new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (this.#stopped) {
      this.#stopped = false;
      this.#everReady = false;
      this.#attempt = 0;
      this.#open();
    }
    return ready;
  }

  /**
   * The latest status object seen for a user (from `ready` and `user_status`),
   * or undefined.
   * @param {string} userId
   */
  status(userId) {
    const s = this.#statuses.get(userId);
    return s && { ...s };
  }

  /**
   * Who is typing in a conversation now (you excluded, by the server) and the
   * server's wording of it for your locale.
   * @param {string} conversationId
   * @returns {{user_ids: string[], text: string}}
   */
  typing(conversationId) {
    const t = this.#typers.get(conversationId);
    return t ? { user_ids: [...t.user_ids], text: t.text } : { user_ids: [], text: "" };
  }

  /**
   * Call on every keystroke in a conversation's composer. Sends `typing_start`
   * at most once a second and `typing_stop` after 3 s without keystrokes.
   * Does nothing while disconnected.
   * @param {string} conversationId
   */
  keystroke(conversationId) {
    if (!this.#ready) return;
    let t = this.#outgoing.get(conversationId);
    if (!t) {
      t = { sentAt: -Infinity, timer: null };
      this.#outgoing.set(conversationId, t);
    }
    const now = performance.now();
    if (now - t.sentAt >= TYPING_RENEW_MS) {
      t.sentAt = now;
      // Typing is activity: the server brings a manually away user back.
      this.#manualStatus = "online";
      this.#send("typing_start", { conversation_id: conversationId });
    }
    clearTimeout(t.timer);
    t.timer = setTimeout(() => this.stopTyping(conversationId), TYPING_IDLE_MS);
  }

  /**
   * Stops typing in a conversation now (call on send or blur). Sends
   * `typing_stop` only if a `typing_start` is outstanding.
   * @param {string} conversationId
   */
  stopTyping(conversationId) {
    const t = this.#outgoing.get(conversationId);
    if (!t) return;
    clearTimeout(t.timer);
    this.#outgoing.delete(conversationId);
    this.#send("typing_stop", { conversation_id: conversationId });
  }

  /**
   * Sets your status by hand. `away` is re-sent after every reconnect until
   * `online` is set (or you type), since a new connection starts online.
   * @param {"away" | "online"} status
   */
  setStatus(status) {
    if (status !== "away" && status !== "online") {
      throw new TypeError(`PresenceClient.setStatus: "away" or "online", not ${JSON.stringify(status)}`);
    }
    this.#manualStatus = status;
    this.#send("set_status", { status });
  }

  /**
   * Asks the REST API for several users' statuses (at most 100 ids). Unknown
   * ids are left out of the answer. Throws an Error whose `code` is the
   * server's error code (`too_many_ids`, `unauthorized`, …, or `network_error`)
   * and `status` the HTTP status (0 when the server was not reached).
   * @param {string[]} userIds
   * @returns {Promise<object[]>} status objects in request order
   */
  async fetchStatus(userIds) {
    const ids = [...userIds];
    if (ids.length === 0) return [];
    const token = await this.#getToken();
    const query = ids.map(encodeURIComponent).join(",");
    let res;
    try {
      res = await this.#fetch(`${this.#httpBase}/api/v1/users/status?user_ids=${query}`, {
        headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      });
    } catch (cause) {
      throw requestError(`presence: ${cause?.message ?? cause}`, "network_error", 0, cause);
    }
    let body = null;
    try {
      body = await res.json();
    } catch {
      // Not our envelope (a proxy's error page): reported by HTTP status below.
    }
    if (res.ok && body?.success === true) return body.data;
    throw requestError(
      body?.error?.message ?? `presence: HTTP ${res.status}`,
      body?.error?.code ?? `http_${res.status}`,
      res.status,
    );
  }

  /**
   * Disconnects for good: no reconnect, pending `connect()` promises reject,
   * and `state` becomes `closed`. `connect()` may be called again later.
   */
  close() {
    this.#stopped = true;
    this.#generation++;
    clearTimeout(this.#reconnectTimer);
    const ws = this.#ws;
    this.#teardown();
    if (ws) abandon(ws, CLOSE_NORMAL, "client closed");
    this.#settle(new Error("presence: client closed"));
    this.#setState("closed");
  }

  // --- connection -----------------------------------------------------------

  async #open() {
    const generation = ++this.#generation;
    this.#setState("connecting");
    let token;
    try {
      token = await this.#getToken();
    } catch (err) {
      if (generation !== this.#generation) return;
      this.#emit("error", { code: "token_unavailable", message: String(err?.message ?? err) });
      this.#failed(null, err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (generation !== this.#generation) return; // closed (or reopened) meanwhile
    let query = `token=${encodeURIComponent(token)}`;
    if (this.#locale) query += `&locale=${encodeURIComponent(this.#locale)}`;
    let ws;
    try {
      if (typeof this.#WebSocket !== "function") {
        throw new TypeError("presence: no WebSocket here; pass options.WebSocket (in Node 20, the `ws` package)");
      }
      ws = new this.#WebSocket(`${this.#wsBase}/ws?${query}`);
    } catch (err) {
      this.#failed(null, err);
      return;
    }
    this.#ws = ws;
    this.#token = token;
    this.#lastSocketError = "";
    ws.onmessage = (e) => this.#onFrame(ws, e.data);
    ws.onclose = (e) => this.#onClose(ws, e.code);
    // Browsers tell nothing here (the close follows); Node's `ws` says why.
    ws.onerror = (e) => {
      if (ws === this.#ws && e?.message) this.#lastSocketError = e.message;
    };
    this.#handshakeTimer = setTimeout(() => this.#kill(ws, "no ready from the server"), HANDSHAKE_TIMEOUT_MS);
  }

  #onClose(ws, code) {
    if (ws !== this.#ws) return;
    const reason = this.#lastSocketError || `closed with code ${code}`;
    this.#teardown();
    this.#failed(code, new Error(`presence: connection failed before ready (${reason})`));
  }

  /** Gives up on a socket we judge dead, without waiting for a close handshake it cannot do. */
  #kill(ws, why) {
    if (ws !== this.#ws) return;
    this.#teardown();
    abandon(ws, CLOSE_DEAD, why);
    this.#failed(null, new Error(`presence: ${why}`));
  }

  /** After a socket is gone: reconnect, or fail connect() if it never came up. */
  #failed(code, err) {
    if (this.#stopped) return;
    this.#setState("disconnected");
    if (!this.#everReady) {
      // Browsers hide the HTTP status of a refused upgrade, so a first
      // connection that closes before `ready` is taken as a refusal.
      this.#stopped = true;
      this.#settle(err);
      return;
    }
    const delay =
      code === CLOSE_TOKEN_EXPIRED
        ? 0 // the token ran out, nothing is wrong with the server
        : Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.#attempt++);
    this.#reconnectTimer = setTimeout(() => this.#open(), delay);
  }

  /** Forgets the current socket and everything tied to it. */
  #teardown() {
    this.#ws = null;
    this.#ready = false;
    for (const timer of [this.#handshakeTimer, this.#silenceTimer, this.#renewTimer]) clearTimeout(timer);
    clearInterval(this.#pingTimer);
    // The server ends our typing when the connection goes; so do we.
    for (const t of this.#outgoing.values()) clearTimeout(t.timer);
    this.#outgoing.clear();
    this.#pendingToken = null;
  }

  #settle(err) {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) (err ? w.reject(err) : w.resolve());
  }

  #send(type, data) {
    const ws = this.#ws;
    if (!ws || !this.#ready || ws.readyState !== OPEN) return;
    try {
      ws.send(JSON.stringify(data === undefined ? { type } : { type, data }));
    } catch {
      // A socket failing under us closes next; the close handler deals with it.
    }
  }

  // --- heartbeat ------------------------------------------------------------

  /** Arms the silence check for the time left until the last frame heard gets too old. */
  #armSilence(ws) {
    const limit = SILENCE_HEARTBEATS * this.#heartbeatMs;
    const left = this.#lastHeard + limit - performance.now();
    if (left <= 0) {
      this.#kill(ws, "heartbeat timeout: the server went silent");
      return;
    }
    // Re-armed only when it fires, not on every frame: frames just move #lastHeard.
    this.#silenceTimer = setTimeout(() => this.#armSilence(ws), left);
  }

  // --- server frames --------------------------------------------------------

  #onFrame(ws, raw) {
    if (ws !== this.#ws) return;
    this.#lastHeard = performance.now();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return; // not ours to judge: the server only sends JSON text
    }
    const data = frame?.data ?? {};
    switch (frame?.type) {
      case "ready":
        this.#onReady(ws, data);
        break;
      case "user_status":
        this.#onUserStatus(data);
        break;
      case "user_typing":
        this.#onUserTyping(data);
        break;
      case "auth_ok": {
        if (this.#pendingToken) this.#token = this.#pendingToken;
        this.#pendingToken = null;
        const expiresAt = Date.parse(data.expires_at);
        this.#scheduleRenewal(Number.isFinite(expiresAt) ? expiresAt : jwtClaims(this.#token).exp * 1000);
        break;
      }
      case "error":
        this.#onError(data);
        break;
      // `pong` and anything newer: hearing it was the point.
    }
  }

  #onReady(ws, data) {
    clearTimeout(this.#handshakeTimer);
    this.#ready = true;
    this.#everReady = true;
    this.#attempt = 0;
    this.#renewable = true;
    this.#heartbeatMs = data.heartbeat_interval_ms > 0 ? data.heartbeat_interval_ms : DEFAULT_HEARTBEAT_MS;
    // Browsers cannot see the server's WebSocket pings, so ask for a pong.
    clearInterval(this.#pingTimer);
    clearTimeout(this.#silenceTimer);
    this.#pingTimer = setInterval(() => this.#send("ping"), this.#heartbeatMs);
    this.#armSilence(ws);
    this.#scheduleRenewal(jwtClaims(this.#token).exp * 1000);

    // What changed while we were away (or is new): compare before replacing.
    const statusChanges = [];
    for (const s of Array.isArray(data.contacts) ? data.contacts : []) {
      const next = statusObject(s);
      if (!sameStatus(this.#statuses.get(next.user_id), next)) statusChanges.push(next);
      this.#statuses.set(next.user_id, next);
    }
    const typers = new Map();
    for (const t of Array.isArray(data.typing) ? data.typing : []) {
      const user_ids = Array.isArray(t.user_ids) ? t.user_ids : [];
      if (!user_ids.length) continue;
      const before = this.#typers.get(t.conversation_id);
      // `ready` carries no wording; the old one still fits the same typers.
      const text = before && sameSet(before.user_ids, user_ids) ? before.text : "";
      typers.set(t.conversation_id, { user_ids, text });
    }
    const typingChanges = [];
    for (const id of new Set([...this.#typers.keys(), ...typers.keys()])) {
      const next = typers.get(id) ?? { user_ids: [], text: "" };
      if (!sameSet(this.#typers.get(id)?.user_ids ?? [], next.user_ids)) {
        typingChanges.push({
          conversation_id: id,
          user_ids: next.user_ids,
          text: next.text,
          user_id: null,
          is_typing: next.user_ids.length > 0,
        });
      }
    }
    this.#typers = typers;

    // A new connection starts online; a user who chose away stays away.
    if (this.#manualStatus === "away") this.#send("set_status", { status: "away" });

    this.#setState("connected");
    this.#emit("ready", data);
    for (const s of statusChanges) this.#emit("status", { ...s });
    for (const t of typingChanges) this.#emit("typing", { ...t, user_ids: [...t.user_ids] });
    this.#settle(null);
  }

  #onUserStatus(d) {
    if (typeof d.user_id !== "string") return;
    const before = this.#statuses.get(d.user_id);
    const online = d.status === "online";
    const lastSeen = online ? null : "last_seen" in d ? d.last_seen : before?.last_seen ?? null;
    const next = {
      user_id: d.user_id,
      status: d.status,
      is_online: online,
      last_seen: lastSeen,
      // An away/offline event says by its last_seen whether we may see it;
      // an online one says nothing, so keep what we knew.
      show_last_seen: online ? before?.show_last_seen ?? true : lastSeen != null || d.last_seen_approx != null,
    };
    if (!online && d.last_seen_approx != null) next.last_seen_approx = d.last_seen_approx;
    this.#statuses.set(d.user_id, next);
    this.#emit("status", { ...next });
  }

  #onUserTyping(d) {
    if (typeof d.conversation_id !== "string") return;
    const user_ids = Array.isArray(d.typing_user_ids) ? d.typing_user_ids : [];
    const text = typeof d.text === "string" ? d.text : "";
    if (user_ids.length) this.#typers.set(d.conversation_id, { user_ids, text });
    else this.#typers.delete(d.conversation_id);
    this.#emit("typing", {
      conversation_id: d.conversation_id,
      user_ids: [...user_ids],
      text,
      user_id: d.user_id ?? null,
      is_typing: Boolean(d.is_typing),
    });
  }

  #onError(d) {
    if (d.ref_type === "auth" && d.code === "bad_request") {
      // A server without token renewal: the token lasts as long as the connection.
      this.#renewable = false;
      this.#pendingToken = null;
      clearTimeout(this.#renewTimer);
      return;
    }
    const err = { code: d.code, message: d.message ?? "" };
    if (d.ref_type != null) err.ref_type = d.ref_type;
    this.#emit("error", err);
  }

  // --- token renewal ----------------------------------------------------------

  #scheduleRenewal(expiresAtMs) {
    clearTimeout(this.#renewTimer);
    if (!this.#renewable || !Number.isFinite(expiresAtMs)) return;
    const now = Date.now();
    const iat = jwtClaims(this.#token).iat * 1000;
    const issuedAt = Number.isFinite(iat) && iat <= now ? iat : now;
    const renewAt = Math.max(
      expiresAtMs - RENEW_LEAD_MS,
      issuedAt + RENEW_AT_LIFETIME * (expiresAtMs - issuedAt),
    );
    const delay = Math.max(renewAt - now, RENEW_MIN_DELAY_MS);
    this.#renewTimer =
      delay > MAX_TIMER_MS
        ? setTimeout(() => this.#scheduleRenewal(expiresAtMs), MAX_TIMER_MS)
        : setTimeout(() => this.#renew(), delay);
  }

  async #renew() {
    const ws = this.#ws;
    if (!ws || !this.#ready || !this.#renewable) return;
    let token;
    try {
      token = await this.#getToken();
    } catch (err) {
      if (ws !== this.#ws) return;
      this.#emit("error", { code: "token_unavailable", message: String(err?.message ?? err) });
      this.#renewTimer = setTimeout(() => this.#renew(), RENEW_RETRY_MS);
      return;
    }
    if (ws !== this.#ws || !this.#ready || !this.#renewable) return;
    this.#pendingToken = token;
    this.#send("auth", { token });
  }

  // --- events ---------------------------------------------------------------

  #handlersOf(event) {
    const set = this.#handlers.get(event);
    if (!set) throw new TypeError(`PresenceClient: unknown event ${JSON.stringify(event)} (${EVENTS.join(", ")})`);
    return set;
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", state);
  }

  #emit(event, payload) {
    for (const handler of [...this.#handlers.get(event)]) {
      try {
        handler(payload);
      } catch (err) {
        // A broken handler must not break the connection or the other handlers.
        if (typeof globalThis.reportError === "function") globalThis.reportError(err);
        else console.error(err);
      }
    }
  }
}

/** What fetchStatus throws: an Error with the server's error code and the HTTP status. */
function requestError(message, code, status, cause) {
  const err = new Error(message, cause === undefined ? undefined : { cause });
  err.code = code;
  err.status = status;
  return err;
}

/** Closes a socket we no longer listen to; a dead one gets no say. */
function abandon(ws, code, reason) {
  ws.onmessage = null;
  ws.onclose = null;
  // Node's `ws` throws an 'error' event nobody listens to; keep a listener.
  ws.onerror = () => {};
  try {
    ws.close(code, reason);
  } catch {
    // Already closing.
  }
}

/** A status object in the REST shape, from a `ready` contact. */
function statusObject(s) {
  const o = {
    user_id: s.user_id,
    status: s.status,
    is_online: s.is_online ?? s.status === "online",
    last_seen: s.last_seen ?? null,
    show_last_seen: Boolean(s.show_last_seen),
  };
  if (s.last_seen_approx != null) o.last_seen_approx = s.last_seen_approx;
  return o;
}

function sameStatus(a, b) {
  return (
    a !== undefined &&
    a.status === b.status &&
    a.is_online === b.is_online &&
    a.last_seen === b.last_seen &&
    a.show_last_seen === b.show_last_seen &&
    a.last_seen_approx === b.last_seen_approx
  );
}

function sameSet(a, b) {
  if (a.length !== b.length) return false;
  const s = new Set(a);
  return b.every((x) => s.has(x));
}

/** The JWT's claims, unverified (only `exp` and `iat` are read); {} if unreadable. */
function jwtClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : {};
  } catch {
    return {};
  }
}
