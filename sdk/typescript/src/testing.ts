/**
 * A native stand-in for the host, so a connector is unit-tested with
 * `node --test` without building a component: sealed values, the imports,
 * and outputs evaluated with the host's rules (an output holding a sealed
 * piece, and every output of a render that revealed, is sensitive).
 * Templates are the host's to expand: a test hands over what the host would.
 */

import { RenderError, type Connector, type OutputKind } from "./connector.js";
import { check, Pins, Refusal, type CheckedOutput, type PinField } from "./egress.js";
import { fieldsFromPieces, runRender } from "./export.js";
import { installHost, type Host, type Level } from "./host.js";
import { Text, evaluateMarked, type TextLike } from "./text.js";

/** The host's default bound on the outputs of one render. */
const MAX_OUTPUTS = 64;

/** One evaluated output. */
export interface Rendered {
  value: string;
  sensitive: boolean;
  kind: OutputKind;
}

export class TestSecrets implements Host {
  readonly #values = new Map<bigint, { value: string; reveal: boolean }>();
  readonly logs: Array<[Level, string]> = [];
  readonly invalidated: string[] = [];
  #revealed = false;

  /**
   * `names`: what `listSecrets` answers; `egress`: the operator's explicit
   * destinations, which replace the pins the host derives from the
   * connector's destination fields.
   */
  constructor(
    readonly names: string[] = [],
    readonly egress?: string[],
  ) {}

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
    if (result.outputs.length > MAX_OUTPUTS) {
      throw new RenderError(
        `the connector returned ${result.outputs.length} outputs; at most ${MAX_OUTPUTS} are allowed (sandbox.max_outputs)`,
      );
    }
    const rendered = new Map<string, Rendered>();
    const sealed = (h: bigint) => this.#values.get(h)?.value ?? "";
    const checked: CheckedOutput[] = [];
    for (const output of result.outputs) {
      const [value, marks] = evaluateMarked(output.value.nodes(), sealed);
      rendered.set(output.name, {
        value,
        sensitive: output.sensitive || marks.length > 0 || this.#revealed,
        kind: output.kind,
      });
      checked.push({ name: output.name, kind: output.kind, value, marks });
    }
    // The host's egress check, on the pins it would derive.
    const pinFields: PinField[] = connector
      .info()
      .fields.filter((f) => f.destination !== undefined)
      .map((f) => {
        const given = fields[f.name];
        const value = given === undefined ? f.default : evaluateMarked(Text.of(given).nodes(), sealed)[0];
        return { name: f.name, part: f.destination!, value, configured: given !== undefined };
      });
    const pins = Pins.fromFields(pinFields);
    if (this.egress !== undefined) pins.withExplicit(this.egress);
    try {
      check(checked, pins);
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      throw new RenderError(`egress refused: output \`${checked[e.output].name}\`: ${e.message}`);
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
