/**
 * The host's egress check, natively, so a connector's unit test fails where
 * the host would refuse the render: every secret goes only to a destination
 * the operator configured, and only where a credential belongs.
 *
 * A port of `template/src/destination.rs` and `template/src/egress.rs`;
 * `tests/vectors/egress.tsv` holds the cases all three implementations must
 * agree on.
 */

import { apply } from "./encode.js";
import type { DestinationPart, OutputKind } from "./connector.js";

const SPECIAL_SCHEMES = ["http", "https", "ws", "wss", "ftp", "file"];
const DEFAULT_PORTS: Record<string, number> = {
  http: 80,
  ws: 80,
  https: 443,
  wss: 443,
  ftp: 21,
  postgres: 5432,
  postgresql: 5432,
  mysql: 3306,
  mariadb: 3306,
  redis: 6379,
  rediss: 6379,
  mongodb: 27017,
  amqp: 5672,
  amqps: 5671,
  sqlserver: 1433,
};

type Span = [number, number];

/** Why a text is not a destination keyward accepts; never holds the text. */
export class DestinationError extends Error {
  constructor(
    readonly part: string,
    readonly why: string,
  ) {
    super(`its ${part} ${why}`);
  }
}

/** A parsed destination, with where each part stands in its text. */
export interface Destination {
  scheme?: string;
  host: string;
  port?: number;
  spans: { scheme?: Span; userinfo?: Span; host: Span; port?: Span; path: Span; query?: Span; fragment?: Span };
}

export function defaultPort(scheme: string | undefined): number | undefined {
  if (scheme === undefined) return undefined;
  return DEFAULT_PORTS[scheme.split(":").pop() ?? scheme];
}

/** Whether a client could take `text` for a URL (see the Rust doc). */
export function looksLikeUrl(text: string): boolean {
  const cleaned = text
    .replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, "")
    .replace(/[\t\n\r]/g, "")
    .slice(0, 256);
  let at = 0;
  let first: string | undefined;
  for (;;) {
    const m = /^[A-Za-z][A-Za-z0-9+.-]*/.exec(cleaned.slice(at));
    if (!m || cleaned[at + m[0].length] !== ":") return false;
    first ??= m[0].toLowerCase();
    at += m[0].length + 1;
    const next = cleaned[at] ?? "";
    if (next === "/" || next === "\\") return true;
    if (SPECIAL_SCHEMES.includes(first)) return true;
    if (!/^[A-Za-z]$/.test(next)) return false;
  }
}

function checkBytes(text: string): void {
  for (const c of text) {
    if (c === "\\") throw new DestinationError("text", "holds a backslash");
    if (c <= " " || c === "\u007f") throw new DestinationError("text", "holds whitespace or a control character");
    if (c.charCodeAt(0) > 0x7f) throw new DestinationError("text", "holds non-ASCII text");
    if ('"<>^`{|}'.includes(c)) throw new DestinationError("text", "holds a character URLs do not allow");
  }
}

function checkPercent(text: string, part: string): void {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "%") {
      if (!/^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
        throw new DestinationError(part, "holds a `%` that is not an escape");
      }
      i += 2;
    }
  }
}

function normalizeIpv6(inner: string): string | undefined {
  try {
    const host = new URL(`http://[${inner}]/`).hostname;
    return host.slice(1, -1);
  } catch {
    return undefined;
  }
}

export function normalizeHost(host: string): string {
  if (host === "") throw new DestinationError("host", "is empty");
  if (host.startsWith("[")) {
    if (!host.endsWith("]")) throw new DestinationError("host", "opens `[` without closing it");
    const inner = host.slice(1, -1);
    if (inner.includes("%")) throw new DestinationError("host", "is an IPv6 address with a zone id");
    if (!/^[0-9A-Fa-f:.]+$/.test(inner)) throw new DestinationError("host", "is not an IPv6 address");
    const normalized = normalizeIpv6(inner);
    if (normalized === undefined) throw new DestinationError("host", "is not an IPv6 address");
    return normalized;
  }
  if (host.includes("%")) throw new DestinationError("host", "is percent-encoded");
  if (host.endsWith(".")) throw new DestinationError("host", "ends with a dot");
  if (host.length > 253) throw new DestinationError("host", "is longer than 253 characters");
  const labels = host.split(".");
  for (const label of labels) {
    if (label === "") throw new DestinationError("host", "has an empty label");
    if (label.length > 63) throw new DestinationError("host", "has a label longer than 63 characters");
    if (!/^[A-Za-z0-9_-]+$/.test(label)) throw new DestinationError("host", "holds a character host names do not have");
  }
  const last = labels[labels.length - 1];
  if (/^\d+$/.test(last) || last.slice(0, 2).toLowerCase() === "0x") {
    const canonical =
      labels.length === 4 &&
      labels.every((l) => /^\d+$/.test(l) && (l.length === 1 || !l.startsWith("0")) && Number(l) <= 255);
    if (!canonical) throw new DestinationError("host", "is a numeric address that is not a dotted quad");
  }
  return host.toLowerCase();
}

