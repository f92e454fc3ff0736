// The SDK natively: composition, encodings (as the host applies them),
// field errors, and the test double's host rules.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Output, RenderError, Text, log, reveal, type Connector } from "../src/index.js";
import { TestSecrets } from "../src/testing.js";

const HOSTILE = 'p@ss:w/rd#%?&"é';

const url: Connector = {
  info: () => ({ name: "url", version: "0.1.0", description: "A URL", fields: [{ name: "password", description: "p", required: true }] }),
  render(fields) {
    const port = fields.integer("port", "port number") ?? 5432;
    log("info", `rendering with ${fields.require("password")}`);
    return [new Output("url", Text.concat("scheme://user:", fields.require("password").percent(), `@h:${port}`))];
  },
};

test("sealed values compose and make outputs sensitive", () => {
  const secrets = new TestSecrets();
  const rendered = secrets.render(url, { password: secrets.seal(HOSTILE) });
  assert.deepEqual(rendered.get("url"), {
    value: "scheme://user:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9@h:5432",
    sensitive: true,
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
