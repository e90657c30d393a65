// Validates results and event payloads against the schemas in openrpc.json.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";

import Ajv from "ajv";

import { ROOT } from "./helpers.mjs";

export const openrpc = JSON.parse(readFileSync(path.join(ROOT, "openrpc.json"), "utf8"));

const ajv = new Ajv({ strict: false, allErrors: true });
addIntegerFormats(ajv);
ajv.addSchema({ $id: "openrpc.json", components: openrpc.components });
const validators = new Map();

/** The integer formats schemars writes (`uint32`, `int64`, …), with their ranges. */
export function addIntegerFormats(ajv) {
    const ranges = {
        int8: [-(2 ** 7), 2 ** 7 - 1],
        uint8: [0, 2 ** 8 - 1],
        int16: [-(2 ** 15), 2 ** 15 - 1],
        uint16: [0, 2 ** 16 - 1],
        int32: [-(2 ** 31), 2 ** 31 - 1],
        uint32: [0, 2 ** 32 - 1],
        int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
        uint64: [0, Number.MAX_SAFE_INTEGER],
        uint: [0, Number.MAX_SAFE_INTEGER],
    };
    for (const [name, [min, max]] of Object.entries(ranges)) {
        ajv.addFormat(name, { type: "number", validate: (n) => Number.isInteger(n) && n >= min && n <= max });
    }
}

function validator(typeName) {
    let validate = validators.get(typeName);
    if (validate === undefined) {
        validate = ajv.compile({ $ref: `openrpc.json#/components/schemas/${typeName}` });
        validators.set(typeName, validate);
    }
    return validate;
}

/** Asserts that `value` matches the named component schema. */
export function assertType(typeName, value) {
    const validate = validator(typeName);
    assert.ok(validate(value), `${typeName} does not match its schema: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
}

/** Asserts that `result` matches the declared result schema of `method`. */
export function assertResult(method, result) {
    const spec = openrpc.methods.find((m) => m.name === method);
    assert.ok(spec, `no method ${method} in openrpc.json`);
    assertType(spec.result.schema.$ref.split("/").at(-1), result);
    return result;
}

/** Asserts that an event payload matches the schema `x-events` declares for it. */
export function assertEvent(name, payload) {
    const spec = openrpc["x-events"].find((e) => e.name === name);
    assert.ok(spec, `no event ${name} in openrpc.json`);
    assertType(spec.params.$ref.split("/").at(-1), payload);
}
