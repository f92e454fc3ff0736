/**
 * A native stand-in for the host, so a connector is unit-tested with
 * `node --test` without building a component: sealed values, the imports,
 * and outputs evaluated with the host's rules (an output holding a sealed
 * piece, and every output of a render that revealed, is sensitive).
 * Templates are the host's to expand: a test hands over what the host would.
 */

import { RenderError, type Connector } from "./connector.js";
import { fieldsFromPieces, runRender } from "./export.js";
import { installHost, type Host, type Level } from "./host.js";
import { Text, evaluate, type TextLike } from "./text.js";

/** One evaluated output. */
export interface Rendered {
  value: string;
  sensitive: boolean;
}

export class TestSecrets implements Host {
  readonly #values = new Map<bigint, { value: string; reveal: boolean }>();
  readonly logs: Array<[Level, string]> = [];
  readonly invalidated: string[] = [];
  #revealed = false;

  constructor(readonly names: string[] = []) {}

  /** `value` as the host hands a secret over: sealed (revealable if granted). */
  seal(value: string, options: { reveal?: boolean } = {}): Text {
    const handle = BigInt(this.#values.size + 1);
    this.#values.set(handle, { value, reveal: options.reveal ?? false });
    return Text.sealed(handle);
  }

  /** Renders `connector` with `fields`; throws the connector's RenderError. */
  render(connector: Connector, fields: Record<string, TextLike>): Map<string, Rendered> {
    this.#revealed = false;
    const pieces = Object.entries(fields).map(([name, value]) => ({ name, value: Text.of(value).pieces() }));
    const previous = installHost(this);
    let result;
    try {
      result = runRender(connector, fieldsFromPieces(pieces));
    } finally {
      installHost(previous);
    }
    if (result.error) throw result.error;
    const rendered = new Map<string, Rendered>();
    for (const output of result.outputs) {
      const nodes = output.value.nodes();
      rendered.set(output.name, {
        value: evaluate(nodes, (h) => this.#values.get(h)?.value ?? ""),
        sensitive: output.sensitive || nodes.some((n) => n.tag === "sealed") || this.#revealed,
      });
    }
    return rendered;
  }

  log(level: Level, message: string): void {
    this.logs.push([level, message]);
  }

  list(): string[] {
    return [...this.names];
  }

  invalidate(reference: string): boolean {
    this.invalidated.push(reference);
    return true;
  }

  reveal(handle: bigint): string {
    const entry = this.#values.get(handle);
    if (entry === undefined) throw new RenderError("not a sealed value of this render");
    if (!entry.reveal) throw new RenderError("reveal is not granted to this connector for this secret");
    this.#revealed = true;
    return entry.value;
  }
}
