// The client in use, against a real `keyward serve` and a real PostgreSQL:
//   node dist/example.js render             render `orders-db`: its outputs, values masked here
//   node dist/example.js connect            render `orders-db`, connect, SELECT 1
//   node dist/example.js rotated            connect fails? invalidate, render again, connect
//   node dist/example.js denied             render `denied`: a clear error naming the field
// Environment: KEYWARD_SOCKET (or KEYWARD_URL) and KEYWARD_TOKEN.
// Prints one JSON line.

import pg from "pg";
import { KeywardClient, KeywardError } from "./index.js";

const keyward = new KeywardClient({
  socketPath: process.env.KEYWARD_SOCKET,
  url: process.env.KEYWARD_URL,
  token: process.env.KEYWARD_TOKEN ?? "",
});

/** Renders `orders-db` and runs SELECT 1 with the DSN it rendered, where keyward checked that it goes. */
async function connect(): Promise<number> {
  const rendered = await keyward.render("orders-db");
  const { dsn } = KeywardClient.values(rendered);
  const to = KeywardClient.destination(rendered, "dsn");
  if (!to) throw new Error("orders-db rendered no checked destination `dsn`");
  const client = new pg.Client({ connectionString: dsn, host: to.host, port: to.port ?? 5432 });
  await client.connect();
  try {
    const result = await client.query("SELECT 1 AS one");
    return result.rows[0].one;
  } finally {
    await client.end();
  }
}

async function main(step: string): Promise<unknown> {
  switch (step) {
    case "render": {
      const rendered = await keyward.render("orders-db");
      const outputs = rendered.outputs.map((o) => ({ name: o.name, sensitive: o.sensitive, value: o.sensitive ? "****" : o.value }));
      return { step, connector: rendered.connector, outputs };
    }
    case "connect":
      return { step, one: await connect() };
    case "rotated": {
      try {
        return { step, one: await connect(), invalidated: false };
      } catch {
        // The password changed: drop keyward's cached copy and try again.
        await keyward.invalidate("orders-db", "{{ secrets.db }}");
        return { step, one: await connect(), invalidated: true };
      }
    }
    case "denied":
      try {
        await keyward.render("denied");
        return { step, error: null };
      } catch (e) {
        if (!(e instanceof KeywardError)) throw e;
        return { step, status: e.status, code: e.code, field: e.field, message: e.message };
      }
    default:
      throw new Error(`unknown step ${step}`);
  }
}

main(process.argv[2] ?? "connect").then(
  (result) => console.log(JSON.stringify(result)),
  (e) => {
    console.log(JSON.stringify({ error: String(e?.message ?? e) }));
    process.exitCode = 1;
  },
);
