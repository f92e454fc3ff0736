/**
 * Text that may hold sealed pieces: the values of secret references, which
 * the connector composes but cannot read. Plain text is a string the
 * connector may read; text with a sealed piece is a composition the host
 * evaluates after `render` returns. Encoding plain text encodes it at once.
 */

import { apply, type Encoding } from "./encode.js";

/** What the SDK takes where text is expected. */
export type TextLike = Text | string;

/** One node of a composition, as the contract has them (value last). */
export type Node =
  | { tag: "plain"; val: string }
  | { tag: "sealed"; val: bigint }
  | { tag: "concat"; val: number[] }
  | { tag: "encode"; val: [Encoding, number] };

type Repr =
  | { kind: "plain"; text: string }
  | { kind: "sealed"; handle: bigint }
  | { kind: "concat"; parts: Text[] }
  | { kind: "encode"; encoding: Encoding; inner: Text };

export class Text {
  readonly #repr: Repr;

  private constructor(repr: Repr) {
    this.#repr = repr;
  }

  /** Text the connector may read. */
  static plain(text: string): Text {
    return new Text({ kind: "plain", text: String(text) });
  }

  /** @internal A sealed handle of the current render. */
  static sealed(handle: bigint): Text {
    return new Text({ kind: "sealed", handle });
  }

  /** `text` as Text (a string is plain). */
  static of(text: TextLike): Text {
    return text instanceof Text ? text : Text.plain(text);
  }

  /** The pieces one after the other; plain if every piece is. */
  static concat(...pieces: TextLike[]): Text {
    const parts = pieces.map(Text.of);
    if (parts.every((p) => p.#repr.kind === "plain")) {
      return Text.plain(parts.map((p) => (p.#repr as { text: string }).text).join(""));
    }
    return new Text({ kind: "concat", parts });
  }

  /** This text followed by `more`. */
  concat(...more: TextLike[]): Text {
    return Text.concat(this, ...more);
  }

  /** The text, if it holds no sealed piece; else `undefined`. */
  asPlain(): string | undefined {
    return this.#repr.kind === "plain" ? this.#repr.text : undefined;
  }

  /** Whether the text holds a sealed piece. */
  isSealed(): boolean {
    return this.#repr.kind !== "plain";
  }

  #encoded(encoding: Encoding): Text {
    if (this.#repr.kind === "plain") return Text.plain(apply(encoding, this.#repr.text));
    return new Text({ kind: "encode", encoding, inner: this });
  }

  /** RFC 3986 percent-encoded (a URL's userinfo, path segment, query). */
  percent(): Text {
    return this.#encoded("percent");
  }
  /** `application/x-www-form-urlencoded` (a space becomes `+`). */
  form(): Text {
    return this.#encoded("form");
  }
  /** A JSON string literal, quotes included. */
  jsonString(): Text {
    return this.#encoded("json-string");
  }
  /** Standard base64 with padding. */
  base64(): Text {
    return this.#encoded("base64");
  }
  /** URL-safe base64 without padding. */
  base64url(): Text {
    return this.#encoded("base64url");
  }
  /** A URI host: an IPv6 literal in brackets, anything else percent-encoded. */
  uriHost(): Text {
    return this.#encoded("uri-host");
  }

  /** The composition as the contract's nodes, its value last. */
  nodes(): Node[] {
    const out: Node[] = [];
    this.#push(out);
    return out;
  }

  #push(out: Node[]): number {
    const r = this.#repr;
    if (r.kind === "plain") out.push({ tag: "plain", val: r.text });
    else if (r.kind === "sealed") out.push({ tag: "sealed", val: r.handle });
    else if (r.kind === "concat") out.push({ tag: "concat", val: r.parts.map((p) => p.#push(out)) });
    else out.push({ tag: "encode", val: [r.encoding, r.inner.#push(out)] });
    return out.length - 1;
  }

  /** @internal The pieces of a field as the host hands it over. */
  pieces(): Array<{ tag: "plain"; val: string } | { tag: "sealed"; val: bigint }> {
    const r = this.#repr;
    if (r.kind === "plain") return [{ tag: "plain", val: r.text }];
    if (r.kind === "sealed") return [{ tag: "sealed", val: r.handle }];
    if (r.kind === "concat") return r.parts.flatMap((p) => p.pieces());
    throw new TypeError("the host hands fields over unencoded");
  }

  /** Never a value: plain text is shown, sealed pieces are not. */
  toString(): string {
    const r = this.#repr;
    if (r.kind === "plain") return r.text;
    if (r.kind === "sealed") return "<sealed>";
    if (r.kind === "concat") return r.parts.map(String).join("");
    return `${r.encoding}(${r.inner})`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** A composition's value, `sealed(handle)` giving each sealed piece. */
/**
 * `evaluate`, also answering which ranges of the value came from sealed
 * pieces, as the host marks them (an encoding of marked text is marked whole).
 */
export function evaluateMarked(nodes: Node[], sealed: (handle: bigint) => string): [string, Array<[number, number]>] {
  const values: string[] = [];
  const marks: Array<Array<[number, number]>> = [];
  for (const node of nodes) {
    if (node.tag === "plain") {
      values.push(node.val);
      marks.push([]);
    } else if (node.tag === "sealed") {
      const text = sealed(node.val);
      values.push(text);
      marks.push(text ? [[0, text.length]] : []);
    } else if (node.tag === "concat") {
      let text = "";
      const marked: Array<[number, number]> = [];
      for (const i of node.val) {
        for (const [a, b] of marks[i]) {
          const last = marked[marked.length - 1];
          if (last && last[1] === a + text.length) last[1] = b + text.length;
          else marked.push([a + text.length, b + text.length]);
        }
        text += values[i];
      }
      values.push(text);
      marks.push(marked);
    } else {
      const text = apply(node.val[0], values[node.val[1]]);
      values.push(text);
      marks.push(marks[node.val[1]].length && text ? [[0, text.length]] : []);
    }
  }
  return values.length ? [values[values.length - 1], marks[marks.length - 1]] : ["", []];
}

export function evaluate(nodes: Node[], sealed: (handle: bigint) => string): string {
  const values: string[] = [];
  for (const node of nodes) {
    if (node.tag === "plain") values.push(node.val);
    else if (node.tag === "sealed") values.push(sealed(node.val));
    else if (node.tag === "concat") values.push(node.val.map((i) => values[i]).join(""));
    else values.push(apply(node.val[0], values[node.val[1]]));
  }
  return values.length ? values[values.length - 1] : "";
}
