#!/usr/bin/env node
// keyward-componentize APP -o OUT [--wit DIR]: builds a keyward connector
// component from a TypeScript or JavaScript module whose default export is
// the connector. It bundles the module with the SDK (esbuild), wires the
// host's imports into the SDK, and builds the component with
// componentize-js (StarlingMonkey) with the WASI features a connector never
// uses (http, fetch-event) left out: the host refuses wasi:http.
import { componentize } from "@bytecodealliance/componentize-js";
import { build } from "esbuild";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// The app and the generated entry must share one copy of the SDK (the
// entry installs the host's imports into it): both resolve to this one.
const SDK = resolve(dirname(fileURLToPath(import.meta.url)), "../dist/src/index.js");

function usage(message) {
  console.error(`keyward-componentize: ${message}\nusage: keyward-componentize APP.ts -o OUT.wasm [--wit DIR]`);
  process.exit(2);
}

const args = process.argv.slice(2);
let app;
let out;
let wit = "wit";
for (let i = 0; i < args.length; i++) {
  if (args[i] === "-o") out = args[++i];
  else if (args[i] === "--wit") wit = args[++i];
  else if (app === undefined) app = args[i];
  else usage(`unexpected argument ${args[i]}`);
}
if (!app || !out) usage("an app module and -o are required");

const work = resolve(".keyward-build");
await mkdir(work, { recursive: true });
const entry = resolve(work, "entry.ts");
const appPath = relative(work, resolve(app)).replaceAll("\\", "/");
await writeFile(
  entry,
  `import { log } from "keyward:connector/log@0.3.0";
import { reveal, invalidate, list } from "keyward:connector/secrets@0.3.0";
import { installHost, exportsFor } from "keyward-connector";
import connector from "${appPath.startsWith(".") ? appPath : "./" + appPath}";
installHost({ log, reveal, invalidate, list });
const exported = exportsFor(connector);
export const describe = exported.describe;
export const render = exported.render;
`,
);
const bundle = resolve(work, "bundle.js");
await build({
  entryPoints: [entry],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  external: ["keyward:*"],
  alias: { "keyward-connector": SDK },
  outfile: bundle,
  logLevel: "warning",
});
const { component } = await componentize({
  sourcePath: bundle,
  witPath: resolve(wit),
  worldName: "connector",
  disableFeatures: ["http", "fetch-event"],
});
await mkdir(dirname(resolve(out)), { recursive: true });
await writeFile(out, component);
console.error(`keyward-componentize: wrote ${out} (${component.length} bytes)`);
