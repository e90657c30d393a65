// Each error class: the server's error codes reach callers as their named subclass of
// BroodLinkError (with code, message, data); connection problems and timeouts have their own.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";

import * as generated from "../../clients/typescript/dist/broodlink_client.js";
import { Server } from "./helpers.mjs";

const {
    AgentBannedError,
    AgentNotFoundError,
    AlreadyAMemberError,
    AlreadyRemovedError,
    AuthFailedError,
    BroodLinkClient,
    BroodLinkConnectionError,
    BroodLinkError,
    BroodLinkTimeoutError,
    CannotModifyLobbyError,
    DocumentNotFoundError,
    ErrorCodes,
    ForbiddenError,
    InvalidParamsError,
    MessageNotFoundError,
    MessageTooLongError,
    MethodNotFoundError,
    NotAMemberError,
    NotInvitedError,
    ReadOnlyDocumentError,
    RoomLimitError,
    RoomNotFoundError,
    errorFromCode,
} = generated;

/** Asserts that `promise` rejects with `ErrorClass`, a BroodLinkError with that class's code. */
async function rejectsWith(promise, ErrorClass, seen) {
    await assert.rejects(promise, (error) => {
        assert.ok(error instanceof ErrorClass, `expected ${ErrorClass.name}, got ${error?.name}: ${error?.message}`);
        assert.ok(error instanceof BroodLinkError);
        assert.ok(error instanceof Error);
        assert.equal(error.code, ErrorClass.code);
        assert.equal(error.name, ErrorClass.name);
        assert.equal(typeof error.message, "string");
        assert.ok(error.message.length > 0);
        return true;
    });
    seen.add(ErrorClass.code);
}

