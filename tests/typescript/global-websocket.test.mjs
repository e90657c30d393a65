// Where a global `WebSocket` exists (browsers; Node with --experimental-websocket), the
// client uses it instead of `ws`: run a client in such a Node process against the server.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, test } from "node:test";

import { CLIENT_DIR, Server } from "./helpers.mjs";

const CHILD = `
const real = globalThis.WebSocket;
if (typeof real !== "function") throw new Error("no global WebSocket");
let constructed = 0;
globalThis.WebSocket = class extends real {
    constructor(...args) {
        super(...args);
        constructed += 1;
    }
};
const { BroodLinkClient } = await import(process.env.CLIENT_URL);
const client = new BroodLinkClient({ autoReconnect: false });
const motd = new Promise((resolve) => client.on("lobby.motd", (event) => resolve(event.content)));
await client.connect();
const rooms = await client.listRooms();
await client.setMotd("from the global WebSocket");
const content = await motd;
await client.close();
console.log(JSON.stringify({ constructed, role: client.role, rooms: rooms.rooms.length, content }));
`;

describe("global WebSocket", () => {
    const server = new Server();

    before(async () => {
        await server.start();
    });

    after(async () => {
        await server.dispose();
    });

    test("a global WebSocket is used when there is one", async () => {
        const child = spawn(process.execPath, ["--experimental-websocket", "--no-warnings", "--input-type=module", "-e", CHILD], {
            env: {
                ...process.env,
                CLIENT_URL: pathToFileURL(path.join(CLIENT_DIR, "dist", "broodlink_client.js")).href,
                BROODLINK_URL: server.url,
                BROODLINK_API_KEY: server.controllerKey,
            },
            stdio: ["ignore", "pipe", "pipe"],
        });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (chunk) => (stdout += chunk));
        child.stderr.on("data", (chunk) => (stderr += chunk));
        const code = await new Promise((resolve) => child.on("exit", resolve));
        assert.equal(code, 0, stderr);
        const result = JSON.parse(stdout.trim());
        assert.deepEqual(result, { constructed: 1, role: "controller", rooms: 1, content: "from the global WebSocket" });
    });
});
