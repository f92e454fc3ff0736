/**
 * The encodings of the `keyward:connector` contract, byte for byte as the
 * host applies them (`template/src/encode.rs`). Applied here to plain text
 * only: sealed text is encoded by the host, after `render` returns.
 */

/** The contract's encoding names, in the WIT enum's order. */
export const ENCODINGS = ["percent", "form", "json-string", "base64", "base64url", "uri-host"] as const;
export type Encoding = (typeof ENCODINGS)[number];

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const HEX = "0123456789ABCDEF";

function percentByte(b: number): string {
  const c = String.fromCharCode(b);
  return b < 0x80 && UNRESERVED.test(c) ? c : "%" + HEX[b >> 4] + HEX[b & 15];
}

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/** RFC 3986 percent-encoding of every byte outside `A-Z a-z 0-9 - . _ ~`. */
export function percent(text: string): string {
  return Array.from(utf8(text), percentByte).join("");
}

/** `application/x-www-form-urlencoded`: a space becomes `+`. */
export function form(text: string): string {
  return Array.from(utf8(text), (b) => (b === 0x20 ? "+" : percentByte(b))).join("");
}

/** A JSON string literal, quotes included. */
export function jsonString(text: string): string {
  let out = '"';
  for (const c of text) {
    const code = c.codePointAt(0) ?? 0;
    if (c === '"') out += '\\"';
    else if (c === "\\") out += "\\\\";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (code < 0x20) out += "\\u" + code.toString(16).padStart(4, "0");
    else out += c;
  }
  return out + '"';
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function base64With(bytes: Uint8Array, alphabet: string, pad: boolean): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const chunk = bytes.subarray(i, i + 3);
    const n = (chunk[0] << 16) | ((chunk[1] ?? 0) << 8) | (chunk[2] ?? 0);
    for (let j = 0; j < 4; j++) {
      if (j <= chunk.length) out += alphabet[(n >> (18 - 6 * j)) & 63];
      else if (pad) out += "=";
    }
  }
  return out;
}

/** Standard base64 with padding. */
export function base64(text: string): string {
  return base64With(utf8(text), B64, true);
}

/** URL-safe base64 without padding. */
export function base64url(text: string): string {
  return base64With(utf8(text), B64.replace("+/", "-_"), false);
}

/** A URI host: an IPv6 literal in brackets, anything else percent-encoded. */
export function uriHost(text: string): string {
  if (text.includes(":") && !text.startsWith("[")) return `[${text}]`;
  if (text.startsWith("[") && text.endsWith("]")) return text;
  return percent(text);
}

/** Applies the encoding named `encoding`. */
export function apply(encoding: Encoding, text: string): string {
  switch (encoding) {
    case "percent":
      return percent(text);
    case "form":
      return form(text);
    case "json-string":
      return jsonString(text);
    case "base64":
      return base64(text);
    case "base64url":
      return base64url(text);
    case "uri-host":
      return uriHost(text);
  }
}
