// Type declarations of presence-client.js; keep the two in step.

/** `online` while any of the user's connections is open, `away` when idle or set by hand. */
export type Status = "online" | "away" | "offline";

/** A user's status as you may see it (the REST shape, SPEC §5). */
export interface StatusObject {
  user_id: string;
  status: Status;
  /** `status === "online"`. */
  is_online: boolean;
  /** ISO 8601 UTC; null while online, when privacy hides it, or when unknown. */
  last_seen: string | null;
  /** Whether you may see this user's last seen. */
  show_last_seen: boolean;
  /** An approximate label (`"recently"`, `"within_week"`, …) a privacy policy may give instead of an exact time. */
  last_seen_approx?: string;
}

/** Who is typing in a conversation now, you excluded. */
export interface TypingInfo {
  user_ids: string[];
  /** The server's wording for your locale ("John and Sarah are typing…"); empty when nobody types, or when only known from a `ready` snapshot. */
  text: string;
}

/** A change of who is typing in a conversation. */
export interface TypingEvent extends TypingInfo {
  conversation_id: string;
  /** The user who started or stopped; null when the change comes from a `ready` snapshot after a reconnect. */
  user_id: string | null;
  /** Whether `user_id` is typing now (for a snapshot change: whether anyone is). */
  is_typing: boolean;
}

/** The server's `ready` frame, sent first on every connection. */
export interface ReadyInfo {
  user_id: string;
  session_id: string;
  heartbeat_interval_ms: number;
  /** Status objects of the users you watch. */
  contacts: StatusObject[];
  /** Conversations of yours where someone is typing now. */
  typing: { conversation_id: string; user_ids: string[] }[];
}

/** An `error` frame from the server, or `token_unavailable` when `getToken` failed. */
export interface PresenceErrorInfo {
  code: string;
  message: string;
  /** The type of the client frame the server refused. */
  ref_type?: string;
}

export type ConnectionState = "connecting" | "connected" | "disconnected" | "closed";

export interface PresenceEvents {
  ready: ReadyInfo;
  status: StatusObject;
  typing: TypingEvent;
  state: ConnectionState;
  error: PresenceErrorInfo;
}

/** What `fetchStatus` throws. */
export interface PresenceRequestError extends Error {
  /** The envelope's error code (`too_many_ids`, `unauthorized`, …), `http_<status>` without an envelope, or `network_error`. */
  code: string;
  /** The HTTP status; 0 when the server was not reached. */
  status: number;
}

/** The part of a WebSocket (the browser's, or Node's `ws` package) the client uses. */
export interface PresenceWebSocket {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // Events are `any` so that both the DOM's and `ws`'s event types fit.
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** The part of `fetch` the client uses. */
export type PresenceFetch = (
  url: string,
  init: { headers: Record<string, string> },
) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

export interface PresenceClientOptions {
  /** The server's base URL (http:// or https://, optionally with a path prefix). */
  url: string;
  /** Returns a current JWT; called before every connect, token renewal and REST call. */
  getToken: () => string | Promise<string>;
  /** Locale for typing texts (`en`, `th`, …); the server defaults to `en`. */
  locale?: string;
  /** WebSocket constructor; defaults to `globalThis.WebSocket` (in Node 20 pass the `ws` package's). */
  WebSocket?: new (url: string, ...rest: any[]) => PresenceWebSocket;
  /** fetch implementation; defaults to `globalThis.fetch`. */
  fetch?: PresenceFetch;
}

export class PresenceClient {
  constructor(options: PresenceClientOptions);

  /** Adds an event handler; a throwing handler is reported, never rethrown. */
  on<E extends keyof PresenceEvents>(event: E, handler: (payload: PresenceEvents[E]) => void): this;
  /** Removes a handler added with `on`. */
  off<E extends keyof PresenceEvents>(event: E, handler: (payload: PresenceEvents[E]) => void): this;

  /**
   * Connects and keeps reconnecting (exponential backoff, full jitter) until `close()`.
   * Resolves on `ready`; rejects if the first connection fails or `close()` comes first.
   */
  connect(): Promise<void>;

  /** The latest status object seen for a user (from `ready` and events), or undefined. */
  status(userId: string): StatusObject | undefined;

  /** Who is typing in a conversation now (you excluded). */
  typing(conversationId: string): TypingInfo;

  /** Call on every keystroke: `typing_start` at most once a second, `typing_stop` after 3 s without keystrokes. */
  keystroke(conversationId: string): void;

  /** Stops typing now (on send or blur). */
  stopTyping(conversationId: string): void;

  /** Sets your status by hand; `away` is restored after reconnects until `online` is set or you type. */
  setStatus(status: "away" | "online"): void;

  /** Statuses of up to 100 users over REST, in request order, unknown ids left out; throws a {@link PresenceRequestError}. */
  fetchStatus(userIds: string[]): Promise<StatusObject[]>;

  /** Disconnects for good: no reconnect; `state` becomes `closed`. */
  close(): void;
}
