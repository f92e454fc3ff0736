// The SDK natively: composition, encodings (as the host applies them),
// field errors, and the test double's host rules.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Output, RenderError, Text, log, reveal, type Connector } from "../src/index.js";
import { TestSecrets } from "../src/testing.js";
import { check, Pins, Refusal, type PinField } from "../src/egress.js";
import { readFileSync } from "node:fs";
import type { DestinationPart, OutputKind } from "../src/index.js";

const HOSTILE = 'p@ss:w/rd#%?&"é';

const url: Connector = {
  info: () => ({ name: "url", version: "0.1.0", description: "A URL", fields: [{ name: "password", description: "p", required: true }] }),
  render(fields) {
    const port = fields.integer("port", "port number") ?? 5432;
    log("info", `rendering with ${fields.require("password")}`);
    return [Output.destination("url", Text.concat("scheme://user:", fields.require("password").percent(), `@h:${port}`))];
  },
};

test("sealed values compose and make outputs sensitive", () => {
  const secrets = new TestSecrets([], ["h:5432"]);
  const rendered = secrets.render(url, { password: secrets.seal(HOSTILE) });
  assert.deepEqual(rendered.get("url"), {
    value: "scheme://user:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9@h:5432",
    sensitive: true,
    kind: "destination",
  });
  assert.deepEqual(secrets.logs, [["info", "rendering with <sealed>"]]);
});

test("plain text is encoded at once as the host would", () => {
  assert.equal(Text.plain(HOSTILE).percent().asPlain(), "p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9");
  assert.equal(Text.plain("a b+c").form().asPlain(), "a+b%2Bc");
  assert.equal(Text.plain('q"\n\x01').jsonString().asPlain(), '"q\\"\\n\\u0001"');
  assert.equal(Text.plain("hi?").base64().asPlain(), "aGk/");
  assert.equal(Text.plain("hi?").base64url().asPlain(), "aGk_");
  assert.equal(Text.plain("::1").uriHost().asPlain(), "[::1]");
  assert.equal(Text.plain("db host").uriHost().asPlain(), "db%20host");
  assert.equal(Text.plain("é").base64().asPlain(), "w6k=");
});

test("errors name the field, never the value", () => {
  const secrets = new TestSecrets();
  assert.throws(() => secrets.render(url, {}), { message: "field `password`: required field is not configured" });
  assert.throws(() => secrets.render(url, { password: secrets.seal("x"), port: "eighty" }), (e: unknown) => {
    assert.ok(e instanceof RenderError);
    assert.equal(e.message, "field `port`: not a valid port number");
    return true;
  });
});

test("reveal needs the grant and makes every output sensitive", () => {
  const signs: Connector = {
    info: () => ({ name: "s", version: "1", description: "", fields: [] }),
    render: (fields) => [new Output("signature", [...reveal(fields.require("key"))].reverse().join("")), new Output("note", "plain")],
  };
  const secrets = new TestSecrets();
  assert.throws(() => secrets.render(signs, { key: secrets.seal("abc") }), /reveal is not granted/);
  const rendered = secrets.render(signs, { key: secrets.seal("abc", { reveal: true }) });
  assert.equal(rendered.get("signature")?.value, "cba");
  assert.equal(rendered.get("note")?.sensitive, true);
});

test("an unexpected exception is a render error naming its type", () => {
  const buggy: Connector = {
    info: () => ({ name: "b", version: "1", description: "", fields: [] }),
    render: () => {
      throw new TypeError("oops");
    },
  };
  assert.throws(() => new TestSecrets().render(buggy, {}), /the connector raised TypeError: oops/);
});

test("more outputs than the host allows are refused as the host would", () => {
  const many: Connector = {
    info: () => ({ name: "m", version: "1", description: "", fields: [] }),
    render: () => Array.from({ length: 65 }, (_, i) => Output.setting(`out-${i}`, "x")),
  };
  assert.throws(
    () => new TestSecrets().render(many, {}),
    /returned 65 outputs; at most 64 are allowed \(sandbox.max_outputs\)/,
  );
});

const api: Connector = {
  info: () => ({
    name: "api",
    version: "0.1.0",
    description: "An API",
    fields: [
      { name: "base_url", description: "Base URL", required: true, destination: "url" },
      { name: "token", description: "Token" },
    ],
  }),
  render: (fields) => [
    Output.destination("base_url", fields.require("base_url")),
    Output.secret("authorization", Text.concat("Bearer ", fields.require("token"))),
  ],
};

test("the host's egress check runs in the test double", () => {
  const secrets = new TestSecrets();
  const ok = secrets.render(api, { base_url: "https://api.example.com/", token: secrets.seal("t") });
  assert.equal(ok.get("base_url")?.kind, "destination");
  assert.throws(
    () => secrets.render(api, { base_url: Text.concat(secrets.seal("t"), ".attacker.example"), token: "x" }),
    /egress refused: output `base_url`/,
  );
  const pinless = new TestSecrets([], []);
  assert.throws(() => pinless.render(api, { base_url: "https://a.example/", token: pinless.seal("t") }), /no destination pins/);
});

test("the shared egress vectors give the same verdicts", () => {
  const path = new URL("../../../../tests/vectors/egress.tsv", import.meta.url);
  const lines = readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l && !l.startsWith("#"));
  assert.ok(lines.length > 30);
  for (const line of lines) {
    const [pinText, kind, value, secret, expected] = line.split("\t");
    const fields: PinField[] = [];
    const explicit: string[] = [];
    for (const item of pinText.split(";").filter((i) => i !== "-")) {
      const at = item.indexOf("=");
      const [part, text] = [item.slice(0, at), item.slice(at + 1)];
      if (part === "egress") explicit.push(text);
      else fields.push({ name: part, part: part as DestinationPart, value: text, configured: true });
    }
    const pins = Pins.fromFields(fields);
    if (explicit.length) pins.withExplicit(explicit);
    const at = secret === "-" ? -1 : value.indexOf(secret);
    const marks: Array<[number, number]> = at >= 0 ? [[at, at + secret.length]] : [];
    let verdict = "ok";
    try {
      check([{ name: "out", kind: kind as OutputKind, value, marks }], pins);
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      verdict = e.message;
    }
    if (expected === "ok") assert.equal(verdict, "ok", line);
    else assert.ok(verdict.includes(expected), `${line}: ${verdict}`);
  }
});
