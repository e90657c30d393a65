// openrpc.json against the official OpenRPC meta-schema (@open-rpc/meta-schema, draft-07,
// whose JSON Schema definitions come from @json-schema-tools/meta-schema), and the
// generated TypeScript client against openrpc.json.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";

import jsonSchemaMeta from "@json-schema-tools/meta-schema";
import openrpcMeta from "@open-rpc/meta-schema";
import Ajv from "ajv";
import addFormats from "ajv-formats";

import * as generated from "../../clients/typescript/dist/broodlink_client.js";
import { ROOT } from "./helpers.mjs";
import { addIntegerFormats } from "./schemas.mjs";

const document = JSON.parse(readFileSync(path.join(ROOT, "openrpc.json"), "utf8"));

function withoutDialect(schema) {
    const copy = structuredClone(schema);
    delete copy.$schema;
    return copy;
}

function metaValidator() {
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    // The OpenRPC meta-schema refers to the JSON Schema meta-schema by this URL.
    ajv.addSchema(withoutDialect(jsonSchemaMeta.jsonSchema), "https://meta.json-schema.tools");
    return ajv.compile(withoutDialect(openrpcMeta.openrpcDocument));
}

function camel(snake) {
    return snake.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
}

describe("openrpc.json", () => {
    const validate = metaValidator();

    test("is valid against the OpenRPC meta-schema", () => {
        const valid = validate(document);
        const problems = (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
        assert.ok(valid, `openrpc.json fails the OpenRPC meta-schema:\n${problems.join("\n")}`);
        assert.match(document.openrpc, /^1\./);
    });

    test("the meta-schema check catches a broken document", () => {
        const broken = structuredClone(document);
        delete broken.methods[0].name;
        broken.methods[1].params[0].required = "yes";
        assert.equal(validate(broken), false);
        const paths = validate.errors.map((e) => e.instancePath);
        assert.ok(paths.some((p) => p.startsWith("/methods/0")), JSON.stringify(paths));
        assert.ok(paths.some((p) => p.startsWith("/methods/1/params/0")), JSON.stringify(paths));
    });

    test("every component schema is valid JSON Schema draft-07 (ajv strict mode)", () => {
        const ajv = new Ajv({ strict: true, strictTypes: false });
        addIntegerFormats(ajv);
        ajv.addKeyword("components");
        ajv.addSchema({ $id: "openrpc.json", components: document.components });
        for (const name of Object.keys(document.components.schemas)) {
            ajv.compile({ $ref: `openrpc.json#/components/schemas/${name}` });
        }
    });

    test("every method, event and error code is in the TypeScript client", () => {
        for (const method of document.methods) {
            const name = camel(method["x-client-name"]);
            assert.equal(typeof generated.BroodLinkClient.prototype[name], "function", `${method.name} → ${name}`);
        }
        assert.deepEqual(
            [...generated.EVENT_NAMES],
            document["x-events"].map((e) => e.name),
        );
        const codes = Object.entries(document.components.errors).map(([ident, e]) => [ident, e.code]);
        assert.deepEqual(Object.entries(generated.ErrorCodes), codes);
        for (const [ident, code] of codes) {
            const className = ident.endsWith("Error") ? ident : `${ident}Error`;
            const ErrorClass = generated[className];
            assert.equal(typeof ErrorClass, "function", className);
            assert.equal(ErrorClass.code, code);
        }
    });
});