describe("errors", () => {
    const server = new Server({ config: { maxRooms: 1, maxMessageLength: 50 } });
    const clients = [];
    const seen = new Set();
    let controller;
    let alice;
    let bob;

    function client(options) {
        const c = new BroodLinkClient({ url: server.url, autoReconnect: false, ...options });
        clients.push(c);
        return c;
    }

    before(async () => {
        await server.start();
        controller = client({ apiKey: server.controllerKey });
        await controller.connect();
        alice = client({ apiKey: (await controller.inviteAgent("Alice")).apiKey });
        bob = client({ apiKey: (await controller.inviteAgent("Bob")).apiKey });
        await alice.connect();
        await bob.connect();
    });

    after(async () => {
        await Promise.all(clients.map((c) => c.close()));
        await server.dispose();
    });

    test("AuthFailedError: connect with an unknown key", async () => {
        const stranger = client({ apiKey: `bl_k_${"0".repeat(48)}` });
        await rejectsWith(stranger.connect(), AuthFailedError, seen);
        assert.equal(stranger.connected, false);
    });

    test("AgentBannedError: connect as a banned agent", async () => {
        const invited = await controller.inviteAgent("Banned");
        await controller.banAgent(invited.agentId);
        await rejectsWith(client({ apiKey: invited.apiKey }).connect(), AgentBannedError, seen);
    });

    test("ForbiddenError: a participant calls a controller method", async () => {
        await rejectsWith(alice.listAgents(), ForbiddenError, seen);
    });

    test("room errors: RoomNotFound, NotInvited, AlreadyAMember, NotAMember, CannotModifyLobby, RoomLimit", async () => {
        await rejectsWith(alice.roomInfo(randomUUID()), RoomNotFoundError, seen);
        const room = (await alice.createRoom("secret", "private")).room;
        await rejectsWith(bob.joinRoom(room.roomId), NotInvitedError, seen);
        await rejectsWith(alice.joinRoom(alice.lobbyId), AlreadyAMemberError, seen);
        await alice.setRoomVisibility(room.roomId, "public");
        await rejectsWith(bob.sendMessage(room.roomId, "let me in"), NotAMemberError, seen);
        await rejectsWith(alice.leaveRoom(alice.lobbyId), CannotModifyLobbyError, seen);
        await rejectsWith(bob.createRoom("one too many"), RoomLimitError, seen);
    });

    test("AgentNotFoundError: DM to nobody", async () => {
        await rejectsWith(alice.sendDm(randomUUID(), "anyone?"), AgentNotFoundError, seen);
    });

    test("message errors: MessageTooLong, MessageNotFound, AlreadyRemoved", async () => {
        await rejectsWith(alice.sendMessage(alice.lobbyId, "x".repeat(51)), MessageTooLongError, seen);
        await rejectsWith(alice.removeMessage(randomUUID()), MessageNotFoundError, seen);
        const sent = await alice.sendMessage(alice.lobbyId, "short");
        await alice.removeMessage(sent.messageId);
        await rejectsWith(alice.removeMessage(sent.messageId), AlreadyRemovedError, seen);
    });

    test("document errors: DocumentNotFound, ReadOnlyDocument", async () => {
        await rejectsWith(alice.getDoc("no-such-doc"), DocumentNotFoundError, seen);
        await rejectsWith(controller.updateDoc("protocol", "nope"), ReadOnlyDocumentError, seen);
    });

    test("InvalidParamsError names the param; MethodNotFoundError", async () => {
        await assert.rejects(alice.sendMessage(alice.lobbyId, ""), (error) => {
            assert.ok(error instanceof InvalidParamsError);
            assert.equal(error.code, -32602);
            assert.match(error.message, /content/);
            return true;
        });
        seen.add(-32602);
        await assert.rejects(alice.call("room.join", {}), (error) => {
            assert.ok(error instanceof InvalidParamsError);
            assert.match(error.message, /roomId/);
            assert.notEqual(error.data, undefined);
            return true;
        });
        await rejectsWith(alice.call("no.such.method", {}), MethodNotFoundError, seen);
    });

    test("every error code maps to its class (those the client cannot provoke included)", () => {
        for (const [ident, code] of Object.entries(ErrorCodes)) {
            const error = errorFromCode(code, `message ${ident}`, { detail: 1 });
            assert.ok(error instanceof BroodLinkError);
            assert.equal(error.constructor.code, code);
            assert.equal(error.code, code);
            assert.equal(error.message, `message ${ident}`);
            assert.deepEqual(error.data, { detail: 1 });
            assert.equal(error.name, ident.endsWith("Error") ? ident : `${ident}Error`);
            const fresh = new error.constructor();
            assert.equal(fresh.code, code);
            assert.ok(fresh.message.length > 0);
        }
        const unknown = errorFromCode(4999, "later protocol version");
        assert.equal(unknown.constructor, BroodLinkError);
        assert.equal(unknown.code, 4999);
        // Codes provoked against the real server above:
        const provoked = [...seen].sort((a, b) => a - b);
        assert.deepEqual(provoked, [-32602, -32601, 4002, 4003, 4004, 4010, 4011, 4012, 4013, 4020, 4030, 4040, 4050, 4060, 4061, 4070, 4071].sort((a, b) => a - b));
    });

    test("BroodLinkConnectionError: before connect, after close", async () => {
        const idle = client({ apiKey: server.controllerKey });
        await assert.rejects(idle.listRooms(), BroodLinkConnectionError);
        await idle.connect();
        await idle.close();
        await assert.rejects(idle.listRooms(), BroodLinkConnectionError);
        const noKey = new BroodLinkClient({ url: server.url, apiKey: undefined });
        if (process.env.BROODLINK_API_KEY === undefined) {
            await assert.rejects(noKey.connect(), /API key/);
        }
        const nowhere = client({ apiKey: server.controllerKey, url: "ws://127.0.0.1:9" });
        await assert.rejects(nowhere.connect(), BroodLinkConnectionError);
    });

    test("BroodLinkTimeoutError: the server does not answer in time", async () => {
        const slow = client({ apiKey: server.controllerKey, requestTimeout: 300 });
        await slow.connect();
        server.process.kill("SIGSTOP");
        try {
            const started = Date.now();
            await assert.rejects(slow.listRooms(), BroodLinkTimeoutError);
            assert.ok(Date.now() - started < 2_000);
        } finally {
            server.process.kill("SIGCONT");
        }
        assert.ok((await slow.listRooms()).rooms.length >= 1);
    });

    test("without auto-reconnect, a call after the connection dropped fails at once", async () => {
        const plain = client({ apiKey: server.controllerKey });
        await plain.connect();
        const reconnecting = client({ apiKey: server.controllerKey, autoReconnect: true, requestTimeout: 400, reconnectInitialDelay: 5_000 });
        await reconnecting.connect();
        await server.stop("SIGKILL");
        try {
            await new Promise((resolve) => setTimeout(resolve, 100));
            assert.equal(plain.connected, false);
            let started = Date.now();
            await assert.rejects(plain.getMotd(), BroodLinkConnectionError);
            assert.ok(Date.now() - started < 100);
            // With auto-reconnect, the call waits for the reconnection, then fails clearly.
            started = Date.now();
            await assert.rejects(reconnecting.getMotd(), (error) => {
                assert.ok(error instanceof BroodLinkConnectionError);
                assert.match(error.message, /not connected/);
                return true;
            });
            assert.ok(Date.now() - started >= 300);
        } finally {
            await server.start();
        }
    });
});
