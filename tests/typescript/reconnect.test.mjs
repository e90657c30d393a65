// Auto-reconnect against a real restart: the server is stopped (SIGTERM, then SIGKILL) and
// started again on the same data dir and port. The client reconnects by itself, re-joins
// its rooms, receives the messages sent while it was away and the new ones, once each, and
// calls made meanwhile wait for it.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
    AuthFailedError,
    BroodLinkClient,
    BroodLinkConnectionError,
} from "../../clients/typescript/dist/broodlink_client.js";
import { Server, nextEvent, until } from "./helpers.mjs";

describe("auto-reconnect", () => {
    const server = new Server();
    const clients = [];
    let watcher;
    let watcherKey;
    let roomId;
    let ownRoomId;
    /** Contents of the `message` events the watcher's handlers received, in order. */
    const messages = [];
    const messageIds = [];
    const dms = [];
    const reconnects = [];

    /** A sender that does not reconnect: a new one is made after each restart. */
    async function sender() {
        const client = new BroodLinkClient({ url: server.url, apiKey: server.controllerKey, autoReconnect: false });
        clients.push(client);
        await client.connect();
        return client;
    }

    before(async () => {
        await server.start();
        const controller = await sender();
        watcherKey = (await controller.inviteAgent("Watcher")).apiKey;
        roomId = (await controller.createRoom("ops")).room.roomId;

        watcher = new BroodLinkClient({
            url: server.url,
            apiKey: watcherKey,
            displayName: "Watcher (session)",
            // The first attempt comes 1.5–3 s after the drop: time for the test to send
            // messages while the watcher is away.
            reconnectInitialDelay: 3_000,
            reconnectMaxDelay: 3_000,
            requestTimeout: 15_000,
        });
        clients.push(watcher);
        watcher.on("message", (event) => {
            messages.push(event.message.content);
            messageIds.push(event.message.messageId);
        });
        watcher.on("dm", (event) => {
            dms.push(event.content);
        });
        watcher.on("reconnected", (event) => {
            reconnects.push(event);
        });
        await watcher.connect();
        await watcher.joinRoom(roomId);
        ownRoomId = (await watcher.createRoom("watcher's room")).room.roomId;

        const received = nextEvent(watcher, "message", (e) => e.message.content === "before");
        await controller.sendMessage(roomId, "before");
        await received;
        const dm = nextEvent(watcher, "dm");
        await controller.sendDm(watcher.agentId, "dm before");
        await dm;
        // The watcher's own message is never delivered back to it, not even by a catch-up.
        await watcher.sendMessage(roomId, "mine");
        await controller.close();
    });

    after(async () => {
        await Promise.all(clients.map((c) => c.close()));
        await server.dispose();
    });

    test("graceful restart (SIGTERM): reconnects, re-joins, catches up once, gets new events", async () => {
        const reconnected = nextEvent(watcher, "reconnected", () => true, 20_000);
        const goodbye = nextEvent(watcher, "disconnected");
        await server.stop("SIGTERM");
        // A shutdown's `disconnected` does not stop the client, unlike a kick's.
        const farewell = await goodbye;
        assert.equal(farewell.reason, "server shutting down");
        assert.equal(farewell.retry, true);
        await until(() => !watcher.connected, { what: "the watcher to notice" });
        // A call made while disconnected waits for the reconnection.
        const waiting = watcher.listRooms();

        await server.start();
        const controller = await sender();
        await controller.sendMessage(roomId, "away 1");
        await controller.sendMessage(roomId, "away 2");
        await controller.sendMessage(controller.lobbyId, "away lobby");
        await controller.sendDm(watcher.agentId, "dm away");
        await controller.joinRoom(ownRoomId);
        await controller.sendMessage(ownRoomId, "away own room");
        assert.equal(watcher.connected, false, "the watcher reconnected before the test could send while it was away");

        const event = await reconnected;
        assert.equal(event.missed, 5);
        assert.deepEqual([...event.rooms].sort(), [roomId, ownRoomId].sort());
        assert.equal(watcher.connected, true);
        assert.equal(watcher.displayName, "Watcher (session)");
        assert.ok((await waiting).rooms.some((r) => r.roomId === roomId));

        const live = nextEvent(watcher, "message", (e) => e.message.content === "after");
        await controller.sendMessage(roomId, "after");
        await live;
        const liveDm = nextEvent(watcher, "dm", (e) => e.content === "dm after");
        await controller.sendDm(watcher.agentId, "dm after");
        await liveDm;

        assert.deepEqual(messages, ["before", "away 1", "away 2", "away lobby", "away own room", "after"]);
        assert.deepEqual(dms, ["dm before", "dm away", "dm after"]);
        assert.equal(new Set(messageIds).size, messageIds.length);
        const members = (await watcher.roomInfo(roomId)).members.map((m) => m.agentId);
        assert.ok(members.includes(watcher.agentId));
    });

    test("abrupt restart (SIGKILL): reconnects again and catches up", async () => {
        const reconnected = nextEvent(watcher, "reconnected", () => true, 20_000);
        await server.stop("SIGKILL");
        await until(() => !watcher.connected, { what: "the watcher to notice" });
        await server.start();
        const controller = await sender();
        await controller.sendMessage(roomId, "away again");
        const event = await reconnected;
        assert.equal(event.missed, 1);

        const live = nextEvent(watcher, "message", (e) => e.message.content === "after again");
        await controller.sendMessage(roomId, "after again");
        await live;
        assert.deepEqual(messages.slice(-2), ["away again", "after again"]);
        assert.equal(new Set(messageIds).size, messageIds.length);
        assert.equal(reconnects.length, 2);
    });

    test("re-auth refused (revoked while away): it stops, and the waiting call fails with the reason", async () => {
        const controller = await sender();
        const doomed = new BroodLinkClient({
            url: server.url,
            apiKey: (await controller.inviteAgent("Doomed")).apiKey,
            reconnectInitialDelay: 3_000,
            reconnectMaxDelay: 3_000,
            requestTimeout: 15_000,
        });
        clients.push(doomed);
        await doomed.connect();
        const doomedId = doomed.agentId;
        await server.stop("SIGKILL");
        await until(() => !doomed.connected, { what: "the client to notice" });
        const waiting = doomed.getMotd();
        await server.start();
        await (await sender()).revokeAgent(doomedId);
        await assert.rejects(waiting, AuthFailedError);
        assert.equal(doomed.connected, false);
        const started = Date.now();
        await assert.rejects(doomed.getMotd(), BroodLinkConnectionError);
        assert.ok(Date.now() - started < 100);
    });

    test("messages the watcher sent itself are never replayed to it", () => {
        assert.ok(!messages.includes("mine"));
    });
});
