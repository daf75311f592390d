// Types of wscluster.js: the wscluster WebSocket client (see CONTRACT.md section 2).

/** A frame's `id`: this client uses numbers. */
export type FrameId = string | number;

/** Any JSON value carried as `data`. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Minimal WebSocket constructor shape (browser WebSocket, Node 22's global, or the `ws` package). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface WsClusterOptions {
  /** ws:// or wss:// URLs of nodes (path /ws); the client moves along the list on reconnect. */
  urls: string[] | string;
  /** auth=none: the uid to claim (query `uid=`). */
  uid?: string;
  /** auth=jwt: the token (query `token=`); wins over uid. */
  token?: string;
  /** Durable delivery: the device id (query `device=`); `since=` follows the last seq seen. */
  device?: string;
  /** Durable delivery: initial `since=` cursor. */
  since?: number;
  /** Groups joined after every (re)connect. */
  groups?: string[];
  /** WebSocket constructor; default globalThis.WebSocket (Node 20: pass `ws`'s default export). */
  WebSocket?: WebSocketConstructor;
  /** Called after close 4003 (token expired); its token is used to reconnect. Without it, call setToken(). */
  getToken?: () => string | Promise<string>;
  /** Reject a request when no answer came in this time (default 10000). */
  requestTimeoutMs?: number;
  /** Give up on a URL when `welcome` did not come in this time (default 5000). */
  connectTimeoutMs?: number;
  /** Send a `ping` frame this often; 0 turns the keepalive off (default 20000). */
  pingIntervalMs?: number;
  /** Reconnect when the pong does not come in this time (default 10000). */
  pongTimeoutMs?: number;
  /** Reconnect automatically (default true). Close 4001 never reconnects. */
  reconnect?: boolean;
  /** First retry comes within this delay; later ones grow by backoffFactor (default 250). */
  initialDelayMs?: number;
  /** Upper bound of the backoff (default 10000). */
  maxDelayMs?: number;
  /** Backoff growth per failed attempt (default 2). */
  backoffFactor?: number;
  /** Upper bound of a `bye` frame's reconnect_after_ms (default 60000). */
  maxByeDelayMs?: number;
  /** Requests queued while offline at most (default 1000). */
  maxQueued?: number;
  /** With `device`: confirm received seqs with `read` frames automatically (default false). */
  autoRead?: boolean;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'waiting_token' | 'closed';

export interface WelcomeFrame {
  type: 'welcome';
  uid: string;
  conn: string;
  node: string;
  resumed?: boolean;
  from?: number;
  to?: number;
  reason?: string;
  [key: string]: unknown;
}
export interface WelcomeEvent extends WelcomeFrame {
  /** The URL this session is on. */
  url: string;
  /** True from the second session on. */
  reconnected: boolean;
}
/** Addressing and idempotency of send/publish/broadcast (contract section 5). */
export interface SendOptions {
  /** Connection ids (from their welcome) that get nothing. */
  except?: string[];
  /** This connection gets nothing (its other devices do). */
  exceptSelf?: boolean;
  /** 1-64 bytes: a repeat within idempotency-window is acked again and not resent. */
  idem?: string;
}
export interface AckFrame { type: 'ack'; id: FrameId; [key: string]: unknown; }
export interface PongFrame { type: 'pong'; id: FrameId; }
export interface PresenceFrame { type: 'presence'; id: FrameId; online: Record<string, boolean>; }
export interface MembersFrame { type: 'members'; id: FrameId; group: string; uids: string[]; }
export interface ErrorFrame { type: 'error'; id?: FrameId; code: string; message?: string; }
export interface MessageFrame {
  type: 'message';
  /** null when sent through the HTTP API. */
  from: string | null;
  to: string | string[];
  data: Json;
  ts: number;
  seq?: number;
  msg_id?: string | number;
}
export interface GroupFrame {
  type: 'group';
  group: string;
  from: string | null;
  data: Json;
  ts: number;
  seq?: number;
  msg_id?: string | number;
}
export interface BroadcastFrame { type: 'broadcast'; from: string | null; data: Json; ts: number; }
export interface ByeFrame { type: 'bye'; reason: string; reconnect_after_ms?: number; }
export interface CloseEvent {
  code: number;
  reason: string;
  /** Whether the client will reconnect by itself. */
  willReconnect: boolean;
  url?: string;
  wasOpen?: boolean;
  /** Delay before the next attempt when willReconnect. */
  delayMs?: number;
}
export interface ReconnectingEvent { delayMs: number; attempt: number; url: string; }
export interface RejoinEvent { groups: string[]; failed: { group: string; ok: false; error: WsClusterError }[]; }

