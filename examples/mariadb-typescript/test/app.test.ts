// The MariaDB connector natively, against the SDK's test double.
import assert from "node:assert/strict";
import { test } from "node:test";

import { TestSecrets } from "keyward-connector/testing";
import connector from "../app.js";

const HOSTILE = 'p@ss:w/rd#%?&"é';

test("the URL carries the sealed password, encoded", () => {
  const secrets = new TestSecrets();
  const rendered = secrets.render(connector, {
    host: "db.internal",
    port: "3306",
    user: "app",
    password: secrets.seal(HOSTILE),
    database: "orders",
  });
  assert.deepEqual(rendered.get("url"), {
    value: "mysql://app:p%40ss%3Aw%2Frd%23%25%3F%26%22%C3%A9@db.internal:3306/orders",
    sensitive: true,
    kind: "destination",
  });
});

test("a bad port names the field", () => {
  const secrets = new TestSecrets();
  const fields = { host: "h", user: "u", password: secrets.seal("x"), database: "d" };
  assert.throws(() => secrets.render(connector, { ...fields, port: "0" }), {
    message: "field `port`: must be between 1 and 65535",
  });
  assert.throws(() => secrets.render(connector, { ...fields, port: "mysql" }), {
    message: "field `port`: not a valid port number",
  });
});
