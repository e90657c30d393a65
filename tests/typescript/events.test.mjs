// Every protocol event reaches a typed handler (and the catch-all), with a payload that
// matches its schema; handler failures never become unhandled rejections.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
    BroodLinkClient,
    BroodLinkConnectionError,
    EVENT_NAMES,
} from "../../clients/typescript/dist/broodlink_client.js";
import { Server, nextEvent, sleep, until } from "./helpers.mjs";
import { assertEvent } from "./schemas.mjs";

describe("events", () => {
    const server = new Server();
    const clients = [];
    /** Per event name: how many payloads typed handlers received (all clients). */
    const typed = new Map(EVENT_NAMES.map((name) => [name, 0]));
    /** Per event name: how many the catch-all handlers received. */
    const caught = new Map();
    let controller;
    let alice;
    let bob;
    let roomId;

    async function connected(options) {
        const client = new BroodLinkClient({ url: server.url, autoReconnect: false, ...options });
        clients.push(client);
        for (const name of EVENT_NAMES) {
            client.on(name, (event) => {
                assertEvent(name, event);
                typed.set(name, typed.get(name) + 1);
            });
        }
        client.on("*", (name, event) => {
            assert.ok(EVENT_NAMES.includes(name), name);
            assertEvent(name, event);
            caught.set(name, (caught.get(name) ?? 0) + 1);
        });
        await client.connect();
        return client;
    }

    before(async () => {
        await server.start();
        controller = await connected({ apiKey: server.controllerKey });
        const aliceKey = (await controller.inviteAgent("Alice")).apiKey;
        const bobKey = (await controller.inviteAgent("Bob")).apiKey;
        alice = await connected({ apiKey: aliceKey });
        bob = await connected({ apiKey: bobKey, autoReconnect: true, reconnectInitialDelay: 50 });
    });

    after(async () => {
        await Promise.all(clients.map((c) => c.close()));
        await server.dispose();
    });

    test("presence", async () => {
        // Bob connected after Alice: Alice saw him come online; Bob got a snapshot of Alice.
        await until(() => typed.get("presence") >= 2, { what: "presence events" });
    });

    test("room.created, room.joined, message", async () => {
        const created = nextEvent(bob, "room.created");
        roomId = (await alice.createRoom("events")).room.roomId;
        assert.equal((await created).roomId, roomId);

        const joined = nextEvent(alice, "room.joined", (e) => e.agentId === bob.agentId);
        await bob.joinRoom(roomId);
        assert.equal((await joined).roomId, roomId);

        const message = nextEvent(alice, "message");
        await bob.sendMessage(roomId, "hi Alice");
        const event = await message;
        // The README's handler, typed by the event map: event.message.senderName / .content.
        assert.equal(event.message.senderName, "Bob");
        assert.equal(event.message.content, "hi Alice");
        assert.equal(event.roomId, roomId);
    });

    test("dm and message.removed", async () => {
        const dm = nextEvent(alice, "dm");
        const sent = await bob.sendDm(alice.agentId, "secret");
        const event = await dm;
        assert.equal(event.content, "secret");
        assert.equal(event.fromAgentId, bob.agentId);
        assert.equal(event.seq, sent.seq);

        const removed = nextEvent(alice, "message.removed");
        await bob.removeMessage(sent.messageId, "typo");
        assert.equal((await removed).reason, "typo");
    });

    test("room.updated, room.visibilityChanged, room.invited, room.ownerChanged", async () => {
        const updated = nextEvent(bob, "room.updated");
        await alice.updateRoom(roomId, "events-2", "now described");
        assert.equal((await updated).name, "events-2");

        const visibility = nextEvent(bob, "room.visibilityChanged");
        await alice.setRoomVisibility(roomId, "private");
        assert.equal((await visibility).visibility, "private");

        const invited = nextEvent(controller, "room.invited");
        await alice.inviteToRoom(roomId, controller.agentId);
        assert.equal((await invited).byAgentId, alice.agentId);

        const owner = nextEvent(alice, "room.ownerChanged");
        await controller.takeRoomOwnership(roomId);
        assert.equal((await owner).newOwnerId, controller.agentId);
    });

    test("kicked, room.left, room.deleted", async () => {
        const kicked = nextEvent(bob, "kicked");
        const left = nextEvent(alice, "room.left", (e) => e.agentId === bob.agentId);
        await controller.kickFromRoom(roomId, bob.agentId, "out");
        assert.equal((await kicked).reason, "out");
        await left;

        const deleted = nextEvent(alice, "room.deleted");
        await controller.deleteRoom(roomId);
        assert.equal((await deleted).roomId, roomId);
    });

    test("lobby.motd (and client.motd follows it), docs.updated", async () => {
        const motd = nextEvent(alice, "lobby.motd");
        await controller.setMotd("Welcome");
        assert.equal((await motd).content, "Welcome");
        assert.equal(alice.motd, "Welcome");

        const docs = nextEvent(bob, "docs.updated");
        await controller.updateDoc("constitution", "# New rules");
        assert.equal((await docs).name, "constitution");
    });

    test("disconnected: a kicked client stops, even with auto-reconnect on", async () => {
        const disconnected = nextEvent(bob, "disconnected");
        await controller.kickAgent(bob.agentId, "bye");
        const farewell = await disconnected;
        assert.equal(farewell.reason, "bye");
        assert.equal(farewell.retry, false);
        await until(() => !bob.connected, { what: "Bob's connection to close" });
        await sleep(200);
        assert.equal(bob.connected, false);
        await assert.rejects(bob.listRooms(), (error) => {
            assert.ok(error instanceof BroodLinkConnectionError);
            assert.match(error.message, /bye/);
            return true;
        });
    });

    test("every event reached a typed handler and the catch-all", () => {
        const missing = EVENT_NAMES.filter((name) => typed.get(name) === 0);
        assert.deepEqual(missing, [], "events no typed handler received");
        assert.deepEqual(
            EVENT_NAMES.filter((name) => !caught.has(name)),
            [],
            "events the catch-all did not receive",
        );
    });

    test("handlers that throw or reject are reported, never unhandled", async () => {
        const reported = [];
        const client = new BroodLinkClient({
            url: server.url,
            apiKey: server.controllerKey,
            autoReconnect: false,
            onHandlerError: (error, name) => reported.push([name, error.message]),
        });
        clients.push(client);
        client.on("lobby.motd", () => {
            throw new Error("sync failure");
        });
        client.on("lobby.motd", async () => {
            throw new Error("async failure");
        });
        const off = client.on("*", (name) => {
            if (name === "lobby.motd") {
                throw new Error("catch-all failure");
            }
        });
        let count = 0;
        client.on("lobby.motd", () => {
            count += 1;
        });
        await client.connect();
        await controller.setMotd("again");
        await until(() => reported.length === 3 && count === 1, { what: "handler reports" });
        assert.deepEqual(reported.map(([, m]) => m).sort(), ["async failure", "catch-all failure", "sync failure"]);
        assert.ok(reported.every(([name]) => name === "lobby.motd"));
        off();
        await controller.setMotd("once more");
        await until(() => count === 2, { what: "second motd" });
        await until(() => reported.length === 5, { what: "reports after off()" });
        assert.ok(!reported.slice(3).some(([, m]) => m === "catch-all failure"));
    });
});
