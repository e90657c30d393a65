// Idempotent sends against the real server: `sendMessage` and `sendDm` carry a `clientMsgId`
// (a fresh UUID unless the caller gives one), and a send that a dropped connection left
// without its answer is re-sent with the same id once the client has reconnected, so the
// server stores it exactly once and the caller gets its result. A TCP proxy (helpers.mjs)
// loses a request or an answer on purpose; other tests kill or restart the server while
// sends are in flight.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";

import {
    BroodLinkClient,
    BroodLinkConnectionError,
    BroodLinkTimeoutError,
    IDEMPOTENCY_KEY,
    IDEMPOTENT_METHODS,
    RateLimitedError,
    errorFromCode,
} from "../../clients/typescript/dist/broodlink_client.js";
import { WebSocket as NodeWebSocket } from "../../clients/typescript/node_modules/ws/wrapper.mjs";
import { Proxy, Server, sleep, until } from "./helpers.mjs";

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
/** Reconnect at once: these tests are about what happens to the calls, not the backoff. */
const FAST = { reconnectInitialDelay: 50, reconnectMaxDelay: 200 };

/** Every message of a room after `afterSeq`, oldest first (following `hasMore`). */
async function messagesIn(client, roomId, afterSeq = 0) {
    const messages = [];
    for (;;) {
        const page = await client.roomHistory(roomId, 100, undefined, undefined, afterSeq);
        messages.push(...page.messages);
        if (!page.hasMore || page.messages.length === 0) {
            return messages;
        }
        afterSeq = page.messages.at(-1).seq;
    }
}

/**
 * The outcome of a call, as `{ value }` or `{ error }`: a call that fails early is then no
 * unhandled rejection (which would end the test while it is still running).
 */
function settle(promise) {
    return promise.then(
        (value) => ({ value }),
        (error) => ({ error }),
    );
}

/** The value of a settled call, or the assertion error naming why it failed. */
function valueOf(outcome) {
    assert.ok(!("error" in outcome), `the call failed: ${outcome.error}`);
    return outcome.value;
}

async function newestSeq(client, roomId) {
    return (await client.roomHistory(roomId, 1)).messages.at(-1)?.seq ?? 0;
}

/** Records the contents of the `message` and `dm` events a client's handlers receive. */
function record(client) {
    const seen = { message: [], dm: [], reconnected: 0 };
    client.on("message", (event) => seen.message.push(event.message.content));
    client.on("dm", (event) => seen.dm.push(event.content));
    client.on("reconnected", () => {
        seen.reconnected += 1;
    });
    return seen;
}

