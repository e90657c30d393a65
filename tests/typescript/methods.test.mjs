// Every RPC method through its generated client method, against the real server; each
// result is checked against its schema in openrpc.json.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { BroodLinkClient, ForbiddenError } from "../../clients/typescript/dist/broodlink_client.js";
import { Server } from "./helpers.mjs";
import { assertResult, openrpc } from "./schemas.mjs";

describe("methods", () => {
    const server = new Server();
    const clients = [];
    let controller;
    let alice;
    let bob;
    let aliceKey;
    let bobKey;

    function client(options) {
        const c = new BroodLinkClient({ url: server.url, autoReconnect: false, ...options });
        clients.push(c);
        return c;
    }

    const called = new Set();
    function check(method, result) {
        called.add(method);
        return assertResult(method, result);
    }

    before(async () => {
        await server.start();
        controller = client({ apiKey: server.controllerKey });
        await controller.connect();
    });

    after(async () => {
        await Promise.all(clients.map((c) => c.close()));
        await server.dispose();
    });

    test("connect authenticates and sets the session's properties", async () => {
        assert.equal(controller.connected, true);
        assert.equal(controller.role, "controller");
        assert.equal(controller.isController, true);
        assert.equal(controller.isParticipant, false);
        assert.match(controller.agentId, /^[0-9a-f-]{36}$/);
        assert.match(controller.lobbyId, /^[0-9a-f-]{36}$/);
        assert.equal(controller.lobbyName, "Lobby");
        assert.equal(typeof controller.displayName, "string");
        assert.equal(controller.motd, null);
    });

    test("a history page over 64 KiB arrives whole, in one frame with the 8-byte length", async () => {
        const writer = client({ apiKey: check("agent.invite", await controller.inviteAgent("Long")).apiKey });
        await writer.connect();
        const roomId = (await writer.createRoom("long pages")).room.roomId;
        const contents = Array.from({ length: 12 }, (_, i) => `${String(i).padStart(2, "0")} ${"é".repeat(4000)}`);
        for (const content of contents) {
            await writer.sendMessage(roomId, content);
        }
        const page = await writer.roomHistory(roomId, 12);
        assert.deepEqual(page.messages.map((m) => m.content), contents);
    });

    test("agent group", async () => {
        const invitedAlice = check("agent.invite", await controller.inviteAgent("Alice"));
        assert.equal(invitedAlice.role, "participant");
        aliceKey = invitedAlice.apiKey;
        bobKey = check("agent.invite", await controller.inviteAgent("Bob")).apiKey;

        alice = client({ apiKey: aliceKey, displayName: "Alice (session)" });
        const auth = await alice.connect();
        assert.equal(auth.displayName, "Alice (session)");
        assert.equal(alice.displayName, "Alice (session)");
        assert.equal(alice.isParticipant, true);
        assert.equal(alice.isController, false);
        bob = client({ apiKey: bobKey });
        await bob.connect();
        assert.equal(bob.displayName, "Bob");

        const listed = check("agent.list", await controller.listAgents());
        const names = listed.agents.map((a) => a.displayName).sort();
        assert.ok(names.includes("Alice") && names.includes("Bob"), names.join());

        const throwaway = check("agent.invite", await controller.inviteAgent("Throwaway"));
        const kicked = check("agent.kick", await controller.kickAgent(throwaway.agentId, "testing"));
        assert.equal(kicked.disconnected, 0);
        check("agent.ban", await controller.banAgent(throwaway.agentId));
        check("agent.unban", await controller.unbanAgent(throwaway.agentId));
        const revoked = check("agent.revoke", await controller.revokeAgent(throwaway.agentId, "done"));
        assert.equal(revoked.ok, true);
    });

    test("room group", async () => {
        const created = check("room.create", await alice.createRoom("research", "private", "papers"));
        const roomId = created.room.roomId;
        assert.equal(created.room.visibility, "private");
        assert.equal(created.room.description, "papers");

        const rooms = check("room.list", await alice.listRooms());
        assert.equal(rooms.rooms[0].isLobby, true);
        assert.ok(rooms.rooms.some((r) => r.roomId === roomId));

        check("room.invite", await alice.inviteToRoom(roomId, bob.agentId));
        check("room.join", await bob.joinRoom(roomId));
        const info = check("room.info", await bob.roomInfo(roomId));
        assert.deepEqual(info.members.map((m) => m.displayName), ["Alice", "Bob"]);

        check("room.leave", await bob.leaveRoom(roomId));
        check("room.join", await bob.joinRoom(roomId));
        check("room.kick", await alice.kickFromRoom(roomId, bob.agentId, "enough"));
        const publicRoom = check("room.visibility", await alice.setRoomVisibility(roomId, "public"));
        assert.equal(publicRoom.room.visibility, "public");
        const renamed = check("room.update", await alice.updateRoom(roomId, "research-2"));
        assert.equal(renamed.room.name, "research-2");
        assert.equal(renamed.room.description, "papers");
        const described = check("room.update", await alice.updateRoom(roomId, undefined, "new description"));
        assert.equal(described.room.name, "research-2");
        assert.equal(described.room.description, "new description");

        await alice.sendMessage(roomId, "one");
        await alice.sendMessage(roomId, "two");
        const history = check("room.history", await alice.roomHistory(roomId));
        assert.deepEqual(history.messages.map((m) => m.content), ["one", "two"]);
        const newest = check("room.history", await alice.roomHistory(roomId, 1));
        assert.deepEqual(newest.messages.map((m) => m.content), ["two"]);
        assert.equal(newest.hasMore, true);
        const afterFirst = check(
            "room.history",
            await alice.roomHistory(roomId, undefined, undefined, undefined, history.messages[0].seq),
        );
        assert.deepEqual(afterFirst.messages.map((m) => m.content), ["two"]);

        const owned = check("room.takeOwnership", await controller.takeRoomOwnership(roomId));
        assert.equal(owned.room.ownerId, controller.agentId);
        check("room.delete", await controller.deleteRoom(roomId));
        const after = check("room.list", await alice.listRooms());
        assert.ok(!after.rooms.some((r) => r.roomId === roomId));
    });

    test("message group", async () => {
        const sent = check("message.send", await alice.sendMessage(alice.lobbyId, "hello lobby"));
        assert.equal(typeof sent.seq, "number");
        const dm = check("message.dm", await alice.sendDm(bob.agentId, "psst"));
        assert.ok(dm.seq > sent.seq);
        const removed = check("message.remove", await alice.removeMessage(sent.messageId, "oops"));
        assert.equal(removed.roomId, alice.lobbyId);
        const history = await bob.roomHistory(bob.lobbyId);
        const entry = history.messages.find((m) => m.messageId === sent.messageId);
        assert.equal(entry.content, "[removed]");
        assert.equal(entry.removed, true);
        assert.equal(entry.reason, "oops");
        const dmEntry = history.messages.find((m) => m.messageId === dm.messageId);
        assert.equal(dmEntry.toAgentId, bob.agentId);
    });

    test("lobby group", async () => {
        const set = check("lobby.setMotd", await controller.setMotd("Be kind"));
        assert.equal(set.motd, "Be kind");
        const got = check("lobby.getMotd", await alice.getMotd());
        assert.equal(got.motd, "Be kind");
        const cleared = check("lobby.setMotd", await controller.setMotd());
        assert.equal(cleared.motd ?? null, null);
    });

    test("docs group", async () => {
        const docs = check("docs.list", await alice.listDocs());
        const names = docs.docs.map((d) => d.name);
        assert.ok(names.includes("constitution") && names.includes("protocol"), names.join());
        const protocol = check("docs.get", await alice.getDoc("protocol"));
        assert.match(protocol.content, /BroodLink protocol reference/);
        const updated = check("docs.update", await controller.updateDoc("constitution", "# Rules\nBe kind.", "2.0"));
        assert.equal(updated.version, "2.0");
        const constitution = check("docs.get", await bob.getDoc("constitution"));
        assert.equal(constitution.content, "# Rules\nBe kind.");
    });

    test("ping answers with the server's clock", async () => {
        // The server's clock is this machine's; a second of slack for a clock step.
        const before = Date.now() - 1000;
        const pong = check("ping", await alice.ping());
        assert.ok(before <= pong.timestamp && pong.timestamp <= Date.now() + 1000, String(pong.timestamp));
    });

    test("auth: the generated method reaches the server (a second auth is refused)", async () => {
        await assert.rejects(controller.auth(server.controllerKey), ForbiddenError);
        called.add("auth");
    });

    test("call() reaches any method by its wire name", async () => {
        const rooms = await alice.call("room.list", {});
        assertResult("room.list", rooms);
    });

    test("every method of openrpc.json was called", () => {
        const missing = openrpc.methods.map((m) => m.name).filter((name) => !called.has(name));
        assert.deepEqual(missing, []);
    });

    test("several clients for several servers in one process, configured by environment too", async () => {
        const other = new Server();
        await other.start();
        try {
            const saved = { url: process.env.BROODLINK_URL, key: process.env.BROODLINK_API_KEY };
            process.env.BROODLINK_URL = other.url;
            process.env.BROODLINK_API_KEY = other.controllerKey;
            const fromEnv = new BroodLinkClient({ autoReconnect: false });
            if (saved.url === undefined) delete process.env.BROODLINK_URL;
            else process.env.BROODLINK_URL = saved.url;
            if (saved.key === undefined) delete process.env.BROODLINK_API_KEY;
            else process.env.BROODLINK_API_KEY = saved.key;
            clients.push(fromEnv);
            assert.equal(fromEnv.url, other.url);
            await fromEnv.connect();
            assert.equal(fromEnv.isController, true);
            assert.notEqual(fromEnv.lobbyId, controller.lobbyId);
            await fromEnv.createRoom("only-on-the-other-server");
            const here = await controller.listRooms();
            assert.ok(!here.rooms.some((r) => r.name === "only-on-the-other-server"));
            await fromEnv.close();
            assert.equal(fromEnv.connected, false);
        } finally {
            await other.dispose();
        }
    });
});
