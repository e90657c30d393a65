// Shared helpers: start the real `broodlink` binary on a temp data dir and a free port,
// and small utilities for waiting on events.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "..", "..");
export const CLIENT_DIR = path.join(ROOT, "clients", "typescript");
export const BINARY = process.env.BROODLINK_BIN ?? path.join(ROOT, "target", "debug", "broodlink");

export function freePort() {
    return new Promise((resolve, reject) => {
        const server = createServer();
        server.unref();
        server.on("error", reject);
        server.listen(0, "127.0.0.1", () => {
            const { port } = server.address();
            server.close(() => resolve(port));
        });
    });
}

/**
 * A `broodlink serve --foreground` process on a temp data dir. `start()` resolves once it
 * listens; the first start also yields the controller key. `stop(signal)` ends it, and
 * `start()` again brings it back on the same data dir and port.
 */
export class Server {
    constructor({ config } = {}) {
        this.tempDir = mkdtempSync(path.join(tmpdir(), "broodlink-ts-"));
        this.dataDir = path.join(this.tempDir, "data");
        this.config = config;
        this.configFile = undefined;
        this.controllerKey = undefined;
        this.port = undefined;
        this.url = undefined;
        this.process = undefined;
        this.log = "";
    }

    async start() {
        this.port ??= await freePort();
        const args = ["serve", "--foreground", "--data-dir", this.dataDir, "--host", "127.0.0.1", "--port", String(this.port)];
        if (this.config !== undefined) {
            this.configFile ??= path.join(this.tempDir, "config.json");
            writeFileSync(this.configFile, JSON.stringify(this.config));
            args.push("--config", this.configFile);
        }
        const child = spawn(BINARY, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: "warn" } });
        this.process = child;
        let stdout = "";
        child.stderr.on("data", (chunk) => {
            this.log += chunk.toString();
        });
        await new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`server did not start in 15 s:\n${stdout}\n${this.log}`)), 15_000);
            child.on("error", (error) => {
                clearTimeout(timer);
                reject(error);
            });
            child.on("exit", (code) => {
                clearTimeout(timer);
                reject(new Error(`server exited with ${code} before listening:\n${stdout}\n${this.log}`));
            });
            child.stdout.on("data", (chunk) => {
                stdout += chunk.toString();
                const key = stdout.match(/^\s+(bl_k_ctrl_[0-9a-f]{48})\s*$/m);
                if (key) {
                    this.controllerKey ??= key[1];
                }
                const listening = stdout.match(/BroodLink listening on (ws:\/\/\S+)/);
                if (listening) {
                    clearTimeout(timer);
                    this.url = listening[1];
                    resolve();
                }
            });
        });
        child.removeAllListeners("exit");
        if (this.controllerKey === undefined) {
            throw new Error(`no controller key in the server's output:\n${stdout}`);
        }
        return this;
    }

    /** Stops the server (SIGTERM: graceful; SIGKILL: abrupt) and waits for it to exit. */
    async stop(signal = "SIGTERM") {
        const child = this.process;
        this.process = undefined;
        if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
            return;
        }
        await new Promise((resolve) => {
            child.once("exit", resolve);
            child.kill(signal);
        });
    }

    async dispose() {
        await this.stop("SIGKILL");
        rmSync(this.tempDir, { recursive: true, force: true });
    }
}

export function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `predicate` until it is true, failing after `timeout` ms. */
export async function until(predicate, { timeout = 5_000, what = "condition" } = {}) {
    const deadline = Date.now() + timeout;
    while (!predicate()) {
        if (Date.now() > deadline) {
            throw new Error(`timed out waiting for ${what}`);
        }
        await sleep(10);
    }
}

/** Resolves with the first `name` event matching `predicate`, or rejects after `timeout` ms. */
export function nextEvent(client, name, predicate = () => true, timeout = 5_000) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            off();
            reject(new Error(`no "${name}" event within ${timeout} ms`));
        }, timeout);
        const off = client.on(name, (event) => {
            if (predicate(event)) {
                clearTimeout(timer);
                off();
                resolve(event);
            }
        });
    });
}

/** Records every event a client receives, by name. */
export function recorder(client) {
    const events = [];
    client.on("*", (name, event) => {
        events.push({ name, event });
    });
    return {
        events,
        of: (name) => events.filter((e) => e.name === name).map((e) => e.event),
    };
}

/**
 * A TCP proxy in front of a server, for losing a frame on purpose: it can drop what clients
 * send (`dropRequests`) or what the server sends (`dropResponses`), `cut()` every connection
 * through it abruptly, and `refuse` new connections.
 */
export class Proxy {
    constructor(target) {
        this.target = target;
        this.dropRequests = false;
        this.dropResponses = false;
        this.refuse = false;
        this.connections = 0;
        this.sockets = new Set();
        this.server = undefined;
        this.url = undefined;
    }

    async start() {
        this.server = createServer((downstream) => {
            if (this.refuse) {
                downstream.resetAndDestroy();
                return;
            }
            this.connections += 1;
            const upstream = connect(this.target.port, "127.0.0.1");
            this.sockets.add(downstream);
            this.sockets.add(upstream);
            downstream.on("data", (data) => {
                if (!this.dropRequests) upstream.write(data);
            });
            upstream.on("data", (data) => {
                if (!this.dropResponses) downstream.write(data);
            });
            const end = () => {
                for (const socket of [downstream, upstream]) {
                    this.sockets.delete(socket);
                    socket.destroy();
                }
            };
            for (const socket of [downstream, upstream]) {
                socket.on("close", end);
                socket.on("error", end);
            }
        });
        await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
        this.url = `ws://127.0.0.1:${this.server.address().port}`;
        return this;
    }

    /** Resets every connection through the proxy (no close frame: the sockets just die). */
    cut() {
        for (const socket of this.sockets) {
            socket.resetAndDestroy();
        }
        this.sockets.clear();
    }

    async close() {
        this.cut();
        await new Promise((resolve) => this.server.close(resolve));
    }
}