describe("idempotent sends", () => {
    const server = new Server();
    const clients = [];
    let admin;
    let proxy;

    function client(options) {
        const c = new BroodLinkClient({ url: server.url, ...options });
        clients.push(c);
        return c;
    }

    async function newKey(name) {
        return (await admin.inviteAgent(name)).apiKey;
    }

    before(async () => {
        await server.start();
        admin = client({ apiKey: server.controllerKey, autoReconnect: false });
        await admin.connect();
        proxy = await new Proxy(server).start();
    });

    afterEach(() => {
        proxy.dropRequests = false;
        proxy.dropResponses = false;
        proxy.refuse = false;
    });

    after(async () => {
        await Promise.all(clients.map((c) => c.close()));
        await proxy.close();
        await server.dispose();
    });

    test("the generated client names the idempotent methods", () => {
        assert.equal(IDEMPOTENCY_KEY, "clientMsgId");
        assert.deepEqual([...IDEMPOTENT_METHODS].sort(), ["message.dm", "message.send"]);
    });

    test("a send without clientMsgId puts a fresh UUID on the wire", async () => {
        const frames = [];
        class Spy extends NodeWebSocket {
            send(data, ...rest) {
                frames.push(JSON.parse(data));
                return super.send(data, ...rest);
            }
        }
        const alice = client({ apiKey: await newKey("Alice"), WebSocket: Spy, autoReconnect: false });
        await alice.connect();
        const first = await alice.sendMessage(alice.lobbyId, "first");
        await alice.sendMessage(alice.lobbyId, "second");
        await alice.sendDm(admin.agentId, "a DM");
        await alice.sendMessage(alice.lobbyId, "mine", "my-own-id");
        await alice.call("message.send", { roomId: alice.lobbyId, content: "by wire name" });
        await alice.listRooms();

        const params = new Map(frames.map((f) => [f.params.content ?? f.method, f.params]));
        const ids = ["first", "second", "a DM", "by wire name"].map((content) => params.get(content).clientMsgId);
        for (const id of ids) {
            assert.match(id, UUID4);
        }
        assert.equal(new Set(ids).size, ids.length);
        assert.equal(params.get("mine").clientMsgId, "my-own-id");
        assert.equal("clientMsgId" in params.get("room.list"), false);
        // The id on the wire is the one the server keeps: sending with it again stores nothing.
        assert.deepEqual(await alice.sendMessage(alice.lobbyId, "first", ids[0]), first);
    });

    test("the same clientMsgId twice is stored once", async () => {
        const alice = client({ apiKey: await newKey("Alice"), autoReconnect: false });
        await alice.connect();
        const roomId = (await alice.createRoom(`idempotent ${randomUUID()}`)).room.roomId;
        const key = randomUUID();
        const first = await alice.sendMessage(roomId, "once", key);
        assert.deepEqual(await alice.sendMessage(roomId, "once", key), first);
        assert.deepEqual(
            (await messagesIn(admin, roomId)).map((m) => [m.messageId, m.content]),
            [[first.messageId, "once"]],
        );
        const since = await newestSeq(admin, admin.lobbyId);
        const dmKey = randomUUID();
        const dm = await alice.sendDm(admin.agentId, `dm ${dmKey}`, dmKey);
        assert.deepEqual(await alice.sendDm(admin.agentId, `dm ${dmKey}`, dmKey), dm);
        const stored = (await messagesIn(admin, admin.lobbyId, since)).filter((m) => m.content === `dm ${dmKey}`);
        assert.deepEqual(
            stored.map((m) => m.messageId),
            [dm.messageId],
        );
    });

    for (const method of ["message.send", "message.dm"]) {
        for (const lost of ["request", "answer"]) {
            test(`${method}: the ${lost} is lost and the connection cut; it is re-sent with its id and stored once`, async () => {
                const received = record(admin);
                const sender = client({ url: proxy.url, apiKey: await newKey("Sender"), ...FAST });
                const seen = record(sender);
                await sender.connect();
                const roomId = (await sender.createRoom(`resend ${randomUUID()}`)).room.roomId;
                await admin.joinRoom(roomId);
                const where = method === "message.send" ? roomId : admin.lobbyId;
                const since = await newestSeq(admin, where);
                const content = `${method} ${lost} ${randomUUID()}`;
                const stored = async () => (await messagesIn(admin, where, since)).filter((m) => m.content === content);

                if (lost === "request") {
                    proxy.dropRequests = true;
                } else {
                    proxy.dropResponses = true;
                }
                let settled = false;
                const sending = settle(
                    method === "message.send" ? sender.sendMessage(roomId, content) : sender.sendDm(admin.agentId, content),
                ).finally(() => {
                    settled = true;
                });
                if (lost === "answer") {
                    const deadline = Date.now() + 5_000;
                    while ((await stored()).length === 0) {
                        assert.ok(Date.now() < deadline, "the message was not stored");
                        await sleep(20);
                    }
                } else {
                    await sleep(300);
                    assert.deepEqual(await stored(), []);
                }
                assert.equal(settled, false);

                proxy.cut();
                proxy.dropRequests = false;
                proxy.dropResponses = false;
                const result = valueOf(await sending);
                await until(() => seen.reconnected === 1, { what: "the reconnect" });

                const messages = await stored();
                assert.equal(messages.length, 1);
                assert.deepEqual(
                    { messageId: messages[0].messageId, timestamp: messages[0].timestamp, seq: messages[0].seq },
                    result,
                );
                // The recipient got it once; the sender's own handlers never did (the catch-up
                // after the reconnect knew it as the sender's own).
                const event = method === "message.send" ? "message" : "dm";
                await until(() => received[event].includes(content), { what: "the recipient's event" });
                await sleep(200);
                assert.equal(received[event].filter((c) => c === content).length, 1);
                assert.ok(![...seen.message, ...seen.dm].includes(content));
            });
        }
    }

    test("a send not re-sent within requestTimeout fails with BroodLinkTimeoutError, and is not sent later", async () => {
        const sender = client({ url: proxy.url, apiKey: await newKey("Sender"), requestTimeout: 1_000, ...FAST });
        const seen = record(sender);
        await sender.connect();
        const roomId = (await sender.createRoom(`timeout ${randomUUID()}`)).room.roomId;
        proxy.dropRequests = true;
        const started = Date.now();
        const sending = sender.sendMessage(roomId, "never answered");
        await sleep(200);
        proxy.refuse = true; // the reconnect cannot happen in time
        proxy.cut();
        proxy.dropRequests = false;
        await assert.rejects(sending, (error) => {
            assert.ok(error instanceof BroodLinkTimeoutError, String(error));
            assert.match(error.message, /message\.send/);
            return true;
        });
        const took = Date.now() - started;
        assert.ok(took >= 900 && took < 2_000, `${took} ms`);
        assert.equal(sender.outbox.size, 0);

        proxy.refuse = false;
        await until(() => seen.reconnected === 1, { what: "the reconnect", timeout: 10_000 });
        await sender.sendMessage(roomId, "after");
        assert.deepEqual(
            (await messagesIn(admin, roomId)).map((m) => m.content),
            ["after"],
        );
    });

    test("close() fails a send waiting to be re-sent", async () => {
        const sender = client({ url: proxy.url, apiKey: await newKey("Sender"), ...FAST });
        await sender.connect();
        proxy.dropResponses = true;
        const sending = sender.sendMessage(sender.lobbyId, "closing");
        await sleep(200);
        proxy.refuse = true;
        proxy.cut();
        proxy.dropResponses = false;
        await until(() => sender.outbox.size === 1, { what: "the send to wait for the reconnect" });
        const failed = assert.rejects(sending, (error) => error instanceof BroodLinkConnectionError && /closed/.test(error.message));
        await sender.close();
        await failed;
    });

    test("without autoReconnect, a send whose answer was lost fails with BroodLinkConnectionError", async () => {
        const sender = client({ url: proxy.url, apiKey: await newKey("Sender"), autoReconnect: false });
        await sender.connect();
        proxy.dropResponses = true;
        const sending = sender.sendMessage(sender.lobbyId, "no second chance");
        await sleep(200);
        proxy.cut();
        proxy.dropResponses = false;
        await assert.rejects(sending, BroodLinkConnectionError);
        assert.equal(sender.outbox.size, 0);
    });
});

