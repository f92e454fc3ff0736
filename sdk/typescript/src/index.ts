/**
 * Write keyward connectors in TypeScript. A connector declares its fields
 * and renders outputs from them; secret values arrive sealed and are
 * composed (`Text.concat("mysql://", user.percent(), ":", password.percent())`)
 * without being read. See docs/connector-guide.md.
 */

export {
  Fields,
  Output,
  RenderError,
  type Connector,
  type ConnectorInfo,
  type DestinationPart,
  type Field,
  type OutputKind,
} from "./connector.js";
export { exportsFor } from "./export.js";
export { installHost, invalidate, listSecrets, log, reveal, type Host, type Level } from "./host.js";
export { Text, type TextLike } from "./text.js";
