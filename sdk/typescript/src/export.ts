/** The component's exports, `describe` and `render`, from a `Connector`. */

import { Fields, RenderError, type Connector } from "./connector.js";
import { Text } from "./text.js";

type WitPiece = { tag: "plain"; val: string } | { tag: "sealed"; val: bigint };

/** @internal Fields from the contract's (name, pieces) pairs. */
export function fieldsFromPieces(fields: Array<{ name: string; value: WitPiece[] }>): Fields {
  return new Fields(
    new Map(
      fields.map((f) => [
        f.name,
        Text.concat(...f.value.map((p) => (p.tag === "plain" ? Text.plain(p.val) : Text.sealed(p.val)))),
      ]),
    ),
  );
}

/** @internal Calls the connector; an unexpected exception becomes a render error naming its type. */
export function runRender(connector: Connector, fields: Fields) {
  try {
    return { outputs: connector.render(fields) };
  } catch (e) {
    if (e instanceof RenderError) return { error: e };
    const name = e instanceof Error ? e.name : typeof e;
    const message = e instanceof Error ? e.message : String(e);
    return { error: new RenderError(`the connector raised ${name}: ${message}`) };
  }
}

/** The exports componentize-js builds into the component. */
export function exportsFor(connector: Connector) {
  return {
    describe() {
      const info = connector.info();
      return {
        name: info.name,
        version: info.version,
        description: info.description,
        fields: info.fields.map((f) => ({
          name: f.name,
          description: f.description,
          required: f.required ?? false,
          sensitive: f.sensitive ?? false,
          defaultValue: f.default,
          secretReference: f.secretReference ?? false,
          destination: f.destination,
        })),
        runEveryRender: info.runEveryRender ?? false,
      };
    },
    render(fields: Array<{ name: string; value: WitPiece[] }>) {
      const result = runRender(connector, fieldsFromPieces(fields));
      if (result.error) {
        // Thrown plain, it becomes the result's `err`.
        throw { field: result.error.field, column: result.error.column, message: result.error.reason };
      }
      return result.outputs.map((o) => ({
        name: o.name,
        kind: o.kind,
        sensitive: o.sensitive,
        value: { nodes: o.value.nodes() },
      }));
    },
  };
}