for (const signal of ["SIGKILL", "SIGTERM"]) {
    describe(`sends in flight when the server goes down (${signal})`, () => {
        const server = new Server();
        let sender;

        before(async () => {
            await server.start();
        });

        after(async () => {
            await sender?.close();
            await server.dispose();
        });

        test("every awaited send resolves, and each message is stored once, in order", async () => {
            sender = new BroodLinkClient({ url: server.url, apiKey: server.controllerKey, ...FAST });
            let reconnected = 0;
            sender.on("reconnected", () => {
                reconnected += 1;
            });
            await sender.connect();
            const roomId = (await sender.createRoom("in flight")).room.roomId;
            const texts = Array.from({ length: 100 }, (_, i) => `in flight ${i}`);
            let done = 0;
            const sends = texts.map((text) =>
                settle(sender.sendMessage(roomId, text)).finally(() => {
                    done += 1;
                }),
            );
            await until(() => done >= 10, { what: "the first answers", timeout: 10_000 });
            // Frozen, the server reads nothing more: these are written and certainly unanswered.
            server.process.kill("SIGSTOP");
            for (let i = 100; i < 120; i += 1) {
                texts.push(`in flight ${i}`);
                sends.push(settle(sender.sendMessage(roomId, `in flight ${i}`)));
            }
            await sleep(200);
            if (signal === "SIGTERM") {
                server.process.kill("SIGCONT"); // a graceful shutdown, while they are in flight
            }
            await server.stop(signal);
            await until(() => !sender.connected, { what: "the client to notice" });
            const waiting = sender.outbox.size;
            if (signal === "SIGKILL") {
                assert.ok(waiting >= 20, `${waiting} sends wait to be re-sent`);
            }
            await server.start();

            const results = (await Promise.all(sends)).map(valueOf);
            await until(() => reconnected === 1, { what: "the reconnect" });
            assert.equal(new Set(results.map((r) => r.messageId)).size, texts.length);
            const stored = await messagesIn(sender, roomId);
            // Each message once, in the order it was sent, and each caller got its own result.
            assert.deepEqual(
                stored.map((m) => m.content),
                texts,
            );
            assert.deepEqual(
                stored.map((m) => m.messageId),
                results.map((r) => r.messageId),
            );
        });
    });
}

describe("rate limits", () => {
    const server = new Server({ config: { limits: { sendsPerSecond: 0.5, sendBurst: 1 } } });
    let client;

    before(async () => {
        await server.start();
    });

    after(async () => {
        await client?.close();
        await server.dispose();
    });

    test("a rate-limited send is not retried, and the error says when to retry", async () => {
        client = new BroodLinkClient({ url: server.url, apiKey: server.controllerKey });
        await client.connect();
        const roomId = (await client.createRoom("limited")).room.roomId;
        await client.sendMessage(roomId, "first");
        const started = Date.now();
        await assert.rejects(client.sendMessage(roomId, "second"), (error) => {
            assert.ok(error instanceof RateLimitedError, String(error));
            assert.equal(error.code, 4080);
            assert.equal(typeof error.retryAfterMs, "number");
            assert.ok(error.retryAfterMs > 0 && error.retryAfterMs <= 2_000, String(error.retryAfterMs));
            assert.deepEqual(error.data, { retryAfterMs: error.retryAfterMs });
            return true;
        });
        assert.ok(Date.now() - started < 500);
        assert.deepEqual(
            (await messagesIn(client, roomId)).map((m) => m.content),
            ["first"],
        );
    });

    test("retryAfterMs reads data.retryAfterMs of any error", () => {
        assert.equal(errorFromCode(4080, "slow down", { retryAfterMs: 250 }).retryAfterMs, 250);
        assert.equal(errorFromCode(4080, "slow down").retryAfterMs, undefined);
        assert.equal(errorFromCode(4010, "no room", { retryAfterMs: "soon" }).retryAfterMs, undefined);
    });
});
