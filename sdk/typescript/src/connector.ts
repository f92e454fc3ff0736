/** What a connector declares and returns, and the errors that point at the author's input. */

import { Text, type TextLike } from "./text.js";

/** One configuration field the connector takes. */
export interface Field {
  name: string;
  description: string;
  required?: boolean;
  /** The field should hold a secret (outputs holding one are sensitive anyway). */
  sensitive?: boolean;
  /** The template used when the field is not configured. */
  default?: string;
  /** The whole field may be a bare Secrets Manager ARN (ECS `valueFrom`). */
  secretReference?: boolean;
  /**
   * The part of a destination the field names (a database or a bucket is a
   * `resource`): what the operator configures there is where the host lets
   * this connector's secrets go.
   */
  destination?: DestinationPart;
}

/** The parts of a destination a field may name. */
export type DestinationPart = "url" | "host" | "port" | "resource";

/**
 * What an output is: where the platform connects (checked against the
 * operator's pins), what it sends, or anything else (which may not hold
 * secret material).
 */
export type OutputKind = "destination" | "credential" | "setting";

/** What `describe` returns. */
export interface ConnectorInfo {
  name: string;
  version: string;
  description: string;
  fields: Field[];
  /**
   * Run on every render, with the real clocks and random. By default the host
   * keeps the outputs of a configuration's first render as a render plan and
   * evaluates it with the current secrets from then on, without running the
   * connector; a recorded render sees a fixed clock and a random stream seeded
   * from its configuration.
   */
  runEveryRender?: boolean;
}

/** A render failed because of the author's input; never holds a value. */
export class RenderError extends Error {
  constructor(
    message: string,
    readonly field?: string,
    readonly column?: number,
  ) {
    super(
      field !== undefined && column !== undefined
        ? `field \`${field}\`, column ${column}: ${message}`
        : field !== undefined
          ? `field \`${field}\`: ${message}`
          : message,
    );
    this.name = "RenderError";
    this.reason = message;
  }
  /** The message without the field and column. */
  readonly reason: string;
}

/** One output of a render; the host marks it sensitive anyway if it holds a sealed piece. */
export class Output {
  readonly value: Text;
  constructor(
    readonly name: string,
    value: TextLike,
    readonly sensitive = false,
    readonly kind: OutputKind = "setting",
  ) {
    this.value = Text.of(value);
  }

  /** Where the platform connects: a URL, a DSN, a host, a port. */
  static destination(name: string, value: TextLike): Output {
    return new Output(name, value, false, "destination");
  }

  /** What the platform sends: a password, a key, a header value. */
  static credential(name: string, value: TextLike): Output {
    return new Output(name, value, false, "credential");
  }

  /** Anything else: a region, a flag. It may not hold secret material. */
  static setting(name: string, value: TextLike): Output {
    return new Output(name, value, false, "setting");
  }

  /** A credential marked sensitive whatever it holds. */
  static secret(name: string, value: TextLike): Output {
    return new Output(name, value, true, "credential");
  }
}

/** The fields of one render, as the host expanded them. */
export class Fields {
  readonly #values: Map<string, Text>;

  constructor(values: Map<string, Text>) {
    this.#values = values;
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  /** A configured (or defaulted) field's value. */
  get(name: string): Text | undefined {
    return this.#values.get(name);
  }

  /** A field the connector cannot do without. */
  require(name: string): Text {
    const value = this.#values.get(name);
    if (value === undefined) throw new RenderError("required field is not configured", name);
    return value;
  }

  /** The text of a field the connector must read; a secret in it is an error naming the field. */
  plain(name: string): string | undefined {
    const value = this.#values.get(name);
    if (value === undefined) return undefined;
    const text = value.asPlain();
    if (text === undefined) {
      throw new RenderError(
        "holds a secret, which this connector cannot read; configure it in plain text or mark the secret public in the connector's policy",
        name,
      );
    }
    return text;
  }

  /** An integer field (a port); the error names the field, not the value. */
  integer(name: string, what: string): number | undefined {
    const text = this.plain(name);
    if (text === undefined) return undefined;
    const trimmed = text.trim();
    if (!/^[+-]?\d+$/.test(trimmed)) throw new RenderError(`not a valid ${what}`, name);
    return Number.parseInt(trimmed, 10);
  }
}

/** A connector: `info()` declares the fields, `render(fields)` returns the outputs. */
export interface Connector {
  info(): ConnectorInfo;
  render(fields: Fields): Output[];
}
