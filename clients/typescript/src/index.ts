// A client for `keyward serve` (see docs/openapi.json): Node's own http
// module, over the service's Unix socket or a loopback TCP port. No
// dependencies.

import * as http from "node:http";

/** Where the service is, and the token to present. */
export interface KeywardOptions {
  /** The service's Unix socket (`[server] socket`). */
  socketPath?: string;
  /** Or a loopback address (`[server] listen`), such as `http://127.0.0.1:2773`. */
  url?: string;
  /** `X-Keyward-Token`. */
  token: string;
  /** Bound on one request, in milliseconds (default 30 s). */
  timeoutMs?: number;
}

/** Where a destination output sends the platform, as keyward checked it: connect here, nowhere else. */
export interface Destination {
  scheme: string | null;
  host: string;
  port: number | null;
}

/** One output of a render. */
export interface Output {
  name: string;
  /** `****` if sensitive and the token sees masked values only. */
  value: string;
  sensitive: boolean;
  /** What the connector says it is; a platform connects only to a `destination`. */
  kind: "destination" | "credential" | "setting";
  /** For a destination keyward parsed: its scheme, host and port. */
  destination?: Destination;
}

/** What a render answers. */
export interface Rendered {
  connector: string;
  outputs: Output[];
}

/** An error the service answered, with its stable code. */
export class KeywardError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** For `render_error`: the configuration field and column at fault. */
    readonly field: string | null = null,
    readonly column: number | null = null,
  ) {
    super(message);
    this.name = "KeywardError";
  }
}

/** `keyward serve`, from Node. */
export class KeywardClient {
  private readonly target: { socketPath?: string; host?: string; port?: number };

  constructor(private readonly options: KeywardOptions) {
    if (options.socketPath) {
      this.target = { socketPath: options.socketPath };
    } else if (options.url) {
      const url = new URL(options.url);
      this.target = { host: url.hostname, port: Number(url.port) };
    } else {
      throw new Error("KeywardClient: give socketPath or url");
    }
  }

  /** Renders a connector with its configured fields, or with `fields`. */
  render(connector: string, fields?: Record<string, string>): Promise<Rendered> {
    const body = fields === undefined ? undefined : { fields };
    return this.request("POST", `/v1/connectors/${encodeURIComponent(connector)}/render`, body);
  }

  /** The outputs of a render by name. */
  static values(rendered: Rendered): Record<string, string> {
    return Object.fromEntries(rendered.outputs.map((o) => [o.name, o.value]));
  }

  /**
   * The destination outputs of a render by name, with where each connects:
   * a platform connects only to these (or to its own configuration).
   */
  static destinations(rendered: Rendered): Record<string, Destination> {
    return Object.fromEntries(
      rendered.outputs.flatMap((o) => (o.destination ? [[o.name, o.destination] as const] : [])),
    );
  }

  /** Where one output connects, if it is a destination keyward checked. */
  static destination(rendered: Rendered, name: string): Destination | undefined {
    return rendered.outputs.find((o) => o.name === name)?.destination;
  }

  /**
   * Drops the cached copy of one secret after its credentials were
   * rejected (`{{ secrets.db }}`); the next render fetches it anew.
   * Rate-limited by the service (a `rate_limited` KeywardError).
   */
  async invalidate(connector: string, reference: string): Promise<void> {
    await this.request("POST", `/v1/connectors/${encodeURIComponent(connector)}/invalidate`, { reference });
  }

  /** The references a connector may use, ready to paste. */
  async references(connector: string): Promise<string[]> {
    const answer = await this.request("GET", `/v1/connectors/${encodeURIComponent(connector)}/references`);
    return answer.references;
  }

  /** The configured connectors with their `describe` output. */
  async connectors(): Promise<Array<{ id: string; describe: unknown }>> {
    return (await this.request("GET", "/v1/connectors")).connectors;
  }

  /** "Test connection": the backend, then per connector. */
  check(): Promise<{ ok: boolean; failures: number }> {
    return this.request("GET", "/v1/check");
  }

  private request(method: string, path: string, body?: unknown): Promise<any> {
    const payload = body === undefined ? "" : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const request = http.request(
        {
          ...this.target,
          method,
          path,
          timeout: this.options.timeoutMs ?? 30_000,
          headers: {
            "x-keyward-token": this.options.token,
            "content-type": "application/json",
            "content-length": Buffer.byteLength(payload),
          },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: any;
            try {
              parsed = JSON.parse(text);
            } catch {
              return reject(new KeywardError(response.statusCode ?? 0, "bad_response", "the service answered something other than JSON"));
            }
            const status = response.statusCode ?? 0;
            if (status >= 200 && status < 300) {
              resolve(parsed);
            } else {
              const e = parsed?.error ?? {};
              reject(new KeywardError(status, e.code ?? "unknown", e.message ?? `HTTP ${status}`, e.field ?? null, e.column ?? null));
            }
          });
        },
      );
      request.on("timeout", () => request.destroy(new Error("keyward: the request timed out")));
      request.on("error", reject);
      request.end(payload);
    });
  }
}
