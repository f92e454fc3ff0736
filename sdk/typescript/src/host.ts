/**
 * The host's imports: `log`, `reveal`, `invalidate`, `listSecrets`. Inside a
 * component, `keyward-componentize` installs the generated bindings here
 * before anything runs; in unit tests, `TestSecrets` installs itself.
 */

import { RenderError } from "./connector.js";
import { Text, evaluate, type TextLike } from "./text.js";

export type Level = "trace" | "debug" | "info" | "warn" | "error";

/** What the SDK needs of a host (the component's imports, or the test double). */
export interface Host {
  log(level: Level, message: string): void;
  /** Throws with the host's reason if the value may not be revealed. */
  reveal(handle: bigint): string;
  invalidate(reference: string): boolean;
  list(): string[];
}

let current: Host | undefined;

/** @internal Installs the host the SDK's calls go to; returns the previous one. */
export function installHost(host: Host | undefined): Host | undefined {
  const previous = current;
  current = host;
  return previous;
}

function host(): Host {
  if (current === undefined) {
    throw new Error("no keyward host: outside a component, render through TestSecrets");
  }
  return current;
}

/** Writes a line to the host's log (escaped; revealed values masked). Use it: stdout goes nowhere. */
export function log(level: Level, message: string): void {
  host().log(level, message);
}

/** Names (relative to the host's namespace) this connector may use. */
export function listSecrets(): string[] {
  return host().list();
}

/** Asks the host to drop its cached copy of a secret whose credentials were rejected. */
export function invalidate(reference: string): boolean {
  return host().invalidate(reference);
}

/**
 * The plaintext of `text`, for a connector that must compute over a secret.
 * The operator must have granted `reveal` for every secret in it; the host
 * audits it and marks every output of the render sensitive.
 */
export function reveal(text: TextLike): string {
  const revealed = new Map<bigint, string>();
  return evaluate(Text.of(text).nodes(), (handle) => {
    let value = revealed.get(handle);
    if (value === undefined) {
      try {
        value = host().reveal(handle);
      } catch (e) {
        const payload = (e as { payload?: unknown }).payload;
        throw new RenderError(typeof payload === "string" ? payload : String((e as Error).message ?? e));
      }
      revealed.set(handle, value);
    }
    return value;
  });
}
