// Test harness of the client: a real `presence` process per test file
// (`server.js`), PresenceClients that record what they send, and waits on
// client events (never fixed sleeps as synchronisation).

import WebSocket from "ws";

import { PresenceClient } from "../presence-client.js";
import { Server as BaseServer, mintToken, sleep } from "./server.js";

/** The server, plus PresenceClients on it that `stop()` closes. */
export class Server extends BaseServer {
  constructor(...args) {
    super(...args);
    this.clients = [];
  }

  async stop() {
    for (const c of this.clients) c.close();
    await super.stop();
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

export { mintToken, sleep };
