// The hand-written part of the BroodLink TypeScript client: the connection, `auth`,
// request/response matching, timeouts, event dispatch, auto-reconnect with catch-up, and
// re-sending idempotent calls (those carrying a `clientMsgId`) a dropped connection left
// without an answer.
// Everything protocol-specific (types, the event map, error classes, one method per RPC
// method) is generated into broodlink_client.ts. `cargo xtask codegen` copies this file
// verbatim from codegen/templates/typescript/runtime.ts: edit it there.

import type { AuthResult, DmEvent, HistoryResult, Message, MessageEvent, Role } from "./broodlink_client.js";

/** The subset of the WebSocket API the client uses (browsers' `WebSocket` and `ws` both have it). */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((event: unknown) => void) | null;
    onmessage: ((event: { data: unknown }) => void) | null;
    onclose: ((event: { code: number; reason: string }) => void) | null;
    onerror: ((event: unknown) => void) | null;
}

/** A WebSocket class: the global `WebSocket` in browsers, `ws` in Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** How to reach and authenticate with a server. Every field is optional. */
export interface ClientOptions {
    /** Server URL. Default: the `BROODLINK_URL` environment variable, else `ws://localhost:18800`. */
    url?: string;
    /** API key (`bl_k_…` or `bl_k_ctrl_…`). Default: the `BROODLINK_API_KEY` environment variable. */
    apiKey?: string;
    /** Display name for this session (sent with `auth`, and again on every re-auth). */
    displayName?: string;
    /** Reconnect by itself when the connection drops (default `true`). */
    autoReconnect?: boolean;
    /** First reconnect delay in milliseconds (default 500); it doubles on each failed attempt. */
    reconnectInitialDelay?: number;
    /** Longest reconnect delay in milliseconds (default 30000). */
    reconnectMaxDelay?: number;
    /** Give up after this many failed reconnect attempts in a row (default: never give up). */
    reconnectMaxAttempts?: number;
    /** How long a call may take, in milliseconds, including waiting for a reconnection (default 30000). */
    requestTimeout?: number;
    /** How long opening the WebSocket may take, in milliseconds (default 10000). */
    connectTimeout?: number;
    /** The WebSocket class to use (default: the global `WebSocket`, else the `ws` package). */
    WebSocket?: WebSocketConstructor;
    /** Called when an event handler throws or rejects (default: `console.error`). */
    onHandlerError?: (error: unknown, event: string) => void;
}

/** Payload of the client's own `reconnected` event. */
export interface ReconnectedEvent {
    /** How many attempts the reconnection took. */
    attempts: number;
    /** The rooms re-joined (the ones joined or created through this client). */
    rooms: string[];
    /** How many missed messages were delivered to `message`/`dm` handlers. */
    missed: number;
}

/** Events the client itself emits, next to the protocol's events. */
export interface ClientEvents {
    /** The client reconnected, re-joined its rooms and delivered the messages it missed. */
    reconnected: ReconnectedEvent;
}

export type EventHandler<T> = (event: T) => void | Promise<void>;
export type CatchAllHandler<E> = (name: keyof E & string, event: E[keyof E]) => void | Promise<void>;

/** An error the server answered with: `code`, `message` and optional `data`. */
export class BroodLinkError extends Error {
    readonly code: number;
    readonly data: unknown;

    constructor(code: number, message: string, data?: unknown) {
        super(message);
        this.name = "BroodLinkError";
        this.code = code;
        this.data = data;
    }

    /**
     * For `4080` Rate Limited: after how many milliseconds the call would be accepted
     * (`data.retryAfterMs`); `undefined` when the error does not say.
     */
    get retryAfterMs(): number | undefined {
        const value = isRecord(this.data) ? this.data["retryAfterMs"] : undefined;
        return typeof value === "number" ? value : undefined;
    }
}

/** Not connected, connection lost, or the client was closed. */
export class BroodLinkConnectionError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "BroodLinkConnectionError";
    }
}

/**
 * A call got no answer within `requestTimeout`. The server may still have done it: a
 * `sendMessage`/`sendDm` retried with the same `clientMsgId` is done at most once.
 */
export class BroodLinkTimeoutError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "BroodLinkTimeoutError";
    }
}