function hostPort(text: string, start: number, end: number): [string, Span, number | undefined, Span | undefined] {
  const hp = text.slice(start, end);
  let hostLen: number;
  let portAt: number | undefined;
  if (hp.startsWith("[")) {
    const close = hp.indexOf("]");
    if (close < 0) throw new DestinationError("host", "opens `[` without closing it");
    const after = hp[close + 1];
    if (after === undefined) hostLen = close + 1;
    else if (after === ":") [hostLen, portAt] = [close + 1, close + 2];
    else throw new DestinationError("host", "has text after its `]`");
  } else {
    const colon = hp.indexOf(":");
    [hostLen, portAt] = colon >= 0 ? [colon, colon + 1] : [hp.length, undefined];
  }
  const host = normalizeHost(hp.slice(0, hostLen));
  if (portAt === undefined) return [host, [start, start + hostLen], undefined, undefined];
  const digits = hp.slice(portAt);
  if (digits === "") throw new DestinationError("port", "is empty");
  if (digits.length > 5 || !/^\d+$/.test(digits) || Number(digits) > 65535) {
    throw new DestinationError("port", "is not a number from 0 to 65535");
  }
  return [host, [start, start + hostLen], Number(digits), [start + portAt, end]];
}

export function parseUrl(text: string): Destination {
  checkBytes(text);
  const end = text.indexOf("://");
  if (end < 0) throw new DestinationError("scheme", "is not followed by `://`");
  const scheme = text.slice(0, end);
  if (scheme === "" || !scheme.split(":").every((s) => /^[A-Za-z][A-Za-z0-9+.-]*$/.test(s))) {
    throw new DestinationError("scheme", "is not a scheme");
  }
  const a = end + 3;
  const rest = text.slice(a);
  const m = /[/?#]/.exec(rest);
  const aLen = m ? m.index : rest.length;
  const authority = rest.slice(0, aLen);
  const spans: Partial<Destination["spans"]> = { scheme: [0, a] };
  let hpStart = a;
  const at = authority.indexOf("@");
  if (at >= 0) {
    if (authority.slice(at + 1).includes("@")) throw new DestinationError("authority", "holds more than one `@`");
    const userinfo = authority.slice(0, at);
    if (/[[\]]/.test(userinfo)) throw new DestinationError("userinfo", "holds `[` or `]`");
    checkPercent(userinfo, "userinfo");
    spans.userinfo = [a, a + at];
    hpStart = a + at + 1;
  }
  const hpEnd = a + aLen;
  const [host, hostSpan, port, portSpan] = hostPort(text, hpStart, hpEnd);
  spans.host = hostSpan;
  if (portSpan) spans.port = portSpan;
  const tail = text.slice(hpEnd);
  const q = /[?#]/.exec(tail);
  const pLen = q ? q.index : tail.length;
  spans.path = [hpEnd, hpEnd + pLen];
  const path = text.slice(hpEnd, hpEnd + pLen);
  checkPercent(path, "path");
  for (const segment of path.split("/").slice(1)) {
    const lower = segment.toLowerCase();
    const dots = lower.replaceAll("%2e", ".");
    if (dots === "." || dots === "..") throw new DestinationError("path", "has a dot segment");
    if (lower.includes("%2f") || lower.includes("%5c")) {
      throw new DestinationError("path", "holds an encoded slash or backslash");
    }
  }
  let i = hpEnd + pLen;
  if (text[i] === "?") {
    let qEnd = text.indexOf("#", i + 1);
    if (qEnd < 0) qEnd = text.length;
    spans.query = [i + 1, qEnd];
    checkPercent(text.slice(i + 1, qEnd), "query");
    i = qEnd;
  }
  if (text[i] === "#") {
    spans.fragment = [i + 1, text.length];
    checkPercent(text.slice(i + 1), "fragment");
    if (text.slice(i + 1).includes("#")) throw new DestinationError("fragment", "holds a second `#`");
  }
  return { scheme: scheme.toLowerCase(), host, port, spans: spans as Destination["spans"] };
}

export function parseBare(text: string): Destination {
  checkBytes(text);
  if (/[/?#@]/.test(text)) throw new DestinationError("host", "is not a bare host or host and port");
  const [host, hostSpan, port, portSpan] = hostPort(text, 0, text.length);
  return { host, port, spans: { host: hostSpan, port: portSpan, path: [text.length, text.length] } };
}

export function parse(text: string): Destination {
  return looksLikeUrl(text) ? parseUrl(text) : parseBare(text);
}

function effectivePort(d: Destination): number | undefined {
  return d.port ?? defaultPort(d.scheme);
}

function* queryParams(d: Destination, text: string): Generator<[string, Span]> {
  if (!d.spans.query) return;
  let offset = d.spans.query[0];
  for (const pair of text.slice(...d.spans.query).split("&")) {
    const eq = pair.indexOf("=");
    yield eq >= 0 ? [pair.slice(0, eq), [offset + eq + 1, offset + pair.length]] : [pair, [offset + pair.length, offset + pair.length]];
    offset += pair.length + 1;
  }
}

interface Pin {
  scheme?: string;
  host: string;
  port?: number;
  pathPrefix: string;
  secretParams: string[];
}

function pinOfUrl(d: Destination, text: string): Pin {
  const path = text.slice(...d.spans.path);
  return {
    scheme: d.scheme,
    host: d.host,
    port: effectivePort(d),
    pathPrefix: path === "/" ? "" : path,
    secretParams: [...queryParams(d, text)].map(([n]) => n).filter((n) => n !== ""),
  };
}

function hostField(value: string): [string, number | undefined] {
  try {
    const d = parseBare(value);
    return [d.host, d.port];
  } catch (e) {
    const v6 = /^[0-9A-Fa-f:.]+$/.test(value) && value.includes(":") ? normalizeIpv6(value) : undefined;
    if (v6 === undefined) throw e;
    return [v6, undefined];
  }
}

/** A field as pins are derived from it. */
export interface PinField {
  name: string;
  part: DestinationPart;
  value?: string;
  configured: boolean;
}

/** Where a render's secrets may go. */
export class Pins {
  pins: Pin[] = [];
  resources: string[] = [];
  destinationFields: string[] = [];
  #fields: string[] = [];
  #explicit: string[] = [];

  static fromFields(fields: PinField[]): Pins {
    const pins = new Pins();
    const hosts: Array<[string, number | undefined]> = [];
    const ports: number[] = [];
    for (const f of fields) {
      pins.destinationFields.push(f.name);
      if (!f.value || !(f.configured || f.part === "port")) continue;
      try {
        if (f.part === "url") pins.pins.push(pinOfUrl(parseUrl(f.value), f.value));
        else if (f.part === "host") hosts.push(hostField(f.value));
        else if (f.part === "port") {
          if (!/^\d+$/.test(f.value) || Number(f.value) > 65535) continue;
          ports.push(Number(f.value));
        } else pins.resources.push(f.value);
      } catch (e) {
        if (e instanceof DestinationError) continue;
        throw e;
      }
      pins.#fields.push(f.name);
    }
    for (const [host, own] of hosts) {
      const each = own !== undefined ? [own] : ports.length ? ports : [undefined];
      for (const port of each) pins.pins.push({ host, port, pathPrefix: "", secretParams: [] });
    }
    return pins;
  }

  /** The operator's explicit list replaces the derived pins (unless kept). */
  withExplicit(entries: string[], keepFields = false): Pins {
    if (!keepFields) {
      this.pins = [];
      this.resources = [];
      this.#fields = [];
    }
    entries.forEach((entry, i) => {
      let d: Destination;
      try {
        d = parse(entry);
      } catch (e) {
        throw new Error(`egress entry ${i} (\`${entry}\`): ${(e as Error).message}`);
      }
      this.pins.push(d.scheme ? pinOfUrl(d, entry) : { host: d.host, port: d.port, pathPrefix: "", secretParams: [] });
    });
    this.#explicit = [...entries];
    return this;
  }

  origin(): string {
    const parts = [];
    if (this.#fields.length) parts.push(`from fields ${this.#fields.map((f) => `\`${f}\``).join(", ")}`);
    if (this.#explicit.length) parts.push(`egress ${this.#explicit.map((e) => `\`${e}\``).join(", ")}`);
    return parts.join("; ") || "none";
  }

  isEmpty(): boolean {
    return this.pins.length === 0 && this.resources.length === 0;
  }

  /** The operator's values may be secrets: nothing of them is shown. */
  toJSON(): string {
    return `Pins(${this.pins.length} pins)`;
  }
}

/** A refused render: the output at fault (by index) and why, with no value. */
export class Refusal extends Error {
  constructor(
    readonly output: number,
    message: string,
  ) {
    super(message);
  }
}

/** One output as the check sees it: marks are the ranges of secret material. */
export interface CheckedOutput {
  name: string;
  kind: OutputKind;
  value: string;
  marks: Span[];
}

const missed = (index: number, part: string, pins: Pins) =>
  new Refusal(index, `its ${part} matches none of the connector's destination pins (${pins.origin()})`);

/** Checks a render's outputs against its pins; throws a Refusal. */
export function check(outputs: CheckedOutput[], pins: Pins): Array<Destination | undefined> {
  const holdsSecret = outputs.some((o) => o.marks.length > 0);
  if (holdsSecret && pins.isEmpty()) {
    throw new Refusal(
      outputs.findIndex((o) => o.marks.length > 0),
      "it holds secret material but the connector has no destination pins: it declares no destination field the operator configured, and no `egress` is set",
    );
  }
  return outputs.map((o, index) => {
    const url = looksLikeUrl(o.value);
    if (!(url || pins.destinationFields.includes(o.name) || o.kind === "destination")) {
      if (o.kind === "setting" && o.marks.length) {
        throw new Refusal(index, "it is a setting but holds secret material; only credential and destination outputs may");
      }
      return undefined;
    }
    return checkDestination(index, o, url, pins, holdsSecret);
  });
}

function checkDestination(index: number, o: CheckedOutput, url: boolean, pins: Pins, holdsSecret: boolean) {
  const value = o.value;
  if (!url && pins.resources.includes(value)) return undefined;
  if (!url && /^\d+$/.test(value)) {
    if (!holdsSecret || pins.pins.some((p) => p.port !== undefined && p.port === Number(value))) return undefined;
    throw missed(index, "port", pins);
  }
  let d: Destination;
  try {
    d = url ? parseUrl(value) : parseBare(value);
  } catch (e) {
    if (!holdsSecret || !(e instanceof DestinationError)) return undefined;
    throw new Refusal(index, `it is a destination, and its ${e.part} ${e.why} (clients could read it differently)`);
  }
  if (!holdsSecret) return d;
  const order = ["host", "scheme", "port", "path"];
  let best = "host";
  for (const pin of pins.pins.filter((p) => p.host === d.host)) {
    const fault = !matchesScheme(pin, d)
      ? "scheme"
      : !matchesPort(pin, d)
        ? "port"
        : !matchesPath(pin, d, value)
          ? "path"
          : undefined;
    if (fault === undefined) {
      placement(index, o, d, pin, pins);
      return d;
    }
    if (order.indexOf(fault) > order.indexOf(best)) best = fault;
  }
  throw missed(index, best, pins);
}

function matchesScheme(pin: Pin, d: Destination): boolean {
  return pin.scheme === undefined || d.scheme === undefined || pin.scheme === d.scheme;
}

function matchesPort(pin: Pin, d: Destination): boolean {
  const implied = defaultPort(d.scheme);
  const port = d.port ?? implied;
  if (pin.port !== undefined) return port === undefined || port === pin.port;
  return d.port === undefined || d.port === implied;
}

function matchesPath(pin: Pin, d: Destination, text: string): boolean {
  const p = pin.pathPrefix;
  if (p === "" || d.scheme === undefined) return true;
  const path = text.slice(...d.spans.path);
  return path === p || path === p.replace(/\/+$/, "") || (path.startsWith(p) && (p.endsWith("/") || path[p.length] === "/"));
}

function placement(index: number, o: CheckedOutput, d: Destination, pin: Pin, pins: Pins): void {
  const s = d.spans;
  const text = o.value;
  const allowed: Span[] = [s.userinfo, s.host, s.port].filter((x): x is Span => x !== undefined);
  if (pin.pathPrefix) allowed.push([s.path[0], s.path[0] + Math.min(pin.pathPrefix.length, s.path[1] - s.path[0])]);
  let at = s.path[0];
  for (const segment of text.slice(...s.path).split("/")) {
    if (segment && pins.resources.some((r) => r === segment || apply("percent", r) === segment)) {
      allowed.push([at, at + segment.length]);
    }
    at += segment.length + 1;
  }
  for (const [name, span] of queryParams(d, text)) if (pin.secretParams.includes(name)) allowed.push(span);
  const within = (span: Span | undefined, i: number) => span !== undefined && span[0] <= i && i < span[1];
  for (const [start, end] of o.marks) {
    let i = start;
    while (i < end) {
      const cover = allowed.find((span) => within(span, i));
      if (cover === undefined) {
        const part = within(s.scheme, i)
          ? "scheme"
          : within(s.path, i)
            ? "path"
            : within(s.query, i)
              ? "query (a parameter the pin does not name)"
              : within(s.fragment, i)
                ? "fragment"
                : "delimiters";
        throw new Refusal(index, `secret material stands in its ${part}, where only the operator's own value may (pins ${pins.origin()})`);
      }
      i = cover[1];
    }
  }
}
