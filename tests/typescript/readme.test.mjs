// The usage example of clients/typescript/README.md (the spec's TypeScript example), run
// verbatim but for the server URL and key: type-checked with `tsc --strict` against the
// built client (together with the type-level checks in fixtures/typing.ts), compiled, and
// run as its own Node process against the real server.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { BroodLinkClient } from "../../clients/typescript/dist/broodlink_client.js";
import { CLIENT_DIR, HERE, Server, nextEvent, until } from "./helpers.mjs";

/** The first ```ts block under "## Usage". */
function readmeExample() {
    const readme = readFileSync(path.join(CLIENT_DIR, "README.md"), "utf8");
    const usage = readme.slice(readme.indexOf("## Usage"));
    const match = usage.match(/```ts\n([\s\S]*?)```/);
    assert.ok(match, "no ```ts block under ## Usage in the README");
    return match[1];
}

describe("README example", () => {
    const server = new Server();
    const dir = mkdtempSync(path.join(tmpdir(), "broodlink-readme-"));
    let child;
    let observer;

    before(async () => {
        await server.start();
        // The example imports "./broodlink_client.js": put the built client beside it.
        for (const file of readdirSync(path.join(CLIENT_DIR, "dist"))) {
            copyFileSync(path.join(CLIENT_DIR, "dist", file), path.join(dir, file));
        }
        symlinkSync(path.join(CLIENT_DIR, "node_modules"), path.join(dir, "node_modules"), "dir");
        writeFileSync(path.join(dir, "package.json"), JSON.stringify({ type: "module" }));
        writeFileSync(
            path.join(dir, "tsconfig.json"),
            JSON.stringify({
                compilerOptions: {
                    strict: true,
                    target: "ES2022",
                    module: "NodeNext",
                    moduleResolution: "NodeNext",
                    types: ["node"],
                    skipLibCheck: true,
                },
                files: ["example.ts", "typing.ts"],
            }),
        );
    });

    after(async () => {
        child?.kill("SIGKILL");
        await observer?.close();
        await server.dispose();
        rmSync(dir, { recursive: true, force: true });
    });

    test("the example is the spec's, with only the URL and key to adapt", () => {
        const example = readmeExample();
        assert.match(example, /^import \{ BroodLinkClient \} from "\.\/broodlink_client\.js";$/m);
        assert.match(example, /url: "ws:\/\/your-server:18800",/);
        assert.match(example, /apiKey: "bl_k_ctrl_your_key_here",/);
        assert.match(example, /client\.on\("message", \(event\) => \{/);
        assert.match(example, /await client\.sendMessage\(client\.lobbyId!, "Hello from TypeScript!"\);/);
    });

    test("type-checks with strict: true (with fixtures/typing.ts) and runs against the real server", async () => {
        const example = readmeExample()
            .replace("ws://your-server:18800", server.url)
            .replace("bl_k_ctrl_your_key_here", server.controllerKey);
        writeFileSync(path.join(dir, "example.ts"), example);
        // Also type-level checks of the generated API (fixtures/typing.ts).
        copyFileSync(path.join(HERE, "fixtures", "typing.ts"), path.join(dir, "typing.ts"));
        const tsc = spawnSync(process.execPath, [path.join(CLIENT_DIR, "node_modules", "typescript", "bin", "tsc"), "-p", dir], {
            encoding: "utf8",
        });
        assert.equal(tsc.status, 0, `tsc failed:\n${tsc.stdout}\n${tsc.stderr}`);

        // Someone in the lobby to watch the example's message and to answer it.
        const controller = new BroodLinkClient({ url: server.url, apiKey: server.controllerKey, autoReconnect: false });
        await controller.connect();
        const key = (await controller.inviteAgent("Observer")).apiKey;
        await controller.close();
        observer = new BroodLinkClient({ url: server.url, apiKey: key, autoReconnect: false });
        await observer.connect();
        const hello = nextEvent(observer, "message", (e) => e.message.content === "Hello from TypeScript!", 10_000);

        let output = "";
        child = spawn(process.execPath, [path.join(dir, "example.js")], { stdio: ["ignore", "pipe", "pipe"] });
        child.stdout.on("data", (chunk) => {
            output += chunk.toString();
        });
        child.stderr.on("data", (chunk) => {
            output += chunk.toString();
        });
        const event = await hello;
        assert.match(output, /^Connected as .+ \(controller\)$/m);
        assert.equal(event.roomId, observer.lobbyId);

        // The example's handler prints what others send.
        await observer.sendMessage(observer.lobbyId, "Hi, example!");
        await until(() => output.includes("[Observer] Hi, example!"), { what: "the example's handler output", timeout: 5_000 });
        assert.doesNotMatch(output, /Error/);
    });
});