type State = "idle" | "connecting" | "open" | "reconnecting" | "closed";
type Timer = ReturnType<typeof setTimeout>;
type AnyHandler = (...args: unknown[]) => void | Promise<void>;

interface Pending {
    method: string;
    params: object;
    /**
     * The call is idempotent (it carries its idempotency key): when the connection drops
     * before the answer, it waits for the reconnect and is re-sent with the same params
     * instead of failing.
     */
    resend: boolean;
    resolve: (value: unknown) => void;
    reject: (error: Error) => void;
    timer: Timer;
}

interface Waiter {
    resolve: () => void;
    reject: (error: Error) => void;
}

const OPEN = 1;
/** The reason of a shutdown's `disconnected`, for servers that do not send `retry`. */
const SHUTDOWN_REASON = "server shutting down";
const ALREADY_A_MEMBER = 4012;
const FATAL_AUTH_CODES = [4002, 4004];
const CATCH_UP_PAGE = 100;
const MAX_SENT_SEQS = 10_000;

function env(name: string): string | undefined {
    const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
    const value = proc?.env?.[name];
    return value === undefined || value === "" ? undefined : value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

interface CryptoLike {
    randomUUID?: () => string;
    getRandomValues?: (array: Uint8Array) => Uint8Array;
}

/** A random (version 4) UUID: Web Crypto in browsers and Node 19+, `node:crypto` in Node 18. */
async function randomUuid(): Promise<string> {
    const webCrypto = (globalThis as { crypto?: CryptoLike }).crypto;
    if (typeof webCrypto?.randomUUID === "function") {
        return webCrypto.randomUUID();
    }
    if (typeof webCrypto?.getRandomValues === "function") {
        // Pages served over plain http have getRandomValues but not randomUUID.
        const bytes = webCrypto.getRandomValues(new Uint8Array(16));
        bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
        bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
        const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
        return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    }
    // Node 18 has neither global: use its module (named through a variable, so bundlers for
    // browsers do not try to resolve it).
    const nodeModule = "node:crypto";
    const nodeCrypto = (await import(nodeModule)) as { randomUUID: () => string };
    return nodeCrypto.randomUUID();
}

/**
 * The connection machinery behind the generated `BroodLinkClient`. `E` maps event names
 * to payload types.
 */
export abstract class BroodLinkClientBase<E extends ClientEvents> {
    /** The server URL. */
    readonly url: string;
    /** The authenticated agent's id (after `connect()`). */
    agentId: string | null = null;
    /** The agent's role (after `connect()`). */
    role: Role | null = null;
    /** The display name used for this session (after `connect()`). */
    displayName: string | null = null;
    /** The lobby's room id, also where DMs are stored (after `connect()`). */
    lobbyId: string | null = null;
    /** The lobby's display name (after `connect()`). */
    lobbyName: string | null = null;
    /** The message of the day (from `auth`, kept current by `lobby.motd` events). */
    motd: string | null = null;

    private readonly apiKey: string | undefined;
    private readonly requestedName: string | undefined;
    private readonly autoReconnect: boolean;
    private readonly reconnectInitialDelay: number;
    private readonly reconnectMaxDelay: number;
    private readonly reconnectMaxAttempts: number;
    private readonly requestTimeout: number;
    private readonly connectTimeout: number;
    private readonly socketClass: WebSocketConstructor | undefined;
    private readonly onHandlerError: (error: unknown, event: string) => void;

    private state: State = "idle";
    private socket: WebSocketLike | null = null;
    private connecting: Promise<AuthResult> | null = null;
    private nextId = 1;
    private readonly pending = new Map<number, Pending>();
    /**
     * Idempotent calls the last connection lost before their answers, in the order they
     * were sent: re-sent after the reconnect (see `resendOutbox`).
     */
    private readonly outbox = new Set<Pending>();
    private readonly waiters = new Set<Waiter>();
    private readonly handlers = new Map<string, Set<AnyHandler>>();
    /** Why the connection ended for good (shown in errors). */
    private closeReason = "";
    /** The server said `disconnected` for a reason other than its shutdown: do not come back. */
    private stayDisconnected = false;
    private sleepTimer: Timer | null = null;
    private wakeUp: (() => void) | null = null;

    /** Rooms joined or created through this client: re-joined after a reconnect. */
    private readonly joinedRooms = new Set<string>();
    /** Per room, the highest `seq` delivered (or known to be before this client's time). */
    private readonly lastSeq = new Map<string, number>();
    /** The `seq`s of messages this client sent (the server does not echo them back). */
    private readonly sentSeqs = new Set<number>();
    /** While catching up, live `message`/`dm` events wait here. */
    private buffered: Array<{ name: string; params: unknown }> | null = null;

    constructor(options: ClientOptions = {}) {
        this.url = options.url ?? env("BROODLINK_URL") ?? "ws://localhost:18800";
        this.apiKey = options.apiKey ?? env("BROODLINK_API_KEY");
        this.requestedName = options.displayName;
        this.autoReconnect = options.autoReconnect ?? true;
        this.reconnectInitialDelay = options.reconnectInitialDelay ?? 500;
        this.reconnectMaxDelay = options.reconnectMaxDelay ?? 30_000;
        this.reconnectMaxAttempts = options.reconnectMaxAttempts ?? Number.POSITIVE_INFINITY;
        this.requestTimeout = options.requestTimeout ?? 30_000;
        this.connectTimeout = options.connectTimeout ?? 10_000;
        this.socketClass = options.WebSocket;
        this.onHandlerError =
            options.onHandlerError ??
            ((error, event) => {
                console.error(`BroodLink: a "${event}" handler failed:`, error);
            });
    }

    /** Turns an error response into the matching `BroodLinkError` subclass. */
    protected abstract errorFor(code: number, message: string, data: unknown): BroodLinkError;

    /**
     * The name of the param that makes a call of `method` idempotent (`clientMsgId`), or
     * `undefined` if it has none; generated from the protocol. `call` fills that param with
     * a fresh UUID when the caller gives none, and such a call survives a reconnect: it is
     * re-sent with the same value, so the server does it once.
     */
    protected abstract idempotencyKey(method: string): string | undefined;

    /** Whether the client is connected and authenticated right now. */
    get connected(): boolean {
        return this.state === "open";
    }

    /** Whether the agent is the controller. */
    get isController(): boolean {
        return this.role === "controller";
    }

    /** Whether the agent is a participant. */
    get isParticipant(): boolean {
        return this.role === "participant";
    }

    /**
     * Connects and authenticates. Rejects with the server's error (e.g. `AuthFailedError`)
     * or a `BroodLinkConnectionError`; the client may then be connected again.
     */
    connect(): Promise<AuthResult> {
        if (this.connecting) {
            return this.connecting;
        }
        if (this.state === "open" || this.state === "reconnecting") {
            return Promise.reject(new BroodLinkConnectionError("already connected"));
        }
        this.state = "connecting";
        this.closeReason = "";
        this.stayDisconnected = false;
        const attempt = this.openAndAuth()
            .then(async (auth) => {
                if (this.state !== "connecting") {
                    throw new BroodLinkConnectionError("the client was closed");
                }
                this.state = "open";
                this.releaseWaiters();
                if (this.autoReconnect && this.lobbyId !== null) {
                    await this.recordNewest(this.lobbyId);
                }
                return auth;
            })
            .catch((error: unknown) => {
                if (this.state === "connecting") {
                    this.state = "idle";
                }
                this.dropSocket();
                this.rejectWaiters(error instanceof Error ? error : new BroodLinkConnectionError(String(error)));
                throw error;
            })
            .finally(() => {
                this.connecting = null;
            });
        this.connecting = attempt;
        return attempt;
    }

    /** Closes the connection and stops reconnecting. Pending calls fail with `BroodLinkConnectionError`. */
    async close(): Promise<void> {
        this.state = "closed";
        this.closeReason = "the client was closed";
        this.cancelSleep();
        const error = new BroodLinkConnectionError("the client was closed");
        this.rejectPending(error);
        this.rejectOutbox(error);
        this.rejectWaiters(error);
        const socket = this.socket;
        this.socket = null;
        if (socket === null) {
            return;
        }
        await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, 2_000);
            const previous = socket.onclose;
            socket.onclose = (event) => {
                clearTimeout(timer);
                previous?.(event);
                resolve();
            };
            socket.onmessage = null;
            try {
                socket.close(1000, "client closed");
            } catch {
                clearTimeout(timer);
                resolve();
            }
            if (socket.readyState === 3) {
                clearTimeout(timer);
                resolve();
            }
        });
    }

    /**
     * Registers a handler for an event (a protocol event such as `message`, or the
     * client's `reconnected`), or for every event with `"*"` (called with the name and
     * the payload). Returns a function that removes the handler.
     */
    on<K extends keyof E & string>(name: K, handler: EventHandler<E[K]>): () => void;
    on(name: "*", handler: CatchAllHandler<E>): () => void;
    on(name: string, handler: EventHandler<never> | CatchAllHandler<E>): () => void {
        let set = this.handlers.get(name);
        if (set === undefined) {
            set = new Set();
            this.handlers.set(name, set);
        }
        set.add(handler as AnyHandler);
        return () => this.off(name, handler);
    }

    /** Removes a handler registered with `on`. */
    off(name: string, handler: EventHandler<never> | CatchAllHandler<E>): void {
        this.handlers.get(name)?.delete(handler as AnyHandler);
    }

    /**
     * Calls a method by its wire name. The generated methods (`listRooms`, `sendMessage`,
     * …) call this. While the client reconnects, the call waits for the connection, up to
     * `requestTimeout` in all. A call of an idempotent method (`message.send`, `message.dm`)
     * gets a fresh UUID as its `clientMsgId` unless it has one, and if the connection drops
     * before the answer it is re-sent with that id after the reconnect.
     */
    async call<T>(method: string, params: object = {}): Promise<T> {
        const deadline = Date.now() + this.requestTimeout;
        const key = this.idempotencyKey(method);
        if (key !== undefined && (params as Record<string, unknown>)[key] == null) {
            params = { ...params, [key]: await randomUuid() };
        }
        if (this.state !== "open") {
            await this.waitForConnection(method, deadline);
        }
        const socket = this.socket;
        if (socket === null) {
            throw new BroodLinkConnectionError(`cannot call ${method}: not connected`);
        }
        const result = await this.send(socket, method, params, deadline, key !== undefined);
        await this.track(method, params, result);
        return result as T;
    }

    // ---- connection ----

    private async socketConstructor(): Promise<WebSocketConstructor> {
        if (this.socketClass !== undefined) {
            return this.socketClass;
        }
        const global = (globalThis as { WebSocket?: unknown }).WebSocket;
        if (typeof global === "function") {
            return global as WebSocketConstructor;
        }
        try {
            const ws = (await import("ws")) as unknown as { WebSocket?: unknown; default?: unknown };
            return (ws.WebSocket ?? ws.default) as WebSocketConstructor;
        } catch {
            throw new BroodLinkConnectionError("no WebSocket implementation: install the `ws` package");
        }
    }

    /** Opens a socket, authenticates on it and makes it the client's socket. */
    private async openAndAuth(): Promise<AuthResult> {
        if (this.apiKey === undefined) {
            throw new BroodLinkConnectionError("no API key: pass `apiKey` or set BROODLINK_API_KEY");
        }
        const Socket = await this.socketConstructor();
        const socket = new Socket(this.url);
        this.socket = socket;
        await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => {
                reject(new BroodLinkConnectionError(`timed out connecting to ${this.url}`));
                try {
                    socket.close();
                } catch {
                    // already closing
                }
            }, this.connectTimeout);
            socket.onerror = () => {
                // Always followed by a close event.
            };
            socket.onopen = () => {
                clearTimeout(timer);
                resolve();
            };
            socket.onclose = (event) => {
                clearTimeout(timer);
                reject(
                    new BroodLinkConnectionError(
                        this.state === "closed"
                            ? "the client was closed"
                            : `cannot connect to ${this.url} (WebSocket close ${event.code})`,
                    ),
                );
            };
        });
        socket.onmessage = (event) => this.onFrame(socket, event.data);
        socket.onclose = (event) => this.onSocketClose(socket, event.code, event.reason);
        if (this.socket !== socket) {
            socket.close(1000);
            throw new BroodLinkConnectionError("the client was closed");
        }
        const params: Record<string, unknown> = { apiKey: this.apiKey };
        if (this.requestedName !== undefined) {
            params["displayName"] = this.requestedName;
        }
        const auth = (await this.send(socket, "auth", params, Date.now() + this.requestTimeout)) as AuthResult;
        this.agentId = auth.agentId;
        this.role = auth.role;
        this.displayName = auth.displayName;
        this.lobbyId = auth.lobby.roomId;
        this.lobbyName = auth.lobby.name;
        this.motd = auth.motd ?? null;
        return auth;
    }

    private dropSocket(): void {
        const socket = this.socket;
        this.socket = null;
        if (socket !== null) {
            socket.onmessage = null;
            socket.onclose = null;
            try {
                socket.close(1000);
            } catch {
                // already closed
            }
        }
    }

    private onSocketClose(socket: WebSocketLike, code: number, reason: string): void {
        if (socket !== this.socket) {
            return;
        }
        this.socket = null;
        const why = `connection lost (WebSocket close ${code}${reason ? `: ${reason}` : ""})`;
        const willReconnect = this.state === "open" && this.autoReconnect && !this.stayDisconnected;
        this.rejectPending(new BroodLinkConnectionError(why), willReconnect);
        if (this.state !== "open") {
            // connect() or the reconnect loop sees its own calls fail and handles it.
            return;
        }
        if (!this.autoReconnect || this.stayDisconnected) {
            this.state = "closed";
            this.closeReason = this.closeReason || why;
            this.rejectWaiters(new BroodLinkConnectionError(`not connected: ${this.closeReason}`));
            return;
        }
        this.state = "reconnecting";
        void this.reconnectLoop();
    }

    private async reconnectLoop(): Promise<void> {
        let attempts = 0;
        while (this.state === "reconnecting") {
            if (attempts >= this.reconnectMaxAttempts) {
                this.giveUp(`gave up reconnecting after ${attempts} attempts`);
                return;
            }
            const base = Math.min(this.reconnectMaxDelay, this.reconnectInitialDelay * 2 ** Math.min(attempts, 30));
            attempts += 1;
            await this.sleep(base / 2 + (Math.random() * base) / 2);
            if (this.state !== "reconnecting") {
                return;
            }
            try {
                // The server sends no event before the auth response, so buffering from
                // here on catches every live message that could race the catch-up.
                this.buffered = [];
                await this.openAndAuth();
                const rooms = await this.rejoin();
                // Before catching up, so the messages this client sent are known as its own
                // and not delivered to its handlers as missed ones.
                await this.resendOutbox();
                const missed = await this.catchUp();
                const socket = this.socket;
                if (this.state !== "reconnecting" || socket === null || socket.readyState !== OPEN) {
                    throw new BroodLinkConnectionError("connection lost while catching up");
                }
                this.state = "open";
                this.flushBuffered();
                this.releaseWaiters();
                this.emit("reconnected", { attempts, rooms, missed });
                return;
            } catch (error) {
                this.buffered = null;
                if (this.state !== "reconnecting") {
                    return;
                }
                this.dropSocket();
                if (error instanceof BroodLinkError && FATAL_AUTH_CODES.includes(error.code)) {
                    this.giveUp(`re-authentication failed: ${error.message}`, error);
                    return;
                }
                if (this.stayDisconnected) {
                    this.giveUp(this.closeReason || "disconnected by the server");
                    return;
                }
            }
        }
    }

    private giveUp(reason: string, error?: Error): void {
        this.state = "closed";
        this.closeReason = reason;
        this.rejectWaiters(error ?? new BroodLinkConnectionError(`not connected: ${reason}`));
        this.rejectOutbox(new BroodLinkConnectionError(`not connected: ${reason}`));
    }

    private sleep(ms: number): Promise<void> {
        return new Promise((resolve) => {
            this.wakeUp = resolve;
            this.sleepTimer = setTimeout(() => {
                this.sleepTimer = null;
                this.wakeUp = null;
                resolve();
            }, ms);
        });
    }

    private cancelSleep(): void {
        if (this.sleepTimer !== null) {
            clearTimeout(this.sleepTimer);
            this.sleepTimer = null;
        }
        const wake = this.wakeUp;
        this.wakeUp = null;
        wake?.();
    }

    private waitForConnection(method: string, deadline: number): Promise<void> {
        if (this.state === "idle") {
            return Promise.reject(new BroodLinkConnectionError(`cannot call ${method}: not connected (call connect() first)`));
        }
        if (this.state === "closed") {
            return Promise.reject(new BroodLinkConnectionError(`cannot call ${method}: not connected (${this.closeReason})`));
        }
        return new Promise<void>((resolve, reject) => {
            const waiter: Waiter = {
                resolve: () => {
                    clearTimeout(timer);
                    this.waiters.delete(waiter);
                    resolve();
                },
                reject: (error) => {
                    clearTimeout(timer);
                    this.waiters.delete(waiter);
                    reject(error);
                },
            };
            const timer = setTimeout(() => {
                waiter.reject(
                    new BroodLinkConnectionError(
                        `cannot call ${method}: not connected (still reconnecting after ${this.requestTimeout} ms)`,
                    ),
                );
            }, Math.max(0, deadline - Date.now()));
            this.waiters.add(waiter);
        });
    }

    private releaseWaiters(): void {
        for (const waiter of [...this.waiters]) {
            waiter.resolve();
        }
    }

    private rejectWaiters(error: Error): void {
        for (const waiter of [...this.waiters]) {
            waiter.reject(error);
        }
    }

    // ---- requests ----

    private send(socket: WebSocketLike, method: string, params: object, deadline: number, resend = false): Promise<unknown> {
        return new Promise<unknown>((resolve, reject) => {
            const id = this.nextId++;
            const call: Pending = {
                method,
                params,
                resend,
                resolve,
                reject,
                timer: setTimeout(() => {
                    this.pending.delete(id);
                    this.outbox.delete(call);
                    reject(new BroodLinkTimeoutError(`${method} got no answer within ${this.requestTimeout} ms`));
                }, Math.max(0, deadline - Date.now())),
            };
            this.pending.set(id, call);
            try {
                socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
            } catch (error) {
                clearTimeout(call.timer);
                this.pending.delete(id);
                reject(new BroodLinkConnectionError(`cannot send ${method}: ${String(error)}`));
            }
        });
    }

    /** Fails the calls waiting for an answer; with `keepResendable`, the idempotent ones move to the outbox instead. */
    private rejectPending(error: Error, keepResendable = false): void {
        const pending = [...this.pending.values()];
        this.pending.clear();
        for (const call of pending) {
            if (keepResendable && call.resend) {
                this.outbox.add(call); // its timer keeps running: the caller's deadline
                continue;
            }
            clearTimeout(call.timer);
            call.reject(error);
        }
    }

    /** Fails the calls waiting to be re-sent (the client closed or stopped reconnecting). */
    private rejectOutbox(error: Error): void {
        const outbox = [...this.outbox];
        this.outbox.clear();
        for (const call of outbox) {
            clearTimeout(call.timer);
            call.reject(error);
        }
    }

    /**
     * Re-sends the outbox's calls, one at a time in their original order, each with its
     * original params (so its original idempotency key): the server does each once, and
     * answers a call it already did with the original result. The server's answer, result
     * or error, settles the waiting caller. A connection error or timeout fails this
     * reconnect attempt and leaves the rest for the next.
     */
    private async resendOutbox(): Promise<void> {
        for (const call of [...this.outbox]) {
            if (!this.outbox.has(call)) {
                continue; // timed out meanwhile
            }
            const socket = this.socket;
            if (socket === null) {
                throw new BroodLinkConnectionError("connection lost while re-sending");
            }
            let result: unknown;
            try {
                result = await this.send(socket, call.method, call.params, Date.now() + this.requestTimeout);
            } catch (error) {
                if (!(error instanceof BroodLinkError)) {
                    throw error;
                }
                if (this.outbox.delete(call)) {
                    clearTimeout(call.timer);
                    call.reject(error);
                }
                continue;
            }
            if (this.outbox.delete(call)) {
                // The caller's `call` does this too (it is idempotent); catching up needs it now.
                await this.track(call.method, call.params, result);
                clearTimeout(call.timer);
                call.resolve(result);
            }
        }
    }

    private onFrame(socket: WebSocketLike, data: unknown): void {
        if (socket !== this.socket) {
            return;
        }
        let frame: unknown;
        try {
            frame = JSON.parse(typeof data === "string" ? data : String(data));
        } catch {
            return;
        }
        for (const item of Array.isArray(frame) ? frame : [frame]) {
            if (!isRecord(item)) {
                continue;
            }
            if (typeof item["method"] === "string" && !("id" in item)) {
                this.onEvent(item["method"], item["params"]);
            } else if (typeof item["id"] === "number") {
                this.onResponse(item["id"], item);
            }
        }
    }

    private onResponse(id: number, response: Record<string, unknown>): void {
        const call = this.pending.get(id);
        if (call === undefined) {
            return;
        }
        this.pending.delete(id);
        clearTimeout(call.timer);
        const error = response["error"];
        if (isRecord(error)) {
            const code = typeof error["code"] === "number" ? error["code"] : 0;
            const message = typeof error["message"] === "string" ? error["message"] : "unknown error";
            call.reject(this.errorFor(code, message, error["data"]));
        } else {
            call.resolve(response["result"]);
        }
    }

    /** Bookkeeping for reconnects: which rooms to re-join, which messages were ours. */
    private async track(method: string, params: object, result: unknown): Promise<void> {
        const roomId = (params as { roomId?: unknown }).roomId;
        switch (method) {
            case "room.create": {
                const created = (result as { room?: { roomId?: unknown } }).room?.roomId;
                if (typeof created === "string") {
                    this.joinedRooms.add(created);
                    if (!this.lastSeq.has(created)) {
                        this.lastSeq.set(created, 0);
                    }
                }
                break;
            }
            case "room.join":
            case "room.takeOwnership":
                if (typeof roomId === "string") {
                    this.joinedRooms.add(roomId);
                    if (this.autoReconnect) {
                        await this.recordNewest(roomId);
                    }
                }
                break;
            case "room.leave":
            case "room.delete":
                if (typeof roomId === "string") {
                    this.forgetRoom(roomId);
                }
                break;
            case "message.send":
            case "message.dm": {
                const seq = (result as { seq?: unknown }).seq;
                if (typeof seq === "number") {
                    this.sentSeqs.add(seq);
                    if (this.sentSeqs.size > MAX_SENT_SEQS) {
                        const oldest = this.sentSeqs.values().next().value;
                        if (oldest !== undefined) {
                            this.sentSeqs.delete(oldest);
                        }
                    }
                }
                break;
            }
        }
    }

    /** Remembers a room's newest message as already seen, so a catch-up starts after it. */
    private async recordNewest(roomId: string): Promise<void> {
        try {
            const socket = this.socket;
            if (socket === null) {
                return;
            }
            const page = (await this.send(socket, "room.history", { roomId, limit: 1 }, Date.now() + this.requestTimeout)) as HistoryResult;
            this.advance(roomId, page.messages.at(-1)?.seq ?? 0);
        } catch {
            // Best effort: without it, a catch-up of this room starts at the next message seen.
        }
    }

    private forgetRoom(roomId: string): void {
        this.joinedRooms.delete(roomId);
        if (roomId !== this.lobbyId) {
            this.lastSeq.delete(roomId);
        }
    }

    private advance(roomId: string, seq: number): void {
        const last = this.lastSeq.get(roomId);
        if (last === undefined || seq > last) {
            this.lastSeq.set(roomId, seq);
        }
    }

    // ---- events ----

    private onEvent(name: string, params: unknown): void {
        if (name === "message" || name === "dm") {
            if (this.buffered !== null) {
                this.buffered.push({ name, params });
            } else {
                this.deliverLive(name, params);
            }
            return;
        }
        if (isRecord(params)) {
            if (name === "disconnected") {
                const reason = typeof params["reason"] === "string" ? params["reason"] : "";
                // `retry: true` (a shutdown): come back; otherwise (kick, ban, revoke) stay away.
                // Servers that predate `retry` name the shutdown only in the reason.
                const retry = typeof params["retry"] === "boolean" ? params["retry"] : reason === SHUTDOWN_REASON;
                if (!retry) {
                    this.stayDisconnected = true;
                    this.closeReason = `disconnected by the server: ${reason}`;
                }
            } else if ((name === "kicked" || name === "room.deleted") && typeof params["roomId"] === "string") {
                this.forgetRoom(params["roomId"]);
            } else if (name === "lobby.motd") {
                this.motd = typeof params["content"] === "string" ? params["content"] : null;
            }
        }
        this.emit(name, params);
    }

    /** Delivers a live `message`/`dm` unless a catch-up already delivered it. */
    private deliverLive(name: string, params: unknown): void {
        const roomId = name === "message" ? (params as MessageEvent).roomId : this.lobbyId;
        const seq = name === "message" ? (params as MessageEvent).message?.seq : (params as DmEvent).seq;
        if (typeof roomId === "string" && typeof seq === "number") {
            const last = this.lastSeq.get(roomId);
            if (last !== undefined && seq <= last) {
                return;
            }
            this.lastSeq.set(roomId, seq);
        }
        this.emit(name, params);
    }

    private flushBuffered(): void {
        const buffered = this.buffered ?? [];
        this.buffered = null;
        for (const { name, params } of buffered) {
            this.deliverLive(name, params);
        }
    }

    private async rejoin(): Promise<string[]> {
        const socket = this.socket;
        const rooms: string[] = [];
        for (const roomId of [...this.joinedRooms]) {
            if (socket === null) {
                throw new BroodLinkConnectionError("connection lost while re-joining rooms");
            }
            try {
                await this.send(socket, "room.join", { roomId }, Date.now() + this.requestTimeout);
                rooms.push(roomId);
            } catch (error) {
                if (!(error instanceof BroodLinkError)) {
                    throw error;
                }
                if (error.code === ALREADY_A_MEMBER) {
                    rooms.push(roomId);
                } else {
                    this.forgetRoom(roomId);
                }
            }
        }
        return rooms;
    }

    /**
     * Fetches what was sent while the client was away (every tracked room and the lobby,
     * `afterSeq` the last seen), then delivers it in `seq` order; returns how many.
     */
    private async catchUp(): Promise<number> {
        const socket = this.socket;
        const missed: Array<{ roomId: string; message: Message }> = [];
        for (const [roomId, since] of [...this.lastSeq]) {
            let after = since;
            for (;;) {
                if (socket === null) {
                    throw new BroodLinkConnectionError("connection lost while catching up");
                }
                let page: HistoryResult;
                try {
                    page = (await this.send(
                        socket,
                        "room.history",
                        { roomId, afterSeq: after, limit: CATCH_UP_PAGE },
                        Date.now() + this.requestTimeout,
                    )) as HistoryResult;
                } catch (error) {
                    if (!(error instanceof BroodLinkError)) {
                        throw error;
                    }
                    this.forgetRoom(roomId);
                    break;
                }
                for (const message of page.messages) {
                    after = Math.max(after, message.seq);
                    missed.push({ roomId, message });
                }
                if (!page.hasMore || page.messages.length === 0) {
                    break;
                }
            }
        }
        missed.sort((a, b) => a.message.seq - b.message.seq);
        let delivered = 0;
        for (const { roomId, message } of missed) {
            if (this.deliverMissed(roomId, message)) {
                delivered += 1;
            }
        }
        return delivered;
    }

    private deliverMissed(roomId: string, message: Message): boolean {
        const last = this.lastSeq.get(roomId);
        if (last !== undefined && message.seq <= last) {
            return false;
        }
        this.lastSeq.set(roomId, message.seq);
        if (this.sentSeqs.has(message.seq)) {
            return false;
        }
        if (typeof message.toAgentId === "string") {
            if (message.toAgentId !== this.agentId || message.senderId === this.agentId) {
                return false;
            }
            const dm: DmEvent = {
                fromAgentId: message.senderId,
                fromDisplayName: message.senderName,
                toAgentId: message.toAgentId,
                content: message.content,
                messageId: message.messageId,
                timestamp: message.timestamp,
                seq: message.seq,
            };
            this.emit("dm", dm);
            return true;
        }
        const event: MessageEvent = { roomId, message };
        this.emit("message", event);
        return true;
    }

    private emit(name: string, payload: unknown): void {
        for (const handler of [...(this.handlers.get(name) ?? [])]) {
            this.invoke(name, handler, [payload]);
        }
        for (const handler of [...(this.handlers.get("*") ?? [])]) {
            this.invoke(name, handler, [name, payload]);
        }
    }

    private invoke(name: string, handler: AnyHandler, args: unknown[]): void {
        try {
            const result = handler(...args);
            if (result !== undefined && typeof (result as Promise<void>).then === "function") {
                (result as Promise<void>).then(undefined, (error: unknown) => this.onHandlerError(error, name));
            }
        } catch (error) {
            this.onHandlerError(error, name);
        }
    }
}