export interface WsClusterEvents {
  open: { url: string };
  welcome: WelcomeEvent;
  message: MessageFrame;
  group: GroupFrame;
  broadcast: BroadcastFrame;
  bye: ByeFrame;
  close: CloseEvent;
  error: Error | WsClusterError;
  reconnecting: ReconnectingEvent;
  rejoin: RejoinEvent;
  token_expired: { code: 4003; reason: string };
  state: ClientState;
  /** Every frame received, before any other event (custom frame types too). */
  frame: { type: string; [key: string]: unknown };
}

/** Codes: the server's (bad_json, bad_frame, unknown_type, forbidden, not_member, rate_limited,
 *  too_many_groups, unavailable, ...) or the client's (timeout, disconnected, closed, queue_full). */
export class WsClusterError extends Error {
  constructor(code: string, message?: string, frame?: ErrorFrame);
  readonly code: string;
  readonly frame?: ErrorFrame;
}

export declare const CloseCodes: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  INVALID_UTF8: 1007;
  POLICY: 1008;
  TOO_LARGE: 1009;
  INTERNAL: 1011;
  DISCONNECTED_BY_API: 4001;
  TOKEN_EXPIRED: 4003;
  PING_TIMEOUT: 4000;
}>;

export class WsClusterClient {
  constructor(options: WsClusterOptions);
  readonly urls: string[];
  /** From the current session's welcome. */
  readonly uid: string | undefined;
  readonly conn: string | undefined;
  readonly node: string | undefined;
  /** URL of the current or last connection. */
  readonly url: string | undefined;
  readonly state: ClientState;
  /** Last durable seq received. */
  readonly lastSeq: number | undefined;
  /** Groups re-joined after every reconnect. */
  readonly groups: string[];
  /** http://host:port of the current connection. */
  readonly httpBase: string;

  on<K extends keyof WsClusterEvents>(event: K, fn: (ev: WsClusterEvents[K]) => void): () => void;
  once<K extends keyof WsClusterEvents>(event: K, fn: (ev: WsClusterEvents[K]) => void): () => void;
  off<K extends keyof WsClusterEvents>(event: K, fn: (ev: WsClusterEvents[K]) => void): void;

  /** Resolves with the first welcome; keeps reconnecting until then (rejects on 4001 or close()). */
  connect(): Promise<WelcomeFrame>;
  /** Stops reconnecting and closes; pending requests reject with code `closed`. */
  close(code?: number, reason?: string): void;
  /** New token (after `token_expired`); reconnects if the client waits for one. */
  setToken(token: string): void;

  send(to: string | string[], data: Json, options?: SendOptions): Promise<AckFrame>;
  /** One connection (conn id from its welcome), on any node; `delivered` in the ack. */
  sendToConn(conn: string, data: Json): Promise<AckFrame & { delivered: boolean; reason?: string }>;
  publish(group: string, data: Json, options?: SendOptions): Promise<AckFrame>;
  broadcast(data: Json, options?: Omit<SendOptions, 'idem'>): Promise<AckFrame>;
  join(group: string): Promise<AckFrame>;
  leave(group: string): Promise<AckFrame>;
  presence(uids: string[]): Promise<PresenceFrame>;
  members(group: string): Promise<MembersFrame>;
  ping(): Promise<PongFrame>;
  read(seq: number): Promise<AckFrame>;
  /** Any frame type (behaviour actors); resolves with the answer that carries its id. */
  request<T = { type: string; id: FrameId; [key: string]: unknown }>(
    frame: { type: string; [key: string]: unknown },
    options?: { timeoutMs?: number }
  ): Promise<T>;
}

export default WsClusterClient;
